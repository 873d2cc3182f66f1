//! What the operator's requests do: the metrics port's `/metrics` and
//! `/healthz`, and the control socket's commands (see `crate::control`).
//! Each is answered from the loop's own state within the turn it arrived.

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::info;
use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

use crate::chat::ConnId;
use crate::control::{human, utc, ControlCommand};
use crate::protocol::Reply;
use crate::session::Departure;

use super::admin::{http_response, Ask};
use super::drain::Drain;
use super::Server;

impl Server {
    /// Answers one operator's request.
    pub(super) fn answer_operator(&mut self, ask: Ask, now: Instant) -> Vec<u8> {
        match ask {
            Ask::Http { path, head } => self.answer_http(&path, head, now),
            Ask::BadHttp { status } => http_response(status, "text/plain", b"", false),
            Ask::Control(line) => {
                let answer = match ControlCommand::parse(&line) {
                    Ok(command) => self.control(command, now),
                    Err(e) => Err(e),
                };
                match answer {
                    Ok(text) => text.into_bytes(),
                    Err(e) => format!("error: {e}\n").into_bytes(),
                }
            }
        }
    }

    fn answer_http(&mut self, path: &str, head: bool, now: Instant) -> Vec<u8> {
        // A query string changes nothing here.
        let path = path.split('?').next().unwrap_or(path);
        match path {
            "/metrics" => {
                let body = self.scrape().render();
                http_response(200, CONTENT_TYPE, body.as_bytes(), head)
            }
            "/healthz" => match self.trouble(now) {
                None => http_response(200, "text/plain", b"ok\n", head),
                Some(why) => http_response(503, "text/plain", format!("{why}\n").as_bytes(), head),
            },
            _ => http_response(
                404,
                "text/plain",
                b"not found: try /metrics or /healthz\n",
                head,
            ),
        }
    }

    fn control(&mut self, command: ControlCommand, now: Instant) -> Result<String, String> {
        match command {
            ControlCommand::Stats => Ok(self.stats_text(now)),
            ControlCommand::Who => Ok(self.who_text(now)),
            ControlCommand::Kick { name, reason } => {
                let Some(id) = self.chat.find(&name) else {
                    // A session held since a restart has no connection to
                    // tell; it just ends.
                    let name = self
                        .chat
                        .drop_held(&name, &mut self.conns)
                        .ok_or_else(|| format!("no user {name} on this server"))?;
                    self.settle(None, now);
                    info!("{name}'s held session ended by the operator");
                    return Ok(format!("ended {name}'s held session\n"));
                };
                let name = self.chat.name(id).unwrap_or(&name).to_string();
                match &reason {
                    Some(reason) => info!("conn {id} {name} kicked by the operator: {reason}"),
                    None => info!("conn {id} {name} kicked by the operator"),
                }
                if let Some(reason) = &reason {
                    self.conns.send_reply(id, Reply::Notice(reason));
                }
                self.depart(id, Departure::Kicked, now);
                Ok(format!("kicked {name}\n"))
            }
            ControlCommand::Notice(text) => {
                let told = self.chat.notice(&text, &mut self.conns);
                self.settle(None, now);
                info!("notice to {told} users");
                Ok(format!("told {told} users\n"))
            }
            ControlCommand::Drain => {
                if self.draining() {
                    return Err("already draining or shutting down".into());
                }
                let users = self.start_drain(now);
                Ok(format!(
                    "draining: {users} users get BYE restarting over {}, then the server exits\n",
                    human(self.cfg.drain)
                ))
            }
        }
    }

    /// True once a drain or a shutdown has begun.
    pub(super) fn draining(&self) -> bool {
        self.drain.is_some() || self.shutdown_deadline.is_some()
    }

    /// Starts a drain: no more accepts, anonymous connections closed at
    /// once, users told `BYE restarting` over `--drain`. Returns how many
    /// users will be told.
    pub(super) fn start_drain(&mut self, now: Instant) -> usize {
        self.listeners.close(&self.poll);
        let mut users = Vec::new();
        let mut anonymous = Vec::new();
        for (id, conn) in &self.conns.slab {
            if !conn.session.is_open() {
                continue;
            }
            if self.chat.name(id).is_some() {
                users.push(id);
            } else {
                anonymous.push(id);
            }
        }
        info!(
            "draining: {} users over {}, {} anonymous connections at once",
            users.len(),
            human(self.cfg.drain),
            anonymous.len()
        );
        for id in anonymous {
            self.depart(id, Departure::Restarting, now);
        }
        let count = users.len();
        // Told from the end of the list: the oldest connections go last.
        users.reverse();
        self.drain = Some((Drain::new(now, self.cfg.drain, count), users));
        self.drain_step(now);
        count
    }

    /// Tells the users due by `now`; once all are told, the server leaves
    /// its cluster and waits for the last `BYE`s to be written.
    pub(super) fn drain_step(&mut self, now: Instant) {
        let Some((drain, users)) = self.drain.as_mut() else {
            return;
        };
        let due: Vec<ConnId> = (0..drain.due(now)).filter_map(|_| users.pop()).collect();
        let done = drain.is_done();
        for id in due {
            self.depart(id, Departure::Restarting, now);
        }
        if done && self.shutdown_deadline.is_none() {
            info!("drain complete; exiting when the last lines are written");
            self.leave_cluster();
            self.shutdown_deadline = Some(now + super::SHUTDOWN_GRACE);
        }
    }

    fn stats_text(&self, now: Instant) -> String {
        let mut text = self.scrape().summary();
        let _ = writeln!(text, "uptime      {}", human(now - self.started));
        let health = self.trouble(now).unwrap_or("ok");
        let _ = writeln!(text, "health      {health}");
        if self.draining() {
            let _ = writeln!(text, "state       draining");
        }
        text
    }

    fn who_text(&self, now: Instant) -> String {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let mut rows: Vec<(String, String)> = self
            .conns
            .slab
            .iter()
            .filter_map(|(id, conn)| {
                let name = self.chat.name(id)?;
                let age = now.saturating_duration_since(conn.since);
                let since = utc(wall.saturating_sub(age).as_secs());
                let row = format!(
                    "{name:<16} {:<40} {:<8} since {since} ({})",
                    conn.peer,
                    conn.kind.as_str(),
                    human(age)
                );
                Some((name.to_ascii_lowercase(), row))
            })
            .collect();
        let held: Vec<(String, String)> = self
            .chat
            .held_names()
            .map(|name| {
                let row = format!(
                    "{name:<16} {:<40} {:<8} held for RESUME since the restart",
                    "-", "-"
                );
                (name.to_ascii_lowercase(), row)
            })
            .collect();
        rows.extend(held);
        rows.sort();
        let mut text = format!("{} users on this server\n", rows.len());
        for (_, row) in rows {
            text.push_str(&row);
            text.push('\n');
        }
        text
    }
}

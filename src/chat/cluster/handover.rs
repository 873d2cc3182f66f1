//! Sessions handed over between nodes: a `RESUME` on one node of a
//! session another node holds. The node the user lives on (or, for a
//! session that ended somewhere, whichever node holds it) checks the
//! token and answers; a ghost still connected there moves to the asker
//! through the log ([`Event::Moved`]), so every node re-homes the user in
//! the same place of the log's order, and nobody is told.

use super::{BusRequest, Login, Own};
use crate::chat::event::{valid_home, Event};
use crate::chat::resume::{Ended, Token};
use crate::chat::{Chat, ConnId, Outbox, Reply, Step};
use crate::protocol::text::valid_room;
use crate::protocol::ProtocolError;

/// What a node answers when asked to hand a session over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// Its connection was still here (a ghost): closed with `BYE
    /// replaced`; the user moves to the asker through the log.
    Ghost,
    /// It had ended here; these were its rooms.
    Ended(Vec<Box<str>>),
    /// Not here, or the token is wrong.
    No,
    /// Nobody could be asked: NATS is out of reach (never sent between
    /// nodes).
    Unavailable,
}

impl Taken {
    /// The answer as it travels between nodes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Taken::Ghost => b"ghost".to_vec(),
            Taken::No | Taken::Unavailable => b"no".to_vec(),
            Taken::Ended(rooms) => {
                let mut out = b"ended".to_vec();
                for room in rooms {
                    out.push(b' ');
                    out.extend_from_slice(room.as_bytes());
                }
                out
            }
        }
    }

    /// Reads an answer; anything malformed is `No`.
    pub fn decode(bytes: &[u8]) -> Taken {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Taken::No;
        };
        let mut words = text.split(' ');
        match words.next() {
            Some("ghost") => Taken::Ghost,
            Some("ended") => {
                let rooms: Vec<Box<str>> = words.map(Box::from).collect();
                if rooms.iter().all(|r| valid_room(r)) {
                    Taken::Ended(rooms)
                } else {
                    Taken::No
                }
            }
            _ => Taken::No,
        }
    }
}

impl Chat {
    /// In a cluster, asks the other nodes to hand over the session of
    /// `name` for `conn`'s `RESUME` with `token`: the node it lives on,
    /// if it is known, else whichever holds it. False on a single node.
    pub(in crate::chat) fn take_elsewhere(
        &mut self,
        conn: ConnId,
        name: &str,
        token: Token,
    ) -> bool {
        let Some(cluster) = self.cluster.as_mut() else {
            return false;
        };
        let ticket = cluster.next_ticket;
        cluster.next_ticket += 1;
        let at = self.users.home_of(name).map(Box::from);
        cluster.requests.push(BusRequest::Take {
            ticket,
            name: name.into(),
            token: token.to_hex().into(),
            at,
        });
        let now = self.journal.now();
        let login = Login {
            conn,
            name: name.into(),
            resumed: Some(Ended::handed_over(name, token, Vec::new(), now)),
            account: None,
            abandoned: false,
        };
        cluster.takes.insert(ticket, login);
        true
    }

    /// Another node asks, under `request`, for the session of `name` for a
    /// `RESUME` with `token` on the node incarnation `asker`. A ghost here
    /// moves to the asker (returned, to be closed with `BYE replaced`); an
    /// ended session is handed over and forgotten here.
    pub fn on_take(
        &mut self,
        request: u64,
        name: &str,
        token: &str,
        asker: &str,
    ) -> Option<ConnId> {
        self.cluster.as_ref()?;
        let now = self.journal.now();
        let token = Token::parse(token).filter(|_| valid_home(asker));
        let mut ghost = None;
        let taken = match (token, self.users.find(name)) {
            (Some(token), Some(id)) if self.users.token(id).is_some_and(|t| t.matches(&token)) => {
                let spelled = self.users.detach(id, asker)?;
                self.rooms.detach(id, &spelled);
                let moved = Event::Moved {
                    name: &spelled,
                    home: asker,
                };
                self.cluster.as_mut()?.publish(&moved, Own::Quiet, None);
                ghost = Some(id);
                Taken::Ghost
            }
            (Some(token), None) => match self.ended.take(name, &token, now) {
                Some(ended) => Taken::Ended(ended.rooms),
                None => Taken::No,
            },
            _ => Taken::No,
        };
        let cluster = self.cluster.as_mut()?;
        cluster.requests.push(BusRequest::Answer {
            request,
            name: name.into(),
            taken,
        });
        ghost
    }

    /// Carries out another node's answer to take `ticket`. Returns the
    /// connection whose wait is over.
    pub fn on_took(
        &mut self,
        ticket: u64,
        taken: Taken,
        out: &mut impl Outbox,
    ) -> Option<(ConnId, Step)> {
        let cluster = self.cluster.as_mut()?;
        let mut login = cluster.takes.remove(&ticket)?;
        match taken {
            // Its move comes through the log.
            Taken::Ghost => {
                cluster
                    .moving
                    .insert(login.name.to_ascii_lowercase().into(), login);
                None
            }
            Taken::Ended(rooms) if !login.abandoned => {
                if let Some(ended) = login.resumed.as_mut() {
                    ended.rooms = rooms;
                }
                cluster.claim(login);
                None
            }
            Taken::No | Taken::Unavailable if !login.abandoned => {
                let error = match taken {
                    Taken::Unavailable => ProtocolError::ClusterUnavailable,
                    _ => ProtocolError::BadToken,
                };
                self.reply(login.conn, Reply::Err(error), out);
                Some((login.conn, Step::Continue))
            }
            Taken::Ended(_) | Taken::No | Taken::Unavailable => None,
        }
    }

    /// A session handed over by another node moved here through the log:
    /// the connection that asked for it takes it over, in silence. If it
    /// left meanwhile, the user departs.
    pub(super) fn moved_here(
        &mut self,
        name: &str,
        event: Event<'_>,
        out: &mut impl Outbox,
    ) -> Option<(ConnId, Step)> {
        let cluster = self.cluster.as_mut()?;
        let key = name.to_ascii_lowercase();
        // The move may come through the log before the answer that
        // announced it: then the take is still waiting.
        let login = cluster.moving.remove(&*key).or_else(|| {
            let ticket = cluster
                .takes
                .iter()
                .find(|(_, l)| l.name.eq_ignore_ascii_case(name))
                .map(|(&t, _)| t)?;
            cluster.takes.remove(&ticket)
        });
        self.apply(event, out);
        match login {
            Some(login) if !login.abandoned && self.users.attach(login.conn, name) => {
                let conn = login.conn;
                self.rooms.attach(name, conn);
                if let Some(ended) = login.resumed {
                    self.users.set_token(conn, ended.token);
                }
                self.resumed(conn, out);
                Some((conn, Step::LoggedIn))
            }
            login => {
                let cluster = self.cluster.as_mut()?;
                let release = Some(Box::from(name));
                cluster.publish(&Event::Departed { name }, Own::Quiet, release);
                let login = login.filter(|l| !l.abandoned)?;
                self.reply(login.conn, Reply::Err(ProtocolError::BadToken), out);
                Some((login.conn, Step::Continue))
            }
        }
    }
}

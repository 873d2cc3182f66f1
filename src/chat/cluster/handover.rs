//! Sessions handed over between nodes: a `RESUME` on one node of a
//! session another node holds. The node the user lives on (or, for a
//! session that ended somewhere, whichever node holds it) checks the
//! token and answers; a ghost still connected there moves to the asker
//! through the log ([`Event::Moved`]), so every node re-homes the user in
//! the same place of the log's order, and nobody is told.

use super::{BusRequest, Login, Own};
use crate::chat::event::{valid_home, Event};
use crate::chat::resume::{Ended, Tags, Token};
use crate::chat::{Chat, ConnId, Outbox, Reply, Step};
use crate::protocol::text::valid_room;
use crate::protocol::ProtocolError;

/// What a node answers when asked to hand a session over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// Its connection was still here (a ghost): closed with `BYE
    /// replaced`; the user moves to the asker through the log, and these
    /// were its tagged `SAY`s.
    Ghost(Tags),
    /// It had ended here; these were its rooms and its tagged `SAY`s.
    Ended(Vec<Box<str>>, Tags),
    /// Not here, or the token is wrong.
    No,
    /// Nobody could be asked: NATS is out of reach (never sent between
    /// nodes).
    Unavailable,
}

impl Taken {
    /// The answer as it travels between nodes: a line of words, then the
    /// tags (as the store keeps them) on a line of their own.
    pub fn encode(&self) -> Vec<u8> {
        let (mut out, tags) = match self {
            Taken::Ghost(tags) => (b"ghost".to_vec(), tags),
            Taken::No | Taken::Unavailable => return b"no".to_vec(),
            Taken::Ended(rooms, tags) => {
                let mut out = b"ended".to_vec();
                for room in rooms {
                    out.push(b' ');
                    out.extend_from_slice(room.as_bytes());
                }
                (out, tags)
            }
        };
        out.push(b'\n');
        out.extend_from_slice(tags.encode().as_bytes());
        out
    }

    /// Reads an answer; anything malformed is `No`.
    pub fn decode(bytes: &[u8]) -> Taken {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Taken::No;
        };
        let (head, tags) = text.split_once('\n').unwrap_or((text, ""));
        let tags = Tags::decode(tags);
        let mut words = head.split(' ');
        match words.next() {
            Some("ghost") => Taken::Ghost(tags),
            Some("ended") => {
                let rooms: Vec<Box<str>> = words.map(Box::from).collect();
                if rooms.iter().all(|r| valid_room(r)) {
                    Taken::Ended(rooms, tags)
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
                let tags = self.users.tags(id).cloned().unwrap_or_default();
                let spelled = self.users.detach(id, asker)?;
                self.rooms.detach(id, &spelled);
                let moved = Event::Moved {
                    name: &spelled,
                    home: asker,
                };
                self.cluster.as_mut()?.publish(&moved, Own::Quiet, None);
                ghost = Some(id);
                Taken::Ghost(tags)
            }
            (Some(token), None) => match self.ended.take(name, &token, now) {
                Some(ended) => Taken::Ended(ended.rooms, ended.tags),
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
        let Some(mut login) = cluster.takes.remove(&ticket) else {
            // Moved here already, and waiting for the tags this brings
            // before it reads on (a line resent under one must find it).
            let (conn, name) = cluster.moved_early.remove(&ticket)?;
            let here = self.users.name(conn);
            if !here.is_some_and(|n| n.eq_ignore_ascii_case(&name)) {
                return None;
            }
            if let Taken::Ghost(tags) = taken {
                self.users.set_tags(conn, tags);
            }
            return Some((conn, Step::LoggedIn));
        };
        match taken {
            // Its move comes through the log.
            Taken::Ghost(tags) => {
                if let Some(ended) = login.resumed.as_mut() {
                    ended.tags = tags;
                }
                cluster
                    .moving
                    .insert(login.name.to_ascii_lowercase().into(), login);
                None
            }
            Taken::Ended(rooms, tags) if !login.abandoned => {
                if let Some(ended) = login.resumed.as_mut() {
                    ended.rooms = rooms;
                    ended.tags = tags;
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
            Taken::Ended(..) | Taken::No | Taken::Unavailable => None,
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
        // announced it: then the take is still waiting, and so is the
        // connection, for the tags the answer brings.
        let mut early = None;
        let login = cluster.moving.remove(&*key).or_else(|| {
            let ticket = cluster
                .takes
                .iter()
                .find(|(_, l)| l.name.eq_ignore_ascii_case(name))
                .map(|(&t, _)| t)?;
            early = Some(ticket);
            cluster.takes.remove(&ticket)
        });
        self.apply(event, out);
        match login {
            Some(login) if !login.abandoned && self.users.attach(login.conn, name) => {
                let conn = login.conn;
                self.rooms.attach(name, conn);
                if let Some(ended) = login.resumed {
                    self.users.set_token(conn, ended.token);
                    self.users.set_tags(conn, ended.tags);
                }
                self.resumed(conn, out);
                let Some(ticket) = early else {
                    return Some((conn, Step::LoggedIn));
                };
                let cluster = self.cluster.as_mut()?;
                cluster.moved_early.insert(ticket, (conn, name.into()));
                None
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

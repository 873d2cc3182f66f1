//! Decide, then apply. A command from a local user is checked against the
//! state and, when it changes what every node shares (who is here, who is
//! in which room, what was said), becomes an [`Event`]; applying an event
//! changes the rosters and delivers its lines to this node's connections.
//! One node applies its own events at once; in a cluster every node
//! applies every event in the log's one order, so all compute the same
//! rosters, counts and presence decisions.
//!
//! Applying is idempotent where a log may repeat itself: an arrival of a
//! name already here, a join of a member, a part or departure of someone
//! absent change nothing and say nothing.

use super::{Chat, ConnId, MessageId, Outbox, Reply, RoomId};
use crate::protocol::text::{has_forbidden, valid_name, valid_room};

/// Longest name of a node incarnation (a home), in bytes.
pub const MAX_HOME: usize = 64;

/// True when `home` can name a node incarnation: 1 to [`MAX_HOME`]
/// characters of `A-Z a-z 0-9 _ -`, so it fits in a NATS subject token
/// and a key.
pub fn valid_home(home: &str) -> bool {
    (1..=MAX_HOME).contains(&home.len())
        && home
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A change to the state every node shares. Users are named, not
/// numbered: a name is the same user on every node, and events carry it
/// as it was spelled at login (lines about arrivals, joins and departures
/// use the spelling registered here, whatever the case of the event's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// `name` logged in on the node incarnation `home`. On its own node
    /// its connection was registered when the login was decided (or, in a
    /// cluster, just before this is applied); elsewhere it is known by name.
    Arrived { name: &'a str, home: &'a str },
    /// `name` left: every room, then the lobby.
    Departed { name: &'a str },
    /// A lobby message.
    Msg { from: &'a str, text: &'a str },
    /// `name` entered `room`, spelled as the room is shown.
    Entered { room: &'a str, name: &'a str },
    /// `name` left `room`.
    Left { room: &'a str, name: &'a str },
    /// A room message, its id and when it was accepted (Unix ms).
    Said {
        room: &'a str,
        id: MessageId,
        ms: u64,
        from: &'a str,
        text: &'a str,
    },
    /// The node incarnation `home` is gone (stopped, or silent past the
    /// cluster's timeout): every user living on it departs.
    Gone { home: &'a str },
    /// `name` resumed its session on the node incarnation `home`, taking
    /// it over from the node it lived on; nobody is told.
    Moved { name: &'a str, home: &'a str },
    /// `name` became an account with the password `hash`, unless an
    /// earlier entry of the log made it one.
    Registered { name: &'a str, hash: Phc<'a> },
    /// The account `name` has a new password, `hash`.
    Rekeyed { name: &'a str, hash: Phc<'a> },
    /// A message of the conversation between `from` and `to`, its id and
    /// when it was accepted (Unix ms).
    Direct {
        from: &'a str,
        to: &'a str,
        id: MessageId,
        ms: u64,
        text: &'a str,
    },
    /// `name` read its conversation with `peer` up to message `id`.
    Read {
        name: &'a str,
        peer: &'a str,
        id: MessageId,
    },
    /// `owner` made the invite-only room `room`, unless it exists already.
    Created { room: &'a str, owner: &'a str },
    /// The owner of the invite-only `room`, `by`, invited `name`.
    Invited {
        room: &'a str,
        name: &'a str,
        by: &'a str,
    },
    /// `name` is no longer a member of the invite-only `room`.
    Removed { room: &'a str, name: &'a str },
}

/// A password's PHC hash as the log carries it: never shown in a log line
/// or a `Debug` print.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Phc<'a>(pub &'a str);

impl std::fmt::Debug for Phc<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Phc(<redacted>)")
    }
}

/// Longest password hash the log may carry, in bytes: the server's own
/// are under 100.
const MAX_PHC: usize = 256;

/// True when `hash` looks like a PHC string: `$` first, no blank, and not
/// longer than [`MAX_PHC`].
fn valid_phc(hash: &str) -> bool {
    hash.starts_with('$') && hash.len() <= MAX_PHC && hash.bytes().all(|b| b.is_ascii_graphic())
}

impl<'a> Event<'a> {
    /// True for a record (see `records`): an account, a direct message,
    /// a read mark or a membership, which the store keeps.
    pub fn is_record(&self) -> bool {
        matches!(
            self,
            Event::Registered { .. }
                | Event::Rekeyed { .. }
                | Event::Direct { .. }
                | Event::Read { .. }
                | Event::Created { .. }
                | Event::Invited { .. }
                | Event::Removed { .. }
        )
    }

    /// Writes the event as the cluster's log holds it: one line of words,
    /// a letter for the kind first, free text last. A `SAY`'s id is not
    /// written, nor a direct message's: the log's sequence number is the id.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let words: [&[u8]; 4] = match *self {
            Event::Arrived { name, home } => [b"A", name.as_bytes(), home.as_bytes(), b""],
            Event::Departed { name } => [b"D", name.as_bytes(), b"", b""],
            Event::Msg { from, text } => [b"M", from.as_bytes(), text.as_bytes(), b""],
            Event::Entered { room, name } => [b"E", room.as_bytes(), name.as_bytes(), b""],
            Event::Left { room, name } => [b"L", room.as_bytes(), name.as_bytes(), b""],
            Event::Gone { home } => [b"G", home.as_bytes(), b"", b""],
            Event::Moved { name, home } => [b"V", name.as_bytes(), home.as_bytes(), b""],
            Event::Registered { name, hash } => [b"R", name.as_bytes(), hash.0.as_bytes(), b""],
            Event::Rekeyed { name, hash } => [b"K", name.as_bytes(), hash.0.as_bytes(), b""],
            Event::Created { room, owner } => [b"C", room.as_bytes(), owner.as_bytes(), b""],
            Event::Invited { room, name, by } => {
                [b"I", room.as_bytes(), name.as_bytes(), by.as_bytes()]
            }
            Event::Removed { room, name } => [b"X", room.as_bytes(), name.as_bytes(), b""],
            Event::Read { name, peer, id } => {
                buf.extend_from_slice(format!("Q {name} {peer} {id}").as_bytes());
                return;
            }
            Event::Direct {
                from, to, ms, text, ..
            } => {
                buf.extend_from_slice(format!("P {from} {to} {ms} {text}").as_bytes());
                return;
            }
            Event::Said {
                room,
                ms,
                from,
                text,
                ..
            } => {
                buf.extend_from_slice(b"S ");
                buf.extend_from_slice(room.as_bytes());
                buf.extend_from_slice(format!(" {ms} ").as_bytes());
                buf.extend_from_slice(from.as_bytes());
                buf.push(b' ');
                buf.extend_from_slice(text.as_bytes());
                return;
            }
        };
        let mut words = words.iter().filter(|w| !w.is_empty());
        if let Some(first) = words.next() {
            buf.extend_from_slice(first);
        }
        for word in words {
            buf.push(b' ');
            buf.extend_from_slice(word);
        }
    }

    /// Reads an event back from the log, where it is entry `seq` (a
    /// `SAY`'s id). `None` for anything malformed: every name, room, home
    /// and text is checked as a command's would be.
    pub fn decode(bytes: &'a [u8], seq: MessageId) -> Option<Event<'a>> {
        let line = std::str::from_utf8(bytes).ok()?;
        let (kind, rest) = line.split_once(' ')?;
        let name = |s: &'a str| valid_name(s).then_some(s);
        let room = |s: &'a str| valid_room(s).then_some(s);
        let text = |s: &'a str| (!s.is_empty() && !has_forbidden(s)).then_some(s);
        let pair = |s: &'a str| s.split_once(' ');
        let event = match kind {
            "A" | "V" => {
                let (n, home) = pair(rest)?;
                valid_home(home).then_some(())?;
                let name = name(n)?;
                if kind == "A" {
                    Event::Arrived { name, home }
                } else {
                    Event::Moved { name, home }
                }
            }
            "D" => Event::Departed { name: name(rest)? },
            "M" => {
                let (from, t) = pair(rest)?;
                Event::Msg {
                    from: name(from)?,
                    text: text(t)?,
                }
            }
            "E" | "L" | "C" | "X" => {
                let (r, n) = pair(rest)?;
                let (room, name) = (room(r)?, name(n)?);
                match kind {
                    "E" => Event::Entered { room, name },
                    "L" => Event::Left { room, name },
                    "C" => Event::Created { room, owner: name },
                    _ => Event::Removed { room, name },
                }
            }
            "R" | "K" => {
                let (n, hash) = pair(rest)?;
                let (name, hash) = (name(n)?, Phc(valid_phc(hash).then_some(hash)?));
                if kind == "R" {
                    Event::Registered { name, hash }
                } else {
                    Event::Rekeyed { name, hash }
                }
            }
            "I" => {
                let (r, rest) = pair(rest)?;
                let (n, by) = pair(rest)?;
                Event::Invited {
                    room: room(r)?,
                    name: name(n)?,
                    by: name(by)?,
                }
            }
            "Q" => {
                let (n, rest) = pair(rest)?;
                let (peer, id) = pair(rest)?;
                Event::Read {
                    name: name(n)?,
                    peer: name(peer)?,
                    id: id.parse().ok()?,
                }
            }
            "P" => {
                let (from, rest) = pair(rest)?;
                let (to, rest) = pair(rest)?;
                let (ms, t) = pair(rest)?;
                Event::Direct {
                    from: name(from)?,
                    to: name(to)?,
                    id: seq,
                    ms: ms.parse().ok()?,
                    text: text(t)?,
                }
            }
            "G" => Event::Gone {
                home: valid_home(rest).then_some(rest)?,
            },
            "S" => {
                let (r, rest) = pair(rest)?;
                let (ms, rest) = pair(rest)?;
                let (from, t) = pair(rest)?;
                Event::Said {
                    room: room(r)?,
                    id: seq,
                    ms: ms.parse().ok()?,
                    from: name(from)?,
                    text: text(t)?,
                }
            }
            _ => return None,
        };
        Some(event)
    }
}

impl Chat {
    /// Applies `event`: the rosters change and this node's connections
    /// get their lines (never the user the event is about, who was
    /// answered when its command was decided).
    pub fn apply(&mut self, event: Event<'_>, out: &mut impl Outbox) {
        match event {
            Event::Arrived { name, home } => self.arrived(name, home, out),
            Event::Departed { name } => self.departed(name, out),
            Event::Msg { from, text } => {
                let except = self.users.find(from);
                self.scratch.clear();
                Reply::Msg { from, text }.write_to(&mut self.scratch);
                out.send_to_all(self.users.roster(), except, &self.scratch);
            }
            Event::Entered { room, name } => self.entered(room, name, out),
            Event::Left { room, name } => {
                let Some(r) = self.rooms.find(room) else {
                    return;
                };
                // The one who parted hears it first, then the others.
                if let Some(id) = self.users.find(name) {
                    if self.rooms.is_member(id, r) {
                        self.scratch.clear();
                        Reply::PartedRoom(self.rooms.name(r)).write_to(&mut self.scratch);
                        out.send(id, &self.scratch);
                    }
                }
                self.left(r, name, out);
            }
            Event::Gone { home } => {
                for name in self.users.bury(home) {
                    self.departed(&name, out);
                }
            }
            // A move to a node already gone is a departure.
            Event::Moved { name, home } if self.users.is_buried(home) => {
                self.departed(name, out);
            }
            Event::Moved { name, home } => self.users.rehome(name, home),
            Event::Said {
                room,
                id,
                from,
                text,
                ..
            } => {
                let Some(r) = self.rooms.find(room) else {
                    return;
                };
                let except = self.users.find(from);
                let room = self.rooms.name(r);
                self.scratch.clear();
                Reply::Said {
                    room,
                    id,
                    from,
                    text,
                }
                .write_to(&mut self.scratch);
                out.send_to_all(self.rooms.members(r), except, &self.scratch);
            }
            // Every other event is a record (see `records`).
            record => {
                self.record(record, None, true, out);
            }
        }
    }

    fn arrived(&mut self, name: &str, home: &str, out: &mut impl Outbox) {
        let local = self.users.find(name);
        if local.is_none() && !self.users.insert_remote(name, home) {
            return;
        }
        // The name is someone's now: an ended session under it is over.
        self.ended.forget(name);
        if self.limits.announces(self.users.len()) {
            self.scratch.clear();
            Reply::Joined(name).write_to(&mut self.scratch);
            out.send_to_all(self.users.roster(), local, &self.scratch);
        }
    }

    /// The user called `name`: its connection if it is on this node, and
    /// its name as registered. `None` if nobody is logged in under it.
    fn user(&self, name: &str) -> Option<(Option<ConnId>, Box<str>)> {
        match self.users.find(name) {
            Some(id) => Some((Some(id), self.users.name(id)?.into())),
            None => Some((None, self.users.remote(name)?.into())),
        }
    }

    fn departed(&mut self, name: &str, out: &mut impl Outbox) {
        let Some((local, name)) = self.user(name) else {
            return;
        };
        let name = &*name;
        loop {
            let room = match local {
                Some(id) => self.rooms.any_of(id),
                None => self.rooms.any_of_remote(name),
            };
            let Some(r) = room else { break };
            self.left(r, name, out);
        }
        let present = self.users.len();
        let gone = match local {
            Some(id) => self.users.remove(id),
            None => self.users.remove_remote(name),
        };
        if gone.is_some() && self.limits.announces(present) {
            self.scratch.clear();
            Reply::Disconnected(name).write_to(&mut self.scratch);
            out.send_to_all(self.users.roster(), None, &self.scratch);
        }
    }

    fn entered(&mut self, room: &str, name: &str, out: &mut impl Outbox) {
        // A join decided before the room became invite-only (on another
        // node, or a resumed seat) does not get in.
        if !self.private.admits(room, name) {
            return;
        }
        let Some((local, name)) = self.user(name) else {
            return;
        };
        let name = &*name;
        let r = match self.rooms.find(room) {
            Some(r) => r,
            // A room this node has not held since the last message it knows
            // of: everything so far is the store's to tell.
            None => self.open_room(room, self.journal.last_id()),
        };
        match local {
            Some(id) if self.rooms.is_member(id, r) => return,
            Some(id) => self.rooms.join(id, r),
            None if self.rooms.is_remote_member(name, r) => return,
            None => self.rooms.join_remote(name, r),
        }
        let (room, count) = (self.rooms.name(r), self.rooms.count(r));
        if self.limits.announces(count) {
            self.scratch.clear();
            Reply::EnteredRoom { room, name }.write_to(&mut self.scratch);
            out.send_to_all(self.rooms.members(r), local, &self.scratch);
        }
        if let Some(id) = local {
            self.scratch.clear();
            let members = count;
            Reply::JoinedRoom { room, members }.write_to(&mut self.scratch);
            out.send(id, &self.scratch);
        }
    }

    /// Takes `name` out of room `r`, telling the others while the
    /// presence limit allows; the last one out closes the room.
    fn left(&mut self, r: RoomId, name: &str, out: &mut impl Outbox) {
        let Some((local, name)) = self.user(name) else {
            return;
        };
        let name = &*name;
        let member = match local {
            Some(id) => self.rooms.is_member(id, r),
            None => self.rooms.is_remote_member(name, r),
        };
        if !member {
            return;
        }
        if self.limits.announces(self.rooms.count(r)) {
            let room = self.rooms.name(r);
            self.scratch.clear();
            Reply::LeftRoom { room, name }.write_to(&mut self.scratch);
            out.send_to_all(self.rooms.members(r), local, &self.scratch);
        }
        let closed = match local {
            Some(id) => self.rooms.part(id, r),
            None => self.rooms.part_remote(name, r),
        };
        if let Some(log) = closed {
            self.history.close(log);
        }
    }
}

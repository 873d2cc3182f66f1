//! The chat's side of the message store, beside the router: the ids it
//! hands out, the messages on their way to the disk, the reads it awaits,
//! and the clock that stamps messages. It only asks (requests, in the
//! order it asked) and takes answers; the disk and the clock are the
//! shell's.
//!
//! Invariants: ids only grow and none past the store's latest reservation
//! is handed out; messages in flight are in id order; every request that
//! expects an answer has exactly one pending entry under its ticket.

use crate::auth::Secret;
use std::collections::vec_deque::Drain;
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::history::{Message, Request, Stored};
use super::name::Folded;
use super::resume::TokenHash;
use super::{ConnId, WallClock};
use crate::protocol::reply::MessageId;
use crate::protocol::{HistoryQuery, ProtocolError};

/// A message handed to the store; its sender, if on this node, waits
/// for its `SENT`.
#[derive(Debug)]
pub struct InFlight {
    /// The sender's connection and login (a later login on the same id
    /// gets no `SENT`); `None` for a message from another node.
    pub sender: Option<(ConnId, u64)>,
    /// The room's spelling: it may have left memory by the time of the commit.
    pub room: Box<str>,
    /// What its `SENT` names, when not the room: `@peer` for a message of
    /// a one-to-one conversation (stored under the pair's key).
    pub shown: Option<Box<str>>,
    pub message: Message,
    /// When it was handed to the store.
    pub accepted: Instant,
}

/// A connection waiting for the store to answer it about a room; its
/// login's serial tells whether it is still the same user when the
/// answer comes.
#[derive(Debug)]
pub struct Pending {
    pub what: Awaited,
    pub conn: ConnId,
    pub serial: u64,
    /// The room's spelling (for a `JOIN`, as typed).
    pub room: Box<str>,
}

/// What the store was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Awaited {
    /// Rows for a `HISTORY`.
    History,
    /// For a `JOIN` of a room nobody was in: how it was first spelled,
    /// and how much of its history is stored.
    Join,
    /// Rows for a `RESUME`'s replay of a room.
    Replay,
    /// The unread conversations of a user just logged in.
    Unread,
    /// For a `JOIN <room> invite-only`: whether the room exists.
    Create,
}

/// Ids, messages in flight, awaited reads and the clock.
#[derive(Debug)]
pub struct Journal {
    /// The id the next accepted room message gets.
    next_id: MessageId,
    /// The highest id the store has made safe to hand out.
    reserved: MessageId,
    /// Messages handed to the store and not yet committed, in id order.
    in_flight: VecDeque<InFlight>,
    /// Store work asked for since the caller last took it.
    requests: Vec<Request>,
    /// Store answers awaited, by ticket.
    pending: HashMap<u64, Pending>,
    next_ticket: u64,
    clock: WallClock,
    /// The latest instant the caller handed in.
    now: Instant,
}

impl Journal {
    /// Goes on from what the store holds, stamping messages by `clock`.
    pub fn new(stored: Stored, clock: WallClock) -> Journal {
        Journal {
            next_id: stored.next_id,
            reserved: stored.reserved,
            in_flight: VecDeque::new(),
            requests: Vec::new(),
            pending: HashMap::new(),
            next_ticket: 0,
            clock,
            now: clock.at,
        }
    }

    /// Store work asked for since the last call, in order.
    pub fn take_requests(&mut self) -> std::vec::Drain<'_, Request> {
        self.requests.drain(..)
    }

    /// The requests not yet taken, for a test that plays the store and
    /// answers some of them first.
    #[cfg(test)]
    pub(super) fn requests_mut(&mut self) -> &mut Vec<Request> {
        &mut self.requests
    }

    /// Messages handed to the store and not yet committed.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Moves the clock to `now`; it never goes back.
    pub fn advance(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    /// The latest instant handed in.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The id for the next accepted message, if the store has made it
    /// safe to hand out: ids only grow and are never reused, even across a
    /// crash, and a store that fell this far behind is unavailable.
    pub fn next_id(&mut self) -> Result<MessageId, ProtocolError> {
        if self.next_id > self.reserved {
            return Err(ProtocolError::StorageUnavailable);
        }
        let id = self.next_id;
        self.next_id += 1;
        Ok(id)
    }

    /// The newest id handed out: every message up to it, of any room, is
    /// the store's to tell about.
    pub fn last_id(&self) -> MessageId {
        self.next_id - 1
    }

    /// In a cluster, the log's entries up to `seq` are the store's to tell
    /// (ids are the log's sequence numbers, not reserved by the store).
    pub fn restart_at(&mut self, seq: MessageId) {
        self.next_id = seq + 1;
        self.reserved = MessageId::MAX;
    }

    /// In a cluster, entry `seq` of the log was applied: ids are the log's
    /// sequence numbers, so every message up to it is the store's to tell.
    pub fn observe(&mut self, seq: MessageId) {
        self.next_id = self.next_id.max(seq + 1);
    }

    /// The time a message accepted now carries, in Unix milliseconds.
    pub fn stamp(&self) -> u64 {
        self.clock.ms(self.now)
    }

    /// Hands `message` of `room` to the store; `sender` (a connection and
    /// its login serial) hears `SENT` once it is committed.
    pub fn append(&mut self, sender: Option<(ConnId, u64)>, room: &str, message: Message) {
        debug_assert!(
            self.in_flight
                .back()
                .is_none_or(|m| m.message.id < message.id),
            "messages reach the store in id order"
        );
        self.requests.push(Request::Append {
            room: room.into(),
            message: message.clone(),
        });
        self.in_flight.push_back(InFlight {
            sender,
            room: room.into(),
            shown: None,
            message,
            accepted: self.now,
        });
    }

    /// A message of the one-to-one conversation stored as `key`, whose
    /// `SENT` names it `shown` (`@peer`).
    pub fn append_direct(
        &mut self,
        sender: Option<(ConnId, u64)>,
        key: &str,
        shown: &str,
        message: Message,
    ) {
        self.append(sender, key, message);
        if let Some(m) = self.in_flight.back_mut() {
            m.shown = Some(shown.into());
        }
    }

    /// Reads of the one-to-one conversation stored as `key` for `conn`,
    /// answered as `shown` (`@peer`).
    pub fn fetch_direct(
        &mut self,
        (conn, serial): (ConnId, u64),
        (key, shown): (&str, &str),
        query: HistoryQuery,
    ) {
        let ticket = self.await_answer(Awaited::History, conn, serial, shown);
        self.requests.push(Request::Fetch {
            ticket,
            room: key.into(),
            query,
        });
    }

    /// Asks which of `name`'s conversations have unread messages, for
    /// `conn`, which waits.
    pub fn unread(&mut self, (conn, serial): (ConnId, u64), name: &str) {
        let ticket = self.await_answer(Awaited::Unread, conn, serial, "");
        self.requests.push(Request::Unread {
            ticket,
            name: name.into(),
        });
    }

    /// Stores that `name` is (`member`), or is no longer, a member of the
    /// invite-only `room`; `owner` for its maker.
    pub fn member(&mut self, room: &str, name: &str, owner: bool, member: bool) {
        self.requests.push(Request::Member {
            room: room.into(),
            name: name.into(),
            owner,
            member,
        });
    }

    /// Marks `name`'s conversation with `peer` read up to `id`.
    pub fn read(&mut self, name: &str, peer: &str, id: MessageId) {
        self.requests.push(Request::Read {
            name: name.into(),
            peer: peer.into(),
            id,
        });
    }

    /// Records that a cluster node applied entry `seq` of its log: a
    /// restart replays accounts, read marks and memberships only past it
    /// (and past the last stored message).
    pub fn applied(&mut self, seq: MessageId) {
        self.requests.push(Request::Applied { seq });
    }

    /// When the oldest message still waiting for the store was handed to it.
    pub fn oldest_in_flight(&self) -> Option<Instant> {
        self.in_flight.front().map(|m| m.accepted)
    }

    /// Asks the store to keep `name`'s session (see [`Request::SaveSession`]).
    pub fn save_session(
        &mut self,
        name: &str,
        hash: TokenHash,
        (rooms, tags): (&[&str], &str),
        ended: bool,
    ) {
        let ended_ms = ended.then(|| self.stamp());
        self.requests.push(Request::SaveSession {
            name: name.into(),
            hash,
            rooms: rooms.join(" ").into(),
            tags: tags.into(),
            ended_ms,
        });
    }

    /// A message resent under a tag it was said with: if `message` still
    /// waits for the store, its `SENT` goes to `sender` (the connection
    /// that resent it) when committed; true if so.
    pub fn resend(&mut self, message: MessageId, sender: (ConnId, u64)) -> bool {
        match self.in_flight.iter_mut().find(|m| m.message.id == message) {
            Some(m) => {
                m.sender = Some(sender);
                true
            }
            None => false,
        }
    }

    /// Asks the store to create an account or change its password (see
    /// [`Request::SaveAccount`]).
    pub fn save_account(&mut self, ticket: u64, name: Box<str>, hash: Secret) {
        self.requests
            .push(Request::SaveAccount { ticket, name, hash });
    }

    /// Asks the store to drop `name`'s session.
    pub fn forget_session(&mut self, name: &str) {
        self.requests
            .push(Request::ForgetSession { name: name.into() });
    }

    /// True while a message of `room` waits for the store: the room's
    /// ring is not the whole truth until it is committed.
    pub fn sending_to(&self, room: &str) -> bool {
        self.in_flight
            .iter()
            .any(|m| Folded::new(&m.room) == Folded::new(room))
    }

    /// Asks the store for the messages of `room` that `query` names, for
    /// `conn` (login `serial`), to answer `what` (a `HISTORY` or a replay).
    pub fn fetch(
        &mut self,
        (conn, serial): (ConnId, u64),
        room: &str,
        query: HistoryQuery,
        what: Awaited,
    ) {
        let ticket = self.await_answer(what, conn, serial, room);
        self.requests.push(Request::Fetch {
            ticket,
            room: room.into(),
            query,
        });
    }

    /// Asks the store how `room` was first spelled and what of its history
    /// it holds, for `conn` (login `serial`), who joins it.
    pub fn lookup(&mut self, conn: ConnId, serial: u64, room: &str) {
        self.lookup_for(Awaited::Join, conn, serial, room);
    }

    /// Asks how `room` was first spelled, if it was, for `what`.
    pub fn lookup_for(&mut self, what: Awaited, conn: ConnId, serial: u64, room: &str) {
        let ticket = self.await_answer(what, conn, serial, room);
        self.requests.push(Request::Lookup {
            ticket,
            room: room.into(),
        });
    }

    fn await_answer(&mut self, what: Awaited, conn: ConnId, serial: u64, room: &str) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let pending = Pending {
            what,
            conn,
            serial,
            room: room.into(),
        };
        self.pending.insert(ticket, pending);
        ticket
    }

    /// What the answer under `ticket` is awaited for, if it is.
    pub fn awaited(&self, ticket: u64) -> Option<Awaited> {
        self.pending.get(&ticket).map(|p| p.what)
    }

    /// Who waited for `ticket`'s answer, if it asked for `what`.
    pub fn answered(&mut self, ticket: u64, what: Awaited) -> Option<Pending> {
        let pending = self.pending.remove(&ticket)?;
        debug_assert_eq!(
            pending.what, what,
            "the store answered ticket {ticket} wrongly"
        );
        (pending.what == what).then_some(pending)
    }

    /// The store committed every message up to `through` and lets ids up
    /// to `reserved` be handed out: the messages so settled, oldest first.
    pub fn committed(&mut self, through: MessageId, reserved: MessageId) -> Drain<'_, InFlight> {
        self.reserved = self.reserved.max(reserved);
        self.settle(through)
    }

    /// The store could not commit the messages up to `through`: those
    /// messages, oldest first.
    pub fn failed(&mut self, through: MessageId) -> Drain<'_, InFlight> {
        self.settle(through)
    }

    fn settle(&mut self, through: MessageId) -> Drain<'_, InFlight> {
        let settled = self.in_flight.partition_point(|m| m.message.id <= through);
        self.in_flight.drain(..settled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Anchor;

    fn journal(next_id: MessageId, reserved: MessageId) -> Journal {
        let stored = Stored {
            next_id,
            reserved,
            sessions: Vec::new(),
            accounts: Vec::new(),
            members: Vec::new(),
        };
        Journal::new(stored, WallClock::new(Instant::now(), 1_000))
    }

    #[test]
    fn ids_grow_up_to_the_reservation_and_a_commit_raises_it() {
        let mut j = journal(5, 6);
        assert_eq!(j.next_id(), Ok(5));
        assert_eq!(j.next_id(), Ok(6));
        assert_eq!(j.next_id(), Err(ProtocolError::StorageUnavailable));
        assert_eq!(j.last_id(), 6, "a refused message takes no id");
        assert_eq!(j.committed(0, 10).count(), 0);
        assert_eq!(j.next_id(), Ok(7));
        assert_eq!(j.committed(0, 3).count(), 0);
        assert_eq!(j.next_id(), Ok(8), "a reservation never shrinks");
    }

    #[test]
    fn messages_settle_in_id_order_and_tell_their_room_until_then() {
        let mut j = journal(1, 100);
        for room in ["#a", "#b", "#A"] {
            let id = j.next_id().unwrap();
            let (from, text) = ("amy".into(), "hi".into());
            let ms = j.stamp();
            j.append(Some((7, 1)), room, Message { id, ms, from, text });
        }
        assert_eq!(j.in_flight(), 3);
        assert!(j.sending_to("#A") && j.sending_to("#b") && !j.sending_to("#c"));
        let requests: Vec<Request> = j.take_requests().collect();
        assert_eq!(requests.len(), 3);
        assert!(matches!(&requests[0], Request::Append { room, message }
            if &**room == "#a" && message.id == 1 && message.ms == 1_000));
        let settled: Vec<MessageId> = j.committed(2, 100).map(|m| m.message.id).collect();
        assert_eq!(settled, [1, 2]);
        assert!(!j.sending_to("#b") && j.sending_to("#a"), "#A is #a");
        let failed: Vec<String> = j.failed(3).map(|m| m.room.to_string()).collect();
        assert_eq!(failed, ["#A"]);
        assert_eq!(j.in_flight(), 0);
    }

    #[test]
    fn each_answer_finds_its_asker_once() {
        let mut j = journal(1, 100);
        let query = HistoryQuery {
            anchor: Anchor::Latest,
            limit: 5,
        };
        j.fetch((3, 9), "#a", query, Awaited::History);
        j.lookup(4, 2, "#B");
        let tickets: Vec<(u64, Awaited)> = j
            .take_requests()
            .map(|r| match r {
                Request::Fetch { ticket, .. } => (ticket, Awaited::History),
                Request::Lookup { ticket, .. } => (ticket, Awaited::Join),
                other => panic!("only reads were asked: {other:?}"),
            })
            .collect();
        let (fetch, lookup) = (tickets[0], tickets[1]);
        let asker = j.answered(lookup.0, lookup.1).expect("the joiner");
        assert_eq!((asker.conn, asker.serial, &*asker.room), (4, 2, "#B"));
        assert!(j.answered(lookup.0, lookup.1).is_none(), "answered once");
        let asker = j.answered(fetch.0, fetch.1).expect("the reader");
        assert_eq!((asker.conn, asker.serial, &*asker.room), (3, 9, "#a"));
    }
}

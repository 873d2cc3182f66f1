//! One-to-one conversations between registered users, stored like rooms.
//!
//! `SAY @bob <text>` is stored under the pair's key (`@alice@bob`, see
//! `history::conversation`), with an id from the rooms' id space, and
//! answered `SENT @bob <id>` once committed; bob, if he is online here,
//! gets `SAY @alice <id> alice <text>` at once. `HISTORY @bob ...` reads
//! the conversation from the store, for its two people only. A read mark
//! per person and conversation (`READ @bob <id>`) says what is new: a
//! registered user who logs in is told, after `OK`, which conversations
//! hold messages they have not read (`UNREAD @bob <count> <after>`, then
//! `END UNREAD`), and the connection reads nothing more until that list
//! is sent, so it comes before any other answer. A v1 `DM` is not stored
//! and stays exactly as it was.

use super::cluster::OwnKind;
use super::event::Event;
use super::history::{conversation, Message};
use super::journal::Awaited;
use super::{Chat, ConnId, Outbox, Step};
use crate::protocol::reply::MessageId;
use crate::protocol::text::{valid_name, valid_tag};
use crate::protocol::{HistoryQuery, ProtocolError, Reply};

/// How a conversation with `name` is named on the wire: `@` and the name
/// lower-cased, the same in every line about it, however it was typed.
pub(super) fn conversation_name(name: &str) -> String {
    format!("@{}", name.to_ascii_lowercase())
}

impl Chat {
    /// The sender's and the peer's names for a conversation with `@peer`:
    /// both must have an account.
    fn pair(&self, id: ConnId, target: &str) -> Result<(String, String), ProtocolError> {
        let me = self.users.name(id).ok_or(ProtocolError::NotLoggedIn)?;
        if !self.accounts.is_registered(me) {
            return Err(ProtocolError::NoAccount);
        }
        let peer = target.strip_prefix('@').unwrap_or(target);
        if !valid_name(peer) || !self.accounts.is_registered(peer) {
            return Err(ProtocolError::NoSuchUser);
        }
        Ok((me.to_string(), peer.to_string()))
    }

    /// `SAY @<name> <text>`: stored, `SENT` after the commit, delivered at
    /// once if the peer is online here.
    pub(super) fn say_direct(
        &mut self,
        id: ConnId,
        (target, tag): (&str, Option<&str>),
        text: &str,
        out: &mut impl Outbox,
    ) -> Result<Step, ProtocolError> {
        let (me, peer) = self.pair(id, target)?;
        if text.is_empty() {
            return Err(ProtocolError::EmptyMessage);
        }
        if tag.is_some_and(|t| !valid_tag(t)) {
            return Err(ProtocolError::BadTag);
        }
        let serial = self.users.serial(id).unwrap_or_default();
        let shown = conversation_name(&peer);
        if self.resent((id, serial), tag, out) {
            return Ok(Step::Continue);
        }
        // In a cluster the log numbers it.
        let said = if self.cluster.is_some() {
            0
        } else {
            self.journal.next_id()?
        };
        let direct = Event::Direct {
            from: &me,
            to: &peer,
            id: said,
            ms: self.journal.stamp(),
            text,
        };
        if self.publish(&direct, OwnKind::Say(id, serial, tag)) {
            return Ok(Step::Continue);
        }
        self.record(direct, Some((id, serial)), true, out);
        if let Some(tag) = tag {
            self.users.tag(id, tag, &shown, said);
            self.save_session(id, false);
        }
        Ok(Step::Continue)
    }

    /// Applies a direct message: the peer gets it if online here, and the
    /// store keeps it (if `fresh`: not stored before a restart), telling
    /// the sender (`asker`) `SENT` once committed.
    pub(super) fn direct(
        &mut self,
        (from, to, id, ms, text): (&str, &str, MessageId, u64, &str),
        asker: Option<(ConnId, u64)>,
        fresh: bool,
        out: &mut impl Outbox,
    ) {
        // A restarted node's replay is not news to anyone.
        if !fresh {
            return;
        }
        if let Some(peer) = self.users.find(to) {
            self.scratch.clear();
            Reply::Said {
                room: &conversation_name(from),
                id,
                from,
                text,
            }
            .write_to(&mut self.scratch);
            out.send(peer, &self.scratch);
        }
        let message = Message {
            id,
            ms,
            from: from.into(),
            text: text.into(),
        };
        let key = conversation(from, to);
        self.journal
            .append_direct(asker, &key, &conversation_name(to), message);
    }

    /// `HISTORY @<name> ...`: the conversation, from the store.
    pub(super) fn history_direct(
        &mut self,
        id: ConnId,
        target: &str,
        args: &str,
    ) -> Result<Step, ProtocolError> {
        let (me, peer) = self.pair(id, target)?;
        let query = HistoryQuery::parse(args)?;
        let serial = self.users.serial(id).unwrap_or_default();
        let key = conversation(&me, &peer);
        self.journal
            .fetch_direct((id, serial), (&key, &conversation_name(&peer)), query);
        Ok(Step::Wait)
    }

    /// `READ @<name> <id>`: the read mark moves forward.
    pub(super) fn mark_read(
        &mut self,
        id: ConnId,
        target: &str,
        upto: &str,
    ) -> Result<Step, ProtocolError> {
        let (me, peer) = self.pair(id, target)?;
        let upto: MessageId = upto.parse().map_err(|_| ProtocolError::BadId)?;
        let read = Event::Read {
            name: &me,
            peer: &peer,
            id: upto,
        };
        if !self.publish(&read, OwnKind::Quiet) {
            self.journal.read(&me, &peer, upto);
        }
        Ok(Step::Continue)
    }

    /// A registered user just logged in on `conn`: it waits for the list
    /// of its unread conversations. Anyone else goes on at once.
    pub(super) fn after_welcome(&mut self, conn: ConnId) -> Step {
        match self.users.name(conn) {
            Some(name) if self.accounts.is_registered(name) => {
                let name = name.to_string();
                let serial = self.users.serial(conn).unwrap_or_default();
                self.journal.unread((conn, serial), &name);
                Step::Wait
            }
            _ => Step::LoggedIn,
        }
    }

    /// The store's list of unread conversations: `UNREAD` lines, then
    /// `END UNREAD`, and the connection is logged in for good.
    pub(super) fn unread_answered(
        &mut self,
        ticket: u64,
        conversations: Option<Vec<(Box<str>, u64, MessageId)>>,
        out: &mut impl Outbox,
    ) -> Option<(ConnId, Step)> {
        let (conn, _) = self.answered(ticket, Awaited::Unread)?;
        self.scratch.clear();
        for (peer, count, after) in conversations.iter().flatten() {
            Reply::Unread {
                peer,
                count: *count,
                after: *after,
            }
            .write_to(&mut self.scratch);
        }
        Reply::EndUnread.write_to(&mut self.scratch);
        out.send(conn, &self.scratch);
        Some((conn, Step::LoggedIn))
    }
}

//! Invite-only rooms: who may join, read and list them.
//!
//! A registered user makes one with `JOIN <room> invite-only`, if no room
//! of that name exists (in memory or in the store), and owns it. The owner
//! `INVITE`s members and `REMOVE`s them; anyone else's `JOIN` is refused
//! with `ERR not-invited`, and `ROOMS` and `WHO <room>` show the room to
//! its members only. `HISTORY` needs the room joined, so it follows. The
//! membership is stored (written before any message of the room can be,
//! so a room's messages are never public without it) and loaded at start.

use std::collections::{HashMap, HashSet};

use super::journal::Awaited;
use super::name::{Folded, NameKey};
use super::{Chat, ConnId, Outbox, Step};
use crate::protocol::text::{split_word, valid_name};
use crate::protocol::{ProtocolError, Reply};

/// The word after the room that makes a `JOIN` create an invite-only room.
const INVITE_ONLY: &str = "invite-only";

/// One invite-only room's people.
#[derive(Debug, Default)]
struct Members {
    owner: Box<str>,
    names: HashSet<NameKey>,
}

/// Every invite-only room, by name.
#[derive(Debug, Default)]
pub struct Private {
    rooms: HashMap<NameKey, Members>,
}

impl Private {
    /// The memberships the store holds: room, name, owner.
    pub fn new(stored: Vec<(Box<str>, Box<str>, bool)>) -> Private {
        let mut private = Private::default();
        for (room, name, owner) in stored {
            let members = private.rooms.entry(NameKey::new(&room)).or_default();
            if owner {
                members.owner = name.clone();
            }
            members.names.insert(NameKey::new(&name));
        }
        private
    }

    /// True if `room` is invite-only.
    pub fn is_private(&self, room: &str) -> bool {
        self.rooms.contains_key(Folded::new(room))
    }

    /// True if `name` may be in `room`: it is public, or `name` is invited.
    pub fn admits(&self, room: &str, name: &str) -> bool {
        self.rooms
            .get(Folded::new(room))
            .is_none_or(|m| m.names.contains(Folded::new(name)))
    }
}

impl Chat {
    /// `JOIN <room> invite-only`: the room is looked up in the store and
    /// made if it is nowhere.
    pub(super) fn create_private(&mut self, id: ConnId, room: &str) -> Result<Step, ProtocolError> {
        let room = self.room_arg(id, room)?;
        let me = self.users.name(id).unwrap_or_default();
        if !self.accounts.is_registered(me) {
            return Err(ProtocolError::NoAccount);
        }
        if self.rooms.find(room).is_some() || self.private.is_private(room) {
            return Err(ProtocolError::RoomExists);
        }
        if self.rooms.count_of(id) >= self.limits.max_rooms {
            return Err(ProtocolError::TooManyRooms);
        }
        let serial = self.users.serial(id).unwrap_or_default();
        self.journal.lookup_for(Awaited::Create, id, serial, room);
        Ok(Step::Wait)
    }

    /// The store said whether `room` exists: if not, it is made, owned by
    /// `conn`, which joins it.
    pub(super) fn private_looked(
        &mut self,
        conn: ConnId,
        room: &str,
        stored: bool,
        out: &mut impl Outbox,
    ) -> Option<(ConnId, Step)> {
        if stored || self.rooms.find(room).is_some() || self.private.is_private(room) {
            self.reply(conn, Reply::Err(ProtocolError::RoomExists), out);
            return Some((conn, Step::Continue));
        }
        let owner: Box<str> = self.users.name(conn)?.into();
        let mut members = Members {
            owner: owner.clone(),
            names: HashSet::new(),
        };
        members.names.insert(NameKey::new(&owner));
        self.private.rooms.insert(NameKey::new(room), members);
        self.journal.member(room, &owner, true, true);
        let r = self.open_room(room, self.journal.last_id());
        Some((conn, self.enter(conn, r, out)))
    }

    /// True unless `room` is invite-only and `id` is not in it.
    pub(super) fn admitted(&self, id: ConnId, room: &str) -> bool {
        self.users
            .name(id)
            .is_some_and(|name| self.private.admits(room, name))
    }

    /// `JOIN` with words after the room: `invite-only` makes one; anything
    /// else is the invalid room v2 always said it was.
    pub(super) fn join_with(
        &mut self,
        id: ConnId,
        rest: &str,
        out: &mut impl Outbox,
    ) -> Result<Step, ProtocolError> {
        match split_word(rest) {
            (room, INVITE_ONLY) => self.create_private(id, room),
            (_, "") => self.join(id, rest, out),
            _ => {
                self.room_arg(id, rest)?;
                Err(ProtocolError::InvalidRoom)
            }
        }
    }

    /// The owner's check for `INVITE` and `REMOVE`: the room's spelling,
    /// and the target's name as registered.
    fn owned(
        &self,
        id: ConnId,
        room: &str,
        target: &str,
    ) -> Result<(Box<str>, Box<str>), ProtocolError> {
        let room = self.room_arg(id, room)?;
        let me = self.users.name(id).unwrap_or_default();
        let members = self
            .private
            .rooms
            .get(Folded::new(room))
            .filter(|m| m.names.contains(Folded::new(me)))
            .ok_or(ProtocolError::NoSuchRoom)?;
        if !Folded::new(&members.owner).eq(Folded::new(me)) {
            return Err(ProtocolError::NotOwner);
        }
        if !valid_name(target) || !self.accounts.is_registered(target) {
            return Err(ProtocolError::NoSuchUser);
        }
        let spelling = match self.rooms.find(room) {
            Some(r) => self.rooms.name(r).into(),
            None => room.into(),
        };
        Ok((spelling, target.into()))
    }

    /// `INVITE <room> <name>`, by the room's owner.
    pub(super) fn invite(
        &mut self,
        id: ConnId,
        room: &str,
        target: &str,
        out: &mut impl Outbox,
    ) -> Result<Step, ProtocolError> {
        let (room, target) = self.owned(id, room, target)?;
        if let Some(members) = self.private.rooms.get_mut(Folded::new(&room)) {
            if members.names.insert(NameKey::new(&target)) {
                self.journal.member(&room, &target, false, true);
            }
        }
        self.reply(
            id,
            Reply::Invited {
                room: &room,
                name: &target,
            },
            out,
        );
        if let Some(to) = self.users.find(&target).filter(|&to| to != id) {
            let owner: Box<str> = self.users.name(id).unwrap_or_default().into();
            self.reply(
                to,
                Reply::InvitedBy {
                    room: &room,
                    owner: &owner,
                },
                out,
            );
        }
        Ok(Step::Continue)
    }

    /// `REMOVE <room> <name>`, by the room's owner: a member in the room
    /// leaves it at once.
    pub(super) fn remove_member(
        &mut self,
        id: ConnId,
        room: &str,
        target: &str,
        out: &mut impl Outbox,
    ) -> Result<Step, ProtocolError> {
        let (room, target) = self.owned(id, room, target)?;
        let members = self
            .private
            .rooms
            .get_mut(Folded::new(&room))
            .ok_or(ProtocolError::NoSuchRoom)?;
        // The owner stays: a room always has one.
        if Folded::new(&members.owner).eq(Folded::new(&target))
            || !members.names.remove(Folded::new(&target))
        {
            return Err(ProtocolError::NoSuchUser);
        }
        self.journal.member(&room, &target, false, false);
        self.reply(
            id,
            Reply::Removed {
                room: &room,
                name: &target,
            },
            out,
        );
        // Someone removed while in the room leaves it now, as by PART.
        if let Some(to) = self.users.find(&target) {
            let inside = self
                .rooms
                .find(&room)
                .is_some_and(|r| self.rooms.is_member(to, r));
            if inside {
                let _ = self.part(to, &room, out);
            }
        }
        Ok(Step::Continue)
    }
}

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

use super::event::Event;
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
    /// How many rooms each owner made: an invite-only room lasts, so a
    /// user may make only `--max-rooms` of them.
    owned: HashMap<NameKey, usize>,
}

impl Private {
    /// The memberships the store holds: room, name, owner.
    pub fn new(stored: Vec<(Box<str>, Box<str>, bool)>) -> Private {
        let mut private = Private::default();
        for (room, name, owner) in stored {
            let members = private.rooms.entry(NameKey::new(&room)).or_default();
            if owner {
                members.owner = name.clone();
                *private.owned.entry(NameKey::new(&name)).or_default() += 1;
            }
            members.names.insert(NameKey::new(&name));
        }
        private
    }

    /// How many invite-only rooms `name` made.
    fn owned_by(&self, name: &str) -> usize {
        self.owned.get(Folded::new(name)).copied().unwrap_or(0)
    }

    /// True if `room` is invite-only.
    pub fn is_private(&self, room: &str) -> bool {
        self.rooms.contains_key(Folded::new(room))
    }

    /// Makes `room` invite-only, owned by `owner`, its first member.
    fn create(&mut self, room: &str, owner: &str) {
        let mut members = Members {
            owner: owner.into(),
            names: HashSet::new(),
        };
        members.names.insert(NameKey::new(owner));
        self.rooms.insert(NameKey::new(room), members);
        *self.owned.entry(NameKey::new(owner)).or_default() += 1;
    }

    /// Adds `name` to the invite-only `room`; true if it was not in it.
    fn invite(&mut self, room: &str, name: &str) -> bool {
        self.rooms
            .get_mut(Folded::new(room))
            .is_some_and(|m| m.names.insert(NameKey::new(name)))
    }

    /// Takes `name` out of the invite-only `room`; true if it was a member
    /// other than the owner, who stays: a room always has one.
    fn remove(&mut self, room: &str, name: &str) -> bool {
        self.removable(room, name)
            && self
                .rooms
                .get_mut(Folded::new(room))
                .is_some_and(|m| m.names.remove(Folded::new(name)))
    }

    /// True if `name` is a member of the invite-only `room` other than
    /// its owner.
    fn removable(&self, room: &str, name: &str) -> bool {
        self.rooms.get(Folded::new(room)).is_some_and(|m| {
            !Folded::new(&m.owner).eq(Folded::new(name)) && m.names.contains(Folded::new(name))
        })
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
        // Joined, or made: an invite-only room outlives its members, and
        // each one is memory for as long as the server runs.
        if self.rooms.count_of(id) >= self.limits.max_rooms
            || self.private.owned_by(me) >= self.limits.max_rooms
        {
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
        let created = Event::Created {
            room,
            owner: &owner,
        };
        self.share(created, conn, out)
    }

    /// Applies the making of `room`, owned by `owner`, unless a room of
    /// that name came first; the owner's connection (`asker`) joins it.
    pub(super) fn created(
        &mut self,
        (room, owner): (&str, &str),
        asker: Option<ConnId>,
        fresh: bool,
        out: &mut impl Outbox,
    ) -> Option<(ConnId, Step)> {
        if self.rooms.find(room).is_some() || self.private.is_private(room) {
            let conn = asker?;
            self.reply(conn, Reply::Err(ProtocolError::RoomExists), out);
            return Some((conn, Step::Continue));
        }
        self.private.create(room, owner);
        if fresh {
            self.journal.member(room, owner, true, true);
        }
        let conn = asker?;
        match self.enter_named(conn, room, out) {
            Step::Wait => None,
            step => Some((conn, step)),
        }
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
        let by: Box<str> = self.users.name(id).unwrap_or_default().into();
        let invited = Event::Invited {
            room: &room,
            name: &target,
            by: &by,
        };
        Ok(self.share_step(invited, id, out))
    }

    /// Applies `by`'s invitation of `name` to `room`: the owner's
    /// connection (`asker`) hears `INVITED`, the one invited `INVITE`.
    pub(super) fn invited(
        &mut self,
        (room, name, by): (&str, &str, &str),
        asker: Option<ConnId>,
        fresh: bool,
        out: &mut impl Outbox,
    ) -> Option<(ConnId, Step)> {
        if self.private.invite(room, name) && fresh {
            self.journal.member(room, name, false, true);
        }
        if let Some(to) = self.users.find(name).filter(|&to| Some(to) != asker) {
            self.reply(to, Reply::InvitedBy { room, owner: by }, out);
        }
        let conn = asker?;
        self.reply(conn, Reply::Invited { room, name }, out);
        Some((conn, Step::Continue))
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
        if !self.private.removable(&room, &target) {
            return Err(ProtocolError::NoSuchUser);
        }
        let removed = Event::Removed {
            room: &room,
            name: &target,
        };
        Ok(self.share_step(removed, id, out))
    }

    /// Applies the removal of `name` from `room`: the owner's connection
    /// (`asker`) hears `REMOVED`, and a member in the room leaves it, as
    /// by `PART`, on every node alike.
    pub(super) fn removed(
        &mut self,
        (room, name): (&str, &str),
        asker: Option<ConnId>,
        fresh: bool,
        out: &mut impl Outbox,
    ) -> Option<(ConnId, Step)> {
        if !self.private.remove(room, name) {
            // Removed (or made owner) by an earlier entry of the log.
            let conn = asker?;
            self.reply(conn, Reply::Err(ProtocolError::NoSuchUser), out);
            return Some((conn, Step::Continue));
        }
        if fresh {
            self.journal.member(room, name, false, false);
        }
        if let Some(conn) = asker {
            self.reply(conn, Reply::Removed { room, name }, out);
        }
        self.apply(Event::Left { room, name }, out);
        if let Some(to) = self.users.find(name) {
            self.save_session(to, false);
        }
        asker.map(|conn| (conn, Step::Continue))
    }
}

//! The room registry: which connections are in which rooms.
//!
//! A join is O(1); a part and a departure are O(rooms the user is in),
//! which `--max-rooms` bounds. A room exists while it has members and keeps
//! the spelling it was created with; so does its history log, which is
//! handed back when the last member leaves. In a cluster a room's members
//! on other nodes are held by name: they count and are listed; this
//! node's connections are what a fan-out here reaches.
//!
//! Invariant: connection `c` has a seat `(r, p)` exactly when
//! `rooms[r].members[p] == c`; a remote user lists room `r` exactly when
//! `rooms[r].remote` holds its name; every room has at least one member.

use std::collections::{HashMap, HashSet};

use slab::Slab;

use super::history::LogId;
use super::name::{Folded, NameKey};
use super::ConnId;

/// Identifies a room while it exists.
pub type RoomId = usize;

#[derive(Debug)]
struct Room {
    name: Box<str>,
    /// This node's members, dense, for fan-out.
    members: Vec<ConnId>,
    /// Members on other nodes.
    remote: HashSet<NameKey>,
    /// The room's recent history, open while the room exists.
    log: LogId,
}

impl Room {
    fn is_empty(&self) -> bool {
        self.members.is_empty() && self.remote.is_empty()
    }
}

/// Where one connection sits: the room, and its index in that room's members.
#[derive(Debug, Clone, Copy)]
struct Seat {
    room: RoomId,
    pos: usize,
}

/// Every room with members, found by case-insensitive name.
#[derive(Debug, Default)]
pub struct Rooms {
    rooms: Slab<Room>,
    by_name: HashMap<NameKey, RoomId>,
    /// Indexed by connection id: the rooms it is in, in no particular order.
    seats: Vec<Vec<Seat>>,
    /// The rooms each member on another node is in.
    remote_seats: HashMap<NameKey, Vec<RoomId>>,
}

impl Rooms {
    /// Number of rooms with members.
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// True when no room has members.
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// The room called `name`, in any case.
    pub fn find(&self, name: &str) -> Option<RoomId> {
        self.by_name.get(Folded::new(name)).copied()
    }

    /// The room's name as it was first spelled.
    pub fn name(&self, room: RoomId) -> &str {
        &self.rooms[room].name
    }

    /// The room's members on this node, in no particular order.
    pub fn members(&self, room: RoomId) -> &[ConnId] {
        &self.rooms[room].members
    }

    /// How many members the room has, on every node.
    pub fn count(&self, room: RoomId) -> usize {
        let r = &self.rooms[room];
        r.members.len() + r.remote.len()
    }

    /// The names of the room's members on other nodes.
    pub fn remote_members(&self, room: RoomId) -> impl Iterator<Item = &str> {
        self.rooms[room].remote.iter().map(NameKey::as_str)
    }

    /// True when `name`, on another node, is in `room`.
    pub fn is_remote_member(&self, name: &str, room: RoomId) -> bool {
        self.rooms[room].remote.contains(Folded::new(name))
    }

    /// One room `name`, on another node, is in, if any.
    pub fn any_of_remote(&self, name: &str) -> Option<RoomId> {
        self.remote_seats.get(Folded::new(name))?.last().copied()
    }

    /// Puts `name`, a user on another node, in `room`. The caller has
    /// checked that it is not in it.
    pub fn join_remote(&mut self, name: &str, room: RoomId) {
        let fresh = self.rooms[room].remote.insert(NameKey::new(name));
        debug_assert!(fresh, "{name} joined twice");
        match self.remote_seats.get_mut(Folded::new(name)) {
            Some(rooms) => rooms.push(room),
            None => {
                self.remote_seats.insert(NameKey::new(name), vec![room]);
            }
        }
    }

    /// Takes `name`, a user on another node, out of `room` (if it is in
    /// it), removing the room once it is empty. Returns the log of a room
    /// so removed, to be closed.
    pub fn part_remote(&mut self, name: &str, room: RoomId) -> Option<LogId> {
        let key = Folded::new(name);
        if !self.rooms[room].remote.remove(key) {
            return None;
        }
        if let Some(rooms) = self.remote_seats.get_mut(key) {
            rooms.retain(|&r| r != room);
            if rooms.is_empty() {
                self.remote_seats.remove(key);
            }
        }
        self.remove_if_empty(room)
    }

    /// Removes `room` if nobody is in it; returns its log then.
    fn remove_if_empty(&mut self, room: RoomId) -> Option<LogId> {
        if !self.rooms[room].is_empty() {
            return None;
        }
        let gone = self.rooms.remove(room);
        self.by_name.remove(Folded::new(&gone.name));
        Some(gone.log)
    }

    /// How many rooms `id` is in.
    pub fn count_of(&self, id: ConnId) -> usize {
        self.seats.get(id).map_or(0, Vec::len)
    }

    /// One room `id` is in, if any (the one it would leave first).
    pub fn any_of(&self, id: ConnId) -> Option<RoomId> {
        self.seats.get(id)?.last().map(|seat| seat.room)
    }

    /// True when `id` is in `room`.
    pub fn is_member(&self, id: ConnId, room: RoomId) -> bool {
        self.seat_index(id, room).is_some()
    }

    fn seat_index(&self, id: ConnId, room: RoomId) -> Option<usize> {
        self.seats.get(id)?.iter().position(|s| s.room == room)
    }

    /// The room's history log.
    pub fn log(&self, room: RoomId) -> LogId {
        self.rooms[room].log
    }

    /// Creates the room `name`, with no members yet and `log` for its
    /// history. The caller has checked that no room has that name and puts
    /// a member in it at once.
    pub fn create(&mut self, name: &str, log: LogId) -> RoomId {
        debug_assert!(self.find(name).is_none(), "{name} created twice");
        let room = self.rooms.insert(Room {
            name: name.into(),
            members: Vec::new(),
            remote: HashSet::new(),
            log,
        });
        self.by_name.insert(NameKey::new(name), room);
        room
    }

    /// Puts `id` in `room`. The caller has checked that `id` is not in it.
    pub fn join(&mut self, id: ConnId, room: RoomId) {
        debug_assert!(!self.is_member(id, room), "conn {id} joined twice");
        let members = &mut self.rooms[room].members;
        if self.seats.len() <= id {
            self.seats.resize_with(id + 1, Vec::new);
        }
        self.seats[id].push(Seat {
            room,
            pos: members.len(),
        });
        members.push(id);
    }

    /// Takes `id` out of `room` (if it is in it), removing the room once it
    /// is empty. Returns the log of a room so removed, to be closed.
    pub fn part(&mut self, id: ConnId, room: RoomId) -> Option<LogId> {
        let index = self.seat_index(id, room)?;
        let seat = self.seats[id].swap_remove(index);
        if self.seats[id].is_empty() {
            // Most connections never join a room again; give the memory back.
            self.seats[id] = Vec::new();
        }
        let members = &mut self.rooms[room].members;
        members.swap_remove(seat.pos);
        if let Some(&moved) = members.get(seat.pos) {
            if let Some(s) = self.seats[moved].iter_mut().find(|s| s.room == room) {
                s.pos = seat.pos;
            }
        }
        self.remove_if_empty(room)
    }

    /// Moves every seat of `id` to `name`, a user known by name only: a
    /// departure on its way through the cluster's log, while `id` may be
    /// reused.
    pub fn detach(&mut self, id: ConnId, name: &str) {
        while let Some(room) = self.any_of(id) {
            self.join_remote(name, room);
            // The remote seat keeps the room: nothing is handed back.
            let closed = self.part(id, room);
            debug_assert!(closed.is_none(), "a detached member emptied a room");
        }
    }

    /// Moves every seat of `name`, a user known by name only, to `id`,
    /// which is in no room: a session taken over from another node.
    pub fn attach(&mut self, name: &str, id: ConnId) {
        while let Some(room) = self.any_of_remote(name) {
            self.join(id, room);
            let closed = self.part_remote(name, room);
            debug_assert!(closed.is_none(), "an attached member emptied a room");
        }
    }

    /// The rooms `id` is in, by spelling, sorted by lower-cased name.
    pub fn names_of(&self, id: ConnId) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .seats
            .get(id)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(|seat| &*self.rooms[seat.room].name)
            .collect();
        names.sort_unstable_by(|a, b| Folded::new(a).cmp(Folded::new(b)));
        names
    }

    /// Moves every seat of `old` to `new`, which is in no room.
    pub fn rebind(&mut self, old: ConnId, new: ConnId) {
        let seats = match self.seats.get_mut(old) {
            Some(seats) => std::mem::take(seats),
            None => return,
        };
        for seat in &seats {
            self.rooms[seat.room].members[seat.pos] = new;
        }
        if self.seats.len() <= new {
            self.seats.resize_with(new + 1, Vec::new);
        }
        debug_assert!(self.seats[new].is_empty(), "conn {new} already seated");
        self.seats[new] = seats;
    }

    /// Every room and its member count, sorted by lower-cased name.
    pub fn sorted(&self) -> Vec<(&str, usize)> {
        let mut rooms: Vec<(&str, usize)> = self
            .rooms
            .iter()
            .map(|(_, r)| (&*r.name, r.members.len() + r.remote.len()))
            .collect();
        rooms.sort_unstable_by(|a, b| Folded::new(a.0).cmp(Folded::new(b.0)));
        rooms
    }

    /// Checks the registry's invariants; for tests and fuzzing.
    pub fn check_invariants(&self) {
        assert_eq!(self.rooms.len(), self.by_name.len());
        let mut seats = 0;
        for (room, r) in &self.rooms {
            assert!(!r.is_empty(), "room {} is empty", r.name);
            for name in &r.remote {
                let rooms = &self.remote_seats[name];
                assert_eq!(rooms.iter().filter(|&&x| x == room).count(), 1);
            }
            assert_eq!(self.find(&r.name), Some(room));
            for (pos, &id) in r.members.iter().enumerate() {
                let index = self.seat_index(id, room).expect("member without a seat");
                assert_eq!(self.seats[id][index].pos, pos);
            }
            seats += r.members.len();
        }
        assert_eq!(seats, self.seats.iter().map(Vec::len).sum::<usize>());
        let remote: usize = self.rooms.iter().map(|(_, r)| r.remote.len()).sum();
        assert_eq!(
            remote,
            self.remote_seats.values().map(Vec::len).sum::<usize>()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Joins `id` to the room called `name`, creating it (with a log
    /// numbered after its creation order) if nobody is in it.
    fn join(rooms: &mut Rooms, id: ConnId, name: &str) -> RoomId {
        let room = match rooms.find(name) {
            Some(room) => room,
            None => rooms.create(name, rooms.len() + 100),
        };
        rooms.join(id, room);
        room
    }

    #[test]
    fn joins_and_parts_keep_seats_and_members_in_step() {
        let mut rooms = Rooms::default();
        let rust = join(&mut rooms, 3, "#Rust");
        assert_eq!(
            join(&mut rooms, 0, "#rust"),
            rust,
            "names are one in any case"
        );
        assert_eq!(join(&mut rooms, 7, "#RUST"), rust);
        let go = join(&mut rooms, 3, "#go");
        assert_eq!(rooms.name(rust), "#Rust", "the first spelling stays");
        assert_eq!((rooms.log(rust), rooms.log(go)), (100, 101));
        assert_eq!(rooms.count_of(3), 2);
        assert!(rooms.is_member(0, rust) && !rooms.is_member(0, go));
        rooms.check_invariants();
        assert_eq!(rooms.part(3, rust), None, "others are still in it");
        assert_eq!(rooms.part(3, rust), None, "not a member any more");
        rooms.check_invariants();
        assert_eq!(rooms.sorted(), [("#go", 1), ("#Rust", 2)]);
        assert_eq!(
            rooms.part(3, go),
            Some(101),
            "the last one out hands back the log"
        );
        assert_eq!(rooms.find("#go"), None, "an empty room is gone");
        assert_eq!(rooms.count_of(3), 0);
        assert_eq!(rooms.any_of(3), None);
        rooms.check_invariants();
        assert_eq!(rooms.part(0, rust), None);
        assert_eq!(rooms.part(7, rust), Some(100));
        assert!(rooms.is_empty());
        let again = join(&mut rooms, 1, "#rUst");
        assert_eq!(rooms.name(again), "#rUst", "a new room, a new spelling");
        rooms.check_invariants();
        join(&mut rooms, 1, "#b");
        join(&mut rooms, 2, "#B2");
        rooms.rebind(1, 5);
        rooms.check_invariants();
        assert_eq!(rooms.names_of(5), ["#b", "#rUst"]);
        assert!(rooms.names_of(1).is_empty());
    }

    #[test]
    fn members_on_other_nodes_count_and_keep_the_room() {
        let mut rooms = Rooms::default();
        let r = join(&mut rooms, 1, "#mix");
        rooms.join_remote("zed", r);
        rooms.join_remote("Yan", r);
        assert_eq!((rooms.count(r), rooms.members(r)), (3, &[1][..]));
        assert!(rooms.is_remote_member("ZED", r));
        assert_eq!(rooms.sorted(), [("#mix", 3)]);
        assert_eq!(rooms.part(1, r), None, "remote members keep it");
        assert_eq!(rooms.any_of_remote("zed"), Some(r));
        rooms.check_invariants();
        assert_eq!(rooms.part_remote("zed", r), None);
        assert_eq!(rooms.part_remote("zed", r), None, "not in it any more");
        assert_eq!(rooms.any_of_remote("zed"), None);
        assert_eq!(rooms.part_remote("yan", r), Some(100), "the last one out");
        assert!(rooms.is_empty());
        rooms.check_invariants();
    }

    #[test]
    fn a_detached_member_keeps_its_seats_by_name() {
        let mut rooms = Rooms::default();
        let a = join(&mut rooms, 1, "#a");
        let b = join(&mut rooms, 1, "#b");
        join(&mut rooms, 2, "#b");
        rooms.detach(1, "amy");
        rooms.check_invariants();
        assert_eq!((rooms.count(a), rooms.count(b)), (1, 2));
        assert!(rooms.is_remote_member("amy", a) && rooms.is_remote_member("AMY", b));
        assert_eq!((rooms.count_of(1), rooms.members(b)), (0, &[2][..]));
        rooms.attach("Amy", 7);
        rooms.check_invariants();
        assert_eq!(rooms.names_of(7), ["#a", "#b"]);
        assert!(!rooms.is_remote_member("amy", b));
    }
}

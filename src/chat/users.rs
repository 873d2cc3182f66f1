//! The registry of logged-in users: names, and the dense roster broadcasts
//! walk. In a cluster it also holds the users logged in on other nodes, by
//! name only: they count and are listed, and the roster (this node's
//! connections) is what a broadcast here reaches.
//!
//! Invariant: a name is in `by_name` exactly when its connection is logged
//! in, and the roster holds each logged-in connection exactly once, at the
//! position its member records; no name is both local and remote.

use std::collections::{HashMap, HashSet};

use super::name::{Folded, NameKey};
use super::resume::{Tags, Token};
use super::ConnId;

#[derive(Debug)]
struct Member {
    name: Box<str>,
    roster_pos: usize,
    /// Tells this login from a later one on a reused connection id.
    serial: u64,
    token: Option<Token>,
    /// The tags of its recent tagged `SAY`s.
    tags: Tags,
}

/// Who is logged in, under which name, in O(1) per login and departure.
#[derive(Debug, Default)]
pub struct Users {
    /// Indexed by connection id; `Some` while that connection is logged in.
    members: Vec<Option<Member>>,
    /// Logged-in connections, dense, for broadcasts.
    roster: Vec<ConnId>,
    by_name: HashMap<NameKey, ConnId>,
    /// Users logged in on other nodes, each with the index of its node
    /// (its home) in `homes`.
    remote: HashMap<NameKey, u32>,
    /// The homes (node incarnations) remote users live on, each once.
    homes: Vec<Box<str>>,
    /// Homes the cluster declared gone: one entry per dead incarnation,
    /// so an event of theirs the log holds after their burial (sent just
    /// before) brings nobody back.
    buried: HashSet<Box<str>>,
    logins: u64,
}

impl Users {
    /// Number of logged-in users, on every node.
    pub fn len(&self) -> usize {
        self.roster.len() + self.remote.len()
    }

    /// True when nobody is logged in anywhere.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when `name` is logged in here or on another node.
    pub fn is_taken(&self, name: &str) -> bool {
        let key = Folded::new(name);
        self.by_name.contains_key(key) || self.remote.contains_key(key)
    }

    /// Registers `name`, logged in on the node incarnation `home`; false
    /// if it is taken.
    pub fn insert_remote(&mut self, name: &str, home: &str) -> bool {
        if self.is_taken(name) || self.buried.contains(home) {
            return false;
        }
        let home = self.home_index(home);
        self.remote.insert(NameKey::new(name), home);
        true
    }

    fn home_index(&mut self, home: &str) -> u32 {
        match self.homes.iter().position(|h| **h == *home) {
            Some(i) => i as u32,
            None => {
                self.homes.push(home.into());
                (self.homes.len() - 1) as u32
            }
        }
    }

    /// `name`, logged in on another node, lives on `home` from now on.
    pub fn rehome(&mut self, name: &str, home: &str) {
        let index = self.home_index(home);
        if let Some(h) = self.remote.get_mut(Folded::new(name)) {
            *h = index;
        }
    }

    /// Makes `name`, known by name only, the user of `id` (which is not
    /// logged in): a session taken over from another node. False if no
    /// remote user has that name.
    pub fn attach(&mut self, id: ConnId, name: &str) -> bool {
        let Some(name) = self.remove_remote(name) else {
            return false;
        };
        self.insert(id, &name)
    }

    /// Unregisters `name`, logged in on another node; returns its spelling.
    pub fn remove_remote(&mut self, name: &str) -> Option<Box<str>> {
        let (key, _) = self.remote.remove_entry(Folded::new(name))?;
        Some(key.as_str().into())
    }

    /// The spelling of `name` if it is logged in on another node.
    pub fn remote(&self, name: &str) -> Option<&str> {
        let (key, _) = self.remote.get_key_value(Folded::new(name))?;
        Some(key.as_str())
    }

    /// The node incarnation `name`, logged in on another node, lives on.
    pub fn home_of(&self, name: &str) -> Option<&str> {
        let &home = self.remote.get(Folded::new(name))?;
        Some(&self.homes[home as usize])
    }

    /// `home` is gone: nobody lives there again. Returns its users, by
    /// spelling, to depart.
    pub fn bury(&mut self, home: &str) -> Vec<Box<str>> {
        self.buried.insert(home.into());
        self.living_on(home)
    }

    /// True when `home` was declared gone.
    pub fn is_buried(&self, home: &str) -> bool {
        self.buried.contains(home)
    }

    /// The remote users living on `home`, by spelling.
    pub fn living_on(&self, home: &str) -> Vec<Box<str>> {
        let Some(index) = self.homes.iter().position(|h| **h == *home) else {
            return Vec::new();
        };
        self.remote
            .iter()
            .filter(|&(_, &h)| h as usize == index)
            .map(|(name, _)| name.as_str().into())
            .collect()
    }

    /// Turns logged-in `id` into a user of node incarnation `home` known
    /// by name only: a departure on its way through the cluster's log,
    /// while `id` may be reused. Returns the name.
    pub fn detach(&mut self, id: ConnId, home: &str) -> Option<Box<str>> {
        let name = self.remove(id)?;
        self.insert_remote(&name, home);
        Some(name)
    }

    /// The name `id` logged in with, if it has.
    pub fn name(&self, id: ConnId) -> Option<&str> {
        self.members.get(id)?.as_ref().map(|m| &*m.name)
    }

    /// The connection logged in as `name`, in any case.
    pub fn find(&self, name: &str) -> Option<ConnId> {
        self.by_name.get(Folded::new(name)).copied()
    }

    /// Every logged-in connection, in no particular order.
    pub fn roster(&self) -> &[ConnId] {
        &self.roster
    }

    /// Registers `id` as `name`. The caller has checked that `id` is not
    /// logged in and that the name is valid; returns false if it is taken.
    pub fn insert(&mut self, id: ConnId, name: &str) -> bool {
        debug_assert!(self.name(id).is_none(), "conn {id} logged in twice");
        if self.is_taken(name) {
            return false;
        }
        self.by_name.insert(NameKey::new(name), id);
        if self.members.len() <= id {
            self.members.resize_with(id + 1, || None);
        }
        self.logins += 1;
        self.members[id] = Some(Member {
            name: name.into(),
            roster_pos: self.roster.len(),
            serial: self.logins,
            token: None,
            tags: Tags::default(),
        });
        self.roster.push(id);
        true
    }

    /// The serial of `id`'s login: equal serials mean the same login.
    pub fn serial(&self, id: ConnId) -> Option<u64> {
        self.members.get(id)?.as_ref().map(|m| m.serial)
    }

    /// The connection of `login` (a connection and its login serial), if
    /// it is still logged in as that login.
    pub fn still(&self, login: Option<(ConnId, u64)>) -> Option<ConnId> {
        let (id, serial) = login?;
        (self.serial(id) == Some(serial)).then_some(id)
    }

    /// The resume token `id` holds, if it asked for one.
    pub fn token(&self, id: ConnId) -> Option<Token> {
        self.members.get(id)?.as_ref()?.token
    }

    /// The tags of `id`'s recent tagged `SAY`s.
    pub fn tags(&self, id: ConnId) -> Option<&Tags> {
        self.members.get(id)?.as_ref().map(|m| &m.tags)
    }

    /// Remembers that `id` said `tag` in `room` as message `message`.
    pub fn tag(&mut self, id: ConnId, tag: &str, room: &str, message: u64) {
        if let Some(Some(m)) = self.members.get_mut(id) {
            m.tags.push(tag, room, message);
        }
    }

    /// Gives logged-in `id` the tags of the session it took back.
    pub fn set_tags(&mut self, id: ConnId, tags: Tags) {
        if let Some(Some(m)) = self.members.get_mut(id) {
            m.tags = tags;
        }
    }

    /// Gives logged-in `id` a new resume token.
    pub fn set_token(&mut self, id: ConnId, token: Token) {
        if let Some(Some(m)) = self.members.get_mut(id) {
            m.token = Some(token);
        }
    }

    /// Moves the login of `old` (name, token, serial) to `new`, which is
    /// not logged in: a resumed session taking over from its ghost.
    pub fn rebind(&mut self, old: ConnId, new: ConnId) {
        debug_assert!(self.name(new).is_none(), "conn {new} logged in twice");
        let Some(member) = self.members.get_mut(old).and_then(Option::take) else {
            return;
        };
        if self.members.len() <= new {
            self.members.resize_with(new + 1, || None);
        }
        self.roster[member.roster_pos] = new;
        if let Some(id) = self.by_name.get_mut(Folded::new(&member.name)) {
            *id = new;
        }
        self.members[new] = Some(member);
    }

    /// Unregisters `id`, returning its name if it was logged in.
    pub fn remove(&mut self, id: ConnId) -> Option<Box<str>> {
        let member = self.members.get_mut(id)?.take()?;
        self.by_name.remove(Folded::new(&member.name));
        self.roster.swap_remove(member.roster_pos);
        if let Some(&moved) = self.roster.get(member.roster_pos) {
            if let Some(m) = self.members[moved].as_mut() {
                m.roster_pos = member.roster_pos;
            }
        }
        Some(member.name)
    }

    /// Every name, on every node, sorted case-insensitively.
    pub fn sorted_names(&self) -> Vec<&str> {
        let mut names = self.sorted_names_of(&self.roster);
        names.extend(self.remote.keys().map(NameKey::as_str));
        names.sort_unstable_by(|a, b| Folded::new(a).cmp(Folded::new(b)));
        names
    }

    /// The names of those of `ids` who are logged in, sorted case-insensitively.
    pub fn sorted_names_of(&self, ids: &[ConnId]) -> Vec<&str> {
        let mut names: Vec<&str> = ids.iter().filter_map(|&id| self.name(id)).collect();
        names.sort_unstable_by(|a, b| Folded::new(a).cmp(Folded::new(b)));
        names
    }

    /// Checks the registry's invariants; for tests and fuzzing.
    pub fn check_invariants(&self) {
        assert_eq!(self.roster.len(), self.by_name.len());
        for (pos, &id) in self.roster.iter().enumerate() {
            let m = self.members[id]
                .as_ref()
                .expect("roster entry without member");
            assert_eq!(m.roster_pos, pos);
            assert_eq!(self.find(&m.name), Some(id));
        }
        let members = self.members.iter().filter(|m| m.is_some()).count();
        assert_eq!(members, self.roster.len());
        for name in self.remote.keys() {
            assert!(
                self.find(name.as_str()).is_none(),
                "{name:?} local and remote"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_find_remove_keep_the_roster_dense() {
        let mut users = Users::default();
        assert!(users.insert(3, "Alice"));
        assert!(users.insert(0, "bob"));
        assert!(users.insert(7, "carol"));
        assert!(!users.insert(9, "ALICE"), "names are unique in any case");
        assert_eq!(users.find("alice"), Some(3));
        assert_eq!(users.remove(3).as_deref(), Some("Alice"));
        assert_eq!(users.remove(3), None);
        users.check_invariants();
        assert_eq!(users.find("ALICE"), None);
        assert_eq!(users.sorted_names(), ["bob", "carol"]);
        assert!(users.insert(9, "alice"));
        users.check_invariants();
        assert_eq!(users.len(), 3);
        let serial = users.serial(9);
        assert!(serial.is_some() && serial != users.serial(0));
        users.rebind(9, 4);
        users.check_invariants();
        assert_eq!(users.find("ALICE"), Some(4));
        assert_eq!((users.name(9), users.serial(4)), (None, serial));
    }

    #[test]
    fn remote_users_count_and_hold_their_names_but_are_not_on_the_roster() {
        let mut users = Users::default();
        assert!(users.insert(0, "amy"));
        assert!(users.insert_remote("Zed", "n2-1"));
        assert!(!users.insert_remote("AMY", "n2-1"), "taken here");
        assert!(!users.insert(1, "zed"), "taken there");
        assert_eq!(users.len(), 2);
        assert_eq!(users.roster(), [0]);
        assert_eq!(users.find("zed"), None, "no connection here");
        assert_eq!(users.remote("ZED"), Some("Zed"));
        assert_eq!(users.sorted_names(), ["amy", "Zed"]);
        users.check_invariants();
        assert_eq!(users.home_of("zed"), Some("n2-1"));
        assert_eq!(users.remove_remote("zed").as_deref(), Some("Zed"));
        assert!(users.insert(1, "zed"), "free again");
        users.check_invariants();
    }

    #[test]
    fn a_detached_user_is_known_by_name_on_its_home_until_removed() {
        let mut users = Users::default();
        assert!(users.insert(0, "amy"));
        assert!(users.insert_remote("bo", "n2-1"));
        assert!(users.insert_remote("cy", "n3-1"));
        assert_eq!(users.detach(0, "n1-1").as_deref(), Some("amy"));
        assert_eq!(
            (users.find("amy"), users.home_of("AMY")),
            (None, Some("n1-1"))
        );
        assert!(users.roster().is_empty() && users.is_taken("amy"));
        assert!(users.insert(0, "dee"), "the connection id is free");
        assert_eq!(users.living_on("n2-1"), [Box::from("bo")]);
        assert!(users.living_on("n9-9").is_empty());
        users.check_invariants();
        users.rehome("bo", "n3-1");
        assert_eq!(users.living_on("n3-1").len(), 2);
        assert!(users.attach(5, "BO") && !users.attach(6, "zz"));
        assert_eq!((users.find("bo"), users.name(5)), (Some(5), Some("bo")));
        users.check_invariants();
    }
}

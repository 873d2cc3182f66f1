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
use super::resume::Token;
use super::ConnId;

#[derive(Debug)]
struct Member {
    name: Box<str>,
    roster_pos: usize,
    /// Tells this login from a later one on a reused connection id.
    serial: u64,
    token: Option<Token>,
}

/// Who is logged in, under which name, in O(1) per login and departure.
#[derive(Debug, Default)]
pub struct Users {
    /// Indexed by connection id; `Some` while that connection is logged in.
    members: Vec<Option<Member>>,
    /// Logged-in connections, dense, for broadcasts.
    roster: Vec<ConnId>,
    by_name: HashMap<NameKey, ConnId>,
    /// Users logged in on other nodes.
    remote: HashSet<NameKey>,
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
        self.by_name.contains_key(key) || self.remote.contains(key)
    }

    /// Registers `name`, logged in on another node; false if it is taken.
    pub fn insert_remote(&mut self, name: &str) -> bool {
        if self.is_taken(name) {
            return false;
        }
        self.remote.insert(NameKey::new(name))
    }

    /// Unregisters `name`, logged in on another node; returns its spelling.
    pub fn remove_remote(&mut self, name: &str) -> Option<Box<str>> {
        let key = self.remote.take(Folded::new(name))?;
        Some(key.as_str().into())
    }

    /// The spelling of `name` if it is logged in on another node.
    pub fn remote(&self, name: &str) -> Option<&str> {
        self.remote.get(Folded::new(name)).map(NameKey::as_str)
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
        });
        self.roster.push(id);
        true
    }

    /// The serial of `id`'s login: equal serials mean the same login.
    pub fn serial(&self, id: ConnId) -> Option<u64> {
        self.members.get(id)?.as_ref().map(|m| m.serial)
    }

    /// The resume token `id` holds, if it asked for one.
    pub fn token(&self, id: ConnId) -> Option<Token> {
        self.members.get(id)?.as_ref()?.token
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
        names.extend(self.remote.iter().map(NameKey::as_str));
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
        for name in &self.remote {
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
        assert!(users.insert_remote("Zed"));
        assert!(!users.insert_remote("AMY"), "taken here");
        assert!(!users.insert(1, "zed"), "taken there");
        assert_eq!(users.len(), 2);
        assert_eq!(users.roster(), [0]);
        assert_eq!(users.find("zed"), None, "no connection here");
        assert_eq!(users.remote("ZED"), Some("Zed"));
        assert_eq!(users.sorted_names(), ["amy", "Zed"]);
        users.check_invariants();
        assert_eq!(users.remove_remote("zed").as_deref(), Some("Zed"));
        assert!(users.insert(1, "zed"), "free again");
        users.check_invariants();
    }
}

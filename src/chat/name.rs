//! Case-insensitive user names, as the registry keys them.
//!
//! One rule: names compare, hash and sort by their ASCII-lower-cased bytes
//! (`Bob` is `bob`), while the spelling the user chose is what others see.
//! A lookup borrows the name it is given as a [`Folded`], so finding a DM's
//! target or checking a LOGIN allocates nothing.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

/// A name borrowed for case-insensitive comparison.
#[derive(Debug)]
#[repr(transparent)]
pub struct Folded(str);

impl Folded {
    /// Views `name` as a case-insensitive key.
    pub fn new(name: &str) -> &Folded {
        // SAFETY: `Folded` is `repr(transparent)` over `str`, so the two
        // references have the same layout and the same lifetime.
        unsafe { &*(name as *const str as *const Folded) }
    }

    /// The name as it was given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn folded_bytes(&self) -> impl Iterator<Item = u8> + '_ {
        self.0.bytes().map(|b| b.to_ascii_lowercase())
    }
}

impl PartialEq for Folded {
    fn eq(&self, other: &Folded) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl Eq for Folded {}

impl Hash for Folded {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for b in self.folded_bytes() {
            state.write_u8(b);
        }
        // Ends the name, as `str`'s own hash does, so keys stay prefix-free.
        state.write_u8(0xff);
    }
}

impl Ord for Folded {
    fn cmp(&self, other: &Folded) -> Ordering {
        self.folded_bytes().cmp(other.folded_bytes())
    }
}

impl PartialOrd for Folded {
    fn partial_cmp(&self, other: &Folded) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// An owned name that hashes and compares as its [`Folded`] form.
#[derive(Debug, Clone)]
pub struct NameKey(Box<str>);

impl NameKey {
    /// Keys `name`, keeping its spelling.
    pub fn new(name: &str) -> NameKey {
        NameKey(name.into())
    }

    /// The name as it was spelled.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<Folded> for NameKey {
    fn borrow(&self) -> &Folded {
        Folded::new(&self.0)
    }
}

impl PartialEq for NameKey {
    fn eq(&self, other: &NameKey) -> bool {
        <NameKey as Borrow<Folded>>::borrow(self) == other.borrow()
    }
}

impl Eq for NameKey {}

impl Hash for NameKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        <NameKey as Borrow<Folded>>::borrow(self).hash(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn names_differing_only_in_case_are_one_key() {
        let mut map = HashMap::new();
        map.insert(NameKey::new("Bob"), 1);
        assert_eq!(map.get(Folded::new("bob")), Some(&1));
        assert_eq!(map.get(Folded::new("BOB")), Some(&1));
        assert_eq!(map.get(Folded::new("bobby")), None);
        assert!(map.insert(NameKey::new("bOb"), 2).is_some());
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn order_ignores_case() {
        let mut names = ["charlie", "Bob", "alice", "_x", "Zed", "bob2"];
        names.sort_by(|a, b| Folded::new(a).cmp(Folded::new(b)));
        assert_eq!(names, ["_x", "alice", "Bob", "bob2", "charlie", "Zed"]);
    }
}

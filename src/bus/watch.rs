//! Which node incarnations are alive, as this node sees it. A node is
//! known from its heartbeats and from the events it wrote to the log; one
//! silent for the cluster's timeout is dead, and is reported once so this
//! node can try to bury it (one survivor wins the burial). This node is
//! also cut off when its own heartbeats stop coming back.
//!
//! Pure: the loop hands in every instant.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// The liveness of the cluster's node incarnations.
#[derive(Debug)]
pub struct NodeWatch {
    home: Box<str>,
    timeout: Duration,
    /// When each living incarnation (this one included) was last heard.
    heard: HashMap<Box<str>, Instant>,
    /// Incarnations reported dead or seen buried: never alive again.
    dead: HashSet<Box<str>>,
}

impl NodeWatch {
    /// This node is the incarnation `home`, started at `now`; a node
    /// silent for `timeout` is dead.
    pub fn new(home: &str, timeout: Duration, now: Instant) -> NodeWatch {
        let mut heard = HashMap::new();
        heard.insert(home.into(), now);
        NodeWatch {
            home: home.into(),
            timeout,
            heard,
            dead: HashSet::new(),
        }
    }

    /// `home` was heard from at `now` (a heartbeat, or an event in the
    /// log: a node seen only in a replay gets the timeout to prove alive).
    pub fn heard(&mut self, home: &str, now: Instant) {
        if self.dead.contains(home) {
            return;
        }
        match self.heard.get_mut(home) {
            Some(at) => *at = (*at).max(now),
            None => {
                self.heard.insert(home.into(), now);
            }
        }
    }

    /// `home` is gone from the log: forget it for good.
    pub fn buried(&mut self, home: &str) {
        self.heard.remove(home);
        self.dead.insert(home.into());
    }

    /// The other incarnations silent past the timeout at `now`, each
    /// reported once.
    pub fn dead(&mut self, now: Instant) -> Vec<Box<str>> {
        let timeout = self.timeout;
        let home = &self.home;
        let dead: Vec<Box<str>> = self
            .heard
            .iter()
            .filter(|&(h, &at)| h != home && now.saturating_duration_since(at) >= timeout)
            .map(|(h, _)| h.clone())
            .collect();
        for h in &dead {
            self.heard.remove(h);
            self.dead.insert(h.clone());
        }
        dead
    }

    /// True when this node's own heartbeats have not come back for the
    /// timeout at `now`: its peers are about to declare it dead.
    pub fn cut_off(&self, now: Instant) -> bool {
        self.heard
            .get(&self.home)
            .is_none_or(|&at| now.saturating_duration_since(at) >= self.timeout)
    }

    /// Incarnations alive (this one included).
    pub fn alive(&self) -> usize {
        self.heard.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_node_is_dead_once_and_never_alive_again() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut live = NodeWatch::new("me-1", 3 * s, t0);
        live.heard("b-1", t0);
        live.heard("c-1", t0 + s);
        live.heard("me-1", t0 + 2 * s);
        assert!(live.dead(t0 + 2 * s).is_empty());
        assert_eq!(live.dead(t0 + 3 * s), [Box::from("b-1")]);
        assert!(live.dead(t0 + 3 * s).is_empty(), "reported once");
        live.heard("b-1", t0 + 3 * s);
        assert_eq!(live.alive(), 2, "a dead incarnation stays dead");
        live.buried("c-1");
        assert!(live.dead(t0 + 9 * s).is_empty(), "buried by another node");
        assert!(!live.cut_off(t0 + 4 * s));
        assert!(live.cut_off(t0 + 5 * s), "its own beats stopped");
    }
}

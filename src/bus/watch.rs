//! Which node incarnations are alive, as this node sees it. A node is
//! known from its heartbeats and from the events it wrote to the log; one
//! silent for the cluster's timeout is dead, and is reported (again each
//! timeout, until the log says it is buried: a burial tried while NATS was
//! out of reach failed) so this node can try to bury it; one survivor wins
//! each burial. This node is also cut off when its own heartbeats stop
//! coming back.
//!
//! Pure: the loop hands in every instant.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// The liveness of the cluster's node incarnations.
#[derive(Debug)]
pub struct NodeWatch {
    home: Box<str>,
    timeout: Duration,
    /// When each incarnation not yet buried (this one included) was last
    /// heard.
    heard: HashMap<Box<str>, Instant>,
    /// When each silent incarnation was last reported dead.
    reported: HashMap<Box<str>, Instant>,
    /// Incarnations the log says are buried: never alive again.
    buried: HashSet<Box<str>>,
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
            reported: HashMap::new(),
            buried: HashSet::new(),
        }
    }

    /// `home` was heard from at `now` (a heartbeat, or an event in the
    /// log: a node seen only in a replay gets the timeout to prove alive).
    /// This node heard again after being cut off gives every other node a
    /// fresh timeout: while it heard nothing, their silence proved nothing.
    pub fn heard(&mut self, home: &str, now: Instant) {
        if self.buried.contains(home) {
            return;
        }
        if *home == *self.home && self.cut_off(now) {
            for at in self.heard.values_mut() {
                *at = (*at).max(now);
            }
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
        self.reported.remove(home);
        self.buried.insert(home.into());
    }

    /// The other incarnations silent past the timeout at `now`, each
    /// reported at most once per timeout until it is buried. None while
    /// this node is cut off itself: then the silence is its own.
    pub fn dead(&mut self, now: Instant) -> Vec<Box<str>> {
        if self.cut_off(now) {
            return Vec::new();
        }
        let timeout = self.timeout;
        let since = |at: Instant| now.saturating_duration_since(at) >= timeout;
        let dead: Vec<Box<str>> = self
            .heard
            .iter()
            .filter(|&(h, &at)| *h != self.home && since(at))
            .filter(|&(h, _)| self.reported.get(h).is_none_or(|&at| since(at)))
            .map(|(h, _)| h.clone())
            .collect();
        for h in &dead {
            self.reported.insert(h.clone(), now);
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

    /// Incarnations not yet buried (this one included).
    pub fn alive(&self) -> usize {
        self.heard.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_silent_node_is_reported_until_buried_and_never_alive_again() {
        let t0 = Instant::now();
        let mut live = NodeWatch::new("me-1", 3 * S, t0);
        // This node hears its own beats every second throughout.
        let at = |live: &mut NodeWatch, secs: u32| {
            live.heard("me-1", t0 + secs * S);
            live.dead(t0 + secs * S)
        };
        live.heard("b-1", t0);
        live.heard("c-1", t0 + S);
        assert!(at(&mut live, 2).is_empty());
        assert_eq!(at(&mut live, 3), [Box::from("b-1")]);
        assert_eq!(at(&mut live, 4), [Box::from("c-1")], "b-1 once a timeout");
        assert!(at(&mut live, 5).is_empty());
        assert_eq!(at(&mut live, 6), [Box::from("b-1")], "not buried yet");
        live.buried("b-1");
        live.heard("b-1", t0 + 7 * S);
        assert_eq!(live.alive(), 2, "a buried incarnation stays dead");
        live.buried("c-1");
        assert!(at(&mut live, 20).is_empty(), "buried by another node");
    }

    #[test]
    fn a_node_cut_off_buries_nobody_and_gives_everyone_a_fresh_timeout_after() {
        let t0 = Instant::now();
        let mut live = NodeWatch::new("me-1", 3 * S, t0);
        live.heard("b-1", t0);
        assert!(!live.cut_off(t0 + 2 * S));
        assert!(live.cut_off(t0 + 3 * S), "its own beats stopped");
        assert!(
            live.dead(t0 + 5 * S).is_empty(),
            "its own silence, not b-1's"
        );
        live.heard("me-1", t0 + 6 * S);
        live.heard("me-1", t0 + 8 * S);
        assert!(live.dead(t0 + 8 * S).is_empty(), "b-1 has a fresh timeout");
        assert_eq!(live.dead(t0 + 9 * S), [Box::from("b-1")]);
    }
}

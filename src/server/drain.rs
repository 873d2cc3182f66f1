//! The drain's schedule: `total` users told `BYE restarting` evenly over
//! `spread`, so their reconnects reach the next server (or another node)
//! as a stream, not as one storm. Pure: the loop asks how many should be
//! gone by now and when to ask again.

use std::time::{Duration, Instant};

/// A drain under way.
#[derive(Debug, Clone)]
pub(super) struct Drain {
    started: Instant,
    spread: Duration,
    total: usize,
    /// Users told so far.
    done: usize,
}

impl Drain {
    /// A drain of `total` users over `spread`, starting at `now`.
    pub fn new(now: Instant, spread: Duration, total: usize) -> Drain {
        Drain {
            started: now,
            spread,
            total,
            done: 0,
        }
    }

    /// How many more users to tell at `now`; counts them as told.
    pub fn due(&mut self, now: Instant) -> usize {
        let elapsed = now.saturating_duration_since(self.started);
        let target = if self.spread.is_zero() || elapsed >= self.spread {
            self.total
        } else {
            // Rounded up: the first user goes at once.
            let share = elapsed.as_secs_f64() / self.spread.as_secs_f64();
            ((self.total as f64 * share).ceil() as usize)
                .max(1)
                .min(self.total)
        };
        let due = target.saturating_sub(self.done);
        self.done += due;
        due
    }

    /// Tells everyone left at once (a SIGTERM during the drain).
    pub fn hurry(&mut self) {
        self.spread = Duration::ZERO;
    }

    /// When the next user is due, while some are left.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.done >= self.total {
            return None;
        }
        let share = self.done as f64 / self.total as f64;
        Some(self.started + self.spread.mul_f64(share))
    }

    /// True once every user has been told.
    pub fn is_done(&self) -> bool {
        self.done >= self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn users_are_told_evenly_over_the_spread() {
        let t0 = Instant::now();
        let mut drain = Drain::new(t0, 5 * S, 100);
        assert_eq!(drain.due(t0), 1, "the first goes at once");
        assert_eq!(drain.next_deadline(), Some(t0 + (5 * S).mul_f64(0.01)));
        assert_eq!(drain.due(t0 + S), 19);
        assert_eq!(drain.due(t0 + S), 0, "nothing twice");
        assert_eq!(drain.due(t0 + 2 * S + S / 2), 30);
        assert!(!drain.is_done());
        assert_eq!(drain.due(t0 + 6 * S), 50);
        assert!(drain.is_done());
        assert_eq!(drain.next_deadline(), None);
    }

    #[test]
    fn no_spread_or_a_hurry_tells_everyone_at_once() {
        let t0 = Instant::now();
        let mut now = Drain::new(t0, Duration::ZERO, 7);
        assert_eq!(now.due(t0), 7);
        let mut hurried = Drain::new(t0, 5 * S, 7);
        assert_eq!(hurried.due(t0), 1);
        hurried.hurry();
        assert_eq!(hurried.due(t0 + S / 10), 6);
        assert!(hurried.is_done());
    }

    #[test]
    fn nobody_to_tell_is_done_at_once() {
        let t0 = Instant::now();
        let mut drain = Drain::new(t0, 5 * S, 0);
        assert_eq!(drain.due(t0), 0);
        assert!(drain.is_done());
        assert_eq!(drain.next_deadline(), None);
    }
}

//! A hashed timer wheel (Varghese & Lauck): O(1) insert and cancel, and an
//! advance that only visits the slots whose ticks have passed.
//!
//! Invariant: a timer never fires before its deadline, and fires at most one
//! tick after it (plus however late `advance` is called). Each entry lives in
//! slot `due_tick % slots`; entries more than one revolution away stay in
//! their slot until their tick comes round.

use std::time::{Duration, Instant};

use slab::Slab;

/// Handle to a scheduled timer, for cancelling it. Stale handles are harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerId {
    key: usize,
    generation: u32,
}

#[derive(Debug)]
struct Entry<T> {
    due: u64,
    pos: usize,
    generation: u32,
    value: T,
}

/// Timers carrying a `T`, bucketed by tick.
#[derive(Debug)]
pub struct Wheel<T> {
    origin: Instant,
    tick: Duration,
    /// The last tick whose slot has been processed.
    current: u64,
    slots: Vec<Vec<usize>>,
    entries: Slab<Entry<T>>,
    generation: u32,
}

impl<T> Wheel<T> {
    /// A wheel with `slots` buckets of `tick` each, starting at `now`.
    pub fn new(tick: Duration, slots: usize, now: Instant) -> Self {
        assert!(
            !tick.is_zero() && slots > 0,
            "a wheel needs a tick and slots"
        );
        Wheel {
            origin: now,
            tick,
            current: 0,
            slots: (0..slots).map(|_| Vec::new()).collect(),
            entries: Slab::new(),
            generation: 0,
        }
    }

    /// Number of scheduled timers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no timer is scheduled.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn ticks_floor(&self, t: Instant) -> u64 {
        (t.saturating_duration_since(self.origin).as_nanos() / self.tick.as_nanos()) as u64
    }

    fn ticks_ceil(&self, t: Instant) -> u64 {
        let nanos = t.saturating_duration_since(self.origin).as_nanos();
        nanos.div_ceil(self.tick.as_nanos()) as u64
    }

    /// Schedules `value` to fire at `deadline` (or the next tick, if that is past).
    pub fn insert(&mut self, deadline: Instant, value: T) -> TimerId {
        let due = self.ticks_ceil(deadline).max(self.current + 1);
        let slot = (due % self.slots.len() as u64) as usize;
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        let key = self.entries.insert(Entry {
            due,
            pos: self.slots[slot].len(),
            generation,
            value,
        });
        self.slots[slot].push(key);
        TimerId { key, generation }
    }

    /// Cancels a timer, returning its value if it had not fired yet.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        match self.entries.get(id.key) {
            Some(e) if e.generation == id.generation => {}
            _ => return None,
        }
        let entry = self.entries.remove(id.key);
        let slot = (entry.due % self.slots.len() as u64) as usize;
        self.unlink(slot, entry.pos);
        Some(entry.value)
    }

    fn unlink(&mut self, slot: usize, pos: usize) {
        let bucket = &mut self.slots[slot];
        bucket.swap_remove(pos);
        if let Some(&moved) = bucket.get(pos) {
            self.entries[moved].pos = pos;
        }
    }

    /// Fires every timer due at or before `now`, pushing their values to `fired`.
    pub fn advance(&mut self, now: Instant, fired: &mut Vec<T>) {
        let target = self.ticks_floor(now);
        if target <= self.current {
            return;
        }
        // Past one revolution every slot is visited once; the `due` check does the rest.
        let steps = (target - self.current).min(self.slots.len() as u64);
        for step in 1..=steps {
            let slot = ((self.current + step) % self.slots.len() as u64) as usize;
            let mut pos = 0;
            while pos < self.slots[slot].len() {
                let key = self.slots[slot][pos];
                if self.entries[key].due <= target {
                    self.unlink(slot, pos);
                    fired.push(self.entries.remove(key).value);
                } else {
                    pos += 1;
                }
            }
        }
        self.current = target;
    }

    /// How long a poll may sleep before the next slot holding a timer comes
    /// due; `None` when nothing is scheduled.
    pub fn next_timeout(&self, now: Instant) -> Option<Duration> {
        if self.entries.is_empty() {
            return None;
        }
        let n = self.slots.len() as u64;
        let ahead = (1..=n)
            .find(|k| !self.slots[((self.current + k) % n) as usize].is_empty())
            .unwrap_or(1);
        let tick_nanos = self.tick.as_nanos() as u64;
        let at =
            self.origin + Duration::from_nanos(tick_nanos.saturating_mul(self.current + ahead));
        Some(at.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn wheel(t0: Instant) -> Wheel<u32> {
        Wheel::new(10 * MS, 8, t0)
    }

    fn advance(w: &mut Wheel<u32>, now: Instant) -> Vec<u32> {
        let mut fired = Vec::new();
        w.advance(now, &mut fired);
        fired.sort();
        fired
    }

    #[test]
    fn fires_on_time_never_early() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        w.insert(t0 + 25 * MS, 1);
        w.insert(t0 + 30 * MS, 2);
        assert_eq!(advance(&mut w, t0 + 24 * MS), Vec::<u32>::new());
        assert_eq!(advance(&mut w, t0 + 29 * MS), Vec::<u32>::new());
        assert_eq!(advance(&mut w, t0 + 30 * MS), vec![1, 2]);
        assert!(w.is_empty());
    }

    #[test]
    fn timers_beyond_one_revolution_wait_for_their_round() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        w.insert(t0 + 250 * MS, 7); // three revolutions of 80 ms, same slot as 10 ms
        for ms in (10..250).step_by(10) {
            assert!(
                advance(&mut w, t0 + ms * MS).is_empty(),
                "fired early at {ms} ms"
            );
        }
        assert_eq!(advance(&mut w, t0 + 250 * MS), vec![7]);
    }

    #[test]
    fn a_long_jump_fires_everything_due() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        for i in 0..50 {
            w.insert(t0 + (i * 7) * MS, i);
        }
        w.insert(t0 + 10_000 * MS, 99);
        let fired = advance(&mut w, t0 + 1000 * MS);
        assert_eq!(fired, (0..50).collect::<Vec<_>>());
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn cancel_is_exact_and_stale_handles_do_nothing() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        let a = w.insert(t0 + 20 * MS, 1);
        let b = w.insert(t0 + 20 * MS, 2);
        let c = w.insert(t0 + 20 * MS, 3);
        assert_eq!(w.cancel(a), Some(1));
        assert_eq!(w.cancel(a), None);
        assert_eq!(advance(&mut w, t0 + 20 * MS), vec![2, 3]);
        assert_eq!(w.cancel(b), None);
        let d = w.insert(t0 + 40 * MS, 4);
        assert_eq!(
            w.cancel(c),
            None,
            "stale handle must not cancel a reused key"
        );
        assert_eq!(w.cancel(d), Some(4));
    }

    #[test]
    fn past_deadlines_fire_on_the_next_tick() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        advance(&mut w, t0 + 100 * MS);
        w.insert(t0, 5);
        assert_eq!(advance(&mut w, t0 + 105 * MS), Vec::<u32>::new());
        assert_eq!(advance(&mut w, t0 + 110 * MS), vec![5]);
    }

    #[test]
    fn next_timeout_points_at_the_next_busy_slot() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        assert_eq!(w.next_timeout(t0), None);
        w.insert(t0 + 45 * MS, 1);
        assert_eq!(w.next_timeout(t0), Some(50 * MS));
        assert_eq!(w.next_timeout(t0 + 60 * MS), Some(Duration::ZERO));
    }
}

//! A hashed timer wheel (Varghese & Lauck): O(1) insert, cancel in the size
//! of one slot, and expiry that only visits the slots whose ticks have passed.
//!
//! Invariant: a timer never fires before its deadline, and fires at most one
//! tick after it (plus however late `poll` is called). Each entry lives in
//! slot `due_tick % slots`; entries more than one revolution away stay in
//! their slot until their tick comes round. Each slot also remembers the
//! earliest tick due in it, so [`Wheel::next_timeout`] names the exact tick
//! of the next expiry: a loop whose only timers are many revolutions away
//! sleeps until then instead of waking once per revolution.

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

/// An empty slot's earliest due tick.
const NONE_DUE: u64 = u64::MAX;

/// Timers carrying a `T`, bucketed by tick.
#[derive(Debug)]
pub struct Wheel<T> {
    origin: Instant,
    tick: Duration,
    /// The last tick whose slot has been emptied of everything due.
    current: u64,
    /// Position reached in slot `current + 1` by an unfinished `poll` run.
    scan: usize,
    slots: Vec<Vec<usize>>,
    /// Per slot, the earliest `due` among its entries (`NONE_DUE` if empty).
    earliest: Vec<u64>,
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
            scan: 0,
            slots: (0..slots).map(|_| Vec::new()).collect(),
            earliest: vec![NONE_DUE; slots],
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

    fn slot_of(&self, due: u64) -> usize {
        (due % self.slots.len() as u64) as usize
    }

    /// Schedules `value` to fire at `deadline` (or the next tick, if that is past).
    pub fn insert(&mut self, deadline: Instant, value: T) -> TimerId {
        let due = self.ticks_ceil(deadline).max(self.current + 1);
        let slot = self.slot_of(due);
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        let key = self.entries.insert(Entry {
            due,
            pos: self.slots[slot].len(),
            generation,
            value,
        });
        self.slots[slot].push(key);
        self.earliest[slot] = self.earliest[slot].min(due);
        TimerId { key, generation }
    }

    /// Cancels a timer, returning its value if it had not fired yet.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        match self.entries.get(id.key) {
            Some(e) if e.generation == id.generation => {}
            _ => return None,
        }
        let entry = self.entries.remove(id.key);
        let slot = self.slot_of(entry.due);
        self.unlink(slot, entry.pos);
        if entry.due == self.earliest[slot] {
            self.recompute_earliest(slot);
        }
        Some(entry.value)
    }

    fn unlink(&mut self, slot: usize, pos: usize) {
        let bucket = &mut self.slots[slot];
        bucket.swap_remove(pos);
        if let Some(&moved) = bucket.get(pos) {
            self.entries[moved].pos = pos;
        }
        // An unfinished scan of this slot must not skip the entry moved into `pos`.
        if slot == self.slot_of(self.current + 1) && pos < self.scan {
            self.scan = pos;
        }
    }

    fn recompute_earliest(&mut self, slot: usize) {
        let entries = &self.entries;
        self.earliest[slot] = self.slots[slot]
            .iter()
            .map(|&key| entries[key].due)
            .min()
            .unwrap_or(NONE_DUE);
    }

    /// Takes one timer due at or before `now`, or `None` when none is left.
    /// Callers bound the work of one loop turn by how often they call it;
    /// what they leave stays due and is returned by the next calls.
    pub fn poll(&mut self, now: Instant) -> Option<T> {
        let target = self.ticks_floor(now);
        let n = self.slots.len() as u64;
        // Past one revolution every slot is visited once; the `due` check does the rest.
        if target > self.current + n {
            self.current = target - n;
            self.scan = 0;
        }
        while self.current < target {
            let slot = self.slot_of(self.current + 1);
            if self.earliest[slot] <= target {
                while let Some(&key) = self.slots[slot].get(self.scan) {
                    if self.entries[key].due <= target {
                        let pos = self.scan;
                        self.unlink(slot, pos);
                        return Some(self.entries.remove(key).value);
                    }
                    self.scan += 1;
                }
                self.recompute_earliest(slot);
            }
            self.current += 1;
            self.scan = 0;
        }
        None
    }

    /// The instant at which the next timer becomes due (the start of its
    /// tick), or `None` when nothing is scheduled. Already past when a
    /// timer is due and not yet polled.
    pub fn next_deadline(&self) -> Option<Instant> {
        let due = self.earliest.iter().copied().min()?;
        if due == NONE_DUE {
            return None;
        }
        let nanos = (self.tick.as_nanos() as u64).saturating_mul(due);
        Some(self.origin + Duration::from_nanos(nanos))
    }

    /// How long a poll may sleep before the next timer is due; `None` when
    /// nothing is scheduled.
    pub fn next_timeout(&self, now: Instant) -> Option<Duration> {
        self.next_deadline()
            .map(|at| at.saturating_duration_since(now))
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
        let mut fired: Vec<u32> = std::iter::from_fn(|| w.poll(now)).collect();
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
    fn poll_hands_out_one_due_timer_per_call_and_resumes() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        for i in 0..10 {
            w.insert(t0 + 20 * MS, i);
        }
        w.insert(t0 + 500 * MS, 99);
        let now = t0 + 30 * MS;
        let first: Vec<u32> = (0..4).filter_map(|_| w.poll(now)).collect();
        assert_eq!(first.len(), 4);
        assert_eq!(
            w.next_timeout(now),
            Some(Duration::ZERO),
            "six are still due"
        );
        let cancelled = w.insert(t0 + 20 * MS, 50);
        assert_eq!(w.cancel(cancelled), Some(50));
        let mut rest = advance(&mut w, now);
        rest.extend(first);
        rest.sort();
        assert_eq!(rest, (0..10).collect::<Vec<_>>());
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
    fn next_timeout_is_the_tick_of_the_earliest_timer() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        assert_eq!(w.next_timeout(t0), None);
        w.insert(t0 + 45 * MS, 1);
        assert_eq!(w.next_timeout(t0), Some(50 * MS));
        assert_eq!(w.next_timeout(t0 + 60 * MS), Some(Duration::ZERO));
    }

    #[test]
    fn a_timer_many_revolutions_away_does_not_wake_the_loop_each_revolution() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        w.insert(t0 + 60_000 * MS, 1);
        assert_eq!(w.next_timeout(t0), Some(60_000 * MS));
        let near = w.insert(t0 + 15 * MS, 2);
        assert_eq!(w.next_timeout(t0), Some(20 * MS));
        w.cancel(near);
        assert_eq!(w.next_timeout(t0), Some(60_000 * MS), "cancel restores it");
    }
}

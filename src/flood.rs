//! Flood control: a token bucket per connection. Each complete line costs a
//! token; tokens refill at `rate` per second up to `burst`. A connection out
//! of tokens is simply not read until one is back, so TCP pushes back on the
//! sender; one that stays over the limit for `kick_after` is told
//! `BYE flooding` and dropped.

use std::time::{Duration, Instant};

/// The limits, from `--rate`, `--burst` and `--flood-timeout`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloodPolicy {
    /// Lines per second sustained; 0 turns flood control off.
    pub rate: f64,
    /// Lines accepted at once after a quiet spell.
    pub burst: f64,
    /// How long a connection may stay over the limit before it is dropped.
    pub kick_after: Duration,
}

impl FloodPolicy {
    /// `rate` lines per second with bursts of `burst`, kicking after
    /// `kick_after` over the rate; a rate of 0 turns flood control off.
    pub fn new(rate: f64, burst: u32, kick_after: Duration) -> FloodPolicy {
        if rate == 0.0 {
            return FloodPolicy::OFF;
        }
        FloodPolicy {
            rate,
            burst: f64::from(burst),
            kick_after,
        }
    }

    /// No limit at all (load tests and benchmarks use this).
    pub const OFF: FloodPolicy = FloodPolicy {
        rate: 0.0,
        burst: 0.0,
        kick_after: Duration::MAX,
    };

    /// True when the policy limits anything.
    pub fn enabled(&self) -> bool {
        self.rate > 0.0
    }
}

/// What the caller must do after a line was charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// Another line may be handled now.
    Go,
    /// Stop reading until this instant.
    PauseUntil(Instant),
    /// Over the limit for too long: `BYE flooding`.
    Kick,
}

/// One connection's bucket.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
    /// When the connection first ran dry in its current run over the limit.
    over_since: Option<Instant>,
}

impl Bucket {
    /// A full bucket at `now`.
    pub fn new(now: Instant, policy: &FloodPolicy) -> Self {
        Bucket {
            tokens: policy.burst.max(1.0),
            last: now,
            over_since: None,
        }
    }

    fn refill(&mut self, now: Instant, policy: &FloodPolicy) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * policy.rate).min(policy.burst.max(1.0));
        self.last = now;
    }

    /// Charges one line and says whether the next may follow at once. The
    /// line itself is always allowed: callers only hand over lines after
    /// `Go` or after the pause they were given.
    pub fn charge(&mut self, now: Instant, policy: &FloodPolicy) -> Throttle {
        if !policy.enabled() {
            return Throttle::Go;
        }
        self.refill(now, policy);
        self.tokens -= 1.0;
        if self.tokens >= 1.0 {
            return Throttle::Go;
        }
        let since = *self.over_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= policy.kick_after {
            return Throttle::Kick;
        }
        let wait = (1.0 - self.tokens) / policy.rate;
        Throttle::PauseUntil(now + Duration::from_secs_f64(wait))
    }

    /// The peer has nothing more to send: it is no longer over the limit.
    pub fn caught_up(&mut self) {
        self.over_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn policy() -> FloodPolicy {
        FloodPolicy::new(10.0, 20, Duration::from_secs(5))
    }

    #[test]
    fn a_burst_passes_then_lines_are_paced_at_the_rate() {
        let t0 = Instant::now();
        let p = policy();
        let mut b = Bucket::new(t0, &p);
        for _ in 0..19 {
            assert_eq!(b.charge(t0, &p), Throttle::Go);
        }
        assert_eq!(b.charge(t0, &p), Throttle::PauseUntil(t0 + 100 * MS));
        assert_eq!(
            b.charge(t0 + 100 * MS, &p),
            Throttle::PauseUntil(t0 + 200 * MS)
        );
    }

    #[test]
    fn a_quiet_spell_refills_up_to_the_burst() {
        let t0 = Instant::now();
        let p = policy();
        let mut b = Bucket::new(t0, &p);
        for _ in 0..20 {
            b.charge(t0, &p);
        }
        b.caught_up();
        let later = t0 + Duration::from_secs(60);
        for _ in 0..19 {
            assert_eq!(b.charge(later, &p), Throttle::Go);
        }
        assert!(matches!(b.charge(later, &p), Throttle::PauseUntil(_)));
    }

    #[test]
    fn staying_over_the_limit_gets_kicked() {
        let t0 = Instant::now();
        let p = policy();
        let mut b = Bucket::new(t0, &p);
        let mut now = t0;
        let kicked_at = loop {
            match b.charge(now, &p) {
                Throttle::Go => {}
                Throttle::PauseUntil(t) => now = t,
                Throttle::Kick => break now,
            }
            assert!(now < t0 + Duration::from_secs(60));
        };
        assert!(kicked_at >= t0 + Duration::from_secs(5));
        assert!(kicked_at < t0 + Duration::from_secs(6));
    }

    #[test]
    fn catching_up_resets_the_kick_clock() {
        let t0 = Instant::now();
        let p = policy();
        let mut b = Bucket::new(t0, &p);
        let mut now = t0;
        for _ in 0..60 {
            if let Throttle::PauseUntil(t) = b.charge(now, &p) {
                now = t;
            }
        }
        b.caught_up();
        now += Duration::from_secs(1);
        for _ in 0..15 {
            assert_ne!(b.charge(now, &p), Throttle::Kick);
        }
    }

    #[test]
    fn a_rate_of_zero_is_off() {
        assert_eq!(
            FloodPolicy::new(0.0, 20, Duration::from_secs(5)),
            FloodPolicy::OFF
        );
        assert!(!FloodPolicy::OFF.enabled());
        assert!(policy().enabled());
    }

    #[test]
    fn off_never_throttles() {
        let t0 = Instant::now();
        let mut b = Bucket::new(t0, &FloodPolicy::OFF);
        for _ in 0..100_000 {
            assert_eq!(b.charge(t0, &FloodPolicy::OFF), Throttle::Go);
        }
    }
}

//! The ghost-connection defence for one connection: when to send the
//! heartbeat `PING`, and when to give up on a silent or anonymous peer.
//!
//! Invariant: `check` never expires a connection before its deadline, and the
//! instant it asks to be called again is never later than the next deadline.

use std::time::{Duration, Instant};

use crate::protocol::ByeReason;

/// The three liveness durations, from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub login_timeout: Duration,
}

/// What the caller should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing is due; check again at this instant.
    Wait(Instant),
    /// Send a heartbeat `PING`, then check again at this instant.
    Ping(Instant),
    /// Close the connection with this `BYE` reason.
    Expire(ByeReason),
}

/// Activity bookkeeping for one connection.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    connected: Instant,
    last_activity: Instant,
    pinged: bool,
}

impl Liveness {
    /// A connection accepted at `now`.
    pub fn new(now: Instant) -> Self {
        Liveness {
            connected: now,
            last_activity: now,
            pinged: false,
        }
    }

    /// A complete line arrived. Cheap on purpose: activity only pushes
    /// deadlines later, so a timer armed earlier just fires, finds nothing
    /// due and is re-armed. The exception is the first line after a
    /// heartbeat, which brings the next `PING` back before the idle deadline
    /// the timer was armed for; callers compare `next_deadline` with the
    /// instant they armed and re-arm when it moved earlier.
    pub fn on_activity(&mut self, now: Instant) {
        self.last_activity = now;
        self.pinged = false;
    }

    /// The earliest instant at which `check` could have something to do.
    pub fn next_deadline(&self, logged_in: bool, t: &Timeouts) -> Instant {
        let mut next = self.last_activity + t.idle_timeout;
        if !self.pinged {
            next = next.min(self.last_activity + t.ping_interval);
        }
        if !logged_in {
            next = next.min(self.connected + t.login_timeout);
        }
        next
    }

    /// Decides what is due at `now`.
    pub fn check(&mut self, now: Instant, logged_in: bool, t: &Timeouts) -> Verdict {
        if !logged_in && now >= self.connected + t.login_timeout {
            return Verdict::Expire(ByeReason::LoginTimeout);
        }
        if now >= self.last_activity + t.idle_timeout {
            return Verdict::Expire(ByeReason::IdleTimeout);
        }
        if !self.pinged && now >= self.last_activity + t.ping_interval {
            self.pinged = true;
            return Verdict::Ping(self.next_deadline(logged_in, t));
        }
        Verdict::Wait(self.next_deadline(logged_in, t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn t() -> Timeouts {
        Timeouts {
            ping_interval: 20 * S,
            idle_timeout: 60 * S,
            login_timeout: 30 * S,
        }
    }

    #[test]
    fn silent_logged_in_peer_is_pinged_once_then_expired() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        assert_eq!(l.check(t0 + 19 * S, true, &t()), Verdict::Wait(t0 + 20 * S));
        assert_eq!(l.check(t0 + 20 * S, true, &t()), Verdict::Ping(t0 + 60 * S));
        assert_eq!(l.check(t0 + 30 * S, true, &t()), Verdict::Wait(t0 + 60 * S));
        assert_eq!(
            l.check(t0 + 60 * S, true, &t()),
            Verdict::Expire(ByeReason::IdleTimeout)
        );
    }

    #[test]
    fn activity_postpones_everything_and_rearms_the_ping() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        assert!(matches!(l.check(t0 + 20 * S, true, &t()), Verdict::Ping(_)));
        assert_eq!(l.next_deadline(true, &t()), t0 + 60 * S);
        l.on_activity(t0 + 50 * S);
        assert_eq!(
            l.next_deadline(true, &t()),
            t0 + 70 * S,
            "a pinged peer's answer brings the next ping before the idle deadline"
        );
        assert_eq!(l.check(t0 + 60 * S, true, &t()), Verdict::Wait(t0 + 70 * S));
        assert!(matches!(l.check(t0 + 70 * S, true, &t()), Verdict::Ping(_)));
        assert_eq!(
            l.check(t0 + 109 * S, true, &t()),
            Verdict::Wait(t0 + 110 * S)
        );
    }

    #[test]
    fn anonymous_connection_expires_at_login_timeout_however_active() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        for s in 1..30 {
            l.on_activity(t0 + s * S);
            assert!(matches!(l.check(t0 + s * S, false, &t()), Verdict::Wait(_)));
        }
        assert_eq!(l.next_deadline(false, &t()), t0 + 30 * S);
        assert_eq!(
            l.check(t0 + 30 * S, false, &t()),
            Verdict::Expire(ByeReason::LoginTimeout)
        );
        assert!(matches!(l.check(t0 + 30 * S, true, &t()), Verdict::Wait(_)));
    }

    #[test]
    fn ping_interval_past_idle_timeout_never_pings() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        let t = Timeouts {
            ping_interval: 90 * S,
            ..t()
        };
        assert_eq!(l.check(t0 + 59 * S, true, &t), Verdict::Wait(t0 + 60 * S));
        assert_eq!(
            l.check(t0 + 60 * S, true, &t),
            Verdict::Expire(ByeReason::IdleTimeout)
        );
    }
}

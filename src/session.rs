//! One connection's rules, as a sans-IO state machine: framing, liveness
//! (heartbeats, idle and login deadlines), flood control, and how and when
//! the connection ends.
//!
//! Inputs are bytes the transport decoded ([`Session::handle_bytes`]) and
//! the passing of time ([`Session::handle_timeout`]); outputs are lines
//! handed to a dispatcher, the instant the session next needs the clock
//! ([`Session::poll_timeout`]), and its departure, reported once
//! ([`Session::take_departure`]). No sockets, no clock reads: the event loop
//! drives it, and the tests below drive it with a fake clock.
//!
//! Invariant: once a session has departed it dispatches no further line,
//! and `poll_timeout` is never later than the next instant at which
//! `handle_timeout` would do something.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use crate::chat::Step;
use crate::flood::{Bucket, FloodPolicy, Throttle};
use crate::liveness::{Liveness, Timeouts, Verdict};
use crate::protocol::{ByeReason, Frame, Framer};

/// What a connection may hold before it logs in, each way: the longest
/// line (and WebSocket message) it may send, and the most output queued
/// for it. Anonymous connections cost little, and `LOGIN`, `RESUME`,
/// `PING` and `QUIT` all fit with room to spare.
pub const PRE_LOGIN_BYTES: usize = 16 * 1024;

/// The limits every session obeys, from the server's configuration.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Heartbeat, idle and login deadlines.
    pub timeouts: Timeouts,
    /// The line rate limit.
    pub flood: FloodPolicy,
    /// Longest line in bytes, line end not counted.
    pub max_line: usize,
    /// Longest a leaving connection may take to accept its last bytes.
    pub linger: Duration,
}

/// Why a connection left; logged, and decides whether a `BYE` is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    Quit,
    Eof,
    Reset,
    IdleTimeout,
    LoginTimeout,
    Sendq,
    Shutdown,
    Flooding,
    /// Another connection resumed this one's session.
    Replaced,
    /// Clusters: this node lost the cluster for too long.
    CutOff,
    /// An operator ended the connection.
    Kicked,
    /// The server is draining for a restart.
    Restarting,
}

impl Departure {
    /// Every departure, in declaration order (`why as usize` indexes it).
    pub const ALL: [Departure; 12] = [
        Departure::Quit,
        Departure::Eof,
        Departure::Reset,
        Departure::IdleTimeout,
        Departure::LoginTimeout,
        Departure::Sendq,
        Departure::Shutdown,
        Departure::Flooding,
        Departure::Replaced,
        Departure::CutOff,
        Departure::Kicked,
        Departure::Restarting,
    ];

    /// Name used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Departure::Quit => "quit",
            Departure::Eof => "eof",
            Departure::Reset => "reset",
            Departure::IdleTimeout => "idle-timeout",
            Departure::LoginTimeout => "login-timeout",
            Departure::Sendq => "sendq",
            Departure::Shutdown => "shutdown",
            Departure::Flooding => "flooding",
            Departure::Replaced => "replaced",
            Departure::CutOff => "cut-off",
            Departure::Kicked => "kicked",
            Departure::Restarting => "restarting",
        }
    }

    /// The `BYE` line this departure ends with, if the peer gets one.
    pub fn bye(self) -> Option<ByeReason> {
        match self {
            Departure::Quit => Some(ByeReason::Quit),
            Departure::IdleTimeout => Some(ByeReason::IdleTimeout),
            Departure::LoginTimeout => Some(ByeReason::LoginTimeout),
            Departure::Shutdown => Some(ByeReason::ShuttingDown),
            Departure::Flooding => Some(ByeReason::Flooding),
            Departure::Replaced => Some(ByeReason::Replaced),
            Departure::CutOff => Some(ByeReason::CutOff),
            Departure::Kicked => Some(ByeReason::Kicked),
            Departure::Restarting => Some(ByeReason::Restarting),
            Departure::Eof | Departure::Reset | Departure::Sendq => None,
        }
    }

    /// Whether queued output is still delivered: not to a peer that is gone
    /// (reset) or that is the reason output piled up (sendq).
    pub fn flushes(self) -> bool {
        !matches!(self, Departure::Reset | Departure::Sendq)
    }

    /// Whether the others are told: not at shutdown or in a drain, when
    /// everyone is leaving too, nor when the session lives on in another
    /// connection.
    pub fn announced(self) -> bool {
        !matches!(
            self,
            Departure::Shutdown | Departure::Restarting | Departure::Replaced
        )
    }
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading and writing normally (logged in or not).
    Open,
    /// Leaving: input is ignored, queued output (ending in `BYE`) is
    /// flushed until `until`, then the connection is closed.
    Draining { until: Instant },
    /// Nothing more to do: the connection can be removed.
    Closed,
}

/// What the dispatcher made of one line: the chat's step, or a failure of
/// the connection found while handling it (its output overflowed).
pub type Dispatched = Result<Step, Departure>;

/// What the event loop must do after a timeout was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timed {
    /// Nothing beyond re-arming at `poll_timeout`.
    Nothing,
    /// Send the heartbeat `PING`.
    Ping,
    /// A flood-control pause ended: read the connection again.
    Resume,
}

/// One connection's sans-IO session.
#[derive(Debug)]
pub struct Session {
    framer: Framer,
    live: Liveness,
    bucket: Bucket,
    logged_in: bool,
    /// Reading is paused until then (out of flood-control tokens).
    paused_until: Option<Instant>,
    /// Reading waits for the chat's store to answer this connection.
    waiting: bool,
    /// Bytes received but not yet framed when reading was paused.
    held: Vec<u8>,
    phase: Phase,
    /// Set when the session departs, taken once by the loop.
    departure: Option<Departure>,
}

impl Session {
    /// A session for a connection accepted at `now`.
    pub fn new(now: Instant, rules: &Rules) -> Self {
        Session {
            framer: Framer::new(rules.max_line.min(PRE_LOGIN_BYTES)),
            live: Liveness::new(now),
            bucket: Bucket::new(now, &rules.flood),
            logged_in: false,
            paused_until: None,
            waiting: false,
            held: Vec::new(),
            phase: Phase::Open,
            departure: None,
        }
    }

    /// A session with nothing left to do, standing in while the real one
    /// is lent out (or after a handler panicked).
    pub fn closed(now: Instant) -> Self {
        let mut session = Session::new(
            now,
            &Rules {
                timeouts: Timeouts {
                    ping_interval: Duration::MAX,
                    idle_timeout: Duration::MAX,
                    login_timeout: Duration::MAX,
                },
                flood: FloodPolicy::OFF,
                max_line: 0,
                linger: Duration::ZERO,
            },
        );
        session.phase = Phase::Closed;
        session
    }

    /// True while the session reads and writes normally.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// True while departed output is being flushed.
    pub fn is_draining(&self) -> bool {
        matches!(self.phase, Phase::Draining { .. })
    }

    /// True once the connection can be removed.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// True once the connection logged in (or resumed).
    pub fn is_logged_in(&self) -> bool {
        self.logged_in
    }

    /// True while flood control holds the connection's input back.
    pub fn is_paused(&self) -> bool {
        self.paused_until.is_some()
    }

    /// True when the loop should read from the connection now.
    pub fn wants_read(&self) -> bool {
        self.is_open() && self.paused_until.is_none() && !self.waiting
    }

    /// What the connection waited for (the store, or in a cluster the
    /// log) came, leaving it as `step` says: reading may go on (the loop
    /// reads again).
    pub fn release(&mut self, step: Step, rules: &Rules) {
        self.waiting = false;
        if matches!(
            step,
            Step::LoggedIn | Step::Replaced(_) | Step::Replay { .. }
        ) {
            self.logged_in = true;
            self.framer.raise_max_line(rules.max_line);
        }
    }

    /// Reads nothing more until [`Session::release`]: what the connection
    /// asked for (a resumed session's replay) waits for the store.
    /// True once the login deadline no longer applies: logged in, or
    /// waiting for the server to answer a login (a password check queued
    /// behind a storm of them, a name claim in a cluster). A waiting
    /// connection reads nothing, so the idle timeout bounds the wait.
    fn past_login(&self) -> bool {
        self.logged_in || self.waiting
    }

    pub fn wait(&mut self) {
        self.waiting = true;
    }

    /// Frames `bytes` and hands each line to `dispatch`, applying the
    /// session's rules to what it returns. Returns whether the loop may read
    /// more now: not after a departure, and not while flood control pauses
    /// the connection (the bytes not yet framed are kept for later).
    pub fn handle_bytes(
        &mut self,
        bytes: &[u8],
        now: Instant,
        rules: &Rules,
        dispatch: impl FnMut(Frame<'_>) -> Dispatched,
    ) -> bool {
        if !self.wants_read() {
            return false;
        }
        if !self.held.is_empty() {
            self.held.extend_from_slice(bytes);
            return self.handle_held(now, rules, dispatch);
        }
        self.frame(bytes, now, rules, dispatch)
    }

    /// Frames what was held back by a flood-control pause or a wait for
    /// the store, once it is over. Returns whether the loop may read more now.
    pub fn handle_held(
        &mut self,
        now: Instant,
        rules: &Rules,
        dispatch: impl FnMut(Frame<'_>) -> Dispatched,
    ) -> bool {
        if !self.wants_read() {
            return false;
        }
        let held = std::mem::take(&mut self.held);
        let reading = self.frame(&held, now, rules, dispatch);
        if self.held.is_empty() {
            // Keep the allocation if reading goes on.
            self.held = held;
            self.held.clear();
        }
        reading
    }

    fn frame(
        &mut self,
        bytes: &[u8],
        now: Instant,
        rules: &Rules,
        mut dispatch: impl FnMut(Frame<'_>) -> Dispatched,
    ) -> bool {
        let mut framer = std::mem::take(&mut self.framer);
        let flow = framer.feed(bytes, |frame| {
            if matches!(frame, Frame::Line(_)) {
                self.live.on_activity(now);
            }
            let dispatched = dispatch(frame);
            self.after_line(dispatched, now, rules)
        });
        self.framer = framer;
        if self.logged_in {
            // Lines after the login in the same read were held to the
            // pre-login limit; later ones get the server's.
            self.framer.raise_max_line(rules.max_line);
        }
        match flow {
            ControlFlow::Continue(()) => true,
            ControlFlow::Break(used) => {
                if self.is_open() {
                    self.held.extend_from_slice(&bytes[used..]);
                }
                false
            }
        }
    }

    fn after_line(
        &mut self,
        dispatched: Dispatched,
        now: Instant,
        rules: &Rules,
    ) -> ControlFlow<()> {
        match dispatched {
            Ok(Step::Continue) => {}
            Ok(Step::LoggedIn | Step::Replaced(_)) => self.logged_in = true,
            Ok(Step::Replay { .. }) => {
                self.logged_in = true;
                self.waiting = true;
            }
            Ok(Step::Wait) => self.waiting = true,
            Ok(Step::Quit) => self.depart(Departure::Quit, now, rules),
            Err(why) => self.depart(why, now, rules),
        }
        if !self.is_open() {
            return ControlFlow::Break(());
        }
        match self.bucket.charge(now, &rules.flood) {
            Throttle::Go if self.waiting => ControlFlow::Break(()),
            Throttle::Go => ControlFlow::Continue(()),
            Throttle::PauseUntil(at) => {
                self.paused_until = Some(at);
                ControlFlow::Break(())
            }
            Throttle::Kick => {
                self.depart(Departure::Flooding, now, rules);
                ControlFlow::Break(())
            }
        }
    }

    /// Takes one unit of input that is not a line (a WebSocket binary
    /// message) as a line would be taken: `dispatch` answers it and flood
    /// control charges it. Returns whether the loop may read more now.
    pub fn handle_not_text(
        &mut self,
        now: Instant,
        rules: &Rules,
        dispatch: impl FnOnce() -> Dispatched,
    ) -> bool {
        if !self.wants_read() {
            return false;
        }
        let dispatched = dispatch();
        self.after_line(dispatched, now, rules).is_continue()
    }

    /// Takes one control frame (a WebSocket ping or pong): it is not a
    /// line and not activity, but flood control charges it as one, so a
    /// stream of them is slowed and then closed like a stream of lines.
    /// Returns whether the loop may read more now.
    pub fn handle_control(&mut self, now: Instant, rules: &Rules) -> bool {
        if !self.wants_read() {
            return false;
        }
        self.after_line(Ok(Step::Continue), now, rules)
            .is_continue()
    }

    /// The peer has nothing more to send right now: it is not flooding.
    pub fn caught_up(&mut self) {
        self.bucket.caught_up();
    }

    /// Ends the session, once; later calls are ignored. A departure that
    /// flushes drains for at most `rules.linger`; one that does not closes
    /// at once.
    pub fn depart(&mut self, why: Departure, now: Instant, rules: &Rules) {
        if !self.is_open() {
            return;
        }
        self.departure = Some(why);
        self.held = Vec::new();
        self.phase = if why.flushes() {
            Phase::Draining {
                until: now + rules.linger,
            }
        } else {
            Phase::Closed
        };
    }

    /// The departure, the first time it is asked for after it happened.
    pub fn take_departure(&mut self) -> Option<Departure> {
        self.departure.take()
    }

    /// Draining is over (the peer took everything, or cannot take more).
    pub fn close(&mut self) {
        self.phase = Phase::Closed;
    }

    /// The earliest instant at which `handle_timeout` could have something
    /// to do; `None` once closed.
    pub fn poll_timeout(&self, rules: &Rules) -> Option<Instant> {
        match self.phase {
            Phase::Open => {
                let due = self.live.next_deadline(self.past_login(), &rules.timeouts);
                Some(self.paused_until.map_or(due, |resume| resume.min(due)))
            }
            Phase::Draining { until } => Some(until),
            Phase::Closed => None,
        }
    }

    /// Handles whatever is due at `now`. Departures show up in
    /// `take_departure`; a draining session past its linger closes.
    pub fn handle_timeout(&mut self, now: Instant, rules: &Rules) -> Timed {
        match self.phase {
            Phase::Closed => Timed::Nothing,
            Phase::Draining { until } => {
                if now >= until {
                    self.phase = Phase::Closed;
                }
                Timed::Nothing
            }
            Phase::Open => {
                match self.live.check(now, self.past_login(), &rules.timeouts) {
                    Verdict::Expire(ByeReason::LoginTimeout) => {
                        self.depart(Departure::LoginTimeout, now, rules);
                        return Timed::Nothing;
                    }
                    Verdict::Expire(_) => {
                        self.depart(Departure::IdleTimeout, now, rules);
                        return Timed::Nothing;
                    }
                    Verdict::Ping(_) => return Timed::Ping,
                    Verdict::Wait(_) => {}
                }
                if self.paused_until.is_some_and(|t| now >= t) {
                    self.paused_until = None;
                    return Timed::Resume;
                }
                Timed::Nothing
            }
        }
    }

    /// Frees empty buffers, so a quiet connection costs none. Returns the
    /// capacity freed.
    pub fn release_idle_buffers(&mut self) -> usize {
        let mut freed = self.framer.release_idle();
        if self.held.is_empty() {
            freed += std::mem::take(&mut self.held).capacity();
        }
        freed
    }

    /// Heap bytes this session's buffers hold.
    pub fn buffer_capacity(&self) -> usize {
        self.framer.capacity() + self.held.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    fn rules() -> Rules {
        Rules {
            timeouts: Timeouts {
                ping_interval: 20 * S,
                idle_timeout: 60 * S,
                login_timeout: 30 * S,
            },
            flood: FloodPolicy::new(10.0, 20, 10 * S),
            max_line: 16,
            linger: 2 * S,
        }
    }

    #[test]
    fn every_departure_is_listed_where_its_discriminant_points() {
        for (i, why) in Departure::ALL.into_iter().enumerate() {
            assert_eq!(why as usize, i, "{}", why.as_str());
        }
    }

    /// A session and what it dispatched, with a fake clock: the test pair
    /// of a connection and its peer, minus the sockets.
    struct Pair {
        session: Session,
        rules: Rules,
        t0: Instant,
        now: Instant,
        lines: Vec<Option<String>>,
    }

    impl Pair {
        fn new(rules: Rules) -> Pair {
            let t0 = Instant::now();
            Pair {
                session: Session::new(t0, &rules),
                rules,
                t0,
                now: t0,
                lines: Vec::new(),
            }
        }

        /// Feeds bytes; lines are answered the way the chat would answer
        /// them (`LOGIN` logs in, `QUIT` quits, `BIG` overflows the sendq).
        fn send(&mut self, bytes: &[u8]) -> bool {
            let lines = &mut self.lines;
            self.session
                .handle_bytes(bytes, self.now, &self.rules, |frame| record(lines, frame))
        }

        fn resume(&mut self) -> bool {
            let lines = &mut self.lines;
            self.session
                .handle_held(self.now, &self.rules, |frame| record(lines, frame))
        }

        fn at(&mut self, after: Duration) -> Timed {
            self.now = self.t0 + after;
            self.session.handle_timeout(self.now, &self.rules)
        }

        fn next(&self) -> Duration {
            self.session.poll_timeout(&self.rules).unwrap() - self.t0
        }

        fn lines(&mut self) -> Vec<Option<String>> {
            std::mem::take(&mut self.lines)
        }
    }

    fn record(lines: &mut Vec<Option<String>>, frame: Frame<'_>) -> Dispatched {
        let Frame::Line(line) = frame else {
            lines.push(None);
            return Ok(Step::Continue);
        };
        let text = String::from_utf8_lossy(line).into_owned();
        let step = match text.split(' ').next() {
            Some("LOGIN") => Ok(Step::LoggedIn),
            Some("QUIT") => Ok(Step::Quit),
            Some("BIG") => Err(Departure::Sendq),
            Some("HISTORY") => Ok(Step::Wait),
            _ => Ok(Step::Continue),
        };
        lines.push(Some(text));
        step
    }

    fn text(lines: &[&str]) -> Vec<Option<String>> {
        lines.iter().map(|l| Some(l.to_string())).collect()
    }

    #[test]
    fn lines_are_framed_and_dispatched_in_order() {
        let mut p = Pair::new(rules());
        assert!(p.send(b"LOGIN a\r\nMSG h"));
        assert!(p.send(b"i\n"));
        assert_eq!(p.lines(), text(&["LOGIN a", "MSG hi"]));
    }

    #[test]
    fn a_login_waiting_for_the_server_is_bounded_by_the_idle_timeout_instead() {
        let mut p = Pair::new(rules());
        p.session.wait();
        assert_eq!(p.at(20 * S), Timed::Ping);
        assert_eq!(p.at(30 * S), Timed::Nothing);
        assert_eq!(p.session.take_departure(), None, "past the login deadline");
        assert_eq!(p.next(), 60 * S);
        assert_eq!(p.at(60 * S), Timed::Nothing);
        assert_eq!(p.session.take_departure(), Some(Departure::IdleTimeout));
    }

    #[test]
    fn an_anonymous_connection_is_cut_at_the_login_timeout() {
        let mut p = Pair::new(rules());
        assert_eq!(p.next(), 20 * S, "the first heartbeat comes first");
        assert_eq!(p.at(20 * S), Timed::Ping);
        assert_eq!(p.next(), 30 * S);
        assert!(
            p.send(b"PONG\n"),
            "activity does not postpone the login deadline"
        );
        assert_eq!(p.at(30 * S), Timed::Nothing);
        assert_eq!(p.session.take_departure(), Some(Departure::LoginTimeout));
        assert!(
            p.session.is_draining(),
            "BYE login-timeout is still flushed"
        );
        assert_eq!(p.session.take_departure(), None, "reported once");
    }

    #[test]
    fn a_silent_user_is_pinged_then_purged() {
        let mut p = Pair::new(rules());
        p.send(b"LOGIN a\n");
        assert_eq!(p.next(), 20 * S);
        assert_eq!(p.at(19 * S), Timed::Nothing);
        assert_eq!(p.at(20 * S), Timed::Ping);
        assert_eq!(p.next(), 60 * S);
        assert_eq!(p.at(59 * S), Timed::Nothing);
        assert_eq!(p.session.take_departure(), None);
        assert_eq!(p.at(60 * S), Timed::Nothing);
        assert_eq!(p.session.take_departure(), Some(Departure::IdleTimeout));
    }

    #[test]
    fn an_answer_to_the_heartbeat_brings_the_next_one_back() {
        let mut p = Pair::new(rules());
        p.send(b"LOGIN a\n");
        assert_eq!(p.at(20 * S), Timed::Ping);
        p.now = p.t0 + 25 * S;
        p.send(b"PONG\n");
        assert_eq!(
            p.next(),
            45 * S,
            "earlier than the idle deadline it was armed for"
        );
        assert_eq!(p.at(45 * S), Timed::Ping);
        assert_eq!(p.at(85 * S), Timed::Nothing);
        assert_eq!(p.session.take_departure(), Some(Departure::IdleTimeout));
    }

    #[test]
    fn quit_departs_and_drops_what_follows() {
        let mut p = Pair::new(rules());
        assert!(!p.send(b"LOGIN a\nQUIT bye\nMSG late\n"));
        assert_eq!(p.lines(), text(&["LOGIN a", "QUIT bye"]));
        assert_eq!(p.session.take_departure(), Some(Departure::Quit));
        assert!(!p.send(b"MSG later\n"));
        assert!(p.lines().is_empty());
    }

    #[test]
    fn draining_ends_at_the_linger_or_when_closed() {
        let mut p = Pair::new(rules());
        p.send(b"QUIT\n");
        assert!(p.session.is_draining());
        assert_eq!(p.next(), 2 * S);
        assert_eq!(p.at(1 * S), Timed::Nothing);
        assert!(p.session.is_draining());
        assert_eq!(p.at(2 * S), Timed::Nothing);
        assert!(p.session.is_closed());
        assert_eq!(p.session.poll_timeout(&p.rules), None);
    }

    #[test]
    fn a_failure_found_while_dispatching_closes_without_flushing() {
        let mut p = Pair::new(rules());
        assert!(!p.send(b"BIG\nMSG after\n"));
        assert_eq!(p.lines(), text(&["BIG"]));
        assert_eq!(p.session.take_departure(), Some(Departure::Sendq));
        assert!(p.session.is_closed());
    }

    #[test]
    fn a_departure_happens_once() {
        let mut p = Pair::new(rules());
        let now = p.now;
        p.session.depart(Departure::Eof, now, &p.rules);
        p.session.depart(Departure::Reset, now, &p.rules);
        assert_eq!(p.session.take_departure(), Some(Departure::Eof));
        assert!(p.session.is_draining());
    }

    #[test]
    fn a_too_long_line_is_reported_and_the_next_one_still_arrives() {
        let mut p = Pair::new(rules());
        assert!(p.send(b"0123456789abcdefXYZ\nMSG ok\n"));
        assert_eq!(p.lines(), vec![None, Some("MSG ok".into())]);
        assert!(p.send(&[b'x'; 100]));
        assert!(
            p.session.buffer_capacity() <= 64,
            "an endless line is not kept"
        );
    }

    #[test]
    fn flooding_pauses_reading_then_resumes_with_the_held_bytes() {
        let mut p = Pair::new(rules());
        let burst: Vec<u8> = (0..25)
            .flat_map(|i| format!("MSG {i}\n").into_bytes())
            .collect();
        assert!(!p.send(&burst), "paused after the burst");
        assert_eq!(p.lines().len(), 20);
        assert!(!p.session.wants_read());
        assert_eq!(p.next(), 100 * MS, "wakes when a token is back");
        assert_eq!(p.at(100 * MS), Timed::Resume);
        assert!(!p.resume(), "one line, then paused again");
        assert_eq!(p.lines(), text(&["MSG 20"]));
        for step in 2..=5 {
            assert_eq!(p.at(step * 100 * MS), Timed::Resume);
            p.resume();
        }
        assert_eq!(p.lines(), text(&["MSG 21", "MSG 22", "MSG 23", "MSG 24"]));
        assert_eq!(p.at(600 * MS), Timed::Resume);
        assert!(p.resume(), "nothing is held: the socket may be read again");
        assert!(p.lines().is_empty());
        assert!(p.session.wants_read());
    }

    #[test]
    fn a_wait_for_the_store_holds_later_lines_until_released() {
        let mut p = Pair::new(rules());
        assert!(!p.send(b"HISTORY #a\nMSG 1\nMSG 2\n"), "waiting");
        assert_eq!(p.lines(), text(&["HISTORY #a"]));
        assert!(!p.session.wants_read());
        p.session.release(Step::Continue, &rules());
        assert!(p.resume(), "all held lines, in order");
        assert_eq!(p.lines(), text(&["MSG 1", "MSG 2"]));
        assert!(p.session.wants_read());
    }

    #[test]
    fn staying_over_the_rate_ends_in_bye_flooding() {
        let mut p = Pair::new(rules());
        let flood: Vec<u8> = b"MSG x\n".repeat(1000);
        p.send(&flood);
        let mut ms = 0;
        while p.session.take_departure().is_none() {
            ms += 100;
            assert!(ms < 20_000, "never kicked");
            if p.at(ms * MS) == Timed::Resume {
                p.resume();
            }
        }
        assert!(ms >= 10_000, "kicked after the flood timeout, at {ms} ms");
        assert!(p.session.is_draining(), "BYE flooding is flushed");
    }

    #[test]
    fn a_caught_up_peer_is_not_kicked() {
        let mut p = Pair::new(rules());
        for second in 0..30u32 {
            p.now = p.t0 + second * S;
            let lines: Vec<u8> = b"MSG x\n".repeat(10);
            assert!(p.send(&lines), "ten lines a second is the rate");
            p.session.caught_up();
        }
        assert_eq!(p.session.take_departure(), None);
    }

    #[test]
    fn idle_buffers_are_released() {
        let mut p = Pair::new(rules());
        p.send(b"MSG partial");
        assert_eq!(
            p.session.release_idle_buffers(),
            0,
            "a partial line is kept"
        );
        p.send(b"\n");
        assert!(p.session.release_idle_buffers() > 0);
        assert_eq!(p.session.buffer_capacity(), 0);
    }
}

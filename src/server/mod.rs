//! The event loop: the only code that touches mio. One thread, one `Poll`, a
//! `Slab` of connections keyed by their `Token`, and a timer wheel that sets
//! the poll timeout.
//!
//! Each turn: handle the events (reads feed the chat, whose output is only
//! appended to write buffers), retry connections that stopped reading before
//! `WouldBlock`, fire due timers, flush every connection written to once, and
//! only then remove closed connections, so a slab key is never reused by an
//! accept while events for its old owner are still being handled.

mod conn;
mod memory;

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::os::fd::AsRawFd;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use log::{debug, error, info, trace, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::chat::{Chat, ConnId, Outbox, Step};
use crate::config::Config;
use crate::flood::{Bucket, Throttle};
use crate::liveness::{Liveness, Verdict};
use crate::protocol::{ByeReason, Frame, Framer, Reply};
use crate::wheel::Wheel;

pub use conn::{Conn, ConnState, Departure};
use memory::Trimmer;

/// Token of the listening socket; slab keys never reach it.
pub(crate) const LISTENER: Token = Token(usize::MAX);
/// Token of the SIGINT/SIGTERM pipe.
pub(crate) const SIGNALS: Token = Token(usize::MAX - 1);

/// How every server loop in this crate starts: a poll with the listener on
/// `addr` and the shutdown signals registered.
pub(crate) fn listen(addr: SocketAddr) -> io::Result<(Poll, TcpListener, Signals)> {
    let poll = Poll::new()?;
    let mut listener = TcpListener::bind(addr)?;
    // mio listens with std's backlog of 128, which a burst of connects
    // overflows into SYN retries; Linux lets a second listen() raise it.
    // SAFETY: listen(2) on a socket we own.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        warn!(
            "cannot raise the listen backlog: {}",
            io::Error::last_os_error()
        );
    }
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)?;
    Ok((poll, listener, signals))
}

/// Queued bytes past which a write is tried at once rather than at the end of
/// the turn.
const WRITE_THROUGH: usize = 4096;
/// Heap a departed connection is taken to free besides its buffers: measured
/// at about 4 KB per departure in a storm of 2,000, none of it in buffers.
const DEPARTURE_FREES: usize = 4096;
/// Lines queued to recipients per phase of a turn (events, then retried
/// reads) before further input waits for the next turn. A join storm
/// announces every login to everyone; without a bound one turn could queue
/// millions of lines and hold every live message back behind them.
const TURN_WORK: usize = 100_000;
/// Due timers handled per turn; the rest wait a tick.
const TIMER_BUDGET: usize = 64;
/// Bytes read from one socket per turn before others get their turn.
const READ_BUDGET: usize = 64 * 1024;
/// Size of the shared buffer each `read` fills.
const READ_CHUNK: usize = 16 * 1024;
/// Timer wheel resolution and size: 10 ms ticks, about 5 s per revolution.
const WHEEL_TICK: Duration = Duration::from_millis(10);
const WHEEL_SLOTS: usize = 512;
/// Longest a leaving connection may take to accept its last bytes.
const LINGER: Duration = Duration::from_secs(2);
/// Longest shutdown waits for `BYE shutting-down` to drain.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Pending connections the kernel may queue before we accept them (capped by
/// net.core.somaxconn).
const LISTEN_BACKLOG: i32 = 1024;
/// Pause before accepting again when descriptors ran out and no spare was left.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The connections and the loop's write list; the chat's [`Outbox`].
struct Conns {
    slab: Slab<Conn>,
    pending_writes: Vec<ConnId>,
    /// Connections that failed while being written to (sendq overflow or a
    /// write error), to be departed as soon as the current chat call returns.
    doomed: Vec<(ConnId, Departure)>,
    sendq: usize,
    scratch: Vec<u8>,
    trimmer: Trimmer,
    /// Lines queued to recipients in this phase of the turn: the measure of
    /// work that `TURN_WORK` bounds.
    appended: usize,
}

impl Conns {
    fn queue_write(&mut self, id: ConnId) {
        if let Some(conn) = self.slab.get_mut(id) {
            if !conn.write_queued {
                conn.write_queued = true;
                self.pending_writes.push(id);
            }
        }
    }

    fn send_reply(&mut self, to: ConnId, reply: Reply<'_>) {
        let mut line = std::mem::take(&mut self.scratch);
        line.clear();
        reply.write_to(&mut line);
        self.send(to, &line);
        self.scratch = line;
    }
}

impl Outbox for Conns {
    fn send(&mut self, to: ConnId, bytes: &[u8]) {
        let Some(conn) = self.slab.get_mut(to) else {
            debug_assert!(false, "chat wrote to unknown connection {to}");
            return;
        };
        if conn.state != ConnState::Open || conn.overflowed {
            return;
        }
        let would_hold = conn.wbuf.len() + bytes.len();
        if would_hold > self.sendq || (would_hold > WRITE_THROUGH && !conn.want_writable) {
            // Hand the kernel what it takes now instead of growing the buffer:
            // a burst (a join storm, a turn of fan-out) then costs each
            // connection at most a page or so, and only a peer whose kernel
            // buffer is really full is ever called slow.
            let failure = match conn.write_out() {
                Err(e) => {
                    debug!("conn {to} write error: {e}");
                    Some(Departure::Reset)
                }
                Ok(freed) => {
                    self.trimmer.freed(freed);
                    (conn.wbuf.len() + bytes.len() > self.sendq).then_some(Departure::Sendq)
                }
            };
            if let Some(why) = failure {
                conn.overflowed = true;
                self.doomed.push((to, why));
                return;
            }
        }
        conn.wbuf.extend_from_slice(bytes);
        self.appended += 1;
        if !conn.write_queued {
            conn.write_queued = true;
            self.pending_writes.push(to);
        }
    }
}

/// Counters a test or an operator can read from the logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub connections: usize,
    pub users: usize,
    pub timers: usize,
    /// Bytes queued for clients and not yet taken by the kernel.
    pub queued: usize,
    /// Heap bytes reserved by all connections' buffers.
    pub buffers: usize,
}

/// A bound chat server, ready to [`run`](Server::run).
pub struct Server {
    poll: Poll,
    listener: Option<TcpListener>,
    signals: Signals,
    conns: Conns,
    chat: Chat,
    wheel: Wheel<ConnId>,
    cfg: Config,
    read_again: Vec<ConnId>,
    reap: Vec<ConnId>,
    read_chunk: Vec<u8>,
    /// Held open so that, out of descriptors, we can still accept and refuse.
    spare_fd: Option<File>,
    accept_paused_until: Option<Instant>,
    shutdown_deadline: Option<Instant>,
    next_stats: Option<Instant>,
}

fn spare_fd() -> Option<File> {
    File::open("/dev/null").ok()
}

/// Accept errors that concern one peer only: try the next one at once.
pub(crate) fn accept_again(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
    )
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

impl Server {
    /// Binds the listener and installs the SIGINT/SIGTERM handlers.
    pub fn bind(cfg: Config) -> io::Result<Server> {
        let (poll, listener, signals) = listen(cfg.addr)?;
        Ok(Server {
            poll,
            listener: Some(listener),
            signals,
            conns: Conns {
                slab: Slab::new(),
                pending_writes: Vec::new(),
                doomed: Vec::new(),
                sendq: cfg.sendq,
                scratch: Vec::new(),
                trimmer: Trimmer::new(),
                appended: 0,
            },
            chat: Chat::new(),
            wheel: Wheel::new(WHEEL_TICK, WHEEL_SLOTS, Instant::now()),
            cfg,
            read_again: Vec::new(),
            reap: Vec::new(),
            read_chunk: vec![0; READ_CHUNK],
            spare_fd: spare_fd(),
            accept_paused_until: None,
            shutdown_deadline: None,
            next_stats: None,
        })
    }

    /// The address actually listened on (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.listener {
            Some(l) => l.local_addr(),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Current counts of connections, users and timers.
    pub fn stats(&self) -> Stats {
        let conns = self.conns.slab.iter().map(|(_, c)| c);
        Stats {
            connections: self.conns.slab.len(),
            users: self.chat.users(),
            timers: self.wheel.len(),
            queued: conns.clone().map(|c| c.wbuf.len()).sum(),
            buffers: conns.map(Conn::buffer_capacity).sum(),
        }
    }

    fn log_stats(&mut self, now: Instant) {
        let Some(interval) = self.cfg.stats_interval else {
            return;
        };
        if self.next_stats.is_some_and(|t| now < t) {
            return;
        }
        self.next_stats = Some(now + interval);
        let s = self.stats();
        debug!(
            "stats: connections={} users={} timers={} queued_bytes={} buffer_bytes={} freed_untrimmed={}",
            s.connections,
            s.users,
            s.timers,
            s.queued,
            s.buffers,
            self.conns.trimmer.owed()
        );
    }

    /// Serves until SIGINT or SIGTERM, then says `BYE shutting-down` to everyone.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            self.conns.appended = 0;
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(now),
                    SIGNALS => self.on_signals(now),
                    Token(id) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            if self.conns.appended < TURN_WORK {
                                self.isolate(id, now, |server| server.read(id, now));
                            } else {
                                self.read_later(id);
                            }
                        }
                        if event.is_writable() || event.is_write_closed() {
                            self.conns.queue_write(id);
                        }
                    }
                }
            }
            self.retry_reads(now);
            if self.accept_paused_until.is_some_and(|t| now >= t) {
                self.accept_paused_until = None;
                self.accept_all(now);
            }
            self.expire_timers(now);
            self.flush_pending(now);
            self.reap_closed();
            self.conns.trimmer.maybe_trim(now);
            self.log_stats(now);
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.slab.is_empty() || now >= deadline {
                    info!(
                        "shutdown complete; {} connections cut short",
                        self.conns.slab.len()
                    );
                    return Ok(());
                }
            }
        }
    }

    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.read_again.is_empty() {
            return Some(Duration::ZERO);
        }
        [
            self.wheel.next_timeout(now),
            self.accept_paused_until
                .map(|t| t.saturating_duration_since(now)),
            self.shutdown_deadline
                .map(|t| t.saturating_duration_since(now)),
            self.conns
                .trimmer
                .deadline(now)
                .map(|t| t.saturating_duration_since(now)),
            self.next_stats.map(|t| t.saturating_duration_since(now)),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn accept_all(&mut self, now: Instant) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((sock, peer)) => self.admit(sock, peer, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if accept_again(&e) => {}
                Err(e) if is_fd_exhaustion(&e) && self.spare_fd.is_some() => {
                    match self.refuse_with_spare_fd() {
                        Ok(true) => {}
                        Ok(false) => return,
                        Err(e) => return self.pause_accepting(e, now),
                    }
                }
                Err(e) => return self.pause_accepting(e, now),
            }
        }
    }

    /// Accepting failed for a reason that retrying at once will not fix; the
    /// backlog is left for the next try, which the poll timeout schedules.
    fn pause_accepting(&mut self, e: io::Error, now: Instant) {
        warn!("accept failed: {e}; pausing accepts for {ACCEPT_BACKOFF:?}");
        self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
    }

    /// Out of descriptors: give up the spare one to accept the waiting peer
    /// and tell it the server is full, so the backlog drains instead of
    /// waking us forever. `Ok(true)`: a peer was refused and more may wait.
    /// `Ok(false)`: the backlog is empty (Linux reports EMFILE before it looks
    /// at the backlog, so an empty one also lands here).
    fn refuse_with_spare_fd(&mut self) -> io::Result<bool> {
        drop(self.spare_fd.take());
        let accepted = match &self.listener {
            Some(listener) => listener.accept(),
            None => return Ok(false),
        };
        let refused = match accepted {
            Ok((sock, peer)) => {
                warn!("out of file descriptors; refusing {peer}");
                refuse(sock, ByeReason::ServerFull);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        };
        self.spare_fd = spare_fd();
        refused
    }

    fn admit(&mut self, mut sock: TcpStream, peer: SocketAddr, now: Instant) {
        if self.conns.slab.len() >= self.cfg.max_clients {
            info!(
                "refusing {peer}: server full ({} connections)",
                self.conns.slab.len()
            );
            refuse(sock, ByeReason::ServerFull);
            return;
        }
        // Writes are already batched per turn; Nagle would only hold the
        // next turn's line back for a delayed ACK (40 ms on Linux).
        if let Err(e) = sock.set_nodelay(true) {
            debug!("{peer}: cannot set TCP_NODELAY: {e}");
        }
        let entry = self.conns.slab.vacant_entry();
        let id = entry.key();
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut sock, Token(id), Interest::READABLE)
        {
            warn!("cannot register {peer}: {e}");
            return;
        }
        let live = Liveness::new(now);
        let bucket = Bucket::new(now, &self.cfg.flood);
        let mut conn = Conn::new(sock, peer, self.cfg.max_line, live, bucket);
        conn.timer = Some(
            self.wheel
                .insert(live.next_deadline(false, &self.cfg.timeouts), id),
        );
        entry.insert(conn);
        info!("conn {id} {peer} connected");
    }

    /// Runs one connection's handler so that a bug in it (a panic) costs that
    /// connection, not the server: the connection is dropped as if reset and
    /// the loop goes on. The chat's state is only as consistent as the panic
    /// left it, which is why this is a last line of defence, not error handling.
    fn isolate(&mut self, id: ConnId, now: Instant, work: impl FnOnce(&mut Self)) {
        if panic::catch_unwind(AssertUnwindSafe(|| work(self))).is_ok() {
            return;
        }
        error!("conn {id}: handler panicked; dropping the connection");
        if self.read_chunk.len() != READ_CHUNK {
            self.read_chunk = vec![0; READ_CHUNK];
        }
        let departed =
            panic::catch_unwind(AssertUnwindSafe(|| self.depart(id, Departure::Reset, now)));
        if departed.is_err() {
            self.chat.remove(id);
        }
        if let Some(conn) = self.conns.slab.get_mut(id) {
            if conn.state != ConnState::Dead {
                conn.state = ConnState::Dead;
                self.reap.push(id);
            }
        }
    }

    fn read(&mut self, id: ConnId, now: Instant) {
        let Some(conn) = self.conns.slab.get_mut(id) else {
            return;
        };
        if conn.state != ConnState::Open || conn.paused_until.is_some() {
            return;
        }
        // Moved out so the chat can borrow the rest of `self` while lines
        // still point into them; they go back below.
        let mut framer = std::mem::take(&mut conn.framer);
        let held = std::mem::take(&mut conn.held);
        let mut chunk = std::mem::take(&mut self.read_chunk);
        // Bytes read before a flood-control pause come before new ones.
        let mut reading = held.is_empty() || self.feed(id, &mut framer, &held, now);
        let mut budget = READ_BUDGET;
        while reading {
            let conn = &mut self.conns.slab[id];
            match conn.sock.read(&mut chunk) {
                Ok(0) => {
                    self.depart(id, Departure::Eof, now);
                    break;
                }
                Ok(n) => {
                    trace!("conn {id} read {n} bytes");
                    reading = self.feed(id, &mut framer, &chunk[..n], now);
                    budget = budget.saturating_sub(n);
                    if reading && (budget == 0 || self.conns.appended >= TURN_WORK) {
                        self.read_later(id);
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.bucket.caught_up();
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!("conn {id} read error: {e}");
                    self.depart(id, Departure::Reset, now);
                    break;
                }
            }
        }
        self.conns.slab[id].framer = framer;
        self.read_chunk = chunk;
    }

    /// Frames `bytes` and handles each line. Returns whether to keep reading;
    /// when flood control paused the connection, the bytes not yet framed
    /// are kept for when it resumes.
    fn feed(&mut self, id: ConnId, framer: &mut Framer, bytes: &[u8], now: Instant) -> bool {
        match framer.feed(bytes, |frame| self.on_frame(id, frame, now)) {
            ControlFlow::Continue(()) => true,
            ControlFlow::Break(used) => {
                let conn = &mut self.conns.slab[id];
                if conn.state == ConnState::Open {
                    conn.held.extend_from_slice(&bytes[used..]);
                }
                false
            }
        }
    }

    fn on_frame(&mut self, id: ConnId, frame: Frame<'_>, now: Instant) -> ControlFlow<()> {
        let step = match frame {
            Frame::TooLong => {
                self.chat.on_line_too_long(id, &mut self.conns);
                Step::Continue
            }
            Frame::Line(line) => {
                if self.conns.slab[id].live.on_activity(now) {
                    self.rearm(id);
                }
                self.chat.on_line(id, line, now, &mut self.conns)
            }
        };
        self.drop_overflowed(now);
        match step {
            Step::Continue => {}
            Step::LoggedIn => {
                let conn = &self.conns.slab[id];
                info!(
                    "conn {id} {} logged in as {}",
                    conn.peer,
                    self.chat.name(id).unwrap_or("?")
                );
            }
            Step::Quit => self.depart(id, Departure::Quit, now),
        }
        let conn = &mut self.conns.slab[id];
        if conn.state != ConnState::Open {
            return ControlFlow::Break(());
        }
        match conn.bucket.charge(now, &self.cfg.flood) {
            Throttle::Go => ControlFlow::Continue(()),
            Throttle::PauseUntil(at) => {
                trace!("conn {id} over the line rate; paused");
                conn.paused_until = Some(at);
                self.rearm(id);
                ControlFlow::Break(())
            }
            Throttle::Kick => {
                self.depart(id, Departure::Flooding, now);
                ControlFlow::Break(())
            }
        }
    }

    /// Moves a connection's liveness timer to its next deadline.
    fn rearm(&mut self, id: ConnId) {
        let logged_in = self.chat.name(id).is_some();
        let conn = &mut self.conns.slab[id];
        if let Some(timer) = conn.timer.take() {
            self.wheel.cancel(timer);
        }
        let mut at = conn.live.next_deadline(logged_in, &self.cfg.timeouts);
        if let Some(resume) = conn.paused_until {
            at = at.min(resume);
        }
        conn.timer = Some(self.wheel.insert(at, id));
    }

    /// Remembers a connection that has input left, for the next turn
    /// (edge-triggered readiness will not be reported again).
    fn read_later(&mut self, id: ConnId) {
        let conn = &mut self.conns.slab[id];
        if !conn.read_queued {
            conn.read_queued = true;
            self.read_again.push(id);
        }
    }

    /// Serves the connections left over from earlier turns, oldest first,
    /// with a work budget of their own so fresh events cannot starve them.
    fn retry_reads(&mut self, now: Instant) {
        self.conns.appended = 0;
        for id in std::mem::take(&mut self.read_again) {
            let Some(conn) = self.conns.slab.get_mut(id) else {
                continue;
            };
            if !conn.read_queued {
                continue;
            }
            conn.read_queued = false;
            if self.conns.appended < TURN_WORK {
                self.isolate(id, now, |server| server.read(id, now));
            } else {
                self.read_later(id);
            }
        }
    }

    /// Ends a connection's membership exactly once: says `BYE` where the
    /// departure allows it, tells the others, and frees the name at once.
    fn depart(&mut self, id: ConnId, why: Departure, now: Instant) {
        self.depart_one(id, why, now);
        self.drop_overflowed(now);
    }

    /// Departs every connection that failed while being written to. A
    /// departure's own announcement can doom others, so this loops rather
    /// than recurses.
    fn drop_overflowed(&mut self, now: Instant) {
        while let Some((id, why)) = self.conns.doomed.pop() {
            self.depart_one(id, why, now);
        }
    }

    fn depart_one(&mut self, id: ConnId, why: Departure, now: Instant) {
        let Some(conn) = self.conns.slab.get_mut(id) else {
            return;
        };
        if conn.state != ConnState::Open {
            return;
        }
        if let Some(timer) = conn.timer.take() {
            self.wheel.cancel(timer);
        }
        if why.flushes() {
            if let Some(reason) = why.bye() {
                Reply::Bye(reason).write_to(&mut conn.wbuf);
            }
            conn.state = ConnState::Draining;
            conn.timer = Some(self.wheel.insert(now + LINGER, id));
            self.conns.queue_write(id);
        } else {
            conn.state = ConnState::Dead;
            conn.wbuf = Vec::new();
            self.reap.push(id);
        }
        let conn = &self.conns.slab[id];
        match self.chat.name(id) {
            Some(name) => info!("conn {id} {} {name} left: {}", conn.peer, why.as_str()),
            None => info!("conn {id} {} closed: {}", conn.peer, why.as_str()),
        }
        if why == Departure::Shutdown {
            self.chat.remove(id);
        } else {
            self.chat.leave(id, &mut self.conns);
        }
    }

    /// Handles at most `TIMER_BUDGET` due timers a turn. A purge of
    /// thousands of ghosts at once announces each departure to everyone;
    /// done in one turn, it would hold every live message back for its whole
    /// length. Timers past the budget stay due for the next turn.
    fn expire_timers(&mut self, now: Instant) {
        for _ in 0..TIMER_BUDGET {
            let Some(id) = self.wheel.poll(now) else {
                return;
            };
            self.isolate(id, now, |server| server.on_timer(id, now));
        }
    }

    fn on_timer(&mut self, id: ConnId, now: Instant) {
        let Some(conn) = self.conns.slab.get_mut(id) else {
            return;
        };
        conn.timer = None;
        match conn.state {
            ConnState::Dead => {}
            ConnState::Draining => {
                debug!(
                    "conn {id} {} linger expired with {} bytes unsent",
                    conn.peer,
                    conn.wbuf.len()
                );
                conn.state = ConnState::Dead;
                self.reap.push(id);
            }
            ConnState::Open => {
                let freed = conn.release_idle_buffers();
                self.conns.trimmer.freed(freed);
                let resume = conn.paused_until.is_some_and(|t| now >= t);
                if resume {
                    conn.paused_until = None;
                }
                let logged_in = self.chat.name(id).is_some();
                match conn.live.check(now, logged_in, &self.cfg.timeouts) {
                    Verdict::Wait(_) => {}
                    Verdict::Ping(_) => {
                        trace!("conn {id} heartbeat");
                        self.conns.send_reply(id, Reply::Ping);
                        self.drop_overflowed(now);
                    }
                    Verdict::Expire(ByeReason::LoginTimeout) => {
                        return self.depart(id, Departure::LoginTimeout, now)
                    }
                    Verdict::Expire(_) => return self.depart(id, Departure::IdleTimeout, now),
                }
                if self.conns.slab[id].state == ConnState::Open {
                    self.rearm(id);
                    if resume {
                        self.read(id, now);
                    }
                }
            }
        }
    }

    fn flush_pending(&mut self, now: Instant) {
        // Departures during a flush can queue more writes; the loop takes them too.
        while let Some(id) = self.conns.pending_writes.pop() {
            self.flush(id, now);
        }
    }

    fn flush(&mut self, id: ConnId, now: Instant) {
        let Some(conn) = self.conns.slab.get_mut(id) else {
            return;
        };
        conn.write_queued = false;
        if conn.state == ConnState::Dead {
            return;
        }
        match conn.write_out() {
            Ok(freed) => self.conns.trimmer.freed(freed),
            Err(e) => {
                debug!("conn {id} write error: {e}");
                if conn.state == ConnState::Draining {
                    conn.state = ConnState::Dead;
                    self.reap.push(id);
                } else {
                    self.depart(id, Departure::Reset, now);
                }
                return;
            }
        }
        let registry = self.poll.registry();
        if conn.wbuf.is_empty() {
            if conn.state == ConnState::Draining {
                conn.state = ConnState::Dead;
                self.reap.push(id);
            } else if conn.want_writable {
                conn.want_writable = false;
                let _ = registry.reregister(&mut conn.sock, Token(id), Interest::READABLE);
            }
        } else if !conn.want_writable {
            conn.want_writable = true;
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(e) = registry.reregister(&mut conn.sock, Token(id), interest) {
                debug!("conn {id} cannot wait for writable: {e}");
                self.depart(id, Departure::Reset, now);
            }
        }
    }

    fn reap_closed(&mut self) {
        for id in self.reap.drain(..) {
            if let Some(mut conn) = self.conns.slab.try_remove(id) {
                // A departure also frees what its announcement, its name and
                // its log lines used; count a page for those besides the buffers.
                self.conns
                    .trimmer
                    .freed(conn.buffer_capacity() + DEPARTURE_FREES);
                let _ = self.poll.registry().deregister(&mut conn.sock);
                if let Some(timer) = conn.timer {
                    self.wheel.cancel(timer);
                }
                debug!("conn {id} {} removed", conn.peer);
            }
        }
    }

    fn on_signals(&mut self, now: Instant) {
        let received: Vec<i32> = self.signals.pending().collect();
        if received.is_empty() || self.shutdown_deadline.is_some() {
            return;
        }
        info!(
            "signal {received:?}: shutting down {} connections",
            self.conns.slab.len()
        );
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let ids: Vec<ConnId> = self.conns.slab.iter().map(|(id, _)| id).collect();
        for id in ids {
            self.depart(id, Departure::Shutdown, now);
        }
        self.shutdown_deadline = Some(now + SHUTDOWN_GRACE);
    }
}

/// Tells a connection we will not serve why, best effort, and closes it.
fn refuse(mut sock: TcpStream, reason: ByeReason) {
    let _ = sock.write(&Reply::Bye(reason).to_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::{Ipv4Addr, TcpStream as StdStream};

    fn server() -> Server {
        Server::bind(Config::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))).unwrap()
    }

    fn connect(server: &mut Server) -> (ConnId, BufReader<StdStream>) {
        let stream = StdStream::connect(server.local_addr().unwrap()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let before = server.conns.slab.len();
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.conns.slab.len() == before {
            assert!(Instant::now() < deadline, "never accepted");
            server.accept_all(Instant::now());
        }
        let id = server.conns.slab.iter().map(|(id, _)| id).max().unwrap();
        (id, BufReader::new(stream))
    }

    #[test]
    fn a_panicking_handler_costs_only_its_connection() {
        let mut server = server();
        let now = Instant::now();
        let (victim, _victim_stream) = connect(&mut server);
        let (other, mut other_stream) = connect(&mut server);
        server
            .chat
            .on_line(victim, b"LOGIN victim", now, &mut server.conns);
        server
            .chat
            .on_line(other, b"LOGIN other", now, &mut server.conns);
        server.flush_pending(now);

        server.isolate(victim, now, |_| panic!("injected bug"));
        server.flush_pending(now);
        server.reap_closed();

        assert!(server.conns.slab.get(victim).is_none());
        assert_eq!(server.chat.users(), 1);
        server.chat.check_invariants();
        let mut lines = Vec::new();
        for _ in 0..2 {
            let mut line = String::new();
            other_stream.read_line(&mut line).unwrap();
            lines.push(line);
        }
        assert_eq!(lines, ["OK\n", "INFO victim disconnected\n"]);
    }
}

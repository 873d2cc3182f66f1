//! The event loop: the only code that touches mio. One thread, one `Poll`, a
//! table of listeners, a `Slab` of connections keyed by their `Token`, and a
//! timer wheel that sets the poll timeout.
//!
//! Each turn: handle the events (reads go through each connection's
//! transport into its [`Session`], whose lines the [`Chat`] turns into lines
//! queued for others), retry connections that stopped reading before
//! `WouldBlock`, fire due timers, flush every connection written to once,
//! and only then remove closed connections, so a slab key is never reused by
//! an accept while events for its old owner are still being handled.
//!
//! The message store runs on its own thread ([`Store`]): each turn's store
//! requests from the chat go to it in one batch just before the loop
//! polls, and its answers arrive as events on the loop's one waker
//! (`WAKE`), which every other thread shares.
//!
//! The operator's ports (`/metrics`, `/healthz`, the control socket) are
//! served by the same loop, between the chat's events (`admin.rs`).
//!
//! The rules of a connection live in its session and the rules of the chat
//! in the chat; this module only carries their effects out. After every
//! chat call [`Server::settle`] writes out what passed the write-through
//! mark and departs what failed, so no caller can forget to.

mod admin;
mod conn;
mod conns;
mod drain;
mod input;
mod lifecycle;
mod listen;
mod memory;
mod metrics;
mod node;
mod operator;
mod per_ip;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::{Events, Interest, Poll, Token};
use signal_hook_mio::v1_0::Signals;

use crate::auth::Hasher;
use crate::chat::resume::OsTokens;
use crate::chat::{Chat, ConnId, WallClock};
use crate::config::Config;
use crate::protocol::{ByeReason, Reply};
use crate::session::{Departure, Rules, Session, PRE_LOGIN_BYTES};
use crate::store::db::Db;
use crate::store::Store;
use crate::transport::tls::{self, TlsSource};
use crate::transport::{Setup, Transport, TransportKind, WebPolicy};
use crate::wheel::Wheel;

use admin::Admin;
use conn::Conn;
use conns::{Conns, Flushed};
use drain::Drain;
pub(crate) use listen::{is_listener, signals, Accepted, Listeners, SIGNALS, WAKE};
use metrics::LoopTally;
use node::Node;
use per_ip::PerIp;

/// Lines queued to recipients per phase of a turn (events, then retried
/// reads) before further input waits for the next turn. A join storm
/// announces every login to everyone; without a bound one turn could queue
/// millions of lines and hold every live message back behind them.
const TURN_WORK: usize = 100_000;
/// Bytes of broadcast lines per turn (each kept once, for all recipients,
/// until the turn's writes) before further input waits for the next turn.
const TURN_BROADCAST: usize = 1 << 20;
/// TLS handshakes advanced per turn; connections still in theirs wait for
/// the next turn past it. A full handshake costs the loop about 0.2 ms of
/// CPU, so a storm of them is sliced, and people already chatting are
/// served every turn in between.
const HANDSHAKES_PER_TURN: usize = 32;
/// Due timers handled per turn; the rest stay due for the next turn.
const TIMER_BUDGET: usize = 64;
/// Bytes read from one socket per turn before others get their turn.
const READ_BUDGET: usize = 64 * 1024;
/// Size of the shared buffer each `read` fills.
const READ_CHUNK: usize = 16 * 1024;
/// Heap a departed connection is taken to free besides its buffers: measured
/// at about 4 KB per departure in a storm of 2,000, none of it in buffers.
const DEPARTURE_FREES: usize = 4096;
/// Timer wheel resolution and size: 10 ms ticks, about 5 s per revolution.
const WHEEL_TICK: Duration = Duration::from_millis(10);
const WHEEL_SLOTS: usize = 512;
/// Longest a leaving connection may take to accept its last bytes.
const LINGER: Duration = Duration::from_secs(2);
/// Longest shutdown waits for `BYE shutting-down` to drain.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

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
    listeners: Listeners,
    signals: Signals,
    conns: Conns,
    /// Open connections per peer address, under `--max-per-ip`.
    per_ip: PerIp,
    chat: Chat,
    store: Store,
    /// The password hasher's thread.
    hasher: Hasher,
    /// This node's part in a cluster, if it is in one.
    node: Option<Node>,
    wheel: Wheel<ConnId>,
    cfg: Config,
    rules: Rules,
    /// What each connection's transport is built from.
    setup: Setup,
    read_again: Vec<ConnId>,
    reap: Vec<ConnId>,
    failed: Vec<(ConnId, Departure)>,
    read_chunk: Vec<u8>,
    /// TLS handshakes advanced this turn.
    handshakes: usize,
    shutdown_deadline: Option<Instant>,
    next_stats: Option<Instant>,
    /// The metrics port and the control socket.
    admin: Admin,
    /// What the loop counts for the metrics.
    tally: LoopTally,
    /// A drain under way, with the users not yet told (told from the end).
    drain: Option<(Drain, Vec<ConnId>)>,
    started: Instant,
    /// Descriptors open once bound: the metrics add connections to it.
    base_fds: u64,
}

impl Server {
    /// Opens the message database, binds the listeners, installs the
    /// SIGINT/SIGTERM handlers, joins the cluster if there is one and
    /// starts the store's writer thread.
    pub fn bind(cfg: Config) -> io::Result<Server> {
        // The listeners first: a start that cannot have its port (a server
        // already runs there) stops before it touches the database.
        let setup = Setup {
            tls: cfg.tls.as_ref().map(tls_config).transpose()?,
            web: Arc::new(WebPolicy::new(cfg.web_origin.clone(), cfg.max_line)),
        };
        let poll = Poll::new()?;
        let refusal = Reply::Bye(ByeReason::ServerFull).to_bytes();
        let listeners = Listeners::bind(&poll, &cfg.listeners(), refusal)?;
        let signals = signals(&poll)?;
        let admin = Admin::bind(&poll, cfg.metrics, cfg.control.as_deref())?;
        let waker = Arc::new(mio::Waker::new(poll.registry(), WAKE)?);
        let (db, mut stored) = Db::open(&cfg.db, cfg.retention)
            .map_err(|e| io::Error::other(format!("cannot open database {}: {e}", cfg.db)))?;
        if cfg.cluster.is_none() {
            node::refuse_cluster_db(&db, &cfg.db)?;
        } else {
            // A cluster's sessions live in its log and on its other nodes.
            stored.sessions.clear();
        }
        info!(
            "database {}: {} rooms with history, next message id {}, {} sessions held for RESUME",
            cfg.db,
            db.rooms(),
            stored.next_id,
            stored.sessions.len()
        );
        let mut chat = Chat::start(cfg.chat, stored, WallClock::system(), Box::new(OsTokens));
        let node = match &cfg.cluster {
            Some(cluster) => {
                let node = Node::join(cluster, &db, &cfg.db, waker.clone())?;
                let stored_through = db.last_stored().map_err(io::Error::other)?;
                chat.join_cluster(node.home(), stored_through);
                Some(node)
            }
            None => None,
        };
        let hasher = Hasher::spawn(waker.clone())?;
        let store = Store::spawn(db, waker)?;
        let rules = Rules {
            timeouts: cfg.timeouts,
            flood: cfg.flood,
            max_line: cfg.max_line,
            linger: LINGER,
        };
        Ok(Server {
            poll,
            listeners,
            signals,
            conns: Conns::new(cfg.sendq),
            per_ip: PerIp::new(cfg.max_per_ip),
            chat,
            store,
            hasher,
            node,
            wheel: Wheel::new(WHEEL_TICK, WHEEL_SLOTS, Instant::now()),
            cfg,
            rules,
            setup,
            read_again: Vec::new(),
            reap: Vec::new(),
            failed: Vec::new(),
            read_chunk: vec![0; READ_CHUNK],
            handshakes: 0,
            shutdown_deadline: None,
            next_stats: None,
            admin,
            tally: LoopTally::default(),
            drain: None,
            started: Instant::now(),
            base_fds: metrics::open_fds().unwrap_or(0),
        })
    }

    /// Each listener's transport and bound address (useful with port 0).
    pub fn local_addrs(&self) -> io::Result<Vec<(TransportKind, SocketAddr)>> {
        self.listeners.local_addrs()
    }

    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.admin.metrics_addr()
    }

    /// Current counts of connections, users and timers.
    pub fn stats(&self) -> Stats {
        Stats {
            connections: self.conns.slab.len(),
            users: self.chat.users(),
            timers: self.wheel.len(),
            queued: self.conns.queued(),
            buffers: self.conns.buffers(),
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
            "stats: connections={} addresses={} users={} timers={} queued_bytes={} buffer_bytes={} freed_untrimmed={}",
            s.connections,
            self.per_ip.addresses(),
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
            self.handshakes = 0;
            // Held sessions whose window passed depart, announced.
            self.chat.tick(now, &mut self.conns);
            self.settle(None, now);
            for event in events.iter() {
                match event.token() {
                    SIGNALS => self.on_signals(now),
                    WAKE => {
                        self.on_verdicts(now);
                        self.on_store(now);
                        self.on_bus(now);
                    }
                    token if is_listener(token) => self.accept_all(token, now),
                    token if Admin::owns(token) => {
                        let asks = self.admin.on_ready(token, self.poll.registry(), now);
                        self.answer_all(asks, now);
                    }
                    Token(id) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            if !self.turn_full() {
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
            if self.listeners.resume(now) {
                let tokens: Vec<Token> = self.listeners.tokens().collect();
                for token in tokens {
                    self.accept_all(token, now);
                }
            }
            self.expire_timers(now);
            self.drain_step(now);
            self.admin.expire(now, self.poll.registry());
            let asks = self.admin.catch_up(self.poll.registry(), now);
            self.answer_all(asks, now);
            self.check_nodes(now);
            self.carry_out(now);
            self.flush_pending(now);
            self.conns.end_turn();
            self.reap_closed();
            // Departures while flushing publish to the cluster's log.
            self.carry_out(now);
            self.conns.trimmer.maybe_trim(now);
            self.log_stats(now);
            self.tally.turns.observe(now.elapsed());
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.slab.is_empty() || now >= deadline {
                    info!(
                        "shutdown complete; {} connections cut short",
                        self.conns.slab.len()
                    );
                    self.admin.close_all(self.poll.registry());
                    return Ok(());
                }
            }
        }
    }

    /// True when this phase of the turn did its share of work: input left
    /// waits for the next phase or turn.
    fn turn_full(&self) -> bool {
        self.conns.appended >= TURN_WORK || self.conns.broadcast_len() >= TURN_BROADCAST
    }

    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.read_again.is_empty() {
            return Some(Duration::ZERO);
        }
        [
            self.wheel.next_deadline(),
            self.listeners.paused_until(),
            self.shutdown_deadline,
            self.conns.trim_deadline(now),
            self.next_stats,
            self.chat.next_deadline(),
            self.node.as_ref().map(|node| node.next_check),
            self.admin.next_deadline(),
            self.drain
                .as_ref()
                .and_then(|(drain, _)| drain.next_deadline()),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|t| t.saturating_duration_since(now))
    }

    fn accept_all(&mut self, token: Token, now: Instant) {
        while let Some(accepted) = self.listeners.accept(token, now) {
            self.admit(accepted, now);
        }
    }

    fn admit(&mut self, accepted: Accepted, now: Instant) {
        let Accepted {
            mut sock,
            peer,
            kind,
        } = accepted;
        let refusal = if self.conns.slab.len() >= self.cfg.max_clients {
            self.tally.refused_full += 1;
            Some("server full")
        } else if !self.per_ip.admit(peer.ip()) {
            self.tally.refused_per_ip += 1;
            Some("too many connections from its address")
        } else {
            self.tally.accepted += 1;
            None
        };
        if let Some(why) = refusal {
            info!(
                "refusing {peer}: {why} ({} connections)",
                self.conns.slab.len()
            );
            listen::refuse(
                sock,
                &kind.refusal(&Reply::Bye(ByeReason::ServerFull).to_bytes()),
            );
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
            self.per_ip.release(peer.ip());
            return;
        }
        let transport = match Transport::new(kind, &self.setup) {
            Ok(transport) => transport,
            Err(e) => {
                warn!("cannot serve {peer}: {e}");
                let _ = self.poll.registry().deregister(&mut sock);
                self.per_ip.release(peer.ip());
                return;
            }
        };
        let session = Session::new(now, &self.rules);
        // Anonymous connections get the pre-login allowance until they log in.
        let sendq = self.cfg.sendq.min(PRE_LOGIN_BYTES);
        entry.insert(Conn::new(sock, peer, kind, transport, session, sendq, now));
        self.chat.connected(id, peer.ip());
        self.arm(id);
        info!("conn {id} {peer} connected ({})", kind.as_str());
    }

    fn flush_pending(&mut self, now: Instant) {
        // Departures during a flush can queue more writes; the loop takes them too.
        while let Some(id) = self.conns.next_pending_write() {
            let Some(conn) = self.conns.slab.get(id) else {
                continue;
            };
            if conn.session.is_closed() {
                continue;
            }
            let draining = conn.session.is_draining();
            match self.conns.flush(id, self.poll.registry()) {
                Flushed::Open => {}
                Flushed::Empty if !draining => {}
                Flushed::Failed if !draining => self.depart(id, Departure::Reset, now),
                Flushed::Empty | Flushed::Failed => {
                    self.conns.slab[id].session.close();
                    self.arm(id);
                }
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
                self.per_ip.release(conn.peer.ip());
                if let Some((timer, _)) = conn.timer {
                    self.wheel.cancel(timer);
                }
                debug!("conn {id} {} removed", conn.peer);
            }
        }
    }

    /// Carries out what the store reported: `SENT`s and errors, and
    /// `HISTORY` answers, after which the asking connection reads again.
    fn on_store(&mut self, now: Instant) {
        let outcomes: Vec<_> = self.store.outcomes().collect();
        for outcome in outcomes {
            let answered = self.chat.on_store(outcome, &mut self.conns);
            self.settle(None, now);
            if let Some((id, step)) = answered {
                self.release(id, step, now);
            }
        }
    }

    /// Carries out the password hasher's verdicts: logins, registrations
    /// and password changes go on or end.
    fn on_verdicts(&mut self, now: Instant) {
        let verdicts: Vec<_> = self.hasher.verdicts().collect();
        for verdict in verdicts {
            let answered = self.chat.on_verdict(verdict, now, &mut self.conns);
            self.settle(None, now);
            if let Some((id, step)) = answered {
                self.release(id, step, now);
            }
        }
    }

    /// Answers the operator's requests that are whole.
    fn answer_all(&mut self, asks: Vec<(usize, admin::Ask)>, now: Instant) {
        for (key, ask) in asks {
            let answer = self.answer_operator(ask, now);
            self.admin.answer(key, answer, self.poll.registry());
        }
    }

    /// SIGUSR2 drains; SIGINT and SIGTERM shut down, or finish a drain at once.
    fn on_signals(&mut self, now: Instant) {
        for signal in self.signals.pending().collect::<Vec<i32>>() {
            if signal == signal_hook::consts::SIGUSR2 {
                if !self.draining() {
                    info!("signal {signal}: draining");
                    self.start_drain(now);
                }
            } else if let Some((drain, _)) = self.drain.as_mut() {
                info!("signal {signal}: finishing the drain at once");
                drain.hurry();
                self.drain_step(now);
            } else {
                self.shut_down(signal, now);
            }
        }
    }

    /// Says `BYE shutting-down` to everyone and exits once it is written.
    fn shut_down(&mut self, signal: i32, now: Instant) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        info!(
            "signal {signal}: shutting down {} connections",
            self.conns.slab.len()
        );
        self.listeners.close(&self.poll);
        self.leave_cluster();
        let ids: Vec<ConnId> = self.conns.slab.iter().map(|(id, _)| id).collect();
        for id in ids {
            self.depart(id, Departure::Shutdown, now);
        }
        self.shutdown_deadline = Some(now + SHUTDOWN_GRACE);
    }
}

/// Builds the TLS configuration, saying in the log what it serves.
fn tls_config(source: &TlsSource) -> io::Result<Arc<rustls::ServerConfig>> {
    let config = tls::server_config(source).map_err(io::Error::other)?;
    match source {
        TlsSource::SelfSigned => warn!(
            "TLS: serving a self-signed certificate for localhost, made at start-up \
             (for development: clients will not trust it)"
        ),
        TlsSource::Files { cert, .. } => info!("TLS: serving the certificate {}", cert.display()),
    }
    Ok(config)
}

#[cfg(test)]
mod tests;

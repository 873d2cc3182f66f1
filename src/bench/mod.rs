//! `selectchat bench`: a load generator that is itself one mio loop, so one
//! core can drive thousands of chat connections against any server that
//! speaks protocol v1 (LOGIN, MSG, PING, QUIT).
//!
//! Every message carries its sender's sequence number and its send time, so
//! receivers measure delivery latency and count what was lost, duplicated or
//! reordered. Scenarios: `fanout` (one sender, N receivers, bounded in-flight
//! window), `mesh` (everyone sends at a fixed total rate, everyone receives),
//! `idle` (N logged-in connections held; the server's memory and CPU are
//! read from /proc when its pid is known) and `storm` (N connections log in
//! at once, as after a restart: LOGIN-to-OK latency and the server's CPU
//! until it is quiet again) and `rooms` (the fanout, through v2 rooms: one
//! sender in every room, receivers each in several; it also times each
//! `SAY` to its `SENT`, which waits for the server's disk, and can keep one
//! receiver asking for `HISTORY` of 500 lines the whole time).

pub mod stats;
pub mod target;

use std::io::{self, IsTerminal, Write};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use rustls::pki_types::ServerName;

use crate::protocol::{parse_reply, Command, Frame, Framer, Reply};
use crate::transport::{tls, Received, Transport, TransportKind};
use stats::{Latency, Report, Sequences};
use target::{Decoder, Event, Target};

/// Connections waiting for their `OK` at once; more would overflow the
/// server's listen backlog and stall on SYN retries.
const LOGIN_BATCH: usize = 256;
/// The storm's connections waiting for `OK` at once: just under the
/// server's listen backlog (1024), so the storm measures the server and not
/// the kernel's one-second SYN retry.
const STORM_BATCH: usize = 1000;
/// A storm is over once the server has sent nothing for this long.
const STORM_QUIET: Duration = Duration::from_secs(1);
/// Longest the load waits for stragglers after the last message was sent
/// (and at most a quarter of the run's timeout).
const DRAIN: Duration = Duration::from_secs(10);

/// Which load to apply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scenario {
    /// One sender, `receivers` receivers, `messages` messages, at most
    /// `window` messages not yet delivered to everyone.
    Fanout {
        receivers: usize,
        messages: u32,
        window: u32,
    },
    /// `clients` clients all sending, `rate` messages/s in total, for `duration`.
    Mesh {
        clients: usize,
        rate: u32,
        duration: Duration,
    },
    /// `clients` logged-in connections held for `duration`.
    Idle { clients: usize, duration: Duration },
    /// `clients` connections logging in as fast as they can, answering PINGs.
    Storm { clients: usize },
    /// `rooms` rooms of `members` receivers each, every receiver in
    /// `per_user` of them, and one sender in all, sending `messages` to the
    /// rooms in turn with at most `window` not yet delivered everywhere.
    Rooms {
        rooms: usize,
        members: usize,
        per_user: usize,
        messages: u32,
        window: u32,
        /// One receiver asks for `HISTORY <its first room> 500` again as
        /// soon as each answer ends, for as long as the fanout runs.
        history_reader: bool,
    },
}

impl Scenario {
    /// Name used in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Fanout { .. } => "fanout",
            Scenario::Mesh { .. } => "mesh",
            Scenario::Idle { .. } => "idle",
            Scenario::Storm { .. } => "storm",
            Scenario::Rooms { .. } => "rooms",
        }
    }

    /// Rooms scenario: how many receivers (besides the sender).
    fn room_receivers(rooms: usize, members: usize, per_user: usize) -> usize {
        (rooms * members).div_ceil(per_user.clamp(1, rooms.max(1)))
    }

    fn clients(&self) -> usize {
        match *self {
            Scenario::Fanout { receivers, .. } => receivers + 1,
            Scenario::Mesh { clients, .. }
            | Scenario::Idle { clients, .. }
            | Scenario::Storm { clients } => clients,
            Scenario::Rooms {
                rooms,
                members,
                per_user,
                ..
            } => Scenario::room_receivers(rooms, members, per_user) + 1,
        }
    }
}

/// A load run's settings.
#[derive(Debug, Clone)]
pub struct Options {
    pub addr: SocketAddr,
    /// Further nodes of a cluster: connection `i` goes to the `i`th of
    /// `addr` and these, in turn (the fanout's sender, and each room's, to
    /// `addr`).
    pub nodes: Vec<SocketAddr>,
    pub scenario: Scenario,
    /// Bytes of text per message (at least what the sequence and time need).
    pub size: usize,
    /// The server's pids (one per node), to read their memory and CPU
    /// from /proc, summed.
    pub server_pids: Vec<u32>,
    /// Give up after this long in total.
    pub timeout: Duration,
    /// Show a live progress line on stderr (only when it is a terminal).
    pub progress: bool,
    /// Prefix of the login names, so several runs can share a server.
    pub name_prefix: String,
    /// What the server's listener at `addr` speaks. TLS certificates are
    /// not verified: the bench measures, it does not authenticate.
    pub transport: TransportKind,
    /// Which server it is: selectchat, or Redis or NATS to compare with.
    pub target: Target,
    /// fanout and rooms: messages per second at a fixed pace (open loop),
    /// instead of as fast as the window allows.
    pub rate: Option<u32>,
}

struct Peer {
    sock: TcpStream,
    /// Plain lines, TLS, WebSocket or both, as the server's listener speaks.
    wire: Transport,
    framer: Framer,
    /// Where this connection is in a Redis or NATS reply.
    decoder: Decoder,
    logged_in: bool,
    closed: bool,
    /// When its LOGIN was fully written.
    login_at: Option<Instant>,
}

/// The state of one run.
struct Load {
    opts: Options,
    poll: Poll,
    peers: Vec<Peer>,
    origin: Instant,
    senders: usize,
    sequences: Sequences,
    sent: Vec<u32>,
    latencies: Vec<u32>,
    /// LOGIN-to-OK times, microseconds.
    logins: Vec<u32>,
    deliveries: u64,
    /// Fanout: deliveries seen per message, to know when one reached everyone.
    fanout_counts: Vec<u32>,
    fanout_complete: u32,
    /// Rooms: receivers per room, and the rooms each peer joins.
    room_members: Vec<u32>,
    joins_due: usize,
    /// Rooms: the last sequence number each receiver saw, for order.
    last_seq: Vec<Option<u32>>,
    logged_in: usize,
    failure: Option<String>,
    last_progress: Instant,
    /// When the server last sent anything.
    last_read: Instant,
    /// Rooms: when each of the sender's messages left, to time its `SENT`.
    said_at_us: Vec<u64>,
    /// Rooms: `SAY` to `SENT` times, microseconds, in the order sent.
    commits: Vec<u32>,
    /// Rooms: the receiver that keeps reading history, while it should.
    reader: Option<usize>,
    reading: bool,
    histories: u64,
    history_lines: u64,
    /// How each connection is set up: TLS client configuration, and the
    /// name and host it asks for.
    tls: Option<Arc<rustls::ClientConfig>>,
    server_name: ServerName<'static>,
    host: String,
    /// A command being formatted.
    scratch: Vec<u8>,
}

/// The receiver that reads history, and the room it reads.
const READER: usize = 1;
const READ_ROOM: &str = "#r0";

/// Runs one scenario against `opts.addr` and reports what it measured.
pub fn run(opts: Options) -> io::Result<Report> {
    if let Some(why) = opts.target.refuses(opts.scenario.name()) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
    }
    let rss_before = opts.servers_rss();
    let cpu_before = opts.servers_cpu();
    let mut load = Load::new(opts)?;
    let deadline = load.origin + load.opts.timeout;
    load.connect_all(deadline)?;
    let mut report = Report {
        scenario: load.opts.scenario.name().to_string(),
        transport: load.opts.transport.as_str().to_string(),
        target: load.opts.target.as_str().to_string(),
        clients: load.opts.scenario.clients(),
        ..Report::default()
    };
    if load.failure.is_none() {
        match load.opts.scenario {
            Scenario::Fanout {
                messages, window, ..
            } => load.fanout(messages, window, deadline, &mut report),
            Scenario::Mesh { rate, duration, .. } => {
                load.mesh(rate, duration, deadline, &mut report)
            }
            Scenario::Idle { duration, .. } => load.idle(duration, rss_before, &mut report),
            Scenario::Storm { .. } => load.storm(cpu_before, deadline, &mut report),
            Scenario::Rooms {
                rooms,
                per_user,
                messages,
                window,
                ..
            } => {
                load.join_rooms(rooms, per_user, deadline);
                if load.failure.is_none() {
                    load.fanout(messages, window, deadline, &mut report);
                }
            }
        }
    }
    report.deliveries = load.deliveries;
    report.messages = load.sent.iter().map(|&n| n as u64).sum();
    report.latency_us = Latency::of(&mut load.latencies);
    (report.lost, report.duplicated) = if load.room_members.is_empty() {
        (load.sequences.lost(&load.sent), load.sequences.duplicated)
    } else {
        load.room_faults()
    };
    report.reordered = load.sequences.reordered;
    report.commits = load.commits.len() as u64;
    report.commit_us = Latency::of(&mut load.commits);
    report.histories = load.histories;
    report.history_lines = load.history_lines;
    report.error = load.failure.take();
    load.clear_progress();
    Ok(report)
}

impl Load {
    fn new(opts: Options) -> io::Result<Load> {
        let clients = opts.scenario.clients();
        let senders = match opts.scenario {
            Scenario::Fanout { .. } | Scenario::Rooms { .. } => 1,
            Scenario::Mesh { clients, .. } => clients,
            Scenario::Idle { .. } | Scenario::Storm { .. } => 0,
        };
        let fanout_counts = match opts.scenario {
            Scenario::Fanout { messages, .. } | Scenario::Rooms { messages, .. } => {
                vec![0; messages as usize]
            }
            _ => Vec::new(),
        };
        let room_members = match opts.scenario {
            Scenario::Rooms { rooms, .. } => vec![0; rooms],
            _ => Vec::new(),
        };
        Ok(Load {
            poll: Poll::new()?,
            peers: Vec::with_capacity(clients),
            origin: Instant::now(),
            senders,
            sequences: Sequences::new(clients, senders.max(1)),
            sent: vec![0; senders.max(1)],
            latencies: Vec::new(),
            logins: Vec::new(),
            deliveries: 0,
            fanout_counts,
            fanout_complete: 0,
            room_members,
            joins_due: 0,
            last_seq: vec![None; clients],
            logged_in: 0,
            failure: None,
            last_progress: Instant::now(),
            last_read: Instant::now(),
            said_at_us: Vec::new(),
            commits: Vec::new(),
            reader: matches!(
                opts.scenario,
                Scenario::Rooms {
                    history_reader: true,
                    ..
                }
            )
            .then_some(READER),
            reading: false,
            histories: 0,
            history_lines: 0,
            tls: opts.transport.uses_tls().then(tls::unverified_client),
            server_name: ServerName::from(opts.addr.ip()),
            host: opts.addr.to_string(),
            scratch: Vec::new(),
            opts,
        })
    }

    fn drain(&self) -> Duration {
        DRAIN.min(self.opts.timeout / 4)
    }

    fn name(&self, i: usize) -> String {
        format!("{}{i}", self.opts.name_prefix)
    }

    /// Opens every connection and logs it in, a batch at a time.
    fn connect_all(&mut self, deadline: Instant) -> io::Result<()> {
        let total = self.opts.scenario.clients();
        let batch = match self.opts.scenario {
            Scenario::Storm { .. } => STORM_BATCH,
            _ => LOGIN_BATCH,
        };
        let mut events = Events::with_capacity(1024);
        while self.logged_in < total && self.failure.is_none() {
            while self.peers.len() < total && self.peers.len() - self.logged_in < batch {
                let i = self.peers.len();
                let mut sock = TcpStream::connect(self.opts.node_for(i))?;
                sock.set_nodelay(true)?;
                self.poll.registry().register(
                    &mut sock,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                let tls = self
                    .tls
                    .clone()
                    .map(|config| (config, self.server_name.clone()));
                let mut wire = Transport::client(self.opts.transport, tls, &self.host)?;
                // Everyone receives but the fanout's sender.
                let receives =
                    i >= self.senders || matches!(self.opts.scenario, Scenario::Mesh { .. });
                let mut login = Vec::new();
                self.opts.target.login(&self.name(i), receives, &mut login);
                wire.queue(&login);
                self.peers.push(Peer {
                    sock,
                    wire,
                    framer: Framer::new(1 << 20),
                    decoder: Decoder::default(),
                    logged_in: false,
                    closed: false,
                    login_at: None,
                });
            }
            self.turn(&mut events, Some(Duration::from_millis(100)), deadline);
            self.progress(|l| format!("logged in {}/{total}", l.logged_in));
        }
        Ok(())
    }

    /// One poll and everything it woke.
    fn turn(&mut self, events: &mut Events, timeout: Option<Duration>, deadline: Instant) {
        let now = Instant::now();
        if now >= deadline {
            self.failure.get_or_insert_with(|| "timed out".to_string());
            return;
        }
        let timeout = timeout.map_or(deadline - now, |t| t.min(deadline - now));
        if let Err(e) = self.poll.poll(events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                self.failure = Some(format!("poll failed: {e}"));
            }
            return;
        }
        for event in events.iter() {
            let i = event.token().0;
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                self.read(i);
            }
            if event.is_writable() {
                self.flush(i);
            }
        }
    }

    fn read(&mut self, i: usize) {
        let mut buf = [0u8; 64 * 1024];
        let mut framer = std::mem::take(&mut self.peers[i].framer);
        loop {
            let peer = &mut self.peers[i];
            if peer.closed {
                break;
            }
            match peer.wire.read(&mut peer.sock, &mut buf) {
                Ok(Received::Closed) => {
                    peer.closed = true;
                    self.failure
                        .get_or_insert_with(|| format!("server closed connection {i}"));
                }
                Ok(Received::Bytes(n)) => {
                    self.last_read = Instant::now();
                    let _ = framer.feed(&buf[..n], |frame| {
                        if let Frame::Line(line) = frame {
                            if self.opts.target == Target::Selectchat {
                                self.on_line(i, line);
                            } else {
                                self.on_foreign_line(i, line);
                            }
                        }
                        ControlFlow::Continue(())
                    });
                }
                Ok(Received::NotText | Received::Control | Received::Progress) => {}
                Ok(Received::WouldBlock) => break,
                Err(e) => {
                    self.peers[i].closed = true;
                    self.failure
                        .get_or_insert_with(|| format!("connection {i}: {e}"));
                }
            }
        }
        self.peers[i].framer = framer;
        self.flush(i);
    }

    fn on_line(&mut self, i: usize, line: &[u8]) {
        let Ok(text) = std::str::from_utf8(line) else {
            return;
        };
        match parse_reply(text) {
            Some(Reply::Ok) => self.ready(i),
            Some(Reply::Ping) => self.send(i, Command::Pong),
            Some(Reply::Msg { from, text }) => self.on_msg(i, from, text),
            Some(Reply::Said { from, text, .. }) => self.on_msg(i, from, text),
            Some(Reply::JoinedRoom { .. }) => self.joins_due = self.joins_due.saturating_sub(1),
            Some(Reply::Sent { .. }) if i == 0 => {
                if let Some(&at) = self.said_at_us.get(self.commits.len()) {
                    let now_us = self.origin.elapsed().as_micros() as u64;
                    let us = now_us.saturating_sub(at).min(u32::MAX as u64) as u32;
                    self.commits.push(us);
                }
            }
            Some(Reply::Hist { .. }) if self.reader == Some(i) => self.history_lines += 1,
            Some(Reply::EndHistory(_)) if self.reader == Some(i) => {
                self.histories += 1;
                self.ask_history();
            }
            Some(Reply::Err(e)) => {
                self.failure
                    .get_or_insert_with(|| format!("connection {i}: ERR {e}"));
            }
            Some(Reply::Bye(_)) => {
                self.failure
                    .get_or_insert_with(|| format!("connection {i}: {text}"));
            }
            _ => {}
        }
    }

    /// A line from Redis or NATS.
    fn on_foreign_line(&mut self, i: usize, line: &[u8]) {
        let Ok(text) = std::str::from_utf8(line) else {
            return;
        };
        let target = self.opts.target;
        match self.peers[i].decoder.decode(target, text) {
            Event::Ready => self.ready(i),
            Event::Delivery { from, text } => self.on_msg(i, from, text),
            Event::Ping => self.peers[i].wire.queue(b"PONG\r\n"),
            Event::Failed(why) => {
                self.failure
                    .get_or_insert_with(|| format!("connection {i}: {why}"));
            }
            Event::Nothing => {}
        }
    }

    /// Peer `i` is logged in (or subscribed): once, timed from its login.
    fn ready(&mut self, i: usize) {
        let peer = &mut self.peers[i];
        if peer.logged_in {
            return;
        }
        peer.logged_in = true;
        self.logged_in += 1;
        if let Some(at) = peer.login_at {
            let us = at.elapsed().as_micros().min(u32::MAX as u128) as u32;
            self.logins.push(us);
        }
    }

    fn on_msg(&mut self, receiver: usize, from: &str, text: &str) {
        let Some(sender) = from
            .strip_prefix(self.opts.name_prefix.as_str())
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&s| s < self.senders)
        else {
            return;
        };
        let mut fields = text.split(' ');
        let (Some(Ok(seq)), Some(Ok(sent_us))) = (
            fields.next().map(str::parse::<u32>),
            fields.next().map(str::parse::<u64>),
        ) else {
            return;
        };
        let now_us = self.origin.elapsed().as_micros() as u64;
        self.latencies
            .push(now_us.saturating_sub(sent_us).min(u32::MAX as u64) as u32);
        self.deliveries += 1;
        if self.room_members.is_empty() {
            self.sequences.record(receiver, sender, seq);
        } else {
            // A receiver hears only its rooms: the sequence it sees has
            // gaps by design, but must still only grow.
            let last = &mut self.last_seq[receiver];
            if last.is_some_and(|l| seq <= l) {
                self.sequences.reordered += 1;
            }
            *last = Some(seq);
        }
        if let Some(count) = self.fanout_counts.get_mut(seq as usize) {
            *count += 1;
            while let Some(&c) = self.fanout_counts.get(self.fanout_complete as usize) {
                if c < self.expected_for(self.fanout_complete) {
                    break;
                }
                self.fanout_complete += 1;
            }
        }
    }

    /// Receivers of message `seq` (fanout and rooms).
    fn expected_for(&self, seq: u32) -> u32 {
        if self.room_members.is_empty() {
            self.peers.len() as u32 - 1
        } else {
            self.room_members[seq as usize % self.room_members.len()]
        }
    }

    /// Rooms: lost and duplicated deliveries, from the per-message counts.
    fn room_faults(&self) -> (u64, u64) {
        let sent = self.sent[0] as usize;
        let (mut lost, mut duplicated) = (0, 0);
        for (seq, &got) in self.fanout_counts.iter().take(sent).enumerate() {
            let want = self.expected_for(seq as u32);
            lost += want.saturating_sub(got) as u64;
            duplicated += got.saturating_sub(want) as u64;
        }
        (lost, duplicated)
    }

    fn room_name(room: usize) -> String {
        format!("#r{room}")
    }

    /// Rooms: every receiver joins its rooms and the sender all of them;
    /// returns once every JOINED has come back.
    fn join_rooms(&mut self, rooms: usize, per_user: usize, deadline: Instant) {
        let per_user = per_user.clamp(1, rooms);
        for room in 0..rooms {
            self.send(0, Command::Join(&Load::room_name(room)));
        }
        self.joins_due = rooms;
        for receiver in 1..self.peers.len() {
            for j in 0..per_user {
                let room = ((receiver - 1) * per_user + j) % rooms;
                self.room_members[room] += 1;
                self.send(receiver, Command::Join(&Load::room_name(room)));
                self.joins_due += 1;
            }
        }
        for i in 0..self.peers.len() {
            self.flush(i);
        }
        let mut events = Events::with_capacity(1024);
        while self.joins_due > 0 && self.failure.is_none() {
            self.turn(&mut events, Some(Duration::from_millis(100)), deadline);
            self.progress(|l| format!("joins pending {}", l.joins_due));
        }
    }

    /// The reader asks for the next 500 lines, while the fanout runs.
    fn ask_history(&mut self) {
        let Some(reader) = self.reader.filter(|_| self.reading) else {
            return;
        };
        let ask = Command::History {
            room: READ_ROOM,
            args: "500",
        };
        self.send(reader, ask);
        self.flush(reader);
    }

    /// Sends the next message of `sender`, stamped with when it was `due`
    /// (paced runs) or now.
    fn send_msg(&mut self, sender: usize, due_us: Option<u64>) {
        let seq = self.sent[sender];
        self.sent[sender] += 1;
        let now_us = due_us.map_or_else(|| self.origin.elapsed().as_micros(), u128::from);
        let mut text = format!("{seq} {now_us} ");
        while text.len() < self.opts.size {
            text.push('x');
        }
        if self.opts.target != Target::Selectchat {
            self.scratch.clear();
            let name = self.name(sender);
            self.opts.target.publish(&name, &text, &mut self.scratch);
            self.peers[sender].wire.queue(&self.scratch);
        } else if self.room_members.is_empty() {
            self.send(sender, Command::Msg(&text));
        } else {
            let room = Load::room_name(seq as usize % self.room_members.len());
            self.said_at_us.push(now_us as u64);
            self.send(
                sender,
                Command::Say {
                    room: &room,
                    tag: None,
                    text: &text,
                },
            );
        }
        self.flush(sender);
    }

    fn flush(&mut self, i: usize) {
        let peer = &mut self.peers[i];
        // An error here is a socket not yet connected, or gone: the read
        // side reports it.
        let _ = peer.wire.write_to(&mut peer.sock);
        if !peer.wire.wants_write() && !peer.logged_in && peer.login_at.is_none() {
            peer.login_at = Some(Instant::now());
        }
    }

    /// Queues `command` for peer `i`.
    fn send(&mut self, i: usize, command: Command<'_>) {
        self.scratch.clear();
        command.write_to(&mut self.scratch);
        self.peers[i].wire.queue(&self.scratch);
    }

    fn fanout(&mut self, messages: u32, window: u32, deadline: Instant, report: &mut Report) {
        let expected: u64 = (0..messages).map(|seq| self.expected_for(seq) as u64).sum();
        let mut events = Events::with_capacity(1024);
        let start = Instant::now();
        self.latencies.reserve(expected.min(50_000_000) as usize);
        let mut all_sent_at = None;
        let cpu_before = self.opts.servers_cpu();
        self.reading = true;
        self.ask_history();
        let origin_us = self.origin.elapsed().as_micros() as u64;
        // Paced: message `seq` is due at `seq / rate` seconds after the start,
        // and its latency counts from then, even if the window held it back.
        let rate = self.opts.rate;
        let due_us = |seq: u32| rate.map(|r| origin_us + seq as u64 * 1_000_000 / r as u64);
        while self.deliveries < expected && self.failure.is_none() {
            let now_us = self.origin.elapsed().as_micros() as u64;
            while self.sent[0] < messages
                && self.sent[0] - self.fanout_complete < window
                && due_us(self.sent[0]).is_none_or(|due| due <= now_us)
            {
                let due = due_us(self.sent[0]);
                self.send_msg(0, due);
            }
            let next_due = due_us(self.sent[0])
                .filter(|_| self.sent[0] < messages)
                .map(|due| Duration::from_micros(due.saturating_sub(now_us)));
            if self.sent[0] == messages {
                let at = *all_sent_at.get_or_insert_with(Instant::now);
                if at.elapsed() > self.drain() {
                    break;
                }
            }
            let wait = next_due.map_or(Duration::from_millis(100), |d| {
                d.min(Duration::from_millis(100))
            });
            self.turn(&mut events, Some(wait), deadline);
            self.progress(|l| format!("fanout {}/{expected} deliveries", l.deliveries));
        }
        report.elapsed = start.elapsed();
        self.cpu_per_delivery(cpu_before, report);
        self.reading = false;
        // Rooms: the last SENTs may still be on their way from the disk.
        let drain_until = Instant::now() + self.drain();
        while self.commits.len() < self.said_at_us.len()
            && self.failure.is_none()
            && Instant::now() < drain_until
        {
            self.turn(&mut events, Some(Duration::from_millis(10)), deadline);
        }
    }

    fn mesh(&mut self, rate: u32, duration: Duration, deadline: Instant, report: &mut Report) {
        let clients = self.peers.len();
        let mut events = Events::with_capacity(1024);
        let start = Instant::now();
        let mut next_sender = 0;
        let mut total_sent: u64 = 0;
        let cpu_before = self.opts.servers_cpu();
        while start.elapsed() < duration && self.failure.is_none() {
            let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            while total_sent < due {
                self.send_msg(next_sender, None);
                next_sender = (next_sender + 1) % clients;
                total_sent += 1;
            }
            self.turn(&mut events, Some(Duration::from_millis(1)), deadline);
            self.progress(|l| format!("mesh {} deliveries", l.deliveries));
        }
        let expected = total_sent * (clients as u64 - 1);
        let drain_until = Instant::now() + self.drain();
        while self.deliveries < expected && self.failure.is_none() && Instant::now() < drain_until {
            self.turn(&mut events, Some(Duration::from_millis(10)), deadline);
        }
        report.elapsed = start.elapsed();
        self.cpu_per_delivery(cpu_before, report);
    }

    /// The server's CPU since `before`, over the deliveries so far.
    fn cpu_per_delivery(&self, before: Option<Duration>, report: &mut Report) {
        let after = self.opts.servers_cpu();
        if let (Some(before), Some(after)) = (before, after) {
            if self.deliveries > 0 {
                let ns = (after - before).as_nanos() as f64 / self.deliveries as f64;
                report.cpu_ns_per_delivery = Some(ns);
            }
        }
    }

    fn idle(&mut self, duration: Duration, rss_before: Option<u64>, report: &mut Report) {
        let mut events = Events::with_capacity(1024);
        let far = Instant::now() + duration + self.drain();
        // Let the login storm's announcements drain before measuring.
        let settle = Instant::now() + Duration::from_secs(1);
        while Instant::now() < settle && self.failure.is_none() {
            self.turn(&mut events, Some(Duration::from_millis(100)), far);
        }
        let cpu_before = self.opts.servers_cpu();
        let start = Instant::now();
        while start.elapsed() < duration && self.failure.is_none() {
            self.turn(&mut events, Some(Duration::from_millis(200)), far);
            self.progress(|_| {
                format!(
                    "idle {:.0}/{:.0} s",
                    start.elapsed().as_secs_f64(),
                    duration.as_secs_f64()
                )
            });
        }
        report.elapsed = start.elapsed();
        let clients = self.peers.len() as f64;
        if let (Some(before), Some(after)) = (cpu_before, self.opts.servers_cpu()) {
            report.cpu_percent =
                Some(100.0 * (after - before).as_secs_f64() / report.elapsed.as_secs_f64());
        }
        if let (Some(before), Some(after)) = (rss_before, self.opts.servers_rss()) {
            report.rss_per_conn = Some(after.saturating_sub(before) as f64 / clients);
        }
    }

    /// The logins are done (`connect_all`); waits for the server to go
    /// quiet, answering its PINGs, and reports the server's CPU for it all.
    fn storm(&mut self, cpu_before: Option<Duration>, deadline: Instant, report: &mut Report) {
        report.elapsed = self.origin.elapsed();
        report.login_us = Latency::of(&mut self.logins);
        report.logins = self.logins.len() as u64;
        let mut events = Events::with_capacity(1024);
        while self.last_read.elapsed() < STORM_QUIET && self.failure.is_none() {
            self.turn(&mut events, Some(Duration::from_millis(100)), deadline);
            self.progress(|_| "waiting for the server to go quiet".to_string());
        }
        let quiet_since = self.last_read.duration_since(self.origin);
        report.quiet_after = Some(quiet_since);
        if let (Some(before), Some(after)) = (cpu_before, self.opts.servers_cpu()) {
            report.cpu_seconds = Some((after - before).as_secs_f64());
        }
    }

    fn progress(&mut self, line: impl Fn(&Load) -> String) {
        if !self.opts.progress || self.last_progress.elapsed() < Duration::from_millis(250) {
            return;
        }
        self.last_progress = Instant::now();
        let stderr = io::stderr();
        if stderr.is_terminal() {
            let _ = write!(stderr.lock(), "\r\x1b[2K{}", line(self));
        }
    }

    fn clear_progress(&self) {
        let stderr = io::stderr();
        if self.opts.progress && stderr.is_terminal() {
            let _ = write!(stderr.lock(), "\r\x1b[2K");
        }
    }
}

impl Options {
    /// Where connection `i` goes.
    fn node_for(&self, i: usize) -> SocketAddr {
        match i % (1 + self.nodes.len()) {
            0 => self.addr,
            n => self.nodes[n - 1],
        }
    }

    /// CPU time the servers have used, summed; `None` without pids.
    fn servers_cpu(&self) -> Option<Duration> {
        let times: Option<Vec<Duration>> =
            self.server_pids.iter().map(|&p| server_cpu(p)).collect();
        times.filter(|t| !t.is_empty()).map(|t| t.into_iter().sum())
    }

    /// Resident memory of the servers, summed; `None` without pids.
    fn servers_rss(&self) -> Option<u64> {
        let sizes: Option<Vec<u64>> = self.server_pids.iter().map(|&p| server_rss(p)).collect();
        sizes.filter(|s| !s.is_empty()).map(|s| s.into_iter().sum())
    }
}

/// Resident memory of process `pid` in bytes.
pub fn server_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// CPU time (user + system) process `pid` has used.
pub fn server_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| Duration::from_secs_f64(ticks as f64 / hz as f64))
}

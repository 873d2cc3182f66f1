//! What `/metrics` and `/healthz` say. The loop counts with plain adds
//! ([`LoopTally`], the chat's [`ChatTally`], the connection table's
//! deliveries and bytes); a scrape takes a [`Scrape`] of them, walks the
//! connections once for the gauges, and encodes it in the Prometheus text
//! format with `prometheus-client`, so reading the metrics costs the loop
//! one pass over its table and nothing between scrapes.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::chat::tally::ChatTally;
use crate::protocol::Command;
use crate::session::Departure;
use crate::tally::{Buckets, Outcomes};
use crate::transport::TransportKind;

use super::Server;

/// Upper bounds of the loop turn histogram, in seconds: an idle turn takes
/// microseconds, a fan-out turn a few milliseconds.
const TURN_BOUNDS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
/// How long a message may wait for its commit before `/healthz` calls the
/// store stalled: a healthy group commit takes milliseconds.
pub(super) const STORE_PATIENCE: Duration = Duration::from_secs(1);
/// The transports, in the order the connection gauge lists them.
const TRANSPORTS: [TransportKind; 4] = [
    TransportKind::Plain,
    TransportKind::Tls,
    TransportKind::Web,
    TransportKind::WebTls,
];
/// A connection's state in the connection gauge.
const STATES: [&str; 4] = ["handshake", "anonymous", "user", "leaving"];

/// What the loop counts besides the chat and the connection table.
#[derive(Debug, Clone)]
pub(super) struct LoopTally {
    /// Departures by reason, indexed as [`Departure::ALL`].
    pub departures: [u64; Departure::ALL.len()],
    /// Connections flood control paused.
    pub flood_pauses: u64,
    pub accepted: u64,
    /// Refused at accept: the server was full, or the address had its share.
    pub refused_full: u64,
    pub refused_per_ip: u64,
    /// How long each turn of the loop took, from the poll's return to the
    /// end of its writes.
    pub turns: Buckets,
}

impl Default for LoopTally {
    fn default() -> LoopTally {
        LoopTally {
            departures: [0; Departure::ALL.len()],
            flood_pauses: 0,
            accepted: 0,
            refused_full: 0,
            refused_per_ip: 0,
            turns: Buckets::new(TURN_BOUNDS),
        }
    }
}

impl LoopTally {
    /// Counts a departure.
    pub fn departed(&mut self, why: Departure) {
        self.departures[why as usize] += 1;
    }
}

/// Everything one scrape reports, taken from the loop at once.
#[derive(Debug)]
pub(super) struct Scrape {
    /// Open connections by transport and state, indexed as `TRANSPORTS` x `STATES`.
    connections: [[u64; STATES.len()]; TRANSPORTS.len()],
    users: u64,
    rooms: u64,
    resumable: u64,
    accounts: u64,
    history_bytes: u64,
    queued_bytes: u64,
    buffer_bytes: u64,
    open_fds: u64,
    max_fds: Option<u64>,
    deliveries: u64,
    written_bytes: u64,
    lines: [u64; Command::WORDS.len() + 1],
    logins: Outcomes,
    resumes: Outcomes,
    say_commit: Buckets,
    store_failing: bool,
    tally: LoopTally,
    cut_off: bool,
}

impl Server {
    /// The metrics as of now.
    pub(super) fn scrape(&self) -> Scrape {
        let mut connections = [[0; STATES.len()]; TRANSPORTS.len()];
        let (mut queued_bytes, mut buffer_bytes) = (0, 0);
        for (_, conn) in &self.conns.slab {
            let state = if !conn.session.is_open() {
                3
            } else if conn.transport.is_handshaking() {
                0
            } else if conn.session.is_logged_in() {
                2
            } else {
                1
            };
            connections[conn.kind as usize][state] += 1;
            queued_bytes += conn.transport.buffered() as u64;
            buffer_bytes += conn.buffer_capacity() as u64;
        }
        let chat: &ChatTally = self.chat.tally();
        Scrape {
            connections,
            users: self.chat.users() as u64,
            rooms: self.chat.rooms() as u64,
            resumable: self.chat.resumable() as u64,
            accounts: self.chat.accounts() as u64,
            history_bytes: self.chat.history_bytes() as u64,
            queued_bytes,
            buffer_bytes,
            open_fds: self.base_fds + (self.conns.slab.len() + self.admin.open()) as u64,
            max_fds: max_fds(),
            deliveries: self.conns.delivered,
            written_bytes: self.conns.written,
            lines: chat.lines,
            logins: chat.logins,
            resumes: chat.resumes,
            say_commit: chat.say_commit.clone(),
            store_failing: chat.store_failing,
            tally: self.tally.clone(),
            cut_off: self.node.as_ref().is_some_and(|node| node.is_cut_off()),
        }
    }

    /// Why this server is not healthy at `now`, if it is not: its store
    /// fails or stalls, or (in a cluster) it is cut off.
    pub(super) fn trouble(&self, now: Instant) -> Option<&'static str> {
        if let Some(why) = self.chat.store_trouble(now, STORE_PATIENCE) {
            return Some(why);
        }
        if self.node.as_ref().is_some_and(|node| node.is_cut_off()) {
            return Some("cut off from the cluster");
        }
        None
    }
}

impl Scrape {
    /// The same figures for a person (`selectchat ctl stats`): what is
    /// open, what went through, why connections ended.
    pub fn summary(&self) -> String {
        let mut text = String::new();
        let by_state: Vec<u64> = (0..STATES.len())
            .map(|s| self.connections.iter().map(|t| t[s]).sum())
            .collect();
        let by_transport: Vec<String> = TRANSPORTS
            .iter()
            .zip(&self.connections)
            .map(|(kind, states)| format!("{} {}", kind.as_str(), states.iter().sum::<u64>()))
            .collect();
        let open: u64 = by_state.iter().sum();
        let _ = writeln!(
            text,
            "connections {open} ({} users, {} anonymous, {} in handshake, {} leaving; {})",
            by_state[2],
            by_state[1],
            by_state[0],
            by_state[3],
            by_transport.join(", ")
        );
        let _ = writeln!(
            text,
            "users       {} (everywhere); rooms {}; resumable sessions {}",
            self.users, self.rooms, self.resumable
        );
        let lines: u64 = self.lines.iter().sum();
        let _ = writeln!(
            text,
            "traffic     {lines} lines in; {} lines delivered; {} bytes written",
            self.deliveries, self.written_bytes
        );
        let _ = writeln!(
            text,
            "logins      {} ok, {} refused; resumes {} ok, {} refused",
            self.logins.ok, self.logins.refused, self.resumes.ok, self.resumes.refused
        );
        let departures: Vec<String> = Departure::ALL
            .iter()
            .zip(self.tally.departures)
            .filter(|(_, n)| *n > 0)
            .map(|(why, n)| format!("{} {n}", why.as_str()))
            .collect();
        let _ = writeln!(
            text,
            "departures  {}",
            if departures.is_empty() {
                "none".to_string()
            } else {
                departures.join(", ")
            }
        );
        let _ = writeln!(
            text,
            "accepted    {}; refused {} (full), {} (per address); flood pauses {}",
            self.tally.accepted,
            self.tally.refused_full,
            self.tally.refused_per_ip,
            self.tally.flood_pauses
        );
        let _ = writeln!(
            text,
            "memory      {} bytes queued, {} in buffers, {} of history",
            self.queued_bytes, self.buffer_bytes, self.history_bytes
        );
        if let Some(max) = self.max_fds {
            let _ = writeln!(text, "descriptors {} open of {max}", self.open_fds);
        }
        text
    }

    /// The scrape in the Prometheus text format (version 0.0.4).
    pub fn render(self) -> String {
        let mut registry = Registry::with_prefix("selectchat");
        registry.register_collector(Box::new(self));
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
        text
    }
}

/// Open descriptors, listed in /proc/self/fd; `None` where there is none.
/// Listing costs the loop about 0.4 µs a descriptor (7 ms at 19,900), so
/// it is done once, at start, and a scrape adds what the loop opened since.
pub(super) fn open_fds() -> Option<u64> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    // The directory's own descriptor is in the listing.
    Some(dir.count().saturating_sub(1) as u64)
}

/// The open-file limit.
fn max_fds() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit.rlim_cur)
}

/// Writes one metric with no labels.
fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// Writes one counter with one label over several values.
fn counted_by(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (String, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in values {
        let labels = [(label, value.as_str())];
        ConstCounter::new(n).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    buckets: &Buckets,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    metric.encode_histogram::<NoLabelSet>(buckets.sum(), buckets.count(), &buckets.buckets(), None)
}

fn outcomes(o: Outcomes) -> [(String, u64); 2] {
    [("ok".into(), o.ok), ("refused".into(), o.refused)]
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let mut metric = e.encode_descriptor(
            "connections",
            "Open connections by transport and state.",
            None,
            MetricType::Gauge,
        )?;
        for (kind, states) in TRANSPORTS.iter().zip(&self.connections) {
            for (state, &n) in STATES.iter().zip(states) {
                let labels = [("transport", kind.as_str()), ("state", state)];
                ConstGauge::new(n as i64).encode(metric.encode_family(&labels)?)?;
            }
        }
        let gauges = [
            (
                "users",
                "Logged-in users (in a cluster, on every node).",
                self.users,
            ),
            ("rooms", "Rooms with members.", self.rooms),
            (
                "resumable_sessions",
                "Ended sessions that can still be resumed.",
                self.resumable,
            ),
            ("accounts", "Registered names.", self.accounts),
            (
                "history_ring_bytes",
                "Bytes of recent room history held in memory.",
                self.history_bytes,
            ),
            (
                "queued_bytes",
                "Bytes queued for clients and not yet taken by the kernel.",
                self.queued_bytes,
            ),
            (
                "buffer_bytes",
                "Heap bytes reserved by connections' buffers.",
                self.buffer_bytes,
            ),
            (
                "store_failing",
                "1 while the store's last commit failed.",
                u64::from(self.store_failing),
            ),
            (
                "cut_off",
                "1 while this cluster node is cut off from the cluster.",
                u64::from(self.cut_off),
            ),
        ];
        for (name, help, n) in gauges {
            single(e, name, help, &ConstGauge::new(n as i64))?;
        }
        single(
            e,
            "open_fds",
            "Open file descriptors: those open at start, plus connections and operator exchanges.",
            &ConstGauge::new(self.open_fds as i64),
        )?;
        if let Some(n) = self.max_fds {
            single(
                e,
                "max_fds",
                "The open-file limit.",
                &ConstGauge::new(n as i64),
            )?;
        }
        let words = Command::WORDS.iter().map(|w| w.to_ascii_lowercase());
        let labels = words.chain(std::iter::once("other".to_string()));
        counted_by(
            e,
            "lines",
            "Lines received, by command word (other: not a command).",
            "command",
            labels.zip(self.lines),
        )?;
        let counters = [
            ("deliveries", "Lines queued to recipients.", self.deliveries),
            (
                "written_bytes",
                "Bytes written to client sockets.",
                self.written_bytes,
            ),
            ("accepted", "Connections accepted.", self.tally.accepted),
            (
                "flood_pauses",
                "Times flood control paused a connection.",
                self.tally.flood_pauses,
            ),
            (
                "sendq_drops",
                "Connections dropped for not reading their output.",
                self.tally.departures[Departure::Sendq as usize],
            ),
        ];
        for (name, help, n) in counters {
            single(e, name, help, &ConstCounter::new(n))?;
        }
        counted_by(
            e,
            "refused",
            "Connections refused at accept, by why.",
            "why",
            [
                ("full".to_string(), self.tally.refused_full),
                ("per-ip".to_string(), self.tally.refused_per_ip),
            ],
        )?;
        counted_by(
            e,
            "departures",
            "Connections ended, by reason.",
            "reason",
            Departure::ALL
                .iter()
                .map(|why| why.as_str().to_string())
                .zip(self.tally.departures),
        )?;
        counted_by(
            e,
            "logins",
            "LOGIN attempts, by result.",
            "result",
            outcomes(self.logins),
        )?;
        counted_by(
            e,
            "resumes",
            "RESUME attempts, by result.",
            "result",
            outcomes(self.resumes),
        )?;
        histogram(
            e,
            "say_commit_seconds",
            "From a SAY to the commit that lets its SENT go.",
            &self.say_commit,
        )?;
        histogram(
            e,
            "loop_turn_seconds",
            "How long each turn of the event loop took.",
            &self.tally.turns,
        )
    }
}

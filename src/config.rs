//! Server settings: every duration and limit the loop obeys, their
//! defaults, and the rules a value must keep.
//!
//! The defaults are written once, in [`defaults`]: [`Config::new`] and the
//! command line's `--help` both read them. The command line only parses;
//! [`Config::validate`] decides what is acceptable, so a `Config` built in
//! code is held to the same rules as one typed by an operator.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::bus::{valid_word, ClusterConfig};
use crate::chat::Limits;
use crate::flood::FloodPolicy;
use crate::liveness::Timeouts;
use crate::store::db::Retention;
use crate::transport::tls::TlsSource;
use crate::transport::TransportKind;

/// A duration given in seconds on the command line (`0.5`, `20`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Secs(pub Duration);

impl Secs {
    /// A whole number of seconds.
    pub const fn whole(secs: u64) -> Secs {
        Secs(Duration::from_secs(secs))
    }
}

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}

impl FromStr for Secs {
    type Err = String;
    fn from_str(s: &str) -> Result<Secs, String> {
        parse_secs(s).map(Secs)
    }
}

/// The server's defaults: protocol v1's timings and this design's limits.
pub mod defaults {
    use super::Secs;

    /// The port the README's commands use.
    pub const PORT: u16 = 7007;
    pub const PING_INTERVAL: Secs = Secs::whole(20);
    pub const IDLE_TIMEOUT: Secs = Secs::whole(60);
    pub const LOGIN_TIMEOUT: Secs = Secs::whole(30);
    pub const MAX_LINE: usize = 4096;
    pub const MAX_CLIENTS: usize = 10_000;
    /// Connections from one address (an IPv6 /64) at once.
    pub const MAX_PER_IP: usize = 64;
    pub const SENDQ: usize = 1 << 20;
    /// Lines per second, sustained.
    pub const RATE: f64 = 10.0;
    /// Lines at once after a quiet spell.
    pub const BURST: u32 = 20;
    pub const FLOOD_TIMEOUT: Secs = Secs::whole(10);
    pub const STATS_INTERVAL: Secs = Secs::whole(60);
    /// Rooms one user may be in at once.
    pub const MAX_ROOMS: usize = 32;
    /// Registered names at most: about 207 bytes of memory each, so
    /// 100,000 hold some 20 MB.
    pub const MAX_ACCOUNTS: usize = 100_000;
    /// Names one address may register an hour, all at once if it likes.
    pub const REGISTRATIONS_PER_HOUR: u32 = 20;
    /// Most users in the lobby or a room for whom joins and departures are
    /// still announced (Twitch stops at 1,000 for the same reason).
    pub const PRESENCE_LIMIT: usize = 1000;
    /// The message database, in the working directory, so the README's
    /// run command keeps history with no setup.
    pub const DB: &str = "selectchat.db";
    /// Messages kept per room, at least.
    pub const HISTORY: u64 = 10_000;
    /// Days a message is kept; 0 keeps it as long as its room keeps it.
    pub const HISTORY_DAYS: u32 = 0;
    /// Rooms whose history is stored; the least recently active go first.
    pub const MAX_STORED_ROOMS: u64 = 100_000;
    /// How long a dropped session can be taken back with `RESUME`.
    pub const RESUME_WINDOW: std::time::Duration = std::time::Duration::from_secs(120);
    /// Bytes of recent room messages kept in memory for `HISTORY`.
    pub const HISTORY_MEMORY: usize = 16 << 20;
    /// Names a cluster's stream (upper-cased), buckets and subjects.
    pub const CLUSTER_PREFIX: &str = "selectchat";
    /// How long a node may be silent before its peers declare it dead.
    pub const CLUSTER_TIMEOUT: Secs = Secs::whole(3);
    /// Seconds a drain spreads its closes over.
    pub const DRAIN: Secs = Secs::whole(5);
    /// Address the metrics port binds when `--metrics-host` is not given.
    pub const METRICS_HOST: &str = "127.0.0.1";
}

/// The bounds `validate` enforces.
const MIN_MAX_LINE: usize = 64;
const MAX_MAX_LINE: usize = 1 << 20;
const MIN_SENDQ: usize = 1024;
const MAX_RATE: f64 = 1e6;
/// Longest duration accepted; keeps `Instant + Duration` far from overflow.
const MAX_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// Everything `Server` needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks an ephemeral port.
    pub addr: SocketAddr,
    /// Heartbeat, idle and login deadlines.
    pub timeouts: Timeouts,
    /// Longest accepted line in bytes, line end not counted.
    pub max_line: usize,
    /// Most connections served at once; more get `BYE server-full`.
    pub max_clients: usize,
    /// Most connections from one address (IPv6: one /64); 0 for no limit.
    pub max_per_ip: usize,
    /// Most unsent bytes queued for one connection before it is dropped.
    pub sendq: usize,
    /// Per-connection line rate limit.
    pub flood: FloodPolicy,
    /// How often to log a debug-level stats line; `None` for never.
    pub stats_interval: Option<Duration>,
    /// Rooms per user, the presence limit, the resume window.
    pub chat: Limits,
    /// The message database's path, or `:memory:`.
    pub db: String,
    /// How long the database keeps history: per room, by age, rooms.
    pub retention: Retention,
    /// Where the TLS certificate comes from; `None` serves no TLS.
    pub tls: Option<TlsSource>,
    /// Port of the listener for protocol lines over TLS.
    pub tls_port: Option<u16>,
    /// Port of the web listener: the page and WebSocket (HTTPS with `tls`).
    pub web_port: Option<u16>,
    /// The only `Origin` a WebSocket upgrade is accepted from, when set.
    pub web_origin: Option<String>,
    /// The cluster this node joins; `None` runs one self-contained server.
    pub cluster: Option<ClusterConfig>,
    /// Where `/metrics` and `/healthz` are served, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// The control socket's path, if there is one.
    pub control: Option<PathBuf>,
    /// How long a drain spreads its `BYE restarting`s over.
    pub drain: Duration,
}

/// A setting outside what the server accepts, named by its flag.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub flag: &'static str,
    pub value: String,
    pub rule: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid value '{}' for '{}': {}",
            self.value, self.flag, self.rule
        )
    }
}

impl std::error::Error for ConfigError {}

fn check(
    ok: bool,
    flag: &'static str,
    value: impl fmt::Display,
    rule: String,
) -> Result<(), ConfigError> {
    if ok {
        return Ok(());
    }
    Err(ConfigError {
        flag,
        value: value.to_string(),
        rule,
    })
}

fn positive(flag: &'static str, d: Duration) -> Result<(), ConfigError> {
    check(
        !d.is_zero(),
        flag,
        Secs(d),
        "must be more than 0 seconds".into(),
    )
}

impl Config {
    /// The defaults on `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Config {
            addr,
            timeouts: Timeouts {
                ping_interval: defaults::PING_INTERVAL.0,
                idle_timeout: defaults::IDLE_TIMEOUT.0,
                login_timeout: defaults::LOGIN_TIMEOUT.0,
            },
            max_line: defaults::MAX_LINE,
            max_clients: defaults::MAX_CLIENTS,
            max_per_ip: defaults::MAX_PER_IP,
            sendq: defaults::SENDQ,
            flood: FloodPolicy::new(defaults::RATE, defaults::BURST, defaults::FLOOD_TIMEOUT.0),
            stats_interval: Some(defaults::STATS_INTERVAL.0),
            chat: Limits::default(),
            db: defaults::DB.into(),
            retention: Retention {
                per_room: defaults::HISTORY,
                max_age: None,
                max_rooms: defaults::MAX_STORED_ROOMS,
                sessions: defaults::RESUME_WINDOW,
                max_sessions: defaults::MAX_CLIENTS,
            },
            tls: None,
            tls_port: None,
            web_port: None,
            web_origin: None,
            cluster: None,
            metrics: None,
            control: None,
            drain: defaults::DRAIN.0,
        }
    }

    /// Every address to listen on, with the transport it speaks: plain
    /// lines on `addr`, TLS lines and the web page on their own ports.
    pub fn listeners(&self) -> Vec<(SocketAddr, TransportKind)> {
        let on = |port| SocketAddr::new(self.addr.ip(), port);
        let mut all = vec![(self.addr, TransportKind::Plain)];
        if let Some(port) = self.tls_port {
            all.push((on(port), TransportKind::Tls));
        }
        if let Some(port) = self.web_port {
            let kind = if self.tls.is_some() {
                TransportKind::WebTls
            } else {
                TransportKind::Web
            };
            all.push((on(port), kind));
        }
        all
    }

    /// Checks every setting against the bounds the server works within.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("--ping-interval", self.timeouts.ping_interval)?;
        positive("--idle-timeout", self.timeouts.idle_timeout)?;
        positive("--login-timeout", self.timeouts.login_timeout)?;
        check(
            (MIN_MAX_LINE..=MAX_MAX_LINE).contains(&self.max_line),
            "--max-line",
            self.max_line,
            format!("must be {MIN_MAX_LINE} to {MAX_MAX_LINE} bytes"),
        )?;
        check(
            self.max_clients >= 1,
            "--max-clients",
            self.max_clients,
            "must be at least 1".into(),
        )?;
        check(
            self.sendq >= MIN_SENDQ,
            "--sendq",
            self.sendq,
            format!("must be at least {MIN_SENDQ} bytes"),
        )?;
        let flood = &self.flood;
        check(
            (0.0..=MAX_RATE).contains(&flood.rate),
            "--rate",
            flood.rate,
            format!("must be 0 (off) to {MAX_RATE} lines per second"),
        )?;
        if flood.enabled() {
            check(
                flood.burst >= 1.0,
                "--burst",
                flood.burst,
                "must be at least 1 line".into(),
            )?;
            positive("--flood-timeout", flood.kick_after)?;
        }
        check(
            self.chat.max_rooms >= 1,
            "--max-rooms",
            self.chat.max_rooms,
            "must be at least 1".into(),
        )?;
        check(
            self.retention.per_room >= 1,
            "--history",
            self.retention.per_room,
            "must be at least 1 message".into(),
        )?;
        check(
            self.retention.max_rooms >= 1,
            "--max-stored-rooms",
            self.retention.max_rooms,
            "must be at least 1 room".into(),
        )?;
        check(
            !self.db.is_empty(),
            "--db",
            &self.db,
            "must be a path or :memory:".into(),
        )?;
        if let Some(interval) = self.stats_interval {
            positive("--stats-interval", interval)?;
        }
        if let Some(cluster) = &self.cluster {
            validate_cluster(cluster)?;
        }
        self.validate_transports()
    }

    fn validate_transports(&self) -> Result<(), ConfigError> {
        if let Some(port) = self.tls_port {
            check(
                self.tls.is_some(),
                "--tls-port",
                port,
                "needs --tls-cert and --tls-key, or --tls-self-signed".into(),
            )?;
        }
        if self.tls.is_some() && self.tls_port.is_none() && self.web_port.is_none() {
            return Err(ConfigError {
                flag: "--tls-cert",
                value: "(given)".into(),
                rule: "needs --tls-port or --web-port to serve it on".into(),
            });
        }
        let ports = [("--tls-port", self.tls_port), ("--web-port", self.web_port)];
        for (i, &(flag, port)) in ports.iter().enumerate() {
            let Some(port) = port.filter(|&p| p != 0) else {
                continue;
            };
            let taken = port == self.addr.port()
                || ports[..i].iter().any(|&(_, other)| other == Some(port));
            check(
                !taken,
                flag,
                port,
                "must differ from the other ports".into(),
            )?;
        }
        if let Some(origin) = &self.web_origin {
            check(
                self.web_port.is_some(),
                "--web-origin",
                origin,
                "needs --web-port".into(),
            )?;
        }
        Ok(())
    }

    /// Lowers `max_clients` to `open_files` when it is higher (every
    /// connection needs a descriptor). Returns the value it replaced.
    pub fn fit_open_file_limit(&mut self, open_files: u64) -> Option<usize> {
        let limit = usize::try_from(open_files).unwrap_or(usize::MAX);
        (self.max_clients > limit).then(|| std::mem::replace(&mut self.max_clients, limit))
    }
}

/// Parses seconds with an optional fraction (`0.5`, `20`) into a duration
/// of at most a year.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(0.0..=MAX_SECS).contains(&secs) {
        return Err(format!("`{s}` must be 0 to {MAX_SECS} seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The process's soft limit on open files, if it can be read.
pub fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into the struct we pass.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

fn validate_cluster(cluster: &ClusterConfig) -> Result<(), ConfigError> {
    let word = "must be 1 to 32 letters, digits, _ or -";
    check(
        valid_word(&cluster.node),
        "--node",
        &cluster.node,
        word.into(),
    )?;
    check(
        valid_word(&cluster.prefix),
        "--cluster-prefix",
        &cluster.prefix,
        word.into(),
    )?;
    check(
        cluster.timeout >= Duration::from_secs(1),
        "--cluster-timeout",
        Secs(cluster.timeout),
        "must be at least 1 second".into(),
    )?;
    check(
        (1..=5).contains(&cluster.replicas),
        "--cluster-replicas",
        cluster.replicas,
        "must be 1 to 5".into(),
    )?;
    let empty = cluster.urls.iter().find(|u| u.trim().is_empty());
    check(
        empty.is_none(),
        "--cluster",
        cluster.urls.join(","),
        "must be NATS URLs separated by commas".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn cfg() -> Config {
        Config::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    }

    fn refused_flag(change: impl FnOnce(&mut Config)) -> &'static str {
        let mut c = cfg();
        change(&mut c);
        c.validate().expect_err("accepted").flag
    }

    #[test]
    fn seconds_accept_fractions_and_refuse_nonsense() {
        assert_eq!(parse_secs("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_secs("20"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_secs("0"), Ok(Duration::ZERO), "zero is a duration");
        for bad in ["-1", "abc", "", "NaN", "inf", "1e12"] {
            assert!(parse_secs(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(Secs(Duration::from_millis(500)).to_string(), "0.5");
        assert_eq!(defaults::PING_INTERVAL.to_string(), "20");
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(cfg().validate(), Ok(()));
        assert!(cfg().flood.enabled());
    }

    #[test]
    fn each_bad_setting_is_named_by_its_flag() {
        assert_eq!(
            refused_flag(|c| c.timeouts.idle_timeout = Duration::ZERO),
            "--idle-timeout"
        );
        assert_eq!(
            refused_flag(|c| c.timeouts.ping_interval = Duration::ZERO),
            "--ping-interval"
        );
        assert_eq!(
            refused_flag(|c| c.timeouts.login_timeout = Duration::ZERO),
            "--login-timeout"
        );
        assert_eq!(refused_flag(|c| c.max_line = 63), "--max-line");
        assert_eq!(refused_flag(|c| c.max_line = (1 << 20) + 1), "--max-line");
        assert_eq!(refused_flag(|c| c.max_clients = 0), "--max-clients");
        assert_eq!(refused_flag(|c| c.sendq = 1023), "--sendq");
        assert_eq!(refused_flag(|c| c.flood.rate = -1.0), "--rate");
        assert_eq!(refused_flag(|c| c.flood.rate = f64::NAN), "--rate");
        assert_eq!(refused_flag(|c| c.flood.burst = 0.0), "--burst");
        assert_eq!(
            refused_flag(|c| c.flood.kick_after = Duration::ZERO),
            "--flood-timeout"
        );
        assert_eq!(
            refused_flag(|c| c.stats_interval = Some(Duration::ZERO)),
            "--stats-interval"
        );
        assert_eq!(refused_flag(|c| c.chat.max_rooms = 0), "--max-rooms");
        assert_eq!(refused_flag(|c| c.retention.per_room = 0), "--history");
        assert_eq!(
            refused_flag(|c| c.retention.max_rooms = 0),
            "--max-stored-rooms"
        );
        assert_eq!(refused_flag(|c| c.db.clear()), "--db");
        let mut c = cfg();
        c.max_line = 10;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "invalid value '10' for '--max-line': must be 64 to 1048576 bytes"
        );
    }

    #[test]
    fn transports_need_what_they_serve_and_ports_of_their_own() {
        assert_eq!(refused_flag(|c| c.tls_port = Some(7443)), "--tls-port");
        assert_eq!(
            refused_flag(|c| c.tls = Some(TlsSource::SelfSigned)),
            "--tls-cert"
        );
        assert_eq!(
            refused_flag(|c| c.web_origin = Some("https://x".into())),
            "--web-origin"
        );
        assert_eq!(
            refused_flag(|c| {
                c.addr.set_port(7007);
                c.web_port = Some(7007);
            }),
            "--web-port"
        );
        assert_eq!(
            refused_flag(|c| {
                c.tls = Some(TlsSource::SelfSigned);
                c.tls_port = Some(8443);
                c.web_port = Some(8443);
            }),
            "--web-port"
        );
        let mut c = cfg();
        c.tls = Some(TlsSource::SelfSigned);
        c.tls_port = Some(0);
        c.web_port = Some(0);
        assert_eq!(c.validate(), Ok(()), "port 0 picks a free port each");
        let kinds: Vec<_> = c.listeners().into_iter().map(|(_, k)| k).collect();
        assert_eq!(
            kinds,
            [
                TransportKind::Plain,
                TransportKind::Tls,
                TransportKind::WebTls
            ]
        );
        c.tls = None;
        c.tls_port = None;
        assert_eq!(c.listeners()[1].1, TransportKind::Web);
    }

    #[test]
    fn flood_control_off_needs_no_burst() {
        let mut c = cfg();
        c.flood = FloodPolicy::new(0.0, 0, Duration::ZERO);
        assert!(!c.flood.enabled());
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn max_clients_is_fitted_to_the_open_file_limit() {
        let mut c = cfg();
        assert_eq!(c.fit_open_file_limit(20_000), None);
        assert_eq!(c.max_clients, 10_000);
        assert_eq!(c.fit_open_file_limit(1_024), Some(10_000));
        assert_eq!(c.max_clients, 1_024);
    }

    #[test]
    fn open_file_limit_is_readable_here() {
        assert!(open_file_limit().is_some_and(|n| n > 0));
    }
}

//! The `selectchat` command line: serve (the default), `connect`, `ctl`, `bench` or `echo`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use log::{error, info, warn, LevelFilter};

use selectchat::bench::target::Target;
use selectchat::bus::ClusterConfig;
use selectchat::chat::accounts::Policy;
use selectchat::chat::Limits;
use selectchat::config::{defaults, open_file_limit, parse_secs, Config, ConfigError, Secs};
use selectchat::control::{self, ControlCommand};
use selectchat::echo::EchoServer;
use selectchat::flood::FloodPolicy;
use selectchat::liveness::Timeouts;
use selectchat::server::Server;
use selectchat::store::db::Retention;
use selectchat::transport::tls::TlsSource;
use selectchat::transport::TransportKind;
use selectchat::{bench, client};

/// How long `selectchat ctl` waits for the server's answer.
const CTL_WAIT: Duration = Duration::from_secs(10);

/// A single-threaded chat server: `selectchat 7007`, then `nc localhost 7007`.
#[derive(Debug, Parser)]
#[command(
    name = "selectchat",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    serve: ServeArgs,
    #[command(flatten)]
    logging: LogArgs,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Ask a running server over its control socket: stats, who, kick NAME [reason], notice TEXT, drain.
    Ctl {
        /// The server's --control socket.
        #[arg(long, env = "SELECTCHAT_CONTROL", value_name = "PATH")]
        control: PathBuf,
        /// The command and its arguments, e.g. `kick bob spamming`.
        #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Chat from this terminal (or a script): `selectchat connect --name alice`.
    Connect {
        /// Server address: host:port, host, [v6]:port; the port defaults to 7007. Several, comma-separated (a cluster's nodes): each reconnect tries the next.
        #[arg(default_value = "127.0.0.1:7007")]
        addr: String,
        /// Log in under this name (asked for when stdin is a terminal).
        #[arg(long)]
        name: Option<String>,
        /// Join this room after login; piped lines are said there instead of the lobby.
        #[arg(long)]
        room: Option<String>,
        /// The name's password, for a registered name (asked for on a terminal when the server says one is needed; never on the command line).
        #[arg(
            long = "password-env",
            value_name = "VAR",
            default_value = "SELECTCHAT_PASSWORD"
        )]
        password_env: String,
        /// Register --name with the password first (REGISTER), instead of logging in.
        #[arg(long, requires = "name")]
        register: bool,
        /// The server's --rate: typed, pasted and piped lines are paced under it (0: unpaced).
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
        /// The server's --burst.
        #[arg(long, default_value_t = 20)]
        burst: u32,
        /// Seconds of server silence before checking on it; twice that and the client reconnects (terminal only).
        #[arg(long, default_value_t = 10.0)]
        heartbeat: f64,
        /// Piped: once input ends, seconds to wait for the server to confirm every line; past it, exit 3 with a count.
        #[arg(long, value_name = "SECS", default_value_t = 120.0)]
        wait: f64,
    },
    /// Load-test a running server: `selectchat bench 127.0.0.1:7007 --scenario fanout`.
    Bench(BenchArgs),
    /// Run an RFC 862 echo server, for testing clients: `selectchat echo 7007`.
    Echo {
        /// TCP port to listen on (0 picks a free one).
        #[arg(default_value_t = 7007)]
        port: u16,
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0")]
        host: IpAddr,
        /// Once listening, write `plain ADDRESS` to this file.
        #[arg(long, value_name = "PATH")]
        port_file: Option<PathBuf>,
        #[command(flatten)]
        logging: LogArgs,
    },
}

/// Flags of `selectchat bench`.
#[derive(Debug, Args)]
struct BenchArgs {
    /// Server address (host:port).
    #[arg(default_value = "127.0.0.1:7007")]
    addr: String,
    /// The nodes of a cluster (host:port, comma-separated): connections are spread over them in turn, the fanout's sender on the first. Replaces ADDR.
    #[arg(long, value_name = "ADDRS", value_delimiter = ',')]
    nodes: Vec<String>,
    /// fanout: one sender, N receivers; mesh: everyone sends and receives; idle: hold N logins; storm: N log in at once; rooms: fanout through rooms.
    #[arg(long, value_enum, default_value = "fanout")]
    scenario: ScenarioArg,
    /// Connections (for fanout: receivers, plus the one sender).
    #[arg(long, short = 'n', default_value_t = 100)]
    clients: usize,
    /// rooms: how many rooms (the server needs `--max-rooms` at least this).
    #[arg(long, default_value_t = 100)]
    rooms: usize,
    /// rooms: receivers in each room.
    #[arg(long, default_value_t = 100)]
    members: usize,
    /// rooms: rooms each receiver is in.
    #[arg(long, default_value_t = 5)]
    per_user: usize,
    /// rooms: one receiver asks for `HISTORY #r0 500` again and again while the fanout runs.
    #[arg(long)]
    history_reader: bool,
    /// fanout and rooms: messages the sender sends.
    #[arg(long, default_value_t = 1000)]
    messages: u32,
    /// fanout and rooms: most messages not yet delivered to every receiver.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    window: u32,
    /// mesh: messages per second, all senders together (default 1000). fanout and rooms: send at this fixed rate instead of as fast as the window allows, to measure latency below saturation (each message's latency counts from when it was due).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    rate: Option<u32>,
    /// mesh and idle: how long to run.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    duration: Duration,
    /// Bytes of text per message.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// The server's pid, to report its memory per connection and its CPU (Linux /proc); with --nodes, every node's pid, comma-separated (summed).
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Give up after this long.
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = parse_secs)]
    timeout: Duration,
    /// Login names are PREFIX0, PREFIX1, ...
    #[arg(long, default_value = "load")]
    name_prefix: String,
    /// One JSON object per run instead of a table.
    #[arg(long)]
    json: bool,
    /// Connect over TLS (point at the server's --tls-port, or with --ws at its HTTPS --web-port). Certificates are not verified.
    #[arg(long)]
    tls: bool,
    /// Connect as WebSocket clients (point at the server's --web-port).
    #[arg(long)]
    ws: bool,
    /// Which server is at ADDR: selectchat, or Redis pub/sub or NATS to compare with (fanout, idle and storm; NATS also mesh).
    #[arg(long, value_enum, default_value = "selectchat")]
    target: TargetArg,
}

/// Whether guests may log in (`--accounts`).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum AccountsArg {
    Optional,
    Required,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TargetArg {
    Selectchat,
    Redis,
    Nats,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ScenarioArg {
    Fanout,
    Mesh,
    Idle,
    Storm,
    Rooms,
}

impl BenchArgs {
    fn options(&self) -> Result<bench::Options, String> {
        let resolve = |addr: &str| {
            client::resolve(addr)
                .ok()
                .and_then(|a| a.into_iter().next())
                .ok_or_else(|| format!("cannot resolve {addr}"))
        };
        let mut nodes = self
            .nodes
            .iter()
            .map(|n| resolve(n))
            .collect::<Result<Vec<_>, _>>()?;
        let addr = match nodes.is_empty() {
            true => resolve(&self.addr)?,
            false => nodes.remove(0),
        };
        let scenario = match self.scenario {
            ScenarioArg::Fanout => bench::Scenario::Fanout {
                receivers: self.clients.max(1),
                messages: self.messages,
                window: self.window,
            },
            ScenarioArg::Mesh => bench::Scenario::Mesh {
                clients: self.clients.max(2),
                rate: self.rate.unwrap_or(1000),
                duration: self.duration,
            },
            ScenarioArg::Idle => bench::Scenario::Idle {
                clients: self.clients,
                duration: self.duration,
            },
            ScenarioArg::Storm => bench::Scenario::Storm {
                clients: self.clients,
            },
            ScenarioArg::Rooms => bench::Scenario::Rooms {
                rooms: self.rooms.max(1),
                members: self.members.max(1),
                per_user: self.per_user,
                messages: self.messages,
                window: self.window,
                history_reader: self.history_reader,
            },
        };
        let target = match self.target {
            TargetArg::Selectchat => Target::Selectchat,
            TargetArg::Redis => Target::Redis,
            TargetArg::Nats => Target::Nats,
        };
        if let Some(why) = target.refuses(scenario.name()) {
            return Err(why);
        }
        if target != Target::Selectchat && (self.tls || self.ws) {
            return Err(format!(
                "--tls and --ws are for selectchat, not {}",
                target.as_str()
            ));
        }
        Ok(bench::Options {
            addr,
            scenario,
            size: self.size,
            server_pids: self.server_pid.clone(),
            nodes,
            timeout: self.timeout,
            progress: true,
            name_prefix: self.name_prefix.clone(),
            transport: match (self.tls, self.ws) {
                (false, false) => TransportKind::Plain,
                (true, false) => TransportKind::Tls,
                (false, true) => TransportKind::Web,
                (true, true) => TransportKind::WebTls,
            },
            target,
            rate: self
                .rate
                .filter(|_| !matches!(self.scenario, ScenarioArg::Mesh)),
        })
    }
}

/// Runs one load and prints its report; exit 1 on errors or any loss.
fn bench_command(args: &BenchArgs) -> ExitCode {
    let opts = match args.options() {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("selectchat bench: {e}");
            return ExitCode::from(2);
        }
    };
    match bench::run(opts) {
        Ok(report) => {
            if args.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_table());
            }
            let clean =
                report.error.is_none() && report.lost + report.duplicated + report.reordered == 0;
            if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("selectchat bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Flags of the chat server (the default command). They only parse:
/// defaults and the rules a value must keep live in `Config`.
#[derive(Debug, Args)]
struct ServeArgs {
    /// TCP port to listen on (0 picks a free one).
    #[arg(env = "CHAT_PORT", default_value_t = defaults::PORT)]
    port: u16,
    /// Address to listen on; IPv6 addresses such as `::` work.
    #[arg(env = "SELECTCHAT_HOST", long, default_value = "0.0.0.0")]
    host: IpAddr,
    /// Seconds without a line before the server sends PING.
    #[arg(env = "SELECTCHAT_PING_INTERVAL", long, value_name = "SECS", default_value_t = defaults::PING_INTERVAL)]
    ping_interval: Secs,
    /// Seconds without a line before the connection is closed (`BYE idle-timeout`).
    #[arg(env = "SELECTCHAT_IDLE_TIMEOUT", long, value_name = "SECS", default_value_t = defaults::IDLE_TIMEOUT)]
    idle_timeout: Secs,
    /// Seconds a connection may take to log in (`BYE login-timeout`).
    #[arg(env = "SELECTCHAT_LOGIN_TIMEOUT", long, value_name = "SECS", default_value_t = defaults::LOGIN_TIMEOUT)]
    login_timeout: Secs,
    /// Longest line in bytes (64 to 1 MiB), line end not counted; longer ones get `ERR line-too-long`.
    #[arg(env = "SELECTCHAT_MAX_LINE", long, value_name = "BYTES", default_value_t = defaults::MAX_LINE)]
    max_line: usize,
    /// Most connections at once (capped by the open-file limit); more get `BYE server-full`.
    #[arg(env = "SELECTCHAT_MAX_CLIENTS", long, value_name = "N", default_value_t = defaults::MAX_CLIENTS)]
    max_clients: usize,
    /// Most connections from one address (an IPv6 /64) at once, over all transports; more get `BYE server-full`. 0 turns the limit off.
    #[arg(env = "SELECTCHAT_MAX_PER_IP", long, value_name = "N", default_value_t = defaults::MAX_PER_IP)]
    max_per_ip: usize,
    /// Most unsent bytes (at least 1024) queued for one client before it is dropped as a slow consumer.
    #[arg(env = "SELECTCHAT_SENDQ", long, value_name = "BYTES", default_value_t = defaults::SENDQ)]
    sendq: usize,
    /// Lines per second a client may send, sustained; 0 turns flood control off.
    #[arg(env = "SELECTCHAT_RATE", long, value_name = "LINES", default_value_t = defaults::RATE)]
    rate: f64,
    /// Lines a client may send at once after a quiet spell.
    #[arg(env = "SELECTCHAT_BURST", long, value_name = "LINES", default_value_t = defaults::BURST)]
    burst: u32,
    /// Seconds a client may stay over the rate before `BYE flooding`.
    #[arg(env = "SELECTCHAT_FLOOD_TIMEOUT", long, value_name = "SECS", default_value_t = defaults::FLOOD_TIMEOUT)]
    flood_timeout: Secs,
    /// Seconds between stats lines (connections, users, timers, buffered bytes), logged at debug level.
    #[arg(env = "SELECTCHAT_STATS_INTERVAL", long, value_name = "SECS", default_value_t = defaults::STATS_INTERVAL)]
    stats_interval: Secs,
    /// Rooms one user may be in at once (`ERR too-many-rooms` past it).
    #[arg(env = "SELECTCHAT_MAX_ROOMS", long, value_name = "N", default_value_t = defaults::MAX_ROOMS)]
    max_rooms: usize,
    /// Announce joins and departures only while the lobby or room holds at most N users; 0 always announces.
    #[arg(env = "SELECTCHAT_PRESENCE_LIMIT", long, value_name = "N", default_value_t = defaults::PRESENCE_LIMIT)]
    presence_limit: usize,
    /// The SQLite database that keeps room history (created if missing); `:memory:` keeps it only while the server runs.
    #[arg(env = "SELECTCHAT_DB", long, value_name = "PATH", default_value = defaults::DB)]
    db: String,
    /// Messages kept per room in the database, at least; older ones are pruned in the background.
    #[arg(env = "SELECTCHAT_HISTORY", long, value_name = "N", default_value_t = defaults::HISTORY)]
    history: u64,
    /// Days a stored message is kept; 0 keeps it as long as its room keeps it.
    #[arg(env = "SELECTCHAT_HISTORY_DAYS", long, value_name = "DAYS", default_value_t = defaults::HISTORY_DAYS)]
    history_days: u32,
    /// Most rooms whose history is stored; past it the least recently active room is deleted with its history.
    #[arg(env = "SELECTCHAT_MAX_STORED_ROOMS", long, value_name = "N", default_value_t = defaults::MAX_STORED_ROOMS)]
    max_stored_rooms: u64,
    /// Most registered names; past it `REGISTER` gets `ERR too-many-accounts` (each account holds about 207 bytes of memory).
    #[arg(env = "SELECTCHAT_MAX_ACCOUNTS", long, value_name = "N", default_value_t = defaults::MAX_ACCOUNTS)]
    max_accounts: usize,
    /// Names one address (an IPv6 /64) may register an hour, all at once if it likes; past it `REGISTER` gets `ERR too-many-attempts`. 0: any number (load tests from one machine).
    #[arg(env = "SELECTCHAT_REGISTRATIONS_PER_HOUR", long, value_name = "N", default_value_t = defaults::REGISTRATIONS_PER_HOUR)]
    registrations_per_hour: u32,
    /// optional: names without an account log in as guests, as before accounts; required: only registered names log in (`REGISTER` makes one; others get `ERR account-required`).
    #[arg(
        env = "SELECTCHAT_ACCOUNTS",
        long,
        value_enum,
        default_value = "optional"
    )]
    accounts: AccountsArg,
    /// Seconds after a session ends during which `RESUME` with its token takes it back; 0 turns that off.
    #[arg(env = "SELECTCHAT_RESUME_WINDOW", long, value_name = "SECS", default_value_t = Secs(defaults::RESUME_WINDOW))]
    resume_window: Secs,
    /// Also serve protocol lines over TLS on this port (needs a certificate: --tls-cert and --tls-key, or --tls-self-signed).
    #[arg(env = "SELECTCHAT_TLS_PORT", long, value_name = "PORT")]
    tls_port: Option<u16>,
    /// The TLS certificate chain, PEM, leaf first.
    #[arg(
        env = "SELECTCHAT_TLS_CERT",
        long,
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key, PEM (PKCS#8, RSA or EC).
    #[arg(
        env = "SELECTCHAT_TLS_KEY",
        long,
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
    /// Make a throwaway certificate for localhost at start-up (development only: clients will not trust it).
    #[arg(env = "SELECTCHAT_TLS_SELF_SIGNED", long, conflicts_with = "tls_cert")]
    tls_self_signed: bool,
    /// Serve the web page (`/`) and WebSocket chat (`/chat`) on this port; HTTPS/WSS when a TLS certificate is given.
    #[arg(env = "SELECTCHAT_WEB_PORT", long, value_name = "PORT")]
    web_port: Option<u16>,
    /// Accept WebSocket upgrades only from this Origin (e.g. https://chat.example.org).
    #[arg(env = "SELECTCHAT_WEB_ORIGIN", long, value_name = "ORIGIN")]
    web_origin: Option<String>,
    /// Join a cluster over NATS JetStream (nats-server 2.10 or later, with -js): comma-separated URLs such as nats://127.0.0.1:4222. Without it the server is one self-contained process.
    #[arg(
        env = "SELECTCHAT_CLUSTER",
        long,
        value_name = "URLS",
        value_delimiter = ','
    )]
    cluster: Vec<String>,
    /// This node's name in the cluster, unique among its nodes (default: the host name and port).
    #[arg(
        env = "SELECTCHAT_NODE",
        long,
        value_name = "NAME",
        requires = "cluster"
    )]
    node: Option<String>,
    /// Names the cluster's stream, buckets and subjects, so two clusters can share one NATS.
    #[arg(env = "SELECTCHAT_CLUSTER_PREFIX", long, value_name = "P", default_value = defaults::CLUSTER_PREFIX, requires = "cluster")]
    cluster_prefix: String,
    /// Seconds a node may be silent before the others declare it dead (its users depart); a node cut off this long closes its users with `BYE cut-off`.
    #[arg(env = "SELECTCHAT_CLUSTER_TIMEOUT", long, value_name = "SECS", default_value_t = defaults::CLUSTER_TIMEOUT, requires = "cluster")]
    cluster_timeout: Secs,
    /// Copies NATS keeps of the cluster's log and names: 1, or up to 5 on a NATS cluster of that many servers.
    #[arg(
        env = "SELECTCHAT_CLUSTER_REPLICAS",
        long,
        value_name = "N",
        default_value_t = 1,
        requires = "cluster"
    )]
    cluster_replicas: usize,
    /// Serve Prometheus metrics (`/metrics`) and a health check (`/healthz`) over HTTP on this port.
    #[arg(env = "SELECTCHAT_METRICS_PORT", long, value_name = "PORT")]
    metrics_port: Option<u16>,
    /// Address the metrics port binds (keep it private: the metrics are not secret, but not public either).
    #[arg(env = "SELECTCHAT_METRICS_HOST", long, value_name = "IP", default_value = defaults::METRICS_HOST, requires = "metrics_port")]
    metrics_host: IpAddr,
    /// Serve operator commands on this Unix socket (mode 0600): `selectchat ctl --control PATH stats|who|kick|notice|drain`.
    #[arg(env = "SELECTCHAT_CONTROL", long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Seconds a drain (SIGUSR2, or `ctl drain`) spreads its `BYE restarting` closes over; 0 closes everyone at once.
    #[arg(env = "SELECTCHAT_DRAIN", long, value_name = "SECS", default_value_t = defaults::DRAIN)]
    drain: Secs,
    /// Once listening, write one `TRANSPORT ADDRESS` line per listener to this file (for scripts and tests; with port 0 it says which port was picked).
    #[arg(env = "SELECTCHAT_PORT_FILE", long, value_name = "PATH")]
    port_file: Option<PathBuf>,
}

/// Logging flags, shared by the servers.
#[derive(Debug, Args)]
struct LogArgs {
    /// More logging: -v for debug, -vv for trace.
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Less logging: -q for warnings only, -qq for errors only.
    #[arg(short, long, action = clap::ArgAction::Count)]
    quiet: u8,
    /// Log level (off, error, warn, info, debug, trace); overrides -v and -q.
    #[arg(long, value_name = "LEVEL", env = "SELECTCHAT_LOG_LEVEL")]
    log_level: Option<LevelFilter>,
}

impl LogArgs {
    fn level(&self) -> LevelFilter {
        self.log_level.unwrap_or(match (self.verbose, self.quiet) {
            (0, 0) => LevelFilter::Info,
            (1, _) => LevelFilter::Debug,
            (v, _) if v >= 2 => LevelFilter::Trace,
            (_, 1) => LevelFilter::Warn,
            _ => LevelFilter::Error,
        })
    }

    fn init(&self) -> Result<(), ExitCode> {
        // The WebSocket library logs every message it receives (resume
        // tokens, everyone's text) at trace and frames at debug: an
        // operator needs none of that, and no secret belongs in a log.
        simple_logger::SimpleLogger::new()
            .with_level(self.level())
            .with_module_level("tungstenite", LevelFilter::Error)
            .with_module_level("rustls", LevelFilter::Error)
            .with_utc_timestamps()
            .init()
            .map_err(|e| {
                eprintln!("selectchat: cannot start logging: {e}");
                ExitCode::FAILURE
            })
    }
}

impl ServeArgs {
    /// The settings given, checked.
    fn config(&self) -> Result<Config, ConfigError> {
        let cfg = Config {
            addr: SocketAddr::new(self.host, self.port),
            timeouts: Timeouts {
                ping_interval: self.ping_interval.0,
                idle_timeout: self.idle_timeout.0,
                login_timeout: self.login_timeout.0,
            },
            max_line: self.max_line,
            max_clients: self.max_clients,
            max_per_ip: self.max_per_ip,
            sendq: self.sendq,
            flood: FloodPolicy::new(self.rate, self.burst, self.flood_timeout.0),
            stats_interval: Some(self.stats_interval.0),
            chat: Limits {
                max_rooms: self.max_rooms,
                presence_limit: self.presence_limit,
                resume_window: self.resume_window.0,
                max_ended: self.max_clients,
                accounts: match self.accounts {
                    AccountsArg::Optional => Policy::Optional,
                    AccountsArg::Required => Policy::Required,
                },
                max_accounts: self.max_accounts,
                registrations_per_hour: self.registrations_per_hour,
                ..Limits::default()
            },
            db: self.db.clone(),
            retention: Retention {
                per_room: self.history,
                max_age: (self.history_days > 0)
                    .then(|| Duration::from_secs(u64::from(self.history_days) * 86_400)),
                max_rooms: self.max_stored_rooms,
                sessions: self.resume_window.0,
                max_sessions: self.max_clients,
            },
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsSource::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => self.tls_self_signed.then_some(TlsSource::SelfSigned),
            },
            tls_port: self.tls_port,
            web_port: self.web_port,
            web_origin: self.web_origin.clone(),
            cluster: (!self.cluster.is_empty()).then(|| ClusterConfig {
                urls: self.cluster.clone(),
                node: self
                    .node
                    .clone()
                    .unwrap_or_else(|| default_node_name(self.port)),
                prefix: self.cluster_prefix.clone(),
                timeout: self.cluster_timeout.0,
                replicas: self.cluster_replicas,
            }),
            metrics: self
                .metrics_port
                .map(|port| SocketAddr::new(self.metrics_host, port)),
            control: self.control.clone(),
            drain: self.drain.0,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// A node name from the host name and the port: the host's name with
/// anything a node name may not hold dropped, cut to fit.
fn default_node_name(port: u16) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let host = if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end])
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(24)
            .collect()
    } else {
        String::new()
    };
    let host = if host.is_empty() { "node".into() } else { host };
    format!("{host}-{port}")
}

/// Lowers `--max-clients` to what the open-file limit allows, saying so.
fn fit_open_file_limit(cfg: &mut Config) {
    let Some(limit) = open_file_limit() else {
        return;
    };
    if let Some(asked) = cfg.fit_open_file_limit(limit) {
        warn!(
            "--max-clients {asked} exceeds the open-file limit; using {} \
             (connections past the last free descriptor get BYE server-full)",
            cfg.max_clients
        );
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => {
            let mut cfg = match cli.serve.config() {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let port_file = cli.serve.port_file.as_deref();
            // Fitted once logging runs: lowering the limit warns.
            run_service(&cli.logging, port_file, || {
                fit_open_file_limit(&mut cfg);
                Server::bind(cfg)
            })
        }
        Some(Sub::Bench(args)) => bench_command(&args),
        Some(Sub::Ctl { control, command }) => ctl_command(&control, &command.join(" ")),
        Some(Sub::Connect {
            addr,
            name,
            room,
            password_env,
            register,
            rate,
            burst,
            heartbeat,
            wait,
        }) => ExitCode::from(client::run(client::Options {
            addr,
            name,
            room,
            password: std::env::var(&password_env).ok().filter(|p| !p.is_empty()),
            register,
            rate,
            burst,
            heartbeat,
            wait,
        })),
        Some(Sub::Echo {
            port,
            host,
            port_file,
            logging,
        }) => {
            let addr = SocketAddr::new(host, port);
            run_service(&logging, port_file.as_deref(), || EchoServer::bind(addr))
        }
    }
}

/// `selectchat ctl`: one request to a server's control socket, its answer
/// on stdout. Exits 2 for a request that is not a command, 1 when the
/// server cannot be reached or refuses.
fn ctl_command(control: &Path, line: &str) -> ExitCode {
    let command = match ControlCommand::parse(line) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("selectchat ctl: {e}");
            return ExitCode::from(2);
        }
    };
    match control::request(control, &command, CTL_WAIT) {
        Ok(answer) if answer.starts_with("error:") => {
            eprint!("{answer}");
            ExitCode::FAILURE
        }
        Ok(answer) => {
            print!("{answer}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("selectchat ctl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A bound server that can say where it listens and then run to the end.
trait Service: Sized {
    /// Each listener's name (a transport, or `metrics`) and address.
    fn local_addrs(&self) -> std::io::Result<Vec<(&'static str, SocketAddr)>>;
    fn run(self) -> std::io::Result<()>;
}

/// Names each listener by its transport.
fn named(addrs: Vec<(TransportKind, SocketAddr)>) -> Vec<(&'static str, SocketAddr)> {
    addrs
        .into_iter()
        .map(|(kind, addr)| (kind.as_str(), addr))
        .collect()
}

impl Service for Server {
    fn local_addrs(&self) -> std::io::Result<Vec<(&'static str, SocketAddr)>> {
        let mut addrs = named(Server::local_addrs(self)?);
        addrs.extend(self.metrics_addr().map(|addr| ("metrics", addr)));
        Ok(addrs)
    }
    fn run(self) -> std::io::Result<()> {
        Server::run(self)
    }
}

impl Service for EchoServer {
    fn local_addrs(&self) -> std::io::Result<Vec<(&'static str, SocketAddr)>> {
        Ok(named(EchoServer::local_addrs(self)?))
    }
    fn run(self) -> std::io::Result<()> {
        EchoServer::run(self)
    }
}

/// Writes one `TRANSPORT ADDRESS` line per listener to `path`, whole or not
/// at all (a reader polling for the file never sees half of it).
fn write_port_file(path: &Path, addrs: &[(&str, SocketAddr)]) -> std::io::Result<()> {
    let text: String = addrs
        .iter()
        .map(|(name, addr)| format!("{name} {addr}\n"))
        .collect();
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, path)
}

/// Starts logging, binds, says where it listens (in the log, and in the
/// port file when asked) and runs.
fn run_service<S: Service>(
    logging: &LogArgs,
    port_file: Option<&Path>,
    bind: impl FnOnce() -> std::io::Result<S>,
) -> ExitCode {
    if let Err(code) = logging.init() {
        return code;
    }
    let service = match bind() {
        Ok(service) => service,
        Err(e) => {
            error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addrs = match service.local_addrs() {
        Ok(addrs) => addrs,
        Err(e) => {
            error!("listening, but the address is unknown: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (name, addr) in &addrs {
        info!("listening on {addr} ({name})");
    }
    if let Some(path) = port_file {
        if let Err(e) = write_port_file(path, &addrs) {
            error!("cannot write the port file {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    match service.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}

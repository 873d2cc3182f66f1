//! `cargo bench`: the same load against selectchat, a thread-per-connection
//! baseline, and Redis pub/sub and NATS when `redis-server` and
//! `nats-server` are on PATH, alternating A B C D A B C D, then a table of
//! medians with min–max and selectchat's ratio to each per row.
//!
//! `cargo bench -- fanout` runs only rows whose name contains `fanout`
//! (`cargo bench -- w256 rooms`: rows with either);
//! `BENCH_REPS=5` changes the repetitions (default 3). Every server runs as
//! a child process on a free 127.0.0.1 port and is killed by pid; the load
//! generator runs in this process.

mod baseline;
mod relay;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use selectchat::bench::stats::Report;
use selectchat::bench::target::Target;
use selectchat::bench::{self, Options, Scenario};
use selectchat::config::open_file_limit;
use selectchat::transport::TransportKind;

/// Argument that turns this binary into the baseline server.
const BASELINE_ARG: &str = "--baseline-server";
/// Argument that turns this binary into the bare relay (the ceiling).
const RELAY_ARG: &str = "--relay-server";
/// Descriptors kept free besides the connections themselves.
const FD_HEADROOM: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Selectchat,
    Baseline,
    Redis,
    Nats,
    Relay,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Selectchat => "selectchat",
            Kind::Baseline => "baseline",
            Kind::Redis => "redis",
            Kind::Nats => "nats",
            Kind::Relay => "bare relay",
        }
    }

    fn target(self) -> Target {
        match self {
            Kind::Selectchat | Kind::Baseline | Kind::Relay => Target::Selectchat,
            Kind::Redis => Target::Redis,
            Kind::Nats => Target::Nats,
        }
    }

    /// The servers this machine can run, and a note for each it cannot.
    fn available() -> (Vec<Kind>, Vec<String>) {
        let mut kinds = vec![Kind::Selectchat, Kind::Baseline, Kind::Relay];
        let mut notes = Vec::new();
        for (kind, binary) in [(Kind::Redis, "redis-server"), (Kind::Nats, "nats-server")] {
            let found = Command::new(binary)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if found {
                kinds.push(kind);
            } else {
                notes.push(format!(
                    "{binary} is not on PATH: no {} rows (apt-get install {binary})",
                    kind.name()
                ));
            }
        }
        (kinds, notes)
    }

    /// Whether this server can run `row`: the others speak neither rooms
    /// nor TLS nor WebSocket, and Redis and NATS only fanout and idle here.
    fn runs(self, row: &Row) -> bool {
        match self {
            Kind::Selectchat => true,
            Kind::Baseline => !row.selectchat_only,
            // The ceiling of a fan-out, lobby or rooms: what the machine allows.
            Kind::Relay => {
                row.transport == TransportKind::Plain
                    && !row.disk
                    && matches!(
                        row.scenario,
                        Scenario::Fanout { .. } | Scenario::Rooms { .. }
                    )
            }
            Kind::Redis | Kind::Nats => {
                !row.selectchat_only
                    && matches!(
                        row.scenario,
                        Scenario::Fanout { .. } | Scenario::Idle { .. }
                    )
            }
        }
    }
}

/// One row of the table: a scenario at one size.
struct Row {
    label: String,
    scenario: Scenario,
    idle: bool,
    /// Needs what only selectchat speaks (rooms, TLS, WebSocket).
    selectchat_only: bool,
    /// How the load generator connects.
    transport: TransportKind,
    /// Messages per second at a fixed pace (latency below saturation).
    rate: Option<u32>,
    /// History in a database file (`SENT` waits for its fsync) instead of
    /// `--db :memory:`.
    disk: bool,
}

fn rows(max_clients: usize) -> (Vec<Row>, Vec<String>) {
    let mut notes = Vec::new();
    let mut scaled = |n: usize| {
        if n > max_clients {
            notes.push(format!(
                "{n} connections scaled down to {max_clients} (open-file limit)"
            ));
            max_clients
        } else {
            n
        }
    };
    let mut rows = Vec::new();
    // Window 32, then 256: the deeper window lets every server fill its
    // writes, which is how Redis and NATS are usually benchmarked.
    for window in [32, 256] {
        for (receivers, messages) in [(100, 5000), (1000, 1000), (5000, 200)] {
            let receivers = scaled(receivers);
            let messages = if window > 32 { messages * 4 } else { messages };
            let suffix = if window > 32 { " w256" } else { "" };
            rows.push(Row {
                label: format!("fanout {receivers}{suffix}"),
                scenario: Scenario::Fanout {
                    receivers,
                    messages,
                    window,
                },
                idle: false,
                selectchat_only: false,
                transport: TransportKind::Plain,
                rate: None,
                disk: false,
            });
        }
    }
    // Latency below saturation: 1000 receivers at 500 messages/s (500k
    // deliveries/s), about half of what Redis and NATS peak at here.
    let receivers = scaled(1000);
    rows.push(Row {
        label: format!("fanout {receivers} at 500/s"),
        scenario: Scenario::Fanout {
            receivers,
            messages: 2000,
            window: 256,
        },
        idle: false,
        disk: false,
        selectchat_only: false,
        transport: TransportKind::Plain,
        rate: Some(500),
    });
    // The fanout 1000 w256 row again over TLS, WebSocket and WebSocket
    // over TLS: what the encryption and the framing cost (see `ceilings`).
    for transport in [
        TransportKind::Tls,
        TransportKind::Web,
        TransportKind::WebTls,
    ] {
        let receivers = scaled(1000);
        rows.push(Row {
            label: format!("fanout {receivers} {} w256", transport.as_str()),
            scenario: Scenario::Fanout {
                receivers,
                messages: 4000,
                window: 256,
            },
            idle: false,
            disk: false,
            selectchat_only: true,
            transport,
            rate: None,
        });
    }
    // The same 100 receivers per message as fanout 100, but 2,000 of them
    // over 100 rooms, 5 rooms each; a window of 320 keeps about as many
    // lines in flight per receiver as fanout's 32 does.
    // Twice: history in memory, then on disk, where every SENT waits for
    // a group commit's fsync.
    for disk in [false, true] {
        rows.push(Row {
            label: format!("rooms 100x100{}", if disk { " disk" } else { "" }),
            scenario: Scenario::Rooms {
                rooms: 100,
                members: 100,
                per_user: 5,
                messages: 5000,
                window: 320,
                history_reader: false,
            },
            idle: false,
            selectchat_only: true,
            transport: TransportKind::Plain,
            rate: None,
            disk,
        });
    }
    for clients in [1000, 5000, 10_000] {
        let clients = scaled(clients);
        rows.push(Row {
            label: format!("idle {clients}"),
            scenario: Scenario::Idle {
                clients,
                duration: Duration::from_secs(12),
            },
            idle: true,
            selectchat_only: false,
            transport: TransportKind::Plain,
            rate: None,
            disk: false,
        });
    }
    (rows, notes)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A server child process, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(kind: Kind, row: &Row, db: &str) -> Server {
        let port = free_port();
        // The load goes to the plain port, or to the TLS or web one.
        let load_port = match row.transport {
            TransportKind::Plain => port,
            _ => free_port(),
        };
        let mut cmd = match kind {
            Kind::Selectchat => {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_selectchat"));
                cmd.args([
                    "--host",
                    "127.0.0.1",
                    "--log-level",
                    "warn",
                    "--max-clients",
                    "20000",
                    "--max-per-ip",
                    "0",
                    "--rate",
                    "0",
                    "--max-rooms",
                    "1000",
                    "--db",
                    db,
                ]);
                match row.transport {
                    TransportKind::Plain => {}
                    TransportKind::Tls => {
                        cmd.args(["--tls-self-signed", "--tls-port", &load_port.to_string()]);
                    }
                    TransportKind::Web => {
                        cmd.args(["--web-port", &load_port.to_string()]);
                    }
                    TransportKind::WebTls => {
                        cmd.args(["--tls-self-signed", "--web-port", &load_port.to_string()]);
                    }
                }
                if row.idle {
                    // Twice the default heartbeat rate, so that within the
                    // 12 s window every connection is pinged (and answers)
                    // once and has its idle buffers released: the CPU figure
                    // includes keeping connections alive, conservatively.
                    cmd.args(["--ping-interval", "10"]);
                }
                cmd.arg(port.to_string());
                cmd
            }
            Kind::Baseline | Kind::Relay => {
                let arg = if kind == Kind::Relay {
                    RELAY_ARG
                } else {
                    BASELINE_ARG
                };
                let mut cmd = Command::new(std::env::current_exe().expect("own path"));
                cmd.args([arg, &port.to_string()]);
                cmd
            }
            Kind::Redis => {
                let mut cmd = Command::new("redis-server");
                cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                    .args(["--save", "", "--appendonly", "no", "--maxclients", "19000"]);
                cmd
            }
            Kind::Nats => {
                let mut cmd = Command::new("nats-server");
                cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
                cmd
            }
        };
        if matches!(kind, Kind::Redis | Kind::Nats) {
            // Their start-up banners are not ours to print.
            cmd.stderr(Stdio::null());
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start server");
        let addr = SocketAddr::from(([127, 0, 0, 1], load_port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "{} did not start", kind.name());
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_once(kind: Kind, row: &Row) -> Report {
    let db = std::env::temp_dir().join(format!("selectchat-bench-{}.db", std::process::id()));
    let remove_db = || {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = db.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    };
    remove_db();
    let db_arg = if row.disk {
        db.to_str().expect("temp path is UTF-8")
    } else {
        ":memory:"
    };
    let server = Server::start(kind, row, db_arg);
    let opts = Options {
        addr: server.addr,
        scenario: row.scenario,
        size: 64,
        server_pids: vec![server.child.id()],
        nodes: Vec::new(),
        timeout: Duration::from_secs(120),
        progress: true,
        name_prefix: "b".to_string(),
        transport: row.transport,
        target: kind.target(),
        rate: row.rate,
    };
    let report = bench::run(opts).unwrap_or_else(|e| Report {
        error: Some(e.to_string()),
        ..Report::default()
    });
    drop(server);
    remove_db();
    report
}

/// Median, min and max of some figures.
fn spread(mut values: Vec<f64>) -> Option<(f64, f64, f64)> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    Some((
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    ))
}

fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.1}")
    }
}

fn cell(s: Option<(f64, f64, f64)>, fmt: impl Fn(f64) -> String) -> String {
    match s {
        Some((mid, lo, hi)) => format!("{} ({}–{})", fmt(mid), fmt(lo), fmt(hi)),
        None => "failed".to_string(),
    }
}

fn ratio(a: Option<(f64, f64, f64)>, b: Option<(f64, f64, f64)>) -> String {
    match (a, b) {
        (Some((a, ..)), Some((b, ..))) if b > 0.0 => format!("{:.2}x", a / b),
        (Some(_), None) => "the other failed".to_string(),
        _ => "-".to_string(),
    }
}

/// Server CPU per delivery, when it was measured.
fn cpu_cell(ns: Option<(f64, f64, f64)>) -> String {
    ns.map_or(String::new(), |_| cell(ns, |v| format!("{v:.0} ns")))
}

/// The figures of one server on one row, over its good runs.
struct Figures {
    rate: Option<(f64, f64, f64)>,
    p50_ms: Option<(f64, f64, f64)>,
    p99_ms: Option<(f64, f64, f64)>,
    p999_ms: Option<(f64, f64, f64)>,
    cpu_ns: Option<(f64, f64, f64)>,
    rss: Option<(f64, f64, f64)>,
    cpu: Option<(f64, f64, f64)>,
    faults: u64,
    failures: Vec<String>,
}

fn figures(reports: &[Report]) -> Figures {
    let good: Vec<&Report> = reports.iter().filter(|r| r.error.is_none()).collect();
    Figures {
        rate: spread(good.iter().map(|r| r.rate()).collect()),
        p50_ms: spread(good.iter().map(|r| r.latency_us.p50 / 1000.0).collect()),
        p99_ms: spread(good.iter().map(|r| r.latency_us.p99 / 1000.0).collect()),
        p999_ms: spread(good.iter().map(|r| r.latency_us.p999 / 1000.0).collect()),
        cpu_ns: spread(good.iter().filter_map(|r| r.cpu_ns_per_delivery).collect()),
        rss: spread(good.iter().filter_map(|r| r.rss_per_conn).collect()),
        cpu: spread(good.iter().filter_map(|r| r.cpu_percent).collect()),
        faults: reports
            .iter()
            .map(|r| r.lost + r.duplicated + r.reordered)
            .sum(),
        failures: reports.iter().filter_map(|r| r.error.clone()).collect(),
    }
}

/// Prints selectchat's CPU per delivery on each transport and pattern over
/// its ceiling, with the most it should be: the bare relay on the same
/// rows (lobby and rooms), the plain lobby for TLS and WebSocket, and TLS
/// for WebSocket over TLS. Rows run one after another, not alternated, so
/// a ratio across rows carries the machine's drift between them.
fn ceilings(kinds: &[Kind], table: &[(&Row, Vec<Figures>)]) {
    let cpu = |label: &str, kind: Kind| {
        let (row, figures) = table.iter().find(|(row, _)| row.label == label)?;
        let at = kinds.iter().position(|&k| k == kind)?;
        kind.runs(row).then(|| figures[at].cpu_ns).flatten()
    };
    // 1,000 receivers, or fewer where the open-file limit scaled them.
    let lobby = table
        .iter()
        .find_map(|(row, _)| match row.scenario {
            Scenario::Fanout { receivers, .. } if row.transport != TransportKind::Plain => {
                Some(receivers)
            }
            _ => None,
        })
        .unwrap_or(1000);
    let plain = format!("fanout {lobby} w256");
    let over = |t: TransportKind| format!("fanout {lobby} {} w256", t.as_str());
    let pairs = [
        (plain.clone(), Kind::Relay, plain.clone(), 1.5),
        (
            over(TransportKind::Tls),
            Kind::Selectchat,
            plain.clone(),
            2.0,
        ),
        (
            over(TransportKind::Web),
            Kind::Selectchat,
            plain.clone(),
            1.3,
        ),
        (
            over(TransportKind::WebTls),
            Kind::Selectchat,
            over(TransportKind::Tls),
            1.3,
        ),
        (
            "rooms 100x100".into(),
            Kind::Relay,
            "rooms 100x100".into(),
            1.5,
        ),
    ];
    println!();
    println!("selectchat's server CPU per delivery over its ceiling (medians)");
    println!();
    println!("| row | ns | ceiling | ns | ratio | at most |");
    println!("|---|---|---|---|---|---|");
    for (row, kind, base, most) in pairs {
        let (Some((ours, ..)), Some((theirs, ..))) =
            (cpu(&row, Kind::Selectchat), cpu(&base, kind))
        else {
            continue;
        };
        let ceiling = if kind == Kind::Relay {
            format!("bare relay, {base}")
        } else {
            format!("selectchat, {base}")
        };
        println!(
            "| {row} | {ours:.0} | {ceiling} | {theirs:.0} | {:.2}x | {most:.1}x |",
            ours / theirs
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let serve_as = args.get(1).map(String::as_str);
    if serve_as == Some(BASELINE_ARG) || serve_as == Some(RELAY_ARG) {
        let port = args.get(2).expect("port").as_str();
        let listener = TcpListener::bind(format!("127.0.0.1:{port}")).expect("bind");
        if serve_as == Some(RELAY_ARG) {
            relay::serve(listener);
        } else {
            baseline::serve(listener);
        }
        return;
    }
    let filters: Vec<&String> = args
        .iter()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let reps: usize = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let fd_limit = open_file_limit().map_or(usize::MAX, |n| n as usize);
    let (rows, notes) = rows(fd_limit.saturating_sub(FD_HEADROOM));
    let rows: Vec<Row> = rows
        .into_iter()
        .filter(|r| filters.is_empty() || filters.iter().any(|f| r.label.contains(f.as_str())))
        .collect();

    let (kinds, missing) = Kind::available();
    let started = Instant::now();
    let mut table = Vec::new();
    for row in &rows {
        let mut reports: Vec<Vec<Report>> = kinds.iter().map(|_| Vec::new()).collect();
        for rep in 1..=reps {
            for (i, &kind) in kinds.iter().enumerate() {
                if !kind.runs(row) {
                    continue;
                }
                let report = run_once(kind, row);
                eprintln!(
                    "{:<16} {:<10} run {rep}/{reps}: {}/s deliveries, p99 {:.1} ms{}, lost {}, rss/conn {}, cpu {}{}",
                    row.label,
                    kind.name(),
                    human(report.rate()),
                    report.latency_us.p99 / 1000.0,
                    if report.commits > 0 {
                        let c = report.commit_us;
                        format!(", SAY to SENT p50 {:.1} ms p99 {:.1} ms", c.p50 / 1000.0, c.p99 / 1000.0)
                    } else {
                        String::new()
                    },
                    report.lost + report.duplicated + report.reordered,
                    report.rss_per_conn.map_or("-".into(), |b| format!("{b:.0} B")),
                    report.cpu_percent.map_or("-".into(), |c| format!("{c:.2}%")),
                    report.error.as_ref().map_or(String::new(), |e| format!(", FAILED: {e}")),
                );
                reports[i].push(report);
            }
        }
        let figures: Vec<Figures> = reports.iter().map(|r| figures(r)).collect();
        table.push((row, figures));
    }

    let others: Vec<&str> = kinds[1..].iter().map(|k| k.name()).collect();
    println!();
    println!(
        "selectchat vs {}: median (min–max) of {reps} runs each, alternated",
        others.join(", ")
    );
    println!();
    println!("| row | server | deliveries/s | p99 latency ms | server memory per conn (bytes) | server CPU: % of a core (idle), ns per delivery (others) | lost+dup+reordered |");
    println!("|---|---|---|---|---|---|---|");
    for (row, figures) in &table {
        for (&kind, f) in kinds.iter().zip(figures) {
            if !kind.runs(row) {
                continue;
            }
            let failed = if f.failures.is_empty() {
                String::new()
            } else {
                format!(" ({} failed: {})", f.failures.len(), f.failures[0])
            };
            let name = kind.name();
            if row.idle {
                println!(
                    "| {} | {name} | | | {} | {} | {}{failed} |",
                    row.label,
                    cell(f.rss, |v| format!("{v:.0}")),
                    cell(f.cpu, |v| format!("{v:.2}")),
                    f.faults
                );
            } else if row.rate.is_some() {
                // Paced: the rate is the pace; the latency spread is the point.
                let mid =
                    |s: Option<(f64, f64, f64)>| s.map_or("-".into(), |(m, ..)| format!("{m:.2}"));
                println!(
                    "| {} | {name} | {} | p50 {}, p99 {}, p99.9 {} | | {} | {}{failed} |",
                    row.label,
                    cell(f.rate, human),
                    mid(f.p50_ms),
                    cell(f.p99_ms, |v| format!("{v:.2}")),
                    mid(f.p999_ms),
                    cpu_cell(f.cpu_ns),
                    f.faults
                );
            } else {
                println!(
                    "| {} | {name} | {} | {} | | {} | {}{failed} |",
                    row.label,
                    cell(f.rate, human),
                    cell(f.p99_ms, |v| format!("{v:.1}")),
                    cpu_cell(f.cpu_ns),
                    f.faults
                );
            }
        }
        let ours = &figures[0];
        for (&kind, theirs) in kinds.iter().zip(figures).skip(1) {
            if !kind.runs(row) {
                continue;
            }
            let label = format!("{} | selectchat / {}", row.label, kind.name());
            if row.idle {
                println!("| {label} | | | {} | | |", ratio(ours.rss, theirs.rss));
            } else {
                println!(
                    "| {label} | {} | {} | | | |",
                    ratio(ours.rate, theirs.rate),
                    ratio(ours.p99_ms, theirs.p99_ms)
                );
            }
        }
    }
    ceilings(&kinds, &table);
    println!();
    for note in notes.iter().chain(&missing) {
        println!("note: {note}");
    }
    println!(
        "took {:.0} s; ratio = selectchat's figure / the other server's",
        started.elapsed().as_secs_f64()
    );
}

//! What reading the metrics costs the loop: a server holding 19,900 idle
//! logged-in connections (fewer under a lower open-file limit), scraped
//! not at all, once a second, and back to back. Prints the server CPU per
//! scrape, the scrape's size and time, and the loop turn p99 (from the
//! server's own `selectchat_loop_turn_seconds`) with and without scrapes.
//!
//! `cargo bench --bench scrape` (about a minute; `cargo bench` runs it too,
//! and `cargo bench -- scrape` alone).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_selectchat");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Kills the child when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The process's CPU time so far (user + system), from /proc.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// One GET of /metrics: the body and how long it took.
fn scrape(addr: SocketAddr) -> (String, Duration) {
    let start = Instant::now();
    let mut sock = TcpStream::connect(addr).expect("metrics port");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sock.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    sock.read_to_string(&mut response).unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_string();
    (body, start.elapsed())
}

fn samples(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// The loop turn histogram's cumulative buckets, by upper bound.
fn turn_buckets(s: &HashMap<String, f64>) -> Vec<(f64, f64)> {
    let mut buckets: Vec<(f64, f64)> = s
        .iter()
        .filter_map(|(k, &v)| {
            let le = k
                .strip_prefix("selectchat_loop_turn_seconds_bucket{le=\"")?
                .strip_suffix("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, v))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// The p99 of the turns between two scrapes: the upper bound of the bucket
/// it falls in, and how many turns there were.
fn turn_p99(before: &HashMap<String, f64>, after: &HashMap<String, f64>) -> (f64, f64) {
    let (a, b) = (turn_buckets(before), turn_buckets(after));
    let total = b.last().unwrap().1 - a.last().unwrap().1;
    let bound = a
        .iter()
        .zip(&b)
        .find(|((_, x), (_, y))| y - x >= total * 0.99)
        .map(|(_, (le, _))| *le)
        .unwrap();
    (bound, total)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // `cargo bench -- fanout` passes its filter to every bench: run only
    // when there is none or it names this one.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = filters.is_empty() || filters.iter().any(|f| "scrape".contains(f.as_str()));
    if !wanted || std::env::args().any(|a| a == "--list") {
        return;
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    let clients = (limit.rlim_cur as usize).saturating_sub(100).min(19_900);
    let (port, metrics_port) = (free_port(), free_port());
    let server = Proc(
        Command::new(BIN)
            .args([
                "--host",
                "127.0.0.1",
                "--db",
                ":memory:",
                "--log-level",
                "warn",
            ])
            .args(["--max-clients", "20000", "--max-per-ip", "0", "--rate", "0"])
            .args([
                "--metrics-port",
                &metrics_port.to_string(),
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("start selectchat"),
    );
    let pid = server.0.id();
    let metrics = SocketAddr::from(([127, 0, 0, 1], metrics_port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(metrics).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _load = Proc(
        Command::new(BIN)
            .args(["bench", &format!("127.0.0.1:{port}"), "--scenario", "idle"])
            .args([
                "-n",
                &clients.to_string(),
                "--duration",
                "120",
                "--timeout",
                "150",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("start the load"),
    );
    let user_gauge = "selectchat_connections{transport=\"plain\",state=\"user\"}";
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (body, _) = scrape(metrics);
        if samples(&body).get(user_gauge).copied().unwrap_or(0.0) >= clients as f64 {
            break;
        }
        assert!(Instant::now() < deadline, "the load never logged in");
        std::thread::sleep(Duration::from_millis(500));
    }
    // Let the login storm's after-effects settle.
    std::thread::sleep(Duration::from_secs(3));

    let window = Duration::from_secs(10);
    let (body, _) = scrape(metrics);
    let (quiet_start, quiet_cpu) = (samples(&body), cpu(pid));
    std::thread::sleep(window);
    let (body, _) = scrape(metrics);
    let (quiet_end, quiet_used) = (samples(&body), cpu(pid) - quiet_cpu);

    let busy_cpu = cpu(pid);
    let mut took = Vec::new();
    let mut size = 0;
    for _ in 0..window.as_secs() {
        std::thread::sleep(Duration::from_secs(1));
        let (body, t) = scrape(metrics);
        size = body.len();
        took.push(t);
    }
    let busy_used = cpu(pid) - busy_cpu;
    let busy_end = samples(&scrape(metrics).0);

    let burst = 200;
    let burst_cpu = cpu(pid);
    let burst_start = Instant::now();
    for _ in 0..burst {
        scrape(metrics);
    }
    let burst_wall = burst_start.elapsed();
    let burst_used = cpu(pid) - burst_cpu;
    let idle_rate = quiet_used.as_secs_f64() / window.as_secs_f64();
    let per_scrape =
        (burst_used.as_secs_f64() - idle_rate * burst_wall.as_secs_f64()) / burst as f64;

    took.sort();
    let (quiet_p99, quiet_turns) = turn_p99(&quiet_start, &quiet_end);
    let (busy_p99, busy_turns) = turn_p99(&quiet_end, &busy_end);
    println!("scrape at {clients} idle connections:");
    println!("| measure | value |");
    println!("|---|---|");
    println!("| exposition size | {size} bytes |");
    println!(
        "| server CPU per scrape ({burst} back to back, idle CPU subtracted) | {:.2} ms |",
        per_scrape * 1000.0
    );
    println!(
        "| scrape time seen by the client, median of {} | {:.2} ms |",
        took.len(),
        ms(took[took.len() / 2])
    );
    println!(
        "| server CPU over {}s: no scrapes / one a second | {:.0} ms / {:.0} ms |",
        window.as_secs(),
        ms(quiet_used),
        ms(busy_used)
    );
    println!(
        "| loop turn p99 (bucket bound): no scrapes / one a second | {:.3} ms ({quiet_turns} turns) / {:.3} ms ({busy_turns} turns) |",
        quiet_p99 * 1000.0,
        busy_p99 * 1000.0
    );
}

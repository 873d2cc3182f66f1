//! `cargo bench -- logins`: password logins against a release server.
//!
//! The accounts are written into a database before the server starts, all
//! with one Argon2id hash at the server's cost (checking it costs what any
//! account's check costs), so the bench does not spend a minute
//! registering. Then, against that server:
//! - `LOGIN <name> <password>` to `OK`, paced at 50 and at 100 logins a
//!   second, each on a connection of its own: p50, p99, and the server's
//!   CPU per login (/proc/PID/stat);
//! - a storm of `BENCH_LOGINS` (default 2,000) logins sent at once: how long
//!   until every one is `OK`, p50, p99, and any refused;
//! - another user's `PING` to `PONG` every 10 ms, idle and during the storm;
//!   the storm runs again with `--presence-limit 1`, so no arrival is
//!   announced: what the hashing alone costs everyone else;
//! - memory per account: the server's RSS with 100,000 accounts stored
//!   against an empty database, three starts each.
//!
//! Each server is a child process on a free 127.0.0.1 port, killed by pid.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use selectchat::auth::{Hashing, Job, Secret, Verdict};
use selectchat::chat::history::Request;
use selectchat::store::db::{Db, Retention};

const BIN: &str = env!("CARGO_BIN_EXE_selectchat");
/// Every account's password.
const PASSWORD: &str = "correct-horse-battery";
/// Longest any phase may take before the bench gives up.
const PHASE_LIMIT: Duration = Duration::from_secs(180);

/// A child process, killed by pid when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A directory for the bench's databases, removed when dropped.
struct Dir(std::path::PathBuf);

impl Dir {
    fn new() -> Dir {
        let dir = std::env::temp_dir().join(format!("selectchat-logins-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Dir(dir)
    }

    fn file(&self, name: &str) -> String {
        self.0.join(name).to_str().expect("utf-8 path").into()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The server's CPU time so far (user and system), in seconds.
fn cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// `q` (0 to 1) of `v`, in milliseconds.
fn pct(v: &mut [Duration], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort();
    let i = ((q * v.len() as f64) as usize).min(v.len() - 1);
    v[i].as_secs_f64() * 1000.0
}

/// Writes a database holding `count` accounts `u0`, `u1`... whose password
/// is [`PASSWORD`], all with the one `hash`.
fn accounts_db(path: &str, count: usize, hash: &Secret) {
    let retention = Retention {
        per_room: 1000,
        max_age: None,
        max_rooms: 1000,
        sessions: Duration::from_secs(120),
        max_sessions: 1000,
    };
    let (mut db, _) = Db::open(path, retention).expect("open the database");
    let requests: Vec<Request> = (0..count)
        .map(|i| Request::SaveAccount {
            ticket: 0,
            name: format!("u{i}").into(),
            hash: hash.clone(),
        })
        .collect();
    let refs: Vec<&Request> = requests.iter().collect();
    db.commit(&[], &refs).expect("write the accounts");
}

/// A release server on `db` with the flags `extra`, and its address once
/// it listens.
fn start(db: &str, extra: &[&str]) -> (Proc, SocketAddr) {
    let port = free_port();
    let child = Command::new(BIN)
        .args(["--host", "127.0.0.1", "--db", db, "--log-level", "warn"])
        .args(["--max-clients", "19000", "--max-per-ip", "0", "--rate", "0"])
        .args(extra)
        .arg(port.to_string())
        .stdin(Stdio::null())
        .spawn()
        .expect("start selectchat");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        thread::sleep(Duration::from_millis(20));
    }
    (Proc(child), addr)
}

/// Logins on connections of their own, driven by one poll: each connects,
/// sends its `LOGIN` when due, and counts from then to its `OK`.
struct Logins {
    poll: Poll,
    conns: Vec<Conn>,
}

struct Conn {
    stream: MioStream,
    buf: Vec<u8>,
    sent: Option<Instant>,
    took: Option<Duration>,
    refused: Option<String>,
}

impl Logins {
    /// `count` connections to `addr`, not yet logged in.
    fn connect(addr: SocketAddr, count: usize) -> Logins {
        let poll = Poll::new().expect("poll");
        let conns = (0..count)
            .map(|i| {
                let std = TcpStream::connect(addr).expect("connect");
                std.set_nonblocking(true).expect("nonblocking");
                let mut stream = MioStream::from_std(std);
                poll.registry()
                    .register(&mut stream, Token(i), Interest::READABLE)
                    .expect("register");
                Conn {
                    stream,
                    buf: Vec::new(),
                    sent: None,
                    took: None,
                    refused: None,
                }
            })
            .collect();
        Logins { poll, conns }
    }

    fn send(&mut self, i: usize, first: usize) {
        let line = format!("LOGIN u{} {PASSWORD}\n", first + i);
        let conn = &mut self.conns[i];
        conn.stream.write_all(line.as_bytes()).expect("send LOGIN");
        conn.sent = Some(Instant::now());
    }

    /// Sends connection `i`'s `LOGIN` at `start + i * every`, and reads
    /// answers until every one is in or [`PHASE_LIMIT`] passes.
    fn run(&mut self, first: usize, start: Instant, every: Duration) {
        let mut events = Events::with_capacity(1024);
        let mut next = 0;
        let mut answered = 0;
        let give_up = start + PHASE_LIMIT;
        while answered < self.conns.len() && Instant::now() < give_up {
            while next < self.conns.len() && Instant::now() >= start + every * next as u32 {
                self.send(next, first);
                next += 1;
            }
            let wait = if next < self.conns.len() {
                (start + every * next as u32).saturating_duration_since(Instant::now())
            } else {
                Duration::from_millis(100)
            };
            self.poll.poll(&mut events, Some(wait)).expect("poll");
            for event in &events {
                answered += self.read(event.token().0);
            }
        }
    }

    /// Reads what connection `i` has; 1 if its answer came now.
    fn read(&mut self, i: usize) -> usize {
        let conn = &mut self.conns[i];
        let mut chunk = [0u8; 512];
        loop {
            match conn.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => conn.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        let already = conn.took.is_some() || conn.refused.is_some();
        while let Some(end) = conn.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = conn.buf.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line).trim_end().to_string();
            if conn.took.is_some() || conn.refused.is_some() || line == "PING" {
                continue;
            }
            match (line.as_str(), conn.sent) {
                ("OK", Some(sent)) => conn.took = Some(sent.elapsed()),
                _ => conn.refused = Some(line),
            }
        }
        usize::from(!already && (conn.took.is_some() || conn.refused.is_some()))
    }

    fn times(&self) -> Vec<Duration> {
        self.conns.iter().filter_map(|c| c.took).collect()
    }

    fn refused(&self) -> Vec<&str> {
        self.conns
            .iter()
            .filter_map(|c| c.refused.as_deref())
            .collect()
    }
}

/// Another user, pinging every 10 ms until told to stop; its round trips.
fn pinger(addr: SocketAddr, stop: Arc<AtomicBool>) -> thread::JoinHandle<Vec<Duration>> {
    thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut line = String::new();
        stream.write_all(b"LOGIN watcher\n").expect("login");
        reader.read_line(&mut line).expect("OK");
        let mut rtts = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            stream.write_all(b"PING x\n").expect("ping");
            loop {
                line.clear();
                if reader.read_line(&mut line).expect("pong") == 0 || line == "PONG x\n" {
                    break;
                }
            }
            rtts.push(t.elapsed());
            thread::sleep(Duration::from_millis(10));
        }
        rtts
    })
}

/// Round trips of another user for `time`, with nothing else going on.
fn idle_pings(addr: SocketAddr, time: Duration) -> Vec<Duration> {
    let stop = Arc::new(AtomicBool::new(false));
    let pings = pinger(addr, stop.clone());
    thread::sleep(time);
    stop.store(true, Ordering::Relaxed);
    pings.join().expect("pinger")
}

fn paced(addr: SocketAddr, pid: u32, first: usize, rate: u32, count: usize) {
    let mut logins = Logins::connect(addr, count);
    let before = cpu(pid);
    logins.run(first, Instant::now(), Duration::from_secs(1) / rate);
    let used = cpu(pid) - before;
    let mut times = logins.times();
    println!(
        "| `LOGIN` to `OK` at {rate} a second ({count} logins) | p50 {:.1} ms, p99 {:.1} ms; server CPU {:.1} ms a login{} |",
        pct(&mut times, 0.5),
        pct(&mut times, 0.99),
        used * 1000.0 / count as f64,
        refused_note(&logins),
    );
}

fn refused_note(logins: &Logins) -> String {
    let refused = logins.refused();
    let missing = logins.conns.len() - logins.times().len() - refused.len();
    match (refused.first(), missing) {
        (None, 0) => String::new(),
        (first, _) => format!(
            "; **{} refused** (first: {}), {missing} unanswered",
            refused.len(),
            first.unwrap_or(&"-")
        ),
    }
}

fn storm(addr: SocketAddr, pid: u32, (first, count): (usize, usize), what: &str) {
    let idle = idle_pings(addr, Duration::from_secs(3));
    let mut logins = Logins::connect(addr, count);
    let stop = Arc::new(AtomicBool::new(false));
    let pings = pinger(addr, stop.clone());
    thread::sleep(Duration::from_millis(200));
    let before = cpu(pid);
    let start = Instant::now();
    logins.run(first, start, Duration::ZERO);
    let all_in = start.elapsed();
    let used = cpu(pid) - before;
    stop.store(true, Ordering::Relaxed);
    let (mut busy, mut idle) = (pings.join().expect("pinger"), idle);
    let mut times = logins.times();
    println!(
        "| a storm of {count} logins at once{what} | {} `OK` in {:.1} s; p50 {:.1} s, p99 {:.1} s; server CPU {:.1} ms a login{} |",
        times.len(),
        all_in.as_secs_f64(),
        pct(&mut times, 0.5) / 1000.0,
        pct(&mut times, 0.99) / 1000.0,
        used * 1000.0 / count as f64,
        refused_note(&logins),
    );
    println!(
        "| another user's `PING` to `PONG`, idle / during the storm{what} | p50 {:.2} / {:.2} ms; p99 {:.2} / {:.2} ms ({} pings in the storm) |",
        pct(&mut idle, 0.5),
        pct(&mut busy, 0.5),
        pct(&mut idle, 0.99),
        pct(&mut busy, 0.99),
        busy.len(),
    );
}

fn memory(dir: &Dir, hash: &Secret) {
    let accounts = 100_000;
    let (empty, full) = (dir.file("empty.db"), dir.file("full.db"));
    accounts_db(&empty, 0, hash);
    accounts_db(&full, accounts, hash);
    let mut deltas = Vec::new();
    for _ in 0..3 {
        let rss = |db: &str| {
            let (server, addr) = start(db, &[]);
            // One login, so every start has done the same work.
            let mut c = TcpStream::connect(addr).expect("connect");
            c.write_all(b"LOGIN probe\n").expect("login");
            let mut line = String::new();
            BufReader::new(c).read_line(&mut line).expect("OK");
            rss_kib(server.0.id())
        };
        deltas.push((rss(&full) as f64 - rss(&empty) as f64) * 1024.0 / accounts as f64);
    }
    deltas.sort_by(f64::total_cmp);
    println!(
        "| memory per account, {accounts} accounts stored | {:.0} B (median of 3; {:.0}-{:.0}) |",
        deltas[1], deltas[0], deltas[2]
    );
}

fn main() {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = filters.is_empty() || filters.iter().any(|f| "logins".contains(f.as_str()));
    if !wanted || std::env::args().any(|a| a == "--list") {
        return;
    }
    let storm_size: usize = std::env::var("BENCH_LOGINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let t = Instant::now();
    let hash = match Hashing::server().run(Job::Hash {
        ticket: 0,
        password: Secret::new(PASSWORD),
    }) {
        Verdict::Hashed {
            hash: Some(hash), ..
        } => hash,
        other => panic!("cannot hash: {other:?}"),
    };
    println!(
        "one hash at the server's cost, in this process: {:.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let dir = Dir::new();
    let (paced_50, paced_100) = (100, 200);
    let db = dir.file("logins.db");
    accounts_db(&db, paced_50 + paced_100 + storm_size, &hash);
    let (server, addr) = start(&db, &[]);
    let pid = server.0.id();
    println!();
    println!("| password logins | measured |");
    println!("|---|---|");
    paced(addr, pid, 0, 50, paced_50);
    paced(addr, pid, paced_50, 100, paced_100);
    let storm_users = (paced_50 + paced_100, storm_size);
    storm(addr, pid, storm_users, "");
    drop(server);
    // Each arrival is announced to up to --presence-limit users, which
    // is loop work any login brings: without it, what hashing costs others.
    let (server, addr) = start(&db, &["--presence-limit", "1"]);
    storm(addr, server.0.id(), storm_users, ", arrivals not announced");
    drop(server);
    memory(&dir, &hash);
}

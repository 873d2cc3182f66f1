//! Test harness: runs the real `selectchat` binary on an ephemeral loopback
//! port and talks to it with line clients whose every wait is bounded.
#![allow(dead_code)]

pub mod nats;
pub mod relay;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single expected line may take to arrive.
pub const WAIT: Duration = Duration::from_secs(10);

pub const BIN: &str = env!("CARGO_BIN_EXE_selectchat");

/// A running server process, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
    last_stats: Arc<Mutex<String>>,
    port_file: PortFile,
}

static PORT_FILES: AtomicU64 = AtomicU64::new(0);

/// A fresh path for a server's `--port-file`, removed when dropped.
pub struct PortFile(pub PathBuf);

impl PortFile {
    pub fn new() -> PortFile {
        let n = PORT_FILES.fetch_add(1, Ordering::Relaxed);
        let name = format!("selectchat-test-{}-{n}.ports", std::process::id());
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_file(&path);
        PortFile(path)
    }

    /// Waits (bounded) for the server to write the file, and returns the
    /// address of its listener of `transport`; panics with `why_not()` if
    /// the file never appears.
    pub fn wait(&self, transport: &str, why_not: impl FnOnce() -> String) -> SocketAddr {
        let mut found = None;
        wait_until(WAIT, || {
            let Ok(text) = std::fs::read_to_string(&self.0) else {
                return false;
            };
            found = text.lines().find_map(|line| {
                let (kind, addr) = line.split_once(' ')?;
                (kind == transport).then(|| addr.parse().expect("address in the port file"))
            });
            true
        });
        found.unwrap_or_else(|| panic!("no {transport} listener announced; {}", why_not()))
    }
}

/// One HTTP/1.1 request (`GET`, `HEAD`, ...) on loopback: the status and
/// the body.
pub fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut sock = TcpStream::connect(addr).expect("connect to the HTTP port");
    sock.set_read_timeout(Some(WAIT)).unwrap();
    write!(sock, "{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    sock.read_to_string(&mut response)
        .expect("a whole response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_string())
}

/// A fresh directory for a test's files (a database, a socket), removed
/// with everything in it when dropped.
pub struct TempDir(pub PathBuf);

static TEMP_DIRS: AtomicU64 = AtomicU64::new(0);

impl TempDir {
    pub fn new() -> TempDir {
        let n = TEMP_DIRS.fetch_add(1, Ordering::Relaxed);
        let name = format!("selectchat-test-{}-dir{n}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }

    /// The path of `name` in the directory, as a string for a flag.
    pub fn file(&self, name: &str) -> String {
        self.0
            .join(name)
            .to_str()
            .expect("a UTF-8 path")
            .to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for PortFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Server {
    /// Starts `selectchat --host 127.0.0.1 0 ARGS`.
    pub fn start(args: &[&str]) -> Server {
        Server::start_on("127.0.0.1", args)
    }

    /// Starts `selectchat --host HOST 0 ARGS`; HOST must be a loopback address.
    pub fn start_on(host: &str, args: &[&str]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(["--host", host]);
        Server::spawn(cmd, args)
    }

    /// Starts the server under a lower open-file limit (the shell's `ulimit -n`).
    pub fn start_with_nofile(limit: u32, args: &[&str]) -> Server {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
            .arg(BIN)
            .args(["--host", "127.0.0.1"]);
        Server::spawn(cmd, args)
    }

    fn spawn(mut cmd: Command, args: &[&str]) -> Server {
        let port_file = PortFile::new();
        if !args.contains(&"--db") {
            // Tests that do not test the database keep none on disk.
            cmd.args(["--db", ":memory:"]);
        }
        if !args.contains(&"--max-per-ip") {
            // Every test client comes from 127.0.0.1; the tests of the
            // per-address cap set it themselves.
            cmd.args(["--max-per-ip", "0"]);
        }
        cmd.args(args)
            .arg("--port-file")
            .arg(&port_file.0)
            .arg("0")
            .env_remove("CHAT_PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn selectchat");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(String::new()));
        let last_stats = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        let stats_sink = Arc::clone(&last_stats);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("stats: ") {
                    *stats_sink.lock().unwrap() = line.clone();
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = port_file.wait("plain", || {
            let _ = child.kill();
            format!("server did not start; log:\n{}", log.lock().unwrap())
        });
        Server {
            child,
            addr,
            log,
            last_stats,
            port_file,
        }
    }

    /// The address of the server's listener of `transport` (`tls`, `web`, …).
    pub fn listener(&self, transport: &str) -> SocketAddr {
        self.port_file
            .wait(transport, || format!("log:\n{}", self.log()))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server logged so far: for failure messages and for
    /// panics, never as the oracle of protocol behaviour.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// A raw connection.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// A connection that has logged in as `name` (its `OK` consumed).
    pub fn login(&self, name: &str) -> Client {
        let mut c = self.connect();
        c.send(&format!("LOGIN {name}"));
        c.expect("OK");
        c
    }

    /// Sends a signal to the server process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        wait_exit(&mut self.child)
    }

    /// Resident memory of the server in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `ok` until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut ok: impl FnMut() -> bool) -> Option<()> {
    let deadline = Instant::now() + limit;
    loop {
        if ok() {
            return Some(());
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (bounded) for a child process to exit.
pub fn wait_exit(child: &mut Child) -> ExitStatus {
    let mut status = None;
    wait_until(WAIT, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    status.expect("process did not exit in time")
}

static SYNC: AtomicU64 = AtomicU64::new(0);

/// A line-oriented test client; every read has a deadline.
pub struct Client {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

/// What a bounded read saw.
#[derive(Debug, PartialEq, Eq)]
pub enum Read1 {
    Line(String),
    Eof,
    Timeout,
    Reset,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
        stream.set_nodelay(true).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Client { stream, reader }
    }

    pub fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes());
    }

    /// Sends `count` lines `MSG <i> <payload>` (`payload_len` bytes of
    /// payload) as fast as the socket takes them, in 256 KiB writes.
    pub fn flood(&mut self, count: usize, payload_len: usize) {
        let payload = "p".repeat(payload_len);
        let mut batch = String::new();
        for i in 0..count {
            batch.push_str(&format!("MSG {i} {payload}\n"));
            if batch.len() > 256 * 1024 {
                self.send_raw(batch.as_bytes());
                batch.clear();
            }
        }
        self.send_raw(batch.as_bytes());
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Reads one line (without `\n`) or says why it could not within `limit`.
    pub fn read_within(&mut self, limit: Duration) -> Read1 {
        self.stream.set_read_timeout(Some(limit)).unwrap();
        let mut buf = Vec::new();
        match self.reader.read_until(b'\n', &mut buf) {
            Ok(0) => Read1::Eof,
            Ok(_) if buf.last() == Some(&b'\n') => {
                buf.pop();
                Read1::Line(String::from_utf8(buf).expect("server sent UTF-8"))
            }
            Ok(_) => Read1::Eof,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Read1::Timeout
            }
            Err(_) => Read1::Reset,
        }
    }

    /// The next line; panics if none arrives in time.
    pub fn line(&mut self) -> String {
        match self.read_within(WAIT) {
            Read1::Line(l) => l,
            other => panic!("expected a line, got {other:?}"),
        }
    }

    pub fn expect(&mut self, want: &str) {
        assert_eq!(self.line(), want);
    }

    /// Skips lines until one satisfies `ok`, and returns it.
    pub fn wait_line(&mut self, ok: impl Fn(&str) -> bool) -> String {
        loop {
            let line = self.line();
            if ok(&line) {
                return line;
            }
        }
    }

    /// Skips lines until `want` arrives.
    pub fn wait_for(&mut self, want: &str) {
        self.wait_line(|l| l == want);
    }

    /// Asserts nothing arrives for `quiet`.
    pub fn expect_silence(&mut self, quiet: Duration) {
        match self.read_within(quiet) {
            Read1::Timeout => {}
            other => panic!("expected silence, got {other:?}"),
        }
    }

    /// Asserts the server closed the connection with nothing more to say.
    pub fn expect_closed(&mut self) {
        match self.read_within(WAIT) {
            Read1::Eof | Read1::Reset => {}
            other => panic!("expected close, got {other:?}"),
        }
    }

    /// Round-trips a PING and returns every line that arrived before its PONG.
    pub fn sync(&mut self) -> Vec<String> {
        let token = format!("sync-{}", SYNC.fetch_add(1, Ordering::Relaxed));
        self.send(&format!("PING {token}"));
        let pong = format!("PONG {token}");
        let mut before = Vec::new();
        loop {
            let line = self.line();
            if line == pong {
                return before;
            }
            before.push(line);
        }
    }

    /// Reads every line until the connection closes (bounded by `WAIT` per line).
    pub fn drain_to_close(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            match self.read_within(WAIT) {
                Read1::Line(l) => lines.push(l),
                Read1::Eof | Read1::Reset => return lines,
                Read1::Timeout => panic!("connection stayed open; got {lines:?}"),
            }
        }
    }

    /// Closes with an RST instead of a FIN (SO_LINGER 0).
    pub fn reset(self) {
        use std::os::fd::AsRawFd;
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt on a socket we own, with a correctly sized struct.
        let rc = unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &linger as *const libc::linger as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
    }

    /// Reads and throws away whatever is buffered right now.
    pub fn discard_pending(&mut self) {
        self.stream.set_nonblocking(true).unwrap();
        let mut sink = [0u8; 65536];
        while let Ok(n) = self.reader.read(&mut sink) {
            if n == 0 {
                break;
            }
        }
        self.stream.set_nonblocking(false).unwrap();
    }
}

/// A `selectchat connect` process driven through pipes, killed when dropped.
pub struct ChatClient {
    pub child: Child,
    stdin: Option<std::process::ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl ChatClient {
    /// Starts `selectchat connect ADDR ARGS` with piped stdin and stdout.
    pub fn start(addr: SocketAddr, args: &[&str]) -> ChatClient {
        ChatClient::start_at(&addr.to_string(), args)
    }

    /// Starts `selectchat connect ADDRS ARGS`, ADDRS as typed.
    pub fn start_at(addrs: &str, args: &[&str]) -> ChatClient {
        ChatClient::start_with_env(addrs, args, &[])
    }

    /// Starts `selectchat connect ADDRS ARGS` with `env` added to its
    /// environment.
    pub fn start_with_env(addrs: &str, args: &[&str], env: &[(&str, &str)]) -> ChatClient {
        let mut child = Command::new(BIN)
            .arg("connect")
            .arg(addrs)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn selectchat connect");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        ChatClient {
            child,
            stdin,
            lines,
        }
    }

    /// Types a line into the client.
    pub fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("client stdin");
        stdin.flush().unwrap();
    }

    /// Closes the client's stdin (EOF).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next line the client printed.
    pub fn line(&self) -> String {
        self.lines
            .recv_timeout(WAIT)
            .expect("client printed nothing in time")
    }

    pub fn expect(&self, want: &str) {
        assert_eq!(self.line(), want);
    }

    /// A line already printed, if any.
    pub fn try_line(&self) -> Option<String> {
        self.lines.recv_timeout(Duration::from_millis(200)).ok()
    }

    /// Waits for a printed line satisfying `ok`, returning it.
    pub fn wait_for(&self, ok: impl Fn(&str) -> bool) -> String {
        loop {
            let line = self.line();
            if ok(&line) {
                return line;
            }
        }
    }

    /// Waits for the process to exit and returns its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        wait_exit(&mut self.child)
    }
}

impl Drop for ChatClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The counters of a server `stats:` log line.
pub fn parse_stats(line: &str) -> Option<HashMap<String, u64>> {
    let counters = line.split("stats: ").nth(1)?;
    Some(
        counters
            .split_whitespace()
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect(),
    )
}

impl Server {
    /// The counters of the server's last stats line (needs `-v` and a
    /// short `--stats-interval`).
    pub fn stats(&self) -> Option<HashMap<String, u64>> {
        parse_stats(&self.last_stats.lock().unwrap())
    }

    /// Waits until the server's stats show `want` for every key given.
    pub fn wait_stats(&self, want: &[(&str, u64)]) {
        let ok = wait_until(Duration::from_secs(30), || {
            self.stats()
                .is_some_and(|s| want.iter().all(|(k, v)| s.get(*k) == Some(v)))
        });
        if ok.is_none() {
            panic!("stats never reached {want:?}; last: {:?}", self.stats());
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift), newlines and all.
pub fn garbage(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// One connection that arrives and leaves in one of five ways, chosen by
/// `kind % 5`: quits politely, resets after login, half-closes after login
/// (and still reads its replies), closes without a word, or stays silent.
/// The silent one is returned for the caller to hold.
pub fn churn_once(addr: SocketAddr, name: &str, kind: u64) -> Option<Client> {
    let mut c = Client::connect(addr);
    match kind % 5 {
        0 => {
            c.send(&format!("LOGIN {name}\nMSG hello\nQUIT"));
            c.drain_to_close();
        }
        1 => {
            c.send(&format!("LOGIN {name}"));
            c.expect("OK");
            c.reset();
        }
        2 => {
            c.send(&format!("LOGIN {name}\nWHO"));
            c.stream.shutdown(std::net::Shutdown::Write).unwrap();
            let lines = c.drain_to_close();
            assert_eq!(lines.first().map(String::as_str), Some("OK"));
        }
        3 => drop(c),
        _ => return Some(c),
    }
    None
}

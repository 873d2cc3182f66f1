//! The soak: a mixed load for a configurable time, then checks that nothing
//! crashed, no healthy client lost a message, and the server gave back its
//! connections, timers and memory. Ignored by default:
//!
//! ```sh
//! SOAK_SECS=600 cargo test --release --test soak -- --ignored --nocapture
//! ```

mod common;

use common::{Client, Read1, Server};
use selectchat::bench::{self, Options, Scenario};
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

const CHATTERS: usize = 10;
const HOLDERS: usize = 2000;
const GHOSTS_PER_WAVE: usize = 200;

#[derive(Default)]
struct Counts {
    delivered: AtomicU64,
    churn_cycles: AtomicU64,
    ghosts: AtomicU64,
    garbage_bytes: AtomicU64,
}

fn soak_duration() -> Duration {
    let secs = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    Duration::from_secs(secs)
}

/// A healthy client: sends numbered messages at 5 a second and checks that
/// every other chatter's arrive complete and in order.
fn chatter(
    addr: SocketAddr,
    me: usize,
    all_in: Arc<Barrier>,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
) -> (u32, HashMap<String, u32>) {
    let mut c = Client::connect(addr);
    c.send(&format!("LOGIN chatter{me}"));
    c.expect("OK");
    // Nobody speaks before every chatter is there to hear it.
    all_in.wait();
    let mut writer = c.stream.try_clone().unwrap();
    let sender = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                writer
                    .write_all(format!("MSG {n}\n").as_bytes())
                    .expect("chatter send");
                n += 1;
                thread::sleep(Duration::from_millis(200));
            }
            n
        })
    };
    let mut next: HashMap<String, u32> = HashMap::new();
    let mut last_msg = Instant::now();
    // After the stop, keep reading until the chat has been quiet for a while.
    while !(stop.load(Ordering::Relaxed) && last_msg.elapsed() > Duration::from_millis(1500)) {
        match c.read_within(Duration::from_millis(200)) {
            Read1::Line(line) => {
                if let Some(rest) = line.strip_prefix("MSG chatter") {
                    let (from, n) = rest.split_once(' ').unwrap();
                    let n: u32 = n.parse().unwrap();
                    let want = next.entry(from.to_string()).or_default();
                    assert!(n >= *want, "chatter{me}: duplicate from chatter{from}");
                    assert_eq!(n, *want, "chatter{me}: lost a message from chatter{from}");
                    *want += 1;
                    last_msg = Instant::now();
                    counts.delivered.fetch_add(1, Ordering::Relaxed);
                } else if line == "PING" {
                    c.send("PONG");
                }
            }
            Read1::Timeout => {}
            other => panic!("chatter{me}: {other:?}"),
        }
    }
    let sent = sender.join().unwrap();
    c.send("QUIT");
    (sent, next)
}

/// Connects and leaves in every way there is, until told to stop.
fn churner(addr: SocketAddr, w: usize, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    let mut silent = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if let Some(c) = common::churn_once(addr, &format!("churn{w}x{i}"), i) {
            // Never a word: the login deadline reaps them, or the drop does.
            silent.push(c);
            if silent.len() > 50 {
                silent.remove(0);
            }
        }
        i += 1;
        counts.churn_cycles.fetch_add(1, Ordering::Relaxed);
        thread::sleep(Duration::from_millis(5));
    }
}

/// Every few seconds a wave of clients logs in and goes silent, never reading.
fn ghost_waves(addr: SocketAddr, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    let mut wave = 0;
    while !stop.load(Ordering::Relaxed) {
        let ghosts: Vec<Client> = (0..GHOSTS_PER_WAVE)
            .map(|i| {
                let mut g = Client::connect(addr);
                g.send(&format!("LOGIN ghost{wave}x{i}"));
                g
            })
            .collect();
        counts
            .ghosts
            .fetch_add(GHOSTS_PER_WAVE as u64, Ordering::Relaxed);
        // Held open (silent) until well past the idle timeout.
        thread::sleep(Duration::from_secs(8));
        drop(ghosts);
        wave += 1;
    }
}

fn garbage(addr: SocketAddr, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    let mut seed = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut c = Client::connect(addr);
        c.stream
            .set_write_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        seed += 1;
        let bytes = common::garbage(seed, 20_000);
        if c.stream.write_all(&bytes).is_ok() {
            counts
                .garbage_bytes
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        c.discard_pending();
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "long: run with SOAK_SECS=... cargo test --release --test soak -- --ignored"]
fn soak() {
    let duration = soak_duration();
    let s = Server::start(&[
        "-v",
        "--stats-interval",
        "1",
        "--idle-timeout",
        "3",
        "--ping-interval",
        "1",
        "--login-timeout",
        "2",
        "--rate",
        "0",
        "--sendq",
        "262144",
        "--max-clients",
        "10000",
    ]);
    let addr = s.addr;
    thread::sleep(Duration::from_millis(300));
    let rss_start = s.rss_kib();
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let started = Instant::now();

    // 2000 logged-in connections held open (answering heartbeats) throughout.
    let holders = thread::spawn(move || {
        bench::run(Options {
            addr,
            scenario: Scenario::Idle {
                clients: HOLDERS,
                duration,
            },
            size: 64,
            server_pids: Vec::new(),
            nodes: Vec::new(),
            timeout: duration + Duration::from_secs(120),
            progress: false,
            name_prefix: "holder".into(),
            transport: selectchat::transport::TransportKind::Plain,
            target: selectchat::bench::target::Target::Selectchat,
            rate: None,
        })
        .expect("holders")
    });
    let all_in = Arc::new(Barrier::new(CHATTERS));
    let chatters: Vec<_> = (0..CHATTERS)
        .map(|me| {
            let (all_in, stop, counts) = (all_in.clone(), stop.clone(), counts.clone());
            thread::spawn(move || chatter(addr, me, all_in, stop, counts))
        })
        .collect();
    let mut background = Vec::new();
    for w in 0..2 {
        let (stop, counts) = (stop.clone(), counts.clone());
        background.push(thread::spawn(move || churner(addr, w, stop, counts)));
    }
    let (st, co) = (stop.clone(), counts.clone());
    background.push(thread::spawn(move || ghost_waves(addr, st, co)));
    let (st, co) = (stop.clone(), counts.clone());
    background.push(thread::spawn(move || garbage(addr, st, co)));

    let mut peak_connections = 0;
    let mut peak_rss = 0;
    while started.elapsed() < duration {
        thread::sleep(Duration::from_secs(1));
        if let Some(stats) = s.stats() {
            peak_connections = peak_connections.max(stats["connections"]);
        }
        peak_rss = peak_rss.max(s.rss_kib());
    }
    stop.store(true, Ordering::Relaxed);
    for b in background {
        b.join().unwrap();
    }
    let mut sent = HashMap::new();
    let mut received = Vec::new();
    for (me, h) in chatters.into_iter().enumerate() {
        let (n, next) = h.join().unwrap();
        sent.insert(me.to_string(), n);
        received.push((me, next));
    }
    // Healthy clients lost nothing: each got every message the others sent.
    for (me, next) in &received {
        for (from, n) in &sent {
            if *from != me.to_string() {
                assert_eq!(
                    next.get(from),
                    Some(n),
                    "chatter{me} missed messages from chatter{from}"
                );
            }
        }
    }
    let holders = holders.join().unwrap();
    assert_eq!(holders.error, None, "holders failed");

    // Everyone has left: no connection, user or timer may remain.
    s.wait_stats(&[("connections", 0), ("users", 0), ("timers", 0)]);
    thread::sleep(Duration::from_secs(2));
    let rss_end = s.rss_kib();
    eprintln!(
        "soak: {:.0} s, peak {peak_connections} connections, {} chat messages delivered, 0 lost; \
         {} churn cycles, {} ghosts purged, {} KB of garbage; RSS start {rss_start} KiB, peak {peak_rss} KiB, end {rss_end} KiB",
        started.elapsed().as_secs_f64(),
        counts.delivered.load(Ordering::Relaxed),
        counts.churn_cycles.load(Ordering::Relaxed),
        counts.ghosts.load(Ordering::Relaxed),
        counts.garbage_bytes.load(Ordering::Relaxed) / 1000,
    );
    assert!(
        rss_end < rss_start + 10 * 1024,
        "memory did not come back: {rss_start} -> {rss_end} KiB"
    );
    assert!(!s.log().contains("panicked"), "a handler panicked");
}

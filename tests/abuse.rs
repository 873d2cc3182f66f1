//! The server under abuse: connection churn, ghosts, garbage from many
//! connections, and floods with slow readers. Every loop is bounded.

mod common;

use common::{Client, Read1, Server};
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Stats every 100 ms at debug level, so tests can read the server's counters.
const STATS: [&str; 3] = ["-v", "--stats-interval", "0.1"];

#[test]
fn churn_leaks_no_connections_timers_or_names() {
    let mut args = STATS.to_vec();
    args.extend(["--login-timeout", "1", "--rate", "0"]);
    let s = Server::start(&args);
    let mut watcher = s.login("watcher");
    let addr = s.addr;
    let workers: Vec<_> = (0..4)
        .map(|w| {
            thread::spawn(move || {
                let mut silent = Vec::new();
                for i in 0..500 {
                    silent.extend(common::churn_once(addr, &format!("w{w}n{i}"), i));
                }
                silent
            })
        })
        .collect();
    let silent: Vec<Client> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert_eq!(silent.len(), 400);
    // Everyone who joined left exactly once.
    let mut balance: HashMap<String, i32> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for line in watcher.sync() {
            if let Some(name) = line.strip_prefix("INFO ") {
                let (name, what) = name.split_once(' ').unwrap();
                *balance.entry(name.to_string()).or_default() +=
                    if what == "joined" { 1 } else { -1 };
            }
        }
        if balance.len() == 1200 && balance.values().all(|&b| b == 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "unbalanced: {:?}",
            balance
                .iter()
                .filter(|(_, b)| **b != 0)
                .take(5)
                .collect::<Vec<_>>()
        );
        thread::sleep(Duration::from_millis(50));
    }
    // The silent ones are reaped by the login deadline; then only the watcher is left.
    s.wait_stats(&[("connections", 1), ("users", 1), ("timers", 1)]);
    for mut c in silent {
        assert_eq!(c.drain_to_close(), vec!["BYE login-timeout"]);
    }
}

#[test]
fn ghosts_are_purged_on_time_while_live_clients_chat() {
    const GHOSTS: usize = 2000;
    const LIVE: usize = 50;
    let mut args = STATS.to_vec();
    // Every ghost's departure is announced (no presence limit): the
    // announcement storm is part of the load the live chat must survive.
    args.extend([
        "--idle-timeout",
        "2",
        "--ping-interval",
        "1",
        "--rate",
        "0",
        "--presence-limit",
        "0",
    ]);
    let s = Server::start(&args);
    let addr = s.addr;
    let mut live: Vec<Client> = (0..LIVE).map(|i| s.login(&format!("live{i}"))).collect();

    // The live clients chat in the background; each checks what it receives.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let origin = Instant::now();
    let chatters: Vec<_> = live
        .drain(..)
        .enumerate()
        .map(|(me, mut c)| {
            let stop = stop.clone();
            let mut writer = c.stream.try_clone().unwrap();
            thread::spawn(move || {
                let sender = {
                    let stop = stop.clone();
                    thread::spawn(move || {
                        let mut n = 0u32;
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            let at = origin.elapsed().as_micros();
                            if writer
                                .write_all(format!("MSG {n} {at}\n").as_bytes())
                                .is_err()
                            {
                                break;
                            }
                            n += 1;
                            thread::sleep(Duration::from_millis(100));
                        }
                        n
                    })
                };
                let mut next: HashMap<String, u32> = HashMap::new();
                let mut latencies = Vec::new();
                let mut ghosts_gone = 0usize;
                let mut last_ghost_gone = None;
                loop {
                    match c.read_within(Duration::from_millis(300)) {
                        Read1::Line(line) => {
                            if let Some(rest) = line.strip_prefix("MSG ") {
                                let mut f = rest.split(' ');
                                let (from, n, at) =
                                    (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
                                let n: u32 = n.parse().unwrap();
                                let at: u128 = at.parse().unwrap();
                                let want = next.entry(from.to_string()).or_default();
                                assert_eq!(
                                    n, *want,
                                    "live{me}: message from {from} lost or reordered"
                                );
                                *want += 1;
                                latencies.push((at, origin.elapsed().as_micros() - at));
                            } else if line.starts_with("INFO ghost")
                                && line.ends_with("disconnected")
                            {
                                ghosts_gone += 1;
                                last_ghost_gone = Some(Instant::now());
                            } else if line == "PING" {
                                c.send("PONG");
                            }
                        }
                        Read1::Timeout if stop.load(std::sync::atomic::Ordering::Relaxed) => break,
                        Read1::Timeout => {}
                        other => panic!("live{me}: {other:?}"),
                    }
                }
                let sent = sender.join().unwrap();
                (me, sent, next, latencies, ghosts_gone, last_ghost_gone)
            })
        })
        .collect();

    // A second of plain chat first, to compare latencies against.
    thread::sleep(Duration::from_secs(1));
    let ghosts_from = origin.elapsed().as_micros();
    // 2000 ghosts log in, then never read or write again.
    let mut ghosts = Vec::with_capacity(GHOSTS);
    for i in 0..GHOSTS {
        let mut g = Client::connect(addr);
        g.send(&format!("LOGIN ghost{i}"));
        ghosts.push(g);
    }
    for g in ghosts.iter_mut() {
        assert_eq!(g.line(), "OK");
    }
    let last_login = Instant::now();
    let ghosts_silent = origin.elapsed().as_micros();
    s.wait_stats(&[("users", LIVE as u64)]);
    let purged = last_login.elapsed();
    thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let mut all = Vec::new();
    for h in chatters {
        let (me, _sent, next, latencies, gone, last_gone) = h.join().unwrap();
        assert_eq!(gone, GHOSTS, "live{me} saw {gone} ghost departures");
        assert!(
            last_gone.unwrap() - last_login <= Duration::from_secs(3) + Duration::from_millis(500)
        );
        assert_eq!(next.len(), LIVE - 1, "live{me} did not hear from everyone");
        all.extend(latencies);
    }
    let p99 = |from: u128, to: u128| {
        let mut phase: Vec<u128> = all
            .iter()
            .filter(|(at, _)| (from..to).contains(at))
            .map(|(_, l)| *l)
            .collect();
        phase.sort_unstable();
        let p = phase.get(phase.len() * 99 / 100).copied().unwrap_or(0);
        format!("{} messages, p99 {:.2} ms", phase.len(), p as f64 / 1000.0)
    };
    eprintln!(
        "ghosts: {GHOSTS} purged {:.2} s after the last login. Live chat before: {}; during the logins: {}; while the ghosts were silent and purged: {}",
        purged.as_secs_f64(),
        p99(0, ghosts_from),
        p99(ghosts_from, ghosts_silent),
        p99(ghosts_silent, u128::MAX),
    );
    assert!(
        purged <= Duration::from_secs(3) + Duration::from_millis(500),
        "purge took {purged:?}"
    );
}

#[test]
fn garbage_from_many_connections_at_once_leaves_the_rest_alone() {
    let s = Server::start(&["--max-line", "512", "--rate", "0"]);
    let mut a = s.login("a");
    let mut b = s.login("b");
    a.sync();
    let addr = s.addr;
    let junkers: Vec<_> = (0..20u32)
        .map(|seed| {
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.stream
                    .set_write_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let bytes = common::garbage(seed, 100_000);
                for chunk in bytes.chunks(1000) {
                    if c.stream.write_all(chunk).is_err() {
                        break;
                    }
                    c.discard_pending();
                }
            })
        })
        .collect();
    for round in 0..20 {
        b.send(&format!("MSG round {round}"));
        assert_eq!(a.sync(), vec![format!("MSG b round {round}")]);
    }
    for j in junkers {
        j.join().unwrap();
    }
    assert_eq!(s.connect().sync(), Vec::<String>::new());
}

#[test]
fn a_flood_with_slow_readers_keeps_memory_bounded_and_fast_readers_whole() {
    const SENDQ: u64 = 256 * 1024;
    let s = Server::start(&["--sendq", "262144", "--rate", "0"]);
    let rss_start = s.rss_kib();
    let slow: Vec<Client> = (0..5).map(|i| s.login(&format!("slow{i}"))).collect();
    let fast: Vec<Client> = (0..3).map(|i| s.login(&format!("fast{i}"))).collect();
    let mut sender = s.login("sender");
    const MESSAGES: usize = 30_000;
    // A reader that keeps up is at most this many messages (about 130 KB)
    // behind the sender, under its sendq. Without the bound a server that
    // fans out faster than the reader threads read (they share two cores
    // with it and the sender) drops them too, rightly.
    const LAG: usize = 256;
    let progress: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::default()).collect();
    let readers: Vec<_> = fast
        .into_iter()
        .zip(progress.clone())
        .map(|(mut c, read)| {
            thread::spawn(move || {
                let mut next = 0;
                let mut others = Vec::new();
                while next < MESSAGES {
                    match c.read_within(common::WAIT) {
                        Read1::Line(l) if l.starts_with("MSG sender ") => {
                            let n: usize = l.split(' ').nth(2).unwrap().parse().unwrap();
                            assert_eq!(n, next, "a fast reader lost a message");
                            next += 1;
                            read.store(next, Ordering::Relaxed);
                        }
                        Read1::Line(l) => others.push(l),
                        other => panic!("fast reader: {other:?} at {next}"),
                    }
                }
                others.extend(c.sync());
                // Held open until every reader is done, so none sees
                // another leave.
                (others, c)
            })
        })
        .collect();
    let payload = "z".repeat(500);
    let mut batch = String::new();
    let mut peak = 0;
    for i in 0..MESSAGES {
        batch.push_str(&format!("MSG {i} {payload}\n"));
        if batch.len() > 64 * 1024 {
            // A reader that died stops the wait; its join says why.
            let deadline = Instant::now() + common::WAIT;
            while progress.iter().any(|r| r.load(Ordering::Relaxed) + LAG < i)
                && Instant::now() < deadline
            {
                thread::sleep(Duration::from_millis(1));
            }
            sender.stream.write_all(batch.as_bytes()).unwrap();
            batch.clear();
            peak = peak.max(s.rss_kib());
        }
    }
    sender.stream.write_all(batch.as_bytes()).unwrap();
    // Every slow reader overflowed its sendq and was dropped, each told once.
    let mut dropped: Vec<String> = (0..5)
        .map(|i| format!("INFO slow{i} disconnected"))
        .collect();
    dropped.sort();
    let done: Vec<(Vec<String>, Client)> = readers
        .into_iter()
        .map(|r| {
            r.join()
                .unwrap_or_else(|_| panic!("a fast reader failed; log:\n{}", s.log()))
        })
        .collect();
    for (others, _) in &done {
        let mut departures: Vec<&String> = others
            .iter()
            .filter(|l| l.ends_with(" disconnected"))
            .collect();
        departures.sort();
        assert_eq!(departures, dropped.iter().collect::<Vec<_>>());
    }
    // 15 MB went to each reader; the server held at most a sendq per client.
    let bound = rss_start + 9 * SENDQ / 1024 + 16 * 1024;
    assert!(peak < bound, "peak RSS {peak} KiB over {bound} KiB");
    drop(slow);
}

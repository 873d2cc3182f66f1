//! Hard limits: max clients, descriptors, slow consumers, and many clients at once.

mod common;

use common::{Client, Read1, Server};
use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn max_clients_refuses_extra_connections_and_spares_the_others() {
    let s = Server::start(&["--max-clients", "3"]);
    let mut a = s.login("a");
    let mut b = s.login("b");
    let mut c = s.connect();
    c.sync();
    let mut extra = s.connect();
    assert_eq!(extra.drain_to_close(), vec!["BYE server-full"]);
    a.send("MSG still here");
    assert_eq!(b.sync(), vec!["MSG a still here"]);
    c.send("QUIT");
    assert_eq!(c.drain_to_close(), vec!["BYE"]);
    // The freed slot is usable again.
    let ok = wait_until_admitted(&s);
    assert!(ok, "slot never freed");
}

fn wait_until_admitted(s: &Server) -> bool {
    let deadline = Instant::now() + common::WAIT;
    while Instant::now() < deadline {
        let mut c = s.connect();
        c.send("LOGIN late");
        match c.read_within(common::WAIT) {
            Read1::Line(l) if l == "OK" => return true,
            _ => thread::sleep(Duration::from_millis(20)),
        }
    }
    false
}

#[test]
fn running_out_of_descriptors_refuses_politely_and_recovers() {
    // 48 descriptors: the server's own few, then clients until EMFILE.
    // `--max-clients` is fitted down to 48, so refusals before 48 are
    // the descriptors running out, not the client limit.
    const NOFILE: usize = 48;
    let s = Server::start_with_nofile(NOFILE as u32, &["--max-clients", "1000"]);
    let mut admitted = Vec::new();
    let mut refused = 0;
    for i in 0..60 {
        let mut c = s.connect();
        c.send(&format!("LOGIN u{i}"));
        match c.read_within(common::WAIT) {
            Read1::Line(l) if l == "OK" => admitted.push(c),
            Read1::Line(l) if l == "BYE server-full" => refused += 1,
            other => panic!("client {i}: unexpected {other:?}"),
        }
    }
    assert!(admitted.len() >= 30, "only {} admitted", admitted.len());
    assert!(admitted.len() < NOFILE, "{} admitted", admitted.len());
    assert_eq!(admitted.len() + refused, 60);
    // Free some descriptors; the server accepts again.
    for mut c in admitted.drain(..5) {
        c.send("QUIT");
        c.drain_to_close();
    }
    assert!(wait_until_admitted(&s), "never accepted again");
    let lines = admitted[0].sync();
    assert!(lines.iter().all(|l| l.starts_with("INFO ")), "{lines:?}");
}

#[test]
fn a_reader_that_pauses_gets_broadcasts_and_its_own_lines_in_order() {
    // 4 MB for a reader that reads nothing meanwhile: far more than the
    // kernel holds for it, so the server keeps the rest across turns and
    // partial writes, under an 8 MiB sendq. Each `MSG` is one copy shared
    // by all its recipients, each `DM` the reader's own: they interleave.
    let s = Server::start(&["--sendq", "8388608", "--rate", "0"]);
    let mut reader = s.login("reader");
    let mut sender = s.login("sender");
    reader.sync();
    let text = "y".repeat(200);
    let mut batch = String::new();
    for i in 0..10_000 {
        batch.push_str(&format!("MSG {i} {text}\nDM reader {i} {text}\n"));
    }
    sender.send_raw(batch.as_bytes());
    assert_eq!(sender.sync(), Vec::<String>::new());
    for i in 0..10_000 {
        assert_eq!(reader.line(), format!("MSG sender {i} {text}"));
        assert_eq!(reader.line(), format!("DM sender {i} {text}"));
    }
    assert_eq!(reader.sync(), Vec::<String>::new());
}

#[test]
fn slow_consumer_is_dropped_without_bye_and_memory_stays_bounded() {
    let s = Server::start(&["--sendq", "65536", "--rate", "0"]);
    let stalled = s.login("stalled");
    let mut healthy = s.login("healthy");
    let mut sender = s.login("sender");
    healthy.sync();
    let rss_before = s.rss_kib();

    // The healthy reader drains in a thread while the sender floods.
    let reader = thread::spawn(move || {
        let mut got = 0usize;
        let mut saw_drop = false;
        while got < 20_000 {
            match healthy.read_within(common::WAIT) {
                Read1::Line(l) if l.starts_with("MSG sender ") => got += 1,
                Read1::Line(l) if l == "INFO stalled disconnected" => saw_drop = true,
                Read1::Line(_) => {}
                other => panic!("healthy reader: {other:?} after {got}"),
            }
        }
        (got, saw_drop, healthy)
    });
    sender.flood(20_000, 1000);
    let (got, saw_drop, mut healthy) = reader.join().unwrap();
    assert_eq!(got, 20_000, "healthy reader lost messages");
    let saw_drop = saw_drop
        || healthy
            .sync()
            .iter()
            .any(|l| l == "INFO stalled disconnected");
    assert!(saw_drop, "stalled reader was never dropped");
    // 20 MB went through; the server holds at most a sendq per client.
    let rss_after = s.rss_kib();
    assert!(
        rss_after < rss_before + 16 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    // The stalled client finds only chat traffic, then the close: no BYE.
    let mut stalled = stalled;
    let mut lines = 0;
    loop {
        match stalled.read_within(common::WAIT) {
            Read1::Line(l) => {
                assert!(!l.starts_with("BYE"), "dropped consumer got {l}");
                lines += 1;
            }
            Read1::Eof | Read1::Reset => break,
            Read1::Timeout => panic!("stalled connection left open"),
        }
    }
    assert!(lines < 20_000);
}

#[test]
fn a_thousand_clients_at_once() {
    const N: usize = 1000;
    let s = Server::start(&[]);
    let mut clients: Vec<Client> = (0..N).map(|_| s.connect()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(&format!("LOGIN user{i}"));
    }
    for c in clients.iter_mut() {
        c.expect("OK");
    }
    clients[0].send("MSG hello all");
    for (i, c) in clients.iter_mut().enumerate().skip(1) {
        loop {
            let line = c.line();
            if line == "MSG user0 hello all" {
                break;
            }
            assert!(line.starts_with("INFO user"), "client {i} got {line}");
        }
    }
    clients[0].discard_pending();
    clients[0].send("WHO");
    let mut users = 0;
    while users < N {
        let line = clients[0].line();
        if line.starts_with("USER ") {
            users += 1;
        }
    }
    assert_eq!(clients[0].sync(), Vec::<String>::new());
}

#[test]
fn flood_control_paces_a_fast_sender_and_loses_nothing() {
    let s = Server::start(&["--rate", "20", "--burst", "5", "--flood-timeout", "30"]);
    let mut watcher = s.login("watcher");
    let mut fast = s.login("fast");
    watcher.sync();
    let start = Instant::now();
    let burst: String = (0..45).map(|i| format!("MSG {i}\n")).collect();
    fast.send_raw(burst.as_bytes());
    for i in 0..45 {
        watcher.expect(&format!("MSG fast {i}"));
    }
    // 5 at once, then 40 more at 20 a second.
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "not paced: {:?}",
        start.elapsed()
    );
    fast.send("PING still-here");
    fast.expect("PONG still-here");
}

#[test]
fn staying_over_the_rate_gets_bye_flooding() {
    let s = Server::start(&["--rate", "20", "--burst", "5", "--flood-timeout", "1"]);
    let mut watcher = s.login("watcher");
    let mut flooder = s.login("flooder");
    watcher.sync();
    let mut writer = flooder.stream.try_clone().unwrap();
    let pump = thread::spawn(move || {
        let line = b"MSG spam spam spam\n".repeat(100);
        let start = Instant::now();
        // Until the server hangs up, or 10 s: whichever comes first.
        while start.elapsed() < Duration::from_secs(10) && writer.write_all(&line).is_ok() {}
    });
    let lines = flooder.drain_to_close();
    assert_eq!(
        lines.last().map(String::as_str),
        Some("BYE flooding"),
        "{:?}",
        lines.last()
    );
    let seen = loop {
        let line = watcher.line();
        if line != "MSG flooder spam spam spam" {
            break line;
        }
    };
    assert_eq!(seen, "INFO flooder disconnected");
    pump.join().unwrap();
}

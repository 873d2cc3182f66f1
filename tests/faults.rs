//! Departures, shutdown, garbage, and the no-loss guarantee under concurrency.

mod common;

use common::{Client, Read1, Server};
use std::collections::HashMap;
use std::thread;

/// Asserts `watcher` is told of `name`'s departure exactly once.
fn announced_once(watcher: &mut Client, name: &str) {
    let want = format!("INFO {name} disconnected");
    let mut seen = 0;
    // Syncing, not just reading, keeps the watcher itself from going idle.
    let told = common::wait_until(common::WAIT, || {
        seen += watcher.sync().iter().filter(|l| **l == want).count();
        seen > 0
    });
    assert!(told.is_some(), "{want:?} never announced");
    // A departure is announced in the loop turn that handles it: a second
    // announcement would be queued ahead of the answer to this PING.
    seen += watcher.sync().iter().filter(|l| **l == want).count();
    assert_eq!(seen, 1, "{want:?} announced {seen} times");
}

#[test]
fn every_departure_path_is_announced_exactly_once() {
    let s = Server::start(&[
        "--idle-timeout",
        "1",
        "--ping-interval",
        "5",
        "--sendq",
        "4096",
        "--rate",
        "0",
    ]);
    let mut w = s.login("watcher");

    let mut quitter = s.login("quitter");
    quitter.send("QUIT");
    assert_eq!(quitter.drain_to_close(), vec!["BYE"]);
    announced_once(&mut w, "quitter");

    let closer = s.login("closer");
    drop(closer);
    announced_once(&mut w, "closer");

    let resetter = s.login("resetter");
    resetter.reset();
    announced_once(&mut w, "resetter");

    let mut ghost = s.login("ghost");
    announced_once(&mut w, "ghost");
    assert_eq!(ghost.drain_to_close(), vec!["BYE idle-timeout"]);

    // A slow consumer: never reads while a DM flood piles up for it. Once
    // it is dropped, the flooder's next DM finds nobody.
    let _slow = s.login("slow");
    let mut flooder = s.login("flooder");
    let big = "x".repeat(3000);
    let mut dropped = false;
    for n in 1..=2000 {
        flooder.send(&format!("DM slow {big}"));
        if n % 16 == 0 && flooder.sync().iter().any(|l| l == "ERR no-such-user") {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "the slow consumer was never dropped");
    announced_once(&mut w, "slow");
}

#[test]
fn half_closed_client_still_gets_its_replies() {
    let s = Server::start(&[]);
    let mut a = s.login("a");
    let mut b = s.connect();
    b.send_raw(b"LOGIN b\nWHO\nMSG bye for now\n");
    b.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(b.drain_to_close(), vec!["OK", "USER a", "USER b"]);
    assert_eq!(
        a.sync(),
        vec!["INFO b joined", "MSG b bye for now", "INFO b disconnected"]
    );
}

#[test]
fn sigterm_says_goodbye_to_everyone_and_exits_zero() {
    let mut s = Server::start(&[]);
    let mut users: Vec<Client> = (0..5).map(|i| s.login(&format!("u{i}"))).collect();
    let mut anon = s.connect();
    anon.sync();
    for u in users.iter_mut() {
        u.sync();
    }
    s.signal(libc::SIGTERM);
    for u in users.iter_mut() {
        // Nobody remains to be told of departures: only the BYE.
        assert_eq!(u.drain_to_close(), vec!["BYE shutting-down"]);
    }
    assert_eq!(anon.drain_to_close(), vec!["BYE shutting-down"]);
    let status = s.wait_exit();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn sigint_also_shuts_down_cleanly() {
    let mut s = Server::start(&[]);
    let mut u = s.login("u");
    s.signal(libc::SIGINT);
    assert_eq!(u.drain_to_close(), vec!["BYE shutting-down"]);
    assert!(s.wait_exit().success());
}

#[test]
fn nothing_is_lost_when_everyone_talks_at_once() {
    const CLIENTS: usize = 12;
    const MESSAGES: usize = 400;
    let s = Server::start(&["--rate", "0"]);
    let mut clients: Vec<Client> = (0..CLIENTS).map(|i| s.login(&format!("c{i}"))).collect();
    // Settle the joins so every reader starts from a known point.
    for c in clients.iter_mut() {
        c.sync();
    }
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(me, mut c)| {
            let mut writer = c.stream.try_clone().unwrap();
            let sender = thread::spawn(move || {
                use std::io::Write;
                for n in 0..MESSAGES {
                    writer.write_all(format!("MSG {n}\n").as_bytes()).unwrap();
                }
            });
            thread::spawn(move || {
                let mut next: HashMap<String, usize> = HashMap::new();
                let mut total = 0;
                while total < (CLIENTS - 1) * MESSAGES {
                    let line = match c.read_within(common::WAIT) {
                        Read1::Line(l) => l,
                        other => panic!("c{me}: {other:?} after {total}"),
                    };
                    let mut parts = line.splitn(3, ' ');
                    assert_eq!(parts.next(), Some("MSG"), "c{me} got {line}");
                    let from = parts.next().unwrap().to_string();
                    let n: usize = parts.next().unwrap().parse().unwrap();
                    assert_ne!(from, format!("c{me}"), "echoed to sender");
                    let expected = next.entry(from.clone()).or_default();
                    assert_eq!(n, *expected, "c{me}: from {from} out of order or lost");
                    *expected += 1;
                    total += 1;
                }
                sender.join().unwrap();
                (next, c)
            })
        })
        .collect();
    let mut clients = Vec::new();
    for h in handles {
        let (next, c) = h.join().unwrap();
        assert_eq!(next.len(), CLIENTS - 1);
        assert!(next.values().all(|&n| n == MESSAGES));
        clients.push(c);
    }
    for c in clients.iter_mut() {
        assert_eq!(c.sync(), Vec::<String>::new(), "duplicates");
    }
}

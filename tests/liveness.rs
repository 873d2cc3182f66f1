//! The ghost-connection defence: heartbeats, idle purge, login deadline, slowloris.

mod common;

use common::{Read1, Server};
use std::io::Write;
use std::time::{Duration, Instant};

#[test]
fn silent_client_gets_a_heartbeat_ping() {
    let s = Server::start(&["--ping-interval", "0.3", "--idle-timeout", "30"]);
    let mut c = s.login("a");
    let sent = Instant::now();
    c.expect("PING");
    assert!(sent.elapsed() >= Duration::from_millis(250));
    // One PING per silence: none more until the client speaks.
    c.expect_silence(Duration::from_millis(700));
    // Answering re-arms the heartbeat for the next silence, not for the idle deadline.
    c.send("PONG");
    let answered = Instant::now();
    c.expect("PING");
    assert!(
        answered.elapsed() < Duration::from_secs(5),
        "heartbeat not re-armed"
    );
}

#[test]
fn answering_pings_keeps_a_client_alive_past_the_idle_timeout() {
    let s = Server::start(&["--ping-interval", "0.2", "--idle-timeout", "0.6"]);
    let mut c = s.login("a");
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2000) {
        c.expect("PING");
        c.send("PONG");
    }
    assert_eq!(c.sync(), Vec::<String>::new());
}

#[test]
fn idle_client_is_purged_on_time_and_others_are_told() {
    let s = Server::start(&["--ping-interval", "0.4", "--idle-timeout", "1"]);
    let mut watcher = s.login("watcher");
    let mut ghost = s.connect();
    let t0 = Instant::now();
    ghost.send("LOGIN ghost");
    ghost.expect("OK");
    // Keep the watcher active so it outlives the ghost.
    let mut seen = Vec::new();
    let purged_at = loop {
        watcher.send("PING w");
        match watcher.read_within(Duration::from_millis(100)) {
            Read1::Line(l) if l == "INFO ghost disconnected" => break Instant::now(),
            Read1::Line(l) => seen.push(l),
            _ => {}
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "ghost never purged");
    };
    assert!(seen.contains(&"INFO ghost joined".to_string()));
    let elapsed = purged_at - t0;
    assert!(
        elapsed >= Duration::from_secs(1),
        "purged early: {elapsed:?}"
    );
    assert!(
        elapsed <= Duration::from_secs(2),
        "purged late: {elapsed:?}"
    );
    assert_eq!(ghost.drain_to_close(), vec!["PING", "BYE idle-timeout"]);
}

#[test]
fn anonymous_idle_connections_are_purged_too() {
    let s = Server::start(&[
        "--ping-interval",
        "5",
        "--idle-timeout",
        "0.5",
        "--login-timeout",
        "30",
    ]);
    let mut c = s.connect();
    let t0 = Instant::now();
    assert_eq!(c.drain_to_close(), vec!["BYE idle-timeout"]);
    assert!(t0.elapsed() >= Duration::from_millis(500));
}

#[test]
fn login_deadline_applies_however_active_the_connection_is() {
    let s = Server::start(&[
        "--login-timeout",
        "0.5",
        "--ping-interval",
        "1",
        "--idle-timeout",
        "30",
    ]);
    let mut c = s.connect();
    let t0 = Instant::now();
    let bye = loop {
        c.send("PING");
        match c.read_within(Duration::from_millis(50)) {
            Read1::Line(l) if l == "PONG" => {}
            Read1::Line(l) => break l,
            Read1::Timeout => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(t0.elapsed() < Duration::from_secs(5));
    };
    assert_eq!(bye, "BYE login-timeout");
    assert!(t0.elapsed() >= Duration::from_millis(500));
    c.expect_closed();
    // Logging in in time lifts the deadline: the heartbeat, a second after
    // the last line, comes where the login deadline would have struck.
    let mut ok = s.login("quick");
    ok.expect("PING");
    ok.send("PING alive");
    ok.expect("PONG alive");
}

#[test]
fn slowloris_without_newline_is_purged() {
    let s = Server::start(&["--ping-interval", "10", "--idle-timeout", "0.8"]);
    let mut watcher = s.login("watcher");
    let mut slow = s.login("slow");
    watcher.sync();
    let t0 = Instant::now();
    let purged_at = loop {
        assert!(t0.elapsed() < Duration::from_secs(5), "slowloris survived");
        // One byte at a time, never a newline; write errors mean it is gone.
        let _ = slow.stream.write(b"x");
        std::thread::sleep(Duration::from_millis(50));
        if watcher.sync().iter().any(|l| l == "INFO slow disconnected") {
            break Instant::now();
        }
    };
    assert!(purged_at - t0 >= Duration::from_millis(800));
    assert_eq!(slow.drain_to_close(), vec!["BYE idle-timeout"]);
}

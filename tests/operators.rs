//! What an operator sees and does, against the real binary: `/metrics`
//! after a scripted session (exact counters, valid Prometheus text),
//! `/healthz` through a stalled store, every `selectchat ctl` command, and
//! the drain (SIGUSR2 and `ctl drain`).

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{http, wait_until, Client, Read1, Server, TempDir, BIN, WAIT};

/// The samples of a Prometheus text exposition, by name and label set;
/// panics on anything the text format does not allow.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "unknown type in {line:?}"
            );
            assert!(
                types.insert(name.into(), kind.into()).is_none(),
                "{name} typed twice"
            );
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        assert!(!line.starts_with('#'), "stray comment {line:?}");
        let (series, value) = line.rsplit_once(' ').expect("a sample and its value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                let inner = labels
                    .strip_prefix('{')
                    .and_then(|l| l.strip_suffix('}'))
                    .unwrap_or_else(|| panic!("bad labels in {line:?}"));
                for pair in inner.split("\",") {
                    let (key, value) = pair.split_once("=\"").expect("label=\"value\"");
                    assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                    assert!(!value.trim_end_matches('"').contains('"'), "{line:?}");
                }
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| types.get(*base).is_some_and(|t| t == "histogram"))
            .unwrap_or(name);
        assert!(types.contains_key(family), "{name} has no TYPE line");
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "{series} twice"
        );
    }
    samples
}

/// The metrics port's samples.
fn scrape(s: &Server) -> HashMap<String, f64> {
    let (status, body) = http(s.listener("metrics"), "GET", "/metrics");
    assert_eq!(status, 200, "{body}");
    parse_prometheus(&body)
}

fn sample(samples: &HashMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in the metrics"))
}

#[test]
fn metrics_count_a_scripted_session_exactly() {
    let s = Server::start(&[
        "--metrics-port",
        "0",
        "--rate",
        "1",
        "--burst",
        "20",
        "--flood-timeout",
        "60",
        "--sendq",
        "65536",
        "--max-line",
        "1048576",
        "--login-timeout",
        "1",
    ]);
    // Never logs in: it gets BYE login-timeout.
    let mut lurker = s.connect();
    let mut alice = s.login("alice");
    let mut bob = s.login("bob");
    alice.expect("INFO bob joined");
    let mut carol = s.connect();
    carol.send("LOGIN alice");
    carol.expect("ERR username-taken");
    carol.send("QUIT");
    carol.expect("BYE");
    alice.send("MSG one");
    alice.send("MSG two");
    bob.expect("MSG alice one");
    bob.expect("MSG alice two");
    alice.send("BOGUS");
    alice.expect("ERR unknown-command");
    alice.send("JOIN #ops");
    alice.expect("JOINED #ops 1");
    alice.send("SAY #ops hello");
    alice.expect("SENT #ops 1");
    alice.send("TOKEN");
    let token = alice
        .line()
        .strip_prefix("TOKEN ")
        .expect("a token")
        .to_string();

    // Nineteen pings right after its login empty the bucket of twenty:
    // one pause.
    let mut flooder = s.login("flooder");
    flooder.send_raw("PING\n".repeat(19).as_bytes());
    for _ in 0..19 {
        flooder.expect("PONG");
    }
    for c in [&mut alice, &mut bob] {
        c.expect("INFO flooder joined");
    }

    // Asks for 16 MB of PONG and never reads: dropped at its sendq once
    // the kernel's buffers (about 6 MB on loopback) are full. With its
    // login that is at most 17 lines: it is never paused.
    let addr = s.addr;
    let sink = std::thread::spawn(move || {
        let mut sock = TcpStream::connect(addr).unwrap();
        let ping = format!("PING {}\n", "x".repeat(1_000_000));
        let _ = sock.write_all(b"LOGIN sink\n");
        for _ in 0..16 {
            if sock.write_all(ping.as_bytes()).is_err() {
                break;
            }
        }
        sock
    });
    for c in [&mut alice, &mut bob, &mut flooder] {
        c.wait_for("INFO sink joined");
        c.wait_for("INFO sink disconnected");
    }
    drop(sink.join());

    let dave = s.login("dave");
    for c in [&mut alice, &mut bob, &mut flooder] {
        c.expect("INFO dave joined");
    }
    dave.reset();
    for c in [&mut alice, &mut bob, &mut flooder] {
        c.expect("INFO dave disconnected");
    }
    drop(bob);
    for c in [&mut alice, &mut flooder] {
        c.expect("INFO bob disconnected");
    }

    let mut eve = s.connect();
    eve.send("RESUME alice 00");
    eve.expect("ERR bad-token");
    eve.send("LOGIN eve");
    eve.expect("OK");
    let mut alice2 = s.connect();
    alice2.send(&format!("RESUME alice {token}"));
    alice2.expect("OK");
    alice.wait_for("BYE replaced");
    lurker.wait_for("BYE login-timeout");
    eve.sync();

    let m = scrape(&s);
    let lines = [
        ("login", 7.0),
        ("msg", 2.0),
        ("join", 1.0),
        ("say", 1.0),
        ("token", 1.0),
        ("resume", 2.0),
        ("quit", 1.0),
        ("dm", 0.0),
        ("other", 1.0),
    ];
    for (command, n) in lines {
        let series = format!("selectchat_lines_total{{command=\"{command}\"}}");
        assert_eq!(sample(&m, &series), n, "{series}");
    }
    let exact = [
        ("selectchat_logins_total{result=\"ok\"}", 6.0),
        ("selectchat_logins_total{result=\"refused\"}", 1.0),
        ("selectchat_resumes_total{result=\"ok\"}", 1.0),
        ("selectchat_resumes_total{result=\"refused\"}", 1.0),
        ("selectchat_flood_pauses_total", 1.0),
        ("selectchat_sendq_drops_total", 1.0),
        ("selectchat_accepted_total", 9.0),
        ("selectchat_departures_total{reason=\"quit\"}", 1.0),
        ("selectchat_departures_total{reason=\"eof\"}", 1.0),
        ("selectchat_departures_total{reason=\"reset\"}", 1.0),
        ("selectchat_departures_total{reason=\"sendq\"}", 1.0),
        ("selectchat_departures_total{reason=\"replaced\"}", 1.0),
        ("selectchat_departures_total{reason=\"login-timeout\"}", 1.0),
        ("selectchat_departures_total{reason=\"idle-timeout\"}", 0.0),
        ("selectchat_departures_total{reason=\"kicked\"}", 0.0),
        ("selectchat_say_commit_seconds_count", 1.0),
        ("selectchat_users", 3.0),
        ("selectchat_rooms", 1.0),
        (
            "selectchat_connections{transport=\"plain\",state=\"user\"}",
            3.0,
        ),
        ("selectchat_store_failing", 0.0),
    ];
    for (series, n) in exact {
        assert_eq!(sample(&m, series), n, "{series}");
    }
    let pings = sample(&m, "selectchat_lines_total{command=\"ping\"}");
    assert!(
        (20.0..=35.0).contains(&pings),
        "nineteen from the flooder, then the sink's: {pings}"
    );
    assert!(sample(&m, "selectchat_written_bytes_total") > 1_000_000.0);
    assert!(sample(&m, "selectchat_deliveries_total") > 30.0);
    assert!(sample(&m, "selectchat_history_ring_bytes") > 0.0);
    assert!(sample(&m, "selectchat_open_fds") >= 4.0);
    let turns = sample(&m, "selectchat_loop_turn_seconds_count");
    assert_eq!(
        sample(&m, "selectchat_loop_turn_seconds_bucket{le=\"+Inf\"}"),
        turns
    );
    assert!(turns > 10.0);
    // HEAD answers like GET without the body; other paths are 404.
    let metrics = s.listener("metrics");
    assert_eq!(http(metrics, "HEAD", "/metrics"), (200, String::new()));
    assert_eq!(http(metrics, "GET", "/nope").0, 404);
    assert_eq!(http(metrics, "POST", "/metrics").0, 405);
}

#[test]
fn healthz_is_503_while_the_store_stalls_or_fails_and_200_after() {
    let dir = TempDir::new();
    let db = dir.file("chat.db");
    let s = Server::start(&["--db", &db, "--metrics-port", "0"]);
    let metrics = s.listener("metrics");
    assert_eq!(http(metrics, "GET", "/healthz"), (200, "ok\n".into()));
    let mut alice = s.login("alice");
    alice.send("JOIN #x");
    alice.expect("JOINED #x 1");

    // Another process takes the database's write lock and keeps it.
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    alice.send("SAY #x stuck");
    let mut seen = (0, String::new());
    wait_until(WAIT, || {
        seen = http(metrics, "GET", "/healthz");
        seen.0 == 503
    });
    assert_eq!(seen, (503, "storage is stalled\n".into()));
    alice.expect("ERR storage-unavailable");
    assert_eq!(
        http(metrics, "GET", "/healthz"),
        (503, "storage is failing\n".into())
    );
    assert_eq!(http(metrics, "HEAD", "/healthz"), (503, String::new()));
    assert_eq!(sample(&scrape(&s), "selectchat_store_failing"), 1.0);

    locker.execute_batch("ROLLBACK").unwrap();
    alice.send("SAY #x works again");
    assert!(alice.line().starts_with("SENT #x "));
    assert_eq!(http(metrics, "GET", "/healthz"), (200, "ok\n".into()));
}

/// Runs `selectchat ctl --control PATH ARGS`.
fn ctl(control: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["ctl", "--control", control])
        .args(args)
        .output()
        .expect("run selectchat ctl")
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "ctl failed: {out:?}");
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn ctl_reads_stats_and_who_kicks_notices_and_drains() {
    let dir = TempDir::new();
    let control = dir.file("ctl.sock");
    let mut s = Server::start(&["--control", &control]);
    let mode = std::fs::metadata(&control).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the control socket is its owner's alone"
    );

    let mut alice = s.login("alice");
    let mut bob = s.login("bob");
    alice.expect("INFO bob joined");
    bob.send("TOKEN");
    let token = bob.line().strip_prefix("TOKEN ").unwrap().to_string();

    let stats = stdout(&ctl(&control, &["stats"]));
    assert!(
        stats.contains("connections 2 (2 users, 0 anonymous"),
        "{stats}"
    );
    assert!(stats.contains("health      ok"), "{stats}");

    let who = stdout(&ctl(&control, &["who"]));
    let rows: Vec<&str> = who.lines().collect();
    assert_eq!(rows[0], "2 users on this server", "{who}");
    assert!(
        rows[1].starts_with("alice ") && rows[1].contains("127.0.0.1:"),
        "{who}"
    );
    assert!(
        rows[1].contains(" plain ") && rows[1].contains(" since 20"),
        "{who}"
    );
    assert!(rows[2].starts_with("bob "), "{who}");

    let out = stdout(&ctl(&control, &["notice", "back in a minute"]));
    assert_eq!(out, "told 2 users\n");
    alice.expect("NOTICE back in a minute");
    bob.expect("NOTICE back in a minute");

    let out = stdout(&ctl(&control, &["kick", "BOB", "spamming the lobby"]));
    assert_eq!(out, "kicked bob\n");
    bob.expect("NOTICE spamming the lobby");
    bob.expect("BYE kicked");
    bob.expect_closed();
    alice.expect("INFO bob disconnected");
    // A kicked session cannot be taken back.
    let mut again = s.connect();
    again.send(&format!("RESUME bob {token}"));
    again.expect("ERR bad-token");

    let out = ctl(&control, &["kick", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: no user nobody on this server\n"
    );
    let out = ctl(&control, &["reboot"]);
    assert_eq!(out.status.code(), Some(2), "refused before it is sent");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown command"));

    let out = stdout(&ctl(&control, &["drain"]));
    assert!(
        out.starts_with("draining: 1 users get BYE restarting"),
        "{out}"
    );
    again.expect("BYE restarting");
    alice.expect("BYE restarting");
    alice.expect_closed();
    assert!(s.wait_exit().success(), "a drain ends in a clean exit");
    assert!(
        !Path::new(&control).exists(),
        "the socket is removed at exit"
    );
}

#[test]
fn a_busy_control_socket_is_not_taken_over() {
    let dir = TempDir::new();
    let control = dir.file("ctl.sock");
    let _first = Server::start(&["--control", &control]);
    let out = Command::new(BIN)
        .args([
            "--host",
            "127.0.0.1",
            "--db",
            ":memory:",
            "--control",
            &control,
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another server answers there"),
        "{out:?}"
    );
    assert!(stdout(&ctl(&control, &["stats"])).contains("connections 0"));
}

/// Reads lines until the connection closes; returns them and when the
/// `BYE` came.
fn until_closed(c: &mut Client) -> (Vec<String>, Option<Instant>) {
    let mut lines = Vec::new();
    let mut bye_at = None;
    loop {
        match c.read_within(WAIT) {
            Read1::Line(line) => {
                if line.starts_with("BYE") {
                    bye_at = Some(Instant::now());
                }
                lines.push(line);
            }
            Read1::Eof => return (lines, bye_at),
            other => panic!("{other:?} after {lines:?}"),
        }
    }
}

#[test]
fn sigusr2_drains_users_over_the_drain_window_in_silence() {
    let mut s = Server::start(&["--drain", "1"]);
    let mut users: Vec<Client> = (0..10).map(|i| s.login(&format!("u{i}"))).collect();
    for (i, u) in users.iter_mut().enumerate() {
        for j in i + 1..10 {
            u.expect(&format!("INFO u{j} joined"));
        }
    }
    let mut anonymous = s.connect();
    s.signal(libc::SIGUSR2);
    let (lines, _) = until_closed(&mut anonymous);
    assert_eq!(
        lines,
        ["BYE restarting"],
        "anonymous connections go at once"
    );
    assert!(
        TcpStream::connect_timeout(&s.addr, WAIT).is_err(),
        "no accepts once the drain begins"
    );
    let handles: Vec<_> = users
        .into_iter()
        .map(|mut u| std::thread::spawn(move || until_closed(&mut u)))
        .collect();
    let mut byes = Vec::new();
    for handle in handles {
        let (lines, bye_at) = handle.join().unwrap();
        assert_eq!(lines, ["BYE restarting"], "told nothing but the BYE");
        byes.push(bye_at.unwrap());
    }
    byes.sort();
    let spread = byes[9] - byes[0];
    assert!(
        spread >= Duration::from_millis(500),
        "ten closes over 1 s came within {spread:?}"
    );
    assert!(s.wait_exit().success());
}

#[test]
fn sigterm_during_a_drain_finishes_it_at_once() {
    let mut s = Server::start(&["--drain", "60"]);
    let mut users: Vec<Client> = (0..5).map(|i| s.login(&format!("u{i}"))).collect();
    for u in &mut users {
        u.sync();
    }
    s.signal(libc::SIGUSR2);
    // The first login is told at once; the rest would wait for a minute.
    users[0].expect("BYE restarting");
    users[0].expect_closed();
    s.signal(libc::SIGTERM);
    for u in &mut users {
        let (lines, _) = until_closed(u);
        assert!(
            lines
                .iter()
                .all(|l| l == "BYE restarting" || l.starts_with("INFO u")),
            "{lines:?}"
        );
    }
    assert!(s.wait_exit().success());
}

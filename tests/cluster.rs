//! Several nodes and NATS on loopback, started and killed by the tests:
//! users on different nodes see one chat (names, rooms, ids, history),
//! and a node's death, a restart of everything, or the loss of one NATS
//! server costs nobody what the cluster acknowledged.

mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::nats::Nats;
use common::{Client, Read1, Server, WAIT};

/// The nodes' `--cluster-timeout`, in seconds.
const TIMEOUT: u64 = 2;

static DIRS: AtomicU32 = AtomicU32::new(0);

/// A directory for node databases, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let n = DIRS.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("selectchat-cluster-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn db(&self, node: &str) -> String {
        self.0.join(format!("{node}.db")).to_str().unwrap().into()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts node `name` of the cluster at `urls`, keeping its database at
/// `db` (in memory when `None`).
fn node(urls: &str, name: &str, db: Option<&str>) -> Server {
    node_with(urls, name, db, &[])
}

/// [`node`] with more flags.
fn node_with(urls: &str, name: &str, db: Option<&str>, extra: &[&str]) -> Server {
    let timeout = TIMEOUT.to_string();
    let mut args = vec![
        "--cluster",
        urls,
        "--node",
        name,
        "--cluster-timeout",
        &timeout,
    ];
    if let Some(db) = db {
        args.extend(["--db", db]);
    }
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// How long the cluster may take to settle after one of NATS's servers
/// is lost or comes back: JetStream elects new leaders and the restarted
/// server catches its replicas up before a node connected to it sees the
/// log again, which has taken more than `WAIT` on this machine's two
/// shared cores.
const SETTLE: Duration = Duration::from_secs(30);

/// Reads `c` until `want` (or a line `until` accepts) comes, for at most
/// `limit`; returns the line.
fn line_within(c: &mut Client, limit: Duration, until: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + limit;
    loop {
        match c.read_within(deadline.saturating_duration_since(Instant::now())) {
            Read1::Line(line) if until(&line) => return line,
            Read1::Line(_) => {}
            other => panic!("{other:?} before the line waited for"),
        }
    }
}

/// Kills a node at once (`kill -9`) and waits for it to be gone.
fn kill(mut server: Server) {
    server.signal(libc::SIGKILL);
    server.wait_exit();
}

/// The id of a `SAY <room> <id> ...` or `SENT <room> <id>` line.
fn id_of(line: &str) -> u64 {
    line.split(' ')
        .nth(2)
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no id in {line:?}"))
}

#[test]
fn users_on_three_nodes_share_rooms_ids_order_the_lobby_and_dms() {
    let nats = Nats::start();
    let url = nats.url();
    let nodes: Vec<Server> = ["a", "b", "c"]
        .iter()
        .map(|n| node(&url, n, None))
        .collect();
    let mut users: Vec<Client> = ["amy", "bo", "cy"]
        .iter()
        .zip(&nodes)
        .map(|(name, node)| node.login(name))
        .collect();
    for (i, user) in users.iter_mut().enumerate() {
        user.send("JOIN #Mix");
        user.wait_for(&format!("JOINED #Mix {}", i + 1));
    }
    // Ten SAYs from each, interleaved; all wait for nothing.
    let per_user = 10;
    for round in 0..per_user {
        for (i, user) in users.iter_mut().enumerate() {
            user.send(&format!("SAY #mix {i}:{round}"));
        }
    }
    let mut seen: Vec<Vec<(u64, String)>> = Vec::new();
    for (i, user) in users.iter_mut().enumerate() {
        let mut lines = Vec::new();
        let mut sent = Vec::new();
        while lines.len() < 2 * per_user || sent.len() < per_user {
            let line = user.line();
            if line.starts_with("SAY #Mix ") {
                assert!(!line.ends_with(&format!(" {i}:0")), "no echo: {line}");
                lines.push((id_of(&line), line));
            } else if line.starts_with("SENT #Mix ") {
                sent.push(id_of(&line));
            }
        }
        assert!(
            sent.windows(2).all(|w| w[0] < w[1]),
            "own ids grow: {sent:?}"
        );
        seen.push(lines);
    }
    for lines in &seen {
        assert!(
            lines.windows(2).all(|w| w[0].0 < w[1].0),
            "one order: {lines:?}"
        );
    }
    // Each pair of receivers agrees on the ids of what both received.
    let ids = |lines: &[(u64, String)], from: &str| -> Vec<u64> {
        lines
            .iter()
            .filter(|(_, l)| l.split(' ').nth(3) == Some(from))
            .map(|&(id, _)| id)
            .collect()
    };
    assert_eq!(ids(&seen[1], "amy"), ids(&seen[2], "amy"));
    assert_eq!(ids(&seen[0], "bo"), ids(&seen[2], "bo"));
    assert_eq!(ids(&seen[0], "cy"), ids(&seen[1], "cy"));
    // Lobby, DMs, WHO and counts span the nodes.
    users[0].send("MSG hello all");
    users[1].wait_for("MSG amy hello all");
    users[2].wait_for("MSG amy hello all");
    users[2].send("DM AMY psst");
    users[0].wait_for("DM cy psst");
    users[1].send("WHO");
    users[1].wait_for("USER amy");
    users[1].expect("USER bo");
    users[1].expect("USER cy");
    users[1].send("WHO #mix");
    users[1].wait_for("USER amy");
    users[1].expect("USER bo");
    users[1].expect("USER cy");
    users[1].expect("END WHO #Mix");
    users[2].send("PART #mix");
    users[2].wait_for("PARTED #Mix");
    users[0].wait_for("INFO #Mix cy left");
    users[0].send("ROOMS");
    users[0].wait_for("ROOM #Mix 2");
    users[1].send("QUIT");
    users[0].wait_for("INFO #Mix bo left");
    users[0].wait_for("INFO bo disconnected");
    // The name is free again on a node that has seen it leave.
    nodes[0].login("BO");
}

#[test]
fn two_hundred_logins_of_one_name_on_two_nodes_get_exactly_one_ok() {
    let nats = Nats::start();
    let url = nats.url();
    let nodes = [node(&url, "a", None), node(&url, "b", None)];
    for round in 0..3 {
        let name = format!("dup{round}");
        let barrier = Arc::new(Barrier::new(200));
        let answers: Vec<(String, Client)> = thread::scope(|s| {
            let tries: Vec<_> = (0..200)
                .map(|i| {
                    let (addr, barrier, name) = (nodes[i % 2].addr, barrier.clone(), &name);
                    s.spawn(move || {
                        let mut c = Client::connect(addr);
                        barrier.wait();
                        c.send(&format!("LOGIN {name}"));
                        (c.line(), c)
                    })
                })
                .collect();
            tries.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let oks: Vec<&(String, Client)> = answers.iter().filter(|(l, _)| l == "OK").collect();
        assert_eq!(
            oks.len(),
            1,
            "round {round}: {:?}",
            answers.iter().map(|a| &a.0).collect::<HashSet<_>>()
        );
        assert!(answers
            .iter()
            .all(|(l, _)| l == "OK" || l == "ERR username-taken"));
        let mut answers = answers;
        let winner = answers.iter().position(|(l, _)| l == "OK").unwrap();
        let (_, mut c) = answers.swap_remove(winner);
        c.send("QUIT");
        c.expect("BYE");
        // Free again once the departure is through: a retry gets it.
        let mut again = nodes[round % 2].connect();
        let got = common::wait_until(WAIT, || {
            again.send(&format!("LOGIN {name}"));
            again.line() == "OK"
        });
        assert!(got.is_some(), "round {round}: the name stayed taken");
    }
}

#[test]
fn a_killed_node_departs_its_users_on_the_others_and_catches_up_on_restart() {
    let nats = Nats::start();
    let url = nats.url();
    let dir = Dir::new();
    let b = node(&url, "b", Some(&dir.db("b")));
    let a = node(&url, "a", Some(&dir.db("a")));
    let mut watcher = b.login("watcher");
    watcher.send("JOIN #r");
    watcher.wait_for("JOINED #r 1");
    let mut doomed: Vec<Client> = (0..3).map(|i| a.login(&format!("doomed{i}"))).collect();
    for (i, c) in doomed.iter_mut().enumerate() {
        c.send("JOIN #r");
        c.wait_for(&format!("JOINED #r {}", i + 2));
    }
    watcher.wait_for("INFO #r doomed2 joined");
    kill(a);
    let killed = Instant::now();
    let mut departed = HashSet::new();
    while departed.len() < 3 {
        match watcher.read_within(Duration::from_secs(TIMEOUT + 5)) {
            Read1::Line(line) => {
                if let Some(name) = line
                    .strip_prefix("INFO ")
                    .and_then(|l| l.strip_suffix(" disconnected"))
                {
                    departed.insert(name.to_string());
                }
            }
            other => panic!("departures did not come: {other:?}; {departed:?}"),
        }
    }
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_secs(TIMEOUT + 2),
        "departures took {took:?}, timeout {TIMEOUT} s"
    );
    // Names free, counts right.
    let mut again = b.login("doomed0");
    watcher.wait_for("INFO doomed0 joined");
    watcher.send("WHO #r");
    watcher.expect("USER watcher");
    watcher.expect("END WHO #r");
    watcher.send("SAY #r while a was away");
    let said = id_of(&watcher.wait_line(|l| l.starts_with("SENT #r ")));
    // The node comes back, replays the log, and serves the same chat.
    let a = node(&url, "a", Some(&dir.db("a")));
    let mut back = a.login("back");
    back.send("WHO");
    back.expect("USER back");
    back.expect("USER doomed0");
    back.expect("USER watcher");
    back.send("JOIN #r");
    back.wait_for("JOINED #r 2");
    back.send("HISTORY #r 1");
    let hist = back.line();
    assert!(
        hist.starts_with(&format!("HIST #r {said} ")) && hist.ends_with("watcher while a was away"),
        "{hist}"
    );
    again.send("QUIT");
}

#[test]
fn history_is_whole_and_identical_on_every_node_after_killing_everything() {
    let mut nats = Nats::start();
    let url = nats.url();
    let dir = Dir::new();
    let names = ["a", "b", "c"];
    let nodes: Vec<Server> = names
        .iter()
        .map(|n| node(&url, n, Some(&dir.db(n))))
        .collect();
    let mut users: Vec<Client> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| n.login(&format!("u{i}")))
        .collect();
    for user in users.iter_mut() {
        user.send("JOIN #log");
        user.wait_line(|l| l.starts_with("JOINED #log "));
    }
    for i in 0..200 {
        let user = &mut users[i % 3];
        user.send(&format!("SAY #log m{i}"));
        user.wait_line(|l| l.starts_with("SENT #log "));
    }
    drop(users);
    for n in nodes {
        kill(n);
    }
    nats.restart();
    let nodes: Vec<Server> = names
        .iter()
        .map(|n| node(&url, n, Some(&dir.db(n))))
        .collect();
    let mut histories = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let mut c = n.login(&format!("reader{i}"));
        c.send("JOIN #log");
        c.wait_line(|l| l.starts_with("JOINED #log "));
        c.send("HISTORY #log 500");
        let mut lines = Vec::new();
        loop {
            let line = c.line();
            if line == "END HISTORY #log" {
                break;
            }
            // The stored time differs in nothing but must be there.
            lines.push(line);
        }
        histories.push(lines);
    }
    assert_eq!(
        histories[0].len(),
        200,
        "{:?}",
        &histories[0][..5.min(histories[0].len())]
    );
    assert_eq!(histories[0], histories[1]);
    assert_eq!(histories[0], histories[2]);
    let texts: HashSet<String> = histories[0]
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(texts.len(), 200, "every message once");
}

#[test]
fn losing_one_server_of_a_three_server_nats_cluster_loses_nothing_acknowledged() {
    let mut servers = Nats::start_cluster();
    let urls: Vec<String> = servers.iter().map(Nats::url).collect();
    let urls = urls.join(",");
    let start = |name: &str| {
        Server::start(&[
            "--cluster",
            &urls,
            "--node",
            name,
            "--cluster-replicas",
            "3",
            "--cluster-timeout",
            "5",
            "-v",
        ])
    };
    let (a, b) = (start("a"), start("b"));
    let mut amy = a.login("amy");
    let mut bo = b.login("bo");
    for c in [&mut amy, &mut bo] {
        c.send("JOIN #ha");
        c.wait_line(|l| l.starts_with("JOINED #ha "));
    }
    // Each SAY is answered, SENT or an error; the SENT ones must survive.
    let mut sent = Vec::new();
    // A failover may hold the log back for two of NATS's 5 s consumer
    // heartbeats, so an answer may take longer than the usual wait.
    let say = |c: &mut Client, i: usize, sent: &mut Vec<String>| {
        c.send(&format!("SAY #ha m{i}"));
        loop {
            match c.read_within(WAIT * 3) {
                Read1::Line(l) if l.starts_with("SENT #ha ") => {
                    sent.push(format!("m{i}"));
                    return;
                }
                Read1::Line(l) if l.starts_with("ERR ") => return,
                Read1::Line(_) => {}
                other => panic!(
                    "SAY m{i} got no answer: {other:?}; logs:\n{}\n{}",
                    a.log(),
                    b.log()
                ),
            }
        }
    };
    for i in 0..30 {
        say(if i % 2 == 0 { &mut amy } else { &mut bo }, i, &mut sent);
    }
    servers[0].kill();
    for i in 30..60 {
        say(if i % 2 == 0 { &mut amy } else { &mut bo }, i, &mut sent);
    }
    // The chat goes on: a SAY is taken again within a bounded wait.
    let mut i = 60;
    let back = common::wait_until(WAIT * 2, || {
        let before = sent.len();
        say(&mut amy, i, &mut sent);
        i += 1;
        sent.len() > before
    });
    assert!(
        back.is_some(),
        "no SAY was taken after the NATS server died"
    );
    // Once bo has it, every acknowledged message is on both nodes.
    let last = sent.last().expect("some SAY was taken").clone();
    bo.wait_line(|l| l.ends_with(&format!(" amy {last}")));
    for (c, node) in [(&mut amy, &a), (&mut bo, &b)] {
        c.send("HISTORY #ha 500");
        let mut texts = HashSet::new();
        loop {
            let line = c.line();
            if line == "END HISTORY #ha" {
                break;
            }
            if let Some(text) = line
                .strip_prefix("HIST #ha ")
                .and_then(|l| l.rsplit(' ').next())
            {
                texts.insert(text.to_string());
            }
        }
        let lost: Vec<&String> = sent.iter().filter(|m| !texts.contains(*m)).collect();
        assert!(
            lost.is_empty(),
            "acknowledged and lost: {lost:?}; log:\n{}",
            node.log()
        );
    }
}

#[test]
fn resume_on_one_node_takes_over_a_session_held_or_ended_on_another() {
    let nats = Nats::start();
    let url = nats.url();
    let (a, b) = (node(&url, "a", None), node(&url, "b", None));
    let mut watcher = a.login("watcher");
    watcher.send("JOIN #r");
    watcher.wait_for("JOINED #r 1");
    let mut ghost = b.login("amy");
    ghost.send("JOIN #r");
    ghost.wait_for("JOINED #r 2");
    ghost.send("TOKEN");
    let token = ghost
        .wait_line(|l| l.starts_with("TOKEN "))
        .replace("TOKEN ", "");
    watcher.wait_for("INFO #r amy joined");
    ghost.send("SAY #r/t1 tagged on b");
    let said = id_of(&ghost.wait_line(|l| l.starts_with("SENT #r ")));
    watcher.wait_line(|l| l.ends_with(" amy tagged on b"));
    // A ghost still connected to b: taken over from a, in silence.
    let mut back = a.connect();
    back.send(&format!("RESUME amy {token}"));
    back.expect("OK");
    back.expect("JOINED #r 2");
    ghost.wait_for("BYE replaced");
    // Its tags came along: a line resent under one is not said again.
    back.send("SAY #r/t1 tagged on b");
    back.expect(&format!("SENT #r {said}"));
    watcher.send("SAY #r still here?");
    back.wait_line(|l| l.ends_with(" watcher still here?"));
    let next = watcher.line();
    assert!(
        next.starts_with("SENT #r "),
        "nobody is told of the takeover: {next}"
    );
    back.send("DM watcher yes");
    watcher.expect("DM amy yes");
    // A session that ended on a (the connection dropped): resumed on b.
    back.send("TOKEN");
    let token = back
        .wait_line(|l| l.starts_with("TOKEN "))
        .replace("TOKEN ", "");
    drop(back);
    watcher.wait_for("INFO #r amy left");
    watcher.wait_for("INFO amy disconnected");
    let mut again = b.connect();
    again.send(&format!("RESUME amy {token}"));
    again.expect("OK");
    again.wait_for("JOINED #r 2");
    watcher.wait_for("INFO amy joined");
    watcher.wait_for("INFO #r amy joined");
    again.send("SAY #r/t1 tagged on b");
    again.expect(&format!("SENT #r {said}"));
    // A wrong token is refused, wherever asked.
    let mut thief = a.connect();
    thief.send(&format!("RESUME amy {}", "0".repeat(32)));
    thief.expect("ERR bad-token");
    thief.send("RESUME nobody 00000000000000000000000000000000");
    thief.expect("ERR bad-token");
    watcher.send("WHO #r");
    watcher.expect("USER amy");
    watcher.expect("USER watcher");
    watcher.expect("END WHO #r");
}

#[test]
fn without_nats_commands_get_errors_then_users_are_cut_off_and_the_node_comes_back() {
    let mut nats = Nats::start();
    let url = nats.url();
    let a = node_with(&url, "a", None, &["--metrics-port", "0"]);
    let metrics = a.listener("metrics");
    assert_eq!(
        common::http(metrics, "GET", "/healthz"),
        (200, "ok\n".into())
    );
    let mut amy = a.login("amy");
    amy.send("JOIN #r");
    amy.wait_for("JOINED #r 1");
    amy.send("TOKEN");
    let token = amy
        .wait_line(|l| l.starts_with("TOKEN "))
        .replace("TOKEN ", "");
    nats.kill();
    amy.send("SAY #r into the void");
    amy.expect("ERR storage-unavailable");
    amy.send("MSG anyone?");
    amy.expect("ERR cluster-unavailable");
    let mut late = a.connect();
    late.send("LOGIN bob");
    late.expect("ERR cluster-unavailable");
    // Past the timeout the node closes its users, so their clients can
    // go to a node that still has the cluster.
    amy.expect("BYE cut-off");
    assert_eq!(
        common::http(metrics, "GET", "/healthz"),
        (503, "cut off from the cluster\n".into())
    );
    nats.restart();
    let mut back = None;
    let came_back = common::wait_until(WAIT * 2, || {
        let mut c = a.connect();
        c.send(&format!("RESUME amy {token}"));
        let ok = c.line() == "OK";
        back = Some(c);
        ok
    });
    assert!(
        came_back.is_some(),
        "the node did not come back; log:\n{}",
        a.log()
    );
    let mut back = back.unwrap();
    back.wait_for("JOINED #r 1");
    back.send("SAY #r back");
    back.wait_line(|l| l.starts_with("SENT #r "));
    // Healthy again once the node hears its own heartbeat.
    let healthy = common::wait_until(WAIT, || {
        common::http(metrics, "GET", "/healthz") == (200, "ok\n".into())
    });
    assert!(healthy.is_some(), "/healthz stayed 503; log:\n{}", a.log());
}

#[test]
fn a_node_declared_dead_while_cut_off_comes_back_as_a_new_incarnation() {
    let mut servers = Nats::start_cluster();
    let start = |name: &str, url: &str| {
        Server::start(&[
            "--cluster",
            url,
            "--node",
            name,
            "--cluster-replicas",
            "3",
            "--cluster-timeout",
            "2",
        ])
    };
    // a reaches NATS through s0 only; b through the other two.
    let a = start("a", &servers[0].url());
    let b = start("b", &format!("{},{}", servers[1].url(), servers[2].url()));
    let mut amy = a.login("amy");
    let mut bo = b.login("bo");
    amy.wait_for("INFO bo joined");
    servers[0].kill();
    amy.expect("BYE cut-off");
    line_within(&mut bo, SETTLE, |l| l == "INFO amy disconnected");
    servers[0].restart();
    // a comes back: a login there is seen on b, and a name it held is free.
    let (mut cy, mut last) = (None, String::new());
    // Until a sees the log again, a LOGIN there waits for its arrival to
    // come back through it, or is refused.
    let back = common::wait_until(SETTLE, || {
        let mut c = a.connect();
        c.send("LOGIN cy");
        last = match c.read_within(SETTLE) {
            Read1::Line(line) => line,
            other => format!("{other:?}"),
        };
        cy = Some(c);
        last == "OK"
    });
    assert!(
        back.is_some(),
        "a did not come back ({last}); log:\n{}",
        a.log()
    );
    let seen = line_within(&mut bo, SETTLE, |l| {
        l == "INFO cy joined" || l.starts_with("BYE")
    });
    assert_eq!(
        seen,
        "INFO cy joined",
        "b log:\n{}\na log:\n{}",
        b.log(),
        a.log()
    );
    b.login("amy");
    // Killed now, the new incarnation is buried like any other.
    kill(a);
    bo.wait_for("INFO cy disconnected");
    b.login("cy");
}

/// Sends a line that logs a registered name in, and checks `OK` and an
/// empty list of unread conversations.
fn enter(c: &mut Client, line: &str) {
    c.send(line);
    c.expect("OK");
    c.expect("END UNREAD");
}

#[test]
fn accounts_conversations_and_invite_only_rooms_span_the_nodes() {
    let nats = Nats::start();
    let url = nats.url();
    let dir = Dir::new();
    let a = node(&url, "a", Some(&dir.db("a")));
    let b = node(&url, "b", Some(&dir.db("b")));
    let mut alice = a.connect();
    enter(&mut alice, "REGISTER alice password1");
    let mut bob = b.connect();
    enter(&mut bob, "REGISTER bob password2");
    // alice's name is an account on b as well.
    let mut carol = b.connect();
    carol.send("REGISTER alice password9");
    carol.expect("ERR username-taken");
    carol.send("LOGIN carol");
    carol.expect("OK");

    // A conversation across nodes, live, then while bob is away.
    alice.send("SAY @bob hello bob");
    let first = id_of(&alice.wait_line(|l| l.starts_with("SENT @bob ")));
    bob.wait_for(&format!("SAY @alice {first} alice hello bob"));
    bob.send(&format!("READ @alice {first}"));
    bob.send("QUIT");
    alice.wait_for("INFO bob disconnected");
    alice.send("SAY @bob while you were away");
    let second = id_of(&alice.wait_line(|l| l.starts_with("SENT @bob ")));
    let mut bob = b.connect();
    bob.send("LOGIN bob password2");
    bob.expect("OK");
    bob.expect(&format!("UNREAD @alice 1 {first}"));
    bob.expect("END UNREAD");
    bob.send("HISTORY @alice 10");
    let hist = bob.wait_line(|l| l.starts_with("HIST @alice "));
    assert!(hist.ends_with("alice hello bob"), "{hist}");
    let hist = bob.line();
    assert!(
        hist.starts_with(&format!("HIST @alice {second} ")),
        "{hist}"
    );

    // An invite-only room made on a, kept to its members on b.
    alice.send("JOIN #team invite-only");
    alice.wait_for("JOINED #team 1");
    carol.send("JOIN #team");
    carol.wait_for("ERR not-invited");
    carol.send("ROOMS");
    assert_eq!(carol.wait_line(|l| l.contains("ROOM")), "END ROOMS");
    alice.send("INVITE #team bob");
    alice.wait_for("INVITED #team bob");
    bob.wait_for("INVITE #team alice");
    bob.send("JOIN #team");
    bob.expect("JOINED #team 2");
    alice.send("SAY #team members only");
    bob.wait_line(|l| l.ends_with(" alice members only"));
    alice.send("REMOVE #team bob");
    alice.wait_for("REMOVED #team bob");
    bob.wait_for("PARTED #team");
    bob.send("JOIN #team");
    bob.expect("ERR not-invited");

    // A new password counts on every node.
    alice.send("PASSWORD password1 password3");
    alice.wait_for("OK");
    alice.send("QUIT");
    carol.wait_for("INFO alice disconnected");
    let mut again = b.connect();
    again.send("LOGIN alice password1");
    again.expect("ERR bad-password");
    enter(&mut again, "LOGIN alice password3");
    again.send("QUIT");

    // b restarts: its accounts, conversations and memberships are back.
    kill(b);
    let b = node(&url, "b", Some(&dir.db("b")));
    let mut bob = b.connect();
    // The killed incarnation holds bob's name until it is declared dead.
    let back = Instant::now() + Duration::from_secs(TIMEOUT + 5);
    loop {
        bob.send("LOGIN bob password2");
        match bob.line().as_str() {
            "OK" => break,
            "ERR username-taken" if Instant::now() < back => {
                thread::sleep(Duration::from_millis(200))
            }
            other => panic!("LOGIN bob after the restart: {other}"),
        }
    }
    bob.expect(&format!("UNREAD @alice 1 {first}"));
    bob.expect("END UNREAD");
    bob.send("JOIN #team");
    bob.expect("ERR not-invited");
    let mut dave = b.connect();
    dave.send("LOGIN alice");
    dave.expect("ERR password-required");
}

#[test]
fn registrations_of_one_name_on_two_nodes_make_one_account() {
    let nats = Nats::start();
    let url = nats.url();
    let nodes = [node(&url, "a", None), node(&url, "b", None)];
    let tries = 8;
    let barrier = Arc::new(Barrier::new(tries));
    let answers: Vec<(usize, String)> = thread::scope(|s| {
        let tries: Vec<_> = (0..tries)
            .map(|i| {
                let (addr, barrier) = (nodes[i % 2].addr, barrier.clone());
                s.spawn(move || {
                    let mut c = Client::connect(addr);
                    barrier.wait();
                    c.send(&format!("REGISTER zoe password-{i}"));
                    (i, c.line())
                })
            })
            .collect();
        tries.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let oks: Vec<usize> = answers
        .iter()
        .filter(|(_, l)| l == "OK")
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(oks.len(), 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(_, l)| l == "OK" || l == "ERR username-taken"),
        "{answers:?}"
    );
    // One account, with the winner's password, on both nodes (once the
    // winner's connection, closed with its thread, has departed).
    let winner = oks[0];
    let wrong = (winner + 1) % tries;
    for (n, node) in nodes.iter().enumerate() {
        let mut c = node.connect();
        let refused = common::wait_until(WAIT, || {
            c.send(&format!("LOGIN zoe password-{wrong}"));
            c.line() == "ERR bad-password"
        });
        assert!(
            refused.is_some(),
            "node {n}: the wrong password never refused"
        );
    }
    let mut c = nodes[1 - winner % 2].connect();
    c.send(&format!("LOGIN zoe password-{winner}"));
    c.expect("OK");
}

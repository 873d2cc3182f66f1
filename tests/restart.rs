//! Sessions that outlive the process, against the real binary: users with
//! tokens and rooms, a server stopped (SIGTERM, kill -9, a SIGUSR2
//! drain) and started again on the same database, and every user taking
//! its session back with RESUME, in silence; a session nobody takes
//! back departs with the usual lines when its window passes.

mod common;

use common::{Client, Server, TempDir};

/// Logs `name` in, asks for a token, joins `rooms` and says something in
/// the first, so that all of it is committed: returns the client, its
/// token and the id of what it said.
fn user(s: &Server, name: &str, rooms: &[&str]) -> (Client, String, u64) {
    let mut c = s.login(name);
    c.send("TOKEN");
    let token = c
        .line()
        .strip_prefix("TOKEN ")
        .expect("a token")
        .to_string();
    for room in rooms {
        c.send(&format!("JOIN {room}"));
        assert!(c.line().starts_with(&format!("JOINED {room} ")));
    }
    c.send(&format!("SAY {} {name} was here", rooms[0]));
    // The session's writes went to the store before this message, in
    // order: once it is committed, so are they.
    let id = c
        .wait_line(|l| l.starts_with("SENT "))
        .rsplit(' ')
        .next()
        .and_then(|id| id.parse().ok())
        .expect("a SENT id");
    c.sync();
    (c, token, id)
}

/// Stops the server the way `how` says and waits for it to be gone.
fn stop(mut s: Server, how: i32, users: &mut [&mut Client]) {
    s.signal(how);
    for c in users.iter_mut() {
        let last = c.drain_to_close();
        match how {
            libc::SIGTERM => assert_eq!(last, ["BYE shutting-down"], "v1's shutdown, unchanged"),
            libc::SIGUSR2 => assert_eq!(last, ["BYE restarting"]),
            _ => assert!(last.is_empty(), "{last:?}"),
        }
    }
    s.wait_exit();
}

#[test]
fn sessions_survive_a_stop_a_crash_and_a_drain_and_come_back_in_silence() {
    let dir = TempDir::new();
    let db = dir.file("chat.db");
    let args = ["--db", db.as_str(), "--drain", "0.2"];
    let s = Server::start(&args);
    let (mut alice, alice_token, _) = user(&s, "alice", &["#a", "#b"]);
    let (mut bob, bob_token, mut seen) = user(&s, "bob", &["#a"]);
    alice.sync();
    let mut s = s;
    for how in [libc::SIGTERM, libc::SIGKILL, libc::SIGUSR2] {
        stop(s, how, &mut [&mut alice, &mut bob]);
        s = Server::start(&args);
        // Someone who stayed out of it: the held users are there.
        let mut carol = s.login("carol");
        carol.send("JOIN #a");
        assert_eq!(
            carol.line(),
            "JOINED #a 3",
            "alice and bob are held ({how})"
        );
        let mut other = s.connect();
        other.send("LOGIN bob");
        other.expect("ERR username-taken");
        carol.send("SAY #a while you were out");
        let said = carol.wait_line(|l| l.starts_with("SENT #a "));
        let said: u64 = said.rsplit(' ').next().unwrap().parse().unwrap();

        alice = s.connect();
        alice.send(&format!("RESUME alice {alice_token}"));
        alice.expect("OK");
        alice.expect("JOINED #a 3");
        alice.expect("JOINED #b 1");
        bob = s.connect();
        bob.send(&format!("RESUME bob {bob_token}"));
        bob.expect("OK");
        bob.expect("JOINED #a 3");
        // What bob missed, once, by the id he last saw.
        bob.send(&format!("HISTORY #a AFTER {seen}"));
        assert!(
            bob.line().ends_with(" carol while you were out"),
            "the message said meanwhile"
        );
        bob.expect("END HISTORY #a");
        seen = said;
        assert_eq!(
            carol.sync(),
            Vec::<String>::new(),
            "no INFO to anyone ({how})"
        );
        carol.send("QUIT");
        carol.expect("BYE");
        for c in [&mut alice, &mut bob] {
            c.expect("INFO #a carol left");
            c.expect("INFO carol disconnected");
        }
        alice.sync();
        bob.sync();
    }
}

#[test]
fn a_held_session_nobody_takes_back_departs_when_its_window_passes() {
    let dir = TempDir::new();
    let db = dir.file("chat.db");
    let args = ["--db", db.as_str(), "--resume-window", "1"];
    let s = Server::start(&args);
    let (mut alice, _, _) = user(&s, "alice", &["#a"]);
    stop(s, libc::SIGTERM, &mut [&mut alice]);
    let s = Server::start(&args);
    let mut carol = s.login("carol");
    carol.send("JOIN #a");
    carol.expect("JOINED #a 2");
    carol.expect("INFO #a alice left");
    carol.expect("INFO alice disconnected");
    let mut again = s.connect();
    again.send("LOGIN alice");
    again.expect("OK");
}

#[test]
fn an_operator_sees_held_sessions_and_can_end_one() {
    let dir = TempDir::new();
    let db = dir.file("chat.db");
    let control = dir.file("ctl.sock");
    let args = ["--db", db.as_str(), "--control", control.as_str()];
    let s = Server::start(&args);
    let (mut alice, token, _) = user(&s, "alice", &["#a"]);
    stop(s, libc::SIGKILL, &mut [&mut alice]);
    let s = Server::start(&args);
    let mut carol = s.login("carol");
    carol.send("JOIN #a");
    carol.expect("JOINED #a 2");
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new(common::BIN)
            .args(["ctl", "--control", control.as_str()])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let who = ctl(&["who"]);
    assert!(who.starts_with("2 users on this server\n"), "{who}");
    assert!(
        who.lines()
            .any(|l| l.starts_with("alice ") && l.ends_with("held for RESUME since the restart")),
        "{who}"
    );
    assert_eq!(ctl(&["kick", "alice"]), "ended alice's held session\n");
    carol.expect("INFO #a alice left");
    carol.expect("INFO alice disconnected");
    let mut back = s.connect();
    back.send(&format!("RESUME alice {token}"));
    back.expect("ERR bad-token");
}

#[test]
fn a_tagged_say_committed_before_a_crash_is_not_said_again() {
    let dir = TempDir::new();
    let db = dir.file("chat.db");
    let args = ["--db", db.as_str()];
    let s = Server::start(&args);
    let (mut alice, token, _) = user(&s, "alice", &["#a"]);
    alice.send("SAY #a/l7 before the crash");
    let sent = alice.wait_line(|l| l.starts_with("SENT #a "));
    stop(s, libc::SIGKILL, &mut [&mut alice]);
    let s = Server::start(&args);
    let mut alice = s.connect();
    alice.send(&format!("RESUME alice {token}"));
    alice.expect("OK");
    alice.expect("JOINED #a 1");
    alice.send("SAY #a/l7 before the crash");
    alice.expect(&sent);
    alice.send("HISTORY #a");
    let stored: Vec<String> = alice
        .sync()
        .into_iter()
        .filter(|l| l.ends_with(" before the crash"))
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
}

/// The scenario at size: 1,000 users in 10 rooms, a restart, and
/// every one back by RESUME with the replay form: same rooms, no join or
/// leave line anywhere, the message said meanwhile replayed exactly once.
#[test]
fn a_thousand_users_come_back_after_a_restart_without_a_join_line() {
    const USERS: usize = 1000;
    const ROOMS: usize = 10;
    let dir = TempDir::new();
    let db = dir.file("chat.db");
    let args = ["--db", db.as_str(), "--rate", "0"];
    let s = Server::start(&args);
    let mut users: Vec<Client> = (0..USERS)
        .map(|i| {
            let mut c = s.connect();
            c.send(&format!("LOGIN u{i}\nTOKEN\nJOIN #r{}", i % ROOMS));
            c
        })
        .collect();
    let tokens: Vec<String> = users
        .iter_mut()
        .map(|c| {
            let token = c.wait_line(|l| l.starts_with("TOKEN "))[6..].to_string();
            c.wait_line(|l| l.starts_with("JOINED "));
            token
        })
        .collect();
    // One message in each room; what each user saw last is its id.
    let said: Vec<u64> = users
        .iter_mut()
        .enumerate()
        .take(ROOMS)
        .map(|(r, c)| {
            c.send(&format!("SAY #r{r} hello"));
            let sent = c.wait_line(|l| l.starts_with("SENT "));
            sent.rsplit(' ').next().unwrap().parse().unwrap()
        })
        .collect();
    let last: Vec<u64> = (0..USERS).map(|i| said[i % ROOMS]).collect();
    for c in &mut users {
        c.sync();
    }
    let mut refs: Vec<&mut Client> = users.iter_mut().collect();
    stop(s, libc::SIGTERM, &mut refs);

    let s = Server::start(&args);
    let mut late = s.login("late");
    for r in 0..ROOMS {
        late.send(&format!("JOIN #r{r}"));
        assert_eq!(late.line(), format!("JOINED #r{r} {}", USERS / ROOMS + 1));
    }
    for r in 0..ROOMS {
        late.send(&format!("SAY #r{r} while you were away"));
        late.wait_line(|l| l.starts_with("SENT "));
    }
    let back: Vec<Client> = (0..USERS)
        .map(|i| {
            let mut c = s.connect();
            let room = i % ROOMS;
            c.send(&format!("RESUME u{i} {} #r{room}:{}", tokens[i], last[i]));
            c.expect("OK");
            c.expect(&format!("JOINED #r{room} {}", USERS / ROOMS + 1));
            let replayed = c.line();
            assert!(
                replayed.starts_with(&format!("HIST #r{room} "))
                    && replayed.ends_with(" late while you were away"),
                "u{i}: {replayed}"
            );
            c.expect(&format!("END HISTORY #r{room}"));
            c
        })
        .collect();
    // Everyone still connected (a client dropped here would be a departure).
    let mut everyone = back;
    everyone.push(late);
    for c in &mut everyone {
        let heard = c.sync();
        assert!(heard.is_empty(), "nothing else, no INFO: {heard:?}");
    }
}

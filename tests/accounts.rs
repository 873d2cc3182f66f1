//! Accounts against the real binary: `REGISTER`, `LOGIN` with a password,
//! `PASSWORD`, every error they answer, the limiter on wrong passwords,
//! `--accounts required`, and accounts surviving a crash. Passwords are
//! hashed with the server's real Argon2id cost, so each check takes tens
//! of milliseconds on the hasher thread.

mod common;

use std::time::Duration;

use common::{Client, Server, TempDir};

/// Sends `line` and returns the answer.
fn ask(c: &mut Client, line: &str) -> String {
    c.send(line);
    c.line()
}

/// Sends a line that logs a registered name in and checks its answer:
/// `OK`, then the list of unread conversations, empty here.
fn enter(c: &mut Client, line: &str) {
    assert_eq!(ask(c, line), "OK", "{line}");
    c.expect("END UNREAD");
}

/// A connection that registered `name` with `password` (its `OK` consumed).
fn register(s: &Server, name: &str, password: &str) -> Client {
    let mut c = s.connect();
    enter(&mut c, &format!("REGISTER {name} {password}"));
    c
}

#[test]
fn every_account_line_and_error() {
    let s = Server::start(&[]);
    let mut guest = s.login("carol");
    let mut c = s.connect();
    for (line, want) in [
        ("REGISTER alice short", "ERR invalid-password"),
        ("REGISTER alice two words", "ERR invalid-password"),
        ("REGISTER alice", "ERR invalid-password"),
        ("REGISTER al!ce password1", "ERR invalid-username"),
        ("REGISTER carol password1", "ERR username-taken"),
        ("PASSWORD password1 password2", "ERR not-logged-in"),
    ] {
        assert_eq!(ask(&mut c, line), want, "{line}");
    }
    enter(&mut c, "REGISTER Alice password1");
    guest.expect("INFO Alice joined");
    assert_eq!(
        ask(&mut c, "REGISTER bob password1"),
        "ERR already-logged-in"
    );
    assert_eq!(ask(&mut guest, "PASSWORD a b"), "ERR no-account");
    for (line, want) in [
        ("PASSWORD password1 short", "ERR invalid-password"),
        ("PASSWORD wrong-old password2", "ERR bad-password"),
        ("PASSWORD password1 password2", "OK"),
    ] {
        assert_eq!(ask(&mut c, line), want, "{line}");
    }
    c.send("QUIT");
    c.expect("BYE");

    let mut d = s.connect();
    for (line, want) in [
        ("LOGIN alice", "ERR password-required"),
        ("LOGIN ALICE password1", "ERR bad-password"),
        ("REGISTER alice password9", "ERR username-taken"),
        // v1 read these as one name with a blank in it, and still does for
        // a name with no account.
        ("LOGIN al ice", "ERR invalid-username"),
        ("LOGIN dave password1", "ERR invalid-username"),
    ] {
        assert_eq!(ask(&mut d, line), want, "{line}");
    }
    enter(&mut d, "LOGIN alice password2");
    guest.expect("INFO Alice disconnected");
    guest.expect("INFO alice joined");
}

#[test]
fn a_registered_name_stays_hers_after_her_session_expires() {
    let s = Server::start(&["--resume-window", "0.2"]);
    let mut alice = register(&s, "alice", "hunter2hunter2");
    assert!(ask(&mut alice, "TOKEN").starts_with("TOKEN "));
    alice.reset();
    let mut watcher = s.login("watcher");
    std::thread::sleep(Duration::from_millis(400));
    let mut mallory = s.connect();
    assert_eq!(ask(&mut mallory, "LOGIN alice"), "ERR password-required");
    assert_eq!(
        ask(&mut mallory, "REGISTER alice password1"),
        "ERR username-taken"
    );
    enter(&mut mallory, "LOGIN alice hunter2hunter2");
    watcher.send("WHO");
    assert!(watcher.sync().contains(&"USER alice".to_string()));
}

#[test]
fn accounts_survive_a_crash_once_ok_was_sent() {
    let dir = TempDir::new();
    let db = dir.file("chat.db");
    let args = ["--db", db.as_str()];
    let mut s = Server::start(&args);
    let mut alice = register(&s, "alice", "first-password");
    assert_eq!(
        ask(&mut alice, "PASSWORD first-password second-password"),
        "OK"
    );
    register(&s, "bob", "bobs-password");
    s.signal(libc::SIGKILL);
    s.wait_exit();

    let s = Server::start(&args);
    let mut c = s.connect();
    assert_eq!(
        ask(&mut c, "LOGIN alice first-password"),
        "ERR bad-password"
    );
    enter(&mut c, "LOGIN alice second-password");
    let mut b = s.connect();
    assert_eq!(ask(&mut b, "LOGIN bob"), "ERR password-required");
    enter(&mut b, "LOGIN bob bobs-password");
}

#[test]
fn a_server_that_requires_accounts_refuses_guests() {
    let args = [
        "--accounts",
        "required",
        "--metrics-port",
        "0",
        "--max-accounts",
        "1",
    ];
    let s = Server::start(&args);
    let mut c = s.connect();
    assert_eq!(ask(&mut c, "LOGIN guest"), "ERR account-required");
    enter(&mut c, "REGISTER member password1");
    let (status, metrics) = common::http(s.listener("metrics"), "GET", "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("\nselectchat_accounts 1\n"), "{metrics}");
    let mut more = s.connect();
    assert_eq!(
        ask(&mut more, "REGISTER another password1"),
        "ERR too-many-accounts"
    );
    c.send("QUIT");
    c.drain_to_close();
    let mut d = s.connect();
    assert_eq!(ask(&mut d, "LOGIN member"), "ERR password-required");
    enter(&mut d, "LOGIN member password1");
}

#[test]
fn parallel_wrong_passwords_are_refused_and_then_spaced_while_others_chat() {
    let s = Server::start(&[]);
    drop(register(&s, "alice", "the-real-one"));
    let mut bob = s.login("bob");
    let mut carol = s.login("carol");
    let mut guesses: Vec<Client> = (0..20).map(|_| s.connect()).collect();
    for g in &mut guesses {
        g.send("LOGIN alice guess-0000");
    }
    // The loop does not hash: bob's line reaches carol while guesses wait.
    bob.send("MSG still here");
    carol.expect("MSG bob still here");
    let answers: Vec<String> = guesses.iter_mut().map(|g| g.line()).collect();
    let wrong = answers.iter().filter(|a| *a == "ERR bad-password").count();
    let refused = answers
        .iter()
        .filter(|a| *a == "ERR too-many-attempts")
        .count();
    assert_eq!(wrong + refused, 20, "{answers:?}");
    assert!(wrong >= 1, "one guess is checked: {answers:?}");
    assert!(
        refused >= 16,
        "one check per name at a time: the rest are refused, not queued: {answers:?}"
    );
    // Guesses one after another: three more are checked, then the name is
    // closed for a second, then two, and a right password waits too.
    let g = &mut guesses[0];
    let mut checked = wrong;
    while checked < 4 {
        match ask(g, "LOGIN alice guess-0001").as_str() {
            "ERR bad-password" => checked += 1,
            "ERR too-many-attempts" => std::thread::sleep(Duration::from_millis(20)),
            other => panic!("{other}"),
        }
    }
    assert_eq!(ask(g, "LOGIN alice the-real-one"), "ERR too-many-attempts");
    let mut answer = String::new();
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(50));
        answer = ask(g, "LOGIN alice the-real-one");
        if answer != "ERR too-many-attempts" {
            break;
        }
    }
    assert_eq!(answer, "OK", "open again after the wait");
}

#[test]
fn no_password_and_no_hash_reaches_a_log_or_a_reply() {
    let s = Server::start(&["--log-level", "trace"]);
    let mut seen = Vec::new();
    let mut alice = register(&s, "alice", "Sekrit-one-1");
    alice.send("PASSWORD Sekrit-one-1 Sekrit-two-2");
    seen.push(alice.line());
    alice.send("QUIT");
    seen.extend(alice.drain_to_close());
    let mut c = s.connect();
    for line in [
        "LOGIN alice Sekrit-wrong-3",
        "LOGIN alice Sekrit-two-2",
        "WHO",
    ] {
        c.send(line);
        seen.extend(c.sync());
    }
    let log = s.log();
    assert!(log.contains("logged in as alice"), "the log is on: {log}");
    for secret in ["Sekrit", "argon2", "$v=19$"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
        assert!(
            !seen.iter().any(|l| l.contains(secret)),
            "{secret} in {seen:?}"
        );
    }
}

#[test]
fn the_password_takes_back_a_name_held_since_a_restart_and_a_wrong_one_does_not() {
    let dir = TempDir::new();
    let db = dir.file("chat.db");
    let args = ["--db", db.as_str()];
    let mut s = Server::start(&args);
    let mut alice = register(&s, "alice", "alices-password");
    assert!(ask(&mut alice, "TOKEN").starts_with("TOKEN "));
    s.signal(libc::SIGTERM);
    alice.drain_to_close();
    s.wait_exit();

    let s = Server::start(&args);
    let mut watcher = s.login("watcher");
    let mut c = s.connect();
    assert_eq!(
        ask(&mut c, "LOGIN alice"),
        "ERR username-taken",
        "held, as for v1"
    );
    assert_eq!(ask(&mut c, "LOGIN alice wrong-one"), "ERR bad-password");
    watcher.send("WHO");
    assert!(
        watcher.sync().contains(&"USER alice".to_string()),
        "a wrong password leaves the held session alone"
    );
    enter(&mut c, "LOGIN alice alices-password");
    watcher.expect("INFO alice disconnected");
    watcher.expect("INFO alice joined");
}

#[test]
fn an_address_registers_its_hourly_allowance_and_no_more() {
    let s = Server::start(&["--registrations-per-hour", "2"]);
    drop(register(&s, "one", "password1"));
    drop(register(&s, "two", "password2"));
    let mut c = s.connect();
    assert_eq!(
        ask(&mut c, "REGISTER three password3"),
        "ERR too-many-attempts"
    );
    let mut taken = s.connect();
    assert_eq!(
        ask(&mut taken, "REGISTER one password1"),
        "ERR username-taken",
        "refusals before the allowance cost none of it"
    );
}

#[test]
fn the_password_takes_a_name_over_from_a_connection_still_open() {
    let s = Server::start(&[]);
    let mut watcher = s.login("watcher");
    let mut old = register(&s, "alice", "password1");
    old.send("JOIN #r");
    old.expect("JOINED #r 1");
    old.send("TOKEN");
    let token = old.line();
    watcher.expect("INFO alice joined");
    // A wrong password changes nothing.
    let mut new = s.connect();
    assert_eq!(ask(&mut new, "LOGIN alice wrong-one"), "ERR bad-password");
    old.send("PING still");
    old.expect("PONG still");
    // The right one: the old connection is told and closed, its session
    // ends for good (its token resumes nothing), and the name is the new
    // connection's, as a fresh login.
    enter(&mut new, "LOGIN alice password1");
    old.expect("BYE replaced");
    old.expect_closed();
    assert!(
        s.log()
            .contains("its name logged in again with the password"),
        "the operator's log says why"
    );
    watcher.expect("INFO alice disconnected");
    watcher.expect("INFO alice joined");
    new.send("ROOMS");
    new.expect("END ROOMS");
    let token = token.strip_prefix("TOKEN ").expect("a token");
    let mut thief = s.connect();
    assert_eq!(
        ask(&mut thief, &format!("RESUME alice {token}")),
        "ERR bad-token"
    );
}

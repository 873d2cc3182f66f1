//! Every row and every error of protocol v1, against the real server.

mod common;

use common::{Client, Server};
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(200);

#[test]
fn login_replies_ok_and_announces_to_others_only() {
    let s = Server::start(&[]);
    let mut alice = s.login("alice");
    let mut bob = s.login("Bob");
    assert_eq!(alice.sync(), vec!["INFO Bob joined"]);
    assert_eq!(bob.sync(), Vec::<String>::new());
}

#[test]
fn login_errors() {
    let s = Server::start(&[]);
    let mut alice = s.login("Alice");
    let mut c = s.connect();
    c.send("LOGIN alice");
    c.expect("ERR username-taken");
    c.send("LOGIN ALICE");
    c.expect("ERR username-taken");
    for bad in ["", "al ice", "a.b", "élise", &"x".repeat(33)] {
        c.send(&format!("LOGIN {bad}"));
        c.expect("ERR invalid-username");
    }
    alice.send("LOGIN other");
    alice.expect("ERR already-logged-in");
    c.send(&format!("login {}", "x".repeat(32)));
    c.expect("OK");
}

#[test]
fn commands_are_case_insensitive_and_whitespace_tolerant() {
    let s = Server::start(&[]);
    let mut alice = s.login("alice");
    let mut bob = s.connect();
    bob.send(" \tlOgIn \t bob\t ");
    bob.expect("OK");
    bob.send("msg \t  spaced   out\t text \r");
    assert_eq!(
        alice.sync(),
        vec!["INFO bob joined", "MSG bob spaced   out\t text"]
    );
}

#[test]
fn msg_reaches_every_other_user_but_not_sender_nor_anonymous() {
    let s = Server::start(&[]);
    let mut a = s.login("a");
    let mut b = s.login("b");
    let mut c = s.login("c");
    let mut anon = s.connect();
    a.sync();
    b.sync();
    b.send("MSG hello there");
    assert_eq!(a.sync(), vec!["MSG b hello there"]);
    assert_eq!(c.sync(), vec!["MSG b hello there"]);
    assert_eq!(b.sync(), Vec::<String>::new());
    assert_eq!(anon.sync(), Vec::<String>::new());
}

#[test]
fn msg_errors() {
    let s = Server::start(&[]);
    let mut anon = s.connect();
    anon.send("MSG hi");
    anon.expect("ERR not-logged-in");
    let mut a = s.login("a");
    a.send("MSG");
    a.expect("ERR empty-message");
    a.send("MSG    ");
    a.expect("ERR empty-message");
}

#[test]
fn dm_reaches_only_its_target() {
    let s = Server::start(&[]);
    let mut a = s.login("a");
    let mut b = s.login("Bob");
    let mut c = s.login("c");
    a.sync();
    b.sync();
    a.send("DM bob  psst,  secret ");
    assert_eq!(b.sync(), vec!["DM a psst,  secret"]);
    assert_eq!(c.sync(), Vec::<String>::new());
    assert_eq!(a.sync(), Vec::<String>::new());
}

#[test]
fn dm_errors() {
    let s = Server::start(&[]);
    let mut anon = s.connect();
    anon.send("DM a hi");
    anon.expect("ERR not-logged-in");
    let mut a = s.login("a");
    a.send("DM nobody hi");
    a.expect("ERR no-such-user");
    a.send("DM");
    a.expect("ERR no-such-user");
    a.send("DM a");
    a.expect("ERR empty-message");
}

#[test]
fn who_lists_everyone_sorted_case_insensitively() {
    let s = Server::start(&[]);
    let mut z = s.login("zed");
    let _b = s.login("Bob");
    let _a = s.login("alice");
    let _anon = s.connect();
    z.sync();
    z.send("WHO");
    let lines: Vec<String> = (0..3).map(|_| z.line()).collect();
    assert_eq!(lines, vec!["USER alice", "USER Bob", "USER zed"]);
    assert_eq!(z.sync(), Vec::<String>::new());
    let mut anon = s.connect();
    anon.send("WHO");
    anon.expect("ERR not-logged-in");
}

#[test]
fn ping_pong_before_and_after_login() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    c.send("PING");
    c.expect("PONG");
    c.send("ping  abc def ");
    c.expect("PONG abc def");
    c.send("PONG 12");
    c.expect_silence(QUIET);
    c.send("LOGIN x");
    c.expect("OK");
    c.send("PING 1");
    c.expect("PONG 1");
}

#[test]
fn quit_says_bye_closes_and_announces() {
    let s = Server::start(&[]);
    let mut a = s.login("a");
    let mut b = s.login("b");
    a.sync();
    b.send("QUIT see you");
    assert_eq!(b.drain_to_close(), vec!["BYE"]);
    assert_eq!(a.sync(), vec!["INFO b disconnected"]);
    let mut anon = s.connect();
    anon.send("quit");
    assert_eq!(anon.drain_to_close(), vec!["BYE"]);
    assert_eq!(a.sync(), Vec::<String>::new());
    // The name is free again at once.
    s.login("B");
}

#[test]
fn lines_after_quit_are_ignored() {
    let s = Server::start(&[]);
    let mut a = s.login("a");
    let mut b = s.connect();
    b.send_raw(b"LOGIN b\nQUIT\nMSG ghost\n");
    assert_eq!(b.drain_to_close(), vec!["OK", "BYE"]);
    assert_eq!(a.sync(), vec!["INFO b joined", "INFO b disconnected"]);
}

#[test]
fn blank_lines_get_no_reply() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    c.send_raw(b"\n\r\n  \t \n");
    assert_eq!(c.sync(), Vec::<String>::new());
}

#[test]
fn unknown_command() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    c.send("HELLO there");
    c.expect("ERR unknown-command");
    c.send("LOGINX a");
    c.expect("ERR unknown-command");
}

#[test]
fn invalid_utf8_and_control_characters_are_refused() {
    let s = Server::start(&[]);
    let mut a = s.login("a");
    let mut b = s.login("b");
    a.sync();
    b.send_raw(b"MSG caf\xc3\n");
    b.expect("ERR invalid-utf8");
    for evil in ["\x1b[2J", "bell\x07", "del\x7f", "c1\u{9b}31m", "nul\0"] {
        b.send(&format!("MSG {evil}"));
        b.expect("ERR invalid-text");
    }
    b.send_raw(b"MSG mid\rline\n");
    b.expect("ERR invalid-text");
    b.send("MSG tab\tand ünïcödé ✓");
    assert_eq!(a.sync(), vec!["MSG b tab\tand ünïcödé ✓"]);
}

#[test]
fn lines_split_across_writes_parse_the_same() {
    let s = Server::start(&[]);
    let mut a = s.login("a");
    let mut b = s.connect();
    for byte in b"LOGIN b\r\nMSG one byte at a time\r\n" {
        b.send_raw(&[*byte]);
        std::thread::sleep(Duration::from_millis(2));
    }
    b.expect("OK");
    assert_eq!(a.sync(), vec!["INFO b joined", "MSG b one byte at a time"]);
}

#[test]
fn line_limit_rejects_long_lines_and_keeps_the_connection() {
    let s = Server::start(&["--max-line", "64"]);
    let mut a = s.login("a");
    let mut b = s.login("b");
    a.sync();
    let fits = format!("MSG {}", "y".repeat(60));
    b.send(&fits);
    assert_eq!(a.sync(), vec![format!("MSG b {}", "y".repeat(60))]);
    b.send(&format!("MSG {}", "n".repeat(61)));
    b.expect("ERR line-too-long");
    // A long line arriving in pieces is reported once, then parsing resumes.
    for _ in 0..50 {
        b.send_raw(&[b'z'; 100]);
    }
    b.send_raw(b"\nMSG after\n");
    b.expect("ERR line-too-long");
    assert_eq!(a.sync(), vec!["MSG b after"]);
    assert_eq!(b.sync(), Vec::<String>::new());
}

#[test]
fn ipv6_loopback_works() {
    // Only meaningful where the machine has an IPv6 loopback.
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        return;
    }
    let s = Server::start_on("::1", &[]);
    assert!(s.addr.is_ipv6());
    let mut c = Client::connect(s.addr);
    c.send("PING v6");
    c.expect("PONG v6");
}

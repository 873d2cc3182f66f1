//! `selectchat connect` with piped stdin and stdout, against a real server
//! and a raw socket peer.

mod common;

use std::io::Read;

use common::{ChatClient, Server};

#[test]
fn typed_lines_become_messages_and_messages_are_shown() {
    let s = Server::start(&[]);
    let mut bob = s.login("bob");
    let mut alice = ChatClient::start(s.addr, &["--name", "alice"]);
    alice.expect("* logged in as alice");
    assert_eq!(bob.sync(), vec!["INFO alice joined"]);

    alice.type_line("hello  world");
    alice.expect("alice: hello  world");
    bob.expect("MSG alice hello  world");

    bob.send("MSG hi");
    alice.expect("bob: hi");
    bob.send("DM alice psst");
    alice.expect("[dm] bob: psst");
    let _carol = s.login("carol");
    alice.expect("* carol joined");
    drop(_carol);
    alice.expect("* carol disconnected");
}

#[test]
fn slash_commands() {
    let s = Server::start(&[]);
    let mut bob = s.login("bob");
    let mut alice = ChatClient::start(s.addr, &["--name", "alice"]);
    alice.expect("* logged in as alice");

    alice.type_line("/dm bob  a secret");
    alice.expect("[dm to bob] alice: a secret");
    bob.expect("INFO alice joined");
    bob.expect("DM alice a secret");
    alice.type_line("/msg nobody hi");
    alice.expect("[dm to nobody] alice: hi");
    alice.expect("! no such user");

    alice.type_line("/who");
    alice.expect("* online (2): alice, bob");

    alice.type_line("/ping");
    let pong = alice.line();
    assert!(
        pong.starts_with("* pong from server in ") && pong.ends_with(" ms"),
        "{pong}"
    );

    alice.type_line("/bogus");
    alice.expect("! unknown command /bogus; /help lists the commands");
    alice.type_line("/dm bob");
    alice.expect("! usage: /dm NAME TEXT");
    alice.type_line("/help");
    assert!(alice.line().contains("say text here"));
    // Hints are local: the server passed nothing on to bob.
    alice.type_line("/ping");
    alice.wait_for(|l| l.starts_with("* pong"));
    assert_eq!(bob.sync(), Vec::<String>::new());
}

#[test]
fn quit_exits_zero_and_says_bye() {
    let s = Server::start(&[]);
    let mut bob = s.login("bob");
    for word in ["quit", "/quit", "exit"] {
        let mut alice = ChatClient::start(s.addr, &["--name", "alice"]);
        alice.expect("* logged in as alice");
        alice.type_line(word);
        assert!(alice.wait_exit().success(), "{word}");
        let lines = bob.sync();
        assert_eq!(
            lines,
            vec!["INFO alice joined", "INFO alice disconnected"],
            "{word}"
        );
    }
}

#[test]
fn end_of_input_quits_cleanly() {
    let s = Server::start(&[]);
    let mut bob = s.login("bob");
    let mut alice = ChatClient::start(s.addr, &["--name", "alice"]);
    alice.type_line("last words");
    alice.close_stdin();
    assert!(alice.wait_exit().success());
    assert_eq!(
        bob.sync(),
        vec![
            "INFO alice joined",
            "MSG alice last words",
            "INFO alice disconnected"
        ]
    );
}

#[test]
fn answers_pings_so_an_idle_user_is_never_purged() {
    let s = Server::start(&["--ping-interval", "0.2", "--idle-timeout", "0.6"]);
    let mut alice = ChatClient::start(s.addr, &["--name", "alice"]);
    alice.expect("* logged in as alice");
    // A ghost that logs in after alice and never answers is purged; alice,
    // silent for longer, is still there to be told.
    let _ghost = s.login("ghost");
    alice.expect("* ghost joined");
    alice.expect("* ghost disconnected");
    let mut bob = s.login("bob");
    alice.expect("* bob joined");
    bob.send("MSG still there?");
    alice.expect("bob: still there?");
    assert!(alice.child.try_wait().unwrap().is_none());
}

#[test]
fn server_shutdown_makes_the_client_exit_nonzero_with_the_reason() {
    let s = Server::start(&[]);
    let mut alice = ChatClient::start(s.addr, &["--name", "alice"]);
    alice.expect("* logged in as alice");
    s.signal(libc::SIGTERM);
    alice.expect("* disconnected: server shutting down");
    assert_eq!(alice.wait_exit().code(), Some(1));
}

#[test]
fn taken_name_fails_with_piped_stdin() {
    let s = Server::start(&[]);
    let _alice = s.login("alice");
    let mut imposter = ChatClient::start(s.addr, &["--name", "Alice"]);
    imposter.expect("! that name is taken: Alice");
    assert_eq!(imposter.wait_exit().code(), Some(1));
}

#[test]
fn a_script_registers_then_logs_in_with_the_password_from_its_environment() {
    let s = Server::start(&[]);
    let addr = s.addr.to_string();
    let env = [("SELECTCHAT_PASSWORD", "piped-secret")];
    let mut first = ChatClient::start_with_env(&addr, &["--name", "alice", "--register"], &env);
    first.expect("* logged in as alice");
    first.close_stdin();
    assert_eq!(first.wait_exit().code(), Some(0));

    let mut guest = ChatClient::start(s.addr, &["--name", "alice"]);
    guest.expect("! that name is registered: give its password: alice");
    assert_eq!(guest.wait_exit().code(), Some(1));

    let wrong = [("OTHER_VAR", "not-it-at-all")];
    let args = ["--name", "alice", "--password-env", "OTHER_VAR"];
    let mut bad = ChatClient::start_with_env(&addr, &args, &wrong);
    bad.expect("! wrong password: alice");
    assert_eq!(bad.wait_exit().code(), Some(1));

    let alice = ChatClient::start_with_env(&addr, &["--name", "alice"], &env);
    alice.expect("* logged in as alice");
    assert!(
        !s.log().contains("piped-secret"),
        "the password is in no log"
    );
}

#[test]
fn bad_or_missing_name_is_a_usage_error() {
    let s = Server::start(&[]);
    let mut nameless = ChatClient::start(s.addr, &[]);
    assert_eq!(nameless.wait_exit().code(), Some(2));
    let mut bad = ChatClient::start(s.addr, &["--name", "no spaces"]);
    assert_eq!(bad.wait_exit().code(), Some(2));
}

#[test]
fn unreachable_server_is_reported() {
    // A port that was free a moment ago: nobody listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut c = ChatClient::start(addr, &["--name", "alice"]);
    assert_eq!(c.wait_exit().code(), Some(1));
}

#[test]
fn escape_sequences_from_the_server_are_neutralised() {
    // A fake server that ignores the protocol's own refusal of control characters.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let alice = ChatClient::start(addr, &["--name", "alice"]);
    let (mut sock, _) = listener.accept().unwrap();
    use std::io::Write;
    sock.write_all(b"OK\nMSG evil \x1b[2J\x1b]0;pwned\x07 gotcha\n")
        .unwrap();
    alice.expect("* logged in as alice");
    let shown = alice.line();
    assert!(
        !shown.contains('\x1b') && !shown.contains('\x07'),
        "{shown:?}"
    );
    assert!(
        shown.starts_with("evil: ") && shown.ends_with(" gotcha"),
        "{shown:?}"
    );
}

#[test]
fn piped_lines_go_to_the_room_given_even_before_it_is_joined() {
    let s = Server::start(&[]);
    let mut bob = s.login("bob");
    bob.send("JOIN #ops");
    bob.expect("JOINED #ops 1");
    let mut ci = ChatClient::start(s.addr, &["--name", "ci", "--room", "#ops"]);
    // Typed at once: stdin is read as soon as the login is through.
    ci.type_line("deploy finished");
    ci.type_line("/quit");
    bob.wait_for("INFO #ops ci joined");
    bob.expect("SAY #ops 1 ci deploy finished");
    assert!(ci.wait_exit().success());
    let printed: Vec<String> = std::iter::from_fn(|| ci.try_line()).collect();
    assert!(
        printed.contains(&"[#ops] ci: deploy finished".to_string()),
        "{printed:?}"
    );
    for bad in [
        &["--room", "ops"][..],
        &["--heartbeat", "0"],
        &["--heartbeat", "nan"],
    ] {
        let mut client = ChatClient::start(s.addr, &[&["--name", "x"][..], bad].concat());
        assert_eq!(client.wait_exit().code(), Some(2), "{bad:?}");
    }
}

#[test]
fn a_piped_file_is_paced_and_every_line_confirmed_before_the_client_quits() {
    let s = Server::start(&["--rate", "100", "--burst", "20"]);
    let mut bob = s.login("bob");
    bob.send("JOIN #ops");
    bob.expect("JOINED #ops 1");
    let pace = ["--rate", "100", "--burst", "20"];
    let mut ci = ChatClient::start(
        s.addr,
        &[&["--name", "ci", "--room", "#ops"][..], &pace].concat(),
    );
    for i in 1..=300 {
        ci.type_line(&format!("line {i}"));
    }
    ci.close_stdin();
    bob.wait_for("INFO #ops ci joined");
    for i in 1..=300 {
        let said = bob.wait_line(|l| l.starts_with("SAY #ops "));
        assert!(said.ends_with(&format!(" ci line {i}")), "{said}");
    }
    assert!(ci.wait_exit().success(), "every line confirmed, exit 0");
    bob.wait_for("INFO #ops ci left");
    bob.send("HISTORY #ops 500");
    let stored = bob.sync().iter().filter(|l| l.starts_with("HIST ")).count();
    assert_eq!(stored, 300, "no BYE flooding, nothing lost");
}

#[test]
fn a_piped_client_whose_server_dies_exits_nonzero_with_a_count() {
    let mut s = Server::start(&["--rate", "20", "--burst", "5"]);
    let mut bob = s.login("bob");
    bob.send("JOIN #ops");
    bob.expect("JOINED #ops 1");
    let mut ci = ChatClient::start(
        s.addr,
        &[
            "--name", "ci", "--room", "#ops", "--rate", "20", "--burst", "5",
        ],
    );
    for i in 1..=200 {
        ci.type_line(&format!("line {i}"));
    }
    ci.close_stdin();
    bob.wait_line(|l| l.ends_with(" ci line 3"));
    s.signal(libc::SIGKILL);
    s.wait_exit();
    let status = ci.wait_exit();
    assert_eq!(status.code(), Some(1), "not every line got through");
    let mut stderr = String::new();
    ci.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains(" lines not confirmed by the server"),
        "{stderr}"
    );
}

#[test]
fn a_scripts_direct_line_to_someone_away_is_stored_for_them() {
    let s = Server::start(&[]);
    let addr = s.addr.to_string();
    for name in ["alice", "bob"] {
        let mut c = s.connect();
        c.send(&format!("REGISTER {name} {name}-secret"));
        c.expect("OK");
        c.expect("END UNREAD");
        c.send("QUIT");
        c.drain_to_close();
    }
    let env = [("SELECTCHAT_PASSWORD", "alice-secret")];
    let mut alice = ChatClient::start_with_env(&addr, &["--name", "alice"], &env);
    alice.expect("* logged in as alice");
    alice.type_line("/dm bob kept for you");
    alice.close_stdin();
    assert_eq!(alice.wait_exit().code(), Some(0), "confirmed by its SENT");
    let mut bob = s.connect();
    bob.send("LOGIN bob bob-secret");
    bob.expect("OK");
    bob.expect("UNREAD @alice 1 0");
    bob.expect("END UNREAD");
}

//! Protocol v2 rooms against the real binary: JOIN, PART, SAY, ROOMS,
//! WHO <room>, departures from rooms, the presence limit, v1 clients left
//! undisturbed, and a login storm.

mod common;

use common::{Client, Read1, Server};
use std::net::SocketAddr;
use std::time::Duration;

#[test]
fn two_users_join_talk_list_and_leave() {
    let s = Server::start(&[]);
    let mut alice = s.login("alice");
    let mut bob = s.login("bob");
    alice.expect("INFO bob joined");
    alice.send("JOIN #Rust");
    alice.expect("JOINED #Rust 1");
    bob.send("join #rust");
    bob.expect("JOINED #Rust 2");
    assert_eq!(alice.sync(), vec!["INFO #Rust bob joined"]);

    alice.send("SAY #rust hello  bob");
    let sent = alice.line();
    let id: u64 = sent
        .strip_prefix("SENT #Rust ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a SENT: {sent}"));
    bob.expect(&format!("SAY #Rust {id} alice hello  bob"));
    bob.send("SAY #Rust hi");
    bob.expect(&format!("SENT #Rust {}", id + 1));
    alice.expect(&format!("SAY #Rust {} bob hi", id + 1));

    bob.send("JOIN #go");
    bob.expect("JOINED #go 1");
    alice.send("ROOMS");
    assert_eq!(
        alice.sync(),
        vec!["ROOM #go 1", "ROOM #Rust 2", "END ROOMS"]
    );
    alice.send("WHO #RUST");
    assert_eq!(
        alice.sync(),
        vec!["USER alice", "USER bob", "END WHO #Rust"]
    );

    bob.send("PART #Rust");
    bob.expect("PARTED #Rust");
    alice.expect("INFO #Rust bob left");
    bob.send("SAY #Rust still?");
    bob.expect("ERR not-in-room");
    alice.send("PART #rust");
    alice.expect("PARTED #Rust");
    alice.send("WHO #rust");
    alice.expect("ERR no-such-room");
    alice.send("ROOMS");
    assert_eq!(alice.sync(), vec!["ROOM #go 1", "END ROOMS"]);
}

#[test]
fn bad_room_commands_get_errors_and_the_connection_stays() {
    let s = Server::start(&["--max-rooms", "2"]);
    let mut anon = s.connect();
    anon.send("JOIN #a");
    anon.expect("ERR not-logged-in");
    let mut a = s.login("a");
    for (line, reply) in [
        ("JOIN a", "ERR invalid-room"),
        ("JOIN #a b", "ERR invalid-room"),
        ("JOIN #a", "JOINED #a 1"),
        ("JOIN #A", "ERR already-joined"),
        ("JOIN #b", "JOINED #b 1"),
        ("JOIN #c", "ERR too-many-rooms"),
        ("PART #c", "ERR not-in-room"),
        ("PART #", "ERR invalid-room"),
        ("SAY #a", "ERR empty-message"),
        ("SAY #c hi", "ERR not-in-room"),
        ("SAY c hi", "ERR invalid-room"),
        ("WHO #c", "ERR no-such-room"),
        ("WHO #c!", "ERR invalid-room"),
        ("SAY #a \u{1b}[2J", "ERR invalid-text"),
    ] {
        a.send(line);
        assert_eq!(a.line(), reply, "{line}");
    }
    a.send("PING still-open");
    a.expect("PONG still-open");
}

#[test]
fn every_departure_leaves_each_room_once_then_the_lobby() {
    let s = Server::start(&["--idle-timeout", "1", "--ping-interval", "5"]);
    let mut b = s.login("b");
    let mut c = s.login("c");
    b.send("JOIN #x");
    c.send("JOIN #y");
    b.sync();
    c.sync();

    let join_both = |name: &str| {
        let mut u = s.login(name);
        u.send("JOIN #x");
        u.send("JOIN #y");
        u.send("JOIN #solo");
        assert_eq!(
            u.sync(),
            vec!["JOINED #x 2", "JOINED #y 2", "JOINED #solo 1"]
        );
        u
    };
    // b is told in #x and c in #y, each once, then the lobby line.
    let told = |b: &mut Client, c: &mut Client, name: &str| {
        let gone = format!("INFO {name} disconnected");
        let (mut seen_b, mut seen_c) = (Vec::new(), Vec::new());
        // Syncing both keeps them from going idle while they wait.
        let ok = common::wait_until(common::WAIT, || {
            seen_b.extend(b.sync());
            seen_c.extend(c.sync());
            seen_b.contains(&gone) && seen_c.contains(&gone)
        });
        assert!(ok.is_some(), "{gone:?} never came: {seen_b:?} {seen_c:?}");
        for (seen, peer, room) in [(&mut seen_b, &mut *b, "#x"), (&mut seen_c, &mut *c, "#y")] {
            seen.extend(peer.sync());
            seen.retain(|l| !l.ends_with(&format!(" {name} joined")));
            assert_eq!(
                *seen,
                vec![format!("INFO {room} {name} left"), gone.clone()]
            );
        }
    };

    let reset = join_both("reset");
    reset.reset();
    told(&mut b, &mut c, "reset");

    let mut ghost = join_both("ghost");
    told(&mut b, &mut c, "ghost");
    assert_eq!(ghost.drain_to_close(), vec!["BYE idle-timeout"]);

    let mut quitter = join_both("quitter");
    quitter.send("QUIT");
    assert_eq!(quitter.drain_to_close(), vec!["BYE"]);
    told(&mut b, &mut c, "quitter");

    b.send("ROOMS");
    assert_eq!(b.sync(), vec!["ROOM #x 1", "ROOM #y 1", "END ROOMS"]);
}

#[test]
fn presence_is_announced_up_to_the_limit_only() {
    let s = Server::start(&["--presence-limit", "3"]);
    let mut a = s.login("a");
    let mut b = s.login("b");
    let _c = s.login("c");
    assert_eq!(a.sync(), vec!["INFO b joined", "INFO c joined"]);
    assert_eq!(b.sync(), vec!["INFO c joined"]);
    let d = s.login("d");
    assert_eq!(a.sync(), Vec::<String>::new(), "the 4th login is not told");
    a.send("WHO");
    assert_eq!(a.sync(), vec!["USER a", "USER b", "USER c", "USER d"]);

    drop(d);
    b.send("JOIN #r");
    b.expect("JOINED #r 1");
    // d's departure came among 4 users: untold. Now 3 are left.
    assert_eq!(a.sync(), Vec::<String>::new());
    a.send("JOIN #r");
    a.expect("JOINED #r 2");
    assert_eq!(b.sync(), vec!["INFO #r a joined"]);
    let mut e = s.login("e");
    assert_eq!(a.sync(), Vec::<String>::new(), "4 in the lobby again");
    e.send("JOIN #r");
    e.expect("JOINED #r 3");
    assert_eq!(b.sync(), vec!["INFO #r e joined"], "3 in the room");
}

#[test]
fn a_v1_client_sees_only_v1_lines_while_others_use_rooms() {
    let s = Server::start(&[]);
    let mut old = s.login("old");
    let mut n1 = s.login("n1");
    let mut n2 = s.login("n2");
    for n in [&mut n1, &mut n2] {
        n.send("JOIN #v2");
        n.send("SAY #v2 rooms are here");
        n.send("ROOMS");
        n.send("WHO #v2");
        n.sync();
    }
    n1.send("MSG hello lobby");
    n2.send("PART #v2");
    n2.sync();
    n2.send("QUIT");
    n2.drain_to_close();
    n1.sync();
    assert_eq!(
        old.sync(),
        vec![
            "INFO n1 joined",
            "INFO n2 joined",
            "MSG n1 hello lobby",
            "INFO n2 disconnected"
        ]
    );
    old.send("WHO");
    assert_eq!(old.sync(), vec!["USER n1", "USER old"]);
}

/// Connects `n` clients and sends each one's LOGIN at once, without reading.
fn storm(addr: SocketAddr, n: usize) -> Vec<Client> {
    (0..n)
        .map(|i| {
            let mut c = Client::connect(addr);
            c.send(&format!("LOGIN storm{i}"));
            c
        })
        .collect()
}

#[test]
fn a_login_storm_is_answered_before_the_login_timeout() {
    const N: usize = 3000;
    let s = Server::start(&["--login-timeout", "20"]);
    let mut clients = storm(s.addr, N);
    for (i, c) in clients.iter_mut().enumerate() {
        match c.read_within(Duration::from_secs(20)) {
            Read1::Line(l) => assert_eq!(l, "OK", "storm{i}"),
            other => panic!("storm{i}: {other:?}"),
        }
    }
    // Past the presence limit nobody was told of the later logins.
    let last = clients.last_mut().expect("clients");
    assert_eq!(last.sync(), Vec::<String>::new());
    last.send("WHO");
    assert_eq!(last.sync().len(), N);
}

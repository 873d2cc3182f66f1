//! TOKEN and RESUME against the real binary: taking over a live ghost,
//! taking back a session that ended, the window, wrong and replaced
//! tokens, and catching up with HISTORY AFTER.

mod common;

use common::{Client, Server};
use std::time::Duration;

fn token(c: &mut Client) -> String {
    c.send("TOKEN");
    let line = c.line();
    let token = line
        .strip_prefix("TOKEN ")
        .unwrap_or_else(|| panic!("not a TOKEN: {line}"));
    assert_eq!(token.len(), 32);
    assert!(token
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    token.to_string()
}

/// Logs `name` in and puts it in `rooms` (replies consumed).
fn member(s: &Server, name: &str, rooms: &[&str]) -> Client {
    let mut c = s.login(name);
    for room in rooms {
        c.send(&format!("JOIN {room}"));
        assert!(c.line().starts_with(&format!("JOINED {room} ")));
    }
    c.sync();
    c
}

fn said_id(line: &str) -> u64 {
    line.split(' ')
        .nth(2)
        .and_then(|n| n.parse().ok())
        .expect(line)
}

#[test]
fn resume_takes_over_a_ghost_silently_and_catches_up() {
    let s = Server::start(&[]);
    let mut ghost = member(&s, "alice", &["#b", "#A"]);
    let mut bob = member(&s, "bob", &["#b"]);
    assert_eq!(ghost.sync(), ["INFO bob joined", "INFO #b bob joined"]);
    let token = token(&mut ghost);
    bob.send("SAY #b seen");
    let seen = said_id(&ghost.line());
    bob.line();
    // The ghost stops reading: what follows is lost to it.
    for text in ["missed one", "missed two"] {
        bob.send(&format!("SAY #b {text}"));
        assert!(bob.line().starts_with("SENT #b "));
    }

    let mut phone = s.connect();
    phone.send(&format!("RESUME Alice {token}"));
    assert_eq!(phone.sync(), ["OK", "JOINED #A 1", "JOINED #b 2"]);
    let ghost_saw = ghost.drain_to_close();
    assert_eq!(ghost_saw.last().map(String::as_str), Some("BYE replaced"));
    assert_eq!(bob.sync(), Vec::<String>::new(), "no INFO to anyone");

    phone.send(&format!("HISTORY #b AFTER {seen}"));
    let caught: Vec<String> = phone
        .sync()
        .iter()
        .map(|l| l.splitn(6, ' ').nth(5).unwrap_or(l).to_string())
        .collect();
    assert_eq!(caught, ["missed one", "missed two", "END HISTORY #b"]);
    phone.send("SAY #b back");
    assert!(phone.line().starts_with("SENT #b "));
    assert!(bob.line().ends_with(" alice back"));
    phone.send("WHO");
    assert_eq!(phone.sync(), ["USER alice", "USER bob"]);
}

#[test]
fn resume_after_the_session_ended_rejoins_as_ordinary_joins() {
    let s = Server::start(&[]);
    let mut alice = member(&s, "alice", &["#x"]);
    let mut bob = member(&s, "bob", &["#x"]);
    alice.expect("INFO bob joined");
    alice.expect("INFO #x bob joined");
    let token = token(&mut alice);
    alice.send("QUIT");
    alice.drain_to_close();
    assert_eq!(
        bob.sync(),
        ["INFO #x alice left", "INFO alice disconnected"]
    );

    let mut again = s.connect();
    again.send(&format!("RESUME alice {token}"));
    assert_eq!(again.sync(), ["OK", "JOINED #x 2"]);
    assert_eq!(bob.sync(), ["INFO alice joined", "INFO #x alice joined"]);
    // The token is still good for the next drop.
    again.reset();
    // The reset and bob's next line race to the server: wait for the
    // departure itself rather than for a PING round trip.
    bob.expect("INFO #x alice left");
    bob.expect("INFO alice disconnected");
    let mut third = s.connect();
    third.send(&format!("RESUME alice {token}"));
    assert_eq!(third.sync(), ["OK", "JOINED #x 2"]);
    third.send(&format!("RESUME alice {token}"));
    third.expect("ERR already-logged-in");
}

#[test]
fn wrong_replaced_and_expired_tokens_are_refused() {
    let s = Server::start(&["--resume-window", "1"]);
    let mut alice = member(&s, "alice", &[]);
    let old = token(&mut alice);
    let new = token(&mut alice);
    assert_ne!(old, new);
    let _bob = member(&s, "bob", &[]);
    let mut other = s.connect();
    for line in [
        format!("RESUME alice {old}"),
        format!("RESUME bob {new}"),
        format!("RESUME nobody {new}"),
        "RESUME alice 0123456789abcdef0123456789abcdef".to_string(),
        "RESUME alice short".to_string(),
        "RESUME".to_string(),
    ] {
        other.send(&line);
        other.expect("ERR bad-token");
    }
    alice.reset();
    // Past the window the session is gone.
    std::thread::sleep(Duration::from_millis(1500));
    other.send(&format!("RESUME alice {new}"));
    other.expect("ERR bad-token");
    other.send("LOGIN alice");
    other.expect("OK");
}

#[test]
fn a_login_under_the_name_ends_the_session_it_could_resume() {
    let s = Server::start(&[]);
    let mut alice = member(&s, "alice", &["#x"]);
    let token = token(&mut alice);
    alice.reset();
    let mut impostor = s.login("ALICE");
    impostor.send("QUIT");
    impostor.drain_to_close();
    let mut late = s.connect();
    late.send(&format!("RESUME alice {token}"));
    late.expect("ERR bad-token");
}

/// Bob says `n` messages in `room` (each acknowledged); returns their ids.
fn say_many(bob: &mut Client, room: &str, n: usize) -> Vec<u64> {
    let batch: String = (1..=n)
        .map(|i| format!("SAY {room} {room}-{i}\n"))
        .collect();
    bob.send_raw(batch.as_bytes());
    (0..n)
        .map(|_| {
            let line = bob.wait_line(|l| l.starts_with("SENT "));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        })
        .collect()
}

#[test]
fn resume_replays_missed_messages_of_each_listed_room_in_one_round_trip() {
    let s = Server::start(&["--rate", "0"]);
    for (in_a, in_b) in [(0, 1), (500, 501)] {
        let mut alice = member(&s, "alice", &["#a", "#b"]);
        let mut bob = member(&s, "bob", &["#a", "#b"]);
        alice.sync();
        let token = token(&mut alice);
        let before = say_many(&mut bob, "#a", 1)[0];
        alice.sync();
        // alice's connection drops; bob goes on.
        drop(alice);
        bob.wait_for("INFO alice disconnected");
        let a_ids = say_many(&mut bob, "#a", in_a);
        let b_ids = say_many(&mut bob, "#b", in_b);
        let mut alice = s.connect();
        alice.send(&format!("RESUME alice {token} #a:{before} #b:{before}"));
        let mut want = vec![
            "OK".to_string(),
            "JOINED #a 2".to_string(),
            "JOINED #b 2".to_string(),
        ];
        for (room, ids) in [("#a", &a_ids), ("#b", &b_ids)] {
            for (i, id) in ids.iter().enumerate().take(500) {
                want.push(format!("{room} {id} bob {room}-{}", i + 1));
            }
            want.push(if ids.len() > 500 {
                format!("END HISTORY {room} MORE")
            } else {
                format!("END HISTORY {room}")
            });
        }
        let got: Vec<String> = (0..want.len())
            .map(|_| {
                let line = alice.line();
                match line.strip_prefix("HIST ") {
                    // Without the time stamp.
                    Some(hist) => {
                        let w: Vec<&str> = hist.splitn(4, ' ').collect();
                        format!("{} {} {}", w[0], w[1], w[3])
                    }
                    None => line,
                }
            })
            .collect();
        assert_eq!(got, want, "{in_a} and {in_b} missed");
        assert_eq!(alice.sync(), Vec::<String>::new(), "nothing else");
        // Paging on after MORE finds the rest.
        if let Some(&last) = b_ids.get(499) {
            alice.send(&format!("HISTORY #b AFTER {last}"));
            let rest = alice.sync();
            assert_eq!(rest.len(), in_b - 500 + 1, "{rest:?}");
        }
        alice.send("QUIT");
        bob.send("QUIT");
        alice.wait_for("BYE");
        bob.wait_for("BYE");
    }
}

#[test]
fn a_tagged_say_whose_sent_was_lost_is_stored_once_when_resent() {
    let s = Server::start(&[]);
    let mut alice = member(&s, "alice", &["#a"]);
    let mut bob = member(&s, "bob", &["#a"]);
    alice.sync();
    let token = token(&mut alice);
    // The connection dies right after the SAY, before its SENT is read.
    alice.send("SAY #a/l1 only once");
    let said = bob.line();
    assert!(said.ends_with(" alice only once"), "{said}");
    drop(alice);
    bob.wait_for("INFO alice disconnected");
    let mut alice = s.connect();
    alice.send(&format!("RESUME alice {token}"));
    alice.expect("OK");
    alice.expect("JOINED #a 2");
    alice.send("SAY #a/l1 only once");
    let id = said_id(&said);
    alice.expect(&format!("SENT #a {id}"));
    alice.send("SAY #a/bad.tag x");
    alice.expect("ERR bad-tag");
    bob.send("HISTORY #a");
    let stored: Vec<String> = bob
        .sync()
        .into_iter()
        .filter(|l| l.ends_with(" only once"))
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(bob.sync(), Vec::<String>::new(), "said once");
}

//! Invite-only rooms against the real binary: made by a registered user,
//! joined, listed and read by its members only, members invited and
//! removed by the owner, and the membership kept across a crash.

mod common;

use common::{Client, Server, TempDir};

/// Sends `line` and returns the answer, past presence lines.
fn ask(c: &mut Client, line: &str) -> String {
    c.send(line);
    c.wait_line(|l| !l.starts_with("INFO "))
}

fn account(s: &Server, name: &str) -> Client {
    let mut c = s.connect();
    assert_eq!(
        ask(&mut c, &format!("REGISTER {name} {name}-password")),
        "OK"
    );
    c.expect("END UNREAD");
    c
}

fn log_in(s: &Server, name: &str) -> Client {
    let mut c = s.connect();
    assert_eq!(ask(&mut c, &format!("LOGIN {name} {name}-password")), "OK");
    c.expect("END UNREAD");
    c
}

#[test]
fn an_invite_only_room_is_for_its_members_and_stays_so_after_a_crash() {
    let dir = TempDir::new();
    let db = dir.file("chat.db");
    let args = ["--db", db.as_str()];
    let mut s = Server::start(&args);
    let mut alice = account(&s, "alice");
    let mut bob = account(&s, "bob");
    let mut eve = account(&s, "eve");
    let mut guest = s.login("guest");

    assert_eq!(ask(&mut guest, "JOIN #team invite-only"), "ERR no-account");
    assert_eq!(ask(&mut alice, "JOIN #team invite-only"), "JOINED #team 1");
    assert_eq!(ask(&mut alice, "SAY #team plans"), "SENT #team 1");
    assert_eq!(ask(&mut bob, "JOIN #team invite-only"), "ERR room-exists");
    assert_eq!(ask(&mut bob, "JOIN #team"), "ERR not-invited");
    assert_eq!(ask(&mut eve, "INVITE #team eve"), "ERR no-such-room");
    assert_eq!(ask(&mut alice, "INVITE #team guest"), "ERR no-such-user");
    assert_eq!(ask(&mut alice, "JOIN #open"), "JOINED #open 1");
    assert_eq!(ask(&mut bob, "JOIN #open invite-only"), "ERR room-exists");
    for c in [&mut bob, &mut eve, &mut guest] {
        c.send("ROOMS");
        assert_eq!(
            c.sync(),
            ["ROOM #open 1", "END ROOMS"],
            "#team is not listed"
        );
        assert_eq!(ask(c, "WHO #team"), "ERR no-such-room");
        assert_eq!(ask(c, "HISTORY #team"), "ERR not-in-room");
    }

    assert_eq!(ask(&mut alice, "INVITE #team bob"), "INVITED #team bob");
    bob.expect("INVITE #team alice");
    assert_eq!(ask(&mut eve, "INVITE #team eve"), "ERR no-such-room");
    assert_eq!(ask(&mut bob, "REMOVE #team alice"), "ERR not-owner");
    assert_eq!(ask(&mut bob, "JOIN #team"), "JOINED #team 2");
    bob.send("HISTORY #team");
    let history = bob.sync();
    assert!(history[0].ends_with(" alice plans"), "{history:?}");
    bob.send("ROOMS");
    assert_eq!(bob.sync(), ["ROOM #open 1", "ROOM #team 2", "END ROOMS"]);

    // The membership outlives a crash; the invited can come back, others not.
    s.signal(libc::SIGKILL);
    s.wait_exit();
    let s = Server::start(&args);
    let mut alice = log_in(&s, "alice");
    let mut bob = log_in(&s, "bob");
    let mut eve = log_in(&s, "eve");
    assert_eq!(ask(&mut eve, "JOIN #team"), "ERR not-invited");
    assert_eq!(ask(&mut bob, "JOIN #team"), "JOINED #team 1");
    assert_eq!(ask(&mut alice, "JOIN #team"), "JOINED #team 2");

    // Removed: out of the room at once, and kept out.
    assert_eq!(ask(&mut alice, "REMOVE #team bob"), "REMOVED #team bob");
    assert_eq!(bob.wait_line(|l| !l.starts_with("INFO ")), "PARTED #team");
    alice.expect("INFO #team bob left");
    assert_eq!(ask(&mut bob, "JOIN #team"), "ERR not-invited");
    assert_eq!(ask(&mut bob, "HISTORY #team"), "ERR not-in-room");
    assert_eq!(ask(&mut alice, "REMOVE #team alice"), "ERR no-such-user");
}

#[test]
fn a_user_makes_at_most_max_rooms_invite_only_rooms() {
    let s = Server::start(&["--max-rooms", "2"]);
    let mut alice = account(&s, "alice");
    // An invite-only room outlives its members: parting does not free it.
    for room in ["#a", "#b"] {
        assert_eq!(
            ask(&mut alice, &format!("JOIN {room} invite-only")),
            format!("JOINED {room} 1")
        );
        assert_eq!(
            ask(&mut alice, &format!("PART {room}")),
            format!("PARTED {room}")
        );
    }
    assert_eq!(ask(&mut alice, "JOIN #c invite-only"), "ERR too-many-rooms");
    // Public rooms are not counted, and the owner's rooms stay open to them.
    assert_eq!(ask(&mut alice, "JOIN #public"), "JOINED #public 1");
    assert_eq!(ask(&mut alice, "JOIN #a"), "JOINED #a 1");
}

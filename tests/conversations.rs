//! One-to-one conversations between registered users, against the real
//! binary: `SAY @name` stored and acknowledged, `HISTORY @name` for the
//! two people only, unread conversations told at login after a crash, and
//! read marks that keep them from being told twice.

mod common;

use common::{Client, Server, TempDir};

/// Sends `line` and returns the answer, past presence lines.
fn ask(c: &mut Client, line: &str) -> String {
    c.send(line);
    c.wait_line(|l| !l.starts_with("INFO "))
}

/// Logs `name` in with its password; returns the client and the lines
/// between `OK` and `END UNREAD`.
fn log_in(s: &Server, name: &str, password: &str) -> (Client, Vec<String>) {
    let mut c = s.connect();
    assert_eq!(ask(&mut c, &format!("LOGIN {name} {password}")), "OK");
    let mut unread = Vec::new();
    loop {
        let line = c.line();
        if line == "END UNREAD" {
            return (c, unread);
        }
        unread.push(line);
    }
}

fn sent_id(line: &str, to: &str) -> u64 {
    line.strip_prefix(&format!("SENT @{to} "))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("not a SENT to {to}: {line}"))
}

#[test]
fn a_conversation_is_stored_read_by_its_two_people_and_told_once_as_unread() {
    let dir = TempDir::new();
    let db = dir.file("chat.db");
    let args = ["--db", db.as_str()];
    let mut s = Server::start(&args);
    for name in ["alice", "bob", "dave"] {
        let mut c = s.connect();
        assert_eq!(
            ask(&mut c, &format!("REGISTER {name} {name}-password")),
            "OK"
        );
        c.expect("END UNREAD");
    }
    let (mut alice, unread) = log_in(&s, "alice", "alice-password");
    assert!(unread.is_empty());
    let (mut bob, _) = log_in(&s, "bob", "bob-password");
    let first = sent_id(&ask(&mut alice, "SAY @bob hi bob"), "bob");
    assert_eq!(
        bob.wait_line(|l| l.starts_with("SAY ")),
        format!("SAY @alice {first} alice hi bob")
    );
    let mut carol = s.login("carol");
    for (line, want) in [
        ("SAY @bob psst", "ERR no-account"),
        ("HISTORY @bob", "ERR no-account"),
    ] {
        assert_eq!(ask(&mut carol, line), want, "{line}");
    }
    for (line, want) in [
        ("SAY @carol hello", "ERR no-such-user"),
        ("SAY @bob", "ERR empty-message"),
        ("READ @bob x", "ERR bad-id"),
    ] {
        assert_eq!(ask(&mut alice, line), want, "{line}");
    }
    // Bob goes; alice writes to him while he is away, then the server dies.
    bob.send("QUIT");
    bob.drain_to_close();
    let second = sent_id(&ask(&mut alice, "SAY @bob are you there?"), "bob");
    let third = sent_id(&ask(&mut alice, "SAY @Bob/t1 call me"), "bob");
    assert!(first < second && second < third);
    s.signal(libc::SIGKILL);
    s.wait_exit();

    let s = Server::start(&args);
    let (mut bob, unread) = log_in(&s, "bob", "bob-password");
    assert_eq!(unread, ["UNREAD @alice 3 0"]);
    bob.send("HISTORY @alice AFTER 0");
    let history = bob.sync();
    assert_eq!(history.len(), 4, "{history:?}");
    assert!(history[0].starts_with(&format!("HIST @alice {first} ")));
    assert!(history[0].ends_with(" alice hi bob"));
    assert!(history[2].ends_with(" alice call me"));
    assert_eq!(history[3], "END HISTORY @alice");
    bob.send(&format!("READ @alice {third}"));
    bob.send("QUIT");
    bob.drain_to_close();
    let (_bob, unread) = log_in(&s, "bob", "bob-password");
    assert!(unread.is_empty(), "read: not told again: {unread:?}");

    let (mut dave, _) = log_in(&s, "dave", "dave-password");
    dave.send("HISTORY @alice");
    assert_eq!(
        dave.sync(),
        ["END HISTORY @alice"],
        "dave's conversation with alice, not bob's"
    );
    let (mut alice, unread) = log_in(&s, "alice", "alice-password");
    assert!(unread.is_empty(), "her own lines are not unread to her");
    alice.send("HISTORY @bob 2");
    let last_two = alice.sync();
    assert_eq!(last_two.len(), 3, "{last_two:?}");
    assert!(last_two[1].starts_with(&format!("HIST @bob {third} ")));
}

//! The chat's store side through its lines: ids, `SENT` after the commit,
//! `HISTORY` from memory or from the store, rooms coming back from it, and
//! a store that fails or falls behind.

use super::*;
use crate::chat::history::Request;

#[test]
fn history_is_for_members_and_checks_its_arguments() {
    let (mut chat, mut out) = setup(&["a", "b"]);
    line(&mut chat, &mut out, 0, "JOIN #x");
    out.0.clear();
    for (text, err) in [
        ("HISTORY x", "invalid-room"),
        ("HISTORY #x 0", "bad-limit"),
        ("HISTORY #x 501", "bad-limit"),
        ("HISTORY #x AFTER", "bad-id"),
        ("HISTORY #x BEFORE 3 nope", "bad-limit"),
    ] {
        line(&mut chat, &mut out, 0, text);
        assert_eq!(out.take(0), format!("ERR {err}\n"), "{text}");
    }
    line(&mut chat, &mut out, 1, "HISTORY #x");
    line(&mut chat, &mut out, 1, "HISTORY #nowhere");
    assert_eq!(out.take(1), "ERR not-in-room\nERR not-in-room\n");
    line(&mut chat, &mut out, 7, "HISTORY #x");
    assert_eq!(out.take(7), "ERR not-logged-in\n");
    line(&mut chat, &mut out, 0, "HISTORY #X");
    assert_eq!(out.take(0), "END HISTORY #x\n", "nothing stored yet");
}

#[test]
fn committed_messages_are_read_back_from_memory() {
    let base = t0();
    let clock = WallClock::new(base, 1_000_000);
    let mut chat = Chat::start(
        Limits::default(),
        Stored::unlimited(),
        clock,
        Box::new(CountingTokens::default()),
    );
    let mut out = Recorder::default();
    line(&mut chat, &mut out, 0, "LOGIN a");
    line(&mut chat, &mut out, 0, "JOIN #Room");
    let later = base + Duration::from_millis(7);
    for text in ["one", " two  spaced ", "three"] {
        chat.on_line(0, format!("SAY #room {text}").as_bytes(), later, &mut out);
    }
    assert_eq!(
        line(&mut chat, &mut out, 0, "HISTORY #room"),
        Step::Wait,
        "in flight: the store answers after committing"
    );
    out.0.clear();
    commit(&mut chat, &mut out);
    assert_eq!(out.take(0), "SENT #Room 1\nSENT #Room 2\nSENT #Room 3\n");
    line(&mut chat, &mut out, 0, "HISTORY #ROOM 2");
    assert_eq!(
        out.take(0),
        "HIST #Room 2 1000007 a two  spaced\nHIST #Room 3 1000007 a three\nEND HISTORY #Room\n"
    );
    line(&mut chat, &mut out, 0, "HISTORY #room AFTER 1 1");
    line(&mut chat, &mut out, 0, "HISTORY #room BEFORE 2");
    let hist = out.take(0);
    let ids: Vec<&str> = hist.lines().map(|l| l.split(' ').nth(2).unwrap()).collect();
    assert_eq!(ids, ["2", "#Room", "1", "#Room"]);
}

#[test]
fn a_read_the_ring_cannot_answer_goes_to_the_store_and_waits() {
    let stored = Stored {
        next_id: 42,
        reserved: 100,
        sessions: Vec::new(),
        accounts: Vec::new(),
        members: Vec::new(),
    };
    let mut chat = Chat::start(
        Limits::default(),
        stored,
        WallClock::system(),
        Box::new(CountingTokens::default()),
    );
    let mut out = Recorder::default();
    out.1.push(("#Old", 41));
    line(&mut chat, &mut out, 0, "LOGIN a");
    line(&mut chat, &mut out, 0, "JOIN #old");
    assert_eq!(out.take(0), "OK\nJOINED #Old 1\n", "the stored spelling");
    assert_eq!(line(&mut chat, &mut out, 0, "HISTORY #old 2"), Step::Wait);
    let [Request::Fetch {
        ticket,
        room,
        query,
    }] = &chat.take_requests()[..]
    else {
        panic!("one fetch")
    };
    assert_eq!((&**room, query.limit), ("#Old", 2));
    let rows = vec![Message {
        id: 40,
        ms: 5,
        from: "z".into(),
        text: "old".into(),
    }];
    let fetched = Outcome::Fetched {
        ticket: *ticket,
        rows: Some(rows),
    };
    assert_eq!(
        chat.on_store(fetched, &mut out),
        Some((0, Step::Continue)),
        "may read again"
    );
    assert_eq!(out.take(0), "HIST #Old 40 5 z old\nEND HISTORY #Old\n");
    // A failed read, and an answer for a connection that left meanwhile.
    line(&mut chat, &mut out, 0, "HISTORY #old 5");
    line(&mut chat, &mut out, 1, "LOGIN b");
    line(&mut chat, &mut out, 1, "JOIN #old");
    line(&mut chat, &mut out, 1, "HISTORY #old 5");
    chat.leave(1, &mut out);
    let tickets: Vec<u64> = chat
        .take_requests()
        .into_iter()
        .filter_map(|r| match r {
            Request::Fetch { ticket, .. } => Some(ticket),
            _ => None,
        })
        .collect();
    out.0.clear();
    let failed = Outcome::Fetched {
        ticket: tickets[0],
        rows: None,
    };
    assert_eq!(chat.on_store(failed, &mut out), Some((0, Step::Continue)));
    assert_eq!(out.take(0), "ERR storage-unavailable\n");
    let gone = Outcome::Fetched {
        ticket: tickets[1],
        rows: Some(Vec::new()),
    };
    assert_eq!(chat.on_store(gone, &mut out), None);
    assert!(out.0.is_empty());
    line(&mut chat, &mut out, 0, "SAY #old hi");
    assert_eq!(out.take(0), "", "ids continue from the store's");
    assert_eq!(commit(&mut chat, &mut out), 1);
    assert_eq!(out.take(0), "SENT #Old 42\n");
}

#[test]
fn a_room_nobody_is_in_leaves_memory_and_comes_back_through_the_store() {
    let (mut chat, mut out) = setup(&["a", "b"]);
    for i in 0..1000 {
        line(&mut chat, &mut out, 0, &format!("JOIN #r{i}"));
        line(&mut chat, &mut out, 0, &format!("SAY #r{i} hello"));
        line(&mut chat, &mut out, 0, &format!("PART #r{i}"));
    }
    commit(&mut chat, &mut out);
    assert_eq!((chat.rooms(), chat.history.len()), (0, 0), "nothing kept");
    assert_eq!(chat.history.bytes(), 0);
    out.0.clear();
    // Two join the same room while the store looks it up: one room.
    assert_eq!(chat.on_line(0, b"JOIN #r5", t0(), &mut out), Step::Wait);
    assert_eq!(chat.on_line(1, b"JOIN #R5", t0(), &mut out), Step::Wait);
    assert_eq!(out.take(0), "", "JOINED waits for the store");
    out.1.push(("#r5", 6));
    answer_lookups(&mut chat, &mut out);
    assert_eq!(out.take(0), "JOINED #r5 1\nINFO #r5 b joined\n");
    assert_eq!(out.take(1), "JOINED #r5 2\n");
    assert_eq!(chat.rooms(), 1);
    // Its history is in the store, not in memory.
    assert_eq!(line(&mut chat, &mut out, 0, "HISTORY #r5"), Step::Wait);
    // A joiner who leaves before the answer is not seated.
    line(&mut chat, &mut out, 1, "PART #r5");
    chat.on_line(1, b"JOIN #new", t0(), &mut out);
    chat.leave(1, &mut out);
    answer_lookups(&mut chat, &mut out);
    chat.check_invariants();
    assert_eq!(chat.rooms(), 1);
}

#[test]
fn a_failed_commit_or_a_store_too_far_behind_refuses_say() {
    let stored = Stored {
        next_id: 1,
        reserved: 2,
        sessions: Vec::new(),
        accounts: Vec::new(),
        members: Vec::new(),
    };
    let mut chat = Chat::start(
        Limits::default(),
        stored,
        WallClock::system(),
        Box::new(CountingTokens::default()),
    );
    let mut out = Recorder::default();
    line(&mut chat, &mut out, 0, "LOGIN a");
    line(&mut chat, &mut out, 1, "LOGIN b");
    line(&mut chat, &mut out, 0, "JOIN #x");
    line(&mut chat, &mut out, 1, "JOIN #x");
    out.0.clear();
    line(&mut chat, &mut out, 0, "SAY #x 1");
    line(&mut chat, &mut out, 0, "SAY #x 2");
    line(&mut chat, &mut out, 0, "SAY #x 3");
    assert_eq!(out.take(0), "ERR storage-unavailable\n", "past the mark");
    assert_eq!(out.take(1), "SAY #x 1 a 1\nSAY #x 2 a 2\n");
    chat.take_requests();
    chat.on_store(Outcome::Failed { through: 2 }, &mut out);
    assert_eq!(
        out.take(0),
        "ERR storage-unavailable\nERR storage-unavailable\n"
    );
    assert_eq!(chat.in_flight(), 0);
    line(&mut chat, &mut out, 0, "HISTORY #x");
    assert_eq!(out.take(0), "END HISTORY #x\n", "nothing was stored");
    let committed = Outcome::Committed {
        through: 0,
        reserved: 10,
    };
    chat.on_store(committed, &mut out);
    line(&mut chat, &mut out, 0, "SAY #x 4");
    assert_eq!(commit(&mut chat, &mut out), 1);
    assert_eq!(out.take(0), "SENT #x 3\n", "a new mark lets ids flow");
}

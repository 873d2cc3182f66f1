//! Sessions that outlive the process: what the chat asks the store to
//! keep, and how a restart holds what it kept until `RESUME` or the
//! window's end.

use super::*;
use crate::chat::history::{Request, SavedSession};
use crate::chat::resume::{Tags, Token};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn saved(name: &str, rooms: &[(&str, MessageId)], ended_ms: Option<u64>) -> SavedSession {
    SavedSession {
        name: name.into(),
        hash: Token::parse(TOKEN).unwrap().hash(),
        rooms: rooms.iter().map(|&(r, last)| (r.into(), last)).collect(),
        ended_ms,
        tags: Tags::decode("t9:#Room:7"),
    }
}

/// A chat restarted at `clock` with `sessions` kept from before.
fn restarted(sessions: Vec<SavedSession>, clock: WallClock, window: Duration) -> Chat {
    let limits = Limits {
        resume_window: window,
        ..Limits::default()
    };
    let stored = Stored {
        sessions,
        ..Stored::unlimited()
    };
    Chat::start(limits, stored, clock, Box::new(CountingTokens::default()))
}

#[test]
fn a_session_with_a_token_is_kept_as_it_changes_and_a_login_forgets_the_name() {
    let (mut chat, mut out) = setup(&[]);
    line(&mut chat, &mut out, 0, "LOGIN alice");
    assert_eq!(
        chat.take_session_writes(),
        [Request::ForgetSession {
            name: "alice".into()
        }],
        "a login ends whatever the store kept of the name"
    );
    line(&mut chat, &mut out, 0, "JOIN #x");
    assert_eq!(chat.take_session_writes(), [], "no token, nothing to keep");
    let token = Token::parse(&token_of(&mut chat, &mut out, 0)).unwrap();
    let writes = chat.take_session_writes();
    let [Request::SaveSession {
        name,
        hash,
        rooms,
        ended_ms: None,
        ..
    }] = &writes[..]
    else {
        panic!("one live save: {writes:?}");
    };
    assert_eq!((&**name, &**rooms), ("alice", "#x"));
    assert!(hash.proves(&token), "the token's hash, never the token");
    line(&mut chat, &mut out, 0, "JOIN #y");
    line(&mut chat, &mut out, 0, "PART #x");
    let rooms: Vec<Box<str>> = chat
        .take_session_writes()
        .into_iter()
        .map(|w| match w {
            Request::SaveSession { rooms, .. } => rooms,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(rooms, [Box::from("#x #y"), Box::from("#y")]);
    chat.leave(0, &mut out);
    let writes = chat.take_session_writes();
    assert!(
        matches!(&writes[..], [Request::SaveSession { ended_ms: Some(_), rooms, .. }] if &**rooms == "#y"),
        "{writes:?}"
    );
}

#[test]
fn a_restart_holds_kept_sessions_and_resume_takes_one_back_in_silence() {
    let clock = WallClock::new(t0(), 1_000_000);
    let mut chat = restarted(
        vec![saved("Alice", &[("#Room", 7)], None)],
        clock,
        Duration::from_secs(120),
    );
    let mut out = Recorder::default();
    assert_eq!((chat.users(), chat.rooms(), chat.resumable()), (1, 1, 1));
    line(&mut chat, &mut out, 1, "LOGIN bob");
    line(&mut chat, &mut out, 1, "JOIN #room");
    assert_eq!(out.take(1), "OK\nJOINED #Room 2\n", "alice's seat is held");
    line(&mut chat, &mut out, 1, "WHO #room");
    assert_eq!(out.take(1), "USER Alice\nUSER bob\nEND WHO #Room\n");
    line(&mut chat, &mut out, 2, "LOGIN alice");
    assert_eq!(out.take(2), "ERR username-taken\n");
    line(
        &mut chat,
        &mut out,
        2,
        "RESUME alice 00000000000000000000000000000001",
    );
    assert_eq!(out.take(2), "ERR bad-token\n");
    line(&mut chat, &mut out, 2, &format!("RESUME alice {TOKEN}"));
    assert_eq!(out.take(2), "OK\nJOINED #Room 2\n");
    assert_eq!(out.take(1), "", "nobody hears of it");
    assert_eq!(chat.resumable(), 0);
    line(&mut chat, &mut out, 1, "SAY #room hi");
    assert!(out.take(2).starts_with("SAY #Room 1 bob hi"));
    // The session is live again, and the token still works after a drop.
    chat.leave(2, &mut out);
    out.0.clear();
    line(&mut chat, &mut out, 3, &format!("RESUME alice {TOKEN}"));
    assert!(out.take(3).starts_with("OK\n"));
}

#[test]
fn a_held_session_not_taken_back_departs_with_the_ordinary_lines() {
    let now = t0();
    let clock = WallClock::new(now, 1_000_000);
    // Ended 4 s before the restart, with a 10 s window: 6 s are left.
    let mut chat = restarted(
        vec![
            saved("alice", &[("#x", 0)], Some(996_000)),
            saved("old", &[], Some(900_000)),
        ],
        clock,
        Duration::from_secs(10),
    );
    let mut out = Recorder::default();
    assert_eq!(chat.users(), 1, "a session past its window is not held");
    assert_eq!(chat.next_deadline(), Some(now + Duration::from_secs(6)));
    line(&mut chat, &mut out, 1, "LOGIN bob");
    line(&mut chat, &mut out, 1, "JOIN #x");
    out.take(1);
    chat.take_session_writes();
    chat.tick(now + Duration::from_secs(5), &mut out);
    assert_eq!(out.take(1), "");
    chat.tick(now + Duration::from_secs(6), &mut out);
    assert_eq!(out.take(1), "INFO #x alice left\nINFO alice disconnected\n");
    assert_eq!(
        chat.take_session_writes(),
        [Request::ForgetSession {
            name: "alice".into()
        }]
    );
    line(&mut chat, &mut out, 2, &format!("RESUME alice {TOKEN}"));
    assert_eq!(out.take(2), "ERR bad-token\n");
    line(&mut chat, &mut out, 2, "LOGIN alice");
    assert_eq!(out.take(2), "OK\n");
}

/// alice (conn 0, with a token) and bob (conn 1) in `#x`; alice drops
/// after seeing `seen` messages of bob's, and bob says `missed` more, all
/// committed. Returns alice's token.
fn missed(chat: &mut Chat, out: &mut Recorder, seen: usize, missed: usize) -> String {
    line(chat, out, 0, "JOIN #x");
    line(chat, out, 1, "JOIN #x");
    let token = token_of(chat, out, 0);
    for i in 0..seen + missed {
        if i == seen {
            chat.leave(0, out);
        }
        line(chat, out, 1, &format!("SAY #x m{}", i + 1));
        commit(chat, out);
    }
    out.0.clear();
    token
}

/// The lines of a replay after `OK` and the `JOINED` lines.
fn replayed(out: &mut Recorder, id: ConnId) -> Vec<String> {
    let all = out.take(id);
    all.lines()
        .skip_while(|l| *l == "OK" || l.starts_with("JOINED "))
        .map(|l| {
            // HIST #x <id> <ms> bob <text>: the id and the text.
            let w: Vec<&str> = l.split(' ').collect();
            if w[0] == "HIST" {
                format!("{} {}", w[2], w[5])
            } else {
                l.to_string()
            }
        })
        .collect()
}

#[test]
fn resume_replays_what_each_listed_room_missed_in_one_round_trip() {
    let (mut chat, mut out) = setup(&["alice", "bob"]);
    let token = missed(&mut chat, &mut out, 1, 2);
    let step = line(
        &mut chat,
        &mut out,
        2,
        &format!("RESUME alice {token} #x:1 #y:0 #x x:1 #X:3"),
    );
    assert_eq!(step, Step::LoggedIn);
    assert_eq!(
        replayed(&mut out, 2),
        [
            "2 m2",
            "3 m3",
            "END HISTORY #x",
            "ERR not-in-room",
            "ERR bad-id",
            "ERR invalid-room",
            "END HISTORY #x",
        ],
        "each room in order, answered as HISTORY would"
    );
    // The bare form is unchanged.
    chat.leave(2, &mut out);
    line(&mut chat, &mut out, 3, &format!("RESUME alice {token}"));
    assert_eq!(out.take(3), "OK\nJOINED #x 2\n");
}

#[test]
fn a_replay_past_its_limit_is_cut_with_more() {
    for (count, last) in [(500, "END HISTORY #x"), (501, "END HISTORY #x MORE")] {
        let (mut chat, mut out) = setup(&["alice", "bob"]);
        let token = missed(&mut chat, &mut out, 0, count);
        line(
            &mut chat,
            &mut out,
            2,
            &format!("RESUME alice {token} #x:0"),
        );
        let lines = replayed(&mut out, 2);
        assert_eq!(lines.len(), 501, "{count} missed");
        assert_eq!(lines[0], "1 m1");
        assert_eq!(lines[499], "500 m500");
        assert_eq!(lines[500], last, "{count} missed");
    }
}

#[test]
fn a_replay_the_ring_cannot_answer_waits_for_the_store_and_keeps_order() {
    let (mut chat, mut out) = setup(&["alice", "bob"]);
    let token = missed(&mut chat, &mut out, 1, 1);
    // The room leaves memory (nobody in it), then comes back: its ring
    // starts empty, and what it said is the store's to tell.
    chat.leave(1, &mut out);
    out.1.push(("#x", 2));
    line(&mut chat, &mut out, 3, "LOGIN carol");
    line(&mut chat, &mut out, 3, "JOIN #x");
    chat.take_requests();
    out.0.clear();
    let step = line(
        &mut chat,
        &mut out,
        2,
        &format!("RESUME alice {token} #x:1 #nope:0"),
    );
    assert_eq!(step, Step::Replay { ghost: None });
    assert_eq!(out.take(2), "OK\nJOINED #x 2\n");
    let [Request::Fetch { ticket, query, .. }] = &chat.take_requests()[..] else {
        panic!("one fetch");
    };
    assert_eq!(query.limit, 501);
    let rows = vec![Message {
        id: 2,
        ms: 5,
        from: "bob".into(),
        text: "m2".into(),
    }];
    let fetched = Outcome::Fetched {
        ticket: *ticket,
        rows: Some(rows),
    };
    assert_eq!(
        chat.on_store(fetched, &mut out),
        Some((2, Step::Continue)),
        "may read again"
    );
    assert_eq!(
        out.take(2),
        "HIST #x 2 5 bob m2\nEND HISTORY #x\nERR not-in-room\n",
        "the stored answer, then the rest of the list in order"
    );
}

#[test]
fn a_tagged_say_resent_is_answered_with_its_id_and_said_once() {
    let (mut chat, mut out) = setup(&["alice", "bob"]);
    line(&mut chat, &mut out, 0, "JOIN #x");
    line(&mut chat, &mut out, 1, "JOIN #x");
    let token = token_of(&mut chat, &mut out, 0);
    out.0.clear();
    line(&mut chat, &mut out, 0, "SAY #x/l1 hello");
    assert_eq!(out.take(1), "SAY #x 1 alice hello\n");
    // Resent before the commit: one SENT, when it comes, to the resender.
    line(&mut chat, &mut out, 0, "SAY #x/l1 hello");
    assert_eq!(out.take(1), "", "not said twice");
    commit(&mut chat, &mut out);
    assert_eq!(out.take(0), "SENT #x 1\n");
    // Resent after the commit: SENT at once.
    line(&mut chat, &mut out, 0, "SAY #x/l1 hello");
    assert_eq!(out.take(0), "SENT #x 1\n");
    // The connection drops; the tag lives on with the session.
    chat.leave(0, &mut out);
    out.0.clear();
    line(&mut chat, &mut out, 2, &format!("RESUME alice {token}"));
    out.0.clear();
    line(&mut chat, &mut out, 2, "SAY #x/l1 hello");
    assert_eq!(out.take(2), "SENT #x 1\n");
    assert_eq!(out.take(1), "", "still said once");
    line(&mut chat, &mut out, 2, "SAY #x/l2 again");
    assert_eq!(
        out.take(1),
        "SAY #x 2 alice again\n",
        "a new tag is a new message"
    );
    line(&mut chat, &mut out, 2, "SAY #x/bad.tag x");
    assert_eq!(out.take(2), "ERR bad-tag\n");
    let saved = chat.take_session_writes();
    assert!(
        saved.iter().any(
            |w| matches!(w, Request::SaveSession { tags, .. } if &**tags == "l1:#x:1 l2:#x:2")
        ),
        "the store keeps the tags: {saved:?}"
    );
}

#[test]
fn a_tag_kept_from_before_a_restart_still_answers() {
    let clock = WallClock::new(t0(), 1_000_000);
    let mut chat = restarted(
        vec![saved("alice", &[("#Room", 7)], None)],
        clock,
        Duration::from_secs(120),
    );
    let mut out = Recorder::default();
    line(&mut chat, &mut out, 1, &format!("RESUME alice {TOKEN}"));
    out.take(1);
    line(&mut chat, &mut out, 1, "SAY #room/t9 said before the crash");
    assert_eq!(out.take(1), "SENT #Room 7\n");
}

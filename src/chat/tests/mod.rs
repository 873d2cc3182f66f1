//! The chat driven with lines alone: a recorder stands in for the
//! connections and plays the store where a test needs one.

use super::*;
use crate::chat::history::Request;
use std::collections::HashMap;

mod accounts;
mod cluster;
mod events;
mod sessions;
mod store;

impl Chat {
    /// The store's share of the chat's effects, for tests that play the
    /// store's messages and reads (session writes are left out: the
    /// session tests read them with [`Chat::take_session_writes`]).
    fn take_requests(&mut self) -> Vec<Request> {
        self.journal
            .take_requests()
            .filter(|r| !is_session_write(r))
            .collect()
    }

    /// The session writes asked of the store, dropping the rest.
    fn take_session_writes(&mut self) -> Vec<Request> {
        self.journal
            .take_requests()
            .filter(is_session_write)
            .collect()
    }
}

fn is_session_write(r: &Request) -> bool {
    matches!(
        r,
        Request::SaveSession { .. } | Request::ForgetSession { .. }
    )
}

fn t0() -> Instant {
    Instant::now()
}

/// Argon2id at the least cost it takes: the tests check what the chat
/// does with verdicts, not the server's cost.
fn cheap_hashing() -> crate::auth::Hashing {
    crate::auth::Hashing::with(argon2::Params::new(64, 1, 1, None).unwrap())
}

/// Records every line each connection would receive; the second
/// field is what the store holds of rooms (spelling, last id), which
/// answers the chat's lookups.
#[derive(Default)]
struct Recorder(HashMap<ConnId, Vec<u8>>, Vec<(&'static str, MessageId)>);

impl Outbox for Recorder {
    fn send(&mut self, to: ConnId, bytes: &[u8]) {
        self.0.entry(to).or_default().extend_from_slice(bytes);
    }
}

impl Recorder {
    fn take(&mut self, id: ConnId) -> String {
        String::from_utf8(self.0.remove(&id).unwrap_or_default()).unwrap()
    }
}

fn setup(names: &[&str]) -> (Chat, Recorder) {
    with_limits(Limits::default(), names)
}

fn with_limits(limits: Limits, names: &[&str]) -> (Chat, Recorder) {
    let mut chat = Chat::new(limits);
    let mut out = Recorder::default();
    for (id, name) in names.iter().enumerate() {
        let step = chat.on_line(id, format!("LOGIN {name}").as_bytes(), t0(), &mut out);
        assert_eq!(step, Step::LoggedIn);
    }
    out.0.clear();
    (chat, out)
}

#[test]
fn login_announces_to_others_only() {
    let (mut chat, mut out) = setup(&["alice"]);
    assert_eq!(
        chat.on_line(1, b"login Bob", t0(), &mut out),
        Step::LoggedIn
    );
    assert_eq!(out.take(1), "OK\n");
    assert_eq!(out.take(0), "INFO Bob joined\n");
    chat.check_invariants();
}

#[test]
fn login_errors() {
    let (mut chat, mut out) = setup(&["Alice"]);
    chat.on_line(1, b"LOGIN alice", t0(), &mut out);
    chat.on_line(1, b"LOGIN al ice", t0(), &mut out);
    chat.on_line(1, b"LOGIN", t0(), &mut out);
    chat.on_line(0, b"LOGIN other", t0(), &mut out);
    assert_eq!(
        out.take(1),
        "ERR username-taken\nERR invalid-username\nERR invalid-username\n"
    );
    assert_eq!(out.take(0), "ERR already-logged-in\n");
    assert_eq!(chat.users(), 1);
}

#[test]
fn msg_goes_to_everyone_else_and_never_to_anonymous() {
    let (mut chat, mut out) = setup(&["a", "b", "c"]);
    chat.on_line(1, b"MSG  hi  there ", t0(), &mut out);
    chat.on_line(9, b"MSG nope", t0(), &mut out);
    assert_eq!(out.take(0), "MSG b hi  there\n");
    assert_eq!(out.take(2), "MSG b hi  there\n");
    assert_eq!(out.take(1), "");
    assert_eq!(out.take(9), "ERR not-logged-in\n");
    chat.on_line(1, b"MSG   ", t0(), &mut out);
    assert_eq!(out.take(1), "ERR empty-message\n");
}

#[test]
fn dm_reaches_only_the_target() {
    let (mut chat, mut out) = setup(&["a", "Bob", "c"]);
    chat.on_line(0, b"DM bob psst  x", t0(), &mut out);
    assert_eq!(out.take(1), "DM a psst  x\n");
    assert!(out.0.is_empty());
    chat.on_line(0, b"DM zed hi", t0(), &mut out);
    chat.on_line(0, b"DM bob", t0(), &mut out);
    chat.on_line(0, b"DM", t0(), &mut out);
    chat.on_line(7, b"DM bob hi", t0(), &mut out);
    assert_eq!(
        out.take(0),
        "ERR no-such-user\nERR empty-message\nERR no-such-user\n"
    );
    assert_eq!(out.take(7), "ERR not-logged-in\n");
}

#[test]
fn who_is_sorted_case_insensitively() {
    let (mut chat, mut out) = setup(&["charlie", "Bob", "alice", "_x", "Zed"]);
    chat.on_line(0, b"WHO", t0(), &mut out);
    assert_eq!(
        out.take(0),
        "USER _x\nUSER alice\nUSER Bob\nUSER charlie\nUSER Zed\n"
    );
    chat.on_line(9, b"who", t0(), &mut out);
    assert_eq!(out.take(9), "ERR not-logged-in\n");
}

#[test]
fn ping_pong_quit_work_before_login() {
    let mut chat = Chat::default();
    let mut out = Recorder::default();
    assert_eq!(chat.on_line(3, b"PING", t0(), &mut out), Step::Continue);
    chat.on_line(3, b"PING tok en", t0(), &mut out);
    chat.on_line(3, b"PONG", t0(), &mut out);
    assert_eq!(chat.on_line(3, b"QUIT bye all", t0(), &mut out), Step::Quit);
    assert_eq!(out.take(3), "PONG\nPONG tok en\n");
}

#[test]
fn leave_announces_once_and_frees_the_name() {
    let (mut chat, mut out) = setup(&["a", "b", "c"]);
    chat.leave(0, &mut out);
    chat.leave(0, &mut out);
    chat.leave(42, &mut out);
    assert_eq!(out.take(1), "INFO a disconnected\n");
    assert_eq!(out.take(2), "INFO a disconnected\n");
    assert_eq!(out.take(0), "");
    chat.check_invariants();
    assert_eq!(chat.on_line(5, b"LOGIN A", t0(), &mut out), Step::LoggedIn);
    chat.check_invariants();
    chat.on_line(2, b"MSG x", t0(), &mut out);
    assert_eq!(out.take(1), "INFO A joined\nMSG c x\n");
    assert_eq!(out.take(5), "OK\nMSG c x\n");
}

#[test]
fn errors_from_parsing_are_replied() {
    let mut chat = Chat::default();
    let mut out = Recorder::default();
    chat.on_line(0, b"\xff", t0(), &mut out);
    chat.on_line(0, b"MSG \x1b", t0(), &mut out);
    chat.on_line(0, b"FOO", t0(), &mut out);
    chat.on_line(0, b"   ", t0(), &mut out);
    chat.on_rejected(0, ProtocolError::LineTooLong, &mut out);
    assert_eq!(
        out.take(0),
        "ERR invalid-utf8\nERR invalid-text\nERR unknown-command\nERR line-too-long\n"
    );
}

fn line(chat: &mut Chat, out: &mut Recorder, id: ConnId, text: &str) -> Step {
    let step = chat.on_line(id, text.as_bytes(), t0(), out);
    answer_lookups(chat, out);
    chat.check_invariants();
    step
}

/// Plays a store that answers the chat's room lookups at once from
/// the recorder's rooms, leaving every other request in place.
fn answer_lookups(chat: &mut Chat, out: &mut Recorder) {
    let mut lookups = Vec::new();
    chat.journal.requests_mut().retain(|r| match r {
        Request::Lookup { ticket, room } => {
            lookups.push((*ticket, room.clone()));
            false
        }
        _ => true,
    });
    for (ticket, room) in lookups {
        let found = match out.1.iter().find(|(s, _)| s.eq_ignore_ascii_case(&room)) {
            Some(&(spelling, last)) => Found::Stored {
                spelling: spelling.into(),
                last,
            },
            None => Found::Unknown,
        };
        chat.on_store(Outcome::Looked { ticket, found }, out);
    }
}

/// Plays a store that commits everything asked of it (answering no
/// reads); returns the number of messages committed.
fn commit(chat: &mut Chat, out: &mut Recorder) -> usize {
    let appends: Vec<MessageId> = chat
        .take_requests()
        .into_iter()
        .filter_map(|r| match r {
            Request::Append { message, .. } => Some(message.id),
            _ => None,
        })
        .collect();
    if let Some(&through) = appends.last() {
        let reserved = MessageId::MAX;
        chat.on_store(Outcome::Committed { through, reserved }, out);
    }
    appends.len()
}

#[test]
fn join_creates_counts_and_announces_to_members_only() {
    let (mut chat, mut out) = setup(&["a", "b", "c"]);
    line(&mut chat, &mut out, 0, "JOIN #Rust");
    assert_eq!(out.take(0), "JOINED #Rust 1\n");
    assert_eq!(out.take(1), "", "not a member: not told");
    line(&mut chat, &mut out, 1, "join #RUST");
    assert_eq!(out.take(1), "JOINED #Rust 2\n", "the first spelling");
    assert_eq!(out.take(0), "INFO #Rust b joined\n");
    assert_eq!(out.take(2), "");
    assert_eq!(chat.rooms(), 1);
}

#[test]
fn join_errors() {
    let limits = Limits {
        max_rooms: 2,
        presence_limit: 0,
        ..Limits::default()
    };
    let (mut chat, mut out) = with_limits(limits, &["a"]);
    for bad in ["JOIN", "JOIN rust", "JOIN #", "JOIN #a b", "JOIN #é"] {
        line(&mut chat, &mut out, 0, bad);
        assert_eq!(out.take(0), "ERR invalid-room\n", "{bad}");
    }
    line(&mut chat, &mut out, 0, "JOIN #a");
    line(&mut chat, &mut out, 0, "JOIN #A");
    line(&mut chat, &mut out, 0, "JOIN #b");
    line(&mut chat, &mut out, 0, "JOIN #c");
    assert_eq!(
        out.take(0),
        "JOINED #a 1\nERR already-joined\nJOINED #b 1\nERR too-many-rooms\n"
    );
    line(&mut chat, &mut out, 9, "JOIN #a");
    line(&mut chat, &mut out, 9, "JOIN nonsense");
    assert_eq!(out.take(9), "ERR not-logged-in\nERR not-logged-in\n");
    line(&mut chat, &mut out, 0, "PART #b");
    line(&mut chat, &mut out, 0, "JOIN #c");
    assert_eq!(
        out.take(0),
        "PARTED #b\nJOINED #c 1\n",
        "a part frees a place"
    );
}

#[test]
fn part_tells_the_rest_and_an_empty_room_is_gone() {
    let (mut chat, mut out) = setup(&["a", "b"]);
    line(&mut chat, &mut out, 0, "JOIN #x");
    line(&mut chat, &mut out, 1, "JOIN #x");
    out.0.clear();
    line(&mut chat, &mut out, 1, "PART #X");
    assert_eq!(out.take(1), "PARTED #x\n");
    assert_eq!(out.take(0), "INFO #x b left\n");
    line(&mut chat, &mut out, 1, "PART #x");
    line(&mut chat, &mut out, 1, "PART #never");
    line(&mut chat, &mut out, 1, "PART x");
    assert_eq!(
        out.take(1),
        "ERR not-in-room\nERR not-in-room\nERR invalid-room\n"
    );
    line(&mut chat, &mut out, 0, "PART #x");
    assert_eq!(out.take(0), "PARTED #x\n");
    assert_eq!(chat.rooms(), 0);
    line(&mut chat, &mut out, 5, "PART #x");
    assert_eq!(out.take(5), "ERR not-logged-in\n");
}

#[test]
fn say_reaches_the_other_members_with_increasing_ids() {
    let (mut chat, mut out) = setup(&["a", "b", "c"]);
    line(&mut chat, &mut out, 0, "JOIN #x");
    line(&mut chat, &mut out, 1, "JOIN #x");
    line(&mut chat, &mut out, 2, "JOIN #y");
    out.0.clear();
    line(&mut chat, &mut out, 0, "SAY #X  hello  there ");
    line(&mut chat, &mut out, 1, "say #x back");
    line(&mut chat, &mut out, 2, "SAY #y alone");
    assert_eq!(
        out.take(0),
        "SAY #x 2 b back\n",
        "no SENT before the commit"
    );
    assert_eq!(out.take(1), "SAY #x 1 a hello  there\n");
    assert_eq!(commit(&mut chat, &mut out), 3);
    assert_eq!(out.take(0), "SENT #x 1\n");
    assert_eq!(out.take(1), "SENT #x 2\n");
    assert_eq!(
        out.take(2),
        "SENT #y 3\n",
        "never echoed, other rooms unheard"
    );
    line(&mut chat, &mut out, 2, "SAY #x sneaky");
    line(&mut chat, &mut out, 2, "SAY #y   ");
    line(&mut chat, &mut out, 2, "SAY y hi");
    line(&mut chat, &mut out, 2, "SAY");
    line(&mut chat, &mut out, 8, "SAY #y hi");
    assert_eq!(
        out.take(2),
        "ERR not-in-room\nERR empty-message\nERR invalid-room\nERR invalid-room\n"
    );
    assert_eq!(out.take(8), "ERR not-logged-in\n");
    assert!(out.0.is_empty(), "errors reach nobody else");
    line(&mut chat, &mut out, 2, "SAY #y again");
    commit(&mut chat, &mut out);
    assert_eq!(out.take(2), "SENT #y 4\n", "a refused SAY takes no id");
}

#[test]
fn rooms_and_who_of_a_room_are_sorted_and_ended() {
    let (mut chat, mut out) = setup(&["carol", "Bob", "alice"]);
    line(&mut chat, &mut out, 0, "ROOMS");
    assert_eq!(out.take(0), "END ROOMS\n");
    line(&mut chat, &mut out, 0, "JOIN #zed");
    line(&mut chat, &mut out, 1, "JOIN #Alpha");
    line(&mut chat, &mut out, 2, "JOIN #zed");
    line(&mut chat, &mut out, 1, "JOIN #zed");
    out.0.clear();
    line(&mut chat, &mut out, 0, "rooms");
    assert_eq!(out.take(0), "ROOM #Alpha 1\nROOM #zed 3\nEND ROOMS\n");
    line(&mut chat, &mut out, 0, "WHO #ZED");
    assert_eq!(
        out.take(0),
        "USER alice\nUSER Bob\nUSER carol\nEND WHO #zed\n"
    );
    line(&mut chat, &mut out, 0, "WHO #nobody");
    line(&mut chat, &mut out, 0, "WHO #bad!");
    assert_eq!(out.take(0), "ERR no-such-room\nERR invalid-room\n");
    line(&mut chat, &mut out, 0, "WHO anything");
    assert_eq!(
        out.take(0),
        "USER alice\nUSER Bob\nUSER carol\n",
        "v1 WHO is unchanged"
    );
    line(&mut chat, &mut out, 7, "ROOMS");
    line(&mut chat, &mut out, 7, "WHO #zed");
    assert_eq!(out.take(7), "ERR not-logged-in\nERR not-logged-in\n");
}

#[test]
fn a_departure_leaves_every_room_once_then_the_lobby() {
    let (mut chat, mut out) = setup(&["a", "b", "c"]);
    for room in ["#x", "#y"] {
        line(&mut chat, &mut out, 0, &format!("JOIN {room}"));
        line(&mut chat, &mut out, 1, &format!("JOIN {room}"));
    }
    line(&mut chat, &mut out, 0, "JOIN #solo");
    out.0.clear();
    chat.leave(0, &mut out);
    chat.leave(0, &mut out);
    chat.check_invariants();
    let b = out.take(1);
    let mut b: Vec<&str> = b.lines().collect();
    assert_eq!(b.pop(), Some("INFO a disconnected"));
    b.sort();
    assert_eq!(b, ["INFO #x a left", "INFO #y a left"]);
    assert_eq!(out.take(2), "INFO a disconnected\n");
    assert_eq!(chat.rooms(), 2, "#solo went with its last member");
    line(&mut chat, &mut out, 1, "ROOMS");
    assert_eq!(out.take(1), "ROOM #x 1\nROOM #y 1\nEND ROOMS\n");
    chat.remove(1);
    chat.check_invariants();
    assert_eq!(chat.rooms(), 0, "a silent removal empties rooms too");
    assert!(out.0.is_empty());
}

#[test]
fn presence_is_announced_only_up_to_the_limit() {
    let limits = Limits {
        max_rooms: 4,
        presence_limit: 3,
        ..Limits::default()
    };
    let (mut chat, mut out) = with_limits(limits, &["a", "b", "c"]);
    line(&mut chat, &mut out, 3, "LOGIN d");
    assert_eq!(out.take(3), "OK\n");
    assert!(out.0.is_empty(), "the 4th login is not announced");
    for id in 0..3 {
        line(&mut chat, &mut out, id, "JOIN #r");
    }
    assert_eq!(
        out.take(0),
        "JOINED #r 1\nINFO #r b joined\nINFO #r c joined\n"
    );
    out.0.clear();
    line(&mut chat, &mut out, 3, "JOIN #r");
    assert_eq!(out.take(3), "JOINED #r 4\n");
    assert!(out.0.is_empty(), "the 4th member is not announced");
    chat.leave(3, &mut out);
    assert!(out.0.is_empty(), "nor is the departure among 4");
    chat.leave(2, &mut out);
    assert_eq!(out.take(0), "INFO #r c left\nINFO c disconnected\n");
    assert_eq!(out.take(1), "INFO #r c left\nINFO c disconnected\n");
    line(&mut chat, &mut out, 1, "WHO #r");
    assert_eq!(out.take(1), "USER a\nUSER b\nEND WHO #r\n");
}

#[test]
fn a_v1_user_never_sees_v2_lines() {
    let (mut chat, mut out) = setup(&["old", "new1", "new2"]);
    line(&mut chat, &mut out, 1, "JOIN #v2");
    line(&mut chat, &mut out, 2, "JOIN #v2");
    line(&mut chat, &mut out, 1, "SAY #v2 hi");
    line(&mut chat, &mut out, 2, "PART #v2");
    line(&mut chat, &mut out, 1, "MSG to all");
    chat.leave(1, &mut out);
    assert_eq!(out.take(0), "MSG new1 to all\nINFO new1 disconnected\n");
}

fn token_of(chat: &mut Chat, out: &mut Recorder, id: ConnId) -> String {
    out.take(id);
    line(chat, out, id, "TOKEN");
    let reply = out.take(id);
    let token = reply.strip_prefix("TOKEN ").unwrap().trim_end();
    assert_eq!(token.len(), 32);
    token.to_string()
}

/// A source with no randomness to give.
#[derive(Debug)]
struct NoTokens;

impl TokenSource for NoTokens {
    fn next_token(&mut self) -> Option<Token> {
        None
    }
}

#[test]
fn tokens_come_from_the_source_the_chat_was_given() {
    let (mut chat, mut out) = setup(&["a", "b"]);
    assert_eq!(token_of(&mut chat, &mut out, 0), format!("{:032x}", 1));
    assert_eq!(token_of(&mut chat, &mut out, 1), format!("{:032x}", 2));
    let clock = WallClock::system();
    let mut chat = Chat::start(
        Limits::default(),
        Stored::unlimited(),
        clock,
        Box::new(NoTokens),
    );
    line(&mut chat, &mut out, 0, "LOGIN a");
    line(&mut chat, &mut out, 0, "TOKEN");
    assert_eq!(
        out.take(0),
        "OK\nERR storage-unavailable\n",
        "no token, no guess"
    );
}

#[test]
fn resume_takes_over_a_ghost_in_silence() {
    let (mut chat, mut out) = setup(&["alice", "bob"]);
    line(&mut chat, &mut out, 0, "JOIN #b");
    line(&mut chat, &mut out, 0, "JOIN #A");
    line(&mut chat, &mut out, 1, "JOIN #b");
    line(&mut chat, &mut out, 9, "TOKEN");
    assert_eq!(out.take(9), "ERR not-logged-in\n");
    let first = token_of(&mut chat, &mut out, 0);
    let token = token_of(&mut chat, &mut out, 0);
    assert_ne!(first, token);
    out.0.clear();
    line(&mut chat, &mut out, 5, &format!("RESUME alice {first}"));
    line(&mut chat, &mut out, 5, &format!("RESUME bob {token}"));
    line(&mut chat, &mut out, 5, "RESUME alice nothex");
    assert_eq!(
        out.take(5),
        "ERR bad-token\n".repeat(3),
        "replaced, not bob's, junk"
    );
    assert_eq!(
        line(&mut chat, &mut out, 5, &format!("resume ALICE {token}")),
        Step::Replaced(0)
    );
    assert_eq!(out.take(5), "OK\nJOINED #A 1\nJOINED #b 2\n");
    assert!(out.0.is_empty(), "nobody hears of it");
    chat.remove(0);
    chat.check_invariants();
    assert_eq!(chat.name(5), Some("alice"));
    line(&mut chat, &mut out, 1, "SAY #b hi");
    assert_eq!(out.take(5), "SAY #b 1 bob hi\n");
    line(&mut chat, &mut out, 5, &format!("RESUME alice {token}"));
    assert_eq!(out.take(5), "ERR already-logged-in\n");
}

#[test]
fn resume_after_the_session_ended_rejoins_within_the_window() {
    let limits = Limits {
        resume_window: Duration::from_secs(10),
        ..Limits::default()
    };
    let (mut chat, mut out) = with_limits(limits, &["alice", "bob"]);
    line(&mut chat, &mut out, 0, "JOIN #x");
    line(&mut chat, &mut out, 1, "JOIN #x");
    let token = token_of(&mut chat, &mut out, 0);
    chat.tick(t0(), &mut out);
    chat.leave(0, &mut out);
    assert_eq!(chat.resumable(), 1);
    out.0.clear();
    line(&mut chat, &mut out, 3, &format!("RESUME alice {token}"));
    assert_eq!(out.take(3), "OK\nJOINED #x 2\n");
    assert_eq!(out.take(1), "INFO alice joined\nINFO #x alice joined\n");
    assert_eq!(chat.resumable(), 0);
    // The token lives on with the session; a second drop, then expiry.
    chat.leave(3, &mut out);
    chat.tick(t0() + Duration::from_secs(11), &mut out);
    assert_eq!(chat.resumable(), 0, "the window passed");
    line(&mut chat, &mut out, 4, &format!("RESUME alice {token}"));
    assert_eq!(out.take(4), "ERR bad-token\n");
    // A login under the name ends the session it could have resumed.
    let (mut chat, mut out) = with_limits(limits, &["alice"]);
    let token = token_of(&mut chat, &mut out, 0);
    chat.leave(0, &mut out);
    line(&mut chat, &mut out, 1, "LOGIN Alice");
    chat.leave(1, &mut out);
    line(&mut chat, &mut out, 2, &format!("RESUME alice {token}"));
    assert_eq!(out.take(2), "ERR bad-token\n");
    line(&mut chat, &mut out, 2, "LOGIN alice");
    assert_eq!(out.take(2), "OK\n", "a refused RESUME leaves LOGIN open");
}

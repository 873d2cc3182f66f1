//! Arbitrary bytes, split at arbitrary points across up to four simulated
//! connections, through framing, parsing and the chat router. Checks: no
//! panic; every server line is a well-formed protocol v1 line; the registry
//! holds each logged-in user exactly once; a departed user's name is free;
//! a room leaves memory with its last member. The store is played by
//! answering every room lookup with "never stored", every read with
//! nothing, and every account write with a commit; password jobs run at
//! Argon2's least cost, so accounts, conversations and invite-only rooms
//! are reached too.
#![no_main]

use std::collections::HashMap;
use std::ops::ControlFlow;

use libfuzzer_sys::fuzz_target;
use selectchat::auth::Hashing;
use selectchat::chat::cluster::Effect;
use selectchat::chat::history::{Found, Outcome, Request};
use selectchat::chat::{Chat, ConnId, Outbox, Step};
use selectchat::protocol::{parse_reply, Frame, Framer, ProtocolError};

const CONNS: usize = 4;

/// Checks every line the chat writes as it is written.
struct Checker;

impl Outbox for Checker {
    fn send(&mut self, to: ConnId, bytes: &[u8]) {
        assert!(to < CONNS, "output for unknown connection {to}");
        assert_eq!(bytes.last(), Some(&b'\n'), "unterminated output {bytes:?}");
        for line in bytes[..bytes.len() - 1].split(|&b| b == b'\n') {
            let text = std::str::from_utf8(line).expect("server wrote invalid UTF-8");
            assert!(
                parse_reply(text).is_some(),
                "malformed server line {text:?}"
            );
            assert!(
                !selectchat::protocol::text::has_forbidden(text),
                "control character relayed: {text:?}"
            );
        }
    }
}

/// Who is logged in as whom, and who waits for the server (and, as the
/// server does, is read no further until it is answered).
#[derive(Default)]
struct Seen {
    names: HashMap<ConnId, String>,
    waiting: [bool; CONNS],
}

/// Notes what `id` became when its line (or its wait) ended in `step`.
fn track(chat: &Chat, seen: &mut Seen, id: ConnId, step: Step) {
    seen.waiting[id] = matches!(step, Step::Wait | Step::Replay { .. });
    let names = &mut seen.names;
    match step {
        Step::LoggedIn | Step::Replay { ghost: None } => {
            names.insert(id, chat.name(id).expect("logged in").to_string());
        }
        Step::Replaced(ghost) | Step::Replay { ghost: Some(ghost) } => {
            names.remove(&ghost);
            names.insert(id, chat.name(id).expect("resumed").to_string());
        }
        Step::Quit | Step::Continue | Step::Wait => {}
    }
}

/// Plays the store and the hasher until the chat asks nothing more.
fn settle(chat: &mut Chat, hashing: &mut Hashing, seen: &mut Seen, out: &mut Checker) {
    let now = std::time::Instant::now();
    loop {
        let effects = chat.take_effects();
        if effects.is_empty() {
            return;
        }
        for effect in effects {
            let released = match effect {
                Effect::Store(Request::Lookup { ticket, .. }) => {
                    let found = Found::Unknown;
                    chat.on_store(Outcome::Looked { ticket, found }, out)
                }
                Effect::Store(Request::Fetch { ticket, .. }) => {
                    let rows = Some(Vec::new());
                    chat.on_store(Outcome::Fetched { ticket, rows }, out)
                }
                Effect::Store(Request::Unread { ticket, .. }) => {
                    let conversations = Some(Vec::new());
                    chat.on_store(
                        Outcome::Unread {
                            ticket,
                            conversations,
                        },
                        out,
                    )
                }
                Effect::Store(Request::SaveAccount { ticket, .. }) => chat.on_store(
                    Outcome::AccountSaved {
                        ticket,
                        saved: true,
                    },
                    out,
                ),
                Effect::Store(_) | Effect::Bus(_) => None,
                Effect::Hash(job) => chat.on_verdict(hashing.run(job), now, out),
                Effect::Replaced(ghost) => {
                    // The shell closes it: its user is gone already.
                    assert!(chat.name(ghost).is_none(), "replaced but still {ghost}'s");
                    chat.remove(ghost);
                    seen.names.remove(&ghost);
                    seen.waiting[ghost] = false;
                    None
                }
            };
            if let Some((id, step)) = released {
                track(chat, seen, id, step);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut chat = Chat::default();
    let mut hashing = Hashing::with(argon2::Params::new(8, 1, 1, None).expect("least cost"));
    let now = std::time::Instant::now();
    let mut framers: Vec<Framer> = (0..CONNS).map(|_| Framer::new(64)).collect();
    let mut out = Checker;
    let mut seen = Seen::default();
    let mut rest = data;
    // Each op: a header byte (connection in the low bits, close flag in the
    // top bit) and a length byte, then that many bytes for the connection.
    while let [header, len, tail @ ..] = rest {
        let id = (*header as usize) % CONNS;
        let n = (*len as usize).min(tail.len());
        let (chunk, after) = tail.split_at(n);
        rest = after;
        if header & 0x80 != 0 {
            chat.leave(id, &mut out);
            framers[id] = Framer::new(64);
            seen.waiting[id] = false;
            if let Some(name) = seen.names.remove(&id) {
                assert!(chat.name(id).is_none());
                // The name is free again: another connection can take it,
                // unless it is an account's (which wants its password).
                let other = (id + 1) % CONNS;
                if chat.name(other).is_none() && !seen.waiting[other] {
                    let login = format!("LOGIN {name}");
                    match chat.on_line(other, login.as_bytes(), now, &mut out) {
                        Step::LoggedIn => {
                            seen.names.insert(other, name);
                        }
                        step => assert_eq!(step, Step::Continue, "LOGIN {name}"),
                    }
                }
            }
        } else if !seen.waiting[id] {
            let _ = framers[id].feed(chunk, |frame| {
                let step = match frame {
                    Frame::Line(line) => chat.on_line(id, line, now, &mut out),
                    Frame::TooLong => {
                        chat.on_rejected(id, ProtocolError::LineTooLong, &mut out);
                        Step::Continue
                    }
                };
                if step == Step::Quit {
                    chat.leave(id, &mut out);
                    seen.names.remove(&id);
                }
                track(&chat, &mut seen, id, step);
                if seen.waiting[id] {
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            });
            assert!(
                framers[id].buffered() <= 65,
                "framer held {} bytes",
                framers[id].buffered()
            );
        }
        settle(&mut chat, &mut hashing, &mut seen, &mut out);
        chat.check_invariants();
        assert_eq!(chat.users(), seen.names.len());
        for (&id, name) in &seen.names {
            assert_eq!(chat.name(id), Some(name.as_str()));
        }
    }
});

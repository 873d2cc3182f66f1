//! Arbitrary bytes, split at arbitrary points across up to four simulated
//! connections, through framing, parsing and the chat router. Checks: no
//! panic; every server line is a well-formed protocol v1 line; the registry
//! holds each logged-in user exactly once; a departed user's name is free;
//! a room leaves memory with its last member. The store is played by
//! answering every room lookup with "never stored" and dropping the rest.
#![no_main]

use std::collections::HashMap;
use std::ops::ControlFlow;

use libfuzzer_sys::fuzz_target;
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

fuzz_target!(|data: &[u8]| {
    let mut chat = Chat::default();
    let now = std::time::Instant::now();
    let mut framers: Vec<Framer> = (0..CONNS).map(|_| Framer::new(64)).collect();
    let mut out = Checker;
    let mut names: HashMap<ConnId, String> = HashMap::new();
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
            if let Some(name) = names.remove(&id) {
                assert!(chat.name(id).is_none());
                // The name is free again: another connection can take it.
                let other = (id + 1) % CONNS;
                if chat.name(other).is_none() {
                    let login = format!("LOGIN {name}");
                    assert_eq!(
                        chat.on_line(other, login.as_bytes(), now, &mut out),
                        Step::LoggedIn
                    );
                    names.insert(other, name);
                }
            }
        } else {
            let _ = framers[id].feed(chunk, |frame| {
                let step = match frame {
                    Frame::Line(line) => chat.on_line(id, line, now, &mut out),
                    Frame::TooLong => {
                        chat.on_rejected(id, ProtocolError::LineTooLong, &mut out);
                        Step::Continue
                    }
                };
                match step {
                    Step::LoggedIn => {
                        names.insert(id, chat.name(id).expect("logged in").to_string());
                    }
                    Step::Quit => {
                        chat.leave(id, &mut out);
                        names.remove(&id);
                    }
                    Step::Replaced(ghost) => {
                        names.remove(&ghost);
                        names.insert(id, chat.name(id).expect("resumed").to_string());
                    }
                    Step::Continue | Step::Wait => {}
                }
                ControlFlow::Continue(())
            });
            assert!(
                framers[id].buffered() <= 65,
                "framer held {} bytes",
                framers[id].buffered()
            );
        }
        for request in chat.take_requests() {
            if let Request::Lookup { ticket, .. } = request {
                let found = Found::Unknown;
                chat.on_store(Outcome::Looked { ticket, found }, &mut out);
            }
        }
        chat.check_invariants();
        assert_eq!(chat.users(), names.len());
        for (&id, name) in &names {
            assert_eq!(chat.name(id), Some(name.as_str()));
        }
    }
});

//! Property tests of the pure core: framing is independent of chunking,
//! every wire line and every entry of a cluster's log round-trips, and the
//! timer wheel is exact.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use selectchat::chat::event::{Event, Phc};
use selectchat::protocol::{
    parse, parse_reply, ByeReason, Command, Frame, Framer, ProtocolError, Reply,
};
use selectchat::wheel::{TimerId, Wheel};

fn frames(max_line: usize, chunks: &[&[u8]]) -> Vec<Option<Vec<u8>>> {
    let mut framer = Framer::new(max_line);
    let mut out = Vec::new();
    for chunk in chunks {
        let _ = framer.feed(chunk, |f| {
            out.push(match f {
                Frame::Line(l) => Some(l.to_vec()),
                Frame::TooLong => None,
            });
            ControlFlow::Continue(())
        });
        assert!(framer.buffered() <= max_line + 1);
    }
    out
}

/// Bytes rich in newlines and carriage returns, so lines are short and many.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![4 => any::<u8>(), 1 => Just(b'\n'), 1 => Just(b'\r')],
        0..600,
    )
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,32}"
}

/// Message text as the server relays it: no control characters, no blanks at the ends.
fn text() -> impl Strategy<Value = String> {
    "[^\\p{Cc}]{0,40}"
        .prop_map(|s| s.trim_matches([' ', '\t']).to_string())
        .prop_filter("non-empty", |s| !s.is_empty())
}

proptest! {
    #[test]
    fn any_chunking_yields_the_same_frames(data in stream(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20), max_line in 1usize..40) {
        let whole = frames(max_line, &[&data]);
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut last = 0;
        for p in points {
            chunks.push(&data[last..p]);
            last = p;
        }
        chunks.push(&data[last..]);
        prop_assert_eq!(frames(max_line, &chunks), whole);
    }

    #[test]
    fn commands_round_trip(name in name(), text in text(), token in proptest::option::of("[a-z0-9]{1,8}")) {
        let commands = [
            Command::Login(&name),
            Command::Msg(&text),
            Command::Dm { to: &name, text: &text },
            Command::Who,
            Command::Ping(token.as_deref()),
            Command::Pong,
            Command::Quit(token.as_deref()),
        ];
        for command in commands {
            let mut line = Vec::new();
            command.write_to(&mut line);
            prop_assert_eq!(line.pop(), Some(b'\n'));
            prop_assert_eq!(parse(&line), Ok(Some(command)));
        }
    }

    #[test]
    fn log_entries_round_trip(
        (a, b) in (name(), name()),
        text in text(),
        (id, ms) in (any::<u64>(), any::<u64>()),
        hash in "\\$[!-~]{1,120}",
    ) {
        let room = format!("#{b}");
        let home = format!("{b}-1");
        let events = [
            Event::Arrived { name: &a, home: &home },
            Event::Departed { name: &a },
            Event::Msg { from: &a, text: &text },
            Event::Entered { room: &room, name: &a },
            Event::Left { room: &room, name: &a },
            Event::Said { room: &room, id, ms, from: &a, text: &text },
            Event::Gone { home: &home },
            Event::Moved { name: &a, home: &home },
            Event::Registered { name: &a, hash: Phc(&hash) },
            Event::Rekeyed { name: &a, hash: Phc(&hash) },
            Event::Direct { from: &a, to: &b, id, ms, text: &text },
            Event::Read { name: &a, peer: &b, id: ms },
            Event::Created { room: &room, owner: &a },
            Event::Invited { room: &room, name: &b, by: &a },
            Event::Removed { room: &room, name: &b },
        ];
        for event in events {
            let mut payload = Vec::new();
            event.encode(&mut payload);
            prop_assert_eq!(Event::decode(&payload, id), Some(event));
        }
    }

    #[test]
    fn a_log_entry_of_any_bytes_is_read_or_refused_never_a_panic(
        bytes in prop_oneof![
            stream(),
            "[ADMELSGVRKPQCIX] [#$@a-z0-9 -]{0,40}".prop_map(String::into_bytes),
        ],
    ) {
        if let Some(event) = Event::decode(&bytes, 1) {
            let mut again = Vec::new();
            event.encode(&mut again);
            prop_assert_eq!(Event::decode(&again, 1), Some(event));
        }
    }

    #[test]
    fn replies_round_trip(name in name(), text in text(), error in 0..ProtocolError::ALL.len(), bye in 0..ByeReason::ALL.len()) {
        let replies = [
            Reply::Ok,
            Reply::Err(ProtocolError::ALL[error]),
            Reply::Joined(&name),
            Reply::Disconnected(&name),
            Reply::Msg { from: &name, text: &text },
            Reply::Dm { from: &name, text: &text },
            Reply::User(&name),
            Reply::Ping,
            Reply::Pong(Some(&text)),
            Reply::Bye(ByeReason::ALL[bye]),
        ];
        for reply in replies {
            let bytes = reply.to_bytes();
            let line = std::str::from_utf8(&bytes[..bytes.len() - 1]).unwrap();
            prop_assert_eq!(parse_reply(line), Some(reply));
        }
    }

    #[test]
    fn the_wheel_fires_each_deadline_once_never_early_at_most_a_tick_late(
        ops in prop::collection::vec((0u8..4, 0u64..3000, any::<prop::sample::Index>()), 1..200),
    ) {
        const TICK: Duration = Duration::from_millis(10);
        let t0 = Instant::now();
        let mut wheel: Wheel<u32> = Wheel::new(TICK, 16, t0);
        let mut pending: HashMap<u32, (Instant, TimerId)> = HashMap::new();
        let mut fired_once: HashMap<u32, usize> = HashMap::new();
        let mut now = t0;
        let mut next_id = 0u32;
        for (op, millis, pick) in ops {
            match op {
                // Schedule, some deadlines many revolutions away.
                0 | 1 => {
                    let deadline = now + Duration::from_millis(millis);
                    pending.insert(next_id, (deadline, wheel.insert(deadline, next_id)));
                    next_id += 1;
                }
                // Cancel or reschedule a pending timer.
                2 if !pending.is_empty() => {
                    let mut ids: Vec<u32> = pending.keys().copied().collect();
                    ids.sort_unstable();
                    let id = ids[pick.index(ids.len())];
                    let (_, timer) = pending.remove(&id).unwrap();
                    prop_assert_eq!(wheel.cancel(timer), Some(id));
                    if millis % 2 == 0 {
                        let deadline = now + Duration::from_millis(millis);
                        pending.insert(id, (deadline, wheel.insert(deadline, id)));
                    }
                }
                // Let time pass, up to a few revolutions at once.
                _ => {
                    now += Duration::from_millis(millis / 4);
                    while let Some(id) = wheel.poll(now) {
                        let (deadline, _) = pending.remove(&id).expect("fired a timer that was not pending");
                        prop_assert!(deadline <= now, "fired early");
                        *fired_once.entry(id).or_default() += 1;
                    }
                    for (deadline, _) in pending.values() {
                        prop_assert!(*deadline + TICK > now, "a due timer did not fire");
                    }
                    // The loop sleeps exactly until the earliest deadline's tick.
                    if let Some(earliest) = pending.values().map(|(d, _)| *d).min() {
                        let wake = now + wheel.next_timeout(now).expect("timers pending");
                        prop_assert!(wake >= earliest, "woke before anything was due");
                        prop_assert!(wake < earliest + TICK, "slept past a deadline");
                    }
                }
            }
        }
        while let Some(id) = wheel.poll(now + Duration::from_secs(3600)) {
            prop_assert!(pending.remove(&id).is_some());
            *fired_once.entry(id).or_default() += 1;
        }
        prop_assert!(pending.is_empty(), "never fired: {:?}", pending.keys());
        prop_assert!(fired_once.values().all(|&n| n == 1));
        prop_assert!(wheel.is_empty());
    }
}

//! Room history against the real binary: HISTORY in all its forms and
//! errors, ids and spellings across restarts, a kill -9 that loses no
//! acknowledged message, a database that cannot be opened, and a stalled
//! database that delays only the SENT of the message it holds up.

mod common;

use common::{Client, Server, TempDir, BIN};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A database file in a fresh directory, removed when dropped.
struct TempDb(TempDir);

impl TempDb {
    fn new() -> TempDb {
        TempDb(TempDir::new())
    }

    fn path(&self) -> String {
        self.0.file("chat.db")
    }

    fn start(&self, extra: &[&str]) -> Server {
        let path = self.path();
        let mut args = vec!["--db", &path];
        args.extend_from_slice(extra);
        Server::start(&args)
    }
}

/// The id in a `SENT <room> <id>` line.
fn sent_id(line: &str, room: &str) -> u64 {
    line.strip_prefix(&format!("SENT {room} "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a SENT for {room}: {line}"))
}

/// Sends `SAY room text` and returns the id its `SENT` carries.
fn say(c: &mut Client, room: &str, text: &str) -> u64 {
    c.send(&format!("SAY {room} {text}"));
    sent_id(&c.line(), room)
}

/// The lines of a `HISTORY` answer, up to and including `END HISTORY`.
fn history(c: &mut Client, request: &str) -> Vec<String> {
    c.send(request);
    let mut lines = Vec::new();
    loop {
        let line = c.line();
        let end = line.starts_with("END HISTORY ") || line.starts_with("ERR ");
        lines.push(line);
        if end {
            return lines;
        }
    }
}

/// `HIST` lines as `id name text`, the time checked and left out.
fn without_times(lines: &[String]) -> Vec<String> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    lines
        .iter()
        .map(|line| {
            let Some(rest) = line.strip_prefix("HIST ") else {
                return line.clone();
            };
            let mut parts = rest.splitn(5, ' ');
            let (room, id, ms) = (parts.next(), parts.next(), parts.next());
            let ms: u64 = ms.and_then(|m| m.parse().ok()).expect("unix-ms");
            assert!(
                ms <= now_ms && ms + 600_000 > now_ms,
                "{line}: not a recent time"
            );
            let (name, text) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            format!("{} {} {name} {text}", room.unwrap(), id.unwrap())
        })
        .collect()
}

#[test]
fn history_from_nc_every_form_and_error() {
    let s = Server::start(&[]);
    let mut alice = s.login("alice");
    let mut bob = s.login("bob");
    alice.expect("INFO bob joined");
    alice.send("JOIN #Talk");
    alice.expect("JOINED #Talk 1");
    bob.send("JOIN #talk");
    bob.expect("JOINED #Talk 2");
    alice.expect("INFO #Talk bob joined");
    assert_eq!(history(&mut alice, "HISTORY #talk"), ["END HISTORY #Talk"]);

    let texts = ["one", "two  spaced", "três ✓", "four\tx", "five"];
    let ids: Vec<u64> = texts.iter().map(|t| say(&mut alice, "#Talk", t)).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    for (id, text) in ids.iter().zip(texts) {
        bob.expect(&format!("SAY #Talk {id} alice {text}"));
    }
    let hist = |c: &mut Client, req: &str| without_times(&history(c, req));
    let line = |i: usize| format!("#Talk {} alice {}", ids[i], texts[i]);
    let end = "END HISTORY #Talk".to_string();
    assert_eq!(
        hist(&mut bob, "HISTORY #TALK"),
        [line(0), line(1), line(2), line(3), line(4), end.clone()]
    );
    assert_eq!(
        hist(&mut bob, "history #talk 2"),
        [line(3), line(4), end.clone()]
    );
    assert_eq!(
        hist(&mut bob, &format!("HISTORY #talk AFTER {} 2", ids[0])),
        [line(1), line(2), end.clone()]
    );
    assert_eq!(
        hist(&mut bob, &format!("HISTORY #talk BEFORE {}", ids[2])),
        [line(0), line(1), end.clone()]
    );
    assert_eq!(
        hist(&mut bob, &format!("HISTORY #talk AFTER {}", ids[4])),
        [end]
    );

    for (request, err) in [
        ("HISTORY talk", "ERR invalid-room"),
        ("HISTORY #talk 0", "ERR bad-limit"),
        ("HISTORY #talk 501", "ERR bad-limit"),
        ("HISTORY #talk AFTER x", "ERR bad-id"),
        ("HISTORY #elsewhere", "ERR not-in-room"),
    ] {
        assert_eq!(history(&mut bob, request), [err], "{request}");
    }
    let mut carol = s.login("carol");
    bob.expect("INFO carol joined");
    assert_eq!(history(&mut carol, "HISTORY #talk"), ["ERR not-in-room"]);
    let mut anon = s.connect();
    assert_eq!(history(&mut anon, "HISTORY #talk"), ["ERR not-logged-in"]);
    assert_eq!(history(&mut bob, "HISTORY #talk 500").len(), 6);
}

#[test]
fn ids_rooms_and_messages_survive_a_clean_restart() {
    let db = TempDb::new();
    let mut s = db.start(&[]);
    let mut alice = s.login("alice");
    alice.send("JOIN #Rust");
    alice.expect("JOINED #Rust 1");
    let first = say(&mut alice, "#Rust", "before the restart");
    s.signal(libc::SIGTERM);
    assert!(s.wait_exit().success());

    let s = db.start(&[]);
    let mut alice = s.login("alice");
    alice.send("JOIN #RUST");
    alice.expect("JOINED #Rust 1");
    let second = say(&mut alice, "#Rust", "after");
    assert_eq!(second, first + 1, "a clean stop leaves no gap");
    assert_eq!(
        without_times(&history(&mut alice, "HISTORY #rust")),
        [
            format!("#Rust {first} alice before the restart"),
            format!("#Rust {second} alice after"),
            "END HISTORY #Rust".to_string(),
        ]
    );
}

#[test]
fn every_acknowledged_message_survives_kill_9() {
    let db = TempDb::new();
    // Flood control off: the burst is the point.
    let mut s = db.start(&["--rate", "0"]);
    let mut alice = s.login("alice");
    alice.send("JOIN #crash");
    alice.expect("JOINED #crash 1");
    let texts: Vec<String> = (0..200).map(|i| format!("message {i} ✓  end")).collect();
    // Sent in one burst, so the server commits them in groups.
    let burst: String = texts.iter().map(|t| format!("SAY #crash {t}\n")).collect();
    alice.send_raw(burst.as_bytes());
    let ids: Vec<u64> = (0..200).map(|_| sent_id(&alice.line(), "#crash")).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    s.signal(libc::SIGKILL);
    s.wait_exit();

    let s = db.start(&[]);
    let mut alice = s.login("alice");
    alice.send("JOIN #crash");
    alice.expect("JOINED #crash 1");
    let got = without_times(&history(&mut alice, "HISTORY #crash AFTER 0 500"));
    let want: Vec<String> = ids
        .iter()
        .zip(&texts)
        .map(|(id, t)| format!("#crash {id} alice {t}"))
        .chain(["END HISTORY #crash".to_string()])
        .collect();
    assert_eq!(got, want);
    let next = say(&mut alice, "#crash", "after the crash");
    assert!(next > ids[199], "ids keep growing after a crash: {next}");
}

#[test]
fn a_database_that_cannot_be_opened_stops_the_start_with_code_1() {
    let out = Command::new(BIN)
        .args([
            "--host",
            "127.0.0.1",
            "--db",
            "/nonexistent/dir/chat.db",
            "0",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run selectchat");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot open database /nonexistent/dir/chat.db"),
        "{err}"
    );
}

#[test]
fn a_stalled_database_delays_only_the_sent_it_holds_up() {
    let db = TempDb::new();
    let s = db.start(&[]);
    let mut alice = s.login("alice");
    let mut bob = s.login("bob");
    alice.expect("INFO bob joined");
    for c in [&mut alice, &mut bob] {
        c.send("JOIN #x");
        c.line();
    }
    alice.expect("INFO #x bob joined");
    say(&mut alice, "#x", "before");
    bob.line();

    // Another process takes the database's write lock and keeps it.
    let locker = rusqlite::Connection::open(db.path()).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let stalled = Instant::now();
    alice.send("SAY #x stuck");
    let live = bob.line();
    assert!(
        live.starts_with("SAY #x ") && live.ends_with(" alice stuck"),
        "delivered at once: {live}"
    );
    // Everything else goes on at once while the store is stuck.
    bob.send("DM alice quick");
    alice.expect("DM bob quick");
    bob.send("MSG all well");
    alice.expect("MSG bob all well");
    assert_eq!(alice.sync(), Vec::<String>::new(), "no SENT yet");
    assert!(
        stalled.elapsed() < Duration::from_millis(1500),
        "not held up"
    );
    // The store gives up on the lock: the sender hears so.
    alice.expect("ERR storage-unavailable");
    locker.execute_batch("ROLLBACK").unwrap();
    let after = say(&mut alice, "#x", "works again");
    bob.line();
    assert_eq!(
        without_times(&history(&mut bob, "HISTORY #x"))
            .iter()
            .map(|l| match l.strip_prefix("#x ") {
                Some(hist) => hist.split_once(' ').unwrap().1.to_string(),
                None => l.clone(),
            })
            .collect::<Vec<_>>(),
        ["alice before", "alice works again", "END HISTORY #x"],
        "the failed message was not stored (id {after})"
    );
}

//! `selectchat connect` on a real terminal (a pty), read back through a
//! terminal emulator at 80x24 and 120x40: buffers and unread counts, typing
//! while messages arrive, wide characters, pastes paced under the flood
//! limit, scrollback, and coming back after the network or the server went
//! away.

mod common;

use common::relay::Relay;
use common::{wait_until, Server, BIN, WAIT};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

struct Pty {
    master: File,
    slave: OwnedFd,
}

fn open_pty(rows: u16, cols: u16) -> Pty {
    let (mut master, mut slave) = (0, 0);
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors we then own.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty failed");
    // SAFETY: both descriptors were just opened and are owned by nobody else.
    unsafe {
        Pty {
            master: File::from_raw_fd(master),
            slave: OwnedFd::from_raw_fd(slave),
        }
    }
}

/// What the terminal shows: every row, and the row the cursor is on.
struct Screen {
    rows: Vec<String>,
    cursor: String,
}

impl Screen {
    fn has(&self, text: &str) -> bool {
        self.rows.iter().any(|r| r.contains(text))
    }

    /// The row holding `text`, trimmed.
    fn row(&self, text: &str) -> Option<&str> {
        self.rows
            .iter()
            .find(|r| r.contains(text))
            .map(|r| r.trim_end())
    }

    fn count(&self, text: &str) -> usize {
        self.rows.iter().filter(|r| r.contains(text)).count()
    }
}

/// `selectchat connect ARGS` running on a pty, with its screen emulated.
struct Terminal {
    child: std::process::Child,
    parser: Arc<Mutex<vt100::Parser>>,
    keyboard: File,
    cols: u16,
}

impl Terminal {
    fn spawn(rows: u16, cols: u16, args: &[&str]) -> Terminal {
        let pty = open_pty(rows, cols);
        let child = Command::new(BIN)
            .arg("connect")
            .args(args)
            .env("TERM", "xterm-256color")
            .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
            .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
            .stderr(Stdio::from(pty.slave))
            .spawn()
            .unwrap();
        let parser = Arc::new(Mutex::new(vt100::Parser::new(rows, cols, 0)));
        let mut reader = pty.master.try_clone().unwrap();
        let sink = Arc::clone(&parser);
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().process(&buf[..n]);
            }
        });
        Terminal {
            child,
            parser,
            keyboard: pty.master,
            cols,
        }
    }

    fn screen(&self) -> Screen {
        let parser = self.parser.lock().unwrap();
        let screen = parser.screen();
        let rows: Vec<String> = screen.rows(0, self.cols).collect();
        let cursor = rows[usize::from(screen.cursor_position().0)]
            .trim_end()
            .to_string();
        Screen { rows, cursor }
    }

    /// Resizes the terminal, as dragging the window does (SIGWINCH).
    fn resize(&mut self, rows: u16, cols: u16) {
        use std::os::fd::AsRawFd;
        let size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let mut parser = self.parser.lock().unwrap();
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer.
        let rc = unsafe { libc::ioctl(self.keyboard.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        assert_eq!(rc, 0, "TIOCSWINSZ failed");
        parser.set_size(rows, cols);
        self.cols = cols;
    }

    fn keys(&mut self, keys: &[u8]) {
        self.keyboard.write_all(keys).unwrap();
    }

    fn type_line(&mut self, line: &str) {
        self.keys(line.as_bytes());
        self.keys(b"\r");
    }

    /// Waits until the screen satisfies `ok`, or fails showing it.
    fn wait(&self, what: &str, ok: impl Fn(&Screen) -> bool) {
        self.wait_within(WAIT, what, ok)
    }

    fn wait_within(&self, limit: Duration, what: &str, ok: impl Fn(&Screen) -> bool) {
        if wait_until(limit, || ok(&self.screen())).is_none() {
            let s = self.screen();
            panic!(
                "screen never showed {what}; cursor row {:?}; screen:\n{}",
                s.cursor,
                s.rows.join("\n")
            );
        }
    }

    fn wait_shows(&self, text: &str) {
        self.wait(text, |s| s.has(text))
    }

    fn exits_cleanly(&mut self) {
        assert!(common::wait_exit(&mut self.child).success());
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ALT_1: &[u8] = b"\x1b1";
const ALT_3: &[u8] = b"\x1b3";
const CTRL_C: &[u8] = b"\x03";
const PAGE_UP: &[u8] = b"\x1b[5~";

#[test]
fn buffers_unread_counts_and_a_line_being_typed_at_80x24() {
    let s = Server::start(&[]);
    let mut bob = s.login("bob");
    let addr = s.addr.to_string();
    let mut term = Terminal::spawn(24, 80, &[&addr, "--name", "alice"]);
    term.wait("the login and the status line", |s| {
        s.has("logged in as alice") && s.has("online") && s.has("lobby: 2 users")
    });
    bob.expect("INFO alice joined");

    // A message arriving mid-typing leaves the input intact.
    term.keys(b"hel");
    term.wait("the half-typed line", |s| s.cursor == "> hel");
    bob.send("MSG incoming while you type");
    term.wait("the message above an intact input line", |s| {
        s.has("bob: incoming while you type") && s.cursor == "> hel"
    });
    term.type_line("lo");
    bob.expect("MSG alice hello");
    term.wait("the sent line", |s| {
        s.has("alice: hello") && s.cursor == ">"
    });

    // A room opens its own buffer; wide characters keep the layout.
    term.type_line("/join #rust");
    term.wait("the room buffer", |s| {
        s.has("joined #rust (1 here)") && s.row(" 2 #rust").is_some() && s.has("#rust: 1 user")
    });
    bob.send("JOIN #rust");
    bob.expect("JOINED #rust 2");
    term.wait_shows("bob joined");
    bob.send("SAY #rust 日本語のテキスト and more");
    term.wait("the wide-character line", |s| {
        s.row("bob: 日本語のテキスト and more").is_some()
    });

    // Away from the room, its messages are counted; a DM opens a buffer.
    term.keys(ALT_1);
    term.wait("the lobby", |s| s.has("lobby: 2 users"));
    bob.send("SAY #rust one");
    bob.send("SAY #rust two");
    term.wait("two unread in #rust", |s| s.row(" 2 #rust 2").is_some());
    bob.send("DM alice psst");
    term.wait("an unread DM buffer", |s| s.row(" 3 @bob 1").is_some());
    term.keys(ALT_3);
    term.wait("the DM buffer, read", |s| {
        s.has("bob: psst") && s.row(" 3 @bob").is_some_and(|r| !r.contains("@bob 1"))
    });
    term.type_line("back at you");
    bob.wait_for("DM alice back at you");

    // A resized terminal is laid out again.
    term.keys(b"draft");
    term.resize(40, 120);
    term.wait("the layout at 120x40", |s| {
        s.rows[38].contains("online") && s.rows[39].trim_end() == "> draft" && s.has("bob: psst")
    });
    term.keys(b"\x15");

    // Ctrl-C quits cleanly and gives the terminal back.
    term.keys(CTRL_C);
    bob.expect("INFO #rust alice left");
    bob.expect("INFO alice disconnected");
    term.exits_cleanly();
}

#[test]
fn asks_for_a_name_and_again_when_it_is_taken() {
    let s = Server::start(&[]);
    let _bob = s.login("bob");
    let mut term = Terminal::spawn(24, 80, &[&s.addr.to_string()]);
    term.wait("the name prompt", |s| s.cursor == "name:");
    term.type_line("BOB");
    term.wait("the refusal and a new prompt", |s| {
        s.has("that name is taken: BOB") && s.cursor == "name:"
    });
    term.type_line("alice");
    term.wait_shows("logged in as alice");
    term.type_line("/quit");
    term.exits_cleanly();
}

#[test]
fn a_pasted_log_is_paced_under_the_flood_limit_at_120x40() {
    // The server's default limit: 10 lines/s, bursts of 20.
    let s = Server::start(&["--flood-timeout", "1"]);
    let mut bob = s.login("bob");
    bob.send("JOIN #logs");
    bob.expect("JOINED #logs 1");
    let mut term = Terminal::spawn(40, 120, &[&s.addr.to_string(), "--name", "alice"]);
    term.wait_shows("logged in as alice");
    term.type_line("/join #logs");
    term.wait_shows("joined #logs (2 here)");
    let lines: Vec<String> = (1..=40).map(|i| format!("log line {i:02}")).collect();
    let paste = format!("\x1b[200~{}\n\x1b[201~", lines.join("\n"));
    term.keys(paste.as_bytes());
    term.wait("lines waiting as pending", |s| s.has("pending"));
    bob.wait_for("INFO #logs alice joined");
    for line in &lines {
        let got = bob.line();
        assert!(got.ends_with(&format!("alice {line}")), "{got}");
    }
    term.wait("everything delivered", |s| {
        !s.has("pending") && s.has("online")
    });
    assert!(!s.log().contains("flooding"), "{}", s.log());
    bob.expect_silence(Duration::from_millis(300));
}

#[test]
fn history_scrolls_back_with_pageup_and_slash_history_at_120x40() {
    let s = Server::start(&["--rate", "0"]);
    let mut bob = s.login("bob");
    bob.send("JOIN #big");
    bob.expect("JOINED #big 1");
    for i in 1..=130 {
        bob.send(&format!("SAY #big line {i:03}"));
    }
    bob.wait_for("SENT #big 130");
    let mut term = Terminal::spawn(40, 120, &[&s.addr.to_string(), "--name", "alice"]);
    term.wait_shows("logged in as alice");
    term.type_line("/join #big");
    // Joining loads the latest 50.
    term.wait("recent history", |s| {
        s.has("bob: line 130") && !s.has("line 080")
    });
    term.type_line("/history 20");
    for _ in 0..40 {
        if term.screen().has("bob: line 061") {
            break;
        }
        term.keys(PAGE_UP);
        thread::sleep(Duration::from_millis(50));
    }
    term.wait("the twenty older lines", |s| {
        s.has("bob: line 061") && s.has("newer below")
    });
    // PageUp at the top loads more by itself, down to the first line.
    for _ in 0..80 {
        if term.screen().has("bob: line 001") {
            break;
        }
        term.keys(PAGE_UP);
        thread::sleep(Duration::from_millis(50));
    }
    term.wait("the first message", |s| s.has("bob: line 001"));
    let shown = term.screen();
    assert_eq!(shown.count("bob: line 001"), 1, "no line twice");
}

/// Alice chats through a relay in #rust, with bob there too.
fn alice_in_rust(relay: &Relay, bob: &mut common::Client) -> Terminal {
    let addr = relay.addr.to_string();
    let term = Terminal::spawn(24, 80, &[&addr, "--name", "alice", "--heartbeat", "0.5"]);
    let mut term = term;
    term.wait_shows("logged in as alice");
    term.type_line("/join #rust");
    term.wait_shows("joined #rust (2 here)");
    bob.wait_for("INFO #rust alice joined");
    term.type_line("before the drop");
    bob.wait_for("SAY #rust 1 alice before the drop");
    term.wait("the message delivered", |s| {
        s.has("alice: before the drop") && !s.has("pending")
    });
    term
}

#[test]
fn comes_back_after_the_network_drops_with_its_name_rooms_and_missed_messages() {
    let s = Server::start(&[]);
    let relay = Relay::start(s.addr);
    let mut bob = s.login("bob");
    bob.send("JOIN #rust");
    bob.expect("JOINED #rust 1");
    let mut term = alice_in_rust(&relay, &mut bob);

    // The network goes: what alice types now is lost on the way or queued.
    relay.blackhole();
    term.type_line("typed as the network went");
    bob.send("SAY #rust missed while away");
    bob.expect("SENT #rust 2");
    term.wait("the drop noticed", |s| {
        s.has("offline") || s.has("connecting")
    });
    term.type_line("typed while offline");
    term.wait("queued lines pending", |s| s.has("2 pending"));
    relay.restore();

    // Back by itself: same name and room, the missed message, each line once.
    term.wait("the resume", |s| {
        s.has("resumed the session as alice") && s.has("bob: missed while away")
    });
    bob.wait_for("SAY #rust 3 alice typed as the network went");
    bob.expect("SAY #rust 4 alice typed while offline");
    term.wait("nothing pending", |s| !s.has("pending") && s.has("online"));
    bob.send("WHO #rust");
    bob.expect("USER alice");
    bob.expect("USER bob");
    bob.expect("END WHO #rust");
    bob.expect_silence(Duration::from_millis(300));
    term.keys(CTRL_C);
    term.exits_cleanly();
}

#[test]
fn comes_back_after_the_server_is_killed_and_restarted() {
    let dir = std::env::temp_dir().join(format!("selectchat-term-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("restart.db");
    let db = db.to_str().unwrap();
    let mut first = Server::start(&["--db", db]);
    let relay = Relay::start(first.addr);
    let mut bob = first.login("bob");
    bob.send("JOIN #rust");
    bob.expect("JOINED #rust 1");
    let mut term = alice_in_rust(&relay, &mut bob);

    relay.cut();
    first.signal(libc::SIGKILL);
    first.wait_exit();
    term.wait("the drop noticed", |s| {
        s.has("offline") || s.has("connecting")
    });
    term.type_line("queued during the restart");
    term.wait("the queued line pending", |s| s.has("1 pending"));

    // The session outlived the server: alice's seat is held for her.
    let second = Server::start(&["--db", db]);
    let mut bob = second.login("bob");
    bob.send("JOIN #rust");
    bob.expect("JOINED #rust 2");
    bob.send("SAY #rust said while you were gone");
    bob.wait_line(|l| l.starts_with("SENT #rust "));
    relay.point_to(second.addr);
    relay.restore();

    term.wait("the resume and the missed message", |s| {
        s.has("resumed the session as alice") && s.has("bob: said while you were gone")
    });
    // No join line: the next line bob hears is alice's queued one.
    let next = bob.line();
    assert!(
        next.starts_with("SAY #rust ") && next.ends_with(" alice queued during the restart"),
        "{next}"
    );
    term.wait("nothing pending", |s| !s.has("pending"));
    bob.expect_silence(Duration::from_millis(300));
    term.keys(CTRL_C);
    term.exits_cleanly();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The issue's scenario with default settings: two people chat from
/// `selectchat connect`, one loses the network for 30 seconds and is back
/// with the same name, rooms and every missed room message, by itself.
#[test]
fn thirty_seconds_in_a_tunnel() {
    let s = Server::start(&[]);
    let relay = Relay::start(s.addr);
    let (server, tunnel) = (s.addr.to_string(), relay.addr.to_string());
    let mut bob = Terminal::spawn(24, 80, &[&server, "--name", "bob"]);
    let mut alice = Terminal::spawn(24, 80, &[&tunnel, "--name", "alice"]);
    for t in [&bob, &alice] {
        t.wait_shows("lobby: 2 users");
    }
    bob.type_line("/join #rust");
    alice.type_line("/join #rust");
    alice.wait_shows("#rust: 2 users");
    alice.type_line("anyone up for a review?");
    bob.wait_shows("alice: anyone up for a review?");
    bob.type_line("/dm alice sure, send it over");
    alice.wait("bob's DM counted", |s| s.row(" 3 @bob 1").is_some());

    relay.blackhole();
    alice.type_line("going into a tunnel");
    bob.type_line("while you were in the tunnel");
    alice.wait_within(Duration::from_secs(30), "the drop noticed", |s| {
        s.has("offline") || s.has("connecting")
    });
    thread::sleep(Duration::from_secs(10));
    relay.restore();

    // Back within the reconnect backoff's cap, with nothing done by hand.
    alice.wait_within(Duration::from_secs(40), "the resume", |s| {
        s.has("resumed the session as alice") && s.has("bob: while you were in the tunnel")
    });
    bob.wait("alice's line, once", |s| {
        s.count("alice: going into a tunnel") == 1
    });
    alice.wait("nothing pending", |s| {
        !s.has("pending") && s.has("#rust: 2 users")
    });
    assert!(!bob.screen().has("alice left"), "nobody saw alice leave");
    bob.keys(ALT_1);
    bob.wait("the lobby", |s| s.has("lobby: 2 users"));
    assert!(!bob.screen().has("alice disconnected"));

    // The README's screen capture.
    alice.keys(b"\x1b[5~\x1b[6~the draft being typed");
    alice.wait_shows("the draft being typed");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let rows: Vec<String> = alice
        .screen()
        .rows
        .iter()
        .map(|r| r.trim_end().to_string())
        .collect();
    std::fs::write(dir.join("terminal-80x24.txt"), rows.join("\n") + "\n").unwrap();
    for t in [&mut alice, &mut bob] {
        t.keys(CTRL_C);
        t.exits_cleanly();
    }
}

#[test]
fn given_several_addresses_it_reconnects_to_the_next_one() {
    let mut first = Server::start(&[]);
    let second = Server::start(&[]);
    let mut watcher = second.login("watcher");
    let both = format!("{},{}", first.addr, second.addr);
    let mut term = Terminal::spawn(24, 80, &[&both, "--name", "alice", "--heartbeat", "0.5"]);
    term.wait_shows("logged in as alice");
    first.signal(libc::SIGKILL);
    first.wait_exit();
    // The second server never knew alice's session: a fresh login there.
    watcher.wait_for("INFO alice joined");
    term.wait_shows("logged in again as alice");
    term.type_line("made it");
    watcher.wait_for("MSG alice made it");
    term.keys(CTRL_C);
    term.exits_cleanly();
}

/// History from two days: a marker row where the day changes.
#[test]
fn a_new_day_in_a_rooms_history_gets_a_marker_row() {
    let dir = common::TempDir::new();
    let db = dir.file("chat.db");
    let mut s = Server::start(&["--db", &db]);
    let mut bob = s.login("bob");
    bob.send("JOIN #days");
    bob.expect("JOINED #days 1");
    bob.send("SAY #days from the day before");
    bob.wait_for("SENT #days 1");
    s.signal(libc::SIGTERM);
    s.wait_exit();
    // That line was said two days ago.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("UPDATE messages SET ms = ms - 2 * 86400000", [])
        .unwrap();
    let s = Server::start(&["--db", &db]);
    let mut bob = s.login("bob");
    bob.send("JOIN #days");
    bob.expect("JOINED #days 1");
    bob.send("SAY #days from today");
    bob.wait_line(|l| l.starts_with("SENT #days "));
    let mut term = Terminal::spawn(24, 80, &[&s.addr.to_string(), "--name", "alice"]);
    term.wait_shows("logged in as alice");
    term.type_line("/join #days");
    term.wait("both days", |s| {
        s.has("bob: from the day before") && s.has("bob: from today")
    });
    let screen = term.screen();
    let at = |text: &str| screen.rows.iter().position(|r| r.contains(text)).unwrap();
    let (before, today) = (at("from the day before"), at("from today"));
    assert!(
        (before + 1..today)
            .any(|i| screen.rows[i].contains("── ") && screen.rows[i].contains(" ──")),
        "a day marker between the two days: {:#?}",
        screen.rows
    );
}

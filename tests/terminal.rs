//! `selectchat connect` on a real terminal (a pty), read back through a
//! terminal emulator: incoming lines must not garble a half-typed line.

mod common;

use common::{wait_until, Server, BIN, WAIT};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;

const ROWS: u16 = 24;
const COLS: u16 = 80;

struct Pty {
    master: File,
    slave: OwnedFd,
}

fn open_pty() -> Pty {
    let (mut master, mut slave) = (0, 0);
    let size = libc::winsize {
        ws_row: ROWS,
        ws_col: COLS,
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
fn screen(parser: &Mutex<vt100::Parser>) -> (Vec<String>, String) {
    let parser = parser.lock().unwrap();
    let screen = parser.screen();
    let rows: Vec<String> = screen.rows(0, COLS).collect();
    let cursor_row = rows[screen.cursor_position().0 as usize]
        .trim_end()
        .to_string();
    (rows, cursor_row)
}

fn wait_screen(parser: &Mutex<vt100::Parser>, what: &str, ok: impl Fn(&[String], &str) -> bool) {
    let shown = wait_until(WAIT, || {
        let (rows, cursor) = screen(parser);
        ok(&rows, &cursor)
    });
    if shown.is_none() {
        let (rows, cursor) = screen(parser);
        panic!(
            "screen never showed {what}; cursor row {cursor:?}; screen:\n{}",
            rows.join("\n")
        );
    }
}

/// `selectchat connect ARGS` running on a pty, with its screen emulated.
struct Terminal {
    child: std::process::Child,
    screen: Arc<Mutex<vt100::Parser>>,
    keyboard: File,
}

impl Terminal {
    fn spawn(args: &[&str]) -> Terminal {
        let pty = open_pty();
        let child = Command::new(BIN)
            .arg("connect")
            .args(args)
            .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
            .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
            .stderr(Stdio::from(pty.slave))
            .spawn()
            .unwrap();
        let screen = Arc::new(Mutex::new(vt100::Parser::new(ROWS, COLS, 0)));
        let mut reader = pty.master.try_clone().unwrap();
        let sink = Arc::clone(&screen);
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
            screen,
            keyboard: pty.master,
        }
    }

    fn type_keys(&mut self, keys: &[u8]) {
        self.keyboard.write_all(keys).unwrap();
    }

    fn wait(&self, what: &str, ok: impl Fn(&[String], &str) -> bool) {
        wait_screen(&self.screen, what, ok)
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

#[test]
fn incoming_messages_do_not_garble_the_line_being_typed() {
    let s = Server::start(&[]);
    let mut bob = s.login("bob");
    let addr = s.addr.to_string();
    let mut term = Terminal::spawn(&[&addr, "--name", "alice"]);
    term.wait("the login", |rows, _| {
        rows.iter().any(|r| r.contains("logged in as alice"))
    });
    bob.expect("INFO alice joined");

    term.type_keys(b"hel");
    term.wait("the half-typed line", |_, cursor| cursor == "> hel");

    bob.send("MSG incoming while you type");
    term.wait("the message above an intact prompt", |rows, cursor| {
        rows.iter()
            .any(|r| r.ends_with("bob: incoming while you type"))
            && cursor == "> hel"
    });

    term.type_keys(b"lo\r");
    bob.expect("MSG alice hello");
    term.wait("the sent line", |rows, cursor| {
        rows.iter().any(|r| r.ends_with("alice: hello")) && cursor == ">"
    });

    // Ctrl-C quits cleanly.
    term.type_keys(b"\x03");
    bob.expect("INFO alice disconnected");
    term.exits_cleanly();
}

#[test]
fn asks_for_a_name_on_a_terminal_and_again_when_taken() {
    let s = Server::start(&[]);
    let _bob = s.login("bob");
    let mut term = Terminal::spawn(&[&s.addr.to_string()]);
    term.wait("the name prompt", |_, cursor| cursor == "name:");
    term.type_keys(b"BOB\r");
    term.wait("the refusal and a new prompt", |rows, cursor| {
        rows.iter().any(|r| r.contains("that name is taken: BOB")) && cursor == "name:"
    });
    term.type_keys(b"alice\r");
    term.wait("the login", |rows, _| {
        rows.iter().any(|r| r.contains("logged in as alice"))
    });
    term.type_keys(b"/quit\r");
    term.exits_cleanly();
}

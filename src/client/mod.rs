//! `selectchat connect`: the terminal chat client, one thread and one mio
//! loop waiting on the socket and stdin at once.
//!
//! On a terminal it runs a small line editor in raw mode, so incoming lines
//! are printed above the half-typed one and never garble it. With piped stdin
//! and stdout it prints one plain line per event and no escape codes, so
//! scripts and tests can drive it. It answers the server's `PING` by itself.
//!
//! This module only moves bytes between the socket, stdin and stdout; what
//! to send and show is decided by [`session::Session`], which has no I/O.

pub mod editor;
pub mod session;
pub mod term;
pub mod view;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::protocol::{Frame, Framer};
use editor::{Editor, Key};
use session::{Effect, Session};
use term::RawMode;
use view::name_problem;

/// Exit code after the user quit.
pub const EXIT_OK: u8 = 0;
/// Exit code when the connection failed, was closed by the server, or login failed.
pub const EXIT_CLOSED: u8 = 1;
/// Exit code for unusable arguments.
pub const EXIT_USAGE: u8 = 2;

const SOCKET: Token = Token(0);
const STDIN: Token = Token(1);
const SIGNALS: Token = Token(2);
const STDIN_FD: i32 = 0;
const DEFAULT_PORT: u16 = 7007;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Stop reading stdin while this much is still unsent to the server.
const OUTPUT_HIGH_WATER: usize = 1 << 20;
/// Bytes of stdin handled per loop turn, so the socket is served in between.
const STDIN_BUDGET: usize = 64 * 1024;
/// Longest server line the client keeps; the server's own limit is far lower.
const MAX_SERVER_LINE: usize = 1 << 20;

/// What `selectchat connect` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// `host:port`, `host`, `[v6]:port` or `v6`; the port defaults to 7007.
    pub addr: String,
    /// Log in under this name; without it a terminal user is asked.
    pub name: Option<String>,
}

/// Resolves `addr`, adding the default port when none is given.
pub fn resolve(addr: &str) -> io::Result<Vec<SocketAddr>> {
    if let Ok(found) = addr.to_socket_addrs() {
        return Ok(found.collect());
    }
    let host = addr.trim_start_matches('[').trim_end_matches(']');
    Ok((host, DEFAULT_PORT).to_socket_addrs()?.collect())
}

/// Runs the client to completion and returns its exit code.
pub fn run(opts: Options) -> u8 {
    let tty = term::is_tty(STDIN_FD) && term::is_tty(1);
    if opts.name.is_none() && !tty {
        eprintln!("selectchat connect: --name is required when stdin is not a terminal");
        return EXIT_USAGE;
    }
    if let Some(problem) = opts.name.as_deref().and_then(name_problem) {
        eprintln!("selectchat connect: {problem}");
        return EXIT_USAGE;
    }
    match Client::start(opts, tty) {
        Ok(client) => client.run(),
        Err(e) => {
            eprintln!("selectchat connect: {e}");
            EXIT_CLOSED
        }
    }
}

fn connect(addr: &str) -> io::Result<std::net::TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address found"));
    for candidate in resolve(addr)? {
        match std::net::TcpStream::connect_timeout(&candidate, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => {
                last = io::Error::new(e.kind(), format!("cannot connect to {candidate}: {e}"))
            }
        }
    }
    Err(last)
}

/// The user's side: a raw-mode line editor on a terminal, plain lines otherwise.
struct Ui {
    raw: Option<RawMode>,
    editor: Editor,
    out: io::Stdout,
}

impl Ui {
    fn show(&mut self, text: &str) {
        let mut out = self.out.lock();
        if self.raw.is_some() {
            let mut screen = String::new();
            let line = format!("{} {text}", term::clock());
            self.editor.print_above(&line, term::width(1), &mut screen);
            let _ = out.write_all(screen.as_bytes());
        } else {
            let _ = writeln!(out, "{text}");
        }
        let _ = out.flush();
    }

    fn redraw(&mut self) {
        if self.raw.is_some() {
            let mut screen = String::new();
            self.editor.draw(term::width(1), &mut screen);
            let mut out = self.out.lock();
            let _ = out.write_all(screen.as_bytes());
            let _ = out.flush();
        }
    }

    /// Leaves the terminal on a clean line.
    fn finish(&mut self) {
        if self.raw.is_some() {
            let mut out = self.out.lock();
            let _ = out.write_all(b"\r\x1b[2K");
            let _ = out.flush();
        }
    }
}

struct Stdin {
    registered: bool,
    /// Stdin cannot be polled (a regular file or /dev/null): read it every turn.
    always_ready: bool,
    /// Stopped before draining it; read again next turn.
    again: bool,
    closed: bool,
    /// Splits piped input into lines.
    framer: Framer,
}

struct Client {
    poll: Poll,
    sock: TcpStream,
    want_writable: bool,
    from_server: Framer,
    signals: Signals,
    ui: Ui,
    stdin: Stdin,
    session: Session,
}

impl Client {
    fn start(opts: Options, tty: bool) -> io::Result<Client> {
        let std_sock = connect(&opts.addr)?;
        std_sock.set_nonblocking(true)?;
        std_sock.set_nodelay(true)?;
        let mut sock = TcpStream::from_std(std_sock);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut sock, SOCKET, Interest::READABLE)?;
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let raw = if tty {
            Some(RawMode::enable(STDIN_FD)?)
        } else {
            None
        };
        let session = Session::new(opts.name, tty);
        let mut client = Client {
            poll,
            sock,
            want_writable: false,
            from_server: Framer::new(MAX_SERVER_LINE),
            signals,
            ui: Ui {
                raw,
                editor: Editor::new(session.prompt()),
                out: io::stdout(),
            },
            stdin: Stdin {
                registered: false,
                always_ready: false,
                again: false,
                closed: false,
                framer: Framer::new(editor::MAX_LINE),
            },
            session,
        };
        client.ui.redraw();
        if tty {
            client.watch_stdin();
        }
        Ok(client)
    }

    fn run(mut self) -> u8 {
        let mut events = Events::with_capacity(64);
        loop {
            self.flush();
            self.apply_effects();
            if let Some(code) = self.session.exit() {
                self.ui.finish();
                return code;
            }
            let now = Instant::now();
            let timeout = if self.stdin_ready() {
                Some(Duration::ZERO)
            } else {
                self.session
                    .poll_timeout()
                    .map(|t| t.saturating_duration_since(now))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.ui.show(&format!("! event loop failed: {e}"));
                    return EXIT_CLOSED;
                }
            }
            for event in events.iter() {
                match event.token() {
                    SOCKET => self.read_socket(),
                    STDIN => self.read_stdin(),
                    SIGNALS if self.signals.pending().next().is_some() => {
                        self.session.quit(Instant::now())
                    }
                    _ => {}
                }
            }
            if self.stdin_ready() {
                self.read_stdin();
            }
            self.session.handle_timeout(Instant::now());
        }
    }

    /// Carries out what the session decided.
    fn apply_effects(&mut self) {
        while let Some(effect) = self.session.poll_effect() {
            match effect {
                Effect::Show(text) => self.ui.show(&text),
                Effect::LoggedIn => {
                    self.ui.editor.set_prompt(self.session.prompt());
                    self.watch_stdin();
                }
                Effect::AskName => {
                    self.ui.editor.set_prompt(self.session.prompt());
                    self.ui.redraw();
                }
                Effect::StopInput => self.unwatch_stdin(),
            }
        }
    }

    /// Stdin has more to give and the server is keeping up.
    fn stdin_ready(&mut self) -> bool {
        self.stdin.again && self.session.to_server().len() < OUTPUT_HIGH_WATER
    }

    fn watch_stdin(&mut self) {
        if self.stdin.registered || self.stdin.always_ready || self.stdin.closed {
            return;
        }
        let registered =
            self.poll
                .registry()
                .register(&mut SourceFd(&STDIN_FD), STDIN, Interest::READABLE);
        match registered {
            Ok(()) => self.stdin.registered = true,
            // epoll refuses regular files and /dev/null; they never block.
            Err(_) => self.stdin.always_ready = true,
        }
        self.stdin.again = true;
    }

    fn unwatch_stdin(&mut self) {
        if self.stdin.registered {
            let _ = self.poll.registry().deregister(&mut SourceFd(&STDIN_FD));
            self.stdin.registered = false;
        }
        self.stdin.always_ready = false;
        self.stdin.again = false;
        self.stdin.closed = true;
    }

    fn read_stdin(&mut self) {
        self.stdin.again = false;
        let mut buf = [0u8; 8192];
        let mut budget = STDIN_BUDGET;
        while !self.stdin.closed && self.session.exit().is_none() {
            if self.session.to_server().len() >= OUTPUT_HIGH_WATER || budget == 0 {
                self.stdin.again = true;
                return;
            }
            if !self.stdin.always_ready && !term::readable_now(STDIN_FD) {
                return;
            }
            match term::read_fd(STDIN_FD, &mut buf) {
                Ok(0) | Err(_) => {
                    self.unwatch_stdin();
                    self.session.quit(Instant::now());
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    self.on_stdin_bytes(&buf[..n]);
                }
            }
            // Effects in order with the lines that caused them; a refused
            // name must re-prompt before the next typed line is read.
            self.apply_effects();
        }
    }

    fn on_stdin_bytes(&mut self, bytes: &[u8]) {
        let now = Instant::now();
        if self.ui.raw.is_some() {
            let mut keys = Vec::new();
            self.ui.editor.feed(bytes, &mut keys);
            for key in keys {
                match key {
                    Key::Line(line) => self.session.handle_input(&line, now),
                    Key::Interrupt | Key::Eof => self.session.quit(now),
                }
            }
            self.apply_effects();
            self.ui.redraw();
            return;
        }
        let session = &mut self.session;
        let _ = self.stdin.framer.feed(bytes, |frame| {
            match frame {
                Frame::Line(line) => session.handle_input(&String::from_utf8_lossy(line), now),
                Frame::TooLong => self.ui.show("! line too long, not sent"),
            }
            ControlFlow::Continue(())
        });
    }

    fn read_socket(&mut self) {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) => {
                    self.session.handle_closed();
                    break;
                }
                Ok(n) => {
                    let now = Instant::now();
                    let session = &mut self.session;
                    let _ = self.from_server.feed(&buf[..n], |frame| {
                        if let Frame::Line(line) = frame {
                            session.handle_line(&String::from_utf8_lossy(line), now);
                        }
                        ControlFlow::Continue(())
                    });
                    self.apply_effects();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.session.handle_closed();
                    break;
                }
            }
        }
    }

    fn flush(&mut self) {
        let out = self.session.to_server();
        let mut written = 0;
        let mut failed = false;
        while written < out.len() {
            match self.sock.write(&out[written..]) {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        out.drain(..written);
        let want = !out.is_empty();
        if failed {
            self.session.handle_closed();
            return;
        }
        if want != self.want_writable {
            self.want_writable = want;
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let _ = self
                .poll
                .registry()
                .reregister(&mut self.sock, SOCKET, interest);
        }
    }
}

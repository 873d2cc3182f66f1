//! `selectchat connect`: the terminal chat client, one thread and one mio
//! loop waiting on the socket and stdin at once.
//!
//! On a terminal it runs a small line editor in raw mode, so incoming lines
//! are printed above the half-typed one and never garble it. With piped stdin
//! and stdout it prints one plain line per event and no escape codes, so
//! scripts and tests can drive it. It answers the server's `PING` by itself.

pub mod editor;
pub mod term;
pub mod view;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::protocol::text::sanitize;
use crate::protocol::{parse_reply, ByeReason, Command, Frame, Framer, ProtocolError, Reply};
use editor::{Editor, Key};
use term::RawMode;
use view::{describe_bye, describe_error, name_problem, parse_input, render, Action};

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
/// How long to wait for `BYE` after sending `QUIT`.
const QUIT_GRACE: Duration = Duration::from_secs(2);
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the user to type a name (terminal only).
    AskName,
    /// `LOGIN` sent, waiting for `OK`.
    LoggingIn,
    Chatting,
    /// `QUIT` sent, waiting for `BYE` and the close.
    Quitting,
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
    to_server: Vec<u8>,
    want_writable: bool,
    from_server: Framer,
    signals: Signals,
    ui: Ui,
    stdin: Stdin,
    phase: Phase,
    name: String,
    seq: u64,
    pings: VecDeque<(u64, Instant)>,
    who: Option<(u64, Vec<String>)>,
    bye: Option<ByeReason>,
    quit_deadline: Option<Instant>,
    exit: Option<u8>,
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
        let mut client = Client {
            poll,
            sock,
            to_server: Vec::new(),
            want_writable: false,
            from_server: Framer::new(MAX_SERVER_LINE),
            signals,
            ui: Ui {
                raw,
                editor: Editor::new("name: "),
                out: io::stdout(),
            },
            stdin: Stdin {
                registered: false,
                always_ready: false,
                again: false,
                closed: false,
                framer: Framer::new(editor::MAX_LINE),
            },
            phase: Phase::AskName,
            name: String::new(),
            seq: 0,
            pings: VecDeque::new(),
            who: None,
            bye: None,
            quit_deadline: None,
            exit: None,
        };
        match opts.name {
            Some(name) => client.login(name),
            None => client.ui.redraw(),
        }
        if tty {
            client.watch_stdin();
        }
        Ok(client)
    }

    fn run(mut self) -> u8 {
        let mut events = Events::with_capacity(64);
        loop {
            self.flush();
            if let Some(code) = self.exit {
                self.ui.finish();
                return code;
            }
            let now = Instant::now();
            let read_stdin_now = self.stdin.again && self.to_server.len() < OUTPUT_HIGH_WATER;
            let timeout = if read_stdin_now {
                Some(Duration::ZERO)
            } else {
                self.quit_deadline.map(|t| t.saturating_duration_since(now))
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
                    SIGNALS if self.signals.pending().next().is_some() => self.quit(),
                    _ => {}
                }
            }
            if self.stdin.again && self.to_server.len() < OUTPUT_HIGH_WATER {
                self.read_stdin();
            }
            if self.quit_deadline.is_some_and(|t| Instant::now() >= t) {
                self.exit.get_or_insert(EXIT_OK);
            }
        }
    }

    fn send(&mut self, command: Command<'_>) {
        command.write_to(&mut self.to_server);
    }

    fn login(&mut self, name: String) {
        self.send(Command::Login(&name));
        self.name = name;
        self.phase = Phase::LoggingIn;
    }

    fn quit(&mut self) {
        if self.phase == Phase::Quitting {
            return;
        }
        self.send(Command::Quit(None));
        self.phase = Phase::Quitting;
        self.quit_deadline = Some(Instant::now() + QUIT_GRACE);
        self.unwatch_stdin();
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
        while !self.stdin.closed && self.exit.is_none() {
            if self.to_server.len() >= OUTPUT_HIGH_WATER || budget == 0 {
                self.stdin.again = true;
                return;
            }
            if !self.stdin.always_ready && !term::readable_now(STDIN_FD) {
                return;
            }
            match term::read_fd(STDIN_FD, &mut buf) {
                Ok(0) | Err(_) => {
                    self.unwatch_stdin();
                    self.quit();
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    self.on_stdin_bytes(&buf[..n]);
                }
            }
        }
    }

    fn on_stdin_bytes(&mut self, bytes: &[u8]) {
        if self.ui.raw.is_some() {
            let mut keys = Vec::new();
            self.ui.editor.feed(bytes, &mut keys);
            for key in keys {
                match key {
                    Key::Line(line) => self.on_input(&line),
                    Key::Interrupt | Key::Eof => self.quit(),
                }
            }
            self.ui.redraw();
            return;
        }
        let mut framer = std::mem::take(&mut self.stdin.framer);
        let _ = framer.feed(bytes, |frame| {
            match frame {
                Frame::Line(line) => self.on_input(&String::from_utf8_lossy(line)),
                Frame::TooLong => self.ui.show("! line too long, not sent"),
            }
            ControlFlow::Continue(())
        });
        self.stdin.framer = framer;
    }

    fn on_input(&mut self, line: &str) {
        match self.phase {
            Phase::AskName => {
                let name = line.trim();
                if let Some(problem) = name_problem(name) {
                    self.ui.show(&format!("! {problem}"));
                } else {
                    self.login(name.to_string());
                }
            }
            Phase::LoggingIn => self.ui.show("! still logging in"),
            Phase::Quitting => {}
            Phase::Chatting => self.on_action(parse_input(line)),
        }
    }

    fn on_action(&mut self, action: Action<'_>) {
        match action {
            Action::Nothing => {}
            Action::Say(text) => {
                self.send(Command::Msg(text));
                let shown = format!("{}: {}", self.name, sanitize(text));
                self.ui.show(&shown);
            }
            Action::Dm { to, text } => {
                self.send(Command::Dm { to, text });
                let shown = format!("[dm to {}] {}: {}", sanitize(to), self.name, sanitize(text));
                self.ui.show(&shown);
            }
            Action::Who => {
                // WHO has no end marker; a PING behind it marks where the list ends.
                self.seq += 1;
                self.send(Command::Who);
                self.send(Command::Ping(Some(&format!("w{}", self.seq))));
                self.who = Some((self.seq, Vec::new()));
            }
            Action::Ping => {
                self.seq += 1;
                self.send(Command::Ping(Some(&format!("p{}", self.seq))));
                self.pings.push_back((self.seq, Instant::now()));
            }
            Action::Quit => self.quit(),
            Action::Help => {
                for line in view::HELP {
                    self.ui.show(line);
                }
            }
            Action::Hint(hint) => self.ui.show(&format!("! {hint}")),
        }
    }

    fn read_socket(&mut self) {
        let mut buf = [0u8; 16 * 1024];
        let mut framer = std::mem::take(&mut self.from_server);
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) => {
                    self.on_closed();
                    break;
                }
                Ok(n) => {
                    let _ = framer.feed(&buf[..n], |frame| {
                        if let Frame::Line(line) = frame {
                            self.on_server_line(&String::from_utf8_lossy(line));
                        }
                        ControlFlow::Continue(())
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.on_closed();
                    break;
                }
            }
        }
        self.from_server = framer;
    }

    fn on_server_line(&mut self, line: &str) {
        let Some(reply) = parse_reply(line) else {
            self.ui.show(&sanitize(line));
            return;
        };
        match reply {
            Reply::Ping => self.send(Command::Pong),
            Reply::Pong(Some(token)) => self.on_pong(token),
            Reply::Pong(None) => {}
            Reply::User(name) => match &mut self.who {
                Some((_, names)) => names.push(sanitize(name).into_owned()),
                None => self.ui.show(&format!("* online: {}", sanitize(name))),
            },
            Reply::Ok if self.phase == Phase::LoggingIn => self.on_logged_in(),
            Reply::Err(e @ (ProtocolError::UsernameTaken | ProtocolError::InvalidUsername))
                if self.phase == Phase::LoggingIn =>
            {
                self.on_login_refused(e)
            }
            Reply::Bye(reason) => self.bye = Some(reason),
            other => {
                if let Some(shown) = render(&other) {
                    self.ui.show(&shown);
                }
            }
        }
    }

    fn on_logged_in(&mut self) {
        self.phase = Phase::Chatting;
        let hint = if self.ui.raw.is_some() {
            " (/help lists commands)"
        } else {
            ""
        };
        let shown = format!("* logged in as {}{hint}", self.name);
        self.ui.editor.set_prompt("> ");
        self.ui.show(&shown);
        self.watch_stdin();
    }

    fn on_login_refused(&mut self, e: ProtocolError) {
        let shown = format!("! {}: {}", describe_error(e), self.name);
        self.ui.show(&shown);
        if self.ui.raw.is_some() {
            self.phase = Phase::AskName;
            self.ui.editor.set_prompt("name: ");
            self.ui.redraw();
        } else {
            self.exit = Some(EXIT_CLOSED);
        }
    }

    fn on_pong(&mut self, token: &str) {
        let (kind, n) = token.split_at(token.len().min(1));
        let Ok(n) = n.parse::<u64>() else { return };
        match kind {
            "w" if self.who.as_ref().is_some_and(|(seq, _)| *seq == n) => {
                let (_, names) = self.who.take().unwrap_or_default();
                let shown = format!("* online ({}): {}", names.len(), names.join(", "));
                self.ui.show(&shown);
            }
            "p" => {
                while let Some((seq, sent)) = self.pings.pop_front() {
                    if seq == n {
                        let ms = sent.elapsed().as_secs_f64() * 1000.0;
                        self.ui.show(&format!("* pong from server in {ms:.2} ms"));
                        break;
                    }
                }
            }
            _ => {}
        }
    }

    fn on_closed(&mut self) {
        if self.exit.is_some() {
            return;
        }
        if self.phase == Phase::Quitting {
            self.exit = Some(EXIT_OK);
            return;
        }
        let shown = format!("* disconnected: {}", describe_bye(self.bye));
        self.ui.show(&shown);
        self.exit = Some(EXIT_CLOSED);
    }

    fn flush(&mut self) {
        let mut written = 0;
        while written < self.to_server.len() {
            match self.sock.write(&self.to_server[written..]) {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.to_server.clear();
                    self.on_closed();
                    return;
                }
            }
        }
        self.to_server.drain(..written);
        let want = !self.to_server.is_empty();
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

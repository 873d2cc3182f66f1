//! `selectchat connect`: the terminal chat client, one thread and one mio
//! loop waiting on the socket, the keyboard and signals at once.
//!
//! On a terminal it is a full-screen app (ratatui over crossterm): a buffer
//! per conversation, scrollback, an input line with history, and a session
//! that reconnects and resumes by itself when the connection drops. With
//! piped stdin and stdout it prints one plain line per event and no escape
//! codes, so scripts and tests can drive it, and it ends when the connection
//! does.
//!
//! This module only moves bytes between the socket, the keyboard and the
//! screen; what to send and show is decided by [`session::Session`] and
//! [`app::App`], which have no I/O.

pub mod app;
pub mod input;
pub mod screen;
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
use ratatui::crossterm::event::{self as keys, Event, KeyEventKind};
use ratatui::crossterm::{execute, terminal};
use ratatui::prelude::CrosstermBackend;
use ratatui::Terminal;
use signal_hook::consts::{SIGINT, SIGTERM, SIGWINCH};
use signal_hook_mio::v1_0::Signals;

use crate::flood::FloodPolicy;
use crate::protocol::{Frame, Framer};
use app::{App, Request};
use session::{Config, Effect, Session, Target};
use view::name_problem;

/// Exit code after the user quit.
pub const EXIT_OK: u8 = 0;
/// Exit code when the connection failed, was closed by the server, or login failed.
pub const EXIT_CLOSED: u8 = 1;
/// Exit code for unusable arguments.
pub const EXIT_USAGE: u8 = 2;
/// Exit code when piped input ended but the server did not confirm every
/// line within `--wait`.
pub const EXIT_UNCONFIRMED: u8 = 3;
/// Piped lines queued and not yet sent, past which stdin waits: the pace
/// holds lines back, and a big file must not pile up in memory.
const STDIN_BACKLOG: usize = 100;

const SOCKET: Token = Token(0);
const STDIN: Token = Token(1);
const SIGNALS: Token = Token(2);
const STDIN_FD: i32 = 0;
const DEFAULT_PORT: u16 = 7007;
/// Stop reading stdin while this much is still unsent to the server.
const OUTPUT_HIGH_WATER: usize = 1 << 20;
/// Bytes of stdin handled per loop turn, so the socket is served in between.
const STDIN_BUDGET: usize = 64 * 1024;
/// Longest server line the client keeps; the server's own limit is far lower.
const MAX_SERVER_LINE: usize = 1 << 20;
/// Paced lines stay this far under the server's limit, for timing jitter.
const PACE_MARGIN: f64 = 0.9;
/// While offline the screen is redrawn this often: the retry countdown moves.
const REDRAW_EVERY: Duration = Duration::from_secs(1);

/// What `selectchat connect` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// `host:port`, `host`, `[v6]:port` or `v6`; the port defaults to 7007.
    pub addr: String,
    /// Log in under this name; without it a terminal user is asked.
    pub name: Option<String>,
    /// Join this room after login; piped lines are said there.
    pub room: Option<String>,
    /// The name's password (from the environment), if it is registered.
    pub password: Option<String>,
    /// Register the name with the password instead of logging in.
    pub register: bool,
    /// The server's line rate (`--rate` on the server); 0 sends unpaced.
    pub rate: f64,
    /// The server's burst (`--burst` on the server).
    pub burst: u32,
    /// Seconds of server silence before the client checks on it with a
    /// `PING`; twice that without an answer and it reconnects.
    pub heartbeat: f64,
    /// Seconds to wait, once piped input ends, for the server to confirm
    /// every line.
    pub wait: f64,
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
    if !(opts.heartbeat.is_finite() && opts.heartbeat >= 0.1) {
        eprintln!("selectchat connect: --heartbeat is at least 0.1 seconds");
        return EXIT_USAGE;
    }
    if !(opts.wait.is_finite() && (0.0..=86_400.0).contains(&opts.wait)) {
        eprintln!("selectchat connect: --wait is 0 to 86400 seconds");
        return EXIT_USAGE;
    }
    if let Some(room) = opts.room.as_deref() {
        if !crate::protocol::text::valid_room(room) {
            eprintln!(
                "selectchat connect: --room: a room is # and 1 to 32 letters, digits, _ or -"
            );
            return EXIT_USAGE;
        }
    }
    match Client::start(opts, tty) {
        Ok(client) => client.run(),
        Err(e) => {
            eprintln!("selectchat connect: {e}");
            EXIT_CLOSED
        }
    }
}

/// Seeds the reconnect jitter differently in every client, so a crowd
/// dropped together spreads out.
fn jitter_seed() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return u64::from(std::process::id());
    }
    u64::from_le_bytes(bytes)
}

/// Resolves `list`: addresses as [`resolve`] takes them, separated by
/// commas (the nodes of a cluster), in order.
pub fn resolve_all(list: &str) -> io::Result<Vec<SocketAddr>> {
    let mut all = Vec::new();
    for addr in list.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        all.extend(resolve(addr)?);
    }
    Ok(all)
}

/// The first connection: blocking, so a wrong address is reported at once.
/// Returns the stream and the index of the address it reached.
fn connect(addrs: &[SocketAddr]) -> io::Result<(std::net::TcpStream, usize)> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address found");
    for (i, &candidate) in addrs.iter().enumerate() {
        match std::net::TcpStream::connect_timeout(&candidate, session::CONNECT_TIMEOUT) {
            Ok(stream) => return Ok((stream, i)),
            Err(e) => {
                last = io::Error::new(e.kind(), format!("cannot connect to {candidate}: {e}"))
            }
        }
    }
    Err(last)
}

/// The status line shows a countdown to the next reconnect attempt.
fn ticking(session: &Session) -> bool {
    matches!(session.link(), session::Link::Down(Some(_)))
}

/// Piped mode: one line per event.
fn print_line(text: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// The full-screen app and the terminal it owns; the terminal is restored on drop.
struct Tui {
    terminal: Terminal<CrosstermBackend<io::Stdout>>,
    app: App,
    dirty: bool,
    drawn: Instant,
}

impl Tui {
    fn start(server: String) -> io::Result<Tui> {
        terminal::enable_raw_mode()?;
        let mut out = io::stdout();
        execute!(
            out,
            terminal::EnterAlternateScreen,
            keys::EnableBracketedPaste
        )?;
        let tui = Tui {
            terminal: Terminal::new(CrosstermBackend::new(out))?,
            app: App::new(server),
            dirty: true,
            drawn: Instant::now(),
        };
        Ok(tui)
    }

    fn draw(&mut self, session: &Session, now: Instant) {
        let countdown =
            ticking(session) && now.saturating_duration_since(self.drawn) >= REDRAW_EVERY;
        if !self.dirty && !countdown {
            return;
        }
        let Tui { terminal, app, .. } = self;
        if let Ok(size) = terminal.size() {
            app.page = screen::message_rows(size.into());
        }
        let _ = terminal.draw(|frame| screen::draw(frame, app, session, now));
        if std::mem::take(&mut app.bell) {
            let out = terminal.backend_mut();
            let _ = out.write_all(b"\x07").and_then(|()| out.flush());
        }
        self.dirty = false;
        self.drawn = now;
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        let _ = execute!(
            self.terminal.backend_mut(),
            keys::DisableBracketedPaste,
            terminal::LeaveAlternateScreen
        );
        let _ = terminal::disable_raw_mode();
        let _ = self.terminal.show_cursor();
    }
}

/// Piped stdin, read line by line.
struct Stdin {
    registered: bool,
    /// Stdin cannot be polled (a regular file or /dev/null): read it every turn.
    always_ready: bool,
    /// Stopped before draining it; read again next turn.
    again: bool,
    closed: bool,
    framer: Framer,
}

/// The connection to the server, once connected or while connecting.
struct Conn {
    sock: TcpStream,
    /// A non-blocking connect is under way; writable means it finished.
    connecting: bool,
    want_writable: bool,
}

struct Client {
    poll: Poll,
    addrs: Vec<SocketAddr>,
    attempt: usize,
    conn: Option<Conn>,
    from_server: Framer,
    signals: Signals,
    tui: Option<Tui>,
    stdin: Stdin,
    /// Where piped lines go: the lobby, or `--room`.
    target: Target,
    session: Session,
}

impl Client {
    fn start(opts: Options, tty: bool) -> io::Result<Client> {
        let addrs = resolve_all(&opts.addr)?;
        let (std_sock, reached) = connect(&addrs)?;
        std_sock.set_nonblocking(true)?;
        std_sock.set_nodelay(true)?;
        let mut sock = TcpStream::from_std(std_sock);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut sock, SOCKET, Interest::READABLE)?;
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGWINCH])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let now = Instant::now();
        // Typed or piped, lines go out under the server's line rate, so
        // neither a paste nor a file draws BYE flooding.
        let pace = if opts.rate > 0.0 {
            FloodPolicy::new(
                opts.rate * PACE_MARGIN,
                opts.burst.saturating_sub(1).max(1),
                Duration::MAX,
            )
        } else {
            FloodPolicy::OFF
        };
        let cfg = Config {
            name: opts.name,
            password: opts.password.clone(),
            register: opts.register,
            interactive: tty,
            resilient: tty,
            pace,
            heartbeat: Duration::from_secs_f64(opts.heartbeat),
            room: opts.room.clone(),
            seed: jitter_seed(),
            wait: Duration::from_secs_f64(opts.wait),
        };
        let mut session = Session::new(cfg, now);
        session.handle_connected(now);
        let tui = if tty {
            Some(Tui::start(opts.addr)?)
        } else {
            None
        };
        let mut client = Client {
            poll,
            addrs,
            // A reconnect tries the next address first: with several
            // nodes, the one just lost may be the one cut off.
            attempt: reached + 1,
            conn: Some(Conn {
                sock,
                connecting: false,
                want_writable: false,
            }),
            from_server: Framer::new(MAX_SERVER_LINE),
            signals,
            tui,
            stdin: Stdin {
                registered: false,
                always_ready: false,
                again: false,
                closed: false,
                framer: Framer::new(input::MAX_LINE),
            },
            target: opts.room.map_or(Target::Lobby, Target::Room),
            session,
        };
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
                return self.finish(code);
            }
            let now = Instant::now();
            if let Some(tui) = &mut self.tui {
                tui.draw(&self.session, now);
            }
            let mut timeout = self
                .session
                .poll_timeout()
                .map(|t| t.saturating_duration_since(now));
            if self.tui.is_some() && ticking(&self.session) {
                timeout = Some(timeout.map_or(REDRAW_EVERY, |t| t.min(REDRAW_EVERY)));
            }
            if self.stdin_ready() {
                timeout = Some(Duration::ZERO);
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    eprintln!("selectchat connect: event loop failed: {e}");
                    return self.finish(EXIT_CLOSED);
                }
            }
            for event in events.iter() {
                match event.token() {
                    SOCKET => self.on_socket(event.is_writable()),
                    STDIN if self.tui.is_some() => self.read_keys(),
                    STDIN => self.read_stdin(),
                    SIGNALS => self.on_signals(),
                    _ => {}
                }
            }
            if self.stdin_ready() {
                self.read_stdin();
            }
            self.session.handle_timeout(Instant::now());
        }
    }

    /// Leaves the screen, then says on stderr why the run ended, if the
    /// screen hid it or the run failed (a script reads its exit code and
    /// stderr: how many lines were not confirmed).
    fn finish(&mut self, code: u8) -> u8 {
        let had_screen = self.tui.take().is_some();
        if had_screen || code != EXIT_OK {
            if let Some(why) = self.session.farewell() {
                eprintln!("selectchat connect: {why}");
            }
        }
        code
    }

    fn on_signals(&mut self) {
        let mut stop = false;
        for signal in self.signals.pending() {
            match signal {
                SIGWINCH => {
                    if let Some(tui) = &mut self.tui {
                        tui.dirty = true;
                    }
                }
                _ => stop = true,
            }
        }
        if stop {
            self.session.quit(Instant::now());
        }
    }

    /// Carries out what the session decided; the app takes the screen's part.
    fn apply_effects(&mut self) {
        let now_ms = term::unix_ms();
        while let Some(effect) = self.session.poll_effect() {
            let effect = match &mut self.tui {
                Some(tui) => {
                    tui.dirty = true;
                    match tui.app.apply(effect, self.session.name(), now_ms) {
                        Some(effect) => effect,
                        None => continue,
                    }
                }
                None => effect,
            };
            match effect {
                Effect::Show(target, line) => print_line(&line.plain(&target)),
                Effect::ShowAll(line) => print_line(&line.plain(&Target::Lobby)),
                Effect::LoggedIn => self.watch_stdin(),
                Effect::StopInput if self.tui.is_none() => self.unwatch_stdin(),
                Effect::Connect => self.reconnect(),
                Effect::Disconnect => self.drop_conn(),
                Effect::StopInput => {}
                Effect::Delivery { .. } | Effect::Joined { .. } | Effect::Parted(_) => {}
            }
        }
    }

    /// Starts a non-blocking connect to the next address; the first
    /// writable event says whether it worked.
    fn reconnect(&mut self) {
        self.drop_conn();
        let addr = self.addrs[self.attempt % self.addrs.len().max(1)];
        self.attempt += 1;
        let started = TcpStream::connect(addr).and_then(|mut sock| {
            self.poll.registry().register(
                &mut sock,
                SOCKET,
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(sock)
        });
        match started {
            Ok(sock) => {
                self.conn = Some(Conn {
                    sock,
                    connecting: true,
                    want_writable: true,
                })
            }
            Err(_) => self.session.handle_closed(Instant::now()),
        }
    }

    fn drop_conn(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            let _ = self.poll.registry().deregister(&mut conn.sock);
        }
        self.from_server = Framer::new(MAX_SERVER_LINE);
    }

    fn closed(&mut self) {
        self.drop_conn();
        self.session.handle_closed(Instant::now());
    }

    fn on_socket(&mut self, writable: bool) {
        let Some(conn) = &mut self.conn else { return };
        if conn.connecting {
            if !writable {
                return;
            }
            let failed =
                conn.sock.take_error().ok().flatten().is_some() || conn.sock.peer_addr().is_err();
            if failed {
                return self.closed();
            }
            conn.connecting = false;
            let _ = conn.sock.set_nodelay(true);
            self.session.handle_connected(Instant::now());
        }
        self.read_socket();
    }

    fn read_socket(&mut self) {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let Some(conn) = &mut self.conn else { return };
            match conn.sock.read(&mut buf) {
                Ok(0) => return self.closed(),
                Ok(n) => {
                    let now = Instant::now();
                    let session = &mut self.session;
                    let _ = self.from_server.feed(&buf[..n], |frame| {
                        if let Frame::Line(line) = frame {
                            session.handle_line(&String::from_utf8_lossy(line), now);
                        }
                        ControlFlow::Continue(())
                    });
                    // Rosters and states change without a line to show.
                    if let Some(tui) = &mut self.tui {
                        tui.dirty = true;
                    }
                    self.apply_effects();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.closed(),
            }
        }
    }

    fn flush(&mut self) {
        let Some(conn) = self.conn.as_mut().filter(|c| !c.connecting) else {
            return;
        };
        let out = self.session.to_server();
        let mut written = 0;
        let mut failed = false;
        while written < out.len() {
            match conn.sock.write(&out[written..]) {
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
            return self.closed();
        }
        if want != conn.want_writable {
            conn.want_writable = want;
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let _ = self
                .poll
                .registry()
                .reregister(&mut conn.sock, SOCKET, interest);
        }
    }

    /// Keys and pastes, drained from crossterm's reader until it has none:
    /// it may hold parsed events that no longer make stdin readable.
    fn read_keys(&mut self) {
        let Some(tui) = &mut self.tui else { return };
        loop {
            match keys::poll(Duration::ZERO) {
                Ok(true) => {}
                Ok(false) => break,
                Err(_) => return self.session.quit(Instant::now()),
            }
            let now = Instant::now();
            tui.dirty = true;
            match keys::read() {
                Ok(Event::Key(key)) if key.kind != KeyEventKind::Release => {
                    if tui.app.on_key(key, &mut self.session, now) == Request::Quit {
                        self.session.quit(now);
                    }
                }
                Ok(Event::Paste(text)) => tui.app.on_paste(&text, &mut self.session, now),
                Ok(_) => {}
                Err(_) => return self.session.quit(now),
            }
        }
    }

    /// Stdin has more to give and the server is keeping up.
    fn stdin_ready(&mut self) -> bool {
        self.tui.is_none()
            && self.stdin.again
            && self.session.to_server().len() < OUTPUT_HIGH_WATER
            && self.session.pending() < STDIN_BACKLOG
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

    /// Piped stdin: lines, as fast as the server takes them.
    fn read_stdin(&mut self) {
        self.stdin.again = false;
        let mut buf = [0u8; 8192];
        let mut budget = STDIN_BUDGET;
        while !self.stdin.closed && self.session.exit().is_none() {
            if self.session.to_server().len() >= OUTPUT_HIGH_WATER
                || self.session.pending() >= STDIN_BACKLOG
                || budget == 0
            {
                self.stdin.again = true;
                return;
            }
            if !self.stdin.always_ready && !term::readable_now(STDIN_FD) {
                return;
            }
            match term::read_fd(STDIN_FD, &mut buf) {
                Ok(0) | Err(_) => {
                    self.unwatch_stdin();
                    self.session.end_of_input(Instant::now());
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    let now = Instant::now();
                    let (session, target) = (&mut self.session, &self.target);
                    let mut too_long = false;
                    let _ = self.stdin.framer.feed(&buf[..n], |frame| {
                        match frame {
                            Frame::Line(line) => {
                                session.handle_input(&String::from_utf8_lossy(line), target, now)
                            }
                            Frame::TooLong => too_long = true,
                        }
                        ControlFlow::Continue(())
                    });
                    if too_long {
                        println!("! line too long, not sent");
                    }
                }
            }
            // Effects in order with the lines that caused them.
            self.apply_effects();
        }
    }
}

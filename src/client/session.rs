//! The client's side of the protocol, without a socket or a terminal: what
//! to send for what the user typed, what to show for what the server said,
//! and, for a terminal user, how to survive a dropped connection.
//!
//! The shell (`client::run`) owns the `Poll`, the socket and the terminal
//! and only moves bytes; every decision (log in or resume, find where a `WHO`
//! list ends, pace a paste under the server's flood limit, notice a dead
//! server, back off before reconnecting, catch up on missed room messages,
//! know which of the user's lines got through) is made here, driven by lines
//! and an explicit `now`, so it is unit-tested with a fake clock.
//!
//! Delivery: a room message, or a direct one in a stored conversation, is
//! delivered when its `SENT` comes back; a lobby or v1 direct message when
//! the `PONG` of a `PING` sent after it does. When the connection drops,
//! messages without a `SENT` are looked for in their room's or
//! conversation's history after the next login and sent again only if
//! absent, so each arrives once. Lobby and v1 direct messages are not stored
//! by the server, so those caught in flight are marked unconfirmed, never
//! sent twice.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::view::{self, describe_bye, describe_error, name_problem, parse_input, Action};
use super::{EXIT_CLOSED, EXIT_OK, EXIT_UNCONFIRMED};
use crate::flood::{Bucket, FloodPolicy, Throttle};
use crate::protocol::reply::MessageId;
use crate::protocol::text::sanitize;
use crate::protocol::{parse_reply, ByeReason, Command, ProtocolError, Reply};

/// How long to wait for `BYE` after sending `QUIT`.
pub const QUIT_GRACE: Duration = Duration::from_secs(2);
/// Default silence from the server after which the client sends a `PING`
/// of its own; twice that and the server is taken for gone.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// How long one reconnect attempt may take to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// First reconnect delay; it doubles per failed attempt up to [`RETRY_CAP`].
pub const RETRY_FIRST: Duration = Duration::from_millis(500);
/// Longest wait between reconnect attempts.
pub const RETRY_CAP: Duration = Duration::from_secs(30);
/// Where a line of `room` is shown: a room's buffer, or for a stored
/// conversation (`@name`) the direct conversation with that name.
fn target_of(room: &str) -> Target {
    match room.strip_prefix('@') {
        Some(peer) => Target::Dm(peer.to_string()),
        None => Target::Room(room.to_string()),
    }
}

/// `n` lines, in words: "1 line", "3 lines".
fn lines(n: usize) -> String {
    if n == 1 {
        "1 line".into()
    } else {
        format!("{n} lines")
    }
}

/// Typed lines held while offline or paced; more are refused, not queued.
pub const MAX_QUEUED: usize = 500;
/// Messages loaded into a room's buffer when it is joined.
pub const JOIN_HISTORY: u32 = 50;
/// Lobby or direct messages sent before a `PING` confirms them, during a paste.
const CONFIRM_EVERY: usize = 10;

/// Where a line is shown and where typed text goes.
#[derive(Debug, Clone, Eq)]
pub enum Target {
    /// Everyone logged in (v1 `MSG`).
    Lobby,
    /// A room, spelled as the server spells it.
    Room(String),
    /// A direct conversation with one person.
    Dm(String),
}

impl PartialEq for Target {
    /// Room and user names are ASCII and case-insensitive on the wire.
    fn eq(&self, other: &Target) -> bool {
        match (self, other) {
            (Target::Lobby, Target::Lobby) => true,
            (Target::Room(a), Target::Room(b)) | (Target::Dm(a), Target::Dm(b)) => {
                a.eq_ignore_ascii_case(b)
            }
            _ => false,
        }
    }
}

impl Target {
    /// The name of the buffer: `lobby`, `#room` or the other person's name.
    pub fn title(&self) -> &str {
        match self {
            Target::Lobby => "lobby",
            Target::Room(name) | Target::Dm(name) => name,
        }
    }
}

/// What kind of line it is, which decides how it is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Someone else's message.
    Chat,
    /// The user's own message.
    Own,
    /// An event: joins, departures, lists, state changes (`* ...`).
    Notice,
    /// Something went wrong (`! ...`).
    Error,
}

/// Whether one of the user's messages got through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Typed, not yet confirmed by the server.
    Pending,
    /// Confirmed (rooms: with its id).
    Delivered,
    /// Refused by the server or never sent.
    Failed,
    /// In flight when the connection dropped; the server keeps no record.
    Unconfirmed,
}

/// One line to show, already free of control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub kind: Kind,
    /// The sender, for messages; empty for notices and errors.
    pub from: String,
    pub text: String,
    /// The room message id, which orders a room's lines and drops repeats.
    pub id: Option<MessageId>,
    /// When the server accepted it (Unix ms), known for stored messages.
    pub at: Option<u64>,
    /// Stored history rather than live (drawn as such in piped mode).
    pub history: bool,
    /// For the user's own messages: the local number delivery reports use.
    pub local: Option<u64>,
}

impl Line {
    fn notice(kind: Kind, text: &str) -> Line {
        Line {
            kind,
            from: String::new(),
            text: sanitize(text).into_owned(),
            id: None,
            at: None,
            history: false,
            local: None,
        }
    }

    fn message(kind: Kind, from: &str, text: &str) -> Line {
        Line {
            from: sanitize(from).into_owned(),
            ..Line::notice(kind, text)
        }
    }

    /// The line as piped mode prints it: no colour, the buffer as a prefix.
    pub fn plain(&self, target: &Target) -> String {
        let prefix = match target {
            Target::Room(room) => format!("[{room}] "),
            _ => String::new(),
        };
        match (self.kind, target) {
            (Kind::Notice, _) => format!("* {prefix}{}", self.text),
            (Kind::Error, _) => format!("! {prefix}{}", self.text),
            (Kind::Own, Target::Dm(to)) => format!("[dm to {to}] {}: {}", self.from, self.text),
            (_, Target::Dm(_)) => format!("[dm] {}: {}", self.from, self.text),
            _ if self.history => format!("{prefix}({}): {}", self.from, self.text),
            _ => format!("{prefix}{}: {}", self.from, self.text),
        }
    }
}

/// What the session asks of the shell, and tells the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Show a line in a buffer (opening it if needed).
    Show(Target, Line),
    /// Show a line in every open buffer: the connection went or came back.
    ShowAll(Line),
    /// One of the user's messages changed state; rooms learn its id.
    Delivery {
        local: u64,
        state: Delivery,
        id: Option<MessageId>,
    },
    /// A room was joined: open its buffer, and look at it if the user asked.
    Joined { room: Target, focus: bool },
    /// A room was left: close its buffer.
    Parted(Target),
    /// Logged in; start reading the keyboard if not yet.
    LoggedIn,
    /// Stop reading stdin.
    StopInput,
    /// Open a new connection and report back with `handle_connected` or `handle_closed`.
    Connect,
    /// Close the connection without reporting: the session already knows.
    Disconnect,
}

/// Where the login is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the user to type a name (terminal only).
    AskName,
    /// Waiting for the user to type the name's password, or a new one
    /// for `/register` (terminal only); it is not shown as typed.
    AskPassword,
    /// `LOGIN` sent, or to be sent once connected.
    LoggingIn,
    /// `RESUME` sent; the `PING` behind it marks the end of its `JOINED` lines.
    Resuming,
    /// Logged in.
    Chatting,
    /// `QUIT` sent; waiting for the server to close.
    Quitting,
}

/// The state of the connection, for the status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Open.
    Up,
    /// A connect is under way; it fails at the deadline.
    Connecting(Instant),
    /// Closed; the next attempt is due at this instant (never, if `None`).
    Down(Option<Instant>),
}

/// How the session behaves: a person at a terminal, or a script.
#[derive(Debug, Clone)]
pub struct Config {
    /// Log in under this name; without it the name is asked for.
    pub name: Option<String>,
    /// The name's password, if it is registered (or to be).
    pub password: Option<String>,
    /// Register the name (`REGISTER`) rather than log in.
    pub register: bool,
    /// A person who can pick another name when one is refused.
    pub interactive: bool,
    /// Reconnect and resume after a drop, pace typed lines, track delivery.
    pub resilient: bool,
    /// The server's flood limit, which paced lines stay under.
    pub pace: FloodPolicy,
    /// Server silence before a probe `PING`; twice that, a reconnect.
    pub heartbeat: Duration,
    /// Join this room after login (piped `--room`).
    pub room: Option<String>,
    /// Seeds the reconnect jitter.
    pub seed: u64,
    /// At the end of piped input, how long to wait for the server to
    /// confirm every line before giving up (`--wait`).
    pub wait: Duration,
}

/// A room the user is in (or was in, before a drop).
#[derive(Debug, Clone)]
struct Room {
    name: String,
    /// The highest message id seen, for `HISTORY AFTER` after a drop.
    last_id: MessageId,
    /// The lowest id seen, for `HISTORY BEFORE` scrollback.
    oldest: Option<MessageId>,
    /// `JOINED` arrived on this connection.
    joined: bool,
    /// Scrollback reached the room's first stored message.
    complete: bool,
    members: Vec<String>,
}

impl Room {
    /// A room just joined, of which nothing is seen yet.
    fn joined(name: &str) -> Room {
        Room {
            name: name.to_string(),
            last_id: 0,
            oldest: None,
            joined: true,
            complete: false,
            members: Vec::new(),
        }
    }
}

/// One typed message on its way.
#[derive(Debug, Clone)]
struct Out {
    local: u64,
    to: Target,
    text: String,
    /// Sent as `SAY <room>/<tag>`, the tag being `l<local>`.
    tagged: bool,
}

/// What a `HISTORY` request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fetch {
    /// Recent messages after a fresh join.
    Recent,
    /// Messages missed during a drop; may need more pages.
    CatchUp,
    /// Older messages, for scrollback.
    Older,
}

#[derive(Debug, Clone)]
struct HistoryRequest {
    room: String,
    fetch: Fetch,
    limit: u32,
    got: u32,
    last: Option<MessageId>,
}

/// A list being collected: `WHO` (ends at the `PONG` behind it) or `WHO #room`.
#[derive(Debug, Clone)]
struct WhoRequest {
    room: Option<String>,
    /// The token of the PING that ends a lobby `WHO`.
    seq: u64,
    /// Asked for by the user (else a quiet refresh for the roster).
    shown_in: Option<Target>,
    names: Vec<String>,
}

/// The protocol state of one `selectchat connect` run.
#[derive(Debug)]
pub struct Session {
    cfg: Config,
    phase: Phase,
    link: Link,
    name: String,
    /// The name's password, once known: a reconnect without a token logs
    /// in with it.
    password: Option<String>,
    /// The next login registers the name.
    registering: bool,
    /// Logged in with a password: direct lines go to stored conversations
    /// (`SAY @name`), except with the peers in `v1_peers`, who have no
    /// account and get v1 `DM`s.
    account: bool,
    v1_peers: Vec<String>,
    to_server: Vec<u8>,
    effects: VecDeque<Effect>,
    /// Numbers the tokens of the client's own PINGs (`p7`, `w8`, `c9`).
    seq: u64,
    pings: VecDeque<(u64, Instant, Target)>,
    whos: VecDeque<WhoRequest>,
    /// Where the answer to the pending `ROOMS` goes.
    rooms_list: VecDeque<Target>,
    bye: Option<ByeReason>,
    quit_deadline: Option<Instant>,
    /// Input ended: lines still unconfirmed are waited for until then.
    finishing: Option<Instant>,
    exit: Option<u8>,
    /// Why the run ended, for the last line printed after the screen is gone.
    farewell: Option<String>,
    token: Option<String>,
    /// Set once logged in: later connections log back in by themselves.
    logged_in_once: bool,
    rooms: Vec<Room>,
    online: Vec<String>,
    /// JOINs sent and not answered, oldest first.
    joins: VecDeque<String>,
    /// Rooms listed after `RESUME`'s `OK`.
    resumed: Vec<String>,
    /// Rooms the last `RESUME` asked the server to replay, with the id
    /// they were replayed after.
    replayed: Vec<(String, MessageId)>,
    /// The PING behind the last `RESUME`: its PONG ends the `JOINED` lines.
    resume_ping: u64,
    /// Room messages go out tagged (`SAY <room>/<tag>`) unless the server
    /// turned out not to know tags.
    tags: bool,
    history: VecDeque<HistoryRequest>,
    /// Rooms whose missed messages are still being fetched; the queue waits.
    catching_up: usize,
    /// Typed messages not yet sent.
    outbox: VecDeque<Out>,
    /// Room messages sent, waiting for `SENT`.
    unsent: VecDeque<Out>,
    /// Room and stored direct messages whose `SENT` was lost with a
    /// connection: looked for in the history after the next login.
    unsure: Vec<Out>,
    /// The highest id seen in each stored conversation, by the peer's
    /// lower-cased name, for `HISTORY @peer AFTER` after a drop.
    conversations: HashMap<String, MessageId>,
    /// Lobby and direct messages sent, with the confirming PING's number.
    unconfirmed: Vec<(Out, u64)>,
    /// Number of the next confirming PING; messages sent now wait for it.
    confirm_seq: u64,
    local_seq: u64,
    /// A paste is being queued: send once it is all in.
    batching: bool,
    bucket: Bucket,
    paused_until: Option<Instant>,
    last_heard: Instant,
    probed: bool,
    attempts: u32,
    rng: u64,
}

impl Session {
    /// A session that logs in as soon as it is connected, or asks for a name first.
    pub fn new(cfg: Config, now: Instant) -> Session {
        let mut session = Session {
            phase: Phase::AskName,
            link: Link::Down(None),
            name: String::new(),
            password: cfg.password.clone(),
            registering: cfg.register,
            account: false,
            v1_peers: Vec::new(),
            to_server: Vec::new(),
            effects: VecDeque::new(),
            seq: 0,
            pings: VecDeque::new(),
            whos: VecDeque::new(),
            rooms_list: VecDeque::new(),
            bye: None,
            quit_deadline: None,
            finishing: None,
            exit: None,
            farewell: None,
            token: None,
            logged_in_once: false,
            rooms: Vec::new(),
            online: Vec::new(),
            joins: VecDeque::new(),
            resumed: Vec::new(),
            replayed: Vec::new(),
            resume_ping: 0,
            tags: true,
            history: VecDeque::new(),
            catching_up: 0,
            outbox: VecDeque::new(),
            unsent: VecDeque::new(),
            unsure: Vec::new(),
            conversations: HashMap::new(),
            unconfirmed: Vec::new(),
            confirm_seq: 1,
            local_seq: 0,
            batching: false,
            bucket: Bucket::new(now, &cfg.pace),
            paused_until: None,
            last_heard: now,
            probed: false,
            attempts: 0,
            rng: cfg.seed | 1,
            cfg,
        };
        if let Some(name) = session.cfg.name.clone() {
            session.name = name;
            session.phase = Phase::LoggingIn;
        }
        session
    }

    /// Bytes waiting to go to the server; the caller drains what it wrote.
    pub fn to_server(&mut self) -> &mut Vec<u8> {
        &mut self.to_server
    }

    /// The next thing for the shell or the screen to do.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// The exit code, once the session is over.
    pub fn exit(&self) -> Option<u8> {
        self.exit
    }

    /// Why the run ended, when there is more to say than the exit code.
    pub fn farewell(&self) -> Option<&str> {
        self.farewell.as_deref()
    }

    /// Where the login is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Where the connection is.
    pub fn link(&self) -> Link {
        self.link
    }

    /// The name logged in (or being logged in) with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Typed messages not yet confirmed, queued ones included.
    pub fn pending(&self) -> usize {
        self.outbox.len() + self.unsent.len() + self.unsure.len() + self.unconfirmed.len()
    }

    /// Names known to be online (from `WHO` and presence lines).
    pub fn online(&self) -> &[String] {
        &self.online
    }

    /// Rooms the user is in, as the server spells them.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.iter().map(|r| r.name.as_str())
    }

    /// The members of a room the user is in, as last heard.
    pub fn members(&self, room: &str) -> &[String] {
        self.room(room).map_or(&[], |r| &r.members)
    }

    /// The prompt for the current phase.
    pub fn prompt(&self) -> &'static str {
        match self.phase {
            Phase::AskName => "name: ",
            Phase::AskPassword if self.registering => "new password: ",
            Phase::AskPassword => "password: ",
            _ => "> ",
        }
    }

    /// The next instant `handle_timeout` has work at.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.quit_deadline.or(self.finishing);
        let mut at = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        match self.link {
            Link::Down(retry) => at(retry),
            Link::Connecting(deadline) => at(Some(deadline)),
            Link::Up if self.cfg.resilient => {
                let probe = self.last_heard + self.cfg.heartbeat;
                at(Some(if self.probed {
                    probe + self.cfg.heartbeat
                } else {
                    probe
                }));
            }
            Link::Up => {}
        }
        if self.can_send() && (!self.outbox.is_empty() || self.confirm_due()) {
            at(self.paused_until);
        }
        next
    }

    /// Does what is due at `now`: give up on a quit, reconnect, probe or
    /// drop a silent server, send paced lines.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.quit_deadline.is_some_and(|t| now >= t) {
            self.exit.get_or_insert(EXIT_OK);
            return;
        }
        if self.finishing.is_some_and(|t| now >= t) {
            let text = format!(
                "gave up: {} not confirmed by the server",
                lines(self.pending())
            );
            self.farewell = Some(text);
            self.exit = Some(EXIT_UNCONFIRMED);
            return;
        }
        match self.link {
            Link::Down(Some(retry)) if now >= retry => {
                self.link = Link::Connecting(now + CONNECT_TIMEOUT);
                self.effects.push_back(Effect::Connect);
            }
            Link::Connecting(deadline) if now >= deadline => {
                self.effects.push_back(Effect::Disconnect);
                self.lost(now, "the server did not answer");
            }
            Link::Up if self.cfg.resilient => {
                let silent = now.saturating_duration_since(self.last_heard);
                if silent >= 2 * self.cfg.heartbeat {
                    self.effects.push_back(Effect::Disconnect);
                    self.lost(now, "no answer from the server");
                    return;
                }
                if silent >= self.cfg.heartbeat && !self.probed {
                    self.probed = true;
                    self.send(Command::Ping(Some("k")), now);
                }
            }
            Link::Up | Link::Down(_) | Link::Connecting(_) => {}
        }
        self.pump(now);
    }

    /// Appends one control line; it is charged to the pace but never waits.
    fn send(&mut self, command: Command<'_>, now: Instant) {
        command.write_to(&mut self.to_server);
        if let Throttle::PauseUntil(t) = self.bucket.charge(now, &self.cfg.pace) {
            self.paused_until = Some(self.paused_until.map_or(t, |p| p.max(t)));
        }
    }

    fn show(&mut self, to: Target, kind: Kind, text: &str) {
        self.effects
            .push_back(Effect::Show(to, Line::notice(kind, text)));
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn room(&self, name: &str) -> Option<&Room> {
        self.rooms
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(name))
    }

    /// In the room, or about to be: the server reads a SAY after the JOIN before it.
    fn in_room(&self, name: &str) -> bool {
        self.room(name).is_some() || self.joins.iter().any(|j| j.eq_ignore_ascii_case(name))
    }

    fn room_mut(&mut self, name: &str) -> Option<&mut Room> {
        self.rooms
            .iter_mut()
            .find(|r| r.name.eq_ignore_ascii_case(name))
    }

    /// The connection is open (the first one, or a reconnect).
    pub fn handle_connected(&mut self, now: Instant) {
        self.link = Link::Up;
        self.last_heard = now;
        self.probed = false;
        self.bye = None;
        self.bucket = Bucket::new(now, &self.cfg.pace);
        self.paused_until = None;
        match (self.phase, self.token.clone()) {
            (Phase::AskName | Phase::AskPassword | Phase::Quitting, _) => {}
            (_, Some(token)) => self.resume(&token, true, now),
            (_, None) => self.login(now),
        }
    }

    /// Sends `RESUME`. With `replay`, it lists each room seen so far with
    /// the last id seen in it, and the server sends what the rooms missed
    /// in the same answer, each as a catch-up this session waits for.
    fn resume(&mut self, token: &str, replay: bool, now: Instant) {
        self.phase = Phase::Resuming;
        self.replayed.clear();
        if replay {
            for r in self.rooms.iter().filter(|r| r.last_id > 0) {
                self.replayed.push((r.name.clone(), r.last_id));
            }
        }
        let list: Vec<String> = self
            .replayed
            .iter()
            .map(|(room, last)| format!("{room}:{last}"))
            .collect();
        let name = self.name.clone();
        let replay = list.join(" ");
        self.send(
            Command::Resume {
                name: &name,
                token,
                replay: &replay,
            },
            now,
        );
        for (room, _) in self.replayed.clone() {
            self.history.push_back(HistoryRequest {
                room,
                fetch: Fetch::CatchUp,
                limit: view::MAX_HISTORY,
                got: 0,
                last: None,
            });
            self.catching_up += 1;
        }
        // RESUME's JOINED lines have no end marker; this PONG is it.
        let seq = self.next_seq();
        self.resume_ping = seq;
        self.send(Command::Ping(Some(&format!("r{seq}"))), now);
    }

    fn login(&mut self, now: Instant) {
        self.phase = Phase::LoggingIn;
        let name = self.name.clone();
        match self.password.clone() {
            Some(password) if self.registering => self.send(
                Command::Register {
                    name: &name,
                    password: &password,
                },
                now,
            ),
            Some(password) => self.send(
                Command::LoginWith {
                    name: &name,
                    password: &password,
                },
                now,
            ),
            None => self.send(Command::Login(&name), now),
        }
    }

    /// Asks the user for the password (a new one when registering).
    fn ask_password(&mut self, why: &str) {
        self.password = None;
        self.phase = Phase::AskPassword;
        self.show(Target::Lobby, Kind::Notice, why);
    }

    /// Piped input ended: what is queued still goes out, paced, and the
    /// session quits once the server has confirmed every line (`SENT`, or
    /// the `PONG` behind lobby and direct lines), or gives up after
    /// `cfg.wait` with a non-zero exit and a count.
    pub fn end_of_input(&mut self, now: Instant) {
        if self.pending() == 0 {
            return self.quit(now);
        }
        self.effects.push_back(Effect::StopInput);
        self.finishing = Some(now + self.cfg.wait);
    }

    /// Quits once input has ended and nothing is left unconfirmed.
    fn check_finished(&mut self, now: Instant) {
        if self.finishing.is_some() && self.pending() == 0 {
            self.finishing = None;
            self.quit(now);
        }
    }

    /// Sends `QUIT` and waits a little for the server's `BYE`.
    pub fn quit(&mut self, now: Instant) {
        if self.phase == Phase::Quitting || self.exit.is_some() {
            return;
        }
        self.phase = Phase::Quitting;
        self.effects.push_back(Effect::StopInput);
        if self.link == Link::Up {
            self.send(Command::Quit(None), now);
            self.quit_deadline = Some(now + QUIT_GRACE);
        } else {
            self.exit = Some(EXIT_OK);
        }
    }

    /// One line the user typed, while looking at `here`.
    pub fn handle_input(&mut self, line: &str, here: &Target, now: Instant) {
        match self.phase {
            Phase::AskName => {
                let (register, name) = match line.trim().strip_prefix("/register") {
                    Some(rest) => (true, rest.trim()),
                    None => (false, line.trim()),
                };
                match name_problem(name) {
                    None if register => {
                        self.name = name.to_string();
                        self.registering = true;
                        self.ask_password(
                            "choose a password for it: at least 8 characters, no spaces",
                        );
                    }
                    Some(problem) => self.show(here.clone(), Kind::Error, problem),
                    None => {
                        self.name = name.to_string();
                        self.phase = Phase::LoggingIn;
                        if self.link == Link::Up {
                            self.login(now);
                        }
                    }
                }
            }
            Phase::AskPassword => {
                let password = line.trim();
                if self.registering && !view::password_ok(password) {
                    let why = describe_error(ProtocolError::InvalidPassword);
                    return self.show(here.clone(), Kind::Error, why);
                }
                self.password = Some(password.to_string());
                self.phase = Phase::LoggingIn;
                if self.link == Link::Up {
                    self.login(now);
                }
            }
            Phase::Quitting => {}
            Phase::LoggingIn | Phase::Resuming if !self.logged_in_once => {
                self.show(here.clone(), Kind::Error, "still logging in")
            }
            Phase::LoggingIn | Phase::Resuming | Phase::Chatting => {
                self.on_action(parse_input(line), here, now)
            }
        }
    }

    /// Lines pasted at once: each is sent, paced, as if typed, with one
    /// confirming PING behind the lot rather than one per line.
    pub fn handle_paste(&mut self, lines: &[String], here: &Target, now: Instant) {
        self.batching = true;
        for line in lines {
            self.handle_input(line, here, now);
        }
        self.batching = false;
        self.pump(now);
    }

    fn on_action(&mut self, action: Action<'_>, here: &Target, now: Instant) {
        let online = self.phase == Phase::Chatting && self.link == Link::Up;
        match action {
            Action::Nothing => {}
            Action::Say(text) => self.queue(here.clone(), text, now),
            Action::Dm { to, text } => self.queue(Target::Dm(to.to_string()), text, now),
            Action::Help => {
                for line in view::HELP {
                    self.show(here.clone(), Kind::Notice, line);
                }
            }
            Action::Hint(hint) => self.show(here.clone(), Kind::Error, &hint),
            // A script's /quit waits for its lines, as its end does.
            Action::Quit if !self.cfg.interactive => self.end_of_input(now),
            Action::Quit => self.quit(now),
            // In a DM there is nothing to leave: the buffer just closes.
            Action::Part(None) | Action::Close if matches!(here, Target::Dm(_)) => {
                self.effects.push_back(Effect::Parted(here.clone()));
            }
            Action::Close => self.show(
                here.clone(),
                Kind::Error,
                "only a DM closes (in a room: /part)",
            ),
            Action::Reconnect => match self.link {
                Link::Down(Some(_)) => self.link = Link::Down(Some(now)),
                _ => self.show(here.clone(), Kind::Notice, "not waiting to reconnect"),
            },
            _ if !online => self.show(
                here.clone(),
                Kind::Error,
                "not connected: only messages are queued",
            ),
            Action::Create(room) => self.create(room, now),
            Action::Invite { room, name } => self.send(Command::Invite { room, name }, now),
            Action::Remove { room, name } => self.send(Command::Remove { room, name }, now),
            Action::Join(room) => {
                if let Some(r) = self.room(room) {
                    let room = Target::Room(r.name.clone());
                    self.effects.push_back(Effect::Joined { room, focus: true });
                } else {
                    self.join(room, now);
                }
            }
            Action::Part(room) => match room.or(match here {
                Target::Room(r) => Some(r.as_str()),
                _ => None,
            }) {
                Some(room) => {
                    let room = room.to_string();
                    self.send(Command::Part(&room), now);
                }
                None => self.show(here.clone(), Kind::Error, "usage: /part #room"),
            },
            Action::Rooms => {
                self.send(Command::Rooms, now);
                self.rooms_list.push_back(here.clone());
            }
            Action::Who => {
                let room = match here {
                    Target::Room(r) => Some(r.clone()),
                    _ => None,
                };
                self.who(room, Some(here.clone()), now);
            }
            Action::History(limit) => match here {
                Target::Room(room) => {
                    let room = room.clone();
                    if self.room(&room).is_some_and(|r| r.complete) {
                        self.history_start(here.clone());
                    }
                    self.older(&room, limit.unwrap_or(JOIN_HISTORY), now);
                }
                _ => self.show(
                    here.clone(),
                    Kind::Error,
                    "history is kept for rooms only: /history in a room's buffer",
                ),
            },
            Action::Ping => {
                let seq = self.next_seq();
                self.send(Command::Ping(Some(&format!("p{seq}"))), now);
                // Answered where it was asked.
                self.pings.push_back((seq, now, here.clone()));
            }
        }
    }

    fn who(&mut self, room: Option<String>, shown_in: Option<Target>, now: Instant) {
        let seq = self.next_seq();
        match &room {
            Some(room) => self.send(Command::WhoIn(room), now),
            // WHO has no end marker; a PING behind it marks where the list ends.
            None => {
                self.send(Command::Who, now);
                self.send(Command::Ping(Some(&format!("w{seq}"))), now);
            }
        }
        self.whos.push_back(WhoRequest {
            room,
            seq,
            shown_in,
            names: Vec::new(),
        });
    }

    fn join(&mut self, room: &str, now: Instant) {
        self.send(Command::Join(room), now);
        self.joins.push_back(room.to_string());
    }

    /// Makes `room` invite-only and joins it: `JOINED` answers as for a join.
    fn create(&mut self, room: &str, now: Instant) {
        self.send(Command::Join(&format!("{room} invite-only")), now);
        self.joins.push_back(room.to_string());
    }

    /// Asks for messages older than the oldest one seen in `room`.
    pub fn older(&mut self, room: &str, limit: u32, now: Instant) {
        let Some(oldest) = self.room(room).filter(|r| !r.complete).map(|r| r.oldest) else {
            return;
        };
        if self.history.iter().any(|h| h.fetch == Fetch::Older) {
            return;
        }
        let args = match oldest {
            Some(id) => format!("BEFORE {id} {limit}"),
            None => limit.to_string(),
        };
        self.request_history(room, &args, Fetch::Older, limit, now);
    }

    fn request_history(&mut self, room: &str, args: &str, fetch: Fetch, limit: u32, now: Instant) {
        let room = room.to_string();
        self.send(Command::History { room: &room, args }, now);
        self.history.push_back(HistoryRequest {
            room,
            fetch,
            limit,
            got: 0,
            last: None,
        });
    }

    /// Queues a message and shows it as pending.
    fn queue(&mut self, to: Target, text: &str, now: Instant) {
        if let Target::Room(room) = &to {
            if !self.in_room(room) {
                let problem = describe_error(ProtocolError::NotInRoom);
                return self.show(to.clone(), Kind::Error, problem);
            }
        }
        if self.cfg.resilient && self.outbox.len() >= MAX_QUEUED {
            let problem = format!("not sent: {MAX_QUEUED} lines are already waiting");
            return self.show(to, Kind::Error, &problem);
        }
        self.local_seq += 1;
        let mut line = Line::message(Kind::Own, &self.name, text);
        line.local = Some(self.local_seq);
        self.effects.push_back(Effect::Show(to.clone(), line));
        self.outbox.push_back(Out {
            local: self.local_seq,
            to,
            text: text.to_string(),
            tagged: false,
        });
        if !self.batching {
            self.pump(now);
        }
    }

    /// Sends queued messages as far as the connection, the catch-up and the pace allow.
    /// Logged in on an open connection, with nothing missed still to fetch.
    fn can_send(&self) -> bool {
        self.link == Link::Up && self.phase == Phase::Chatting && self.catching_up == 0
    }

    fn pump(&mut self, now: Instant) {
        if !self.can_send() {
            return;
        }
        loop {
            let confirm = self.confirm_due();
            if !confirm && self.outbox.is_empty() {
                break;
            }
            if self.paused_until.is_some_and(|t| now < t) {
                break;
            }
            self.paused_until = None;
            if confirm {
                let seq = self.confirm_seq;
                self.confirm_seq += 1;
                self.send(Command::Ping(Some(&format!("c{seq}"))), now);
            } else if let Some(out) = self.outbox.pop_front() {
                self.transmit(out, now);
            }
        }
    }

    /// A PING should confirm the lobby and DM lines sent since the last one:
    /// after the last queued line, or every few lines during a paste.
    fn confirm_due(&self) -> bool {
        let waiting = self
            .unconfirmed
            .iter()
            .filter(|(_, c)| *c == self.confirm_seq)
            .count();
        waiting > 0 && (self.outbox.is_empty() || waiting >= CONFIRM_EVERY)
    }

    fn transmit(&mut self, out: Out, now: Instant) {
        match &out.to {
            Target::Room(room) if self.in_room(room) => {
                let room = room.clone();
                self.say(&room, out, now);
            }
            Target::Room(room) => {
                let room = room.clone();
                self.fail(out.local, Target::Room(room), ProtocolError::NotInRoom);
            }
            Target::Lobby => {
                self.send(Command::Msg(&out.text), now);
                self.track(out);
            }
            Target::Dm(to) if self.stored(to) => {
                let room = format!("@{to}");
                self.say(&room, out, now);
            }
            Target::Dm(to) => {
                let to = to.clone();
                self.send(
                    Command::Dm {
                        to: &to,
                        text: &out.text,
                    },
                    now,
                );
                self.track(out);
            }
        }
    }

    /// Sends `out` as `SAY` to `room` (or a stored conversation, `@name`),
    /// to wait for its `SENT`. Its tag lets the server recognise a resend
    /// after a lost `SENT`: the line is said once, whatever happens.
    fn say(&mut self, room: &str, mut out: Out, now: Instant) {
        out.tagged = self.tags;
        let tag = format!("l{}", out.local);
        self.send(
            Command::Say {
                room,
                tag: out.tagged.then_some(tag.as_str()),
                text: &out.text,
            },
            now,
        );
        self.unsent.push_back(out);
    }

    fn track(&mut self, out: Out) {
        self.unconfirmed.push((out, self.confirm_seq));
    }

    fn deliver(&mut self, local: u64, state: Delivery, id: Option<MessageId>) {
        if self.cfg.resilient {
            self.effects
                .push_back(Effect::Delivery { local, state, id });
        }
    }

    fn fail(&mut self, local: u64, to: Target, e: ProtocolError) {
        self.deliver(local, Delivery::Failed, None);
        self.show(to, Kind::Error, describe_error(e));
    }

    /// One line from the server.
    pub fn handle_line(&mut self, line: &str, now: Instant) {
        self.on_line(line, now);
        self.check_finished(now);
    }

    fn on_line(&mut self, line: &str, now: Instant) {
        self.last_heard = now;
        self.probed = false;
        let Some(reply) = parse_reply(line) else {
            self.show(Target::Lobby, Kind::Notice, line);
            return;
        };
        match reply {
            Reply::Ping => self.send(Command::Pong, now),
            Reply::Pong(Some(token)) => self.on_pong(token, now),
            Reply::Pong(None) => {}
            Reply::Ok => self.on_ok(now),
            Reply::Err(e) => self.on_err(e, now),
            Reply::Bye(reason) => self.bye = Some(reason),
            Reply::Token(token) => self.token = Some(token.to_string()),
            Reply::Notice(text) => {
                self.show(Target::Lobby, Kind::Notice, &format!("notice: {text}"))
            }
            Reply::Unread { peer, count, after } => {
                let what = if count == 1 { "message" } else { "messages" };
                let text = format!("{count} unread {what} from {}", sanitize(peer));
                self.show(Target::Lobby, Kind::Notice, &text);
                // Fetched into the conversation now, and read once shown.
                let room = format!("@{peer}");
                let limit = view::MAX_HISTORY;
                self.request_history(
                    &room,
                    &format!("AFTER {after} {limit}"),
                    Fetch::Recent,
                    limit,
                    now,
                );
            }
            Reply::EndUnread => {}
            Reply::Invited { room, name } => {
                let text = format!("{} may join {} now", sanitize(name), sanitize(room));
                self.show(Target::Room(room.to_string()), Kind::Notice, &text);
            }
            Reply::Removed { room, name } => {
                let text = format!("{} is no longer in {}", sanitize(name), sanitize(room));
                self.show(Target::Room(room.to_string()), Kind::Notice, &text);
            }
            Reply::InvitedBy { room, owner } => {
                let room = sanitize(room);
                let text = format!("{} invited you to {room}: /join {room}", sanitize(owner));
                self.show(Target::Lobby, Kind::Notice, &text);
            }
            Reply::User(name) => match self.whos.front_mut() {
                Some(who) => who.names.push(sanitize(name).into_owned()),
                None => self.show(Target::Lobby, Kind::Notice, &format!("online: {name}")),
            },
            Reply::EndWho(room) => {
                if self.whos.front().is_some_and(|w| w.room.is_some()) {
                    self.end_who();
                } else {
                    self.show(Target::Room(room.into()), Kind::Notice, "end of list");
                }
            }
            Reply::Msg { from, text } => self.effects.push_back(Effect::Show(
                Target::Lobby,
                Line::message(Kind::Chat, from, text),
            )),
            Reply::Dm { from, text } => self.effects.push_back(Effect::Show(
                Target::Dm(sanitize(from).into_owned()),
                Line::message(Kind::Chat, from, text),
            )),
            Reply::Joined(name) => {
                self.online_add(name);
                self.show(Target::Lobby, Kind::Notice, &format!("{name} joined"));
            }
            Reply::Disconnected(name) => {
                self.online.retain(|n| !n.eq_ignore_ascii_case(name));
                let text = format!("{name} disconnected");
                self.show(Target::Lobby, Kind::Notice, &text);
            }
            Reply::JoinedRoom { room, members } => self.on_joined(room, members, now),
            Reply::PartedRoom(room) => {
                self.rooms.retain(|r| !r.name.eq_ignore_ascii_case(room));
                self.show(Target::Lobby, Kind::Notice, &format!("left {room}"));
                self.effects
                    .push_back(Effect::Parted(Target::Room(room.into())));
            }
            Reply::EnteredRoom { room, name } => {
                if let Some(r) = self.room_mut(room) {
                    if !r.members.iter().any(|m| m.eq_ignore_ascii_case(name)) {
                        r.members.push(name.to_string());
                    }
                }
                self.show(
                    Target::Room(room.into()),
                    Kind::Notice,
                    &format!("{name} joined"),
                );
            }
            Reply::LeftRoom { room, name } => {
                if let Some(r) = self.room_mut(room) {
                    r.members.retain(|m| !m.eq_ignore_ascii_case(name));
                }
                self.show(
                    Target::Room(room.into()),
                    Kind::Notice,
                    &format!("{name} left"),
                );
            }
            Reply::Said {
                room,
                id,
                from,
                text,
            } => {
                self.saw(room, id);
                let mut line = Line::message(Kind::Chat, from, text);
                line.id = Some(id);
                self.effects.push_back(Effect::Show(target_of(room), line));
                // Shown as it came: read.
                if room.starts_with('@') {
                    self.send(
                        Command::Read {
                            peer: room,
                            id: &id.to_string(),
                        },
                        now,
                    );
                }
            }
            Reply::Sent { room, id } => {
                self.saw(room, id);
                let mine = self.unsent.iter().position(|o| o.to == target_of(room));
                if let Some(out) = mine.and_then(|i| self.unsent.remove(i)) {
                    self.deliver(out.local, Delivery::Delivered, Some(id));
                }
            }
            Reply::Hist {
                room,
                id,
                ms,
                from,
                text,
            } => self.on_hist(room, id, ms, from, text),
            // This client resumes with the bare form, so a replay's cut
            // never reaches it; were it to, the next HISTORY pages on.
            Reply::EndHistory(room) | Reply::MoreHistory(room) => self.on_end_history(room, now),
            Reply::RoomInfo { room, members } => {
                let to = self.rooms_list.front().cloned().unwrap_or(Target::Lobby);
                self.show(to, Kind::Notice, &format!("{room} ({members})"));
            }
            Reply::EndRooms => {
                let to = self.rooms_list.pop_front().unwrap_or(Target::Lobby);
                self.show(to, Kind::Notice, "end of rooms");
            }
        }
    }

    fn online_add(&mut self, name: &str) {
        if !self.online.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            self.online.push(sanitize(name).into_owned());
        }
    }

    fn saw(&mut self, room: &str, id: MessageId) {
        if let Some(peer) = room.strip_prefix('@') {
            let seen = self.conversations.entry(peer.to_ascii_lowercase());
            let last = seen.or_default();
            *last = (*last).max(id);
        }
        if let Some(r) = self.room_mut(room) {
            r.last_id = r.last_id.max(id);
            r.oldest = Some(r.oldest.map_or(id, |o| o.min(id)));
        }
    }

    fn on_ok(&mut self, now: Instant) {
        match self.phase {
            Phase::LoggingIn => {
                self.phase = Phase::Chatting;
                // Registered now: a later login gives the password.
                self.registering = false;
                self.account = self.password.is_some();
                self.after_login(now, false);
            }
            // The rooms it holds follow; the PONG behind RESUME ends them.
            Phase::Resuming => self.resumed.clear(),
            _ => {}
        }
    }

    /// Logged in or resumed: get the roster, rooms and missed messages back.
    fn after_login(&mut self, now: Instant, resumed: bool) {
        let first = !self.logged_in_once;
        self.logged_in_once = true;
        self.attempts = 0;
        if first {
            self.effects.push_back(Effect::LoggedIn);
            let hint = if self.cfg.interactive {
                " (/help lists commands)"
            } else {
                ""
            };
            let text = format!("logged in as {}{hint}", self.name);
            self.show(Target::Lobby, Kind::Notice, &text);
        } else {
            let how = if resumed {
                "resumed the session"
            } else {
                "logged in again"
            };
            let text = format!("reconnected: {how} as {}", self.name);
            self.effects
                .push_back(Effect::ShowAll(Line::notice(Kind::Notice, &text)));
        }
        if self.cfg.resilient {
            if !resumed {
                self.send(Command::Token, now);
            }
            self.online.clear();
            self.who(None, None, now);
        }
        if first {
            if let Some(room) = self.cfg.room.clone() {
                self.join(&room, now);
            }
        }
        // Stored conversations with a line whose SENT was lost catch up, so
        // the line is looked for before it goes again.
        let mut peers: Vec<String> = self
            .unsure
            .iter()
            .filter_map(|o| match &o.to {
                Target::Dm(peer) => Some(peer.to_ascii_lowercase()),
                _ => None,
            })
            .collect();
        peers.sort();
        peers.dedup();
        for peer in peers {
            let after = self.conversations.get(&peer).copied().unwrap_or(0);
            self.catching_up += 1;
            self.catch_up_from(&format!("@{peer}"), after, now);
        }
        // Rooms held before the drop: the resumed ones catch up, the others are joined again.
        let rooms: Vec<String> = self.rooms.iter().map(|r| r.name.clone()).collect();
        for room in rooms {
            if self.resumed.iter().any(|r| r.eq_ignore_ascii_case(&room)) {
                self.catch_up(&room, now);
            } else {
                self.catching_up += 1;
                self.join(&room, now);
            }
        }
        self.pump(now);
    }

    fn catch_up(&mut self, room: &str, now: Instant) {
        let replayed = self
            .replayed
            .iter()
            .any(|(r, _)| r.eq_ignore_ascii_case(room));
        let Some(r) = self.room_mut(room) else { return };
        r.joined = true;
        let after = r.last_id;
        let target = Target::Room(r.name.clone());
        self.effects.push_back(Effect::Joined {
            room: target,
            focus: false,
        });
        // The RESUME brought what it missed already.
        if replayed {
            return;
        }
        self.catching_up += 1;
        self.catch_up_from(room, after, now);
    }

    fn catch_up_from(&mut self, room: &str, after: MessageId, now: Instant) {
        let limit = view::MAX_HISTORY;
        let args = if after == 0 {
            JOIN_HISTORY.to_string()
        } else {
            format!("AFTER {after} {limit}")
        };
        let limit = if after == 0 { JOIN_HISTORY } else { limit };
        self.request_history(room, &args, Fetch::CatchUp, limit, now);
    }

    fn on_joined(&mut self, room: &str, members: usize, now: Instant) {
        if self.phase == Phase::Resuming {
            self.resumed.push(room.to_string());
            if self.room(room).is_none() {
                self.rooms.push(Room::joined(room));
            }
            return;
        }
        if let Some(i) = self.joins.iter().position(|j| j.eq_ignore_ascii_case(room)) {
            self.joins.remove(i);
        }
        let target = Target::Room(room.to_string());
        let fresh = self.room(room).is_none();
        self.effects.push_back(Effect::Joined {
            room: target.clone(),
            focus: fresh,
        });
        self.show(
            target,
            Kind::Notice,
            &format!("joined {room} ({members} here)"),
        );
        let rejoined = match self.room_mut(room) {
            Some(r) => {
                // The server may spell it as first created after a restart.
                r.name = room.to_string();
                r.joined = true;
                Some(r.last_id)
            }
            None => {
                self.rooms.push(Room::joined(room));
                None
            }
        };
        match rejoined {
            // counted in catching_up when the JOIN was sent
            Some(after) => self.catch_up_from(room, after, now),
            None => {
                let args = JOIN_HISTORY.to_string();
                self.request_history(room, &args, Fetch::Recent, JOIN_HISTORY, now);
            }
        }
        if self.cfg.resilient {
            self.who(Some(room.to_string()), None, now);
        }
    }

    fn on_hist(&mut self, room: &str, id: MessageId, ms: u64, from: &str, text: &str) {
        let fetch = match self.history.front_mut() {
            Some(h) if h.room.eq_ignore_ascii_case(room) => {
                h.got += 1;
                h.last = Some(id);
                h.fetch
            }
            _ => Fetch::Recent,
        };
        // Piped, a room's recent history can hold this client's own lines,
        // printed when they were sent (the screen puts lines in id order
        // and drops repeats itself).
        let shown = !self.cfg.interactive
            && fetch == Fetch::Recent
            && from.eq_ignore_ascii_case(&self.name)
            && self.room(room).is_some_and(|r| id <= r.last_id);
        self.saw(room, id);
        if shown {
            return;
        }
        if fetch == Fetch::CatchUp && from.eq_ignore_ascii_case(&self.name) {
            let target = target_of(room);
            if let Some(i) = self
                .unsure
                .iter()
                .position(|o| o.to == target && o.text == text)
            {
                let out = self.unsure.remove(i);
                self.deliver(out.local, Delivery::Delivered, Some(id));
                return;
            }
        }
        let kind = if from.eq_ignore_ascii_case(&self.name) {
            Kind::Own
        } else {
            Kind::Chat
        };
        let mut line = Line::message(kind, from, text);
        line.id = Some(id);
        line.at = Some(ms);
        line.history = true;
        self.effects.push_back(Effect::Show(target_of(room), line));
    }

    fn on_end_history(&mut self, room: &str, now: Instant) {
        let Some(done) = self.history.pop_front() else {
            return;
        };
        // A stored conversation fetched is read up to its last line.
        if let (true, Some(last)) = (room.starts_with('@'), done.last) {
            let id = last.to_string();
            self.send(
                Command::Read {
                    peer: room,
                    id: &id,
                },
                now,
            );
        }
        let target = target_of(room);
        match done.fetch {
            Fetch::CatchUp if done.got == done.limit && done.limit == view::MAX_HISTORY => {
                let after = done.last.unwrap_or(0);
                self.catch_up_from(room, after, now);
            }
            Fetch::CatchUp => {
                // What is not in the history did not get through: send it again, first.
                let (again, keep): (Vec<Out>, Vec<Out>) =
                    self.unsure.drain(..).partition(|o| o.to == target);
                self.unsure = keep;
                for out in again.into_iter().rev() {
                    self.outbox.push_front(out);
                }
                self.caught_up(now);
            }
            Fetch::Older | Fetch::Recent if done.got < done.limit => {
                if let Some(r) = self.room_mut(room) {
                    r.complete = true;
                }
                if done.fetch == Fetch::Older {
                    self.history_start(target);
                }
            }
            Fetch::Older | Fetch::Recent => {}
        }
    }

    /// Marks the start of a room's history: above every message (as id 0
    /// it sorts before them all), once.
    fn history_start(&mut self, room: Target) {
        let mut line = Line::notice(Kind::Notice, "start of the room's history");
        line.id = Some(0);
        self.effects.push_back(Effect::Show(room, line));
    }

    fn caught_up(&mut self, now: Instant) {
        self.catching_up = self.catching_up.saturating_sub(1);
        self.pump(now);
    }

    fn on_err(&mut self, e: ProtocolError, now: Instant) {
        match (self.phase, e) {
            (Phase::Resuming, ProtocolError::BadToken) => {
                // No replay comes; the catch-ups it stood for are off.
                let pending = self.history.len();
                self.history.clear();
                self.catching_up = self.catching_up.saturating_sub(pending);
                match self.token.clone() {
                    // A server before the replay reads the rooms as part of
                    // the token: once more in the bare form.
                    Some(token) if !self.replayed.is_empty() => self.resume(&token, false, now),
                    _ => {
                        self.token = None;
                        self.login(now);
                    }
                }
            }
            (Phase::LoggingIn, ProtocolError::PasswordRequired | ProtocolError::BadPassword)
                if self.cfg.interactive =>
            {
                let why = match e {
                    ProtocolError::BadPassword => "wrong password: type it again",
                    _ => "that name is registered: type its password",
                };
                self.ask_password(why);
            }
            (
                Phase::LoggingIn,
                ProtocolError::UsernameTaken
                | ProtocolError::InvalidUsername
                | ProtocolError::PasswordRequired
                | ProtocolError::BadPassword
                | ProtocolError::InvalidPassword
                | ProtocolError::AccountRequired
                | ProtocolError::TooManyAttempts
                | ProtocolError::AuthBusy,
            ) => self.on_login_refused(e),
            (
                _,
                ProtocolError::AlreadyJoined
                | ProtocolError::TooManyRooms
                | ProtocolError::NotInvited
                | ProtocolError::RoomExists,
            ) => {
                let room = self.joins.pop_front();
                // A room held before a drop that cannot be joined again: stop waiting for it.
                if let Some(room) = &room {
                    if self.room(room).is_some_and(|r| !r.joined) {
                        self.rooms.retain(|r| !r.name.eq_ignore_ascii_case(room));
                        self.caught_up(now);
                    }
                }
                let to = room.map_or(Target::Lobby, Target::Room);
                self.show(to, Kind::Error, describe_error(e));
            }
            // The server reads nothing else during a HISTORY, so this is its answer.
            (_, ProtocolError::StorageUnavailable) if !self.history.is_empty() => {
                if let Some(h) = self.history.pop_front() {
                    let to = Target::Room(h.room);
                    self.show(to, Kind::Error, "the server could not read the history");
                    if h.fetch == Fetch::CatchUp {
                        self.caught_up(now);
                    }
                }
            }
            // A room the replay could not answer (the session no longer
            // held it): it is joined again once resumed.
            (Phase::Resuming, _) if !self.history.is_empty() => {
                if let Some(h) = self.history.pop_front() {
                    self.replayed
                        .retain(|(r, _)| !r.eq_ignore_ascii_case(&h.room));
                    self.caught_up(now);
                }
            }
            // A server before tags reads `#room/tag` as a room name: the
            // line goes again, untagged, and so do all after it.
            (_, ProtocolError::InvalidRoom) if self.unsent.front().is_some_and(|o| o.tagged) => {
                self.tags = false;
                if let Some(out) = self.unsent.pop_front() {
                    self.outbox.push_front(out);
                }
                self.pump(now);
            }
            (_, ProtocolError::StorageUnavailable | ProtocolError::NotInRoom)
                if !self.unsent.is_empty() =>
            {
                if let Some(out) = self.unsent.pop_front() {
                    self.fail(out.local, out.to, e);
                }
            }
            // A stored line to someone without an account: v1 DMs to them
            // from now on, this line first.
            (_, ProtocolError::NoSuchUser)
                if self
                    .unsent
                    .front()
                    .is_some_and(|o| matches!(o.to, Target::Dm(_))) =>
            {
                if let Some(out) = self.unsent.pop_front() {
                    if let Target::Dm(to) = &out.to {
                        self.v1_peers.push(to.to_ascii_lowercase());
                    }
                    self.outbox.push_front(out);
                }
                self.pump(now);
            }
            (_, ProtocolError::NoSuchUser) => {
                // A DM to nobody: the oldest unconfirmed DM is the one refused.
                match self
                    .unconfirmed
                    .iter()
                    .position(|(o, _)| matches!(o.to, Target::Dm(_)))
                {
                    Some(i) => {
                        let (out, _) = self.unconfirmed.remove(i);
                        self.fail(out.local, out.to, e);
                    }
                    None => self.show(Target::Lobby, Kind::Error, describe_error(e)),
                }
            }
            _ => self.show(Target::Lobby, Kind::Error, describe_error(e)),
        }
    }

    /// True if lines to `peer` go to a stored conversation.
    fn stored(&self, peer: &str) -> bool {
        self.account && !self.v1_peers.contains(&peer.to_ascii_lowercase())
    }

    fn on_login_refused(&mut self, e: ProtocolError) {
        let text = format!("{}: {}", describe_error(e), self.name);
        self.show(Target::Lobby, Kind::Error, &text);
        if self.cfg.interactive {
            self.password = None;
            self.registering = false;
            self.phase = Phase::AskName;
        } else {
            self.farewell = Some(text);
            self.exit = Some(EXIT_CLOSED);
        }
    }

    fn end_who(&mut self) {
        let Some(who) = self.whos.pop_front() else {
            return;
        };
        match &who.room {
            Some(room) => {
                if let Some(r) = self.room_mut(room) {
                    r.members = who.names.clone();
                }
            }
            None => {
                for name in &who.names {
                    self.online_add(name);
                }
            }
        }
        if let Some(to) = who.shown_in {
            let place = who.room.as_deref().unwrap_or("online");
            let text = format!("{place} ({}): {}", who.names.len(), who.names.join(", "));
            self.show(to, Kind::Notice, &text);
        }
    }

    fn on_pong(&mut self, token: &str, now: Instant) {
        let (kind, n) = token.split_at(token.len().min(1));
        let Ok(n) = n.parse::<u64>() else { return };
        match kind {
            "w" if self
                .whos
                .front()
                .is_some_and(|w| w.room.is_none() && w.seq == n) =>
            {
                self.end_who()
            }
            "p" => {
                while let Some((seq, sent, asked_in)) = self.pings.pop_front() {
                    if seq == n {
                        let ms = now.saturating_duration_since(sent).as_secs_f64() * 1000.0;
                        let text = format!("pong from server in {ms:.2} ms");
                        self.show(asked_in, Kind::Notice, &text);
                        break;
                    }
                }
            }
            "c" => {
                let (done, left): (Vec<_>, Vec<_>) =
                    self.unconfirmed.drain(..).partition(|(_, c)| *c <= n);
                self.unconfirmed = left;
                for (out, _) in done {
                    self.deliver(out.local, Delivery::Delivered, None);
                }
            }
            "r" if self.phase == Phase::Resuming && n == self.resume_ping => {
                self.phase = Phase::Chatting;
                self.after_login(now, true);
                self.resumed.clear();
            }
            _ => {}
        }
    }

    /// The connection ended (read end, a failed write, or a failed connect).
    pub fn handle_closed(&mut self, now: Instant) {
        if self.exit.is_some() || matches!(self.link, Link::Down(_)) {
            return;
        }
        if self.phase == Phase::Quitting {
            self.exit = Some(EXIT_OK);
            return;
        }
        let why = describe_bye(self.bye);
        self.lost(now, why);
    }

    /// Forgets the connection; a resilient session schedules the next one.
    fn lost(&mut self, now: Instant, why: &str) {
        self.to_server.clear();
        self.whos.clear();
        self.rooms_list.clear();
        self.pings.clear();
        self.joins.clear();
        self.history.clear();
        self.catching_up = 0;
        for room in &mut self.rooms {
            room.joined = false;
        }
        let stop = !self.cfg.resilient
            || matches!(self.bye, Some(ByeReason::Replaced | ByeReason::Kicked))
            || self.phase == Phase::Quitting;
        if stop {
            self.link = Link::Down(None);
            let unconfirmed = self.pending();
            let text = match unconfirmed {
                0 => format!("disconnected: {why}"),
                n => format!(
                    "disconnected: {why}; {} not confirmed by the server",
                    lines(n)
                ),
            };
            self.show(Target::Lobby, Kind::Notice, &text);
            self.farewell = Some(text);
            self.exit = Some(if self.phase == Phase::Quitting {
                EXIT_OK
            } else {
                EXIT_CLOSED
            });
            return;
        }
        // Lines whose SENT was lost are looked for in the history after
        // the next login, and only those not found go again: a tag is not
        // enough, as a fresh login (or a cluster) does not know it.
        self.unsure.extend(self.unsent.drain(..));
        for (out, _) in std::mem::take(&mut self.unconfirmed) {
            self.deliver(out.local, Delivery::Unconfirmed, None);
        }
        // Only the first failure is news; the status line counts down the retries.
        let first = self.attempts == 0;
        let delay = self.backoff();
        self.link = Link::Down(Some(now + delay));
        if first {
            let text = format!("disconnected: {why}; reconnecting by itself");
            self.effects
                .push_back(Effect::ShowAll(Line::notice(Kind::Notice, &text)));
        }
    }

    /// Exponential backoff with jitter: each delay is drawn from the upper
    /// half of the doubled range, so clients dropped together spread out.
    fn backoff(&mut self) -> Duration {
        let ceiling = RETRY_FIRST
            .saturating_mul(1 << self.attempts.min(10))
            .min(RETRY_CAP);
        self.attempts += 1;
        // xorshift64: jitter needs spread, not secrecy.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = ceiling / 2;
        half + half.mul_f64((self.rng % 1000) as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests;

//! The chat state machine: who is logged in under which name, and who
//! receives what. No sockets, no clocks and no syscalls: it is handed lines
//! and the instant they arrived, and its only effects are lines queued into
//! an [`Outbox`], which the caller flushes after the call returns.
//!
//! [`users`] keeps who is logged in, [`rooms`] who is in which room,
//! [`history`] what rooms said recently and [`resume`] the sessions that
//! may be taken back; [`journal`] is the store's side of the chat (ids,
//! messages in flight, reads awaited, the clock); this module routes each
//! command.
//!
//! The message store is outside: a room message is delivered to the room
//! at once and handed to the store as a [`Request`] (the caller takes them
//! with [`Chat::take_requests`]); its `SENT` goes to the sender when the
//! store reports the commit through [`Chat::on_store`]. A `HISTORY` the
//! in-memory ring cannot answer, and a `JOIN` of a room nobody is in, go to
//! the store the same way, and the asking connection reads nothing more
//! until the answer is in ([`Step::Wait`]), so its replies stay in order.

pub mod accounts;
pub mod cluster;
mod direct;
pub mod event;
pub mod history;
pub mod journal;
pub mod name;
mod passwords;
mod private;
mod records;
pub mod resume;
pub mod rooms;
pub mod tally;
pub mod users;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::defaults;
use crate::protocol::reply::MessageId;
use crate::protocol::text::{valid_name, valid_room, valid_tag};
use crate::protocol::{parse, Command, HistoryQuery, ProtocolError, Reply};
use accounts::{Accounts, Policy};
use cluster::{Cluster, Effect, OwnKind};
use event::Event;
use history::SavedSession;
use history::{Found, History, Message, Outcome, Stored};
use journal::{Awaited, Journal};
use name::Folded;
use private::Private;
use resume::{CountingTokens, EndedSessions, HeldSessions, Tags, Token, TokenSource};
use rooms::{RoomId, Rooms};
use tally::{Attempt, ChatTally};
use users::Users;

/// Identifies a connection; the server uses its slab key.
pub type ConnId = usize;

/// Where the chat's effects go. The server queues the bytes on each
/// connection and enforces its limits once the chat call has returned;
/// tests record them. Nothing behind it may call back into the chat.
pub trait Outbox {
    /// Queues one or more complete lines for `to`.
    fn send(&mut self, to: ConnId, bytes: &[u8]);

    /// The hot path: queues the same lines for everyone on `roster` but
    /// `except`. An outbox may keep one copy for all of them.
    fn send_to_all(&mut self, roster: &[ConnId], except: Option<ConnId>, bytes: &[u8]) {
        for &to in roster {
            if Some(to) != except {
                self.send(to, bytes);
            }
        }
    }
}

/// What the caller must do after a line was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing beyond the replies already queued.
    Continue,
    /// The connection logged in (the login deadline no longer applies).
    LoggedIn,
    /// The client sent `QUIT`: say `BYE` and close the connection.
    Quit,
    /// Read no more lines from this connection until [`Chat::on_store`]
    /// names it: its `HISTORY` or `JOIN` waits for the store.
    Wait,
    /// The connection took over the session of the given one with
    /// `RESUME` (it is logged in now): close that one with `BYE replaced`.
    Replaced(ConnId),
    /// The connection resumed (replacing `ghost`, if there was one), and
    /// the replay it asked for waits for the store: read no more lines
    /// until [`Chat::on_store`] names it.
    Replay { ghost: Option<ConnId> },
}

/// The chat's own limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Rooms one user may be in at once.
    pub max_rooms: usize,
    /// Joins and departures are announced only while the lobby or room
    /// holds at most this many users, the one coming or going included;
    /// 0 announces always.
    pub presence_limit: usize,
    /// How long an ended session with a token can be resumed.
    pub resume_window: Duration,
    /// Most ended sessions kept for resuming at once.
    pub max_ended: usize,
    /// Bytes of recent room messages kept in memory to answer `HISTORY`.
    pub history_memory: usize,
    /// Whether names without an account may log in.
    pub accounts: Policy,
    /// Most registered names.
    pub max_accounts: usize,
    /// Names one address may register an hour (0: any number).
    pub registrations_per_hour: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_rooms: defaults::MAX_ROOMS,
            presence_limit: defaults::PRESENCE_LIMIT,
            resume_window: defaults::RESUME_WINDOW,
            max_ended: defaults::MAX_CLIENTS,
            history_memory: defaults::HISTORY_MEMORY,
            accounts: Policy::Optional,
            max_accounts: defaults::MAX_ACCOUNTS,
            registrations_per_hour: defaults::REGISTRATIONS_PER_HOUR,
        }
    }
}

/// Turns the loop's instants into Unix milliseconds, from one reading of
/// the system clock, so stored times never go backwards within a run.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    at: Instant,
    unix_ms: u64,
}

impl WallClock {
    /// A clock on which `at` is `unix_ms`.
    pub fn new(at: Instant, unix_ms: u64) -> WallClock {
        WallClock { at, unix_ms }
    }

    /// Reads the system clock now.
    pub fn system() -> WallClock {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        WallClock::new(Instant::now(), unix_ms)
    }

    /// `now` in milliseconds since the Unix epoch.
    pub fn ms(&self, now: Instant) -> u64 {
        self.unix_ms + now.saturating_duration_since(self.at).as_millis() as u64
    }
}

impl Limits {
    /// True when a join or departure among `count` users is announced.
    fn announces(&self, count: usize) -> bool {
        self.presence_limit == 0 || count <= self.presence_limit
    }
}

/// The users, the rooms, and the router of every command and departure.
#[derive(Debug)]
pub struct Chat {
    users: Users,
    rooms: Rooms,
    limits: Limits,
    /// Ids, messages on their way to the store, reads awaited, the clock.
    journal: Journal,
    history: History,
    ended: EndedSessions,
    /// Where resume tokens come from.
    tokens: Box<dyn TokenSource>,
    /// A line is formatted here once, then copied to each recipient.
    scratch: Vec<u8>,
    /// The sender's name, copied here so an event can name it while the
    /// registry it came from changes.
    speaker: String,
    /// Sessions a restart restored, held for `RESUME`.
    held: HeldSessions,
    /// Rooms a `RESUME` asked to replay and not yet answered (`room:id`
    /// as sent), per connection.
    replays: HashMap<ConnId, VecDeque<Box<str>>>,
    /// This node's part in a cluster, if it is in one.
    cluster: Option<Cluster>,
    /// Registered names, and password work under way.
    accounts: Accounts,
    /// Invite-only rooms and their members.
    private: Private,
    /// Connections whose user a password login took over, to be closed.
    replaced: Vec<ConnId>,
    tally: ChatTally,
}

/// Most missed messages a `RESUME` replays per room.
pub const REPLAY_LIMIT: usize = 500;

/// The home of users held for `RESUME` after a restart: like users of
/// another node, they are known by name only (no connection).
const HELD: &str = "held";

impl Default for Chat {
    fn default() -> Chat {
        Chat::new(Limits::default())
    }
}

impl Chat {
    /// An empty chat whose store holds nothing and commits nothing until
    /// told, with predictable tokens (for tests of the chat alone).
    pub fn new(limits: Limits) -> Self {
        let tokens = Box::new(CountingTokens::default());
        Chat::start(limits, Stored::unlimited(), WallClock::system(), tokens)
    }

    /// A chat that goes on from what the store holds, reading time from
    /// `clock` and resume tokens from `tokens`.
    pub fn start(
        limits: Limits,
        mut stored: Stored,
        clock: WallClock,
        tokens: Box<dyn TokenSource>,
    ) -> Self {
        let history = History::new(limits.history_memory);
        let saved = std::mem::take(&mut stored.sessions);
        let accounts = Accounts::new(
            limits.accounts,
            std::mem::take(&mut stored.accounts),
            limits.registrations_per_hour,
        );
        let private = Private::new(std::mem::take(&mut stored.members));
        let mut chat = Chat {
            users: Users::default(),
            rooms: Rooms::default(),
            limits,
            journal: Journal::new(stored, clock),
            history,
            ended: EndedSessions::new(limits.resume_window, limits.max_ended),
            held: HeldSessions::default(),
            replays: HashMap::new(),
            tokens,
            scratch: Vec::new(),
            speaker: String::new(),
            cluster: None,
            accounts,
            private,
            replaced: Vec::new(),
            tally: ChatTally::default(),
        };
        chat.restore(saved);
        chat
    }

    /// Holds the sessions the store kept, as ghosts whose connections are
    /// gone: each name taken, each room seat kept, until `RESUME` takes
    /// the session back or its resume window (counted from when it ended,
    /// or from now for one that was live at the stop) passes.
    fn restore(&mut self, saved: Vec<SavedSession>) {
        let now = self.journal.now();
        let now_ms = self.journal.stamp();
        let window = self.limits.resume_window;
        let mut held = Vec::new();
        for session in saved {
            let left = match session.ended_ms {
                None => window,
                Some(ms) => {
                    let since = Duration::from_millis(now_ms.saturating_sub(ms));
                    window.saturating_sub(since)
                }
            };
            if left.is_zero() || !self.users.insert_remote(&session.name, HELD) {
                continue;
            }
            for (spelling, last) in &session.rooms {
                let r = match self.rooms.find(spelling) {
                    Some(r) => r,
                    None => self.open_room(spelling, *last),
                };
                self.rooms.join_remote(&session.name, r);
            }
            held.push((session.name, session.hash, now + left, session.tags));
        }
        self.held = HeldSessions::new(held);
    }

    /// What the chat asked of the store, the cluster and the password
    /// hasher since the last call, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        let mut effects: Vec<Effect> = self.journal.take_requests().map(Effect::Store).collect();
        if let Some(cluster) = self.cluster.as_mut() {
            effects.extend(cluster.take_requests().map(Effect::Bus));
        }
        effects.extend(self.accounts.take_jobs().into_iter().map(Effect::Hash));
        effects.extend(self.replaced.drain(..).map(Effect::Replaced));
        effects
    }

    /// Messages handed to the store and not yet committed.
    pub fn in_flight(&self) -> usize {
        self.journal.in_flight()
    }

    /// Ended (or, after a restart, held) sessions that can still be resumed.
    pub fn resumable(&self) -> usize {
        self.ended.len() + self.held.len()
    }

    /// Advances the chat's clock to `now` and lets sessions whose resume
    /// window has passed go: a held one departs as a user whose
    /// connection dropped, with the ordinary lines.
    pub fn tick(&mut self, now: Instant, out: &mut impl Outbox) {
        self.journal.advance(now);
        self.ended.expire(now);
        for name in self.held.expire(now) {
            self.apply(Event::Departed { name: &name }, out);
            self.forget_session(&name);
        }
    }

    /// When [`Chat::tick`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.ended.next_deadline(), self.held.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Asks the store to drop what it keeps of `name`'s session (a single
    /// server's; a cluster keeps none).
    fn forget_session(&mut self, name: &str) {
        if self.cluster.is_none() {
            self.journal.forget_session(name);
        }
    }

    /// Asks the store to keep `id`'s session as it is now (its token and
    /// rooms), if it has a token: on a single server, sessions outlive
    /// the process. `ended` marks it ended now.
    fn save_session(&mut self, id: ConnId, ended: bool) {
        if self.cluster.is_some() {
            return;
        }
        let (Some(name), Some(token)) = (self.users.name(id), self.users.token(id)) else {
            return;
        };
        let rooms = self.rooms.names_of(id);
        let tags = self.users.tags(id).map(Tags::encode).unwrap_or_default();
        self.journal
            .save_session(name, token.hash(), (&rooms, &tags), ended);
    }

    /// Number of logged-in users.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Number of rooms with members.
    pub fn rooms(&self) -> usize {
        self.rooms.len()
    }

    /// Bytes of recent room history held in memory.
    pub fn history_bytes(&self) -> usize {
        self.history.bytes()
    }

    /// What the chat has counted since it started.
    pub fn tally(&self) -> &ChatTally {
        &self.tally
    }

    /// Why the store is not healthy at `now`, if it is not: its last
    /// commit failed, or a message has waited for one longer than `patience`.
    pub fn store_trouble(&self, now: Instant, patience: Duration) -> Option<&'static str> {
        if self.tally.store_failing {
            return Some("storage is failing");
        }
        self.journal
            .oldest_in_flight()
            .filter(|&since| now.saturating_duration_since(since) > patience)
            .map(|_| "storage is stalled")
    }

    /// `id`'s wait for the cluster (or the store) is over: a login or
    /// resume it waited for is counted as it turned out.
    pub fn concluded(&mut self, id: ConnId) {
        let ok = self.users.name(id).is_some();
        self.tally.concluded(id, ok);
    }

    /// The name `id` logged in with, if it has.
    pub fn name(&self, id: ConnId) -> Option<&str> {
        self.users.name(id)
    }

    /// Handles one framed line from `id`, received at `now`.
    pub fn on_line(
        &mut self,
        id: ConnId,
        line: &[u8],
        now: Instant,
        out: &mut impl Outbox,
    ) -> Step {
        self.journal.advance(now);
        match parse(line) {
            Ok(None) => Step::Continue,
            Ok(Some(command)) => self.on_command(id, command, now, out),
            Err(e) => {
                self.tally.not_a_command();
                self.reply(id, Reply::Err(e), out);
                Step::Continue
            }
        }
    }

    /// Tells `id` its input could not be read as a line: longer than the
    /// limit, or not text at all (a WebSocket binary message).
    pub fn on_rejected(&mut self, id: ConnId, error: ProtocolError, out: &mut impl Outbox) {
        self.tally.not_a_command();
        self.reply(id, Reply::Err(error), out);
    }

    /// Handles one parsed command from `id`. `now` is when it arrived: the
    /// time a stored message will carry.
    pub fn on_command(
        &mut self,
        id: ConnId,
        command: Command<'_>,
        now: Instant,
        out: &mut impl Outbox,
    ) -> Step {
        self.journal.advance(now);
        self.tally.line(&command);
        let attempt = match command {
            Command::Login(_) | Command::LoginWith { .. } | Command::Register { .. } => {
                Some(Attempt::Login)
            }
            Command::Resume { .. } => Some(Attempt::Resume),
            _ => None,
        };
        let result = match command {
            Command::Ping(token) => {
                self.reply(id, Reply::Pong(token), out);
                Ok(Step::Continue)
            }
            Command::Pong => Ok(Step::Continue),
            Command::Quit(_) => Ok(Step::Quit),
            Command::Login(name) => self.login(id, name, out),
            Command::LoginWith { name, password } => self.login_with(id, name, password, now),
            Command::Register { name, password } => self.register(id, name, password, now),
            Command::Password { old, new } => self.change_password(id, old, new, now),
            Command::Read { peer, id: upto } => self.mark_read(id, peer, upto),
            Command::Msg(text) => self.msg(id, text, out),
            Command::Dm { to, text } => self.dm(id, to, text, out),
            Command::Who => self.who(id, out),
            Command::Join(room) => self.join_with(id, room, out),
            Command::Invite { room, name } => self.invite(id, room, name, out),
            Command::Remove { room, name } => self.remove_member(id, room, name, out),
            Command::Part(room) => self.part(id, room, out),
            Command::Say { room, tag, text } if room.starts_with('@') => {
                self.say_direct(id, (room, tag), text, out)
            }
            Command::Say { room, tag, text } => self.say(id, (room, tag), text, out),
            Command::Rooms => self.list_rooms(id, out),
            Command::WhoIn(room) => self.who_in(id, room, out),
            Command::History { room, args } if room.starts_with('@') => {
                self.history_direct(id, room, args)
            }
            Command::History { room, args } => self.history(id, room, args, out),
            Command::Token => self.token(id, out),
            Command::Resume {
                name,
                token,
                replay,
            } => self.resume_and_replay(id, (name, token), replay, out),
        };
        if let Some(attempt) = attempt {
            match result {
                Ok(Step::Wait) => self.tally.wait(id, attempt),
                _ => self.tally.attempted(attempt, self.users.name(id).is_some()),
            }
        }
        result.unwrap_or_else(|e| {
            self.reply(id, Reply::Err(e), out);
            Step::Continue
        })
    }

    fn login(
        &mut self,
        id: ConnId,
        name: &str,
        out: &mut impl Outbox,
    ) -> Result<Step, ProtocolError> {
        if self.users.name(id).is_some() {
            return Err(ProtocolError::AlreadyLoggedIn);
        }
        if !valid_name(name) {
            return Err(ProtocolError::InvalidUsername);
        }
        if self.users.is_taken(name) {
            return Err(ProtocolError::UsernameTaken);
        }
        if let Some(refusal) = self.guest_refused(name) {
            return Err(refusal);
        }
        // In a cluster the registry says whether the name is free.
        if self.cluster.is_some() {
            self.claim(id, name, None);
            return Ok(Step::Wait);
        }
        self.welcome(id, name, out);
        Ok(Step::LoggedIn)
    }

    /// `id`'s name, copied where an event can borrow it while `apply`
    /// changes the registry; `None` if it is not logged in.
    fn speaker(&mut self, id: ConnId) -> Option<String> {
        let name = self.users.name(id)?;
        let mut speaker = std::mem::take(&mut self.speaker);
        speaker.clear();
        speaker.push_str(name);
        Some(speaker)
    }

    fn msg(
        &mut self,
        id: ConnId,
        text: &str,
        out: &mut impl Outbox,
    ) -> Result<Step, ProtocolError> {
        self.users.name(id).ok_or(ProtocolError::NotLoggedIn)?;
        if text.is_empty() {
            return Err(ProtocolError::EmptyMessage);
        }
        let from = self.speaker(id).unwrap_or_default();
        let msg = Event::Msg { from: &from, text };
        let serial = self.users.serial(id).unwrap_or_default();
        if !self.publish(&msg, OwnKind::Msg(id, serial)) {
            self.apply(msg, out);
        }
        self.speaker = from;
        Ok(Step::Continue)
    }

    fn dm(
        &mut self,
        id: ConnId,
        to: &str,
        text: &str,
        out: &mut impl Outbox,
    ) -> Result<Step, ProtocolError> {
        let from = self.speaker(id).ok_or(ProtocolError::NotLoggedIn)?;
        let target = self.users.find(to);
        if target.is_none() && !self.users.is_taken(to) {
            return Err(ProtocolError::NoSuchUser);
        }
        if text.is_empty() {
            return Err(ProtocolError::EmptyMessage);
        }
        match target {
            Some(target) => {
                self.scratch.clear();
                Reply::Dm { from: &from, text }.write_to(&mut self.scratch);
                out.send(target, &self.scratch);
            }
            // On another node.
            None => {
                self.dm_remote(to, &from, text);
            }
        }
        self.speaker = from;
        Ok(Step::Continue)
    }

    fn who(&mut self, id: ConnId, out: &mut impl Outbox) -> Result<Step, ProtocolError> {
        self.users.name(id).ok_or(ProtocolError::NotLoggedIn)?;
        let names = self.users.sorted_names();
        let mut lines = Vec::with_capacity(names.len() * 16);
        for name in names {
            Reply::User(name).write_to(&mut lines);
        }
        out.send(id, &lines);
        Ok(Step::Continue)
    }

    /// The room a logged-in `id` names, checked in the order the errors
    /// are documented: logged in, a valid name, then the room itself.
    fn room_arg<'a>(&self, id: ConnId, room: &'a str) -> Result<&'a str, ProtocolError> {
        self.users.name(id).ok_or(ProtocolError::NotLoggedIn)?;
        if !valid_room(room) {
            return Err(ProtocolError::InvalidRoom);
        }
        Ok(room)
    }

    /// The room `id` is in and names.
    fn my_room(&self, id: ConnId, room: &str) -> Result<RoomId, ProtocolError> {
        let room = self.room_arg(id, room)?;
        self.rooms
            .find(room)
            .filter(|&r| self.rooms.is_member(id, r))
            .ok_or(ProtocolError::NotInRoom)
    }

    fn join(
        &mut self,
        id: ConnId,
        room: &str,
        out: &mut impl Outbox,
    ) -> Result<Step, ProtocolError> {
        let room = self.room_arg(id, room)?;
        if !self.admitted(id, room) {
            return Err(ProtocolError::NotInvited);
        }
        if self
            .rooms
            .find(room)
            .is_some_and(|r| self.rooms.is_member(id, r))
        {
            return Err(ProtocolError::AlreadyJoined);
        }
        if self.rooms.count_of(id) >= self.limits.max_rooms {
            return Err(ProtocolError::TooManyRooms);
        }
        if let Some(r) = self.rooms.find(room) {
            return Ok(self.enter(id, r, out));
        }
        // Nobody is in it: the store says how it was first spelled and
        // what of its history it holds, and the join completes then.
        let serial = self.users.serial(id).unwrap_or_default();
        self.journal.lookup(id, serial, room);
        Ok(Step::Wait)
    }

    /// Who waited for `ticket`'s answer, if it asked for `what` and is
    /// still the same user.
    fn answered(&mut self, ticket: u64, what: Awaited) -> Option<(ConnId, Box<str>)> {
        let pending = self.journal.answered(ticket, what)?;
        (self.users.serial(pending.conn) == Some(pending.serial))
            .then_some((pending.conn, pending.room))
    }

    /// Brings room `name` into memory, with a history log holding nothing
    /// yet: every committed message up to `floor` is the store's alone.
    fn open_room(&mut self, name: &str, floor: MessageId) -> RoomId {
        let log = self.history.open(floor);
        self.rooms.create(name, log)
    }

    /// Takes `id` out of room `r`; the last one out takes the room (and
    /// its history log) out of memory.
    fn vacate(&mut self, id: ConnId, r: RoomId) {
        if let Some(log) = self.rooms.part(id, r) {
            self.history.close(log);
        }
    }

    /// Puts `id` in room `r`, which is in memory: the members are told
    /// while the presence limit allows, and `id` gets `JOINED`. In a
    /// cluster that happens when the join comes back through the log, and
    /// `id` waits for it.
    fn enter(&mut self, id: ConnId, r: RoomId, out: &mut impl Outbox) -> Step {
        let room: Box<str> = self.rooms.name(r).into();
        self.enter_named(id, &room, out)
    }

    /// Puts `id` in the room spelled `room`, which is in memory on a
    /// single node; in a cluster it comes into memory with the join.
    fn enter_named(&mut self, id: ConnId, room: &str, out: &mut impl Outbox) -> Step {
        let name = self.speaker(id).unwrap_or_default();
        let step = self.change_seat(id, Event::Entered { room, name: &name }, out);
        self.speaker = name;
        step
    }

    /// A join or part of `id`'s: applied at once on a single node; in a
    /// cluster published, and `id` waits for it to come back through the
    /// log.
    fn change_seat(&mut self, id: ConnId, event: Event<'_>, out: &mut impl Outbox) -> Step {
        let serial = self.users.serial(id).unwrap_or_default();
        if self.publish(&event, OwnKind::Seat(id, serial)) {
            return Step::Wait;
        }
        self.apply(event, out);
        self.save_session(id, false);
        Step::Continue
    }

    fn part(
        &mut self,
        id: ConnId,
        room: &str,
        out: &mut impl Outbox,
    ) -> Result<Step, ProtocolError> {
        let r = self.my_room(id, room)?;
        let room: Box<str> = self.rooms.name(r).into();
        let name = self.speaker(id).unwrap_or_default();
        let left = Event::Left {
            room: &room,
            name: &name,
        };
        let step = self.change_seat(id, left, out);
        self.speaker = name;
        Ok(step)
    }

    fn say(
        &mut self,
        id: ConnId,
        (room, tag): (&str, Option<&str>),
        text: &str,
        out: &mut impl Outbox,
    ) -> Result<Step, ProtocolError> {
        let r = self.my_room(id, room)?;
        if text.is_empty() {
            return Err(ProtocolError::EmptyMessage);
        }
        if tag.is_some_and(|t| !valid_tag(t)) {
            return Err(ProtocolError::BadTag);
        }
        let serial = self.users.serial(id).unwrap_or_default();
        if self.resent((id, serial), tag, out) {
            return Ok(Step::Continue);
        }
        let room: Box<str> = self.rooms.name(r).into();
        let from = self.speaker(id).unwrap_or_default();
        let ms = self.journal.stamp();
        // In a cluster the log numbers it.
        let id_now = if self.cluster.is_some() {
            0
        } else {
            self.journal.next_id()?
        };
        let said = Event::Said {
            room: &room,
            id: id_now,
            ms,
            from: &from,
            text,
        };
        if !self.publish(&said, OwnKind::Say(id, serial, tag)) {
            self.apply(said, out);
            // The sender hears `SENT` once the store has committed it.
            let message = Message {
                id: id_now,
                ms,
                from: from.as_str().into(),
                text: text.into(),
            };
            self.journal.append(Some((id, serial)), &room, message);
            // A single server remembers the tag with the session, and the
            // store keeps both in the message's transaction.
            if let Some(tag) = tag {
                self.users.tag(id, tag, &room, id_now);
                self.save_session(id, false);
            }
        }
        self.speaker = from;
        Ok(Step::Continue)
    }

    /// A `SAY` resent under a tag its session said already (its `SENT` was
    /// lost with a connection): answered as the first one was, with its
    /// `SENT` now or once it is committed, and nothing is said again. True
    /// if so. In a cluster the first may still be on its way through the
    /// log; its `SENT` then goes to this connection.
    fn resent(
        &mut self,
        (id, serial): (ConnId, u64),
        tag: Option<&str>,
        out: &mut impl Outbox,
    ) -> bool {
        let Some(tag) = tag else {
            return false;
        };
        if let Some((room, message)) = self.users.tags(id).and_then(|t| t.find(tag)) {
            let room: Box<str> = room.into();
            if !self.journal.resend(message, (id, serial)) {
                let sent = Reply::Sent {
                    room: &room,
                    id: message,
                };
                self.reply(id, sent, out);
            }
            return true;
        }
        let name = self.users.name(id).unwrap_or_default().to_string();
        self.saying(&name, tag, (id, serial))
    }

    fn history(
        &mut self,
        id: ConnId,
        room: &str,
        args: &str,
        out: &mut impl Outbox,
    ) -> Result<Step, ProtocolError> {
        let room = self.room_arg(id, room)?;
        let query = HistoryQuery::parse(args)?;
        self.read_history(id, room, query, Awaited::History, out)
    }

    /// Answers `query` on `room` for `id` from the ring, or asks the store
    /// and waits; `what` says whether for a `HISTORY` or a replay.
    fn read_history(
        &mut self,
        id: ConnId,
        room: &str,
        query: HistoryQuery,
        what: Awaited,
        out: &mut impl Outbox,
    ) -> Result<Step, ProtocolError> {
        let r = self.my_room(id, room)?;
        let (room, log) = (self.rooms.name(r), self.rooms.log(r));
        // Messages still on their way to the store are not in the ring
        // yet; the store answers after committing them.
        if !self.journal.sending_to(room) {
            if let Some(messages) = self.history.answer(log, query) {
                let lines = history_lines(room, messages, what);
                out.send(id, &lines);
                return Ok(Step::Continue);
            }
        }
        let serial = self.users.serial(id).unwrap_or_default();
        self.journal.fetch((id, serial), room, query, what);
        Ok(Step::Wait)
    }

    /// `RESUME`, then the replay of the rooms it lists. A replay that
    /// must wait for the store makes the resumed connection wait too
    /// ([`Step::Replay`]), so the replies stay in order.
    fn resume_and_replay(
        &mut self,
        id: ConnId,
        (name, token): (&str, &str),
        replay: &str,
        out: &mut impl Outbox,
    ) -> Result<Step, ProtocolError> {
        let step = self.resume(id, name, token, out)?;
        if replay.is_empty() {
            return Ok(step);
        }
        let rooms = replay.split_whitespace().map(Box::from).collect();
        self.replays.insert(id, rooms);
        let ghost = match step {
            // In a cluster the session comes later; so does the replay.
            Step::Wait => return Ok(step),
            Step::Replaced(ghost) => Some(ghost),
            _ => None,
        };
        Ok(if self.replay(id, out) {
            Step::Replay { ghost }
        } else {
            step
        })
    }

    /// Answers the rooms `id`'s `RESUME` listed, in order, each as
    /// `HISTORY <room> AFTER <id>` would but up to [`REPLAY_LIMIT`]
    /// messages, cut with `END HISTORY <room> MORE`. Returns true when it
    /// waits for the store; the rest follow its answer.
    fn replay(&mut self, id: ConnId, out: &mut impl Outbox) -> bool {
        while let Some(item) = self.replays.get_mut(&id).and_then(|q| q.pop_front()) {
            match self.replay_room(id, &item, out) {
                Ok(Step::Wait) => return true,
                Ok(_) => {}
                Err(e) => self.reply(id, Reply::Err(e), out),
            }
        }
        self.replays.remove(&id);
        false
    }

    fn replay_room(
        &mut self,
        id: ConnId,
        item: &str,
        out: &mut impl Outbox,
    ) -> Result<Step, ProtocolError> {
        let (room, last) = item.rsplit_once(':').unwrap_or((item, ""));
        let room = self.room_arg(id, room)?;
        let after = HistoryQuery::parse(&format!("AFTER {last}"))?;
        // One more than is sent tells whether there are more.
        let query = HistoryQuery {
            anchor: after.anchor,
            limit: REPLAY_LIMIT + 1,
        };
        self.read_history(id, room, query, Awaited::Replay, out)
    }

    /// A resume that waited for the cluster is done: the replay it asked
    /// for, if any. `None` if there was none (or the resume failed);
    /// otherwise whether the replay waits for the store.
    pub fn resume_replay(&mut self, id: ConnId, out: &mut impl Outbox) -> Option<bool> {
        if !self.replays.contains_key(&id) {
            return None;
        }
        if self.users.name(id).is_none() {
            self.replays.remove(&id);
            return None;
        }
        Some(self.replay(id, out))
    }

    /// Carries out what the store reported. Returns the connection whose
    /// wait (a `HISTORY`, a `JOIN`, a new account or password) is over,
    /// which may read again, and what it is now.
    pub fn on_store(&mut self, outcome: Outcome, out: &mut impl Outbox) -> Option<(ConnId, Step)> {
        match outcome {
            Outcome::Committed { through, reserved } => {
                self.tally.store_failing = false;
                let now = self.journal.now();
                for m in self.journal.committed(through, reserved) {
                    if m.sender.is_some() {
                        self.tally
                            .committed(now.saturating_duration_since(m.accepted));
                    }
                    if let Some(conn) = self.users.still(m.sender) {
                        self.scratch.clear();
                        let room = m.shown.as_deref().unwrap_or(&m.room);
                        let id = m.message.id;
                        Reply::Sent { room, id }.write_to(&mut self.scratch);
                        out.send(conn, &self.scratch);
                    }
                    // A room nobody is in any more has its history in the store.
                    if let Some(r) = self.rooms.find(&m.room) {
                        self.history.push(self.rooms.log(r), m.message);
                    }
                }
                None
            }
            Outcome::Failed { through } => {
                self.tally.store_failing = true;
                for m in self.journal.failed(through) {
                    if let Some(conn) = self.users.still(m.sender) {
                        self.scratch.clear();
                        Reply::Err(ProtocolError::StorageUnavailable).write_to(&mut self.scratch);
                        out.send(conn, &self.scratch);
                    }
                }
                None
            }
            Outcome::Fetched { ticket, rows } => {
                let what = self.journal.awaited(ticket)?;
                let (conn, room) = self.answered(ticket, what)?;
                match rows {
                    Some(rows) => {
                        let lines = history_lines(&room, rows.iter(), what);
                        out.send(conn, &lines);
                    }
                    None => self.reply(conn, Reply::Err(ProtocolError::StorageUnavailable), out),
                }
                // A replay goes on with its next room.
                if what == Awaited::Replay && self.replay(conn, out) {
                    return None;
                }
                Some((conn, Step::Continue))
            }
            Outcome::AccountSaved { ticket, saved } => self.account_saved(ticket, saved, out),
            Outcome::Unread {
                ticket,
                conversations,
            } => self.unread_answered(ticket, conversations, out),
            Outcome::Looked { ticket, found }
                if self.journal.awaited(ticket) == Some(Awaited::Create) =>
            {
                let (conn, room) = self.answered(ticket, Awaited::Create)?;
                if found == Found::Failed {
                    self.reply(conn, Reply::Err(ProtocolError::StorageUnavailable), out);
                    return Some((conn, Step::Continue));
                }
                let stored = matches!(found, Found::Stored { .. });
                self.private_looked(conn, &room, stored, out)
            }
            Outcome::Looked { ticket, found } => {
                let (conn, room) = self.answered(ticket, Awaited::Join)?;
                // The room may have been made invite-only meanwhile.
                if !self.admitted(conn, &room) {
                    self.reply(conn, Reply::Err(ProtocolError::NotInvited), out);
                    return Some((conn, Step::Continue));
                }
                if self.cluster.is_some() {
                    // The room comes into memory when the join comes back
                    // through the log, under the spelling it names.
                    let spelling = match (self.rooms.find(&room), found) {
                        (Some(r), _) => self.rooms.name(r).into(),
                        (None, Found::Stored { spelling, .. }) => spelling,
                        (None, Found::Unknown | Found::Failed) => room,
                    };
                    return (self.enter_named(conn, &spelling, out) == Step::Continue)
                        .then_some((conn, Step::Continue));
                }
                // Someone else may have brought the room in meanwhile.
                let r = match (self.rooms.find(&room), found) {
                    (Some(r), _) => r,
                    (None, Found::Stored { spelling, last }) => self.open_room(&spelling, last),
                    (None, Found::Unknown) => self.open_room(&room, 0),
                    // The store cannot say: the typed spelling, and every
                    // message so far left to the store.
                    (None, Found::Failed) => self.open_room(&room, self.journal.last_id()),
                };
                // In a cluster the wait goes on until the join is in the log.
                (self.enter(conn, r, out) == Step::Continue).then_some((conn, Step::Continue))
            }
        }
    }

    fn token(&mut self, id: ConnId, out: &mut impl Outbox) -> Result<Step, ProtocolError> {
        self.users.name(id).ok_or(ProtocolError::NotLoggedIn)?;
        // Without randomness there is no safe token; say the server cannot.
        let token = self
            .tokens
            .next_token()
            .ok_or(ProtocolError::StorageUnavailable)?;
        self.users.set_token(id, token);
        self.save_session(id, false);
        self.reply(id, Reply::Token(&token.to_hex()), out);
        Ok(Step::Continue)
    }

    fn resume(
        &mut self,
        id: ConnId,
        name: &str,
        token: &str,
        out: &mut impl Outbox,
    ) -> Result<Step, ProtocolError> {
        if self.users.name(id).is_some() {
            return Err(ProtocolError::AlreadyLoggedIn);
        }
        let token = Token::parse(token).ok_or(ProtocolError::BadToken)?;
        if let Some(ghost) = self.users.find(name) {
            // Still connected, maybe not for long: take over in silence.
            if !self.users.token(ghost).is_some_and(|t| t.matches(&token)) {
                return Err(ProtocolError::BadToken);
            }
            self.users.rebind(ghost, id);
            self.rooms.rebind(ghost, id);
            self.resumed(id, out);
            return Ok(Step::Replaced(ghost));
        }
        if let Some(tags) = self.held.take(name, &token, self.journal.now()) {
            // Held since a restart: taken back in silence, as a ghost is.
            let spelling = self.users.remote(name).map(Box::<str>::from);
            if let Some(spelling) = spelling {
                self.users.attach(id, &spelling);
                self.rooms.attach(&spelling, id);
                self.users.set_token(id, token);
                self.users.set_tags(id, tags);
                self.resumed(id, out);
                self.save_session(id, false);
                return Ok(Step::LoggedIn);
            }
        }
        let Some(ended) = self.ended.take(name, &token, self.journal.now()) else {
            // In a cluster, another node may hold the session.
            if self.take_elsewhere(id, name, token) {
                return Ok(Step::Wait);
            }
            return Err(ProtocolError::BadToken);
        };
        // The name is free here (a login under it would have ended the
        // session), but for this node's own departure of it on its way
        // through the log, which the claim follows.
        if self.users.is_taken(&ended.name) && !self.departing_here(&ended.name) {
            return Err(ProtocolError::BadToken);
        }
        if self.cluster.is_some() {
            let name = ended.name.clone();
            self.claim(id, &name, Some(ended));
            return Ok(Step::Wait);
        }
        self.users.insert(id, &ended.name);
        self.users.set_token(id, ended.token);
        self.users.set_tags(id, ended.tags);
        self.reply(id, Reply::Ok, out);
        self.apply(
            Event::Arrived {
                name: &ended.name,
                home: "",
            },
            out,
        );
        for room in &ended.rooms {
            // A room that left memory meanwhile comes back under the same
            // spelling, with every message so far left to the store.
            let r = match self.rooms.find(room) {
                Some(r) => r,
                None => self.open_room(room, self.journal.last_id()),
            };
            self.enter(id, r, out);
        }
        // Live again: a restart holds it for a whole window.
        self.save_session(id, false);
        Ok(Step::LoggedIn)
    }

    /// `id` took a session over: `OK`, then `JOINED` for each of its rooms.
    fn resumed(&mut self, id: ConnId, out: &mut impl Outbox) {
        self.reply(id, Reply::Ok, out);
        let mut lines = Vec::new();
        for room in self.rooms.names_of(id) {
            let r = self.rooms.find(room).unwrap_or_default();
            let members = self.rooms.count(r);
            Reply::JoinedRoom { room, members }.write_to(&mut lines);
        }
        out.send(id, &lines);
    }

    fn list_rooms(&mut self, id: ConnId, out: &mut impl Outbox) -> Result<Step, ProtocolError> {
        self.users.name(id).ok_or(ProtocolError::NotLoggedIn)?;
        let rooms = self.rooms.sorted();
        let mut lines = Vec::with_capacity((rooms.len() + 1) * 24);
        // An invite-only room is listed to its members only.
        for (room, members) in rooms
            .into_iter()
            .filter(|(room, _)| self.admitted(id, room))
        {
            Reply::RoomInfo { room, members }.write_to(&mut lines);
        }
        Reply::EndRooms.write_to(&mut lines);
        out.send(id, &lines);
        Ok(Step::Continue)
    }

    fn who_in(
        &mut self,
        id: ConnId,
        room: &str,
        out: &mut impl Outbox,
    ) -> Result<Step, ProtocolError> {
        let room = self.room_arg(id, room)?;
        let r = self
            .rooms
            .find(room)
            .filter(|_| self.admitted(id, room))
            .ok_or(ProtocolError::NoSuchRoom)?;
        let mut names = self.users.sorted_names_of(self.rooms.members(r));
        names.extend(self.rooms.remote_members(r));
        names.sort_unstable_by(|a, b| Folded::new(a).cmp(Folded::new(b)));
        let mut lines = Vec::with_capacity((names.len() + 1) * 16);
        for name in names {
            Reply::User(name).write_to(&mut lines);
        }
        Reply::EndWho(self.rooms.name(r)).write_to(&mut lines);
        out.send(id, &lines);
        Ok(Step::Continue)
    }

    /// Removes `id` from the chat, if it was logged in, and tells those
    /// still here: `INFO <room> <name> left` in each of its rooms, then the
    /// lobby's `INFO <name> disconnected`, each while the presence limit
    /// allows. Safe to call for any id, any number of times: only the first
    /// call for a logged-in connection announces.
    pub fn leave(&mut self, id: ConnId, out: &mut impl Outbox) {
        self.tally.forget(id);
        self.accounts.forget_conn(id);
        self.replays.remove(&id);
        self.end_session(id);
        if self.depart_through_log(id) {
            return;
        }
        if let Some(name) = self.speaker(id) {
            self.apply(Event::Departed { name: &name }, out);
            self.speaker = name;
        }
    }

    /// Keeps a departing user's session for `RESUME` if it has a token.
    fn end_session(&mut self, id: ConnId) {
        let (Some(name), Some(token)) = (self.users.name(id), self.users.token(id)) else {
            return;
        };
        let rooms = self.rooms.names_of(id).into_iter().map(Box::from).collect();
        let tags = self.users.tags(id).cloned().unwrap_or_default();
        self.ended
            .record(name, token, (rooms, tags), self.journal.now());
        self.save_session(id, true);
    }

    /// Removes `id` without telling anyone, keeping its session for
    /// `RESUME` if it has a token: everyone is leaving (a drain), and in a
    /// cluster the session can be taken over from another node meanwhile.
    pub fn hold(&mut self, id: ConnId) {
        self.end_session(id);
        self.remove(id);
    }

    /// Removes `id` as [`Chat::leave`] does, but its session cannot be
    /// resumed: an operator ended it.
    pub fn kick(&mut self, id: ConnId, out: &mut impl Outbox) {
        let name = self.users.name(id).map(Box::<str>::from);
        self.leave(id, out);
        if let Some(name) = name {
            self.ended.forget(&name);
            self.forget_session(&name);
        }
    }

    /// Ends the session held for `name` since a restart, as if its window
    /// had passed (the others see it leave); returns its spelling if one
    /// was held.
    pub fn drop_held(&mut self, name: &str, out: &mut impl Outbox) -> Option<Box<str>> {
        let name = self.held.drop_held(name)?;
        self.apply(Event::Departed { name: &name }, out);
        self.forget_session(&name);
        Some(name)
    }

    /// The names of the sessions held since a restart.
    pub fn held_names(&self) -> impl Iterator<Item = &str> {
        self.held.names()
    }

    /// The connection of the user called `name` on this node, if there is one.
    pub fn find(&self, name: &str) -> Option<ConnId> {
        self.users.find(name)
    }

    /// Sends `NOTICE <text>` to every user logged in on this node; returns
    /// how many.
    pub fn notice(&mut self, text: &str, out: &mut impl Outbox) -> usize {
        self.scratch.clear();
        Reply::Notice(text).write_to(&mut self.scratch);
        let roster = self.users.roster();
        out.send_to_all(roster, None, &self.scratch);
        roster.len()
    }

    /// Removes `id` without telling anyone (a shutdown leaves nobody to tell).
    /// Returns the freed name.
    pub fn remove(&mut self, id: ConnId) -> Option<Box<str>> {
        self.tally.forget(id);
        self.accounts.forget_conn(id);
        self.replays.remove(&id);
        while let Some(r) = self.rooms.any_of(id) {
            self.vacate(id, r);
        }
        self.users.remove(id)
    }

    fn reply(&mut self, to: ConnId, line: Reply<'_>, out: &mut impl Outbox) {
        self.scratch.clear();
        line.write_to(&mut self.scratch);
        out.send(to, &self.scratch);
    }

    /// Checks the registry's invariants; for tests and fuzzing.
    pub fn check_invariants(&self) {
        self.users.check_invariants();
        self.rooms.check_invariants();
        self.history.check_invariants();
        assert_eq!(self.history.len(), self.rooms.len(), "a log per room");
        // Only logged-in users sit in rooms.
        for (room, _) in self.rooms.sorted() {
            let r = self.rooms.find(room).expect("listed room");
            for &id in self.rooms.members(r) {
                assert!(
                    self.users.name(id).is_some(),
                    "anonymous conn {id} in {room}"
                );
            }
        }
    }
}

/// The `HIST` lines of `messages`, then `END HISTORY`; for a replay at
/// most [`REPLAY_LIMIT`], then `END HISTORY <room> MORE` if there are more.
fn history_lines<'a>(
    room: &str,
    messages: impl Iterator<Item = &'a Message>,
    what: Awaited,
) -> Vec<u8> {
    let cap = if what == Awaited::Replay {
        REPLAY_LIMIT
    } else {
        usize::MAX
    };
    let mut lines = Vec::new();
    for (i, m) in messages.enumerate() {
        if i == cap {
            Reply::MoreHistory(room).write_to(&mut lines);
            return lines;
        }
        Reply::Hist {
            room,
            id: m.id,
            ms: m.ms,
            from: &m.from,
            text: &m.text,
        }
        .write_to(&mut lines);
    }
    Reply::EndHistory(room).write_to(&mut lines);
    lines
}

#[cfg(test)]
mod tests;

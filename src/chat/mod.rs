//! The chat state machine: who is logged in under which name, and who
//! receives what. No sockets, no clocks and no syscalls: it is handed lines
//! and the instant they arrived, and its only effects are lines queued into
//! an [`Outbox`], which the caller flushes after the call returns.
//!
//! [`users`] keeps who is logged in and [`rooms`] who is in which room;
//! this module routes each command. Message ids are assigned in one place
//! ([`Chat::next_message_id`]), where a message store will take each room
//! message before its `SENT` goes out.

pub mod name;
pub mod rooms;
pub mod users;

use std::time::Instant;

use crate::config::defaults;
use crate::protocol::reply::MessageId;
use crate::protocol::text::{valid_name, valid_room};
use crate::protocol::{parse, Command, ProtocolError, Reply};
use rooms::{RoomId, Rooms};
use users::Users;

/// Identifies a connection; the server uses its slab key.
pub type ConnId = usize;

/// Where the chat's effects go. The server queues the bytes on each
/// connection and enforces its limits once the chat call has returned;
/// tests record them. Nothing behind it may call back into the chat.
pub trait Outbox {
    /// Queues one or more complete lines for `to`.
    fn send(&mut self, to: ConnId, bytes: &[u8]);
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
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_rooms: defaults::MAX_ROOMS,
            presence_limit: defaults::PRESENCE_LIMIT,
        }
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
    /// The id the next accepted room message gets.
    next_id: MessageId,
    /// A line is formatted here once, then copied to each recipient.
    scratch: Vec<u8>,
}

impl Default for Chat {
    fn default() -> Chat {
        Chat::new(Limits::default())
    }
}

impl Chat {
    /// An empty chat.
    pub fn new(limits: Limits) -> Self {
        Chat {
            users: Users::default(),
            rooms: Rooms::default(),
            limits,
            next_id: 1,
            scratch: Vec::new(),
        }
    }

    /// Number of logged-in users.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Number of rooms with members.
    pub fn rooms(&self) -> usize {
        self.rooms.len()
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
        match parse(line) {
            Ok(None) => Step::Continue,
            Ok(Some(command)) => self.on_command(id, command, now, out),
            Err(e) => {
                self.reply(id, Reply::Err(e), out);
                Step::Continue
            }
        }
    }

    /// Tells `id` its line was longer than the limit.
    pub fn on_line_too_long(&mut self, id: ConnId, out: &mut impl Outbox) {
        self.reply(id, Reply::Err(ProtocolError::LineTooLong), out);
    }

    /// Handles one parsed command from `id`. `now` is when it arrived: the
    /// time a stored message will carry.
    pub fn on_command(
        &mut self,
        id: ConnId,
        command: Command<'_>,
        _now: Instant,
        out: &mut impl Outbox,
    ) -> Step {
        let result = match command {
            Command::Ping(token) => {
                self.reply(id, Reply::Pong(token), out);
                Ok(Step::Continue)
            }
            Command::Pong => Ok(Step::Continue),
            Command::Quit(_) => Ok(Step::Quit),
            Command::Login(name) => self.login(id, name, out),
            Command::Msg(text) => self.msg(id, text, out),
            Command::Dm { to, text } => self.dm(id, to, text, out),
            Command::Who => self.who(id, out),
            Command::Join(room) => self.join(id, room, out),
            Command::Part(room) => self.part(id, room, out),
            Command::Say { room, text } => self.say(id, room, text, out),
            Command::Rooms => self.list_rooms(id, out),
            Command::WhoIn(room) => self.who_in(id, room, out),
        };
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
        if !self.users.insert(id, name) {
            return Err(ProtocolError::UsernameTaken);
        }
        self.reply(id, Reply::Ok, out);
        if self.limits.announces(self.users.len()) {
            self.broadcast(Some(id), Reply::Joined(name), out);
        }
        Ok(Step::LoggedIn)
    }

    fn msg(
        &mut self,
        id: ConnId,
        text: &str,
        out: &mut impl Outbox,
    ) -> Result<Step, ProtocolError> {
        let from = self.users.name(id).ok_or(ProtocolError::NotLoggedIn)?;
        if text.is_empty() {
            return Err(ProtocolError::EmptyMessage);
        }
        // Field borrows, not `self.broadcast`: `from` borrows the registry.
        self.scratch.clear();
        Reply::Msg { from, text }.write_to(&mut self.scratch);
        send_to_all(self.users.roster(), Some(id), &self.scratch, out);
        Ok(Step::Continue)
    }

    fn dm(
        &mut self,
        id: ConnId,
        to: &str,
        text: &str,
        out: &mut impl Outbox,
    ) -> Result<Step, ProtocolError> {
        let from = self.users.name(id).ok_or(ProtocolError::NotLoggedIn)?;
        let target = self.users.find(to).ok_or(ProtocolError::NoSuchUser)?;
        if text.is_empty() {
            return Err(ProtocolError::EmptyMessage);
        }
        self.scratch.clear();
        Reply::Dm { from, text }.write_to(&mut self.scratch);
        out.send(target, &self.scratch);
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
        let r = self.rooms.join(id, room);
        let (room, members) = (self.rooms.name(r), self.rooms.members(r));
        if self.limits.announces(members.len()) {
            let name = self.users.name(id).unwrap_or_default();
            self.scratch.clear();
            Reply::EnteredRoom { room, name }.write_to(&mut self.scratch);
            send_to_all(members, Some(id), &self.scratch, out);
        }
        self.scratch.clear();
        let members = members.len();
        Reply::JoinedRoom { room, members }.write_to(&mut self.scratch);
        out.send(id, &self.scratch);
        Ok(Step::Continue)
    }

    fn part(
        &mut self,
        id: ConnId,
        room: &str,
        out: &mut impl Outbox,
    ) -> Result<Step, ProtocolError> {
        let r = self.my_room(id, room)?;
        self.scratch.clear();
        Reply::PartedRoom(self.rooms.name(r)).write_to(&mut self.scratch);
        out.send(id, &self.scratch);
        self.leave_room(id, r, out);
        Ok(Step::Continue)
    }

    /// Takes `id` out of room `r`, telling the others while the presence
    /// limit allows.
    fn leave_room(&mut self, id: ConnId, r: RoomId, out: &mut impl Outbox) {
        let members = self.rooms.members(r);
        if self.limits.announces(members.len()) {
            let room = self.rooms.name(r);
            let name = self.users.name(id).unwrap_or_default();
            self.scratch.clear();
            Reply::LeftRoom { room, name }.write_to(&mut self.scratch);
            send_to_all(members, Some(id), &self.scratch, out);
        }
        self.rooms.part(id, r);
    }

    /// The id for the next accepted message. Ids only grow and are never
    /// reused; a store would persist the counter with the message.
    fn next_message_id(&mut self) -> MessageId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn say(
        &mut self,
        id: ConnId,
        room: &str,
        text: &str,
        out: &mut impl Outbox,
    ) -> Result<Step, ProtocolError> {
        let r = self.my_room(id, room)?;
        if text.is_empty() {
            return Err(ProtocolError::EmptyMessage);
        }
        let message = self.next_message_id();
        // Here a store would take (room, message, now, name, text); the
        // SENT below would wait for its commit.
        let (room, from) = (self.rooms.name(r), self.users.name(id).unwrap_or_default());
        self.scratch.clear();
        Reply::Said {
            room,
            id: message,
            from,
            text,
        }
        .write_to(&mut self.scratch);
        send_to_all(self.rooms.members(r), Some(id), &self.scratch, out);
        self.scratch.clear();
        Reply::Sent { room, id: message }.write_to(&mut self.scratch);
        out.send(id, &self.scratch);
        Ok(Step::Continue)
    }

    fn list_rooms(&mut self, id: ConnId, out: &mut impl Outbox) -> Result<Step, ProtocolError> {
        self.users.name(id).ok_or(ProtocolError::NotLoggedIn)?;
        let rooms = self.rooms.sorted();
        let mut lines = Vec::with_capacity((rooms.len() + 1) * 24);
        for (room, members) in rooms {
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
        let r = self.rooms.find(room).ok_or(ProtocolError::NoSuchRoom)?;
        let names = self.users.sorted_names_of(self.rooms.members(r));
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
        while let Some(r) = self.rooms.any_of(id) {
            self.leave_room(id, r, out);
        }
        let present = self.users.len();
        if let Some(name) = self.users.remove(id) {
            if self.limits.announces(present) {
                self.broadcast(None, Reply::Disconnected(&name), out);
            }
        }
    }

    /// Removes `id` without telling anyone (a shutdown leaves nobody to tell).
    /// Returns the freed name.
    pub fn remove(&mut self, id: ConnId) -> Option<Box<str>> {
        while let Some(r) = self.rooms.any_of(id) {
            self.rooms.part(id, r);
        }
        self.users.remove(id)
    }

    fn reply(&mut self, to: ConnId, line: Reply<'_>, out: &mut impl Outbox) {
        self.scratch.clear();
        line.write_to(&mut self.scratch);
        out.send(to, &self.scratch);
    }

    fn broadcast(&mut self, except: Option<ConnId>, line: Reply<'_>, out: &mut impl Outbox) {
        self.scratch.clear();
        line.write_to(&mut self.scratch);
        send_to_all(self.users.roster(), except, &self.scratch, out);
    }

    /// Checks the registry's invariants; for tests and fuzzing.
    pub fn check_invariants(&self) {
        self.users.check_invariants();
        self.rooms.check_invariants();
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

/// The hot path: one formatted line, one append per recipient. A free
/// function so callers can lend it fields while other fields are borrowed.
fn send_to_all(roster: &[ConnId], except: Option<ConnId>, bytes: &[u8], out: &mut impl Outbox) {
    for &to in roster {
        if Some(to) != except {
            out.send(to, bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn t0() -> Instant {
        Instant::now()
    }

    /// Records every line each connection would receive.
    #[derive(Default)]
    struct Recorder(HashMap<ConnId, Vec<u8>>);

    impl Outbox for Recorder {
        fn send(&mut self, to: ConnId, bytes: &[u8]) {
            self.0.entry(to).or_default().extend_from_slice(bytes);
        }
    }

    impl Recorder {
        fn take(&mut self, id: ConnId) -> String {
            String::from_utf8(self.0.remove(&id).unwrap_or_default()).unwrap()
        }
    }

    fn setup(names: &[&str]) -> (Chat, Recorder) {
        with_limits(Limits::default(), names)
    }

    fn with_limits(limits: Limits, names: &[&str]) -> (Chat, Recorder) {
        let mut chat = Chat::new(limits);
        let mut out = Recorder::default();
        for (id, name) in names.iter().enumerate() {
            let step = chat.on_line(id, format!("LOGIN {name}").as_bytes(), t0(), &mut out);
            assert_eq!(step, Step::LoggedIn);
        }
        out.0.clear();
        (chat, out)
    }

    #[test]
    fn login_announces_to_others_only() {
        let (mut chat, mut out) = setup(&["alice"]);
        assert_eq!(
            chat.on_line(1, b"login Bob", t0(), &mut out),
            Step::LoggedIn
        );
        assert_eq!(out.take(1), "OK\n");
        assert_eq!(out.take(0), "INFO Bob joined\n");
        chat.check_invariants();
    }

    #[test]
    fn login_errors() {
        let (mut chat, mut out) = setup(&["Alice"]);
        chat.on_line(1, b"LOGIN alice", t0(), &mut out);
        chat.on_line(1, b"LOGIN al ice", t0(), &mut out);
        chat.on_line(1, b"LOGIN", t0(), &mut out);
        chat.on_line(0, b"LOGIN other", t0(), &mut out);
        assert_eq!(
            out.take(1),
            "ERR username-taken\nERR invalid-username\nERR invalid-username\n"
        );
        assert_eq!(out.take(0), "ERR already-logged-in\n");
        assert_eq!(chat.users(), 1);
    }

    #[test]
    fn msg_goes_to_everyone_else_and_never_to_anonymous() {
        let (mut chat, mut out) = setup(&["a", "b", "c"]);
        chat.on_line(1, b"MSG  hi  there ", t0(), &mut out);
        chat.on_line(9, b"MSG nope", t0(), &mut out);
        assert_eq!(out.take(0), "MSG b hi  there\n");
        assert_eq!(out.take(2), "MSG b hi  there\n");
        assert_eq!(out.take(1), "");
        assert_eq!(out.take(9), "ERR not-logged-in\n");
        chat.on_line(1, b"MSG   ", t0(), &mut out);
        assert_eq!(out.take(1), "ERR empty-message\n");
    }

    #[test]
    fn dm_reaches_only_the_target() {
        let (mut chat, mut out) = setup(&["a", "Bob", "c"]);
        chat.on_line(0, b"DM bob psst  x", t0(), &mut out);
        assert_eq!(out.take(1), "DM a psst  x\n");
        assert!(out.0.is_empty());
        chat.on_line(0, b"DM zed hi", t0(), &mut out);
        chat.on_line(0, b"DM bob", t0(), &mut out);
        chat.on_line(0, b"DM", t0(), &mut out);
        chat.on_line(7, b"DM bob hi", t0(), &mut out);
        assert_eq!(
            out.take(0),
            "ERR no-such-user\nERR empty-message\nERR no-such-user\n"
        );
        assert_eq!(out.take(7), "ERR not-logged-in\n");
    }

    #[test]
    fn who_is_sorted_case_insensitively() {
        let (mut chat, mut out) = setup(&["charlie", "Bob", "alice", "_x", "Zed"]);
        chat.on_line(0, b"WHO", t0(), &mut out);
        assert_eq!(
            out.take(0),
            "USER _x\nUSER alice\nUSER Bob\nUSER charlie\nUSER Zed\n"
        );
        chat.on_line(9, b"who", t0(), &mut out);
        assert_eq!(out.take(9), "ERR not-logged-in\n");
    }

    #[test]
    fn ping_pong_quit_work_before_login() {
        let mut chat = Chat::default();
        let mut out = Recorder::default();
        assert_eq!(chat.on_line(3, b"PING", t0(), &mut out), Step::Continue);
        chat.on_line(3, b"PING tok en", t0(), &mut out);
        chat.on_line(3, b"PONG", t0(), &mut out);
        assert_eq!(chat.on_line(3, b"QUIT bye all", t0(), &mut out), Step::Quit);
        assert_eq!(out.take(3), "PONG\nPONG tok en\n");
    }

    #[test]
    fn leave_announces_once_and_frees_the_name() {
        let (mut chat, mut out) = setup(&["a", "b", "c"]);
        chat.leave(0, &mut out);
        chat.leave(0, &mut out);
        chat.leave(42, &mut out);
        assert_eq!(out.take(1), "INFO a disconnected\n");
        assert_eq!(out.take(2), "INFO a disconnected\n");
        assert_eq!(out.take(0), "");
        chat.check_invariants();
        assert_eq!(chat.on_line(5, b"LOGIN A", t0(), &mut out), Step::LoggedIn);
        chat.check_invariants();
        chat.on_line(2, b"MSG x", t0(), &mut out);
        assert_eq!(out.take(1), "INFO A joined\nMSG c x\n");
        assert_eq!(out.take(5), "OK\nMSG c x\n");
    }

    #[test]
    fn errors_from_parsing_are_replied() {
        let mut chat = Chat::default();
        let mut out = Recorder::default();
        chat.on_line(0, b"\xff", t0(), &mut out);
        chat.on_line(0, b"MSG \x1b", t0(), &mut out);
        chat.on_line(0, b"FOO", t0(), &mut out);
        chat.on_line(0, b"   ", t0(), &mut out);
        chat.on_line_too_long(0, &mut out);
        assert_eq!(
            out.take(0),
            "ERR invalid-utf8\nERR invalid-text\nERR unknown-command\nERR line-too-long\n"
        );
    }

    fn line(chat: &mut Chat, out: &mut Recorder, id: ConnId, text: &str) {
        chat.on_line(id, text.as_bytes(), t0(), out);
        chat.check_invariants();
    }

    #[test]
    fn join_creates_counts_and_announces_to_members_only() {
        let (mut chat, mut out) = setup(&["a", "b", "c"]);
        line(&mut chat, &mut out, 0, "JOIN #Rust");
        assert_eq!(out.take(0), "JOINED #Rust 1\n");
        assert_eq!(out.take(1), "", "not a member: not told");
        line(&mut chat, &mut out, 1, "join #RUST");
        assert_eq!(out.take(1), "JOINED #Rust 2\n", "the first spelling");
        assert_eq!(out.take(0), "INFO #Rust b joined\n");
        assert_eq!(out.take(2), "");
        assert_eq!(chat.rooms(), 1);
    }

    #[test]
    fn join_errors() {
        let limits = Limits {
            max_rooms: 2,
            presence_limit: 0,
        };
        let (mut chat, mut out) = with_limits(limits, &["a"]);
        for bad in ["JOIN", "JOIN rust", "JOIN #", "JOIN #a b", "JOIN #é"] {
            line(&mut chat, &mut out, 0, bad);
            assert_eq!(out.take(0), "ERR invalid-room\n", "{bad}");
        }
        line(&mut chat, &mut out, 0, "JOIN #a");
        line(&mut chat, &mut out, 0, "JOIN #A");
        line(&mut chat, &mut out, 0, "JOIN #b");
        line(&mut chat, &mut out, 0, "JOIN #c");
        assert_eq!(
            out.take(0),
            "JOINED #a 1\nERR already-joined\nJOINED #b 1\nERR too-many-rooms\n"
        );
        line(&mut chat, &mut out, 9, "JOIN #a");
        line(&mut chat, &mut out, 9, "JOIN nonsense");
        assert_eq!(out.take(9), "ERR not-logged-in\nERR not-logged-in\n");
        line(&mut chat, &mut out, 0, "PART #b");
        line(&mut chat, &mut out, 0, "JOIN #c");
        assert_eq!(
            out.take(0),
            "PARTED #b\nJOINED #c 1\n",
            "a part frees a place"
        );
    }

    #[test]
    fn part_tells_the_rest_and_an_empty_room_is_gone() {
        let (mut chat, mut out) = setup(&["a", "b"]);
        line(&mut chat, &mut out, 0, "JOIN #x");
        line(&mut chat, &mut out, 1, "JOIN #x");
        out.0.clear();
        line(&mut chat, &mut out, 1, "PART #X");
        assert_eq!(out.take(1), "PARTED #x\n");
        assert_eq!(out.take(0), "INFO #x b left\n");
        line(&mut chat, &mut out, 1, "PART #x");
        line(&mut chat, &mut out, 1, "PART #never");
        line(&mut chat, &mut out, 1, "PART x");
        assert_eq!(
            out.take(1),
            "ERR not-in-room\nERR not-in-room\nERR invalid-room\n"
        );
        line(&mut chat, &mut out, 0, "PART #x");
        assert_eq!(out.take(0), "PARTED #x\n");
        assert_eq!(chat.rooms(), 0);
        line(&mut chat, &mut out, 5, "PART #x");
        assert_eq!(out.take(5), "ERR not-logged-in\n");
    }

    #[test]
    fn say_reaches_the_other_members_with_increasing_ids() {
        let (mut chat, mut out) = setup(&["a", "b", "c"]);
        line(&mut chat, &mut out, 0, "JOIN #x");
        line(&mut chat, &mut out, 1, "JOIN #x");
        line(&mut chat, &mut out, 2, "JOIN #y");
        out.0.clear();
        line(&mut chat, &mut out, 0, "SAY #X  hello  there ");
        line(&mut chat, &mut out, 1, "say #x back");
        line(&mut chat, &mut out, 2, "SAY #y alone");
        assert_eq!(out.take(0), "SENT #x 1\nSAY #x 2 b back\n");
        assert_eq!(out.take(1), "SAY #x 1 a hello  there\nSENT #x 2\n");
        assert_eq!(
            out.take(2),
            "SENT #y 3\n",
            "never echoed, other rooms unheard"
        );
        line(&mut chat, &mut out, 2, "SAY #x sneaky");
        line(&mut chat, &mut out, 2, "SAY #y   ");
        line(&mut chat, &mut out, 2, "SAY y hi");
        line(&mut chat, &mut out, 2, "SAY");
        line(&mut chat, &mut out, 8, "SAY #y hi");
        assert_eq!(
            out.take(2),
            "ERR not-in-room\nERR empty-message\nERR invalid-room\nERR invalid-room\n"
        );
        assert_eq!(out.take(8), "ERR not-logged-in\n");
        assert!(out.0.is_empty(), "errors reach nobody else");
        line(&mut chat, &mut out, 2, "SAY #y again");
        assert_eq!(out.take(2), "SENT #y 4\n", "a refused SAY takes no id");
    }

    #[test]
    fn rooms_and_who_of_a_room_are_sorted_and_ended() {
        let (mut chat, mut out) = setup(&["carol", "Bob", "alice"]);
        line(&mut chat, &mut out, 0, "ROOMS");
        assert_eq!(out.take(0), "END ROOMS\n");
        line(&mut chat, &mut out, 0, "JOIN #zed");
        line(&mut chat, &mut out, 1, "JOIN #Alpha");
        line(&mut chat, &mut out, 2, "JOIN #zed");
        line(&mut chat, &mut out, 1, "JOIN #zed");
        out.0.clear();
        line(&mut chat, &mut out, 0, "rooms");
        assert_eq!(out.take(0), "ROOM #Alpha 1\nROOM #zed 3\nEND ROOMS\n");
        line(&mut chat, &mut out, 0, "WHO #ZED");
        assert_eq!(
            out.take(0),
            "USER alice\nUSER Bob\nUSER carol\nEND WHO #zed\n"
        );
        line(&mut chat, &mut out, 0, "WHO #nobody");
        line(&mut chat, &mut out, 0, "WHO #bad!");
        assert_eq!(out.take(0), "ERR no-such-room\nERR invalid-room\n");
        line(&mut chat, &mut out, 0, "WHO anything");
        assert_eq!(
            out.take(0),
            "USER alice\nUSER Bob\nUSER carol\n",
            "v1 WHO is unchanged"
        );
        line(&mut chat, &mut out, 7, "ROOMS");
        line(&mut chat, &mut out, 7, "WHO #zed");
        assert_eq!(out.take(7), "ERR not-logged-in\nERR not-logged-in\n");
    }

    #[test]
    fn a_departure_leaves_every_room_once_then_the_lobby() {
        let (mut chat, mut out) = setup(&["a", "b", "c"]);
        for room in ["#x", "#y"] {
            line(&mut chat, &mut out, 0, &format!("JOIN {room}"));
            line(&mut chat, &mut out, 1, &format!("JOIN {room}"));
        }
        line(&mut chat, &mut out, 0, "JOIN #solo");
        out.0.clear();
        chat.leave(0, &mut out);
        chat.leave(0, &mut out);
        chat.check_invariants();
        let b = out.take(1);
        let mut b: Vec<&str> = b.lines().collect();
        assert_eq!(b.pop(), Some("INFO a disconnected"));
        b.sort();
        assert_eq!(b, ["INFO #x a left", "INFO #y a left"]);
        assert_eq!(out.take(2), "INFO a disconnected\n");
        assert_eq!(chat.rooms(), 2, "#solo went with its last member");
        line(&mut chat, &mut out, 1, "ROOMS");
        assert_eq!(out.take(1), "ROOM #x 1\nROOM #y 1\nEND ROOMS\n");
        chat.remove(1);
        chat.check_invariants();
        assert_eq!(chat.rooms(), 0, "a silent removal empties rooms too");
        assert!(out.0.is_empty());
    }

    #[test]
    fn presence_is_announced_only_up_to_the_limit() {
        let limits = Limits {
            max_rooms: 4,
            presence_limit: 3,
        };
        let (mut chat, mut out) = with_limits(limits, &["a", "b", "c"]);
        line(&mut chat, &mut out, 3, "LOGIN d");
        assert_eq!(out.take(3), "OK\n");
        assert!(out.0.is_empty(), "the 4th login is not announced");
        for id in 0..3 {
            line(&mut chat, &mut out, id, "JOIN #r");
        }
        assert_eq!(
            out.take(0),
            "JOINED #r 1\nINFO #r b joined\nINFO #r c joined\n"
        );
        out.0.clear();
        line(&mut chat, &mut out, 3, "JOIN #r");
        assert_eq!(out.take(3), "JOINED #r 4\n");
        assert!(out.0.is_empty(), "the 4th member is not announced");
        chat.leave(3, &mut out);
        assert!(out.0.is_empty(), "nor is the departure among 4");
        chat.leave(2, &mut out);
        assert_eq!(out.take(0), "INFO #r c left\nINFO c disconnected\n");
        assert_eq!(out.take(1), "INFO #r c left\nINFO c disconnected\n");
        line(&mut chat, &mut out, 1, "WHO #r");
        assert_eq!(out.take(1), "USER a\nUSER b\nEND WHO #r\n");
    }

    #[test]
    fn a_v1_user_never_sees_v2_lines() {
        let (mut chat, mut out) = setup(&["old", "new1", "new2"]);
        line(&mut chat, &mut out, 1, "JOIN #v2");
        line(&mut chat, &mut out, 2, "JOIN #v2");
        line(&mut chat, &mut out, 1, "SAY #v2 hi");
        line(&mut chat, &mut out, 2, "PART #v2");
        line(&mut chat, &mut out, 1, "MSG to all");
        chat.leave(1, &mut out);
        assert_eq!(out.take(0), "MSG new1 to all\nINFO new1 disconnected\n");
    }
}

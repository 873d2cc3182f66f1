//! The chat state machine: who is logged in under which name, and who
//! receives what. No sockets, no clocks and no syscalls: it is handed lines
//! and the instant they arrived, and its only effects are lines queued into
//! an [`Outbox`], which the caller flushes after the call returns.
//!
//! [`users`] keeps the registry; this module routes each command. Rooms, a
//! message store and message ids join here, behind the same two seams: lines
//! in with `now`, effects out.

pub mod name;
pub mod users;

use std::time::Instant;

use crate::protocol::text::valid_name;
use crate::protocol::{parse, Command, ProtocolError, Reply};
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

/// The users and the router of MSG, DM, WHO and departures.
#[derive(Debug, Default)]
pub struct Chat {
    users: Users,
    /// A line is formatted here once, then copied to each recipient.
    scratch: Vec<u8>,
}

impl Chat {
    /// An empty chat.
    pub fn new() -> Self {
        Chat::default()
    }

    /// Number of logged-in users.
    pub fn users(&self) -> usize {
        self.users.len()
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
        self.broadcast(Some(id), Reply::Joined(name), out);
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

    /// Removes `id` from the chat, if it was logged in, and tells everyone
    /// still here. Safe to call for any id, any number of times: only the
    /// first call for a logged-in connection announces.
    pub fn leave(&mut self, id: ConnId, out: &mut impl Outbox) {
        if let Some(name) = self.users.remove(id) {
            self.broadcast(None, Reply::Disconnected(&name), out);
        }
    }

    /// Removes `id` without telling anyone (a shutdown leaves nobody to tell).
    /// Returns the freed name.
    pub fn remove(&mut self, id: ConnId) -> Option<Box<str>> {
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
        let mut chat = Chat::new();
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
        let mut chat = Chat::new();
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
        let mut chat = Chat::new();
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
}

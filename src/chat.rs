//! The chat state machine: who is logged in under which name, and who
//! receives what. No sockets and no clocks: it is handed lines and writes
//! replies into an [`Outbox`].
//!
//! Invariant: a name is in the registry exactly when its connection is logged
//! in, and the roster holds each logged-in connection exactly once.

use std::collections::HashMap;

use crate::protocol::command::valid_name;
use crate::protocol::{parse, Command, ProtocolError, Reply};

/// Identifies a connection; the server uses its slab key.
pub type ConnId = usize;

/// Where the chat's output goes. The server appends to write buffers; tests record.
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

#[derive(Debug)]
struct Member {
    name: Box<str>,
    roster_pos: usize,
}

/// Registry of logged-in users and the router of MSG, DM, WHO and departures.
#[derive(Debug, Default)]
pub struct Chat {
    /// Indexed by connection id; `Some` while that connection is logged in.
    members: Vec<Option<Member>>,
    /// Logged-in connections, dense, for broadcasts.
    roster: Vec<ConnId>,
    /// Lower-cased name to connection, for uniqueness and DM lookups.
    by_name: HashMap<Box<str>, ConnId>,
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
        self.roster.len()
    }

    /// The name `id` logged in with, if it has.
    pub fn name(&self, id: ConnId) -> Option<&str> {
        self.member(id).map(|m| &*m.name)
    }

    fn member(&self, id: ConnId) -> Option<&Member> {
        self.members.get(id).and_then(Option::as_ref)
    }

    /// Handles one framed line from `id`.
    pub fn on_line(&mut self, id: ConnId, line: &[u8], out: &mut impl Outbox) -> Step {
        match parse(line) {
            Ok(None) => Step::Continue,
            Ok(Some(command)) => self.on_command(id, command, out),
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

    /// Handles one parsed command from `id`.
    pub fn on_command(&mut self, id: ConnId, command: Command<'_>, out: &mut impl Outbox) -> Step {
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
        if self.member(id).is_some() {
            return Err(ProtocolError::AlreadyLoggedIn);
        }
        if !valid_name(name) {
            return Err(ProtocolError::InvalidUsername);
        }
        let folded: Box<str> = name.to_ascii_lowercase().into();
        if self.by_name.contains_key(&folded) {
            return Err(ProtocolError::UsernameTaken);
        }
        self.by_name.insert(folded, id);
        if self.members.len() <= id {
            self.members.resize_with(id + 1, || None);
        }
        self.members[id] = Some(Member {
            name: name.into(),
            roster_pos: self.roster.len(),
        });
        self.roster.push(id);
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
        // Field access, not `self.member`, so `scratch` stays borrowable.
        let member = self.members.get(id).and_then(Option::as_ref);
        let member = member.ok_or(ProtocolError::NotLoggedIn)?;
        if text.is_empty() {
            return Err(ProtocolError::EmptyMessage);
        }
        self.scratch.clear();
        let from = &member.name;
        Reply::Msg { from, text }.write_to(&mut self.scratch);
        send_to_all(&self.roster, Some(id), &self.scratch, out);
        Ok(Step::Continue)
    }

    fn dm(
        &mut self,
        id: ConnId,
        to: &str,
        text: &str,
        out: &mut impl Outbox,
    ) -> Result<Step, ProtocolError> {
        let member = self.members.get(id).and_then(Option::as_ref);
        let member = member.ok_or(ProtocolError::NotLoggedIn)?;
        let target = *self
            .by_name
            .get(to.to_ascii_lowercase().as_str())
            .ok_or(ProtocolError::NoSuchUser)?;
        if text.is_empty() {
            return Err(ProtocolError::EmptyMessage);
        }
        self.scratch.clear();
        let from = &member.name;
        Reply::Dm { from, text }.write_to(&mut self.scratch);
        out.send(target, &self.scratch);
        Ok(Step::Continue)
    }

    fn who(&mut self, id: ConnId, out: &mut impl Outbox) -> Result<Step, ProtocolError> {
        self.member(id).ok_or(ProtocolError::NotLoggedIn)?;
        let mut names: Vec<&str> = self
            .roster
            .iter()
            .filter_map(|&m| self.member(m).map(|m| &*m.name))
            .collect();
        let folded = |s: &str| {
            s.bytes()
                .map(|b| b.to_ascii_lowercase())
                .collect::<Vec<u8>>()
        };
        names.sort_by_cached_key(|name| folded(name));
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
        if let Some(name) = self.remove(id) {
            self.broadcast(None, Reply::Disconnected(&name), out);
        }
    }

    /// Removes `id` without telling anyone (a shutdown leaves nobody to tell).
    /// Returns the freed name.
    pub fn remove(&mut self, id: ConnId) -> Option<Box<str>> {
        let member = self.members.get_mut(id)?.take()?;
        self.by_name
            .remove(member.name.to_ascii_lowercase().as_str());
        self.roster.swap_remove(member.roster_pos);
        if let Some(&moved) = self.roster.get(member.roster_pos) {
            if let Some(m) = self.members[moved].as_mut() {
                m.roster_pos = member.roster_pos;
            }
        }
        Some(member.name)
    }

    fn reply(&mut self, to: ConnId, line: Reply<'_>, out: &mut impl Outbox) {
        self.scratch.clear();
        line.write_to(&mut self.scratch);
        out.send(to, &self.scratch);
    }

    fn broadcast(&mut self, except: Option<ConnId>, line: Reply<'_>, out: &mut impl Outbox) {
        self.scratch.clear();
        line.write_to(&mut self.scratch);
        send_to_all(&self.roster, except, &self.scratch, out);
    }

    /// Checks the registry's invariants; for tests and fuzzing.
    pub fn check_invariants(&self) {
        assert_eq!(self.roster.len(), self.by_name.len());
        for (pos, &id) in self.roster.iter().enumerate() {
            let m = self.member(id).expect("roster entry without member");
            assert_eq!(m.roster_pos, pos);
            assert_eq!(
                self.by_name.get(m.name.to_ascii_lowercase().as_str()),
                Some(&id)
            );
        }
        let members = self.members.iter().filter(|m| m.is_some()).count();
        assert_eq!(members, self.roster.len());
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
            let step = chat.on_line(id, format!("LOGIN {name}").as_bytes(), &mut out);
            assert_eq!(step, Step::LoggedIn);
        }
        out.0.clear();
        (chat, out)
    }

    #[test]
    fn login_announces_to_others_only() {
        let (mut chat, mut out) = setup(&["alice"]);
        assert_eq!(chat.on_line(1, b"login Bob", &mut out), Step::LoggedIn);
        assert_eq!(out.take(1), "OK\n");
        assert_eq!(out.take(0), "INFO Bob joined\n");
        chat.check_invariants();
    }

    #[test]
    fn login_errors() {
        let (mut chat, mut out) = setup(&["Alice"]);
        chat.on_line(1, b"LOGIN alice", &mut out);
        chat.on_line(1, b"LOGIN al ice", &mut out);
        chat.on_line(1, b"LOGIN", &mut out);
        chat.on_line(0, b"LOGIN other", &mut out);
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
        chat.on_line(1, b"MSG  hi  there ", &mut out);
        chat.on_line(9, b"MSG nope", &mut out);
        assert_eq!(out.take(0), "MSG b hi  there\n");
        assert_eq!(out.take(2), "MSG b hi  there\n");
        assert_eq!(out.take(1), "");
        assert_eq!(out.take(9), "ERR not-logged-in\n");
        chat.on_line(1, b"MSG   ", &mut out);
        assert_eq!(out.take(1), "ERR empty-message\n");
    }

    #[test]
    fn dm_reaches_only_the_target() {
        let (mut chat, mut out) = setup(&["a", "Bob", "c"]);
        chat.on_line(0, b"DM bob psst  x", &mut out);
        assert_eq!(out.take(1), "DM a psst  x\n");
        assert!(out.0.is_empty());
        chat.on_line(0, b"DM zed hi", &mut out);
        chat.on_line(0, b"DM bob", &mut out);
        chat.on_line(0, b"DM", &mut out);
        chat.on_line(7, b"DM bob hi", &mut out);
        assert_eq!(
            out.take(0),
            "ERR no-such-user\nERR empty-message\nERR no-such-user\n"
        );
        assert_eq!(out.take(7), "ERR not-logged-in\n");
    }

    #[test]
    fn who_is_sorted_case_insensitively() {
        let (mut chat, mut out) = setup(&["charlie", "Bob", "alice", "_x", "Zed"]);
        chat.on_line(0, b"WHO", &mut out);
        assert_eq!(
            out.take(0),
            "USER _x\nUSER alice\nUSER Bob\nUSER charlie\nUSER Zed\n"
        );
        chat.on_line(9, b"who", &mut out);
        assert_eq!(out.take(9), "ERR not-logged-in\n");
    }

    #[test]
    fn ping_pong_quit_work_before_login() {
        let mut chat = Chat::new();
        let mut out = Recorder::default();
        assert_eq!(chat.on_line(3, b"PING", &mut out), Step::Continue);
        chat.on_line(3, b"PING tok en", &mut out);
        chat.on_line(3, b"PONG", &mut out);
        assert_eq!(chat.on_line(3, b"QUIT bye all", &mut out), Step::Quit);
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
        assert_eq!(chat.on_line(5, b"LOGIN A", &mut out), Step::LoggedIn);
        chat.check_invariants();
        chat.on_line(2, b"MSG x", &mut out);
        assert_eq!(out.take(1), "INFO A joined\nMSG c x\n");
        assert_eq!(out.take(5), "OK\nMSG c x\n");
    }

    #[test]
    fn errors_from_parsing_are_replied() {
        let mut chat = Chat::new();
        let mut out = Recorder::default();
        chat.on_line(0, b"\xff", &mut out);
        chat.on_line(0, b"MSG \x1b", &mut out);
        chat.on_line(0, b"FOO", &mut out);
        chat.on_line(0, b"   ", &mut out);
        chat.on_line_too_long(0, &mut out);
        assert_eq!(
            out.take(0),
            "ERR invalid-utf8\nERR invalid-text\nERR unknown-command\nERR line-too-long\n"
        );
    }
}

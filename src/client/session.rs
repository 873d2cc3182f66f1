//! The client's side of the protocol, without a socket or a terminal: what
//! to send for what the user typed, what to show for what the server said.
//!
//! `Client` owns the `Poll`, the socket and stdin and only moves bytes; every
//! decision (log in, retry a refused name, find where a `WHO` list ends,
//! time a `PING`, answer the server's heartbeat, leave) is made here, driven
//! by lines and an explicit `now`, so it is unit-tested with a fake clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::view::{self, describe_bye, describe_error, name_problem, parse_input, render, Action};
use super::{EXIT_CLOSED, EXIT_OK};
use crate::protocol::text::sanitize;
use crate::protocol::{parse_reply, ByeReason, Command, ProtocolError, Reply};

/// How long to wait for `BYE` after sending `QUIT`.
pub const QUIT_GRACE: Duration = Duration::from_secs(2);

/// Where the conversation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the user to type a name (terminal only).
    AskName,
    /// `LOGIN` sent, waiting for `OK`.
    LoggingIn,
    Chatting,
    /// `QUIT` sent, waiting for `BYE` and the close.
    Quitting,
}

/// Something the terminal side must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Print one line for the user.
    Show(String),
    /// Logged in: prompt for chat lines and read stdin.
    LoggedIn,
    /// The name was refused: prompt for another.
    AskName,
    /// Leaving: stop reading stdin.
    StopInput,
}

/// The protocol state of one `selectchat connect` run.
#[derive(Debug)]
pub struct Session {
    phase: Phase,
    name: String,
    /// A person at a terminal can pick another name; a script cannot.
    interactive: bool,
    to_server: Vec<u8>,
    effects: VecDeque<Effect>,
    /// Numbers the tokens of the client's own PINGs (`p7`, `w8`).
    seq: u64,
    pings: VecDeque<(u64, Instant)>,
    /// The `WHO` being collected: the token of the PING behind it, the names so far.
    who: Option<(u64, Vec<String>)>,
    bye: Option<ByeReason>,
    quit_deadline: Option<Instant>,
    exit: Option<u8>,
}

impl Session {
    /// A session that logs in as `name` at once, or asks for a name first.
    pub fn new(name: Option<String>, interactive: bool) -> Session {
        let mut session = Session {
            phase: Phase::AskName,
            name: String::new(),
            interactive,
            to_server: Vec::new(),
            effects: VecDeque::new(),
            seq: 0,
            pings: VecDeque::new(),
            who: None,
            bye: None,
            quit_deadline: None,
            exit: None,
        };
        if let Some(name) = name {
            session.login(name);
        }
        session
    }

    /// Bytes waiting to go to the server; the caller drains what it wrote.
    pub fn to_server(&mut self) -> &mut Vec<u8> {
        &mut self.to_server
    }

    /// The next thing for the terminal side to do.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// The exit code, once the session is over.
    pub fn exit(&self) -> Option<u8> {
        self.exit
    }

    /// When to give up waiting for the server's `BYE`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.quit_deadline
    }

    /// Ends the session if the quit grace has run out.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.quit_deadline.is_some_and(|t| now >= t) {
            self.exit.get_or_insert(EXIT_OK);
        }
    }

    /// Where the conversation is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The prompt for the current phase.
    pub fn prompt(&self) -> &'static str {
        match self.phase {
            Phase::AskName => "name: ",
            _ => "> ",
        }
    }

    fn send(&mut self, command: Command<'_>) {
        command.write_to(&mut self.to_server);
    }

    fn show(&mut self, text: String) {
        self.effects.push_back(Effect::Show(text));
    }

    fn login(&mut self, name: String) {
        self.send(Command::Login(&name));
        self.name = name;
        self.phase = Phase::LoggingIn;
    }

    /// Sends `QUIT` and waits a little for the server's `BYE`.
    pub fn quit(&mut self, now: Instant) {
        if self.phase == Phase::Quitting || self.exit.is_some() {
            return;
        }
        self.send(Command::Quit(None));
        self.phase = Phase::Quitting;
        self.quit_deadline = Some(now + QUIT_GRACE);
        self.effects.push_back(Effect::StopInput);
    }

    /// One line the user typed.
    pub fn handle_input(&mut self, line: &str, now: Instant) {
        match self.phase {
            Phase::AskName => {
                let name = line.trim();
                match name_problem(name) {
                    Some(problem) => self.show(format!("! {problem}")),
                    None => self.login(name.to_string()),
                }
            }
            Phase::LoggingIn => self.show("! still logging in".into()),
            Phase::Quitting => {}
            Phase::Chatting => self.on_action(parse_input(line), now),
        }
    }

    fn on_action(&mut self, action: Action<'_>, now: Instant) {
        match action {
            Action::Nothing => {}
            Action::Say(text) => {
                self.send(Command::Msg(text));
                self.show(format!("{}: {}", self.name, sanitize(text)));
            }
            Action::Dm { to, text } => {
                self.send(Command::Dm { to, text });
                let (to, text) = (sanitize(to), sanitize(text));
                self.show(format!("[dm to {to}] {}: {text}", self.name));
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
                self.pings.push_back((self.seq, now));
            }
            Action::Quit => self.quit(now),
            Action::Help => {
                for line in view::HELP {
                    self.show((*line).to_string());
                }
            }
            Action::Hint(hint) => self.show(format!("! {hint}")),
        }
    }

    /// One line from the server.
    pub fn handle_line(&mut self, line: &str, now: Instant) {
        let Some(reply) = parse_reply(line) else {
            self.show(sanitize(line).into_owned());
            return;
        };
        match reply {
            Reply::Ping => self.send(Command::Pong),
            Reply::Pong(Some(token)) => self.on_pong(token, now),
            Reply::Pong(None) => {}
            Reply::User(name) => match &mut self.who {
                Some((_, names)) => names.push(sanitize(name).into_owned()),
                None => self.show(format!("* online: {}", sanitize(name))),
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
                    self.show(shown);
                }
            }
        }
    }

    fn on_logged_in(&mut self) {
        self.phase = Phase::Chatting;
        let hint = if self.interactive {
            " (/help lists commands)"
        } else {
            ""
        };
        self.effects.push_back(Effect::LoggedIn);
        self.show(format!("* logged in as {}{hint}", self.name));
    }

    fn on_login_refused(&mut self, e: ProtocolError) {
        self.show(format!("! {}: {}", describe_error(e), self.name));
        if self.interactive {
            self.phase = Phase::AskName;
            self.effects.push_back(Effect::AskName);
        } else {
            self.exit = Some(EXIT_CLOSED);
        }
    }

    fn on_pong(&mut self, token: &str, now: Instant) {
        let (kind, n) = token.split_at(token.len().min(1));
        let Ok(n) = n.parse::<u64>() else { return };
        match kind {
            "w" if self.who.as_ref().is_some_and(|(seq, _)| *seq == n) => {
                let (_, names) = self.who.take().unwrap_or_default();
                self.show(format!("* online ({}): {}", names.len(), names.join(", ")));
            }
            "p" => {
                while let Some((seq, sent)) = self.pings.pop_front() {
                    if seq == n {
                        let ms = now.saturating_duration_since(sent).as_secs_f64() * 1000.0;
                        self.show(format!("* pong from server in {ms:.2} ms"));
                        break;
                    }
                }
            }
            _ => {}
        }
    }

    /// The connection ended (read end, or a failed write).
    pub fn handle_closed(&mut self) {
        if self.exit.is_some() {
            return;
        }
        self.to_server.clear();
        if self.phase == Phase::Quitting {
            self.exit = Some(EXIT_OK);
            return;
        }
        self.show(format!("* disconnected: {}", describe_bye(self.bye)));
        self.exit = Some(EXIT_CLOSED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session with a fake clock, and what it sent and showed.
    struct Pair {
        session: Session,
        now: Instant,
    }

    impl Pair {
        fn new(name: Option<&str>, interactive: bool) -> Pair {
            Pair {
                session: Session::new(name.map(str::to_string), interactive),
                now: Instant::now(),
            }
        }

        fn logged_in(name: &str) -> Pair {
            let mut p = Pair::new(Some(name), false);
            p.server("OK");
            p.sent();
            p.effects();
            p
        }

        fn sent(&mut self) -> String {
            String::from_utf8(std::mem::take(self.session.to_server())).unwrap()
        }

        fn effects(&mut self) -> Vec<Effect> {
            std::iter::from_fn(|| self.session.poll_effect()).collect()
        }

        fn shown(&mut self) -> Vec<String> {
            self.effects()
                .into_iter()
                .filter_map(|e| match e {
                    Effect::Show(s) => Some(s),
                    _ => None,
                })
                .collect()
        }

        fn server(&mut self, line: &str) {
            self.session.handle_line(line, self.now);
        }

        fn typed(&mut self, line: &str) {
            self.session.handle_input(line, self.now);
        }
    }

    #[test]
    fn logs_in_with_the_given_name() {
        let mut p = Pair::new(Some("alice"), false);
        assert_eq!(p.sent(), "LOGIN alice\n");
        assert_eq!(p.session.phase(), Phase::LoggingIn);
        p.typed("too early");
        assert_eq!(p.shown(), ["! still logging in"]);
        assert_eq!(p.sent(), "", "nothing is sent before OK");
        p.server("OK");
        assert_eq!(
            p.effects(),
            [
                Effect::LoggedIn,
                Effect::Show("* logged in as alice".into())
            ]
        );
        assert_eq!(p.session.phase(), Phase::Chatting);
        assert_eq!(p.session.prompt(), "> ");
    }

    #[test]
    fn a_person_is_asked_again_when_the_name_is_refused() {
        let mut p = Pair::new(None, true);
        assert_eq!(p.session.prompt(), "name: ");
        p.typed("no spaces please");
        assert_eq!(p.shown(), ["! a name is 1 to 32 letters, digits, _ or -"]);
        assert_eq!(p.sent(), "");
        p.typed(" bob ");
        assert_eq!(p.sent(), "LOGIN bob\n");
        p.server("ERR username-taken");
        assert_eq!(
            p.effects(),
            [
                Effect::Show("! that name is taken: bob".into()),
                Effect::AskName
            ]
        );
        assert_eq!(p.session.prompt(), "name: ");
        assert_eq!(p.session.exit(), None);
        p.typed("bob2");
        assert_eq!(p.sent(), "LOGIN bob2\n");
        p.server("OK");
        assert_eq!(p.shown(), ["* logged in as bob2 (/help lists commands)"]);
    }

    #[test]
    fn a_script_exits_when_the_name_is_refused() {
        let mut p = Pair::new(Some("bob"), false);
        p.server("ERR username-taken");
        assert_eq!(p.shown(), ["! that name is taken: bob"]);
        assert_eq!(p.session.exit(), Some(EXIT_CLOSED));
    }

    #[test]
    fn who_collects_names_until_its_ping_comes_back() {
        let mut p = Pair::logged_in("alice");
        p.typed("/who");
        assert_eq!(p.sent(), "WHO\nPING w1\n");
        p.server("USER alice");
        p.server("USER bob");
        p.server("PONG p1");
        assert_eq!(p.shown(), Vec::<String>::new(), "not the WHO's token");
        p.server("PONG w1");
        assert_eq!(p.shown(), ["* online (2): alice, bob"]);
        p.server("USER carol");
        assert_eq!(p.shown(), ["* online: carol"], "a USER outside a WHO");
    }

    #[test]
    fn ping_reports_the_round_trip_on_its_own_token() {
        let mut p = Pair::logged_in("alice");
        p.typed("/ping");
        p.typed("/ping");
        assert_eq!(p.sent(), "PING p1\nPING p2\n");
        p.now += Duration::from_millis(12);
        p.server("PONG p2");
        assert_eq!(p.shown(), ["* pong from server in 12.00 ms"]);
        p.server("PONG p1");
        assert_eq!(p.shown(), Vec::<String>::new(), "p1 was passed over");
        p.server("PONG garbage");
        p.server("PONG");
        assert_eq!(p.shown(), Vec::<String>::new());
    }

    #[test]
    fn the_servers_heartbeat_is_answered() {
        let mut p = Pair::logged_in("alice");
        p.server("PING");
        assert_eq!(p.sent(), "PONG\n");
        assert_eq!(p.shown(), Vec::<String>::new());
    }

    #[test]
    fn chat_is_sent_and_echoed_locally_and_events_shown() {
        let mut p = Pair::logged_in("alice");
        p.typed("hello");
        p.typed("/dm bob hi \u{1b}[2J");
        assert_eq!(p.sent(), "MSG hello\nDM bob hi \u{1b}[2J\n");
        p.server("MSG bob hey");
        p.server("INFO carol joined");
        p.server("something odd \u{7}");
        assert_eq!(
            p.shown(),
            [
                "alice: hello",
                "[dm to bob] alice: hi \u{fffd}[2J",
                "bob: hey",
                "* carol joined",
                "something odd \u{fffd}",
            ]
        );
    }

    #[test]
    fn quit_waits_for_the_close_then_exits_cleanly() {
        let mut p = Pair::logged_in("alice");
        p.typed("/quit");
        assert_eq!(p.sent(), "QUIT\n");
        assert_eq!(p.effects(), [Effect::StopInput]);
        p.session.quit(p.now);
        assert_eq!(p.sent(), "", "one QUIT only");
        p.typed("ignored");
        assert_eq!(p.sent(), "");
        p.server("BYE");
        p.session.handle_closed();
        assert_eq!(p.session.exit(), Some(EXIT_OK));
        assert_eq!(p.shown(), Vec::<String>::new());
    }

    #[test]
    fn quit_gives_up_on_a_silent_server_after_the_grace() {
        let mut p = Pair::logged_in("alice");
        p.session.quit(p.now);
        let deadline = p.session.poll_timeout().unwrap();
        assert_eq!(deadline, p.now + QUIT_GRACE);
        p.session
            .handle_timeout(deadline - Duration::from_millis(1));
        assert_eq!(p.session.exit(), None);
        p.session.handle_timeout(deadline);
        assert_eq!(p.session.exit(), Some(EXIT_OK));
    }

    #[test]
    fn a_close_by_the_server_says_why() {
        let mut p = Pair::logged_in("alice");
        p.server("BYE idle-timeout");
        p.typed("unsent");
        p.session.handle_closed();
        assert_eq!(p.session.exit(), Some(EXIT_CLOSED));
        assert_eq!(p.shown(), ["alice: unsent", "* disconnected: idle timeout"]);
        assert_eq!(p.sent(), "", "nothing is left to send");
        let mut lost = Pair::logged_in("bob");
        lost.session.handle_closed();
        assert_eq!(lost.shown(), ["* disconnected: connection lost"]);
    }
}

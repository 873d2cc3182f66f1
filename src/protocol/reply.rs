//! Every line the server writes is formatted here, and nowhere else.
//!
//! A wire string that a test checks (`ERR username-taken\n`) has exactly one
//! twin in the source: in this file.

use std::fmt;

/// A client error; each variant is one `ERR <code>` line on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    LineTooLong,
    InvalidUtf8,
    InvalidText,
    UnknownCommand,
    UsernameTaken,
    InvalidUsername,
    AlreadyLoggedIn,
    NotLoggedIn,
    EmptyMessage,
    NoSuchUser,
}

impl ProtocolError {
    /// Every error, for lookups by wire code.
    pub const ALL: [ProtocolError; 10] = [
        ProtocolError::LineTooLong,
        ProtocolError::InvalidUtf8,
        ProtocolError::InvalidText,
        ProtocolError::UnknownCommand,
        ProtocolError::UsernameTaken,
        ProtocolError::InvalidUsername,
        ProtocolError::AlreadyLoggedIn,
        ProtocolError::NotLoggedIn,
        ProtocolError::EmptyMessage,
        ProtocolError::NoSuchUser,
    ];

    /// The error whose wire code is `code`.
    pub fn from_wire(code: &str) -> Option<ProtocolError> {
        ProtocolError::ALL.into_iter().find(|e| e.as_wire() == code)
    }

    /// The code sent after `ERR `.
    pub fn as_wire(self) -> &'static str {
        match self {
            ProtocolError::LineTooLong => "line-too-long",
            ProtocolError::InvalidUtf8 => "invalid-utf8",
            ProtocolError::InvalidText => "invalid-text",
            ProtocolError::UnknownCommand => "unknown-command",
            ProtocolError::UsernameTaken => "username-taken",
            ProtocolError::InvalidUsername => "invalid-username",
            ProtocolError::AlreadyLoggedIn => "already-logged-in",
            ProtocolError::NotLoggedIn => "not-logged-in",
            ProtocolError::EmptyMessage => "empty-message",
            ProtocolError::NoSuchUser => "no-such-user",
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_wire())
    }
}

impl std::error::Error for ProtocolError {}

/// Why the server is closing a connection, as sent in its last `BYE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByeReason {
    /// The client asked to leave (`QUIT`): a bare `BYE`.
    Quit,
    IdleTimeout,
    LoginTimeout,
    ServerFull,
    ShuttingDown,
    /// Stayed over the flood-control line rate for too long.
    Flooding,
}

impl ByeReason {
    /// Every reason, for lookups by wire word.
    pub const ALL: [ByeReason; 6] = [
        ByeReason::Quit,
        ByeReason::IdleTimeout,
        ByeReason::LoginTimeout,
        ByeReason::ServerFull,
        ByeReason::ShuttingDown,
        ByeReason::Flooding,
    ];

    /// The reason whose wire word is `word` (`None` for a bare `BYE`).
    pub fn from_wire(word: Option<&str>) -> Option<ByeReason> {
        ByeReason::ALL.into_iter().find(|r| r.as_wire() == word)
    }

    /// The reason word after `BYE `, or `None` for a bare `BYE`.
    pub fn as_wire(self) -> Option<&'static str> {
        match self {
            ByeReason::Quit => None,
            ByeReason::IdleTimeout => Some("idle-timeout"),
            ByeReason::LoginTimeout => Some("login-timeout"),
            ByeReason::ServerFull => Some("server-full"),
            ByeReason::ShuttingDown => Some("shutting-down"),
            ByeReason::Flooding => Some("flooding"),
        }
    }
}

/// One server-to-client line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    Ok,
    Err(ProtocolError),
    Joined(&'a str),
    Disconnected(&'a str),
    Msg { from: &'a str, text: &'a str },
    Dm { from: &'a str, text: &'a str },
    User(&'a str),
    Ping,
    Pong(Option<&'a str>),
    Bye(ByeReason),
}

impl Reply<'_> {
    /// Appends the line, `\n` included, to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let parts: [&str; 3] = match *self {
            Reply::Ok => ["OK", "", ""],
            Reply::Err(e) => ["ERR ", e.as_wire(), ""],
            Reply::Joined(name) => ["INFO ", name, " joined"],
            Reply::Disconnected(name) => ["INFO ", name, " disconnected"],
            Reply::Msg { from, text } => return join(out, &["MSG ", from, " ", text]),
            Reply::Dm { from, text } => return join(out, &["DM ", from, " ", text]),
            Reply::User(name) => ["USER ", name, ""],
            Reply::Ping => ["PING", "", ""],
            Reply::Pong(None) => ["PONG", "", ""],
            Reply::Pong(Some(token)) => ["PONG ", token, ""],
            Reply::Bye(reason) => match reason.as_wire() {
                None => ["BYE", "", ""],
                Some(word) => ["BYE ", word, ""],
            },
        };
        join(out, &parts)
    }

    /// The line as bytes, for callers that are not on a hot path.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

/// Parses one server line (without its `\n`), as a client sees it. `None`
/// for anything protocol v1 does not define.
pub fn parse_reply(line: &str) -> Option<Reply<'_>> {
    let (word, rest) = match line.split_once(' ') {
        Some((word, rest)) => (word, Some(rest)),
        None => (line, None),
    };
    Some(match (word, rest) {
        ("OK", None) => Reply::Ok,
        ("ERR", Some(code)) => Reply::Err(ProtocolError::from_wire(code)?),
        ("INFO", rest) => match two(rest)? {
            (name, "joined") => Reply::Joined(name),
            (name, "disconnected") => Reply::Disconnected(name),
            _ => return None,
        },
        ("MSG", rest) => two(rest).map(|(from, text)| Reply::Msg { from, text })?,
        ("DM", rest) => two(rest).map(|(from, text)| Reply::Dm { from, text })?,
        ("USER", Some(name)) => Reply::User(name),
        ("PING", None) => Reply::Ping,
        ("PONG", token) => Reply::Pong(token),
        ("BYE", reason) => Reply::Bye(ByeReason::from_wire(reason)?),
        _ => return None,
    })
}

fn two(rest: Option<&str>) -> Option<(&str, &str)> {
    rest?.split_once(' ')
}

fn join(out: &mut Vec<u8>, parts: &[&str]) {
    out.reserve(parts.iter().map(|p| p.len()).sum::<usize>() + 1);
    for part in parts {
        out.extend_from_slice(part.as_bytes());
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(r: Reply) -> String {
        String::from_utf8(r.to_bytes()).unwrap()
    }

    #[test]
    fn formats_every_line_kind() {
        assert_eq!(s(Reply::Ok), "OK\n");
        assert_eq!(
            s(Reply::Err(ProtocolError::UsernameTaken)),
            "ERR username-taken\n"
        );
        assert_eq!(s(Reply::Joined("bob")), "INFO bob joined\n");
        assert_eq!(s(Reply::Disconnected("bob")), "INFO bob disconnected\n");
        assert_eq!(
            s(Reply::Msg {
                from: "a",
                text: "hi  there"
            }),
            "MSG a hi  there\n"
        );
        assert_eq!(
            s(Reply::Dm {
                from: "a",
                text: "psst"
            }),
            "DM a psst\n"
        );
        assert_eq!(s(Reply::User("Zed")), "USER Zed\n");
        assert_eq!(s(Reply::Ping), "PING\n");
        assert_eq!(s(Reply::Pong(None)), "PONG\n");
        assert_eq!(s(Reply::Pong(Some("42"))), "PONG 42\n");
        assert_eq!(s(Reply::Bye(ByeReason::Quit)), "BYE\n");
        assert_eq!(s(Reply::Bye(ByeReason::IdleTimeout)), "BYE idle-timeout\n");
        assert_eq!(
            s(Reply::Bye(ByeReason::LoginTimeout)),
            "BYE login-timeout\n"
        );
        assert_eq!(s(Reply::Bye(ByeReason::ServerFull)), "BYE server-full\n");
        assert_eq!(
            s(Reply::Bye(ByeReason::ShuttingDown)),
            "BYE shutting-down\n"
        );
    }

    #[test]
    fn wire_codes_are_distinct_and_found_again() {
        for e in ProtocolError::ALL {
            assert_eq!(ProtocolError::from_wire(e.as_wire()), Some(e));
        }
        for r in ByeReason::ALL {
            assert_eq!(ByeReason::from_wire(r.as_wire()), Some(r));
        }
        assert_eq!(ProtocolError::from_wire("nope"), None);
    }

    #[test]
    fn every_reply_parses_back() {
        let mut samples = vec![
            Reply::Ok,
            Reply::Joined("bob"),
            Reply::Disconnected("bob"),
            Reply::Msg {
                from: "a",
                text: "hi  there \t x",
            },
            Reply::Dm {
                from: "a",
                text: "psst",
            },
            Reply::User("Zed"),
            Reply::Ping,
            Reply::Pong(None),
            Reply::Pong(Some("tok en")),
        ];
        samples.extend(ProtocolError::ALL.map(Reply::Err));
        samples.extend(ByeReason::ALL.map(Reply::Bye));
        for reply in samples {
            let bytes = reply.to_bytes();
            let line = std::str::from_utf8(&bytes[..bytes.len() - 1]).unwrap();
            assert_eq!(parse_reply(line), Some(reply), "{line:?}");
        }
        for junk in [
            "",
            "OK then",
            "ERR what",
            "INFO bob left",
            "MSG bob",
            "BYE now",
            "HELLO",
        ] {
            assert_eq!(parse_reply(junk), None, "{junk:?}");
        }
    }
}

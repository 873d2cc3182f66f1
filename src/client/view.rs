//! What the client shows and sends: typed input to actions, server lines to
//! display text. Pure, so every rule here is unit-tested.

use crate::protocol::text::{sanitize, split_word, valid_name};
use crate::protocol::{ByeReason, ProtocolError, Reply};

/// What a line the user typed asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Nothing to do (a blank line).
    Nothing,
    /// Broadcast this text.
    Say(&'a str),
    /// Send a direct message.
    Dm { to: &'a str, text: &'a str },
    /// List who is online.
    Who,
    /// Measure the round trip to the server.
    Ping,
    /// Leave.
    Quit,
    /// Show the command list.
    Help,
    /// A local hint; nothing is sent.
    Hint(String),
}

/// The `/help` text, one command a line.
pub const HELP: &[&str] = &[
    "text            say text to everyone",
    "/dm NAME TEXT   direct message (alias /msg)",
    "/who            who is online",
    "/ping           round-trip time to the server",
    "/quit           leave (also: quit, exit)",
    "//text          say text that starts with /",
];

/// Interprets one typed line.
pub fn parse_input(line: &str) -> Action<'_> {
    let line = line.trim();
    if line.is_empty() {
        return Action::Nothing;
    }
    if line.eq_ignore_ascii_case("quit") || line.eq_ignore_ascii_case("exit") {
        return Action::Quit;
    }
    if line.starts_with("//") {
        return Action::Say(&line[1..]);
    }
    let Some(command) = line.strip_prefix('/') else {
        return Action::Say(line);
    };
    let (word, rest) = split_word(command);
    match word.to_ascii_lowercase().as_str() {
        "dm" | "msg" => {
            let (to, text) = split_word(rest);
            if to.is_empty() || text.is_empty() {
                Action::Hint("usage: /dm NAME TEXT".into())
            } else {
                Action::Dm { to, text }
            }
        }
        "who" => Action::Who,
        "ping" => Action::Ping,
        "quit" | "exit" => Action::Quit,
        "help" | "?" => Action::Help,
        _ => Action::Hint(format!("unknown command /{word}; /help lists the commands")),
    }
}

/// Checks a name before it is sent, so the user hears why at once.
pub fn name_problem(name: &str) -> Option<&'static str> {
    (!valid_name(name)).then_some("a name is 1 to 32 letters, digits, _ or -")
}

/// A readable sentence for a server error.
pub fn describe_error(e: ProtocolError) -> &'static str {
    match e {
        ProtocolError::LineTooLong => "that line was too long for the server",
        ProtocolError::InvalidUtf8 => "that line was not valid UTF-8",
        ProtocolError::InvalidText => "control characters are not allowed",
        ProtocolError::UnknownCommand => "the server did not understand that",
        ProtocolError::UsernameTaken => "that name is taken",
        ProtocolError::InvalidUsername => "a name is 1 to 32 letters, digits, _ or -",
        ProtocolError::AlreadyLoggedIn => "already logged in",
        ProtocolError::NotLoggedIn => "not logged in yet",
        ProtocolError::EmptyMessage => "empty message not sent",
        ProtocolError::NoSuchUser => "no such user",
        ProtocolError::InvalidRoom => "a room is # and 1 to 32 letters, digits, _ or -",
        ProtocolError::AlreadyJoined => "already in that room",
        ProtocolError::TooManyRooms => "in too many rooms already",
        ProtocolError::NotInRoom => "not in that room",
        ProtocolError::NoSuchRoom => "nobody is in that room",
        ProtocolError::BadLimit => "a history limit is 1 to 500",
        ProtocolError::BadId => "a history request needs a message id",
        ProtocolError::BadToken => "that resume token is not valid (any more)",
        ProtocolError::StorageUnavailable => "the server could not store that message",
    }
}

/// Why the server said goodbye, in words.
pub fn describe_bye(reason: Option<ByeReason>) -> &'static str {
    match reason {
        None => "connection lost",
        Some(ByeReason::Quit) => "bye",
        Some(ByeReason::IdleTimeout) => "idle timeout",
        Some(ByeReason::LoginTimeout) => "took too long to log in",
        Some(ByeReason::ServerFull) => "server full",
        Some(ByeReason::ShuttingDown) => "server shutting down",
        Some(ByeReason::Flooding) => "sending too fast",
        Some(ByeReason::Replaced) => "the session was resumed elsewhere",
    }
}

/// The display line for a chat event, or `None` for lines the client
/// handles itself (OK, PING, PONG, USER, BYE) or that confirm what it
/// already showed (SENT).
pub fn render(reply: &Reply<'_>) -> Option<String> {
    let line = match *reply {
        Reply::Said {
            room, from, text, ..
        } => format!("[{room}] {from}: {text}"),
        Reply::EnteredRoom { room, name } => format!("* [{room}] {name} joined"),
        Reply::LeftRoom { room, name } => format!("* [{room}] {name} left"),
        Reply::JoinedRoom { room, members } => format!("* joined {room} ({members} here)"),
        Reply::PartedRoom(room) => format!("* left {room}"),
        Reply::RoomInfo { room, members } => format!("* {room} ({members})"),
        Reply::EndWho(room) => format!("* end of {room}"),
        Reply::Hist {
            room, from, text, ..
        } => format!("[{room}] ({from}): {text}"),
        Reply::Sent { .. } | Reply::EndRooms | Reply::EndHistory(_) | Reply::Token(_) => {
            return None
        }
        Reply::Msg { from, text } => format!("{from}: {text}"),
        Reply::Dm { from, text } => format!("[dm] {from}: {text}"),
        Reply::Joined(name) => format!("* {name} joined"),
        Reply::Disconnected(name) => format!("* {name} disconnected"),
        Reply::Err(e) => format!("! {}", describe_error(e)),
        Reply::Ok | Reply::User(_) | Reply::Ping | Reply::Pong(_) | Reply::Bye(_) => return None,
    };
    Some(sanitize(&line).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_are_said_and_commands_parsed() {
        assert_eq!(parse_input("  hello  there "), Action::Say("hello  there"));
        assert_eq!(parse_input(""), Action::Nothing);
        assert_eq!(
            parse_input("/dm bob  hi there"),
            Action::Dm {
                to: "bob",
                text: "hi there"
            }
        );
        assert_eq!(
            parse_input("/MSG bob hi"),
            Action::Dm {
                to: "bob",
                text: "hi"
            }
        );
        assert_eq!(parse_input("/who"), Action::Who);
        assert_eq!(parse_input("/ping"), Action::Ping);
        assert_eq!(parse_input("/help"), Action::Help);
        for q in ["/quit", "quit", "exit", "EXIT", "/exit"] {
            assert_eq!(parse_input(q), Action::Quit, "{q}");
        }
        assert_eq!(parse_input("//etc/passwd"), Action::Say("/etc/passwd"));
    }

    #[test]
    fn bad_commands_get_local_hints() {
        assert!(matches!(parse_input("/dm bob"), Action::Hint(h) if h.contains("usage")));
        assert!(matches!(parse_input("/dm"), Action::Hint(_)));
        assert!(
            matches!(parse_input("/frobnicate x"), Action::Hint(h) if h.contains("/frobnicate"))
        );
    }

    #[test]
    fn renders_events() {
        assert_eq!(
            render(&Reply::Msg {
                from: "bob",
                text: "hi"
            })
            .unwrap(),
            "bob: hi"
        );
        assert_eq!(
            render(&Reply::Dm {
                from: "bob",
                text: "hi"
            })
            .unwrap(),
            "[dm] bob: hi"
        );
        assert_eq!(render(&Reply::Joined("bob")).unwrap(), "* bob joined");
        assert_eq!(
            render(&Reply::Disconnected("bob")).unwrap(),
            "* bob disconnected"
        );
        assert_eq!(
            render(&Reply::Err(ProtocolError::NoSuchUser)).unwrap(),
            "! no such user"
        );
        assert_eq!(render(&Reply::Ping), None);
    }

    #[test]
    fn renders_room_events_and_hides_confirmations() {
        let said = Reply::Said {
            room: "#rust",
            id: 7,
            from: "bob",
            text: "hi \u{1b}[2J",
        };
        assert_eq!(render(&said).unwrap(), "[#rust] bob: hi \u{fffd}[2J");
        let entered = Reply::EnteredRoom {
            room: "#rust",
            name: "bob",
        };
        assert_eq!(render(&entered).unwrap(), "* [#rust] bob joined");
        let joined = Reply::JoinedRoom {
            room: "#rust",
            members: 3,
        };
        assert_eq!(render(&joined).unwrap(), "* joined #rust (3 here)");
        assert_eq!(
            render(&Reply::Sent {
                room: "#rust",
                id: 7
            }),
            None
        );
        assert_eq!(render(&Reply::EndRooms), None);
        assert_eq!(
            render(&Reply::Err(ProtocolError::TooManyRooms)).unwrap(),
            "! in too many rooms already"
        );
    }

    #[test]
    fn escape_sequences_never_reach_the_terminal() {
        let shown = render(&Reply::Msg {
            from: "evil",
            text: "\u{1b}[2J\u{9b}31m\u{7}x\ty",
        })
        .unwrap();
        assert_eq!(shown, "evil: \u{fffd}[2J\u{fffd}31m\u{fffd}x\ty");
    }
}

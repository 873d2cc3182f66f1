//! What the client shows and sends: typed input to actions, server lines to
//! display text. Pure, so every rule here is unit-tested.

use crate::protocol::text::{split_word, valid_name, valid_room};
use crate::protocol::{ByeReason, ProtocolError};

/// What a line the user typed asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Nothing to do (a blank line).
    Nothing,
    /// Say this text where the user is: the lobby, a room or a DM.
    Say(&'a str),
    /// Send a direct message.
    Dm { to: &'a str, text: &'a str },
    /// Join a room (its name checked).
    Join(&'a str),
    /// Make an invite-only room and join it (`/join #room invite-only`).
    Create(&'a str),
    /// Invite someone to an invite-only room the user owns.
    Invite { room: &'a str, name: &'a str },
    /// Take someone out of an invite-only room the user owns.
    Remove { room: &'a str, name: &'a str },
    /// Leave a room: the one named, or the one being looked at.
    Part(Option<&'a str>),
    /// List the rooms that have members.
    Rooms,
    /// List who is online, or who is in the room being looked at.
    Who,
    /// Load older messages of the room being looked at.
    History(Option<u32>),
    /// Measure the round trip to the server.
    Ping,
    /// Connect again now instead of waiting out the backoff.
    Reconnect,
    /// Close the DM buffer being looked at.
    Close,
    /// Leave.
    Quit,
    /// Show the command list.
    Help,
    /// A local hint; nothing is sent.
    Hint(String),
}

/// The `/help` text, one command a line.
pub const HELP: &[&str] = &[
    "text              say text here (lobby, room or DM)",
    "/join #room       join a room and open its buffer",
    "/join #room invite-only   make a room only those you invite can join",
    "/invite #room NAME, /remove #room NAME   who may be in your invite-only room",
    "/part [#room]     leave this room (or the one named)",
    "/rooms            rooms that have members",
    "/who              who is online (in a room: who is in it)",
    "/dm NAME TEXT     direct message (alias /msg)",
    "/history [N]      load N older messages of this room",
    "/ping             round-trip time to the server",
    "/close            close this DM (in a room: /part)",
    "/reconnect        while offline: try again now",
    "/quit             leave (also: quit, exit)",
    "//text            say text that starts with /",
];

/// Largest `/history` request, the server's limit.
pub const MAX_HISTORY: u32 = 500;

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
        "join" | "j" => match split_word(rest) {
            (room, "") if valid_room(room) => Action::Join(room),
            (room, "invite-only") if valid_room(room) => Action::Create(room),
            ("", _) => Action::Hint("usage: /join #room [invite-only]".into()),
            _ => Action::Hint(describe_error(ProtocolError::InvalidRoom).into()),
        },
        "invite" | "remove" => match split_word(rest) {
            (room, name) if valid_room(room) && valid_name(name) => {
                if word.eq_ignore_ascii_case("invite") {
                    Action::Invite { room, name }
                } else {
                    Action::Remove { room, name }
                }
            }
            _ => Action::Hint(format!("usage: /{} #room NAME", word.to_ascii_lowercase())),
        },
        "part" | "leave" => match rest {
            "" => Action::Part(None),
            room if valid_room(room) => Action::Part(Some(room)),
            _ => Action::Hint(describe_error(ProtocolError::InvalidRoom).into()),
        },
        "rooms" | "list" => Action::Rooms,
        "history" => match rest.parse::<u32>() {
            _ if rest.is_empty() => Action::History(None),
            Ok(n) if (1..=MAX_HISTORY).contains(&n) => Action::History(Some(n)),
            _ => Action::Hint(format!("usage: /history [N], N from 1 to {MAX_HISTORY}")),
        },
        "who" | "names" => Action::Who,
        "ping" => Action::Ping,
        "reconnect" => Action::Reconnect,
        "close" => Action::Close,
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
/// True for a password the server takes for a new account: at least 8
/// bytes, no blank (the protocol separates words with blanks).
pub fn password_ok(password: &str) -> bool {
    password.len() >= 8 && !password.contains([' ', '\t'])
}

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
        ProtocolError::ClusterUnavailable => "the server cannot reach its cluster; try again",
        ProtocolError::BadTag => "the client sent a malformed message tag",
        ProtocolError::PasswordRequired => "that name is registered: give its password",
        ProtocolError::BadPassword => "wrong password",
        ProtocolError::InvalidPassword => "a password needs at least 8 bytes and no spaces",
        ProtocolError::AccountRequired => "this server takes registered names only: /register",
        ProtocolError::NoAccount => "you are logged in without an account",
        ProtocolError::TooManyAttempts => "too many attempts: wait a little and try again",
        ProtocolError::AuthBusy => "the server is busy checking passwords: try again",
        ProtocolError::NotInvited => "that room is invite-only",
        ProtocolError::NotOwner => "only the room's owner can do that",
        ProtocolError::RoomExists => "that room exists already",
        ProtocolError::TooManyAccounts => "the server takes no more accounts",
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
        Some(ByeReason::CutOff) => "the server lost its cluster",
        Some(ByeReason::Kicked) => "an operator ended the connection",
        Some(ByeReason::Restarting) => "the server is restarting",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invite_only_rooms_are_made_and_kept_with_commands() {
        assert_eq!(
            parse_input("/join #team invite-only"),
            Action::Create("#team")
        );
        assert_eq!(
            parse_input("/invite #team bob"),
            Action::Invite {
                room: "#team",
                name: "bob"
            }
        );
        assert_eq!(
            parse_input("/REMOVE #team bob"),
            Action::Remove {
                room: "#team",
                name: "bob"
            }
        );
        assert_eq!(
            parse_input("/invite bob"),
            Action::Hint("usage: /invite #room NAME".into())
        );
        assert!(matches!(
            parse_input("/join #team private"),
            Action::Hint(_)
        ));
    }

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
        assert_eq!(parse_input("/join #Rust"), Action::Join("#Rust"));
        assert_eq!(parse_input("/part"), Action::Part(None));
        assert_eq!(parse_input("/PART #rust"), Action::Part(Some("#rust")));
        assert_eq!(parse_input("/rooms"), Action::Rooms);
        assert_eq!(parse_input("/history"), Action::History(None));
        assert_eq!(parse_input("/history 20"), Action::History(Some(20)));
    }

    #[test]
    fn bad_commands_get_local_hints() {
        assert!(matches!(parse_input("/dm bob"), Action::Hint(h) if h.contains("usage")));
        assert!(matches!(parse_input("/dm"), Action::Hint(_)));
        assert!(
            matches!(parse_input("/frobnicate x"), Action::Hint(h) if h.contains("/frobnicate"))
        );
        for bad in [
            "/join rust",
            "/join #a b",
            "/join",
            "/part x",
            "/history 0",
            "/history 501",
            "/history x",
        ] {
            assert!(matches!(parse_input(bad), Action::Hint(_)), "{bad}");
        }
    }
}

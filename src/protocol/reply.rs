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
    /// v2: not `#` and 1 to 32 name characters.
    InvalidRoom,
    AlreadyJoined,
    /// v2: already in `--max-rooms` rooms.
    TooManyRooms,
    NotInRoom,
    /// v2: `WHO` of a room nobody is in.
    NoSuchRoom,
    /// v2: a `HISTORY` limit that is not 1 to 500.
    BadLimit,
    /// v2: a `HISTORY` `AFTER`/`BEFORE` without a message id.
    BadId,
    /// v2: a `RESUME` token that is wrong, replaced or expired.
    BadToken,
    /// v2: the message store could not take the message (or answer).
    StorageUnavailable,
    /// Clusters: the cluster's log or name registry could not be reached.
    ClusterUnavailable,
    /// v2: a `SAY <room>/<tag>` tag that is not 1 to 32 letters, digits, `_` or `-`.
    BadTag,
    /// Accounts: `LOGIN <name>` of a registered name.
    PasswordRequired,
    /// Accounts: a password that does not match.
    BadPassword,
    /// Accounts: a new password shorter than 8 bytes, or with a blank in it.
    InvalidPassword,
    /// Accounts: `LOGIN <name>` of a name with no account on a server run
    /// with `--accounts required`.
    AccountRequired,
    /// Accounts: `PASSWORD` from a user logged in without an account.
    NoAccount,
    /// Accounts: too many wrong passwords for this name or from this
    /// address lately, or another attempt on the name is under way.
    TooManyAttempts,
    /// Accounts: the password hasher has as much work as it takes.
    AuthBusy,
    /// Invite-only rooms: `JOIN` of a room the user was not invited to.
    NotInvited,
    /// Invite-only rooms: `INVITE` or `REMOVE` by someone not its owner.
    NotOwner,
    /// Invite-only rooms: `JOIN <room> invite-only` of a room that exists.
    RoomExists,
    /// Accounts: the server holds `--max-accounts` accounts already.
    TooManyAccounts,
}

impl ProtocolError {
    /// Every error, for lookups by wire code.
    pub const ALL: [ProtocolError; 32] = [
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
        ProtocolError::InvalidRoom,
        ProtocolError::AlreadyJoined,
        ProtocolError::TooManyRooms,
        ProtocolError::NotInRoom,
        ProtocolError::NoSuchRoom,
        ProtocolError::BadLimit,
        ProtocolError::BadId,
        ProtocolError::BadToken,
        ProtocolError::StorageUnavailable,
        ProtocolError::ClusterUnavailable,
        ProtocolError::BadTag,
        ProtocolError::PasswordRequired,
        ProtocolError::BadPassword,
        ProtocolError::InvalidPassword,
        ProtocolError::AccountRequired,
        ProtocolError::NoAccount,
        ProtocolError::TooManyAttempts,
        ProtocolError::AuthBusy,
        ProtocolError::NotInvited,
        ProtocolError::NotOwner,
        ProtocolError::RoomExists,
        ProtocolError::TooManyAccounts,
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
            ProtocolError::InvalidRoom => "invalid-room",
            ProtocolError::AlreadyJoined => "already-joined",
            ProtocolError::TooManyRooms => "too-many-rooms",
            ProtocolError::NotInRoom => "not-in-room",
            ProtocolError::NoSuchRoom => "no-such-room",
            ProtocolError::BadLimit => "bad-limit",
            ProtocolError::BadId => "bad-id",
            ProtocolError::BadToken => "bad-token",
            ProtocolError::StorageUnavailable => "storage-unavailable",
            ProtocolError::ClusterUnavailable => "cluster-unavailable",
            ProtocolError::BadTag => "bad-tag",
            ProtocolError::PasswordRequired => "password-required",
            ProtocolError::BadPassword => "bad-password",
            ProtocolError::InvalidPassword => "invalid-password",
            ProtocolError::AccountRequired => "account-required",
            ProtocolError::NoAccount => "no-account",
            ProtocolError::TooManyAttempts => "too-many-attempts",
            ProtocolError::AuthBusy => "auth-busy",
            ProtocolError::NotInvited => "not-invited",
            ProtocolError::NotOwner => "not-owner",
            ProtocolError::RoomExists => "room-exists",
            ProtocolError::TooManyAccounts => "too-many-accounts",
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
    /// v2: another connection took the session over with `RESUME`.
    Replaced,
    /// Clusters: this node lost the cluster for too long; reconnect (to
    /// another node) and `RESUME`.
    CutOff,
    /// An operator ended the connection (`selectchat ctl kick`).
    Kicked,
    /// The server is draining for a restart: reconnect (with a little
    /// jitter) and `RESUME`.
    Restarting,
}

impl ByeReason {
    /// Every reason, for lookups by wire word.
    pub const ALL: [ByeReason; 10] = [
        ByeReason::Quit,
        ByeReason::IdleTimeout,
        ByeReason::LoginTimeout,
        ByeReason::ServerFull,
        ByeReason::ShuttingDown,
        ByeReason::Flooding,
        ByeReason::Replaced,
        ByeReason::CutOff,
        ByeReason::Kicked,
        ByeReason::Restarting,
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
            ByeReason::Replaced => Some("replaced"),
            ByeReason::CutOff => Some("cut-off"),
            ByeReason::Kicked => Some("kicked"),
            ByeReason::Restarting => Some("restarting"),
        }
    }
}

/// A message id: unique across the server, increasing in the order
/// messages are accepted.
pub type MessageId = u64;

/// One server-to-client line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    Ok,
    Err(ProtocolError),
    /// `INFO <name> joined`: a login, told to the lobby.
    Joined(&'a str),
    /// `INFO <name> disconnected`: a departure, told to the lobby.
    Disconnected(&'a str),
    Msg {
        from: &'a str,
        text: &'a str,
    },
    Dm {
        from: &'a str,
        text: &'a str,
    },
    User(&'a str),
    Ping,
    Pong(Option<&'a str>),
    Bye(ByeReason),
    /// v2 `JOINED <room> <members>`, to the one who joined.
    JoinedRoom {
        room: &'a str,
        members: usize,
    },
    /// v2 `PARTED <room>`, to the one who left.
    PartedRoom(&'a str),
    /// v2 `SENT <room> <id>`: the sender's message was accepted as `id`.
    Sent {
        room: &'a str,
        id: MessageId,
    },
    /// v2 `SAY <room> <id> <name> <text>`, to the room's other members.
    Said {
        room: &'a str,
        id: MessageId,
        from: &'a str,
        text: &'a str,
    },
    /// v2 `ROOM <room> <members>`, one line of a `ROOMS` list.
    RoomInfo {
        room: &'a str,
        members: usize,
    },
    /// v2 `END ROOMS`: the `ROOMS` list is over.
    EndRooms,
    /// v2 `END WHO <room>`: the room's `WHO` list is over.
    EndWho(&'a str),
    /// v2 `INFO <room> <name> joined`, to the room's members.
    EnteredRoom {
        room: &'a str,
        name: &'a str,
    },
    /// v2 `INFO <room> <name> left`, to the room's members.
    LeftRoom {
        room: &'a str,
        name: &'a str,
    },
    /// v2 `HIST <room> <id> <unix-ms> <name> <text>`: one stored message.
    Hist {
        room: &'a str,
        id: MessageId,
        ms: u64,
        from: &'a str,
        text: &'a str,
    },
    /// v2 `END HISTORY <room>`: the `HISTORY` answer is over.
    EndHistory(&'a str),
    /// v2 `END HISTORY <room> MORE`: a `RESUME` replay of `<room>` is cut
    /// at its limit; more missed messages follow its last id.
    MoreHistory(&'a str),
    /// v2 `TOKEN <token>`: the name's resume token.
    Token(&'a str),
    /// `NOTICE <text>`: a word from the server's operator.
    Notice(&'a str),
    /// Accounts: `UNREAD @<peer> <count> <after>` after `OK`: the
    /// conversation with `<peer>` holds `<count>` messages from them after
    /// the read mark `<after>`.
    Unread {
        peer: &'a str,
        count: u64,
        after: MessageId,
    },
    /// Accounts: `END UNREAD`, after the last `UNREAD` line.
    EndUnread,
    /// Invite-only rooms: `INVITED <room> <name>`, the answer to `INVITE`.
    Invited {
        room: &'a str,
        name: &'a str,
    },
    /// Invite-only rooms: `REMOVED <room> <name>`, the answer to `REMOVE`.
    Removed {
        room: &'a str,
        name: &'a str,
    },
    /// Invite-only rooms: `INVITE <room> <owner>`, to someone just invited.
    InvitedBy {
        room: &'a str,
        owner: &'a str,
    },
}

impl Reply<'_> {
    /// Appends the line, `\n` included, to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let number;
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
            Reply::JoinedRoom { room, members } => {
                number = Digits::new(members as u64);
                return join(out, &["JOINED ", room, " ", number.as_str()]);
            }
            Reply::PartedRoom(room) => ["PARTED ", room, ""],
            Reply::Sent { room, id } => {
                number = Digits::new(id);
                return join(out, &["SENT ", room, " ", number.as_str()]);
            }
            Reply::Said {
                room,
                id,
                from,
                text,
            } => {
                number = Digits::new(id);
                return join(
                    out,
                    &["SAY ", room, " ", number.as_str(), " ", from, " ", text],
                );
            }
            Reply::RoomInfo { room, members } => {
                number = Digits::new(members as u64);
                return join(out, &["ROOM ", room, " ", number.as_str()]);
            }
            Reply::EndRooms => ["END ROOMS", "", ""],
            Reply::EndWho(room) => ["END WHO ", room, ""],
            Reply::EnteredRoom { room, name } => {
                return join(out, &["INFO ", room, " ", name, " joined"])
            }
            Reply::LeftRoom { room, name } => {
                return join(out, &["INFO ", room, " ", name, " left"])
            }
            Reply::Hist {
                room,
                id,
                ms,
                from,
                text,
            } => {
                let (id, ms) = (Digits::new(id), Digits::new(ms));
                return join(
                    out,
                    &[
                        "HIST ",
                        room,
                        " ",
                        id.as_str(),
                        " ",
                        ms.as_str(),
                        " ",
                        from,
                        " ",
                        text,
                    ],
                );
            }
            Reply::EndHistory(room) => ["END HISTORY ", room, ""],
            Reply::MoreHistory(room) => ["END HISTORY ", room, " MORE"],
            Reply::Token(token) => ["TOKEN ", token, ""],
            Reply::Notice(text) => ["NOTICE ", text, ""],
            Reply::Unread { peer, count, after } => {
                let (count, after) = (Digits::new(count), Digits::new(after));
                return join(
                    out,
                    &["UNREAD @", peer, " ", count.as_str(), " ", after.as_str()],
                );
            }
            Reply::EndUnread => ["END UNREAD", "", ""],
            Reply::Invited { room, name } => return join(out, &["INVITED ", room, " ", name]),
            Reply::Removed { room, name } => return join(out, &["REMOVED ", room, " ", name]),
            Reply::InvitedBy { room, owner } => return join(out, &["INVITE ", room, " ", owner]),
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
/// for anything the protocol does not define.
pub fn parse_reply(line: &str) -> Option<Reply<'_>> {
    let (word, rest) = match line.split_once(' ') {
        Some((word, rest)) => (word, Some(rest)),
        None => (line, None),
    };
    Some(match (word, rest) {
        ("OK", None) => Reply::Ok,
        ("ERR", Some(code)) => Reply::Err(ProtocolError::from_wire(code)?),
        ("INFO", Some(rest)) if rest.starts_with('#') => {
            let (room, rest) = rest.split_once(' ')?;
            match rest.split_once(' ')? {
                (name, "joined") => Reply::EnteredRoom { room, name },
                (name, "left") => Reply::LeftRoom { room, name },
                _ => return None,
            }
        }
        ("INFO", rest) => match two(rest)? {
            (name, "joined") => Reply::Joined(name),
            (name, "disconnected") => Reply::Disconnected(name),
            _ => return None,
        },
        ("JOINED", rest) => {
            let (room, members) = two(rest)?;
            Reply::JoinedRoom {
                room,
                members: members.parse().ok()?,
            }
        }
        ("PARTED", Some(room)) => Reply::PartedRoom(room),
        ("SENT", rest) => {
            let (room, id) = two(rest)?;
            Reply::Sent {
                room,
                id: id.parse().ok()?,
            }
        }
        ("SAY", rest) => {
            let (room, rest) = two(rest)?;
            let (id, rest) = rest.split_once(' ')?;
            let (from, text) = rest.split_once(' ')?;
            Reply::Said {
                room,
                id: id.parse().ok()?,
                from,
                text,
            }
        }
        ("ROOM", rest) => {
            let (room, members) = two(rest)?;
            Reply::RoomInfo {
                room,
                members: members.parse().ok()?,
            }
        }
        ("END", Some("ROOMS")) => Reply::EndRooms,
        ("END", Some("UNREAD")) => Reply::EndUnread,
        ("INVITED", rest) => two(rest).map(|(room, name)| Reply::Invited { room, name })?,
        ("REMOVED", rest) => two(rest).map(|(room, name)| Reply::Removed { room, name })?,
        ("INVITE", rest) => two(rest).map(|(room, owner)| Reply::InvitedBy { room, owner })?,
        ("UNREAD", rest) => {
            let (peer, rest) = two(rest)?;
            let (count, after) = rest.split_once(' ')?;
            Reply::Unread {
                peer: peer.strip_prefix('@')?,
                count: count.parse().ok()?,
                after: after.parse().ok()?,
            }
        }
        ("END", Some(rest)) => match rest.split_once(' ')? {
            ("WHO", room) => Reply::EndWho(room),
            ("HISTORY", room) => match room.strip_suffix(" MORE") {
                Some(room) => Reply::MoreHistory(room),
                None => Reply::EndHistory(room),
            },
            _ => return None,
        },
        ("HIST", rest) => {
            let (room, rest) = two(rest)?;
            let (id, rest) = rest.split_once(' ')?;
            let (ms, rest) = rest.split_once(' ')?;
            let (from, text) = rest.split_once(' ')?;
            Reply::Hist {
                room,
                id: id.parse().ok()?,
                ms: ms.parse().ok()?,
                from,
                text,
            }
        }
        ("TOKEN", Some(token)) => Reply::Token(token),
        ("NOTICE", Some(text)) => Reply::Notice(text),
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

/// A number's decimal digits, formatted without allocating.
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn new(mut n: u64) -> Digits {
        let mut d = Digits {
            buf: [b'0'; 20],
            start: 20,
        };
        loop {
            d.start -= 1;
            d.buf[d.start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                return d;
            }
        }
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits were written.
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or("0")
    }
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
    fn formats_every_v2_line_kind() {
        let room = "#Rust";
        assert_eq!(
            s(Reply::JoinedRoom { room, members: 12 }),
            "JOINED #Rust 12\n"
        );
        assert_eq!(s(Reply::PartedRoom(room)), "PARTED #Rust\n");
        assert_eq!(s(Reply::Sent { room, id: 0 }), "SENT #Rust 0\n");
        assert_eq!(
            s(Reply::Said {
                room,
                id: u64::MAX,
                from: "bob",
                text: "hi  there"
            }),
            "SAY #Rust 18446744073709551615 bob hi  there\n"
        );
        assert_eq!(s(Reply::RoomInfo { room, members: 3 }), "ROOM #Rust 3\n");
        assert_eq!(s(Reply::EndRooms), "END ROOMS\n");
        assert_eq!(s(Reply::EndWho(room)), "END WHO #Rust\n");
        assert_eq!(
            s(Reply::EnteredRoom { room, name: "bob" }),
            "INFO #Rust bob joined\n"
        );
        assert_eq!(
            s(Reply::LeftRoom { room, name: "bob" }),
            "INFO #Rust bob left\n"
        );
        assert_eq!(
            s(Reply::Err(ProtocolError::TooManyRooms)),
            "ERR too-many-rooms\n"
        );
        assert_eq!(
            s(Reply::Hist {
                room,
                id: 3,
                ms: 1_764_000_000_123,
                from: "bob",
                text: " hi ",
            }),
            "HIST #Rust 3 1764000000123 bob  hi \n"
        );
        assert_eq!(s(Reply::EndHistory(room)), "END HISTORY #Rust\n");
        assert_eq!(s(Reply::Token("ab")), "TOKEN ab\n");
        assert_eq!(s(Reply::Bye(ByeReason::Replaced)), "BYE replaced\n");
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
            Reply::JoinedRoom {
                room: "#a",
                members: 7,
            },
            Reply::PartedRoom("#a"),
            Reply::Sent { room: "#a", id: 42 },
            Reply::Said {
                room: "#a",
                id: 42,
                from: "bob",
                text: "x  y\tz",
            },
            Reply::RoomInfo {
                room: "#a",
                members: 1,
            },
            Reply::EndRooms,
            Reply::EndWho("#a"),
            Reply::EnteredRoom {
                room: "#a",
                name: "bob",
            },
            Reply::LeftRoom {
                room: "#a",
                name: "bob",
            },
            Reply::Hist {
                room: "#a",
                id: 9,
                ms: 1_764_000_000_000,
                from: "bob",
                text: "x  y",
            },
            Reply::EndHistory("#a"),
            Reply::MoreHistory("#a"),
            Reply::Token("0123456789abcdef0123456789abcdef"),
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
            "JOINED #a many",
            "SAY #a x bob hi",
            "INFO #a bob waved",
            "END WHAT",
        ] {
            assert_eq!(parse_reply(junk), None, "{junk:?}");
        }
    }
}

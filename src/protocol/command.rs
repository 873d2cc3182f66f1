//! Parses one framed line into a [`Command`], or the error the client gets.
//!
//! The checks run in wire order: UTF-8, then control characters, then the
//! command word. Arguments borrow from the line; nothing is allocated.

use super::reply::MessageId;
use super::text::{has_forbidden, is_blank, split_word};
use super::ProtocolError;

/// A client request, borrowing its arguments from the received line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `LOGIN <name>`: the name is checked by the chat, which knows what is taken.
    Login(&'a str),
    /// `LOGIN <name> <password>` (accounts). A v1 server read this line as
    /// one name with a blank in it; for a name with no account the chat
    /// still answers `ERR invalid-username`.
    LoginWith { name: &'a str, password: &'a str },
    /// `REGISTER <name> <password>` (accounts): create an account and log in.
    Register { name: &'a str, password: &'a str },
    /// `PASSWORD <old> <new>` (accounts).
    Password { old: &'a str, new: &'a str },
    /// `READ @<peer> <id>` (accounts): the conversation is read up to `<id>`.
    Read { peer: &'a str, id: &'a str },
    /// `INVITE <room> <name>` (accounts): the owner of an invite-only room
    /// makes `<name>` a member.
    Invite { room: &'a str, name: &'a str },
    /// `REMOVE <room> <name>` (accounts): the owner takes a member out.
    Remove { room: &'a str, name: &'a str },
    /// `MSG <text>`; the text may be empty, which the chat refuses.
    Msg(&'a str),
    /// `DM <name> <text>`.
    Dm { to: &'a str, text: &'a str },
    /// `WHO`; any arguments but a room are ignored.
    Who,
    /// `JOIN <room>` (v2); the room is checked by the chat.
    Join(&'a str),
    /// `PART <room>` (v2).
    Part(&'a str),
    /// `SAY <room> <text>` (v2), or `SAY <room>/<tag> <text>`: a tagged
    /// `SAY` resent with the same tag is not said twice.
    Say {
        room: &'a str,
        tag: Option<&'a str>,
        text: &'a str,
    },
    /// `ROOMS` (v2); any arguments are ignored.
    Rooms,
    /// `WHO <room>` (v2): an argument that starts with `#`.
    WhoIn(&'a str),
    /// `HISTORY <room> [AFTER <id> | BEFORE <id>] [<limit>]` (v2). The
    /// arguments after the room are read by [`HistoryQuery::parse`] once the
    /// chat has checked the room, so errors come in the documented order.
    History { room: &'a str, args: &'a str },
    /// `TOKEN` (v2): ask for a resume token.
    Token,
    /// `RESUME <name> <token> [<room>:<last-id> ...]` (v2): take a dropped
    /// session back; `replay` (empty in the bare form) lists the rooms whose
    /// missed messages follow the `JOINED` lines, each with the last id the
    /// client saw.
    Resume {
        name: &'a str,
        token: &'a str,
        replay: &'a str,
    },
    /// `PING [token]`.
    Ping(Option<&'a str>),
    /// `PONG [token]`: an answer to the server's heartbeat.
    Pong,
    /// `QUIT [reason]`.
    Quit(Option<&'a str>),
}

impl Command<'_> {
    /// The command words, numbered as [`Command::word`] numbers them (the
    /// metrics count lines by word).
    pub const WORDS: [&'static str; 19] = [
        "LOGIN", "MSG", "DM", "WHO", "JOIN", "PART", "SAY", "ROOMS", "HISTORY", "TOKEN", "RESUME",
        "PING", "PONG", "QUIT", "REGISTER", "PASSWORD", "READ", "INVITE", "REMOVE",
    ];

    /// The index of this command's word in [`Command::WORDS`].
    pub fn word(&self) -> usize {
        match self {
            Command::Login(_) | Command::LoginWith { .. } => 0,
            Command::Msg(_) => 1,
            Command::Dm { .. } => 2,
            Command::Who | Command::WhoIn(_) => 3,
            Command::Join(_) => 4,
            Command::Part(_) => 5,
            Command::Say { .. } => 6,
            Command::Rooms => 7,
            Command::History { .. } => 8,
            Command::Token => 9,
            Command::Resume { .. } => 10,
            Command::Ping(_) => 11,
            Command::Pong => 12,
            Command::Quit(_) => 13,
            Command::Register { .. } => 14,
            Command::Password { .. } => 15,
            Command::Read { .. } => 16,
            Command::Invite { .. } => 17,
            Command::Remove { .. } => 18,
        }
    }

    /// Appends the line a client sends for this command, `\n` included.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        if let Command::Say {
            room,
            tag: Some(tag),
            text,
        } = *self
        {
            for part in ["SAY ", room, "/", tag, " ", text, "\n"] {
                out.extend_from_slice(part.as_bytes());
            }
            return;
        }
        let args: [&str; 3] = match *self {
            Command::Login(name) => [name, "", ""],
            Command::LoginWith { name, password } | Command::Register { name, password } => {
                [name, password, ""]
            }
            Command::Password { old, new } => [old, new, ""],
            Command::Read { peer, id } => [peer, id, ""],
            Command::Invite { room, name } | Command::Remove { room, name } => [room, name, ""],
            Command::Msg(text) => [text, "", ""],
            Command::Dm { to, text } => [to, text, ""],
            Command::Who | Command::Rooms | Command::Token | Command::Pong => ["", "", ""],
            Command::Join(room) | Command::Part(room) | Command::WhoIn(room) => [room, "", ""],
            Command::Say { room, text, .. } => [room, text, ""],
            Command::History { room, args } => [room, args, ""],
            Command::Resume {
                name,
                token,
                replay,
            } => [name, token, replay],
            Command::Ping(token) => [token.unwrap_or(""), "", ""],
            Command::Quit(reason) => [reason.unwrap_or(""), "", ""],
        };
        let word = Command::WORDS[self.word()];
        out.extend_from_slice(word.as_bytes());
        for arg in args.iter().filter(|a| !a.is_empty()) {
            out.push(b' ');
            out.extend_from_slice(arg.as_bytes());
        }
        out.push(b'\n');
    }
}

/// Where a `HISTORY` request reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// The latest messages.
    Latest,
    /// The first messages with a greater id.
    After(MessageId),
    /// The last messages with a smaller id.
    Before(MessageId),
}

/// The arguments of a `HISTORY` request after its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    pub anchor: Anchor,
    /// How many messages at most: 1 to [`HistoryQuery::MAX_LIMIT`].
    pub limit: usize,
}

impl HistoryQuery {
    /// The limit when none is given.
    pub const DEFAULT_LIMIT: usize = 50;
    /// The largest limit a client may ask for.
    pub const MAX_LIMIT: usize = 500;

    /// Reads `[AFTER <id> | BEFORE <id>] [<limit>]`.
    pub fn parse(args: &str) -> Result<HistoryQuery, ProtocolError> {
        let (first, rest) = split_word(args);
        let (anchor, limit) = if first.eq_ignore_ascii_case("AFTER") {
            let (at, rest) = id_then(rest)?;
            (Anchor::After(at), rest)
        } else if first.eq_ignore_ascii_case("BEFORE") {
            let (at, rest) = id_then(rest)?;
            (Anchor::Before(at), rest)
        } else {
            (Anchor::Latest, args)
        };
        let limit = match limit {
            "" => HistoryQuery::DEFAULT_LIMIT,
            limit => digits(limit)
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| (1..=HistoryQuery::MAX_LIMIT).contains(n))
                .ok_or(ProtocolError::BadLimit)?,
        };
        Ok(HistoryQuery { anchor, limit })
    }
}

/// A message id and what follows it.
fn id_then(args: &str) -> Result<(MessageId, &str), ProtocolError> {
    let (id, rest) = split_word(args);
    Ok((digits(id).ok_or(ProtocolError::BadId)?, rest))
}

/// A decimal number of ASCII digits only (no sign, no spaces).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn optional(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Parses a line (without its line end). `Ok(None)` is a blank line, which gets no reply.
pub fn parse(line: &[u8]) -> Result<Option<Command<'_>>, ProtocolError> {
    let text = std::str::from_utf8(line).map_err(|_| ProtocolError::InvalidUtf8)?;
    if has_forbidden(text) {
        return Err(ProtocolError::InvalidText);
    }
    let text = text.trim_matches(is_blank);
    if text.is_empty() {
        return Ok(None);
    }
    let (word, rest) = split_word(text);
    let is = |name: &str| word.eq_ignore_ascii_case(name);
    let command = if is("LOGIN") {
        match split_word(rest) {
            (name, "") => Command::Login(name),
            (name, password) => Command::LoginWith { name, password },
        }
    } else if is("REGISTER") {
        let (name, password) = split_word(rest);
        Command::Register { name, password }
    } else if is("PASSWORD") {
        let (old, new) = split_word(rest);
        Command::Password { old, new }
    } else if is("READ") {
        let (peer, id) = split_word(rest);
        Command::Read { peer, id }
    } else if is("INVITE") {
        let (room, name) = split_word(rest);
        Command::Invite { room, name }
    } else if is("REMOVE") {
        let (room, name) = split_word(rest);
        Command::Remove { room, name }
    } else if is("MSG") {
        Command::Msg(rest)
    } else if is("DM") {
        let (to, text) = split_word(rest);
        Command::Dm { to, text }
    } else if is("WHO") {
        // v1 ignores WHO's arguments; only a `#` makes it a room's list.
        if rest.starts_with('#') {
            Command::WhoIn(rest)
        } else {
            Command::Who
        }
    } else if is("JOIN") {
        Command::Join(rest)
    } else if is("PART") {
        Command::Part(rest)
    } else if is("SAY") {
        let (room, text) = split_word(rest);
        // A room name holds no `/`: what follows one is a tag.
        let (room, tag) = match room.split_once('/') {
            Some((room, tag)) => (room, Some(tag)),
            None => (room, None),
        };
        Command::Say { room, tag, text }
    } else if is("ROOMS") {
        Command::Rooms
    } else if is("HISTORY") {
        let (room, args) = split_word(rest);
        Command::History { room, args }
    } else if is("TOKEN") {
        Command::Token
    } else if is("RESUME") {
        let (name, rest) = split_word(rest);
        let (token, replay) = split_word(rest);
        Command::Resume {
            name,
            token,
            replay,
        }
    } else if is("PING") {
        Command::Ping(optional(rest))
    } else if is("PONG") {
        Command::Pong
    } else if is("QUIT") {
        Command::Quit(optional(rest))
    } else {
        return Err(ProtocolError::UnknownCommand);
    };
    Ok(Some(command))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProtocolError::*;

    fn p(line: &str) -> Result<Option<Command<'_>>, ProtocolError> {
        parse(line.as_bytes())
    }

    #[test]
    fn parses_every_command_case_insensitively() {
        assert_eq!(p("LOGIN alice"), Ok(Some(Command::Login("alice"))));
        assert_eq!(p("login alice"), Ok(Some(Command::Login("alice"))));
        assert_eq!(
            p("MsG  hello   world "),
            Ok(Some(Command::Msg("hello   world")))
        );
        assert_eq!(
            p("dm bob \t hi  there"),
            Ok(Some(Command::Dm {
                to: "bob",
                text: "hi  there"
            }))
        );
        assert_eq!(p("WHO"), Ok(Some(Command::Who)));
        assert_eq!(p("who extra"), Ok(Some(Command::Who)));
        assert_eq!(p("who #Rust"), Ok(Some(Command::WhoIn("#Rust"))));
        assert_eq!(p("WHO # x"), Ok(Some(Command::WhoIn("# x"))));
        assert_eq!(p("join #a"), Ok(Some(Command::Join("#a"))));
        assert_eq!(p("JOIN #a b"), Ok(Some(Command::Join("#a b"))));
        assert_eq!(p("Part  #a "), Ok(Some(Command::Part("#a"))));
        assert_eq!(
            p("say #a  hi  there "),
            Ok(Some(Command::Say {
                room: "#a",
                tag: None,
                text: "hi  there"
            }))
        );
        assert_eq!(
            p("SAY #a/t-1 hi/there"),
            Ok(Some(Command::Say {
                room: "#a",
                tag: Some("t-1"),
                text: "hi/there"
            }))
        );
        assert_eq!(
            p("SAY"),
            Ok(Some(Command::Say {
                room: "",
                tag: None,
                text: ""
            }))
        );
        assert_eq!(p("rooms please"), Ok(Some(Command::Rooms)));
        assert_eq!(p("PING"), Ok(Some(Command::Ping(None))));
        assert_eq!(p("ping abc 1"), Ok(Some(Command::Ping(Some("abc 1")))));
        assert_eq!(p("PONG 7"), Ok(Some(Command::Pong)));
        assert_eq!(p("QUIT"), Ok(Some(Command::Quit(None))));
        assert_eq!(
            p("\tquit  gone home "),
            Ok(Some(Command::Quit(Some("gone home"))))
        );
    }

    #[test]
    fn empty_arguments_are_empty_strings() {
        assert_eq!(p("MSG"), Ok(Some(Command::Msg(""))));
        assert_eq!(p("MSG    "), Ok(Some(Command::Msg(""))));
        assert_eq!(p("DM"), Ok(Some(Command::Dm { to: "", text: "" })));
        assert_eq!(
            p("DM bob"),
            Ok(Some(Command::Dm {
                to: "bob",
                text: ""
            }))
        );
        assert_eq!(p("LOGIN"), Ok(Some(Command::Login(""))));
    }

    #[test]
    fn blank_lines_are_not_commands() {
        assert_eq!(p(""), Ok(None));
        assert_eq!(p("  \t "), Ok(None));
    }

    #[test]
    fn rejects_bad_bytes_in_wire_order() {
        assert_eq!(parse(b"MSG \xff\xfe"), Err(InvalidUtf8));
        assert_eq!(parse(b"BOGUS \xff"), Err(InvalidUtf8));
        assert_eq!(p("MSG \x1b[31mred"), Err(InvalidText));
        assert_eq!(p("MSG a\x7fb"), Err(InvalidText));
        assert_eq!(p("MSG a\u{85}b"), Err(InvalidText));
        assert_eq!(p("MSG a\rb"), Err(InvalidText));
        assert_eq!(p("MSG a\0"), Err(InvalidText));
        assert_eq!(
            p("MSG tab\tis fine"),
            Ok(Some(Command::Msg("tab\tis fine")))
        );
        assert_eq!(
            p("MSG é ü ✓ \u{a0}"),
            Ok(Some(Command::Msg("é ü ✓ \u{a0}")))
        );
        assert_eq!(p("HELLO"), Err(UnknownCommand));
        assert_eq!(p("LOGINX a"), Err(UnknownCommand));
    }

    #[test]
    fn written_commands_parse_back() {
        let samples = [
            Command::Login("alice"),
            Command::Msg("hi  there"),
            Command::Dm {
                to: "bob",
                text: "x\ty",
            },
            Command::Who,
            Command::Join("#a"),
            Command::Part("#a"),
            Command::Say {
                room: "#a",
                tag: None,
                text: "x  y",
            },
            Command::Say {
                room: "#a",
                tag: Some("l7"),
                text: "x",
            },
            Command::Rooms,
            Command::WhoIn("#a"),
            Command::Ping(None),
            Command::Ping(Some("p1")),
            Command::Pong,
            Command::Quit(None),
            Command::Quit(Some("gone")),
            Command::History {
                room: "#a",
                args: "AFTER 7 20",
            },
            Command::Token,
            Command::Resume {
                name: "bob",
                token: "00ff",
                replay: "",
            },
            Command::Resume {
                name: "bob",
                token: "00ff",
                replay: "#a:7 #b:0",
            },
        ];
        for command in samples {
            let mut line = Vec::new();
            command.write_to(&mut line);
            assert_eq!(line.pop(), Some(b'\n'));
            assert_eq!(parse(&line), Ok(Some(command)));
        }
    }

    #[test]
    fn history_arguments() {
        let q = |args: &str| HistoryQuery::parse(args);
        let ok = |anchor, limit| Ok(HistoryQuery { anchor, limit });
        assert_eq!(q(""), ok(Anchor::Latest, 50));
        assert_eq!(q("500"), ok(Anchor::Latest, 500));
        assert_eq!(q("after 0"), ok(Anchor::After(0), 50));
        assert_eq!(q("AFTER 12  3"), ok(Anchor::After(12), 3));
        assert_eq!(q("BEFORE 9 1"), ok(Anchor::Before(9), 1));
        for bad in [
            "0",
            "501",
            "-1",
            "+5",
            "x",
            "5 6",
            "99999999999999999999999",
        ] {
            assert_eq!(q(bad), Err(BadLimit), "{bad}");
        }
        assert_eq!(q("AFTER 3 0"), Err(BadLimit));
        for bad in ["AFTER", "BEFORE x", "AFTER -1 5", "BEFORE 1.5"] {
            assert_eq!(q(bad), Err(BadId), "{bad}");
        }
        assert_eq!(
            p("history #a before 5"),
            Ok(Some(Command::History {
                room: "#a",
                args: "before 5"
            }))
        );
        assert_eq!(
            p("RESUME bob  abc"),
            Ok(Some(Command::Resume {
                name: "bob",
                token: "abc",
                replay: ""
            }))
        );
        assert_eq!(
            p("RESUME bob abc  #a:5  #b:0"),
            Ok(Some(Command::Resume {
                name: "bob",
                token: "abc",
                replay: "#a:5  #b:0"
            }))
        );
    }
}

//! The control socket's language, both ends: a request is one line
//! (`stats`, `who`, `kick NAME [reason]`, `notice TEXT`, `drain`), the
//! answer is text for a person, and the server closes after it. The
//! server parses with [`ControlCommand::parse`]; `selectchat ctl` sends
//! with [`request`]. An answer that starts with `error:` is a refusal.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Longest notice or kick reason an operator may send: it goes out as
/// one protocol line, which must fit the smallest `--max-line`.
pub const MAX_TEXT: usize = 400;

/// What an operator can ask of a running server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlCommand {
    /// What an operator reads first: connections, users, traffic, health.
    Stats,
    /// Every user on this server: name, address, transport, since when.
    Who,
    /// Ends `name`'s connection with `BYE kicked`; the session cannot be
    /// resumed. `reason` goes to the user as a `NOTICE` first, and to the log.
    Kick {
        name: String,
        reason: Option<String>,
    },
    /// One `NOTICE <text>` line to every logged-in user on this server.
    Notice(String),
    /// The same drain as SIGUSR2: stop accepting, `BYE restarting` to
    /// everyone spread over `--drain` seconds, then exit.
    Drain,
}

impl ControlCommand {
    /// Reads one request line; the error is the answer's text.
    pub fn parse(line: &str) -> Result<ControlCommand, String> {
        let line = line.trim();
        let (word, rest) = match line.split_once(' ') {
            Some((word, rest)) => (word, rest.trim()),
            None => (line, ""),
        };
        let text = |what: &str| -> Result<String, String> {
            if rest.is_empty() {
                return Err(format!("{word} needs {what}"));
            }
            checked_text(rest).map(str::to_string)
        };
        match word.to_ascii_lowercase().as_str() {
            "stats" if rest.is_empty() => Ok(ControlCommand::Stats),
            "who" if rest.is_empty() => Ok(ControlCommand::Who),
            "drain" if rest.is_empty() => Ok(ControlCommand::Drain),
            "stats" | "who" | "drain" => Err(format!("{word} takes no arguments")),
            "notice" => Ok(ControlCommand::Notice(text("a text")?)),
            "kick" => {
                let (name, reason) = match text("a name")?.split_once(' ') {
                    Some((name, reason)) => (name.to_string(), Some(reason.trim().to_string())),
                    None => (rest.to_string(), None),
                };
                Ok(ControlCommand::Kick { name, reason })
            }
            "" => {
                Err("no command (try: stats, who, kick NAME [reason], notice TEXT, drain)".into())
            }
            _ => Err(format!(
                "unknown command {word:?} (try: stats, who, kick NAME [reason], notice TEXT, drain)"
            )),
        }
    }

    /// The request line for this command, `\n` included.
    pub fn to_line(&self) -> String {
        match self {
            ControlCommand::Stats => "stats\n".into(),
            ControlCommand::Who => "who\n".into(),
            ControlCommand::Drain => "drain\n".into(),
            ControlCommand::Notice(text) => format!("notice {text}\n"),
            ControlCommand::Kick { name, reason: None } => format!("kick {name}\n"),
            ControlCommand::Kick {
                name,
                reason: Some(reason),
            } => format!("kick {name} {reason}\n"),
        }
    }
}

/// Text an operator sends to users: printable, one line, not too long.
fn checked_text(text: &str) -> Result<&str, String> {
    if text.chars().any(char::is_control) {
        return Err("the text may not hold control characters".into());
    }
    if text.len() > MAX_TEXT {
        return Err(format!("the text is longer than {MAX_TEXT} bytes"));
    }
    Ok(text)
}

/// Sends `command` to the control socket at `path` and returns the answer.
pub fn request(path: &Path, command: &ControlCommand, wait: Duration) -> io::Result<String> {
    let mut sock = UnixStream::connect(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot reach {}: {e}", path.display())))?;
    sock.set_read_timeout(Some(wait))?;
    sock.set_write_timeout(Some(wait))?;
    sock.write_all(command.to_line().as_bytes())?;
    let mut answer = String::new();
    sock.read_to_string(&mut answer)?;
    Ok(answer)
}

/// `unix_secs` as a UTC time, `2026-12-02T03:42:17Z`.
pub fn utc(unix_secs: u64) -> String {
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    // Days to a civil date (Howard Hinnant's algorithm), valid after 1970.
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A duration for a person: `45s`, `12m05s`, `3h02m`, `4d07h`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        _ => format!("{}d{:02}h", s / 86_400, s / 3600 % 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_command_parses_and_prints_back() {
        let cases = [
            ("stats", ControlCommand::Stats),
            ("WHO", ControlCommand::Who),
            (" drain \r", ControlCommand::Drain),
            (
                "notice back in a minute",
                ControlCommand::Notice("back in a minute".into()),
            ),
            (
                "kick bob",
                ControlCommand::Kick {
                    name: "bob".into(),
                    reason: None,
                },
            ),
            (
                "kick bob  spamming the lobby",
                ControlCommand::Kick {
                    name: "bob".into(),
                    reason: Some("spamming the lobby".into()),
                },
            ),
        ];
        for (line, command) in cases {
            assert_eq!(ControlCommand::parse(line), Ok(command.clone()), "{line:?}");
            let printed = command.to_line();
            assert_eq!(ControlCommand::parse(&printed), Ok(command), "{printed:?}");
        }
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let refused = |line: &str| ControlCommand::parse(line).unwrap_err();
        assert!(refused("reboot").starts_with("unknown command \"reboot\""));
        assert!(refused("").starts_with("no command"));
        assert_eq!(refused("kick"), "kick needs a name");
        assert_eq!(refused("notice"), "notice needs a text");
        assert_eq!(refused("stats now"), "stats takes no arguments");
        assert_eq!(
            refused("notice a\u{7}bell"),
            "the text may not hold control characters"
        );
        assert!(refused(&format!("notice {}", "x".repeat(MAX_TEXT + 1))).contains("longer"));
    }

    #[test]
    fn times_read_as_people_write_them() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_796_096_537), "2026-12-01T03:42:17Z");
        assert_eq!(human(Duration::from_secs(45)), "45s");
        assert_eq!(human(Duration::from_secs(725)), "12m05s");
        assert_eq!(human(Duration::from_secs(3 * 3600 + 120)), "3h02m");
        assert_eq!(human(Duration::from_secs(4 * 86_400 + 7 * 3600)), "4d07h");
    }
}

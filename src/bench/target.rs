//! The servers the load generator can drive besides selectchat: Redis
//! pub/sub (RESP: `SUBSCRIBE`, `PUBLISH`, `message` arrays) and NATS (its
//! text protocol: `CONNECT`, `SUB`, `PUB`, `MSG`, `PING`/`PONG`), so the same
//! scenario measures each the same way.
//!
//! Everyone publishes to and subscribes to one subject, `chat`. These
//! servers do not name a message's sender, so the payload starts with the
//! sender's name: `NAME SEQ MICROS xxx…`, the rest as selectchat's `MSG`
//! text. Both servers' replies are read as lines (RESP and NATS end lines
//! with `\r\n`, which the framer strips), with a little state to tell a
//! payload line from the others.

/// Which server the load is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Selectchat,
    Redis,
    Nats,
}

/// The subject every message goes through.
const SUBJECT: &str = "chat";

impl Target {
    /// Name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Selectchat => "selectchat",
            Target::Redis => "redis",
            Target::Nats => "nats",
        }
    }

    /// Why `scenario` (by name) cannot run against this server, if it cannot.
    pub fn refuses(self, scenario: &str) -> Option<String> {
        let unsupported = match self {
            Target::Selectchat => false,
            // Rooms are selectchat's. A Redis connection that subscribes
            // cannot publish (RESP2), so nobody can both send and receive.
            Target::Redis => matches!(scenario, "rooms" | "mesh"),
            Target::Nats => scenario == "rooms",
        };
        unsupported.then(|| {
            format!(
                "the {scenario} scenario cannot run against {}",
                self.as_str()
            )
        })
    }

    /// What peer `name` sends first: it is ready once the server confirms.
    /// A peer that `receives` subscribes; the fanout's sender does not.
    pub fn login(self, name: &str, receives: bool, out: &mut Vec<u8>) {
        match self {
            Target::Selectchat => out.extend_from_slice(format!("LOGIN {name}\n").as_bytes()),
            Target::Redis if receives => {
                out.extend_from_slice(format!("SUBSCRIBE {SUBJECT}\r\n").as_bytes())
            }
            Target::Redis => out.extend_from_slice(b"PING\r\n"),
            Target::Nats => {
                // No echo: a sender that also subscribes (mesh) does not
                // hear itself, as in selectchat.
                out.extend_from_slice(
                    b"CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false}\r\n",
                );
                if receives {
                    out.extend_from_slice(format!("SUB {SUBJECT} 1\r\n").as_bytes());
                }
                out.extend_from_slice(b"PING\r\n");
            }
        }
    }

    /// Publishes `text` from `name` (Redis and NATS; selectchat's `MSG` is
    /// a `Command`).
    pub fn publish(self, name: &str, text: &str, out: &mut Vec<u8>) {
        let payload_len = name.len() + 1 + text.len();
        let head = match self {
            Target::Redis => format!(
                "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{SUBJECT}\r\n${payload_len}\r\n",
                SUBJECT.len()
            ),
            Target::Nats => format!("PUB {SUBJECT} {payload_len}\r\n"),
            Target::Selectchat => unreachable!("selectchat messages are Commands"),
        };
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(b' ');
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// What one line from Redis or NATS meant.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// The subscription (or, for a sender, the connection) is confirmed.
    Ready,
    /// A published message: its sender's name and the rest.
    Delivery { from: &'a str, text: &'a str },
    /// The server asks for a `PONG`.
    Ping,
    /// The server refused something.
    Failed(&'a str),
    /// Bookkeeping: `INFO`, `+OK`, array headers, publish counts.
    Nothing,
}

/// One connection's place in the server's replies.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Lines to pass over before the payload (Redis: `$4`, `chat`, `$N`
    /// after `message`; NATS: none after `MSG`), when one is coming.
    payload_in: Option<u8>,
}

impl Decoder {
    /// Reads one line (without its `\r\n`).
    pub fn decode<'a>(&mut self, target: Target, line: &'a str) -> Event<'a> {
        if let Some(skip) = self.payload_in {
            if skip > 0 {
                self.payload_in = Some(skip - 1);
                return Event::Nothing;
            }
            self.payload_in = None;
            return match line.split_once(' ') {
                Some((from, text)) => Event::Delivery { from, text },
                None => Event::Nothing,
            };
        }
        match target {
            Target::Redis => match line {
                "message" => {
                    self.payload_in = Some(3);
                    Event::Nothing
                }
                "subscribe" | "+PONG" => Event::Ready,
                _ if line.starts_with('-') => Event::Failed(line),
                _ => Event::Nothing,
            },
            Target::Nats => match line {
                "PONG" => Event::Ready,
                "PING" => Event::Ping,
                _ if line.starts_with("MSG ") => {
                    self.payload_in = Some(0);
                    Event::Nothing
                }
                _ if line.starts_with("-ERR") => Event::Failed(line),
                _ => Event::Nothing,
            },
            Target::Selectchat => Event::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(target: Target, wire: &str) -> Vec<String> {
        let mut decoder = Decoder::default();
        wire.split("\r\n")
            .map(|line| decoder.decode(target, line))
            .filter(|e| *e != Event::Nothing)
            .map(|e| format!("{e:?}"))
            .collect()
    }

    #[test]
    fn redis_replies_are_read_as_resp() {
        let wire = "*3\r\n$9\r\nsubscribe\r\n$4\r\nchat\r\n:1\r\n\
                    *3\r\n$7\r\nmessage\r\n$4\r\nchat\r\n$14\r\nload0 7 123 xx\r\n\
                    +PONG\r\n:3\r\n-ERR wrong\r\n";
        assert_eq!(
            events(Target::Redis, wire),
            [
                "Ready",
                "Delivery { from: \"load0\", text: \"7 123 xx\" }",
                "Ready",
                "Failed(\"-ERR wrong\")"
            ]
        );
        let mut out = Vec::new();
        Target::Redis.publish("load0", "7 123 xx", &mut out);
        assert_eq!(
            out,
            b"*3\r\n$7\r\nPUBLISH\r\n$4\r\nchat\r\n$14\r\nload0 7 123 xx\r\n"
        );
    }

    #[test]
    fn nats_replies_are_read_as_its_text_protocol() {
        let wire = "INFO {\"server_id\":\"x\"}\r\nPONG\r\nMSG chat 1 14\r\nload0 7 123 xx\r\n\
                    PING\r\n-ERR 'Authorization Violation'\r\n";
        assert_eq!(
            events(Target::Nats, wire),
            [
                "Ready",
                "Delivery { from: \"load0\", text: \"7 123 xx\" }",
                "Ping",
                "Failed(\"-ERR 'Authorization Violation'\")"
            ]
        );
        let mut out = Vec::new();
        Target::Nats.publish("load0", "7 123 xx", &mut out);
        assert_eq!(out, b"PUB chat 14\r\nload0 7 123 xx\r\n");
    }

    #[test]
    fn scenarios_a_server_cannot_run_are_refused() {
        assert!(Target::Redis.refuses("mesh").is_some());
        assert!(Target::Redis.refuses("fanout").is_none());
        assert!(Target::Nats.refuses("mesh").is_none());
        assert!(Target::Nats.refuses("rooms").is_some());
        assert!(Target::Selectchat.refuses("rooms").is_none());
    }
}

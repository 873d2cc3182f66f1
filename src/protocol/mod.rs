//! The wire format of protocol v1 (docs/PROTOCOL.md), with no sockets in sight.
//!
//! Bytes become lines in [`framer`], lines become [`command::Command`]s, and
//! every byte the server writes back is formatted in [`reply`]; the rules for
//! words, names and control characters that both ends share live in
//! [`text`]. Errors are [`ProtocolError`] values whose names are their wire
//! codes.

pub mod command;
pub mod framer;
pub mod reply;
pub mod text;

pub use command::{parse, Anchor, Command, HistoryQuery};
pub use framer::{Frame, Framer};
pub use reply::{parse_reply, ByeReason, ProtocolError, Reply};

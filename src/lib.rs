//! selectchat: a chat server built as one `mio` event loop.
//!
//! The protocol and the chat are plain state machines ([`protocol`], [`chat`],
//! [`liveness`], [`wheel`]) that take bytes and instants and hand back what to
//! send; [`server`] is the thin shell that owns the sockets and drives them.
//! docs/PROTOCOL.md is the wire contract.

pub mod bench;
pub mod chat;
pub mod client;
pub mod config;
pub mod echo;
pub mod flood;
pub mod liveness;
pub mod protocol;
pub mod server;
pub mod wheel;

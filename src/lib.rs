//! selectchat: a chat server built as one `mio` event loop.
//!
//! The protocol, each connection's rules and the chat are plain state
//! machines ([`protocol`], [`session`], [`chat`], with [`liveness`],
//! [`flood`] and [`wheel`]) that take bytes and instants and hand back what
//! to send; [`transport`] turns socket bytes into protocol bytes and back;
//! [`server`] is the thin shell that owns the sockets and drives them all,
//! and [`store`] the one other thread, which owns the message database.
//! docs/PROTOCOL.md is the wire contract.

pub mod auth;
pub mod bench;
pub mod bus;
pub mod chat;
pub mod client;
pub mod config;
pub mod control;
pub mod echo;
pub mod flood;
pub mod liveness;
pub mod protocol;
pub mod server;
pub mod session;
pub mod store;
pub mod tally;
pub mod transport;
pub mod wheel;

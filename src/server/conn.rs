//! One client connection as the loop holds it: the socket, the transport
//! that encodes its bytes, the sans-IO session that applies its rules, and
//! the loop's bookkeeping (its timer and which lists it is on).

use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

use crate::session::Session;
use crate::transport::{Transport, TransportKind};
use crate::wheel::TimerId;

/// A connection's socket, transport, session and list memberships.
#[derive(Debug)]
pub struct Conn {
    pub sock: TcpStream,
    pub peer: SocketAddr,
    pub kind: TransportKind,
    /// When it was accepted.
    pub since: Instant,
    pub transport: Transport,
    pub session: Session,
    /// Most bytes queued for it before it is dropped: the pre-login
    /// allowance, then `--sendq` once logged in.
    pub sendq: usize,
    /// The connection's one wheel entry, and the instant it was armed for.
    pub timer: Option<(TimerId, Instant)>,
    /// Takes no more output: it departed, or failed while being written to.
    pub mute: bool,
    /// On the loop's pending-write list.
    pub write_queued: bool,
    /// On the list of connections to write out before the turn ends.
    pub through_queued: bool,
    /// On the list of connections sent broadcast lines this turn.
    pub shares: bool,
    /// On the loop's read-again list (stopped before WouldBlock).
    pub read_queued: bool,
    /// Registered for WRITABLE because the kernel buffer filled up.
    pub want_writable: bool,
    /// On the loop's reap list.
    pub reaping: bool,
}

impl Conn {
    /// A connection accepted at `now`, allowed `sendq` bytes of output.
    pub fn new(
        sock: TcpStream,
        peer: SocketAddr,
        kind: TransportKind,
        transport: Transport,
        session: Session,
        sendq: usize,
        now: Instant,
    ) -> Self {
        Conn {
            sock,
            peer,
            kind,
            since: now,
            transport,
            session,
            sendq,
            timer: None,
            mute: false,
            write_queued: false,
            through_queued: false,
            shares: false,
            read_queued: false,
            want_writable: false,
            reaping: false,
        }
    }

    /// Heap bytes this connection's buffers hold.
    pub fn buffer_capacity(&self) -> usize {
        self.transport.buffer_capacity() + self.session.buffer_capacity()
    }

    /// Frees empty buffers; returns the capacity freed.
    pub fn release_idle_buffers(&mut self) -> usize {
        self.transport.release_idle_buffers() + self.session.release_idle_buffers()
    }
}

//! One client connection: its socket, its buffers and where it is in its life.
//!
//! Invariant: `wbuf` holds exactly the bytes not yet accepted by the kernel,
//! and idle connections hold no buffer memory (both buffers are released when
//! the liveness timer finds them empty).

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

use crate::flood::Bucket;
use crate::liveness::Liveness;
use crate::protocol::ByeReason;
use crate::protocol::Framer;
use crate::wheel::TimerId;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Reading and writing normally (logged in or not: the chat knows which).
    Open,
    /// Leaving: input is ignored, queued output (ending in `BYE`) is flushed,
    /// then the socket is closed; a linger timer bounds the wait.
    Draining,
    /// To be removed from the slab when the loop turn ends.
    Dead,
}

/// Why a connection left; logged, and decides whether a `BYE` is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    Quit,
    Eof,
    Reset,
    IdleTimeout,
    LoginTimeout,
    Sendq,
    Shutdown,
    Flooding,
}

impl Departure {
    /// Name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Departure::Quit => "quit",
            Departure::Eof => "eof",
            Departure::Reset => "reset",
            Departure::IdleTimeout => "idle-timeout",
            Departure::LoginTimeout => "login-timeout",
            Departure::Sendq => "sendq",
            Departure::Shutdown => "shutdown",
            Departure::Flooding => "flooding",
        }
    }

    /// The `BYE` line this departure ends with, if the peer gets one.
    pub fn bye(self) -> Option<ByeReason> {
        match self {
            Departure::Quit => Some(ByeReason::Quit),
            Departure::IdleTimeout => Some(ByeReason::IdleTimeout),
            Departure::LoginTimeout => Some(ByeReason::LoginTimeout),
            Departure::Shutdown => Some(ByeReason::ShuttingDown),
            Departure::Flooding => Some(ByeReason::Flooding),
            Departure::Eof | Departure::Reset | Departure::Sendq => None,
        }
    }

    /// Whether queued output is still delivered: not to a peer that is gone
    /// (reset) or that is the reason output piled up (sendq).
    pub fn flushes(self) -> bool {
        !matches!(self, Departure::Reset | Departure::Sendq)
    }
}

/// An emptied write buffer keeps this much capacity for the next line; a
/// larger one (left by a burst) is freed, so idle connections stay small.
const KEEP_CAPACITY: usize = 1024;

/// A connection's socket, buffers and bookkeeping.
#[derive(Debug)]
pub struct Conn {
    pub sock: TcpStream,
    pub peer: SocketAddr,
    pub framer: Framer,
    pub wbuf: Vec<u8>,
    pub state: ConnState,
    pub live: Liveness,
    pub timer: Option<TimerId>,
    /// Flood control for this connection's lines.
    pub bucket: Bucket,
    /// Reading is paused until then (out of flood-control tokens).
    pub paused_until: Option<Instant>,
    /// Bytes read but not yet framed when reading was paused (at most one read).
    pub held: Vec<u8>,
    /// Failed while being written to; about to be dropped, it gets nothing more.
    pub overflowed: bool,
    /// On the loop's pending-write list.
    pub write_queued: bool,
    /// On the loop's read-again list (stopped before WouldBlock).
    pub read_queued: bool,
    /// Registered for WRITABLE because the kernel buffer filled up.
    pub want_writable: bool,
}

impl Conn {
    /// A freshly accepted connection.
    pub fn new(
        sock: TcpStream,
        peer: SocketAddr,
        max_line: usize,
        live: Liveness,
        bucket: Bucket,
    ) -> Self {
        Conn {
            sock,
            peer,
            framer: Framer::new(max_line),
            wbuf: Vec::new(),
            state: ConnState::Open,
            live,
            timer: None,
            bucket,
            paused_until: None,
            held: Vec::new(),
            overflowed: false,
            write_queued: false,
            read_queued: false,
            want_writable: false,
        }
    }

    /// Writes queued bytes until the buffer is empty or the kernel's is
    /// full. Returns the buffer capacity freed (a burst's leftover).
    pub fn write_out(&mut self) -> io::Result<usize> {
        let mut written = 0;
        let result = loop {
            if written == self.wbuf.len() {
                break Ok(());
            }
            match self.sock.write(&self.wbuf[written..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        let mut freed = 0;
        if written == self.wbuf.len() {
            if self.wbuf.capacity() > KEEP_CAPACITY {
                freed = self.wbuf.capacity();
                self.wbuf = Vec::new();
            } else {
                self.wbuf.clear();
            }
        } else {
            self.wbuf.drain(..written);
        }
        result.map(|()| freed)
    }

    /// Frees empty buffers; called when the connection has been quiet.
    /// Returns the capacity freed.
    pub fn release_idle_buffers(&mut self) -> usize {
        let mut freed = 0;
        if self.wbuf.is_empty() {
            freed += self.wbuf.capacity();
            self.wbuf = Vec::new();
        }
        if self.held.is_empty() {
            freed += self.held.capacity();
            self.held = Vec::new();
        }
        freed + self.framer.release_idle()
    }

    /// Heap bytes this connection's buffers hold.
    pub fn buffer_capacity(&self) -> usize {
        self.wbuf.capacity() + self.framer.capacity() + self.held.capacity()
    }
}

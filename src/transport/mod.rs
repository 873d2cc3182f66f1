//! Bytes on a socket to protocol bytes and back, per connection.
//!
//! The event loop reads through a [`Transport`] (socket bytes in, decoded
//! application bytes out, which the session frames into lines) and writes
//! through it (lines in, encoded bytes out). Whether the loop waits for
//! writability follows [`Transport::wants_write`], as rustls's mio example
//! derives its interest from the connection. The socket is only borrowed,
//! as any `Read`/`Write`, so each transport is tested with bytes alone.
//!
//! Only [`Plain`] exists today; TLS (a `rustls::ServerConnection`) and
//! WebSocket (tungstenite frames) become further variants with the same
//! five operations, and the chat never learns which one a line came over.

mod plain;

use std::io::{self, Read, Write};

pub use plain::Plain;

/// Which transport a listener's connections speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// Newline-framed text straight over TCP.
    Plain,
}

impl TransportKind {
    /// Name used in logs and in the port file.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Plain => "plain",
        }
    }
}

/// What one read from the socket produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// This many decoded bytes are at the start of the buffer (maybe none,
    /// when the socket bytes were all transport bookkeeping).
    Bytes(usize),
    /// The socket has nothing more for now.
    WouldBlock,
    /// The peer finished sending.
    Closed,
}

/// One connection's transport.
#[derive(Debug)]
pub enum Transport {
    Plain(Plain),
}

impl Transport {
    /// A fresh transport of `kind`.
    pub fn new(kind: TransportKind) -> Transport {
        match kind {
            TransportKind::Plain => Transport::Plain(Plain::default()),
        }
    }

    /// Reads once from `sock` and decodes into `buf`.
    pub fn read(&mut self, sock: &mut impl Read, buf: &mut [u8]) -> io::Result<Received> {
        match self {
            Transport::Plain(t) => t.read(sock, buf),
        }
    }

    /// Queues complete protocol lines for the peer.
    pub fn queue(&mut self, bytes: &[u8]) {
        match self {
            Transport::Plain(t) => t.queue(bytes),
        }
    }

    /// Writes queued bytes to `sock` until none are left or the kernel's
    /// buffer is full. Returns the buffer capacity freed (a burst's leftover).
    pub fn write_to(&mut self, sock: &mut impl Write) -> io::Result<usize> {
        match self {
            Transport::Plain(t) => t.write_to(sock),
        }
    }

    /// Bytes queued and not yet taken by the kernel: what the sendq limits.
    pub fn buffered(&self) -> usize {
        match self {
            Transport::Plain(t) => t.buffered(),
        }
    }

    /// True when the transport takes socket bytes now.
    pub fn wants_read(&self) -> bool {
        match self {
            Transport::Plain(_) => true,
        }
    }

    /// True while bytes wait for the socket to become writable.
    pub fn wants_write(&self) -> bool {
        self.buffered() > 0
    }

    /// Frees empty buffers; returns the capacity freed.
    pub fn release_idle_buffers(&mut self) -> usize {
        match self {
            Transport::Plain(t) => t.release_idle_buffers(),
        }
    }

    /// Drops everything queued: the peer will not get it.
    pub fn discard_output(&mut self) -> usize {
        match self {
            Transport::Plain(t) => t.discard_output(),
        }
    }

    /// Heap bytes this transport's buffers hold.
    pub fn buffer_capacity(&self) -> usize {
        match self {
            Transport::Plain(t) => t.buffer_capacity(),
        }
    }
}

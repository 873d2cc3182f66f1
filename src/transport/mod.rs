//! Bytes on a socket to protocol lines and back, per connection.
//!
//! The event loop reads through a [`Transport`] (socket bytes in, decoded
//! line bytes out, which the session frames into lines) and writes through
//! it (lines in, encoded bytes out). Whether the loop waits for writability
//! follows [`Transport::wants_write`], as rustls's mio example derives its
//! interest from the connection. The socket is only borrowed, as any
//! `Read + Write`, so each transport is tested with bytes alone.
//!
//! A transport is two layers: a link (the socket as it is, or TLS) and a
//! codec (newline-framed lines as they are, or HTTP then WebSocket text
//! messages). Every combination serves the same protocol; the chat never
//! learns which one a line came over.

mod broadcast;
mod frames;
mod link;
mod outbuf;
pub mod tls;
mod web;

use std::io::{self, Read, Write};
use std::sync::Arc;

pub use broadcast::{Broadcast, Shared};
use link::{Link, LinkReader};
use outbuf::OutBuf;
use web::Web;
pub use web::{WebPolicy, CHAT_PATH};

/// The longest line a client-side transport expects from a server.
const CLIENT_MAX_LINE: usize = 1 << 20;

/// Which transport a listener's connections speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// Newline-framed text straight over TCP.
    Plain,
    /// Newline-framed text over TLS.
    Tls,
    /// The web page and WebSocket over HTTP.
    Web,
    /// The web page and WebSocket over HTTPS.
    WebTls,
}

impl TransportKind {
    /// Name used in logs and in the port file.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Plain => "plain",
            TransportKind::Tls => "tls",
            TransportKind::Web => "web",
            TransportKind::WebTls => "web-tls",
        }
    }

    /// What a peer the server cannot take is told before it is closed:
    /// `line` on plain text, a 503 on HTTP, nothing a TLS client could read.
    pub fn refusal(self, line: &[u8]) -> Vec<u8> {
        match self {
            TransportKind::Plain => line.to_vec(),
            TransportKind::Web => web::status(503),
            TransportKind::Tls | TransportKind::WebTls => Vec::new(),
        }
    }

    /// True for the kinds that run over TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, TransportKind::Tls | TransportKind::WebTls)
    }

    fn is_web(self) -> bool {
        matches!(self, TransportKind::Web | TransportKind::WebTls)
    }
}

/// What every transport is built from: the server's TLS configuration
/// (when it has one) and what web connections may do.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The certificate and TLS settings; `None` when the server has none.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Origin check and message size limit for web connections.
    pub web: Arc<WebPolicy>,
}

/// What one read from the socket produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// This many decoded bytes are at the start of the buffer.
    Bytes(usize),
    /// One message that is not text (a WebSocket binary message): it gets
    /// `ERR invalid-text` and counts as a line.
    NotText,
    /// One control frame (a WebSocket ping or pong): nothing to hand up,
    /// but it costs the peer what a line costs, since its answer (a pong)
    /// costs the server what a reply does.
    Control,
    /// Bytes came off the socket but nothing is decoded yet (a partial TLS
    /// record or frame, a record with no plaintext): read again.
    Progress,
    /// The socket has nothing more for now.
    WouldBlock,
    /// The peer finished sending (or is told to go away: a web request
    /// answered, a WebSocket closed).
    Closed,
}

/// How lines are carried over the link.
#[derive(Debug)]
enum Codec {
    /// Newline-framed, byte for byte.
    Lines,
    /// HTTP, then WebSocket text messages.
    Web(Box<Web>),
}

/// One connection's transport.
#[derive(Debug)]
pub struct Transport {
    link: Link,
    codec: Codec,
    out: OutBuf,
    /// Bytes read off the socket since the loop last took the count.
    wire_read: usize,
    /// Bytes written to the socket since the loop last asked.
    wire_written: usize,
    /// Broadcast lines reach this peer as the shared frames: kept beside
    /// the codec, which sits behind two pointers, because a fan-out asks
    /// for every recipient.
    takes_frames: bool,
}

impl Transport {
    /// A fresh transport of `kind`. Fails only when a TLS session cannot be
    /// set up (TLS kinds need `setup.tls`).
    pub fn new(kind: TransportKind, setup: &Setup) -> io::Result<Transport> {
        let link = if kind.uses_tls() {
            let config = setup.tls.clone().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "no TLS configuration")
            })?;
            let conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
            Link::Tls(Box::new(link::Tls::new(conn)))
        } else {
            Link::Plain
        };
        let codec = if kind.is_web() {
            Codec::Web(Box::new(Web::server(Arc::clone(&setup.web))))
        } else {
            Codec::Lines
        };
        Ok(Transport {
            link,
            codec,
            out: OutBuf::default(),
            wire_read: 0,
            wire_written: 0,
            takes_frames: false,
        })
    }

    /// The client side of `kind`, for the load generator: TLS with
    /// `tls` (a client configuration and the name to ask for), WebSocket
    /// upgrading at `host`.
    pub fn client(
        kind: TransportKind,
        tls: Option<(
            Arc<rustls::ClientConfig>,
            rustls::pki_types::ServerName<'static>,
        )>,
        host: &str,
    ) -> io::Result<Transport> {
        let link = match tls {
            Some((config, name)) if kind.uses_tls() => {
                let conn = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
                Link::Tls(Box::new(link::Tls::new(conn)))
            }
            None if kind.uses_tls() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "no TLS configuration",
                ))
            }
            _ => Link::Plain,
        };
        let mut out = OutBuf::default();
        let codec = if kind.is_web() {
            // The load generator reads whatever the server sends.
            let policy = Arc::new(WebPolicy::new(None, CLIENT_MAX_LINE));
            Codec::Web(Box::new(Web::client(host, policy, &mut out)))
        } else {
            Codec::Lines
        };
        Ok(Transport {
            link,
            codec,
            out,
            wire_read: 0,
            wire_written: 0,
            takes_frames: false,
        })
    }

    /// Reads from `sock` and decodes into `buf`: at most one unit (bytes,
    /// one message, one control frame) per call, so the caller's read
    /// budget sees everything the peer sends.
    pub fn read(&mut self, sock: &mut (impl Read + Write), buf: &mut [u8]) -> io::Result<Received> {
        let mut sock = Counted {
            inner: sock,
            read: &mut self.wire_read,
            written: &mut self.wire_written,
        };
        match &mut self.codec {
            Codec::Lines => self.link.read(&mut sock, buf),
            Codec::Web(web) => {
                let mut lower = LinkReader {
                    link: &mut self.link,
                    sock: &mut sock,
                };
                let received = web.read(&mut lower, buf, &mut self.out);
                // Reading is what upgrades a WebSocket or ends it.
                self.takes_frames = web.frames_lines();
                received
            }
        }
    }

    /// Bytes read off the socket since the last call: what the loop's read
    /// budget charges, whatever they decoded to.
    pub fn take_wire_read(&mut self) -> usize {
        std::mem::take(&mut self.wire_read)
    }

    /// Bytes written to the socket since the last call, whatever they
    /// encoded (lines, frames, records, handshakes).
    pub fn take_wire_written(&mut self) -> usize {
        std::mem::take(&mut self.wire_written)
    }

    /// The peer logged in: the pre-login limits on what it may send at
    /// once (the WebSocket message size) rise to the server's own.
    pub fn logged_in(&mut self) {
        if let Codec::Web(web) = &mut self.codec {
            web.logged_in();
        }
    }

    /// Queues complete protocol lines for the peer.
    pub fn queue(&mut self, lines: &[u8]) {
        match &mut self.codec {
            Codec::Lines => self.out.queue(lines),
            Codec::Web(web) => web.queue(lines, &mut self.out),
        }
    }

    /// Queues `shared` lines of the turn's `broadcast` buffer (complete
    /// lines for many recipients) by reference: as lines, or as the text
    /// frames every WebSocket recipient shares. A client's WebSocket, or
    /// one not open, encodes its own copy.
    pub fn queue_shared(&mut self, broadcast: &mut Broadcast, shared: &mut Shared) {
        match &mut self.codec {
            Codec::Lines => self
                .out
                .queue_shared(broadcast.lines(), broadcast.lines_of(shared)),
            Codec::Web(_) if self.takes_frames => {
                let range = broadcast.frames_of(shared);
                self.out.queue_shared(broadcast.frames(), range)
            }
            Codec::Web(web) => web.queue(
                &broadcast.lines()[broadcast.lines_of(shared)],
                &mut self.out,
            ),
        }
    }

    /// Which of the turn's buffers this transport's queue takes ranges of.
    fn shared<'a>(&self, broadcast: &'a Broadcast) -> &'a [u8] {
        match self.codec {
            Codec::Lines => broadcast.lines(),
            Codec::Web(_) => broadcast.frames(),
        }
    }

    /// Writes queued bytes to `sock` until none are left or the kernel's
    /// buffer is full. Returns the buffer capacity freed (a burst's leftover).
    pub fn write_to(&mut self, sock: &mut impl Write) -> io::Result<usize> {
        self.write_shared(sock, &Broadcast::default())
    }

    /// [`write_to`](Self::write_to) for a queue that may hold ranges of
    /// `broadcast`.
    pub fn write_shared(
        &mut self,
        sock: &mut impl Write,
        broadcast: &Broadcast,
    ) -> io::Result<usize> {
        let shared = self.shared(broadcast);
        let mut sock = Counted {
            inner: sock,
            read: &mut self.wire_read,
            written: &mut self.wire_written,
        };
        self.link.write_out(&mut self.out, &mut sock, shared)
    }

    /// The turn that wrote `broadcast` is over: a range of it still queued
    /// is copied into this transport's own queue before the buffer is reused.
    pub fn end_turn(&mut self, broadcast: &Broadcast) {
        let shared = self.shared(broadcast);
        self.out.end_turn(shared);
    }

    /// Bytes queued and not yet taken by the kernel: what the sendq limits.
    pub fn buffered(&self) -> usize {
        self.out.len()
    }

    /// Memory the queue holds for this connection alone (broadcast bytes
    /// are counted once for all, by the loop).
    pub fn held(&self) -> usize {
        self.out.held()
    }

    /// True while a TLS handshake is not finished.
    pub fn is_handshaking(&self) -> bool {
        self.link.is_handshaking()
    }

    /// True while bytes wait for the socket to become writable.
    pub fn wants_write(&self) -> bool {
        !self.out.is_empty() || self.link.wants_write()
    }

    /// The connection is ending after what is queued: a WebSocket close
    /// frame and a TLS `close_notify` follow it.
    pub fn end(&mut self) {
        if let Codec::Web(web) = &mut self.codec {
            web.end(&mut self.out);
            self.takes_frames = web.frames_lines();
        }
        self.link.end();
    }

    /// Frees empty buffers; returns the capacity freed.
    pub fn release_idle_buffers(&mut self) -> usize {
        let web = match &mut self.codec {
            Codec::Web(web) => web.release_idle(),
            Codec::Lines => 0,
        };
        web + self.out.release_if_empty()
    }

    /// Drops everything queued: the peer will not get it.
    pub fn discard_output(&mut self) -> usize {
        self.out.discard()
    }

    /// Heap bytes this transport's own buffers hold (the TLS library's
    /// are not counted).
    pub fn buffer_capacity(&self) -> usize {
        let web = match &self.codec {
            Codec::Web(web) => web.capacity(),
            Codec::Lines => 0,
        };
        web + self.out.capacity()
    }
}

/// A socket that counts the bytes read from it and written to it.
struct Counted<'a, S> {
    inner: &'a mut S,
    read: &'a mut usize,
    written: &'a mut usize,
}

impl<S: Read> Read for Counted<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        *self.read += n;
        Ok(n)
    }
}

impl<S: Write> Write for Counted<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        *self.written += n;
        Ok(n)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        // One piece (a TLS record usually) goes by `send`: a socket's
        // `writev` also takes the file position lock, 5 % of a TLS fan-out.
        let mut pieces = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (pieces.next(), pieces.next()) {
            return self.write(only);
        }
        let n = self.inner.write_vectored(bufs)?;
        *self.written += n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests;

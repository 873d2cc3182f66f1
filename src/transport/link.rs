//! The byte layer of a transport: the socket as it is, or TLS over it.
//!
//! TLS is a `rustls::ServerConnection` driven the way rustls's own mio
//! example drives it: records are read from the socket when the loop says
//! it is readable, decrypted bytes are handed up, and records are written
//! when the loop flushes. No thread and no blocking call.

use std::io::{self, IoSlice, Read, Write};

use super::outbuf::OutBuf;
use super::Received;

/// Most plaintext rustls holds encrypted and unsent; the rest waits in the
/// out buffer, where the sendq counts it. A turn's fan-out to one peer is
/// often more than one 16 KiB record: at 64 KiB it is encrypted whole and
/// written in one call, where 16 KiB took a call per record.
const TLS_BUFFER_LIMIT: usize = 64 * 1024;

/// How bytes cross the socket.
#[derive(Debug)]
pub(super) enum Link {
    /// Straight through.
    Plain,
    /// Through a TLS session.
    Tls(Box<Tls>),
}

/// A TLS session (the server's, or the load generator's client side) and
/// whether it is to be closed once the output is out.
#[derive(Debug)]
pub(super) struct Tls {
    conn: rustls::Connection,
    /// Send `close_notify` once the out buffer has been handed over.
    closing: bool,
}

impl Tls {
    pub(super) fn new(conn: impl Into<rustls::Connection>) -> Tls {
        let mut conn = conn.into();
        conn.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Tls {
            conn,
            closing: false,
        }
    }

    /// Hands up plaintext rustls already holds; otherwise reads the
    /// socket once and processes what came. One socket read per call, so
    /// records that decrypt to nothing (alerts, handshake messages, empty
    /// fragments) come back as [`Received::Progress`] and the loop's read
    /// budget counts them like any other bytes.
    fn read(&mut self, sock: &mut (impl Read + Write), buf: &mut [u8]) -> io::Result<Received> {
        if let Some(received) = self.plaintext(buf)? {
            return Ok(received);
        }
        match self.conn.read_tls(sock) {
            Ok(0) => return Ok(Received::Closed),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Received::WouldBlock),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Received::Progress),
            Err(e) => return Err(e),
        }
        if let Err(e) = self.conn.process_new_packets() {
            // rustls queued an alert saying why; the peer may read it.
            let _ = self.conn.write_tls(sock);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        Ok(self.plaintext(buf)?.unwrap_or(Received::Progress))
    }

    /// Plaintext already decrypted, or the end; `None` when there is none yet.
    fn plaintext(&mut self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        match self.conn.reader().read(buf) {
            Ok(0) => Ok(Some(Received::Closed)),
            Ok(n) => Ok(Some(Received::Bytes(n))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            // The peer closed TCP without a close_notify.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(Some(Received::Closed)),
            Err(e) => Err(e),
        }
    }

    /// Encrypts what `out` holds (ranges of `broadcast` included, read in
    /// place) and writes the records, until both are empty or the socket
    /// would block.
    fn write_out(
        &mut self,
        out: &mut OutBuf,
        sock: &mut impl Write,
        broadcast: &[u8],
    ) -> io::Result<usize> {
        let mut freed = 0;
        loop {
            if !out.is_empty() {
                freed += out.write_to(&mut Plaintext(&mut self.conn), broadcast)?;
            }
            if out.is_empty() && std::mem::take(&mut self.closing) {
                self.conn.send_close_notify();
            }
            if !self.conn.wants_write() {
                return Ok(freed);
            }
            match self.conn.write_tls(sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(freed),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// A TLS session's plaintext side, written like a socket: rustls cuts
/// what it is given (both pieces of a queue at once) into records, and a
/// full buffer would block until the records go out.
struct Plaintext<'a>(&'a mut rustls::Connection);

impl Write for Plaintext<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let taken = self.0.writer().write_vectored(bufs)?;
        if taken == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Link {
    /// Reads from the socket once.
    pub(super) fn read(
        &mut self,
        sock: &mut (impl Read + Write),
        buf: &mut [u8],
    ) -> io::Result<Received> {
        match self {
            Link::Plain => loop {
                return match sock.read(buf) {
                    Ok(0) => Ok(Received::Closed),
                    Ok(n) => Ok(Received::Bytes(n)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Received::WouldBlock),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(e),
                };
            },
            Link::Tls(tls) => tls.read(sock, buf),
        }
    }

    /// Moves `out` towards the socket until it is empty or the kernel's
    /// buffer is full. Returns the capacity freed.
    pub(super) fn write_out(
        &mut self,
        out: &mut OutBuf,
        sock: &mut impl Write,
        broadcast: &[u8],
    ) -> io::Result<usize> {
        match self {
            Link::Plain => out.write_to(sock, broadcast),
            Link::Tls(tls) => tls.write_out(out, sock, broadcast),
        }
    }

    /// True while the link itself has bytes for the socket (TLS records:
    /// a handshake, an alert, a close_notify, encrypted lines).
    pub(super) fn wants_write(&self) -> bool {
        match self {
            Link::Plain => false,
            Link::Tls(tls) => tls.closing || tls.conn.wants_write(),
        }
    }

    /// True while a TLS handshake is not finished.
    pub(super) fn is_handshaking(&self) -> bool {
        matches!(self, Link::Tls(tls) if tls.conn.is_handshaking())
    }

    /// The connection is ending: say so (TLS `close_notify`) after what is
    /// already queued.
    pub(super) fn end(&mut self) {
        if let Link::Tls(tls) = self {
            tls.closing = true;
        }
    }
}

/// The link seen as a byte stream, for a layer above it (WebSocket) that
/// reads with `io::Read`: `WouldBlock` when it has nothing, `Ok(0)` at the
/// end, and `Interrupted` when the link read bytes but has none to hand up
/// yet (the layer above reports that as [`Received::Progress`]).
pub(super) struct LinkReader<'a, S> {
    pub link: &'a mut Link,
    pub sock: &'a mut S,
}

impl<S: Read + Write> Read for LinkReader<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.link.read(self.sock, buf)? {
            Received::Bytes(n) => Ok(n),
            Received::Closed => Ok(0),
            Received::Progress => Err(io::ErrorKind::Interrupted.into()),
            // A link hands up bytes only; these are WebSocket verdicts.
            Received::WouldBlock | Received::NotText | Received::Control => {
                Err(io::ErrorKind::WouldBlock.into())
            }
        }
    }
}

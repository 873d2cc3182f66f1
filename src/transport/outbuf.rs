//! A connection's outgoing bytes, held until the kernel (or TLS) takes them.
//!
//! Invariant: the buffer holds exactly the bytes not yet taken, and an
//! emptied buffer larger than `KEEP_CAPACITY` is freed, so a burst does not
//! leave every connection holding its high-water mark.

use std::io::{self, Write};

/// An emptied write buffer keeps this much capacity for the next line.
const KEEP_CAPACITY: usize = 1024;

/// Bytes queued for one connection, oldest first.
#[derive(Debug, Default)]
pub struct OutBuf {
    bytes: Vec<u8>,
}

impl OutBuf {
    /// Appends `bytes` after everything already queued.
    pub fn queue(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// The bytes not yet taken, oldest first.
    pub fn pending(&self) -> &[u8] {
        &self.bytes
    }

    /// Forgets the first `n` pending bytes (they were taken). Returns the
    /// capacity freed.
    pub fn consume(&mut self, n: usize) -> usize {
        if n < self.bytes.len() {
            self.bytes.drain(..n);
            0
        } else if self.bytes.capacity() > KEEP_CAPACITY {
            self.discard()
        } else {
            self.bytes.clear();
            0
        }
    }

    /// Writes pending bytes to `sock` until none are left or the kernel's
    /// buffer is full. Returns the capacity freed.
    pub fn write_to(&mut self, sock: &mut impl Write) -> io::Result<usize> {
        let mut written = 0;
        let result = loop {
            if written == self.bytes.len() {
                break Ok(());
            }
            match sock.write(&self.bytes[written..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        let freed = self.consume(written);
        result.map(|()| freed)
    }

    /// Bytes queued and not yet taken.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Frees the buffer if it is empty; returns the capacity freed.
    pub fn release_if_empty(&mut self) -> usize {
        if self.bytes.is_empty() {
            self.discard()
        } else {
            0
        }
    }

    /// Drops everything queued; returns the capacity freed.
    pub fn discard(&mut self) -> usize {
        std::mem::take(&mut self.bytes).capacity()
    }

    /// Heap bytes the buffer holds.
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }
}

impl Write for OutBuf {
    /// Takes everything: what a library layer (tungstenite) writes is
    /// queued like any line, and the sendq bounds it.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.queue(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

//! The plain transport: socket bytes are protocol bytes.
//!
//! Invariant: `out` holds exactly the bytes not yet accepted by the kernel,
//! and an emptied buffer larger than `KEEP_CAPACITY` is freed, so a burst
//! does not leave every connection holding its high-water mark.

use std::io::{self, Read, Write};

use super::Received;

/// An emptied write buffer keeps this much capacity for the next line.
const KEEP_CAPACITY: usize = 1024;

/// Plain TCP: reads pass through, writes are buffered until the kernel takes them.
#[derive(Debug, Default)]
pub struct Plain {
    out: Vec<u8>,
}

impl Plain {
    pub(super) fn read(&mut self, sock: &mut impl Read, buf: &mut [u8]) -> io::Result<Received> {
        loop {
            return match sock.read(buf) {
                Ok(0) => Ok(Received::Closed),
                Ok(n) => Ok(Received::Bytes(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Received::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    pub(super) fn queue(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    pub(super) fn write_to(&mut self, sock: &mut impl Write) -> io::Result<usize> {
        let mut written = 0;
        let result = loop {
            if written == self.out.len() {
                break Ok(());
            }
            match sock.write(&self.out[written..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        let mut freed = 0;
        if written == self.out.len() {
            if self.out.capacity() > KEEP_CAPACITY {
                freed = self.discard_output();
            } else {
                self.out.clear();
            }
        } else {
            self.out.drain(..written);
        }
        result.map(|()| freed)
    }

    pub(super) fn buffered(&self) -> usize {
        self.out.len()
    }

    pub(super) fn release_idle_buffers(&mut self) -> usize {
        if self.out.is_empty() {
            self.discard_output()
        } else {
            0
        }
    }

    pub(super) fn discard_output(&mut self) -> usize {
        std::mem::take(&mut self.out).capacity()
    }

    pub(super) fn buffer_capacity(&self) -> usize {
        self.out.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Received, Transport, TransportKind};
    use std::io::{self, Cursor, Write};

    /// A socket that takes at most `room` bytes, then would block.
    struct Kernel {
        taken: Vec<u8>,
        room: usize,
    }

    impl Write for Kernel {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.taken.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn reads_pass_through_and_end_at_eof() {
        let mut t = Transport::new(TransportKind::Plain);
        let mut sock = Cursor::new(b"LOGIN a\n".to_vec());
        let mut buf = [0u8; 4];
        assert_eq!(t.read(&mut sock, &mut buf).unwrap(), Received::Bytes(4));
        assert_eq!(&buf, b"LOGI");
        assert_eq!(t.read(&mut sock, &mut buf).unwrap(), Received::Bytes(4));
        assert_eq!(t.read(&mut sock, &mut buf).unwrap(), Received::Closed);
        assert!(t.wants_read());
    }

    #[test]
    fn writes_keep_what_the_kernel_did_not_take_and_want_writable() {
        let mut t = Transport::new(TransportKind::Plain);
        t.queue(b"OK\n");
        t.queue(b"INFO bob joined\n");
        let mut kernel = Kernel {
            taken: Vec::new(),
            room: 5,
        };
        t.write_to(&mut kernel).unwrap();
        assert_eq!(kernel.taken, b"OK\nIN");
        assert_eq!(t.buffered(), 14);
        assert!(t.wants_write());
        kernel.room = 100;
        t.write_to(&mut kernel).unwrap();
        assert_eq!(kernel.taken, b"OK\nINFO bob joined\n");
        assert!(!t.wants_write());
    }

    #[test]
    fn a_burst_buffer_is_freed_once_written() {
        let mut t = Transport::new(TransportKind::Plain);
        t.queue(&[b'x'; 10_000]);
        let mut kernel = Kernel {
            taken: Vec::new(),
            room: usize::MAX,
        };
        assert!(t.write_to(&mut kernel).unwrap() >= 10_000);
        assert_eq!(t.buffer_capacity(), 0);
        t.queue(b"small\n");
        t.write_to(&mut kernel).unwrap();
        assert_eq!(t.write_to(&mut kernel).unwrap(), 0);
        assert!(
            t.buffer_capacity() > 0,
            "a small buffer is kept for the next line"
        );
        assert!(t.release_idle_buffers() > 0);
        assert_eq!(t.buffer_capacity(), 0);
    }
}

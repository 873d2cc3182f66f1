//! A connection's outgoing bytes, held until the kernel (or TLS) takes them.
//!
//! Most bytes a fan-out sends are the same line for every recipient, so a
//! queue holds two kinds: the connection's own bytes (its replies, its
//! encoded frames) and ranges of the loop's broadcast buffer, where such a
//! line is written once per turn for all its plain-TCP recipients. A write
//! hands the kernel both at once (`writev`), so the line is copied once,
//! into each socket, and never into each connection's buffer.
//!
//! Invariants: the queue holds exactly the bytes not yet taken, in order;
//! a range never outlives the turn its broadcast buffer belongs to (a
//! write that leaves part of the queue behind copies the rest into the own
//! buffer, and the loop calls [`OutBuf::detach`] on any queue it did not
//! write before the broadcast buffer is reused); and an emptied own buffer
//! larger than `KEEP_CAPACITY` is freed, so a burst does not leave every
//! connection holding its high-water mark.

use std::io::{self, IoSlice, Write};
use std::ops::Range;

/// An emptied write buffer keeps this much capacity for the next line.
const KEEP_CAPACITY: usize = 1024;
/// Most pieces handed to one `writev`.
const MAX_SLICES: usize = 64;

/// A range of the broadcast buffer, and where it falls among own bytes.
#[derive(Debug, Clone)]
struct Splice {
    /// Own bytes queued before this range.
    at: usize,
    range: Range<usize>,
}

/// Bytes queued for one connection, oldest first.
#[derive(Debug, Default)]
pub struct OutBuf {
    bytes: Vec<u8>,
    /// Broadcast ranges interleaved with `bytes`, in order; empty between turns.
    shared: Vec<Splice>,
    /// Bytes the ranges in `shared` cover.
    shared_len: usize,
}

impl OutBuf {
    /// Appends `bytes` after everything already queued.
    pub fn queue(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// Appends `range` of this turn's `broadcast` buffer after everything
    /// already queued. It stays a range only where it makes the queue one
    /// piece: in an empty queue, or continuing the range the queue is.
    /// Anything else is copied, the queue's range first: a `writev` of
    /// several small pieces measured slower than copying them (lines of
    /// several rooms interleave, so their ranges rarely touch).
    pub fn queue_shared(&mut self, broadcast: &[u8], range: Range<usize>) {
        let at = self.bytes.len();
        match self.shared.last_mut() {
            Some(last) if last.at == at && last.range.end == range.start => {
                self.shared_len += range.len();
                last.range.end = range.end;
            }
            None if at == 0 => {
                self.shared_len += range.len();
                self.shared.push(Splice { at, range });
            }
            _ => {
                self.detach(broadcast);
                self.bytes.extend_from_slice(&broadcast[range]);
            }
        }
    }

    /// The bytes not yet taken, oldest first. Only for queues that never
    /// hold broadcast ranges (TLS, WebSocket).
    pub fn pending(&self) -> &[u8] {
        debug_assert!(
            self.shared.is_empty(),
            "an encoded link got a broadcast range"
        );
        &self.bytes
    }

    /// Forgets the first `n` pending bytes (they were taken). Returns the
    /// capacity freed. Only for queues that never hold broadcast ranges.
    pub fn consume(&mut self, n: usize) -> usize {
        debug_assert!(
            self.shared.is_empty(),
            "an encoded link got a broadcast range"
        );
        if n < self.bytes.len() {
            self.bytes.drain(..n);
            0
        } else {
            self.emptied()
        }
    }

    /// Writes pending bytes to `sock` until none are left or the kernel's
    /// buffer is full; `broadcast` is the buffer this turn's ranges point
    /// into. What is left afterwards is all own bytes. Returns the capacity
    /// freed.
    pub fn write_to(&mut self, sock: &mut impl Write, broadcast: &[u8]) -> io::Result<usize> {
        let total = self.len();
        let mut written = 0;
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let result = loop {
            if written == total {
                break Ok(());
            }
            let n = self.slices(broadcast, written, &mut slices);
            match sock.write_vectored(&slices[..n]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        let freed = if written == total {
            self.emptied()
        } else if self.shared.is_empty() {
            self.bytes.drain(..written);
            0
        } else {
            self.keep_from(written, broadcast)
        };
        result.map(|()| freed)
    }

    /// Copies the broadcast ranges still queued into the own buffer, so
    /// the broadcast buffer may be reused. Returns the capacity freed.
    pub fn detach(&mut self, broadcast: &[u8]) -> usize {
        if self.shared.is_empty() {
            0
        } else {
            self.keep_from(0, broadcast)
        }
    }

    /// Bytes queued and not yet taken.
    pub fn len(&self) -> usize {
        self.bytes.len() + self.shared_len
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Memory this queue holds for itself: its own bytes and its ranges
    /// (the broadcast bytes belong to the turn, not to the connection).
    pub fn held(&self) -> usize {
        self.bytes.len() + self.shared.len() * std::mem::size_of::<Splice>()
    }

    /// Frees the buffer if it is empty; returns the capacity freed.
    pub fn release_if_empty(&mut self) -> usize {
        if self.is_empty() {
            self.discard()
        } else {
            0
        }
    }

    /// Drops everything queued; returns the capacity freed.
    pub fn discard(&mut self) -> usize {
        self.shared = Vec::new();
        self.shared_len = 0;
        std::mem::take(&mut self.bytes).capacity()
    }

    /// Heap bytes the buffer holds.
    pub fn capacity(&self) -> usize {
        self.bytes.capacity() + self.shared.capacity() * std::mem::size_of::<Splice>()
    }

    /// Everything was taken: keeps a small buffer for the next line.
    fn emptied(&mut self) -> usize {
        self.shared.clear();
        self.shared_len = 0;
        if self.bytes.capacity() > KEEP_CAPACITY {
            std::mem::take(&mut self.bytes).capacity()
        } else {
            self.bytes.clear();
            0
        }
    }

    /// Replaces the queue with its bytes from `skip` on, all own. A queue
    /// that holds a range holds at most this turn's bytes (a backlog of own
    /// bytes makes the next broadcast line a copy), so this copies little.
    fn keep_from(&mut self, skip: usize, broadcast: &[u8]) -> usize {
        let mut rest = Vec::with_capacity(self.len() - skip);
        self.for_each_piece(broadcast, skip, |piece| {
            rest.extend_from_slice(piece);
            true
        });
        self.shared.clear();
        self.shared_len = 0;
        std::mem::replace(&mut self.bytes, rest).capacity()
    }

    /// Fills `slices` with the queue's pieces from byte `skip` on; returns
    /// how many it filled.
    fn slices<'a>(&'a self, broadcast: &'a [u8], skip: usize, slices: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        self.for_each_piece(broadcast, skip, |piece| {
            slices[n] = IoSlice::new(piece);
            n += 1;
            n < slices.len()
        });
        n
    }

    /// Calls `f` with each non-empty piece of the queue in order, from
    /// byte `skip` on, while it returns true.
    fn for_each_piece<'a>(
        &'a self,
        broadcast: &'a [u8],
        mut skip: usize,
        mut f: impl FnMut(&'a [u8]) -> bool,
    ) {
        let mut own = 0;
        let splices = self
            .shared
            .iter()
            .map(|s| (s.at, Some(&broadcast[s.range.clone()])));
        for (at, shared) in splices.chain([(self.bytes.len(), None)]) {
            for piece in [&self.bytes[own..at], shared.unwrap_or_default()] {
                if skip >= piece.len() {
                    skip -= piece.len();
                    continue;
                }
                if !f(&piece[skip..]) {
                    return;
                }
                skip = 0;
            }
            own = at;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that takes at most `room` bytes, then would block.
    struct Socket {
        taken: Vec<u8>,
        room: usize,
        writes: usize,
    }

    impl Write for Socket {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.writes += 1;
            let before = self.taken.len();
            for buf in bufs {
                let n = buf.len().min(self.room - (self.taken.len() - before));
                self.taken.extend_from_slice(&buf[..n]);
            }
            let n = self.taken.len() - before;
            self.room -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn socket(room: usize) -> Socket {
        Socket {
            taken: Vec::new(),
            room,
            writes: 0,
        }
    }

    /// A queue of own and broadcast lines interleaved, with the broadcast
    /// buffer they point into, and what a peer should read.
    fn mixed() -> (OutBuf, Vec<u8>, Vec<u8>) {
        let broadcast = b"MSG a one\nMSG a two\n".to_vec();
        let mut out = OutBuf::default();
        out.queue_shared(&broadcast, 0..10);
        out.queue_shared(&broadcast, 10..20);
        out.queue(b"PONG\n");
        let expected = b"MSG a one\nMSG a two\nPONG\n".to_vec();
        (out, broadcast, expected)
    }

    #[test]
    fn adjacent_ranges_merge_and_one_write_takes_everything_in_order() {
        let (mut out, broadcast, expected) = mixed();
        assert_eq!(out.shared.len(), 1, "two ranges in a row are one");
        assert_eq!(out.len(), expected.len());
        let mut sock = socket(usize::MAX);
        out.write_to(&mut sock, &broadcast).unwrap();
        assert_eq!(sock.taken, expected);
        assert_eq!(sock.writes, 1, "one writev for every piece");
        assert!(out.is_empty());
        assert_eq!(out.held(), 0);
    }

    #[test]
    fn a_partial_write_keeps_the_rest_as_own_bytes() {
        for room in 0..30 {
            let (mut out, broadcast, expected) = mixed();
            let mut sock = socket(room);
            out.write_to(&mut sock, &broadcast).unwrap();
            assert!(
                out.shared.is_empty(),
                "room {room}: a range outlived the write"
            );
            let rest = out.pending().to_vec();
            assert_eq!([sock.taken, rest].concat(), expected, "room {room}");
        }
    }

    #[test]
    fn detach_copies_the_ranges_so_the_broadcast_buffer_can_go() {
        let (mut out, mut broadcast, expected) = mixed();
        out.detach(&broadcast);
        broadcast.clear();
        assert_eq!(out.pending(), &expected[..]);
        let mut sock = socket(usize::MAX);
        out.write_to(&mut sock, &broadcast).unwrap();
        assert_eq!(sock.taken, expected);
    }

    #[test]
    fn held_counts_own_bytes_and_ranges_not_the_broadcast_bytes() {
        let broadcast = [b'b'; 1010];
        let mut out = OutBuf::default();
        for i in 0..100 {
            out.queue_shared(&broadcast, i * 10..i * 10 + 10);
        }
        assert_eq!(out.len(), 1000);
        assert_eq!(
            out.held(),
            std::mem::size_of::<Splice>(),
            "one merged range"
        );
        out.queue(b"x");
        out.queue_shared(&broadcast, 1000..1010);
        assert!(out.shared.is_empty(), "a range after own bytes is copied");
        assert_eq!(out.held(), 1011);
    }

    #[test]
    fn lines_that_do_not_continue_the_range_are_copied_in_order() {
        // Every other line of the broadcast buffer, as for a member of one
        // room in two: no two ranges are adjacent.
        let broadcast: Vec<u8> = (0..40u8).flat_map(|i| [b'a' + i % 26, b'\n']).collect();
        let mut out = OutBuf::default();
        let mut expected = Vec::new();
        for line in (0..40).step_by(2) {
            out.queue_shared(&broadcast, line * 2..line * 2 + 2);
            expected.extend_from_slice(&broadcast[line * 2..line * 2 + 2]);
        }
        assert!(out.shared.is_empty(), "the queue is one piece, its own");
        assert_eq!(out.pending(), &expected[..]);
        let mut sock = socket(usize::MAX);
        out.write_to(&mut sock, &broadcast).unwrap();
        assert_eq!(sock.taken, expected);
        assert_eq!(sock.writes, 1);
    }

    #[test]
    fn an_emptied_buffer_keeps_little() {
        let mut out = OutBuf::default();
        out.queue(&[b'x'; 8192]);
        let freed = out.write_to(&mut socket(usize::MAX), &[]).unwrap();
        assert!(freed >= 8192);
        assert_eq!(out.capacity(), 0);
        out.queue(b"PING\n");
        out.write_to(&mut socket(usize::MAX), &[]).unwrap();
        assert!(
            out.capacity() > 0,
            "a small buffer is kept for the next line"
        );
    }
}

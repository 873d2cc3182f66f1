//! A connection's outgoing bytes, held until the kernel (or TLS) takes them.
//!
//! Most bytes a fan-out sends are the same line for every recipient, so a
//! queue may start with a range of the turn's broadcast buffer (its lines,
//! or for WebSocket queues its frames; see `broadcast`), written once per
//! turn for all recipients, and goes on with the connection's own bytes
//! (its replies, frames of its own). A write hands both at once to the
//! kernel, or to TLS, which encrypts them into one record where they fit,
//! so a broadcast line is never copied into each connection's buffer.
//!
//! Invariants: the range holds older bytes than the own buffer; a range
//! never outlives the turn its broadcast buffer belongs to (the loop calls
//! [`OutBuf::end_turn`] on every queue that took a line of it before the
//! buffer is reused); and an emptied own buffer larger than
//! `KEEP_CAPACITY` is freed, so a burst does not leave every connection
//! holding its high-water mark.

use std::io::{self, IoSlice, Write};
use std::ops::Range;

/// An emptied write buffer keeps this much capacity for the next line.
const KEEP_CAPACITY: usize = 1024;

/// Bytes queued for one connection, oldest first.
#[derive(Debug, Default)]
pub struct OutBuf {
    /// The oldest queued bytes: a range of this turn's broadcast buffer
    /// (empty between turns).
    shared: Range<usize>,
    /// The connection's own bytes, after the range.
    bytes: Vec<u8>,
    /// Where this turn's last broadcast line for this queue ended.
    run_end: Option<usize>,
    /// This turn's broadcast lines for this queue did not follow each other.
    split: bool,
    /// Last turn's lines were split, so this turn's are copied at once.
    copy: bool,
}

impl OutBuf {
    /// Appends `bytes` after everything already queued.
    pub fn queue(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// Appends `range` of this turn's `broadcast` buffer after everything
    /// already queued. It stays a range only where the queue is that range
    /// and nothing else: in an empty queue, or continuing the range. Any
    /// other line is copied, the range first. A queue whose lines did not
    /// follow each other last turn (a member of several busy rooms) copies
    /// from its first line on, since its range would be copied at the next
    /// line anyway: taking it cost the rooms bench about 15 % more CPU per
    /// delivery at saturation (docs/PERFORMANCE.md).
    pub fn queue_shared(&mut self, broadcast: &[u8], range: Range<usize>) {
        self.split |= self.run_end.is_some_and(|end| end != range.start);
        self.run_end = Some(range.end);
        let ranged = !self.copy && self.bytes.is_empty();
        if ranged && self.shared.is_empty() {
            self.shared = range;
        } else if ranged && self.shared.end == range.start {
            self.shared.end = range.end;
        } else {
            self.detach(broadcast);
            self.bytes.extend_from_slice(&broadcast[range]);
        }
    }

    /// The turn is over: copies what is left of its range (the broadcast
    /// buffer is about to be reused) and remembers whether its lines were
    /// split.
    pub fn end_turn(&mut self, broadcast: &[u8]) {
        self.detach(broadcast);
        self.copy = std::mem::take(&mut self.split);
        self.run_end = None;
    }

    /// The bytes not yet taken, once no range is left.
    #[cfg(test)]
    fn pending(&self) -> &[u8] {
        assert!(self.shared.is_empty(), "a range is still queued");
        &self.bytes
    }

    /// Writes pending bytes to `sock` (a socket, or a TLS session's
    /// plaintext side) until none are left or it would block; `broadcast`
    /// is the buffer this turn's range points into. Returns the capacity
    /// freed.
    pub fn write_to(&mut self, sock: &mut impl Write, broadcast: &[u8]) -> io::Result<usize> {
        let mut taken = 0;
        let result = loop {
            let shared = &broadcast[self.shared.clone()];
            let own = &self.bytes[taken..];
            // Usually one piece, which `send` takes as it is.
            let sent = match (shared.is_empty(), own.is_empty()) {
                (true, true) => break Ok(()),
                (false, true) => sock.write(shared),
                (true, false) => sock.write(own),
                (false, false) => sock.write_vectored(&[IoSlice::new(shared), IoSlice::new(own)]),
            };
            match sent {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    let from_shared = n.min(self.shared.len());
                    self.shared.start += from_shared;
                    taken += n - from_shared;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        let freed = if self.shared.is_empty() && taken == self.bytes.len() {
            self.emptied()
        } else {
            self.bytes.drain(..taken);
            0
        };
        result.map(|()| freed)
    }

    /// Copies the broadcast range still queued to the front of the own
    /// buffer, so the broadcast buffer may be reused. The own buffer keeps
    /// its capacity: a turn's copies reuse it rather than allocate.
    fn detach(&mut self, broadcast: &[u8]) {
        let range = std::mem::take(&mut self.shared);
        if range.is_empty() {
            return;
        }
        if self.bytes.is_empty() {
            self.bytes.extend_from_slice(&broadcast[range]);
        } else {
            self.bytes.splice(0..0, broadcast[range].iter().copied());
        }
    }

    /// Bytes queued and not yet taken.
    pub fn len(&self) -> usize {
        self.shared.len() + self.bytes.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Memory this queue holds for itself: its own bytes (the broadcast
    /// bytes belong to the turn, not to the connection).
    pub fn held(&self) -> usize {
        self.bytes.len()
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
        self.shared = 0..0;
        std::mem::take(&mut self.bytes).capacity()
    }

    /// Heap bytes the buffer holds.
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// Everything was taken: keeps a small buffer for the next line.
    fn emptied(&mut self) -> usize {
        self.shared = 0..0;
        if self.bytes.capacity() > KEEP_CAPACITY {
            std::mem::take(&mut self.bytes).capacity()
        } else {
            self.bytes.clear();
            0
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

    /// A queue of two broadcast lines and an own line, with the broadcast
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
    fn adjacent_lines_are_one_range_and_one_write_takes_everything_in_order() {
        let (mut out, broadcast, expected) = mixed();
        assert_eq!(out.shared, 0..20, "two lines in a row are one range");
        assert_eq!(out.len(), expected.len());
        let mut sock = socket(usize::MAX);
        out.write_to(&mut sock, &broadcast).unwrap();
        assert_eq!(sock.taken, expected);
        assert_eq!(sock.writes, 1, "one writev for both pieces");
        assert!(out.is_empty());
    }

    #[test]
    fn a_partial_write_keeps_the_rest_in_order() {
        for room in 0..30 {
            let (mut out, mut broadcast, expected) = mixed();
            let mut sock = socket(room);
            out.write_to(&mut sock, &broadcast).unwrap();
            assert_eq!(out.len(), expected.len() - sock.taken.len(), "room {room}");
            out.end_turn(&broadcast);
            broadcast.clear();
            let rest = out.pending().to_vec();
            assert_eq!([sock.taken, rest].concat(), expected, "room {room}");
        }
    }

    #[test]
    fn the_turns_end_copies_the_range_so_the_broadcast_buffer_can_go() {
        let (mut out, mut broadcast, expected) = mixed();
        out.end_turn(&broadcast);
        broadcast.clear();
        assert_eq!(out.pending(), &expected[..]);
        let mut sock = socket(usize::MAX);
        out.write_to(&mut sock, &broadcast).unwrap();
        assert_eq!(sock.taken, expected);
    }

    #[test]
    fn held_counts_own_bytes_not_the_broadcast_bytes() {
        let broadcast = [b'b'; 1010];
        let mut out = OutBuf::default();
        for i in 0..100 {
            out.queue_shared(&broadcast, i * 10..i * 10 + 10);
        }
        assert_eq!(out.len(), 1000);
        assert_eq!(out.held(), 0, "one range, no bytes of its own");
        out.queue(b"x");
        out.queue_shared(&broadcast, 1000..1010);
        assert!(out.shared.is_empty(), "a line after own bytes is copied");
        assert_eq!(out.held(), 1011);
    }

    /// Every other line of a broadcast buffer, as for a member of one room
    /// in two: no two of its lines are adjacent.
    fn every_other_line(out: &mut OutBuf, broadcast: &[u8]) -> Vec<u8> {
        let mut expected = Vec::new();
        for line in (0..broadcast.len() / 2).step_by(2) {
            out.queue_shared(broadcast, line * 2..line * 2 + 2);
            expected.extend_from_slice(&broadcast[line * 2..line * 2 + 2]);
        }
        expected
    }

    #[test]
    fn lines_that_do_not_continue_the_range_are_copied_in_order() {
        let broadcast: Vec<u8> = (0..40u8).flat_map(|i| [b'a' + i % 26, b'\n']).collect();
        let mut out = OutBuf::default();
        let expected = every_other_line(&mut out, &broadcast);
        assert!(out.shared.is_empty(), "the queue is one piece, its own");
        assert_eq!(out.pending(), &expected[..]);
        let mut sock = socket(usize::MAX);
        out.write_to(&mut sock, &broadcast).unwrap();
        assert_eq!(sock.taken, expected);
        assert_eq!(sock.writes, 1);
    }

    #[test]
    fn a_queue_split_last_turn_copies_its_first_line_and_one_that_was_not_does_not() {
        let broadcast: Vec<u8> = (0..40u8).flat_map(|i| [b'a' + i % 26, b'\n']).collect();
        let mut out = OutBuf::default();
        every_other_line(&mut out, &broadcast);
        out.write_to(&mut socket(usize::MAX), &broadcast).unwrap();
        out.end_turn(&broadcast);
        out.queue_shared(&broadcast, 0..2);
        assert!(out.shared.is_empty(), "split last turn: copied");
        assert_eq!(out.pending(), &broadcast[..2]);
        out.write_to(&mut socket(usize::MAX), &broadcast).unwrap();
        out.end_turn(&broadcast);
        out.queue_shared(&broadcast, 0..2);
        assert_eq!(
            out.shared,
            0..2,
            "one line last turn: not split, a range again"
        );
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

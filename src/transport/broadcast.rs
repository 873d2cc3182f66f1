//! A turn's lines for many recipients, written once for all of them.
//!
//! A line for many recipients (a lobby `MSG`, a room's `SAY`, a presence
//! line) is appended here once per turn, and each recipient's queue takes
//! a range of it (see `outbuf`). WebSocket recipients read the same line as
//! a text frame; a server's frames are unmasked, so that frame is the same
//! bytes for every one of them, and it is written once too, into a second
//! buffer, the first time a WebSocket recipient takes the line. A TLS link
//! encrypts from either buffer at its write, so the line is still never
//! copied per recipient before the kernel (or the cipher) reads it.
//!
//! Invariant: both buffers live for one turn; the loop has every queue that
//! took a range copy it (`Transport::end_turn`) before calling
//! [`Broadcast::clear`].

use std::ops::Range;

use super::frames;

/// This turn's lines, and the frames of those a WebSocket recipient took.
#[derive(Debug, Default)]
pub struct Broadcast {
    lines: Vec<u8>,
    frames: Vec<u8>,
}

/// Where one appended piece (whole lines) sits in the turn's buffers.
#[derive(Debug, Clone)]
pub struct Shared {
    lines: Range<usize>,
    /// Its frames, once a WebSocket recipient asked for them.
    frames: Option<Range<usize>>,
}

impl Broadcast {
    /// Appends complete lines for many recipients.
    pub fn push(&mut self, lines: &[u8]) -> Shared {
        let start = self.lines.len();
        self.lines.extend_from_slice(lines);
        Shared {
            lines: start..self.lines.len(),
            frames: None,
        }
    }

    /// The lines, as newline-framed text.
    pub fn lines(&self) -> &[u8] {
        &self.lines
    }

    /// The frames of the lines WebSocket recipients took.
    pub fn frames(&self) -> &[u8] {
        &self.frames
    }

    /// Where `shared`'s lines sit in the lines buffer.
    pub fn lines_of(&self, shared: &Shared) -> Range<usize> {
        shared.lines.clone()
    }

    /// Where `shared`'s lines sit as text frames, framing them on first use.
    pub fn frames_of(&mut self, shared: &mut Shared) -> Range<usize> {
        if let Some(range) = &shared.frames {
            return range.clone();
        }
        let start = self.frames.len();
        frames::frame_lines(&self.lines[shared.lines.clone()], &mut self.frames);
        let range = start..self.frames.len();
        shared.frames = Some(range.clone());
        range
    }

    /// Bytes held this turn, frames included.
    pub fn len(&self) -> usize {
        self.lines.len() + self.frames.len()
    }

    /// True when nothing was appended this turn.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Empties both buffers for the next turn; frees them when a burst left
    /// them over `keep` bytes, and returns the capacity freed.
    pub fn clear(&mut self, keep: usize) -> usize {
        let mut freed = 0;
        for buf in [&mut self.lines, &mut self.frames] {
            buf.clear();
            if buf.capacity() > keep {
                freed += std::mem::take(buf).capacity();
            }
        }
        freed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_framed_once_and_only_when_asked() {
        let mut b = Broadcast::default();
        let mut one = b.push(b"MSG a hi\n");
        let mut two = b.push(b"INFO b joined\nINFO c joined\n");
        assert!(b.frames().is_empty(), "nobody asked for frames yet");
        let framed = b.frames_of(&mut two);
        assert_eq!(
            &b.frames()[framed.clone()],
            b"\x81\x0dINFO b joined\x81\x0dINFO c joined"
        );
        assert_eq!(b.frames_of(&mut two), framed, "framed once");
        let first = b.frames_of(&mut one);
        assert_eq!(&b.frames()[first], b"\x81\x08MSG a hi");
        assert_eq!(&b.lines()[b.lines_of(&one)], b"MSG a hi\n");
        assert_eq!(b.len(), b.lines().len() + b.frames().len());
    }

    #[test]
    fn clear_keeps_small_buffers_and_frees_large_ones() {
        let mut b = Broadcast::default();
        let mut s = b.push(&[b'x'; 100]);
        b.frames_of(&mut s);
        assert_eq!(b.clear(1 << 20), 0);
        assert!(b.is_empty());
        let mut s = b.push(&[b'x'; 5000]);
        b.frames_of(&mut s);
        assert!(b.clear(1024) >= 10_000);
    }
}

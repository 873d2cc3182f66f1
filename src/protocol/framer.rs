//! Newline framing: turns a byte stream into lines of at most `max_line` bytes.
//!
//! Invariant: the framer never holds more than `max_line + 1` bytes of a
//! partial line (the extra byte is a `\r` that may precede the `\n`). A longer
//! line is reported once as [`Frame::TooLong`] and its bytes are dropped up to
//! the next `\n`, so a peer that never sends a newline cannot grow memory.

use std::ops::ControlFlow;

/// One framing result handed to the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete line, without its `\n` and without one `\r` before it.
    Line(&'a [u8]),
    /// A line passed `max_line`; its bytes up to the next `\n` are discarded.
    TooLong,
}

/// Per-connection line splitter with a hard bound on buffered bytes.
#[derive(Debug, Default)]
pub struct Framer {
    partial: Vec<u8>,
    discarding: bool,
    max_line: usize,
}

impl Framer {
    /// A framer whose lines may hold up to `max_line` bytes (line end not counted).
    pub fn new(max_line: usize) -> Self {
        Framer {
            partial: Vec::new(),
            discarding: false,
            max_line,
        }
    }

    /// Lets lines grow to `max_line` bytes from now on; a line already
    /// partly held is measured against the new limit.
    pub fn raise_max_line(&mut self, max_line: usize) {
        self.max_line = self.max_line.max(max_line);
    }

    /// Feeds `input`, calling `on_frame` for each frame it completes.
    ///
    /// Complete lines inside `input` are handed out without copying; only an
    /// unterminated tail is kept. When `on_frame` breaks, feeding stops right
    /// after that frame and the break carries how many bytes of `input` were
    /// used: the caller keeps the rest (a throttled connection) or drops it
    /// (a closing one).
    pub fn feed(
        &mut self,
        input: &[u8],
        mut on_frame: impl FnMut(Frame<'_>) -> ControlFlow<()>,
    ) -> ControlFlow<usize> {
        // One `\r` may sit before the `\n`, so a legal line can be one byte longer here.
        let limit = self.max_line + 1;
        let mut used = 0;
        while let Some(nl) = input[used..].iter().position(|&b| b == b'\n') {
            let head = &input[used..used + nl];
            used += nl + 1;
            if self.discarding {
                self.discarding = false;
                continue;
            }
            let flow = if self.partial.len() + head.len() > limit {
                self.partial.clear();
                on_frame(Frame::TooLong)
            } else if self.partial.is_empty() {
                on_frame(self.classify(head))
            } else {
                self.partial.extend_from_slice(head);
                let line = std::mem::take(&mut self.partial);
                let flow = on_frame(self.classify(&line));
                self.partial = line;
                self.partial.clear();
                flow
            };
            if flow.is_break() {
                return ControlFlow::Break(used);
            }
        }
        let tail = &input[used..];
        if self.discarding || tail.is_empty() {
            return ControlFlow::Continue(());
        }
        if self.partial.len() + tail.len() > limit {
            self.partial = Vec::new();
            self.discarding = true;
            return match on_frame(Frame::TooLong) {
                ControlFlow::Break(()) => ControlFlow::Break(input.len()),
                ControlFlow::Continue(()) => ControlFlow::Continue(()),
            };
        }
        self.partial.extend_from_slice(tail);
        ControlFlow::Continue(())
    }

    fn classify<'a>(&self, raw: &'a [u8]) -> Frame<'a> {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.len() > self.max_line {
            Frame::TooLong
        } else {
            Frame::Line(line)
        }
    }

    /// Bytes of an unfinished line currently held.
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }

    /// Returns the partial-line buffer's memory when it holds nothing, so an
    /// idle connection costs no buffer at all. Returns the bytes freed.
    pub fn release_idle(&mut self) -> usize {
        if !self.partial.is_empty() {
            return 0;
        }
        std::mem::take(&mut self.partial).capacity()
    }

    /// Heap bytes reserved for the partial line.
    pub fn capacity(&self) -> usize {
        self.partial.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(framer: &mut Framer, chunks: &[&[u8]]) -> Vec<Option<Vec<u8>>> {
        let mut out = Vec::new();
        for chunk in chunks {
            let _ = framer.feed(chunk, |f| {
                out.push(match f {
                    Frame::Line(l) => Some(l.to_vec()),
                    Frame::TooLong => None,
                });
                ControlFlow::Continue(())
            });
        }
        out
    }

    fn line(s: &str) -> Option<Vec<u8>> {
        Some(s.as_bytes().to_vec())
    }

    #[test]
    fn splits_lines_and_strips_one_cr() {
        let mut f = Framer::new(100);
        let got = frames(&mut f, &[b"LOGIN a\r\nMSG hi\n\r\r\n\n"]);
        assert_eq!(
            got,
            vec![line("LOGIN a"), line("MSG hi"), line("\r"), line("")]
        );
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn any_chunking_gives_the_same_lines() {
        let stream: &[u8] = b"LOGIN alice\r\nMSG hello world\nWHO\n\nDM bob  x y \r\nPING 1\n";
        let mut whole = Framer::new(64);
        let expected = frames(&mut whole, &[stream]);
        for size in 1..stream.len() {
            let chunks: Vec<&[u8]> = stream.chunks(size).collect();
            let mut f = Framer::new(64);
            assert_eq!(frames(&mut f, &chunks), expected, "chunk size {size}");
        }
        for split in 0..stream.len() {
            let (a, b) = stream.split_at(split);
            let mut f = Framer::new(64);
            assert_eq!(frames(&mut f, &[a, b]), expected, "split at {split}");
        }
    }

    #[test]
    fn line_of_exactly_max_is_accepted_with_or_without_cr() {
        let mut f = Framer::new(4);
        let got = frames(&mut f, &[b"abcd\nab", b"cd\r\n"]);
        assert_eq!(got, vec![line("abcd"), line("abcd")]);
    }

    #[test]
    fn too_long_line_is_reported_once_and_skipped() {
        let mut f = Framer::new(4);
        let got = frames(&mut f, &[b"abcdef\nok\n"]);
        assert_eq!(got, vec![None, line("ok")]);
        let got = frames(&mut f, &[b"abc", b"de", b"fgh", b"ijk\nnext\n"]);
        assert_eq!(got, vec![None, line("next")]);
    }

    #[test]
    fn unterminated_flood_holds_at_most_max_line_plus_one() {
        let mut f = Framer::new(8);
        let mut reports = 0;
        for _ in 0..1000 {
            let _ = f.feed(b"xyz", |frame| {
                assert_eq!(frame, Frame::TooLong);
                reports += 1;
                ControlFlow::Continue(())
            });
            assert!(f.buffered() <= 9);
            assert!(f.capacity() <= 64);
        }
        assert_eq!(reports, 1);
        assert_eq!(frames(&mut f, &[b"\nafter\n"]), vec![line("after")]);
    }

    #[test]
    fn nine_bytes_ending_in_cr_then_newline_is_too_long_only_without_the_cr() {
        let mut f = Framer::new(8);
        assert_eq!(
            frames(&mut f, &[b"12345678\r", b"\n"]),
            vec![line("12345678")]
        );
        assert_eq!(frames(&mut f, &[b"123456789", b"\n"]), vec![None]);
    }

    #[test]
    fn break_stops_processing() {
        let mut f = Framer::new(10);
        let mut seen = 0;
        let flow = f.feed(b"a\nb\nc\n", |_| {
            seen += 1;
            ControlFlow::Break(())
        });
        assert_eq!(flow, ControlFlow::Break(2), "stopped after the first line");
        assert_eq!(seen, 1);
    }

    #[test]
    fn release_idle_frees_an_empty_buffer_only() {
        let mut f = Framer::new(100);
        let _ = frames(&mut f, &[b"partial"]);
        assert_eq!(f.release_idle(), 0);
        assert_eq!(f.buffered(), 7);
        let _ = frames(&mut f, &[b"\n"]);
        assert!(f.release_idle() >= 7);
        assert_eq!(f.capacity(), 0);
    }
}

//! WebSocket frames (RFC 6455) after the upgrade, both ways, without a
//! library's buffers.
//!
//! The decoder holds only what it must: the bytes of a frame not yet
//! complete and the fragments of a message not yet finished. Both are
//! empty between messages and an idle connection frees them, so a quiet
//! WebSocket costs what a quiet TCP line connection does. Every limit is
//! checked from the header, before a byte of the payload is kept: a data
//! message longer than the limit, a control frame over 125 bytes or
//! fragmented, a frame masked the wrong way, a reserved bit or opcode, and
//! text that is not UTF-8 end the connection with the close code the RFC
//! gives. A ping is answered with a pong, a close with a close.
//!
//! Frames are encoded here too: a server's text frames (unmasked, so the
//! same bytes for every recipient) and a client's (masked).

use std::io;

/// A final text frame.
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CONTINUATION: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;
const FIN: u8 = 0x80;
const MASKED: u8 = 0x80;
/// The longest header: two bytes, eight of length, four of mask.
const MAX_HEADER: usize = 14;
/// The longest control frame payload.
const MAX_CONTROL: usize = 125;

/// Why a connection is closed, as the close frame says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CloseCode {
    Normal = 1000,
    Protocol = 1002,
    Invalid = 1007,
    Size = 1009,
}

/// What one decoded frame means for the layer above.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Unit<'a> {
    /// A whole text message, valid UTF-8.
    Text(&'a [u8]),
    /// A whole binary message (its bytes are dropped).
    Binary,
    /// A ping (answered), a pong, or a fragment of a longer message.
    Control,
    /// The peer closed (answered with a close).
    Closed,
}

/// A decoded frame, before it borrows the buffer it is in.
enum Decoded {
    /// A whole text message in one frame, at this range of the input.
    Frame(std::ops::Range<usize>),
    /// A whole text message in the fragments buffer.
    Message,
    Other(Unit<'static>),
}

/// Which end of the connection this is: a server reads masked frames and
/// writes unmasked ones; a client the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Server,
    Client,
}

/// One WebSocket's frames in and out.
#[derive(Debug)]
pub(super) struct Frames {
    side: Side,
    /// Bytes read and not yet decoded, from `start` on.
    input: Vec<u8>,
    start: usize,
    /// The fragments of an unfinished message, and whether it is text.
    message: Vec<u8>,
    fragmented: Option<bool>,
    /// `message` was handed up whole: it is cleared at the next frame.
    finished: bool,
    /// The longest message (and so frame) taken whole.
    max_message: usize,
    /// A close frame was queued: nothing more is written.
    closing: bool,
    /// The client's mask source (a xorshift seeded at random): the load
    /// generator needs frames masked, not secrets kept.
    mask_state: u64,
}

impl Frames {
    /// A WebSocket just upgraded, with `early` bytes already read past the
    /// HTTP head.
    pub(super) fn new(side: Side, early: &[u8], max_message: usize) -> Frames {
        let mut seed = [0u8; 8];
        if side == Side::Client {
            // A fixed seed still masks correctly; only unpredictability is lost.
            let _ = getrandom::fill(&mut seed);
        }
        Frames {
            side,
            input: early.to_vec(),
            start: 0,
            message: Vec::new(),
            fragmented: None,
            finished: false,
            max_message,
            closing: false,
            mask_state: u64::from_le_bytes(seed) | 1,
        }
    }

    /// Messages up to `max` bytes are taken from now on.
    pub(super) fn set_max_message(&mut self, max: usize) {
        self.max_message = max;
    }

    /// True when lines go out as a server's frames (unmasked, the same
    /// for every recipient) and the close is not yet queued.
    pub(super) fn shares_frames(&self) -> bool {
        self.side == Side::Server && !self.closing
    }

    /// Bytes read from the link, to decode.
    pub(super) fn feed(&mut self, bytes: &[u8]) {
        if self.start == self.input.len() {
            self.input.clear();
            self.start = 0;
        } else if self.start > 0 {
            self.input.drain(..self.start);
            self.start = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    /// Decodes the next frame, if it is all there; replies (a pong, a
    /// close) go to `out`. `Err` is a peer breaking the protocol: the
    /// close frame saying why is already queued, and nothing more is read.
    pub(super) fn next(&mut self, out: &mut impl io::Write) -> Result<Option<Unit<'_>>, CloseCode> {
        match self.decode(out) {
            Err(code) => {
                self.close(code, out);
                Err(code)
            }
            Ok(None) => Ok(None),
            Ok(Some(Decoded::Frame(range))) => Ok(Some(Unit::Text(&self.input[range]))),
            Ok(Some(Decoded::Message)) => Ok(Some(Unit::Text(&self.message))),
            Ok(Some(Decoded::Other(unit))) => Ok(Some(unit)),
        }
    }

    fn decode(&mut self, out: &mut impl io::Write) -> Result<Option<Decoded>, CloseCode> {
        if std::mem::take(&mut self.finished) {
            self.message.clear();
        }
        let Some(head) = Head::parse(&self.input[self.start..])? else {
            return Ok(None);
        };
        let masked_ok = match self.side {
            Side::Server => head.mask.is_some(),
            Side::Client => head.mask.is_none(),
        };
        if !masked_ok {
            return Err(CloseCode::Protocol);
        }
        let control = head.opcode >= CLOSE;
        if control && (!head.fin || head.len > MAX_CONTROL as u64) {
            return Err(CloseCode::Protocol);
        }
        if !control
            && (self.message.len() as u64).saturating_add(head.len) > self.max_message as u64
        {
            return Err(CloseCode::Size);
        }
        let at = self.start + head.size;
        let end = at + head.len as usize;
        if self.input.len() < end {
            return Ok(None);
        }
        self.start = end;
        let payload = &mut self.input[at..end];
        if let Some(mask) = head.mask {
            for (i, byte) in payload.iter_mut().enumerate() {
                *byte ^= mask[i % 4];
            }
        }
        match (head.opcode, self.fragmented) {
            (PING, _) => {
                if !self.closing {
                    let pong = &self.input[at..end];
                    encode(PONG, pong, self.side, &mut self.mask_state, out);
                }
                Ok(Some(Decoded::Other(Unit::Control)))
            }
            (PONG, _) => Ok(Some(Decoded::Other(Unit::Control))),
            (CLOSE, _) => {
                let code = match &self.input[at..end] {
                    [] => CloseCode::Normal as u16,
                    [_] => return Err(CloseCode::Protocol),
                    [hi, lo, reason @ ..] => {
                        if std::str::from_utf8(reason).is_err() {
                            return Err(CloseCode::Invalid);
                        }
                        u16::from_be_bytes([*hi, *lo])
                    }
                };
                if !self.closing {
                    self.closing = true;
                    encode(
                        CLOSE,
                        &code.to_be_bytes(),
                        self.side,
                        &mut self.mask_state,
                        out,
                    );
                }
                Ok(Some(Decoded::Other(Unit::Closed)))
            }
            (TEXT | BINARY, None) if head.fin => {
                if head.opcode == BINARY {
                    return Ok(Some(Decoded::Other(Unit::Binary)));
                }
                if std::str::from_utf8(&self.input[at..end]).is_err() {
                    return Err(CloseCode::Invalid);
                }
                Ok(Some(Decoded::Frame(at..end)))
            }
            (TEXT | BINARY, None) => {
                self.fragmented = Some(head.opcode == TEXT);
                self.message.extend_from_slice(&self.input[at..end]);
                Ok(Some(Decoded::Other(Unit::Control)))
            }
            (CONTINUATION, Some(is_text)) => {
                self.message.extend_from_slice(&self.input[at..end]);
                if !head.fin {
                    return Ok(Some(Decoded::Other(Unit::Control)));
                }
                self.fragmented = None;
                self.finished = true;
                if !is_text {
                    return Ok(Some(Decoded::Other(Unit::Binary)));
                }
                if std::str::from_utf8(&self.message).is_err() {
                    return Err(CloseCode::Invalid);
                }
                Ok(Some(Decoded::Message))
            }
            _ => Err(CloseCode::Protocol),
        }
    }

    /// Queues a close frame with `code`, once.
    pub(super) fn close(&mut self, code: CloseCode, out: &mut impl io::Write) {
        if !self.closing {
            self.closing = true;
            encode(
                CLOSE,
                &(code as u16).to_be_bytes(),
                self.side,
                &mut self.mask_state,
                out,
            );
        }
    }

    /// Queues `lines` as one text frame each, the line end dropped.
    pub(super) fn queue(&mut self, lines: &[u8], out: &mut impl io::Write) {
        if self.closing {
            return;
        }
        for line in lines.split_inclusive(|&b| b == b'\n') {
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            encode(TEXT, text, self.side, &mut self.mask_state, out);
        }
    }

    /// Frees the buffers when they hold nothing; returns the capacity freed.
    pub(super) fn release_idle(&mut self) -> usize {
        let mut freed = 0;
        if self.start == self.input.len() {
            self.start = 0;
            freed += std::mem::take(&mut self.input).capacity();
        }
        if self.fragmented.is_none() {
            self.finished = false;
            freed += std::mem::take(&mut self.message).capacity();
        }
        freed
    }

    /// Heap bytes held.
    pub(super) fn capacity(&self) -> usize {
        self.input.capacity() + self.message.capacity()
    }
}

/// Appends `lines` to `out` as a server's text frames, one per line, the
/// line end dropped. Unmasked, so the bytes are the same for every peer.
pub(super) fn frame_lines(lines: &[u8], out: &mut Vec<u8>) {
    for line in lines.split_inclusive(|&b| b == b'\n') {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        encode(TEXT, text, Side::Server, &mut 0, out);
    }
}

/// Writes one final frame of `opcode` holding `payload`, masked when a
/// client sends it. Writing into a Vec or an out buffer cannot fail.
fn encode(opcode: u8, payload: &[u8], side: Side, mask_state: &mut u64, out: &mut impl io::Write) {
    let mut head = [0u8; MAX_HEADER];
    head[0] = FIN | opcode;
    let mut size = match payload.len() {
        n if n < 126 => {
            head[1] = n as u8;
            2
        }
        n if n <= u16::MAX as usize => {
            head[1] = 126;
            head[2..4].copy_from_slice(&(n as u16).to_be_bytes());
            4
        }
        n => {
            head[1] = 127;
            head[2..10].copy_from_slice(&(n as u64).to_be_bytes());
            10
        }
    };
    if side == Side::Server {
        let _ = out.write_all(&head[..size]);
        let _ = out.write_all(payload);
        return;
    }
    // xorshift64: a new mask for every frame.
    let mut x = *mask_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *mask_state = x;
    let mask = (x as u32).to_be_bytes();
    head[1] |= MASKED;
    head[size..size + 4].copy_from_slice(&mask);
    size += 4;
    let _ = out.write_all(&head[..size]);
    let mut chunk = [0u8; 256];
    for (n, piece) in payload.chunks(chunk.len()).enumerate() {
        // Chunks are a multiple of 4 long, so the mask lines up.
        debug_assert!(n * chunk.len() % 4 == 0);
        for (i, (to, from)) in chunk.iter_mut().zip(piece).enumerate() {
            *to = from ^ mask[i % 4];
        }
        let _ = out.write_all(&chunk[..piece.len()]);
    }
}

/// A frame's header.
#[derive(Debug)]
struct Head {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: u64,
    /// Bytes the header takes.
    size: usize,
}

impl Head {
    /// The header at the start of `bytes`, `None` while it is not all
    /// there. Reserved bits (no extension is agreed) and opcodes are errors.
    fn parse(bytes: &[u8]) -> Result<Option<Head>, CloseCode> {
        let [b0, b1, rest @ ..] = bytes else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 {
            return Err(CloseCode::Protocol);
        }
        let opcode = b0 & 0x0F;
        if !matches!(opcode, CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG) {
            return Err(CloseCode::Protocol);
        }
        let (len, len_size) = match b1 & 0x7F {
            126 => match rest {
                [a, b, ..] => (u16::from_be_bytes([*a, *b]) as u64, 2),
                _ => return Ok(None),
            },
            127 => match rest.get(..8) {
                Some(len) => {
                    let mut be = [0u8; 8];
                    be.copy_from_slice(len);
                    let len = u64::from_be_bytes(be);
                    if len >> 63 != 0 {
                        return Err(CloseCode::Protocol);
                    }
                    (len, 8)
                }
                None => return Ok(None),
            },
            n => (n as u64, 0),
        };
        let mut size = 2 + len_size;
        let mask = if b1 & MASKED != 0 {
            let Some(key) = bytes.get(size..size + 4) else {
                return Ok(None);
            };
            size += 4;
            Some([key[0], key[1], key[2], key[3]])
        } else {
            None
        };
        Ok(Some(Head {
            fin: b0 & FIN != 0,
            opcode,
            mask,
            len,
            size,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a client sends it: masked, `fin` as given.
    fn client(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![if fin { FIN } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => frame.push(MASKED | n as u8),
            n if n <= u16::MAX as usize => {
                frame.push(MASKED | 126);
                frame.extend((n as u16).to_be_bytes());
            }
            n => {
                frame.push(MASKED | 127);
                frame.extend((n as u64).to_be_bytes());
            }
        }
        frame.extend(mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    /// What a server makes of `wire`: each unit, or the close code, and
    /// what it queued in reply.
    fn server_reads(wire: &[u8], max: usize) -> (Vec<String>, Vec<u8>) {
        let mut frames = Frames::new(Side::Server, &[], max);
        frames.feed(wire);
        let (mut seen, mut out) = (Vec::new(), Vec::new());
        loop {
            match frames.next(&mut out) {
                Ok(Some(Unit::Text(t))) => seen.push(String::from_utf8(t.to_vec()).unwrap()),
                Ok(Some(unit)) => seen.push(format!("{unit:?}")),
                Ok(None) => break,
                Err(code) => {
                    seen.push(format!("{code:?}"));
                    break;
                }
            }
        }
        (seen, out)
    }

    fn close_frame(code: CloseCode) -> Vec<u8> {
        let mut frame = vec![FIN | CLOSE, 2];
        frame.extend((code as u16).to_be_bytes());
        frame
    }

    #[test]
    fn fragments_make_one_message_with_controls_between_them() {
        let mut wire = client(TEXT, false, b"hel");
        wire.extend(client(PING, true, b"p"));
        wire.extend(client(CONTINUATION, false, "lo w\u{f6}".as_bytes()));
        wire.extend(client(CONTINUATION, true, b"rld"));
        wire.extend(client(BINARY, false, b"\x00"));
        wire.extend(client(CONTINUATION, true, b"\x01"));
        wire.extend(client(TEXT, true, b"next"));
        let (seen, out) = server_reads(&wire, 100);
        assert_eq!(
            seen,
            [
                "Control",
                "Control",
                "Control",
                "hello w\u{f6}rld",
                "Control",
                "Binary",
                "next"
            ]
        );
        assert_eq!(out, [FIN | PONG, 1, b'p'], "the ping answered, unmasked");
    }

    #[test]
    fn each_breach_closes_with_its_code() {
        let over = client(TEXT, true, &[b'x'; 101]);
        let cases: Vec<(&str, Vec<u8>, CloseCode)> = vec![
            (
                "unmasked",
                vec![FIN | TEXT, 2, b'h', b'i'],
                CloseCode::Protocol,
            ),
            (
                "reserved bit",
                {
                    let mut f = client(TEXT, true, b"hi");
                    f[0] |= 0x40;
                    f
                },
                CloseCode::Protocol,
            ),
            (
                "reserved opcode",
                client(0x3, true, b"hi"),
                CloseCode::Protocol,
            ),
            (
                "long ping",
                client(PING, true, &[b'p'; 126]),
                CloseCode::Protocol,
            ),
            (
                "fragmented ping",
                client(PING, false, b"p"),
                CloseCode::Protocol,
            ),
            (
                "continuation first",
                client(CONTINUATION, true, b"x"),
                CloseCode::Protocol,
            ),
            (
                "text inside a message",
                [client(TEXT, false, b"a"), client(TEXT, true, b"b")].concat(),
                CloseCode::Protocol,
            ),
            ("bad utf-8", client(TEXT, true, b"\xff"), CloseCode::Invalid),
            (
                "bad utf-8 over fragments",
                [
                    client(TEXT, false, b"\xe2\x82"),
                    client(CONTINUATION, true, b"x"),
                ]
                .concat(),
                CloseCode::Invalid,
            ),
            (
                "one-byte close",
                client(CLOSE, true, b"\x03"),
                CloseCode::Protocol,
            ),
            ("too long", over.clone(), CloseCode::Size),
            (
                "too long only by its header",
                over[..8].to_vec(),
                CloseCode::Size,
            ),
            (
                "too long over fragments",
                [
                    client(TEXT, false, &[b'x'; 60]),
                    client(CONTINUATION, true, &[b'x'; 41]),
                ]
                .concat(),
                CloseCode::Size,
            ),
        ];
        for (what, wire, code) in cases {
            let (seen, out) = server_reads(&wire, 100);
            assert_eq!(seen.last().unwrap(), &format!("{code:?}"), "{what}");
            assert_eq!(out, close_frame(code), "{what}: one close frame");
        }
    }

    #[test]
    fn a_close_is_answered_with_its_code_once_and_nothing_follows_it() {
        let mut wire = client(CLOSE, true, b"\x0b\xb8bye");
        wire.extend(client(PING, true, b"p"));
        let mut frames = Frames::new(Side::Server, &[], 100);
        frames.feed(&wire);
        let mut out = Vec::new();
        assert_eq!(frames.next(&mut out), Ok(Some(Unit::Closed)));
        assert_eq!(out, [FIN | CLOSE, 2, 0x0b, 0xb8]);
        assert!(!frames.shares_frames());
        frames.queue(b"late\n", &mut out);
        frames.close(CloseCode::Normal, &mut out);
        assert_eq!(frames.next(&mut out), Ok(Some(Unit::Control)));
        assert_eq!(out.len(), 4, "no line, no second close, no pong after it");
    }

    #[test]
    fn a_clients_frames_are_masked_and_read_back_at_every_length() {
        for len in [0, 1, 125, 126, 65_535, 65_536] {
            let text = "a".repeat(len);
            let mut client = Frames::new(Side::Client, &[], usize::MAX);
            let mut wire = Vec::new();
            client.queue(format!("{text}\n").as_bytes(), &mut wire);
            assert_ne!(wire[1] & MASKED, 0, "masked");
            let (seen, _) = server_reads(&wire, usize::MAX);
            assert_eq!(seen, vec![text.clone()], "length {len}");
            let mut framed = Vec::new();
            frame_lines(format!("{text}\n").as_bytes(), &mut framed);
            let mut reader = Frames::new(Side::Client, &framed, usize::MAX);
            assert_eq!(
                reader.next(&mut Vec::new()),
                Ok(Some(Unit::Text(text.as_bytes()))),
                "a server's frame of {len}"
            );
        }
    }

    #[test]
    fn an_idle_decoder_holds_nothing() {
        let mut frames = Frames::new(Side::Server, &[], 1000);
        frames.feed(&client(TEXT, true, &[b'x'; 500]));
        frames.feed(&client(TEXT, false, b"half")[..3]);
        assert!(matches!(
            frames.next(&mut Vec::new()),
            Ok(Some(Unit::Text(_)))
        ));
        assert_eq!(frames.release_idle(), 0, "a partial frame is kept");
        assert!(frames.capacity() > 0);
        let mut frames = Frames::new(Side::Server, &[], 1000);
        frames.feed(&client(TEXT, true, &[b'x'; 500]));
        assert!(matches!(
            frames.next(&mut Vec::new()),
            Ok(Some(Unit::Text(_)))
        ));
        assert_eq!(frames.next(&mut Vec::new()), Ok(None));
        assert!(frames.release_idle() >= 500);
        assert_eq!(frames.capacity(), 0);
    }
}

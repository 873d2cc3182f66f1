//! Arbitrary bytes on the web port, cut at arbitrary points: the HTTP
//! request head, the WebSocket upgrade, and frames after it (half of the
//! inputs start with a valid upgrade, so the frame decoder is reached).
//! Checks: no panic; no read error except a failed link; what is handed up
//! after an upgrade is newline-terminated text of at most the message
//! limit per line; the server's output stays bounded by the input.
//!
//! The memory oracle: in half the runs the peer never reads. The target
//! then does what the server's loop does after every read (drop the peer
//! once its queue passes the sendq, here the pre-login allowance) and
//! asserts that what the transport holds never passes the sendq plus what
//! one read may queue (the largest single answer: the page), whatever the
//! input: one call never answers a stream of pings at once.
#![no_main]

use std::io::{self, Read, Write};

use libfuzzer_sys::fuzz_target;
use selectchat::session::PRE_LOGIN_BYTES;
use selectchat::transport::{Received, Setup, Transport, TransportKind, WebPolicy};

/// What one read may queue at most: the page with its headers, or one
/// small frame.
const ONE_ANSWER: usize = 64 * 1024;
/// What one read that does not end the connection may queue: the 101
/// response and one pong.
const ONE_FRAME: usize = 512;
/// Capacity a vector may have beyond its length after growing.
const KEEP_SLACK: usize = 64 * 1024;
/// Heap a web transport holds besides its queue: the request head, the
/// frame decoder's buffer and a message read whole before login, and a
/// message's rest waiting to be handed up.
const HELD_BESIDES: usize = 8 * 1024 + 3 * PRE_LOGIN_BYTES + 4096;

const UPGRADE: &[u8] = b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// Gives out the input a chunk at a time, then would block; takes
/// everything written, unless the peer never reads.
struct Sock<'a> {
    input: &'a [u8],
    limit: usize,
    out: Vec<u8>,
    never_reads: bool,
}

impl Read for Sock<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.limit == 0 || self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.input.len()).min(self.limit);
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        self.limit -= n;
        Ok(n)
    }
}

impl Write for Sock<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.never_reads {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let mut wire = Vec::new();
    if seed & 1 == 1 {
        wire.extend_from_slice(UPGRADE);
    }
    wire.extend_from_slice(rest);
    let policy = std::sync::Arc::new(WebPolicy::new(None, 64));
    let setup = Setup {
        tls: None,
        web: policy.clone(),
    };
    let mut t = Transport::new(TransportKind::Web, &setup).expect("a web transport");
    // 64 bytes to 4 KiB a round: enough for dozens of frames at once.
    let chunk = (usize::from(seed >> 2) + 1) * 64;
    let mut sock = Sock {
        input: &wire,
        limit: 0,
        out: Vec::new(),
        never_reads: seed & 2 == 2,
    };
    let mut buf = [0u8; 512];
    let mut handed_up = Vec::new();
    'feed: while !sock.input.is_empty() {
        sock.limit = chunk;
        loop {
            let before = t.buffered();
            let received = t.read(&mut sock, &mut buf);
            let held = t.buffered();
            // One call answers one thing: a frame (a pong), the upgrade and
            // a frame, or a whole response (then the connection is done).
            if !matches!(received, Ok(Received::Closed) | Err(_)) {
                assert!(
                    held - before <= ONE_FRAME,
                    "one read queued {} bytes",
                    held - before
                );
            }
            assert!(
                held <= PRE_LOGIN_BYTES + ONE_ANSWER,
                "{held} bytes queued for a peer allowed {PRE_LOGIN_BYTES}"
            );
            assert!(
                t.buffer_capacity() <= held + KEEP_SLACK + HELD_BESIDES,
                "the transport holds {} bytes",
                t.buffer_capacity()
            );
            if held > PRE_LOGIN_BYTES {
                // The server drops it here, at its sendq.
                break 'feed;
            }
            match received {
                Ok(Received::Bytes(n)) => handed_up.extend_from_slice(&buf[..n]),
                Ok(Received::NotText) => handed_up.extend_from_slice(b"\n"),
                Ok(Received::Control | Received::Progress) => {}
                Ok(Received::WouldBlock) => break,
                Ok(Received::Closed) | Err(_) => break 'feed,
            }
        }
        t.queue(b"PING\n");
        t.write_to(&mut sock).expect("writing to memory");
        if t.buffered() > PRE_LOGIN_BYTES {
            break;
        }
    }
    if !handed_up.is_empty() {
        assert_eq!(handed_up.last(), Some(&b'\n'), "a message without its line end");
        assert!(std::str::from_utf8(&handed_up).is_ok(), "non-text handed up");
        for line in handed_up.split(|&b| b == b'\n') {
            assert!(line.len() <= policy.max_message, "{} bytes in one line", line.len());
        }
    }
    // Responses, pongs and our PINGs: bounded by the input, never a flood.
    assert!(sock.out.len() <= 8 * 1024 + 16 * wire.len() + 64 * 1024);
    assert!(t.buffered() <= PRE_LOGIN_BYTES + ONE_ANSWER);
});

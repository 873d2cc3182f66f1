//! Each transport driven with bytes alone: an in-memory socket, a rustls
//! client, hand-made WebSocket frames.

use std::collections::VecDeque;
use std::io::{self, Cursor, Read, Write};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::{Frame, FrameHeader};

use super::*;
use crate::session::PRE_LOGIN_BYTES;

/// One side of a socket: bytes the peer sent wait in `input`; what this
/// side writes goes to `output`, at most `room` bytes until it would block.
#[derive(Default)]
struct MemSock {
    input: VecDeque<u8>,
    output: Vec<u8>,
    room: Option<usize>,
    eof: bool,
}

impl Read for MemSock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return if self.eof {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(self.input.len());
        for (slot, byte) in buf.iter_mut().zip(self.input.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }
}

impl Write for MemSock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.room.unwrap_or(usize::MAX);
        if room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(room);
        self.room = self.room.map(|r| r - n);
        self.output.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn policy() -> Arc<WebPolicy> {
    Arc::new(WebPolicy::new(None, 64))
}

fn setup(tls: Option<Arc<rustls::ServerConfig>>) -> Setup {
    Setup { tls, web: policy() }
}

/// Everything the transport hands up from what is in `sock` now: lines
/// as text, a binary message as `<not-text>`, the end as `<closed>`.
fn drain(t: &mut Transport, sock: &mut MemSock) -> String {
    String::from_utf8(drain_bytes(t, sock)).unwrap()
}

fn drain_bytes(t: &mut Transport, sock: &mut MemSock) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 32];
    loop {
        match t.read(sock, &mut buf).expect("read") {
            Received::Bytes(n) => seen.extend_from_slice(&buf[..n]),
            Received::NotText => seen.extend_from_slice(b"<not-text>\n"),
            Received::Control => seen.extend_from_slice(b"<control>\n"),
            Received::Progress => {}
            Received::WouldBlock => return seen,
            Received::Closed => {
                seen.extend_from_slice(b"<closed>\n");
                return seen;
            }
        }
    }
}

#[test]
fn plain_reads_pass_through_and_end_at_eof() {
    let mut t = Transport::new(TransportKind::Plain, &setup(None)).unwrap();
    let mut sock = MemSock {
        input: b"LOGIN a\n".iter().copied().collect(),
        eof: true,
        ..MemSock::default()
    };
    assert_eq!(drain(&mut t, &mut sock), "LOGIN a\n<closed>\n");
}

#[test]
fn plain_writes_keep_what_the_kernel_did_not_take() {
    let mut t = Transport::new(TransportKind::Plain, &setup(None)).unwrap();
    t.queue(b"OK\n");
    t.queue(b"INFO bob joined\n");
    let mut sock = MemSock {
        room: Some(5),
        ..MemSock::default()
    };
    t.write_to(&mut sock).unwrap();
    assert_eq!(sock.output, b"OK\nIN");
    assert_eq!(t.buffered(), 14);
    assert!(t.wants_write());
    assert_eq!(t.take_wire_written(), 5, "what the kernel took is counted");
    sock.room = None;
    t.write_to(&mut sock).unwrap();
    assert_eq!(sock.output, b"OK\nINFO bob joined\n");
    assert!(!t.wants_write());
    assert_eq!(t.take_wire_written(), 14);
    assert_eq!(t.take_wire_written(), 0);
}

#[test]
fn a_burst_buffer_is_freed_once_written() {
    let mut t = Transport::new(TransportKind::Plain, &setup(None)).unwrap();
    t.queue(&[b'x'; 10_000]);
    let mut sock = MemSock::default();
    assert!(t.write_to(&mut sock).unwrap() >= 10_000);
    assert_eq!(t.buffer_capacity(), 0);
    t.queue(b"small\n");
    assert_eq!(t.write_to(&mut sock).unwrap(), 0);
    assert!(t.buffer_capacity() > 0, "a small buffer is kept");
    assert!(t.release_idle_buffers() > 0);
    assert_eq!(t.buffer_capacity(), 0);
}

/// A server config and a client config that trusts it.
fn tls_pair() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let der: CertificateDer<'static> = cert.der().clone();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![der.clone()],
            PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// Moves bytes between a rustls client and the server transport until
/// neither has anything more to say; returns what the server handed up.
fn shuttle(
    client: &mut rustls::ClientConnection,
    server: &mut Transport,
    sock: &mut MemSock,
) -> String {
    let mut seen = String::new();
    for _ in 0..20 {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        sock.input.extend(wire);
        seen.push_str(&drain(server, sock));
        server.write_to(sock).unwrap();
        let from_server = std::mem::take(&mut sock.output);
        if from_server.is_empty() && !client.wants_write() {
            break;
        }
        let mut cursor = Cursor::new(from_server);
        while (cursor.position() as usize) < cursor.get_ref().len() {
            client.read_tls(&mut cursor).unwrap();
            client.process_new_packets().unwrap();
        }
    }
    seen
}

fn client_plaintext(client: &mut rustls::ClientConnection) -> String {
    let mut text = Vec::new();
    let _ = client.reader().read_to_end(&mut text);
    String::from_utf8(text).unwrap()
}

#[test]
fn tls_carries_lines_both_ways_and_ends_with_close_notify() {
    let (server_config, client_config) = tls_pair();
    let mut server = Transport::new(TransportKind::Tls, &setup(Some(server_config))).unwrap();
    let name = "localhost".try_into().unwrap();
    let mut client = rustls::ClientConnection::new(client_config, name).unwrap();
    let mut sock = MemSock::default();
    client.writer().write_all(b"LOGIN alice\nMSG hi\n").unwrap();
    assert_eq!(
        shuttle(&mut client, &mut server, &mut sock),
        "LOGIN alice\nMSG hi\n"
    );
    assert!(!client.is_handshaking());
    server.queue(b"OK\nINFO alice: hi\n");
    server.end();
    assert!(server.wants_write());
    shuttle(&mut client, &mut server, &mut sock);
    assert_eq!(client_plaintext(&mut client), "OK\nINFO alice: hi\n");
    assert!(!server.wants_write());
}

#[test]
fn a_failed_handshake_is_an_error_not_a_panic() {
    let (server_config, _) = tls_pair();
    let mut server = Transport::new(TransportKind::Tls, &setup(Some(server_config))).unwrap();
    let mut sock = MemSock {
        input: b"LOGIN alice\n".iter().copied().collect(),
        ..MemSock::default()
    };
    let mut buf = [0u8; 64];
    assert!(server.read(&mut sock, &mut buf).is_err());
}

const UPGRADE: &str = "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// A masked client frame, as a browser sends it.
fn client_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    masked(Frame::message(payload.to_vec(), opcode, true))
}

fn masked(mut frame: Frame) -> Vec<u8> {
    frame.header_mut().mask = Some([7, 1, 200, 42]);
    let mut bytes = Vec::new();
    frame.format(&mut bytes).unwrap();
    bytes
}

fn text(payload: &str) -> Vec<u8> {
    client_frame(OpCode::Data(Data::Text), payload.as_bytes())
}

/// The text frames the server wrote after its HTTP response.
fn server_texts(output: &[u8]) -> Vec<String> {
    let start = output
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response")
        + 4;
    let mut cursor = Cursor::new(&output[start..]);
    let mut texts = Vec::new();
    while let Some((header, len)) = FrameHeader::parse(&mut cursor).unwrap() {
        let at = cursor.position() as usize;
        let payload = &cursor.get_ref()[at..at + len as usize];
        if header.opcode == OpCode::Data(Data::Text) {
            texts.push(String::from_utf8(payload.to_vec()).unwrap());
        } else {
            texts.push(format!("<{:?}>", header.opcode));
        }
        cursor.set_position((at + len as usize) as u64);
    }
    texts
}

fn web_session() -> Vec<u8> {
    let mut wire = UPGRADE.as_bytes().to_vec();
    wire.extend(text("LOGIN alice"));
    wire.extend(text("MSG one\nMSG two\n"));
    wire.extend(client_frame(OpCode::Data(Data::Binary), b"\x00\x01"));
    wire.extend(masked(Frame::ping(b"hb".to_vec())));
    wire.extend(text(&"x".repeat(100)));
    wire.extend(text("QUIT"));
    wire
}

const WEB_SESSION_SEEN: &str = "LOGIN alice\nMSG one\nMSG two\n<not-text>\n<control>\n";

#[test]
fn websocket_messages_are_lines_and_lines_are_text_frames() {
    let mut t = Transport::new(TransportKind::Web, &setup(None)).unwrap();
    let mut sock = MemSock {
        input: web_session().into_iter().collect(),
        ..MemSock::default()
    };
    let seen = drain(&mut t, &mut sock);
    let long = "x".repeat(100);
    assert_eq!(seen, format!("{WEB_SESSION_SEEN}{long}\nQUIT\n"));
    t.queue(b"OK\nINFO alice: one\n");
    t.end();
    t.write_to(&mut sock).unwrap();
    let response = String::from_utf8_lossy(&sock.output);
    assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    let frames = server_texts(&sock.output);
    assert_eq!(
        frames,
        [
            "<Control(Pong)>",
            "OK",
            "INFO alice: one",
            "<Control(Close)>"
        ]
    );
}

#[test]
fn websocket_input_split_at_every_byte_gives_the_same_lines() {
    let wire = web_session();
    let mut t = Transport::new(TransportKind::Web, &setup(None)).unwrap();
    let mut sock = MemSock::default();
    let mut seen = String::new();
    for byte in wire {
        sock.input.push_back(byte);
        seen.push_str(&drain(&mut t, &mut sock));
    }
    let long = "x".repeat(100);
    assert_eq!(seen, format!("{WEB_SESSION_SEEN}{long}\nQUIT\n"));
}

#[test]
fn an_oversize_websocket_message_closes_with_1009() {
    let mut t = Transport::new(TransportKind::Web, &setup(None)).unwrap();
    let mut wire = UPGRADE.as_bytes().to_vec();
    wire.extend(text(&"y".repeat(policy().max_message + 1)));
    let mut sock = MemSock {
        input: wire.into_iter().collect(),
        ..MemSock::default()
    };
    assert_eq!(drain(&mut t, &mut sock), "<closed>\n");
    t.write_to(&mut sock).unwrap();
    assert_eq!(server_texts(&sock.output), ["<Control(Close)>"]);
}

#[test]
fn each_control_frame_is_reported_alone_with_its_bytes_counted() {
    let mut t = Transport::new(TransportKind::Web, &setup(None)).unwrap();
    let mut wire = UPGRADE.as_bytes().to_vec();
    let ping = masked(Frame::ping(vec![b'p'; 125]));
    for _ in 0..50 {
        wire.extend(&ping);
    }
    wire.extend(masked(Frame::pong(b"unasked".to_vec())));
    let total = wire.len();
    let mut sock = MemSock {
        input: wire.into_iter().collect(),
        ..MemSock::default()
    };
    let mut buf = [0u8; 4096];
    let mut queued = Vec::new();
    loop {
        match t.read(&mut sock, &mut buf).unwrap() {
            Received::Control => queued.push(t.buffered()),
            Received::Progress => {}
            Received::WouldBlock => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(queued.len(), 51, "one report per ping and pong");
    // The 101 response, then one pong (125 bytes and a 2-byte header) per
    // ping: the caller sees the queue grow a frame at a time.
    let response = queued[0] - 127;
    for (i, &held) in queued.iter().take(50).enumerate() {
        assert_eq!(held, response + 127 * (i + 1), "after ping {i}");
    }
    assert_eq!(queued[50], queued[49], "an unasked pong is not answered");
    assert_eq!(
        t.take_wire_read(),
        total,
        "every byte off the socket counted"
    );
    assert_eq!(t.take_wire_read(), 0);
}

#[test]
fn an_anonymous_websocket_may_send_only_small_messages() {
    let big = text(&"z".repeat(PRE_LOGIN_BYTES + 1));
    let mut t = Transport::new(TransportKind::Web, &setup(None)).unwrap();
    let mut wire = UPGRADE.as_bytes().to_vec();
    wire.extend(&big);
    let mut sock = MemSock {
        input: wire.into_iter().collect(),
        ..MemSock::default()
    };
    assert_eq!(
        drain(&mut t, &mut sock),
        "<closed>\n",
        "refused before login"
    );

    let mut t = Transport::new(TransportKind::Web, &setup(None)).unwrap();
    let mut sock = MemSock {
        input: UPGRADE.bytes().collect(),
        ..MemSock::default()
    };
    assert_eq!(drain(&mut t, &mut sock), "");
    t.logged_in();
    sock.input.extend(big);
    let seen = drain(&mut t, &mut sock);
    assert_eq!(seen.len(), PRE_LOGIN_BYTES + 2, "read whole after login");
}

#[test]
fn the_page_is_answered_and_the_connection_ends() {
    let mut t = Transport::new(TransportKind::Web, &setup(None)).unwrap();
    let mut sock = MemSock {
        input: b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
            .iter()
            .copied()
            .collect(),
        ..MemSock::default()
    };
    assert_eq!(drain(&mut t, &mut sock), "<closed>\n");
    t.queue(b"PING\n");
    t.write_to(&mut sock).unwrap();
    let response = String::from_utf8(sock.output).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(response.ends_with("</html>\n"), "nothing after the page");
}

/// What each transport hands up for `lines`, fed in pieces cut at `cuts`.
fn decoded_over(kind: TransportKind, lines: &[String], cuts: &[usize]) -> Vec<u8> {
    let wire: Vec<u8> = match kind {
        TransportKind::Plain => lines
            .iter()
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect(),
        TransportKind::Web => {
            let mut wire = UPGRADE.as_bytes().to_vec();
            for line in lines {
                wire.extend(text(line));
            }
            wire
        }
        other => unreachable!("{other:?}"),
    };
    let mut t = Transport::new(kind, &setup(None)).unwrap();
    let mut sock = MemSock::default();
    let mut seen = Vec::new();
    let mut at = 0;
    for &cut in cuts.iter().chain([&wire.len()]) {
        let cut = cut.min(wire.len()).max(at);
        sock.input.extend(&wire[at..cut]);
        at = cut;
        seen.extend(drain_bytes(&mut t, &mut sock));
    }
    seen
}

proptest::proptest! {
    /// The session sees the same bytes whichever way a line came: lines of
    /// any text (control characters and `\r` included), cut anywhere.
    #[test]
    fn a_line_decodes_the_same_over_every_transport(
        lines in proptest::collection::vec("[^\n]{0,80}", 1..8),
        mut cuts in proptest::collection::vec(0usize..2000, 0..6),
    ) {
        cuts.sort_unstable();
        let plain = decoded_over(TransportKind::Plain, &lines, &cuts);
        let web = decoded_over(TransportKind::Web, &lines, &cuts);
        proptest::prop_assert_eq!(plain, web);
    }
}

#[test]
fn tls_decodes_a_line_as_plain_does() {
    let (server_config, client_config) = tls_pair();
    let lines = ["LOGIN a", "MSG \u{1b}[31m", "MSG a\r", "", "  WHO  "];
    let mut server = Transport::new(TransportKind::Tls, &setup(Some(server_config))).unwrap();
    let name = "localhost".try_into().unwrap();
    let mut client = rustls::ClientConnection::new(client_config, name).unwrap();
    let mut sock = MemSock::default();
    for line in lines {
        client
            .writer()
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }
    let owned: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    assert_eq!(
        shuttle(&mut client, &mut server, &mut sock).into_bytes(),
        decoded_over(TransportKind::Plain, &owned, &[])
    );
}

/// A client transport and a server transport of one kind, talking
/// through memory.
struct Pair {
    client: Transport,
    server: Transport,
    to_server: MemSock,
    to_client: MemSock,
}

impl Pair {
    fn new(kind: TransportKind) -> Pair {
        let (server_config, client_config) = tls_pair();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        Pair {
            client: Transport::client(kind, Some((client_config, name)), "localhost").unwrap(),
            server: Transport::new(kind, &setup(Some(server_config))).unwrap(),
            to_server: MemSock::default(),
            to_client: MemSock::default(),
        }
    }

    /// Client to server, then server to client, with `answer` queueing the
    /// server's lines between; returns what each side handed up.
    fn round(&mut self, answer: impl FnOnce(&mut Transport, &str)) -> (String, String) {
        self.client.write_to(&mut self.to_server).unwrap();
        let sent = std::mem::take(&mut self.to_server.output);
        self.to_server.input.extend(sent);
        let server_saw = drain(&mut self.server, &mut self.to_server);
        answer(&mut self.server, &server_saw);
        self.server.write_to(&mut self.to_client).unwrap();
        let sent = std::mem::take(&mut self.to_client.output);
        self.to_client.input.extend(sent);
        (drain(&mut self.client, &mut self.to_client), server_saw)
    }
}

/// A client transport and a server transport talking through memory;
/// returns what each side handed up.
fn converse(kind: TransportKind, client_lines: &[u8], server_lines: &[u8]) -> (String, String) {
    let mut pair = Pair::new(kind);
    pair.client.queue(client_lines);
    let (mut client_saw, mut server_saw) = (String::new(), String::new());
    let mut answered = false;
    for _ in 0..20 {
        let (client, server) = pair.round(|t, saw| {
            if !answered && server_saw.len() + saw.len() >= client_lines.len() {
                t.queue(server_lines);
                answered = true;
            }
        });
        client_saw.push_str(&client);
        server_saw.push_str(&server);
    }
    (client_saw, server_saw)
}

const ALL_KINDS: [TransportKind; 4] = [
    TransportKind::Plain,
    TransportKind::Tls,
    TransportKind::Web,
    TransportKind::WebTls,
];

#[test]
fn shared_lines_and_own_lines_arrive_in_order_whatever_the_socket_takes() {
    for kind in ALL_KINDS {
        for room in [1, 7, 100, usize::MAX] {
            let mut pair = Pair::new(kind);
            pair.client.queue(b"LOGIN a\n");
            for _ in 0..10 {
                pair.round(|_, _| {});
            }
            let mut broadcast = Broadcast::default();
            let mut expected = String::new();
            for turn in 0..4 {
                let mut first = broadcast.push(format!("MSG b {turn}\n").as_bytes());
                let mut both = broadcast.push(b"INFO c joined\nINFO d joined\n");
                // Not for this connection: its next line is not adjacent.
                broadcast.push(b"SAY #elsewhere 1 e hi\n");
                let mut last = broadcast.push(b"INFO e left\n");
                let t = &mut pair.server;
                t.queue_shared(&mut broadcast, &mut first);
                if turn == 0 {
                    assert_eq!(t.held(), 0, "{kind:?}: taken by reference, not copied");
                }
                t.queue_shared(&mut broadcast, &mut both);
                t.queue(format!("PONG {turn}\n").as_bytes());
                t.queue_shared(&mut broadcast, &mut last);
                expected.push_str(&format!(
                    "MSG b {turn}\nINFO c joined\nINFO d joined\nPONG {turn}\nINFO e left\n"
                ));
                pair.to_client.room = Some(room);
                t.write_shared(&mut pair.to_client, &broadcast).unwrap();
                t.end_turn(&broadcast);
                broadcast.clear(0);
            }
            pair.to_client.room = None;
            let mut saw = String::new();
            for _ in 0..10 {
                saw.push_str(&pair.round(|_, _| {}).0);
            }
            assert_eq!(saw, expected, "{kind:?}, {room} bytes per write");
        }
    }
}

#[test]
fn the_client_side_of_each_transport_talks_to_the_server_side() {
    for kind in ALL_KINDS {
        let (client_saw, server_saw) = converse(kind, b"LOGIN a\nMSG hi\n", b"OK\nMSG b yo\n");
        assert_eq!(server_saw, "LOGIN a\nMSG hi\n", "{kind:?}");
        assert_eq!(client_saw, "OK\nMSG b yo\n", "{kind:?}");
    }
}

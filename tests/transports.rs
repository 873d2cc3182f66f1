//! TLS and WebSocket users chat with plain TCP users through one server,
//! under the same limits: real sockets, a rustls client, `openssl
//! s_client`, tungstenite clients.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{Server, BIN, WAIT};
use rustls::pki_types::CertificateDer;
use tungstenite::{Message, WebSocket};

/// A PEM certificate for `localhost`/127.0.0.1 and its key, in a temp dir.
struct CertFiles {
    dir: PathBuf,
    der: CertificateDer<'static>,
}

impl CertFiles {
    fn new(tag: &str, params: rcgen::CertificateParams) -> CertFiles {
        let dir = std::env::temp_dir().join(format!("selectchat-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        CertFiles {
            dir,
            der: cert.der().clone(),
        }
    }

    fn localhost(tag: &str) -> CertFiles {
        let names = vec!["localhost".into(), "127.0.0.1".into()];
        CertFiles::new(tag, rcgen::CertificateParams::new(names).unwrap())
    }

    fn cert(&self) -> String {
        self.dir.join("cert.pem").display().to_string()
    }

    fn key(&self) -> String {
        self.dir.join("key.pem").display().to_string()
    }

    /// A server with this certificate and the `extra` flags.
    fn serve(&self, extra: &[&str]) -> Server {
        let (cert, key) = (self.cert(), self.key());
        let mut args = vec!["--tls-cert", &cert, "--tls-key", &key];
        args.extend_from_slice(extra);
        Server::start(&args)
    }
}

impl Drop for CertFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A line client over rustls that trusts exactly one certificate.
struct TlsClient {
    reader: BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
}

/// A TLS client configuration that trusts exactly `trusted`.
fn trusting(trusted: &CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

impl TlsClient {
    fn connect(addr: SocketAddr, trusted: &CertificateDer<'static>) -> TlsClient {
        let name = "localhost".try_into().unwrap();
        let conn = rustls::ClientConnection::new(trusting(trusted), name).unwrap();
        let sock = TcpStream::connect_timeout(&addr, WAIT).unwrap();
        sock.set_read_timeout(Some(WAIT)).unwrap();
        TlsClient {
            reader: BufReader::new(rustls::StreamOwned::new(conn, sock)),
        }
    }

    fn send(&mut self, line: &str) {
        let stream = self.reader.get_mut();
        stream.write_all(format!("{line}\n").as_bytes()).unwrap();
        stream.flush().unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("a line over TLS");
        line.trim_end_matches('\n').to_owned()
    }
}

/// A WebSocket client, as a browser would be one.
struct WsClient {
    ws: WebSocket<TcpStream>,
}

impl WsClient {
    fn connect(addr: SocketAddr) -> WsClient {
        let sock = TcpStream::connect_timeout(&addr, WAIT).unwrap();
        sock.set_read_timeout(Some(WAIT)).unwrap();
        let url = format!("ws://{addr}/chat");
        let (ws, response) = tungstenite::client::client(url.as_str(), sock).expect("upgrade");
        assert_eq!(response.status(), 101);
        WsClient { ws }
    }

    fn login(addr: SocketAddr, name: &str) -> WsClient {
        let mut c = WsClient::connect(addr);
        c.send(&format!("LOGIN {name}"));
        assert_eq!(c.line(), "OK");
        c
    }

    fn send(&mut self, line: &str) {
        self.ws.send(Message::text(line)).unwrap();
    }

    /// The next text message, skipping control frames.
    fn line(&mut self) -> String {
        loop {
            match self.ws.read().expect("a WebSocket message") {
                Message::Text(text) => return text.to_string(),
                Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => {}
            }
        }
    }

    /// Reads until the server closes; returns the text seen before.
    fn until_closed(&mut self) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.ws.read() {
                Ok(Message::Text(text)) => seen.push(text.to_string()),
                Ok(_) => {}
                Err(_) => return seen,
            }
        }
    }
}

#[test]
fn tls_plain_and_websocket_users_chat_together() {
    let certs = CertFiles::localhost("chat");
    let s = certs.serve(&["--tls-port", "0", "--web-port", "0"]);
    let mut tls = TlsClient::connect(s.listener("tls"), &certs.der);
    tls.send("LOGIN alice");
    assert_eq!(tls.line(), "OK");
    let mut plain = s.login("bob");
    assert_eq!(tls.line(), "INFO bob joined");

    // With a certificate, the web port is HTTPS: a WebSocket over rustls.
    let web = s.listener("web-tls");
    let sock = TcpStream::connect_timeout(&web, WAIT).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let conn = rustls::ClientConnection::new(trusting(&certs.der), "localhost".try_into().unwrap())
        .unwrap();
    let stream = rustls::StreamOwned::new(conn, sock);
    let url = format!("wss://localhost:{}/chat", web.port());
    let (mut wss, _) = tungstenite::client::client(url.as_str(), stream).expect("wss upgrade");
    wss.send(Message::text("LOGIN carol")).unwrap();
    assert_eq!(wss.read().unwrap().to_text().unwrap(), "OK");
    assert_eq!(tls.line(), "INFO carol joined");
    assert_eq!(plain.line(), "INFO carol joined");

    plain.send("MSG hello from tcp");
    assert_eq!(tls.line(), "MSG bob hello from tcp");
    assert_eq!(
        wss.read().unwrap().to_text().unwrap(),
        "MSG bob hello from tcp"
    );
    tls.send("DM bob hi over tls");
    plain.expect("DM alice hi over tls");
    wss.send(Message::text("JOIN #web")).unwrap();
    assert_eq!(wss.read().unwrap().to_text().unwrap(), "JOINED #web 1");
    tls.send("JOIN #web");
    assert_eq!(tls.line(), "JOINED #web 2");
    tls.send("SAY #web ünïcode ok");
    assert!(tls.line().starts_with("SENT #web "));
    let said = wss.read().unwrap().to_text().unwrap().to_owned();
    assert!(said.starts_with("INFO #web alice joined"), "{said}");
    let said = wss.read().unwrap().to_text().unwrap().to_owned();
    assert!(said.ends_with(" alice ünïcode ok"), "{said}");
    tls.send("QUIT");
    assert_eq!(tls.line(), "BYE");
    plain.expect("INFO alice disconnected");
}

#[test]
fn openssl_s_client_chats() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!(
            "NOT RUN: openssl is not installed (apt-get install openssl; .ci/run installs it)"
        );
        return;
    }
    let s = Server::start(&["--tls-port", "0", "--tls-self-signed"]);
    let tls = s.listener("tls");
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &tls.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || rx.recv_timeout(WAIT).expect("a line from openssl s_client");
    stdin.write_all(b"LOGIN dave\n").unwrap();
    assert_eq!(next(), "OK");
    let mut plain = s.login("erin");
    assert_eq!(next(), "INFO erin joined");
    plain.send("MSG hi dave");
    assert_eq!(next(), "MSG erin hi dave");
    stdin.write_all(b"MSG hi erin\n").unwrap();
    plain.expect("MSG dave hi erin");
    stdin.write_all(b"QUIT\n").unwrap();
    assert_eq!(next(), "BYE");
    plain.expect("INFO dave disconnected");
    common::wait_exit(&mut child);
}

/// Runs the server expecting it to refuse to start; returns its stderr.
fn refused_start(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["--host", "127.0.0.1", "--db", ":memory:", "0"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_certificates_stop_the_server_with_a_reason() {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let expired = CertFiles::new("expired", params);
    let log = refused_start(&[
        "--tls-port",
        "0",
        "--tls-cert",
        &expired.cert(),
        "--tls-key",
        &expired.key(),
    ]);
    assert!(log.contains("expired on"), "{log}");

    let other = CertFiles::localhost("other");
    let good = CertFiles::localhost("good");
    let log = refused_start(&[
        "--tls-port",
        "0",
        "--tls-cert",
        &good.cert(),
        "--tls-key",
        &other.key(),
    ]);
    assert!(log.contains("does not belong to the certificate"), "{log}");

    let log = refused_start(&[
        "--tls-port",
        "0",
        "--tls-cert",
        &good.key(),
        "--tls-key",
        &good.key(),
    ]);
    assert!(log.contains("no certificate in"), "{log}");
    let missing = Path::new("/nonexistent/cert.pem").display().to_string();
    let log = refused_start(&[
        "--tls-port",
        "0",
        "--tls-cert",
        &missing,
        "--tls-key",
        &good.key(),
    ]);
    assert!(log.contains("/nonexistent/cert.pem"), "{log}");
}

#[test]
fn a_stalled_or_garbage_handshake_disturbs_nobody() {
    let s = Server::start(&[
        "--tls-port",
        "0",
        "--tls-self-signed",
        "--login-timeout",
        "1",
    ]);
    let tls = s.listener("tls");
    let mut a = s.login("a");
    let mut b = s.login("b");
    a.expect("INFO b joined");
    // One peer says nothing, one sends half a ClientHello, one sends text.
    let silent = TcpStream::connect(tls).unwrap();
    let mut half = TcpStream::connect(tls).unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    let mut garbage = TcpStream::connect(tls).unwrap();
    garbage.write_all(b"LOGIN mallory\n").unwrap();
    b.send("MSG still here");
    a.expect("MSG b still here");
    // All three are closed: the garbage at once, the other two by the
    // login timeout (they would otherwise stay open forever).
    for mut sock in [silent, half, garbage] {
        sock.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 256];
        loop {
            match sock.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => panic!("not closed: {e}"),
            }
        }
    }
    a.send("WHO");
    a.expect("USER a");
    a.expect("USER b");
}

#[test]
fn websocket_and_nc_users_chat() {
    let s = Server::start(&["--web-port", "0"]);
    let web = s.listener("web");
    let mut ws = WsClient::login(web, "wendy");
    let mut nc = s.login("nick");
    assert_eq!(ws.line(), "INFO nick joined");
    nc.send("MSG hi wendy");
    assert_eq!(ws.line(), "MSG nick hi wendy");
    ws.send("MSG hi nick");
    nc.expect("MSG wendy hi nick");
    // A trailing newline is allowed; several lines in one message are several lines.
    ws.send("DM nick one\n");
    ws.send("DM nick two\nDM nick three");
    nc.expect("DM wendy one");
    nc.expect("DM wendy two");
    nc.expect("DM wendy three");
    ws.send("PING x");
    assert_eq!(ws.line(), "PONG x");
    ws.send("QUIT");
    assert_eq!(ws.until_closed(), ["BYE"]);
    nc.expect("INFO wendy disconnected");
}

#[test]
fn websocket_oversize_and_binary_messages_get_errors_and_the_connection_stays() {
    let s = Server::start(&["--web-port", "0", "--max-line", "100"]);
    let mut ws = WsClient::login(s.listener("web"), "w");
    ws.send(&"x".repeat(101));
    assert_eq!(ws.line(), "ERR line-too-long");
    ws.ws.send(Message::binary(vec![1, 2, 3])).unwrap();
    assert_eq!(ws.line(), "ERR invalid-text");
    ws.send(&"y".repeat(100));
    assert_eq!(ws.line(), "ERR unknown-command");
    ws.send("PING alive");
    assert_eq!(ws.line(), "PONG alive");
    // Far past any line, the message is refused by the WebSocket layer: 1009.
    ws.send(&"z".repeat(200_000));
    let mut closed_with = None;
    loop {
        match ws.ws.read() {
            Ok(Message::Close(frame)) => closed_with = frame.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert_eq!(closed_with, Some(1009));
}

#[test]
fn web_requests_other_than_the_page_and_the_socket_are_refused() {
    let s = Server::start(&["--web-port", "0", "--web-origin", "http://good.example"]);
    let web = s.listener("web");
    let ask = |request: &str| {
        let mut sock = TcpStream::connect_timeout(&web, WAIT).unwrap();
        sock.set_read_timeout(Some(WAIT)).unwrap();
        sock.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        let _ = sock.read_to_string(&mut response);
        response
    };
    let page = ask("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("<title>selectchat</title>"));
    let status = |r: String| r.lines().next().unwrap_or("").to_owned();
    assert_eq!(
        status(ask("GET /../Cargo.toml HTTP/1.1\r\n\r\n")),
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(
        status(ask(
            "GET / HTTP/1.1\r\nContent-Length: 30\r\n\r\nGET /chat HTTP/1.1\r\n\r\n"
        )),
        "HTTP/1.1 400 Bad Request"
    );
    assert_eq!(
        status(ask("\x16\x03\x01garbage\r\n\r\n")),
        "HTTP/1.1 400 Bad Request"
    );
    let upgrade = "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    assert_eq!(
        status(ask(&format!(
            "{upgrade}Origin: http://evil.example\r\n\r\n"
        ))),
        "HTTP/1.1 403 Forbidden"
    );
    // The right origin upgrades; nc users meanwhile are untouched.
    let mut sock = TcpStream::connect_timeout(&web, WAIT).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    sock.write_all(format!("{upgrade}Origin: http://good.example\r\n\r\n").as_bytes())
        .unwrap();
    let mut head = [0u8; 12];
    sock.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
}

#[test]
fn a_websocket_client_that_never_reads_is_dropped_at_its_sendq() {
    let s = Server::start(&["--web-port", "0", "--sendq", "65536", "--rate", "0"]);
    let web = s.listener("web");
    let mut stalled = WsClient::login(web, "stalled");
    let mut watcher = s.login("watcher");
    let mut sender = s.login("sender");
    assert_eq!(stalled.line(), "INFO watcher joined");
    let reader = thread::spawn(move || {
        let mut got = 0;
        let mut saw_drop = false;
        while got < 20_000 {
            let line = watcher.line();
            if line.starts_with("MSG sender ") {
                got += 1;
            } else if line == "INFO stalled disconnected" {
                saw_drop = true;
            }
        }
        saw_drop
            || watcher
                .sync()
                .iter()
                .any(|l| l == "INFO stalled disconnected")
    });
    sender.flood(20_000, 1000);
    assert!(
        reader.join().unwrap(),
        "the stalled WebSocket was never dropped"
    );
    // The reason is in the log only; it may reach it after the INFO above.
    let logged = common::wait_until(WAIT, || s.log().contains("stalled left: sendq"));
    assert!(logged.is_some(), "{}", s.log());
}

#[test]
fn an_abrupt_websocket_close_is_announced() {
    let s = Server::start(&["--web-port", "0"]);
    let ws = WsClient::login(s.listener("web"), "gone");
    let mut nc = s.login("stays");
    drop(ws); // TCP closed without a close frame
    nc.expect("INFO gone disconnected");
    let mut again = WsClient::login(s.listener("web"), "gone");
    again.send("WHO");
    assert_eq!(again.line(), "USER gone");
    assert_eq!(again.line(), "USER stays");
}

#[test]
fn a_thousand_websocket_clients_at_once() {
    const N: usize = 1000;
    let s = Server::start(&["--web-port", "0", "--presence-limit", "10"]);
    let web = s.listener("web");
    let mut clients: Vec<WsClient> = (0..N)
        .map(|i| {
            let mut c = WsClient::connect(web);
            c.send(&format!("LOGIN w{i}"));
            c
        })
        .collect();
    for c in &mut clients {
        assert_eq!(c.line(), "OK");
    }
    let mut nc = s.login("announcer");
    nc.send("MSG to all thousand");
    for c in &mut clients {
        // The first few saw joins (up to the presence limit) before it.
        let line = std::iter::repeat_with(|| c.line())
            .find(|l| !l.starts_with("INFO "))
            .unwrap();
        assert_eq!(line, "MSG announcer to all thousand");
    }
    nc.send("WHO");
    let users = (0..=N)
        .map(|_| nc.line())
        .filter(|l| l.starts_with("USER "))
        .count();
    assert_eq!(users, N + 1);
    drop(clients);
    assert!(
        common::wait_until(Duration::from_secs(20), || s
            .log()
            .matches(" left: eof")
            .count()
            == N)
        .is_some(),
        "not every WebSocket departure was seen"
    );
}

/// Lines whose answers name nothing that differs between runs (no `SAY`:
/// its `SENT` waits for the disk, so it may come after the closing `PONG`).
const SCRIPT: &[&str] = &[
    "",
    "PING before",
    "MSG too early",
    "LOGIN u",
    "login u",
    "FOO bar",
    "MSG \u{1b}[31mred",
    "MSG a\u{7f}",
    "PING cr\r",
    "  MSG   spaced   out  ",
    "JOIN #r",
    "JOIN #r",
    "WHO #r",
    "ROOMS",
    "PART #r",
    "DM nobody hi",
    "MSG ünïcødé ✓",
];

fn script_lines() -> Vec<String> {
    let mut lines: Vec<String> = SCRIPT.iter().map(|l| l.to_string()).collect();
    lines.push(format!("MSG {}", "x".repeat(120)));
    lines.push("PING end".into());
    lines
}

/// Sends the script and returns every answer up to `PONG end`.
fn transcript(mut send: impl FnMut(&str), mut recv: impl FnMut() -> String) -> Vec<String> {
    for line in script_lines() {
        send(&line);
    }
    let mut seen = Vec::new();
    loop {
        let line = recv();
        if line == "PONG end" {
            return seen;
        }
        seen.push(line);
    }
}

#[test]
fn every_line_gets_the_same_answer_over_every_transport() {
    let certs = CertFiles::localhost("same");
    let args = [
        "--max-line",
        "100",
        "--tls-port",
        "0",
        "--tls-cert",
        &certs.cert(),
        "--tls-key",
        &certs.key(),
    ];
    let plain = {
        let s = Server::start(&args);
        let c = std::cell::RefCell::new(s.connect());
        transcript(|l| c.borrow_mut().send(l), || c.borrow_mut().line())
    };
    let tls = {
        let s = Server::start(&args);
        let c = std::cell::RefCell::new(TlsClient::connect(s.listener("tls"), &certs.der));
        transcript(|l| c.borrow_mut().send(l), || c.borrow_mut().line())
    };
    let web = {
        let s = Server::start(&["--max-line", "100", "--web-port", "0"]);
        let c = std::cell::RefCell::new(WsClient::connect(s.listener("web")));
        transcript(|l| c.borrow_mut().send(l), || c.borrow_mut().line())
    };
    assert!(plain.contains(&"ERR line-too-long".to_owned()), "{plain:?}");
    assert_eq!(tls, plain);
    assert_eq!(web, plain);
}

/// A line conversation over any transport, for tests that run the same
/// script over each.
trait Talk {
    fn say(&mut self, line: &str);
    fn hear(&mut self) -> String;
}

impl Talk for common::Client {
    fn say(&mut self, line: &str) {
        self.send(line);
    }
    fn hear(&mut self) -> String {
        self.line()
    }
}

impl Talk for TlsClient {
    fn say(&mut self, line: &str) {
        self.send(line);
    }
    fn hear(&mut self) -> String {
        self.line()
    }
}

impl<S: Read + Write> Talk for WebSocket<S> {
    fn say(&mut self, line: &str) {
        self.send(Message::text(line)).unwrap();
    }
    fn hear(&mut self) -> String {
        loop {
            match self.read().expect("a WebSocket message") {
                Message::Text(text) => return text.to_string(),
                Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => {}
            }
        }
    }
}

/// Logs in as `name`, takes a token, says `text` in a room, drops the
/// connection, and resumes on a new one made by `connect`. Returns the
/// token, which must appear nowhere in the server's log.
fn resume_over(mut connect: impl FnMut() -> Box<dyn Talk>, name: &str, text: &str) -> String {
    let mut first = connect();
    first.say(&format!("LOGIN {name}"));
    assert_eq!(first.hear(), "OK");
    first.say("TOKEN");
    let token = first.hear().strip_prefix("TOKEN ").unwrap().to_owned();
    first.say(&format!("JOIN #{name}"));
    assert_eq!(first.hear(), format!("JOINED #{name} 1"));
    first.say(&format!("SAY #{name} {text}"));
    assert!(first.hear().starts_with("SENT "));
    drop(first);
    let mut second = connect();
    second.say(&format!("RESUME {name} {token}"));
    assert_eq!(second.hear(), "OK");
    second.say(&format!("HISTORY #{name}"));
    loop {
        if second.hear().starts_with("END HISTORY") {
            break;
        }
    }
    token
}

#[test]
fn no_token_or_message_text_reaches_the_log_at_trace_level() {
    let certs = CertFiles::localhost("logs");
    let tls_server = certs.serve(&["-vv", "--tls-port", "0", "--web-port", "0"]);
    let web_server = Server::start(&["-vv", "--web-port", "0"]);
    let (plain, tls) = (tls_server.addr, tls_server.listener("tls"));
    let (wss, ws) = (tls_server.listener("web-tls"), web_server.listener("web"));
    let der = certs.der.clone();
    let mut said = vec![];
    let mut check = |server: &Server, name: &str, connect: &mut dyn FnMut() -> Box<dyn Talk>| {
        let text = format!("secret words of {name}");
        let token = resume_over(connect, name, &text);
        said.push((token, text));
        // Whether it took over the old connection or came back after it,
        // the second session's lifecycle line is logged as its OK goes out.
        let logged = common::wait_until(WAIT, || server.log().matches(name).count() >= 2);
        assert!(logged.is_some(), "{}", server.log());
    };
    check(&tls_server, "plainuser", &mut || {
        Box::new(common::Client::connect(plain))
    });
    check(&tls_server, "tlsuser", &mut || {
        Box::new(TlsClient::connect(tls, &der))
    });
    check(&web_server, "wsuser", &mut || {
        let sock = TcpStream::connect_timeout(&ws, WAIT).unwrap();
        sock.set_read_timeout(Some(WAIT)).unwrap();
        let url = format!("ws://{ws}/chat");
        Box::new(tungstenite::client::client(url.as_str(), sock).unwrap().0)
    });
    check(&tls_server, "wssuser", &mut || {
        let sock = TcpStream::connect_timeout(&wss, WAIT).unwrap();
        sock.set_read_timeout(Some(WAIT)).unwrap();
        let name = "localhost".try_into().unwrap();
        let conn = rustls::ClientConnection::new(trusting(&der), name).unwrap();
        let stream = rustls::StreamOwned::new(conn, sock);
        let url = format!("wss://localhost:{}/chat", wss.port());
        Box::new(tungstenite::client::client(url.as_str(), stream).unwrap().0)
    });
    let log = tls_server.log() + &web_server.log();
    assert!(log.contains("TRACE"), "the log is at trace level:\n{log}");
    for (token, text) in &said {
        assert!(!log.contains(token.as_str()), "a token in the log:\n{log}");
        assert!(
            !log.contains(text.as_str()),
            "message text in the log:\n{log}"
        );
    }
}

/// A WebSocket upgrade over TLS to `web`, never reading: the raw stream.
fn wss_upgraded(
    web: SocketAddr,
    der: &CertificateDer<'static>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let sock = TcpStream::connect_timeout(&web, WAIT).unwrap();
    let name = "localhost".try_into().unwrap();
    let conn = rustls::ClientConnection::new(trusting(der), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let upgrade = "GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    tls.write_all(upgrade.as_bytes()).unwrap();
    tls
}

#[test]
fn a_wss_client_that_pings_and_never_reads_is_dropped_at_a_small_cost() {
    let certs = CertFiles::localhost("wssping");
    let s = certs.serve(&["--web-port", "0", "--rate", "0"]);
    let web = s.listener("web-tls");
    let der = certs.der.clone();
    let before = s.rss_kib();
    let attacker = thread::spawn(move || {
        let mut tls = wss_upgraded(web, &der);
        tls.sock
            .set_write_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        // Masked pings with the largest payload allowed, 125 bytes.
        let mut ping = vec![0x89, 0x80 | 125, 1, 2, 3, 4];
        ping.extend([b'p'; 125]);
        let pings = ping.repeat(256);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            match tls.write(&pings) {
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return true,
            }
        }
        false
    });
    let mut peak = before;
    while !attacker.is_finished() {
        peak = peak.max(s.rss_kib());
        thread::sleep(Duration::from_millis(20));
    }
    assert!(attacker.join().unwrap(), "still connected after 20 s");
    let grew = peak.saturating_sub(before);
    assert!(grew < 8 * 1024, "the server grew by {grew} KiB");
}

#[test]
fn an_anonymous_wss_connection_holds_little() {
    const N: usize = 100;
    let certs = CertFiles::localhost("wssheld");
    let s = certs.serve(&["--web-port", "0"]);
    let web = s.listener("web-tls");
    // Warm the allocator with one round first.
    let hold = |n: usize| -> Vec<_> {
        (0..n)
            .map(|_| {
                let mut tls = wss_upgraded(web, &certs.der);
                // A text frame that says 16,000 bytes and sends 15,000 of
                // them: the most an anonymous peer can make the server hold.
                let mut frame = vec![0x81, 0x80 | 126, (16_000u16 >> 8) as u8, 16_000u16 as u8];
                frame.extend([1, 2, 3, 4]);
                frame.extend([b'z'; 15_000]);
                tls.write_all(&frame).unwrap();
                tls.flush().unwrap();
                tls
            })
            .collect()
    };
    let warm = hold(N);
    let settled = |s: &Server| {
        thread::sleep(Duration::from_millis(500));
        s.rss_kib()
    };
    let before = settled(&s);
    let held = hold(N);
    let after = settled(&s);
    drop((warm, held));
    let per_conn = (after.saturating_sub(before)) * 1024 / N as u64;
    eprintln!("an anonymous wss connection with a half-sent frame: {per_conn} B");
    // Before the pre-login allowance an anonymous peer could hold a 64 KiB
    // frame on top of rustls's buffers (about 95 KiB); now at most 16 KiB.
    assert!(per_conn < 64 * 1024, "{per_conn} B per connection");
    // A larger frame before login is refused at its header.
    let mut tls = wss_upgraded(web, &certs.der);
    tls.sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut frame = vec![0x81, 0x80 | 126, (60_000u16 >> 8) as u8, 60_000u16 as u8];
    frame.extend([1, 2, 3, 4]);
    frame.extend([b'z'; 1000]);
    tls.write_all(&frame).unwrap();
    let mut seen = Vec::new();
    let ended = loop {
        let mut buf = [0u8; 4096];
        match tls.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break false
            }
            Err(_) => break true,
        }
    };
    assert!(ended, "a 60,000-byte frame before login was not refused");
    // The close frame: opcode 8, status 1009 (0x03F1).
    assert!(
        seen.windows(4).any(|w| w == [0x88, 0x02, 0x03, 0xF1]),
        "no close 1009 in {seen:?}"
    );
}

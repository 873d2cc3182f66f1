//! The web layer of a transport: one HTTP request, then either the web
//! page (and the connection closes) or a WebSocket whose text messages are
//! protocol lines. The same layer plays the client for the load generator
//! (`selectchat bench --ws`): it sends the upgrade and masks its frames.
//!
//! The request is read whole (at most `MAX_HEAD` bytes) and parsed with
//! `httparse`; exactly one request is served per connection and a request
//! with a body is refused, so nothing can be smuggled behind it. The page
//! is compiled into the binary: no path ever reaches the file system.
//! After the upgrade, frames are decoded and encoded by `frames` (masking,
//! fragments, pings, the close handshake, size limits): it is fed what the
//! link below reads and writes into the connection's out buffer, so it
//! never touches the socket itself.

use std::io::{self, Read};
use std::sync::Arc;

use log::debug;
use tungstenite::handshake::derive_accept_key;

use super::frames::{CloseCode, Frames, Side, Unit};
use super::outbuf::OutBuf;
use super::Received;
use crate::session::PRE_LOGIN_BYTES;

/// The web page, served at `/`.
const PAGE: &str = include_str!("../../web/index.html");
/// The longest request head (request line and headers) we read.
const MAX_HEAD: usize = 8 * 1024;
/// Headers one request may carry.
const MAX_HEADERS: usize = 48;
/// The path that upgrades to a WebSocket.
pub const CHAT_PATH: &str = "/chat";

/// What every web connection is allowed, from the server's configuration.
#[derive(Debug, Clone)]
pub struct WebPolicy {
    /// When set, a WebSocket upgrade must come from exactly this `Origin`.
    pub origin: Option<String>,
    /// The longest message read whole: longer than the line limit (so an
    /// oversize line gets `ERR line-too-long`, as on TCP), still bounded.
    pub max_message: usize,
    /// The longest message read whole before the peer logs in: an
    /// anonymous connection holds no more than this of a frame.
    pub pre_login_message: usize,
}

impl WebPolicy {
    /// The policy for a server whose lines may be `max_line` bytes long.
    pub fn new(origin: Option<String>, max_line: usize) -> WebPolicy {
        let max_message = (2 * max_line).max(64 * 1024);
        WebPolicy {
            origin,
            max_message,
            pre_login_message: max_message.min(PRE_LOGIN_BYTES),
        }
    }
}

/// Where a web connection is.
#[derive(Debug)]
enum State {
    /// Server: reading the request head.
    Request(Vec<u8>),
    /// Client: reading the response head; `key` was sent in the request,
    /// `early` holds lines queued before the upgrade.
    Response {
        head: Vec<u8>,
        key: String,
        early: Vec<u8>,
    },
    /// Upgraded: frames both ways.
    Socket(Frames),
    /// A response was queued, or the socket closed: nothing more is read.
    Done,
}

/// One web connection's protocol state.
#[derive(Debug)]
pub(super) struct Web {
    state: State,
    /// The rest of a text message that did not fit the caller's buffer.
    pending: Vec<u8>,
    /// The origin check and size limit this connection obeys.
    policy: Arc<WebPolicy>,
}

impl Web {
    /// A server connection, waiting for its request.
    pub(super) fn server(policy: Arc<WebPolicy>) -> Web {
        Web {
            state: State::Request(Vec::new()),
            pending: Vec::new(),
            policy,
        }
    }

    /// A client connection to `host`: the upgrade request goes to `out`.
    pub(super) fn client(host: &str, policy: Arc<WebPolicy>, out: &mut OutBuf) -> Web {
        let key = tungstenite::handshake::client::generate_key();
        out.queue(
            format!(
                "GET {CHAT_PATH} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Key: {key}\r\n\r\n"
            )
            .as_bytes(),
        );
        Web {
            state: State::Response {
                head: Vec::new(),
                key,
                early: Vec::new(),
            },
            pending: Vec::new(),
            policy,
        }
    }

    /// Reads from `lower` until there is something to report: decoded text
    /// (each message ends with `\n`), a message that is not text, one
    /// control frame, the end, or nothing for now. Responses, pongs and
    /// close frames go to `out`: one control frame queues at most one
    /// small frame, so the caller's checks after each call bound them.
    pub(super) fn read(
        &mut self,
        lower: &mut impl Read,
        buf: &mut [u8],
        out: &mut OutBuf,
    ) -> io::Result<Received> {
        let policy = Arc::clone(&self.policy);
        let mut read_once = false;
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.len());
                buf[..n].copy_from_slice(&self.pending[..n]);
                self.pending.drain(..n);
                return Ok(Received::Bytes(n));
            }
            match &mut self.state {
                State::Done => return Ok(Received::Closed),
                State::Request(head) => {
                    if let Some(received) = read_more(lower, buf, head)? {
                        return Ok(received);
                    }
                    let head = std::mem::take(head);
                    match answer(&head, &policy) {
                        Answer::Incomplete => self.state = State::Request(head),
                        Answer::Respond(response) => {
                            access_log(&head, &response);
                            out.queue(&response);
                            self.state = State::Done;
                            return Ok(Received::Closed);
                        }
                        Answer::Upgrade { key, used } => {
                            let response = upgrade_response(&key);
                            access_log(&head, &response);
                            out.queue(&response);
                            let frames =
                                Frames::new(Side::Server, &head[used..], policy.pre_login_message);
                            self.state = State::Socket(frames);
                        }
                    }
                }
                State::Response { head, key, early } => {
                    if let Some(received) = read_more(lower, buf, head)? {
                        return Ok(received);
                    }
                    let Some(used) = upgraded(head, key)? else {
                        continue;
                    };
                    let frames = Frames::new(Side::Client, &head[used..], policy.max_message);
                    let early = std::mem::take(early);
                    self.state = State::Socket(frames);
                    self.queue(&early, out);
                }
                State::Socket(frames) => {
                    match frames.next(out) {
                        Ok(Some(Unit::Text(text))) => {
                            return Ok(hand_up(&mut self.pending, text, buf))
                        }
                        Ok(Some(Unit::Binary)) => return Ok(Received::NotText),
                        Ok(Some(Unit::Control)) => return Ok(Received::Control),
                        Ok(Some(Unit::Closed)) => {
                            self.state = State::Done;
                            return Ok(Received::Closed);
                        }
                        Err(code) => {
                            debug!("websocket closed: {code:?}");
                            self.state = State::Done;
                            return Ok(Received::Closed);
                        }
                        Ok(None) if read_once => return Ok(Received::Progress),
                        Ok(None) => {}
                    }
                    // One read of the link per call, so the caller's read
                    // budget sees every byte.
                    read_once = true;
                    match lower.read(buf) {
                        Ok(0) => {
                            self.state = State::Done;
                            return Ok(Received::Closed);
                        }
                        Ok(n) => frames.feed(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            return Ok(Received::WouldBlock)
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                            return Ok(Received::Progress)
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }

    /// Queues `lines` as one text frame each, once upgraded; before that
    /// (or after the close) there is nobody to read them.
    pub(super) fn queue(&mut self, lines: &[u8], out: &mut OutBuf) {
        match &mut self.state {
            State::Socket(frames) => frames.queue(lines, out),
            State::Response { early, .. } => early.extend_from_slice(lines),
            _ => {}
        }
    }

    /// True when a line queued now goes out as a server's text frame, the
    /// same bytes for every recipient (see `broadcast`): upgraded, still
    /// open, and not the (masking) client.
    pub(super) fn frames_lines(&self) -> bool {
        matches!(&self.state, State::Socket(frames) if frames.shares_frames())
    }

    /// The peer logged in: it may send messages up to the server's limit.
    pub(super) fn logged_in(&mut self) {
        if let State::Socket(frames) = &mut self.state {
            frames.set_max_message(self.policy.max_message);
        }
    }

    /// The connection is ending: a close frame follows what is queued.
    pub(super) fn end(&mut self, out: &mut OutBuf) {
        if let State::Socket(frames) = &mut self.state {
            frames.close(CloseCode::Normal, out);
        }
    }

    /// Frees what an idle connection need not hold.
    pub(super) fn release_idle(&mut self) -> usize {
        let frames = match &mut self.state {
            State::Socket(frames) => frames.release_idle(),
            _ => 0,
        };
        if self.pending.is_empty() {
            frames + std::mem::take(&mut self.pending).capacity()
        } else {
            frames
        }
    }

    /// Heap bytes held.
    pub(super) fn capacity(&self) -> usize {
        let state = match &self.state {
            State::Request(head) | State::Response { head, .. } => head.capacity(),
            State::Socket(frames) => frames.capacity(),
            State::Done => 0,
        };
        state + self.pending.capacity()
    }
}

/// Hands one text message up as one line: as much as fits `buf` now, the
/// rest into `pending` for the next read.
fn hand_up(pending: &mut Vec<u8>, text: &[u8], buf: &mut [u8]) -> Received {
    let needs_end = text.last() != Some(&b'\n');
    let len = text.len() + usize::from(needs_end);
    if len <= buf.len() {
        buf[..text.len()].copy_from_slice(text);
        if needs_end {
            buf[text.len()] = b'\n';
        }
        return Received::Bytes(len);
    }
    let n = buf.len();
    buf.copy_from_slice(&text[..n]);
    pending.extend_from_slice(&text[n..]);
    if needs_end {
        pending.push(b'\n');
    }
    Received::Bytes(n)
}

/// Reads more of a head into `head`, never past one byte over `MAX_HEAD`
/// (which is enough to refuse it). Returns what to hand up when the read
/// ended it (nothing for now, bytes that decoded to nothing yet, or the
/// end), `None` when bytes came.
fn read_more(
    lower: &mut impl Read,
    buf: &mut [u8],
    head: &mut Vec<u8>,
) -> io::Result<Option<Received>> {
    let room = (MAX_HEAD + 1)
        .saturating_sub(head.len())
        .clamp(1, buf.len());
    match lower.read(&mut buf[..room]) {
        Ok(0) => Ok(Some(Received::Closed)),
        Ok(n) => {
            head.extend_from_slice(&buf[..n]);
            Ok(None)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Some(Received::WouldBlock)),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Some(Received::Progress)),
        Err(e) => Err(e),
    }
}

/// Client: whether `head` holds a complete `101` answer to `key`, and how
/// long it is. Anything else is an error.
fn upgraded(head: &[u8], key: &str) -> io::Result<Option<usize>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let refused = |why: String| io::Error::new(io::ErrorKind::ConnectionRefused, why);
    let used = match response.parse(head) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) if head.len() < MAX_HEAD => return Ok(None),
        _ => return Err(refused("not an HTTP response".into())),
    };
    if response.code != Some(101) {
        return Err(refused(format!("upgrade refused: {:?}", response.code)));
    }
    let accept = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|h| h.value);
    if accept != Some(derive_accept_key(key.as_bytes()).as_bytes()) {
        return Err(refused("wrong Sec-WebSocket-Accept".into()));
    }
    Ok(Some(used))
}

/// What one request gets.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// The head is not complete yet.
    Incomplete,
    /// This response, then the connection closes.
    Respond(Vec<u8>),
    /// Switch to WebSocket with this key; the head was `used` bytes long.
    Upgrade { key: String, used: usize },
}

/// Decides what a request head gets.
fn answer(head: &[u8], policy: &WebPolicy) -> Answer {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let used = match req.parse(head) {
        Ok(httparse::Status::Complete(used)) if used <= MAX_HEAD => used,
        Ok(httparse::Status::Partial) if head.len() <= MAX_HEAD => return Answer::Incomplete,
        // However it arrived, in one write or many.
        Ok(_) => return Answer::Respond(status(431)),
        Err(_) => return Answer::Respond(status(400)),
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
    };
    // One request per connection and no bodies: nothing rides behind it.
    if header("content-length").is_some() || header("transfer-encoding").is_some() {
        return Answer::Respond(status(400));
    }
    let head_only = req.method == Some("HEAD");
    if req.method != Some("GET") && !head_only {
        return Answer::Respond(status(405));
    }
    let path = req.path.unwrap_or("");
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if head_only {
        // What GET would answer, without the body; nothing upgrades.
        let response = match path {
            "/" => page(),
            CHAT_PATH => status(426),
            _ => status(404),
        };
        let end = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(response.len(), |i| i + 4);
        return Answer::Respond(response[..end].to_vec());
    }
    if path == "/" {
        return Answer::Respond(page());
    }
    if path != CHAT_PATH {
        return Answer::Respond(status(404));
    }
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Answer::Respond(status(426));
    }
    if header("sec-websocket-version").as_deref() != Some("13") {
        return Answer::Respond(status(426));
    }
    if let Some(allowed) = &policy.origin {
        if header("origin").as_deref() != Some(allowed.as_str()) {
            return Answer::Respond(status(403));
        }
    }
    match header("sec-websocket-key") {
        Some(key) if key.len() == 24 => Answer::Upgrade { key, used },
        _ => Answer::Respond(status(400)),
    }
}

/// One line per request at debug: its request line (quoted, cut short:
/// it is the peer's bytes) and the status answered.
fn access_log(head: &[u8], response: &[u8]) {
    if !log::log_enabled!(log::Level::Debug) {
        return;
    }
    let line = head
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default();
    let line = String::from_utf8_lossy(&line[..line.len().min(120)]);
    let code = String::from_utf8_lossy(response.get(9..12).unwrap_or_default());
    log::debug!("web: {line:?} answered {code}");
}

fn reason(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A response with a short text body, after which the connection closes.
pub(super) fn status(code: u16) -> Vec<u8> {
    let body = format!("{code} {}\n", reason(code));
    let extra = match code {
        405 => "Allow: GET, HEAD\r\n",
        426 => "Sec-WebSocket-Version: 13\r\n",
        _ => "",
    };
    response(
        &format!("{code} {}", reason(code)),
        "text/plain",
        extra,
        &body,
    )
}

fn page() -> Vec<u8> {
    // The page talks only to this server and loads nothing from elsewhere.
    let csp = "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; \
               style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; \
               base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n";
    response("200 OK", "text/html", csp, PAGE)
}

fn response(status: &str, content_type: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}; charset=utf-8\r\n\
         Content-Length: {}\r\nCache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n\
         Referrer-Policy: no-referrer\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn upgrade_response(key: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> WebPolicy {
        WebPolicy::new(None, 4096)
    }

    fn code(answer: Answer) -> u16 {
        match answer {
            Answer::Respond(r) => String::from_utf8(r).unwrap()[9..12].parse().unwrap(),
            other => panic!("expected a response, got {other:?}"),
        }
    }

    const UPGRADE: &str = "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://good\r\n\r\n";

    #[test]
    fn the_page_is_served_at_the_root_only() {
        let page = answer(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &policy());
        let Answer::Respond(bytes) = page else {
            panic!("no page")
        };
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Security-Policy"));
        assert!(text.ends_with(PAGE));
        assert_eq!(code(answer(b"GET /?x=1 HTTP/1.1\r\n\r\n", &policy())), 200);
        for path in [
            "/index.html",
            "/../etc/passwd",
            "/chat/..",
            "//",
            "/web/index.html",
        ] {
            let head = format!("GET {path} HTTP/1.1\r\n\r\n");
            assert_eq!(code(answer(head.as_bytes(), &policy())), 404, "{path}");
        }
    }

    #[test]
    fn bad_requests_are_refused() {
        assert_eq!(code(answer(b"GARBAGE\0\r\n\r\n", &policy())), 400);
        assert_eq!(code(answer(b"POST / HTTP/1.1\r\n\r\n", &policy())), 405);
        // HEAD answers what GET would, without the body.
        let Answer::Respond(head) = answer(b"HEAD / HTTP/1.1\r\n\r\n", &policy()) else {
            panic!("no answer to HEAD")
        };
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"));
        assert!(head.contains(&format!("Content-Length: {}\r\n", PAGE.len())));
        assert_eq!(code(answer(b"HEAD /chat HTTP/1.1\r\n\r\n", &policy())), 426);
        assert_eq!(code(answer(b"HEAD /x HTTP/1.1\r\n\r\n", &policy())), 404);
        let smuggled = b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nGET /";
        assert_eq!(code(answer(smuggled, &policy())), 400);
        let chunked = b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(code(answer(chunked, &policy())), 400);
        assert_eq!(code(answer(b"GET /chat HTTP/1.1\r\n\r\n", &policy())), 426);
        assert_eq!(
            answer(b"GET / HTTP/1.1\r\nHost:", &policy()),
            Answer::Incomplete
        );
        let huge = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(code(answer(huge.as_bytes(), &policy())), 431);
        let whole = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(
            code(answer(whole.as_bytes(), &policy())),
            431,
            "a complete head over the limit"
        );
        let at_limit = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD - 23));
        assert_eq!(at_limit.len(), MAX_HEAD);
        assert_eq!(code(answer(at_limit.as_bytes(), &policy())), 200);
    }

    #[test]
    fn upgrades_check_version_key_and_origin() {
        let Answer::Upgrade { key, used } = answer(UPGRADE.as_bytes(), &policy()) else {
            panic!("no upgrade")
        };
        assert_eq!(used, UPGRADE.len());
        assert!(String::from_utf8(upgrade_response(&key))
            .unwrap()
            .contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        let v12 = UPGRADE.replace("Version: 13", "Version: 12");
        assert_eq!(code(answer(v12.as_bytes(), &policy())), 426);
        let nokey = UPGRADE.replace("Sec-WebSocket-Key", "X-Key");
        assert_eq!(code(answer(nokey.as_bytes(), &policy())), 400);
        let strict = WebPolicy::new(Some("http://good".into()), 4096);
        assert!(matches!(
            answer(UPGRADE.as_bytes(), &strict),
            Answer::Upgrade { .. }
        ));
        let other = UPGRADE.replace("http://good", "http://evil");
        assert_eq!(code(answer(other.as_bytes(), &strict)), 403);
    }
}

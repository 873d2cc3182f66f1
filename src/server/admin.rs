//! The operator's ports, served by the loop like any socket: the metrics
//! port (HTTP: `/metrics`, `/healthz`) and the control socket (a Unix
//! socket, one command line per connection). Each exchange reads one
//! request into a bounded buffer, gets one answer from the server, writes
//! it and closes. At most `MAX_EXCHANGES` are open at once and each has
//! `EXCHANGE_TIMEOUT` to finish, so an operator's port cannot be used to
//! hold the server's memory or descriptors.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Poll, Registry, Token};
use slab::Slab;

use super::listen::{ADMIN_BASE, CONTROL, METRICS};

/// Exchanges open at once; more wait in the kernel's backlog.
pub(super) const MAX_EXCHANGES: usize = 16;
/// Longest a request and its answer may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest request head (HTTP) or command line (control) read.
const MAX_REQUEST: usize = 8192;

/// Which port a request came in on, and so how it is read and answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Port {
    Metrics,
    Control,
}

/// What an operator asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ask {
    /// An HTTP request on the metrics port; `head` is true for `HEAD`.
    Http { path: String, head: bool },
    /// An HTTP request that is not a `GET` or `HEAD`, or not HTTP.
    BadHttp { status: u16 },
    /// One line on the control socket.
    Control(String),
}

/// A socket of either port.
#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn source(&mut self) -> &mut dyn Source {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
        }
    }

    fn shutdown_write(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One request and its answer.
#[derive(Debug)]
struct Exchange {
    sock: Stream,
    port: Port,
    request: Vec<u8>,
    /// The answer, once there is one, and how much of it is written.
    answer: Option<(Vec<u8>, usize)>,
    deadline: Instant,
}

/// The operator's listeners and their open exchanges.
#[derive(Debug, Default)]
pub(super) struct Admin {
    metrics: Option<TcpListener>,
    /// The control socket and the path it is bound to (removed on drop).
    control: Option<(UnixListener, PathBuf)>,
    exchanges: Slab<Exchange>,
    /// Accepting stopped with every exchange slot taken: connections may
    /// wait that no readiness event will announce again.
    backlogged: bool,
}

impl Admin {
    /// Binds the metrics port and the control socket that are asked for.
    pub fn bind(
        poll: &Poll,
        metrics: Option<SocketAddr>,
        control: Option<&Path>,
    ) -> io::Result<Admin> {
        let mut admin = Admin::default();
        if let Some(addr) = metrics {
            let mut sock = TcpListener::bind(addr).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot serve metrics on {addr}: {e}"))
            })?;
            poll.registry()
                .register(&mut sock, METRICS, Interest::READABLE)?;
            admin.metrics = Some(sock);
        }
        if let Some(path) = control {
            let mut sock = bind_control(path)?;
            poll.registry()
                .register(&mut sock, CONTROL, Interest::READABLE)?;
            info!("control socket {}", path.display());
            admin.control = Some((sock, path.to_path_buf()));
        }
        Ok(admin)
    }

    /// Exchanges open now (each holds a descriptor).
    pub fn open(&self) -> usize {
        self.exchanges.len()
    }

    /// The metrics port's address, if it is served.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// True for the tokens of the operator's listeners and exchanges.
    pub fn owns(token: Token) -> bool {
        token == METRICS || token == CONTROL || Admin::exchange(token).is_some()
    }

    fn exchange(token: Token) -> Option<usize> {
        token
            .0
            .checked_sub(ADMIN_BASE)
            .filter(|&key| key < MAX_EXCHANGES)
    }

    /// Handles readiness on one of its tokens. Returns the requests that
    /// are whole and need an answer, by exchange key.
    pub fn on_ready(
        &mut self,
        token: Token,
        registry: &Registry,
        now: Instant,
    ) -> Vec<(usize, Ask)> {
        let keys = if token == METRICS || token == CONTROL {
            // A request may be in already: edge-triggered readiness
            // reports it once, so each new exchange is read at once.
            self.accept_all(token, registry, now)
        } else {
            Admin::exchange(token).into_iter().collect()
        };
        let mut asks = Vec::new();
        for key in keys {
            let Some(exchange) = self.exchanges.get_mut(key) else {
                continue;
            };
            if exchange.answer.is_some() {
                self.write(key, registry);
                continue;
            }
            match read_request(exchange) {
                Ok(Some(ask)) => asks.push((key, ask)),
                Ok(None) => {}
                Err(e) => {
                    debug!("admin exchange {key}: {e}");
                    self.close(key, registry);
                }
            }
        }
        asks
    }

    /// Accepts what the listener `token` has waiting, while there is room.
    /// Returns the new exchanges' keys.
    fn accept_all(&mut self, token: Token, registry: &Registry, now: Instant) -> Vec<usize> {
        let mut keys = Vec::new();
        loop {
            if self.exchanges.len() >= MAX_EXCHANGES {
                // Readiness will not be reported again for what waits.
                self.backlogged = true;
                break;
            }
            let accepted = match (token, &self.metrics, &self.control) {
                (METRICS, Some(l), _) => l.accept().map(|(s, _)| Stream::Tcp(s)),
                (CONTROL, _, Some((l, _))) => l.accept().map(|(s, _)| Stream::Unix(s)),
                _ => break,
            };
            let mut sock = match accepted {
                Ok(sock) => sock,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    warn!("cannot accept on an operator's port: {e}");
                    break;
                }
            };
            let entry = self.exchanges.vacant_entry();
            let key = entry.key();
            let own = Token(ADMIN_BASE + key);
            if let Err(e) = registry.register(sock.source(), own, Interest::READABLE) {
                warn!("cannot register an operator's connection: {e}");
                continue;
            }
            let port = if token == METRICS {
                Port::Metrics
            } else {
                Port::Control
            };
            entry.insert(Exchange {
                sock,
                port,
                request: Vec::new(),
                answer: None,
                deadline: now + EXCHANGE_TIMEOUT,
            });
            keys.push(key);
        }
        keys
    }

    /// Accepts again after exchange slots were full, once one is free.
    /// Returns the requests already whole, as [`Admin::on_ready`] does.
    pub fn catch_up(&mut self, registry: &Registry, now: Instant) -> Vec<(usize, Ask)> {
        if !self.backlogged || self.exchanges.len() >= MAX_EXCHANGES {
            return Vec::new();
        }
        self.backlogged = false;
        let mut asks = self.on_ready(METRICS, registry, now);
        asks.extend(self.on_ready(CONTROL, registry, now));
        asks
    }

    /// Sends `answer` on exchange `key`, then closes it.
    pub fn answer(&mut self, key: usize, answer: Vec<u8>, registry: &Registry) {
        if let Some(exchange) = self.exchanges.get_mut(key) {
            exchange.answer = Some((answer, 0));
            self.write(key, registry);
        }
    }

    fn write(&mut self, key: usize, registry: &Registry) {
        let Some(exchange) = self.exchanges.get_mut(key) else {
            return;
        };
        let Some((answer, written)) = exchange.answer.as_mut() else {
            return;
        };
        while *written < answer.len() {
            match exchange.sock.write(&answer[*written..]) {
                Ok(0) => break,
                Ok(n) => *written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let token = Token(ADMIN_BASE + key);
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if registry
                        .reregister(exchange.sock.source(), token, interest)
                        .is_ok()
                    {
                        return;
                    }
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        exchange.sock.shutdown_write();
        self.close(key, registry);
    }

    fn close(&mut self, key: usize, registry: &Registry) {
        if let Some(mut exchange) = self.exchanges.try_remove(key) {
            let _ = registry.deregister(exchange.sock.source());
        }
    }

    /// Drops exchanges past their deadline.
    pub fn expire(&mut self, now: Instant, registry: &Registry) {
        let late: Vec<usize> = self
            .exchanges
            .iter()
            .filter(|(_, x)| x.deadline <= now)
            .map(|(key, _)| key)
            .collect();
        for key in late {
            debug!("admin exchange {key}: timed out");
            self.close(key, registry);
        }
    }

    /// The earliest deadline of an open exchange.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.exchanges.iter().map(|(_, x)| x.deadline).min()
    }

    /// Closes the exchanges still open (at exit; the listeners go with `Admin`).
    pub fn close_all(&mut self, registry: &Registry) {
        let keys: Vec<usize> = self.exchanges.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.close(key, registry);
        }
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        if let Some((_, path)) = &self.control {
            let _ = fs::remove_file(path);
        }
    }
}

/// Reads what the peer sent so far; returns the request once it is whole.
fn read_request(exchange: &mut Exchange) -> io::Result<Option<Ask>> {
    let mut buf = [0u8; 2048];
    loop {
        match exchange.sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => exchange.request.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        if exchange.request.len() > MAX_REQUEST {
            break;
        }
    }
    let ask = match exchange.port {
        Port::Metrics => http_request(&exchange.request),
        Port::Control => control_line(&exchange.request),
    };
    Ok(ask)
}

/// An HTTP request head, once complete.
fn http_request(bytes: &[u8]) -> Option<Ask> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) if bytes.len() <= MAX_REQUEST => return None,
        Ok(httparse::Status::Partial) => return Some(Ask::BadHttp { status: 431 }),
        Err(_) => return Some(Ask::BadHttp { status: 400 }),
    }
    let path = request.path.unwrap_or("/").to_string();
    match request.method {
        Some("GET") => Some(Ask::Http { path, head: false }),
        Some("HEAD") => Some(Ask::Http { path, head: true }),
        _ => Some(Ask::BadHttp { status: 405 }),
    }
}

/// The first line sent on the control socket, once complete.
fn control_line(bytes: &[u8]) -> Option<Ask> {
    let end = bytes.iter().position(|&b| b == b'\n');
    let line = match end {
        Some(end) => &bytes[..end],
        None if bytes.len() > MAX_REQUEST => bytes,
        None => return None,
    };
    let line = String::from_utf8_lossy(line);
    Some(Ask::Control(line.trim_end_matches('\r').to_string()))
}

/// Binds the control socket at `path`, readable and writable by its owner
/// alone. A socket file left by a server that is gone is replaced; one a
/// running server answers on is not.
fn bind_control(path: &Path) -> io::Result<UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "control socket {}: another server answers there",
                    path.display()
                ),
            ));
        }
        fs::remove_file(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot replace control socket {}: {e}", path.display()),
            )
        })?;
    }
    // No moment where others may connect: created under a umask that
    // leaves the owner alone. The loop's thread is the only one yet.
    // SAFETY: umask only swaps the process's file mode mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the mask.
    unsafe { libc::umask(old) };
    let sock = bound.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot bind control socket {}: {e}", path.display()),
        )
    })?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(sock)
}

/// An HTTP/1.1 response that closes the connection; `head` leaves the body out.
pub(super) fn http_response(status: u16, content_type: &str, body: &[u8], head: bool) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_request_is_read_once_its_head_is_complete() {
        assert_eq!(http_request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(
            http_request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(Ask::Http {
                path: "/metrics".into(),
                head: false
            })
        );
        assert_eq!(
            http_request(b"HEAD /healthz HTTP/1.0\r\n\r\n"),
            Some(Ask::Http {
                path: "/healthz".into(),
                head: true
            })
        );
        assert_eq!(
            http_request(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Some(Ask::BadHttp { status: 405 })
        );
        assert_eq!(
            http_request(b"\x16\x03\x01 not http\r\n\r\n"),
            Some(Ask::BadHttp { status: 400 })
        );
        let long = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; MAX_REQUEST]].concat();
        assert_eq!(http_request(&long), Some(Ask::BadHttp { status: 431 }));
    }

    #[test]
    fn a_control_request_is_its_first_line() {
        assert_eq!(control_line(b"stats"), None);
        assert_eq!(
            control_line(b"stats\r\n"),
            Some(Ask::Control("stats".into()))
        );
        assert_eq!(
            control_line(b"kick bob spam\nmore"),
            Some(Ask::Control("kick bob spam".into()))
        );
    }

    #[test]
    fn a_head_response_has_the_length_but_not_the_body() {
        let get = http_response(200, "text/plain", b"ok\n", false);
        let head = http_response(200, "text/plain", b"ok\n", true);
        assert!(get.ends_with(b"\r\n\r\nok\n"));
        assert!(head.ends_with(b"Content-Length: 3\r\nConnection: close\r\n\r\n"));
    }
}

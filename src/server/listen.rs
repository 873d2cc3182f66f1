//! The listening sockets and the accept policy, shared by the chat server
//! and `selectchat echo`.
//!
//! A [`Listeners`] table holds one socket per address, each with the
//! transport its connections speak, registered under tokens counted down
//! from the top of the token space (slab keys never get there). Accepting
//! survives running out of descriptors: a spare descriptor is given up to
//! accept and refuse the waiting peer, so the backlog drains instead of
//! waking the loop forever, and when even that fails accepting pauses for
//! `ACCEPT_BACKOFF`.

use std::fs::File;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use log::warn;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR2};
use signal_hook_mio::v1_0::Signals;

use crate::transport::TransportKind;

/// Token of the SIGINT/SIGTERM pipe.
pub const SIGNALS: Token = Token(usize::MAX);
/// Most listeners one loop serves; their tokens sit just below `SIGNALS`.
const MAX_LISTENERS: usize = 16;
/// The token of the loop's one waker, just below the listeners': mio
/// allows one `Waker` per `Poll`, so every other thread (the store's
/// writer, and a cluster bridge) shares it, and the loop drains each of
/// their channels when it fires.
pub const WAKE: Token = Token(SIGNALS.0 - MAX_LISTENERS - 1);
/// The metrics port's listener, below the waker.
pub const METRICS: Token = Token(WAKE.0 - 1);
/// The control socket's listener.
pub const CONTROL: Token = Token(WAKE.0 - 2);
/// The first token of the operator's exchanges (see `admin`), each its
/// key above it, below the control socket's.
pub const ADMIN_BASE: usize = CONTROL.0 - super::admin::MAX_EXCHANGES;
/// Pending connections the kernel may queue before we accept them (capped by
/// net.core.somaxconn).
const LISTEN_BACKLOG: i32 = 1024;
/// Pause before accepting again when descriptors ran out and no spare was left.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Registers the shutdown signals (SIGINT, SIGTERM) and the drain signal
/// (SIGUSR2) with `poll`.
pub fn signals(poll: &Poll) -> io::Result<Signals> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGUSR2])?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)?;
    Ok(signals)
}

/// True for the tokens of listeners, as opposed to connections.
pub fn is_listener(token: Token) -> bool {
    token.0 < SIGNALS.0 && token.0 >= SIGNALS.0 - MAX_LISTENERS
}

/// A connection just accepted, with what its listener says about it.
pub struct Accepted {
    pub sock: TcpStream,
    pub peer: SocketAddr,
    pub kind: TransportKind,
}

struct Listener {
    sock: TcpListener,
    kind: TransportKind,
    /// What a refused peer is told before it is closed, in its transport.
    refusal: Vec<u8>,
}

/// The listening sockets of one loop.
pub struct Listeners {
    table: Vec<Listener>,
    /// Held open so that, out of descriptors, we can still accept and refuse.
    spare_fd: Option<File>,
    paused_until: Option<Instant>,
}

fn spare_fd() -> Option<File> {
    File::open("/dev/null").ok()
}

/// Accept errors that concern one peer only: try the next one at once.
fn accept_again(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
    )
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// Tells a peer we will not serve why, best effort, and closes it.
pub fn refuse(mut sock: TcpStream, refusal: &[u8]) {
    if !refusal.is_empty() {
        let _ = sock.write(refusal);
    }
}

impl Listeners {
    /// Binds every address and registers it with `poll`. `refusal` is the
    /// line a peer gets when it cannot be served (as its transport says it).
    pub fn bind(
        poll: &Poll,
        addrs: &[(SocketAddr, TransportKind)],
        refusal: Vec<u8>,
    ) -> io::Result<Listeners> {
        assert!(addrs.len() <= MAX_LISTENERS, "too many listeners");
        let mut table = Vec::with_capacity(addrs.len());
        for (i, &(addr, kind)) in addrs.iter().enumerate() {
            let mut sock = TcpListener::bind(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
            // mio listens with std's backlog of 128, which a burst of connects
            // overflows into SYN retries; Linux lets a second listen() raise it.
            // SAFETY: listen(2) on a socket we own.
            if unsafe { libc::listen(sock.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
                warn!(
                    "cannot raise the listen backlog: {}",
                    io::Error::last_os_error()
                );
            }
            poll.registry()
                .register(&mut sock, Self::token(i), Interest::READABLE)?;
            table.push(Listener {
                sock,
                kind,
                refusal: kind.refusal(&refusal),
            });
        }
        Ok(Listeners {
            table,
            spare_fd: spare_fd(),
            paused_until: None,
        })
    }

    fn token(index: usize) -> Token {
        Token(SIGNALS.0 - 1 - index)
    }

    /// Each listener's transport and bound address (useful with port 0).
    pub fn local_addrs(&self) -> io::Result<Vec<(TransportKind, SocketAddr)>> {
        self.table
            .iter()
            .map(|l| Ok((l.kind, l.sock.local_addr()?)))
            .collect()
    }

    /// When accepting resumes after running out of descriptors, if paused.
    pub fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    /// Stops listening (at shutdown): no connection is accepted after this.
    pub fn close(&mut self, poll: &Poll) {
        for mut l in self.table.drain(..) {
            let _ = poll.registry().deregister(&mut l.sock);
        }
    }

    /// The tokens of every listener, to accept from all of them.
    pub fn tokens(&self) -> impl Iterator<Item = Token> {
        (0..self.table.len()).map(Self::token)
    }

    /// Ends a pause in accepting once it is over. Returns true when it
    /// ended now: the caller then accepts from every listener.
    pub fn resume(&mut self, now: Instant) -> bool {
        if self.paused_until.is_some_and(|t| now >= t) {
            self.paused_until = None;
            return true;
        }
        false
    }

    /// The next connection waiting on the listener of `token`, or `None`
    /// when it has none or accepting is paused. Callers loop until `None`:
    /// listeners are edge-triggered.
    pub fn accept(&mut self, token: Token, now: Instant) -> Option<Accepted> {
        let index = (SIGNALS.0 - 1).checked_sub(token.0)?;
        if index >= self.table.len() || self.paused_until.is_some() {
            return None;
        }
        loop {
            let listener = &self.table[index];
            match listener.sock.accept() {
                Ok((sock, peer)) => {
                    return Some(Accepted {
                        sock,
                        peer,
                        kind: listener.kind,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if accept_again(&e) => {}
                Err(e) if is_fd_exhaustion(&e) && self.spare_fd.is_some() => {
                    match self.refuse_with_spare_fd(index) {
                        Ok(true) => {}
                        Ok(false) => return None,
                        Err(e) => return self.pause(e, now),
                    }
                }
                Err(e) => return self.pause(e, now),
            }
        }
    }

    /// Accepting failed for a reason that retrying at once will not fix; the
    /// backlog is left for the next try, which the poll timeout schedules.
    fn pause(&mut self, e: io::Error, now: Instant) -> Option<Accepted> {
        warn!("accept failed: {e}; pausing accepts for {ACCEPT_BACKOFF:?}");
        self.paused_until = Some(now + ACCEPT_BACKOFF);
        None
    }

    /// Out of descriptors: give up the spare one to accept the waiting peer
    /// and refuse it. `Ok(true)`: a peer was refused and more may wait.
    fn refuse_with_spare_fd(&mut self, index: usize) -> io::Result<bool> {
        self.spare_fd = None;
        let refused = match self.table[index].sock.accept() {
            Ok((sock, peer)) => {
                warn!("out of file descriptors; refusing {peer}");
                refuse(sock, &self.table[index].refusal);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        };
        self.spare_fd = spare_fd();
        refused
    }
}

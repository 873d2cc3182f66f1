//! `selectchat echo`: an RFC 862 echo server in the same one-loop style.
//!
//! Invariant: each connection holds at most `BUFFER` unsent bytes. When the
//! buffer is full the server stops reading that peer (TCP pushes back on its
//! sender) until the peer reads its echo, so a client that never reads
//! costs one bounded buffer and nothing else.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::server::{accept_again, listen, LISTENER, SIGNALS};

/// Most bytes held for one connection.
const BUFFER: usize = 64 * 1024;
/// Pause before accepting again after accept failed (descriptors ran out).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// One echo client: bytes read but not yet written back.
struct Peer {
    sock: TcpStream,
    addr: SocketAddr,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// The peer finished sending; close once everything is echoed.
    read_done: bool,
}

enum Pumped {
    Open,
    Done,
}

impl Peer {
    /// Moves bytes until neither direction can progress.
    fn pump(&mut self) -> io::Result<Pumped> {
        loop {
            let mut progress = false;
            if !self.read_done && self.buf.is_empty() {
                // Allocated on first use: a connection that never sends costs no buffer.
                self.buf = vec![0; BUFFER].into_boxed_slice();
            }
            if !self.read_done && self.end < self.buf.len() {
                match self.sock.read(&mut self.buf[self.end..]) {
                    Ok(0) => {
                        self.read_done = true;
                        progress = true;
                    }
                    Ok(n) => {
                        self.end += n;
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                    Err(e) => return Err(e),
                }
            }
            if self.start < self.end {
                match self.sock.write(&self.buf[self.start..self.end]) {
                    Ok(n) => {
                        self.start += n;
                        progress |= n > 0;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                    Err(e) => return Err(e),
                }
                if self.start == self.end {
                    self.start = 0;
                    self.end = 0;
                }
            }
            if self.read_done && self.start == self.end {
                let _ = self.sock.shutdown(std::net::Shutdown::Write);
                return Ok(Pumped::Done);
            }
            if !progress {
                return Ok(Pumped::Open);
            }
        }
    }
}

/// A bound echo server, ready to [`run`](EchoServer::run).
pub struct EchoServer {
    poll: Poll,
    listener: TcpListener,
    signals: Signals,
    peers: Slab<Peer>,
    paused_until: Option<Instant>,
}

impl EchoServer {
    /// Binds `addr` and installs the SIGINT/SIGTERM handlers.
    pub fn bind(addr: SocketAddr) -> io::Result<EchoServer> {
        let (poll, listener, signals) = listen(addr)?;
        Ok(EchoServer {
            poll,
            listener,
            signals,
            peers: Slab::new(),
            paused_until: None,
        })
    }

    /// The address actually listened on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Echoes until SIGINT or SIGTERM.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self
                .paused_until
                .map(|t| t.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    SIGNALS => {
                        if self.signals.pending().next().is_some() {
                            info!(
                                "signal received; closing {} echo connections",
                                self.peers.len()
                            );
                            return Ok(());
                        }
                    }
                    Token(id) => self.serve(id),
                }
            }
            if self.paused_until.is_some_and(|t| Instant::now() >= t) {
                self.paused_until = None;
                self.accept_all();
            }
        }
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut sock, addr)) => {
                    let entry = self.peers.vacant_entry();
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut sock, Token(entry.key()), interest)
                    {
                        warn!("cannot register {addr}: {e}");
                        continue;
                    }
                    info!("echo {} {addr} connected", entry.key());
                    entry.insert(Peer {
                        sock,
                        addr,
                        buf: Box::default(),
                        start: 0,
                        end: 0,
                        read_done: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if accept_again(&e) => {}
                Err(e) => {
                    // Out of descriptors, most likely: let closes free some first.
                    warn!("accept failed: {e}; pausing accepts for {ACCEPT_BACKOFF:?}");
                    self.paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    fn serve(&mut self, id: usize) {
        let Some(peer) = self.peers.get_mut(id) else {
            return;
        };
        let outcome = peer.pump();
        let reason = match outcome {
            Ok(Pumped::Open) => return,
            Ok(Pumped::Done) => "eof".to_string(),
            Err(e) => e.to_string(),
        };
        let mut peer = self.peers.remove(id);
        let _ = self.poll.registry().deregister(&mut peer.sock);
        info!("echo {id} {} closed: {reason}", peer.addr);
    }
}

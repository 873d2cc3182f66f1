//! `selectchat echo`: an RFC 862 echo server in the same one-loop style.
//!
//! Invariant: each connection holds at most `BUFFER` unsent bytes. When the
//! buffer is full the server stops reading that peer (TCP pushes back on its
//! sender) until the peer reads its echo, so a client that never reads
//! costs one bounded buffer and nothing else.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use log::{info, warn};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::server::{is_listener, signals, Accepted, Listeners, SIGNALS};
use crate::transport::TransportKind;

/// Most bytes held for one connection.
const BUFFER: usize = 64 * 1024;

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
    listeners: Listeners,
    signals: Signals,
    peers: Slab<Peer>,
}

impl EchoServer {
    /// Binds `addr` and installs the SIGINT/SIGTERM handlers.
    pub fn bind(addr: SocketAddr) -> io::Result<EchoServer> {
        let poll = Poll::new()?;
        // A refused echo peer is simply closed: RFC 862 has no words for it.
        let listeners = Listeners::bind(&poll, &[(addr, TransportKind::Plain)], Vec::new())?;
        let signals = signals(&poll)?;
        Ok(EchoServer {
            poll,
            listeners,
            signals,
            peers: Slab::new(),
        })
    }

    /// The transport and address of each listener (useful with port 0).
    pub fn local_addrs(&self) -> io::Result<Vec<(TransportKind, SocketAddr)>> {
        self.listeners.local_addrs()
    }

    /// Echoes until SIGINT or SIGTERM.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self
                .listeners
                .paused_until()
                .map(|t| t.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    token if is_listener(token) => self.accept_all(token),
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
            if self.listeners.resume(Instant::now()) {
                let tokens: Vec<Token> = self.listeners.tokens().collect();
                for token in tokens {
                    self.accept_all(token);
                }
            }
        }
    }

    fn accept_all(&mut self, token: Token) {
        while let Some(Accepted { mut sock, peer, .. }) =
            self.listeners.accept(token, Instant::now())
        {
            let entry = self.peers.vacant_entry();
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut sock, Token(entry.key()), interest)
            {
                warn!("cannot register {peer}: {e}");
                continue;
            }
            info!("echo {} {peer} connected", entry.key());
            entry.insert(Peer {
                sock,
                addr: peer,
                buf: Box::default(),
                start: 0,
                end: 0,
                read_done: false,
            });
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

//! A TCP relay between a client and a server, to take the network away:
//! `cut` closes every connection, `blackhole` keeps them open but drops
//! every byte (a phone in a tunnel), and both refuse new connections until
//! `restore`; `deafen` drops only the server's side (answers lost). `point_to` moves it to another server (after a restart).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use super::WAIT;

struct Pipe {
    ends: [TcpStream; 2],
    frozen: Arc<AtomicBool>,
    /// Drops only what the server sends.
    deaf: Arc<AtomicBool>,
}

#[derive(Default)]
struct Shared {
    to: Mutex<Option<SocketAddr>>,
    down: AtomicBool,
    live: Mutex<Vec<Pipe>>,
}

/// A relay on an ephemeral loopback port.
pub struct Relay {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

fn pump(mut from: TcpStream, mut to: TcpStream, frozen: Arc<AtomicBool>) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        if frozen.load(Ordering::SeqCst) {
            continue; // lost on the way
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    if !frozen.load(Ordering::SeqCst) {
        let _ = to.shutdown(Shutdown::Both);
    }
}

impl Relay {
    /// Relays connections to `to`.
    pub fn start(to: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        *shared.to.lock().unwrap() = Some(to);
        let s = Arc::clone(&shared);
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                if s.down.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees its connection closed
                }
                let Some(to) = *s.to.lock().unwrap() else {
                    continue;
                };
                let Ok(server) = TcpStream::connect_timeout(&to, WAIT) else {
                    continue;
                };
                let frozen = Arc::new(AtomicBool::new(false));
                let deaf = Arc::new(AtomicBool::new(false));
                s.live.lock().unwrap().push(Pipe {
                    ends: [client.try_clone().unwrap(), server.try_clone().unwrap()],
                    frozen: Arc::clone(&frozen),
                    deaf: Arc::clone(&deaf),
                });
                let (c2, s2, f2) = (
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    Arc::clone(&frozen),
                );
                thread::spawn(move || pump(c2, s2, f2));
                thread::spawn(move || pump(server, client, deaf));
            }
        });
        Relay { addr, shared }
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.shared.down.store(true, Ordering::SeqCst);
        for pipe in self.shared.live.lock().unwrap().drain(..) {
            for end in &pipe.ends {
                let _ = end.shutdown(Shutdown::Both);
            }
        }
    }

    /// Keeps every connection open but silent, and refuses new ones.
    pub fn blackhole(&self) {
        self.shared.down.store(true, Ordering::SeqCst);
        for pipe in self.shared.live.lock().unwrap().iter() {
            pipe.frozen.store(true, Ordering::SeqCst);
            pipe.deaf.store(true, Ordering::SeqCst);
        }
    }

    /// Drops everything the server sends on the open connections, and
    /// passes on what the clients send: answers are lost, requests are not.
    pub fn deafen(&self) {
        for pipe in self.shared.live.lock().unwrap().iter() {
            pipe.deaf.store(true, Ordering::SeqCst);
        }
    }

    /// Accepts new connections again.
    pub fn restore(&self) {
        self.shared.down.store(false, Ordering::SeqCst);
    }

    /// Sends new connections to another server.
    pub fn point_to(&self, to: SocketAddr) {
        *self.shared.to.lock().unwrap() = Some(to);
    }
}

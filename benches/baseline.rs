//! The yardstick: the classic thread-per-connection chat server (std::net,
//! blocking sockets, one thread per client, a mutex-guarded registry),
//! speaking enough of protocol v1 for the load scenarios: LOGIN, MSG, PING,
//! QUIT. It shares selectchat's parser and reply formatting so that only the
//! concurrency model differs. Nothing in it is slowed down on purpose.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use selectchat::protocol::{parse, ByeReason, Command, ProtocolError, Reply};

/// One client's socket, shared by its reader thread and every writer. The
/// lock keeps concurrent writers from interleaving partial writes; sharing
/// one descriptor (no `try_clone`) keeps the server at one fd per client.
struct Peer {
    stream: TcpStream,
    write: Mutex<()>,
}

impl Peer {
    fn send(&self, bytes: &[u8]) -> std::io::Result<()> {
        let _turn = lock(&self.write);
        (&self.stream).write_all(bytes)
    }
}

/// Logged-in users: lower-cased name to the peer their messages go to.
type Registry = Arc<Mutex<HashMap<String, Arc<Peer>>>>;

/// Accepts forever, one thread per connection.
pub fn serve(listener: TcpListener) {
    let registry: Registry = Arc::default();
    for stream in listener.incoming().flatten() {
        let registry = Arc::clone(&registry);
        let spawned = thread::Builder::new().spawn(move || {
            let _ = client(stream, registry);
        });
        if let Err(e) = spawned {
            eprintln!("baseline: cannot spawn a thread: {e}");
        }
    }
}

/// A poisoned lock only means another client's thread panicked; carry on.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn client(stream: TcpStream, registry: Registry) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let me = Arc::new(Peer {
        stream,
        write: Mutex::new(()),
    });
    let mut reader = BufReader::new(&me.stream);
    let mut name: Option<String> = None;
    let mut line = Vec::new();
    let result = loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break Ok(()),
            Ok(_) => {}
            Err(e) => break Err(e),
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let reply = match parse(&line) {
            Ok(None) | Ok(Some(Command::Pong)) => continue,
            Err(e) => Reply::Err(e),
            Ok(Some(Command::Login(wanted))) => {
                let key = wanted.to_ascii_lowercase();
                let mut users = lock(&registry);
                if name.is_some() {
                    Reply::Err(ProtocolError::AlreadyLoggedIn)
                } else if let Entry::Vacant(slot) = users.entry(key) {
                    slot.insert(Arc::clone(&me));
                    name = Some(wanted.to_string());
                    Reply::Ok
                } else {
                    Reply::Err(ProtocolError::UsernameTaken)
                }
            }
            Ok(Some(Command::Msg(text))) => match &name {
                None => Reply::Err(ProtocolError::NotLoggedIn),
                Some(from) => {
                    let bytes = Reply::Msg { from, text }.to_bytes();
                    let key = from.to_ascii_lowercase();
                    for (other, socket) in lock(&registry).iter() {
                        if *other != key {
                            let _ = socket.send(&bytes);
                        }
                    }
                    continue;
                }
            },
            Ok(Some(Command::Ping(token))) => Reply::Pong(token),
            Ok(Some(Command::Quit(_))) => {
                let _ = me.send(&Reply::Bye(ByeReason::Quit).to_bytes());
                break Ok(());
            }
            Ok(Some(_)) => Reply::Err(ProtocolError::UnknownCommand),
        };
        if let Err(e) = me.send(&reply.to_bytes()) {
            break Err(e);
        }
    };
    if let Some(name) = name {
        lock(&registry).remove(&name.to_ascii_lowercase());
    }
    result
}

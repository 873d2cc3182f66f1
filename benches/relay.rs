//! The ceiling: a bare relay in one mio loop with none of selectchat's
//! rules (no framing limits, timers, flood control, sendq, presence, room
//! limits or store). It reads lines, answers `LOGIN` and `PING`, appends
//! each `MSG` once formatted to every other logged-in connection's buffer,
//! answers `JOIN` and relays each `SAY` to the room's other members the
//! same way (with an id, and `SENT` to the sender at once), and writes
//! each touched connection once per turn. Every connection is
//! registered for both readiness kinds once, so no write ever changes its
//! interest. What selectchat spends beyond this is the cost of its rules.

use std::collections::HashMap;
use std::io::{self, Read, Write};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

const LISTENER: Token = Token(usize::MAX);

struct Conn {
    sock: TcpStream,
    input: Vec<u8>,
    out: Vec<u8>,
    name: Option<String>,
    dirty: bool,
}

/// Serves until the process is killed.
pub fn serve(listener: std::net::TcpListener) {
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let mut listener = TcpListener::from_std(listener);
    let mut poll = Poll::new().expect("poll");
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .expect("register listener");
    let mut conns: Slab<Conn> = Slab::new();
    let mut chat = Chat::default();
    let mut dirty: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        let mut closed = Vec::new();
        for event in events.iter() {
            if event.token() == LISTENER {
                while let Ok((mut sock, _)) = listener.accept() {
                    let _ = sock.set_nodelay(true);
                    let entry = conns.vacant_entry();
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if poll
                        .registry()
                        .register(&mut sock, Token(entry.key()), interest)
                        .is_ok()
                    {
                        entry.insert(Conn {
                            sock,
                            input: Vec::new(),
                            out: Vec::new(),
                            name: None,
                            dirty: false,
                        });
                    }
                }
                continue;
            }
            let id = event.token().0;
            if event.is_writable() && conns.contains(id) && !conns[id].dirty {
                conns[id].dirty = true;
                dirty.push(id);
            }
            if !(event.is_readable() || event.is_read_closed()) || !conns.contains(id) {
                continue;
            }
            loop {
                match conns[id].sock.read(&mut buf) {
                    Ok(0) => {
                        closed.push(id);
                        break;
                    }
                    Ok(n) => {
                        conns[id].input.extend_from_slice(&buf[..n]);
                        handle_lines(id, &mut conns, &mut chat, &mut dirty, &mut closed);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        closed.push(id);
                        break;
                    }
                }
            }
        }
        for id in dirty.drain(..) {
            let Some(conn) = conns.get_mut(id) else {
                continue;
            };
            conn.dirty = false;
            let mut written = 0;
            while written < conn.out.len() {
                match conn.sock.write(&conn.out[written..]) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // WouldBlock: the next writable event brings it back.
                    Err(_) => break,
                }
            }
            conn.out.drain(..written);
        }
        for id in closed {
            if let Some(mut conn) = conns.try_remove(id) {
                let _ = poll.registry().deregister(&mut conn.sock);
                chat.members.retain(|&m| m != id);
                for room in chat.rooms.values_mut() {
                    room.retain(|&m| m != id);
                }
            }
        }
    }
}

/// Who gets what: the logged-in connections, and each room's members.
#[derive(Default)]
struct Chat {
    members: Vec<usize>,
    rooms: HashMap<Vec<u8>, Vec<usize>>,
    next_id: u64,
}

/// Handles the complete lines in `conns[id].input`.
fn handle_lines(
    id: usize,
    conns: &mut Slab<Conn>,
    chat: &mut Chat,
    dirty: &mut Vec<usize>,
    closed: &mut Vec<usize>,
) {
    let input = std::mem::take(&mut conns[id].input);
    let mut used = 0;
    while let Some(nl) = input[used..].iter().position(|&b| b == b'\n') {
        let line = &input[used..used + nl];
        used += nl + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut touch = |to: usize, conns: &mut Slab<Conn>| {
            if !conns[to].dirty {
                conns[to].dirty = true;
                dirty.push(to);
            }
        };
        if let Some(name) = line.strip_prefix(b"LOGIN ") {
            conns[id].name = Some(String::from_utf8_lossy(name).into_owned());
            conns[id].out.extend_from_slice(b"OK\n");
            chat.members.push(id);
            touch(id, conns);
        } else if let Some(text) = line.strip_prefix(b"MSG ") {
            let Some(name) = &conns[id].name else {
                continue;
            };
            let mut msg = Vec::with_capacity(name.len() + text.len() + 6);
            msg.extend_from_slice(b"MSG ");
            msg.extend_from_slice(name.as_bytes());
            msg.push(b' ');
            msg.extend_from_slice(text);
            msg.push(b'\n');
            for &to in chat.members.iter() {
                if to != id {
                    conns[to].out.extend_from_slice(&msg);
                    touch(to, conns);
                }
            }
        } else if let Some(room) = line.strip_prefix(b"JOIN ") {
            let members = chat.rooms.entry(room.to_vec()).or_default();
            members.push(id);
            let joined = format!(
                "JOINED {} {}\n",
                String::from_utf8_lossy(room),
                members.len()
            );
            conns[id].out.extend_from_slice(joined.as_bytes());
            touch(id, conns);
        } else if let Some(said) = line.strip_prefix(b"SAY ") {
            let Some(name) = &conns[id].name else {
                continue;
            };
            let Some(space) = said.iter().position(|&b| b == b' ') else {
                continue;
            };
            let (room, text) = (&said[..space], &said[space + 1..]);
            chat.next_id += 1;
            let head = format!(
                "SAY {} {} {name} ",
                String::from_utf8_lossy(room),
                chat.next_id
            );
            let mut msg = Vec::with_capacity(head.len() + text.len() + 1);
            msg.extend_from_slice(head.as_bytes());
            msg.extend_from_slice(text);
            msg.push(b'\n');
            let sent = format!("SENT {} {}\n", String::from_utf8_lossy(room), chat.next_id);
            conns[id].out.extend_from_slice(sent.as_bytes());
            touch(id, conns);
            for &to in chat.rooms.get(room).into_iter().flatten() {
                if to != id {
                    conns[to].out.extend_from_slice(&msg);
                    touch(to, conns);
                }
            }
        } else if let Some(token) = line.strip_prefix(b"PING") {
            conns[id].out.extend_from_slice(b"PONG");
            conns[id].out.extend_from_slice(token);
            conns[id].out.push(b'\n');
            touch(id, conns);
        } else if line.starts_with(b"QUIT") {
            closed.push(id);
        }
    }
    let mut rest = input;
    rest.drain(..used);
    conns[id].input = rest;
}

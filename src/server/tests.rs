//! The loop's own unit tests, on real sockets: a panic in one handler, and
//! the pre-login output allowance.

use super::*;
use crate::chat::Step;
use crate::protocol::Frame;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpStream as StdStream};
use std::time::{Duration, Instant};

fn server() -> Server {
    let mut cfg = Config::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    cfg.db = ":memory:".into();
    Server::bind(cfg).unwrap()
}

fn connect(server: &mut Server) -> (ConnId, BufReader<StdStream>) {
    let (_, addr) = server.local_addrs().unwrap()[0];
    let stream = StdStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let before = server.conns.slab.len();
    let deadline = Instant::now() + Duration::from_secs(5);
    let token = server.listeners.tokens().next().unwrap();
    while server.conns.slab.len() == before {
        assert!(Instant::now() < deadline, "never accepted");
        server.accept_all(token, Instant::now());
    }
    let id = server.conns.slab.iter().map(|(id, _)| id).max().unwrap();
    (id, BufReader::new(stream))
}

#[test]
fn a_panicking_handler_costs_only_its_connection() {
    let mut server = server();
    let now = Instant::now();
    let (victim, _victim_stream) = connect(&mut server);
    let (other, mut other_stream) = connect(&mut server);
    for (id, line) in [(victim, "LOGIN victim"), (other, "LOGIN other")] {
        let step = server.dispatch(id, Frame::Line(line.as_bytes()), now);
        assert_eq!(step, Ok(Step::LoggedIn));
    }
    server.flush_pending(now);

    server.isolate(victim, now, |_| panic!("injected bug"));
    server.flush_pending(now);
    server.reap_closed();

    assert!(server.conns.slab.get(victim).is_none());
    assert_eq!(server.chat.users(), 1);
    server.chat.check_invariants();
    let mut lines = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        other_stream.read_line(&mut line).unwrap();
        lines.push(line);
    }
    assert_eq!(lines, ["OK\n", "INFO victim disconnected\n"]);
}

/// Sends `PING <4000 bytes>` lines from `id`, whose peer never reads,
/// until the server drops it for its sendq (at most 10,000 lines, 40 MB);
/// returns the bytes queued for it just before the last line.
fn ping_until_dropped(server: &mut Server, id: ConnId) -> usize {
    let line = format!("PING {}", "t".repeat(4000));
    let now = Instant::now();
    for _ in 0..10_000 {
        let queued = server.conns.slab[id].transport.buffered();
        match server.dispatch(id, Frame::Line(line.as_bytes()), now) {
            Ok(_) => {}
            Err(why) => {
                assert_eq!(why, Departure::Sendq);
                return queued;
            }
        }
    }
    panic!("never dropped");
}

#[test]
fn an_anonymous_connection_is_held_to_the_pre_login_allowance() {
    let mut server = server();
    let (anonymous, _a) = connect(&mut server);
    let (user, _u) = connect(&mut server);
    assert_eq!(server.conns.slab[anonymous].sendq, PRE_LOGIN_BYTES);
    let now = Instant::now();
    let step = server.dispatch(user, Frame::Line(b"LOGIN user"), now);
    assert_eq!(step, Ok(Step::LoggedIn));
    assert_eq!(server.conns.slab[user].sendq, server.cfg.sendq);
    // Once the kernel's buffer is full, the anonymous one may queue one
    // line past its 16 KiB; the user, up to its 1 MiB sendq.
    let anonymous_peak = ping_until_dropped(&mut server, anonymous);
    assert!(anonymous_peak <= PRE_LOGIN_BYTES, "{anonymous_peak} queued");
    let user_peak = ping_until_dropped(&mut server, user);
    assert!(user_peak > 64 * 1024, "only {user_peak} queued for a user");
}

//! How connections end and how time reaches them: departures carried out,
//! the one wheel timer per connection, and the isolation of a panicking
//! handler.

use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

use log::{debug, error, info, trace};

use crate::chat::ConnId;
use crate::protocol::Reply;
use crate::session::{Departure, Session, Timed};

use super::{Server, READ_CHUNK, TIMER_BUDGET};

impl Server {
    /// Runs one connection's handler so that a bug in it (a panic) costs that
    /// connection, not the server: the connection is dropped as if reset and
    /// the loop goes on. The chat's state is only as consistent as the panic
    /// left it, which is why this is a last line of defence, not error handling.
    pub(super) fn isolate(&mut self, id: ConnId, now: Instant, work: impl FnOnce(&mut Self)) {
        if panic::catch_unwind(AssertUnwindSafe(|| work(self))).is_ok() {
            return;
        }
        error!("conn {id}: handler panicked; dropping the connection");
        if self.read_chunk.len() != READ_CHUNK {
            self.read_chunk = vec![0; READ_CHUNK];
        }
        // The session may have been lent out when the panic struck; the
        // stand-in is closed, so the departure is carried out here.
        if let Some(conn) = self.conns.slab.get_mut(id) {
            conn.session = Session::closed(now);
            conn.mute = true;
            conn.transport.discard_output();
        }
        let left = panic::catch_unwind(AssertUnwindSafe(|| {
            self.chat.leave(id, &mut self.conns);
            self.settle(None, now);
        }));
        if left.is_err() {
            self.chat.remove(id);
        }
        self.arm(id);
    }

    /// Ends a connection: its session departs, then the loop carries the
    /// departure out.
    pub(super) fn depart(&mut self, id: ConnId, why: Departure, now: Instant) {
        if let Some(conn) = self.conns.slab.get_mut(id) {
            conn.session.depart(why, now, &self.rules);
            self.after_session(id);
            self.settle(None, now);
        }
    }

    /// Carries out what a session decided (its departure, if it just
    /// happened) and re-arms its timer.
    pub(super) fn after_session(&mut self, id: ConnId) {
        let Some(conn) = self.conns.slab.get_mut(id) else {
            return;
        };
        if let Some(why) = conn.session.take_departure() {
            self.on_departed(id, why);
        }
        self.arm(id);
    }

    /// The loop's side of a departure: the `BYE` line through the same
    /// queue as every other line, then no more output, the log line, and
    /// the others told. The name is free again at once.
    pub(super) fn on_departed(&mut self, id: ConnId, why: Departure) {
        if let Some(reason) = why.bye() {
            self.conns.send_reply(id, Reply::Bye(reason));
        }
        let conn = &mut self.conns.slab[id];
        conn.mute = true;
        let peer = conn.peer;
        if why.flushes() {
            // A WebSocket close frame or TLS close_notify ends the output.
            conn.transport.end();
            self.conns.queue_write(id);
        } else {
            let freed = conn.transport.discard_output();
            self.conns.trimmer.freed(freed);
        }
        match self.chat.name(id) {
            Some(name) => info!("conn {id} {peer} {name} left: {}", why.as_str()),
            None => info!("conn {id} {peer} closed: {}", why.as_str()),
        }
        self.tally.departed(why);
        match why {
            Departure::Kicked => self.chat.kick(id, &mut self.conns),
            Departure::Restarting => self.chat.hold(id),
            why if why.announced() => self.chat.leave(id, &mut self.conns),
            _ => {
                self.chat.remove(id);
            }
        }
    }

    /// Moves a connection's one timer to its session's next deadline when
    /// that came earlier; a later deadline is found when the timer fires.
    /// A closed connection goes to the reap list instead.
    pub(super) fn arm(&mut self, id: ConnId) {
        let Some(conn) = self.conns.slab.get_mut(id) else {
            return;
        };
        let Some(due) = conn.session.poll_timeout(&self.rules) else {
            if let Some((timer, _)) = conn.timer.take() {
                self.wheel.cancel(timer);
            }
            if !conn.reaping {
                conn.reaping = true;
                self.reap.push(id);
            }
            return;
        };
        if conn.timer.is_some_and(|(_, armed)| armed <= due) {
            return;
        }
        if let Some((timer, _)) = conn.timer.take() {
            self.wheel.cancel(timer);
        }
        conn.timer = Some((self.wheel.insert(due, id), due));
    }

    /// Handles at most `TIMER_BUDGET` due timers a turn. A purge of
    /// thousands of ghosts at once announces each departure to everyone;
    /// done in one turn, it would hold every live message back for its whole
    /// length. Timers past the budget stay due for the next turn.
    pub(super) fn expire_timers(&mut self, now: Instant) {
        for _ in 0..TIMER_BUDGET {
            let Some(id) = self.wheel.poll(now) else {
                return;
            };
            self.isolate(id, now, |server| server.on_timer(id, now));
        }
    }

    pub(super) fn on_timer(&mut self, id: ConnId, now: Instant) {
        let Some(conn) = self.conns.slab.get_mut(id) else {
            return;
        };
        conn.timer = None;
        if conn.session.is_open() {
            let freed = conn.release_idle_buffers();
            self.conns.trimmer.freed(freed);
        }
        let was_draining = conn.session.is_draining();
        match conn.session.handle_timeout(now, &self.rules) {
            Timed::Nothing => {}
            Timed::Ping => {
                trace!("conn {id} heartbeat");
                self.conns.send_reply(id, Reply::Ping);
                self.settle(None, now);
            }
            Timed::Resume => self.read(id, now),
        }
        let conn = &self.conns.slab[id];
        if was_draining && conn.session.is_closed() {
            let unsent = conn.transport.buffered();
            debug!(
                "conn {id} {} linger expired with {unsent} bytes unsent",
                conn.peer
            );
        }
        self.after_session(id);
    }
}

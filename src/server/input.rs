//! The input path of the loop: socket bytes through the transport into the
//! connection's session, each line through the chat, and what the chat
//! queued settled before the next line.

use std::time::Instant;

use log::{debug, info, trace};

use crate::chat::{ConnId, Step};
use crate::protocol::{Frame, ProtocolError};
use crate::session::{Departure, Dispatched, Session};
use crate::transport::Received;

use super::{Server, HANDSHAKES_PER_TURN, READ_BUDGET};

impl Server {
    pub(super) fn read(&mut self, id: ConnId, now: Instant) {
        let Some(conn) = self.conns.slab.get_mut(id) else {
            return;
        };
        if !conn.session.wants_read() {
            return;
        }
        if conn.transport.is_handshaking() {
            if self.handshakes >= HANDSHAKES_PER_TURN {
                self.read_later(id);
                return;
            }
            self.handshakes += 1;
        }
        // Lent out so the chat can borrow the rest of `self` while lines
        // still point into the session's framer; it goes back below.
        let mut session = std::mem::replace(&mut conn.session, Session::closed(now));
        let mut chunk = std::mem::take(&mut self.read_chunk);
        let rules = self.rules;
        // Bytes held back by a flood-control pause come before new ones.
        let mut reading = session.handle_held(now, &rules, |f| self.dispatch(id, f, now));
        let mut budget = READ_BUDGET;
        while reading {
            let conn = &mut self.conns.slab[id];
            let received = conn.transport.read(&mut conn.sock, &mut chunk);
            // Every byte off the socket counts, whatever it decoded to.
            budget = budget.saturating_sub(conn.transport.take_wire_read());
            match received {
                Ok(Received::Bytes(n)) => {
                    trace!("conn {id} read {n} bytes");
                    let bytes = &chunk[..n];
                    reading =
                        session.handle_bytes(bytes, now, &rules, |f| self.dispatch(id, f, now));
                }
                Ok(Received::NotText) => {
                    reading = session.handle_not_text(now, &rules, || {
                        self.reject(id, ProtocolError::InvalidText, now)
                    });
                }
                Ok(Received::Control) => reading = session.handle_control(now, &rules),
                Ok(Received::Progress) => {}
                Ok(Received::WouldBlock) => {
                    session.caught_up();
                    break;
                }
                Ok(Received::Closed) => {
                    session.depart(Departure::Eof, now, &rules);
                    break;
                }
                Err(e) => {
                    debug!("conn {id} read error: {e}");
                    session.depart(Departure::Reset, now, &rules);
                    break;
                }
            }
            // What the transport answered by itself (a pong) counts
            // against the sendq like any reply.
            self.conns.transport_replied(id);
            if let Some(why) = self.settle(Some(id), now) {
                session.depart(why, now, &rules);
                break;
            }
            if reading && (budget == 0 || self.turn_full()) {
                self.read_later(id);
                break;
            }
        }
        // Reading began unpaused: a pause now is a new one.
        if session.is_paused() {
            self.tally.flood_pauses += 1;
        }
        let conn = &mut self.conns.slab[id];
        conn.session = session;
        // Bytes the transport made itself: a handshake, a response, a pong.
        self.conns.transport_replied(id);
        self.read_chunk = chunk;
        self.after_session(id);
    }

    /// Hands one line to the chat and settles what it queued.
    pub(super) fn dispatch(&mut self, id: ConnId, frame: Frame<'_>, now: Instant) -> Dispatched {
        let step = match frame {
            Frame::TooLong => return self.reject(id, ProtocolError::LineTooLong, now),
            Frame::Line(line) => self.chat.on_line(id, line, now, &mut self.conns),
        };
        let peer = self.conns.slab[id].peer;
        let name = self.chat.name(id).unwrap_or("?");
        if matches!(
            step,
            Step::LoggedIn | Step::Replaced(_) | Step::Replay { .. }
        ) {
            self.conns.logged_in(id);
        }
        match step {
            Step::LoggedIn => info!("conn {id} {peer} logged in as {name}"),
            Step::Replay { ghost: None } => info!("conn {id} {peer} resumed {name}"),
            Step::Replaced(ghost) | Step::Replay { ghost: Some(ghost) } => {
                info!("conn {id} {peer} resumed {name}, replacing conn {ghost}");
                // Carried out without settling: this connection's session
                // is lent out, and the settle below covers both.
                if let Some(conn) = self.conns.slab.get_mut(ghost) {
                    conn.session.depart(Departure::Replaced, now, &self.rules);
                    self.after_session(ghost);
                }
            }
            _ => {}
        }
        match self.settle(Some(id), now) {
            Some(why) => Err(why),
            None => Ok(step),
        }
    }

    /// Answers input that is not a line the chat can read.
    fn reject(&mut self, id: ConnId, error: ProtocolError, now: Instant) -> Dispatched {
        self.chat.on_rejected(id, error, &mut self.conns);
        match self.settle(Some(id), now) {
            Some(why) => Err(why),
            None => Ok(Step::Continue),
        }
    }

    /// Carries out what the chat queued: writes out the connections past
    /// the write-through mark and departs those that failed, whose own
    /// announcements may fail others in turn. The failure of `current`
    /// (whose session is lent out) is returned instead of carried out.
    pub(super) fn settle(&mut self, current: Option<ConnId>, now: Instant) -> Option<Departure> {
        let mut mine = None;
        loop {
            self.conns.write_through(&mut self.failed);
            let Some((id, why)) = self.failed.pop() else {
                return mine;
            };
            if Some(id) == current {
                mine.get_or_insert(why);
            } else if let Some(conn) = self.conns.slab.get_mut(id) {
                conn.session.depart(why, now, &self.rules);
                self.after_session(id);
            }
        }
    }

    /// Remembers a connection that has input left, for the next turn
    /// (edge-triggered readiness will not be reported again).
    pub(super) fn read_later(&mut self, id: ConnId) {
        let conn = &mut self.conns.slab[id];
        if !conn.read_queued {
            conn.read_queued = true;
            self.read_again.push(id);
        }
    }

    /// Serves the connections left over from earlier turns, oldest first,
    /// with a work budget of their own so fresh events cannot starve them.
    pub(super) fn retry_reads(&mut self, now: Instant) {
        self.conns.appended = 0;
        for id in std::mem::take(&mut self.read_again) {
            let Some(conn) = self.conns.slab.get_mut(id) else {
                continue;
            };
            if !conn.read_queued {
                continue;
            }
            conn.read_queued = false;
            if !self.turn_full() {
                self.isolate(id, now, |server| server.read(id, now));
            } else {
                self.read_later(id);
            }
        }
    }
}

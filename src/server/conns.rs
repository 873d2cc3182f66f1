//! The connection table and its write policy: the chat's [`Outbox`].
//!
//! The chat only appends: a line for a connection goes into its transport's
//! queue and the connection onto the turn's pending-write list. No chat call
//! performs a syscall. A line for many recipients is written once into the
//! turn's broadcast buffer, and plain-TCP recipients queue a range of it
//! (see `transport::outbuf`), so a fan-out costs each of them a few bytes
//! of bookkeeping, not a copy. When a call has returned,
//! [`Conns::write_through`] writes out the connections whose own queue
//! passed `WRITE_THROUGH` (so a burst costs each connection about a page,
//! not its whole backlog) and names those that failed: a write error, or
//! more than the sendq still queued after the kernel took what it would.
//! Every other write happens once per turn, in [`Conns::flush`], and
//! [`Conns::end_turn`] then frees the broadcast buffer for the next turn.

use std::time::Instant;

use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::chat::{ConnId, Outbox};
use crate::protocol::Reply;
use crate::session::Departure;
use crate::transport::Broadcast;

use super::conn::Conn;
use super::memory::Trimmer;

/// Bytes a connection's queue holds for itself (own bytes and broadcast
/// ranges, not the broadcast bytes) past which it is written out before
/// the turn ends.
const WRITE_THROUGH: usize = 4096;
/// Bytes queued for a connection, broadcast ranges included, past which it
/// is written out before the turn ends: with one write per turn, a reader
/// that keeps up could take at most one kernel buffer's worth per turn.
const STREAM_THROUGH: usize = 64 * 1024;
/// The broadcast buffer keeps this much capacity between turns.
const KEEP_BROADCAST: usize = 1 << 20;

/// What a flush left the connection in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Some bytes may still wait (the loop registered for writability).
    Open,
    /// Everything was written.
    Empty,
    /// The socket failed.
    Failed,
}

/// The connections, and the loop's lists of what to do with them.
pub struct Conns {
    pub slab: Slab<Conn>,
    /// Written to this turn; flushed once when the turn's events are done.
    pending_writes: Vec<ConnId>,
    /// Past `WRITE_THROUGH` (or the sendq) since the last chat call returned.
    through: Vec<ConnId>,
    /// The output limit of a logged-in connection (`--sendq`).
    sendq: usize,
    scratch: Vec<u8>,
    /// This turn's lines for many recipients, each written once; queues
    /// hold ranges of it until the turn's writes are done.
    broadcast: Broadcast,
    /// Connections sent broadcast lines this turn: their queues may point
    /// into the buffer, and they note whether those lines were adjacent.
    sharing: Vec<ConnId>,
    pub trimmer: Trimmer,
    /// Lines queued to recipients in this phase of the turn: the measure of
    /// work the loop's per-turn bound counts.
    pub appended: usize,
    /// Lines queued to recipients since the start.
    pub delivered: u64,
    /// Bytes written to sockets since the start.
    pub written: u64,
}

impl Conns {
    /// An empty table whose connections may queue up to `sendq` bytes.
    pub fn new(sendq: usize) -> Self {
        Conns {
            slab: Slab::new(),
            pending_writes: Vec::new(),
            through: Vec::new(),
            sendq,
            scratch: Vec::new(),
            broadcast: Broadcast::default(),
            sharing: Vec::new(),
            trimmer: Trimmer::new(),
            appended: 0,
            delivered: 0,
            written: 0,
        }
    }

    /// Puts `id` on the turn's pending-write list, once.
    pub fn queue_write(&mut self, id: ConnId) {
        if let Some(conn) = self.slab.get_mut(id) {
            if !conn.write_queued {
                conn.write_queued = true;
                self.pending_writes.push(id);
            }
        }
    }

    /// Formats `reply` and queues it for `to` (loop-made lines: PING, BYE).
    pub fn send_reply(&mut self, to: ConnId, reply: Reply<'_>) {
        let mut line = std::mem::take(&mut self.scratch);
        line.clear();
        reply.write_to(&mut line);
        self.send(to, &line);
        self.scratch = line;
    }

    /// Writes out every connection that passed `WRITE_THROUGH` since the
    /// last call, and pushes those that failed, with why, onto `failed`.
    pub fn write_through(&mut self, failed: &mut Vec<(ConnId, Departure)>) {
        while let Some(id) = self.through.pop() {
            let Some(conn) = self.slab.get_mut(id) else {
                continue;
            };
            conn.through_queued = false;
            if conn.mute {
                continue;
            }
            let buffered = conn.transport.buffered();
            // A connection waiting for writability has a full kernel buffer:
            // only a sendq overflow is worth a try.
            if conn.want_writable && buffered <= conn.sendq {
                continue;
            }
            let wrote = conn.transport.write_shared(&mut conn.sock, &self.broadcast);
            self.written += conn.transport.take_wire_written() as u64;
            let failure = match wrote {
                Err(e) => {
                    log::debug!("conn {id} write error: {e}");
                    Some(Departure::Reset)
                }
                Ok(freed) => {
                    self.trimmer.freed(freed);
                    (conn.transport.buffered() > conn.sendq).then_some(Departure::Sendq)
                }
            };
            if let Some(why) = failure {
                conn.mute = true;
                failed.push((id, why));
            }
        }
    }

    /// The next connection written to this turn, taking it off the list.
    pub fn next_pending_write(&mut self) -> Option<ConnId> {
        let id = self.pending_writes.pop()?;
        if let Some(conn) = self.slab.get_mut(id) {
            conn.write_queued = false;
        }
        Some(id)
    }

    /// Writes `id`'s queue to its socket and sets its interest from what
    /// its transport still wants to write.
    pub fn flush(&mut self, id: ConnId, registry: &Registry) -> Flushed {
        let Some(conn) = self.slab.get_mut(id) else {
            return Flushed::Empty;
        };
        let wrote = conn.transport.write_shared(&mut conn.sock, &self.broadcast);
        self.written += conn.transport.take_wire_written() as u64;
        match wrote {
            Ok(freed) => self.trimmer.freed(freed),
            Err(e) => {
                log::debug!("conn {id} write error: {e}");
                return Flushed::Failed;
            }
        }
        let want = conn.transport.wants_write();
        if want != conn.want_writable {
            conn.want_writable = want;
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if let Err(e) = registry.reregister(&mut conn.sock, Token(id), interest) {
                log::debug!("conn {id} cannot change its interest: {e}");
                return Flushed::Failed;
            }
        }
        if want {
            Flushed::Open
        } else {
            Flushed::Empty
        }
    }

    /// The turn's writes are done: any queue still pointing into the
    /// broadcast buffer (one not written out this turn) copies what it
    /// needs, every queue sent a broadcast line closes its turn, and the
    /// buffer starts empty for the next turn.
    pub fn end_turn(&mut self) {
        for id in self.sharing.drain(..) {
            if let Some(conn) = self.slab.get_mut(id) {
                conn.shares = false;
                conn.transport.end_turn(&self.broadcast);
            }
        }
        let freed = self.broadcast.clear(KEEP_BROADCAST);
        self.trimmer.freed(freed);
    }

    /// Bytes in this turn's broadcast buffer.
    pub fn broadcast_len(&self) -> usize {
        self.broadcast.len()
    }

    /// `id` logged in: its output limit rises from the pre-login allowance
    /// to `--sendq`, and its transport lifts its own pre-login limits.
    pub fn logged_in(&mut self, id: ConnId) {
        if let Some(conn) = self.slab.get_mut(id) {
            conn.sendq = self.sendq;
            conn.transport.logged_in();
        }
    }

    /// `id`'s transport may have queued bytes of its own while reading (a
    /// response, a pong, a close frame): they are held to the same marks
    /// as chat output, so a peer that provokes replies and never reads is
    /// dropped at its sendq like any other.
    pub fn transport_replied(&mut self, id: ConnId) {
        if self.slab[id].transport.wants_write() {
            self.mark(id);
        }
    }

    /// The bookkeeping after a line was queued for `to`: the turn's work,
    /// then the marks.
    fn queued_for(&mut self, to: ConnId) {
        self.appended += 1;
        self.delivered += 1;
        self.mark(to);
    }

    /// The write-through and sendq marks, and the pending-write list.
    fn mark(&mut self, to: ConnId) {
        let conn = &mut self.slab[to];
        let buffered = conn.transport.buffered();
        let over = conn.transport.held() > WRITE_THROUGH
            || buffered > STREAM_THROUGH
            || buffered > conn.sendq;
        if over && !conn.through_queued {
            conn.through_queued = true;
            self.through.push(to);
        }
        if !conn.write_queued {
            conn.write_queued = true;
            self.pending_writes.push(to);
        }
    }

    /// Bytes queued for clients and not yet taken by the kernel.
    pub fn queued(&self) -> usize {
        self.slab.iter().map(|(_, c)| c.transport.buffered()).sum()
    }

    /// Heap bytes reserved by all connections' buffers.
    pub fn buffers(&self) -> usize {
        self.slab.iter().map(|(_, c)| c.buffer_capacity()).sum()
    }

    /// When a trim of the heap is due, if one is owed.
    pub fn trim_deadline(&self, now: Instant) -> Option<Instant> {
        self.trimmer.deadline(now)
    }
}

impl Outbox for Conns {
    fn send(&mut self, to: ConnId, bytes: &[u8]) {
        if let Some(conn) = taking(&mut self.slab, to) {
            conn.transport.queue(bytes);
            self.queued_for(to);
        }
    }

    fn send_to_all(&mut self, roster: &[ConnId], except: Option<ConnId>, bytes: &[u8]) {
        let mut shared = self.broadcast.push(bytes);
        for &to in roster {
            if Some(to) == except {
                continue;
            }
            let Some(conn) = taking(&mut self.slab, to) else {
                continue;
            };
            conn.transport
                .queue_shared(&mut self.broadcast, &mut shared);
            if !conn.shares {
                conn.shares = true;
                self.sharing.push(to);
            }
            self.queued_for(to);
        }
    }
}

/// `to`'s connection, if it still takes output.
fn taking(slab: &mut Slab<Conn>, to: ConnId) -> Option<&mut Conn> {
    let conn = slab.get_mut(to);
    debug_assert!(conn.is_some(), "chat wrote to unknown connection {to}");
    conn.filter(|c| !c.mute)
}

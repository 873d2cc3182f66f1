//! The connection table and its write policy: the chat's [`Outbox`].
//!
//! The chat only appends: a line for a connection goes into its transport's
//! queue and the connection onto the turn's pending-write list. No chat call
//! performs a syscall. When a call has returned, [`Conns::write_through`]
//! writes out the connections whose queue passed `WRITE_THROUGH` (so a
//! burst costs each connection about a page, not its whole backlog) and
//! names those that failed: a write error, or more than the sendq still
//! queued after the kernel took what it would. Every other write happens
//! once per turn, in [`Conns::flush`].

use std::time::Instant;

use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::chat::{ConnId, Outbox};
use crate::protocol::Reply;
use crate::session::Departure;

use super::conn::Conn;
use super::memory::Trimmer;

/// Queued bytes past which a connection is written out before the turn ends.
const WRITE_THROUGH: usize = 4096;

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
    sendq: usize,
    scratch: Vec<u8>,
    pub trimmer: Trimmer,
    /// Lines queued to recipients in this phase of the turn: the measure of
    /// work the loop's per-turn bound counts.
    pub appended: usize,
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
            trimmer: Trimmer::new(),
            appended: 0,
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
            if conn.want_writable && buffered <= self.sendq {
                continue;
            }
            let failure = match conn.transport.write_to(&mut conn.sock) {
                Err(e) => {
                    log::debug!("conn {id} write error: {e}");
                    Some(Departure::Reset)
                }
                Ok(freed) => {
                    self.trimmer.freed(freed);
                    (conn.transport.buffered() > self.sendq).then_some(Departure::Sendq)
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
        match conn.transport.write_to(&mut conn.sock) {
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
        let Some(conn) = self.slab.get_mut(to) else {
            debug_assert!(false, "chat wrote to unknown connection {to}");
            return;
        };
        if conn.mute {
            return;
        }
        conn.transport.queue(bytes);
        self.appended += 1;
        let buffered = conn.transport.buffered();
        if (buffered > WRITE_THROUGH || buffered > self.sendq) && !conn.through_queued {
            conn.through_queued = true;
            self.through.push(to);
        }
        if !conn.write_queued {
            conn.write_queued = true;
            self.pending_writes.push(to);
        }
    }
}

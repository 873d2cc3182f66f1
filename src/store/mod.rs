//! The message store: one writer thread that owns the SQLite database, so
//! the event loop never waits on a disk.
//!
//! The loop sends each turn's [`Request`]s as one batch over a channel. The
//! writer takes every batch waiting, commits all their messages in one
//! transaction (group commit), answers their reads, sends the
//! [`Outcome`]s back and wakes the loop through its one `mio::Waker`
//! (shared with any other thread that answers the loop). Only then
//! does it prune, so pruning never delays a `SENT`. A failed commit is
//! logged once, when the store goes from working to failing, and again
//! when it recovers.

pub mod db;

use std::sync::mpsc::{self, Receiver, Sender, TryIter};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::SystemTime;

use log::{debug, error, info, warn};
use mio::Waker;

use crate::chat::history::{Found, Outcome, Request};
use crate::protocol::reply::MessageId;
use db::{Append, Db};

/// The loop's handle on the writer thread.
pub struct Store {
    requests: Option<Sender<Vec<Request>>>,
    outcomes: Receiver<Outcome>,
    writer: Option<JoinHandle<()>>,
}

impl Store {
    /// Starts the writer thread on `db`; it wakes the loop with `waker`.
    pub fn spawn(db: Db, waker: Arc<Waker>) -> std::io::Result<Store> {
        let (requests, inbox) = mpsc::channel();
        let (reply, outcomes) = mpsc::channel();
        let writer = thread::Builder::new()
            .name("store".into())
            .spawn(move || Writer::new(db, reply, waker).run(inbox))?;
        Ok(Store {
            requests: Some(requests),
            outcomes,
            writer: Some(writer),
        })
    }

    /// Hands one turn's requests to the writer.
    pub fn submit(&mut self, batch: Vec<Request>) {
        if batch.is_empty() {
            return;
        }
        let sent = self.requests.as_ref().map(|tx| tx.send(batch));
        if !matches!(sent, Some(Ok(()))) && self.requests.take().is_some() {
            // The writer is gone (it panicked). Nothing more is stored; the
            // chat refuses SAY once its reserved ids run out.
            error!("store: the writer thread has stopped; messages are no longer stored");
        }
    }

    /// What the writer has reported since the last call.
    pub fn outcomes(&self) -> TryIter<'_, Outcome> {
        self.outcomes.try_iter()
    }

    /// Lets the writer finish what it was given and waits for it.
    pub fn close(&mut self) {
        self.requests = None;
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                error!("store: the writer thread panicked");
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

/// The writer thread's state.
struct Writer {
    db: Db,
    reply: Sender<Outcome>,
    waker: Arc<Waker>,
    failing: bool,
    /// The highest id the loop handed out, stored or not.
    last_seen: MessageId,
}

impl Writer {
    fn new(db: Db, reply: Sender<Outcome>, waker: Arc<Waker>) -> Writer {
        Writer {
            db,
            reply,
            waker,
            failing: false,
            last_seen: 0,
        }
    }

    fn run(mut self, inbox: Receiver<Vec<Request>>) {
        while let Ok(mut batch) = inbox.recv() {
            batch.extend(inbox.try_iter().flatten());
            if !self.serve(batch) {
                return;
            }
            match self.db.prune(SystemTime::now()) {
                Ok(0) => {}
                Ok(n) => debug!("store: pruned {n} old messages"),
                Err(e) => warn!("store: pruning failed: {e}"),
            }
        }
        if let Err(e) = self.db.release_reservation(self.last_seen) {
            debug!("store: cannot record the last id at shutdown: {e}");
        }
    }

    /// Commits the batch's messages, answers its reads, and wakes the
    /// loop. Returns false once the loop is gone.
    fn serve(&mut self, batch: Vec<Request>) -> bool {
        let mut appends = Vec::new();
        let mut sessions = Vec::new();
        let mut reads = Vec::new();
        for request in &batch {
            match request {
                Request::Append { room, message } => appends.push(Append { room, message }),
                Request::SaveSession { .. }
                | Request::ForgetSession { .. }
                | Request::SaveAccount { .. }
                | Request::Read { .. }
                | Request::Member { .. }
                | Request::Applied { .. } => sessions.push(request),
                Request::Fetch { .. } | Request::Lookup { .. } | Request::Unread { .. } => {
                    reads.push(request)
                }
            }
        }
        let mut outcomes = Vec::with_capacity(1 + reads.len());
        let through = appends.last().map(|a| a.message.id);
        let committed = self.db.commit(&appends, &sessions);
        match (&committed, through) {
            (Ok(_), _) if std::mem::take(&mut self.failing) => info!("store: writes work again"),
            (Err(e), _) if !std::mem::replace(&mut self.failing, true) => error!(
                "store: cannot commit ({e}); SAY gets ERR storage-unavailable, and sessions \
                 may not survive a restart, until writes work again"
            ),
            _ => {}
        }
        if let Some(through) = through {
            self.last_seen = self.last_seen.max(through);
            outcomes.push(match committed {
                Ok(reserved) => Outcome::Committed {
                    through,
                    reserved: reserved.unwrap_or(through),
                },
                Err(_) => Outcome::Failed { through },
            });
        }
        // Accounts are answered once their fate is known.
        for request in &sessions {
            if let Request::SaveAccount { ticket, .. } = request {
                outcomes.push(Outcome::AccountSaved {
                    ticket: *ticket,
                    saved: committed.is_ok(),
                });
            }
        }
        // Reads come after the commit, so they see every message sent
        // before them.
        for read in reads {
            outcomes.push(match read {
                Request::Fetch {
                    ticket,
                    room,
                    query,
                } => Outcome::Fetched {
                    ticket: *ticket,
                    rows: self
                        .db
                        .fetch(room, *query)
                        .map_err(|e| warn!("store: cannot read the history of {room}: {e}"))
                        .ok(),
                },
                Request::Unread { ticket, name } => Outcome::Unread {
                    ticket: *ticket,
                    conversations: self
                        .db
                        .unread(name)
                        .map_err(|e| warn!("store: cannot count unread messages: {e}"))
                        .ok(),
                },
                Request::Lookup { ticket, room } => Outcome::Looked {
                    ticket: *ticket,
                    found: self.db.lookup(room).unwrap_or_else(|e| {
                        warn!("store: cannot look up {room}: {e}");
                        Found::Failed
                    }),
                },
                _ => continue,
            });
        }
        for outcome in outcomes {
            if self.reply.send(outcome).is_err() {
                return false;
            }
        }
        if let Err(e) = self.waker.wake() {
            error!("store: cannot wake the event loop: {e}");
        }
        true
    }
}

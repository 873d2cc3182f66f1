//! The cluster port: how the event loop talks to the other nodes. The NATS
//! bridge ([`bridge`]) runs on a thread of its own, the only place tokio
//! lives; the loop hands it [`BusRequest`]s through a bounded channel it
//! never waits on (a full channel is an error for the command that asked)
//! and takes [`FromBus`] answers when the shared waker fires.
//!
//! [`NodeWatch`] is the loop's view of which node incarnations are alive,
//! pure and driven by the instants the loop hands in.

pub mod bridge;
mod registry;
mod watch;

use std::sync::mpsc::{self, Receiver, TryIter};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use log::error;
use mio::Waker;

use crate::chat::cluster::{BusRequest, Claim, Taken};
use crate::chat::event::valid_home;
pub use watch::NodeWatch;

/// Requests the loop may have queued for the bridge before it counts as
/// behind: a command past it gets an error.
const TO_BRIDGE: usize = 64 * 1024;
/// Answers the bridge may queue for the loop before it waits for the loop.
const TO_LOOP: usize = 64 * 1024;

/// How a node joins its cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// NATS server URLs, tried in turn.
    pub urls: Vec<String>,
    /// This node's name, unique in the cluster.
    pub node: String,
    /// Names the stream, buckets and subjects; two clusters can share a NATS.
    pub prefix: String,
    /// How long a node may be silent before its peers declare it dead.
    pub timeout: Duration,
    /// Copies NATS keeps of the log and the registry (1, or 3 on a
    /// three-server NATS cluster).
    pub replicas: usize,
}

impl ClusterConfig {
    /// The name of the log's stream: the prefix, upper-cased.
    pub fn stream(&self) -> String {
        self.prefix.to_ascii_uppercase()
    }

    /// The subject of an event: its room's (by the hex of its folded
    /// name, as room names need not be subject tokens), or the lobby's.
    pub fn subject(&self, room: Option<&str>) -> String {
        match room {
            Some(room) => {
                let hex: String = room
                    .bytes()
                    .map(|b| format!("{:02x}", b.to_ascii_lowercase()))
                    .collect();
                format!("{}.log.room.{hex}", self.prefix)
            }
            None => format!("{}.log.lobby", self.prefix),
        }
    }
}

/// True when `word` can be a node name or a cluster prefix: 1 to 32
/// characters of `A-Z a-z 0-9 _ -`.
pub fn valid_word(word: &str) -> bool {
    word.len() <= 32 && valid_home(word)
}

/// What the bridge tells the loop.
#[derive(Debug)]
pub enum FromBus {
    /// Entry `seq` of the log, published by the node incarnation and
    /// under the stamp its message id names, if it names them.
    Logged {
        seq: u64,
        origin: Option<(Box<str>, u64)>,
        payload: Bytes,
    },
    /// The log did not take the event published under `stamp`.
    Unpublished { stamp: u64 },
    /// The registry's answer to claim `ticket` on `name`.
    Claimed {
        ticket: u64,
        name: Box<str>,
        claim: Claim,
    },
    /// A direct message for a user here.
    Dm { payload: Bytes },
    /// A heartbeat of the node incarnation `home`.
    Beat { home: Box<str> },
    /// The connection to NATS went down or came back.
    Link { up: bool },
    /// Another node (`asker`) asks, under `request`, for the session of
    /// `name` for a `RESUME` with `token`.
    Take {
        request: u64,
        name: Box<str>,
        token: Box<str>,
        asker: Box<str>,
    },
    /// The answer to this node's take `ticket`.
    Took { ticket: u64, taken: Taken },
}

/// The log's identity: when its stream was created (Unix nanoseconds). A
/// stream deleted and made again starts its sequence anew, so a node's
/// database is bound to one stream.
pub type StreamId = i64;

/// The loop's handle on the bridge thread.
pub struct Bus {
    requests: Option<tokio::sync::mpsc::Sender<BusRequest>>,
    answers: Receiver<FromBus>,
    thread: Option<JoinHandle<()>>,
}

impl Bus {
    /// Connects to the cluster as the incarnation `home`, making the log
    /// and the registry if they are missing, and starts the bridge thread,
    /// which feeds the loop the log from entry `from` on and wakes it
    /// through `waker`. Returns once connected, with the log's identity;
    /// fails if NATS cannot be reached within `wait`.
    pub fn start(
        cfg: &ClusterConfig,
        home: &str,
        from: u64,
        waker: Arc<Waker>,
        wait: Duration,
    ) -> std::io::Result<(Bus, StreamId)> {
        let (requests, inbox) = tokio::sync::mpsc::channel(TO_BRIDGE);
        let (answer, answers) = mpsc::sync_channel(TO_LOOP);
        let (ready, started) = mpsc::channel();
        let setup = bridge::Setup {
            cfg: cfg.clone(),
            home: home.into(),
            waker,
            answer,
            ready,
            wait,
            from,
        };
        let thread = std::thread::Builder::new()
            .name("bridge".into())
            .spawn(move || bridge::run(setup, inbox))?;
        let stream = match started.recv_timeout(wait) {
            Ok(Ok(stream)) => stream,
            Ok(Err(why)) => return Err(std::io::Error::other(why)),
            Err(_) => {
                return Err(std::io::Error::other(format!(
                    "cannot reach the cluster at {} within {} s",
                    cfg.urls.join(","),
                    wait.as_secs()
                )))
            }
        };
        let bus = Bus {
            requests: Some(requests),
            answers,
            thread: Some(thread),
        };
        Ok((bus, stream))
    }

    /// Hands `request` to the bridge; gives it back if the bridge is
    /// behind (or gone), so its asker can be answered with an error.
    pub fn send(&self, request: BusRequest) -> Result<(), BusRequest> {
        let Some(requests) = &self.requests else {
            return Err(request);
        };
        requests.try_send(request).map_err(|e| match e {
            tokio::sync::mpsc::error::TrySendError::Full(r) => r,
            tokio::sync::mpsc::error::TrySendError::Closed(r) => {
                error!("cluster: the bridge thread has stopped");
                r
            }
        })
    }

    /// What the bridge has reported since the last call.
    pub fn answers(&self) -> TryIter<'_, FromBus> {
        self.answers.try_iter()
    }

    /// Lets the bridge finish what it was given on its own, without
    /// waiting for it: a node that takes a new incarnation starts another.
    pub fn retire(mut self) {
        self.requests = None;
        self.thread = None;
    }

    /// Lets the bridge finish what it was given (within its own time
    /// bounds) and waits for it.
    pub fn close(&mut self) {
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                error!("cluster: the bridge thread panicked");
            }
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_rooms_by_the_hex_of_their_folded_name() {
        let cfg = ClusterConfig {
            urls: vec![],
            node: "n1".into(),
            prefix: "chat-a".into(),
            timeout: Duration::from_secs(3),
            replicas: 1,
        };
        assert_eq!(cfg.stream(), "CHAT-A");
        assert_eq!(cfg.subject(Some("#Ab")), cfg.subject(Some("#aB")));
        assert_eq!(cfg.subject(Some("#a")), "chat-a.log.room.2361");
        assert_eq!(cfg.subject(None), "chat-a.log.lobby");
        assert!(valid_word("node-1_x") && !valid_word("a.b") && !valid_word(""));
    }
}

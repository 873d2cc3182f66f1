//! The loop's side of a cluster: the chat's effects handed to the store
//! and the bridge, the bridge's answers handed to the chat, and the watch
//! over the other nodes (burying the dead, and closing this node's users
//! when it is cut off itself).

use crate::auth::Verdict;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{error, info, warn};

use crate::bus::{Bus, ClusterConfig, FromBus, NodeWatch, StreamId};
use crate::chat::cluster::{BusRequest, Claim, Effect};
use crate::chat::event::Event;
use crate::chat::{ConnId, Step};
use crate::session::Departure;
use crate::store::db::Db;

use super::Server;

/// How long a start waits for NATS before giving up.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// This node in its cluster.
pub(super) struct Node {
    pub(super) bus: Bus,
    cfg: ClusterConfig,
    waker: Arc<mio::Waker>,
    watch: NodeWatch,
    home: Box<str>,
    /// Between checks of the other nodes' liveness.
    check_every: Duration,
    pub(super) next_check: Instant,
    /// This node's own heartbeats stopped coming back: its users were
    /// closed, and it serves nobody until they come back.
    cut_off: bool,
}

impl Node {
    /// True while this node's own heartbeats do not come back.
    pub(super) fn is_cut_off(&self) -> bool {
        self.cut_off
    }

    /// Joins the cluster `cfg` names as a fresh incarnation of this node,
    /// binding `db` to the cluster's log (or refusing a database that
    /// belongs to another log or to a single server). Returns the node and
    /// its home.
    pub(super) fn join(
        cfg: &ClusterConfig,
        db: &Db,
        db_path: &str,
        waker: Arc<mio::Waker>,
    ) -> io::Result<Node> {
        let home = format!("{}-{}", cfg.node, incarnation());
        let (bus, stream) = Bus::start(cfg, &home, 1, waker.clone(), CONNECT_WAIT)?;
        bind(db, db_path, stream)?;
        let now = Instant::now();
        let check_every = (cfg.timeout / 4).max(Duration::from_millis(100));
        Ok(Node {
            bus,
            cfg: cfg.clone(),
            waker,
            watch: NodeWatch::new(&home, cfg.timeout, now),
            home: home.into(),
            check_every,
            next_check: now + check_every,
            cut_off: false,
        })
    }

    /// This node incarnation's name.
    pub(super) fn home(&self) -> &str {
        &self.home
    }

    /// Starts a new incarnation of this node following the log from entry
    /// `from`; the old bridge finishes what it was given on its own.
    fn rehome(&mut self, from: u64, now: Instant) -> io::Result<()> {
        let home = format!("{}-{}", self.cfg.node, incarnation());
        let (bus, _) = Bus::start(&self.cfg, &home, from, self.waker.clone(), CONNECT_WAIT)?;
        std::mem::replace(&mut self.bus, bus).retire();
        let mut watch = NodeWatch::new(&home, self.cfg.timeout, now);
        watch.buried(&self.home);
        self.watch = watch;
        self.home = home.into();
        self.cut_off = false;
        Ok(())
    }
}

/// A name for this run of the node: peers tell its events, claims and
/// heartbeats from those of its earlier runs by it.
fn incarnation() -> String {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u32);
        bytes = ms.to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks that the database at `path` follows the log `stream` (binding a
/// fresh one to it): ids are the log's sequence numbers, so a database
/// with a single server's ids, or another log's, cannot take part.
fn bind(db: &Db, path: &str, stream: StreamId) -> io::Result<()> {
    let refuse = |why: String| Err(io::Error::other(why));
    match db.stream().map_err(io::Error::other)? {
        Some(bound) if bound == stream => Ok(()),
        Some(_) => refuse(format!(
            "{path} follows another cluster log (the stream was deleted and made again); \
             move it away to start this node afresh"
        )),
        None if db.last_stored().map_err(io::Error::other)? > 0 => refuse(format!(
            "{path} holds the history of a single server; a cluster node needs a database \
             of its own (give --db another path)"
        )),
        None => db.bind_stream(stream).map_err(io::Error::other),
    }
}

/// Refuses a database that belongs to a cluster node when no cluster is
/// given: its ids are a cluster log's.
pub(super) fn refuse_cluster_db(db: &Db, path: &str) -> io::Result<()> {
    if db.stream().map_err(io::Error::other)?.is_some() {
        return Err(io::Error::other(format!(
            "{path} holds a cluster node's history; start it with --cluster, or give --db \
             another path"
        )));
    }
    Ok(())
}

impl Server {
    /// Hands what the chat asked for to the store (one batch) and the
    /// bridge. A request the bridge cannot take now is answered at once
    /// with an error to whoever asked.
    pub(super) fn carry_out(&mut self, now: Instant) {
        let mut batch = Vec::new();
        for effect in self.chat.take_effects() {
            match effect {
                Effect::Store(request) => batch.push(request),
                Effect::Bus(request) => self.hand_to_bridge(request, now),
                Effect::Replaced(ghost) => {
                    info!("conn {ghost}: its name logged in again with the password");
                    self.depart(ghost, Departure::Replaced, now);
                }
                Effect::Hash(job) => {
                    if let Err(job) = self.hasher.submit(job) {
                        let verdict = Verdict::Failed {
                            ticket: job.ticket(),
                        };
                        let released = self.chat.on_verdict(verdict, now, &mut self.conns);
                        self.settle(None, now);
                        if let Some((id, step)) = released {
                            self.release(id, step, now);
                        }
                    }
                }
            }
        }
        self.store.submit(batch);
    }

    fn hand_to_bridge(&mut self, request: BusRequest, now: Instant) {
        let Some(node) = &self.node else {
            return;
        };
        let Err(request) = node.bus.send(request) else {
            return;
        };
        let released = match request {
            BusRequest::Publish {
                stamp,
                release: None,
                ..
            } => self.chat.on_unpublished(stamp, &mut self.conns),
            BusRequest::Claim { ticket, name } => {
                self.chat
                    .on_claimed(ticket, &name, Claim::Unavailable, &mut self.conns)
            }
            other => {
                error!("cluster: the bridge is behind; dropped {other:?}");
                None
            }
        };
        self.settle(None, now);
        if let Some((id, step)) = released {
            self.release(id, step, now);
        }
    }

    /// Lets `id`, whose wait is over, read again, as what it now is.
    pub(super) fn release(&mut self, id: ConnId, step: Step, now: Instant) {
        let Some(conn) = self.conns.slab.get_mut(id) else {
            return;
        };
        conn.session.release(step, &self.rules);
        self.chat.concluded(id);
        if step == Step::LoggedIn {
            self.conns.logged_in(id);
            let peer = self.conns.slab[id].peer;
            let name = self.chat.name(id).unwrap_or("?");
            info!("conn {id} {peer} logged in as {name}");
        }
        // A resume that waited for the cluster replays what it asked for
        // now; if that waits for the store, so does the connection.
        if let Some(waits) = self.chat.resume_replay(id, &mut self.conns) {
            self.settle(None, now);
            if waits {
                if let Some(conn) = self.conns.slab.get_mut(id) {
                    conn.session.wait();
                }
                return;
            }
        }
        self.isolate(id, now, |server| server.read(id, now));
    }

    /// Carries out what the bridge reported: the log's entries, claims,
    /// direct messages, heartbeats.
    pub(super) fn on_bus(&mut self, now: Instant) {
        let Some(node) = &self.node else {
            return;
        };
        let home: Box<str> = node.home().into();
        let answers: Vec<FromBus> = node.bus.answers().collect();
        for answer in answers {
            let released = self.answer(answer, now);
            self.settle(None, now);
            if let Some((id, step)) = released {
                self.release(id, step, now);
            }
            // Declared dead and started afresh: the rest came from the old
            // bridge, and the new one follows the log from where this stopped.
            if self.node.as_ref().is_some_and(|node| *node.home() != *home) {
                return;
            }
        }
    }

    fn answer(&mut self, answer: FromBus, now: Instant) -> Option<(ConnId, Step)> {
        let node = self.node.as_mut()?;
        match answer {
            FromBus::Logged {
                seq,
                origin,
                payload,
            } => {
                let Some(event) = Event::decode(&payload, seq) else {
                    warn!("cluster: entry {seq} of the log is not an event; skipped");
                    return None;
                };
                if let Some((home, _)) = &origin {
                    node.watch.heard(home, now);
                }
                let declared_dead = match event {
                    Event::Gone { home } => {
                        node.watch.buried(home);
                        home == node.home()
                    }
                    _ => false,
                };
                let origin = origin.as_ref().map(|(home, stamp)| (&**home, *stamp));
                let released = self.chat.on_logged(seq, origin, event, &mut self.conns);
                if declared_dead {
                    self.reincarnate(now);
                }
                released
            }
            FromBus::Unpublished { stamp } => self.chat.on_unpublished(stamp, &mut self.conns),
            FromBus::Claimed {
                ticket,
                name,
                claim,
            } => self.chat.on_claimed(ticket, &name, claim, &mut self.conns),
            FromBus::Dm { payload } => {
                self.chat.on_dm(&payload, &mut self.conns);
                None
            }
            FromBus::Beat { home } => {
                node.watch.heard(&home, now);
                None
            }
            FromBus::Take {
                request,
                name,
                token,
                asker,
            } => {
                let ghost = self.chat.on_take(request, &name, &token, &asker);
                if let Some(ghost) = ghost {
                    info!("conn {ghost} {name} resumed on node {asker}");
                    self.depart(ghost, Departure::Replaced, now);
                }
                None
            }
            FromBus::Took { ticket, taken } => self.chat.on_took(ticket, taken, &mut self.conns),
            FromBus::Link { up: true } => {
                info!("cluster: connected to NATS");
                None
            }
            FromBus::Link { up: false } => {
                warn!("cluster: lost NATS; SAY, JOIN and LOGIN get errors until it is back");
                None
            }
        }
    }

    /// Buries the nodes silent past the timeout, and closes this node's
    /// users if it is cut off itself (its peers are about to bury it).
    pub(super) fn check_nodes(&mut self, now: Instant) {
        let Some(node) = self.node.as_mut() else {
            return;
        };
        if now < node.next_check {
            return;
        }
        node.next_check = now + node.check_every;
        for home in node.watch.dead(now) {
            warn!("cluster: node {home} is silent; burying it");
            if let Err(request) = node.bus.send(BusRequest::Bury { home }) {
                error!("cluster: the bridge is behind; dropped {request:?}");
            }
        }
        let cut_off = node.watch.cut_off(now);
        if cut_off && !node.cut_off {
            warn!("cluster: cut off from the cluster; closing every connection (BYE cut-off)");
            self.cut_off(now);
        } else if !cut_off && node.cut_off {
            info!("cluster: back in the cluster");
            node.cut_off = false;
        }
    }

    /// The cluster declared this node dead (it was cut off for too long):
    /// its users are closed if they were not already, and it goes on as a
    /// new incarnation, following the log from where it was.
    fn reincarnate(&mut self, now: Instant) {
        warn!("cluster: this node was declared dead; closing its users and starting afresh");
        self.cut_off(now);
        // The departures go out through the old bridge.
        self.carry_out(now);
        let from = self.chat.last_applied() + 1;
        let Some(node) = self.node.as_mut() else {
            return;
        };
        match node.rehome(from, now) {
            Ok(()) => {
                info!("cluster: this node is now {}", node.home());
                self.chat.rehome(node.home());
            }
            Err(e) => error!("cluster: cannot start afresh: {e}; this node stays cut off"),
        }
    }

    fn cut_off(&mut self, now: Instant) {
        if let Some(node) = self.node.as_mut() {
            node.cut_off = true;
        }
        let ids: Vec<ConnId> = self.conns.slab.iter().map(|(id, _)| id).collect();
        for id in ids {
            self.depart(id, Departure::CutOff, now);
        }
    }

    /// At shutdown: this node's users depart on every other node at once
    /// (one entry in the log), and its names are released.
    pub(super) fn leave_cluster(&mut self) {
        if let Some(node) = &self.node {
            let home = node.home().into();
            if let Err(request) = node.bus.send(BusRequest::Bury { home }) {
                error!("cluster: the bridge is behind; dropped {request:?}");
            }
        }
    }
}

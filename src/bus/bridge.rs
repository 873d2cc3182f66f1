//! The NATS bridge: one thread, one `current_thread` tokio runtime, one
//! NATS connection. It appends this node's events to the cluster's log (a
//! JetStream stream) and feeds the loop every entry of the log in order,
//! claims and releases names in the registry (a key-value bucket), carries
//! direct messages and heartbeats over core NATS, and buries dead nodes.
//!
//! Everything here is I/O; what the answers mean is the chat's business.
//! Every NATS call is bounded by the cluster timeout, so a stalled server
//! turns into an error for the command that asked, never a stalled loop.

use std::collections::HashMap;
use std::sync::mpsc::{Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::consumer::{push, DeliverPolicy};
use async_nats::jetstream::context::{Context, ContextBuilder};
use async_nats::jetstream::kv;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream;
use async_nats::{Client, ConnectOptions, ServerAddr};
use bytes::Bytes;
use futures_util::StreamExt;
use log::{debug, error, info, warn};
use mio::Waker;
use tokio::sync::mpsc::Receiver;
use tokio::task::JoinSet;

use super::registry::{claim, name_key, release_name, Burial};
use super::{ClusterConfig, FromBus, StreamId};
use crate::chat::cluster::{BusRequest, Claim, Taken};

/// How long the bridge, told to stop, lets its last tasks (a burial, a
/// departure) finish.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Pause between retries of a departure the log did not take.
const RETRY: Duration = Duration::from_millis(500);
/// Longest one attempt to open the log and the buckets at start may take.
const SETUP_ATTEMPT: Duration = Duration::from_secs(2);

/// What the bridge thread starts from.
pub struct Setup {
    pub cfg: ClusterConfig,
    /// This node incarnation's name.
    pub home: Box<str>,
    pub waker: Arc<Waker>,
    pub answer: SyncSender<FromBus>,
    /// Where the outcome of connecting goes: the log's identity, or why not.
    pub ready: Sender<Result<StreamId, String>>,
    /// How long connecting may take, all told.
    pub wait: Duration,
    /// The first entry of the log to feed the loop.
    pub from: u64,
}

/// The way back to the loop: a bounded channel and the shared waker.
#[derive(Clone)]
struct Out {
    answer: SyncSender<FromBus>,
    waker: Arc<Waker>,
}

impl Out {
    /// Hands `message` to the loop, waiting while the loop is behind.
    fn send(&self, message: FromBus) {
        if self.answer.send(message).is_ok() {
            if let Err(e) = self.waker.wake() {
                error!("cluster: cannot wake the event loop: {e}");
            }
        }
    }
}

/// Runs the bridge until the loop drops its end of `inbox`.
pub fn run(setup: Setup, inbox: Receiver<BusRequest>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = setup
                .ready
                .send(Err(format!("cannot start the bridge: {e}")));
            return;
        }
    };
    runtime.block_on(async move {
        let ready = setup.ready.clone();
        match Bridge::connect(setup).await {
            Ok((bridge, stream)) => {
                let _ = ready.send(Ok(stream));
                bridge.serve(inbox).await;
            }
            Err(why) => {
                let _ = ready.send(Err(why));
            }
        }
    });
}

/// The bridge's connection and what it knows.
struct Bridge {
    cfg: ClusterConfig,
    home: Box<str>,
    client: Client,
    js: Context,
    names: kv::Store,
    nodes: kv::Store,
    out: Out,
    /// The first entry of the log to follow.
    from: u64,
    /// Told when the connection comes back: the log is followed anew.
    reconnected: Arc<tokio::sync::Notify>,
    /// The registry revision of each name this node holds, so a release
    /// deletes only its own claim.
    revisions: Arc<Mutex<HashMap<Box<str>, u64>>>,
    /// Other nodes' requests for sessions, awaiting the loop's answers.
    takes: Takes,
    tasks: JoinSet<()>,
}

impl Bridge {
    /// Connects, and makes the log and the registry's buckets if they are
    /// missing.
    async fn connect(setup: Setup) -> Result<(Bridge, StreamId), String> {
        let Setup {
            cfg,
            home,
            waker,
            answer,
            wait,
            from,
            ..
        } = setup;
        let give_up = tokio::time::Instant::now() + wait.saturating_sub(RETRY);
        let out = Out { answer, waker };
        let reconnected = Arc::new(tokio::sync::Notify::new());
        let addrs = cfg
            .urls
            .iter()
            .map(|u| {
                u.parse::<ServerAddr>()
                    .map_err(|e| format!("bad NATS URL {u}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (link, back) = (out.clone(), reconnected.clone());
        let client = ConnectOptions::new()
            .name(format!("selectchat {home}"))
            .connection_timeout(cfg.timeout)
            // Back within a second of NATS: the library's default backs off
            // to several seconds, longer than a cluster timeout.
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((attempts as u64 * 100).min(1000))
            })
            .event_callback(move |event| {
                let (link, back) = (link.clone(), back.clone());
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            back.notify_one();
                            link.send(FromBus::Link { up: true });
                        }
                        async_nats::Event::Disconnected => link.send(FromBus::Link { up: false }),
                        other => debug!("cluster: {other}"),
                    }
                }
            })
            .connect(addrs)
            .await
            .map_err(|e| format!("cannot connect to NATS at {}: {e}", cfg.urls.join(",")))?;
        let js = ContextBuilder::new()
            .timeout(cfg.timeout)
            .build(client.clone());
        let stream_cfg = stream::Config {
            name: cfg.stream(),
            subjects: vec![format!("{}.log.>", cfg.prefix)],
            num_replicas: cfg.replicas,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        // A NATS cluster that is still electing its JetStream leader
        // refuses streams for a moment: try again until the start's wait
        // is nearly over, then say why.
        let (log, names, nodes) = loop {
            let opened = async {
                let log = js
                    .get_or_create_stream(stream_cfg.clone())
                    .await
                    .map_err(|e| format!("cannot open the cluster's log {}: {e}", cfg.stream()))?;
                let names = bucket(&js, &cfg, "names").await?;
                let nodes = bucket(&js, &cfg, "nodes").await?;
                Ok::<_, String>((log, names, nodes))
            };
            // A leaderless JetStream does not answer at all: ask again soon.
            let opened = tokio::time::timeout(SETUP_ATTEMPT, opened)
                .await
                .unwrap_or_else(|_| Err("JetStream did not answer".into()));
            match opened {
                Ok(opened) => break opened,
                Err(why) if tokio::time::Instant::now() >= give_up => return Err(why),
                Err(why) => {
                    debug!("cluster: {why}; trying again");
                    tokio::time::sleep(RETRY).await;
                }
            }
        };
        let created = log.cached_info().created.unix_timestamp_nanos() as StreamId;
        info!(
            "cluster: node {home} joined {} (log {}, {} entries)",
            cfg.urls.join(","),
            cfg.stream(),
            log.cached_info().state.messages
        );
        let bridge = Bridge {
            cfg,
            home,
            client,
            js,
            names,
            nodes,
            out,
            from,
            reconnected,
            revisions: Arc::default(),
            takes: Takes::default(),
            tasks: JoinSet::new(),
        };
        Ok((bridge, created))
    }

    /// Serves the loop's requests and feeds it the log, the heartbeats and
    /// the direct messages until the loop hangs up.
    async fn serve(mut self, mut inbox: Receiver<BusRequest>) {
        let mut feeds = JoinSet::new();
        feeds.spawn(follow(
            (self.client.clone(), self.js.clone()),
            (self.cfg.stream(), self.from),
            (self.out.clone(), self.reconnected.clone()),
        ));
        feeds.spawn(beat(
            self.client.clone(),
            self.cfg.clone(),
            self.home.clone(),
        ));
        feeds.spawn(listen(
            self.client.clone(),
            self.cfg.clone(),
            self.home.clone(),
            self.out.clone(),
            self.takes.clone(),
        ));
        while let Some(request) = inbox.recv().await {
            self.handle(request).await;
        }
        // The loop is stopping: let a burial or departures in progress end.
        feeds.abort_all();
        let finish = async { while self.tasks.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(STOP_GRACE, finish).await;
        let _ = self.client.flush().await;
    }

    async fn handle(&mut self, request: BusRequest) {
        // Without NATS a command gets its error now, not after a timeout;
        // a departure or a burial waits for NATS to come back.
        if self.client.connection_state() != async_nats::connection::State::Connected {
            let refused = match &request {
                BusRequest::Publish {
                    stamp,
                    release: None,
                    ..
                } => Some(FromBus::Unpublished { stamp: *stamp }),
                BusRequest::Claim { ticket, name } => Some(FromBus::Claimed {
                    ticket: *ticket,
                    name: name.clone(),
                    claim: Claim::Unavailable,
                }),
                BusRequest::Take { ticket, .. } => Some(FromBus::Took {
                    ticket: *ticket,
                    taken: Taken::Unavailable,
                }),
                // A burial decided without NATS may be stale by the time
                // NATS is back; the loop asks again if the node stays silent.
                BusRequest::Bury { home } => {
                    debug!("cluster: not burying {home} without NATS");
                    return;
                }
                _ => None,
            };
            if let Some(refused) = refused {
                self.out.send(refused);
                return;
            }
        }
        match request {
            BusRequest::Publish {
                stamp,
                room,
                payload,
                release,
            } => {
                let subject = self.cfg.subject(room.as_deref());
                let id = format!("{}.{stamp}", self.home);
                let publish = Publish {
                    js: self.js.clone(),
                    subject,
                    id,
                    payload: payload.into(),
                };
                // A departure frees the name first: once a node has applied
                // it, a login there may claim the name at once (a node that
                // has not still holds the name in its roster and refuses).
                if let Some(name) = &release {
                    release_name(&self.names, &self.revisions, name).await;
                }
                // Sent now, in order; the acknowledgement is awaited apart.
                let acked = publish.send().await;
                let out = self.out.clone();
                self.tasks.spawn(async move {
                    let ok = match acked {
                        Ok(ack) => ack.await.is_ok(),
                        Err(_) => false,
                    };
                    match release {
                        // A departure: the log must take it.
                        Some(_) if !ok => publish.until_taken().await,
                        None if !ok => out.send(FromBus::Unpublished { stamp }),
                        _ => {}
                    }
                });
            }
            BusRequest::Claim { ticket, name } => {
                let (out, names, revisions, home, nodes) = (
                    self.out.clone(),
                    self.names.clone(),
                    self.revisions.clone(),
                    self.home.clone(),
                    self.nodes.clone(),
                );
                self.tasks.spawn(async move {
                    let claim = match claim((&names, &nodes), &name, &home).await {
                        Ok(revision) => {
                            lock(&revisions).insert(name.clone(), revision);
                            Claim::Won
                        }
                        Err(claim) => claim,
                    };
                    out.send(FromBus::Claimed {
                        ticket,
                        name,
                        claim,
                    });
                });
            }
            BusRequest::Release { name } => {
                let (names, revisions) = (self.names.clone(), self.revisions.clone());
                self.tasks
                    .spawn(async move { release_name(&names, &revisions, &name).await });
            }
            BusRequest::Dm { home, payload } => {
                let subject = format!("{}.dm.{home}", self.cfg.prefix);
                if let Err(e) = self.client.publish(subject, payload.into()).await {
                    debug!("cluster: a direct message to {home} was lost: {e}");
                }
            }
            BusRequest::Bury { home } => {
                let bury = Burial {
                    js: self.js.clone(),
                    names: self.names.clone(),
                    nodes: self.nodes.clone(),
                    subject: self.cfg.subject(None),
                    by: self.home.clone(),
                };
                self.tasks.spawn(async move { bury.bury(&home).await });
            }
            BusRequest::Take {
                ticket,
                name,
                token,
                at,
            } => {
                let subject = format!(
                    "{}.take.{}",
                    self.cfg.prefix,
                    at.as_deref().unwrap_or("any")
                );
                // A node asked by name always answers; when nobody is named,
                // only the holder does, so silence soon means nobody.
                let wait = match at {
                    Some(_) => self.cfg.timeout,
                    None => self.cfg.timeout.min(Duration::from_secs(1)),
                };
                let payload = format!("{name} {token} {}", self.home);
                let (client, out, names, revisions, home) = (
                    self.client.clone(),
                    self.out.clone(),
                    self.names.clone(),
                    self.revisions.clone(),
                    self.home.clone(),
                );
                self.tasks.spawn(async move {
                    let answer =
                        tokio::time::timeout(wait, client.request(subject, payload.into())).await;
                    let mut taken = match answer {
                        Ok(Ok(reply)) => Taken::decode(&reply.payload),
                        _ => Taken::No,
                    };
                    if matches!(taken, Taken::Ghost(_)) {
                        // The name's claim moves here with its user.
                        let key = name_key(&name);
                        match names
                            .put(&key, Bytes::copy_from_slice(home.as_bytes()))
                            .await
                        {
                            Ok(revision) => {
                                lock(&revisions).insert(name.clone(), revision);
                            }
                            Err(e) => {
                                warn!("cluster: cannot move the claim on {name} here: {e}");
                                taken = Taken::No;
                            }
                        }
                    }
                    out.send(FromBus::Took { ticket, taken });
                });
            }
            BusRequest::Answer {
                request,
                name,
                taken,
            } => {
                let Some((reply, asked_by_name)) = lock(&self.takes.pending).remove(&request)
                else {
                    return;
                };
                if matches!(taken, Taken::Ghost(_)) {
                    // The asker holds the name's claim now.
                    lock(&self.revisions).remove(&*name);
                }
                if taken != Taken::No || asked_by_name {
                    if let Err(e) = self.client.publish(reply, taken.encode().into()).await {
                        debug!("cluster: an answer to a resume was lost: {e}");
                    }
                }
            }
        }
        // Reap what finished, so the set holds only what runs.
        while self.tasks.try_join_next().is_some() {}
    }
}

/// Opens (or makes) the bucket `<prefix>-<what>`.
async fn bucket(js: &Context, cfg: &ClusterConfig, what: &str) -> Result<kv::Store, String> {
    let name = format!("{}-{what}", cfg.prefix);
    if let Ok(store) = js.get_key_value(&name).await {
        return Ok(store);
    }
    let config = kv::Config {
        bucket: name.clone(),
        history: 1,
        num_replicas: cfg.replicas,
        ..Default::default()
    };
    match js.create_key_value(config).await {
        Ok(store) => Ok(store),
        // Another node made it meanwhile.
        Err(e) => js
            .get_key_value(&name)
            .await
            .map_err(|_| format!("cannot open the cluster's bucket {name}: {e}")),
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One event on its way to the log.
pub(super) struct Publish {
    pub(super) js: Context,
    pub(super) subject: String,
    pub(super) id: String,
    pub(super) payload: Bytes,
}

impl Publish {
    async fn send(&self) -> Result<async_nats::jetstream::context::PublishAckFuture, ()> {
        let message = PublishMessage::build()
            .payload(self.payload.clone())
            .message_id(&self.id);
        self.js
            .send_publish(self.subject.clone(), message)
            .await
            .map_err(|e| debug!("cluster: publish {} failed: {e}", self.id))
    }

    /// Sends it and waits for the log's acknowledgement.
    pub(super) async fn taken(&self) -> bool {
        match self.send().await {
            Ok(ack) => ack.await.is_ok(),
            Err(()) => false,
        }
    }

    /// Sends it again until the log takes it; its message id keeps the
    /// log from holding it twice.
    pub(super) async fn until_taken(&self) {
        loop {
            tokio::time::sleep(RETRY).await;
            if self.taken().await {
                return;
            }
        }
    }
}

/// Feeds the loop every entry of the log, in order, from `from`. The
/// ordered push consumer is made again from the next sequence whenever it
/// may have stopped: when the connection comes back, and when its
/// heartbeats stop (its NATS server was lost while ours lives on). No
/// entry is skipped or fed twice.
async fn follow(
    (client, js): (Client, Context),
    (stream, from): (String, u64),
    (out, reconnected): (Out, Arc<tokio::sync::Notify>),
) {
    let mut next = from.max(1);
    loop {
        let messages = async {
            let log = js.get_stream(&stream).await?;
            let consumer = log
                .create_consumer(push::OrderedConfig {
                    deliver_subject: client.new_inbox(),
                    deliver_policy: DeliverPolicy::ByStartSequence {
                        start_sequence: next,
                    },
                    ..Default::default()
                })
                .await?;
            Ok::<_, async_nats::Error>(consumer.messages().await?)
        };
        let mut messages = match messages.await {
            Ok(messages) => messages,
            Err(e) => {
                warn!("cluster: cannot follow the log {stream} from {next}: {e}; trying again");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        loop {
            let message = tokio::select! {
                message = messages.next() => message,
                () = reconnected.notified() => {
                    debug!("cluster: connected again; following the log again from {next}");
                    break;
                }
            };
            let Some(message) = message else {
                break;
            };
            let message = match message {
                Ok(message) => message,
                Err(e) if e.kind() == push::OrderedErrorKind::MissingHeartbeat => {
                    warn!("cluster: the log went quiet ({e}); following it again from {next}");
                    break;
                }
                Err(e) => {
                    warn!("cluster: reading the log: {e}");
                    continue;
                }
            };
            let Ok(info) = message.info() else {
                continue;
            };
            let seq = info.stream_sequence;
            if seq < next {
                continue;
            }
            next = seq + 1;
            let origin = message
                .headers
                .as_ref()
                .and_then(|h| h.get(NATS_MESSAGE_ID))
                .and_then(|id| {
                    let (home, stamp) = id.as_str().rsplit_once('.')?;
                    Some((Box::from(home), stamp.parse().ok()?))
                });
            let payload = message.message.payload.clone();
            out.send(FromBus::Logged {
                seq,
                origin,
                payload,
            });
        }
    }
}

/// Publishes this node's heartbeat a few times per timeout.
async fn beat(client: Client, cfg: ClusterConfig, home: Box<str>) {
    let subject = format!("{}.beat", cfg.prefix);
    let mut every = tokio::time::interval((cfg.timeout / 4).max(Duration::from_millis(100)));
    loop {
        every.tick().await;
        if let Err(e) = client
            .publish(subject.clone(), Bytes::copy_from_slice(home.as_bytes()))
            .await
        {
            debug!("cluster: heartbeat not sent: {e}");
        }
    }
}

/// Hands the loop every node's heartbeats and this node's direct messages.
async fn listen(client: Client, cfg: ClusterConfig, home: Box<str>, out: Out, takes: Takes) {
    let prefix = &cfg.prefix;
    let beats = client.subscribe(format!("{prefix}.beat")).await;
    let dms = client.subscribe(format!("{prefix}.dm.{home}")).await;
    let mine = client.subscribe(format!("{prefix}.take.{home}")).await;
    let any = client.subscribe(format!("{prefix}.take.any")).await;
    let (Ok(beats), Ok(dms), Ok(mine), Ok(any)) = (beats, dms, mine, any) else {
        error!("cluster: cannot subscribe to heartbeats, direct messages and resumes");
        return;
    };
    let beats = beats.map(|m| match std::str::from_utf8(&m.payload) {
        Ok(home) => Some(FromBus::Beat { home: home.into() }),
        Err(_) => None,
    });
    let dms = dms.map(|m| Some(FromBus::Dm { payload: m.payload }));
    let mine = mine.map(|m| takes.asked(m, true));
    let any = any.map(|m| takes.asked(m, false));
    let takes = futures_util::stream::select(mine, any);
    let mut all = futures_util::stream::select(futures_util::stream::select(beats, dms), takes);
    while let Some(message) = all.next().await {
        if let Some(message) = message {
            out.send(message);
        }
    }
}

/// Most requests for sessions waiting for the loop's answer; past it a
/// request goes unanswered (its asker times out).
const MAX_TAKES: usize = 4096;

/// Other nodes' requests for sessions: where each answer goes, and
/// whether the request named this node (which then answers even "no").
#[derive(Clone, Default)]
struct Takes {
    pending: Arc<Mutex<HashMap<u64, (async_nats::Subject, bool)>>>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl Takes {
    /// Reads a request `<name> <token> <asker>` for the loop.
    fn asked(&self, m: async_nats::Message, by_name: bool) -> Option<FromBus> {
        let reply = m.reply?;
        let text = std::str::from_utf8(&m.payload).ok()?;
        let mut words = text.split(' ');
        let (name, token, asker) = (words.next()?, words.next()?, words.next()?);
        let mut pending = lock(&self.pending);
        if pending.len() >= MAX_TAKES {
            return None;
        }
        let request = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        pending.insert(request, (reply, by_name));
        Some(FromBus::Take {
            request,
            name: name.into(),
            token: token.into(),
            asker: asker.into(),
        })
    }
}

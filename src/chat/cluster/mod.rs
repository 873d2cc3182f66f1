//! The chat's side of a cluster: what this node asks of the cluster's log
//! and name registry, and what it does with their answers.
//!
//! In a cluster a command that changes shared state is not applied when it
//! is decided: its event is published to the log, and every node (this one
//! too) applies the log in one order. The sender's connection waits for
//! its own `LOGIN`, `JOIN` or `PART` to come back through the log before it
//! reads its next line, so what it decides next is decided against its own
//! effects; a `SAY` or `MSG` does not wait. A `LOGIN` first claims the name
//! in the registry, which answers at once for the whole cluster.
//!
//! Invariants: every stamp in `own` names one event published by this node
//! and not yet seen in the log or reported failed; every ticket in
//! `claims` one claim not yet answered; a connection has at most one of
//! either for a login.

mod handover;

use crate::auth::{Job, Secret};
use std::collections::HashMap;

use super::direct::conversation_name;
use super::event::{Event, Phc};
use super::history::{Message, Request};
use super::private::Private;
use super::resume::Ended;
use super::{Chat, ConnId, Outbox, Reply, Step};
use crate::protocol::reply::MessageId;
use crate::protocol::text::valid_name;
use crate::protocol::ProtocolError;
pub use handover::Taken;

/// An effect of the chat, carried out by the shell after the call.
#[derive(Debug)]
pub enum Effect {
    /// Work for the message store.
    Store(Request),
    /// Work for the cluster's bridge.
    Bus(BusRequest),
    /// Work for the password hasher.
    Hash(Job),
    /// Close this connection with `BYE replaced`: its user logged in
    /// again elsewhere with the password, and the chat has let it go.
    Replaced(ConnId),
}

/// Work for the cluster's bridge thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusRequest {
    /// Append an event to the log. `stamp` names it in this node's answers
    /// and, with the node's home, in the log; `room` picks the subject.
    /// A departure names its user in `release`: that claim is dropped
    /// first, and the event is retried until the log takes it.
    Publish {
        stamp: u64,
        room: Option<Box<str>>,
        payload: Vec<u8>,
        release: Option<Box<str>>,
    },
    /// Claim `name` for this node, answered under `ticket`.
    Claim { ticket: u64, name: Box<str> },
    /// Drop this node's claim on `name`.
    Release { name: Box<str> },
    /// Deliver a direct message to the node incarnation `home`.
    Dm { home: Box<str>, payload: Vec<u8> },
    /// `home` is silent past the timeout (or is this node, stopping): if
    /// no other node has already, say in the log that it is gone and drop
    /// its claims.
    Bury { home: Box<str> },
    /// Ask the node incarnation `at` (or, with `None`, whichever node
    /// holds it) to hand over the session of `name` for a `RESUME` with
    /// `token`, answered under `ticket`. A session handed over moves its
    /// name's claim to this node.
    Take {
        ticket: u64,
        name: Box<str>,
        token: Box<str>,
        at: Option<Box<str>>,
    },
    /// This node's answer to take request `request` for `name`.
    Answer {
        request: u64,
        name: Box<str>,
        taken: Taken,
    },
}

/// The registry's answer to a name claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The name is this node's now.
    Won,
    /// Someone holds it.
    Taken,
    /// The registry could not be reached.
    Unavailable,
}

/// An event this node published, awaiting its turn in the log.
#[derive(Debug)]
enum Own {
    /// A login (or the resume of an ended session) whose name was won.
    Login(Login),
    /// A `JOIN` or `PART` whose connection waits for it.
    Seat { conn: ConnId, serial: u64 },
    /// A `SAY` whose sender hears `SENT` after the commit; a tagged one
    /// is remembered under its tag once it has its id.
    Say {
        conn: ConnId,
        serial: u64,
        tagged: Option<Tagged>,
    },
    /// A lobby `MSG`: its sender hears only of a failure.
    Msg { conn: ConnId, serial: u64 },
    /// A departure, or a rejoin after a resume: nobody waits for it.
    Quiet,
}

/// A tagged `SAY` on its way through the log: who said it, under which tag.
#[derive(Debug)]
struct Tagged {
    name: Box<str>,
    tag: Box<str>,
}

/// A login on its way: the name claimed, then (for a `REGISTER`) the
/// account in the log and the store, then its arrival in the log.
#[derive(Debug)]
pub(in crate::chat) struct Login {
    conn: ConnId,
    name: Box<str>,
    /// The session a `RESUME` takes back.
    resumed: Option<Ended>,
    /// The password hash of an account this login makes, until it is
    /// published.
    account: Option<Secret>,
    /// The connection left before the login was through.
    abandoned: bool,
}

/// This node in a cluster.
#[derive(Debug)]
pub struct Cluster {
    /// This node incarnation's name in the log and the registry.
    home: Box<str>,
    next_stamp: u64,
    own: HashMap<u64, Own>,
    next_ticket: u64,
    claims: HashMap<u64, Login>,
    /// `RESUME`s asking another node for a session, by ticket.
    takes: HashMap<u64, Login>,
    /// Sessions handed over by another node, awaiting their move through
    /// the log, by lower-cased name.
    moving: HashMap<Box<str>, Login>,
    /// Sessions whose move came through the log before the answer to
    /// their take, by its ticket: the answer brings their tags. The bridge
    /// answers every take, if only with a timeout, so none stays long.
    moved_early: HashMap<u64, (ConnId, Box<str>)>,
    /// Registrations applied from the log, awaiting the store's commit of
    /// their account, by the store's ticket.
    registering: HashMap<u64, Login>,
    requests: Vec<BusRequest>,
    /// Room messages up to this id are in the store already: a restarted
    /// node replays them from the log without storing them twice.
    stored_through: MessageId,
}

impl Cluster {
    /// This node as the incarnation `home`, whose store holds every
    /// message up to `stored_through`.
    pub fn new(home: &str, stored_through: MessageId) -> Cluster {
        Cluster {
            home: home.into(),
            next_stamp: 1,
            own: HashMap::new(),
            next_ticket: 1,
            claims: HashMap::new(),
            takes: HashMap::new(),
            moving: HashMap::new(),
            registering: HashMap::new(),
            moved_early: HashMap::new(),
            requests: Vec::new(),
            stored_through,
        }
    }

    /// This node incarnation's name.
    pub fn home(&self) -> &str {
        &self.home
    }

    fn publish(&mut self, event: &Event<'_>, own: Own, release: Option<Box<str>>) {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        let room = match *event {
            Event::Entered { room, .. }
            | Event::Left { room, .. }
            | Event::Said { room, .. }
            | Event::Created { room, .. }
            | Event::Invited { room, .. }
            | Event::Removed { room, .. } => Some(room.into()),
            _ => None,
        };
        let mut payload = Vec::with_capacity(64);
        event.encode(&mut payload);
        self.requests.push(BusRequest::Publish {
            stamp,
            room,
            payload,
            release,
        });
        self.own.insert(stamp, own);
    }

    fn claim(&mut self, login: Login) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.requests.push(BusRequest::Claim {
            ticket,
            name: login.name.clone(),
        });
        self.claims.insert(ticket, login);
    }

    /// Publishes the arrival of `login`, whose name is won (and account
    /// stored); it is logged in when the arrival comes back.
    fn arrive(&mut self, login: Login) {
        let arrived = Event::Arrived {
            name: &login.name,
            home: &self.home,
        };
        let mut payload = Vec::new();
        arrived.encode(&mut payload);
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.requests.push(BusRequest::Publish {
            stamp,
            room: None,
            payload,
            release: None,
        });
        self.own.insert(stamp, Own::Login(login));
    }

    /// Bridge work asked for since the last call, in order.
    pub fn take_requests(&mut self) -> impl Iterator<Item = BusRequest> + '_ {
        self.requests.drain(..)
    }

    /// Every login in progress, at whatever step.
    fn logins_mut(&mut self) -> impl Iterator<Item = &mut Login> {
        let own = self.own.values_mut().filter_map(|o| match o {
            Own::Login(login) => Some(login),
            _ => None,
        });
        self.claims
            .values_mut()
            .chain(self.takes.values_mut())
            .chain(self.moving.values_mut())
            .chain(self.registering.values_mut())
            .chain(own)
    }

    /// Marks the logins of `conn` in progress as abandoned: it is gone.
    fn abandon(&mut self, conn: ConnId) {
        for login in self.logins_mut().filter(|l| l.conn == conn) {
            login.abandoned = true;
        }
    }
}

/// A direct message between nodes: `<to> <from> <text>`.
pub fn encode_dm(to: &str, from: &str, text: &str) -> Vec<u8> {
    let mut payload = Vec::with_capacity(to.len() + from.len() + text.len() + 2);
    for (i, part) in [to, from, text].into_iter().enumerate() {
        if i > 0 {
            payload.push(b' ');
        }
        payload.extend_from_slice(part.as_bytes());
    }
    payload
}

impl Chat {
    /// Makes this chat a node of a cluster, as the incarnation `home`,
    /// whose store holds the log's room messages up to `stored_through`:
    /// from now on shared state changes only through [`Chat::on_logged`],
    /// and message ids are the log's sequence numbers.
    pub fn join_cluster(&mut self, home: &str, stored_through: MessageId) {
        self.journal.restart_at(stored_through);
        // Rebuilt from the log, so each JOIN in it is judged against the
        // members of its moment.
        self.private = Private::default();
        self.cluster = Some(Cluster::new(home, stored_through));
    }

    /// Makes this node the new incarnation `home`: the cluster declared
    /// the old one dead (its users were closed, its claims dropped), and a
    /// node that goes on serving must not be mistaken for it.
    pub fn rehome(&mut self, home: &str) {
        if let Some(cluster) = self.cluster.as_mut() {
            let stored_through = cluster.stored_through;
            let requests = std::mem::take(&mut cluster.requests);
            // Answers to the old incarnation's claims may still come: its
            // tickets must not be mistaken for new ones.
            let next_ticket = cluster.next_ticket;
            *cluster = Cluster::new(home, stored_through);
            cluster.requests = requests;
            cluster.next_ticket = next_ticket;
        }
    }

    /// The last entry of the log applied here.
    pub fn last_applied(&self) -> MessageId {
        self.journal.last_id()
    }

    /// In a cluster, publishes `event` (its effects come back through the
    /// log) and returns true; on a single node returns false, and the
    /// caller applies it.
    pub(super) fn publish(&mut self, event: &Event<'_>, own: OwnKind<'_>) -> bool {
        let Some(cluster) = self.cluster.as_mut() else {
            return false;
        };
        let own = match own {
            OwnKind::Seat(conn, serial) => Own::Seat { conn, serial },
            OwnKind::Say(conn, serial, tag) => {
                let from = match *event {
                    Event::Said { from, .. } | Event::Direct { from, .. } => from,
                    _ => "",
                };
                let tagged = tag.map(|tag| Tagged {
                    name: from.into(),
                    tag: tag.into(),
                });
                Own::Say {
                    conn,
                    serial,
                    tagged,
                }
            }
            OwnKind::Msg(conn, serial) => Own::Msg { conn, serial },
            OwnKind::Quiet => Own::Quiet,
        };
        cluster.publish(event, own, None);
        true
    }

    /// In a cluster, true if `name`'s `SAY` tagged `tag` is on its way
    /// through the log: its `SENT` goes to `conn` (login `serial`), which
    /// resent it, and nothing is said again.
    pub(super) fn saying(&mut self, name: &str, tag: &str, (conn, serial): (ConnId, u64)) -> bool {
        let Some(cluster) = self.cluster.as_mut() else {
            return false;
        };
        for own in cluster.own.values_mut() {
            if let Own::Say {
                conn: c,
                serial: s,
                tagged: Some(t),
            } = own
            {
                if *t.tag == *tag && t.name.eq_ignore_ascii_case(name) {
                    (*c, *s) = (conn, serial);
                    return true;
                }
            }
        }
        false
    }

    /// The session that said a tagged `SAY` remembers its tag with its id,
    /// wherever the session is now: on a connection (maybe another one,
    /// after a resume), ended, or being resumed here.
    fn remember_tag(&mut self, tagged: Option<Tagged>, room: &str, id: MessageId) {
        let Some(Tagged { name, tag }) = tagged else {
            return;
        };
        if let Some(conn) = self.users.find(&name) {
            self.users.tag(conn, &tag, room, id);
        }
        self.ended.tag(&name, &tag, room, id);
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let resuming = cluster
            .logins_mut()
            .filter(|l| l.name.eq_ignore_ascii_case(&name))
            .filter_map(|l| l.resumed.as_mut());
        for ended in resuming {
            ended.tags.push(&tag, room, id);
        }
    }

    /// In a cluster, asks the registry for `name` on behalf of `conn`
    /// (resuming `resumed`, if given).
    pub(super) fn claim(&mut self, conn: ConnId, name: &str, resumed: Option<Ended>) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.claim(Login {
                conn,
                name: name.into(),
                resumed,
                account: None,
                abandoned: false,
            });
        }
    }

    /// True when `name` is this node's own user, departing through the
    /// log (known by name until the log has its departure).
    pub(super) fn departing_here(&self, name: &str) -> bool {
        let here = self.cluster.as_ref().map(Cluster::home);
        here.is_some() && self.users.home_of(name) == here
    }

    /// In a cluster, lets the departed `conn` go: its logins in progress
    /// are abandoned, and a logged-in user stays known by name until its
    /// departure, published now, comes back through the log. Returns
    /// false on a single node.
    pub(super) fn depart_through_log(&mut self, conn: ConnId) -> bool {
        let Some(cluster) = self.cluster.as_mut() else {
            return false;
        };
        cluster.abandon(conn);
        if let Some(name) = self.users.detach(conn, &cluster.home) {
            self.rooms.detach(conn, &name);
            let release = Some(name.clone());
            cluster.publish(&Event::Departed { name: &name }, Own::Quiet, release);
        }
        true
    }

    /// In a cluster, sends a `DM` to `to`, a user on another node; false
    /// if no such user is known.
    pub(super) fn dm_remote(&mut self, to: &str, from: &str, text: &str) -> bool {
        let (Some(cluster), Some(home)) = (self.cluster.as_mut(), self.users.home_of(to)) else {
            return false;
        };
        cluster.requests.push(BusRequest::Dm {
            home: home.into(),
            payload: encode_dm(to, from, text),
        });
        true
    }

    /// Delivers a direct message another node sent to a user here, if the
    /// user is still here; a malformed one is dropped.
    pub fn on_dm(&mut self, payload: &[u8], out: &mut impl Outbox) {
        let Some((to, from, text)) = std::str::from_utf8(payload).ok().and_then(|p| {
            let (to, rest) = p.split_once(' ')?;
            let (from, text) = rest.split_once(' ')?;
            (valid_name(from) && !text.is_empty()).then_some((to, from, text))
        }) else {
            return;
        };
        if let Some(target) = self.users.find(to) {
            self.reply(target, Reply::Dm { from, text }, out);
        }
    }

    /// Carries out the registry's answer to claim `ticket` on `name`.
    /// Returns the connection whose wait is over and what it now is.
    pub fn on_claimed(
        &mut self,
        ticket: u64,
        name: &str,
        claim: Claim,
        out: &mut impl Outbox,
    ) -> Option<(ConnId, Step)> {
        let cluster = self.cluster.as_mut()?;
        let Some(mut login) = cluster.claims.remove(&ticket) else {
            // Not asked for: never keep a name nobody will use.
            if claim == Claim::Won {
                cluster
                    .requests
                    .push(BusRequest::Release { name: name.into() });
            }
            return None;
        };
        if login.account.is_some() {
            // The registry holds the name for the rest of the registration.
            self.accounts.unreserve(&login.name);
        }
        let cluster = self.cluster.as_mut()?;
        match claim {
            Claim::Won if login.abandoned => {
                cluster
                    .requests
                    .push(BusRequest::Release { name: login.name });
                None
            }
            Claim::Won => {
                match login.account.take() {
                    Some(hash) => {
                        let name = login.name.clone();
                        let registered = Event::Registered {
                            name: &name,
                            hash: Phc(hash.expose()),
                        };
                        cluster.publish(&registered, Own::Login(login), None);
                    }
                    None => cluster.arrive(login),
                }
                None
            }
            Claim::Taken | Claim::Unavailable if login.abandoned => None,
            Claim::Taken | Claim::Unavailable => {
                let error = match (claim, &login.resumed) {
                    (Claim::Taken, None) => ProtocolError::UsernameTaken,
                    (Claim::Taken, Some(_)) => ProtocolError::BadToken,
                    _ => ProtocolError::ClusterUnavailable,
                };
                self.reply(login.conn, Reply::Err(error), out);
                Some((login.conn, Step::Continue))
            }
        }
    }

    /// The log could not take the event published under `stamp`: its
    /// sender hears an error. Returns the connection whose wait is over.
    pub fn on_unpublished(&mut self, stamp: u64, out: &mut impl Outbox) -> Option<(ConnId, Step)> {
        let cluster = self.cluster.as_mut()?;
        let (conn, serial, error) = match cluster.own.remove(&stamp)? {
            Own::Login(login) => {
                cluster.requests.push(BusRequest::Release {
                    name: login.name.clone(),
                });
                if login.abandoned {
                    return None;
                }
                self.reply(
                    login.conn,
                    Reply::Err(ProtocolError::ClusterUnavailable),
                    out,
                );
                return Some((login.conn, Step::Continue));
            }
            Own::Seat { conn, serial } | Own::Msg { conn, serial } => {
                (conn, serial, ProtocolError::ClusterUnavailable)
            }
            Own::Say { conn, serial, .. } => (conn, serial, ProtocolError::StorageUnavailable),
            Own::Quiet => return None,
        };
        if self.users.serial(conn) != Some(serial) {
            return None;
        }
        self.reply(conn, Reply::Err(error), out);
        Some((conn, Step::Continue))
    }

    /// Applies entry `seq` of the cluster's log, published by the node
    /// incarnation `origin` under its stamp. Returns the connection whose
    /// wait is over (its own event came back) and what it now is.
    pub fn on_logged(
        &mut self,
        seq: MessageId,
        origin: Option<(&str, u64)>,
        event: Event<'_>,
        out: &mut impl Outbox,
    ) -> Option<(ConnId, Step)> {
        let cluster = self.cluster.as_mut()?;
        self.journal.observe(seq);
        let own = match origin {
            Some((home, stamp)) if home == &*cluster.home => cluster.own.remove(&stamp),
            _ => None,
        };
        let mine = origin.is_some_and(|(home, _)| home == &*cluster.home);
        match (event, own) {
            (Event::Moved { name, home }, _) if home == &*cluster.home => {
                self.moved_here(name, event, out)
            }
            (Event::Arrived { .. }, Some(Own::Login(login))) if !login.abandoned => {
                self.logged_in(login, event, out)
            }
            (Event::Arrived { name, .. }, _) if mine && self.users.find(name).is_none() => {
                // Ours, but nobody waits for it (the connection left, or
                // the publish was reported failed yet went through): it
                // arrives, and departs at once.
                self.apply(event, out);
                let cluster = self.cluster.as_mut()?;
                let release = Some(Box::from(name));
                cluster.publish(&Event::Departed { name }, Own::Quiet, release);
                None
            }
            (Event::Registered { name, hash }, Some(Own::Login(login))) => {
                self.own_registration(login, (name, hash), seq, out)
            }
            (event, own) if event.is_record() => {
                let fresh = seq > cluster.stored_through;
                let asker = match own {
                    Some(Own::Seat { conn, serial }) => Some((conn, serial)),
                    Some(Own::Say {
                        conn,
                        serial,
                        tagged,
                    }) => {
                        if let Event::Direct { to, .. } = event {
                            self.remember_tag(tagged, &conversation_name(to), seq);
                        }
                        Some((conn, serial))
                    }
                    _ => None,
                };
                let released = self.record(event, asker, fresh, out);
                if fresh {
                    self.journal.applied(seq);
                }
                released
            }
            (
                Event::Said {
                    room,
                    id,
                    ms,
                    from,
                    text,
                },
                own,
            ) => {
                self.apply(event, out);
                let sender = match own {
                    Some(Own::Say {
                        conn,
                        serial,
                        tagged,
                    }) => {
                        self.remember_tag(tagged, room, id);
                        Some((conn, serial))
                    }
                    _ => None,
                };
                let message = Message {
                    id,
                    ms,
                    from: from.into(),
                    text: text.into(),
                };
                let stored = self.cluster.as_ref()?.stored_through;
                if id > stored {
                    self.journal.append(sender, room, message);
                } else if let Some(r) = self.rooms.find(room) {
                    // Replayed after a restart: the store has it already.
                    self.history.push(self.rooms.log(r), message);
                }
                None
            }
            (event, Some(Own::Seat { conn, serial })) => {
                // A room made invite-only since the JOIN was decided.
                let refused = matches!(event, Event::Entered { room, name }
                    if !self.private.admits(room, name));
                self.apply(event, out);
                if self.users.serial(conn) != Some(serial) {
                    return None;
                }
                if refused {
                    self.reply(conn, Reply::Err(ProtocolError::NotInvited), out);
                }
                Some((conn, Step::Continue))
            }
            (event, _) => {
                self.apply(event, out);
                None
            }
        }
    }

    /// A login (or resume) came back through the log: the connection is
    /// its user now, and everyone else hears of the arrival.
    fn logged_in(
        &mut self,
        login: Login,
        event: Event<'_>,
        out: &mut impl Outbox,
    ) -> Option<(ConnId, Step)> {
        let Login {
            conn,
            name,
            resumed,
            ..
        } = login;
        if !self.users.insert(conn, &name) {
            // The registry said the name was free; the log disagrees. Let
            // the log win, and give the claim back.
            debug_assert!(false, "{name} arrived twice");
            self.reply(conn, Reply::Err(ProtocolError::UsernameTaken), out);
            let cluster = self.cluster.as_mut()?;
            cluster.requests.push(BusRequest::Release { name });
            return Some((conn, Step::Continue));
        }
        self.ended.forget(&name);
        self.reply(conn, Reply::Ok, out);
        self.apply(event, out);
        let Some(ended) = resumed else {
            // A registered user hears of unread conversations first.
            return self.logged_in_step(conn);
        };
        self.users.set_token(conn, ended.token);
        self.users.set_tags(conn, ended.tags);
        for room in &ended.rooms {
            let entered = Event::Entered { room, name: &name };
            self.publish(&entered, OwnKind::Quiet);
        }
        Some((conn, Step::LoggedIn))
    }

    /// In a cluster, a new account (`new`) or password goes through the
    /// log: a new account's name is claimed first, as a login's is.
    pub(in crate::chat) fn share_account(
        &mut self,
        conn: Option<ConnId>,
        name: Box<str>,
        hash: Secret,
        new: bool,
    ) {
        let asker = conn.and_then(|c| Some((c, self.users.serial(c)?)));
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if !new {
            let own = match asker {
                Some((conn, serial)) => Own::Seat { conn, serial },
                None => Own::Quiet,
            };
            let rekeyed = Event::Rekeyed {
                name: &name,
                hash: Phc(hash.expose()),
            };
            cluster.publish(&rekeyed, own, None);
            return;
        }
        match conn {
            Some(conn) => cluster.claim(Login {
                conn,
                name,
                resumed: None,
                account: Some(hash),
                abandoned: false,
            }),
            None => self.accounts.unreserve(&name),
        }
    }

    /// This node's registration came back through the log: the account
    /// is made and stored, unless an earlier entry made the name one.
    fn own_registration(
        &mut self,
        login: Login,
        (name, hash): (&str, Phc<'_>),
        seq: MessageId,
        out: &mut impl Outbox,
    ) -> Option<(ConnId, Step)> {
        if self.accounts.is_registered(name) {
            let cluster = self.cluster.as_mut()?;
            cluster
                .requests
                .push(BusRequest::Release { name: login.name });
            if login.abandoned {
                return None;
            }
            self.reply(login.conn, Reply::Err(ProtocolError::UsernameTaken), out);
            return Some((login.conn, Step::Continue));
        }
        // Every node makes the account, whoever still waits for it here.
        let ticket = self.keep_account(None, name, hash, (true, true));
        self.journal.applied(seq);
        let cluster = self.cluster.as_mut()?;
        if login.abandoned {
            cluster
                .requests
                .push(BusRequest::Release { name: login.name });
            return None;
        }
        cluster.registering.insert(ticket?, login);
        None
    }

    /// The registration the store's account write `ticket` is for, if it
    /// is one of this node's in a cluster.
    pub(in crate::chat) fn registered(&mut self, ticket: u64) -> Option<Login> {
        self.cluster.as_mut()?.registering.remove(&ticket)
    }

    /// A registration's account is stored (or failed to be): the user
    /// arrives through the log, or hears why not.
    pub(in crate::chat) fn registration_stored(
        &mut self,
        login: Login,
        saved: bool,
        out: &mut impl Outbox,
    ) -> Option<(ConnId, Step)> {
        let cluster = self.cluster.as_mut()?;
        if saved && !login.abandoned {
            cluster.arrive(login);
            return None;
        }
        cluster
            .requests
            .push(BusRequest::Release { name: login.name });
        if login.abandoned {
            return None;
        }
        self.reply(
            login.conn,
            Reply::Err(ProtocolError::StorageUnavailable),
            out,
        );
        Some((login.conn, Step::Continue))
    }
}

/// Who waits for an event published from a decision.
#[derive(Debug, Clone, Copy)]
pub(super) enum OwnKind<'a> {
    /// `conn` (login `serial`) reads again once it is applied.
    Seat(ConnId, u64),
    /// `conn` (login `serial`) hears `SENT` once it is committed; the
    /// `SAY`'s tag, if it had one.
    Say(ConnId, u64, Option<&'a str>),
    /// `conn` (login `serial`) hears only of a failure.
    Msg(ConnId, u64),
    /// Nobody.
    Quiet,
}

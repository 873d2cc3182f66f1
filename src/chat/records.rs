//! Records: the shared state beyond presence and room messages, that is,
//! accounts, direct messages, read marks and invite-only memberships.
//!
//! Each change is an [`Event`], applied alike by a single server right
//! after deciding it and by every node of a cluster from its log, so the
//! nodes agree on who has an account and who may enter which room. What
//! differs is only who asked (answered here, on the node that asked) and
//! whether the store has the change already: a restarted node replays its
//! log from the start, and stores again only what it had not (`fresh`).
//! Memberships are rebuilt by that replay, so a `JOIN` in the log is
//! judged against the members of its moment; accounts, which only grow,
//! are loaded from the store and replayed past it.

use super::accounts::Saving;
use super::cluster::OwnKind;
use super::event::{Event, Phc};
use super::{Chat, ConnId, Outbox, Step};
use crate::auth::Secret;

impl Chat {
    /// Shares `event`, decided for `id`: a single server applies it at
    /// once and returns `id`'s next step; a cluster publishes it, and `id`
    /// waits for it to come back through the log (`None`).
    pub(super) fn share(
        &mut self,
        event: Event<'_>,
        id: ConnId,
        out: &mut impl Outbox,
    ) -> Option<(ConnId, Step)> {
        let serial = self.users.serial(id).unwrap_or_default();
        if self.publish(&event, OwnKind::Seat(id, serial)) {
            return None;
        }
        self.record(event, Some((id, serial)), true, out)
    }

    /// [`Chat::share`] for a command: what `id` does next.
    pub(super) fn share_step(
        &mut self,
        event: Event<'_>,
        id: ConnId,
        out: &mut impl Outbox,
    ) -> Step {
        self.share(event, id, out)
            .map_or(Step::Wait, |(_, step)| step)
    }

    /// Applies the record `event`, which `asker` (a connection and its
    /// login serial) decided, if it did; stores it if `fresh`. Returns the
    /// asker's connection if its wait is over, and what it is now.
    pub(super) fn record(
        &mut self,
        event: Event<'_>,
        asker: Option<(ConnId, u64)>,
        fresh: bool,
        out: &mut impl Outbox,
    ) -> Option<(ConnId, Step)> {
        // An answer is for the login that asked, not a later one.
        let asker = asker.filter(|&(conn, serial)| self.users.serial(conn) == Some(serial));
        let conn = asker.map(|(conn, _)| conn);
        match event {
            Event::Registered { name, hash } => {
                if !self.accounts.is_registered(name) {
                    self.keep_account(None, name, hash, (true, fresh));
                }
                None
            }
            // The store had the newest password when this node started.
            Event::Rekeyed { name, hash } if fresh => {
                self.keep_account(conn, name, hash, (false, true));
                None
            }
            Event::Rekeyed { .. } => None,
            Event::Direct {
                from,
                to,
                id,
                ms,
                text,
            } => {
                self.direct((from, to, id, ms, text), asker, fresh, out);
                None
            }
            Event::Read { name, peer, id } => {
                if fresh {
                    self.journal.read(name, peer, id);
                }
                None
            }
            Event::Created { room, owner } => self.created((room, owner), conn, fresh, out),
            Event::Invited { room, name, by } => self.invited((room, name, by), conn, fresh, out),
            Event::Removed { room, name } => self.removed((room, name), conn, fresh, out),
            presence => {
                self.apply(presence, out);
                None
            }
        }
    }

    /// Makes `name` an account with the password `hash` (`new`), or gives
    /// it that password, as the log says; if `stored`, the store is told,
    /// and `conn` hears `OK` once it has committed. Returns the store's
    /// ticket for the write.
    pub(super) fn keep_account(
        &mut self,
        conn: Option<ConnId>,
        name: &str,
        hash: Phc<'_>,
        (new, stored): (bool, bool),
    ) -> Option<u64> {
        let hash = Secret::new(hash.0);
        self.accounts.record(name, hash.clone());
        if !stored {
            return None;
        }
        let ticket = self.accounts.saving(Saving {
            conn,
            name: name.into(),
            hash: None,
            new,
        });
        self.journal.save_account(ticket, name.into(), hash);
        Some(ticket)
    }
}

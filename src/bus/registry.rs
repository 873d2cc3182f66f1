//! The cluster's registry in NATS key-value buckets: names claimed by the
//! node a user is logged in on (`<prefix>-names`: the folded name, the
//! node incarnation's name as value), and burials of dead nodes
//! (`<prefix>-nodes`: `gone.<incarnation>`, created by the one survivor
//! that buries it). A burial mark is what makes a dead node's claims
//! void, whoever reads them.

use std::collections::HashMap;
use std::sync::Mutex;

use async_nats::jetstream::context::Context;
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation};
use bytes::Bytes;
use futures_util::StreamExt;
use log::{debug, info, warn};

use super::bridge::{lock, Publish};
use crate::chat::cluster::Claim;
use crate::chat::event::Event;

/// The registry key of a name: names are one in any case.
pub(super) fn name_key(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// Claims `name` for `home`: its revision, or why not. A create that
/// fails because a delete landed in between is tried again, not taken
/// for a name in use; the claim of a node buried (its users departed) is
/// void, and dropped here if its burier has not yet.
pub(super) async fn claim(
    (names, nodes): (&kv::Store, &kv::Store),
    name: &str,
    home: &str,
) -> Result<u64, Claim> {
    let key = name_key(name);
    for _ in 0..3 {
        match names
            .create(&key, Bytes::copy_from_slice(home.as_bytes()))
            .await
        {
            Ok(revision) => return Ok(revision),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                match names.entry(key.clone()).await {
                    Ok(Some(entry)) if entry.operation == Operation::Put => {
                        let holder = String::from_utf8_lossy(&entry.value);
                        if !matches!(nodes.get(format!("gone.{holder}")).await, Ok(Some(_))) {
                            return Err(Claim::Taken);
                        }
                        let stale = Some(entry.revision);
                        let _ = names.delete_expect_revision(&key, stale).await;
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        warn!("cluster: cannot read the claim on {name}: {e}");
                        return Err(Claim::Unavailable);
                    }
                }
            }
            Err(e) => {
                warn!("cluster: cannot claim {name}: {e}");
                return Err(Claim::Unavailable);
            }
        }
    }
    Err(Claim::Taken)
}

/// Drops this node's claim on `name`, if it holds one.
pub(super) async fn release_name(
    names: &kv::Store,
    revisions: &Mutex<HashMap<Box<str>, u64>>,
    name: &str,
) {
    let Some(revision) = lock(revisions).remove(name) else {
        return;
    };
    if let Err(e) = names
        .delete_expect_revision(name_key(name), Some(revision))
        .await
    {
        // Taken over meanwhile (a burial after a cut-off): not ours to drop.
        debug!("cluster: the claim on {name} was not released: {e}");
    }
}

/// The burial of a dead node incarnation.
pub(super) struct Burial {
    pub(super) js: Context,
    pub(super) names: kv::Store,
    pub(super) nodes: kv::Store,
    /// The lobby's subject, where `Gone` goes.
    pub(super) subject: String,
    /// This node incarnation, the would-be gravedigger.
    pub(super) by: Box<str>,
}

impl Burial {
    /// If no other node has, says in the log that `home` is gone (its
    /// users depart on every node) and drops its names' claims.
    pub(super) async fn bury(&self, home: &str) {
        let key = format!("gone.{home}");
        match self
            .nodes
            .create(&key, Bytes::copy_from_slice(self.by.as_bytes()))
            .await
        {
            Ok(_) => {}
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => return,
            Err(e) => {
                warn!("cluster: cannot bury {home}: {e}");
                return;
            }
        }
        info!("cluster: node {home} is gone; its users depart");
        let mut payload = Vec::new();
        Event::Gone { home }.encode(&mut payload);
        let gone = Publish {
            js: self.js.clone(),
            subject: self.subject.clone(),
            id: format!("bury.{home}"),
            payload: payload.into(),
        };
        if !gone.taken().await {
            gone.until_taken().await;
        }
        let Ok(mut keys) = self.names.keys().await else {
            warn!("cluster: cannot list the names {home} held");
            return;
        };
        let mut held = Vec::new();
        while let Some(Ok(key)) = keys.next().await {
            held.push(key);
        }
        for key in held {
            if let Ok(Some(entry)) = self.names.entry(key.clone()).await {
                if entry.operation == Operation::Put && entry.value.as_ref() == home.as_bytes() {
                    let _ = self
                        .names
                        .delete_expect_revision(&key, Some(entry.revision))
                        .await;
                }
            }
        }
    }
}

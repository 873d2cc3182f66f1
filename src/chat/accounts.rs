//! Registered names: which names have an account (and its password hash),
//! the password jobs out with the hasher, and the limiter on failed logins.
//!
//! Pure: the chat asks here, hands the [`Job`]s on through its effects, and
//! comes back with the hasher's [`Verdict`]s and the store's answers. A
//! name being registered is reserved until its account is stored, so two
//! `REGISTER`s of one name cannot both win. Every map here is bounded: the
//! accounts by what the store holds, the jobs by [`MAX_IN_FLIGHT`], the
//! limiter by [`TRACKED`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::name::{Folded, NameKey};
use super::ConnId;
use crate::auth::{Job, Secret, MAX_IN_FLIGHT};

/// The shortest password taken.
pub const MIN_PASSWORD: usize = 8;
/// Failed logins (per name, or per address) before attempts are spaced.
const FREE_FAILURES: u32 = 3;
/// The longest wait a run of failures imposes.
const MAX_DELAY: Duration = Duration::from_secs(300);
/// Names and addresses the limiter remembers at once, each.
pub const TRACKED: usize = 10_000;

/// Whether guests (names without an account) may log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Anyone may take a free name that has no account.
    #[default]
    Optional,
    /// Only registered names log in.
    Required,
}

/// A password job, and the connection waiting on it (`None` once that
/// connection has gone: its slot may belong to someone else by then).
#[derive(Debug)]
pub struct Pending {
    pub conn: Option<ConnId>,
    pub work: Work,
}

/// What a password job is for.
#[derive(Debug)]
pub enum Work {
    /// `REGISTER`: hash the password, then store the account.
    Register { name: Box<str> },
    /// `LOGIN` with a password: verify it.
    Login {
        name: Box<str>,
        from: Option<IpAddr>,
    },
    /// `PASSWORD`, first step: verify the old one; `new` is hashed next.
    CheckOld { name: Box<str>, new: Secret },
    /// `PASSWORD`, second step: the new hash, to store.
    HashNew { name: Box<str> },
}

/// An account write the store has not acknowledged yet.
#[derive(Debug)]
pub struct Saving {
    pub conn: Option<ConnId>,
    pub name: Box<str>,
    /// The hash that counts once committed; `None` when it counts already
    /// (a cluster applies an account from its log before storing it).
    pub hash: Option<Secret>,
    /// True for a new account (`REGISTER`), false for a changed password.
    pub new: bool,
}

/// The registered names and the work under way on them.
#[derive(Debug, Default)]
pub struct Accounts {
    policy: Policy,
    /// Every account's PHC hash, by name.
    hashes: HashMap<NameKey, Secret>,
    /// Where each connection comes from, for the limiter.
    addresses: HashMap<ConnId, IpAddr>,
    /// Names being registered (by which connection): taken for everyone.
    reserved: HashMap<NameKey, ConnId>,
    /// Password jobs out with the hasher.
    pending: HashMap<u64, Pending>,
    /// Account writes out with the store.
    saving: HashMap<u64, Saving>,
    next_ticket: u64,
    /// Jobs for the hasher, taken by the shell each turn.
    jobs: Vec<Job>,
    failed_names: Limiter<NameKey>,
    failed_addresses: Limiter<IpAddr>,
    registrations: Allowance,
}

impl Accounts {
    /// The accounts the store holds, as `(name, hash)` pairs; each address
    /// may register `per_hour` names an hour (0: any number).
    pub fn new(policy: Policy, stored: Vec<(Box<str>, Secret)>, per_hour: u32) -> Accounts {
        let hashes = stored
            .into_iter()
            .map(|(name, hash): (Box<str>, Secret)| (NameKey::new(&name), hash))
            .collect();
        Accounts {
            policy,
            hashes,
            registrations: Allowance::per_hour(per_hour),
            ..Accounts::default()
        }
    }

    /// Takes one registration from `from`'s allowance, if it has one left
    /// at `now`.
    pub fn may_register(&mut self, from: Option<IpAddr>, now: Instant) -> bool {
        from.is_none_or(|ip| self.registrations.take(ip, now))
    }

    /// Whether guests may log in.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Accounts held.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// True when no account exists.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// True if `name` has an account.
    pub fn is_registered(&self, name: &str) -> bool {
        self.hashes.contains_key(Folded::new(name))
    }

    /// True if `name` is being registered.
    pub fn is_reserved(&self, name: &str) -> bool {
        self.reserved.contains_key(Folded::new(name))
    }

    /// The stored hash of `name`'s password.
    pub fn hash(&self, name: &str) -> Option<&Secret> {
        self.hashes.get(Folded::new(name))
    }

    /// Connection `id` comes from `from`. An IPv6 address counts with its
    /// /64, as `--max-per-ip` counts it: one host holds a whole /64.
    pub fn connected(&mut self, id: ConnId, from: IpAddr) {
        let from = match from {
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
            v4 => v4,
        };
        self.addresses.insert(id, from);
    }

    /// Where connection `id` comes from, if the shell said.
    pub fn address(&self, id: ConnId) -> Option<IpAddr> {
        self.addresses.get(&id).copied()
    }

    /// Where `conn` came from, if it is still there.
    pub fn address_of(&self, conn: Option<ConnId>) -> Option<IpAddr> {
        conn.and_then(|id| self.address(id))
    }

    /// True while a password of `name` is being checked.
    pub fn checking(&self, name: &str) -> bool {
        let name = Folded::new(name);
        self.pending.values().any(|p| match &p.work {
            Work::Login { name: n, .. } | Work::CheckOld { name: n, .. } => Folded::new(n) == name,
            Work::Register { .. } | Work::HashNew { .. } => false,
        })
    }

    /// Accounts held or being made: what `--max-accounts` counts.
    pub fn counted(&self) -> usize {
        self.hashes.len() + self.reserved.len()
    }

    /// True when the hasher has as much work as it may.
    pub fn busy(&self) -> bool {
        self.pending.len() >= MAX_IN_FLIGHT
    }

    /// Sends `job` (made with the ticket it is given) for `conn`, and
    /// remembers why.
    pub fn submit(&mut self, conn: ConnId, work: Work, job: impl FnOnce(u64) -> Job) {
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        if let Work::Register { name } = &work {
            self.reserved.insert(NameKey::new(name), conn);
        }
        self.jobs.push(job(ticket));
        let conn = Some(conn);
        self.pending.insert(ticket, Pending { conn, work });
    }

    /// The job a verdict answers, no longer pending.
    pub fn answered(&mut self, ticket: u64) -> Option<Pending> {
        self.pending.remove(&ticket)
    }

    /// Jobs to hand to the hasher.
    pub fn take_jobs(&mut self) -> Vec<Job> {
        std::mem::take(&mut self.jobs)
    }

    /// Remembers an account write until the store answers; returns its ticket.
    pub fn saving(&mut self, saving: Saving) -> u64 {
        self.next_ticket += 1;
        self.saving.insert(self.next_ticket, saving);
        self.next_ticket
    }

    /// The store answered the account write `ticket`: on success the account
    /// (or its new password) counts from now on. The name's reservation
    /// ends either way.
    pub fn saved(&mut self, ticket: u64, ok: bool) -> Option<Saving> {
        let saving = self.saving.remove(&ticket)?;
        self.reserved.remove(Folded::new(&saving.name));
        if let (true, Some(hash)) = (ok, &saving.hash) {
            self.hashes.insert(NameKey::new(&saving.name), hash.clone());
        }
        Some(saving)
    }

    /// Makes `name` an account with the password `hash`, or gives it that
    /// password, at once: a cluster's log said so.
    pub fn record(&mut self, name: &str, hash: Secret) {
        self.hashes.insert(NameKey::new(name), hash);
    }

    /// A registration that will not be stored: the name is free again.
    pub fn unreserve(&mut self, name: &str) {
        self.reserved.remove(Folded::new(name));
    }

    /// `id` went away: what comes back for it later is for nobody (its
    /// slot may be reused). A name it was registering stays reserved until
    /// the work ends.
    pub fn forget_conn(&mut self, id: ConnId) {
        self.addresses.remove(&id);
        for pending in self.pending.values_mut() {
            if pending.conn == Some(id) {
                pending.conn = None;
            }
        }
        for saving in self.saving.values_mut() {
            if saving.conn == Some(id) {
                saving.conn = None;
            }
        }
    }

    /// True while failures keep `name`, or the address `from`, from trying
    /// a password now.
    pub fn blocked(&self, name: &str, from: Option<IpAddr>, now: Instant) -> bool {
        self.failed_names.blocked(Folded::new(name), now)
            || from.is_some_and(|ip| self.failed_addresses.blocked(&ip, now))
    }

    /// A password was wrong: spaces the next attempts.
    pub fn failed(&mut self, name: &str, from: Option<IpAddr>, now: Instant) {
        self.failed_names.failed(NameKey::new(name), now);
        if let Some(ip) = from {
            self.failed_addresses.failed(ip, now);
        }
    }

    /// A password was right: the name's failures are forgiven.
    pub fn succeeded(&mut self, name: &str) {
        self.failed_names.forget(Folded::new(name));
    }
}

/// Failed attempts per key: after [`FREE_FAILURES`], each failure closes
/// the key for twice as long as the last (1 s, 2 s, 4 s, ... up to
/// [`MAX_DELAY`]). At most [`TRACKED`] keys: when full, the key whose wait
/// ends first is forgotten, so memory stays bounded and what is forgotten
/// is what matters least.
#[derive(Debug)]
struct Limiter<K> {
    keys: HashMap<K, Strikes>,
}

#[derive(Debug, Clone, Copy)]
struct Strikes {
    failures: u32,
    until: Instant,
}

impl<K> Default for Limiter<K> {
    fn default() -> Self {
        Limiter {
            keys: HashMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq> Limiter<K> {
    fn blocked<Q>(&self, key: &Q, now: Instant) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.keys.get(key).is_some_and(|s| now < s.until)
    }

    fn failed(&mut self, key: K, now: Instant) {
        if self.keys.len() >= TRACKED && !self.keys.contains_key(&key) {
            self.keys.retain(|_, s| s.until > now);
            if self.keys.len() >= TRACKED {
                let first = self.keys.values().map(|s| s.until).min();
                self.keys.retain(|_, s| Some(s.until) != first);
            }
        }
        let strikes = self.keys.entry(key).or_insert(Strikes {
            failures: 0,
            until: now,
        });
        strikes.failures = strikes.failures.saturating_add(1);
        strikes.until = now + delay(strikes.failures);
    }

    fn forget<Q>(&mut self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.keys.remove(key);
    }
}

/// Registrations per address: a bucket of `per_hour` that fills again at
/// `per_hour` an hour, so an address can make a few accounts at once but
/// not fill the server's `--max-accounts` alone. At most [`TRACKED`]
/// addresses: a full bucket is the same as none, so those go first.
#[derive(Debug, Default)]
struct Allowance {
    /// 0: no limit.
    per_hour: u32,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl Allowance {
    fn per_hour(per_hour: u32) -> Allowance {
        Allowance {
            per_hour,
            buckets: HashMap::new(),
        }
    }

    /// The tokens `bucket` holds at `now`.
    fn level(&self, (tokens, since): (f64, Instant), now: Instant) -> f64 {
        let hours = now.saturating_duration_since(since).as_secs_f64() / 3600.0;
        (tokens + hours * f64::from(self.per_hour)).min(f64::from(self.per_hour))
    }

    fn take(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.per_hour == 0 {
            return true;
        }
        let full = f64::from(self.per_hour);
        let tokens = match self.buckets.get(&ip) {
            Some(&bucket) => self.level(bucket, now),
            None => full,
        };
        if tokens < 1.0 {
            return false;
        }
        if self.buckets.len() >= TRACKED && !self.buckets.contains_key(&ip) {
            let kept: HashMap<IpAddr, (f64, Instant)> = self
                .buckets
                .iter()
                .filter(|(_, &b)| self.level(b, now) < full)
                .map(|(&ip, &b)| (ip, b))
                .collect();
            self.buckets = kept;
            if self.buckets.len() >= TRACKED {
                return false;
            }
        }
        self.buckets.insert(ip, (tokens - 1.0, now));
        true
    }
}

/// How long the key is closed after its `failures`th failure in a row.
fn delay(failures: u32) -> Duration {
    match failures.checked_sub(FREE_FAILURES + 1) {
        None => Duration::ZERO,
        Some(n) => Duration::from_secs(1u64 << n.min(9)).min(MAX_DELAY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_after_the_free_ones_double_the_wait_up_to_five_minutes() {
        let waits: Vec<u64> = (1..=14).map(|n| delay(n).as_secs()).collect();
        assert_eq!(waits, [0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    }

    #[test]
    fn a_name_is_closed_after_its_failures_and_opened_by_a_success() {
        let mut a = Accounts::default();
        let t = Instant::now();
        for _ in 0..FREE_FAILURES {
            a.failed("Alice", None, t);
            assert!(!a.blocked("alice", None, t));
        }
        a.failed("alice", None, t);
        assert!(a.blocked("ALICE", None, t));
        assert!(!a.blocked("alice", None, t + Duration::from_secs(1)));
        assert!(!a.blocked("bob", None, t), "other names are open");
        a.succeeded("alice");
        assert!(!a.blocked("alice", None, t));
    }

    #[test]
    fn an_address_is_closed_across_names() {
        let mut a = Accounts::default();
        let t = Instant::now();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for i in 0..=FREE_FAILURES {
            a.failed(&format!("user{i}"), Some(ip), t);
        }
        assert!(a.blocked("someone", Some(ip), t));
        assert!(!a.blocked("someone", None, t));
    }

    #[test]
    fn an_address_registers_its_allowance_then_one_per_share_of_the_hour() {
        let mut a = Allowance::per_hour(3);
        let t = Instant::now();
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let other: IpAddr = "192.0.2.10".parse().unwrap();
        assert!((0..3).all(|_| a.take(ip, t)));
        assert!(!a.take(ip, t), "the allowance is spent");
        assert!(a.take(other, t), "another address has its own");
        assert!(!a.take(ip, t + Duration::from_secs(1199)));
        assert!(
            a.take(ip, t + Duration::from_secs(1200)),
            "a third of an hour: one more"
        );
        let mut none = Allowance::per_hour(0);
        assert!((0..1000).all(|_| none.take(ip, t)), "0: no limit");
    }

    #[test]
    fn an_ipv6_host_is_one_address_for_its_whole_64() {
        let mut a = Accounts::default();
        let t = Instant::now();
        a.connected(1, "2001:db8:1:2::1".parse().unwrap());
        a.connected(2, "2001:db8:1:2:ffff::9".parse().unwrap());
        for _ in 0..=FREE_FAILURES {
            a.failed("x", a.address(1), t);
        }
        assert!(a.blocked("y", a.address(2), t));
    }

    #[test]
    fn the_limiter_forgets_the_soonest_open_key_when_full() {
        let mut l: Limiter<u32> = Limiter::default();
        let t = Instant::now();
        for key in 0..TRACKED as u32 {
            for _ in 0..=FREE_FAILURES {
                l.failed(key, t + Duration::from_millis(key as u64));
            }
        }
        assert_eq!(l.keys.len(), TRACKED);
        l.failed(u32::MAX, t);
        assert_eq!(l.keys.len(), TRACKED, "bounded");
        assert!(
            !l.keys.contains_key(&0),
            "the one whose wait ended first went"
        );
        assert!(l.keys.contains_key(&u32::MAX));
    }
}

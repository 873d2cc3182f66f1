//! `REGISTER`, `LOGIN` with a password and `PASSWORD`: the chat's side.
//!
//! Each waits twice at most, never on the loop: for the hasher (a hash or a
//! check, see `crate::auth`) and, for a new account or password, for the
//! store's commit, so what `OK` acknowledges survives a crash. The
//! connection reads nothing meanwhile (`Step::Wait`), and the verdict or
//! the commit says what it gets. A wrong password counts against the name
//! and the address it came from (see `accounts`); only one check per name
//! runs at once, so parallel guesses are refused, not queued.

use std::net::IpAddr;
use std::time::Instant;

use super::accounts::{Policy, Saving, Work, MIN_PASSWORD};
use super::event::Event;
use super::{Chat, ConnId, Outbox, Step};
use crate::auth::{Job, Secret, Verdict};
use crate::protocol::text::{is_blank, valid_name};
use crate::protocol::{ProtocolError, Reply};

/// A new password is at least `MIN_PASSWORD` bytes, with no blank in it (the
/// protocol separates words with blanks).
fn valid_password(password: &str) -> bool {
    password.len() >= MIN_PASSWORD && !password.contains(is_blank)
}

impl Chat {
    /// Tells the chat where connection `id` comes from, for the limiter on
    /// failed passwords.
    pub fn connected(&mut self, id: ConnId, from: IpAddr) {
        self.accounts.connected(id, from);
    }

    /// Accounts held; for metrics.
    pub fn accounts(&self) -> usize {
        self.accounts.len()
    }

    /// `LOGIN <name>` of a registered name, or of any name when guests are
    /// not taken: the refusal, if there is one.
    pub(super) fn guest_refused(&self, name: &str) -> Option<ProtocolError> {
        if self.accounts.is_registered(name) {
            Some(ProtocolError::PasswordRequired)
        } else if self.accounts.is_reserved(name) {
            Some(ProtocolError::UsernameTaken)
        } else if self.accounts.policy() == Policy::Required {
            Some(ProtocolError::AccountRequired)
        } else {
            None
        }
    }

    /// `REGISTER <name> <password>`: the name is reserved and the password
    /// hashed; the account is stored, and the connection logged in, later.
    pub(super) fn register(
        &mut self,
        id: ConnId,
        name: &str,
        password: &str,
        now: Instant,
    ) -> Result<Step, ProtocolError> {
        if self.users.name(id).is_some() {
            return Err(ProtocolError::AlreadyLoggedIn);
        }
        if !valid_name(name) {
            return Err(ProtocolError::InvalidUsername);
        }
        if !valid_password(password) {
            return Err(ProtocolError::InvalidPassword);
        }
        if self.users.is_taken(name)
            || self.accounts.is_registered(name)
            || self.accounts.is_reserved(name)
        {
            return Err(ProtocolError::UsernameTaken);
        }
        // Every account is memory for as long as the server runs, and one
        // address must not take all of `--max-accounts`.
        if self.accounts.counted() >= self.limits.max_accounts {
            return Err(ProtocolError::TooManyAccounts);
        }
        let from = self.accounts.address(id);
        if !self.accounts.may_register(from, now) {
            return Err(ProtocolError::TooManyAttempts);
        }
        if self.accounts.busy() {
            return Err(ProtocolError::AuthBusy);
        }
        let password = Secret::new(password);
        let work = Work::Register { name: name.into() };
        self.accounts
            .submit(id, work, |ticket| Job::Hash { ticket, password });
        Ok(Step::Wait)
    }

    /// `LOGIN <name> <password>` of a registered name: checked by the hasher.
    pub(super) fn login_with(
        &mut self,
        id: ConnId,
        name: &str,
        password: &str,
        now: Instant,
    ) -> Result<Step, ProtocolError> {
        if self.users.name(id).is_some() {
            return Err(ProtocolError::AlreadyLoggedIn);
        }
        // v1 read `LOGIN a b` as the name `a b`; for a name without an
        // account the answer is still what v1 said.
        let hash = match self.accounts.hash(name) {
            Some(hash) if valid_name(name) => hash.clone(),
            _ => return Err(ProtocolError::InvalidUsername),
        };
        // The name is the account's own: the password ends a session of
        // it held since a restart, or open on another connection (below).
        // In a cluster a user on another node keeps it.
        let here = self.users.find(name).is_some() && self.cluster.is_none();
        if self.users.is_taken(name) && !self.held.holds(name) && !here {
            return Err(ProtocolError::UsernameTaken);
        }
        self.check(id, name, now)?;
        let from = self.accounts.address(id);
        let work = Work::Login {
            name: name.into(),
            from,
        };
        let password = Secret::new(password);
        self.accounts.submit(id, work, |ticket| Job::Verify {
            ticket,
            hash,
            password,
        });
        Ok(Step::Wait)
    }

    /// `PASSWORD <old> <new>`: the old one is checked, then the new one
    /// hashed and stored.
    pub(super) fn change_password(
        &mut self,
        id: ConnId,
        old: &str,
        new: &str,
        now: Instant,
    ) -> Result<Step, ProtocolError> {
        let name: Box<str> = self
            .users
            .name(id)
            .ok_or(ProtocolError::NotLoggedIn)?
            .into();
        let hash = self
            .accounts
            .hash(&name)
            .cloned()
            .ok_or(ProtocolError::NoAccount)?;
        if !valid_password(new) {
            return Err(ProtocolError::InvalidPassword);
        }
        self.check(id, &name, now)?;
        let password = Secret::new(old);
        let work = Work::CheckOld {
            name,
            new: Secret::new(new),
        };
        self.accounts.submit(id, work, |ticket| Job::Verify {
            ticket,
            hash,
            password,
        });
        Ok(Step::Wait)
    }

    /// Whether a password check on `name` from `id` may start now.
    fn check(&mut self, id: ConnId, name: &str, now: Instant) -> Result<(), ProtocolError> {
        let from = self.accounts.address(id);
        if self.accounts.checking(name) || self.accounts.blocked(name, from, now) {
            return Err(ProtocolError::TooManyAttempts);
        }
        if self.accounts.busy() {
            return Err(ProtocolError::AuthBusy);
        }
        Ok(())
    }

    /// Carries out the hasher's `verdict`: the connection it answers, if it
    /// is still there and its wait is over, and what it is now.
    pub fn on_verdict(
        &mut self,
        verdict: Verdict,
        now: Instant,
        out: &mut impl Outbox,
    ) -> Option<(ConnId, Step)> {
        let (ticket, hashed, matched) = match verdict {
            Verdict::Hashed { ticket, hash } => (ticket, hash, false),
            Verdict::Verified { ticket, matched } => (ticket, None, matched),
            Verdict::Failed { ticket } => {
                let pending = self.accounts.answered(ticket)?;
                if let Work::Register { name } = &pending.work {
                    self.accounts.unreserve(name);
                }
                return self.refuse(pending.conn?, ProtocolError::AuthBusy, out);
            }
        };
        let pending = self.accounts.answered(ticket)?;
        let conn = pending.conn;
        match pending.work {
            Work::Login { name, from } => {
                if !matched {
                    self.accounts.failed(&name, from, now);
                    return self.refuse(conn?, ProtocolError::BadPassword, out);
                }
                self.accounts.succeeded(&name);
                let conn = conn?;
                // In a cluster the registry says whether the name is free.
                if self.cluster.is_some() {
                    self.claim(conn, &name, None);
                    return None;
                }
                // A session of the name held since a restart ends (the
                // others see it leave), as if its window had passed. A
                // RESUME may have taken the name while the check ran.
                if self.held.holds(&name) {
                    self.drop_held(&name, out);
                }
                // Still connected: a ghost the heartbeats have not caught
                // yet, or another device. The password wins; that session
                // ends for good (no RESUME), and its connection is closed.
                if let Some(ghost) = self.users.find(&name).filter(|&g| g != conn) {
                    self.kick(ghost, out);
                    self.replaced.push(ghost);
                }
                if self.users.is_taken(&name) {
                    return self.refuse(conn, ProtocolError::UsernameTaken, out);
                }
                self.welcome(conn, &name, out);
                self.logged_in_step(conn)
            }
            Work::CheckOld { name, new } => {
                let from = self.accounts.address_of(conn);
                if !matched {
                    self.accounts.failed(&name, from, now);
                    return self.refuse(conn?, ProtocolError::BadPassword, out);
                }
                self.accounts.succeeded(&name);
                let conn = conn?;
                let work = Work::HashNew { name };
                self.accounts.submit(conn, work, |ticket| Job::Hash {
                    ticket,
                    password: new,
                });
                None
            }
            Work::Register { name } => self.store_account(conn, name, hashed, true, out),
            Work::HashNew { name } => self.store_account(conn, name, hashed, false, out),
        }
    }

    /// Sends a new account (or a changed password) to the store; the
    /// connection waits on for the commit.
    fn store_account(
        &mut self,
        conn: Option<ConnId>,
        name: Box<str>,
        hash: Option<Secret>,
        new: bool,
        out: &mut impl Outbox,
    ) -> Option<(ConnId, Step)> {
        let Some(hash) = hash else {
            if new {
                self.accounts.unreserve(&name);
            }
            return self.refuse(conn?, ProtocolError::AuthBusy, out);
        };
        if self.cluster.is_some() {
            self.share_account(conn, name, hash, new);
            return None;
        }
        let ticket = self.accounts.saving(Saving {
            conn,
            name: name.clone(),
            hash: Some(hash.clone()),
            new,
        });
        self.journal.save_account(ticket, name, hash);
        None
    }

    /// The store's answer to an account write: the new user is in, or the
    /// password changed; or neither, and the connection is told why.
    pub(super) fn account_saved(
        &mut self,
        ticket: u64,
        saved: bool,
        out: &mut impl Outbox,
    ) -> Option<(ConnId, Step)> {
        let saving = self.accounts.saved(ticket, saved)?;
        if let Some(login) = self.registered(ticket) {
            return self.registration_stored(login, saved, out);
        }
        let conn = saving.conn?;
        if !saved {
            return self.refuse(conn, ProtocolError::StorageUnavailable, out);
        }
        if !saving.new {
            self.reply(conn, Reply::Ok, out);
            return Some((conn, Step::Continue));
        }
        self.welcome(conn, &saving.name, out);
        self.logged_in_step(conn)
    }

    /// `conn` is `name` from now on: `OK`, and everyone is told.
    pub(super) fn welcome(&mut self, conn: ConnId, name: &str, out: &mut impl Outbox) {
        self.users.insert(conn, name);
        // The name is someone's now: an ended session under it is over,
        // and so is one the store may keep from before a restart.
        self.ended.forget(name);
        self.forget_session(name);
        self.reply(conn, Reply::Ok, out);
        self.apply(Event::Arrived { name, home: "" }, out);
    }

    /// What a connection just welcomed becomes: logged in, or still
    /// waiting (for its unread list) without being released.
    pub(super) fn logged_in_step(&mut self, conn: ConnId) -> Option<(ConnId, Step)> {
        match self.after_welcome(conn) {
            Step::Wait => None,
            step => Some((conn, step)),
        }
    }

    fn refuse(
        &mut self,
        conn: ConnId,
        error: ProtocolError,
        out: &mut impl Outbox,
    ) -> Option<(ConnId, Step)> {
        self.reply(conn, Reply::Err(error), out);
        Some((conn, Step::Continue))
    }
}

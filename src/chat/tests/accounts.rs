//! Accounts with the hasher and the store played by the test: the jobs
//! are run in process with a cheap Argon2 cost, and account writes are
//! answered when the test says.

use super::*;
use crate::auth::Job;

/// The chat's pending hasher jobs, run now, their verdicts fed back;
/// returns what each released connection became.
fn hash_all(chat: &mut Chat, out: &mut Recorder) -> Vec<(ConnId, Step)> {
    let mut hashing = cheap_hashing();
    let jobs: Vec<Job> = chat.accounts.take_jobs();
    jobs.into_iter()
        .filter_map(|job| chat.on_verdict(hashing.run(job), t0(), out))
        .collect()
}

/// Commits (or fails) every account write asked of the store, and answers
/// the unread lists asked after a login (nothing unread), until the store
/// is asked nothing more.
fn store_all(chat: &mut Chat, out: &mut Recorder, saved: bool) -> Vec<(ConnId, Step)> {
    let mut released = Vec::new();
    loop {
        let outcomes: Vec<Outcome> = chat
            .journal
            .take_requests()
            .filter_map(|r| match r {
                Request::SaveAccount { ticket, .. } => {
                    Some(Outcome::AccountSaved { ticket, saved })
                }
                Request::Unread { ticket, .. } => Some(Outcome::Unread {
                    ticket,
                    conversations: Some(Vec::new()),
                }),
                _ => None,
            })
            .collect();
        if outcomes.is_empty() {
            return released;
        }
        for outcome in outcomes {
            released.extend(chat.on_store(outcome, out));
        }
    }
}

#[test]
fn a_name_being_registered_is_taken_until_its_account_is_stored() {
    let (mut chat, mut out) = setup(&["watcher"]);
    assert_eq!(
        chat.on_line(1, b"REGISTER alice password1", t0(), &mut out),
        Step::Wait
    );
    chat.on_line(2, b"REGISTER Alice password2", t0(), &mut out);
    chat.on_line(3, b"LOGIN alice", t0(), &mut out);
    assert_eq!(out.take(2), "ERR username-taken\n");
    assert_eq!(out.take(3), "ERR username-taken\n");
    assert!(
        hash_all(&mut chat, &mut out).is_empty(),
        "waits for the store"
    );
    assert_eq!(out.take(1), "", "no OK before the commit");
    assert_eq!(store_all(&mut chat, &mut out, true), [(1, Step::LoggedIn)]);
    assert_eq!(out.take(1), "OK\nEND UNREAD\n");
    assert_eq!(out.take(0), "INFO alice joined\n");
    chat.check_invariants();
}

#[test]
fn a_registration_the_store_refuses_frees_the_name() {
    let (mut chat, mut out) = setup(&[]);
    chat.on_line(1, b"REGISTER alice password1", t0(), &mut out);
    hash_all(&mut chat, &mut out);
    assert_eq!(store_all(&mut chat, &mut out, false), [(1, Step::Continue)]);
    assert_eq!(out.take(1), "ERR storage-unavailable\n");
    assert_eq!(
        chat.on_line(2, b"LOGIN alice", t0(), &mut out),
        Step::LoggedIn
    );
}

#[test]
fn a_verdict_for_a_connection_that_left_logs_nobody_in() {
    let (mut chat, mut out) = setup(&[]);
    chat.on_line(1, b"REGISTER alice password1", t0(), &mut out);
    hash_all(&mut chat, &mut out);
    store_all(&mut chat, &mut out, true);
    chat.leave(1, &mut out);
    chat.remove(1);
    assert_eq!(
        chat.on_line(2, b"LOGIN alice password1", t0(), &mut out),
        Step::Wait
    );
    // Connection 2 goes before the verdict: its slot may be a stranger's by then.
    chat.leave(2, &mut out);
    chat.remove(2);
    assert!(hash_all(&mut chat, &mut out).is_empty());
    assert_eq!(out.take(2), "");
    assert_eq!(chat.name(2), None, "the slot's new owner is not alice");
    assert_eq!(
        chat.on_line(2, b"LOGIN alice", t0(), &mut out),
        Step::Continue
    );
    assert_eq!(out.take(2), "ERR password-required\n");
    chat.check_invariants();
}

#[test]
fn a_password_change_checks_the_old_then_stores_the_new() {
    let (mut chat, mut out) = setup(&[]);
    chat.on_line(1, b"REGISTER alice password1", t0(), &mut out);
    hash_all(&mut chat, &mut out);
    store_all(&mut chat, &mut out, true);
    out.take(1);
    chat.on_line(1, b"PASSWORD wrong-one password2", t0(), &mut out);
    assert_eq!(hash_all(&mut chat, &mut out), [(1, Step::Continue)]);
    assert_eq!(out.take(1), "ERR bad-password\n");
    chat.on_line(1, b"PASSWORD password1 password2", t0(), &mut out);
    assert!(
        hash_all(&mut chat, &mut out).is_empty(),
        "the old one checked"
    );
    assert!(
        hash_all(&mut chat, &mut out).is_empty(),
        "the new one hashed"
    );
    assert_eq!(store_all(&mut chat, &mut out, true), [(1, Step::Continue)]);
    assert_eq!(out.take(1), "OK\n");
    chat.leave(1, &mut out);
    chat.remove(1);
    chat.on_line(2, b"LOGIN alice password1", t0(), &mut out);
    assert_eq!(hash_all(&mut chat, &mut out), [(2, Step::Continue)]);
    assert_eq!(out.take(2), "ERR bad-password\n");
    chat.on_line(2, b"LOGIN alice password2", t0(), &mut out);
    assert!(
        hash_all(&mut chat, &mut out).is_empty(),
        "waits for its unread list"
    );
    assert_eq!(store_all(&mut chat, &mut out, true), [(2, Step::LoggedIn)]);
    assert_eq!(out.take(2), "OK\nEND UNREAD\n");
}

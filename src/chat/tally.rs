//! What the chat counts for the operator: lines by command word, logins
//! and resumes by outcome, how long a `SAY` waits for its commit, and
//! whether the store is failing. Counting is an add; the server reads
//! these when it is scraped.

use std::collections::HashMap;
use std::time::Duration;

use super::ConnId;
use crate::protocol::Command;
use crate::tally::{Buckets, Outcomes};

/// Upper bounds of the `SAY` to commit latency, in seconds: a group
/// commit takes a millisecond or two, a stalled store seconds.
const COMMIT_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A way in: `LOGIN` or `RESUME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Login,
    Resume,
}

/// The chat's counters.
#[derive(Debug, Clone)]
pub struct ChatTally {
    /// Lines by command word ([`Command::WORDS`]), then lines that were not
    /// a command (unknown, malformed, too long, not text).
    pub lines: [u64; Command::WORDS.len() + 1],
    pub logins: Outcomes,
    pub resumes: Outcomes,
    /// From a `SAY` to the commit that lets its `SENT` go.
    pub say_commit: Buckets,
    /// The store's last word was a failed commit.
    pub store_failing: bool,
    /// Attempts waiting for the cluster's answer, counted when it comes.
    waiting: HashMap<ConnId, Attempt>,
}

impl Default for ChatTally {
    fn default() -> ChatTally {
        ChatTally {
            lines: [0; Command::WORDS.len() + 1],
            logins: Outcomes::default(),
            resumes: Outcomes::default(),
            say_commit: Buckets::new(COMMIT_BOUNDS),
            store_failing: false,
            waiting: HashMap::new(),
        }
    }
}

impl ChatTally {
    /// Counts a line that was a command.
    pub fn line(&mut self, command: &Command<'_>) {
        self.lines[command.word()] += 1;
    }

    /// Counts a line that was not a command.
    pub fn not_a_command(&mut self) {
        self.lines[Command::WORDS.len()] += 1;
    }

    /// Counts an attempt that was decided: it succeeded or was refused.
    pub fn attempted(&mut self, attempt: Attempt, ok: bool) {
        match attempt {
            Attempt::Login => self.logins.count(ok),
            Attempt::Resume => self.resumes.count(ok),
        }
    }

    /// `conn`'s attempt waits for the cluster.
    pub fn wait(&mut self, conn: ConnId, attempt: Attempt) {
        self.waiting.insert(conn, attempt);
    }

    /// `conn`'s wait is over; a login or resume it waited for is counted.
    pub fn concluded(&mut self, conn: ConnId, ok: bool) {
        if let Some(attempt) = self.waiting.remove(&conn) {
            self.attempted(attempt, ok);
        }
    }

    /// `conn` left: an attempt it waited for has no outcome.
    pub fn forget(&mut self, conn: ConnId) {
        self.waiting.remove(&conn);
    }

    /// A `SAY` was committed `took` after it arrived.
    pub fn committed(&mut self, took: Duration) {
        self.say_commit.observe(took);
    }
}

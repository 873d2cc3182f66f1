//! The password hasher: one thread that runs Argon2id, so the event loop
//! never spends tens of milliseconds on a password.
//!
//! The chat hands out [`Job`]s (hash a new password, or check one against
//! a stored hash) and the loop passes them on; the thread answers each with
//! a [`Verdict`] and wakes the loop through the shared `mio::Waker`, as the
//! store's writer does. The chat never has more than `MAX_IN_FLIGHT` jobs
//! out, so the channel is bounded by construction. A password lives only
//! in its job: it is never logged, and it is dropped once hashed.

use std::sync::mpsc::{self, Receiver, Sender, TryIter};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use argon2::password_hash::{self, Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use log::error;
use mio::Waker;

/// Jobs the chat may have with the hasher at once; more logins and
/// registrations meanwhile are refused (`ERR auth-busy`). A queue rather
/// than a handful: a storm of logins waits its turn instead of retrying
/// (a refused storm of 2,000 sent 180,000 retries and slowed everyone).
/// At about 75 checks a second the last of 2,048 waits some 27 s, within
/// the idle timeout that bounds a waiting connection.
pub const MAX_IN_FLIGHT: usize = 2048;

/// Argon2id's cost: 19 MiB of memory, 2 passes, 1 lane. These are OWASP's
/// recommended minimum for Argon2id; on this project's machine one hash
/// takes about 13 ms of one core (docs/PERFORMANCE.md), so the one thread
/// checks some 60 passwords a second with the loop's share of each login.
const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;
const LANES: u32 = 1;

/// A password, or a password's hash: text that no log line may show, so
/// its `Debug` says only that it is there.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<str>);

impl Secret {
    /// Wraps `text`.
    pub fn new(text: &str) -> Secret {
        Secret(text.into())
    }

    /// The text, for the one place that needs it (hashing, storing).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

/// Work for the hasher.
#[derive(Debug)]
pub enum Job {
    /// Hash a new password.
    Hash { ticket: u64, password: Secret },
    /// Check `password` against a stored PHC string.
    Verify {
        ticket: u64,
        hash: Secret,
        password: Secret,
    },
}

impl Job {
    /// The ticket its verdict will carry.
    pub fn ticket(&self) -> u64 {
        match self {
            Job::Hash { ticket, .. } | Job::Verify { ticket, .. } => *ticket,
        }
    }
}

/// The hasher's answer to one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The PHC string of the new password, or `None` if hashing failed.
    Hashed { ticket: u64, hash: Option<Secret> },
    /// Whether the password matched.
    Verified { ticket: u64, matched: bool },
    /// The job could not be done (the thread is gone).
    Failed { ticket: u64 },
}

/// The loop's handle on the hasher thread.
pub struct Hasher {
    jobs: Option<Sender<Job>>,
    verdicts: Receiver<Verdict>,
    thread: Option<JoinHandle<()>>,
}

impl Hasher {
    /// Starts the hasher thread; it wakes the loop with `waker`.
    pub fn spawn(waker: Arc<Waker>) -> std::io::Result<Hasher> {
        let (jobs, inbox) = mpsc::channel();
        let (reply, verdicts) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("hasher".into())
            .spawn(move || serve(inbox, reply, waker))?;
        Ok(Hasher {
            jobs: Some(jobs),
            verdicts,
            thread: Some(thread),
        })
    }

    /// Hands a job to the thread. Returns it if the thread is gone.
    pub fn submit(&mut self, job: Job) -> Result<(), Job> {
        match &self.jobs {
            Some(jobs) => jobs.send(job).map_err(|e| {
                error!("hasher: the thread has stopped; logins with a password fail");
                self.jobs = None;
                e.0
            }),
            None => Err(job),
        }
    }

    /// What the thread has answered since the last call.
    pub fn verdicts(&self) -> TryIter<'_, Verdict> {
        self.verdicts.try_iter()
    }
}

impl Drop for Hasher {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                error!("hasher: the thread panicked");
            }
        }
    }
}

/// How far below the loop the hasher runs (a nice value): a storm of
/// logins must not take the core the loop needs to answer everyone else.
const NICENESS: libc::c_int = 10;

/// How long the hasher keeps its 19 MiB after its last job: logins a few
/// milliseconds apart reuse it rather than map and zero it each time.
const KEEP_MEMORY: Duration = Duration::from_secs(1);

/// The hasher thread: one job at a time, in order.
fn serve(inbox: Receiver<Job>, reply: Sender<Verdict>, waker: Arc<Waker>) {
    // Linux gives each thread its own nice value; lowering one's own
    // priority needs no privilege. If it fails, hashing still works.
    // SAFETY: plain system calls on this thread's own id.
    let lowered = unsafe {
        let tid = libc::gettid() as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, NICENESS)
    };
    if lowered != 0 {
        log::debug!(
            "hasher: cannot lower its priority: {}",
            std::io::Error::last_os_error()
        );
    }
    let mut hashing = Hashing::server();
    let mut next = inbox.recv();
    while let Ok(job) = next {
        if reply.send(hashing.run(job)).is_err() {
            return;
        }
        if let Err(e) = waker.wake() {
            error!("hasher: cannot wake the event loop: {e}");
        }
        next = inbox.recv_timeout(KEEP_MEMORY).or_else(|_| {
            // Nothing came for a while: the memory goes back until the
            // next job.
            hashing.rest();
            inbox.recv()
        });
    }
}

/// Argon2id at a cost, with the memory its hashes fill kept from one job
/// to the next: a storm of logins does not map, fault in, and unmap
/// 19 MiB per password (which cost about 15 % of each hash).
pub struct Hashing {
    params: Params,
    memory: Vec<Block>,
}

impl Hashing {
    /// Argon2id at the server's cost (19 MiB, 2 passes, 1 lane).
    pub fn server() -> Hashing {
        let params = Params::new(MEMORY_KIB, PASSES, LANES, None).unwrap_or_default();
        Hashing::with(params)
    }

    /// Argon2id at the cost `params` (tests use the least there is).
    pub fn with(params: Params) -> Hashing {
        Hashing {
            params,
            memory: Vec::new(),
        }
    }

    /// Gives the memory back: nothing has come to be hashed for a while.
    pub fn rest(&mut self) {
        self.memory = Vec::new();
    }

    /// Does one job.
    pub fn run(&mut self, job: Job) -> Verdict {
        match job {
            Job::Hash { ticket, password } => {
                let hash = self.hash(password.expose().as_bytes());
                if hash.is_none() {
                    error!("hasher: cannot hash a password");
                }
                Verdict::Hashed { ticket, hash }
            }
            Job::Verify {
                ticket,
                hash,
                password,
            } => {
                let matched = self.verify(password.expose().as_bytes(), hash.expose());
                Verdict::Verified { ticket, matched }
            }
        }
    }

    /// A new password's PHC string, with a fresh random salt.
    fn hash(&mut self, password: &[u8]) -> Option<Secret> {
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).ok()?;
        let salt = SaltString::encode_b64(&raw).ok()?;
        let (algorithm, version) = (Algorithm::Argon2id, Version::V0x13);
        let argon = Argon2::new(algorithm, version, self.params.clone());
        let output = self.output(&argon, password, salt.as_salt()).ok()?;
        let phc = PasswordHash {
            algorithm: algorithm.ident(),
            version: Some(version.into()),
            params: ParamsString::try_from(&self.params).ok()?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Some(Secret::new(&phc.to_string()))
    }

    /// True if `password` is the one `stored` (a PHC string) was made
    /// from. Its cost comes from the string, so hashes made at another
    /// cost still verify; the outputs are compared in constant time.
    fn verify(&mut self, password: &[u8], stored: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(stored) else {
            return false;
        };
        let argon = (|| {
            let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
            let version = match parsed.version {
                Some(v) => Version::try_from(v).ok()?,
                None => Version::default(),
            };
            let params = Params::try_from(&parsed).ok()?;
            Some(Argon2::new(algorithm, version, params))
        })();
        let (Some(argon), Some(salt), Some(expected)) = (argon, parsed.salt, parsed.hash) else {
            return false;
        };
        self.output(&argon, password, salt)
            .is_ok_and(|computed| computed == expected)
    }

    /// The hash `argon` makes of `password` with `salt`, as argon2's own
    /// `hash_password` makes it, in the memory kept here.
    fn output(
        &mut self,
        argon: &Argon2<'_>,
        password: &[u8],
        salt: Salt<'_>,
    ) -> password_hash::Result<Output> {
        let mut salt_bytes = [0u8; 64];
        let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
        let params = argon.params();
        let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let blocks = params.block_count();
        self.memory.resize(blocks, Block::default());
        let memory = &mut self.memory[..blocks];
        Output::init_with(len, |out| {
            argon
                .hash_password_into_with_memory(password, salt_bytes, out, &mut *memory)
                .map_err(password_hash::Error::from)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    /// The least cost there is: these tests are about the round trip.
    fn cheap() -> Params {
        Params::new(64, 1, 1, None).unwrap()
    }

    fn hash(hashing: &mut Hashing, password: &str) -> Secret {
        let job = Job::Hash {
            ticket: 1,
            password: Secret::new(password),
        };
        match hashing.run(job) {
            Verdict::Hashed {
                hash: Some(hash), ..
            } => hash,
            other => panic!("no hash: {other:?}"),
        }
    }

    fn matches(hashing: &mut Hashing, stored: &str, password: &str) -> bool {
        let job = Job::Verify {
            ticket: 2,
            hash: Secret::new(stored),
            password: Secret::new(password),
        };
        match hashing.run(job) {
            Verdict::Verified { matched, .. } => matched,
            other => panic!("not a check: {other:?}"),
        }
    }

    #[test]
    fn a_hash_verifies_its_password_and_no_other() {
        let mut hashing = Hashing::with(cheap());
        let hash = hash(&mut hashing, "correct horse");
        let text = hash.expose();
        assert!(text.starts_with("$argon2id$"), "{text}");
        assert!(!text.contains("correct"));
        assert_eq!(format!("{hash:?}"), "<secret>", "Debug shows nothing");
        assert!(matches(&mut hashing, text, "correct horse"));
        assert!(!matches(&mut hashing, text, "correct horsE"));
        assert!(!matches(&mut hashing, "not a hash", "x"));
        // Between jobs the memory may go back; the next job is the same.
        hashing.rest();
        assert!(matches(&mut hashing, text, "correct horse"));
    }

    #[test]
    fn hashes_are_argon2s_own_both_ways_at_any_cost() {
        let mut hashing = Hashing::with(cheap());
        let ours = hash(&mut hashing, "pass word");
        let theirs_of = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(128, 2, 1, None).unwrap(),
        );
        let salt = SaltString::encode_b64(b"sixteen byte salt").unwrap();
        let theirs = theirs_of.hash_password(b"pass word", &salt).unwrap();
        // argon2 checks ours; we check one made at another cost than ours.
        let parsed = PasswordHash::new(ours.expose()).unwrap();
        assert!(Argon2::default()
            .verify_password(b"pass word", &parsed)
            .is_ok());
        assert!(matches(&mut hashing, &theirs.to_string(), "pass word"));
        assert!(!matches(&mut hashing, &theirs.to_string(), "pass-word"));
        // And the same salt gives the same string.
        let again = Hashing::with(Params::new(128, 2, 1, None).unwrap())
            .output(&theirs_of, b"pass word", salt.as_salt())
            .unwrap();
        assert_eq!(Some(again), theirs.hash);
    }

    #[test]
    fn the_server_cost_is_argon2id_at_19_mib() {
        let hash = hash(&mut Hashing::server(), "password");
        let text = hash.expose();
        assert!(
            text.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{text}"
        );
    }
}

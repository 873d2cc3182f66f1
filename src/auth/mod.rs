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

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use log::error;
use mio::Waker;

/// Jobs the chat may have with the hasher at once; more logins and
/// registrations meanwhile are refused (`ERR auth-busy`). A queue rather
/// than a handful: a storm of logins waits its turn instead of retrying
/// (a refused storm of 2,000 sent 180,000 retries and slowed everyone).
/// At about 57 checks a second the last of 2,048 waits some 36 s, within
/// the idle timeout that bounds a waiting connection.
pub const MAX_IN_FLIGHT: usize = 2048;

/// Argon2id's cost: 19 MiB of memory, 2 passes, 1 lane. These are OWASP's
/// recommended minimum for Argon2id; on this project's machine one hash
/// takes about 17.6 ms of one core (docs/PERFORMANCE.md), so the one
/// thread checks about 57 passwords a second.
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
    let argon = server_cost();
    while let Ok(job) = inbox.recv() {
        if reply.send(run(&argon, job)).is_err() {
            return;
        }
        if let Err(e) = waker.wake() {
            error!("hasher: cannot wake the event loop: {e}");
        }
    }
}

/// Argon2id at the server's cost (19 MiB, 2 passes, 1 lane).
pub fn server_cost() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Does one job.
pub fn run(argon: &Argon2<'_>, job: Job) -> Verdict {
    match job {
        Job::Hash { ticket, password } => {
            let mut salt = [0u8; 16];
            let salt = getrandom::fill(&mut salt)
                .ok()
                .and_then(|()| SaltString::encode_b64(&salt).ok());
            let hash = salt.and_then(|salt| {
                let hash = argon.hash_password(password.expose().as_bytes(), &salt);
                hash.ok().map(|hash| Secret::new(&hash.to_string()))
            });
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
            // The parameters come from the stored string, so hashes made
            // with other costs still verify.
            let matched = PasswordHash::new(hash.expose()).is_ok_and(|parsed| {
                argon
                    .verify_password(password.expose().as_bytes(), &parsed)
                    .is_ok()
            });
            Verdict::Verified { ticket, matched }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_and_no_other() {
        // Cheap parameters: the test is about the round trip.
        let argon = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(64, 1, 1, None).unwrap(),
        );
        let Verdict::Hashed {
            hash: Some(hash), ..
        } = run(
            &argon,
            Job::Hash {
                ticket: 1,
                password: Secret::new("correct horse"),
            },
        )
        else {
            panic!("no hash");
        };
        let text = hash.expose();
        assert!(text.starts_with("$argon2id$"), "{text}");
        assert!(!text.contains("correct"));
        assert_eq!(format!("{hash:?}"), "<secret>", "Debug shows nothing");
        let check = |password: &str| {
            run(
                &argon,
                Job::Verify {
                    ticket: 2,
                    hash: hash.clone(),
                    password: Secret::new(password),
                },
            )
        };
        assert_eq!(
            check("correct horse"),
            Verdict::Verified {
                ticket: 2,
                matched: true
            }
        );
        assert_eq!(
            check("correct horsE"),
            Verdict::Verified {
                ticket: 2,
                matched: false
            }
        );
        let garbage = run(
            &argon,
            Job::Verify {
                ticket: 3,
                hash: Secret::new("not a hash"),
                password: Secret::new("x"),
            },
        );
        assert_eq!(
            garbage,
            Verdict::Verified {
                ticket: 3,
                matched: false
            }
        );
    }

    #[test]
    fn the_server_cost_is_argon2id_at_19_mib() {
        let Verdict::Hashed {
            hash: Some(hash), ..
        } = run(
            &server_cost(),
            Job::Hash {
                ticket: 1,
                password: Secret::new("password"),
            },
        )
        else {
            panic!("no hash");
        };
        let text = hash.expose();
        assert!(
            text.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{text}"
        );
    }
}

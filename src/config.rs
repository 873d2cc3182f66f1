//! Validated server settings: every duration and limit the loop obeys.

use std::net::SocketAddr;
use std::time::Duration;

use crate::flood::FloodPolicy;
use crate::liveness::Timeouts;

/// Everything `Server` needs to know, already checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks an ephemeral port.
    pub addr: SocketAddr,
    /// Heartbeat, idle and login deadlines.
    pub timeouts: Timeouts,
    /// Longest accepted line in bytes, line end not counted.
    pub max_line: usize,
    /// Most connections served at once; more get `BYE server-full`.
    pub max_clients: usize,
    /// Most unsent bytes queued for one connection before it is dropped.
    pub sendq: usize,
    /// Per-connection line rate limit.
    pub flood: FloodPolicy,
    /// How often to log a debug-level stats line; `None` for never.
    pub stats_interval: Option<Duration>,
}

impl Config {
    /// Defaults of protocol v1 on `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Config {
            addr,
            timeouts: Timeouts {
                ping_interval: Duration::from_secs(20),
                idle_timeout: Duration::from_secs(60),
                login_timeout: Duration::from_secs(30),
            },
            max_line: 4096,
            max_clients: 10_000,
            sendq: 1 << 20,
            flood: FloodPolicy {
                rate: 10.0,
                burst: 20.0,
                kick_after: Duration::from_secs(10),
            },
            stats_interval: Some(Duration::from_secs(60)),
        }
    }
}

/// Longest duration a flag accepts; keeps `Instant + Duration` far from overflow.
const MAX_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// Parses seconds with an optional fraction (`0.5`, `20`) into a positive duration.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= MAX_SECS) {
        return Err(format!(
            "`{s}` must be more than 0 and at most {MAX_SECS} seconds"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The process's soft limit on open files, if it can be read.
pub fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into the struct we pass.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_accept_fractions_and_refuse_nonsense() {
        assert_eq!(parse_secs("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_secs("20"), Ok(Duration::from_secs(20)));
        for bad in ["0", "-1", "abc", "", "NaN", "inf", "1e12"] {
            assert!(parse_secs(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn open_file_limit_is_readable_here() {
        assert!(open_file_limit().is_some_and(|n| n > 0));
    }
}

//! Hands freed heap memory back to the kernel after bursts.
//!
//! A burst (a join storm, a flood of fan-out) grows many connections' buffers
//! at once; they are freed when the burst passes, but glibc keeps freed pages
//! that sit between live allocations, so the process would stay at its
//! high-water mark for good. Once enough has been freed, `malloc_trim` returns
//! those pages, at most once per interval (it walks the whole heap).

use std::time::{Duration, Instant};

/// Freed bytes worth a trim.
const THRESHOLD: usize = 1 << 20;
/// Least time between two trims.
const INTERVAL: Duration = Duration::from_secs(1);

/// Counts freed buffer memory and trims the heap when it is worth it.
#[derive(Debug)]
pub struct Trimmer {
    freed: usize,
    last: Option<Instant>,
}

impl Trimmer {
    pub fn new() -> Self {
        Trimmer {
            freed: 0,
            last: None,
        }
    }

    /// Bytes freed since the last trim.
    pub fn owed(&self) -> usize {
        self.freed
    }

    /// Records that `bytes` of buffer capacity were freed.
    pub fn freed(&mut self, bytes: usize) {
        self.freed = self.freed.saturating_add(bytes);
    }

    /// When the loop should wake to trim, if a trim is owed.
    pub fn deadline(&self, now: Instant) -> Option<Instant> {
        if self.freed < THRESHOLD {
            return None;
        }
        Some(self.last.map_or(now, |t| t + INTERVAL))
    }

    /// Trims if enough was freed and the last trim is long enough ago.
    pub fn maybe_trim(&mut self, now: Instant) {
        if self.deadline(now).is_some_and(|due| now >= due) {
            self.freed = 0;
            self.last = Some(now);
            trim();
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only releases free memory the allocator holds.
    unsafe {
        let released = libc::malloc_trim(0);
        log::debug!("heap trimmed after a burst (malloc_trim: {released})");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_only_past_the_threshold_and_at_most_once_per_interval() {
        let t0 = Instant::now();
        let mut t = Trimmer::new();
        t.freed(THRESHOLD - 1);
        assert_eq!(t.deadline(t0), None);
        t.freed(1);
        assert_eq!(t.deadline(t0), Some(t0), "the first trim is due at once");
        t.maybe_trim(t0);
        assert_eq!(t.deadline(t0), None, "the debt is paid");
        t.freed(THRESHOLD);
        assert_eq!(t.deadline(t0), Some(t0 + INTERVAL));
        t.maybe_trim(t0 + INTERVAL / 2);
        assert_eq!(t.deadline(t0), Some(t0 + INTERVAL), "too soon: still owed");
        t.maybe_trim(t0 + INTERVAL);
        assert_eq!(t.deadline(t0), None);
    }
}

//! Plain counters for the operator's metrics: the chat and the loop count
//! with an add on fields they own (one thread, no atomics), and the server
//! reads them when `/metrics` is scraped. Nothing here knows the
//! exposition format.

use std::time::Duration;

/// A histogram of durations over fixed upper bounds: each observation
/// lands in the first bucket it fits, and the exposition adds them up.
#[derive(Debug, Clone)]
pub struct Buckets {
    /// Upper bounds, ascending, in seconds.
    bounds: &'static [f64],
    /// Observations per bound; the last slot counts those above every bound.
    counts: Vec<u64>,
    sum: f64,
}

impl Buckets {
    /// An empty histogram over `bounds` (ascending, in seconds).
    pub fn new(bounds: &'static [f64]) -> Buckets {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "ascending bounds");
        Buckets {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    /// Counts one observation.
    pub fn observe(&mut self, took: Duration) {
        let secs = took.as_secs_f64();
        let slot = self.bounds.partition_point(|&b| b < secs);
        self.counts[slot] += 1;
        self.sum += secs;
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The sum of every observation, in seconds.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// `(upper bound, observations in its bucket alone)` for every bound,
    /// then `+Inf` with those above them all (the encoder adds them up).
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        self.bounds
            .iter()
            .chain(std::iter::once(&f64::INFINITY))
            .copied()
            .zip(self.counts.iter().copied())
            .collect()
    }
}

/// Attempts of one kind that succeeded and that were refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcomes {
    pub ok: u64,
    pub refused: u64,
}

impl Outcomes {
    /// Counts one attempt.
    pub fn count(&mut self, ok: bool) {
        if ok {
            self.ok += 1;
        } else {
            self.refused += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: &[f64] = &[0.001, 0.01, 0.1];

    #[test]
    fn an_observation_lands_in_the_first_bucket_it_fits() {
        let mut b = Buckets::new(BOUNDS);
        b.observe(Duration::from_micros(500));
        b.observe(Duration::from_millis(1));
        b.observe(Duration::from_millis(5));
        b.observe(Duration::from_secs(2));
        assert_eq!(b.count(), 4);
        assert_eq!(
            b.buckets(),
            [(0.001, 2), (0.01, 1), (0.1, 0), (f64::INFINITY, 1)]
        );
        assert!((b.sum() - 2.0065).abs() < 1e-9, "{}", b.sum());
    }

    #[test]
    fn outcomes_count_each_side() {
        let mut o = Outcomes::default();
        o.count(true);
        o.count(false);
        o.count(false);
        assert_eq!(o, Outcomes { ok: 1, refused: 2 });
    }
}

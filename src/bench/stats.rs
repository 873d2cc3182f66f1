//! What a load run measured, and the bookkeeping that measures it: per-sender
//! sequence tracking (lost, duplicated, reordered) and latency percentiles.
//! Pure, so the accounting itself is unit-tested.

use std::fmt::Write as _;
use std::time::Duration;

/// Tracks, for each (receiver, sender) pair, the next sequence number due.
#[derive(Debug)]
pub struct Sequences {
    senders: usize,
    next: Vec<u32>,
    /// Arrived below the next one due, but not before seen: out of order.
    pub reordered: u64,
    /// Arrived a second time.
    pub duplicated: u64,
    /// Skipped over (a later one came first); may turn into `reordered`.
    skipped: Vec<Vec<u32>>,
}

impl Sequences {
    /// Tracking for `receivers` × `senders` streams, each starting at 0.
    pub fn new(receivers: usize, senders: usize) -> Self {
        Sequences {
            senders,
            next: vec![0; receivers * senders],
            reordered: 0,
            duplicated: 0,
            skipped: vec![Vec::new(); receivers * senders],
        }
    }

    /// Records that `receiver` got message `seq` from `sender`.
    pub fn record(&mut self, receiver: usize, sender: usize, seq: u32) {
        let i = receiver * self.senders + sender;
        let next = &mut self.next[i];
        if seq == *next {
            *next += 1;
        } else if seq > *next {
            self.skipped[i].extend(*next..seq);
            *next = seq + 1;
        } else if let Some(pos) = self.skipped[i].iter().position(|&s| s == seq) {
            self.skipped[i].swap_remove(pos);
            self.reordered += 1;
        } else {
            self.duplicated += 1;
        }
    }

    /// Messages never received, given how many each sender sent. A sender
    /// is also receiver number `sender`, and chat never echoes to the sender.
    pub fn lost(&self, sent: &[u32]) -> u64 {
        let mut lost = 0u64;
        for (i, &next) in self.next.iter().enumerate() {
            let (receiver, sender) = (i / self.senders, i % self.senders);
            if receiver == sender {
                continue;
            }
            lost += sent[sender].saturating_sub(next) as u64 + self.skipped[i].len() as u64;
        }
        lost
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    /// Percentiles of `samples` (microseconds); sorts them.
    pub fn of(samples: &mut [u32]) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let rank = ((samples.len() as f64) * q).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1] as f64
        };
        Latency {
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            max: samples[samples.len() - 1] as f64,
        }
    }
}

/// The outcome of one load run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub scenario: String,
    /// What the connections spoke: plain, tls, web or web-tls.
    pub transport: String,
    /// Which server: selectchat, redis or nats.
    pub target: String,
    pub clients: usize,
    pub messages: u64,
    pub deliveries: u64,
    pub elapsed: Duration,
    pub latency_us: Latency,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Server resident memory per connection, when the server's pid is known.
    pub rss_per_conn: Option<f64>,
    /// Server CPU while the scenario ran, in percent of one core.
    pub cpu_percent: Option<f64>,
    /// Logins answered with OK (storm), and their LOGIN-to-OK latency.
    pub logins: u64,
    pub login_us: Latency,
    /// Storm: when the server sent its last line, from the first connect.
    pub quiet_after: Option<Duration>,
    /// Storm: server CPU seconds from the first connect until it was quiet.
    pub cpu_seconds: Option<f64>,
    /// Fanout, rooms and mesh: server CPU (user + system) over the
    /// deliveries, in nanoseconds each.
    pub cpu_ns_per_delivery: Option<f64>,
    /// Rooms: `SENT`s received, and the `SAY` to `SENT` time (the commit).
    pub commits: u64,
    pub commit_us: Latency,
    /// Rooms with a history reader: answers and lines it read.
    pub histories: u64,
    pub history_lines: u64,
    /// Why the run stopped early, if it did.
    pub error: Option<String>,
}

impl Report {
    /// Deliveries (messages × recipients) per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.deliveries as f64 / secs
        } else {
            0.0
        }
    }

    /// One JSON object on one line.
    pub fn to_json(&self) -> String {
        let opt = |v: Option<f64>| v.map_or("null".to_string(), |v| format!("{v:.3}"));
        let error = self.error.as_deref().map_or("null".to_string(), |e| {
            format!("\"{}\"", e.replace(['"', '\\'], "'"))
        });
        format!(
            concat!(
                "{{\"scenario\":\"{}\",\"transport\":\"{}\",\"target\":\"{}\",\"clients\":{},\"messages\":{},\"deliveries\":{},",
                "\"seconds\":{:.3},\"deliveries_per_sec\":{:.1},\"latency_us\":{{\"p50\":{},",
                "\"p99\":{},\"p999\":{},\"max\":{}}},\"lost\":{},\"duplicated\":{},",
                "\"reordered\":{},\"rss_bytes_per_conn\":{},\"cpu_percent\":{},",
                "\"logins\":{},\"login_us\":{{\"p50\":{},\"p99\":{},\"max\":{}}},",
                "\"quiet_after_seconds\":{},\"cpu_seconds\":{},\"cpu_ns_per_delivery\":{},",
                "\"commits\":{},\"commit_us\":{{\"p50\":{},\"p99\":{},\"max\":{}}},",
                "\"histories\":{},\"history_lines\":{},\"error\":{}}}"
            ),
            self.scenario,
            self.transport,
            self.target,
            self.clients,
            self.messages,
            self.deliveries,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.latency_us.p50,
            self.latency_us.p99,
            self.latency_us.p999,
            self.latency_us.max,
            self.lost,
            self.duplicated,
            self.reordered,
            opt(self.rss_per_conn),
            opt(self.cpu_percent),
            self.logins,
            self.login_us.p50,
            self.login_us.p99,
            self.login_us.max,
            opt(self.quiet_after.map(|d| d.as_secs_f64())),
            opt(self.cpu_seconds),
            opt(self.cpu_ns_per_delivery),
            self.commits,
            self.commit_us.p50,
            self.commit_us.p99,
            self.commit_us.max,
            self.histories,
            self.history_lines,
            error,
        )
    }

    /// A small human-readable table.
    pub fn to_table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "scenario        {} ({} clients, {} over {})",
            self.scenario, self.clients, self.target, self.transport
        );
        if self.messages > 0 {
            let _ = writeln!(t, "messages        {}", self.messages);
            let _ = writeln!(
                t,
                "deliveries      {} in {:.2} s = {:.0}/s",
                self.deliveries,
                self.elapsed.as_secs_f64(),
                self.rate()
            );
            let l = self.latency_us;
            let _ = writeln!(
                t,
                "latency         p50 {} us, p99 {} us, p99.9 {} us, max {} us",
                l.p50, l.p99, l.p999, l.max
            );
            let _ = writeln!(
                t,
                "lost/dup/reord  {} / {} / {}",
                self.lost, self.duplicated, self.reordered
            );
        }
        if self.commits > 0 {
            let l = self.commit_us;
            let _ = writeln!(
                t,
                "SAY to SENT     p50 {} us, p99 {} us, max {} us ({} SENT)",
                l.p50, l.p99, l.max, self.commits
            );
        }
        if self.histories > 0 {
            let _ = writeln!(
                t,
                "history reads   {} answers, {} lines",
                self.histories, self.history_lines
            );
        }
        if self.logins > 0 {
            let l = self.login_us;
            let _ = writeln!(
                t,
                "logins          {} in {:.2} s = {:.0}/s; LOGIN to OK p50 {} us, p99 {} us, max {} us",
                self.logins,
                self.elapsed.as_secs_f64(),
                self.logins as f64 / self.elapsed.as_secs_f64().max(1e-9),
                l.p50,
                l.p99,
                l.max
            );
        }
        if let Some(quiet) = self.quiet_after {
            let _ = writeln!(t, "server quiet    after {:.2} s", quiet.as_secs_f64());
        }
        if let Some(cpu) = self.cpu_seconds {
            let _ = writeln!(t, "server cpu      {cpu:.2} s in all");
        }
        if let Some(rss) = self.rss_per_conn {
            let _ = writeln!(t, "server memory   {rss:.0} bytes per connection");
        }
        if let Some(ns) = self.cpu_ns_per_delivery {
            let _ = writeln!(t, "server cpu      {ns:.0} ns per delivery");
        }
        if let Some(cpu) = self.cpu_percent {
            let _ = writeln!(t, "server cpu      {cpu:.2} % of a core");
        }
        if let Some(e) = &self.error {
            let _ = writeln!(t, "error           {e}");
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_streams_lose_nothing() {
        let mut s = Sequences::new(4, 3);
        for seq in 0..10 {
            for sender in 0..3 {
                for receiver in (0..4).filter(|&r| r != sender) {
                    s.record(receiver, sender, seq);
                }
            }
        }
        assert_eq!(s.lost(&[10, 10, 10]), 0);
        assert_eq!((s.duplicated, s.reordered), (0, 0));
        assert_eq!(
            s.lost(&[12, 10, 10]),
            6,
            "two missing for each other receiver"
        );
    }

    #[test]
    fn gaps_duplicates_and_late_arrivals_are_told_apart() {
        let mut s = Sequences::new(2, 1);
        for seq in [0, 1, 3, 4, 4, 2, 1] {
            s.record(1, 0, seq);
        }
        assert_eq!(s.reordered, 1, "2 came late");
        assert_eq!(s.duplicated, 2, "4 and 1 came twice");
        assert_eq!(s.lost(&[5]), 0);
        let mut s = Sequences::new(2, 1);
        for seq in [0, 2] {
            s.record(1, 0, seq);
        }
        assert_eq!(s.lost(&[3]), 1);
    }

    #[test]
    fn percentiles() {
        let mut samples: Vec<u32> = (1..=1000).rev().collect();
        let l = Latency::of(&mut samples);
        assert_eq!((l.p50, l.p99, l.p999, l.max), (500.0, 990.0, 999.0, 1000.0));
        assert_eq!(Latency::of(&mut []), Latency::default());
    }

    #[test]
    fn json_is_one_line_with_every_field() {
        let r = Report {
            scenario: "fanout".into(),
            clients: 3,
            messages: 10,
            deliveries: 20,
            elapsed: Duration::from_secs(2),
            error: Some("said \"no\"".into()),
            ..Report::default()
        };
        let json = r.to_json();
        assert!(!json.contains('\n'));
        for key in [
            "\"deliveries_per_sec\":10.0",
            "\"lost\":0",
            "\"rss_bytes_per_conn\":null",
            "\"error\":\"said 'no'\"",
        ] {
            assert!(json.contains(key), "{json} lacks {key}");
        }
    }
}

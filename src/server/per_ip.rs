//! Connections per peer address (`--max-per-ip`), counted over every
//! transport, so one address cannot hold every slot until the login
//! timeout frees them.
//!
//! An IPv4 address counts alone; an IPv6 address counts with its /64,
//! since one host is routinely handed a whole /64 and could otherwise
//! open each connection from an address of its own. Invariant: the table
//! holds exactly the prefixes with at least one open connection, so it
//! is never larger than the connection table.

use std::collections::HashMap;
use std::net::IpAddr;

/// What one count is kept under: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prefix {
    V4(u32),
    V6(u64),
}

impl Prefix {
    /// The prefix `ip` counts under (an IPv4-mapped IPv6 address counts
    /// as its IPv4 address).
    pub fn of(ip: IpAddr) -> Prefix {
        match ip {
            IpAddr::V4(v4) => Prefix::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Prefix::V4(v4.into()),
                None => Prefix::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Open connections per prefix, under a cap.
#[derive(Debug, Default)]
pub struct PerIp {
    open: HashMap<Prefix, usize>,
    /// Most connections per prefix; 0 for no limit.
    max: usize,
}

impl PerIp {
    /// A table that lets each prefix hold `max` connections (0: any number).
    pub fn new(max: usize) -> PerIp {
        PerIp {
            open: HashMap::new(),
            max,
        }
    }

    /// Counts a new connection from `ip`, unless its prefix already holds
    /// the most it may: then it is not counted and the answer is false.
    pub fn admit(&mut self, ip: IpAddr) -> bool {
        let count = self.open.entry(Prefix::of(ip)).or_default();
        if self.max != 0 && *count >= self.max {
            // Not a new entry: a full prefix already has one.
            return false;
        }
        *count += 1;
        true
    }

    /// A connection from `ip` closed.
    pub fn release(&mut self, ip: IpAddr) {
        let prefix = Prefix::of(ip);
        if let Some(count) = self.open.get_mut(&prefix) {
            *count -= 1;
            if *count == 0 {
                self.open.remove(&prefix);
            }
        } else {
            debug_assert!(false, "released {ip} without admitting it");
        }
    }

    /// Prefixes with at least one open connection.
    pub fn addresses(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_address_holds_at_most_the_cap_and_a_close_frees_a_slot() {
        let mut per_ip = PerIp::new(2);
        assert!(per_ip.admit(ip("10.0.0.1")));
        assert!(per_ip.admit(ip("10.0.0.1")));
        assert!(!per_ip.admit(ip("10.0.0.1")), "the third is refused");
        assert!(per_ip.admit(ip("10.0.0.2")), "another address is not");
        per_ip.release(ip("10.0.0.1"));
        assert!(per_ip.admit(ip("10.0.0.1")), "a close frees a slot");
        per_ip.release(ip("10.0.0.1"));
        per_ip.release(ip("10.0.0.1"));
        per_ip.release(ip("10.0.0.2"));
        assert_eq!(per_ip.addresses(), 0, "no entry outlives its connections");
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let mut per_ip = PerIp::new(1);
        assert!(per_ip.admit(ip("2001:db8:1:2::1")));
        assert!(
            !per_ip.admit(ip("2001:db8:1:2:ffff::9")),
            "same /64, another address"
        );
        assert!(per_ip.admit(ip("2001:db8:1:3::1")), "the next /64");
        assert!(per_ip.admit(ip("192.0.2.7")));
        assert!(!per_ip.admit(ip("::ffff:192.0.2.7")), "the same IPv4 host");
        assert_eq!(per_ip.addresses(), 3);
    }

    #[test]
    fn zero_means_no_limit() {
        let mut per_ip = PerIp::new(0);
        for _ in 0..1000 {
            assert!(per_ip.admit(ip("127.0.0.1")));
        }
        assert_eq!(per_ip.addresses(), 1);
    }
}

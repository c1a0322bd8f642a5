//! Brute-force throttle for the admin API (like SPEC §2.1's for the filter):
//! too many failed authentications from one client address within a window
//! lock that address out for a while, correct credentials included.
//!
//! Memory is bounded: at most `capacity` addresses are tracked; when full,
//! records that no longer matter go first, then the oldest unlocked ones,
//! and locked ones only when nothing else is left.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at most (a flood of distinct addresses cannot grow
/// the map beyond this).
pub const DEFAULT_CAPACITY: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures within `window` that start a lockout.
    pub max_failures: u32,
    pub window: Duration,
    pub lockout: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            max_failures: 20,
            window: Duration::from_secs(300),
            lockout: Duration::from_secs(600),
        }
    }
}

/// The lockout unit of a client address: the IPv4 address (IPv4-mapped
/// IPv6 included), or the /64 of an IPv6 address, since one host usually
/// holds a whole /64.
pub fn client_group(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    window_start: Instant,
    failures: u32,
    locked_until: Option<Instant>,
}

impl Record {
    fn locked_at(&self, now: Instant) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }

    /// Neither locked nor holding failures that still count.
    fn expired(&self, now: Instant, window: Duration) -> bool {
        !self.locked_at(now)
            && (self.failures == 0 || now.duration_since(self.window_start) >= window)
    }
}

pub struct AuthThrottle {
    policy: ThrottlePolicy,
    capacity: usize,
    records: Mutex<HashMap<IpAddr, Record>>,
}

impl AuthThrottle {
    pub fn new(policy: ThrottlePolicy, capacity: usize) -> Self {
        AuthThrottle {
            policy,
            capacity: capacity.max(1),
            records: Mutex::new(HashMap::new()),
        }
    }

    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Record>> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How long `ip`'s group stays locked out after `now`, if it is.
    pub fn locked_for(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let records = self.records();
        let until = records.get(&client_group(ip))?.locked_until?;
        (until > now).then(|| until.duration_since(now))
    }

    /// Counts a failed authentication from `ip`; returns whether it starts
    /// a lockout.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) -> bool {
        let group = client_group(ip);
        let mut records = self.records();
        if !records.contains_key(&group) && records.len() >= self.capacity {
            self.evict(&mut records, now);
        }
        let record = records.entry(group).or_insert(Record {
            window_start: now,
            failures: 0,
            locked_until: None,
        });
        if record.failures == 0 || now.duration_since(record.window_start) >= self.policy.window {
            record.window_start = now;
            record.failures = 0;
        }
        record.failures = record.failures.saturating_add(1);
        if record.failures < self.policy.max_failures {
            return false;
        }
        record.failures = 0;
        record.locked_until = Some(now.checked_add(self.policy.lockout).unwrap_or(now));
        true
    }

    /// Addresses currently tracked.
    pub fn tracked(&self) -> usize {
        self.records().len()
    }

    /// Makes room: drops expired records, then, if still full, a tenth of
    /// the capacity (so that a flood does not pay a scan per request),
    /// unlocked records before locked ones, oldest first.
    fn evict(&self, records: &mut HashMap<IpAddr, Record>, now: Instant) {
        let window = self.policy.window;
        records.retain(|_, r| !r.expired(now, window));
        if records.len() < self.capacity {
            return;
        }
        let mut order: Vec<(bool, Instant, IpAddr)> = records
            .iter()
            .map(|(ip, r)| match r.locked_until {
                Some(until) if until > now => (true, until, *ip),
                _ => (false, r.window_start, *ip),
            })
            .collect();
        let count = (self.capacity / 10).max(1).min(order.len());
        if count < order.len() {
            order.select_nth_unstable(count);
        }
        for (_, _, ip) in order.iter().take(count) {
            records.remove(ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_is_grouped_by_64_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_group(a), client_group(b));
        assert_ne!(client_group(a), client_group(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_group(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }
}

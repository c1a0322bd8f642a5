//! Brute-force throttle for the auth guard (SPEC §2.1): too many failed
//! credentials from one client IP, or for one key, within a window locks
//! that IP or key out for a while. Counted per Envoy process.

/// The lockout unit of a client address: the IPv4 address, or the /64 of an
/// IPv6 address (one host usually holds a whole /64).
pub fn client_group(ip: &str) -> String {
    match ip.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Err(_) => ip.to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub max_failures: u32,
    pub window_ms: i64,
    pub lockout_ms: i64,
}

/// The failure record of one IP or key, stored in shared data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureWindow {
    pub window_start_ms: i64,
    pub failures: u32,
    pub locked_until_ms: i64,
}

impl FailureWindow {
    /// Seconds until the lockout ends, if locked at `now_ms`.
    pub fn locked_for_secs(&self, now_ms: i64) -> Option<u64> {
        let left = self.locked_until_ms - now_ms;
        (left > 0).then(|| (left as u64).div_ceil(1000))
    }

    /// Counts one failure; locks when the count reaches the maximum within
    /// the window.
    pub fn record_failure(&mut self, now_ms: i64, policy: &LockoutPolicy) {
        if now_ms - self.window_start_ms >= policy.window_ms || self.failures == 0 {
            self.window_start_ms = now_ms;
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures >= policy.max_failures {
            self.locked_until_ms = now_ms.saturating_add(policy.lockout_ms);
            self.failures = 0;
        }
    }

    pub fn to_bytes(self) -> [u8; 20] {
        let mut out = [0u8; 20];
        out[..8].copy_from_slice(&self.window_start_ms.to_le_bytes());
        out[8..12].copy_from_slice(&self.failures.to_le_bytes());
        out[12..].copy_from_slice(&self.locked_until_ms.to_le_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> FailureWindow {
        let i64_at = |r: std::ops::Range<usize>| {
            bytes.get(r).and_then(|b| b.try_into().ok()).map(i64::from_le_bytes).unwrap_or(0)
        };
        let failures = bytes.get(8..12).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes).unwrap_or(0);
        FailureWindow { window_start_ms: i64_at(0..8), failures, locked_until_ms: i64_at(12..20) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: LockoutPolicy = LockoutPolicy { max_failures: 20, window_ms: 300_000, lockout_ms: 600_000 };

    #[test]
    fn locks_on_the_twentieth_failure_within_the_window() {
        let mut w = FailureWindow::default();
        for i in 0..19 {
            w.record_failure(1_000 + i * 1000, &POLICY);
            assert_eq!(w.locked_for_secs(1_000 + i * 1000), None);
        }
        w.record_failure(30_000, &POLICY);
        assert_eq!(w.locked_for_secs(30_000), Some(600));
        assert_eq!(w.locked_for_secs(30_000 + 599_001), Some(1));
        assert_eq!(w.locked_for_secs(30_000 + 600_000), None);
    }

    #[test]
    fn failures_outside_the_window_start_over() {
        let mut w = FailureWindow::default();
        for i in 0..19 {
            w.record_failure(i, &POLICY);
        }
        w.record_failure(300_000, &POLICY);
        assert_eq!(w.failures, 1);
        assert_eq!(w.locked_for_secs(300_000), None);
    }

    #[test]
    fn ipv6_clients_are_grouped_by_64() {
        assert_eq!(client_group("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(client_group("2001:db8:1:2:bbbb::9"), "2001:db8:1:2::/64");
        assert_eq!(client_group("::ffff:10.0.0.1"), "10.0.0.1");
        assert_eq!(client_group("127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn bytes_round_trip() {
        let w = FailureWindow { window_start_ms: 42, failures: 7, locked_until_ms: -3 };
        assert_eq!(FailureWindow::from_bytes(&w.to_bytes()), w);
        assert_eq!(FailureWindow::from_bytes(b"short"), FailureWindow::default());
    }
}

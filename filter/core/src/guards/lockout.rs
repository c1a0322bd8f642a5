//! Brute-force throttle for the auth guard (SPEC §2.1): too many failed
//! credentials from one client address, or for one key, within a window lock
//! that address or key out for a while. The same records count how many
//! audit rows of rejected unauthenticated requests each address has had this
//! minute, so a guessing attack cannot fill the audit log.
//!
//! Records live in shared data, so every worker of an Envoy process counts
//! together. Memory is fixed: subjects are hashed into a fixed number of
//! buckets of a few records each; a full bucket evicts its least useful
//! record (never a locked one while an unlocked one is there).

use std::hash::{DefaultHasher, Hash, Hasher};

use crate::shared::{self, SharedData};

/// Records per bucket.
pub const BUCKET_SLOTS: usize = 4;
const RECORD_BYTES: usize = 36;

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

/// Who a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    /// A client address (grouped by [`client_group`]).
    Client(&'a str),
    /// A key, by its hash.
    Key(&'a str),
}

/// The failure record of one client address or key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureWindow {
    pub window_start_ms: i64,
    pub failures: u32,
    pub locked_until_ms: i64,
}

impl FailureWindow {
    /// Seconds until the lockout ends, if locked at `now_ms`.
    pub fn locked_for_secs(&self, now_ms: i64) -> Option<u64> {
        let left = self.locked_until_ms.saturating_sub(now_ms);
        (left > 0).then(|| (left as u64).div_ceil(1000))
    }

    /// Counts one failure; locks when the count reaches the maximum within
    /// the window.
    pub fn record_failure(&mut self, now_ms: i64, policy: &LockoutPolicy) {
        if now_ms.saturating_sub(self.window_start_ms) >= policy.window_ms || self.failures == 0 {
            self.window_start_ms = now_ms;
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures >= policy.max_failures {
            self.locked_until_ms = now_ms.saturating_add(policy.lockout_ms);
            self.failures = 0;
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Record {
    fingerprint: u64,
    window: FailureWindow,
    /// Minute (unix ms / 60 000) of `logged`.
    logged_minute: i64,
    /// Audit rows written for this subject in `logged_minute`.
    logged: u32,
}

impl Record {
    fn last_seen_ms(&self) -> i64 {
        self.window.window_start_ms.max(self.logged_minute.saturating_mul(60_000))
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.fingerprint.to_le_bytes());
        out.extend_from_slice(&self.window.window_start_ms.to_le_bytes());
        out.extend_from_slice(&self.window.failures.to_le_bytes());
        out.extend_from_slice(&self.window.locked_until_ms.to_le_bytes());
        // Minutes since the epoch fit 32 bits for eight thousand years.
        out.extend_from_slice(&(self.logged_minute as u32).to_le_bytes());
        out.extend_from_slice(&self.logged.to_le_bytes());
    }

    fn read(bytes: &[u8]) -> Option<Record> {
        let u64_at = |at: usize| bytes.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
        let u32_at = |at: usize| bytes.get(at..at + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
        Some(Record {
            fingerprint: u64_at(0)?,
            window: FailureWindow {
                window_start_ms: u64_at(8)? as i64,
                failures: u32_at(16)?,
                locked_until_ms: u64_at(20)? as i64,
            },
            logged_minute: i64::from(u32_at(28)?),
            logged: u32_at(32)?,
        })
    }
}

fn read_bucket(bytes: Option<&[u8]>) -> Vec<Record> {
    bytes
        .unwrap_or_default()
        .chunks_exact(RECORD_BYTES)
        .filter_map(Record::read)
        .take(BUCKET_SLOTS)
        .collect()
}

fn write_bucket(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len() * RECORD_BYTES);
    for r in records {
        r.write(&mut out);
    }
    out
}

/// The client and key records of one Envoy process, in shared data.
#[derive(Debug, Clone)]
pub struct ClientTable {
    /// Mixed into every fingerprint (the same for all VMs of a process), so
    /// nobody can pick subjects that collide on purpose.
    seed: String,
    buckets: u32,
}

impl ClientTable {
    pub fn new(seed: &str, buckets: u32) -> ClientTable {
        ClientTable { seed: seed.to_string(), buckets: buckets.max(1) }
    }

    fn locate(&self, subject: Subject<'_>) -> (String, u64) {
        let mut h = DefaultHasher::new();
        self.seed.hash(&mut h);
        match subject {
            Subject::Client(ip) => ("c", client_group(ip)).hash(&mut h),
            Subject::Key(hash) => ("k", hash).hash(&mut h),
        }
        let fingerprint = h.finish().max(1);
        let (kind, bucket) = match subject {
            Subject::Client(_) => ("client", fingerprint % u64::from(self.buckets)),
            Subject::Key(_) => ("key", fingerprint % u64::from(self.buckets)),
        };
        (format!("hubgate.lockout.{kind}.{bucket}"), fingerprint)
    }

    fn find(&self, store: &dyn SharedData, subject: Subject<'_>) -> Option<Record> {
        let (key, fingerprint) = self.locate(subject);
        let (bytes, _) = store.get(&key);
        read_bucket(bytes.as_deref()).into_iter().find(|r| r.fingerprint == fingerprint)
    }

    /// Changes the record of `subject` (creating it, evicting another if the
    /// bucket is full). `None` when shared data stayed contended.
    fn change<T>(
        &self,
        store: &dyn SharedData,
        subject: Subject<'_>,
        now_ms: i64,
        mut change: impl FnMut(&mut Record) -> T,
    ) -> Option<T> {
        let (key, fingerprint) = self.locate(subject);
        shared::update(store, &key, |current| {
            let mut records = read_bucket(current);
            let at = match records.iter().position(|r| r.fingerprint == fingerprint) {
                Some(at) => at,
                None if records.len() < BUCKET_SLOTS => {
                    records.push(Record::default());
                    records.len() - 1
                }
                None => evictee(&records, now_ms),
            };
            let result = match records.get_mut(at) {
                Some(record) => {
                    if record.fingerprint != fingerprint {
                        *record = Record { fingerprint, ..Record::default() };
                    }
                    Some(change(record))
                }
                None => None,
            };
            (result, write_bucket(&records))
        })
        .flatten()
    }

    /// Seconds left of a lockout on `subject`, if any.
    pub fn locked_for_secs(&self, store: &dyn SharedData, subject: Subject<'_>, now_ms: i64) -> Option<u64> {
        self.find(store, subject)?.window.locked_for_secs(now_ms)
    }

    /// Counts a failed credential against `subject`. False when it could not
    /// be recorded (shared data contended).
    pub fn record_failure(
        &self,
        store: &dyn SharedData,
        subject: Subject<'_>,
        now_ms: i64,
        policy: &LockoutPolicy,
    ) -> bool {
        self.change(store, subject, now_ms, |r| r.window.record_failure(now_ms, policy)).is_some()
    }

    /// Whether a rejected unauthenticated request from `client` may still
    /// get an audit row this minute (at most `per_minute` per address);
    /// counts it if so.
    pub fn take_audit_row(&self, store: &dyn SharedData, client: &str, now_ms: i64, per_minute: u32) -> bool {
        let minute = now_ms.div_euclid(60_000);
        self.change(store, Subject::Client(client), now_ms, |r| {
            if r.logged_minute != minute {
                r.logged_minute = minute;
                r.logged = 0;
            }
            if r.logged < per_minute {
                r.logged += 1;
                true
            } else {
                false
            }
        })
        .unwrap_or(false)
    }
}

/// The record to give up in a full bucket: an unlocked one seen longest ago,
/// else the lock that ends first.
fn evictee(records: &[Record], now_ms: i64) -> usize {
    let unlocked = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.window.locked_until_ms <= now_ms)
        .min_by_key(|(_, r)| r.last_seen_ms());
    match unlocked {
        Some((at, _)) => at,
        None => records.iter().enumerate().min_by_key(|(_, r)| r.window.locked_until_ms).map_or(0, |(at, _)| at),
    }
}

/// A per-process cap: at most `per_minute` audit rows of rejected
/// unauthenticated requests per minute, over all addresses. The value under
/// `key` is (minute, count).
pub fn take_global_audit_row(store: &dyn SharedData, key: &str, now_ms: i64, per_minute: u32) -> bool {
    let minute = now_ms.div_euclid(60_000);
    shared::update(store, key, |current| {
        let read = |at: usize| {
            current.and_then(|c| c.get(at..at + 8)).and_then(|b| b.try_into().ok()).map_or(0, i64::from_le_bytes)
        };
        let count = if read(0) == minute { read(8) } else { 0 };
        let allowed = count < i64::from(per_minute);
        let next = if allowed { count + 1 } else { count };
        let mut out = minute.to_le_bytes().to_vec();
        out.extend_from_slice(&next.to_le_bytes());
        (allowed, out)
    })
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::FakeShared;

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
    fn record_bytes_round_trip() {
        let r = Record {
            fingerprint: 9,
            window: FailureWindow { window_start_ms: 42, failures: 7, locked_until_ms: 1_800_000_000_000 },
            logged_minute: 29_000_000,
            logged: 3,
        };
        let mut bytes = Vec::new();
        r.write(&mut bytes);
        assert_eq!(bytes.len(), RECORD_BYTES);
        assert_eq!(Record::read(&bytes), Some(r));
        assert_eq!(read_bucket(Some(b"short")), Vec::new());
    }

    #[test]
    fn a_key_is_locked_for_every_worker_sharing_the_store() {
        let store = FakeShared::default();
        let worker_a = ClientTable::new("seed", 64);
        let worker_b = ClientTable::new("seed", 64);
        for i in 0..19 {
            let worker = if i % 2 == 0 { &worker_a } else { &worker_b };
            assert!(worker.record_failure(&store, Subject::Key("abc"), 1000 + i, &POLICY));
        }
        assert_eq!(worker_a.locked_for_secs(&store, Subject::Key("abc"), 2000), None);
        worker_b.record_failure(&store, Subject::Key("abc"), 2000, &POLICY);
        assert_eq!(worker_a.locked_for_secs(&store, Subject::Key("abc"), 2000), Some(600));
        assert_eq!(worker_b.locked_for_secs(&store, Subject::Key("abc"), 2000), Some(600));
        // The client address and other keys are not affected.
        assert_eq!(worker_a.locked_for_secs(&store, Subject::Key("abd"), 2000), None);
        assert_eq!(worker_a.locked_for_secs(&store, Subject::Client("abc"), 2000), None);
    }

    #[test]
    fn memory_stays_fixed_for_a_hundred_thousand_addresses() {
        let store = FakeShared::default();
        let table = ClientTable::new("seed", 256);
        for i in 0..100_000u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            table.record_failure(&store, Subject::Client(&ip), i64::from(i), &POLICY);
        }
        assert!(store.len() <= 256, "{} keys", store.len());
        assert!(store.bytes() <= 256 * (32 + BUCKET_SLOTS * RECORD_BYTES), "{} bytes", store.bytes());
    }

    #[test]
    fn a_full_bucket_keeps_its_locked_records() {
        let store = FakeShared::default();
        // One bucket: every subject competes for the same slots.
        let table = ClientTable::new("seed", 1);
        for _ in 0..20 {
            table.record_failure(&store, Subject::Client("192.0.2.1"), 1000, &POLICY);
        }
        assert_eq!(table.locked_for_secs(&store, Subject::Client("192.0.2.1"), 1000), Some(600));
        for i in 0..1000 {
            let ip = format!("198.51.100.{}", i % 250);
            table.record_failure(&store, Subject::Client(&ip), 2000 + i, &POLICY);
        }
        assert_eq!(table.locked_for_secs(&store, Subject::Client("192.0.2.1"), 5000), Some(596));
    }

    #[test]
    fn audit_rows_per_address_per_minute() {
        let store = FakeShared::default();
        let table = ClientTable::new("seed", 64);
        let allowed = (0..10).filter(|_| table.take_audit_row(&store, "192.0.2.7", 60_000, 3)).count();
        assert_eq!(allowed, 3);
        assert!(table.take_audit_row(&store, "192.0.2.8", 60_000, 3), "another address has its own count");
        assert!(table.take_audit_row(&store, "192.0.2.7", 120_000, 3), "a new minute starts over");
        // Counting audit rows does not count failures.
        assert_eq!(table.locked_for_secs(&store, Subject::Client("192.0.2.7"), 120_000), None);
    }

    #[test]
    fn global_audit_cap_per_minute() {
        let store = FakeShared::default();
        let allowed = (0..10).filter(|_| take_global_audit_row(&store, "g", 60_000, 4)).count();
        assert_eq!(allowed, 4);
        assert!(take_global_audit_row(&store, "g", 120_000, 4));
    }
}

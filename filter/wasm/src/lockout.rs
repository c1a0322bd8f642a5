//! Storage of the brute-force counters. Per client address (IPv6 by /64):
//! in shared data, so every worker of this Envoy sees the same count. Per
//! key: in this VM, bounded, since every random key is a new entry and must
//! not grow shared memory.

use std::cell::RefCell;
use std::collections::HashMap;

use hubgate_core::guards::lockout::{client_group, FailureWindow, LockoutPolicy};

use crate::host;

/// Per-VM key counters beyond this are dropped wholesale.
const KEYS_MAX: usize = 10_000;

#[derive(Default)]
pub struct Lockout {
    keys: RefCell<HashMap<String, FailureWindow>>,
}

fn ip_key(ip: &str) -> String {
    format!("hubgate.lockout.ip.{}", client_group(ip))
}

impl Lockout {
    /// Seconds left of a lockout on this client or key, if any.
    pub fn locked_for_secs(&self, ip: Option<&str>, key_hash: Option<&str>, now_ms: i64) -> Option<u64> {
        let by_ip = ip.and_then(|ip| {
            let (bytes, _) = host::shared_get(&ip_key(ip));
            FailureWindow::from_bytes(&bytes?).locked_for_secs(now_ms)
        });
        let by_key = key_hash.and_then(|h| self.keys.borrow().get(h).and_then(|w| w.locked_for_secs(now_ms)));
        by_ip.into_iter().chain(by_key).max()
    }

    pub fn record_failure(&self, ip: Option<&str>, key_hash: Option<&str>, now_ms: i64, policy: &LockoutPolicy) {
        if let Some(ip) = ip {
            let stored = host::shared_update(&ip_key(ip), |current| {
                let mut window = current.map(FailureWindow::from_bytes).unwrap_or_default();
                window.record_failure(now_ms, policy);
                ((), window.to_bytes().to_vec())
            });
            if stored.is_none() {
                log::warn!("could not record an auth failure for a client address");
            }
        }
        if let Some(hash) = key_hash {
            let mut keys = self.keys.borrow_mut();
            if keys.len() >= KEYS_MAX && !keys.contains_key(hash) {
                keys.clear();
            }
            keys.entry(hash.to_string()).or_default().record_failure(now_ms, policy);
        }
    }
}

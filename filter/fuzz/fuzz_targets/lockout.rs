//! Brute-force lockout and audit-row throttling in shared data:
//! `guards::lockout::ClientTable` (and `take_global_audit_row`) over an
//! in-memory `shared::FakeShared`, driven by a sequence of operations on
//! client addresses and key hashes from the input, optionally starting from
//! arbitrary bytes in every shared-data slot (a corrupt or foreign-format
//! record left by another filter build). Also `client_group` on every
//! address.
//!
//! Input: buckets byte (1-4), max_failures byte, window and lockout seconds
//! (u16 LE each), per-client and global audit rows per minute (a byte each),
//! start time (u64 LE, reduced below year 10000), flags byte (bit 0:
//! corrupt slots), op count byte (low 6 bits) and that many ops (op byte,
//! clock step u16 LE in 100 ms), then lines: the slot bytes when bit 0 is
//! set, then subjects (addresses / key hashes).
#![no_main]

use hubgate_core::config::PluginConfig;
use hubgate_core::guards::lockout::{client_group, take_global_audit_row, ClientTable, Subject};
use hubgate_core::shared::{FakeShared, SharedData};
use hubgate_fuzz::{check, lossy, Input};
use libfuzzer_sys::fuzz_target;

/// 9999-12-31 in unix milliseconds.
const MAX_NOW_MS: u64 = 253_402_300_799_000;
const GLOBAL: &str = "hubgate.audit.global";

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let buckets = u32::from(input.byte() % 4) + 1;
    let config = PluginConfig {
        lockout_max_failures: u32::from(input.byte()).max(1),
        lockout_window_secs: u64::from(input.u16()).max(1),
        lockout_secs: u64::from(input.u16()),
        ..PluginConfig::default()
    };
    let policy = config.lockout_policy();
    let per_client = u32::from(input.byte());
    let per_minute = u32::from(input.byte());
    let mut now = (input.u64() % MAX_NOW_MS) as i64;
    let corrupt = input.byte() & 1 == 1;
    let ops: Vec<(u8, u16)> = (0..input.byte() & 63).map(|_| (input.byte(), input.u16())).collect();

    let store = FakeShared::default();
    if corrupt {
        let slot = input.line();
        for kind in ["client", "key"] {
            for b in 0..buckets {
                let _ = store.set(&format!("hubgate.lockout.{kind}.{b}"), slot, None);
            }
        }
        let _ = store.set(GLOBAL, slot, None);
    }
    let mut subjects: Vec<String> = Vec::new();
    while !input.rest().is_empty() {
        subjects.push(lossy(input.line()));
    }
    if subjects.is_empty() {
        subjects.push("127.0.0.1".to_string());
    }
    for s in &subjects {
        check_group(s);
    }

    let table = ClientTable::new("seed", buckets);
    let max_secs = u64::try_from(policy.lockout_ms).unwrap_or(0).div_ceil(1000);
    let (mut minute, mut global_rows) = (now.div_euclid(60_000), 0u32);
    for (op, step) in ops {
        now = (now + i64::from(step) * 100).min(MAX_NOW_MS as i64);
        let subject = subjects.get(usize::from(op >> 3) % subjects.len()).map_or("", String::as_str);
        match op & 7 {
            0 | 1 => {
                let recorded = table.record_failure(&store, Subject::Client(subject), now, &policy);
                if recorded && !corrupt && policy.max_failures == 1 && policy.lockout_ms > 0 {
                    let locked = table.locked_for_secs(&store, Subject::Client(subject), now);
                    check(locked.is_some(), "not locked after max_failures", &(subject, policy));
                }
            }
            2 => {
                let _ = table.record_failure(&store, Subject::Key(subject), now, &policy);
            }
            3 | 4 => {
                let who = if op & 7 == 3 { Subject::Client(subject) } else { Subject::Key(subject) };
                if let Some(secs) = table.locked_for_secs(&store, who, now) {
                    check(secs > 0, "locked for zero seconds", &(subject, now));
                    check(corrupt || secs <= max_secs, "locked longer than the policy", &(subject, now, secs, policy));
                }
            }
            5 => {
                let _ = table.take_audit_row(&store, subject, now, per_client);
            }
            _ => {
                if now.div_euclid(60_000) != minute {
                    minute = now.div_euclid(60_000);
                    global_rows = 0;
                }
                if take_global_audit_row(&store, GLOBAL, now, per_minute) {
                    global_rows += 1;
                }
                check(corrupt || global_rows <= per_minute, "more audit rows than allowed per minute", &(global_rows, per_minute));
            }
        }
    }
});

fn check_group(address: &str) {
    let group = client_group(address);
    match address.parse::<std::net::Ipv6Addr>() {
        Ok(v6) if v6.to_ipv4_mapped().is_none() => {
            check(group.ends_with("::/64"), "IPv6 client not grouped by /64", &(address, &group));
        }
        Ok(_) => check(group.parse::<std::net::Ipv4Addr>().is_ok(), "mapped IPv4 not unwrapped", &(address, &group)),
        Err(_) => check(group == address, "a non-IPv6 client address changed", &(address, &group)),
    }
}

//! Requests whose key is still being resolved (one callout) have their body
//! buffered meanwhile. Each client address may wait on only a few distinct
//! keys at once per worker, so made-up keys cannot make Envoy buffer many
//! large bodies in parallel; a burst of requests with one new key (a client
//! starting up) waits together, up to a bound. The rest get 429 right away.

use std::collections::HashMap;

use super::lockout::client_group;
use crate::reply::LocalReply;

/// Requests of one address that may wait on the same key.
pub const MAX_WAITING_PER_KEY: u32 = 16;

#[derive(Debug, Default)]
pub struct PendingAuth {
    /// Per client group: requests waiting per key hash.
    by_client: HashMap<String, HashMap<String, u32>>,
}

impl PendingAuth {
    /// Counts one more request of `client` waiting on `key_hash`; refuses
    /// past `max_keys` distinct keys, or `MAX_WAITING_PER_KEY` on one key.
    pub fn acquire(&mut self, client: &str, key_hash: &str, max_keys: u32) -> Result<(), LocalReply> {
        let keys = self.by_client.entry(client_group(client)).or_default();
        let full = match keys.get(key_hash) {
            Some(waiting) => *waiting >= MAX_WAITING_PER_KEY,
            None => keys.len() >= max_keys as usize,
        };
        if full {
            if keys.is_empty() {
                self.by_client.remove(&client_group(client));
            }
            return Err(LocalReply::new(
                429,
                "auth_pending_limit",
                "Too many requests from this address are waiting for their API key to be checked. Retry in a moment.",
            )
            .with_header("retry-after", "1"));
        }
        *keys.entry(key_hash.to_string()).or_insert(0) += 1;
        Ok(())
    }

    pub fn release(&mut self, client: &str, key_hash: &str) {
        let group = client_group(client);
        let Some(keys) = self.by_client.get_mut(&group) else { return };
        if let Some(waiting) = keys.get_mut(key_hash) {
            *waiting = waiting.saturating_sub(1);
            if *waiting == 0 {
                keys.remove(key_hash);
            }
        }
        if keys.is_empty() {
            self.by_client.remove(&group);
        }
    }

    /// Addresses with waiting requests (the map never holds others).
    pub fn clients(&self) -> usize {
        self.by_client.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_distinct_keys_per_address_then_429() {
        let mut p = PendingAuth::default();
        for k in ["k1", "k2", "k3", "k4"] {
            p.acquire("192.0.2.1", k, 4).unwrap();
        }
        let refused = p.acquire("192.0.2.1", "k5", 4).unwrap_err();
        assert_eq!((refused.status, refused.code), (429, "auth_pending_limit"));
        p.acquire("192.0.2.2", "k5", 4).unwrap();
        p.release("192.0.2.1", "k1");
        p.acquire("192.0.2.1", "k5", 4).unwrap();
    }

    #[test]
    fn a_burst_on_one_new_key_waits_together_up_to_a_bound() {
        let mut p = PendingAuth::default();
        for _ in 0..MAX_WAITING_PER_KEY {
            p.acquire("192.0.2.1", "new-key", 1).unwrap();
        }
        assert!(p.acquire("192.0.2.1", "new-key", 1).is_err());
        assert!(p.acquire("192.0.2.1", "other", 1).is_err(), "one distinct key allowed");
    }

    #[test]
    fn released_addresses_leave_the_map() {
        let mut p = PendingAuth::default();
        p.acquire("2001:db8::1", "a", 2).unwrap();
        p.acquire("2001:db8::2", "b", 2).unwrap();
        assert_eq!(p.clients(), 1, "one /64");
        assert!(p.acquire("2001:db8::3", "c", 2).is_err());
        p.release("2001:db8::1", "a");
        p.release("2001:db8::2", "b");
        p.release("2001:db8::2", "b");
        assert_eq!(p.clients(), 0);
    }
}

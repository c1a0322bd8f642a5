//! Requests whose key is still being resolved (one callout) have their body
//! buffered meanwhile. Each client address may have only a few such
//! requests at once per worker, so made-up keys cannot make Envoy buffer
//! many large bodies in parallel; the rest are answered 429 right away.

use std::collections::HashMap;

use super::lockout::client_group;
use crate::reply::LocalReply;

#[derive(Debug, Default)]
pub struct PendingAuth {
    by_client: HashMap<String, u32>,
}

impl PendingAuth {
    /// Counts one more pending request of `client`; refuses past `max`.
    pub fn acquire(&mut self, client: &str, max: u32) -> Result<(), LocalReply> {
        let count = self.by_client.entry(client_group(client)).or_insert(0);
        if *count >= max {
            return Err(LocalReply::new(
                429,
                "auth_pending_limit",
                "Too many requests from this address are waiting for their API key to be checked. Retry in a moment.",
            )
            .with_header("retry-after", "1"));
        }
        *count += 1;
        Ok(())
    }

    pub fn release(&mut self, client: &str) {
        let group = client_group(client);
        if let Some(count) = self.by_client.get_mut(&group) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.by_client.remove(&group);
            }
        }
    }

    /// Addresses with pending requests (the map never holds others).
    pub fn clients(&self) -> usize {
        self.by_client.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_per_address_then_429() {
        let mut p = PendingAuth::default();
        for _ in 0..4 {
            p.acquire("192.0.2.1", 4).unwrap();
        }
        let refused = p.acquire("192.0.2.1", 4).unwrap_err();
        assert_eq!((refused.status, refused.code), (429, "auth_pending_limit"));
        p.acquire("192.0.2.2", 4).unwrap();
        p.release("192.0.2.1");
        p.acquire("192.0.2.1", 4).unwrap();
    }

    #[test]
    fn released_addresses_leave_the_map() {
        let mut p = PendingAuth::default();
        p.acquire("2001:db8::1", 2).unwrap();
        p.acquire("2001:db8::2", 2).unwrap();
        assert_eq!(p.clients(), 1, "one /64");
        p.release("2001:db8::1");
        p.release("2001:db8::2");
        p.release("2001:db8::2");
        assert_eq!(p.clients(), 0);
    }
}

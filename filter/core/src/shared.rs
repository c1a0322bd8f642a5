//! Shared data: one key-value store per Envoy process, seen by every worker
//! VM, with compare-and-swap writes. The wasm glue implements [`SharedData`]
//! with hostcalls; [`FakeShared`] implements it in memory for native tests.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    /// Someone wrote the key since it was read.
    CasMismatch,
    /// Any other host failure.
    Failed,
}

pub trait SharedData {
    /// The value and its CAS token (`None`, `None` when absent).
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes `value`; with `cas`, only if nobody wrote since that read.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError>;
}

/// Read-modify-write with CAS, retried a few times. Returns what `update`
/// returned for the value that was written, or `None` if every attempt lost
/// the race or the host failed.
pub fn update<T>(
    store: &dyn SharedData,
    key: &str,
    mut update: impl FnMut(Option<&[u8]>) -> (T, Vec<u8>),
) -> Option<T> {
    for _ in 0..8 {
        let (current, cas) = store.get(key);
        let (result, next) = update(current.as_deref());
        match store.set(key, &next, cas) {
            Ok(()) => return Some(result),
            Err(SetError::CasMismatch) => continue,
            Err(SetError::Failed) => return None,
        }
    }
    None
}

/// In-memory shared data with Envoy's CAS semantics, for native tests.
#[derive(Default)]
pub struct FakeShared {
    values: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    /// Makes the next N writes with a CAS token fail (a racing writer).
    pub cas_conflicts: Cell<u32>,
}

impl FakeShared {
    pub fn len(&self) -> usize {
        self.values.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.borrow().is_empty()
    }

    /// Bytes held by keys and values.
    pub fn bytes(&self) -> usize {
        self.values.borrow().iter().map(|(k, (v, _))| k.len() + v.len()).sum()
    }
}

impl SharedData for FakeShared {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.values.borrow().get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        let mut values = self.values.borrow_mut();
        let current = values.get(key).map(|(_, c)| *c);
        if let Some(expected) = cas {
            if self.cas_conflicts.get() > 0 {
                self.cas_conflicts.set(self.cas_conflicts.get() - 1);
                return Err(SetError::CasMismatch);
            }
            if current != Some(expected) {
                return Err(SetError::CasMismatch);
            }
        }
        let next = current.map_or(1, |c| c.wrapping_add(1));
        values.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }
}

/// A shared queue of this Envoy process (`register_shared_queue`). Every
/// enqueue wakes the VM that registered it, on another thread: enqueue
/// seldom, in batches.
pub trait SharedQueue {
    fn enqueue(&self, item: &[u8]) -> Result<(), String>;
    /// The oldest item, `None` when empty.
    fn dequeue(&self) -> Result<Option<Vec<u8>>, String>;
}

/// An in-memory queue for native tests.
#[derive(Default)]
pub struct FakeQueue {
    pub items: RefCell<std::collections::VecDeque<Vec<u8>>>,
    /// Makes the next N enqueues fail.
    pub failures: Cell<u32>,
    /// Enqueues done (each one a wake-up in Envoy).
    pub enqueues: Cell<u32>,
}

impl SharedQueue for FakeQueue {
    fn enqueue(&self, item: &[u8]) -> Result<(), String> {
        if self.failures.get() > 0 {
            self.failures.set(self.failures.get() - 1);
            return Err("queue unavailable".to_string());
        }
        self.enqueues.set(self.enqueues.get() + 1);
        self.items.borrow_mut().push_back(item.to_vec());
        Ok(())
    }

    fn dequeue(&self) -> Result<Option<Vec<u8>>, String> {
        Ok(self.items.borrow_mut().pop_front())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_retries_after_a_lost_race() {
        let store = FakeShared::default();
        store.set("k", b"1", None).unwrap();
        store.cas_conflicts.set(3);
        let written = update(&store, "k", |cur| {
            let n: u8 = cur.and_then(|c| c.first()).copied().unwrap_or(0);
            (n, vec![n + 1])
        });
        assert_eq!(written, Some(b'1'));
        assert_eq!(store.get("k").0, Some(vec![b'2']));
    }

    #[test]
    fn update_gives_up_when_always_contended() {
        let store = FakeShared::default();
        store.set("k", b"1", None).unwrap();
        store.cas_conflicts.set(100);
        assert_eq!(update(&store, "k", |_| ((), b"x".to_vec())), None);
        assert_eq!(store.get("k").0, Some(b"1".to_vec()));
    }

    #[test]
    fn stale_cas_token_is_refused() {
        let store = FakeShared::default();
        store.set("k", b"a", None).unwrap();
        let (_, cas) = store.get("k");
        store.set("k", b"b", None).unwrap();
        assert_eq!(store.set("k", b"c", cas), Err(SetError::CasMismatch));
    }
}

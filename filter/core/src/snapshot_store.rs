//! The policy snapshot in shared data: fetched by one VM, compiled and
//! published for all; each VM compiles a version once. A snapshot this
//! filter cannot read (a newer control plane, a bug) is never published,
//! and its version is not fetched again.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use hubgate_wire::PolicySnapshot;

use crate::shared::{self, SharedData};
use crate::snapshot::CompiledSnapshot;

pub const SNAPSHOT_KEY: &str = "hubgate.snapshot";
pub const SNAPSHOT_VERSION_KEY: &str = "hubgate.snapshot.version";

#[derive(Default)]
pub struct SnapshotStore {
    local: RefCell<Option<Rc<CompiledSnapshot>>>,
    rejected: Cell<Option<u64>>,
}

fn read_u64(bytes: Option<&[u8]>) -> u64 {
    bytes.and_then(|b| b.get(..8)).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes)
}

fn compile(body: &[u8]) -> Result<CompiledSnapshot, String> {
    let parsed: PolicySnapshot = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let (compiled, warnings) = CompiledSnapshot::compile(parsed);
    for w in warnings {
        log::warn!("snapshot {}: {w}", compiled.version);
    }
    Ok(compiled)
}

impl SnapshotStore {
    /// The newest published snapshot, compiled once per version in this VM.
    /// `None` until the first one has been fetched.
    pub fn current(&self, shared: &dyn SharedData) -> Option<Rc<CompiledSnapshot>> {
        let published = shared.get(SNAPSHOT_VERSION_KEY).0.map(|b| read_u64(Some(&b)));
        let local = self.local.borrow().clone();
        match (local, published) {
            (Some(local), Some(v)) if local.version >= v => Some(local),
            (local, Some(_)) => self.load(shared).or(local),
            (local, None) => local,
        }
    }

    fn load(&self, shared: &dyn SharedData) -> Option<Rc<CompiledSnapshot>> {
        let stored = shared.get(SNAPSHOT_KEY).0?;
        match compile(stored.get(8..).unwrap_or_default()) {
            Ok(compiled) => {
                let compiled = Rc::new(compiled);
                *self.local.borrow_mut() = Some(compiled.clone());
                Some(compiled)
            }
            Err(e) => {
                log::error!("stored snapshot is unreadable: {e}");
                None
            }
        }
    }

    /// Compiles a snapshot from the control plane and publishes it to every
    /// VM (with its version in one value, by CAS, never older than what is
    /// there; the small version key is raised after it). Its version.
    pub fn publish(&self, shared: &dyn SharedData, body: &[u8]) -> Result<u64, String> {
        #[derive(serde::Deserialize)]
        struct VersionOnly {
            version: u64,
        }
        let v: VersionOnly = serde_json::from_slice(body).map_err(|e| format!("snapshot is not valid: {e}"))?;
        let compiled = compile(body).map_err(|e| {
            self.rejected.set(Some(v.version));
            format!("snapshot {} cannot be read by this filter and is ignored: {e}", v.version)
        })?;
        let mut value = Vec::with_capacity(body.len() + 8);
        value.extend_from_slice(&v.version.to_le_bytes());
        value.extend_from_slice(body);
        let stored = shared::update(shared, SNAPSHOT_KEY, |cur| {
            if cur.is_some_and(|c| read_u64(Some(c)) >= v.version) {
                ((), cur.unwrap_or_default().to_vec())
            } else {
                ((), value.clone())
            }
        });
        if stored.is_none() {
            return Err("cannot store the snapshot (shared data busy)".to_string());
        }
        shared::update(shared, SNAPSHOT_VERSION_KEY, |cur| ((), read_u64(cur).max(v.version).to_le_bytes().to_vec()));
        if self.local.borrow().as_ref().is_none_or(|s| s.version < compiled.version) {
            *self.local.borrow_mut() = Some(Rc::new(compiled));
        }
        Ok(v.version)
    }

    /// The version to ask the control plane about: the newest published, or
    /// a newer one this filter could not read.
    pub fn poll_version(&self, shared: &dyn SharedData) -> Option<u64> {
        let published = shared.get(SNAPSHOT_VERSION_KEY).0.map(|b| read_u64(Some(&b)));
        published.max(self.rejected.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::FakeShared;
    use serde_json::json;

    fn body(version: u64) -> Vec<u8> {
        serde_json::to_vec(&PolicySnapshot { version, key_epoch: 1, ..Default::default() }).unwrap()
    }

    #[test]
    fn one_vm_publishes_every_vm_reads() {
        let shared = FakeShared::default();
        let (a, b) = (SnapshotStore::default(), SnapshotStore::default());
        assert!(b.current(&shared).is_none());
        assert_eq!(a.publish(&shared, &body(3)), Ok(3));
        assert_eq!(b.current(&shared).map(|s| s.version), Some(3));
        assert_eq!(b.poll_version(&shared), Some(3));
    }

    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() {
        let shared = FakeShared::default();
        let a = SnapshotStore::default();
        a.publish(&shared, &body(5)).unwrap();
        a.publish(&shared, &body(4)).unwrap();
        assert_eq!(SnapshotStore::default().current(&shared).map(|s| s.version), Some(5));
        assert_eq!(a.current(&shared).map(|s| s.version), Some(5));
    }

    #[test]
    fn an_unreadable_snapshot_is_not_published_nor_fetched_again() {
        let shared = FakeShared::default();
        let a = SnapshotStore::default();
        a.publish(&shared, &body(5)).unwrap();
        let mut newer: serde_json::Value = serde_json::from_slice(&body(6)).unwrap();
        newer["providers"] = json!([{"id": 1, "type": "a-type-from-the-future"}]);
        let err = a.publish(&shared, &serde_json::to_vec(&newer).unwrap()).unwrap_err();
        assert!(err.contains("snapshot 6"), "{err}");
        assert_eq!(SnapshotStore::default().current(&shared).map(|s| s.version), Some(5), "still the last good one");
        assert_eq!(a.poll_version(&shared), Some(6), "6 is not asked for again");
    }
}

//! State of one VM (one Envoy worker thread), shared by its root context
//! and every HTTP context it creates.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use hubgate_core::chain::{Host, VmState};
use hubgate_core::config::PluginConfig;
use hubgate_core::events::Outbox;
use hubgate_core::shared::SharedData;
use hubgate_core::snapshot::CompiledSnapshot;
use hubgate_core::snapshot_store::SnapshotStore;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::events::Queue;
use crate::host;

/// Items are batches (see `hubgate_core::events`); the name changed with
/// the format, so a filter of the older one-event format loaded beside this
/// one in the same Envoy never reads them.
pub const EVENT_QUEUE: &str = "hubgate.events.v2";

pub struct Vm {
    /// Configuration and what the guards keep between requests.
    pub state: VmState,
    /// Bearer token of the control plane's internal API, from the
    /// environment variable the config names.
    internal_token: String,
    snapshots: SnapshotStore,
    /// Unique per VM in this process and across processes; prefixes event ids.
    id_prefix: String,
    /// This Envoy process, as the control plane knows it (quota leases).
    pub instance: String,
    event_seq: Cell<u64>,
    /// The process's event queue, and this VM's events on their way to it.
    pub queue: Queue,
    pub outbox: Outbox,
    pub metrics: Metrics,
}

impl Vm {
    /// Fails when the internal token's environment variable is missing.
    pub fn new(config: PluginConfig) -> Result<Vm, String> {
        let internal_token = host::env_var(&config.internal_token_env)
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| {
                format!(
                    "environment variable {} (the control plane's internal token) is not set for the VM; \
                     list it in vm_config.environment_variables.host_env_keys",
                    config.internal_token_env
                )
            })?;
        let queue_id = hostcalls::register_shared_queue(EVENT_QUEUE).unwrap_or(0);
        Ok(Vm::build(config, internal_token, queue_id))
    }

    /// The VM state of the attempt filter (attempt.rs): it reads the
    /// published snapshot and never calls the control plane.
    pub fn for_attempts() -> Vm {
        Vm::build(PluginConfig::default(), String::new(), 0)
    }

    fn build(config: PluginConfig, internal_token: String, queue_id: u32) -> Vm {
        let nonce = process_nonce();
        let index = host::shared_update("hubgate.vm.seq", |cur| {
            let next = read_u64(cur) + 1;
            (next, next.to_le_bytes().to_vec())
        })
        .unwrap_or_else(|| (host::now_ns() % 1_000_000) as u64);
        Vm {
            state: VmState::new(config, &nonce),
            internal_token,
            snapshots: SnapshotStore::default(),
            // The index alone could repeat if two VMs start at the same
            // instant (a first CAS write is unconditional); the start time
            // makes that harmless.
            id_prefix: format!("{nonce}-{index}-{:x}", host::now_ns() % 0xffff_ffff),
            instance: nonce,
            event_seq: Cell::new(0),
            queue: Queue(queue_id),
            outbox: Outbox::default(),
            metrics: Metrics::default(),
        }
    }

    pub fn config(&self) -> &PluginConfig {
        &self.state.config
    }

    pub fn next_event_id(&self) -> String {
        let seq = self.event_seq.get() + 1;
        self.event_seq.set(seq);
        format!("{}-{seq}", self.id_prefix)
    }

    /// The newest published snapshot; `None` until the first one arrived.
    pub fn snapshot(&self) -> Option<Rc<CompiledSnapshot>> {
        self.snapshots.current(&host::Shared)
    }

    /// Compiles and publishes a snapshot from the control plane.
    pub fn store_snapshot(&self, body: &[u8]) -> Result<u64, String> {
        self.snapshots.publish(&host::Shared, body)
    }

    /// Starts a call to the control plane's internal API; the answer arrives
    /// in the caller's `on_http_call_response`. A call that cannot start is
    /// counted and logged, and `None` is returned.
    pub fn call_control_plane(
        &self,
        method: &str,
        path: &str,
        extra_header: Option<(&str, &str)>,
        body: Option<&[u8]>,
    ) -> Option<u32> {
        let c = &self.state.config;
        let bearer = format!("Bearer {}", self.internal_token);
        let mut headers = vec![
            (":method", method),
            (":path", path),
            (":authority", c.control_plane_authority.as_str()),
            ("authorization", bearer.as_str()),
        ];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        headers.extend(extra_header);
        match host::dispatch(&c.control_plane_cluster, headers, body, c.callout_timeout_ms) {
            Ok(token) => Some(token),
            Err(e) => {
                self.metrics.inc("hubgate_callout_failures_total");
                log::warn!("cannot call the control plane ({method} {path}): {e:?}");
                None
            }
        }
    }

    pub fn snapshot_version(&self) -> Option<u64> {
        self.snapshots.poll_version(&host::Shared)
    }
}

impl Host for Vm {
    fn now_ms(&self) -> i64 {
        host::now_ms()
    }

    fn seed(&self) -> u64 {
        host::now_ns() as u64
    }

    fn shared(&self) -> &dyn SharedData {
        &host::Shared
    }

    fn count(&self, metric: &str) {
        self.metrics.inc(metric);
    }

    fn count_n(&self, metric: &str, n: u64) {
        self.metrics.add(metric, i64::try_from(n).unwrap_or(i64::MAX));
    }

    #[cfg(feature = "profile")]
    fn now_ns(&self) -> u128 {
        host::now_ns()
    }

    #[cfg(feature = "profile")]
    fn guard_spent(&self, guard: &'static str, ns: u128) {
        crate::profile::guard_spent(guard, ns);
    }
}

/// A random-enough id for this Envoy process, fixed by its first VM.
fn process_nonce() -> String {
    let (existing, _) = host::shared_get("hubgate.process.nonce");
    if let Some(n) = existing.filter(|n| !n.is_empty()) {
        return String::from_utf8_lossy(&n).into_owned();
    }
    let fresh = format!("{:x}", host::now_ns());
    let _ = host::shared_set("hubgate.process.nonce", fresh.as_bytes(), None);
    let (stored, _) = host::shared_get("hubgate.process.nonce");
    stored.map(|n| String::from_utf8_lossy(&n).into_owned()).unwrap_or(fresh)
}

pub fn read_u64(bytes: Option<&[u8]>) -> u64 {
    bytes.and_then(|b| b.get(..8)).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes)
}

/// Envoy counters (shown as `wasmcustom.hubgate_*`).
#[derive(Default)]
pub struct Metrics {
    ids: RefCell<HashMap<String, u32>>,
}

impl Metrics {
    pub fn inc(&self, name: &str) {
        self.add(name, 1);
    }

    pub fn add(&self, name: &str, n: i64) {
        let known = self.ids.borrow().get(name).copied();
        let id = known.or_else(|| {
            let id = hostcalls::define_metric(MetricType::Counter, name).ok()?;
            self.ids.borrow_mut().insert(name.to_string(), id);
            Some(id)
        });
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, n);
        }
    }
}

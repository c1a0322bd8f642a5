//! Root context: configuration, snapshot polling, event delivery and the
//! circuit report.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use hubgate_core::config::PluginConfig;
use hubgate_core::events::{Drain, DROPPED};
use hubgate_core::guards::circuit;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};

use crate::events;
use crate::host;
use crate::http::Http;
use crate::vm::{read_u64, Vm};

const POLL_CLAIM_KEY: &str = "hubgate.poll.claim";

enum Call {
    Snapshot,
    Events { count: usize },
    Circuits,
}

#[derive(Default)]
pub struct Root {
    vm: Option<Rc<Vm>>,
    calls: HashMap<u32, Call>,
    polling: bool,
    /// Events taken off the queue but not yet accepted; they are resent as
    /// they are (same event ids), so delivery is at-least-once and the
    /// control plane deduplicates.
    drain: Drain,
    flushing: bool,
    /// Failures are logged when they start and when they end, not per tick.
    poll_failing: bool,
    flush_failing: bool,
    reporting: bool,
    report_failing: bool,
    /// When the snapshot was last polled and events flushed (the tick is
    /// faster, for the idle watch).
    last_poll_ms: i64,
}

/// The tick that cuts streams past their provider's idle timeout: a cut
/// comes at most this late.
const IDLE_TICK_MS: u64 = 100;

impl Root {
    fn poll_snapshot(&mut self, vm: &Vm) {
        if self.polling {
            return;
        }
        let now = host::now_ms();
        let interval = vm.config().poll_interval_ms as i64;
        // One VM per Envoy process polls per interval; the rest read the result.
        let claimed = host::shared_update(POLL_CLAIM_KEY, |cur| {
            let last = read_u64(cur) as i64;
            if now - last >= interval * 9 / 10 {
                (true, (now as u64).to_le_bytes().to_vec())
            } else {
                (false, cur.unwrap_or_default().to_vec())
            }
        })
        .unwrap_or(false);
        if !claimed {
            return;
        }
        let version = vm.snapshot_version().map(|v| v.to_string()).unwrap_or_default();
        let header = Some((hubgate_wire::SNAPSHOT_VERSION_HEADER, version.as_str()));
        if let Some(token) = vm.call_control_plane("GET", hubgate_wire::SNAPSHOT_PATH, header, None) {
            self.calls.insert(token, Call::Snapshot);
            self.polling = true;
        }
    }

    fn flush_events(&mut self, vm: &Vm) {
        if self.flushing {
            return;
        }
        let batch = self.drain.batch(vm, &vm.queue, &vm.outbox.depth, vm.config().event_batch_max);
        let Some((body, count)) = batch else { return };
        match vm.call_control_plane("POST", hubgate_wire::EVENTS_PATH, None, Some(&body)) {
            Some(token) => {
                self.calls.insert(token, Call::Events { count });
                self.flushing = true;
            }
            None => log::debug!("{count} events wait for the control plane"),
        }
    }
}

impl Root {
    /// Clears circuits reset since they were recorded, and sends the
    /// process's circuit states when they changed or the last report is
    /// old (`circuit::claim_report`): one VM of the process, off the
    /// request path.
    fn report_circuits(&mut self, vm: &Vm) {
        let Some(snapshot) = vm.snapshot() else { return };
        let now = host::now_ms();
        let providers = snapshot.providers.iter().map(|p| (p.provider.id, &p.provider.circuit));
        let circuits = circuit::report(&host::Shared, providers, now);
        if self.reporting || !circuit::claim_report(&host::Shared, &circuits, now) {
            return;
        }
        let report = hubgate_wire::CircuitReport { instance: vm.instance.clone(), now_ms: now, circuits };
        let Ok(body) = serde_json::to_vec(&report) else { return };
        match vm.call_control_plane("POST", hubgate_wire::CIRCUITS_PATH, None, Some(&body)) {
            Some(token) => {
                self.calls.insert(token, Call::Circuits);
                self.reporting = true;
            }
            None => circuit::report_failed(&host::Shared),
        }
    }
}

impl Context for Root {
    /// The plugin is going away (config change, shutdown): this VM's batch
    /// goes on the shared queue, and the events being sent go back on it,
    /// for the next root context.
    fn on_done(&mut self) -> bool {
        if let Some(vm) = &self.vm {
            events::close(vm);
            self.drain.put_back(vm.as_ref(), &vm.queue, &vm.outbox.depth);
        }
        true
    }

    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        let Some(vm) = self.vm.clone() else { return };
        let status = host::call_response_status();
        match self.calls.remove(&token) {
            Some(Call::Snapshot) => {
                self.polling = false;
                let ok = matches!(status, Some(200) | Some(304));
                if ok && self.poll_failing {
                    log::info!("snapshot polling recovered");
                }
                match status {
                    Some(200) => {
                        let body = host::buffer(BufferType::HttpCallResponseBody, body_size);
                        match vm.store_snapshot(&body) {
                            Ok(v) => {
                                log::debug!("snapshot {v} stored");
                                // A circuit reset it carries takes effect now.
                                self.report_circuits(&vm);
                            }
                            Err(e) => log::error!("{e}"),
                        }
                    }
                    Some(304) => {}
                    other => {
                        vm.metrics.inc("hubgate_callout_failures_total");
                        if !self.poll_failing {
                            log::warn!("snapshot poll failed (status {other:?}); serving from the cached policy");
                        }
                    }
                }
                self.poll_failing = !ok;
            }
            Some(Call::Events { count }) => {
                self.flushing = false;
                if status == Some(200) {
                    if self.flush_failing {
                        log::info!("event delivery recovered");
                    }
                    self.flush_failing = false;
                    let count = self.drain.done(vm.as_ref(), &vm.outbox.depth);
                    vm.metrics.add("hubgate_events_sent_total", count as i64);
                    // Keep draining while the queue has more.
                    self.flush_events(&vm);
                } else if matches!(status, Some(400 | 413 | 422)) {
                    // The control plane will never take this batch: retrying
                    // would block delivery for good. Drop it, loudly.
                    let count = self.drain.done(vm.as_ref(), &vm.outbox.depth);
                    vm.metrics.add(DROPPED, count as i64);
                    log::error!("control plane refused an event batch (status {status:?}); {count} events dropped");
                    self.flush_events(&vm);
                } else {
                    vm.metrics.inc("hubgate_callout_failures_total");
                    if !self.flush_failing {
                        log::warn!("event delivery failed (status {status:?}); {count} events kept for retry");
                    }
                    self.flush_failing = true;
                }
            }
            Some(Call::Circuits) => {
                self.reporting = false;
                let ok = matches!(status, Some(200..=299));
                if ok && self.report_failing {
                    log::info!("circuit reports recovered");
                }
                if !ok {
                    vm.metrics.inc("hubgate_callout_failures_total");
                    if !self.report_failing {
                        log::warn!("circuit report failed (status {status:?}); sent again on the next tick");
                    }
                    // A control plane without the route (older version) gets the heartbeat only.
                    if status != Some(404) {
                        circuit::report_failed(&host::Shared);
                    }
                }
                self.report_failing = !ok;
            }
            None => {}
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = host::buffer(BufferType::PluginConfiguration, size);
        match PluginConfig::parse(&bytes) {
            Ok(config) => {
                let tick = Duration::from_millis(config.poll_interval_ms.min(IDLE_TICK_MS));
                // Configured again: the old VM state's events go out first.
                if let Some(old) = self.vm.take() {
                    events::close(&old);
                }
                match Vm::new(config) {
                    Ok(vm) => self.vm = Some(Rc::new(vm)),
                    Err(e) => {
                        log::error!("{e}");
                        return false;
                    }
                }
                if let Err(e) = hostcalls::set_tick_period(tick) {
                    log::error!("cannot set tick period: {e:?}");
                    return false;
                }
                true
            }
            Err(e) => {
                log::error!("{e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(vm) = self.vm.clone() else { return };
        let now = host::now_ms();
        if now - self.last_poll_ms >= vm.config().poll_interval_ms as i64 {
            self.last_poll_ms = now;
            events::flush_local(&vm);
            self.poll_snapshot(&vm);
            self.flush_events(&vm);
            self.report_circuits(&vm);
        }
        // Last: it switches the effective context to the streams it cuts.
        cut_idle_streams(&vm, now);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::new(self.vm.clone(), context_id)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Resets the response streams of this VM that moved no byte for their
/// provider's idle timeout; each one's `on_log` finds it marked as cut.
fn cut_idle_streams(vm: &Vm, now_ms: i64) {
    let expired = {
        let mut idle = vm.state.idle.borrow_mut();
        if idle.is_empty() {
            return;
        }
        idle.expired(now_ms)
    };
    for context_id in expired {
        vm.metrics.inc("hubgate_idle_timeouts_total");
        let reset = hostcalls::set_effective_context(context_id).and_then(|()| hostcalls::reset_http_response());
        if let Err(e) = reset {
            log::warn!("cannot cut an idle stream: {e:?}");
        }
    }
}

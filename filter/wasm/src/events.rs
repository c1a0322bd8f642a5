//! The usage-event queue: HTTP contexts enqueue one event per request into a
//! shared queue; root contexts drain it in batches. A shared counter of
//! undelivered events (queued or in a batch not yet accepted) bounds it;
//! events beyond the bound are dropped and counted.

use hubgate_wire::RequestEvent;
use proxy_wasm::hostcalls;

use crate::host;
use crate::vm::{read_u64, Vm};

const DEPTH_KEY: &str = "hubgate.events.depth";

/// Called once the control plane accepted `count` events.
pub fn delivered(count: usize) {
    add_depth(-(count as i64));
}

fn add_depth(delta: i64) {
    // A lost update would make the bound drift for good: insist.
    for _ in 0..8 {
        let done = host::shared_update(DEPTH_KEY, |cur| {
            let next = (read_u64(cur) as i64 + delta).max(0) as u64;
            ((), next.to_le_bytes().to_vec())
        });
        if done.is_some() {
            return;
        }
    }
    log::warn!("event queue counter stayed contended; its bound may be off by {delta}");
}

pub fn enqueue(vm: &Vm, event: &RequestEvent) {
    // Reserve a place first; the reservation is the bound.
    let max = vm.config().event_queue_max;
    let reserved = host::shared_update(DEPTH_KEY, |cur| {
        let depth = read_u64(cur);
        if depth >= max {
            (false, depth.to_le_bytes().to_vec())
        } else {
            (true, (depth + 1).to_le_bytes().to_vec())
        }
    });
    // `None`: the counter stayed contended; keep the event (the bound is
    // approximate then) rather than lose it.
    if reserved == Some(false) {
        vm.metrics.inc("hubgate_events_dropped_total");
        log::warn!("event queue full, dropped event {}", event.event_id);
        return;
    }
    let release = || {
        if reserved == Some(true) {
            add_depth(-1);
        }
    };
    let bytes = match serde_json::to_vec(event) {
        Ok(b) => b,
        Err(e) => {
            release();
            vm.metrics.inc("hubgate_events_dropped_total");
            log::error!("cannot encode event: {e}");
            return;
        }
    };
    if let Err(e) = hostcalls::enqueue_shared_queue(vm.queue_id, Some(&bytes)) {
        release();
        vm.metrics.inc("hubgate_events_dropped_total");
        log::error!("cannot enqueue event: {e:?}");
    }
}

/// Takes up to `max` events off the queue (each one JSON `RequestEvent`).
pub fn take(vm: &Vm, max: usize) -> Vec<Vec<u8>> {
    let mut taken = Vec::new();
    while taken.len() < max {
        match hostcalls::dequeue_shared_queue(vm.queue_id) {
            Ok(Some(event)) => taken.push(event),
            Ok(None) => break,
            Err(e) => {
                log::warn!("cannot dequeue events: {e:?}");
                break;
            }
        }
    }
    taken
}

/// Puts events back on the queue (a root context going away with a batch
/// it could not deliver). They stay counted as undelivered.
pub fn put_back(vm: &Vm, events: &[Vec<u8>]) {
    for event in events {
        if let Err(e) = hostcalls::enqueue_shared_queue(vm.queue_id, Some(event)) {
            vm.metrics.inc("hubgate_events_dropped_total");
            log::error!("cannot put an event back on the queue: {e:?}");
        }
    }
}

/// The JSON body of an `EventBatch` holding `events`.
pub fn batch_body(events: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::with_capacity(events.iter().map(|e| e.len() + 1).sum::<usize>() + 16);
    body.extend_from_slice(b"{\"events\":[");
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(event);
    }
    body.extend_from_slice(b"]}");
    body
}

//! Usage events: each VM batches its requests' events and puts them on the
//! process's shared queue as one item (`hubgate_core::events::Outbox`);
//! root contexts drain the queue and POST the events (`Drain`, in root.rs).
//! This file only maps the queue onto hostcalls.

use hubgate_core::shared::SharedQueue;
use hubgate_wire::RequestEvent;
use proxy_wasm::hostcalls;

use crate::vm::Vm;

/// The process's event queue, by the id `register_shared_queue` gave.
pub struct Queue(pub u32);

impl SharedQueue for Queue {
    fn enqueue(&self, item: &[u8]) -> Result<(), String> {
        hostcalls::enqueue_shared_queue(self.0, Some(item)).map_err(|e| format!("{e:?}"))
    }

    fn dequeue(&self) -> Result<Option<Vec<u8>>, String> {
        hostcalls::dequeue_shared_queue(self.0).map_err(|e| format!("{e:?}"))
    }
}

/// Adds a request's event to this VM's batch.
pub fn record(vm: &Vm, event: &RequestEvent) {
    match serde_json::to_vec(event) {
        Ok(bytes) => {
            let c = vm.config();
            vm.outbox.push(vm, &vm.queue, bytes, c.event_batch_max, c.event_queue_max);
        }
        Err(e) => {
            vm.metrics.inc(hubgate_core::events::DROPPED);
            log::error!("cannot encode event {}: {e}", event.event_id);
        }
    }
}

/// On the VM's tick: its batch goes on the queue, and a queue-depth change
/// that stayed contended is written.
pub fn flush_local(vm: &Vm) {
    vm.outbox.flush(vm, &vm.queue, vm.config().event_queue_max);
    vm.outbox.depth.settle(vm);
}

/// The VM's root context goes away: its batch goes on the queue, and so
/// does each event of a request still finishing.
pub fn close(vm: &Vm) {
    vm.outbox.close(vm, &vm.queue, vm.config().event_queue_max);
    vm.outbox.depth.settle(vm);
}

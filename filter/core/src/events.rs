//! Usage events on their way to the control plane.
//!
//! Each VM batches its requests' events ([`Outbox`]) and puts them on the
//! process's shared queue as one item of up to [`BATCH_MAX`] events: on its
//! tick, when the batch is full, and when it goes away. (Every enqueue wakes
//! another thread; one per request cost more than the rest of the filter.)
//! The shared [`EventDepth`] counter bounds the queue: events of a batch that
//! do not fit are dropped and counted, the rest are kept.
//!
//! A flusher ([`Drain`]) takes items off the queue and sends their events as
//! one `EventBatch` (one JSON array) per POST, resent as is until accepted.
//!
//! Queue item: [`ITEM_TAG`], the event count (u32 little-endian), then the
//! events' JSON separated by commas.

use std::cell::{Cell, RefCell};

use crate::chain::Host;
use crate::event_depth::EventDepth;
use crate::shared::SharedQueue;

/// Events per queue item, at most.
pub const BATCH_MAX: usize = 32;
pub const ITEM_TAG: u8 = 0x01;
pub const DROPPED: &str = "hubgate_events_dropped_total";

/// An item's event count and its events (comma-separated JSON objects).
/// `None` for bytes that are no item.
pub fn read_item(item: &[u8]) -> Option<(usize, &[u8])> {
    if *item.first()? != ITEM_TAG {
        return None;
    }
    let count = u32::from_le_bytes(item.get(1..5)?.try_into().ok()?);
    let events = item.get(5..)?;
    (count > 0 && !events.is_empty()).then_some((count as usize, events))
}

/// One queue item holding `events` (each one JSON `RequestEvent`).
pub fn make_item(events: &[Vec<u8>]) -> Vec<u8> {
    let len = events.iter().map(|e| e.len() + 1).sum::<usize>() + 5;
    let mut item = Vec::with_capacity(len);
    item.push(ITEM_TAG);
    item.extend_from_slice(&u32::try_from(events.len()).unwrap_or(u32::MAX).to_le_bytes());
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            item.push(b',');
        }
        item.extend_from_slice(event);
    }
    item
}

/// This VM's events not yet on the shared queue.
#[derive(Default)]
pub struct Outbox {
    pending: RefCell<Vec<Vec<u8>>>,
    /// The VM is going away: events go out one by one as they come.
    closed: Cell<bool>,
    pub depth: EventDepth,
}

impl Outbox {
    /// Adds one event (JSON `RequestEvent`); puts the batch on the queue
    /// once it holds `batch_max` (at most [`BATCH_MAX`]) events.
    pub fn push(&self, host: &dyn Host, queue: &dyn SharedQueue, event: Vec<u8>, batch_max: usize, queue_max: u64) {
        let full = {
            let mut pending = self.pending.borrow_mut();
            pending.push(event);
            pending.len() >= batch_max.clamp(1, BATCH_MAX)
        };
        if full || self.closed.get() {
            self.flush(host, queue, queue_max);
        }
    }

    /// Puts the pending events on the queue as one item: as many as the
    /// bound leaves room for; the rest are dropped and counted.
    pub fn flush(&self, host: &dyn Host, queue: &dyn SharedQueue, queue_max: u64) {
        let mut events = std::mem::take(&mut *self.pending.borrow_mut());
        if events.is_empty() {
            return;
        }
        let want = events.len() as u64;
        let room = self.depth.reserve(host, want, queue_max);
        if room < want {
            host.count_n(DROPPED, want - room);
            log::warn!("event queue full, {} events dropped", want - room);
            events.truncate(usize::try_from(room).unwrap_or(usize::MAX));
        }
        if events.is_empty() {
            return;
        }
        if let Err(e) = queue.enqueue(&make_item(&events)) {
            self.depth.release(host, room);
            host.count_n(DROPPED, room);
            log::error!("cannot enqueue {room} events: {e}");
        }
    }

    /// The VM is going away: flushes, and sends later events (requests
    /// still finishing) straight on.
    pub fn close(&self, host: &dyn Host, queue: &dyn SharedQueue, queue_max: u64) {
        self.closed.set(true);
        self.flush(host, queue, queue_max);
    }

    /// Events waiting in this VM.
    pub fn pending(&self) -> usize {
        self.pending.borrow().len()
    }
}

/// A flusher's events taken off the queue and not yet accepted.
#[derive(Default)]
pub struct Drain {
    /// Items of the batch being sent; resent as they are (same event ids)
    /// until accepted: delivery is at-least-once, the control plane
    /// deduplicates.
    unsent: Vec<Vec<u8>>,
    unsent_events: usize,
    /// Taken off the queue but over the batch size: first of the next batch.
    next: Option<Vec<u8>>,
}

impl Drain {
    /// The body and event count of the batch to send: the unsent one, else
    /// a new one of at most `max_events` events (unless one item alone
    /// holds more). `None` when nothing waits.
    pub fn batch(&mut self, host: &dyn Host, queue: &dyn SharedQueue, depth: &EventDepth, max_events: usize) -> Option<(Vec<u8>, usize)> {
        if self.unsent.is_empty() {
            self.fill(host, queue, depth, max_events);
        }
        if self.unsent.is_empty() {
            return None;
        }
        Some((self.body(), self.unsent_events))
    }

    fn fill(&mut self, host: &dyn Host, queue: &dyn SharedQueue, depth: &EventDepth, max_events: usize) {
        loop {
            let item = match self.next.take() {
                Some(item) => item,
                None => match queue.dequeue() {
                    Ok(Some(item)) => item,
                    Ok(None) => return,
                    Err(e) => {
                        log::warn!("cannot dequeue events: {e}");
                        return;
                    }
                },
            };
            let Some((count, _)) = read_item(&item) else {
                // Not ours to read: counted as one event, released.
                depth.release(host, 1);
                host.count(DROPPED);
                log::error!("unreadable event queue item ({} bytes) dropped", item.len());
                continue;
            };
            if !self.unsent.is_empty() && self.unsent_events + count > max_events {
                self.next = Some(item);
                return;
            }
            self.unsent.push(item);
            self.unsent_events += count;
            if self.unsent_events >= max_events {
                return;
            }
        }
    }

    /// The JSON body of an `EventBatch` of the unsent events.
    fn body(&self) -> Vec<u8> {
        let events = self.unsent.iter().filter_map(|item| read_item(item).map(|(_, events)| events));
        let len = self.unsent.iter().map(|i| i.len() + 1).sum::<usize>() + 16;
        let mut body = Vec::with_capacity(len);
        body.extend_from_slice(b"{\"events\":[");
        for (i, events) in events.enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(events);
        }
        body.extend_from_slice(b"]}");
        body
    }

    /// The control plane stored the batch (or refused it for good: then
    /// count it as dropped first).
    pub fn done(&mut self, host: &dyn Host, depth: &EventDepth) -> usize {
        let count = self.unsent_events;
        self.unsent.clear();
        self.unsent_events = 0;
        depth.release(host, count as u64);
        count
    }

    /// The flusher goes away: what it holds goes back on the queue for
    /// another one (still counted as undelivered).
    pub fn put_back(&mut self, host: &dyn Host, queue: &dyn SharedQueue, depth: &EventDepth) {
        for item in self.unsent.drain(..).chain(self.next.take()) {
            if let Err(e) = queue.enqueue(&item) {
                let count = read_item(&item).map_or(1, |(n, _)| n) as u64;
                depth.release(host, count);
                host.count_n(DROPPED, count);
                log::error!("cannot put {count} events back on the queue: {e}");
            }
        }
        self.unsent_events = 0;
    }

    /// Events held (being sent, or next).
    pub fn held(&self) -> usize {
        self.unsent_events + self.next.as_deref().and_then(read_item).map_or(0, |(n, _)| n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::FakeHost;
    use crate::event_depth::depth;
    use crate::shared::FakeQueue;
    use hubgate_wire::{EventBatch, RequestEvent};

    fn event(n: usize) -> Vec<u8> {
        let e = RequestEvent {
            event_id: format!("e{n}"),
            request_id: format!("r{n}"),
            started_at_ms: 1_700_000_000_000,
            user_id: Some(1),
            key_id: None,
            key_masked: None,
            provider_id: None,
            method: "POST".into(),
            endpoint: "/v1/messages".into(),
            original_model: None,
            upstream_model: None,
            status: 200,
            duration_ms: 5,
            ttfb_ms: None,
            usage: Default::default(),
            cost_usd: Default::default(),
            cost_multiplier: Default::default(),
            cost_breakdown: None,
            session_id: None,
            user_agent: Some("ua, \"quoted\"".into()),
            client_ip: None,
            stream: false,
            blocked_by: None,
            blocked_reason: Some(serde_json::json!({"code": "x", "list": [1, 2]})),
            error: None,
            flags: vec!["a".into()],
            leases: Vec::new(),
        };
        serde_json::to_vec(&e).unwrap()
    }

    fn ids(body: &[u8]) -> Vec<String> {
        let batch: EventBatch = serde_json::from_slice(body).unwrap();
        batch.events.into_iter().map(|e| e.event_id).collect()
    }

    fn names(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|n| format!("e{n}")).collect()
    }

    #[test]
    fn a_vm_enqueues_once_per_batch() {
        let (host, queue, outbox) = (FakeHost::default(), FakeQueue::default(), Outbox::default());
        for n in 0..70 {
            outbox.push(&host, &queue, event(n), 200, 10_000);
        }
        assert_eq!(queue.enqueues.get(), 2, "two full batches of 32");
        assert_eq!(outbox.pending(), 6);
        outbox.flush(&host, &queue, 10_000);
        assert_eq!(queue.enqueues.get(), 3);
        assert_eq!(outbox.pending(), 0);
        assert_eq!(depth(&host), 70);
        // Nothing to do on an empty tick.
        outbox.flush(&host, &queue, 10_000);
        assert_eq!(queue.enqueues.get(), 3);
    }

    #[test]
    fn a_smaller_flush_size_caps_the_batch() {
        let (host, queue, outbox) = (FakeHost::default(), FakeQueue::default(), Outbox::default());
        for n in 0..5 {
            outbox.push(&host, &queue, event(n), 2, 10_000);
        }
        assert_eq!(queue.enqueues.get(), 2);
        assert_eq!(outbox.pending(), 1);
    }

    #[test]
    fn the_flusher_sends_one_array_per_post_and_loses_nothing() {
        let (host, queue) = (FakeHost::default(), FakeQueue::default());
        let (a, b) = (Outbox::default(), Outbox::default());
        for n in 0..40 {
            a.push(&host, &queue, event(n), 200, 10_000);
        }
        for n in 40..50 {
            b.push(&host, &queue, event(n), 200, 10_000);
        }
        a.flush(&host, &queue, 10_000);
        b.flush(&host, &queue, 10_000);
        assert_eq!(depth(&host), 50);
        // Another VM's batch of one.
        EventDepth::default().reserve(&host, 1, 10_000);
        queue.enqueue(&make_item(&[event(50)])).unwrap();

        let mut drain = Drain::default();
        let (body, count) = drain.batch(&host, &queue, &a.depth, 45).unwrap();
        // 32 + 8 fit; the next item (10 events) waits for the next batch.
        assert_eq!(count, 40);
        assert_eq!(ids(&body), names(0..40));
        // Not accepted: the same batch again.
        let (again, _) = drain.batch(&host, &queue, &a.depth, 45).unwrap();
        assert_eq!(again, body);
        assert_eq!(drain.done(&host, &a.depth), 40);
        assert_eq!(depth(&host), 11);
        let (body, count) = drain.batch(&host, &queue, &a.depth, 45).unwrap();
        assert_eq!((ids(&body), count), (names(40..51), 11));
        drain.done(&host, &a.depth);
        assert!(drain.batch(&host, &queue, &a.depth, 45).is_none());
        assert_eq!(depth(&host), 0);
    }

    #[test]
    fn a_batch_that_does_not_fit_keeps_what_fits_and_counts_the_rest() {
        let (host, queue, outbox) = (FakeHost::default(), FakeQueue::default(), Outbox::default());
        for n in 0..7 {
            outbox.push(&host, &queue, event(n), 200, 10);
        }
        outbox.flush(&host, &queue, 10);
        for n in 7..13 {
            outbox.push(&host, &queue, event(n), 200, 10);
        }
        outbox.flush(&host, &queue, 10);
        assert_eq!(host.counter(DROPPED), 3);
        assert_eq!(depth(&host), 10);
        let mut drain = Drain::default();
        let (body, count) = drain.batch(&host, &queue, &outbox.depth, 200).unwrap();
        assert_eq!((ids(&body), count), (names(0..10), 10));
        drain.done(&host, &outbox.depth);
        assert_eq!(depth(&host), 0);
        // Full again: a whole batch is dropped, nothing enqueued.
        outbox.depth.reserve(&host, 10, 10);
        let before = queue.enqueues.get();
        outbox.push(&host, &queue, event(99), 200, 10);
        outbox.flush(&host, &queue, 10);
        assert_eq!((queue.enqueues.get(), host.counter(DROPPED)), (before, 4));
    }

    #[test]
    fn a_failed_enqueue_is_counted_and_released() {
        let (host, queue, outbox) = (FakeHost::default(), FakeQueue::default(), Outbox::default());
        outbox.push(&host, &queue, event(1), 200, 10);
        queue.failures.set(1);
        outbox.flush(&host, &queue, 10);
        assert_eq!((host.counter(DROPPED), depth(&host)), (1, 0));
    }

    #[test]
    fn a_closed_outbox_sends_each_event_on() {
        let (host, queue, outbox) = (FakeHost::default(), FakeQueue::default(), Outbox::default());
        outbox.push(&host, &queue, event(1), 200, 10);
        outbox.close(&host, &queue, 10);
        assert_eq!(queue.enqueues.get(), 1);
        outbox.push(&host, &queue, event(2), 200, 10);
        assert_eq!((queue.enqueues.get(), outbox.pending()), (2, 0));
    }

    #[test]
    fn a_flusher_going_away_puts_its_items_back() {
        let (host, queue, outbox) = (FakeHost::default(), FakeQueue::default(), Outbox::default());
        for n in 0..40 {
            outbox.push(&host, &queue, event(n), 200, 100);
        }
        outbox.flush(&host, &queue, 100);
        let mut drain = Drain::default();
        let (_, count) = drain.batch(&host, &queue, &outbox.depth, 32).unwrap();
        assert_eq!(count, 32);
        assert_eq!(drain.held(), 32);
        drain.put_back(&host, &queue, &outbox.depth);
        assert_eq!(depth(&host), 40, "still undelivered");
        let mut other = Drain::default();
        let (body, _) = other.batch(&host, &queue, &outbox.depth, 100).unwrap();
        let mut got = ids(&body);
        got.sort_by_key(|id| id[1..].parse::<u32>().unwrap());
        assert_eq!(got, names(0..40));
    }

    #[test]
    fn unreadable_items_are_dropped_and_counted() {
        let (host, queue) = (FakeHost::default(), FakeQueue::default());
        let depth_ = EventDepth::default();
        depth_.reserve(&host, 2, 10);
        queue.enqueue(b"\x07junk").unwrap();
        queue.enqueue(&make_item(&[event(1)])).unwrap();
        let mut drain = Drain::default();
        let (body, count) = drain.batch(&host, &queue, &depth_, 10).unwrap();
        assert_eq!((ids(&body), count), (names(1..2), 1));
        assert_eq!(host.counter(DROPPED), 1);
        assert_eq!(read_item(b""), None);
        assert_eq!(read_item(b"{\"event_id\":\"a\"}"), None, "untagged");
        assert_eq!(read_item(b"\x01\x00\x00"), None);
        assert_eq!(read_item(b"\x01\x00\x00\x00\x00{}"), None);
    }
}

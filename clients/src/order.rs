//! [`Inbox`]: exactly-once delivery of stored events in inbox (`n`) order.
//!
//! The server numbers every stored event of a user `1, 2, 3 ...` without gaps. Live events of
//! different conversations can arrive out of order, a reconnect brings events again through
//! `sync`, and a retried `send` brings its `sent` again. So: an `n` at or below the last one
//! delivered is a duplicate and dropped; the next `n` is delivered with any that waited behind
//! it; a later `n` waits (in a bounded buffer) and opens a gap, which `sync` fills if it does
//! not close by itself.

use std::collections::BTreeMap;

use chat_proto::Event;
use tokio::time::Instant;

/// Most events that wait behind a gap; later ones are dropped (the `sync` brings them).
const MAX_WAITING: usize = 10_000;

/// The delivery order state of one device's inbox.
#[derive(Debug)]
pub(crate) struct Inbox {
    last: u64,
    waiting: BTreeMap<u64, Event>,
    gap_since: Option<Instant>,
}

impl Inbox {
    /// An inbox whose events up to `last` were delivered (in an earlier run too).
    pub(crate) fn new(last: u64) -> Inbox {
        Inbox {
            last,
            waiting: BTreeMap::new(),
            gap_since: None,
        }
    }

    /// The last `n` delivered.
    pub(crate) fn last(&self) -> u64 {
        self.last
    }

    /// Since when a gap has been open (an event waits for an earlier one).
    pub(crate) fn gap_since(&self) -> Option<Instant> {
        self.gap_since
    }

    /// A stored event numbered `n` arrived live. Returns what can be delivered now, in order.
    pub(crate) fn live(&mut self, n: u64, event: Event, now: Instant) -> Vec<Event> {
        if n <= self.last {
            return Vec::new();
        }
        if n == self.last + 1 {
            return self.advance(n, event);
        }
        if self.waiting.len() < MAX_WAITING {
            self.waiting.insert(n, event);
        }
        self.gap_since.get_or_insert(now);
        Vec::new()
    }

    /// A stored event numbered `n` came in a `sync` answer. Sync pages are the server's inbox
    /// itself, so an `n` past a gap is taken as it is (the gap is the server's).
    pub(crate) fn synced(&mut self, n: u64, event: Event) -> Vec<Event> {
        if n <= self.last {
            return Vec::new();
        }
        self.advance(n, event)
    }

    /// A `sync` page ended at `last`: nothing at or below it is missing any more.
    pub(crate) fn synced_to(&mut self, last: u64, now: Instant) -> Vec<Event> {
        let mut out = Vec::new();
        if last > self.last {
            self.last = last;
            self.waiting.retain(|k, _| *k > last);
            self.drain(&mut out);
        }
        // A gap that is still open after a sync gets a fresh wait before the next one.
        if self.gap_since.is_some() {
            self.gap_since = Some(now);
        }
        out
    }

    fn advance(&mut self, n: u64, event: Event) -> Vec<Event> {
        let mut out = vec![event];
        self.last = n;
        self.waiting.retain(|k, _| *k > n);
        self.drain(&mut out);
        out
    }

    fn drain(&mut self, out: &mut Vec<Event>) {
        while let Some(next) = self.waiting.remove(&(self.last + 1)) {
            out.push(next);
            self.last += 1;
        }
        if self.waiting.is_empty() {
            self.gap_since = None;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chat_proto::{Conv, ReceiptEvent, ReceiptStatus};

    use super::*;

    fn ev(n: u64) -> Event {
        Event::Receipt(ReceiptEvent {
            conv: Conv::parse("d.alice.bob").unwrap(),
            by: "bob".into(),
            status: ReceiptStatus::Read,
            seq: n,
            ts: 0,
            n,
        })
    }

    fn ns(events: &[Event]) -> Vec<u64> {
        events.iter().map(|e| e.n().unwrap()).collect()
    }

    #[test]
    fn in_order_events_pass_and_duplicates_are_dropped() {
        let now = Instant::now();
        let mut inbox = Inbox::new(3);
        assert!(inbox.live(2, ev(2), now).is_empty(), "below last");
        assert!(inbox.live(3, ev(3), now).is_empty(), "equal to last");
        assert_eq!(ns(&inbox.live(4, ev(4), now)), [4]);
        assert!(inbox.live(4, ev(4), now).is_empty(), "same n twice");
        assert_eq!(inbox.last(), 4);
        assert!(inbox.gap_since().is_none());
    }

    #[test]
    fn out_of_order_events_wait_and_come_out_in_order() {
        let now = Instant::now();
        let mut inbox = Inbox::new(0);
        assert!(inbox.live(3, ev(3), now).is_empty());
        assert!(inbox.live(2, ev(2), now).is_empty());
        assert_eq!(inbox.gap_since(), Some(now));
        assert_eq!(ns(&inbox.live(1, ev(1), now)), [1, 2, 3]);
        assert!(inbox.gap_since().is_none());
        assert_eq!(inbox.last(), 3);
    }

    #[test]
    fn sync_fills_a_gap_and_duplicates_of_waiting_events_are_dropped() {
        let now = Instant::now();
        let mut inbox = Inbox::new(0);
        assert!(inbox.live(3, ev(3), now).is_empty());
        // The sync answer brings 1..=3; 3 already waited, so it comes out once.
        assert_eq!(ns(&inbox.synced(1, ev(1))), [1]);
        assert_eq!(ns(&inbox.synced(2, ev(2))), [2, 3]);
        assert!(inbox.synced(3, ev(3)).is_empty());
        assert!(inbox.synced_to(3, now).is_empty());
        assert_eq!(inbox.last(), 3);
        assert!(inbox.gap_since().is_none());
    }

    #[test]
    fn a_sync_page_moves_past_a_server_side_gap() {
        let now = Instant::now();
        let mut inbox = Inbox::new(0);
        assert_eq!(ns(&inbox.synced(2, ev(2))), [2]);
        assert!(inbox.live(5, ev(5), now).is_empty());
        let later = now + std::time::Duration::from_secs(1);
        assert_eq!(ns(&inbox.synced_to(4, later)), [5]);
        assert_eq!(inbox.last(), 5);
        assert!(inbox.gap_since().is_none());
    }

    #[test]
    fn an_open_gap_gets_a_fresh_wait_after_a_sync() {
        let now = Instant::now();
        let mut inbox = Inbox::new(0);
        inbox.live(3, ev(3), now);
        let later = now + std::time::Duration::from_secs(1);
        assert!(inbox.synced_to(1, later).is_empty());
        assert_eq!(inbox.gap_since(), Some(later));
    }
}

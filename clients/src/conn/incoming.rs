//! Incoming events: answers matched to their requests, `sent` and `error` matched to the
//! outbox, stored events put in `n` order, and `sync` pages.

use std::time::Duration;

use chat_proto::{Envelope, ErrorCode, Event, Request, SentEvent, SyncRequest};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{Actor, SyncRun};
use crate::client::ConnState;
use crate::error::Error;

impl Actor {
    // ---- incoming ---------------------------------------------------------------------

    pub(super) fn on_publish(&mut self, p: rumqttc::Publish) {
        let event = match Event::from_json(&p.payload) {
            Ok(event) => event,
            Err(e) => {
                warn!(topic = %p.topic, error = %e, "ignoring a payload that is not an event");
                return;
            }
        };
        self.on_event(event, false);
    }

    fn on_event(&mut self, event: Event, from_sync: bool) {
        match event {
            Event::Sent(sent) => {
                self.resolve_send(&sent);
                self.stored(Event::Sent(sent), from_sync);
            }
            Event::Msg(_) | Event::Receipt(_) | Event::Group(_) | Event::GroupInvite(_) => {
                self.stored(event, from_sync)
            }
            Event::Error(e) => self.on_error(e),
            Event::Sync(answer) => {
                let ours =
                    matches!((&self.sync, &answer.req), (Some(run), Some(req)) if &run.req == req);
                if ours {
                    self.on_sync_page(answer);
                } else if let Some(ask) = answer.req.as_ref().and_then(|r| self.asks.remove(r)) {
                    // `Client::sync`: a page for the application, not for the catch-up.
                    let _ = ask.reply.send(Ok(Event::Sync(answer)));
                }
            }
            Event::History(ref a) => {
                let req = a.req.clone();
                self.answer(req, event);
            }
            Event::GroupInfo(ref a) => {
                let req = a.req.clone();
                self.answer(req, event);
            }
            Event::Ok(ref a) => {
                let req = a.req.clone();
                self.answer(req, event);
            }
            Event::Privacy(ref a) => {
                let req = a.req.clone();
                self.answer(req, event);
            }
            Event::Presence(_) | Event::Typing(_) => self.deliver(event),
        }
    }

    fn deliver(&self, event: Event) {
        let _ = self.events.send(event);
    }

    fn answer(&mut self, req: Option<String>, event: Event) {
        match req.and_then(|req| self.asks.remove(&req)) {
            Some(ask) => {
                let _ = ask.reply.send(Ok(event));
            }
            None => self.deliver(event),
        }
    }

    fn resolve_send(&mut self, sent: &SentEvent) {
        let before = self.session.outbox.len();
        self.session.outbox.retain(|e| e.id != sent.id);
        if self.session.outbox.len() != before {
            // A stale entry only means one harmless retry after a restart: save lazily.
            self.dirty = true;
        }
        self.published.remove(&sent.id);
        for waiter in self.sends.remove(&sent.id).unwrap_or_default() {
            let _ = waiter.send(Ok(sent.clone()));
        }
    }

    fn on_error(&mut self, e: chat_proto::ErrorEvent) {
        if let Some(id) = e.id.as_deref() {
            if self.session.outbox.iter().any(|entry| entry.id == id) {
                if matches!(e.code, ErrorCode::Unavailable | ErrorCode::RateLimited) {
                    // Retry the same id soon: pretend it was published a little while ago.
                    let soon = self
                        .opts
                        .resend_after
                        .saturating_sub(Duration::from_secs(1));
                    let at = Instant::now()
                        .checked_sub(soon)
                        .unwrap_or_else(Instant::now);
                    self.published.insert(id.to_owned(), at);
                    debug!(id, code = %e.code, "send refused for now; retrying");
                    return;
                }
                self.session.outbox.retain(|entry| entry.id != id);
                self.published.remove(id);
                self.dirty = true;
                let waiters = self.sends.remove(id).unwrap_or_default();
                if waiters.is_empty() {
                    // A send from an earlier run: the application hears of it as an event.
                    return self.deliver(Event::Error(e));
                }
                for waiter in waiters {
                    let _ = waiter.send(Err(Error::Refused {
                        request: "send".into(),
                        code: e.code,
                        message: e.message.clone(),
                    }));
                }
                return;
            }
        }
        if let (Some(run), Some(req)) = (&self.sync, &e.req) {
            if &run.req == req {
                warn!(code = %e.code, message = %e.message, "sync refused; retrying");
                self.sync = None;
                self.sync_retry_at = Some(Instant::now() + Duration::from_secs(1));
                return;
            }
        }
        match e.req.as_ref().and_then(|req| self.asks.remove(req)) {
            Some(ask) => {
                let _ = ask.reply.send(Err(Error::Refused {
                    request: ask.name.to_owned(),
                    code: e.code,
                    message: e.message,
                }));
            }
            None => self.deliver(Event::Error(e)),
        }
    }

    /// A stored event: deliver it in `n` order, once.
    fn stored(&mut self, event: Event, from_sync: bool) {
        let Some(n) = event.n().filter(|_| self.opts.catch_up) else {
            return self.deliver(event);
        };
        let ready = if from_sync {
            self.inbox.synced(n, event)
        } else {
            self.inbox.live(n, event, Instant::now())
        };
        self.delivered(ready);
    }

    fn delivered(&mut self, events: Vec<Event>) {
        if events.is_empty() && self.inbox.last() == self.session.last_n {
            return;
        }
        for event in events {
            self.deliver(event);
        }
        self.session.last_n = self.inbox.last();
        self.dirty = true;
    }

    pub(super) async fn start_sync(&mut self) {
        let req = self.next_id("sync");
        let envelope = Envelope {
            req: Some(req.clone()),
            device: Some(self.session.device.clone()),
            request: Request::Sync(SyncRequest {
                after: self.session.last_n,
                limit: self.opts.sync_limit,
            }),
        };
        let out = self.session.topic("out");
        if self.publish(&out, envelope.to_json()).await {
            self.sync = Some(SyncRun {
                req,
                deadline: Instant::now() + self.opts.request_timeout,
            });
            self.sync_retry_at = None;
            self.sync_next = false;
        }
    }

    fn on_sync_page(&mut self, answer: chat_proto::SyncAnswer) {
        for raw in &answer.events {
            match raw.parse() {
                Ok(event) => self.on_event(event, true),
                Err(e) => warn!(error = %e, "ignoring a sync entry that is not an event"),
            }
        }
        // Never ask for the same page twice, even if an entry could not be read.
        let ready = self.inbox.synced_to(answer.last, Instant::now());
        self.delivered(ready);
        self.sync = None;
        if answer.more {
            self.sync_next = true;
            return;
        }
        if matches!(*self.state.borrow(), ConnState::Syncing) {
            self.set_state(ConnState::Online);
        }
    }
}

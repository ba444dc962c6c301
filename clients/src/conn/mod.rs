//! The connection task: the one owner of the [`Session`], the MQTT connection, the outbox and
//! every request waiting for an answer. [`crate::Client`] handles talk to it over a channel.
//!
//! Life of a connection: build the TLS configuration from the session (renewing the
//! certificate first when it is due), CONNECT with a clean session and the `offline` Last
//! Will, SUBSCRIBE to `/tenants/{u}/in` and `/tenants/{u}/in/{device}`, publish `online`,
//! `sync` from the last `n` (page after page), and re-publish the outbox and queued requests.
//! When the connection ends, requests waiting for an answer fail, sends stay in the outbox, and
//! the next attempt comes after an exponential, jittered delay.
//!
//! Stored events (those with `n`) reach the application in `n` order, each once: an `n` at or
//! below the last one is a duplicate and dropped; an `n` past a gap waits briefly in a reorder
//! buffer (events from different conversations can overtake each other) and a `sync` fills the
//! gap if it persists.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chat_proto::{Event, SentEvent, Status};
use rumqttc::{AsyncClient, LastWill, MqttOptions, QoS, SubscribeFilter, TlsConfiguration};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::api::{Api, DeviceCert};
use crate::client::{ConnState, Options};
use crate::error::{Error, Result};
use crate::order::Inbox;

mod incoming;
use crate::state::{OutboxEntry, Session, StateStore};

/// The step of the timer work `on_tick` may not finish in one run: the outbox's resend check
/// while it holds sends, and a `sync` to start or restart.
const TICK: Duration = Duration::from_millis(50);
/// The longest an idle connection task sleeps: certificate renewal is checked this often.
const IDLE_WAKE: Duration = Duration::from_secs(60);
/// How long to wait after a failed renewal before trying again.
const RENEW_RETRY: Duration = Duration::from_secs(60);

/// What a [`crate::Client`] asks of the connection task.
pub(crate) enum Command {
    /// A `send` (JSON request) with its id; resolved by its `sent` or `error`.
    Send {
        id: String,
        request: String,
        reply: oneshot::Sender<Result<SentEvent>>,
    },
    /// A request answered by an event with the same `req` (`history`, `ok` ...).
    Ask {
        req: String,
        name: &'static str,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<Event>>,
    },
    /// A request without an answer (`receipt`, `typing`); resolved once handed to the
    /// connection.
    Tell {
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Disconnect cleanly, save the session and end.
    Close { reply: oneshot::Sender<()> },
}

/// What the network side reports to the task.
enum NetEvent {
    ConnAck,
    SubAck(bool),
    Publish(rumqttc::Publish),
    Down(String),
    Renewed(Result<DeviceCert>),
}

enum Phase {
    Connecting,
    Subscribing,
    Ready,
}

/// One MQTT connection attempt: the client half, and the task polling the event loop.
struct Conn {
    client: AsyncClient,
    poller: JoinHandle<()>,
    phase: Phase,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

struct Ask {
    name: &'static str,
    payload: Vec<u8>,
    reply: oneshot::Sender<Result<Event>>,
    deadline: Instant,
    published: bool,
}

struct SyncRun {
    req: String,
    deadline: Instant,
}

pub(crate) struct Actor {
    session: Session,
    store: StateStore,
    opts: Options,
    api: Api,
    cmds: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
    state: watch::Sender<ConnState>,
    net_tx: mpsc::UnboundedSender<(u64, NetEvent)>,
    net_rx: mpsc::UnboundedReceiver<(u64, NetEvent)>,
    conn: Option<Conn>,
    /// Generation of the current connection; events of older ones are ignored.
    generation: u64,
    /// Failed attempts since the last connection that got ready.
    attempt: u32,
    retry_at: Instant,
    /// Waiters for each outbox id.
    sends: HashMap<String, Vec<oneshot::Sender<Result<SentEvent>>>>,
    /// Outbox id -> when it was last published on the current connection.
    published: HashMap<String, Instant>,
    asks: HashMap<String, Ask>,
    tells: VecDeque<(Vec<u8>, oneshot::Sender<Result<()>>)>,
    sync: Option<SyncRun>,
    sync_retry_at: Option<Instant>,
    /// The last sync page said `more`: ask for the next one at once.
    sync_next: bool,
    inbox: Inbox,
    dirty: bool,
    last_save: Instant,
    /// When the timers last ran ([`Actor::on_tick`]).
    last_tick: Instant,
    renewing: bool,
    renew_after: Instant,
    /// The TLS configuration for the session's certificate, made at the first connection
    /// and again after a renewal, not for every attempt (see [`crate::tls::client_config`]).
    tls: Option<Arc<rustls::ClientConfig>>,
    counter: u64,
}

impl Actor {
    pub(crate) fn new(
        session: Session,
        store: StateStore,
        opts: Options,
        api: Api,
        cmds: mpsc::UnboundedReceiver<Command>,
        events: mpsc::UnboundedSender<Event>,
        state: watch::Sender<ConnState>,
    ) -> Actor {
        let (net_tx, net_rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        let last_n = session.last_n;
        Actor {
            session,
            store,
            opts,
            api,
            cmds,
            events,
            state,
            net_tx,
            net_rx,
            conn: None,
            generation: 0,
            attempt: 0,
            retry_at: now,
            sends: HashMap::new(),
            published: HashMap::new(),
            asks: HashMap::new(),
            tells: VecDeque::new(),
            sync: None,
            sync_retry_at: None,
            sync_next: false,
            inbox: Inbox::new(last_n),
            dirty: false,
            last_save: now,
            last_tick: now,
            renewing: false,
            renew_after: now,
            tls: None,
            counter: 0,
        }
    }

    /// Runs until [`Command::Close`] or until every [`crate::Client`] is dropped.
    ///
    /// The task sleeps until its next deadline ([`Actor::next_wake`]) rather than on a fixed
    /// tick: an idle device wakes once a minute, not 20 times a second.
    pub(crate) async fn run(mut self) {
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        loop {
            if self.conn.is_none() && Instant::now() >= self.retry_at {
                self.start_connection();
            }
            let wake = self.next_wake();
            if timer.deadline() != wake {
                timer.as_mut().reset(wake);
            }
            tokio::select! {
                cmd = self.cmds.recv() => match cmd {
                    Some(Command::Close { reply }) => {
                        self.close().await;
                        let _ = reply.send(());
                        return;
                    }
                    Some(cmd) => self.on_command(cmd).await,
                    None => {
                        self.close().await;
                        return;
                    }
                },
                Some((generation, event)) = self.net_rx.recv() => {
                    self.on_net(generation, event).await;
                }
                _ = &mut timer => self.on_tick().await,
            }
        }
    }

    /// When [`Actor::on_tick`] has something to do next: the reconnect, the earliest request
    /// deadline, an overdue `sync`, the next save; at most every [`TICK`] while a `sync` is to
    /// be (re)started, a gap has waited `gap_wait` or the outbox holds sends (what `on_tick`
    /// may fail to finish, so it is not retried in a loop); at the latest [`IDLE_WAKE`] after
    /// the last run, for the certificate renewal.
    fn next_wake(&self) -> Instant {
        let mut wake = self.last_tick + IDLE_WAKE;
        let soon = self.last_tick + TICK;
        let mut at = |t: Instant| wake = wake.min(t);
        if self.conn.is_none() {
            at(self.retry_at);
        }
        self.asks.values().for_each(|a| at(a.deadline));
        if self.ready() {
            match &self.sync {
                Some(sync) => at(sync.deadline),
                None => {
                    if self.sync_next {
                        at(soon);
                    }
                    if let Some(retry) = self.sync_retry_at {
                        at(retry.max(soon));
                    }
                    if let Some(gap) = self.inbox.gap_since() {
                        at((gap + self.opts.gap_wait).max(soon));
                    }
                }
            }
            if !self.session.outbox.is_empty() {
                at(soon);
            }
        }
        if self.dirty {
            at(self.last_save + self.opts.save_every);
        }
        wake
    }

    fn next_id(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}{}", self.counter)
    }

    fn ready(&self) -> bool {
        matches!(
            self.conn,
            Some(Conn {
                phase: Phase::Ready,
                ..
            })
        )
    }

    fn set_state(&self, state: ConnState) {
        self.state.send_replace(state);
    }

    // ---- connecting -------------------------------------------------------------------

    fn start_connection(&mut self) {
        self.generation += 1;
        let options = match self.mqtt_options() {
            Ok(o) => o,
            Err(e) => return self.connection_failed(e.to_string()),
        };
        let (client, mut eventloop) = AsyncClient::new(options, 256);
        let mut net = eventloop.network_options();
        net.set_tcp_nodelay(true);
        net.set_connection_timeout(self.opts.connect_timeout.as_secs().max(1));
        eventloop.set_network_options(net);
        let (tx, generation) = (self.net_tx.clone(), self.generation);
        let poller = tokio::spawn(async move {
            use rumqttc::{Event as MqttEvent, Packet};
            loop {
                let event = match eventloop.poll().await {
                    Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => NetEvent::ConnAck,
                    Ok(MqttEvent::Incoming(Packet::SubAck(ack))) => {
                        let ok = ack
                            .return_codes
                            .iter()
                            .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_)));
                        NetEvent::SubAck(ok)
                    }
                    Ok(MqttEvent::Incoming(Packet::Publish(p))) => NetEvent::Publish(p),
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = tx.send((generation, NetEvent::Down(describe(&e))));
                        return;
                    }
                };
                if tx.send((generation, event)).is_err() {
                    return;
                }
            }
        });
        self.conn = Some(Conn {
            client,
            poller,
            phase: Phase::Connecting,
        });
        if self.attempt == 0 {
            self.set_state(ConnState::Connecting);
        }
        debug!(user = %self.session.user, device = %self.session.device, "connecting");
    }

    fn mqtt_options(&mut self) -> Result<MqttOptions> {
        let (host, port) = split_host_port(&self.session.mqtt)?;
        let tls = match &self.tls {
            Some(tls) => tls.clone(),
            None => {
                let s = &self.session;
                let tls = crate::tls::client_config(&s.ca_pem, Some((&s.cert_pem, &s.key_pem)))?;
                self.tls.insert(tls).clone()
            }
        };
        let mut o = MqttOptions::new(self.session.device.clone(), host, port);
        o.set_transport(rumqttc::Transport::tls_with_config(
            TlsConfiguration::Rustls(tls),
        ));
        o.set_keep_alive(self.opts.keep_alive);
        o.set_clean_session(true);
        o.set_max_packet_size(2 * 1024 * 1024, 1024 * 1024);
        o.set_inflight(self.opts.inflight.max(1));
        let will = Status::Offline {
            device: self.session.device.clone(),
        };
        o.set_last_will(LastWill::new(
            self.session.topic("status"),
            will.to_json(),
            QoS::AtLeastOnce,
            false,
        ));
        Ok(o)
    }

    fn connection_failed(&mut self, error: String) {
        self.conn = None;
        self.published.clear();
        self.sync = None;
        self.attempt += 1;
        let delay =
            crate::backoff::delay(self.attempt, self.opts.backoff_min, self.opts.backoff_max);
        self.retry_at = Instant::now() + delay;
        info!(user = %self.session.user, device = %self.session.device, attempt = self.attempt, ?delay, error = %error, "disconnected; reconnecting");
        self.set_state(ConnState::Reconnecting {
            attempt: self.attempt,
            error,
        });
    }

    /// The connection ended: requests that were published fail (they may or may not have
    /// been carried out), sends stay in the outbox, the next attempt is scheduled.
    fn connection_down(&mut self, error: String) {
        let lost: Vec<String> = self
            .asks
            .iter()
            .filter(|(_, a)| a.published)
            .map(|(req, _)| req.clone())
            .collect();
        for req in lost {
            if let Some(ask) = self.asks.remove(&req) {
                let _ = ask
                    .reply
                    .send(Err(Error::ConnectionLost(ask.name.to_owned())));
            }
        }
        self.connection_failed(error);
    }

    async fn on_net(&mut self, generation: u64, event: NetEvent) {
        if let NetEvent::Renewed(result) = event {
            return self.on_renewed(result);
        }
        if generation != self.generation || self.conn.is_none() {
            return;
        }
        match event {
            NetEvent::ConnAck => {
                let filters = vec![
                    SubscribeFilter::new(self.session.topic("in"), QoS::AtLeastOnce),
                    SubscribeFilter::new(
                        self.session.topic(&format!("in/{}", self.session.device)),
                        QoS::AtLeastOnce,
                    ),
                ];
                if let Some(conn) = &mut self.conn {
                    conn.phase = Phase::Subscribing;
                    if conn.client.subscribe_many(filters).await.is_err() {
                        self.connection_down("connection closed while subscribing".into());
                    }
                }
            }
            NetEvent::SubAck(true) => self.on_ready().await,
            NetEvent::SubAck(false) => {
                self.connection_down("the broker refused the subscriptions".into());
            }
            NetEvent::Publish(p) => {
                self.on_publish(p);
                if self.sync_next && self.sync.is_none() {
                    self.start_sync().await;
                }
            }
            NetEvent::Down(e) => self.connection_down(e),
            NetEvent::Renewed(_) => {}
        }
    }

    /// Subscribed: say `online`, sync, and send everything that waited.
    async fn on_ready(&mut self) {
        if let Some(conn) = &mut self.conn {
            conn.phase = Phase::Ready;
        }
        self.attempt = 0;
        self.set_state(ConnState::Syncing);
        info!(user = %self.session.user, device = %self.session.device, last_n = self.session.last_n, "connected");
        let online = Status::Online {
            device: self.session.device.clone(),
        };
        let status_topic = self.session.topic("status");
        self.publish(&status_topic, online.to_json()).await;
        if self.opts.catch_up {
            self.start_sync().await;
        } else {
            self.set_state(ConnState::Online);
        }
        let outbox: Vec<OutboxEntry> = self.session.outbox.clone();
        for entry in outbox {
            self.publish_send(&entry).await;
        }
        let asks: Vec<(String, Vec<u8>)> = self
            .asks
            .iter()
            .filter(|(_, a)| !a.published)
            .map(|(req, a)| (req.clone(), a.payload.clone()))
            .collect();
        let out = self.session.topic("out");
        for (req, payload) in asks {
            if self.publish(&out, payload).await {
                if let Some(ask) = self.asks.get_mut(&req) {
                    ask.published = true;
                }
            }
        }
        while let Some((payload, reply)) = self.tells.pop_front() {
            let ok = self.publish(&out, payload).await;
            let _ = reply.send(if ok {
                Ok(())
            } else {
                Err(Error::ConnectionLost("request".into()))
            });
        }
    }

    /// Publishes at QoS 1 on the current connection; false if there is none (its end is
    /// reported separately).
    async fn publish(&self, topic: &str, payload: Vec<u8>) -> bool {
        match &self.conn {
            Some(conn) => conn
                .client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .is_ok(),
            None => false,
        }
    }

    async fn publish_send(&mut self, entry: &OutboxEntry) {
        let out = self.session.topic("out");
        if self.publish(&out, entry.request.clone().into_bytes()).await {
            self.published.insert(entry.id.clone(), Instant::now());
        }
    }

    // ---- commands ---------------------------------------------------------------------

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Send { id, request, reply } => {
                if !self.session.outbox.iter().any(|e| e.id == id) {
                    self.session.outbox.push(OutboxEntry {
                        id: id.clone(),
                        request,
                    });
                    // The send must survive a restart of the client before it is published.
                    if let Err(e) = self.store.save(&self.session) {
                        self.session.outbox.retain(|e| e.id != id);
                        let _ = reply.send(Err(e));
                        return;
                    }
                    self.dirty = false;
                    self.last_save = Instant::now();
                }
                self.sends.entry(id.clone()).or_default().push(reply);
                if self.ready() {
                    if let Some(entry) = self.session.outbox.iter().find(|e| e.id == id).cloned() {
                        self.publish_send(&entry).await;
                    }
                }
            }
            Command::Ask {
                req,
                name,
                payload,
                reply,
            } => {
                let mut ask = Ask {
                    name,
                    payload,
                    reply,
                    deadline: Instant::now() + self.opts.request_timeout,
                    published: false,
                };
                if self.ready() {
                    let out = self.session.topic("out");
                    ask.published = self.publish(&out, ask.payload.clone()).await;
                }
                self.asks.insert(req, ask);
            }
            Command::Tell { payload, reply } => {
                if self.ready() {
                    let out = self.session.topic("out");
                    if self.publish(&out, payload).await {
                        let _ = reply.send(Ok(()));
                        return;
                    }
                    let _ = reply.send(Err(Error::ConnectionLost("request".into())));
                } else {
                    self.tells.push_back((payload, reply));
                }
            }
            Command::Close { reply } => {
                self.close().await;
                let _ = reply.send(());
            }
        }
    }

    async fn close(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut conn = conn;
            if conn.client.disconnect().await.is_ok() {
                // Let the event loop write the DISCONNECT (no Last Will then); it ends when
                // the server closes the socket.
                let _ = tokio::time::timeout(Duration::from_millis(500), &mut conn.poller).await;
            }
        }
        if let Err(e) = self.store.save(&self.session) {
            warn!(error = %e, "saving the session on close");
        }
        for (_, waiters) in self.sends.drain() {
            for w in waiters {
                let _ = w.send(Err(Error::Closed));
            }
        }
        for (_, ask) in self.asks.drain() {
            let _ = ask.reply.send(Err(Error::Closed));
        }
        for (_, reply) in self.tells.drain(..) {
            let _ = reply.send(Err(Error::Closed));
        }
        self.set_state(ConnState::Closed);
    }

    // ---- timers -----------------------------------------------------------------------

    async fn on_tick(&mut self) {
        let now = Instant::now();
        self.last_tick = now;
        let expired: Vec<String> = self
            .asks
            .iter()
            .filter(|(_, a)| a.deadline <= now)
            .map(|(req, _)| req.clone())
            .collect();
        for req in expired {
            if let Some(ask) = self.asks.remove(&req) {
                let _ = ask.reply.send(Err(Error::Timeout(ask.name.to_owned())));
            }
        }
        if self.ready() {
            if self.sync.as_ref().is_some_and(|s| s.deadline <= now) {
                warn!("sync answer overdue; asking again");
                self.sync = None;
                self.sync_retry_at = Some(now);
            }
            let gap = self
                .inbox
                .gap_since()
                .is_some_and(|at| now.duration_since(at) >= self.opts.gap_wait);
            let retry = self.sync_next || self.sync_retry_at.is_some_and(|at| at <= now);
            if self.sync.is_none() && (gap || retry) {
                self.start_sync().await;
            }
            let due: Vec<OutboxEntry> = self
                .session
                .outbox
                .iter()
                .filter(|e| {
                    self.published
                        .get(&e.id)
                        .is_none_or(|at| now.duration_since(*at) >= self.opts.resend_after)
                })
                .cloned()
                .collect();
            for entry in due {
                self.publish_send(&entry).await;
            }
        }
        if self.dirty && now.duration_since(self.last_save) >= self.opts.save_every {
            self.save();
        }
        self.maybe_renew(now);
    }

    fn save(&mut self) {
        match self.store.save(&self.session) {
            Ok(()) => self.dirty = false,
            Err(e) => warn!(error = %e, "saving the session"),
        }
        self.last_save = Instant::now();
    }

    fn maybe_renew(&mut self, now: Instant) {
        if self.renewing || now < self.renew_after || !self.session.renewal_due(crate::now_secs()) {
            return;
        }
        self.renewing = true;
        let (api, tx) = (self.api.clone(), self.net_tx.clone());
        let s = &self.session;
        let (token, user, device, key) = (
            s.token.clone(),
            s.user.clone(),
            s.device.clone(),
            s.key_pem.clone(),
        );
        tokio::spawn(async move {
            let result = api.certify(&token, &user, &device, &key).await;
            let _ = tx.send((0, NetEvent::Renewed(result)));
        });
    }

    fn on_renewed(&mut self, result: Result<DeviceCert>) {
        self.renewing = false;
        match result {
            Ok(cert) => {
                info!(user = %self.session.user, device = %self.session.device, expires_at = cert.expires_at, "certificate renewed");
                self.session.cert_pem = cert.cert_pem;
                self.session.ca_pem = cert.ca_pem;
                self.session.cert_issued_at = crate::now_secs();
                self.session.cert_expires_at = cert.expires_at;
                self.tls = None;
                self.save();
            }
            Err(e) => {
                warn!(error = %e, "renewing the device certificate failed; trying again later");
                self.renew_after = Instant::now() + RENEW_RETRY;
            }
        }
    }
}

/// `host:port` or `[v6]:port` -> (host, port).
pub(crate) fn split_host_port(addr: &str) -> Result<(String, u16)> {
    let bad = || {
        Error::Invalid(format!(
            "MQTT address {addr:?} is not host:port (e.g. 127.0.0.1:8883)"
        ))
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

/// rumqttc's connection errors, with the cause chain (its Display often hides the useful part).
fn describe(e: &rumqttc::ConnectionError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text = format!("{text}: {s_text}");
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A certificate for `device`, signed by `ca`, for the key `key`.
    fn device_cert(ca: &(rcgen::Certificate, rcgen::KeyPair), key: &rcgen::KeyPair) -> String {
        rcgen::CertificateParams::new(vec!["phone".to_owned()])
            .unwrap()
            .signed_by(key, &ca.0, &ca.1)
            .unwrap()
            .pem()
    }

    /// The certificate (DER) a configuration presents.
    fn presented(config: &rustls::ClientConfig) -> Vec<u8> {
        let key = config.client_auth_cert_resolver.resolve(&[], &[]).unwrap();
        key.cert[0].to_vec()
    }

    #[tokio::test]
    async fn after_a_renewal_the_next_connection_presents_the_new_certificate() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = (ca_params.self_signed(&ca_key).unwrap(), ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let (first, renewed) = (device_cert(&ca, &key), device_cert(&ca, &key));
        let session = Session {
            version: 1,
            http: "http://127.0.0.1:1".into(),
            mqtt: "127.0.0.1:1".into(),
            user: "alice".into(),
            device: "phone".into(),
            token: "t".into(),
            token_expires_at: u64::MAX,
            key_pem: key.serialize_pem(),
            cert_pem: first.clone(),
            ca_pem: ca.0.pem(),
            cert_issued_at: 0,
            cert_expires_at: u64::MAX,
            last_n: 0,
            outbox: Vec::new(),
        };
        let api = Api::new(&session.http, None).unwrap();
        let (_cmd_tx, cmds) = mpsc::unbounded_channel();
        let (events, _events_rx) = mpsc::unbounded_channel();
        let (state, _state_rx) = watch::channel(ConnState::Connecting);
        let mut actor = Actor::new(
            session,
            StateStore::Memory,
            Options::default(),
            api,
            cmds,
            events,
            state,
        );
        let pem_der = |pem: &str| {
            rustls_pemfile::certs(&mut pem.as_bytes())
                .next()
                .unwrap()
                .unwrap()
                .to_vec()
        };
        actor.mqtt_options().unwrap();
        let made = actor.tls.clone().unwrap();
        assert_eq!(presented(&made), pem_der(&first));
        actor.mqtt_options().unwrap();
        assert!(
            Arc::ptr_eq(&made, actor.tls.as_ref().unwrap()),
            "made once per certificate"
        );
        actor.on_renewed(Ok(DeviceCert {
            device_id: "phone".into(),
            cert_pem: renewed.clone(),
            ca_pem: ca.0.pem(),
            expires_at: u64::MAX,
        }));
        actor.mqtt_options().unwrap();
        assert_eq!(presented(actor.tls.as_ref().unwrap()), pem_der(&renewed));
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            split_host_port("127.0.0.1:8883").unwrap(),
            ("127.0.0.1".into(), 8883)
        );
        assert_eq!(split_host_port("[::1]:1883").unwrap(), ("::1".into(), 1883));
        assert_eq!(
            split_host_port("chat.example:443").unwrap(),
            ("chat.example".into(), 443)
        );
        for bad in ["", "host", "host:", ":80", "host:0", "host:99999", "host:x"] {
            assert!(split_host_port(bad).is_err(), "{bad}");
        }
    }
}

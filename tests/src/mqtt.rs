//! MQTT clients for the tests: rustls client configurations, [`TestClient`] (MQTT 3.1.1) and
//! [`TestClientV5`], both on rumqttc.
//!
//! Each client owns its rumqttc `AsyncClient`; a spawned task polls the `EventLoop` and forwards
//! every event, and the error that ends the connection, into a channel. The helpers read that
//! channel with a timeout: incoming PUBLISHes are queued on the way (so a message that arrives
//! while waiting for a SUBACK is not lost) and the end of the connection is remembered.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, QoS,
    SubscribeFilter, SubscribeReasonCode, TlsConfiguration, Transport,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};

use crate::{Enrolment, TestNode, WAIT};

/// A root store holding the certificates of `ca_pem`.
pub fn roots_from(ca_pem: &str) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots
            .add(cert.expect("CA PEM does not parse"))
            .expect("CA certificate unusable as a trust anchor");
    }
    assert!(!roots.is_empty(), "no certificate in the CA PEM");
    roots
}

/// A rustls client configuration (ring provider, TLS 1.2/1.3) trusting `ca_pem`, presenting
/// `client` = `(cert_pem, key_pem)` when given, and no client certificate otherwise.
pub fn client_tls_config(ca_pem: &str, client: Option<(&str, &str)>) -> Arc<ClientConfig> {
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots_from(ca_pem));
    let config = match client {
        Some((cert_pem, key_pem)) => {
            let chain: Vec<CertificateDer<'static>> =
                rustls_pemfile::certs(&mut cert_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .expect("client certificate PEM does not parse");
            let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
                .expect("client key PEM does not parse")
                .expect("no private key in the key PEM");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client certificate and key do not fit together")
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Why a connection attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// The broker answered CONNACK with this refusal code.
    Refused(ConnectReturnCode),
    /// TCP, TLS or the first read failed before any CONNACK (e.g. the handshake was rejected).
    Transport(String),
    /// Nothing conclusive within the time allowed.
    Timeout,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Refused(code) => write!(f, "CONNACK refused: {code:?}"),
            ConnectError::Transport(e) => write!(f, "transport failed before CONNACK: {e}"),
            ConnectError::Timeout => write!(f, "no CONNACK in time"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Why a wait on a connected client ended without what it waited for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitError {
    /// Nothing arrived within the timeout.
    Timeout,
    /// The connection ended (the message is rumqttc's error).
    Closed(String),
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::Timeout => write!(f, "timed out"),
            WaitError::Closed(e) => write!(f, "connection closed: {e}"),
        }
    }
}

impl std::error::Error for WaitError {}

/// rumqttc options for the TLS listener at `addr` (server name `localhost`) with `tls`.
pub fn tls_options(addr: SocketAddr, tls: Arc<ClientConfig>, client_id: &str) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, "localhost", addr.port());
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(1024 * 1024, 1024 * 1024);
    o
}

/// A connected MQTT 3.1.1 client. Dropping it closes the socket without DISCONNECT.
pub struct TestClient {
    /// The rumqttc client, for anything the helpers do not cover.
    pub client: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<Event, ConnectionError>>,
    inbox: VecDeque<(String, String)>,
    ended: Option<String>,
    task: JoinHandle<()>,
    /// How long `subscribe`, `publish` and `round_trip` wait (default [`WAIT`]).
    pub wait: Duration,
}

impl Drop for TestClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestClient {
    /// Connects a device over TLS with its certificate, using `client_id`, and waits for the
    /// CONNACK (at most [`WAIT`]).
    pub async fn connect_tls(
        node: &TestNode,
        device: &Enrolment,
        client_id: &str,
    ) -> Result<TestClient, ConnectError> {
        TestClient::connect_tls_with(node.mqtt, device.tls_config(), client_id).await
    }

    /// Connects over TLS to `addr` with any client configuration (another CA's certificate,
    /// no certificate, ...).
    pub async fn connect_tls_with(
        addr: SocketAddr,
        tls: Arc<ClientConfig>,
        client_id: &str,
    ) -> Result<TestClient, ConnectError> {
        TestClient::connect(tls_options(addr, tls, client_id), WAIT).await
    }

    /// Connects to the plaintext listener with username `user` and password `token`.
    pub async fn connect_plain(
        node: &TestNode,
        user: &str,
        token: &str,
        client_id: &str,
    ) -> Result<TestClient, ConnectError> {
        let mut o = MqttOptions::new(client_id, "127.0.0.1", node.mqtt_plain.port());
        o.set_credentials(user, token);
        o.set_keep_alive(Duration::from_secs(30));
        TestClient::connect(o, WAIT).await
    }

    /// Starts the event loop for `options` and waits up to `wait` for the CONNACK; later
    /// waits of this client use `wait` too (at least [`WAIT`]).
    pub async fn connect(options: MqttOptions, wait: Duration) -> Result<TestClient, ConnectError> {
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let mut net = eventloop.network_options();
        net.set_connection_timeout(wait.as_secs().max(1));
        // As chat clients should: without it, a small write (a PUBACK) waiting for the
        // server's delayed ACK holds up the next request by up to 40 ms (Nagle).
        net.set_tcp_nodelay(true);
        eventloop.set_network_options(net);
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(event) => {
                        if tx.send(Ok(event)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        // rumqttc would reconnect on the next poll: the tests want to see the end.
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        let mut c = TestClient {
            client,
            events,
            inbox: VecDeque::new(),
            ended: None,
            task,
            wait: wait.max(WAIT),
        };
        let first = tokio::time::timeout(wait + Duration::from_secs(1), c.events.recv()).await;
        match first {
            Ok(Some(Ok(Event::Incoming(Packet::ConnAck(ack))))) => {
                if ack.code == ConnectReturnCode::Success {
                    Ok(c)
                } else {
                    Err(ConnectError::Refused(ack.code))
                }
            }
            Ok(Some(Ok(other))) => Err(ConnectError::Transport(format!(
                "expected CONNACK, got {other:?}"
            ))),
            Ok(Some(Err(ConnectionError::ConnectionRefused(code)))) => {
                Err(ConnectError::Refused(code))
            }
            Ok(Some(Err(ConnectionError::NetworkTimeout))) | Err(_) => Err(ConnectError::Timeout),
            Ok(Some(Err(e))) => Err(ConnectError::Transport(describe(&e))),
            Ok(None) => Err(ConnectError::Transport("event loop ended".into())),
        }
    }

    /// Reads events until `want` picks one, the connection ends, or `wait` passes. Incoming
    /// PUBLISHes are queued for [`TestClient::next_publish`] on the way.
    async fn pump<T>(
        &mut self,
        wait: Duration,
        mut want: impl FnMut(&Event) -> Option<T>,
    ) -> Result<T, WaitError> {
        if let Some(e) = &self.ended {
            return Err(WaitError::Closed(e.clone()));
        }
        let deadline = Instant::now() + wait;
        loop {
            let item = match timeout_at(deadline, self.events.recv()).await {
                Err(_) => return Err(WaitError::Timeout),
                Ok(item) => item,
            };
            match item {
                Some(Ok(event)) => {
                    if let Event::Incoming(Packet::Publish(p)) = &event {
                        let payload = String::from_utf8_lossy(&p.payload).into_owned();
                        self.inbox.push_back((p.topic.clone(), payload));
                    }
                    if let Some(t) = want(&event) {
                        return Ok(t);
                    }
                }
                Some(Err(e)) => {
                    let e = describe(&e);
                    self.ended = Some(e.clone());
                    return Err(WaitError::Closed(e));
                }
                None => {
                    let e = "event loop ended".to_owned();
                    self.ended = Some(e.clone());
                    return Err(WaitError::Closed(e));
                }
            }
        }
    }

    /// Subscribes to `filter` at QoS 1; returns the SUBACK's codes.
    pub async fn subscribe(&mut self, filter: &str) -> Result<Vec<SubscribeReasonCode>, WaitError> {
        self.subscribe_many(&[filter]).await
    }

    /// One SUBSCRIBE with every filter at QoS 1; returns the SUBACK's codes, in order.
    pub async fn subscribe_many(
        &mut self,
        filters: &[&str],
    ) -> Result<Vec<SubscribeReasonCode>, WaitError> {
        let filters: Vec<SubscribeFilter> = filters
            .iter()
            .map(|f| SubscribeFilter::new((*f).to_owned(), QoS::AtLeastOnce))
            .collect();
        let deadline = Instant::now() + self.wait;
        enqueue(deadline, self.client.subscribe_many(filters)).await?;
        self.pump(self.wait, |ev| match ev {
            Event::Incoming(Packet::SubAck(ack)) => Some(ack.return_codes.clone()),
            _ => None,
        })
        .await
    }

    /// Publishes at QoS 1 and waits for the PUBACK.
    pub async fn publish(&mut self, topic: &str, payload: &str) -> Result<(), WaitError> {
        let deadline = Instant::now() + self.wait;
        let request =
            self.client
                .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec());
        enqueue(deadline, request).await?;
        self.pump(self.wait, |ev| match ev {
            Event::Incoming(Packet::PubAck(_)) => Some(()),
            _ => None,
        })
        .await
    }

    /// Publishes every payload at QoS 1 without waiting in between (rumqttc keeps up to 100 in
    /// flight), then waits for all the PUBACKs.
    pub async fn publish_burst(
        &mut self,
        topic: &str,
        payloads: impl IntoIterator<Item = String>,
    ) -> Result<(), WaitError> {
        let deadline = Instant::now() + self.wait;
        let mut sent = 0usize;
        for payload in payloads {
            let request = self
                .client
                .publish(topic, QoS::AtLeastOnce, false, payload.into_bytes());
            enqueue(deadline, request).await?;
            sent += 1;
        }
        let mut acked = 0usize;
        self.pump(self.wait, |ev| {
            if let Event::Incoming(Packet::PubAck(_)) = ev {
                acked += 1;
            }
            (acked == sent).then_some(())
        })
        .await
    }

    /// The next message received, as `(topic, payload)`, waiting up to `wait`; `None` on
    /// timeout or when the connection ended.
    pub async fn next_publish(&mut self, wait: Duration) -> Option<(String, String)> {
        if let Some(m) = self.inbox.pop_front() {
            return Some(m);
        }
        let got = self
            .pump(wait, |ev| {
                matches!(ev, Event::Incoming(Packet::Publish(_))).then_some(())
            })
            .await;
        match got {
            Ok(()) => self.inbox.pop_front(),
            Err(_) => None,
        }
    }

    /// Waits up to `wait` for the connection to end (messages received meanwhile are queued).
    /// True if it ended.
    pub async fn wait_disconnected(&mut self, wait: Duration) -> bool {
        matches!(
            self.pump(wait, |_| None::<()>).await,
            Err(WaitError::Closed(_))
        )
    }

    /// The error that ended the connection, once it is known to have ended.
    pub fn ended(&self) -> Option<&str> {
        self.ended.as_deref()
    }

    /// Proves the connection is alive and routing: publishes a unique message to `topic` (a
    /// topic this client is subscribed to) and waits until it comes back. Messages received
    /// before it are dropped.
    pub async fn round_trip(&mut self, topic: &str) -> Result<(), WaitError> {
        let token = format!("ping-{}", uuid_like());
        self.publish(topic, &token).await?;
        let deadline = Instant::now() + self.wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_publish(left).await {
                Some((_, payload)) if payload == token => return Ok(()),
                Some(_) => continue,
                None => {
                    return Err(match &self.ended {
                        Some(e) => WaitError::Closed(e.clone()),
                        None => WaitError::Timeout,
                    })
                }
            }
        }
    }

    /// Proves the connection is alive and served without routing a message: a SUBSCRIBE to
    /// `own_filter` (a filter of this client's user) must be granted QoS 1.
    pub async fn alive(&mut self, own_filter: &str) -> Result<(), WaitError> {
        let codes = self.subscribe(own_filter).await?;
        if codes == [SubscribeReasonCode::Success(QoS::AtLeastOnce)] {
            Ok(())
        } else {
            Err(WaitError::Closed(format!(
                "SUBACK {codes:?} for {own_filter}"
            )))
        }
    }

    /// Sends DISCONNECT and waits for the connection to end.
    pub async fn disconnect(mut self) {
        let _ = enqueue(Instant::now() + WAIT, self.client.disconnect()).await;
        self.wait_disconnected(WAIT).await;
    }
}

/// A message an MQTT 5 client received, with its PUBLISH properties.
#[derive(Debug, Clone, PartialEq)]
pub struct V5Message {
    pub topic: String,
    pub payload: String,
    /// The properties the server sent with it (response topic, correlation data, ...).
    pub properties: Option<v5::PublishProperties>,
}

/// A connected MQTT 5 client (rumqttc::v5), with the same helpers as [`TestClient`] for
/// connecting, subscribing, publishing and receiving.
pub struct TestClientV5 {
    pub client: rumqttc::v5::AsyncClient,
    /// The server's Receive Maximum from CONNACK, if it sent one.
    pub receive_max: Option<u16>,
    events: mpsc::UnboundedReceiver<Result<rumqttc::v5::Event, rumqttc::v5::ConnectionError>>,
    inbox: VecDeque<V5Message>,
    ended: Option<String>,
    task: JoinHandle<()>,
}

impl Drop for TestClientV5 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// MQTT 5 types used by [`TestClientV5`].
pub mod v5 {
    pub use rumqttc::v5::mqttbytes::v5::{
        ConnectReturnCode, LastWill, LastWillProperties, Packet, PublishProperties,
        SubscribeReasonCode,
    };
    pub use rumqttc::v5::mqttbytes::QoS;
    pub use rumqttc::v5::{AsyncClient, ConnectionError, Event, MqttOptions};
}

impl TestClientV5 {
    /// Connects a device over TLS with MQTT 5 and waits for the CONNACK.
    pub async fn connect_tls(
        node: &TestNode,
        device: &Enrolment,
        client_id: &str,
    ) -> Result<TestClientV5, ConnectError> {
        TestClientV5::connect(TestClientV5::tls_options(node, device, client_id)).await
    }

    /// MQTT 5 options for the node's TLS listener with `device`'s certificate (keep-alive
    /// 30 s), to adjust (a Last Will, ...) before [`TestClientV5::connect`].
    pub fn tls_options(node: &TestNode, device: &Enrolment, client_id: &str) -> v5::MqttOptions {
        let mut o = v5::MqttOptions::new(client_id, "localhost", node.mqtt.port());
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            device.tls_config(),
        )));
        o.set_keep_alive(Duration::from_secs(30));
        o.set_connection_timeout(WAIT.as_secs());
        o
    }

    /// Starts the event loop for `o` and waits for the CONNACK.
    pub async fn connect(o: v5::MqttOptions) -> Result<TestClientV5, ConnectError> {
        use v5::*;
        let (client, mut eventloop) = AsyncClient::new(o, 64);
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(event) => {
                        if tx.send(Ok(event)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        let mut c = TestClientV5 {
            client,
            receive_max: None,
            events,
            inbox: VecDeque::new(),
            ended: None,
            task,
        };
        match tokio::time::timeout(WAIT + Duration::from_secs(1), c.events.recv()).await {
            Ok(Some(Ok(Event::Incoming(Packet::ConnAck(ack))))) => {
                if ack.code == ConnectReturnCode::Success {
                    c.receive_max = ack.properties.and_then(|p| p.receive_max);
                    Ok(c)
                } else {
                    Err(ConnectError::Transport(format!(
                        "v5 refused: {:?}",
                        ack.code
                    )))
                }
            }
            Ok(Some(Ok(other))) => Err(ConnectError::Transport(format!(
                "expected CONNACK, got {other:?}"
            ))),
            Ok(Some(Err(e))) => Err(ConnectError::Transport(format!("{e} ({e:?})"))),
            Ok(None) => Err(ConnectError::Transport("event loop ended".into())),
            Err(_) => Err(ConnectError::Timeout),
        }
    }

    async fn pump<T>(
        &mut self,
        wait: Duration,
        mut want: impl FnMut(&v5::Event) -> Option<T>,
    ) -> Result<T, WaitError> {
        use v5::*;
        if let Some(e) = &self.ended {
            return Err(WaitError::Closed(e.clone()));
        }
        let deadline = Instant::now() + wait;
        loop {
            let item = match timeout_at(deadline, self.events.recv()).await {
                Err(_) => return Err(WaitError::Timeout),
                Ok(item) => item,
            };
            match item {
                Some(Ok(event)) => {
                    if let Event::Incoming(Packet::Publish(p)) = &event {
                        self.inbox.push_back(V5Message {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            payload: String::from_utf8_lossy(&p.payload).into_owned(),
                            properties: p.properties.clone(),
                        });
                    }
                    if let Some(t) = want(&event) {
                        return Ok(t);
                    }
                }
                Some(Err(e)) => {
                    let e = format!("{e} ({e:?})");
                    self.ended = Some(e.clone());
                    return Err(WaitError::Closed(e));
                }
                None => {
                    self.ended = Some("event loop ended".into());
                    return Err(WaitError::Closed("event loop ended".into()));
                }
            }
        }
    }

    /// One SUBSCRIBE with every filter at QoS 1; returns the SUBACK's reason codes.
    pub async fn subscribe_many(
        &mut self,
        filters: &[&str],
    ) -> Result<Vec<v5::SubscribeReasonCode>, WaitError> {
        use v5::*;
        let filters: Vec<rumqttc::v5::mqttbytes::v5::Filter> = filters
            .iter()
            .map(|f| rumqttc::v5::mqttbytes::v5::Filter::new(*f, QoS::AtLeastOnce))
            .collect();
        enqueue(Instant::now() + WAIT, self.client.subscribe_many(filters)).await?;
        self.pump(WAIT, |ev| match ev {
            Event::Incoming(Packet::SubAck(ack)) => Some(ack.return_codes.clone()),
            _ => None,
        })
        .await
    }

    /// Publishes at QoS 1 and waits for the PUBACK.
    pub async fn publish(&mut self, topic: &str, payload: &str) -> Result<(), WaitError> {
        use v5::*;
        let request =
            self.client
                .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec());
        enqueue(Instant::now() + WAIT, request).await?;
        self.pump(WAIT, |ev| match ev {
            Event::Incoming(Packet::PubAck(_)) => Some(()),
            _ => None,
        })
        .await
    }

    /// Publishes at QoS 1 with PUBLISH `properties` and waits for the PUBACK.
    pub async fn publish_with(
        &mut self,
        topic: &str,
        payload: &str,
        properties: v5::PublishProperties,
    ) -> Result<(), WaitError> {
        use v5::*;
        let request = self.client.publish_with_properties(
            topic,
            QoS::AtLeastOnce,
            false,
            payload.as_bytes().to_vec(),
            properties,
        );
        enqueue(Instant::now() + WAIT, request).await?;
        self.pump(WAIT, |ev| match ev {
            Event::Incoming(Packet::PubAck(_)) => Some(()),
            _ => None,
        })
        .await
    }

    /// The next message received, as `(topic, payload)`.
    pub async fn next_publish(&mut self, wait: Duration) -> Option<(String, String)> {
        self.next_message(wait).await.map(|m| (m.topic, m.payload))
    }

    /// The next message received, with its properties.
    pub async fn next_message(&mut self, wait: Duration) -> Option<V5Message> {
        use v5::*;
        if let Some(m) = self.inbox.pop_front() {
            return Some(m);
        }
        let got = self
            .pump(wait, |ev| {
                matches!(ev, Event::Incoming(Packet::Publish(_))).then_some(())
            })
            .await;
        got.ok().and_then(|()| self.inbox.pop_front())
    }

    /// Waits up to `wait` for the connection to end; returns the DISCONNECT packet the server
    /// sent first, if any, as its Debug text. `None` if the connection did not end.
    pub async fn wait_disconnected(&mut self, wait: Duration) -> Option<Option<String>> {
        use v5::*;
        let mut disconnect = None;
        let r = self
            .pump(wait, |ev| {
                if let Event::Incoming(Packet::Disconnect(d)) = ev {
                    disconnect = Some(format!("{d:?}"));
                }
                None::<()>
            })
            .await;
        match r {
            Err(WaitError::Closed(_)) => Some(disconnect),
            _ => None,
        }
    }
}

/// Hands a request to rumqttc's bounded request channel, giving up at `deadline` (the channel
/// stays full when the event loop cannot send, e.g. with every in-flight slot unacknowledged).
async fn enqueue<E: fmt::Display>(
    deadline: Instant,
    request: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), WaitError> {
    match timeout_at(deadline, request).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(WaitError::Closed(e.to_string())),
        Err(_) => Err(WaitError::Timeout),
    }
}

/// rumqttc's error with its Debug form (which names the TLS alert or the I/O error kind).
fn describe(e: &ConnectionError) -> String {
    format!("{e} ({e:?})")
}

/// A process-unique string for message payloads.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
}

//! One device connection, from the TLS handshake to the last packet.
//!
//! `handle` runs the handshake and CONNECT under timeouts, checks who the client is, builds a
//! rumqttd link with `tenant_id = user` on the user's partition, and then `Session::run`
//! shuttles packets between the socket and the router, enforcing the topic rules on the way in.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::protocol::{
    ConnAck, ConnAckProperties, Connect, ConnectReturnCode, Disconnect, DisconnectReasonCode,
    LastWill, Login, Packet, Publish, PublishProperties, SubAck, Subscribe, SubscribeReasonCode,
};
use rumqttd::Notification;
use tokio::io::{split, AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{timeout, Instant};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info};

use crate::codec::{write_all, Codec, FrameError, Version};
use crate::identity::{self, PeerIdentity};
use crate::rules::{filter_allowed, topic_allowed, valid_id};
use crate::server::{ConnectionEvent, DisconnectReason, Shared};
use crate::BrokerStats;

/// Most router notifications written to the socket in one batch.
const WRITE_BATCH: usize = 64;

/// How the client proves who it is.
enum Credentials {
    /// A verified client certificate (TLS listener).
    Certificate(PeerIdentity),
    /// Username and session token in CONNECT (plaintext development listener).
    Login,
}

/// Runs one accepted socket to its end.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
) {
    let Some(acceptor) = tls else {
        // Boxed: this path is for development, and the TLS path should not pay for it.
        return Box::pin(session(shared, split(stream), Credentials::Login, peer)).await;
    };
    if let Some((halves, id)) = handshake(shared, acceptor, stream, peer).await {
        session(shared, halves, Credentials::Certificate(id), peer).await
    }
}

/// The TLS handshake and the identity the client certificate names.
///
/// Returns the stream already split: rustc keeps a local's room in a task's state until its
/// scope ends, even after it was moved out, and the TLS stream (and the handshake's result)
/// are over 1 KiB each, which every connection's task would carry for its whole life.
async fn handshake(
    shared: &Shared,
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<(Halves<TlsStream<TcpStream>>, PeerIdentity)> {
    let handshake_timeout = Duration::from_millis(shared.cfg.handshake_timeout_ms);
    let handshake = tokio::select! {
        r = timeout(handshake_timeout, acceptor.accept(stream)) => r,
        _ = stopping(shared) => return None,
    };
    let stream = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            shared.stats.refused.inc("handshake");
            debug!(%peer, error = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            shared.stats.refused.inc("handshake");
            debug!(%peer, "TLS handshake timed out");
            return None;
        }
    };
    let identity = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|cert| identity::from_certificate(cert.as_ref()));
    match identity {
        Some(id) if valid_id(&id.user) && valid_id(&id.device) => Some((split(stream), id)),
        _ => {
            shared.stats.refused.inc("handshake");
            debug!(%peer, "client certificate names no valid user (O) and device (CN)");
            None
        }
    }
}

/// The two halves of a connection's stream.
type Halves<S> = (ReadHalf<S>, WriteHalf<S>);

/// Resolves once the front end stops reading from clients (at once if it already has).
async fn quieted(shared: &Shared) {
    let mut quiet = shared.quiet.clone();
    // An error means the broker is gone: stop reading too.
    let _ = quiet.wait_for(|q| *q).await;
}

/// Resolves once the front end is shutting down (at once if it already is).
async fn stopping(shared: &Shared) {
    let mut shutdown = shared.shutdown.clone();
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return; // the sender is gone, which also means stopping
        }
    }
}

/// CONNECT, authentication, link, then the packet pump.
///
/// Takes the stream already split: a stream argument would stay in the task's state next to
/// the halves made from it (the TLS stream is over 1 KiB).
async fn session<S>(
    shared: &Arc<Shared>,
    (mut rd, mut wr): Halves<S>,
    creds: Credentials,
    peer: SocketAddr,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut codec = Codec::new(shared.cfg.max_packet_size);
    let Some((connect, will, login)) = read_connect(shared, &mut codec, &mut rd, peer).await else {
        return;
    };
    let (user, device) = match authenticate(shared, &connect, login.as_ref(), creds) {
        Ok(who) => who,
        Err(code) => {
            shared.stats.refused.inc("auth");
            return refuse(&codec, &mut wr, code, peer).await;
        }
    };
    if let Some(will) = &will {
        let ok = std::str::from_utf8(&will.topic).is_ok_and(|t| topic_allowed(&user, t));
        if !ok {
            shared.stats.refused.inc("auth");
            debug!(%peer, user, device, "Last Will outside the user's prefix");
            return refuse(&codec, &mut wr, ConnectReturnCode::NotAuthorized, peer).await;
        }
    }
    let (link_tx, link_rx) = match build_link(shared, &user, &device).await {
        Some(link) => link,
        None => {
            shared.stats.refused.inc("router");
            return refuse(&codec, &mut wr, ConnectReturnCode::ServiceUnavailable, peer).await;
        }
    };
    // Registered before the CONNACK, then authorized again: a revocation (or a disabled user)
    // stores its decision first and then closes the registered connections, so one that landed
    // after the check above but before this registration is caught by the second check.
    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let kick = Arc::new(Notify::new());
    shared.registry.insert(&user, &device, conn, kick.clone());
    if !shared.auth.device_allowed(&user, &device) {
        shared.registry.remove(&user, &device, conn);
        release(link_tx);
        shared.stats.refused.inc("auth");
        debug!(%peer, user, device, "revoked while connecting");
        return refuse(&codec, &mut wr, ConnectReturnCode::NotAuthorized, peer).await;
    }
    // Grows to the largest batch written; idle connections keep it small.
    let mut scratch = BytesMut::with_capacity(256);
    let accepted = write_all(
        &codec,
        &mut wr,
        [connack(&codec, shared.cfg.max_inflight_in)],
        &mut scratch,
    );
    if accepted.await.is_err() {
        shared.registry.remove(&user, &device, conn);
        return release(link_tx);
    }

    shared.linked.fetch_add(1, Ordering::AcqRel);
    shared.stats.connected.inc();
    let _ = shared.events.send(ConnectionEvent::Connected {
        user: user.clone(),
        device: device.clone(),
        conn,
    });
    info!(user, device, conn, %peer, version = ?codec.version(), "connected");

    let keep_alive = match connect.keep_alive {
        0 => shared.cfg.max_keep_alive_secs,
        k => k.min(shared.cfg.max_keep_alive_secs),
    };
    let mut s = Session {
        codec,
        rd,
        wr,
        scratch,
        link_tx,
        link_rx,
        link_alive: true,
        user: user.clone(),
        pending_subacks: HashMap::new(),
        idle: Duration::from_millis(u64::from(keep_alive) * 1500),
        inflight: 0,
        max_inflight: usize::from(shared.cfg.max_inflight_in),
        stats: shared.stats.clone(),
    };
    let reason = s.run(&kick, shared).await;
    s.finish(reason, will).await;

    shared.registry.remove(&user, &device, conn);
    shared.linked.fetch_sub(1, Ordering::AcqRel);
    shared.stats.disconnects.inc(reason.as_str());
    let _ = shared.events.send(ConnectionEvent::Disconnected {
        user: user.clone(),
        device: device.clone(),
        conn,
        reason,
    });
    info!(user, device, conn, ?reason, "disconnected");
}

/// The CONNECT packet's parts, within the connect timeout. A separate future so that the
/// packet read (~400 bytes) is not part of the connection task's state for its whole life.
async fn read_connect<S: AsyncRead + AsyncWrite + Unpin + Send>(
    shared: &Shared,
    codec: &mut Codec,
    rd: &mut ReadHalf<S>,
    peer: SocketAddr,
) -> Option<(Connect, Option<LastWill>, Option<Login>)> {
    let connect_timeout = Duration::from_millis(shared.cfg.connect_timeout_ms);
    let first = tokio::select! {
        r = timeout(connect_timeout, codec.read_connect(rd)) => r,
        _ = stopping(shared) => return None,
    };
    match first {
        Ok(Ok(Packet::Connect(connect, _props, will, _will_props, login))) => {
            Some((connect, will, login))
        }
        Ok(Ok(_)) => {
            shared.stats.refused.inc("connect");
            None
        }
        Ok(Err(e)) => {
            shared.stats.refused.inc("connect");
            debug!(%peer, error = %e, "no valid CONNECT");
            None
        }
        Err(_) => {
            shared.stats.refused.inc("connect");
            debug!(%peer, "CONNECT timed out");
            None
        }
    }
}

/// Decides the (user, device) of a connection, or the CONNACK code that refuses it.
fn authenticate(
    shared: &Shared,
    connect: &Connect,
    login: Option<&Login>,
    creds: Credentials,
) -> Result<(String, String), ConnectReturnCode> {
    let (user, device) = match creds {
        Credentials::Certificate(id) => {
            // The client id must be the certificate's device (an empty one means "the same").
            if !connect.client_id.is_empty() && connect.client_id != id.device {
                return Err(ConnectReturnCode::ClientIdentifierNotValid);
            }
            (id.user, id.device)
        }
        Credentials::Login => {
            let login = login.ok_or(ConnectReturnCode::BadUserNamePassword)?;
            if !valid_id(&connect.client_id) {
                return Err(ConnectReturnCode::ClientIdentifierNotValid);
            }
            if !valid_id(&login.username) || !shared.auth.login(&login.username, &login.password) {
                return Err(ConnectReturnCode::BadUserNamePassword);
            }
            (login.username.clone(), connect.client_id.clone())
        }
    };
    if !shared.auth.device_allowed(&user, &device) {
        return Err(ConnectReturnCode::NotAuthorized);
    }
    Ok((user, device))
}

/// Builds the device's rumqttd link on its user's partition.
async fn build_link(shared: &Shared, user: &str, device: &str) -> Option<(LinkTx, LinkRx)> {
    let partition = shared.routers.partition_of(user);
    match shared
        .routers
        .build_link(partition, device, Some(user.to_owned()))
        .await
    {
        Ok(link) => Some(link),
        Err(e) => {
            debug!(error = %e, "router refused the link");
            None
        }
    }
}

/// The CONNACK that accepts a connection. MQTT 5 clients learn the in-flight cap up front
/// (Receive Maximum).
fn connack(codec: &Codec, receive_max: u16) -> Packet {
    let props = (codec.version() == Version::V5).then(|| ConnAckProperties {
        receive_max: Some(receive_max),
        ..ConnAckProperties::default()
    });
    let ack = ConnAck {
        session_present: false,
        code: ConnectReturnCode::Success,
    };
    Packet::ConnAck(ack, props)
}

/// Answers CONNECT with a refusal and closes.
async fn refuse<W: AsyncWrite + Unpin>(
    codec: &Codec,
    wr: &mut W,
    code: ConnectReturnCode,
    peer: SocketAddr,
) {
    debug!(%peer, ?code, "connection refused");
    let ack = ConnAck {
        session_present: false,
        code,
    };
    let mut scratch = BytesMut::new();
    let _ = write_all(codec, wr, [Packet::ConnAck(ack, None)], &mut scratch).await;
    let _ = wr.shutdown().await;
}

/// Releases a router link whose client will not be served (the router would hold it forever).
fn release(mut link_tx: LinkTx) {
    let _ = link_tx.push(disconnect_packet());
}

fn disconnect_packet() -> Packet {
    Packet::Disconnect(
        Disconnect {
            reason_code: DisconnectReasonCode::NormalDisconnection,
        },
        None,
    )
}

/// A linked connection.
struct Session<S> {
    codec: Codec,
    rd: ReadHalf<S>,
    wr: WriteHalf<S>,
    scratch: BytesMut,
    link_tx: LinkTx,
    link_rx: LinkRx,
    /// False once the router dropped the link (e.g. a newer connection took the client id).
    link_alive: bool,
    user: String,
    /// SUBSCRIBEs of which only some filters were allowed: pkid -> allowed flag per filter, to
    /// merge the router's SUBACK with our refusals.
    pending_subacks: HashMap<u16, Vec<bool>>,
    /// Silence after which the connection is considered dead (1.5 x keep-alive).
    idle: Duration,
    /// QoS 1/2 publishes passed to the router and not yet acknowledged to the client.
    inflight: usize,
    /// At this many in flight the socket is not read (back-pressure on one client).
    max_inflight: usize,
    /// The front end's counters.
    stats: Arc<BrokerStats>,
}

/// What [`Session::wait`] woke up for.
#[allow(
    clippy::large_enum_variant,
    reason = "returned once per wake-up and taken apart at once; a box would cost an \
              allocation per notification"
)]
enum Woke {
    /// The client sent bytes (in the codec's buffer now).
    Read,
    /// The router has a notification for the client.
    Note(Option<Notification>),
    /// The front end stopped reading from clients.
    Quiet,
    /// The connection is over.
    Ended(DisconnectReason),
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    async fn run(&mut self, kick: &Notify, shared: &Shared) -> DisconnectReason {
        let mut deadline = Instant::now() + self.idle;
        let stop = stopping(shared);
        tokio::pin!(stop);
        // While draining, nothing is read (no new requests, no keep-alive), but router
        // notifications (answers) are still written.
        let quiet = quieted(shared);
        tokio::pin!(quiet);
        let mut reading = true;
        loop {
            // Waiting and handling are two steps (not one `select!` with the handling in its
            // arms) so that the task's state holds one or the other, not both.
            let step = match self
                .wait(kick, stop.as_mut(), quiet.as_mut(), reading, deadline)
                .await
            {
                Woke::Ended(reason) => return reason,
                Woke::Quiet => {
                    reading = false;
                    continue;
                }
                Woke::Read => None,
                // Taken into packets at once: the notification (~250 bytes) is not kept
                // across the write.
                Woke::Note(note) => Some(self.take_batch(note)),
            };
            let handled = match step {
                None => {
                    deadline = Instant::now() + self.idle;
                    self.handle_client_bytes().await
                }
                Some((packets, unscheduled)) => self.forward_to_client(packets, unscheduled).await,
            };
            if let Err(reason) = handled {
                return reason;
            }
        }
    }

    /// Waits for the next thing to do: bytes from the client, a router notification, or an end.
    async fn wait(
        &mut self,
        kick: &Notify,
        stop: Pin<&mut impl Future<Output = ()>>,
        quiet: Pin<&mut impl Future<Output = ()>>,
        reading: bool,
        deadline: Instant,
    ) -> Woke {
        tokio::select! {
            _ = kick.notified() => Woke::Ended(DisconnectReason::Kicked),
            _ = stop => Woke::Ended(DisconnectReason::Shutdown),
            _ = quiet, if reading => Woke::Quiet,
            _ = tokio::time::sleep_until(deadline), if reading => {
                Woke::Ended(DisconnectReason::KeepAliveTimeout)
            }
            read = self.codec.fill(&mut self.rd), if reading && self.inflight < self.max_inflight => {
                match read {
                    Ok(()) => Woke::Read,
                    Err(FrameError::Closed) => Woke::Ended(DisconnectReason::Lost),
                    Err(e) => {
                        debug!(user = self.user, error = %e, "read failed");
                        Woke::Ended(DisconnectReason::Lost)
                    }
                }
            }
            note = self.link_rx.next() => match note {
                Ok(note) => Woke::Note(note),
                Err(_) => {
                    self.link_alive = false;
                    Woke::Ended(DisconnectReason::Replaced)
                }
            },
        }
    }

    /// Decodes every whole packet in the read buffer, checks it, and passes it to the router.
    async fn handle_client_bytes(&mut self) -> Result<(), DisconnectReason> {
        let mut to_router = Vec::new();
        let mut to_client = Vec::new();
        let mut ended = None;
        loop {
            let packet = match self.codec.decode() {
                Ok(Some(packet)) => packet,
                Ok(None) => break,
                Err(e) => {
                    debug!(user = self.user, error = %e, "malformed packet");
                    return Err(DisconnectReason::Violation);
                }
            };
            match packet {
                Packet::Publish(publish, props) => {
                    if !self.publish_allowed(&publish, props.as_ref()) {
                        return Err(DisconnectReason::Violation);
                    }
                    // QoS 1 and 2 publishes await an acknowledgement.
                    if self.codec.last_qos() > 0 {
                        self.inflight += 1;
                    }
                    self.stats.publishes_in.inc();
                    to_router.push(Packet::Publish(publish, props));
                }
                Packet::Subscribe(sub, props) => match self.check_subscribe(sub) {
                    Ok(sub) => to_router.push(Packet::Subscribe(sub, props)),
                    Err(suback) => to_client.push(Packet::SubAck(suback, None)),
                },
                p @ (Packet::Unsubscribe(..)
                | Packet::PubAck(..)
                | Packet::PubRec(..)
                | Packet::PubRel(..)
                | Packet::PubComp(..)
                | Packet::PingReq(..)) => to_router.push(p),
                Packet::Disconnect(..) => {
                    ended = Some(DisconnectReason::Clean);
                    break;
                }
                other => {
                    debug!(user = self.user, packet = ?other, "unexpected packet from client");
                    return Err(DisconnectReason::Violation);
                }
            }
        }
        if !to_client.is_empty() {
            write_all(&self.codec, &mut self.wr, to_client, &mut self.scratch)
                .await
                .map_err(|_| DisconnectReason::Lost)?;
        }
        if let Some(last) = to_router.pop() {
            self.link_tx.buffer().extend(to_router);
            if self.link_tx.push(last).is_err() {
                self.link_alive = false;
                return Err(DisconnectReason::Replaced);
            }
        }
        ended.map_or(Ok(()), Err)
    }

    /// The topic must be the user's. An MQTT 5 topic alias is a protocol error: CONNACK grants
    /// none (no Topic Alias Maximum), and rumqttd would otherwise keep a per-connection alias
    /// table, a second idea of the topic next to the one checked here.
    fn publish_allowed(&self, publish: &Publish, props: Option<&PublishProperties>) -> bool {
        if props.is_some_and(|p| p.topic_alias.is_some()) {
            debug!(user = self.user, "publish with a topic alias; closing");
            return false;
        }
        let ok = std::str::from_utf8(&publish.topic).is_ok_and(|t| topic_allowed(&self.user, t));
        if !ok {
            debug!(
                user = self.user,
                topic = %String::from_utf8_lossy(&publish.topic),
                "publish outside the user's prefix; closing"
            );
        }
        ok
    }

    /// Keeps the allowed filters of a SUBSCRIBE. `Err` is the SUBACK to send at once when no
    /// filter is allowed.
    fn check_subscribe(&mut self, mut sub: Subscribe) -> Result<Subscribe, SubAck> {
        let allowed: Vec<bool> = sub
            .filters
            .iter()
            .map(|f| filter_allowed(&self.user, &f.path))
            .collect();
        if allowed.iter().all(|a| *a) {
            return Ok(sub);
        }
        debug!(user = self.user, filters = ?sub.filters.iter().map(|f| &f.path).collect::<Vec<_>>(), "subscription refused");
        if !allowed.iter().any(|a| *a) {
            return Err(SubAck {
                pkid: sub.pkid,
                return_codes: vec![self.refused_code(); allowed.len()],
            });
        }
        let mut flags = allowed.iter();
        sub.filters
            .retain(|_| flags.next().copied().unwrap_or(false));
        self.pending_subacks.insert(sub.pkid, allowed);
        Ok(sub)
    }

    fn refused_code(&self) -> SubscribeReasonCode {
        match self.codec.version() {
            Version::V4 => SubscribeReasonCode::Failure,
            Version::V5 => SubscribeReasonCode::NotAuthorized,
        }
    }

    /// Writes a batch from [`Session::take_batch`] to the socket. When the router unscheduled
    /// this link (its buffer was full), asks it to go on once the batch is written; only then, since the router's scheduler treats a wake
    /// of a link it did not pause as a bug.
    async fn forward_to_client(
        &mut self,
        packets: Vec<Packet>,
        unscheduled: bool,
    ) -> Result<(), DisconnectReason> {
        write_all(&self.codec, &mut self.wr, packets, &mut self.scratch)
            .await
            .map_err(|_| DisconnectReason::Lost)?;
        if !self.link_alive {
            return Err(DisconnectReason::Replaced);
        }
        if unscheduled && Box::pin(self.link_rx.wake()).await.is_err() {
            self.link_alive = false;
            return Err(DisconnectReason::Replaced);
        }
        Ok(())
    }

    /// The packets of one write: `first` and the notifications already queued behind it (up to
    /// [`WRITE_BATCH`]), and whether the router unscheduled the link on the way.
    fn take_batch(&mut self, first: Option<Notification>) -> (Vec<Packet>, bool) {
        let mut packets = Vec::new();
        let mut unscheduled = false;
        let mut next = first;
        for taken in 1..=WRITE_BATCH {
            match next.take() {
                Some(Notification::Unschedule) => unscheduled = true,
                Some(note) => {
                    if let Some(packet) = Option::<Packet>::from(note) {
                        match packet {
                            Packet::PubAck(..) | Packet::PubRec(..) => {
                                self.inflight = self.inflight.saturating_sub(1);
                            }
                            Packet::Publish(..) => self.stats.publishes_out.inc(),
                            _ => {}
                        }
                        packets.push(self.merge_suback(packet));
                    }
                }
                None => {}
            }
            if taken == WRITE_BATCH {
                break;
            }
            match poll_once(self.link_rx.next()) {
                Some(Ok(note)) => next = note,
                Some(Err(_)) => {
                    self.link_alive = false;
                    break;
                }
                None => break,
            }
        }
        (packets, unscheduled)
    }

    /// Puts our refusals back into a SUBACK for a partly allowed SUBSCRIBE.
    fn merge_suback(&mut self, packet: Packet) -> Packet {
        let Packet::SubAck(mut suback, props) = packet else {
            return packet;
        };
        if let Some(allowed) = self.pending_subacks.remove(&suback.pkid) {
            let refused = self.refused_code();
            let mut granted = suback.return_codes.into_iter();
            suback.return_codes = allowed
                .iter()
                .map(|ok| match ok {
                    true => granted.next().unwrap_or(refused),
                    false => refused,
                })
                .collect();
        }
        Packet::SubAck(suback, props)
    }

    /// Publishes the Last Will unless the client said DISCONNECT or the node closed the
    /// connection because the device was revoked or its user disabled (the will would be
    /// published with the rights just withdrawn), releases the router link, and tells a v5
    /// client why the server closed.
    async fn finish(&mut self, reason: DisconnectReason, will: Option<LastWill>) {
        if self.link_alive {
            let will_due = !matches!(reason, DisconnectReason::Clean | DisconnectReason::Kicked);
            if let (Some(will), true) = (will, will_due) {
                // Checked against the prefix at CONNECT. Sent at QoS 0 on the in-process link.
                let publish = Publish::new(will.topic, will.message, false);
                let _ = self.link_tx.push(Packet::Publish(publish, None));
            }
            let _ = self.link_tx.push(disconnect_packet());
        }
        if self.codec.version() == Version::V5 {
            let code = match reason {
                DisconnectReason::Kicked => Some(DisconnectReasonCode::AdministrativeAction),
                DisconnectReason::Replaced => Some(DisconnectReasonCode::SessionTakenOver),
                DisconnectReason::Shutdown => Some(DisconnectReasonCode::ServerShuttingDown),
                DisconnectReason::KeepAliveTimeout => Some(DisconnectReasonCode::KeepAliveTimeout),
                DisconnectReason::Violation => Some(DisconnectReasonCode::NotAuthorized),
                DisconnectReason::Clean | DisconnectReason::Lost => None,
            };
            if let Some(reason_code) = code {
                let packet = Packet::Disconnect(Disconnect { reason_code }, None);
                let _ = write_all(&self.codec, &mut self.wr, [packet], &mut self.scratch).await;
            }
        }
        let _ = self.wr.shutdown().await;
    }
}

/// Polls a future once: `Some` if it was ready at once. Used to drain notifications the router
/// has already queued without waiting for more.
fn poll_once<F: std::future::Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

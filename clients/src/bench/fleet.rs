//! The users' connections: [`Fleet::chat`] (enrolment, then one SDK [`Client`] per user) or
//! [`Fleet::raw`] (one bare rumqttc connection per user, any broker), and sending through them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use chat_proto::{Conv, Event, ReceiptStatus, SendRequest, SentEvent, Target};
use rumqttc::{AsyncClient, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport};
use tokio::sync::{oneshot, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::report::{memory_of, Report, Tracker};
use super::Args;
use crate::{Api, Client, ConnState, Error, Options, Session, StateStore};

/// How long the connect storm may take before the run gives up.
const STORM_LIMIT: Duration = Duration::from_secs(300);

/// Where a message goes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dest {
    /// A user, by index.
    User(u32),
    /// A group, by index.
    Group(usize),
}

/// Every user's connection. Cheap to clone (shared).
#[derive(Clone)]
pub(crate) struct Fleet(Arc<Kind>);

enum Kind {
    Chat {
        /// Each user's first device: it sends and counts deliveries.
        clients: Vec<Client>,
        /// The other devices (--devices-per-user): they hold a connection and read.
        others: Vec<Client>,
        names: Vec<String>,
        groups: OnceLock<Vec<String>>,
    },
    Raw {
        conns: Vec<RawConn>,
        topics: Vec<String>,
    },
}

impl Fleet {
    /// Chat mode: registers (or reuses) and enrols every user's devices with bounded
    /// concurrency, then starts one SDK client per device and waits until all are online.
    pub(crate) async fn chat(
        args: &Args,
        names: &[String],
        t: &Tracker,
        report: &mut Report,
    ) -> Result<Fleet> {
        let devices = args.devices_per_user;
        eprintln!("enrolling {} users x {devices} devices...", names.len());
        let started = Instant::now();
        // One HTTP client for enrolment and every device: building one costs milliseconds.
        let api = Api::new(&args.server, None)?;
        let sessions = enrol(args, &api, names, devices).await?;
        report.enrol_s = started.elapsed().as_secs_f64();
        report.rss_before_connect_kib = args.pid.and_then(|pid| memory_of(pid).0);
        report.bench_rss_before_connect_kib = memory_of(std::process::id()).0;

        eprintln!("connecting {} devices...", sessions.len());
        let started = Instant::now();
        let mut clients = Vec::with_capacity(names.len());
        let mut others = Vec::with_capacity(sessions.len() - names.len());
        for (i, session) in sessions.into_iter().enumerate() {
            let (user, device) = (i / devices, i % devices);
            let (client, events) = Client::start_with_api(
                session,
                StateStore::Memory,
                Options::default(),
                api.clone(),
            )?;
            if device == 0 {
                tokio::spawn(consume(
                    user as u32,
                    client.clone(),
                    events,
                    t.clone(),
                    args.receipts,
                ));
                tokio::spawn(count_reconnects(client.state(), t.clone()));
                clients.push(client);
            } else {
                tokio::spawn(discard(events));
                others.push(client);
            }
        }
        report.clients_started_s = started.elapsed().as_secs_f64();
        let mut waits = JoinSet::new();
        for c in clients.iter().chain(&others) {
            let c = c.clone();
            waits.spawn(async move { c.wait_online(STORM_LIMIT).await });
        }
        while let Some(joined) = waits.join_next().await {
            joined.map_err(|e| anyhow!("connect task: {e}"))??;
        }
        report.connect_s = started.elapsed().as_secs_f64();
        Ok(Fleet(Arc::new(Kind::Chat {
            clients,
            others,
            names: names.to_vec(),
            groups: OnceLock::new(),
        })))
    }

    /// Raw mode: one rumqttc connection per user to any broker, each subscribed to its own
    /// topic; all started at once, and the storm time is until every SUBACK.
    pub(crate) async fn raw(
        args: &Args,
        names: &[String],
        t: &Tracker,
        report: &mut Report,
    ) -> Result<Fleet> {
        let (host, port) = crate::conn::split_host_port(&args.mqtt)?;
        let tls = match &args.ca {
            Some(path) => {
                let pem = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Some(crate::tls::client_config(&pem, None)?)
            }
            None => None,
        };
        eprintln!("connecting {} raw MQTT clients...", names.len());
        let started = Instant::now();
        let topics: Vec<String> = names
            .iter()
            .map(|n| format!("{}/{n}", args.topic_prefix))
            .collect();
        let mut subscribed = Vec::new();
        let mut conns = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let mut o = MqttOptions::new(name.clone(), host.clone(), port);
            o.set_keep_alive(Duration::from_secs(60));
            o.set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024);
            if let Some(tls) = &tls {
                o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                    tls.clone(),
                )));
            }
            if let Some(user) = &args.username {
                let password = args.mqtt_password.clone().unwrap_or_default();
                o.set_credentials(user.replace("{user}", name), password);
            }
            let (conn, suback) = RawConn::start(o, i as u32, t.clone());
            conn.client
                .subscribe(topics[i].clone(), QoS::AtLeastOnce)
                .await
                .map_err(|e| anyhow!("subscribing {name}: {e}"))?;
            subscribed.push(suback);
            conns.push(conn);
        }
        for (i, suback) in subscribed.into_iter().enumerate() {
            match tokio::time::timeout(STORM_LIMIT, suback).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => bail!("{}: {e}", names[i]),
                Ok(Err(_)) => bail!("{}: connection task ended", names[i]),
                Err(_) => bail!("{}: not subscribed within {STORM_LIMIT:?}", names[i]),
            }
        }
        report.connect_s = started.elapsed().as_secs_f64();
        Ok(Fleet(Arc::new(Kind::Raw { conns, topics })))
    }

    /// Chat mode: groups of `size` consecutive users (the first creates it); returns each
    /// group's members by index.
    pub(crate) async fn make_groups(&self, size: usize) -> Result<Vec<Vec<u32>>> {
        let Kind::Chat {
            clients,
            names,
            groups,
            ..
        } = &*self.0
        else {
            bail!("groups are for chat mode only");
        };
        eprintln!("creating groups of {size}...");
        let mut ids = Vec::new();
        let mut members = Vec::new();
        for chunk in (0..clients.len() as u32).collect::<Vec<_>>().chunks(size) {
            if chunk.len() < 2 {
                continue;
            }
            let others: Vec<String> = chunk[1..]
                .iter()
                .map(|m| names[*m as usize].clone())
                .collect();
            let id = clients[chunk[0] as usize]
                .group_create("bench", others)
                .await
                .context("creating a group (does the server support groups?)")?;
            ids.push(id);
            members.push(chunk.to_vec());
        }
        let _ = groups.set(ids);
        Ok(members)
    }

    /// Chat mode: every user's client, their names and the groups' ids (`None` in raw mode).
    pub(crate) fn chat_parts(&self) -> Option<(&[Client], &[String], &[String])> {
        match &*self.0 {
            Kind::Chat {
                clients,
                names,
                groups,
                ..
            } => Some((
                clients,
                names,
                groups.get().map(Vec::as_slice).unwrap_or_default(),
            )),
            Kind::Raw { .. } => None,
        }
    }

    /// Sends one message; resolves on its acknowledgement: the `sent` event in chat mode,
    /// nothing more than the PUBACK in raw mode.
    pub(crate) async fn send(
        &self,
        from: u32,
        dest: Dest,
        body: Vec<u8>,
    ) -> Result<Option<SentEvent>, String> {
        match &*self.0 {
            Kind::Chat {
                clients,
                names,
                groups,
                ..
            } => {
                let target = match dest {
                    Dest::User(to) => Target::To(names[to as usize].clone()),
                    Dest::Group(g) => match groups.get().and_then(|ids| ids.get(g)) {
                        Some(id) => Target::Group(id.clone()),
                        None => return Err(format!("no group {g}")),
                    },
                };
                let client = &clients[from as usize];
                let request = SendRequest {
                    id: client.new_id(),
                    target,
                    body: Some(String::from_utf8_lossy(&body).into_owned()),
                    media: None,
                    reply_to: None,
                };
                client
                    .send_request(request)
                    .await
                    .map(Some)
                    .map_err(|e| e.to_string())
            }
            Kind::Raw { conns, topics } => {
                let Dest::User(to) = dest else {
                    return Err("raw mode has no groups".into());
                };
                conns[from as usize]
                    .publish(&topics[to as usize], body)
                    .await
                    .map(|()| None)
            }
        }
    }

    /// Chat mode: `(connected now, connections)`: how many devices are online (connected,
    /// subscribed, caught up). Raw mode: `None` (its connections do not reconnect).
    pub(crate) fn online(&self) -> Option<(usize, usize)> {
        let Kind::Chat {
            clients, others, ..
        } = &*self.0
        else {
            return None;
        };
        let all = clients.len() + others.len();
        let online = clients
            .iter()
            .chain(others)
            .filter(|c| matches!(*c.state().borrow(), ConnState::Online))
            .count();
        Some((online, all))
    }

    /// Closes every connection.
    pub(crate) async fn close(&self) {
        match &*self.0 {
            Kind::Chat {
                clients, others, ..
            } => {
                let mut closing = JoinSet::new();
                for c in clients.iter().chain(others) {
                    let c = c.clone();
                    closing.spawn(async move { c.close().await });
                }
                while closing.join_next().await.is_some() {}
            }
            Kind::Raw { conns, .. } => {
                for c in conns {
                    let _ = c.client.try_disconnect();
                }
            }
        }
    }
}

/// The device ids of a user with `devices` devices: `bench`, `bench1`, `bench2` ...
pub(crate) fn device_name(device: usize) -> String {
    if device == 0 {
        "bench".to_owned()
    } else {
        format!("bench{device}")
    }
}

/// Registers (or reuses) every user and enrols `devices` devices each, `--concurrency` users
/// at a time; the sessions in order user by user, `devices` each.
pub(crate) async fn enrol(
    args: &Args,
    api: &Api,
    names: &[String],
    devices: usize,
) -> Result<Vec<Session>> {
    let limit = Arc::new(Semaphore::new(args.concurrency));
    let mut tasks = JoinSet::new();
    for (i, name) in names.iter().enumerate() {
        let (api, limit, name) = (api.clone(), limit.clone(), name.clone());
        let (mqtt, password) = (args.mqtt.clone(), args.password.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            match api.register(&name, &password).await {
                Ok(()) | Err(Error::Api { status: 409, .. }) => {}
                Err(e) => return Err(anyhow!("registering {name}: {e}")),
            }
            let mut sessions = Vec::with_capacity(devices);
            for d in 0..devices {
                let device = device_name(d);
                let session = api
                    .enrol(&mqtt, &name, &password, &device)
                    .await
                    .with_context(|| format!("enrolling {name}'s device {device}"))?;
                sessions.push(session);
            }
            Ok((i, sessions))
        });
    }
    let mut by_user = vec![Vec::new(); names.len()];
    while let Some(joined) = tasks.join_next().await {
        let (i, sessions) = joined.map_err(|e| anyhow!("enrolment task: {e}"))??;
        by_user[i] = sessions;
    }
    Ok(by_user.into_iter().flatten().collect())
}

/// Fails early, with the fix, when this process may not open `needed` more files (one socket
/// per connection): `ulimit -n` is read from /proc/self/limits (Linux; elsewhere no check).
pub(crate) fn check_open_files(needed: usize) -> Result<()> {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return Ok(());
    };
    let soft = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse::<usize>().ok());
    // stdio, the runtime's epoll and wakers, the HTTP client's connections, DNS.
    let spare = 64;
    match soft {
        Some(limit) if needed + spare > limit => bail!(
            "{needed} connections need about {} open files, but this process may open {limit}: \
             raise `ulimit -n`, or split the devices over several chat-bench processes \
             (each with its own --prefix)",
            needed + spare
        ),
        _ => Ok(()),
    }
}

/// Drains the events of a device that only holds its connection.
async fn discard(mut events: crate::Events) {
    while events.recv().await.is_some() {}
}

/// Reads one chat user's events: every `msg` is a delivery (and gets a receipt if asked).
async fn consume(me: u32, client: Client, mut events: crate::Events, t: Tracker, receipts: bool) {
    while let Some(event) = events.recv().await {
        if let Event::Msg(m) = event {
            if let Some(body) = &m.body {
                t.received(me, body.as_bytes());
            }
            if receipts {
                let conv: Conv = m.conv;
                let _ = client.receipt(conv, ReceiptStatus::Delivered, m.seq).await;
            }
        }
    }
}

/// Counts the connections of one client that were lost after they had come up (a restart
/// of the node shows as one per user).
async fn count_reconnects(mut state: watch::Receiver<ConnState>, t: Tracker) {
    let mut was_up = false;
    while state.changed().await.is_ok() {
        match &*state.borrow_and_update() {
            ConnState::Online | ConnState::Syncing => was_up = true,
            ConnState::Reconnecting { .. } if was_up => {
                was_up = false;
                t.connection_lost();
            }
            ConnState::Closed => return,
            _ => {}
        }
    }
}

type Ack = oneshot::Sender<Result<(), String>>;

/// Publishes waiting for their packet id (in publish order), then for their PUBACK.
#[derive(Default)]
struct Waiting {
    queued: VecDeque<Ack>,
    by_pkid: HashMap<u16, Ack>,
    ended: Option<String>,
}

/// A bare MQTT connection (raw mode): no reconnect, PUBACKs matched to publishes.
struct RawConn {
    client: AsyncClient,
    /// Keeps "queue the waiter, hand the publish to rumqttc" atomic, so waiters and packet
    /// ids line up.
    order: tokio::sync::Mutex<()>,
    waiting: Arc<Mutex<Waiting>>,
}

fn lock(w: &Mutex<Waiting>) -> std::sync::MutexGuard<'_, Waiting> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

impl RawConn {
    /// Starts the connection; the receiver resolves at the first SUBACK (or the failure).
    fn start(
        o: MqttOptions,
        me: u32,
        t: Tracker,
    ) -> (RawConn, oneshot::Receiver<Result<(), String>>) {
        let (client, mut eventloop) = AsyncClient::new(o, 1024);
        let mut net = eventloop.network_options();
        net.set_tcp_nodelay(true);
        net.set_connection_timeout(60);
        eventloop.set_network_options(net);
        let waiting = Arc::new(Mutex::new(Waiting::default()));
        let (sub_tx, sub_rx) = oneshot::channel();
        let w = waiting.clone();
        tokio::spawn(async move {
            let mut sub_tx = Some(sub_tx);
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::Event::Outgoing(Outgoing::Publish(pkid))) => {
                        let mut w = lock(&w);
                        if let Some(ack) = w.queued.pop_front() {
                            w.by_pkid.insert(pkid, ack);
                        }
                    }
                    Ok(rumqttc::Event::Incoming(Packet::PubAck(ack))) => {
                        if let Some(waiter) = lock(&w).by_pkid.remove(&ack.pkid) {
                            let _ = waiter.send(Ok(()));
                        }
                    }
                    Ok(rumqttc::Event::Incoming(Packet::Publish(p))) => t.received(me, &p.payload),
                    Ok(rumqttc::Event::Incoming(Packet::SubAck(ack))) => {
                        let ok = ack
                            .return_codes
                            .iter()
                            .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_)));
                        if let Some(tx) = sub_tx.take() {
                            let _ = tx.send(if ok {
                                Ok(())
                            } else {
                                Err("subscription refused".into())
                            });
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let e = format!("connection failed: {e}");
                        if let Some(tx) = sub_tx.take() {
                            let _ = tx.send(Err(e.clone()));
                        }
                        let mut w = lock(&w);
                        let mut waiters: Vec<Ack> = w.queued.drain(..).collect();
                        waiters.extend(w.by_pkid.drain().map(|(_, a)| a));
                        for ack in waiters {
                            let _ = ack.send(Err(e.clone()));
                        }
                        w.ended = Some(e);
                        return;
                    }
                }
            }
        });
        let conn = RawConn {
            client,
            order: tokio::sync::Mutex::new(()),
            waiting,
        };
        (conn, sub_rx)
    }

    async fn publish(&self, topic: &str, body: Vec<u8>) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        {
            let _order = self.order.lock().await;
            {
                let mut w = lock(&self.waiting);
                if let Some(e) = &w.ended {
                    return Err(e.clone());
                }
                w.queued.push_back(tx);
            }
            self.client
                .publish(topic, QoS::AtLeastOnce, false, body)
                .await
                .map_err(|e| format!("publish: {e}"))?;
        }
        rx.await.map_err(|_| "connection ended".to_owned())?
    }
}

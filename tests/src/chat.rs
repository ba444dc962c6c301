//! Chat-level helpers for the messaging suites (`messaging.rs`, `sync_history.rs`,
//! `bad_input.rs`, `crash.rs`, `security*.rs`): a device that speaks the chat protocol over MQTT
//! ([`ChatDevice`]), two users who must not notice what a test does ([`Bystanders`]), a
//! windowed sender ([`send_windowed`]), and account set-up and history paging
//! over HTTP against any base URL (an in-process [`TestNode`] or a [`crate::ChatdProcess`]).
//!
//! Every wait has a timeout ([`WAIT`] unless told otherwise): a silent server fails the test
//! with a message that says what was awaited.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use rumqttc::{QoS, SubscribeReasonCode};
use serde_json::{json, Value};

use crate::{tls_options, Enrolment, TestClient, TestNode, TEST_PASSWORD, WAIT};

/// The Snowflake epoch of `msg_id` (2024-01-01T00:00:00Z) in unix milliseconds.
pub const SNOWFLAKE_EPOCH_MS: u64 = 1_704_067_200_000;

/// Largest `limit` of `GET /v1/conversations/{conv}/messages`.
pub const HTTP_HISTORY_MAX_LIMIT: u64 = 200;

/// Unix time now, in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The unix milliseconds encoded in a `msg_id` (a decimal string); panics if it is not one.
pub fn msg_id_ms(msg_id: &str) -> u64 {
    assert!(
        !msg_id.is_empty() && msg_id.bytes().all(|b| b.is_ascii_digit()),
        "msg_id {msg_id:?} is not a decimal string"
    );
    let id: u64 = msg_id
        .parse()
        .unwrap_or_else(|e| panic!("msg_id {msg_id:?} is not a u64: {e}"));
    (id >> 22) + SNOWFLAKE_EPOCH_MS
}

/// The canonical id of the 1:1 conversation of `a` and `b`.
pub fn direct_conv(a: &str, b: &str) -> String {
    if a < b {
        format!("d.{a}.{b}")
    } else {
        format!("d.{b}.{a}")
    }
}

/// `v[key]` as a string; panics (showing `v`) if absent or not a string.
pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key:?} missing or not a string in {v}"))
}

/// `v[key]` as an unsigned integer; panics (showing `v`) if absent or not one.
pub fn u64_of(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key:?} missing or not an unsigned integer in {v}"))
}

/// `v[key]` as a bool; panics (showing `v`) if absent or not one.
pub fn bool_of(v: &Value, key: &str) -> bool {
    v[key]
        .as_bool()
        .unwrap_or_else(|| panic!("{key:?} missing or not a bool in {v}"))
}

/// `v[key]` as an array; panics (showing `v`) if absent or not one.
pub fn array_of<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key:?} missing or not an array in {v}"))
}

/// The sorted key names of a JSON object (to assert an event's exact shape).
pub fn keys_of(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not a JSON object: {v}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// Checks the server-made fields of a `sent`/`msg` event (`msg_id` a Snowflake decimal string
/// whose time is within a few seconds of `ts`, `ts` within a minute of now) and returns
/// `expected` with those two fields copied from `event`, for an exact `assert_eq!`.
pub fn with_server_fields(event: &Value, mut expected: Value) -> Value {
    let msg_id = str_of(event, "msg_id");
    let ts = u64_of(event, "ts");
    let id_ms = msg_id_ms(msg_id);
    assert!(
        id_ms.abs_diff(ts) < 5_000,
        "msg_id {msg_id} encodes {id_ms} ms, far from ts {ts}: {event}"
    );
    assert!(
        ts.abs_diff(now_ms()) < 60_000,
        "ts {ts} is not close to now: {event}"
    );
    expected["msg_id"] = json!(msg_id);
    expected["ts"] = json!(ts);
    expected
}

/// An event a device received: its topic and the payload parsed as JSON.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub event: Value,
}

impl Received {
    /// The event's `type` (empty if none).
    pub fn kind(&self) -> &str {
        self.event["type"].as_str().unwrap_or("")
    }
}

/// One device of a user, connected over TLS with client id = device id and subscribed at QoS 1
/// to `/tenants/{user}/in` and `/tenants/{user}/in/{device}`.
pub struct ChatDevice {
    pub user: String,
    pub device: String,
    /// The MQTT client, for anything the helpers do not cover.
    pub client: TestClient,
    /// Events received while waiting for another one ([`ChatDevice::wait_for`]); handed out
    /// first by [`ChatDevice::next`].
    stash: VecDeque<Received>,
}

impl ChatDevice {
    /// Connects the enrolled device to the TLS listener at `addr` and subscribes to its two
    /// topics; panics if the CONNACK or a SUBACK is not a success.
    pub async fn connect(addr: SocketAddr, enrolment: &Enrolment) -> ChatDevice {
        let options = tls_options(addr, enrolment.tls_config(), &enrolment.device_id);
        ChatDevice::connect_with(options, enrolment).await
    }

    /// Connects as an app does: with the Last Will `offline` on `/tenants/{user}/status`, the
    /// two subscriptions, then `online` on the status topic.
    pub async fn connect_app(node: &TestNode, enrolment: &Enrolment) -> ChatDevice {
        let (user, device) = (&enrolment.user, &enrolment.device_id);
        let status = format!("/tenants/{user}/status");
        let mut options = tls_options(node.mqtt, enrolment.tls_config(), device);
        let will = json!({"type": "offline", "device": device}).to_string();
        options.set_last_will(rumqttc::LastWill::new(
            &status,
            will,
            QoS::AtLeastOnce,
            false,
        ));
        let mut dev = ChatDevice::connect_with(options, enrolment).await;
        let online = json!({"type": "online", "device": device}).to_string();
        dev.client
            .publish(&status, &online)
            .await
            .unwrap_or_else(|e| panic!("{user}/{device}: publishing online failed: {e}"));
        dev
    }

    async fn connect_with(options: rumqttc::MqttOptions, enrolment: &Enrolment) -> ChatDevice {
        let user = enrolment.user.clone();
        let device = enrolment.device_id.clone();
        let mut client = TestClient::connect(options, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{user}/{device}: connect failed: {e}"));
        let all = format!("/tenants/{user}/in");
        let own = format!("/tenants/{user}/in/{device}");
        let codes = client
            .subscribe_many(&[&all, &own])
            .await
            .unwrap_or_else(|e| panic!("{user}/{device}: subscribe failed: {e}"));
        assert_eq!(
            codes,
            vec![SubscribeReasonCode::Success(QoS::AtLeastOnce); 2],
            "{user}/{device}: SUBACK"
        );
        ChatDevice {
            user,
            device,
            client,
            stash: VecDeque::new(),
        }
    }

    /// [`ChatDevice::connect`] to the node's TLS listener.
    pub async fn connect_node(node: &TestNode, enrolment: &Enrolment) -> ChatDevice {
        ChatDevice::connect(node.mqtt, enrolment).await
    }

    /// `/tenants/{user}/in`.
    pub fn user_topic(&self) -> String {
        format!("/tenants/{}/in", self.user)
    }

    /// `/tenants/{user}/in/{device}`.
    pub fn device_topic(&self) -> String {
        format!("/tenants/{}/in/{}", self.user, self.device)
    }

    /// `/tenants/{user}/out`.
    pub fn out_topic(&self) -> String {
        format!("/tenants/{}/out", self.user)
    }

    /// Publishes any payload on `/tenants/{user}/out` at QoS 1 and waits for the PUBACK.
    pub async fn publish_raw(&mut self, payload: &str) {
        let topic = self.out_topic();
        self.client
            .publish(&topic, payload)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{}/{}: publishing a request failed: {e}",
                    self.user, self.device
                )
            });
    }

    /// Publishes a request and waits for the PUBACK.
    pub async fn request(&mut self, request: &Value) {
        self.publish_raw(&request.to_string()).await;
    }

    /// Publishes a request without waiting for the PUBACK (rumqttc keeps up to 100 in flight).
    /// Fails once the connection has ended.
    pub async fn publish_nowait(&self, request: &Value) -> Result<(), String> {
        self.client
            .client
            .publish(
                self.out_topic(),
                QoS::AtLeastOnce,
                false,
                request.to_string().into_bytes(),
            )
            .await
            .map_err(|e| e.to_string())
    }

    /// `{"type":"send","id","to","body"}`, waiting for the PUBACK only.
    pub async fn send(&mut self, id: &str, to: &str, body: &str) {
        self.request(&json!({"type": "send", "id": id, "to": to, "body": body}))
            .await;
    }

    /// `{"type":"send","id","group","body"}`, waiting for the PUBACK only.
    pub async fn send_group(&mut self, id: &str, group: &str, body: &str) {
        self.request(&json!({"type": "send", "id": id, "group": group, "body": body}))
            .await;
    }

    /// Publishes `request` with `req` and this device added, and returns the answer with that
    /// `req` (of any type, `error` included), which must come on this device's own topic.
    pub async fn ask(&mut self, req: &str, mut request: Value) -> Value {
        request["req"] = json!(req);
        request["device"] = json!(self.device);
        self.request(&request).await;
        let answer = self
            .wait_for(&format!("answer to {req}"), WAIT, |r| r.event["req"] == req)
            .await;
        assert_eq!(
            answer.topic,
            self.device_topic(),
            "answer to {req}: {}",
            answer.event
        );
        answer.event
    }

    /// Like [`ChatDevice::ask`], and the answer must be `ok`; returns it.
    pub async fn ask_ok(&mut self, req: &str, request: Value) -> Value {
        let answer = self.ask(req, request).await;
        assert_eq!(answer["type"], "ok", "answer to {req}: {answer}");
        answer
    }

    /// Like [`ChatDevice::ask`], and the answer must be an `error` with `code`; returns it.
    pub async fn ask_error(&mut self, req: &str, request: Value, code: &str) -> Value {
        let answer = self.ask(req, request).await;
        assert_eq!(
            (answer["type"].as_str(), answer["code"].as_str()),
            (Some("error"), Some(code)),
            "answer to {req}: {answer}"
        );
        answer
    }

    /// Waits for the next event of type `kind` on `/tenants/{user}/in` (others are stashed).
    pub async fn wait_user_event(&mut self, kind: &str) -> Value {
        let topic = self.user_topic();
        self.wait_for(&format!("a {kind} event"), WAIT, |r| {
            r.topic == topic && r.kind() == kind
        })
        .await
        .event
    }

    /// The next event (stashed ones first), waiting up to `wait`; `None` on timeout or when the
    /// connection ended. Panics on a payload that is not JSON.
    pub async fn next(&mut self, wait: Duration) -> Option<Received> {
        if let Some(r) = self.stash.pop_front() {
            return Some(r);
        }
        self.receive(wait).await
    }

    /// The next event from the connection (not the stash).
    async fn receive(&mut self, wait: Duration) -> Option<Received> {
        let (topic, payload) = self.client.next_publish(wait).await?;
        let event = serde_json::from_str(&payload).unwrap_or_else(|e| {
            let shown: String = payload.chars().take(300).collect();
            panic!(
                "{}/{}: payload on {topic} is not JSON ({e}): {shown}",
                self.user, self.device
            )
        });
        Some(Received { topic, event })
    }

    /// The next event within [`WAIT`]; panics naming `what` if none comes.
    pub async fn expect(&mut self, what: &str) -> Received {
        match self.next(WAIT).await {
            Some(r) => r,
            None => panic!(
                "{}/{}: no event within {WAIT:?} while waiting for {what} (connection ended: {:?})",
                self.user,
                self.device,
                self.client.ended()
            ),
        }
    }

    /// The next event, which must be of type `kind` on `topic`; returns its JSON.
    pub async fn expect_on(&mut self, topic: &str, kind: &str) -> Value {
        let r = self.expect(kind).await;
        assert_eq!(
            (r.topic.as_str(), r.kind()),
            (topic, kind),
            "{}/{}: expected a {kind} event on {topic}, got {} on {}",
            self.user,
            self.device,
            r.event,
            r.topic
        );
        r.event
    }

    /// The next event, which must be a `kind` event on `/tenants/{user}/in`.
    pub async fn expect_user_event(&mut self, kind: &str) -> Value {
        let topic = self.user_topic();
        self.expect_on(&topic, kind).await
    }

    /// The next event, which must be a `kind` event on `/tenants/{user}/in/{device}`.
    pub async fn expect_device_event(&mut self, kind: &str) -> Value {
        let topic = self.device_topic();
        self.expect_on(&topic, kind).await
    }

    /// Waits up to `wait` for an event that `pick` accepts; the others are stashed for
    /// [`ChatDevice::next`] in arrival order. Panics naming `what` on timeout.
    pub async fn wait_for(
        &mut self,
        what: &str,
        wait: Duration,
        mut pick: impl FnMut(&Received) -> bool,
    ) -> Received {
        if let Some(at) = self.stash.iter().position(&mut pick) {
            return self.stash.remove(at).expect("position is in range");
        }
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.receive(left).await {
                Some(r) if pick(&r) => return r,
                Some(r) => self.stash.push_back(r),
                None => panic!(
                    "{}/{}: no {what} within {wait:?} (connection ended: {:?}; other events: {:?})",
                    self.user,
                    self.device,
                    self.client.ended(),
                    self.stash.iter().map(|r| &r.event).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Asserts that no event arrives within `wait` (and none is stashed).
    pub async fn expect_quiet(&mut self, wait: Duration) {
        if let Some(r) = self.next(wait).await {
            panic!(
                "{}/{}: unexpected event on {}: {}",
                self.user, self.device, r.topic, r.event
            );
        }
    }

    /// Asserts that no event arrives within [`QUIET`] and that the connection is still up: a
    /// victim or bystander that noticed nothing.
    pub async fn untouched(&mut self) {
        self.expect_quiet(QUIET).await;
        assert!(
            self.client.ended().is_none(),
            "{}/{} was disconnected: {:?}",
            self.user,
            self.device,
            self.client.ended()
        );
    }

    /// Sends `sync` from `after` (with `limit` if given) and returns the answer, which must
    /// come on `/tenants/{user}/in/{device}` with this `req`. An `error` answer panics.
    pub async fn sync(&mut self, req: &str, after: u64, limit: Option<u64>) -> Value {
        let mut request =
            json!({"type": "sync", "req": req, "device": self.device, "after": after});
        if let Some(limit) = limit {
            request["limit"] = json!(limit);
        }
        self.request(&request).await;
        let answer = self
            .wait_for(&format!("answer to sync {req}"), WAIT, |r| {
                r.event["req"] == req && (r.kind() == "sync" || r.kind() == "error")
            })
            .await;
        assert_eq!(
            (answer.topic.as_str(), answer.kind()),
            (self.device_topic().as_str(), "sync"),
            "answer to sync {req}: {}",
            answer.event
        );
        answer.event
    }

    /// Syncs from `after` in pages of `limit` until `more` is false; checks every page's shape
    /// (`last` = the last event's `n`, or `after` when empty) and returns all events in order.
    pub async fn sync_all(&mut self, after: u64, limit: u64) -> Vec<Value> {
        let mut events = Vec::new();
        let mut after = after;
        for page in 0.. {
            assert!(page < 10_000, "sync never ends");
            let answer = self.sync(&format!("all{page}"), after, Some(limit)).await;
            let got = array_of(&answer, "events");
            let last = u64_of(&answer, "last");
            let expected_last = got.last().map_or(after, |e| u64_of(e, "n"));
            assert_eq!(last, expected_last, "sync page {page}: last: {answer}");
            events.extend(got.iter().cloned());
            if !bool_of(&answer, "more") {
                break;
            }
            assert!(!got.is_empty(), "sync page {page}: more without events");
            after = last;
        }
        events
    }

    /// Sends `history` and returns the answer with this `req` (`history` or `error`), which
    /// must come on `/tenants/{user}/in/{device}`.
    pub async fn history(
        &mut self,
        req: &str,
        conv: &str,
        before: Option<u64>,
        limit: Option<u64>,
    ) -> Value {
        let mut request =
            json!({"type": "history", "req": req, "device": self.device, "conv": conv});
        if let Some(before) = before {
            request["before"] = json!(before);
        }
        if let Some(limit) = limit {
            request["limit"] = json!(limit);
        }
        self.request(&request).await;
        let answer = self
            .wait_for(&format!("answer to history {req}"), WAIT, |r| {
                r.event["req"] == req && (r.kind() == "history" || r.kind() == "error")
            })
            .await;
        assert_eq!(
            answer.topic,
            self.device_topic(),
            "answer to history {req}: {}",
            answer.event
        );
        answer.event
    }
}

/// How long [`ChatDevice::untouched`] watches for an event that must not come.
pub const QUIET: Duration = Duration::from_millis(300);

/// Two users who take no part in what a test does to the node and must not notice it: carol
/// and dave, one device each, who exchange a message whenever asked. The security suites use
/// them as "the rest of the node".
pub struct Bystanders {
    pub carol: ChatDevice,
    pub dave: ChatDevice,
    sent: usize,
}

impl Bystanders {
    /// Registers and connects carol and dave (device `phone`) and checks they talk.
    pub async fn new(node: &TestNode) -> Bystanders {
        let (_, carol) = node.user_with_device("carol", "phone").await;
        let (_, dave) = node.user_with_device("dave", "phone").await;
        let mut b = Bystanders {
            carol: ChatDevice::connect_node(node, &carol).await,
            dave: ChatDevice::connect_node(node, &dave).await,
            sent: 0,
        };
        b.still_talk().await;
        b
    }

    /// carol sends dave a message: he gets the `msg` (with the next `seq`), she gets `sent`,
    /// and neither connection ended. Returns how long the round took (send -> msg).
    pub async fn still_talk(&mut self) -> Duration {
        self.sent += 1;
        let id = format!("b{}", self.sent);
        let started = Instant::now();
        self.carol.send(&id, "dave", &id).await;
        let msg = self
            .dave
            .wait_for("the bystanders' message", WAIT, |r| {
                r.kind() == "msg" && r.event["body"] == id.as_str()
            })
            .await;
        let took = started.elapsed();
        assert_eq!(u64_of(&msg.event, "seq"), self.sent as u64, "{}", msg.event);
        self.carol
            .wait_for("the bystanders' sent", WAIT, |r| {
                r.kind() == "sent" && r.event["id"] == id.as_str()
            })
            .await;
        assert!(self.carol.client.ended().is_none() && self.dave.client.ended().is_none());
        took
    }
}

/// What a `sent` event acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SentRecord {
    /// The client's id.
    pub id: String,
    pub msg_id: String,
    pub seq: u64,
    pub n: u64,
}

impl SentRecord {
    /// The record of a `sent` event; panics if a field is missing.
    pub fn of(event: &Value) -> SentRecord {
        SentRecord {
            id: str_of(event, "id").to_owned(),
            msg_id: str_of(event, "msg_id").to_owned(),
            seq: u64_of(event, "seq"),
            n: u64_of(event, "n"),
        }
    }
}

/// The outcome of [`send_windowed`].
#[derive(Debug, Default)]
pub struct WindowRun {
    /// Ids whose `send` was handed to the MQTT client, in order.
    pub attempted: Vec<String>,
    /// The first `sent` of each attempted id, in arrival order.
    pub acked: Vec<SentRecord>,
    /// Publish -> first `sent`, per acknowledged id (same order as `acked`).
    pub latencies: Vec<Duration>,
    /// Every event received, in arrival order (the `sent` events included).
    pub events: Vec<Received>,
    /// `sent` events for an id that was already acknowledged or never attempted.
    pub unexpected_sent: Vec<Value>,
    /// Why the connection ended, if it did.
    pub ended: Option<String>,
    /// True if nothing arrived for [`WAIT`] while sends were outstanding.
    pub stalled: bool,
    /// From the first publish to the last `sent` (or the end).
    pub elapsed: Duration,
}

impl WindowRun {
    /// The attempted ids that got no `sent`.
    pub fn unacked(&self) -> Vec<String> {
        let acked: std::collections::HashSet<&str> =
            self.acked.iter().map(|r| r.id.as_str()).collect();
        self.attempted
            .iter()
            .filter(|id| !acked.contains(id.as_str()))
            .cloned()
            .collect()
    }

    /// The latency at quantile `q` (0.0..=1.0) of the acknowledged sends.
    pub fn latency_quantile(&self, q: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let at = ((sorted.len() - 1) as f64 * q).round() as usize;
        sorted[at.min(sorted.len() - 1)]
    }
}

/// Sends a message to `to` for each id (body `body(id)`), keeping at most `window` sends
/// without their `sent` event, until every id is acknowledged, the connection ends, or nothing
/// arrives for [`WAIT`]. Records every event received meanwhile.
pub async fn send_windowed(
    dev: &mut ChatDevice,
    to: &str,
    ids: impl IntoIterator<Item = String>,
    window: usize,
    body: impl Fn(&str) -> String,
) -> WindowRun {
    let mut ids = ids.into_iter().peekable();
    let mut run = WindowRun::default();
    let mut inflight: HashMap<String, Instant> = HashMap::new();
    let started = Instant::now();
    'outer: loop {
        while inflight.len() < window && ids.peek().is_some() {
            let id = ids.next().expect("peeked");
            let request = json!({"type": "send", "id": id, "to": to, "body": body(&id)});
            let at = Instant::now();
            if let Err(e) = dev.publish_nowait(&request).await {
                run.ended = Some(format!("publish failed: {e}"));
                break 'outer;
            }
            run.attempted.push(id.clone());
            inflight.insert(id, at);
        }
        if inflight.is_empty() {
            break;
        }
        let Some(r) = dev.next(WAIT).await else {
            match dev.client.ended() {
                Some(e) => run.ended = Some(e.to_owned()),
                None => run.stalled = true,
            }
            break;
        };
        if r.kind() == "sent" {
            let record = SentRecord::of(&r.event);
            match inflight.remove(&record.id) {
                Some(at) => {
                    run.latencies.push(at.elapsed());
                    run.acked.push(record);
                }
                None => run.unexpected_sent.push(r.event.clone()),
            }
        }
        run.events.push(r);
    }
    run.elapsed = started.elapsed();
    run
}

/// `GET {base}/v1/conversations/{conv}/messages{query}` with the Bearer `token` (or none):
/// status and the body as JSON (`Null` if it is not JSON).
pub async fn http_history(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    conv: &str,
    query: &str,
) -> (StatusCode, Value) {
    let mut req = http.get(format!("{base}/v1/conversations/{conv}/messages{query}"));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.expect("history request failed");
    let status = resp.status();
    let text = resp.text().await.expect("reading the history body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Pages through the whole conversation over HTTP (newest first, [`HTTP_HISTORY_MAX_LIMIT`]
/// per page, `before` = the smallest `seq` seen) and returns the messages oldest first.
/// Checks that each page is newest first, pages join without overlap, and `more` is false
/// exactly at the end.
pub async fn http_history_all(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    conv: &str,
) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    let mut before: Option<u64> = None;
    for page in 0.. {
        assert!(page < 100_000, "history never ends");
        let query = match before {
            Some(b) => format!("?limit={HTTP_HISTORY_MAX_LIMIT}&before={b}"),
            None => format!("?limit={HTTP_HISTORY_MAX_LIMIT}"),
        };
        let (status, body) = http_history(http, base, Some(token), conv, &query).await;
        assert_eq!(status, StatusCode::OK, "history page {page}: {body}");
        let messages = array_of(&body, "messages");
        for m in messages {
            let seq = u64_of(m, "seq");
            if let Some(b) = before {
                assert!(seq < b, "history page {page}: seq {seq} not below {b}");
            }
            before = Some(seq);
            all.push(m.clone());
        }
        if !bool_of(&body, "more") {
            break;
        }
        assert!(
            !messages.is_empty(),
            "history page {page}: more without messages"
        );
    }
    all.reverse();
    all
}

/// Registers `user` (password [`TEST_PASSWORD`]) on the API at `base`, logs in and enrols
/// `device` without a CSR; returns the token and the enrolment.
pub async fn account(base: &str, user: &str, device: &str) -> (String, Enrolment) {
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/v1/users"))
        .json(&json!({"user_id": user, "password": TEST_PASSWORD}))
        .send()
        .await
        .expect("POST /v1/users failed");
    assert_eq!(r.status(), StatusCode::CREATED, "register {user}");
    let token = login(base, user).await;
    let r = http
        .post(format!("{base}/v1/devices"))
        .bearer_auth(&token)
        .json(&json!({"device_id": device}))
        .send()
        .await
        .expect("POST /v1/devices failed");
    assert_eq!(r.status(), StatusCode::CREATED, "enrol {user}/{device}");
    let body: Value = r.json().await.expect("enrolment body is not JSON");
    let field = |k: &str| str_of(&body, k).to_owned();
    let mut e = Enrolment {
        user: String::new(),
        device_id: field("device_id"),
        cert_pem: field("cert_pem"),
        key_pem: field("key_pem"),
        ca_pem: field("ca_pem"),
        expires_at: u64_of(&body, "expires_at"),
    };
    e.user = e.identity().organization;
    assert_eq!(e.user, user, "certificate O");
    (token, e)
}

/// `POST {base}/v1/sessions` for `user` with [`TEST_PASSWORD`]; returns the token.
pub async fn login(base: &str, user: &str) -> String {
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/sessions"))
        .json(&json!({"user_id": user, "password": TEST_PASSWORD}))
        .send()
        .await
        .expect("POST /v1/sessions failed");
    assert_eq!(r.status(), StatusCode::OK, "login {user}");
    let body: Value = r.json().await.expect("login body is not JSON");
    str_of(&body, "token").to_owned()
}

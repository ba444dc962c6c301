//! The client SDK (`chat-client`) against real nodes: its reconnect + sync + retry behaviour
//! while the `chatd` process is killed and restarted mid-conversation, the outbox across a
//! restart of the client, duplicate answers, and gap-triggered sync.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chat_client::proto::{MsgEvent, SendRequest};
use chat_client::{Api, Client, ConnState, Event, Options, SentEvent, Session, StateStore, Target};
use chat_tests::chat::ChatDevice;
use chat_tests::{chatd_binary, TestNode, TEST_PASSWORD, WAIT};
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// The real `chatd` on fixed loopback ports, restartable on the same data directory.
struct Chatd {
    child: Option<Child>,
    data: PathBuf,
    logs: PathBuf,
    http_port: u16,
    mqtt_port: u16,
    starts: usize,
}

impl Chatd {
    async fn start(dir: &Path) -> Chatd {
        let mut c = Chatd {
            child: None,
            data: dir.join("data"),
            logs: dir.to_path_buf(),
            http_port: chat_tests::free_port(),
            mqtt_port: chat_tests::free_port(),
            starts: 0,
        };
        c.restart().await;
        c
    }

    fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    fn mqtt(&self) -> String {
        format!("127.0.0.1:{}", self.mqtt_port)
    }

    fn log(&self) -> String {
        let path = self.logs.join(format!("chatd-{}.log", self.starts));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// Starts the process and waits (at most 30 s) until its HTTP API answers.
    async fn restart(&mut self) {
        self.starts += 1;
        let log =
            std::fs::File::create(self.logs.join(format!("chatd-{}.log", self.starts))).unwrap();
        let child = Command::new(chatd_binary())
            .arg("--data-dir")
            .arg(&self.data)
            .args(["--http", &format!("127.0.0.1:{}", self.http_port)])
            .args(["--mqtt", &self.mqtt()])
            .env("CHATD__STORE__PASSWORD_MEMORY_KIB", "256")
            .env("CHATD__STORE__PASSWORD_ITERATIONS", "1")
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let url = format!("{}/healthz", self.http());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(&url).await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chatd did not come up; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `signal` (`KILL`, `TERM`) and waits for the exit.
    async fn stop(&mut self, signal: &str) {
        let mut child = self.child.take().expect("chatd is not running");
        let pid = child.id().expect("chatd already reaped");
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .expect("chatd did not exit")
            .unwrap();
    }
}

/// Registers `user` and enrols `device` through the SDK (a key made here, a CSR).
async fn enrol(http: &str, mqtt: &str, user: &str, device: &str) -> Session {
    let api = Api::new(http, None).unwrap();
    api.register(user, TEST_PASSWORD).await.unwrap();
    api.enrol(mqtt, user, TEST_PASSWORD, device).await.unwrap()
}

/// Options for tests: a short reconnect cap so restarts are picked up quickly.
fn options() -> Options {
    Options {
        backoff_max: Duration::from_secs(1),
        resend_after: Duration::from_secs(3),
        ..Options::default()
    }
}

async fn connect(session: Session, store: StateStore) -> (Client, chat_client::Events) {
    let (client, events) = Client::start(session, store, options()).unwrap();
    client.wait_online(WAIT).await.unwrap();
    (client, events)
}

/// Waits for the next `msg` (skipping other events), at most `wait`.
async fn next_msg(events: &mut chat_client::Events, wait: Duration) -> MsgEvent {
    let deadline = Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Event::Msg(m))) => return m,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("event stream ended"),
            Err(_) => panic!("no msg within {wait:?}"),
        }
    }
}

// Alice sends 240 messages to bob, 8 at a time, through the SDK while chatd is SIGKILLed and
// restarted (same ports, same data) after a third of them and SIGTERMed and restarted after
// two thirds. Every send() must return its `sent` (the outbox retried the unanswered ones with
// the same ids across the reconnects), and bob's client, which was cut off too and caught up
// with sync, must see every message exactly once, in seq order 1..=240, each `n` once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_rides_through_node_restarts_without_loss_or_duplicates() {
    const TOTAL: usize = 240;
    let dir = tempfile::tempdir().unwrap();
    let mut chatd = Chatd::start(dir.path()).await;
    let alice = enrol(&chatd.http(), &chatd.mqtt(), "alice", "laptop").await;
    let bob = enrol(&chatd.http(), &chatd.mqtt(), "bob", "phone").await;
    let alice_store = StateStore::File(dir.path().join("alice.json"));
    let (alice, mut alice_events) = connect(alice, alice_store.clone()).await;
    let (_bob, mut bob_events) = connect(bob, StateStore::File(dir.path().join("bob.json"))).await;

    // Count alice's reconnects, to be sure the restarts were seen.
    let mut state = alice.state();
    let reconnects = tokio::spawn(async move {
        let (mut n, mut down) = (0, false);
        while state.changed().await.is_ok() {
            let now_down = matches!(*state.borrow_and_update(), ConnState::Reconnecting { .. });
            if now_down && !down {
                n += 1;
            }
            down = now_down;
        }
        n
    });
    let window = Arc::new(Semaphore::new(8));
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..TOTAL {
        let permit = window.clone().acquire_owned().await.unwrap();
        if i == TOTAL / 3 {
            chatd.stop("KILL").await;
            chatd.restart().await;
        }
        if i == 2 * TOTAL / 3 {
            chatd.stop("TERM").await;
            chatd.restart().await;
        }
        let alice = alice.clone();
        sends.spawn(async move {
            let sent = alice.send(Target::To("bob".into()), &format!("m{i}")).await;
            drop(permit);
            (i, sent)
        });
    }
    let mut acked: Vec<(usize, SentEvent)> = Vec::new();
    while let Some(joined) = tokio::time::timeout(Duration::from_secs(60), sends.join_next())
        .await
        .unwrap_or_else(|_| panic!("sends stuck; log:\n{}", chatd.log()))
    {
        let (i, sent) = joined.unwrap();
        acked.push((i, sent.unwrap_or_else(|e| panic!("send m{i}: {e}"))));
    }
    assert_eq!(acked.len(), TOTAL);
    let seqs: HashSet<u64> = acked.iter().map(|(_, s)| s.seq).collect();
    assert_eq!(seqs.len(), TOTAL, "two sends got the same seq");
    assert_eq!(
        seqs.iter().max(),
        Some(&(TOTAL as u64)),
        "stored more than once"
    );

    // Bob: every message once, in seq order.
    let mut bodies = HashSet::new();
    for expect_seq in 1..=TOTAL as u64 {
        let m = next_msg(&mut bob_events, Duration::from_secs(30)).await;
        assert_eq!(m.seq, expect_seq, "bob got seq {} out of order", m.seq);
        assert!(
            bodies.insert(m.body.clone().unwrap()),
            "duplicate {:?}",
            m.body
        );
    }
    let quiet = tokio::time::timeout(Duration::from_millis(500), bob_events.recv()).await;
    assert!(
        !matches!(quiet, Ok(Some(Event::Msg(_)))),
        "bob got an extra message: {quiet:?}"
    );

    // Alice's own stream: each `sent` once, with n strictly increasing.
    let mut last_n = 0;
    let mut sent_ids = HashSet::new();
    while sent_ids.len() < TOTAL {
        let event = tokio::time::timeout(WAIT, alice_events.recv())
            .await
            .expect("alice's sent events")
            .unwrap();
        if let Some(n) = event.n() {
            assert!(n > last_n, "n {n} after {last_n}");
            last_n = n;
        }
        if let Event::Sent(s) = event {
            assert!(sent_ids.insert(s.id.clone()), "sent {} twice", s.id);
        }
    }
    alice.close().await;
    let reconnects = reconnects.await.unwrap();
    assert_eq!(reconnects, 2, "alice lost her connection twice");
    let saved = alice_store.load().unwrap().unwrap();
    assert!(saved.outbox.is_empty(), "outbox left: {:?}", saved.outbox);
    assert_eq!(saved.last_n, last_n, "last n saved on close");
    chatd.stop("TERM").await;
}

// Sends made while the broker is unreachable wait in the outbox, which is on disk before the
// send is even published; a new client started from the same state file (a restart of the
// app) publishes them with the same ids, and they are stored and delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_survives_a_restart_of_the_client() {
    let node = TestNode::start().await;
    let mqtt = node.mqtt.to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut alice = enrol(&node.http, &mqtt, "alice", "laptop").await;
    let bob = enrol(&node.http, &mqtt, "bob", "phone").await;
    let (_bob, mut bob_events) = connect(bob, StateStore::Memory).await;

    // First run: the broker address is dead, so nothing can go out.
    alice.mqtt = format!("127.0.0.1:{}", chat_tests::free_port());
    let store = StateStore::File(dir.path().join("alice.json"));
    let (offline, _events) = Client::start(alice, store.clone(), options()).unwrap();
    let mut pending = Vec::new();
    for i in 0..3 {
        let c = offline.clone();
        pending.push(tokio::spawn(async move {
            c.send(Target::To("bob".into()), &format!("queued {i}"))
                .await
        }));
    }
    let deadline = Instant::now() + WAIT;
    let saved = loop {
        let s = store.load().unwrap().unwrap();
        if s.outbox.len() == 3 || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        saved.outbox.len(),
        3,
        "outbox on disk while the client runs"
    );
    let ids: Vec<String> = saved.outbox.iter().map(|e| e.id.clone()).collect();
    let bodies: Vec<String> = saved
        .outbox
        .iter()
        .map(|e| {
            let request: serde_json::Value = serde_json::from_str(&e.request).unwrap();
            request["body"].as_str().unwrap().to_owned()
        })
        .collect();
    offline.close().await; // the app quits; its sends never got `sent`
    for p in pending {
        let r = tokio::time::timeout(WAIT, p).await.unwrap().unwrap();
        assert!(r.is_err(), "a send succeeded without a broker: {r:?}");
    }

    // Second run, now with the right address: the outbox goes out by itself.
    let mut session = store.load().unwrap().unwrap();
    session.mqtt = mqtt;
    let (alice, mut alice_events) = connect(session, store.clone()).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next_msg(&mut bob_events, WAIT).await.body.unwrap());
    }
    assert_eq!(got, bodies, "delivered once each, in outbox order");
    let mut sent_ids = Vec::new();
    while sent_ids.len() < 3 {
        match tokio::time::timeout(WAIT, alice_events.recv())
            .await
            .unwrap()
        {
            Some(Event::Sent(s)) => sent_ids.push(s.id),
            Some(_) => {}
            None => panic!("alice's stream ended"),
        }
    }
    assert_eq!(sent_ids, ids, "the restarted client used the saved ids");
    alice.close().await;
    assert!(store.load().unwrap().unwrap().outbox.is_empty());
    node.stop().await;
}

// A send retried with the same id gets the same answer (same msg_id, seq, n) and the event
// stream shows its `sent` only once; bob gets one message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_id_is_answered_again_but_delivered_once() {
    let node = TestNode::start().await;
    let mqtt = node.mqtt.to_string();
    let alice = enrol(&node.http, &mqtt, "alice", "laptop").await;
    let bob = enrol(&node.http, &mqtt, "bob", "phone").await;
    let (alice, mut alice_events) = connect(alice, StateStore::Memory).await;
    let (_bob, mut bob_events) = connect(bob, StateStore::Memory).await;
    let request = SendRequest {
        id: "fixed-id".into(),
        target: Target::To("bob".into()),
        body: Some("once".into()),
        media: None,
        reply_to: None,
    };
    let first = alice.send_request(request.clone()).await.unwrap();
    let again = alice.send_request(request).await.unwrap();
    assert_eq!(
        (first.msg_id, first.seq, first.n),
        (again.msg_id, again.seq, again.n)
    );
    let after = alice.send(Target::To("bob".into()), "after").await.unwrap();
    let mut sent = Vec::new();
    while sent.len() < 2 {
        if let Some(Event::Sent(s)) = tokio::time::timeout(WAIT, alice_events.recv())
            .await
            .unwrap()
        {
            sent.push((s.id, s.n));
        }
    }
    assert_eq!(
        sent,
        [("fixed-id".to_owned(), first.n), (after.id, after.n)]
    );
    assert_eq!(
        next_msg(&mut bob_events, WAIT).await.body.as_deref(),
        Some("once")
    );
    assert_eq!(
        next_msg(&mut bob_events, WAIT).await.body.as_deref(),
        Some("after")
    );
    node.stop().await;
}

// Bob's other device tells the server that bob's devices are away, so the next message is
// stored but not delivered live; when the phone is back, the following message arrives with a
// jump in `n`, and the SDK syncs: the phone sees both messages, in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jump_in_n_triggers_a_sync() {
    let node = TestNode::start().await;
    let mqtt = node.mqtt.to_string();
    let alice = enrol(&node.http, &mqtt, "alice", "laptop").await;
    let bob = enrol(&node.http, &mqtt, "bob", "phone").await;
    let tablet = node
        .enrol(&node.login("bob", TEST_PASSWORD).await, "tablet")
        .await;
    let mut tab = ChatDevice::connect_node(&node, &tablet).await;
    let (alice, _alice_events) = connect(alice, StateStore::Memory).await;
    let (_bob, mut bob_events) = connect(bob, StateStore::Memory).await;

    // Mark both of bob's devices away until a message is not delivered live. (The node orders
    // status messages and connection events only loosely: the phone's own `online`, or the
    // tablet's connection, may be handled after the first `offline`; then try again.)
    let mut last_n = 0;
    let mut away_body = None;
    for attempt in 0..10 {
        say_status(&mut tab, "tablet", "offline").await;
        say_status(&mut tab, "phone", "offline").await;
        let body = format!("while away {attempt}");
        alice.send(Target::To("bob".into()), &body).await.unwrap();
        match tokio::time::timeout(Duration::from_millis(300), bob_events.recv()).await {
            Ok(Some(Event::Msg(m))) => last_n = m.n.unwrap(), // still online: again
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => {
                away_body = Some(body);
                break;
            }
        }
    }
    let away_body = away_body.expect("bob never became away");

    // Back: the next message arrives with an `n` two past the last one the phone saw.
    say_status(&mut tab, "phone", "online").await;
    alice.send(Target::To("bob".into()), "after").await.unwrap();
    let first = next_msg(&mut bob_events, WAIT).await;
    let second = next_msg(&mut bob_events, WAIT).await;
    assert_eq!(
        (first.body, first.n, second.body.as_deref(), second.n),
        (
            Some(away_body),
            Some(last_n + 1),
            Some("after"),
            Some(last_n + 2)
        )
    );
    node.stop().await;
}

/// Publishes a status for `device` of the tablet's user and makes sure the node handled it: a
/// `sync` sent after it on the same connection is answered only after the status was processed.
async fn say_status(tab: &mut ChatDevice, device: &str, state: &str) {
    let topic = format!("/tenants/{}/status", tab.user);
    let payload = format!(r#"{{"type":"{state}","device":"{device}"}}"#);
    tab.client.publish(&topic, &payload).await.unwrap();
    tab.sync(&format!("after-{device}-{state}"), 0, Some(1))
        .await;
}

//! 1:1 messaging end to end over MQTT/TLS: `send` -> `sent` + `msg`, retries with the same id,
//! receipts, several devices per user, concurrent senders in one conversation, and the
//! throughput and send->sent latency of the whole path.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use chat_tests::chat::{
    array_of, http_history, http_history_all, str_of, u64_of, with_server_fields, ChatDevice,
    SentRecord, WindowRun,
};
use chat_tests::{TestNode, WAIT};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A `receipt` event as every recipient must see it (`ts` copied from `event` after a check).
fn expected_receipt(event: &Value, by: &str, status: &str, seq: u64, n: u64) -> Value {
    let ts = u64_of(event, "ts");
    assert!(
        ts.abs_diff(chat_tests::chat::now_ms()) < 60_000,
        "receipt ts {ts} is not close to now: {event}"
    );
    json!({"type": "receipt", "conv": "d.alice.bob", "by": by, "status": status, "seq": seq, "ts": ts, "n": n})
}

// (1) alice sends to bob: alice's device gets `sent` with the whole message and n = 1, bob's
// gets `msg` with the same msg_id, conv and seq, and his own n = 1. Then bob answers: both
// numbers move on by exactly one, which also shows nothing else was stored or published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_gives_sent_to_sender_and_msg_to_recipient() {
    let node = TestNode::start().await;
    let (_, alice_e) = node.user_with_device("alice", "laptop").await;
    let (_, bob_e) = node.user_with_device("bob", "phone").await;
    let mut alice = ChatDevice::connect_node(&node, &alice_e).await;
    let mut bob = ChatDevice::connect_node(&node, &bob_e).await;

    let body = "hi bob \u{e9}\u{2713} \"quoted\"\n";
    alice.send("c-1", "bob", body).await;
    let sent = alice.expect_user_event("sent").await;
    let expected = with_server_fields(
        &sent,
        json!({"type": "sent", "id": "c-1", "conv": "d.alice.bob", "seq": 1, "to": "bob", "body": body, "n": 1}),
    );
    assert_eq!(sent, expected);
    let msg = bob.expect_user_event("msg").await;
    assert_eq!(
        msg,
        json!({"type": "msg", "msg_id": sent["msg_id"], "conv": "d.alice.bob", "seq": 1, "from": "alice",
               "to": "bob", "body": body, "ts": sent["ts"], "n": 1})
    );

    // The answer: the conversation id is the same whichever side sends.
    bob.send("c-1", "alice", "hi alice").await;
    let sent2 = bob.expect_user_event("sent").await;
    let expected = with_server_fields(
        &sent2,
        json!({"type": "sent", "id": "c-1", "conv": "d.alice.bob", "seq": 2, "to": "alice", "body": "hi alice", "n": 2}),
    );
    assert_eq!(sent2, expected);
    assert_ne!(sent2["msg_id"], sent["msg_id"]);
    assert!(
        str_of(&sent2, "msg_id").parse::<u64>().unwrap()
            > str_of(&sent, "msg_id").parse::<u64>().unwrap(),
        "msg_ids of one node increase"
    );
    let msg2 = alice.expect_user_event("msg").await;
    assert_eq!(
        msg2,
        json!({"type": "msg", "msg_id": sent2["msg_id"], "conv": "d.alice.bob", "seq": 2, "from": "bob",
               "to": "alice", "body": "hi alice", "ts": sent2["ts"], "n": 2})
    );
    node.stop().await;
}

// (2) A retried send (same id) answers with the same `sent` (msg_id, seq, n, ts, body) and
// delivers nothing twice: the next `msg` bob gets is the next message. Retries are recognised
// both in a later batch (after the first `sent`) and in the same batch (two publishes back to
// back), and history holds each message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_with_same_id_is_answered_once_and_delivered_once() {
    let node = TestNode::start().await;
    let (alice_token, alice_e) = node.user_with_device("alice", "laptop").await;
    let (_, bob_e) = node.user_with_device("bob", "phone").await;
    let mut alice = ChatDevice::connect_node(&node, &alice_e).await;
    let mut bob = ChatDevice::connect_node(&node, &bob_e).await;

    alice.send("r1", "bob", "first").await;
    let first = alice.expect_user_event("sent").await;
    assert_eq!((u64_of(&first, "seq"), u64_of(&first, "n")), (1, 1));
    let msg = bob.expect_user_event("msg").await;
    assert_eq!(msg["msg_id"], first["msg_id"]);

    // A retry after the `sent`: the same event again, even if the retry's body differs.
    alice.send("r1", "bob", "first").await;
    let again = alice.expect_user_event("sent").await;
    assert_eq!(again, first, "a retry must repeat the original sent");
    alice.send("r1", "bob", "changed on retry").await;
    let again = alice.expect_user_event("sent").await;
    assert_eq!(
        again, first,
        "a retry with another body must repeat the original sent"
    );

    // Two publishes of one id back to back (usually one worker batch).
    let twice = json!({"type": "send", "id": "r2", "to": "bob", "body": "second"});
    alice.publish_nowait(&twice).await.unwrap();
    alice.publish_nowait(&twice).await.unwrap();
    let a = alice.expect_user_event("sent").await;
    let b = alice.expect_user_event("sent").await;
    assert_eq!(a, b, "both answers to a doubled send must be the same sent");
    assert_eq!(
        (str_of(&a, "id"), u64_of(&a, "seq"), u64_of(&a, "n")),
        ("r2", 2, 2)
    );

    // A different message: bob's next msg is it, so no duplicate of r1 or r2 was delivered.
    alice.send("r3", "bob", "third").await;
    let third = alice.expect_user_event("sent").await;
    assert_eq!((u64_of(&third, "seq"), u64_of(&third, "n")), (3, 3));
    let m2 = bob.expect_user_event("msg").await;
    assert_eq!(
        (&m2["body"], u64_of(&m2, "seq"), u64_of(&m2, "n")),
        (&json!("second"), 2, 2),
        "bob's second msg: {m2}"
    );
    let m3 = bob.expect_user_event("msg").await;
    assert_eq!(
        (&m3["body"], u64_of(&m3, "seq"), u64_of(&m3, "n")),
        (&json!("third"), 3, 3),
        "bob's third msg (a duplicate came before it?): {m3}"
    );

    let (status, page) = http_history(
        &node.client,
        &node.http,
        Some(&alice_token),
        "d.alice.bob",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let bodies: Vec<&Value> = array_of(&page, "messages")
        .iter()
        .map(|m| &m["body"])
        .collect();
    assert_eq!(
        bodies,
        vec![&json!("third"), &json!("second"), &json!("first")]
    );
    node.stop().await;
}

// (3) bob's `delivered` then `read` receipts reach alice (and bob's own inbox) as stored
// `receipt` events with the next n; a seq past the newest message is clamped; receipts that
// move no watermark produce nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_and_read_receipts_reach_the_sender() {
    let node = TestNode::start().await;
    let (_, alice_e) = node.user_with_device("alice", "laptop").await;
    let (_, bob_e) = node.user_with_device("bob", "phone").await;
    let mut alice = ChatDevice::connect_node(&node, &alice_e).await;
    let mut bob = ChatDevice::connect_node(&node, &bob_e).await;

    for (id, body) in [("m1", "one"), ("m2", "two")] {
        alice.send(id, "bob", body).await;
        alice.expect_user_event("sent").await;
        bob.expect_user_event("msg").await;
    }

    bob.request(
        &json!({"type": "receipt", "conv": "d.alice.bob", "status": "delivered", "seq": 1}),
    )
    .await;
    let to_alice = alice.expect_user_event("receipt").await;
    assert_eq!(
        to_alice,
        expected_receipt(&to_alice, "bob", "delivered", 1, 3)
    );
    let to_bob = bob.expect_user_event("receipt").await;
    assert_eq!(to_bob, to_alice, "both inboxes hold the same receipt");

    // read far past the newest message: clamped to seq 2.
    bob.request(&json!({"type": "receipt", "conv": "d.alice.bob", "status": "read", "seq": 1000}))
        .await;
    let to_alice = alice.expect_user_event("receipt").await;
    assert_eq!(to_alice, expected_receipt(&to_alice, "bob", "read", 2, 4));
    let to_bob = bob.expect_user_event("receipt").await;
    assert_eq!(to_bob, to_alice);

    // Old news (read implies delivered): nothing is stored or published ...
    for (status, seq) in [("read", 2), ("delivered", 1), ("delivered", 2), ("read", 1)] {
        bob.request(
            &json!({"type": "receipt", "conv": "d.alice.bob", "status": status, "seq": seq}),
        )
        .await;
    }
    // ... so the next event either of them gets is bob's next message, with the next n.
    bob.send("b1", "alice", "seen").await;
    let sent = bob.expect_user_event("sent").await;
    assert_eq!((u64_of(&sent, "seq"), u64_of(&sent, "n")), (3, 5), "{sent}");
    let msg = alice.expect_user_event("msg").await;
    assert_eq!((u64_of(&msg, "seq"), u64_of(&msg, "n")), (3, 5), "{msg}");

    // And the other way round: alice reads bob's message.
    alice
        .request(&json!({"type": "receipt", "conv": "d.alice.bob", "status": "read", "seq": 3}))
        .await;
    let to_bob = bob.expect_user_event("receipt").await;
    assert_eq!(to_bob, expected_receipt(&to_bob, "alice", "read", 3, 6));
    let to_alice = alice.expect_user_event("receipt").await;
    assert_eq!(to_alice, to_bob);
    node.stop().await;
}

// (4) Several devices per user: alice's second device gets the same `sent` (the whole message)
// as the one that sent it, both of bob's devices get the `msg`, and a receipt from bob's phone
// reaches bob's tablet (and the phone itself, and both of alice's devices).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_device_of_both_users_sees_sent_msg_and_receipts() {
    let node = TestNode::start().await;
    let (alice_token, alice_laptop) = node.user_with_device("alice", "alaptop").await;
    let alice_phone = node.enrol(&alice_token, "aphone").await;
    let (bob_token, bob_phone) = node.user_with_device("bob", "bphone").await;
    let bob_tablet = node.enrol(&bob_token, "btablet").await;
    let mut al = ChatDevice::connect_node(&node, &alice_laptop).await;
    let mut ap = ChatDevice::connect_node(&node, &alice_phone).await;
    let mut bp = ChatDevice::connect_node(&node, &bob_phone).await;
    let mut bt = ChatDevice::connect_node(&node, &bob_tablet).await;

    al.send("x1", "bob", "from the laptop").await;
    let sent = al.expect_user_event("sent").await;
    let expected = with_server_fields(
        &sent,
        json!({"type": "sent", "id": "x1", "conv": "d.alice.bob", "seq": 1, "to": "bob", "body": "from the laptop", "n": 1}),
    );
    assert_eq!(sent, expected);
    assert_eq!(
        ap.expect_user_event("sent").await,
        sent,
        "alice's phone gets the same sent"
    );
    let msg = json!({"type": "msg", "msg_id": sent["msg_id"], "conv": "d.alice.bob", "seq": 1, "from": "alice",
                     "to": "bob", "body": "from the laptop", "ts": sent["ts"], "n": 1});
    assert_eq!(bp.expect_user_event("msg").await, msg);
    assert_eq!(bt.expect_user_event("msg").await, msg);

    bp.request(&json!({"type": "receipt", "conv": "d.alice.bob", "status": "read", "seq": 1}))
        .await;
    let on_tablet = bt.expect_user_event("receipt").await;
    assert_eq!(on_tablet, expected_receipt(&on_tablet, "bob", "read", 1, 2));
    assert_eq!(bp.expect_user_event("receipt").await, on_tablet);
    assert_eq!(al.expect_user_event("receipt").await, on_tablet);
    assert_eq!(ap.expect_user_event("receipt").await, on_tablet);

    // A message from alice's phone shows on her laptop as sent, with the next n.
    ap.send("y1", "bob", "from the phone").await;
    let sent = ap.expect_user_event("sent").await;
    assert_eq!((u64_of(&sent, "seq"), u64_of(&sent, "n")), (2, 3), "{sent}");
    assert_eq!(al.expect_user_event("sent").await, sent);
    assert_eq!(u64_of(&bp.expect_user_event("msg").await, "n"), 3);
    assert_eq!(u64_of(&bt.expect_user_event("msg").await, "n"), 3);
    node.stop().await;
}

/// Everything a user saw during a concurrent run, checked for order: (seq -> msg_id, from).
fn conversation_seen_by(
    user: &str,
    other: &str,
    run: &WindowRun,
    extra: &[Value],
    total: u64,
) -> BTreeMap<u64, (String, String)> {
    let events: Vec<&Value> = run
        .events
        .iter()
        .map(|r| &r.event)
        .chain(extra.iter())
        .collect();
    assert!(
        run.unexpected_sent.is_empty(),
        "{user}: unexpected sent events: {:?}",
        run.unexpected_sent
    );
    let mut seen = BTreeMap::new();
    let mut seqs = Vec::new();
    let mut ns = Vec::new();
    for e in events {
        let from = match str_of(e, "type") {
            "sent" => {
                let id = str_of(e, "id");
                assert_eq!(e["body"], json!(format!("body of {id}")), "{user}: {e}");
                user.to_owned()
            }
            "msg" => {
                assert_eq!(str_of(e, "from"), other, "{user}: {e}");
                assert_eq!(str_of(e, "to"), user, "{user}: {e}");
                other.to_owned()
            }
            _ => panic!("{user}: unexpected event {e}"),
        };
        assert_eq!(str_of(e, "conv"), "d.alice.bob");
        let seq = u64_of(e, "seq");
        seqs.push(seq);
        ns.push(u64_of(e, "n"));
        let previous = seen.insert(seq, (str_of(e, "msg_id").to_owned(), from));
        assert!(previous.is_none(), "{user}: seq {seq} seen twice");
    }
    let expected: Vec<u64> = (1..=total).collect();
    assert_eq!(
        seqs, expected,
        "{user}: seqs not 1..={total} once each in order"
    );
    assert_eq!(ns, expected, "{user}: n not 1..={total} once each in order");
    seen
}

/// Receives events until `want` msg events are among `run.events` plus the returned ones.
async fn rest_of_msgs(dev: &mut ChatDevice, run: &WindowRun, want: usize) -> Vec<Value> {
    let mut have = run.events.iter().filter(|r| r.kind() == "msg").count();
    let mut extra = Vec::new();
    while have < want {
        let r = dev.expect("the other side's msg").await;
        if r.kind() == "msg" {
            have += 1;
        }
        extra.push(r.event);
    }
    extra
}

// (5) alice and bob each send 50 messages at once in d.alice.bob: each sees seqs 1..=100 once,
// in order, with n 1..=100; both see the same seq -> msg_id mapping; HTTP history returns the
// same 100 messages newest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_agree_on_one_order() {
    const EACH: usize = 50;
    let node = TestNode::start().await;
    let (alice_token, alice_e) = node.user_with_device("alice", "laptop").await;
    let (bob_token, bob_e) = node.user_with_device("bob", "phone").await;
    let mut alice = ChatDevice::connect_node(&node, &alice_e).await;
    let mut bob = ChatDevice::connect_node(&node, &bob_e).await;

    let body = |id: &str| format!("body of {id}");
    let (run_a, run_b) = tokio::join!(
        chat_tests::chat::send_windowed(
            &mut alice,
            "bob",
            (0..EACH).map(|i| format!("a{i}")),
            EACH,
            body
        ),
        chat_tests::chat::send_windowed(
            &mut bob,
            "alice",
            (0..EACH).map(|i| format!("b{i}")),
            EACH,
            body
        ),
    );
    for (who, run) in [("alice", &run_a), ("bob", &run_b)] {
        assert_eq!(
            run.acked.len(),
            EACH,
            "{who}: {} of {EACH} sends acknowledged (ended {:?}, stalled {})",
            run.acked.len(),
            run.ended,
            run.stalled
        );
    }
    let extra_a = rest_of_msgs(&mut alice, &run_a, EACH).await;
    let extra_b = rest_of_msgs(&mut bob, &run_b, EACH).await;
    let total = 2 * EACH as u64;
    let seen_a = conversation_seen_by("alice", "bob", &run_a, &extra_a, total);
    let seen_b = conversation_seen_by("bob", "alice", &run_b, &extra_b, total);
    assert_eq!(seen_a, seen_b, "alice and bob disagree on the conversation");
    let ids: HashSet<&String> = seen_a.values().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), total as usize, "msg_ids are not unique");

    for token in [&alice_token, &bob_token] {
        let (status, page) = http_history(
            &node.client,
            &node.http,
            Some(token),
            "d.alice.bob",
            "?limit=100",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["more"], json!(false));
        let got: Vec<(u64, String, String)> = array_of(&page, "messages")
            .iter()
            .map(|m| {
                assert!(m.get("n").is_none(), "history messages carry no n: {m}");
                (
                    u64_of(m, "seq"),
                    str_of(m, "msg_id").to_owned(),
                    str_of(m, "from").to_owned(),
                )
            })
            .collect();
        let want: Vec<(u64, String, String)> = seen_a
            .iter()
            .rev()
            .map(|(seq, (id, from))| (*seq, id.clone(), from.clone()))
            .collect();
        assert_eq!(got, want, "HTTP history differs from what the devices saw");
    }
    node.stop().await;
}

// The whole path under load: alice sends 2,000 messages with up to 100 waiting for their
// `sent` while bob's device receives them. Prints messages per second and the send -> sent
// latency (p50, p99); checks that everything arrived once, in order, and is in history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_and_latency_of_2000_sends_window_100() {
    const N: usize = 2000;
    const WINDOW: usize = 100;
    let node = TestNode::start().await;
    let (alice_token, alice_e) = node.user_with_device("alice", "laptop").await;
    let (_, bob_e) = node.user_with_device("bob", "phone").await;
    let mut alice = ChatDevice::connect_node(&node, &alice_e).await;
    let mut bob = ChatDevice::connect_node(&node, &bob_e).await;

    let started = Instant::now();
    let receive = async {
        let mut seqs = Vec::with_capacity(N);
        while seqs.len() < N {
            let Some(r) = bob.next(WAIT).await else { break };
            assert_eq!(r.kind(), "msg", "bob: {}", r.event);
            assert_eq!(u64_of(&r.event, "n"), u64_of(&r.event, "seq"));
            seqs.push(u64_of(&r.event, "seq"));
        }
        (seqs, started.elapsed())
    };
    let body = |id: &str| format!("load message {id} with a little text in it");
    let send = chat_tests::chat::send_windowed(
        &mut alice,
        "bob",
        (0..N).map(|i| format!("t{i}")),
        WINDOW,
        body,
    );
    let (run, (seqs, received_in)) = tokio::join!(send, receive);
    let total = run.elapsed.max(received_in);
    assert_eq!(
        run.acked.len(),
        N,
        "acknowledged {} of {N} (ended {:?}, stalled {})",
        run.acked.len(),
        run.ended,
        run.stalled
    );
    assert!(run.unexpected_sent.is_empty(), "{:?}", run.unexpected_sent);
    let acked_seqs: Vec<u64> = run.acked.iter().map(|r: &SentRecord| r.seq).collect();
    let expected: Vec<u64> = (1..=N as u64).collect();
    assert_eq!(acked_seqs, expected, "sent events out of seq order");
    assert_eq!(seqs, expected, "bob's msgs missing or out of order");

    let rate = N as f64 / total.as_secs_f64();
    eprintln!(
        "THROUGHPUT: {N} messages (window {WINDOW}) sent and delivered in {total:.2?}: {rate:.0} msg/s; \
         send->sent latency p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        run.latency_quantile(0.5),
        run.latency_quantile(0.99),
        run.latency_quantile(1.0)
    );

    // Unloaded: one send at a time.
    let solo = chat_tests::chat::send_windowed(
        &mut alice,
        "bob",
        (0..200).map(|i| format!("solo{i}")),
        1,
        body,
    )
    .await;
    assert_eq!(solo.acked.len(), 200, "{:?}", solo.ended);
    eprintln!(
        "LATENCY: one send at a time, 200 sends: send->sent p50 {:.2?}, p99 {:.2?}",
        solo.latency_quantile(0.5),
        solo.latency_quantile(0.99)
    );
    for _ in 0..200 {
        assert_eq!(bob.expect("a solo msg").await.kind(), "msg");
    }

    let mut all = http_history_all(&node.client, &node.http, &alice_token, "d.alice.bob").await;
    assert_eq!(all.len(), N + 200);
    all.truncate(N);
    for (m, r) in all.iter().zip(&run.acked) {
        assert_eq!(
            (str_of(m, "msg_id"), u64_of(m, "seq")),
            (r.msg_id.as_str(), r.seq)
        );
        assert_eq!(m["body"], json!(body(&r.id)));
    }
    // Nothing else reached alice: only her sent events.
    assert!(run.events.iter().all(|r| r.kind() == "sent"));
    assert!(solo.events.iter().all(|r| r.kind() == "sent"));
    node.stop().await;
}

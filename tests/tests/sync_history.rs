//! Catching up and looking back: `sync` of the per-user inbox after being offline (every event,
//! in order, gapless `n`, paged), and `history` of a conversation over MQTT and HTTP (newest
//! first, paged with `before`, members only).

use chat_tests::chat::{
    array_of, bool_of, http_history, http_history_all, send_windowed, str_of, u64_of, ChatDevice,
    SentRecord,
};
use chat_tests::{TestNode, WAIT};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// alice (connected) sends `n` messages to bob with ids `{prefix}{i}` and body `body {i}`;
/// returns the `sent` records in seq order.
async fn alice_sends(alice: &mut ChatDevice, n: usize, prefix: &str) -> Vec<SentRecord> {
    let run = send_windowed(
        alice,
        "bob",
        (0..n).map(|i| format!("{prefix}{i}")),
        50,
        |id: &str| format!("body {id}"),
    )
    .await;
    assert_eq!(
        run.acked.len(),
        n,
        "{} of {n} sends acknowledged (ended {:?}, stalled {})",
        run.acked.len(),
        run.ended,
        run.stalled
    );
    let mut acked = run.acked;
    acked.sort_by_key(|r| r.seq);
    acked
}

// bob is offline while alice sends 250 messages; when he connects nothing old is pushed to him,
// and `sync` from 0 in pages of 100 returns exactly the 250 `msg` events, oldest first, with
// n = 1..=250 and the msg_id/seq/body alice's `sent` events named. A sync from the middle
// returns that slice; a sync past the end returns nothing with `last` = `after`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_recipient_gets_everything_by_sync_in_order() {
    const N: usize = 250;
    let node = TestNode::start().await;
    let (_, alice_e) = node.user_with_device("alice", "laptop").await;
    let (_, bob_e) = node.user_with_device("bob", "phone").await;
    let mut alice = ChatDevice::connect_node(&node, &alice_e).await;
    let acked = alice_sends(&mut alice, N, "m").await;
    assert_eq!(
        acked.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=N as u64).collect::<Vec<_>>()
    );

    let mut bob = ChatDevice::connect_node(&node, &bob_e).await;
    bob.expect_quiet(std::time::Duration::from_millis(300))
        .await;
    let events = bob.sync_all(0, 100).await;
    assert_eq!(events.len(), N, "bob's inbox");
    for (i, (e, sent)) in events.iter().zip(&acked).enumerate() {
        let i = i as u64 + 1;
        assert_eq!(str_of(e, "type"), "msg", "event {i}: {e}");
        assert_eq!(u64_of(e, "n"), i, "n is not gapless: {e}");
        assert_eq!(
            (str_of(e, "msg_id"), u64_of(e, "seq")),
            (sent.msg_id.as_str(), sent.seq),
            "event {i} is not the message alice's sent named"
        );
        assert_eq!(
            (str_of(e, "from"), str_of(e, "to"), str_of(e, "conv")),
            ("alice", "bob", "d.alice.bob")
        );
        assert_eq!(e["body"], json!(format!("body {}", sent.id)));
    }

    // A slice from the middle: n 101..=150, more.
    let page = bob.sync("mid", 100, Some(50)).await;
    let ns: Vec<u64> = array_of(&page, "events")
        .iter()
        .map(|e| u64_of(e, "n"))
        .collect();
    assert_eq!(ns, (101..=150).collect::<Vec<_>>());
    assert_eq!((u64_of(&page, "last"), bool_of(&page, "more")), (150, true));
    // Past the end: nothing, last = after.
    let page = bob.sync("end", N as u64, None).await;
    assert_eq!(
        page,
        json!({"type": "sync", "req": "end", "events": [], "last": N, "more": false})
    );

    // alice's own inbox holds her 250 `sent` events, same numbers.
    let mine = alice.sync_all(0, 1000).await;
    assert_eq!(mine.len(), N);
    for (e, sent) in mine.iter().zip(&acked) {
        assert_eq!(str_of(e, "type"), "sent");
        assert_eq!(SentRecord::of(e), *sent);
    }
    node.stop().await;
}

// A user's inbox interleaves everything stored for them: messages both ways and receipts each
// get the next n, and sync returns them in that order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_interleaves_messages_and_receipts_gaplessly() {
    let node = TestNode::start().await;
    let (_, alice_e) = node.user_with_device("alice", "laptop").await;
    let (_, bob_e) = node.user_with_device("bob", "phone").await;
    let mut alice = ChatDevice::connect_node(&node, &alice_e).await;
    let mut bob = ChatDevice::connect_node(&node, &bob_e).await;

    alice.send("a1", "bob", "one").await;
    alice.expect_user_event("sent").await;
    bob.expect_user_event("msg").await;
    bob.request(&json!({"type": "receipt", "conv": "d.alice.bob", "status": "read", "seq": 1}))
        .await;
    alice.expect_user_event("receipt").await;
    bob.expect_user_event("receipt").await;
    bob.send("b1", "alice", "two").await;
    bob.expect_user_event("sent").await;
    alice.expect_user_event("msg").await;

    let kinds = |events: &[Value]| -> Vec<(u64, String)> {
        events
            .iter()
            .map(|e| (u64_of(e, "n"), str_of(e, "type").to_owned()))
            .collect()
    };
    let want = |a: &str, b: &str, c: &str| vec![(1, a.into()), (2, b.into()), (3, c.into())];
    assert_eq!(
        kinds(&alice.sync_all(0, 10).await),
        want("sent", "receipt", "msg")
    );
    assert_eq!(
        kinds(&bob.sync_all(0, 10).await),
        want("msg", "receipt", "sent")
    );
    node.stop().await;
}

/// The `(seq, msg_id, from, body)` of each message of a history page.
fn rows(messages: &[Value]) -> Vec<(u64, String, String, Value)> {
    messages
        .iter()
        .map(|m| {
            assert_eq!(str_of(m, "type"), "msg", "{m}");
            assert!(m.get("n").is_none(), "history messages carry no n: {m}");
            (
                u64_of(m, "seq"),
                str_of(m, "msg_id").to_owned(),
                str_of(m, "from").to_owned(),
                m["body"].clone(),
            )
        })
        .collect()
}

// 120 messages (alice and bob both writing): `history` over MQTT pages newest first, 50 by
// default, `before` continues where the last page stopped, `more` is false only on the last
// page; HTTP returns the very same pages, and a full HTTP walk matches what was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_newest_first_over_mqtt_and_http() {
    let node = TestNode::start().await;
    let (alice_token, alice_e) = node.user_with_device("alice", "laptop").await;
    let (bob_token, bob_e) = node.user_with_device("bob", "phone").await;
    let mut alice = ChatDevice::connect_node(&node, &alice_e).await;
    let acked = alice_sends(&mut alice, 100, "h").await;
    let mut bob = ChatDevice::connect_node(&node, &bob_e).await;
    for i in 0..20 {
        bob.send(&format!("r{i}"), "alice", &format!("reply {i}"))
            .await;
        bob.wait_for("sent", WAIT, |r| r.kind() == "sent").await;
    }

    // MQTT, default page size.
    let mut before = None;
    let mut pages = Vec::new();
    for (p, (top, bottom, more)) in [(120, 71, true), (70, 21, true), (20, 1, false)]
        .into_iter()
        .enumerate()
    {
        let page = bob
            .history(&format!("h{p}"), "d.alice.bob", before, None)
            .await;
        assert_eq!(str_of(&page, "type"), "history", "{page}");
        assert_eq!(
            (str_of(&page, "req"), str_of(&page, "conv")),
            (format!("h{p}").as_str(), "d.alice.bob")
        );
        let got = rows(array_of(&page, "messages"));
        let seqs: Vec<u64> = got.iter().map(|r| r.0).collect();
        assert_eq!(seqs, (bottom..=top).rev().collect::<Vec<_>>(), "page {p}");
        assert_eq!(bool_of(&page, "more"), more, "page {p}");
        before = Some(bottom);
        pages.push(got);
    }
    // What the pages say matches what was sent.
    let all: Vec<_> = pages.iter().flatten().rev().cloned().collect();
    for (row, sent) in all.iter().zip(&acked) {
        assert_eq!((row.0, &row.1), (sent.seq, &sent.msg_id));
        assert_eq!(
            (row.2.as_str(), &row.3),
            ("alice", &json!(format!("body {}", sent.id)))
        );
    }
    assert!(all[100..].iter().all(|r| r.2 == "bob"));

    // HTTP gives the same pages, for either member.
    for token in [&alice_token, &bob_token] {
        for (p, query) in ["", "?before=71", "?before=21&limit=50"]
            .into_iter()
            .enumerate()
        {
            let (status, body) =
                http_history(&node.client, &node.http, Some(token), "d.alice.bob", query).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(rows(array_of(&body, "messages")), pages[p], "HTTP page {p}");
            assert_eq!(body["more"], json!(p < 2));
        }
        let walked = http_history_all(&node.client, &node.http, token, "d.alice.bob").await;
        assert_eq!(rows(&walked), all);
    }
    // A small limit over MQTT: the newest two.
    let page = alice.history("small", "d.alice.bob", None, Some(2)).await;
    let seqs: Vec<u64> = rows(array_of(&page, "messages"))
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!((seqs, bool_of(&page, "more")), (vec![120, 119], true));
    node.stop().await;
}

// Only members read a conversation: carol gets `forbidden` over MQTT (with her req echoed) and
// 403 with the JSON error body over HTTP; no token is 401; a malformed conversation id is 400.
// A member of a conversation with no messages gets an empty page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_refused_to_non_members() {
    let node = TestNode::start().await;
    let (_, alice_e) = node.user_with_device("alice", "laptop").await;
    node.user_with_device("bob", "phone").await;
    let (carol_token, carol_e) = node.user_with_device("carol", "tablet").await;
    let mut alice = ChatDevice::connect_node(&node, &alice_e).await;
    alice.send("x1", "bob", "private").await;
    alice.expect_user_event("sent").await;

    let mut carol = ChatDevice::connect_node(&node, &carol_e).await;
    let answer = carol.history("peek", "d.alice.bob", None, None).await;
    assert_eq!(str_of(&answer, "type"), "error", "{answer}");
    assert_eq!(
        (str_of(&answer, "code"), str_of(&answer, "req")),
        ("forbidden", "peek")
    );
    // Her connection is still fine: her own (empty) conversation with alice answers.
    let own = carol.history("own", "d.alice.carol", None, None).await;
    assert_eq!(
        own,
        json!({"type": "history", "req": "own", "conv": "d.alice.carol", "messages": [], "more": false})
    );

    let (status, body) = http_history(
        &node.client,
        &node.http,
        Some(&carol_token),
        "d.alice.bob",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], json!("forbidden"), "{body}");
    assert!(!body.to_string().contains("private"));

    let (status, body) = http_history(&node.client, &node.http, None, "d.alice.bob", "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], json!("unauthorized"), "{body}");

    for (conv, query) in [
        ("alice-bob", ""),
        ("d.bob.alice", ""),
        ("d.alice.bob", "?limit=0"),
        ("d.alice.bob", "?before=abc"),
    ] {
        let (status, body) =
            http_history(&node.client, &node.http, Some(&carol_token), conv, query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{conv}{query}: {body}");
        assert_eq!(body["error"]["code"], json!("bad_request"), "{body}");
    }
    node.stop().await;
}

// 1:1 messages whose fan-out a crash cut short: stored in one round (listed by the shard's
// batch marker), the first one's inbox entries half written, the second's not at all. The next
// start finishes them: each message once in each inbox, `n` gapless, nothing written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_direct_fan_out_is_finished_on_start() {
    let node = TestNode::start().await;
    for user in ["alice", "bob"] {
        drop(node.user_with_device(user, "phone").await);
    }
    let conv = "d.alice.bob".to_owned();
    let node = node
        .restart_with(|cfg| {
            let store = chat_store::Store::open(&cfg.node.data_dir.join("db"), &cfg.store)
                .expect("opening the stopped node's store");
            let mut writer = store.conv_writer(store.conv_shard(&conv)).unwrap();
            let msg = |id: &str, body: &str| chat_store::NewMessage {
                msg_id: 1,
                conv: conv.clone(),
                from: "alice".into(),
                client_id: id.into(),
                ts: chat_tests::chat::now_ms(),
                content: json!({"to": "bob", "body": body}),
            };
            writer
                .append(vec![msg("cut1", "first"), msg("cut2", "second")])
                .unwrap();
            // The crash came after alice's copy of the first message.
            let first = chat_store::InboxItem::Sent {
                conv: conv.clone(),
                seq: 1,
            };
            store
                .inbox_append_many(&[("alice".into(), first)], chat_store::Appending::New)
                .unwrap();
            drop(writer);
            store.flush().unwrap();
        })
        .await;
    for (user, kind) in [("alice", "sent"), ("bob", "msg")] {
        let token = node.login(user, chat_tests::TEST_PASSWORD).await;
        let enrolment = node.enrol(&token, "tablet").await;
        let mut dev = ChatDevice::connect_node(&node, &enrolment).await;
        let events = dev.sync_all(0, 100).await;
        let got: Vec<(u64, &str, u64, &str)> = events
            .iter()
            .map(|e| {
                let body = e["body"].as_str().unwrap_or_default();
                (u64_of(e, "n"), str_of(e, "type"), u64_of(e, "seq"), body)
            })
            .collect();
        assert_eq!(
            got,
            vec![(1, kind, 1, "first"), (2, kind, 2, "second")],
            "{user}: {events:?}"
        );
    }
    node.stop().await;
}

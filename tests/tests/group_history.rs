//! What of a group each member may read, against a real node: a member added later reads from
//! the entry that added them on (history over MQTT and HTTP, sync, media); a removed member and
//! one who left keep what was sent while they were members and nothing after; a re-added member
//! reads both memberships but not the gap between them.

use chat_tests::chat::{
    array_of, bool_of, http_history, http_history_all, str_of, u64_of, ChatDevice,
};
use chat_tests::TestNode;
use reqwest::StatusCode;
use serde_json::{json, Value};

struct Member {
    dev: ChatDevice,
    token: String,
}

async fn member(node: &TestNode, user: &str) -> Member {
    let (token, enrolment) = node.user_with_device(user, "phone").await;
    Member {
        dev: ChatDevice::connect_node(node, &enrolment).await,
        token,
    }
}

/// Uploads a small PNG as `token`'s user; returns the `media` object for a `send`.
async fn upload_png(node: &TestNode, token: &str, seed: u8) -> Value {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend((0..64u8).map(|i| i.wrapping_mul(seed)));
    let size = bytes.len();
    let r = node
        .client
        .post(node.url("/v1/media"))
        .bearer_auth(token)
        .header("content-type", "image/png")
        .body(bytes)
        .send()
        .await
        .expect("POST /v1/media");
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.expect("upload answer");
    json!({"media_id": str_of(&body, "media_id"), "mime": "image/png", "size": size})
}

/// `dev` sends `body` (and `media`, if any) to `group`; returns the message's seq.
async fn say(
    dev: &mut ChatDevice,
    id: &str,
    group: &str,
    body: &str,
    media: Option<&Value>,
) -> u64 {
    let mut request = json!({"type": "send", "id": id, "group": group, "body": body});
    if let Some(media) = media {
        request["media"] = media.clone();
    }
    dev.request(&request).await;
    let sent = dev
        .wait_for("sent", chat_tests::WAIT, |r| {
            r.kind() == "sent" && r.event["id"] == id
        })
        .await;
    u64_of(&sent.event, "seq")
}

/// A membership request by `dev` that must be answered `ok`.
async fn change(dev: &mut ChatDevice, req: &str, kind: &str, group: &str, members: &[&str]) {
    let mut request = json!({"type": kind, "group": group});
    if !members.is_empty() {
        request["members"] = json!(members);
    }
    dev.ask_ok(req, request).await;
}

/// The seqs of a `history` answer (or of HTTP messages), in the order given.
fn seqs(entries: &[Value]) -> Vec<u64> {
    entries.iter().map(|e| u64_of(e, "seq")).collect()
}

/// One MQTT history page: seqs and `more`.
async fn page(
    dev: &mut ChatDevice,
    req: &str,
    conv: &str,
    before: Option<u64>,
    limit: Option<u64>,
) -> (Vec<u64>, bool) {
    let answer = dev.history(req, conv, before, limit).await;
    assert_eq!(answer["type"], "history", "{answer}");
    (
        seqs(array_of(&answer, "messages")),
        bool_of(&answer, "more"),
    )
}

async fn http_seqs(node: &TestNode, token: &str, conv: &str) -> Vec<u64> {
    seqs(&http_history_all(&node.client, &node.http, token, conv).await)
}

async fn download(node: &TestNode, token: &str, media: &Value) -> StatusCode {
    node.download_media(token, str_of(media, "media_id"), None)
        .await
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_later_reads_from_the_moment_they_joined() {
    let node = TestNode::start().await;
    let mut amy = member(&node, "amy").await;
    let mut bob = member(&node, "bob").await;
    let mut cat = member(&node, "cat").await;
    let create = json!({"type": "group_create", "name": "Team", "members": ["bob"]});
    let group = str_of(&amy.dev.ask_ok("c", create).await, "group").to_owned();
    let conv = format!("g.{group}");
    let photo = upload_png(&node, &amy.token, 3).await;
    assert_eq!(
        say(&mut amy.dev, "m1", &group, "before cat", Some(&photo)).await,
        2
    );
    assert_eq!(
        say(&mut bob.dev, "m2", &group, "still before", None).await,
        3
    );
    change(&mut amy.dev, "a", "group_add", &group, &["cat"]).await;
    assert_eq!(
        say(&mut amy.dev, "m3", &group, "welcome cat", None).await,
        5
    );

    // History from the `added` entry (seq 4) on, over MQTT (paged) and HTTP.
    assert_eq!(
        page(&mut cat.dev, "h1", &conv, None, None).await,
        (vec![5, 4], false)
    );
    assert_eq!(
        page(&mut cat.dev, "h2", &conv, None, Some(1)).await,
        (vec![5], true)
    );
    assert_eq!(
        page(&mut cat.dev, "h3", &conv, Some(5), Some(1)).await,
        (vec![4], false)
    );
    assert_eq!(
        page(&mut cat.dev, "h4", &conv, Some(4), None).await,
        (vec![], false)
    );
    assert_eq!(http_seqs(&node, &cat.token, &conv).await, vec![4, 5]);
    let (status, body) = http_history(
        &node.client,
        &node.http,
        Some(&cat.token),
        &conv,
        "?before=3",
    )
    .await;
    assert_eq!(
        (status, seqs(array_of(&body, "messages"))),
        (StatusCode::OK, vec![])
    );
    assert_eq!(
        http_seqs(&node, &bob.token, &conv).await,
        vec![1, 2, 3, 4, 5]
    );

    // Sync was never the problem: cat's inbox starts with her being added.
    let inbox = cat.dev.sync_all(0, 100).await;
    assert_eq!(seqs(&inbox), vec![4, 5], "{inbox:?}");

    // Her read receipt covers what she could read: amy hears of it, bob (author of 3) does not.
    let read = json!({"type": "receipt", "conv": conv, "status": "read", "seq": 5});
    cat.dev.request(&read).await;
    let receipt = amy.dev.wait_user_event("receipt").await;
    assert_eq!(
        (receipt["by"].as_str(), u64_of(&receipt, "seq")),
        (Some("cat"), 5)
    );
    let receipts: Vec<Value> = bob
        .dev
        .sync_all(0, 100)
        .await
        .into_iter()
        .filter(|e| e["type"] == "receipt")
        .collect();
    assert_eq!(receipts, Vec::<Value>::new());

    // The photo was sent before cat joined: not hers to download or forward; bob's it is.
    assert_eq!(
        download(&node, &cat.token, &photo).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(download(&node, &bob.token, &photo).await, StatusCode::OK);
    let forward = json!({"type": "send", "id": "f1", "to": "amy", "media": photo});
    cat.dev.request(&forward).await;
    let err = cat.dev.wait_user_event("error").await;
    assert_eq!(
        (err["code"].as_str(), err["id"].as_str()),
        (Some("not_found"), Some("f1"))
    );
    // Sent again after she joined, it is.
    assert_eq!(
        say(&mut amy.dev, "m4", &group, "again", Some(&photo)).await,
        6
    );
    assert_eq!(download(&node, &cat.token, &photo).await, StatusCode::OK);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn former_members_keep_their_periods_and_nothing_else() {
    let node = TestNode::start().await;
    let mut amy = member(&node, "amy").await;
    let mut bob = member(&node, "bob").await;
    let mut cat = member(&node, "cat").await;
    let mut dan = member(&node, "dan").await;
    let create = json!({"type": "group_create", "name": "Team", "members": ["bob", "cat"]});
    let group = str_of(&amy.dev.ask_ok("c", create).await, "group").to_owned();
    let conv = format!("g.{group}");
    let early = upload_png(&node, &amy.token, 5).await;
    let later = upload_png(&node, &amy.token, 7).await;
    assert_eq!(
        say(&mut amy.dev, "m1", &group, "all of us", Some(&early)).await,
        2
    );
    change(&mut amy.dev, "r1", "group_remove", &group, &["bob"]).await;
    assert_eq!(
        say(&mut amy.dev, "m2", &group, "without bob", Some(&later)).await,
        4
    );
    change(&mut cat.dev, "l1", "group_leave", &group, &[]).await;
    assert_eq!(say(&mut amy.dev, "m3", &group, "just me", None).await, 6);

    // Each reads up to and including their own removal or leaving, over MQTT and HTTP.
    assert_eq!(
        page(&mut bob.dev, "h1", &conv, None, None).await,
        (vec![3, 2, 1], false)
    );
    assert_eq!(
        page(&mut cat.dev, "h1", &conv, None, None).await,
        (vec![5, 4, 3, 2, 1], false)
    );
    assert_eq!(http_seqs(&node, &bob.token, &conv).await, vec![1, 2, 3]);
    assert_eq!(
        http_seqs(&node, &cat.token, &conv).await,
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(download(&node, &bob.token, &early).await, StatusCode::OK);
    assert_eq!(
        download(&node, &bob.token, &later).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(download(&node, &cat.token, &later).await, StatusCode::OK);
    // Reading is all a former member keeps.
    bob.dev.send_group("b1", &group, "still here?").await;
    assert_eq!(bob.dev.wait_user_event("error").await["code"], "forbidden");
    let info = json!({"type": "group_info", "group": group});
    bob.dev.ask_error("i1", info, "forbidden").await;
    // Someone who was never a member reads nothing.
    let refused = dan.dev.history("h1", &conv, None, None).await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    let (status, _) = http_history(&node.client, &node.http, Some(&dan.token), &conv, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Re-added at 7: both periods, not the gap (4..=6), paged across it.
    change(&mut amy.dev, "a1", "group_add", &group, &["bob"]).await;
    assert_eq!(
        say(&mut amy.dev, "m4", &group, "welcome back", None).await,
        8
    );
    assert_eq!(
        page(&mut bob.dev, "h2", &conv, None, Some(2)).await,
        (vec![8, 7], true)
    );
    assert_eq!(
        page(&mut bob.dev, "h3", &conv, Some(7), Some(2)).await,
        (vec![3, 2], true)
    );
    assert_eq!(
        page(&mut bob.dev, "h4", &conv, Some(2), Some(2)).await,
        (vec![1], false)
    );
    assert_eq!(
        http_seqs(&node, &bob.token, &conv).await,
        vec![1, 2, 3, 7, 8]
    );
    assert_eq!(
        download(&node, &bob.token, &later).await,
        StatusCode::NOT_FOUND
    );
    node.stop().await;
}

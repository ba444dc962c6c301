//! Account lifecycle over the HTTP API: password change, account deletion (groups left, id
//! retired, connections closed, history kept with the author shown as deleted), the export,
//! and the erasure made real: after a deletion and a SIGTERM, no private value of the deleted
//! user is left in any file of the data directory.

use std::path::Path;
use std::time::Duration;

use chat_tests::chat::{account, direct_conv, http_history_all, login, str_of, ChatDevice};
use chat_tests::{ChatdProcess, TestClient, TestNode, TEST_PASSWORD, WAIT};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const NEW_PASSWORD: &str = "a brand new password";

/// `DELETE /v1/users/me` with `password`.
async fn delete_me(http: &str, token: &str, password: &str) -> StatusCode {
    reqwest::Client::new()
        .delete(format!("{http}/v1/users/me"))
        .bearer_auth(token)
        .json(&json!({ "password": password }))
        .send()
        .await
        .expect("DELETE /v1/users/me")
        .status()
}

/// `POST /v1/users/me/password`.
async fn change_password(node: &TestNode, token: &str, old: &str, new: &str) -> StatusCode {
    let body = json!({"old_password": old, "new_password": new});
    node.request(
        Method::POST,
        "/v1/users/me/password",
        Some(token),
        Some(&body),
    )
    .await
    .status
}

// A password change needs the old password (401 otherwise, 400 for a new one that breaks the
// rules); afterwards the old password fails, the new one works, the session that asked keeps
// working and the user's other sessions are over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_ends_the_other_sessions() {
    let node = TestNode::start().await;
    node.register("alice", TEST_PASSWORD).await;
    let mine = node.login("alice", TEST_PASSWORD).await;
    let other = node.login("alice", TEST_PASSWORD).await;
    assert_eq!(
        change_password(&node, &mine, "wrong password", NEW_PASSWORD).await,
        StatusCode::UNAUTHORIZED
    );
    let r = node
        .request(
            Method::POST,
            "/v1/users/me/password",
            Some(&mine),
            Some(&json!({"old_password": TEST_PASSWORD, "new_password": "short"})),
        )
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(
        change_password(&node, "0".repeat(64).as_str(), TEST_PASSWORD, NEW_PASSWORD).await,
        StatusCode::UNAUTHORIZED
    );
    // Nothing changed so far.
    node.login("alice", TEST_PASSWORD).await;

    assert_eq!(
        change_password(&node, &mine, TEST_PASSWORD, NEW_PASSWORD).await,
        StatusCode::NO_CONTENT
    );
    node.try_login("alice", TEST_PASSWORD)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    node.login("alice", NEW_PASSWORD).await;
    assert_eq!(
        node.try_enrol(&mine, "phone", None).await.status,
        StatusCode::CREATED
    );
    node.try_enrol(&other, "tablet", None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    node.stop().await;
}

// Deleting an account: a wrong password changes nothing (401); then 204, the live connection
// is closed, the device cannot connect again, login fails, the id cannot be registered again,
// the group's other member sees a `left` entry, and the messages the user sent stay in the
// other user's history, marked `from_deleted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_account_is_retired_and_its_history_stays() {
    let node = TestNode::start().await;
    let (ann_token, ann) = node.user_with_device("ann", "phone").await;
    let (bob_token, bob) = node.user_with_device("bob", "laptop").await;
    let mut ann_dev = ChatDevice::connect_node(&node, &ann).await;
    let mut bob_dev = ChatDevice::connect_node(&node, &bob).await;
    let create = json!({"type": "group_create", "name": "Pair", "members": ["bob"]});
    let group = str_of(&ann_dev.ask_ok("c", create).await, "group").to_owned();
    bob_dev.wait_user_event("group").await;
    ann_dev.send("m1", "bob", "hello from ann").await;
    bob_dev.wait_user_event("msg").await;

    assert_eq!(
        delete_me(&node.http, &ann_token, "wrong password").await,
        StatusCode::UNAUTHORIZED
    );
    node.login("ann", TEST_PASSWORD).await;
    assert_eq!(
        delete_me(&node.http, &ann_token, TEST_PASSWORD).await,
        StatusCode::NO_CONTENT
    );

    let left = bob_dev.wait_user_event("group").await;
    assert_eq!(
        (
            left["group"].as_str(),
            left["event"].as_str(),
            left["by"].as_str()
        ),
        (Some(group.as_str()), Some("left"), Some("ann")),
        "{left}"
    );
    assert!(
        ann_dev.client.wait_disconnected(WAIT).await,
        "the deleted user's connection stayed open"
    );
    assert!(
        TestClient::connect_tls_with(node.mqtt, ann.tls_config(), "phone")
            .await
            .is_err(),
        "a device of the deleted account connected"
    );
    node.try_login("ann", TEST_PASSWORD)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    node.try_register("ann", TEST_PASSWORD)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    node.try_enrol(&ann_token, "tablet", None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");

    let history = http_history_all(
        &node.client,
        &node.http,
        &bob_token,
        &direct_conv("ann", "bob"),
    )
    .await;
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["body"], "hello from ann");
    assert_eq!(history[0]["from"], "ann");
    assert_eq!(history[0]["from_deleted"], true, "{}", history[0]);
    // Sending to the deleted account is refused like sending to nobody.
    bob_dev
        .ask_error(
            "s",
            json!({"type": "send", "id": "m2", "to": "ann", "body": "hi"}),
            "not_found",
        )
        .await;
    node.stop().await;
}

// The export is a JSON attachment with the account, its devices and groups, and the messages
// it sent and received; nothing of a conversation it is not in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_holds_the_users_own_data_only() {
    let node = TestNode::start().await;
    let (token, amy) = node.user_with_device("amy", "phone").await;
    let (_, ben) = node.user_with_device("ben", "desk").await;
    let (_, cy) = node.user_with_device("cy", "pad").await;
    let mut amy_dev = ChatDevice::connect_node(&node, &amy).await;
    let mut ben_dev = ChatDevice::connect_node(&node, &ben).await;
    let mut cy_dev = ChatDevice::connect_node(&node, &cy).await;
    let create = json!({"type": "group_create", "name": "Club", "members": ["ben"]});
    let group = str_of(&amy_dev.ask_ok("c", create).await, "group").to_owned();
    amy_dev.send("a1", "ben", "amy to ben").await;
    ben_dev.wait_user_event("msg").await;
    ben_dev.send("b1", "amy", "ben to amy").await;
    amy_dev.wait_user_event("msg").await;
    cy_dev.send("c1", "ben", "cy to ben, private").await;
    ben_dev.wait_user_event("msg").await;

    let r = node
        .request(Method::GET, "/v1/users/me/export", Some(&token), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.headers["content-disposition"],
        "attachment; filename=\"chatd-export-amy.json\""
    );
    let doc: Value = serde_json::from_str(&r.text).expect("the export is not valid JSON");
    assert_eq!(doc["user"]["user_id"], "amy");
    assert!(doc["user"]["created_at"].as_u64().is_some(), "{doc}");
    assert_eq!(doc["devices"][0]["device_id"], "phone", "{doc}");
    assert_eq!(
        doc["groups"],
        json!([{"id": group, "name": "Club", "role": "admin"}])
    );
    let events = doc["events"].as_array().expect("events");
    let bodies: Vec<(&str, &str)> = events
        .iter()
        .filter_map(|e| Some((e["type"].as_str()?, e["body"].as_str()?)))
        .collect();
    assert_eq!(bodies, vec![("sent", "amy to ben"), ("msg", "ben to amy")]);
    assert!(events.iter().any(|e| e["type"] == "group"), "{doc}");
    assert!(
        !r.text.contains("cy to ben"),
        "another user's message leaked"
    );
    node.request(Method::GET, "/v1/users/me/export", None, None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    node.stop().await;
}

/// Values only the victim's private data holds.
const PUSH_MARKER: &str = "MARKERPUSHTOKEN1234567890QZX";
const BLOCKED_MARKER: &str = "zzqmarkerblockedid77";

/// The markers found in any file under `dir`.
fn markers_on_disk(dir: &Path, markers: &[&[u8]]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("reading the data directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).expect("reading a data file");
            for marker in markers {
                if bytes.windows(marker.len()).any(|w| w == *marker) {
                    found.push(format!(
                        "{} in {}",
                        String::from_utf8_lossy(marker),
                        path.display()
                    ));
                }
            }
        }
    }
    found
}

/// SIGTERM, then exit status 0 within 20 s.
async fn stop(chatd: &mut ChatdProcess) {
    chatd.signal("TERM");
    let status = chatd.wait_exit(Duration::from_secs(20)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "chatd did not stop cleanly ({status:?}); log:\n{}",
        chatd.log_text()
    );
}

// The real `chatd` program: the victim's push token, a block and their session are in the
// data files, also after a clean stop. Once the account is deleted and the node stopped with
// SIGTERM, none of them is in any file; after a restart the other user's login and messages
// are intact and the victim's id is still retired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_data_is_gone_from_the_disk_after_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut chatd = ChatdProcess::start(&data, &dir.path().join("chatd-1.log")).await;
    let (victim_token, victim) = account(&chatd.http, "victim", "phone").await;
    let (keeper_token, keeper) = account(&chatd.http, "keeper", "desk").await;
    let mut victim_dev = ChatDevice::connect(chatd.mqtt, &victim).await;
    let mut keeper_dev = ChatDevice::connect(chatd.mqtt, &keeper).await;
    let register = json!({"type": "push_register", "platform": "fcm", "token": PUSH_MARKER});
    victim_dev.ask_ok("p", register).await;
    victim_dev
        .ask_ok("b", json!({"type": "block", "user": BLOCKED_MARKER}))
        .await;
    keeper_dev.send("k1", "victim", "keeper to victim").await;
    victim_dev.wait_user_event("msg").await;
    victim_dev.send("v1", "keeper", "victim to keeper").await;
    keeper_dev.wait_user_event("msg").await;
    // The session token is stored as its SHA-256 (of the 32 raw bytes).
    let session_hash: [u8; 32] = {
        use sha2::Digest;
        sha2::Sha256::digest(hex::decode(&victim_token).expect("hex token")).into()
    };
    let markers: [&[u8]; 3] = [
        PUSH_MARKER.as_bytes(),
        BLOCKED_MARKER.as_bytes(),
        &session_hash,
    ];

    // Without a deletion a clean stop keeps them: the scan can see them.
    stop(&mut chatd).await;
    assert_eq!(
        markers_on_disk(&data, &markers).len(),
        3,
        "the scan finds nothing to begin with"
    );

    let mut chatd = ChatdProcess::start(&data, &dir.path().join("chatd-2.log")).await;
    assert_eq!(
        delete_me(&chatd.http, &victim_token, TEST_PASSWORD).await,
        StatusCode::NO_CONTENT
    );
    stop(&mut chatd).await;
    assert_eq!(
        markers_on_disk(&data, &markers),
        Vec::<String>::new(),
        "the deleted user's data is still on disk; log:\n{}",
        chatd.log_text()
    );
    assert!(
        chatd.log_text().contains("database rewritten"),
        "no rewrite in the log:\n{}",
        chatd.log_text()
    );

    let mut chatd = ChatdProcess::start(&data, &dir.path().join("chatd-3.log")).await;
    let keeper_token_again = login(&chatd.http, "keeper").await;
    let history = http_history_all(
        &reqwest::Client::new(),
        &chatd.http,
        &keeper_token_again,
        &direct_conv("keeper", "victim"),
    )
    .await;
    let bodies: Vec<&str> = history.iter().map(|m| str_of(m, "body")).collect();
    assert_eq!(bodies, vec!["keeper to victim", "victim to keeper"]);
    assert_eq!(history[1]["from_deleted"], true, "{}", history[1]);
    // The session from before the restarts still works; the victim's id stays retired.
    let r = reqwest::Client::new()
        .get(format!("{}/v1/users/me/export", chatd.http))
        .bearer_auth(&keeper_token)
        .send()
        .await
        .expect("export");
    assert_eq!(r.status(), StatusCode::OK);
    let r = reqwest::Client::new()
        .post(format!("{}/v1/users", chatd.http))
        .json(&json!({"user_id": "victim", "password": TEST_PASSWORD}))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), StatusCode::CONFLICT);
    stop(&mut chatd).await;
}

//! Media over HTTP: content-addressed upload (dedup), the size limit, the type check against the
//! bytes, access for the uploader and whoever may read a message that carried the file
//! (404 for everyone else), range downloads, and media in `msg` events.

use chat_tests::chat::{str_of, ChatDevice};
use chat_tests::TestNode;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A small "PNG": the real signature followed by `n` bytes.
fn png(n: usize, seed: u8) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
    b.extend((0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    b
}

async fn upload(node: &TestNode, token: &str, mime: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
    let r = node
        .client
        .post(node.url("/v1/media"))
        .bearer_auth(token)
        .header("content-type", mime)
        .body(bytes)
        .send()
        .await
        .expect("POST /v1/media");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn blob_files(node: &TestNode) -> usize {
    std::fs::read_dir(node.dir.path().join("media").join("blobs"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_content_addressed_checked_and_limited() {
    let node = TestNode::start_with(|cfg| cfg.media.max_bytes = 4096).await;
    let (amy, _) = node.user_with_device("amy", "phone").await;
    let (bob, _) = node.user_with_device("bob", "phone").await;
    let bytes = png(1000, 7);
    let (status, body) = upload(&node, &amy, "image/png", bytes.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = str_of(&body, "media_id").to_owned();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    assert_eq!(id, sha, "the id is the SHA-256 of the bytes");
    assert_eq!(body["size"], 1008);
    assert_eq!(body["mime"], "image/png");
    // The same bytes again (another user): same id, stored once.
    let (status, again) = upload(&node, &bob, "image/png", bytes.clone()).await;
    assert_eq!(
        (status, again["media_id"].as_str()),
        (StatusCode::CREATED, Some(id.as_str()))
    );
    assert_eq!(blob_files(&node), 1);

    // Over the limit: 413, with or without Content-Length, and nothing stored.
    let (status, err) = upload(&node, &amy, "image/png", png(5000, 1)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(err["error"]["code"], "too_large");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..10).map(|i| Ok(png(500, i))).collect();
    let r = node
        .client
        .post(node.url("/v1/media"))
        .bearer_auth(&amy)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "streamed upload stopped at the limit"
    );
    assert_eq!(blob_files(&node), 1);

    // The declared type must agree with the bytes.
    let (status, err) = upload(&node, &amy, "text/plain", png(10, 2)).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("unsupported_media_type")
        )
    );
    let (status, _) = upload(&node, &amy, "image/png", b"just text".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = upload(&node, &amy, "text/plain", b"just text".to_vec()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = upload(&node, &amy, "not a type", b"x".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // No token, no upload.
    let r = node
        .client
        .post(node.url("/v1/media"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_uploader_and_readers_of_a_message_that_carried_it_may_download() {
    let node = TestNode::start().await;
    let (amy_t, amy_e) = node.user_with_device("amy", "phone").await;
    let (bob_t, bob_e) = node.user_with_device("bob", "phone").await;
    let (cat_t, cat_e) = node.user_with_device("cat", "phone").await;
    let (dan_t, dan_e) = node.user_with_device("dan", "phone").await;
    let mut amy = ChatDevice::connect_node(&node, &amy_e).await;
    let mut bob = ChatDevice::connect_node(&node, &bob_e).await;
    let mut cat = ChatDevice::connect_node(&node, &cat_e).await;
    let mut dan = ChatDevice::connect_node(&node, &dan_e).await;
    let bytes = png(3000, 9);
    let (_, up) = upload(&node, &amy_t, "image/png", bytes.clone()).await;
    let id = str_of(&up, "media_id").to_owned();
    let media = json!({"media_id": id, "mime": "image/png", "size": 3008, "caption": "look"});

    assert_eq!(
        node.download_media(&amy_t, &id, None).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        node.download_media(&bob_t, &id, None).await.status(),
        StatusCode::NOT_FOUND
    );
    let missing = "0".repeat(64);
    assert_eq!(
        node.download_media(&amy_t, &missing, None).await.status(),
        StatusCode::NOT_FOUND
    );

    // amy sends it to bob: the event carries it, and bob may download it now.
    amy.request(&json!({"type": "send", "id": "m1", "to": "bob", "media": media}))
        .await;
    assert_eq!(amy.wait_user_event("sent").await["media"], media);
    let msg = bob.wait_user_event("msg").await;
    assert_eq!(msg["media"], media);
    let r = node.download_media(&bob_t, &id, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.bytes().await.unwrap().to_vec(), bytes);
    assert_eq!(
        node.download_media(&cat_t, &id, None).await.status(),
        StatusCode::NOT_FOUND
    );

    // bob forwards what he was sent; dan cannot send what he never had.
    bob.request(&json!({"type": "send", "id": "f1", "to": "cat", "media": media}))
        .await;
    bob.wait_user_event("sent").await;
    cat.wait_user_event("msg").await;
    assert_eq!(
        node.download_media(&cat_t, &id, None).await.status(),
        StatusCode::OK
    );
    dan.request(&json!({"type": "send", "id": "d1", "to": "amy", "media": media}))
        .await;
    let err = dan.wait_user_event("error").await;
    assert_eq!(
        (err["code"].as_str(), err["id"].as_str()),
        (Some("not_found"), Some("d1"))
    );
    let wrong = json!({"media_id": id, "mime": "image/png", "size": 1});
    amy.request(&json!({"type": "send", "id": "w1", "to": "bob", "media": wrong}))
        .await;
    assert_eq!(amy.wait_user_event("error").await["code"], "bad_request");

    // In a group: members may download, and a member removed later still may (it was sent
    // while he was a member); one added after it was sent may not.
    let create = json!({"type": "group_create", "name": "Pics", "members": ["dan"]});
    let group = str_of(&cat.ask_ok("g", create).await, "group").to_owned();
    cat.request(&json!({"type": "send", "id": "g1", "group": group, "media": media}))
        .await;
    cat.wait_user_event("sent").await;
    dan.wait_for("the group message", chat_tests::WAIT, |r| r.kind() == "msg")
        .await;
    assert_eq!(
        node.download_media(&dan_t, &id, None).await.status(),
        StatusCode::OK
    );
    let remove = json!({"type": "group_remove", "group": group, "members": ["dan"]});
    cat.ask_ok("r", remove).await;
    assert_eq!(
        node.download_media(&dan_t, &id, None).await.status(),
        StatusCode::OK
    );
    let (eve_t, _) = node.user_with_device("eve", "phone").await;
    let add = json!({"type": "group_add", "group": group, "members": ["eve"]});
    cat.ask_ok("e", add).await;
    assert_eq!(
        node.download_media(&eve_t, &id, None).await.status(),
        StatusCode::NOT_FOUND
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_honour_ranges() {
    let node = TestNode::start().await;
    let (amy, _) = node.user_with_device("amy", "phone").await;
    let bytes = png(92, 3); // 100 bytes
    let (_, up) = upload(&node, &amy, "image/png", bytes.clone()).await;
    let id = str_of(&up, "media_id").to_owned();
    let r = node.download_media(&amy, &id, Some("bytes=0-7")).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 0-7/100");
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert_eq!(r.bytes().await.unwrap().to_vec(), bytes[..8].to_vec());
    let r = node.download_media(&amy, &id, Some("bytes=-10")).await;
    assert_eq!(r.headers()["content-range"], "bytes 90-99/100");
    assert_eq!(r.bytes().await.unwrap().to_vec(), bytes[90..].to_vec());
    let r = node.download_media(&amy, &id, Some("bytes=95-")).await;
    assert_eq!(r.bytes().await.unwrap().len(), 5);
    let r = node.download_media(&amy, &id, Some("bytes=100-")).await;
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()["content-range"], "bytes */100");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "range_not_satisfiable");
    let r = node.download_media(&amy, &id, None).await;
    assert_eq!(
        (r.status(), r.headers()["content-length"].to_str().unwrap()),
        (StatusCode::OK, "100")
    );
    node.stop().await;
}

// The same upload, dedup and range download with the bytes in an S3 bucket (a fake one that
// checks every request's SigV4 signature with the test credentials).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_can_live_in_an_s3_bucket() {
    let s3 = chat_tests::fake_s3::FakeS3::start().await;
    let f = s3.clone();
    let node = TestNode::start_with(move |cfg| f.configure(&mut cfg.media)).await;
    let (amy, _) = node.user_with_device("amy", "phone").await;
    let (bob, _) = node.user_with_device("bob", "phone").await;
    let bytes = png(2000, 5);
    let (status, up) = upload(&node, &amy, "image/png", bytes.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{up}");
    let id = str_of(&up, "media_id").to_owned();
    let (status, again) = upload(&node, &bob, "image/png", bytes.clone()).await;
    assert_eq!(
        (status, again["media_id"].as_str()),
        (StatusCode::CREATED, Some(id.as_str()))
    );
    assert_eq!(
        s3.keys(),
        vec![format!("blobs/{id}")],
        "stored once, no upload left behind"
    );
    let r = node.download_media(&amy, &id, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().to_vec(), bytes);
    let r = node.download_media(&amy, &id, Some("bytes=8-15")).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().to_vec(), bytes[8..16].to_vec());
    // A refused upload leaves nothing in the bucket.
    let (status, _) = upload(&node, &amy, "text/plain", png(10, 1)).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(s3.keys().len(), 1, "{:?}", s3.requests());
    node.stop().await;
}

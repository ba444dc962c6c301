//! The HTTP API against a real node over a socket: registration, login, enrolment (with and
//! without a CSR), renewal, revocation, and bad input.

use chat_tests::{now_secs, ApiResponse, TestNode, TEST_PASSWORD};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

// Registration answers 201 {user_id}, 409 for a taken id, 400 for invalid ids or passwords.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_created_conflict_and_invalid() {
    let node = TestNode::start().await;
    let r = node.try_register("alice", TEST_PASSWORD).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body, json!({ "user_id": "alice" }));

    node.try_register("alice", "another password")
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");

    let long = "a".repeat(33);
    for (user, password) in [
        ("Alice", TEST_PASSWORD),       // upper case
        ("al.ice", TEST_PASSWORD),      // punctuation
        ("", TEST_PASSWORD),            // empty
        (long.as_str(), TEST_PASSWORD), // 33 characters
        ("bob", "short"),               // password under 8 bytes
    ] {
        node.try_register(user, password)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
    let huge_password = "p".repeat(257);
    node.try_register("bob", &huge_password)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    // The refused registrations created nothing: "bob" is still free.
    node.register("bob", TEST_PASSWORD).await;
    node.stop().await;
}

// Login answers 200 {token, expires_at} for the right password and 401 otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_ok_and_unauthorized() {
    let node = TestNode::start().await;
    node.register("alice", TEST_PASSWORD).await;
    let r = node.try_login("alice", TEST_PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let token = r.body["token"].as_str().expect("token");
    assert!(!token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()));
    let expires_at = r.body["expires_at"].as_u64().expect("expires_at");
    assert!(
        expires_at > now_secs(),
        "token already expired: {expires_at}"
    );

    for (user, password) in [
        ("alice", "wrong password"),
        ("nobody", TEST_PASSWORD),
        ("Alice", TEST_PASSWORD),
        ("alice", ""),
    ] {
        node.try_login(user, password)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // Two logins give two different working tokens.
    let t1 = node.login("alice", TEST_PASSWORD).await;
    let t2 = node.login("alice", TEST_PASSWORD).await;
    assert_ne!(t1, t2);
    node.stop().await;
}

// Enrolment with a CSR: 201 without key_pem; the certificate says O=user, CN=device and the
// ca_pem is the node's DATA_DIR/certs/ca.pem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_with_csr_keeps_the_key_on_the_device() {
    let node = TestNode::start().await;
    node.register("alice", TEST_PASSWORD).await;
    let token = node.login("alice", TEST_PASSWORD).await;
    let (csr, _key) = chat_certs::make_csr("alice", "phone").unwrap();
    let r = node.try_enrol(&token, "phone", Some(&csr)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert!(
        r.body.get("key_pem").is_none(),
        "key_pem with a CSR: {}",
        r.text
    );
    assert_eq!(r.body["device_id"], "phone");
    assert_eq!(
        r.headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store"),
        "certificates and keys must not be cached"
    );
    let ca_file = std::fs::read_to_string(node.ca_path()).unwrap();
    assert_eq!(r.body["ca_pem"].as_str(), Some(ca_file.as_str()));
    assert_eq!(node.ca_pem, ca_file);

    // The helper does the same and keeps the locally made key.
    let e = node.enrol_csr(&token, "alice", "tablet").await;
    let id = e.identity();
    assert_eq!(id.organization, "alice");
    assert_eq!(id.common_name, "tablet");
    assert_eq!(id.not_after, e.expires_at);
    assert!(e.expires_at > now_secs());
    assert!(key_matches_cert(&e.cert_pem, &e.key_pem));
    node.stop().await;
}

// Enrolment without a CSR: 201 with a key_pem that belongs to the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_without_csr_returns_a_matching_key() {
    let node = TestNode::start().await;
    let (_token, e) = node.user_with_device("alice", "laptop").await;
    let id = e.identity();
    assert_eq!(
        (id.organization.as_str(), id.common_name.as_str()),
        ("alice", "laptop")
    );
    assert!(
        key_matches_cert(&e.cert_pem, &e.key_pem),
        "key_pem does not match cert_pem"
    );
    assert_eq!(e.ca_pem, std::fs::read_to_string(node.ca_path()).unwrap());
    node.stop().await;
}

// Calling POST /v1/devices again renews: 201 again, with a new serial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_issues_a_new_certificate() {
    let node = TestNode::start().await;
    let (token, first) = node.user_with_device("alice", "laptop").await;
    let second = node.enrol(&token, "laptop").await; // asserts 201
    assert_ne!(first.identity().serial, second.identity().serial);
    assert_ne!(
        first.key_pem, second.key_pem,
        "a new key pair for a new certificate"
    );
    let third = node.enrol_csr(&token, "alice", "laptop").await; // renewal with a CSR too
    assert_ne!(second.identity().serial, third.identity().serial);
    node.stop().await;
}

// Revocation: 204, then the id is retired (409 on re-enrolment), and a second DELETE is 404.
// Another user cannot revoke it (404, scoped to the caller).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_retires_the_device_id() {
    let node = TestNode::start().await;
    let (alice, _laptop) = node.user_with_device("alice", "laptop").await;
    let (bob, _) = node.user_with_device("bob", "phone").await;

    assert_eq!(
        node.revoke(&bob, "laptop").await,
        StatusCode::NOT_FOUND,
        "bob has no laptop"
    );
    assert_eq!(node.revoke(&alice, "laptop").await, StatusCode::NO_CONTENT);
    node.try_enrol(&alice, "laptop", None)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    let (csr, _) = chat_certs::make_csr("alice", "laptop").unwrap();
    node.try_enrol(&alice, "laptop", Some(&csr))
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    let again = node
        .request(Method::DELETE, "/v1/devices/laptop", Some(&alice), None)
        .await;
    again.assert_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        node.revoke(&alice, "nosuchdevice").await,
        StatusCode::NOT_FOUND
    );
    // bob's device of another name is untouched, and alice may enrol a new id.
    node.enrol(&bob, "phone").await;
    node.enrol(&alice, "laptop2").await;
    node.stop().await;
}

// Bad input of every kind gets a 4xx with the JSON error body, never a 5xx, and the node keeps
// serving good requests afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_json_4xx_never_5xx() {
    let node = TestNode::start().await;
    let (token, _) = node.user_with_device("alice", "laptop").await;
    let c = &node.client;
    let json_post = |path: &str, body: &'static str| {
        c.post(node.url(path))
            .header("content-type", "application/json")
            .body(body)
    };
    let cases: Vec<(&str, reqwest::RequestBuilder, StatusCode, &str)> = vec![
        ("not JSON", json_post("/v1/users", "this is not json"), StatusCode::BAD_REQUEST, "bad_request"),
        ("truncated JSON", json_post("/v1/sessions", "{\"user_id\":\"al"), StatusCode::BAD_REQUEST, "bad_request"),
        ("empty body", json_post("/v1/users", ""), StatusCode::BAD_REQUEST, "bad_request"),
        ("JSON array", json_post("/v1/users", "[1,2,3]"), StatusCode::BAD_REQUEST, "bad_request"),
        ("wrong types", json_post("/v1/users", "{\"user_id\":5,\"password\":true}"), StatusCode::BAD_REQUEST, "bad_request"),
        ("null fields", json_post("/v1/sessions", "{\"user_id\":null,\"password\":null}"), StatusCode::BAD_REQUEST, "bad_request"),
        ("missing password", json_post("/v1/users", "{\"user_id\":\"carol\"}"), StatusCode::BAD_REQUEST, "bad_request"),
        ("missing everything", json_post("/v1/sessions", "{}"), StatusCode::BAD_REQUEST, "bad_request"),
        ("no content-type", c.post(node.url("/v1/users")).body("{\"user_id\":\"carol\",\"password\":\"12345678\"}"), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        ("text/plain", c.post(node.url("/v1/users")).header("content-type", "text/plain").body("{}"), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        ("huge body", c.post(node.url("/v1/users")).header("content-type", "application/json").body(format!("{{\"user_id\":\"carol\",\"password\":\"{}\"}}", "x".repeat(200_000))), StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        ("unknown route", c.get(node.url("/v1/nothing/here")), StatusCode::NOT_FOUND, "not_found"),
        ("root", c.get(node.url("/")), StatusCode::NOT_FOUND, "not_found"),
        ("wrong method on /v1/users", c.get(node.url("/v1/users")), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        ("wrong method on /v1/devices", c.put(node.url("/v1/devices")), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        ("GET a device", c.get(node.url("/v1/devices/laptop")), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        ("missing bearer", json_post("/v1/devices", "{\"device_id\":\"x\"}"), StatusCode::UNAUTHORIZED, "unauthorized"),
        ("unknown token", json_post("/v1/devices", "{\"device_id\":\"x\"}").bearer_auth("0".repeat(64)), StatusCode::UNAUTHORIZED, "unauthorized"),
        ("garbage token", json_post("/v1/devices", "{\"device_id\":\"x\"}").bearer_auth("not a token at all"), StatusCode::UNAUTHORIZED, "unauthorized"),
        ("basic auth", json_post("/v1/devices", "{\"device_id\":\"x\"}").basic_auth("alice", Some(TEST_PASSWORD)), StatusCode::UNAUTHORIZED, "unauthorized"),
        ("huge token", json_post("/v1/devices", "{\"device_id\":\"x\"}").bearer_auth("a".repeat(10_000)), StatusCode::UNAUTHORIZED, "unauthorized"),
        ("delete without bearer", c.delete(node.url("/v1/devices/laptop")), StatusCode::UNAUTHORIZED, "unauthorized"),
        ("device_id wrong type", json_post("/v1/devices", "{\"device_id\":[1]}").bearer_auth(&token), StatusCode::BAD_REQUEST, "bad_request"),
        ("device_id invalid", json_post("/v1/devices", "{\"device_id\":\"Bad Id!\"}").bearer_auth(&token), StatusCode::BAD_REQUEST, "bad_request"),
        ("device_id empty", json_post("/v1/devices", "{\"device_id\":\"\"}").bearer_auth(&token), StatusCode::BAD_REQUEST, "bad_request"),
        ("csr_pem garbage", json_post("/v1/devices", "{\"device_id\":\"x\",\"csr_pem\":\"-----BEGIN CERTIFICATE REQUEST-----\\nAAAA\\n-----END CERTIFICATE REQUEST-----\\n\"}").bearer_auth(&token), StatusCode::BAD_REQUEST, "bad_request"),
        ("csr_pem not PEM", json_post("/v1/devices", "{\"device_id\":\"x\",\"csr_pem\":\"hello\"}").bearer_auth(&token), StatusCode::BAD_REQUEST, "bad_request"),
        ("csr_pem wrong type", json_post("/v1/devices", "{\"device_id\":\"x\",\"csr_pem\":42}").bearer_auth(&token), StatusCode::BAD_REQUEST, "bad_request"),
        ("revoke invalid id", c.delete(node.url("/v1/devices/NOT%20VALID")).bearer_auth(&token), StatusCode::BAD_REQUEST, "bad_request"),
    ];
    for (what, req, status, code) in cases {
        let r: ApiResponse = node.send(req).await;
        assert!(
            r.status.is_client_error(),
            "{what}: expected a 4xx, got {} {}",
            r.status,
            r.text
        );
        assert_eq!(r.status, status, "{what}: {}", r.text);
        assert_eq!(r.error_code(), Some(code), "{what}: {}", r.text);
        assert!(
            r.body
                .pointer("/error/message")
                .and_then(Value::as_str)
                .is_some(),
            "{what}: no error.message: {}",
            r.text
        );
    }
    // A CSR that is valid but for another identity is signed for the caller's identity.
    let (csr, key) = chat_certs::make_csr("mallory", "evil").unwrap();
    let r = node.try_enrol(&token, "laptop", Some(&csr)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let der = rustls_pemfile::certs(&mut r.body["cert_pem"].as_str().unwrap().as_bytes())
        .next()
        .unwrap()
        .unwrap();
    let id = chat_certs::peer_identity(der.as_ref()).unwrap();
    assert_eq!(
        (id.organization.as_str(), id.common_name.as_str()),
        ("alice", "laptop")
    );
    assert!(key_matches_cert(r.body["cert_pem"].as_str().unwrap(), &key));

    // After all that, good requests still work.
    node.register("carol", TEST_PASSWORD).await;
    let carol = node.login("carol", TEST_PASSWORD).await;
    node.enrol(&carol, "phone").await;
    let health = node.request(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    node.stop().await;
}

/// True if the private key in `key_pem` is the one whose public key `cert_pem` certifies.
fn key_matches_cert(cert_pem: &str, key_pem: &str) -> bool {
    let chain = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate PEM");
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .expect("key PEM")
        .expect("no key in the PEM");
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(chain, key, &provider)
        .and_then(|k| k.keys_match())
        .is_ok()
}

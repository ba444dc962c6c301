//! A connect storm: 2,000 TLS devices (100 users x 20 devices) connecting and subscribing at
//! the same time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_tests::{tls_options, Enrolment, TestClient, TestNode, TEST_PASSWORD};
use rumqttc::{QoS, SubscribeReasonCode};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const USERS: usize = 100;
const DEVICES_PER_USER: usize = 20;
/// Parallel HTTP requests while enrolling.
const HTTP_CONCURRENCY: usize = 32;

// 2,000 devices connecting at once all get their CONNACK and SUBACK (QoS 1 on their own
// per-device topic) within a generous 120 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_storm_of_2000_tls_devices() {
    let node = Arc::new(TestNode::start().await);
    let permits = Arc::new(Semaphore::new(HTTP_CONCURRENCY));

    // Users: register and log in.
    let started = Instant::now();
    let mut users = JoinSet::new();
    for u in 0..USERS {
        let (node, permits) = (node.clone(), permits.clone());
        users.spawn(async move {
            let _permit = permits.acquire().await.unwrap();
            let user = format!("u{u}");
            node.register(&user, TEST_PASSWORD).await;
            let token = node.login(&user, TEST_PASSWORD).await;
            (user, token)
        });
    }
    let mut tokens = Vec::new();
    while let Some(r) = users.join_next().await {
        tokens.push(r.unwrap());
    }

    // Devices: enrol (the server makes each key pair).
    let mut enrol = JoinSet::new();
    for (user, token) in &tokens {
        for d in 0..DEVICES_PER_USER {
            let (node, permits) = (node.clone(), permits.clone());
            let (user, token) = (user.clone(), token.clone());
            enrol.spawn(async move {
                let _permit = permits.acquire().await.unwrap();
                let e = node.enrol(&token, &format!("d{d}")).await;
                assert_eq!(e.user, user);
                e
            });
        }
    }
    let mut devices: Vec<Enrolment> = Vec::new();
    while let Some(r) = enrol.join_next().await {
        devices.push(r.unwrap());
    }
    assert_eq!(devices.len(), USERS * DEVICES_PER_USER);
    eprintln!(
        "connect storm: enrolled {} devices over HTTP in {:.2} s",
        devices.len(),
        started.elapsed().as_secs_f64()
    );

    // The storm: every device connects and subscribes at the same time.
    let configs: Vec<_> = devices
        .iter()
        .map(|e| (e.clone(), e.tls_config()))
        .collect();
    let addr = node.mqtt;
    let started = Instant::now();
    let mut storm = JoinSet::new();
    for (e, tls) in configs {
        storm.spawn(async move {
            let options = tls_options(addr, tls, &e.device_id);
            let mut c = TestClient::connect(options, Duration::from_secs(100))
                .await
                .map_err(|err| format!("{}/{}: connect: {err}", e.user, e.device_id))?;
            let filter = format!("/tenants/{}/in/{}", e.user, e.device_id);
            let codes = c
                .subscribe(&filter)
                .await
                .map_err(|err| format!("{}/{}: subscribe: {err}", e.user, e.device_id))?;
            if codes != [SubscribeReasonCode::Success(QoS::AtLeastOnce)] {
                return Err(format!("{}/{}: SUBACK {codes:?}", e.user, e.device_id));
            }
            Ok(c)
        });
    }
    let mut clients = Vec::new();
    let mut failures = Vec::new();
    let all = async {
        while let Some(r) = storm.join_next().await {
            match r.unwrap() {
                Ok(c) => clients.push(c),
                Err(e) => failures.push(e),
            }
        }
    };
    let finished = tokio::time::timeout(Duration::from_secs(120), all).await;
    let took = started.elapsed().as_secs_f64();
    assert!(finished.is_ok(), "storm not finished after 120 s");
    assert!(
        failures.is_empty(),
        "{} of {} devices failed, e.g. {:?}",
        failures.len(),
        USERS * DEVICES_PER_USER,
        &failures[..failures.len().min(5)]
    );
    assert_eq!(clients.len(), USERS * DEVICES_PER_USER);
    assert_eq!(
        node.node().broker().connection_count(),
        USERS * DEVICES_PER_USER
    );
    eprintln!(
        "connect storm: {} TLS devices connected and subscribed in {took:.2} s",
        clients.len()
    );

    // The storm leaves the node healthy: with all 2,000 gone, a device reconnects at once.
    drop(clients);
    let again = &devices[0];
    let mut c = TestClient::connect_tls(&node, again, &again.device_id)
        .await
        .unwrap();
    c.alive(&format!("/tenants/{}/in/{}", again.user, again.device_id))
        .await
        .unwrap();
    drop(c);
    Arc::try_unwrap(node)
        .ok()
        .expect("node still shared")
        .stop()
        .await;
}

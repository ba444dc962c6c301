//! CPU per mutual-TLS handshake of a device, one side at a time (the other side's calls run
//! in between, in memory, untimed).
//!
//! - `server_handshake`: the MQTT listener, with webpki's full check of the device certificate
//!   (`server_tls_config(true)`) and with the certificate's fingerprint recorded at enrolment
//!   (`device_tls_config`), which skips the check of the CA's signature.
//! - `client_handshake`: the device, with a plain webpki configuration and with the SDK's
//!   (`chat_client::tls::client_config`), which remembers the node's chain once verified.
//!
//! Run with `cargo bench -p chat-certs --bench handshake`.

#![allow(clippy::unwrap_used)]

use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_certs::{Authority, CertsConfig, DeviceCert, IssuedCerts};
use criterion::{criterion_group, criterion_main, Criterion};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

/// One device whose fingerprint is "recorded".
#[derive(Debug)]
struct OneDevice(String);

impl IssuedCerts for OneDevice {
    fn recorded_fingerprint(&self, _user: &str, _device: &str) -> Option<String> {
        Some(self.0.clone())
    }
}

fn client_config(auth: &Authority, device: &DeviceCert) -> Arc<ClientConfig> {
    let chain: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut device.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    let key_pem = device.key_pem.as_deref().unwrap();
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .unwrap()
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(auth.root_store().unwrap())
        .with_client_auth_cert(chain, key)
        .unwrap();
    Arc::new(config)
}

/// The side whose calls are timed.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Server,
    Client,
}

/// Moves what `from` has to send into `to`; returns the time spent in `timed`'s calls.
fn pass<A, B>(
    from: &mut rustls::ConnectionCommon<A>,
    to: &mut rustls::ConnectionCommon<B>,
    (from_side, timed): (Side, Side),
) -> Duration {
    let mut buf = Vec::new();
    let start = Instant::now();
    while from.wants_write() {
        from.write_tls(&mut buf).unwrap();
    }
    let writing = start.elapsed();
    let start = Instant::now();
    let mut rd = Cursor::new(&buf[..]);
    while (rd.position() as usize) < buf.len() {
        to.read_tls(&mut rd).unwrap();
        to.process_new_packets().unwrap();
    }
    let reading = start.elapsed();
    if from_side == timed {
        writing
    } else {
        reading
    }
}

/// `timed`'s time in one full handshake, making its connection included.
fn handshake(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>, timed: Side) -> Duration {
    let start = Instant::now();
    let mut s = ServerConnection::new(server.clone()).unwrap();
    let made_server = start.elapsed();
    let start = Instant::now();
    let name = ServerName::try_from("localhost").unwrap();
    let mut c = ClientConnection::new(client.clone(), name).unwrap();
    let made_client = start.elapsed();
    let mut spent = match timed {
        Side::Server => made_server,
        Side::Client => made_client,
    };
    while c.is_handshaking() || s.is_handshaking() {
        spent += pass(&mut c, &mut s, (Side::Client, timed));
        spent += pass(&mut s, &mut c, (Side::Server, timed));
    }
    spent
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let auth = Authority::load_or_create(dir.path(), &CertsConfig::default()).unwrap();
    let device = auth.issue("alice", "phone").unwrap();
    let client = client_config(&auth, &device);
    let full = auth.server_tls_config(true).unwrap();
    let recorded = auth
        .device_tls_config(Arc::new(OneDevice(device.fingerprint.clone())))
        .unwrap();
    let mut group = c.benchmark_group("server_handshake");
    for (name, server) in [("full_check", &full), ("recorded", &recorded)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| handshake(server, &client, Side::Server))
                    .sum()
            });
        });
    }
    group.finish();

    let key_pem = device.key_pem.as_deref().unwrap();
    let sdk =
        chat_client::tls::client_config(auth.ca_pem(), Some((&device.cert_pem, key_pem))).unwrap();
    let mut group = c.benchmark_group("client_handshake");
    for (name, client) in [("webpki", &client), ("sdk", &sdk)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| handshake(&recorded, client, Side::Client))
                    .sum()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

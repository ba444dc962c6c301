use std::sync::Arc;

use rustls::{ClientConfig, ClientConnection, ServerConnection};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::{new_authority, pem_to_der, verify_server};
use crate::authority::crypto_provider;
use crate::{Authority, DeviceCert};

#[test]
fn server_cert_verifies_for_default_names() {
    let (_dir, auth) = new_authority();
    for name in ["localhost", "127.0.0.1", "::1"] {
        verify_server(&auth, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    verify_server(&auth, "example.com").expect_err("not a name of the server");
    let chain = auth.server_cert_chain();
    assert_eq!(chain.len(), 2, "leaf and CA");
    assert_eq!(chain[1], auth.ca_der());
}

#[test]
fn server_tls_configs_build() {
    let (_dir, auth) = new_authority();
    let with_auth = auth.server_tls_config(true).expect("mutual TLS config");
    assert!(with_auth.alpn_protocols.is_empty());
    auth.server_tls_config(false)
        .expect("server-only TLS config");
}

fn client_config(auth: &Authority, device: Option<&DeviceCert>) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(auth.root_store().expect("roots"));
    let config = match device {
        Some(device) => {
            let chain: Vec<CertificateDer<'static>> = vec![pem_to_der(&device.cert_pem)];
            let key_pem = device.key_pem.as_deref().expect("key");
            let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
                .expect("decode")
                .expect("a key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client cert")
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Runs a handshake in memory; returns the server's error if any.
pub(super) fn handshake(
    client: &mut ClientConnection,
    server: &mut ServerConnection,
) -> Result<(), rustls::Error> {
    for _ in 0..20 {
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
        deliver(client, server)?;
        deliver(server, client)?;
    }
    Err(rustls::Error::General("handshake did not finish".into()))
}

/// Hands everything `from` has to send (handshake messages, tickets) to `to`.
fn deliver<A, B>(
    from: &mut rustls::ConnectionCommon<A>,
    to: &mut rustls::ConnectionCommon<B>,
) -> Result<(), rustls::Error> {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).expect("write");
    }
    let mut rd = &buf[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).expect("read");
        to.process_new_packets()?;
    }
    Ok(())
}

fn connect(
    auth: &Authority,
    require: bool,
    device: Option<&DeviceCert>,
) -> Result<ServerConnection, rustls::Error> {
    let server_config = auth.server_tls_config(require).expect("server config");
    let mut server = ServerConnection::new(server_config).expect("server");
    let name = ServerName::try_from("localhost").expect("name");
    let mut client = ClientConnection::new(client_config(auth, device), name).expect("client");
    handshake(&mut client, &mut server)?;
    Ok(server)
}

#[test]
fn mutual_tls_handshake_with_device_certificate() {
    let (_dir, auth) = new_authority();
    let device = auth.issue("alice", "phone").expect("issue");
    let server = connect(&auth, true, Some(&device)).expect("handshake");
    let peer = server
        .peer_certificates()
        .expect("client presented a certificate");
    let id = crate::peer_identity(&peer[0]).expect("identity");
    assert_eq!(
        (id.organization.as_str(), id.common_name.as_str()),
        ("alice", "phone")
    );
    assert_eq!(id.serial, device.serial);
}

#[test]
fn mutual_tls_rejects_missing_expired_and_foreign_certificates() {
    let (_dir, auth) = new_authority();
    connect(&auth, true, None).expect_err("no client certificate");

    let now = time::OffsetDateTime::now_utc();
    let expired = auth
        .issue_with_validity(
            "a",
            "b",
            now - time::Duration::days(2),
            now - time::Duration::days(1),
        )
        .expect("issue");
    connect(&auth, true, Some(&expired)).expect_err("expired client certificate");

    let (_other_dir, other) = new_authority();
    let foreign = other.issue("a", "b").expect("issue");
    connect(&auth, true, Some(&foreign)).expect_err("foreign client certificate");
}

#[test]
fn server_only_tls_handshake() {
    let (_dir, auth) = new_authority();
    let server = connect(&auth, false, None).expect("handshake");
    assert!(server.peer_certificates().is_none());
}

#[test]
fn a_second_connection_gets_a_full_handshake_not_a_resumed_session() {
    let (_dir, auth) = new_authority();
    let device = auth.issue("alice", "phone").expect("issue");
    let server_config = auth.server_tls_config(true).expect("server config");
    let client_config = client_config(&auth, Some(&device));
    for round in 0..2 {
        let mut server = ServerConnection::new(server_config.clone()).expect("server");
        let name = ServerName::try_from("localhost").expect("name");
        let mut client = ClientConnection::new(client_config.clone(), name).expect("client");
        handshake(&mut client, &mut server).expect("handshake");
        // Anything the server sends after the handshake (session tickets) reaches the client.
        deliver(&mut server, &mut client).expect("after the handshake");
        assert_eq!(
            client.handshake_kind(),
            Some(rustls::HandshakeKind::Full),
            "connection {round}: resumption would skip the certificate check"
        );
        assert!(server.peer_certificates().is_some(), "connection {round}");
    }
}

//! Serving the router over plain TCP or TLS, with graceful shutdown.

use std::future::{Future, IntoFuture as _};
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections may take to finish after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting and lets open connections finish (for at most 10 s).
///
/// With `tls`, connections speak HTTPS (HTTP/1.1 and HTTP/2 via ALPN);
/// without it, plain HTTP.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    match tls {
        None => serve_plain(listener, app, shutdown).await,
        Some(tls) => serve_tls(listener, app, tls, shutdown).await,
    }
}

async fn serve_plain(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "failed to set TCP_NODELAY");
        }
    });
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stopped(&mut stop_rx).await })
        .into_future();
    let mut server = pin!(server);
    let mut shutdown = pin!(shutdown);
    tokio::select! {
        result = &mut server => return result,
        () = &mut shutdown => {}
    }
    tracing::info!("HTTP listener shutting down");
    let _ = stop_tx.send(true);
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!("HTTP connections still open after the shutdown grace period");
            Ok(())
        }
    }
}

async fn serve_tls(
    listener: TcpListener,
    app: Router,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(with_http_alpn(&tls));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let task = serve_tls_connection(tcp, peer, acceptor.clone(), app.clone(), stop_rx.clone());
                    connections.spawn(task);
                }
                Err(err) => accept_error(err).await,
            },
            // Reap finished connection tasks so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    tracing::info!(open = connections.len(), "HTTPS listener shutting down");
    let _ = stop_tx.send(true);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!(
            open = connections.len(),
            "closing HTTPS connections still open after the shutdown grace period"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Handles one accepted TCP connection: TLS handshake (bounded), then HTTP
/// until the peer is done or shutdown is signalled.
async fn serve_tls_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    app: Router,
    mut stop: watch::Receiver<bool>,
) {
    if let Err(err) = tcp.set_nodelay(true) {
        tracing::debug!(%peer, error = %err, "failed to set TCP_NODELAY");
    }
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
    // A connection still in its handshake has no request in flight: on
    // shutdown it is simply dropped.
    let stream = tokio::select! {
        outcome = handshake => match outcome {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                tracing::debug!(%peer, error = %err, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        () = stopped(&mut stop) => return,
    };
    let builder = auto::Builder::new(TokioExecutor::new());
    let service = TowerToHyperService::new(app);
    let mut connection =
        pin!(builder.serve_connection_with_upgrades(TokioIo::new(stream), service));
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(%peer, error = %err, "HTTPS connection ended with an error");
    }
}

/// Resolves once shutdown is signalled (or the server is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // Not kept across an await: the watch guard is not `Send`.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// A copy of `tls` that negotiates `h2` and `http/1.1` via ALPN.
fn with_http_alpn(tls: &rustls::ServerConfig) -> Arc<rustls::ServerConfig> {
    let mut config = tls.clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Per-connection accept errors are ignored; others (for example running
/// out of file descriptors) are logged and slow the loop down.
async fn accept_error(err: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %err, "accept failed on the HTTPS listener");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Builds a TLS server configuration (no client authentication) from a PEM
/// certificate chain and a PEM private key, for `HttpConfig::tls_cert` and
/// `HttpConfig::tls_key`.
pub fn load_tls_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading TLS certificates from {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("no certificate found in {}", cert.display());
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading TLS private key from {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("configuring TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .context("TLS certificate and key do not form a valid pair")?;
    Ok(with_http_alpn(&config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    fn app() -> Router {
        Router::new().route("/ping", get(|| async { "pong" }))
    }

    #[tokio::test]
    async fn plain_http_serves_and_shuts_down() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, app(), None, async move {
            let _ = stop_rx.await;
        }));
        let client = reqwest::Client::new();
        let resp = client
            .get(format!("http://{addr}/ping"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.text().await.unwrap(), "pong");
        stop_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(15), server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn tls_from_pem_files_and_slow_handshakes_do_not_block_accepting() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let authority =
            chat_certs::Authority::load_or_create(&certs, &chat_certs::CertsConfig::default())
                .unwrap();
        let tls = load_tls_config(
            &certs.join(chat_certs::SERVER_CERT_FILE),
            &certs.join(chat_certs::SERVER_KEY_FILE),
        )
        .unwrap();
        assert_eq!(
            tls.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(load_tls_config(&certs.join("missing.pem"), &certs.join("missing.key")).is_err());

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, app(), Some(tls), async move {
            let _ = stop_rx.await;
        }));
        // A client that connects and never starts the handshake.
        let _idle = TcpStream::connect(addr).await.unwrap();

        let ca = reqwest::Certificate::from_pem(authority.ca_pem().as_bytes()).unwrap();
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(ca)
            .build()
            .unwrap();
        let resp = tokio::time::timeout(
            Duration::from_secs(5),
            client
                .get(format!("https://localhost:{}/ping", addr.port()))
                .send(),
        )
        .await
        .expect("served while another handshake is pending")
        .unwrap();
        assert_eq!(resp.text().await.unwrap(), "pong");
        // The pending handshake does not hold up the shutdown.
        stop_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(3), server)
            .await
            .expect("stops without waiting for the pending handshake")
            .unwrap()
            .unwrap();
    }
}

//! Raw sockets for clients that rumqttc cannot play: a bare TLS handshake, a hand-written
//! CONNECT, silent TCP connections, garbage bytes.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::WAIT;

/// Opens a TCP connection to `addr` and runs the TLS handshake (server name `localhost`) with
/// `tls`, within [`WAIT`]. With TLS 1.3 the client finishes before the server has checked the
/// client certificate: a rejected certificate shows on the first read, not here.
pub async fn tls_handshake(
    addr: SocketAddr,
    tls: Arc<ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    let connect = async {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
        TlsConnector::from(tls).connect(name, tcp).await
    };
    tokio::time::timeout(WAIT, connect)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

/// Handshake, then an MQTT 3.1.1 CONNECT for `client_id`, then the first bytes the server
/// answers: `Ok(bytes)` (a CONNACK is `[0x20, 0x02, flags, code]`) or the error of the
/// handshake or of that first read (EOF is an `UnexpectedEof` error).
pub async fn tls_mqtt_connect(
    addr: SocketAddr,
    tls: Arc<ClientConfig>,
    client_id: &str,
) -> io::Result<(TlsStream<TcpStream>, Vec<u8>)> {
    let mut stream = tls_handshake(addr, tls).await?;
    stream
        .write_all(&mqtt_connect_packet(client_id, 30, None))
        .await?;
    stream.flush().await?;
    let bytes = read_some(&mut stream, WAIT).await?;
    Ok((stream, bytes))
}

/// Reads once (up to 4 KiB) within `wait`. EOF is an `UnexpectedEof` error, the timeout a
/// `TimedOut` error.
pub async fn read_some<R: AsyncRead + Unpin>(
    reader: &mut R,
    wait: Duration,
) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(wait, reader.read(&mut buf))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer in time"))??;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed by the server",
        ));
    }
    buf.truncate(n);
    Ok(buf)
}

/// An MQTT 3.1.1 CONNECT packet: clean session, `keep_alive` seconds, optional
/// `(username, password)`.
pub fn mqtt_connect_packet(
    client_id: &str,
    keep_alive: u16,
    login: Option<(&str, &str)>,
) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(&u16::try_from(s.len()).unwrap().to_be_bytes());
        out.extend_from_slice(s);
    }
    let mut body = Vec::new();
    string(&mut body, b"MQTT");
    body.push(4); // protocol level 3.1.1
    let mut flags = 0x02; // clean session
    if login.is_some() {
        flags |= 0xC0; // username and password
    }
    body.push(flags);
    body.extend_from_slice(&keep_alive.to_be_bytes());
    string(&mut body, client_id.as_bytes());
    if let Some((user, password)) = login {
        string(&mut body, user.as_bytes());
        string(&mut body, password.as_bytes());
    }
    framed(0x10, &body)
}

/// An MQTT QoS 0 PUBLISH of `payload` to `topic`, with no check of the topic: for sending what
/// a well-behaved client library refuses to send (wildcards in a topic name).
pub fn mqtt_publish_packet(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&u16::try_from(topic.len()).unwrap().to_be_bytes());
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(payload);
    framed(0x30, &body)
}

/// Any MQTT packet: the fixed header (`first` byte and the variable-length remaining length),
/// then `body`, with no check of either: for writing malformed packets by hand.
pub fn mqtt_frame(first: u8, body: &[u8]) -> Vec<u8> {
    framed(first, body)
}

/// A string (or any bytes) as MQTT writes it: a 16-bit big-endian length, then the bytes.
pub fn mqtt_str(s: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(s.len())
        .expect("an MQTT string is at most 65,535 bytes")
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(s);
    out
}

/// An MQTT 5 CONNECT packet: clean start, `keep_alive` seconds, no properties, no login.
pub fn mqtt5_connect_packet(client_id: &str, keep_alive: u16) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&[0, 4]);
    body.extend_from_slice(b"MQTT");
    body.push(5); // protocol level 5
    body.push(0x02); // clean start
    body.extend_from_slice(&keep_alive.to_be_bytes());
    body.push(0); // no properties
    body.extend_from_slice(&u16::try_from(client_id.len()).unwrap().to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    framed(0x10, &body)
}

/// The fixed header (`first` byte and the variable-length remaining length), then `body`.
fn framed(first: u8, body: &[u8]) -> Vec<u8> {
    let mut packet = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        packet.push(byte);
        if len == 0 {
            break;
        }
    }
    packet.extend_from_slice(body);
    packet
}

/// A TCP connection to `addr` that the test keeps open and never writes to.
pub async fn silent_tcp(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("TCP connect timed out")
        .expect("TCP connect failed")
}

/// Reads and discards until the peer closes (EOF or a reset) or `wait` passes. True if the
/// connection was closed by the peer.
pub async fn wait_closed<R: AsyncRead + Unpin>(reader: &mut R, wait: Duration) -> bool {
    let mut buf = vec![0u8; 4096];
    let closed = async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(wait, closed).await.is_ok()
}

/// A loopback port that was free a moment ago, for a server that must come back on the same
/// port after a restart (everything else binds port 0).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("finding a free loopback port")
}

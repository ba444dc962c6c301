//! MQTT framing over any byte stream, with rumqttd's v4 (3.1.1) and v5 codecs.
//!
//! The version is taken from the CONNECT packet's protocol level; every later packet on that
//! connection uses the same codec. Packets rumqttd hands us carry properties that only v5 can
//! encode, so for v4 they are stripped before encoding instead of reaching the codec's
//! `unreachable!` arms.

use bytes::BytesMut;
use rumqttd::protocol::{self, v4::V4, v5::V5, Packet, Protocol};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The MQTT protocol version of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V4,
    /// MQTT 5 (protocol level 5).
    V5,
}

/// Why framing stopped.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed by peer")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed packet: {0}")]
    Protocol(#[from] protocol::Error),
    #[error("unsupported MQTT protocol level {0} (3.1.1 and 5 are supported)")]
    UnsupportedLevel(u8),
    #[error("first packet is not CONNECT")]
    NotConnect,
}

/// Reads and writes whole MQTT packets; owns the read buffer.
pub struct Codec {
    version: Version,
    max_packet_size: usize,
    read_buf: BytesMut,
}

impl Codec {
    /// A codec that does not know the version yet; call [`Codec::read_connect`] first.
    pub fn new(max_packet_size: usize) -> Codec {
        Codec {
            version: Version::V4,
            max_packet_size,
            read_buf: BytesMut::with_capacity(4096),
        }
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// Reads the first packet, which must be CONNECT, and fixes the protocol version.
    pub async fn read_connect<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
    ) -> Result<Packet, FrameError> {
        loop {
            if let Some(level) = connect_level(&self.read_buf)? {
                self.version = match level {
                    4 => Version::V4,
                    5 => Version::V5,
                    other => return Err(FrameError::UnsupportedLevel(other)),
                };
                let packet = self.read_packet(reader).await?;
                return match packet {
                    Packet::Connect(..) => Ok(packet),
                    _ => Err(FrameError::NotConnect),
                };
            }
            self.fill(reader).await?;
        }
    }

    /// Decodes the next packet from the buffer if a whole one is there.
    pub fn decode(&mut self) -> Result<Option<Packet>, FrameError> {
        if self.read_buf.is_empty() {
            return Ok(None);
        }
        let result = match self.version {
            Version::V4 => V4.read_mut(&mut self.read_buf, self.max_packet_size),
            Version::V5 => V5.read_mut(&mut self.read_buf, self.max_packet_size),
        };
        match result {
            Ok(packet) => Ok(Some(packet)),
            Err(protocol::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads more bytes from the stream into the buffer.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> Result<(), FrameError> {
        self.read_buf.reserve(4096);
        let n = reader.read_buf(&mut self.read_buf).await?;
        if n == 0 {
            return Err(FrameError::Closed);
        }
        Ok(())
    }

    /// Reads one whole packet, waiting for bytes as needed.
    pub async fn read_packet<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
    ) -> Result<Packet, FrameError> {
        loop {
            if let Some(packet) = self.decode()? {
                return Ok(packet);
            }
            self.fill(reader).await?;
        }
    }

    /// Appends the encoding of `packet` to `out`.
    pub fn encode(&self, packet: Packet, out: &mut BytesMut) -> Result<(), FrameError> {
        match self.version {
            Version::V4 => {
                if let Some(packet) = strip_properties(packet) {
                    V4.write(packet, out)?;
                }
            }
            Version::V5 => {
                V5.write(packet, out)?;
            }
        }
        Ok(())
    }
}

/// Writes `packets` with one syscall batch and flushes.
pub async fn write_all<W: AsyncWrite + Unpin>(
    codec: &Codec,
    writer: &mut W,
    packets: impl IntoIterator<Item = Packet>,
    scratch: &mut BytesMut,
) -> Result<(), FrameError> {
    scratch.clear();
    for packet in packets {
        codec.encode(packet, scratch)?;
    }
    if !scratch.is_empty() {
        writer.write_all(scratch).await?;
        writer.flush().await?;
    }
    Ok(())
}

/// Protocol level of a CONNECT packet at the start of `buf`, once enough bytes are there.
///
/// Layout: fixed header (1 byte type, 1-4 bytes remaining length), then the protocol name as a
/// length-prefixed string ("MQTT", or "MQIsdp" for 3.1) and the level byte.
fn connect_level(buf: &[u8]) -> Result<Option<u8>, FrameError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first >> 4 != 1 {
        return Err(FrameError::NotConnect);
    }
    // Skip the variable-length "remaining length" (at most 4 bytes).
    let mut pos = 1;
    loop {
        let Some(&b) = buf.get(pos) else {
            return Ok(None);
        };
        pos += 1;
        if b & 0x80 == 0 {
            break;
        }
        if pos > 4 {
            return Err(FrameError::Protocol(
                protocol::Error::MalformedRemainingLength,
            ));
        }
    }
    let (Some(&hi), Some(&lo)) = (buf.get(pos), buf.get(pos + 1)) else {
        return Ok(None);
    };
    let name_len = usize::from(u16::from_be_bytes([hi, lo]));
    if name_len > 6 {
        return Err(FrameError::Protocol(protocol::Error::InvalidProtocol));
    }
    Ok(buf.get(pos + 2 + name_len).copied())
}

/// v4 cannot carry properties: drop them (and drop packets v4 has no server-side form for).
fn strip_properties(packet: Packet) -> Option<Packet> {
    Some(match packet {
        Packet::ConnAck(p, _) => Packet::ConnAck(p, None),
        Packet::Publish(p, _) => Packet::Publish(p, None),
        Packet::PubAck(p, _) => Packet::PubAck(p, None),
        Packet::SubAck(p, _) => Packet::SubAck(p, None),
        Packet::PubRec(p, _) => Packet::PubRec(p, None),
        Packet::PubRel(p, _) => Packet::PubRel(p, None),
        Packet::PubComp(p, _) => Packet::PubComp(p, None),
        Packet::UnsubAck(p, _) => Packet::UnsubAck(p, None),
        // A 3.1.1 server never sends DISCONNECT: it closes the socket.
        Packet::Disconnect(..) => return None,
        Packet::PingResp(p) => Packet::PingResp(p),
        Packet::PingReq(p) => Packet::PingReq(p),
        Packet::Subscribe(p, _) => Packet::Subscribe(p, None),
        Packet::Unsubscribe(p, _) => Packet::Unsubscribe(p, None),
        Packet::Connect(c, _, will, _, login) => Packet::Connect(c, None, will, None, login),
    })
}

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
    #[error("malformed CONNECT: {0}")]
    MalformedConnect(&'static str),
    #[error("packet type {0} is sent by servers only")]
    ServerOnly(u8),
}

/// Free room the read buffer has before each read. Small, because every idle connection keeps
/// it (the buffer grows for larger packets and bursts): with 4 KiB it was an eighth of the
/// memory of an idle TLS device (docs/BENCHMARKS-HISTORY.md).
const READ_CHUNK: usize = 1024;

/// Reads and writes whole MQTT packets; owns the read buffer.
pub struct Codec {
    version: Version,
    max_packet_size: usize,
    read_buf: BytesMut,
    /// First byte of the packet decoded last.
    last_header: u8,
}

impl Codec {
    /// A codec that does not know the version yet; call [`Codec::read_connect`] first.
    pub fn new(max_packet_size: usize) -> Codec {
        Codec {
            version: Version::V4,
            max_packet_size,
            last_header: 0,
            read_buf: BytesMut::with_capacity(READ_CHUNK),
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
            if let Some(packet) = self.decode_connect()? {
                return Ok(packet);
            }
            self.fill(reader).await?;
        }
    }

    /// Decodes the CONNECT at the start of the buffer if a whole one is there, and fixes the
    /// protocol version from it. [`Codec::read_connect`] without the stream: with
    /// [`Codec::feed`], for driving the codec synchronously (tests, fuzzing).
    pub fn decode_connect(&mut self) -> Result<Option<Packet>, FrameError> {
        let Some(level) = connect_level(&self.read_buf, self.max_packet_size)? else {
            return Ok(None);
        };
        self.version = match level {
            4 => Version::V4,
            5 => Version::V5,
            other => return Err(FrameError::UnsupportedLevel(other)),
        };
        match self.decode()? {
            None => Ok(None),
            Some(packet @ Packet::Connect(..)) => Ok(Some(packet)),
            Some(_) => Err(FrameError::NotConnect),
        }
    }

    /// Appends bytes to the read buffer, as [`Codec::fill`] does from a stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.read_buf.extend_from_slice(bytes);
    }

    /// Decodes the next packet from the buffer if a whole one is there.
    ///
    /// Packets only a server sends (CONNACK, SUBACK, UNSUBACK, PINGRESP) are refused on their
    /// first byte: a client sending one breaks the protocol, and rumqttd 0.20's v5 decoder has
    /// no arm for CONNACK and UNSUBACK with a body (it reaches `unreachable!()`, a panic that
    /// would end the connection task without releasing its connection slot).
    pub fn decode(&mut self) -> Result<Option<Packet>, FrameError> {
        let Some(first) = self.read_buf.first() else {
            return Ok(None);
        };
        let packet_type = first >> 4;
        if matches!(packet_type, 2 | 9 | 11 | 13) {
            return Err(FrameError::ServerOnly(packet_type));
        }
        self.last_header = *first;
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

    /// The QoS bits of the fixed header of the packet [`Codec::decode`] returned last (for a
    /// PUBLISH: 0, 1 or 2; rumqttd keeps its own field private).
    pub fn last_qos(&self) -> u8 {
        (self.last_header >> 1) & 0b11
    }

    /// Reads more bytes from the stream into the buffer.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> Result<(), FrameError> {
        self.read_buf.reserve(READ_CHUNK);
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

/// Writes `packets` with one syscall batch and flushes. The packets are encoded into `scratch`
/// at the call, before the returned future runs, so that future holds no packet: it is part of
/// every connection task's state, and a `Packet` is ~400 bytes.
pub fn write_all<'a, W: AsyncWrite + Unpin>(
    codec: &Codec,
    writer: &'a mut W,
    packets: impl IntoIterator<Item = Packet>,
    scratch: &'a mut BytesMut,
) -> impl std::future::Future<Output = Result<(), FrameError>> + 'a {
    scratch.clear();
    let encoded = packets
        .into_iter()
        .try_for_each(|packet| codec.encode(packet, scratch));
    async move {
        encoded?;
        if !scratch.is_empty() {
            writer.write_all(scratch).await?;
            writer.flush().await?;
        }
        Ok(())
    }
}

/// Protocol level of a CONNECT packet at the start of `buf`, once enough bytes are there.
///
/// Layout: fixed header (1 byte type, 1-4 bytes remaining length), then the protocol name as a
/// length-prefixed string ("MQTT", or "MQIsdp" for 3.1), the level byte and the connect flags.
/// Refuses as soon as the bytes show it: a remaining length over `max_packet_size` (without
/// waiting for the rest of the packet) and the reserved connect flag (MQTT-3.1.2-3), which
/// rumqttd's codec does not check.
fn connect_level(buf: &[u8], max_packet_size: usize) -> Result<Option<u8>, FrameError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first >> 4 != 1 {
        return Err(FrameError::NotConnect);
    }
    // The variable-length "remaining length": at most 4 bytes, 7 bits each.
    let mut pos = 1;
    let mut remaining = 0usize;
    loop {
        let Some(&b) = buf.get(pos) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7f) << (7 * (pos - 1));
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
    if remaining > max_packet_size {
        return Err(FrameError::Protocol(
            protocol::Error::PayloadSizeLimitExceeded(remaining),
        ));
    }
    let (Some(&hi), Some(&lo)) = (buf.get(pos), buf.get(pos + 1)) else {
        return Ok(None);
    };
    let name_len = usize::from(u16::from_be_bytes([hi, lo]));
    if name_len > 6 {
        return Err(FrameError::Protocol(protocol::Error::InvalidProtocol));
    }
    let level_at = pos + 2 + name_len;
    let (Some(&level), Some(&flags)) = (buf.get(level_at), buf.get(level_at + 1)) else {
        return Ok(None);
    };
    if flags & 0x01 != 0 {
        return Err(FrameError::MalformedConnect("reserved flag set"));
    }
    Ok(Some(level))
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

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttd::protocol::{
        Connect, Filter, Login, PubAck, PubAckReason, QoS, RetainForwardRule, SubAck,
        SubAckProperties, Subscribe, SubscribeReasonCode,
    };
    use tokio::io::{duplex, AsyncWriteExt};

    fn connect_packet(client_id: &str) -> Packet {
        let connect = Connect {
            keep_alive: 30,
            client_id: client_id.to_owned(),
            clean_session: true,
        };
        let login = Login {
            username: "alice".into(),
            password: "token".into(),
        };
        Packet::Connect(connect, None, None, None, Some(login))
    }

    fn bytes_of(version: Version, packets: Vec<Packet>) -> Vec<u8> {
        let mut out = BytesMut::new();
        for p in packets {
            match version {
                Version::V4 => V4.write(p, &mut out),
                Version::V5 => V5.write(p, &mut out),
            }
            .unwrap();
        }
        out.to_vec()
    }

    fn subscribe(pkid: u16, path: &str) -> Packet {
        let filter = Filter {
            path: path.into(),
            qos: QoS::AtLeastOnce,
            nolocal: false,
            preserve_retain: false,
            retain_forward_rule: RetainForwardRule::OnEverySubscribe,
        };
        Packet::Subscribe(
            Subscribe {
                pkid,
                filters: vec![filter],
            },
            None,
        )
    }

    #[tokio::test]
    async fn reads_v4_connect_then_packets_split_across_writes() {
        let (mut client, mut server) = duplex(64);
        let bytes = bytes_of(
            Version::V4,
            vec![connect_packet("phone"), subscribe(7, "/tenants/alice/in")],
        );
        // Feed the bytes in 3-byte pieces: framing must reassemble them.
        let writer = tokio::spawn(async move {
            for chunk in bytes.chunks(3) {
                client.write_all(chunk).await.unwrap();
            }
            client
        });
        let mut codec = Codec::new(1024);
        let first = codec.read_connect(&mut server).await.unwrap();
        assert_eq!(codec.version(), Version::V4);
        match first {
            Packet::Connect(c, _, _, _, Some(login)) => {
                assert_eq!(c.client_id, "phone");
                assert_eq!(login.username, "alice");
            }
            other => panic!("expected CONNECT, got {other:?}"),
        }
        match codec.read_packet(&mut server).await.unwrap() {
            Packet::Subscribe(s, _) => {
                assert_eq!(s.pkid, 7);
                assert_eq!(s.filters[0].path, "/tenants/alice/in");
            }
            other => panic!("expected SUBSCRIBE, got {other:?}"),
        }
        drop(writer.await.unwrap());
        assert!(matches!(
            codec.read_packet(&mut server).await,
            Err(FrameError::Closed)
        ));
    }

    #[tokio::test]
    async fn detects_v5_from_the_protocol_level() {
        let (mut client, mut server) = duplex(1024);
        let bytes = bytes_of(Version::V5, vec![connect_packet("tablet")]);
        client.write_all(&bytes).await.unwrap();
        let mut codec = Codec::new(1024);
        codec.read_connect(&mut server).await.unwrap();
        assert_eq!(codec.version(), Version::V5);
    }

    #[tokio::test]
    async fn refuses_mqtt_3_1_and_non_connect_first_packets() {
        // MQTT 3.1: protocol name "MQIsdp", level 3.
        let mut v31 = vec![0x10, 12, 0, 6];
        v31.extend_from_slice(b"MQIsdp");
        v31.extend_from_slice(&[3, 2]);
        let (mut client, mut server) = duplex(1024);
        client.write_all(&v31).await.unwrap();
        let err = Codec::new(1024)
            .read_connect(&mut server)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::UnsupportedLevel(3)), "{err:?}");

        let (mut client, mut server) = duplex(1024);
        client
            .write_all(&bytes_of(Version::V4, vec![subscribe(1, "/x/y")]))
            .await
            .unwrap();
        let err = Codec::new(1024)
            .read_connect(&mut server)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::NotConnect), "{err:?}");
    }

    #[tokio::test]
    async fn oversized_packets_are_refused_before_they_are_read() {
        let (mut client, mut server) = duplex(1024);
        let mut codec = Codec::new(1024);
        client
            .write_all(&bytes_of(Version::V4, vec![connect_packet("phone")]))
            .await
            .unwrap();
        codec.read_connect(&mut server).await.unwrap();
        // A PUBLISH header announcing 1 MiB: rejected on the header alone.
        client.write_all(&[0x32, 0x80, 0x80, 0x40]).await.unwrap();
        let err = codec.read_packet(&mut server).await.unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::Protocol(protocol::Error::PayloadSizeLimitExceeded(_))
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn oversized_connect_is_refused_on_its_header() {
        // A CONNECT announcing 2 MiB, and nothing else yet: refused without waiting for more.
        let (mut client, mut server) = duplex(1024);
        client
            .write_all(&[0x10, 0x80, 0x80, 0x80, 0x01])
            .await
            .unwrap();
        let err = Codec::new(1024)
            .read_connect(&mut server)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::Protocol(protocol::Error::PayloadSizeLimitExceeded(2_097_152))
            ),
            "{err:?}"
        );
        drop(client);
    }

    #[tokio::test]
    async fn connect_with_the_reserved_flag_is_refused() {
        let mut bytes = bytes_of(Version::V4, vec![connect_packet("phone")]);
        // Fixed header 2 bytes, name 6 bytes, level 1 byte: the flags are at index 9.
        assert_eq!(&bytes[2..9], b"\x00\x04MQTT\x04");
        bytes[9] |= 0x01;
        let (mut client, mut server) = duplex(1024);
        client.write_all(&bytes).await.unwrap();
        let err = Codec::new(1024)
            .read_connect(&mut server)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::MalformedConnect(_)), "{err:?}");
    }

    #[tokio::test]
    async fn server_only_packets_are_refused_in_both_versions() {
        // CONNACK and UNSUBACK with a body made rumqttd's v5 decoder panic.
        for v5 in [false, true] {
            for packet in [
                vec![0x20, 1, 0],
                vec![0xb0, 4, 0, 1, 0, 0],
                vec![0x90, 3, 0, 1, 0],
                vec![0xd0, 0],
            ] {
                let mut bytes = connect_prefix(v5);
                bytes.extend_from_slice(&packet);
                let (mut client, mut server) = duplex(1024);
                client.write_all(&bytes).await.unwrap();
                let mut codec = Codec::new(1024);
                codec.read_connect(&mut server).await.unwrap();
                let err = codec.read_packet(&mut server).await.unwrap_err();
                assert!(
                    matches!(err, FrameError::ServerOnly(_)),
                    "{packet:02x?}: {err:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn garbage_is_an_error_not_a_panic() {
        for garbage in [
            vec![0xff; 16],
            vec![0x10, 0xff, 0xff, 0xff, 0xff, 0xff],
            vec![0x10, 4, 0, 200, 1, 2],
            vec![0x00, 0x00],
        ] {
            let (mut client, mut server) = duplex(1024);
            client.write_all(&garbage).await.unwrap();
            drop(client);
            let result = Codec::new(1024).read_connect(&mut server).await;
            assert!(result.is_err(), "accepted {garbage:?}");
        }
    }

    #[tokio::test]
    async fn v4_encoding_drops_properties_and_server_disconnect() {
        let (client, mut server) = duplex(4096);
        let mut codec = Codec::new(1024);
        let mut connect = BytesMut::from(&bytes_of(Version::V4, vec![connect_packet("p")])[..]);
        let mut reader = client;
        reader.write_all(&connect.split()).await.unwrap();
        codec.read_connect(&mut server).await.unwrap();

        let suback = Packet::SubAck(
            SubAck {
                pkid: 3,
                return_codes: vec![SubscribeReasonCode::QoS1, SubscribeReasonCode::Failure],
            },
            Some(SubAckProperties {
                reason_string: Some("no".into()),
                user_properties: vec![],
            }),
        );
        let puback = Packet::PubAck(
            PubAck {
                pkid: 9,
                reason: PubAckReason::Success,
            },
            None,
        );
        let disconnect = Packet::Disconnect(
            rumqttd::protocol::Disconnect {
                reason_code: rumqttd::protocol::DisconnectReasonCode::ServerShuttingDown,
            },
            None,
        );
        let mut scratch = BytesMut::new();
        write_all(
            &codec,
            &mut server,
            [suback, disconnect, puback],
            &mut scratch,
        )
        .await
        .unwrap();
        // SUBACK 3 [1, 0x80] then PUBACK 9; the v4 DISCONNECT is not sent at all.
        assert_eq!(&scratch[..], &[0x90, 4, 0, 3, 1, 0x80, 0x40, 2, 0, 9]);
    }

    /// Feeds `bytes` to a fresh codec the way a connection does: CONNECT first, then packets
    /// until an error or the end. Returns how many packets were decoded.
    fn run_codec(bytes: &[u8]) -> usize {
        let mut codec = Codec::new(4096);
        codec.feed(bytes);
        if !matches!(codec.decode_connect(), Ok(Some(_))) {
            return 0;
        }
        let mut n = 1;
        while let Ok(Some(_)) = codec.decode() {
            n += 1;
        }
        n
    }

    /// A valid CONNECT of either version, so that the fuzzed bytes reach the packet decoders.
    fn connect_prefix(v5: bool) -> Vec<u8> {
        let version = if v5 { Version::V5 } else { Version::V4 };
        bytes_of(version, vec![connect_packet("phone")])
    }

    proptest::proptest! {
        // rumqttd's codecs (with overflow checks, as tests build them) on arbitrary input:
        // every outcome is a packet or an error, never a panic that would kill the connection
        // task (and leak its connection slot).
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            run_codec(&bytes);
        }

        #[test]
        fn arbitrary_packets_after_a_connect_never_panic(
            v5 in proptest::prelude::any::<bool>(),
            first in proptest::prelude::any::<u8>(),
            len in 0u8..128,
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            // One fixed header (any type and flags) with a plausible length, then anything.
            let mut bytes = connect_prefix(v5);
            bytes.extend_from_slice(&[first, len]);
            bytes.extend_from_slice(&body);
            run_codec(&bytes);
        }
    }
}

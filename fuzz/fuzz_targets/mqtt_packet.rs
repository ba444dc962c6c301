//! Fuzz target `mqtt_packet`: arbitrary bytes from a client through the front end's MQTT
//! decoder (`chat_broker::codec::Codec`: its CONNECT checks, then rumqttd's v4/v5 codecs), as
//! a connection reads them. A panic here would end a connection task without releasing its
//! connection slot (rumqttd 0.20's v5 decoder did panic on a client's CONNACK).
//!
//! The first byte picks the start: 0 the bytes as they are (CONNECT first), 1 and 2 a valid
//! MQTT 3.1.1 or 5 CONNECT before them, so the packet decoders are reached at once.

#![no_main]

use chat_broker::codec::Codec;
use libfuzzer_sys::fuzz_target;

/// A 3.1.1 CONNECT for client id `d` (clean session, keep-alive 30 s).
const CONNECT_V4: &[u8] = b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x1e\x00\x01d";
/// A 5 CONNECT for client id `d` (clean start, keep-alive 30 s, no properties).
const CONNECT_V5: &[u8] = b"\x10\x0e\x00\x04MQTT\x05\x02\x00\x1e\x00\x00\x01d";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut codec = Codec::new(64 * 1024);
    match mode % 3 {
        1 => codec.feed(CONNECT_V4),
        2 => codec.feed(CONNECT_V5),
        _ => {}
    }
    codec.feed(rest);
    if !matches!(codec.decode_connect(), Ok(Some(_))) {
        return;
    }
    while let Ok(Some(_)) = codec.decode() {}
});

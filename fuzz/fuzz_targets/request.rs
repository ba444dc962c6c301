//! Fuzz target `request`: arbitrary bytes as a payload on `/tenants/{u}/out` (and on
//! `/tenants/{u}/status`) through the same parser and validator the bridge uses.
//!
//! Beyond "never panics", it checks what the property tests in `proto/src/tests/validator.rs`
//! check: a refusal is `bad_request` or `too_large` with a message and well-formed echo
//! fields, and an accepted request is canonical (written back with `Envelope::to_json`, it
//! parses to the same envelope).

#![no_main]

use chat_proto::{
    parse_request, parse_status, valid_id, ErrorCode, MAX_PAYLOAD_LEN, MAX_REQ_LEN, MAX_SEND_ID_LEN,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_request(data) {
        Ok(envelope) => {
            let again = parse_request(&envelope.to_json());
            assert_eq!(
                again.as_ref().ok(),
                Some(&envelope),
                "not canonical: {again:?}"
            );
            if let Some(device) = &envelope.device {
                assert!(valid_id(device), "accepted device {device:?}");
            }
        }
        Err(e) => {
            assert!(
                matches!(e.code, ErrorCode::BadRequest | ErrorCode::TooLarge),
                "parser gave {:?}: {}",
                e.code,
                e.message
            );
            if e.code == ErrorCode::TooLarge {
                assert!(
                    data.len() > MAX_PAYLOAD_LEN || e.message.starts_with("body: "),
                    "too_large: {}",
                    e.message
                );
            }
            assert!(!e.message.is_empty());
            assert!(e
                .req
                .as_ref()
                .is_none_or(|r| r.chars().count() <= MAX_REQ_LEN));
            assert!(e
                .id
                .as_ref()
                .is_none_or(|id| !id.is_empty() && id.chars().count() <= MAX_SEND_ID_LEN));
            assert!(e.device.as_ref().is_none_or(|d| valid_id(d)));
        }
    }
    if let Ok(status) = parse_status(data) {
        assert!(valid_id(status.device()));
        assert_eq!(parse_status(&status.to_json()).ok(), Some(status));
    }
});

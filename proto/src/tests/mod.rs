//! Unit and property tests of the wire types.

mod envelope;
mod event;
mod ids;
mod props;
mod request;
mod send;
mod validator;

use crate::{parse_request, Envelope, ErrorCode, Request, RequestError};

/// Parses `json`, expecting success.
fn ok(json: &str) -> Envelope {
    match parse_request(json.as_bytes()) {
        Ok(envelope) => envelope,
        Err(e) => panic!("{json} was refused: {e}"),
    }
}

/// Parses `json` and returns only the request, expecting success.
fn ok_request(json: &str) -> Request {
    ok(json).request
}

/// Parses `json`, expecting a refusal.
fn err(json: &str) -> RequestError {
    match parse_request(json.as_bytes()) {
        Ok(envelope) => panic!("{json} was accepted: {envelope:?}"),
        Err(e) => e,
    }
}

/// Parses `json`, expecting a `bad_request` with exactly `message`.
fn bad(json: &str, message: &str) {
    let e = err(json);
    assert_eq!(
        (e.code, e.message.as_str()),
        (ErrorCode::BadRequest, message),
        "for {json}"
    );
}

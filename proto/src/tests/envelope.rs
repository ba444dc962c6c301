//! The envelope: payload checks, `req`, `device`, `type`, the error echo, the status topic,
//! and requests written back with `Envelope::to_json`.

use super::{bad, err, ok, ok_request};
use crate::{parse_request, parse_status, ErrorCode, Request, Status, MAX_PAYLOAD_LEN};

#[test]
fn not_json() {
    let e = parse_request(b"hello").unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(e.message.starts_with("not valid JSON: "), "{}", e.message);
    assert!(parse_request(b"").is_err());
    assert!(parse_request(b"{\"type\":\"sync\"").is_err());
    let e = parse_request(b"{\"type\":\"\xff\"}").unwrap_err();
    assert!(e.message.starts_with("not valid JSON"), "{}", e.message);
}

#[test]
fn not_an_object() {
    for json in [
        "[]",
        r#"[{"type":"sync"}]"#,
        "1",
        r#""send""#,
        "null",
        "true",
    ] {
        let e = err(json);
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::BadRequest, "not a JSON object")
        );
        assert_eq!((e.req, e.id, e.device), (None, None, None));
    }
}

#[test]
fn payload_size_guard() {
    let big = vec![b' '; MAX_PAYLOAD_LEN + 1];
    let e = parse_request(&big).unwrap_err();
    assert_eq!(e.code, ErrorCode::TooLarge);
    assert_eq!(e.message, "payload: larger than 262144 bytes");
    // Exactly at the limit is parsed (and refused for what it is).
    let mut padded = br#"{"type":"block","user":"amy"}"#.to_vec();
    padded.resize(MAX_PAYLOAD_LEN, b' ');
    assert!(parse_request(&padded).is_ok());
}

#[test]
fn deep_nesting_is_refused_not_a_crash() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(err(&deep).code, ErrorCode::BadRequest);
    let deep = format!(
        r#"{{"type":"block","x":{}{}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    assert_eq!(err(&deep).code, ErrorCode::BadRequest);
}

#[test]
fn type_rules() {
    bad("{}", "type: missing");
    bad(r#"{"type":null}"#, "type: missing");
    bad(r#"{"type":5}"#, "type: expected a string");
    bad(r#"{"type":"sned"}"#, r#"unknown type "sned""#);
    bad(r#"{"type":""}"#, r#"unknown type """#);
    bad(r#"{"type":"SEND"}"#, r#"unknown type "SEND""#);
    bad(r#"{"type":"msg"}"#, r#"unknown type "msg""#);
    bad(
        r#"{"type":"online","device":"d1"}"#,
        r#"unknown type "online""#,
    );
    // Long or odd types are quoted short and escaped.
    let long = format!(r#"{{"type":"{}"}}"#, "x".repeat(1000));
    assert_eq!(
        err(&long).message,
        format!("unknown type \"{}\"...", "x".repeat(40))
    );
    bad(r#"{"type":"a\"b\n"}"#, r#"unknown type "a\"b\n""#);
}

#[test]
fn req_rules() {
    let e = ok(r#"{"type":"block","user":"amy","req":"r1"}"#);
    assert_eq!(e.req.as_deref(), Some("r1"));
    assert_eq!(ok(r#"{"type":"block","user":"amy"}"#).req, None);
    assert_eq!(ok(r#"{"type":"block","user":"amy","req":null}"#).req, None);
    let max = "é".repeat(64);
    let json = format!(r#"{{"type":"block","user":"amy","req":"{max}"}}"#);
    assert_eq!(ok(&json).req, Some(max.clone()));
    let json = format!(r#"{{"type":"block","user":"amy","req":"{max}x"}}"#);
    bad(&json, "req: longer than 64 characters");
    bad(
        r#"{"type":"block","user":"amy","req":7}"#,
        "req: expected a string",
    );
}

#[test]
fn device_rules() {
    let e = ok(r#"{"type":"block","user":"amy","device":"phone1"}"#);
    assert_eq!(e.device.as_deref(), Some("phone1"));
    bad(
        r#"{"type":"block","user":"amy","device":"Phone"}"#,
        "device: not a valid device id",
    );
    bad(
        r#"{"type":"block","user":"amy","device":1}"#,
        "device: expected a string",
    );
}

#[test]
fn unknown_fields_are_ignored() {
    let r = ok_request(r#"{"type":"block","user":"amy","extra":{"a":[1,2]},"v":2}"#);
    assert_eq!(r, Request::Block { user: "amy".into() });
}

#[test]
fn errors_echo_req_id_and_device() {
    let e = err(r#"{"type":"sned","req":"r9","id":"m1","device":"tab"}"#);
    assert_eq!(e.message, r#"unknown type "sned""#);
    assert_eq!(e.req.as_deref(), Some("r9"));
    assert_eq!(e.id.as_deref(), Some("m1"));
    assert_eq!(e.device.as_deref(), Some("tab"));
    // Missing type still echoes.
    let e = err(r#"{"req":"r9","device":"tab"}"#);
    assert_eq!(
        (e.req.as_deref(), e.device.as_deref()),
        (Some("r9"), Some("tab"))
    );
    // Echo fields of the wrong form are left out; the first error is about them.
    let e = err(r#"{"type":"sync","req":5,"id":"","device":"Tab"}"#);
    assert_eq!(e.message, "req: expected a string");
    assert_eq!((e.req, e.id, e.device), (None, None, None));
    // A bad device does not stop req from being echoed.
    let e = err(r#"{"type":"sync","req":"r1","device":"Tab"}"#);
    assert_eq!(e.message, "device: not a valid device id");
    assert_eq!((e.req.as_deref(), e.device), (Some("r1"), None));
}

#[test]
fn error_event_from_request_error() {
    let e = err(r#"{"type":"sned","req":"r9","device":"tab"}"#);
    let json: serde_json::Value = serde_json::from_slice(&e.to_event().to_json()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"type":"error","req":"r9","code":"bad_request","message":"unknown type \"sned\""})
    );
    assert_eq!(e.to_string(), r#"bad_request: unknown type "sned""#);
}

#[test]
fn request_names() {
    assert_eq!(
        ok_request(r#"{"type":"push_unregister","device":"d1"}"#).name(),
        "push_unregister"
    );
    assert_eq!(
        ok_request(r#"{"type":"group_leave","group":"g"}"#).name(),
        "group_leave"
    );
}

#[test]
fn requests_round_trip_through_to_json() {
    for json in [
        r#"{"type":"send","req":"r1","device":"d1","id":"m1","to":"amy","body":"hi","reply_to":"12"}"#,
        r#"{"type":"send","id":"m1","group":"g1","media":{"media_id":"00000000000000000000000000000000000000000000000000000000000000ff","mime":"image/png","size":3}}"#,
        r#"{"type":"receipt","conv":"d.amy.bob","status":"read","seq":7}"#,
        r#"{"type":"sync","device":"d1","after":3,"limit":7}"#,
        r#"{"type":"history","device":"d1","conv":"g.t","before":9}"#,
        r#"{"type":"group_create","name":"T","members":["amy"]}"#,
        r#"{"type":"group_add","group":"g","members":["amy"]}"#,
        r#"{"type":"group_remove","group":"g","members":["amy"]}"#,
        r#"{"type":"group_leave","group":"g"}"#,
        r#"{"type":"group_info","group":"g","device":"d1"}"#,
        r#"{"type":"presence_sub","device":"d1","users":["amy"]}"#,
        r#"{"type":"typing","group":"g","state":"start"}"#,
        r#"{"type":"block","user":"amy"}"#,
        r#"{"type":"unblock","user":"amy"}"#,
        r#"{"type":"push_register","device":"d1","platform":"apns","token":"abc"}"#,
        r#"{"type":"push_unregister","device":"d1"}"#,
        r#"{"type":"privacy","id":"p1","last_seen":"nobody","groups":"contacts"}"#,
        r#"{"type":"privacy","id":"p2"}"#,
        r#"{"type":"group_join","group":"g"}"#,
        r#"{"type":"group_decline","group":"g"}"#,
    ] {
        let envelope = ok(json);
        let again = parse_request(&envelope.to_json()).unwrap();
        assert_eq!(again, envelope, "{json}");
    }
    let json = String::from_utf8(
        ok(r#"{"type":"send","id":"m","to":"amy","body":"x","reply_to":"5"}"#).to_json(),
    )
    .unwrap();
    assert!(
        json.contains(r#""type":"send""#)
            && json.contains(r#""to":"amy""#)
            && json.contains(r#""reply_to":"5""#),
        "{json}"
    );
}

#[test]
fn status_topic() {
    assert_eq!(
        parse_status(br#"{"type":"online","device":"d1"}"#).unwrap(),
        Status::Online {
            device: "d1".into()
        }
    );
    let offline = parse_status(br#"{"type":"offline","device":"d1","x":1}"#).unwrap();
    assert_eq!(
        offline,
        Status::Offline {
            device: "d1".into()
        }
    );
    assert_eq!(offline.device(), "d1");
    assert_eq!(parse_status(&offline.to_json()).unwrap(), offline);
    let e = parse_status(br#"{"type":"away","device":"d1"}"#).unwrap_err();
    assert_eq!(
        (e.message.as_str(), e.device.as_deref()),
        (r#"unknown type "away""#, Some("d1"))
    );
    let e = parse_status(br#"{"type":"online"}"#).unwrap_err();
    assert_eq!(e.message, "device: missing");
    let e = parse_status(br#"{"type":"online","device":"D"}"#).unwrap_err();
    assert_eq!(e.message, "device: not a valid device id");
    assert_eq!(
        parse_status(b"[]").unwrap_err().message,
        "not a JSON object"
    );
    assert_eq!(parse_status(b"{}").unwrap_err().message, "type: missing");
}

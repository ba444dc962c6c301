//! `send`: target, body, media, reply_to, id.

use super::{bad, err, ok, ok_request};
use crate::{ErrorCode, Media, Request, SendRequest, Target};

const HASH: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn send(rest: &str) -> String {
    format!(r#"{{"type":"send","id":"m1",{rest}}}"#)
}

fn body_of(len: usize) -> String {
    send(&format!(r#""to":"amy","body":"{}""#, "a".repeat(len)))
}

fn parsed(json: &str) -> SendRequest {
    match ok_request(json) {
        Request::Send(send) => send,
        other => panic!("not a send: {other:?}"),
    }
}

#[test]
fn minimal_text_message() {
    let envelope =
        ok(r#"{"type":"send","req":"r1","device":"d1","id":"m1","to":"amy","body":"hi"}"#);
    assert_eq!(envelope.req.as_deref(), Some("r1"));
    assert_eq!(envelope.device.as_deref(), Some("d1"));
    let expected = SendRequest {
        id: "m1".into(),
        target: Target::To("amy".into()),
        body: Some("hi".into()),
        media: None,
        reply_to: None,
    };
    assert_eq!(envelope.request, Request::Send(expected));
    let group = parsed(&send(r#""group":"g7","body":"hi""#));
    assert_eq!(group.target, Target::Group("g7".into()));
}

#[test]
fn target_rules() {
    bad(&send(r#""body":"hi""#), "send needs to or group");
    bad(
        &send(r#""to":null,"group":null,"body":"hi""#),
        "send needs to or group",
    );
    bad(
        &send(r#""to":"amy","group":"g1","body":"hi""#),
        "send takes to or group, not both",
    );
    bad(
        &send(r#""to":"Amy","body":"hi""#),
        "to: not a valid user id",
    );
    bad(&send(r#""to":"","body":"hi""#), "to: not a valid user id");
    bad(&send(r#""to":5,"body":"hi""#), "to: expected a string");
    bad(
        &send(r#""group":"g.g1","body":"hi""#),
        "group: not a valid group id",
    );
}

#[test]
fn body_limit_counts_utf8_bytes() {
    assert_eq!(parsed(&body_of(65_536)).body.map(|b| b.len()), Some(65_536));
    let e = err(&body_of(65_537));
    assert_eq!(e.code, ErrorCode::TooLarge);
    assert_eq!(e.message, "body: longer than 65536 bytes");
    assert_eq!(e.id.as_deref(), Some("m1"));
    // 16,384 four-byte characters are exactly 65,536 bytes; one more byte is too much.
    let emoji = "😀".repeat(16_384);
    assert!(
        ok(&send(&format!(r#""to":"amy","body":"{emoji}""#)))
            .request
            .name()
            == "send"
    );
    let e = err(&send(&format!(r#""to":"amy","body":"{emoji}a""#)));
    assert_eq!(e.code, ErrorCode::TooLarge);
    // 30,000 characters but 90,000 bytes.
    let e = err(&send(&format!(
        r#""to":"amy","body":"{}""#,
        "€".repeat(30_000)
    )));
    assert_eq!(e.code, ErrorCode::TooLarge);
}

#[test]
fn body_rules() {
    bad(&send(r#""to":"amy""#), "send needs body or media");
    bad(
        &send(r#""to":"amy","body":null"#),
        "send needs body or media",
    );
    bad(
        &send(r#""to":"amy","body":"""#),
        "body: empty; leave it out to send only media",
    );
    bad(&send(r#""to":"amy","body":42"#), "body: expected a string");
    bad(
        &send(r#""to":"amy","body":["hi"]"#),
        "body: expected a string",
    );
    // Escapes count once decoded: "\n" is one byte.
    let escaped = "\\n".repeat(65_536);
    assert!(parsed(&send(&format!(r#""to":"amy","body":"{escaped}""#)))
        .body
        .is_some());
}

#[test]
fn id_rules_and_echo() {
    bad(r#"{"type":"send","to":"amy","body":"hi"}"#, "id: missing");
    let e = err(r#"{"type":"send","id":"","to":"amy","body":"hi"}"#);
    assert_eq!((e.message.as_str(), e.id), ("id: empty", None));
    bad(
        r#"{"type":"send","id":7,"to":"amy","body":"hi"}"#,
        "id: expected a string",
    );
    let max = "i".repeat(64);
    assert_eq!(
        parsed(&format!(
            r#"{{"type":"send","id":"{max}","to":"amy","body":"hi"}}"#
        ))
        .id,
        max
    );
    let e = err(&format!(
        r#"{{"type":"send","id":"{max}x","to":"amy","body":"hi"}}"#
    ));
    assert_eq!(
        (e.message.as_str(), e.id),
        ("id: longer than 64 characters", None)
    );
    // Any later error echoes the id, req and device.
    let e = err(r#"{"type":"send","id":"m5","req":"r5","device":"d5","to":"Amy","body":"x"}"#);
    assert_eq!(e.message, "to: not a valid user id");
    assert_eq!(
        (e.id.as_deref(), e.req.as_deref(), e.device.as_deref()),
        (Some("m5"), Some("r5"), Some("d5"))
    );
}

fn with_media(media: &str) -> String {
    send(&format!(r#""to":"amy","media":{media}"#))
}

/// A send whose media has these raw JSON values.
fn media_json(id: &str, mime: &str, size: &str) -> String {
    with_media(&format!(
        r#"{{"media_id":{id},"mime":{mime},"size":{size}}}"#
    ))
}

#[test]
fn media_accepted() {
    let m = parsed(&with_media(&format!(
        r#"{{"media_id":"{HASH}","mime":"image/jpeg","size":1024,"caption":"cat","x":1}}"#
    )));
    let expected = Media {
        media_id: HASH.into(),
        mime: "image/jpeg".into(),
        size: 1024,
        caption: Some("cat".into()),
    };
    assert_eq!((m.media, m.body), (Some(expected), None));
    let both = parsed(&send(&format!(
        r#""to":"amy","body":"look","media":{{"media_id":"{HASH}","mime":"text/plain; charset=utf-8","size":1}}"#
    )));
    assert!(both.body.is_some() && both.media.is_some_and(|m| m.caption.is_none()));
    let mime_127 = format!("\"a/{}\"", "b".repeat(125));
    assert!(parsed(&media_json(&format!("\"{HASH}\""), &mime_127, "1"))
        .media
        .is_some());
    bad(&with_media(r#""cat.jpg""#), "media: expected an object");
    bad(&with_media("[]"), "media: expected an object");
}

#[test]
fn media_id_rules() {
    let id_error =
        "media.media_id: expected 64 lowercase hex characters (the media_id from the upload)";
    for id in [
        HASH.to_uppercase(),
        HASH[1..].to_owned(),
        format!("{HASH}0"),
        format!("{}g", &HASH[1..]),
    ] {
        bad(&media_json(&format!("\"{id}\""), r#""a/b""#, "1"), id_error);
    }
    bad(
        &media_json("5", r#""a/b""#, "1"),
        "media.media_id: expected a string",
    );
    bad(
        &with_media(r#"{"mime":"a/b","size":1}"#),
        "media.media_id: missing",
    );
}

#[test]
fn media_mime_size_caption_rules() {
    let hash = format!("\"{HASH}\"");
    let mime_error = "media.mime: not a MIME type (type/subtype, printable ASCII)";
    for mime in [r#""imagejpeg""#, r#""image/jpég""#, r#""image/\n""#] {
        bad(&media_json(&hash, mime, "1"), mime_error);
    }
    bad(&media_json(&hash, "null", "1"), "media.mime: missing");
    let mime_128 = format!("\"a/{}\"", "b".repeat(126));
    bad(
        &media_json(&hash, &mime_128, "1"),
        "media.mime: longer than 127 characters",
    );
    bad(
        &media_json(&hash, r#""a/b""#, "0"),
        "media.size: must be at least 1",
    );
    for size in ["-5", r#""5""#, "1e3"] {
        bad(
            &media_json(&hash, r#""a/b""#, size),
            "media.size: expected an unsigned integer",
        );
    }
    let captioned = |caption: &str| {
        with_media(&format!(
            r#"{{"media_id":"{HASH}","mime":"a/b","size":1,"caption":"{caption}"}}"#
        ))
    };
    assert!(parsed(&captioned(&"ü".repeat(1024))).media.is_some());
    bad(
        &captioned(&"ü".repeat(1025)),
        "media.caption: longer than 1024 characters",
    );
}

#[test]
fn reply_to_is_a_decimal_string() {
    let reply = |value: &str| send(&format!(r#""to":"amy","body":"hi","reply_to":{value}"#));
    assert_eq!(
        parsed(&reply(r#""18446744073709551615""#)).reply_to,
        Some(u64::MAX)
    );
    assert_eq!(parsed(&reply(r#""0""#)).reply_to, Some(0));
    assert_eq!(parsed(&reply("null")).reply_to, None);
    let message = r#"reply_to: expected a msg_id as a decimal string ("123", not 123)"#;
    for value in [
        "123",
        r#""""#,
        r#""-1""#,
        r#""+1""#,
        r#""012""#,
        r#""1.0""#,
        r#"" 1""#,
        r#""18446744073709551616""#,
        r#""abc""#,
        "[]",
    ] {
        bad(&reply(value), message);
    }
}

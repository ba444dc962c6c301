//! Every request type except `send` (see `send.rs`): fields, defaults, clamps, messages.

use super::{bad, err, ok_request};
use crate::{
    Audience, Conv, GroupCreateRequest, GroupMembersRequest, HistoryRequest, Platform,
    PrivacyRequest, PushRegisterRequest, ReceiptRequest, ReceiptStatus, Request, SyncRequest,
    Target, TypingRequest, TypingState,
};

#[test]
fn receipt() {
    let r = ok_request(r#"{"type":"receipt","conv":"d.amy.bob","status":"read","seq":7}"#);
    let expected = ReceiptRequest {
        conv: Conv::parse("d.amy.bob").unwrap(),
        status: ReceiptStatus::Read,
        seq: 7,
    };
    assert_eq!(r, Request::Receipt(expected));
    let r = ok_request(r#"{"type":"receipt","conv":"g.t1","status":"delivered","seq":1}"#);
    assert!(matches!(
        r,
        Request::Receipt(ReceiptRequest {
            status: ReceiptStatus::Delivered,
            ..
        })
    ));
    let base = |extra: &str| format!(r#"{{"type":"receipt",{extra}}}"#);
    bad(&base(r#""status":"read","seq":1"#), "conv: missing");
    bad(
        &base(r#""conv":"d.bob.amy","status":"read","seq":1"#),
        "conv: the users of d.{a}.{b} must be in order (a < b)",
    );
    bad(
        &base(r#""conv":"d.amy.amy","status":"read","seq":1"#),
        "conv: a direct conversation needs two different users",
    );
    bad(
        &base(r#""conv":"amy","status":"read","seq":1"#),
        "conv: not a conversation id (d.{a}.{b} or g.{group_id}, ids of 1-32 [a-z0-9])",
    );
    bad(
        &base(r#""conv":7,"status":"read","seq":1"#),
        "conv: expected a string",
    );
    bad(
        &base(r#""conv":"g.t","status":"seen","seq":1"#),
        r#"status: expected "delivered" or "read""#,
    );
    bad(
        &base(r#""conv":"g.t","status":"read","seq":0"#),
        "seq: must be at least 1",
    );
    bad(
        &base(r#""conv":"g.t","status":"read","seq":-1"#),
        "seq: expected an unsigned integer",
    );
    bad(
        &base(r#""conv":"g.t","status":"read","seq":1.5"#),
        "seq: expected an unsigned integer",
    );
    bad(
        &base(r#""conv":"g.t","status":"read","seq":"3""#),
        "seq: expected an unsigned integer",
    );
    bad(&base(r#""conv":"g.t","status":"read""#), "seq: missing");
    bad(
        &base(r#""conv":"g.t","status":"read","seq":18446744073709551616"#),
        "seq: expected an unsigned integer",
    );
}

#[test]
fn sync_defaults_and_clamps() {
    let sync = |extra: &str| ok_request(&format!(r#"{{"type":"sync","device":"d1"{extra}}}"#));
    assert_eq!(
        sync(""),
        Request::Sync(SyncRequest {
            after: 0,
            limit: 100
        })
    );
    assert_eq!(
        sync(r#","after":41,"limit":5"#),
        Request::Sync(SyncRequest {
            after: 41,
            limit: 5
        })
    );
    assert_eq!(
        sync(r#","limit":1000"#),
        Request::Sync(SyncRequest {
            after: 0,
            limit: 1000
        })
    );
    assert_eq!(
        sync(r#","limit":1001"#),
        Request::Sync(SyncRequest {
            after: 0,
            limit: 1000
        })
    );
    assert_eq!(
        sync(r#","limit":18446744073709551615"#),
        Request::Sync(SyncRequest {
            after: 0,
            limit: 1000
        })
    );
    bad(
        r#"{"type":"sync","device":"d1","limit":0}"#,
        "limit: must be at least 1",
    );
    bad(
        r#"{"type":"sync","device":"d1","limit":"5"}"#,
        "limit: expected an unsigned integer",
    );
    bad(
        r#"{"type":"sync","device":"d1","after":-1}"#,
        "after: expected an unsigned integer",
    );
    bad(r#"{"type":"sync","req":"r1"}"#, "sync needs device");
    assert_eq!(
        err(r#"{"type":"sync","req":"r1"}"#).req.as_deref(),
        Some("r1")
    );
}

#[test]
fn history_defaults_and_clamps() {
    let history = |extra: &str| {
        ok_request(&format!(
            r#"{{"type":"history","device":"d1","conv":"g.t"{extra}}}"#
        ))
    };
    let conv = Conv::Group("t".into());
    assert_eq!(
        history(""),
        Request::History(HistoryRequest {
            conv: conv.clone(),
            before: None,
            limit: 50
        })
    );
    assert_eq!(
        history(r#","before":10,"limit":300"#),
        Request::History(HistoryRequest {
            conv: conv.clone(),
            before: Some(10),
            limit: 200
        })
    );
    assert_eq!(
        history(r#","limit":200"#),
        Request::History(HistoryRequest {
            conv,
            before: None,
            limit: 200
        })
    );
    bad(
        r#"{"type":"history","device":"d1","conv":"g.t","limit":0}"#,
        "limit: must be at least 1",
    );
    bad(
        r#"{"type":"history","device":"d1","conv":"g.t","before":"9"}"#,
        "before: expected an unsigned integer",
    );
    bad(r#"{"type":"history","device":"d1"}"#, "conv: missing");
    bad(r#"{"type":"history","conv":"g.t"}"#, "history needs device");
}

#[test]
fn group_create() {
    let r =
        ok_request(r#"{"type":"group_create","name":"  Team  ","members":["bob","amy","bob"]}"#);
    let expected = GroupCreateRequest {
        name: "Team".into(),
        members: vec!["bob".into(), "amy".into()],
    };
    assert_eq!(r, Request::GroupCreate(expected));
    let r = ok_request(r#"{"type":"group_create","name":"Solo","members":[]}"#);
    assert!(
        matches!(r, Request::GroupCreate(GroupCreateRequest { members, .. }) if members.is_empty())
    );
    let hundred = "ü".repeat(100);
    let r = ok_request(&format!(
        r#"{{"type":"group_create","name":"{hundred}","members":[]}}"#
    ));
    assert!(matches!(r, Request::GroupCreate(GroupCreateRequest { name, .. }) if name == hundred));

    let gc = |name: &str, members: &str| {
        format!(r#"{{"type":"group_create","name":{name},"members":{members}}}"#)
    };
    bad(&gc(r#""   ""#, "[]"), "name: empty");
    bad(
        &gc(&format!("\"{hundred}x\""), "[]"),
        "name: longer than 100 characters",
    );
    bad(
        &gc(r#""a\u0007b""#, "[]"),
        "name: contains control characters",
    );
    bad(&gc("5", "[]"), "name: expected a string");
    bad(r#"{"type":"group_create","members":[]}"#, "name: missing");
    bad(&gc(r#""T""#, r#""amy""#), "members: expected an array");
    bad(
        &gc(r#""T""#, r#"["amy","Bob"]"#),
        "members[1]: not a valid user id",
    );
    bad(&gc(r#""T""#, "[1]"), "members[0]: not a valid user id");
    bad(r#"{"type":"group_create","name":"T"}"#, "members: missing");
}

#[test]
fn group_add_remove_leave_info() {
    let r = ok_request(r#"{"type":"group_add","group":"g1","members":["amy","amy"]}"#);
    let expected = GroupMembersRequest {
        group: "g1".into(),
        members: vec!["amy".into()],
    };
    assert_eq!(r, Request::GroupAdd(expected.clone()));
    let r = ok_request(r#"{"type":"group_remove","group":"g1","members":["amy"]}"#);
    assert_eq!(r, Request::GroupRemove(expected));
    bad(
        r#"{"type":"group_add","group":"g1","members":[]}"#,
        "members: must not be empty",
    );
    bad(
        r#"{"type":"group_remove","group":"G1","members":["amy"]}"#,
        "group: not a valid group id",
    );
    bad(
        r#"{"type":"group_remove","members":["amy"]}"#,
        "group: missing",
    );

    let r = ok_request(r#"{"type":"group_leave","group":"g1"}"#);
    assert_eq!(r, Request::GroupLeave { group: "g1".into() });
    bad(
        r#"{"type":"group_leave","group":"g.g1"}"#,
        "group: not a valid group id",
    );
    let r = ok_request(r#"{"type":"group_info","group":"g1","device":"d1"}"#);
    assert_eq!(r, Request::GroupInfo { group: "g1".into() });
    bad(
        r#"{"type":"group_info","group":"g1"}"#,
        "group_info needs device",
    );
}

#[test]
fn presence_sub() {
    let r = ok_request(r#"{"type":"presence_sub","device":"d1","users":["amy","bob","amy"]}"#);
    assert_eq!(
        r,
        Request::PresenceSub {
            users: vec!["amy".into(), "bob".into()]
        }
    );
    let users: Vec<String> = (0..256).map(|i| format!("\"u{i}\"")).collect();
    let json = format!(
        r#"{{"type":"presence_sub","device":"d1","users":[{}]}}"#,
        users.join(",")
    );
    assert!(matches!(ok_request(&json), Request::PresenceSub { users } if users.len() == 256));
    let json = format!(
        r#"{{"type":"presence_sub","device":"d1","users":[{},"x"]}}"#,
        users.join(",")
    );
    bad(&json, "users: more than 256 entries");
    bad(
        r#"{"type":"presence_sub","device":"d1","users":[]}"#,
        "users: must not be empty",
    );
    bad(
        r#"{"type":"presence_sub","users":["amy"]}"#,
        "presence_sub needs device",
    );
}

#[test]
fn typing() {
    let r = ok_request(r#"{"type":"typing","to":"amy","state":"start"}"#);
    let expected = TypingRequest {
        target: Target::To("amy".into()),
        state: TypingState::Start,
    };
    assert_eq!(r, Request::Typing(expected));
    let r = ok_request(r#"{"type":"typing","group":"g1","state":"stop"}"#);
    let expected = TypingRequest {
        target: Target::Group("g1".into()),
        state: TypingState::Stop,
    };
    assert_eq!(r, Request::Typing(expected));
    bad(
        r#"{"type":"typing","state":"stop"}"#,
        "typing needs to or group",
    );
    bad(
        r#"{"type":"typing","to":"amy","group":"g1","state":"stop"}"#,
        "typing takes to or group, not both",
    );
    bad(
        r#"{"type":"typing","to":"amy","state":"paused"}"#,
        r#"state: expected "start" or "stop""#,
    );
    bad(r#"{"type":"typing","to":"amy"}"#, "state: missing");
}

#[test]
fn block_unblock() {
    assert_eq!(
        ok_request(r#"{"type":"block","user":"amy"}"#),
        Request::Block { user: "amy".into() }
    );
    assert_eq!(
        ok_request(r#"{"type":"unblock","user":"amy"}"#),
        Request::Unblock { user: "amy".into() }
    );
    bad(r#"{"type":"block"}"#, "user: missing");
    bad(
        r#"{"type":"unblock","user":"a b"}"#,
        "user: not a valid user id",
    );
    bad(
        r#"{"type":"unblock","user":["amy"]}"#,
        "user: expected a string",
    );
}

#[test]
fn privacy() {
    assert_eq!(
        ok_request(r#"{"type":"privacy","id":"p1","online":"everyone","groups":null}"#),
        Request::Privacy(PrivacyRequest {
            id: "p1".into(),
            last_seen: None,
            online: Some(Audience::Everyone),
            groups: None,
        })
    );
    let read = ok_request(r#"{"type":"privacy","id":"p2"}"#);
    assert!(matches!(
        read,
        Request::Privacy(PrivacyRequest {
            last_seen: None,
            online: None,
            groups: None,
            ..
        })
    ));
    bad(
        r#"{"type":"privacy","id":"p","last_seen":"friends"}"#,
        r#"last_seen: expected "everyone" or "contacts" or "nobody""#,
    );
    bad(
        r#"{"type":"privacy","id":"p","groups":1}"#,
        "groups: expected a string",
    );
    bad(r#"{"type":"privacy","online":"nobody"}"#, "id: missing");
    let e = err(r#"{"type":"privacy","req":"r","id":"p","online":"Everyone"}"#);
    assert_eq!((e.req.as_deref(), e.id.as_deref()), (Some("r"), Some("p")));
}

#[test]
fn group_join_decline() {
    assert_eq!(
        ok_request(r#"{"type":"group_join","group":"g1"}"#),
        Request::GroupJoin { group: "g1".into() }
    );
    assert_eq!(
        ok_request(r#"{"type":"group_decline","group":"g1"}"#),
        Request::GroupDecline { group: "g1".into() }
    );
    bad(r#"{"type":"group_join"}"#, "group: missing");
    bad(
        r#"{"type":"group_decline","group":"G 1"}"#,
        "group: not a valid group id",
    );
}

#[test]
fn push_register_unregister() {
    let r = ok_request(
        r#"{"type":"push_register","device":"d1","platform":"fcm","token":"abc:DEF-_1"}"#,
    );
    let expected = PushRegisterRequest {
        platform: Platform::Fcm,
        token: "abc:DEF-_1".into(),
    };
    assert_eq!(r, Request::PushRegister(expected));
    let long = "t".repeat(4096);
    let json =
        format!(r#"{{"type":"push_register","device":"d1","platform":"apns","token":"{long}"}}"#);
    assert!(matches!(
        ok_request(&json),
        Request::PushRegister(PushRegisterRequest {
            platform: Platform::Apns,
            ..
        })
    ));
    let token_error = "token: expected 1 to 4096 visible ASCII characters";
    let json =
        format!(r#"{{"type":"push_register","device":"d1","platform":"apns","token":"{long}x"}}"#);
    bad(&json, token_error);
    let pr = |rest: &str| format!(r#"{{"type":"push_register","device":"d1",{rest}}}"#);
    bad(&pr(r#""platform":"apns","token":"""#), token_error);
    bad(&pr(r#""platform":"apns","token":"a b""#), token_error);
    bad(&pr(r#""platform":"apns","token":"é""#), token_error);
    bad(
        &pr(r#""platform":"gcm","token":"x""#),
        r#"platform: expected "fcm" or "apns""#,
    );
    bad(&pr(r#""platform":"fcm""#), "token: missing");
    bad(
        r#"{"type":"push_register","platform":"fcm","token":"x"}"#,
        "push_register needs device",
    );

    assert_eq!(
        ok_request(r#"{"type":"push_unregister","device":"d1"}"#),
        Request::PushUnregister
    );
    bad(
        r#"{"type":"push_unregister"}"#,
        "push_unregister needs device",
    );
}

//! Event JSON: exact field names, omitted optionals, msg_id strings, round trips.

use serde_json::{json, Value};

use crate::{
    Audience, Conv, ErrorCode, ErrorEvent, Event, GroupChange, GroupEvent, GroupInfoAnswer,
    GroupInviteEvent, HistoryAnswer, HistoryEntry, Media, Member, MsgEvent, OkAnswer,
    PresenceEvent, PresenceState, PrivacyEvent, RawEvent, ReceiptEvent, ReceiptStatus, Role,
    SentEvent, SyncAnswer, Target, TypingEvent, TypingState,
};

fn conv(s: &str) -> Conv {
    Conv::parse(s).unwrap()
}

/// Serialises `event`, checks the JSON is `expected`, and reads it back.
fn check(event: Event, expected: Value) {
    let bytes = event.to_json();
    let actual: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(actual, expected);
    assert_eq!(Event::from_json(&bytes).unwrap(), event);
}

fn msg(n: Option<u64>) -> MsgEvent {
    MsgEvent {
        msg_id: 7_205_759_403_792_793_600,
        conv: conv("d.amy.bob"),
        seq: 3,
        from: "amy".into(),
        target: Target::To("bob".into()),
        body: Some("hi".into()),
        media: None,
        reply_to: None,
        ts: 1_700_000_000_123,
        n,
        from_deleted: false,
    }
}

#[test]
fn sent() {
    let media = Media {
        media_id: "ab".repeat(32),
        mime: "image/png".into(),
        size: 9,
        caption: None,
    };
    let event = Event::Sent(SentEvent {
        id: "c1".into(),
        msg_id: 42,
        conv: conv("g.team"),
        seq: 1,
        target: Target::Group("team".into()),
        body: None,
        media: Some(media),
        reply_to: Some(41),
        ts: 5,
        n: 10,
    });
    let expected = json!({
        "type": "sent", "id": "c1", "msg_id": "42", "conv": "g.team", "seq": 1, "group": "team",
        "media": {"media_id": "ab".repeat(32), "mime": "image/png", "size": 9},
        "reply_to": "41", "ts": 5, "n": 10
    });
    assert_eq!(event.n(), Some(10));
    check(event, expected);
}

#[test]
fn msg_with_and_without_n() {
    let expected = json!({
        "type": "msg", "msg_id": "7205759403792793600", "conv": "d.amy.bob", "seq": 3,
        "from": "amy", "to": "bob", "body": "hi", "ts": 1_700_000_000_123_u64, "n": 4
    });
    check(Event::Msg(msg(Some(4))), expected.clone());
    let mut without_n = expected;
    without_n.as_object_mut().unwrap().remove("n");
    check(Event::Msg(msg(None)), without_n.clone());
    assert_eq!(Event::Msg(msg(None)).n(), None);
    let mut deleted = without_n;
    deleted["from_deleted"] = json!(true);
    check(
        Event::Msg(MsgEvent {
            from_deleted: true,
            ..msg(None)
        }),
        deleted,
    );
}

#[test]
fn receipt_group_presence_typing() {
    let receipt = ReceiptEvent {
        conv: conv("d.amy.bob"),
        by: "bob".into(),
        status: ReceiptStatus::Delivered,
        seq: 3,
        ts: 9,
        n: 2,
    };
    check(
        Event::Receipt(receipt),
        json!({"type":"receipt","conv":"d.amy.bob","by":"bob","status":"delivered","seq":3,"ts":9,"n":2}),
    );
    let group = GroupEvent {
        group: "g1".into(),
        name: "Team".into(),
        event: GroupChange::Created,
        members: vec![
            Member {
                user: "amy".into(),
                role: Role::Admin,
            },
            Member {
                user: "bob".into(),
                role: Role::Member,
            },
        ],
        by: "amy".into(),
        seq: 1,
        ts: 9,
        n: Some(1),
        from_deleted: false,
    };
    check(
        Event::Group(group),
        json!({"type":"group","group":"g1","name":"Team","event":"created",
               "members":[{"user":"amy","role":"admin"},{"user":"bob","role":"member"}],
               "by":"amy","seq":1,"ts":9,"n":1}),
    );
    let online = PresenceEvent {
        user: "amy".into(),
        state: PresenceState::Online,
        last_seen: None,
    };
    check(
        Event::Presence(online),
        json!({"type":"presence","user":"amy","state":"online"}),
    );
    let offline = PresenceEvent {
        user: "amy".into(),
        state: PresenceState::Offline,
        last_seen: Some(77),
    };
    check(
        Event::Presence(offline),
        json!({"type":"presence","user":"amy","state":"offline","last_seen":77}),
    );
    let typing = TypingEvent {
        from: "amy".into(),
        conv: conv("g.g1"),
        state: TypingState::Start,
    };
    let event = Event::Typing(typing);
    assert_eq!(event.n(), None);
    check(
        event,
        json!({"type":"typing","from":"amy","conv":"g.g1","state":"start"}),
    );
}

#[test]
fn error_event() {
    let bare = ErrorEvent {
        req: None,
        id: None,
        code: ErrorCode::RateLimited,
        message: "slow down".into(),
    };
    check(
        Event::Error(bare),
        json!({"type":"error","code":"rate_limited","message":"slow down"}),
    );
    let full = ErrorEvent {
        req: Some("r".into()),
        id: Some("m".into()),
        code: ErrorCode::Forbidden,
        message: "not a member".into(),
    };
    check(
        Event::Error(full),
        json!({"type":"error","req":"r","id":"m","code":"forbidden","message":"not a member"}),
    );
}

#[test]
fn error_codes_wire_names() {
    let names: Vec<&str> = [
        ErrorCode::BadRequest,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::TooLarge,
        ErrorCode::RateLimited,
        ErrorCode::Conflict,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ]
    .into_iter()
    .map(ErrorCode::as_str)
    .collect();
    let expected = [
        "bad_request",
        "forbidden",
        "not_found",
        "too_large",
        "rate_limited",
        "conflict",
        "unavailable",
        "internal",
    ];
    assert_eq!(names, expected);
    assert_eq!(ErrorCode::NAMES, expected);
    for name in expected {
        let code = ErrorCode::from_wire(name).unwrap();
        assert_eq!(code.to_string(), name);
        assert_eq!(serde_json::to_value(code).unwrap(), json!(name));
    }
}

#[test]
fn sync_answer_embeds_stored_events_verbatim() {
    let stored = r#"{"type":"msg","msg_id":"9","conv":"d.amy.bob","seq":1,"from":"amy","to":"bob","body":"x","ts":1,"n":5}"#;
    let answer = SyncAnswer {
        req: Some("s1".into()),
        events: vec![RawEvent::from_json(stored.to_owned()).unwrap()],
        last: 5,
        more: false,
    };
    let bytes = Event::Sync(answer.clone()).to_json();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.contains(stored), "{text}");
    let expected = json!({"type":"sync","req":"s1","events":[serde_json::from_str::<Value>(stored).unwrap()],"last":5,"more":false});
    assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), expected);
    let back = Event::from_json(&bytes).unwrap();
    assert_eq!(back, Event::Sync(answer));
    let Event::Sync(back) = back else {
        panic!("not a sync answer")
    };
    assert!(
        matches!(back.events[0].parse().unwrap(), Event::Msg(m) if m.n == Some(5) && m.msg_id == 9)
    );

    let empty = SyncAnswer {
        req: None,
        events: vec![],
        last: 0,
        more: false,
    };
    check(
        Event::Sync(empty),
        json!({"type":"sync","events":[],"last":0,"more":false}),
    );
    assert!(RawEvent::from_json("{not json".to_owned()).is_err());
    let raw = RawEvent::from_event(&Event::Msg(msg(Some(1)))).unwrap();
    assert_eq!(raw.parse().unwrap(), Event::Msg(msg(Some(1))));
    assert!(raw.get().starts_with(r#"{"type":"msg""#));
}

#[test]
fn history_answer_holds_msg_events() {
    let answer = HistoryAnswer {
        req: None,
        conv: conv("d.amy.bob"),
        messages: vec![HistoryEntry::Msg(msg(None))],
        more: true,
    };
    check(
        Event::History(answer),
        json!({"type":"history","conv":"d.amy.bob","messages":[{
            "type":"msg","msg_id":"7205759403792793600","conv":"d.amy.bob","seq":3,"from":"amy",
            "to":"bob","body":"hi","ts":1_700_000_000_123_u64}],"more":true}),
    );
    let group = br#"{"type":"history","conv":"g.a","messages":[{"type":"group","group":"a",
        "name":"A","event":"left","members":[{"user":"bob","role":"member"}],"by":"bob","seq":4,
        "ts":5}],"more":false}"#;
    let Ok(Event::History(h)) = Event::from_json(group) else {
        panic!("a group entry in history parses");
    };
    assert_eq!(h.messages[0].seq(), 4);
    assert!(matches!(&h.messages[0], HistoryEntry::Group(g) if g.n.is_none()));
    let bad = br#"{"type":"history","conv":"g.a","messages":[{"type":"sent"}],"more":false}"#;
    assert!(Event::from_json(bad).is_err());
}

#[test]
fn group_info_and_ok_answers() {
    let info = GroupInfoAnswer {
        req: Some("q".into()),
        group: "g1".into(),
        name: "Team".into(),
        members: vec![Member {
            user: "amy".into(),
            role: Role::Admin,
        }],
    };
    check(
        Event::GroupInfo(info),
        json!({"type":"group_info","req":"q","group":"g1","name":"Team","members":[{"user":"amy","role":"admin"}]}),
    );
    let ok = OkAnswer {
        req: Some("p".into()),
        request: "push_register".into(),
        group: None,
        invited: Vec::new(),
    };
    check(
        Event::Ok(ok),
        json!({"type":"ok","req":"p","request":"push_register"}),
    );
    let created = OkAnswer {
        req: None,
        request: "group_create".into(),
        group: Some("g9".into()),
        invited: vec!["bob".into()],
    };
    check(
        Event::Ok(created),
        json!({"type":"ok","request":"group_create","group":"g9","invited":["bob"]}),
    );
}

#[test]
fn privacy_and_group_invite_events() {
    let privacy = PrivacyEvent {
        req: Some("r".into()),
        id: "p1".into(),
        last_seen: Audience::Nobody,
        online: Audience::Contacts,
        groups: Audience::Everyone,
    };
    check(
        Event::Privacy(privacy),
        json!({"type":"privacy","req":"r","id":"p1","last_seen":"nobody","online":"contacts","groups":"everyone"}),
    );
    let invite = GroupInviteEvent {
        group: "g1".into(),
        name: "Team".into(),
        by: "amy".into(),
        ts: 5,
        n: 3,
    };
    let event = Event::GroupInvite(invite);
    assert_eq!(event.n(), Some(3));
    check(
        event,
        json!({"type":"group_invite","group":"g1","name":"Team","by":"amy","ts":5,"n":3}),
    );
}

#[test]
fn reading_is_lenient_about_extra_fields_and_strict_about_shape() {
    let with_extra = br#"{"type":"typing","from":"amy","conv":"g.g1","state":"stop","v":2}"#;
    assert!(matches!(
        Event::from_json(with_extra).unwrap(),
        Event::Typing(_)
    ));
    // msg_id must be a string; conv canonical; type known.
    let numeric_id =
        br#"{"type":"msg","msg_id":9,"conv":"d.amy.bob","seq":1,"from":"amy","to":"bob","ts":1}"#;
    assert!(Event::from_json(numeric_id).is_err());
    let bad_conv = br#"{"type":"typing","from":"amy","conv":"d.bob.amy","state":"stop"}"#;
    assert!(Event::from_json(bad_conv).is_err());
    assert!(Event::from_json(br#"{"type":"nope"}"#).is_err());
}

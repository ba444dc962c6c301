//! Property tests of the request parser and validator as a whole (the same entry point the
//! `cargo fuzz` target `request` drives, see `fuzz/` and `docs/TESTING.md`):
//!
//! - any bytes: no panic, and a refusal is a typed error with a code the parser may give
//!   (`bad_request` or `too_large`), a message, and only well-formed echo fields;
//! - any JSON object with request-like keys: the same, and whatever is accepted is canonical
//!   (written back with `Envelope::to_json`, it parses to the same envelope);
//! - every request type, valid: accepted and round-trips unchanged;
//! - a valid request with one thing changed: an unknown key or a `null` optional field changes
//!   nothing; a missing field or a replaced value is either accepted or refused with
//!   `bad_request` (`too_large` for an oversized body) naming that field.

use proptest::prelude::*;

use super::props::{id, media};
use serde_json::{Map, Value};

use crate::{
    parse_request, valid_id, Audience, Conv, Envelope, ErrorCode, GroupCreateRequest,
    GroupMembersRequest, HistoryRequest, Platform, PrivacyRequest, PushRegisterRequest,
    ReceiptRequest, ReceiptStatus, Request, RequestError, SendRequest, SyncRequest, Target,
    TypingRequest, TypingState, HISTORY_MAX_LIMIT, MAX_BODY_LEN, MAX_PAYLOAD_LEN, MAX_REQ_LEN,
    MAX_SEND_ID_LEN, SYNC_MAX_LIMIT,
};

/// Every request `type`.
const TYPES: &[&str] = &[
    "send",
    "receipt",
    "sync",
    "history",
    "group_create",
    "group_add",
    "group_remove",
    "group_leave",
    "group_info",
    "presence_sub",
    "typing",
    "block",
    "unblock",
    "push_register",
    "push_unregister",
    "group_join",
    "group_decline",
    "privacy",
];

/// Every field name any request reads.
const KEYS: &[&str] = &[
    "type",
    "req",
    "device",
    "id",
    "to",
    "group",
    "body",
    "media",
    "reply_to",
    "conv",
    "status",
    "seq",
    "after",
    "limit",
    "before",
    "name",
    "members",
    "users",
    "state",
    "user",
    "platform",
    "token",
    "media_id",
    "mime",
    "size",
    "caption",
    "last_seen",
    "online",
    "groups",
];

/// Strings that are valid somewhere (ids, convs, enum words, msg ids), near-valid, or odd.
fn interesting_string() -> impl Strategy<Value = String> {
    prop_oneof![
        id(),
        Just(String::new()),
        prop::sample::select(TYPES).prop_map(str::to_owned),
        prop::sample::select(vec![
            "d.a.b",
            "d.b.a",
            "d.a.a",
            "g.team",
            "g.",
            "d..",
            "read",
            "delivered",
            "start",
            "stop",
            "fcm",
            "apns",
            "everyone",
            "contacts",
            "nobody",
            "0",
            "007",
            "18446744073709551615",
            "18446744073709551616",
            "Alice",
            "a b",
            "a/b",
            "+",
            "#",
            "\u{0}",
            "é",
        ])
        .prop_map(str::to_owned),
        "[0-9a-f]{64}",
        "[a-z]{1,8}/[a-z]{1,8}",
        "\\PC{0,40}",
        any::<String>(),
    ]
}

/// Any JSON value, biased towards what requests contain.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        (0u64..300).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        interesting_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => "\\PC{0,10}",
    ]
}

/// A JSON object with a (usually known) `type` and some request-like fields.
fn request_like_object() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        4 => prop::sample::select(TYPES).prop_map(Value::from),
        1 => json_value(),
    ];
    (kind, prop::collection::vec((key(), json_value()), 0..10)).prop_map(|(kind, fields)| {
        let mut map: Map<String, Value> = fields.into_iter().collect();
        map.insert("type".into(), kind);
        Value::Object(map)
    })
}

/// The invariants of any answer of the parser to `payload`.
fn check_outcome(
    payload: &[u8],
    outcome: &Result<Envelope, RequestError>,
) -> Result<(), TestCaseError> {
    match outcome {
        Ok(envelope) => {
            // Accepted means canonical: written back, it parses to the same thing.
            let again = parse_request(&envelope.to_json());
            prop_assert_eq!(again.as_ref().ok(), Some(envelope), "re-parse: {:?}", again);
            check_accepted(envelope)?;
        }
        Err(e) => {
            prop_assert!(
                matches!(e.code, ErrorCode::BadRequest | ErrorCode::TooLarge),
                "the parser gave {:?}: {}",
                e.code,
                e.message
            );
            if e.code == ErrorCode::TooLarge {
                // Only the payload size and a send's body are size checks of the parser.
                prop_assert!(
                    payload.len() > MAX_PAYLOAD_LEN || e.message.starts_with("body: "),
                    "too_large for a {}-byte payload: {}",
                    payload.len(),
                    e.message
                );
            }
            prop_assert!(!e.message.is_empty());
            prop_assert!(!e.message.contains('\n'), "raw newline in {:?}", e.message);
            if let Some(req) = &e.req {
                prop_assert!(req.chars().count() <= MAX_REQ_LEN);
            }
            if let Some(id) = &e.id {
                prop_assert!(!id.is_empty() && id.chars().count() <= MAX_SEND_ID_LEN);
            }
            if let Some(device) = &e.device {
                prop_assert!(valid_id(device), "echoed device {:?}", device);
            }
        }
    }
    Ok(())
}

/// Whether the protocol refuses `request` without `device` (its answer goes only to the
/// asking device).
fn needs_device(request: &Request) -> bool {
    matches!(
        request,
        Request::Sync(_)
            | Request::History(_)
            | Request::GroupInfo { .. }
            | Request::PresenceSub { .. }
            | Request::PushRegister(_)
            | Request::PushUnregister
    )
}

/// What the contract promises about any accepted request (docs/PROTOCOL.md, "Requests").
fn check_accepted(envelope: &Envelope) -> Result<(), TestCaseError> {
    if let Some(device) = &envelope.device {
        prop_assert!(valid_id(device));
    }
    if let Some(req) = &envelope.req {
        prop_assert!(req.chars().count() <= MAX_REQ_LEN);
    }
    let distinct_ids = |ids: &[String]| {
        let set: std::collections::HashSet<&String> = ids.iter().collect();
        set.len() == ids.len() && ids.iter().all(|u| valid_id(u))
    };
    let target_ok = |t: &Target| match t {
        Target::To(u) | Target::Group(u) => valid_id(u),
    };
    match &envelope.request {
        Request::Send(s) => {
            prop_assert!(!s.id.is_empty() && s.id.chars().count() <= MAX_SEND_ID_LEN);
            prop_assert!(target_ok(&s.target));
            prop_assert!(s.body.is_some() || s.media.is_some());
            if let Some(body) = &s.body {
                prop_assert!(!body.is_empty() && body.len() <= MAX_BODY_LEN);
            }
            if let Some(m) = &s.media {
                prop_assert!(m.media_id.len() == 64 && m.size >= 1 && m.mime.contains('/'));
            }
        }
        Request::Receipt(r) => prop_assert!(r.seq >= 1),
        Request::Sync(r) => prop_assert!((1..=SYNC_MAX_LIMIT).contains(&r.limit)),
        Request::History(r) => prop_assert!((1..=HISTORY_MAX_LIMIT).contains(&r.limit)),
        Request::GroupCreate(g) => {
            prop_assert!(distinct_ids(&g.members));
            let n = g.name.chars().count();
            prop_assert!((1..=100).contains(&n) && g.name.trim() == g.name);
            prop_assert!(!g.name.chars().any(char::is_control));
        }
        Request::GroupAdd(g) | Request::GroupRemove(g) => {
            prop_assert!(valid_id(&g.group) && !g.members.is_empty() && distinct_ids(&g.members));
        }
        Request::GroupLeave { group }
        | Request::GroupInfo { group }
        | Request::GroupJoin { group }
        | Request::GroupDecline { group } => prop_assert!(valid_id(group)),
        Request::Privacy(p) => {
            prop_assert!(!p.id.is_empty() && p.id.chars().count() <= MAX_SEND_ID_LEN);
        }
        Request::PresenceSub { users } => {
            prop_assert!(!users.is_empty() && users.len() <= 256 && distinct_ids(users));
        }
        Request::Typing(t) => prop_assert!(target_ok(&t.target)),
        Request::Block { user } | Request::Unblock { user } => prop_assert!(valid_id(user)),
        Request::PushRegister(p) => {
            prop_assert!(!p.token.is_empty() && p.token.bytes().all(|b| b.is_ascii_graphic()));
        }
        Request::PushUnregister => {}
    }
    prop_assert!(!needs_device(&envelope.request) || envelope.device.is_some());
    Ok(())
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![id().prop_map(Target::To), id().prop_map(Target::Group)]
}

fn conv() -> impl Strategy<Value = Conv> {
    prop_oneof![
        id().prop_map(Conv::Group),
        (id(), id()).prop_filter_map("two different users", |(a, b)| Conv::direct(&a, &b).ok()),
    ]
}

/// A deduplicated list of ids, in first-seen order.
fn ids(min: usize, max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(id(), min..=max).prop_map(|list| {
        let mut seen = std::collections::HashSet::new();
        list.into_iter()
            .filter(|u| seen.insert(u.clone()))
            .collect()
    })
}

/// A valid request of any type (values in their canonical form).
fn request() -> impl Strategy<Value = Request> {
    let send = (
        "\\PC{1,64}",
        target(),
        prop_oneof![
            ("\\PC{1,200}", proptest::option::of(media())).prop_map(|(b, m)| (Some(b), m)),
            media().prop_map(|m| (None, Some(m))),
        ],
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(id, target, (body, media), reply_to)| {
            Request::Send(SendRequest {
                id,
                target,
                body,
                media,
                reply_to,
            })
        });
    let status = prop_oneof![Just(ReceiptStatus::Delivered), Just(ReceiptStatus::Read)];
    let receipt = (conv(), status, 1..u64::MAX)
        .prop_map(|(conv, status, seq)| Request::Receipt(ReceiptRequest { conv, status, seq }));
    let sync = (any::<u64>(), 1..=SYNC_MAX_LIMIT)
        .prop_map(|(after, limit)| Request::Sync(SyncRequest { after, limit }));
    let history = (
        conv(),
        proptest::option::of(any::<u64>()),
        1..=HISTORY_MAX_LIMIT,
    )
        .prop_map(|(conv, before, limit)| {
            Request::History(HistoryRequest {
                conv,
                before,
                limit,
            })
        });
    // Names as the parser keeps them: trimmed, no control characters, 1-100 characters.
    let name = "[a-zA-Z0-9][a-zA-Z0-9 _.!é-]{0,98}[a-zA-Z0-9]?";
    let group_create = (name, ids(0, 5)).prop_map(|(name, members)| {
        Request::GroupCreate(GroupCreateRequest {
            name: name.trim().to_owned(),
            members,
        })
    });
    let members =
        || (id(), ids(1, 5)).prop_map(|(group, members)| GroupMembersRequest { group, members });
    let typing_state = prop_oneof![Just(TypingState::Start), Just(TypingState::Stop)];
    let platform = prop_oneof![Just(Platform::Fcm), Just(Platform::Apns)];
    prop_oneof![
        send,
        receipt,
        sync,
        history,
        group_create,
        members().prop_map(Request::GroupAdd),
        members().prop_map(Request::GroupRemove),
        id().prop_map(|group| Request::GroupLeave { group }),
        id().prop_map(|group| Request::GroupInfo { group }),
        ids(1, 20).prop_map(|users| Request::PresenceSub { users }),
        (target(), typing_state)
            .prop_map(|(target, state)| Request::Typing(TypingRequest { target, state })),
        id().prop_map(|user| Request::Block { user }),
        id().prop_map(|user| Request::Unblock { user }),
        (platform, "[!-~]{1,200}").prop_map(|(platform, token)| {
            Request::PushRegister(PushRegisterRequest { platform, token })
        }),
        Just(Request::PushUnregister),
        id().prop_map(|group| Request::GroupJoin { group }),
        id().prop_map(|group| Request::GroupDecline { group }),
        (
            "\\PC{1,64}",
            proptest::option::of(audience()),
            proptest::option::of(audience()),
            proptest::option::of(audience()),
        )
            .prop_map(|(id, last_seen, online, groups)| {
                Request::Privacy(PrivacyRequest {
                    id,
                    last_seen,
                    online,
                    groups,
                })
            }),
    ]
}

fn audience() -> impl Strategy<Value = Audience> {
    prop_oneof![
        Just(Audience::Everyone),
        Just(Audience::Contacts),
        Just(Audience::Nobody)
    ]
}

/// A valid envelope: a `device` whenever the type needs one.
fn envelope() -> impl Strategy<Value = Envelope> {
    (
        proptest::option::of("\\PC{0,64}"),
        proptest::option::of(id()),
        id(),
        request(),
    )
        .prop_map(|(req, device, needed, request)| {
            let needs_device = needs_device(&request);
            let device = if needs_device {
                Some(device.unwrap_or(needed))
            } else {
                device
            };
            Envelope {
                req,
                device,
                request,
            }
        })
}

/// The envelope as a JSON object.
fn object_of(envelope: &Envelope) -> Map<String, Value> {
    match serde_json::from_slice(&envelope.to_json()) {
        Ok(Value::Object(map)) => map,
        other => panic!("to_json did not give an object: {other:?}"),
    }
}

fn parse_value(value: &Value) -> (Vec<u8>, Result<Envelope, RequestError>) {
    let payload = serde_json::to_vec(value).unwrap_or_default();
    let outcome = parse_request(&payload);
    (payload, outcome)
}

/// Messages about the request as a whole rather than one field.
fn whole_request_message(message: &str) -> bool {
    message.ends_with(" needs device")
        || message.ends_with(" needs to or group")
        || message == "send needs body or media"
}

proptest! {
    #[test]
    fn any_bytes_get_a_typed_answer(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        let outcome = parse_request(&bytes);
        check_outcome(&bytes, &outcome)?;
        // Random bytes are almost never a request; when they are, it was checked above.
    }

    #[test]
    fn any_request_like_object_gets_a_typed_answer(object in request_like_object()) {
        let (payload, outcome) = parse_value(&object);
        check_outcome(&payload, &outcome)?;
    }

    #[test]
    fn every_valid_request_is_accepted_and_round_trips(envelope in envelope()) {
        let json = envelope.to_json();
        let parsed = parse_request(&json);
        prop_assert_eq!(parsed.as_ref().ok(), Some(&envelope), "{:?}", parsed.as_ref().err());
    }

    #[test]
    fn unknown_keys_and_null_optional_fields_change_nothing(
        envelope in envelope(),
        extra in "[A-Z_][a-zA-Z0-9_]{0,12}",
        value in json_value(),
    ) {
        let mut map = object_of(&envelope);
        // Upper-case first letter or underscore: never a field the parser reads.
        map.insert(extra, value);
        for optional in ["req", "reply_to", "before", "caption"] {
            map.entry(optional).or_insert(Value::Null);
        }
        if envelope.device.is_none() {
            map.insert("device".into(), Value::Null);
        }
        let (_, outcome) = parse_value(&Value::Object(map));
        prop_assert_eq!(outcome.ok(), Some(envelope));
    }

    #[test]
    fn a_missing_field_is_refused_by_name_or_defaulted(
        envelope in envelope(),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut map = object_of(&envelope);
        let keys: Vec<String> = map.keys().cloned().collect();
        let dropped = pick.get(&keys).clone();
        map.remove(&dropped);
        let (payload, outcome) = parse_value(&Value::Object(map));
        check_outcome(&payload, &outcome)?;
        if let Err(e) = &outcome {
            prop_assert_eq!(e.code, ErrorCode::BadRequest);
            prop_assert!(
                e.message.starts_with(&format!("{dropped}: ")) || whole_request_message(&e.message),
                "dropping {} gave {:?}",
                dropped,
                e.message
            );
        }
        if dropped == "type" {
            prop_assert_eq!(outcome.err().map(|e| e.message), Some("type: missing".to_owned()));
        }
    }

    #[test]
    fn a_replaced_value_is_accepted_or_refused_by_name(
        envelope in envelope(),
        pick in any::<prop::sample::Index>(),
        value in json_value(),
    ) {
        let mut map = object_of(&envelope);
        let keys: Vec<String> = map.keys().filter(|k| *k != "type").cloned().collect();
        prop_assume!(!keys.is_empty());
        let changed = pick.get(&keys).clone();
        let is_null = value.is_null();
        map.insert(changed.clone(), value);
        let (payload, outcome) = parse_value(&Value::Object(map));
        check_outcome(&payload, &outcome)?;
        if let Err(e) = &outcome {
            let named = e.message.starts_with(&format!("{changed}: "))
                || e.message.starts_with(&format!("{changed}["))
                || e.message.starts_with(&format!("{changed}."));
            // `null` is "absent": then a whole-request rule may be what fails.
            prop_assert!(
                named || (is_null && whole_request_message(&e.message)),
                "replacing {} gave {:?}",
                changed,
                e.message
            );
            let too_large_body = changed == "body" && e.message.starts_with("body: longer than");
            prop_assert_eq!(
                e.code,
                if too_large_body { ErrorCode::TooLarge } else { ErrorCode::BadRequest }
            );
        }
    }

    #[test]
    fn a_changed_type_is_refused_by_name_or_read_as_that_type(
        envelope in envelope(),
        kind in prop_oneof![
            prop::sample::select(TYPES).prop_map(Value::from),
            json_value(),
        ],
    ) {
        let mut map = object_of(&envelope);
        let known = kind.as_str().is_some_and(|k| TYPES.contains(&k));
        map.insert("type".into(), kind);
        let (payload, outcome) = parse_value(&Value::Object(map));
        check_outcome(&payload, &outcome)?;
        if !known {
            let e = outcome.err();
            prop_assert!(
                e.as_ref().is_some_and(|e| e.message.starts_with("type: ")
                    || e.message.starts_with("unknown type ")),
                "{:?}",
                e
            );
        }
    }

    #[test]
    fn an_oversized_body_is_too_large_whatever_else_is_there(
        envelope in envelope(),
        extra in 1usize..64,
    ) {
        // Whatever the request was, make it a send with a body one size too big.
        let mut map = object_of(&envelope);
        map.insert("type".into(), Value::from("send"));
        map.insert("id".into(), Value::from("m1"));
        map.remove("group");
        map.insert("to".into(), Value::from("bob"));
        map.insert("body".into(), Value::from("b".repeat(MAX_BODY_LEN + extra)));
        let (payload, outcome) = parse_value(&Value::Object(map));
        check_outcome(&payload, &outcome)?;
        let e = outcome.err();
        prop_assert_eq!(e.map(|e| (e.code, e.message)), Some((ErrorCode::TooLarge, format!("body: longer than {MAX_BODY_LEN} bytes"))));
    }
}

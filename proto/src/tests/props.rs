//! Property tests: parsing never panics; events survive a JSON round trip.

use proptest::prelude::*;

use crate::{
    parse_request, parse_status, Conv, Envelope, Event, Media, MsgEvent, Request, SendRequest,
    Target,
};

/// Fragments that make random strings look like requests often enough to reach deep checks.
fn json_ish() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(",".to_owned()),
        Just(":".to_owned()),
        Just("null".to_owned()),
        Just("\"type\":".to_owned()),
        Just("\"send\"".to_owned()),
        Just("\"sync\"".to_owned()),
        Just("\"to\":".to_owned()),
        Just("\"group\":".to_owned()),
        Just("\"body\":".to_owned()),
        Just("\"media\":".to_owned()),
        Just("\"id\":".to_owned()),
        Just("\"req\":".to_owned()),
        Just("\"device\":".to_owned()),
        Just("\"conv\":".to_owned()),
        Just("\"d.a.b\"".to_owned()),
        Just("\"limit\":".to_owned()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| n.to_string()),
        "\"[a-z0-9]{0,40}\"",
        "\\PC{0,8}",
    ];
    prop::collection::vec(atom, 0..40).prop_map(|parts| parts.concat())
}

/// A valid id (user, group, device).
pub(super) fn id() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,32}"
}

/// A valid media reference.
pub(super) fn media() -> impl Strategy<Value = Media> {
    (
        "[0-9a-f]{64}",
        "[a-z]{1,10}/[a-z0-9.+-]{1,20}",
        1..u64::MAX,
        proptest::option::of("\\PC{0,50}"),
    )
        .prop_map(|(media_id, mime, size, caption)| Media {
            media_id,
            mime,
            size,
            caption,
        })
}

fn msg_event() -> impl Strategy<Value = MsgEvent> {
    let target = prop_oneof![id().prop_map(Target::To), id().prop_map(Target::Group)];
    (
        (any::<u64>(), id(), any::<u64>(), target),
        (
            proptest::option::of("\\PC{0,200}"),
            proptest::option::of(media()),
        ),
        (
            proptest::option::of(any::<u64>()),
            any::<u64>(),
            proptest::option::of(any::<u64>()),
        ),
    )
        .prop_filter_map(
            "a direct conversation needs two users",
            |(head, content, tail)| {
                let (msg_id, from, seq, target) = head;
                let conv = match &target {
                    Target::To(to) => Conv::direct(&from, to).ok()?,
                    Target::Group(g) => Conv::Group(g.clone()),
                };
                let (body, media) = content;
                let (reply_to, ts, n) = tail;
                Some(MsgEvent {
                    msg_id,
                    conv,
                    seq,
                    from,
                    target,
                    body,
                    media,
                    reply_to,
                    ts,
                    n,
                    from_deleted: false,
                })
            },
        )
}

fn send_envelope() -> impl Strategy<Value = Envelope> {
    let target = prop_oneof![id().prop_map(Target::To), id().prop_map(Target::Group)];
    let content = prop_oneof![
        ("\\PC{1,300}", proptest::option::of(media())).prop_map(|(b, m)| (Some(b), m)),
        media().prop_map(|m| (None, Some(m))),
    ];
    (
        (
            proptest::option::of("\\PC{0,64}"),
            proptest::option::of(id()),
        ),
        (
            "\\PC{1,64}",
            target,
            content,
            proptest::option::of(any::<u64>()),
        ),
    )
        .prop_map(
            |((req, device), (id, target, (body, media), reply_to))| Envelope {
                req,
                device,
                request: Request::Send(SendRequest {
                    id,
                    target,
                    body,
                    media,
                    reply_to,
                }),
            },
        )
}

proptest! {
    #[test]
    fn parse_request_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_request(&bytes);
        let _ = parse_status(&bytes);
    }

    #[test]
    fn parse_request_never_panics_on_json_ish(s in json_ish()) {
        let _ = parse_request(s.as_bytes());
        let _ = parse_request(format!("{{\"type\":\"send\",{s}}}").as_bytes());
        let _ = parse_status(s.as_bytes());
    }

    #[test]
    fn send_requests_round_trip(envelope in send_envelope()) {
        let json = envelope.to_json();
        prop_assert_eq!(parse_request(&json).ok(), Some(envelope));
    }

    #[test]
    fn msg_events_round_trip(msg in msg_event()) {
        let event = Event::Msg(msg);
        let json = event.to_json();
        prop_assert_eq!(Event::from_json(&json).ok(), Some(event));
    }
}

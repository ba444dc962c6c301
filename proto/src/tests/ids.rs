use crate::{valid_id, Conv, ConvError, Target};

#[test]
fn valid_ids() {
    for id in ["a", "0", "alice", "bob42", &"z".repeat(32)] {
        assert!(valid_id(id), "{id}");
    }
    for id in [
        "",
        "Alice",
        "al ice",
        "al.ice",
        "al-ice",
        "é",
        &"z".repeat(33),
    ] {
        assert!(!valid_id(id), "{id}");
    }
}

#[test]
fn direct_sorts_its_users() {
    let conv = Conv::direct("bob", "alice").unwrap();
    assert_eq!(conv, Conv::Direct("alice".into(), "bob".into()));
    assert_eq!(conv, Conv::direct("alice", "bob").unwrap());
    assert_eq!(conv.to_string(), "d.alice.bob");
}

#[test]
fn direct_refuses_same_user_and_invalid_ids() {
    assert_eq!(Conv::direct("amy", "amy"), Err(ConvError::SameUser));
    assert_eq!(Conv::direct("Amy", "bob"), Err(ConvError::Malformed));
    assert_eq!(Conv::direct("amy", ""), Err(ConvError::Malformed));
}

#[test]
fn parse_accepts_canonical_forms() {
    assert_eq!(
        Conv::parse("d.a.b").unwrap(),
        Conv::Direct("a".into(), "b".into())
    );
    assert_eq!(Conv::parse("g.x").unwrap(), Conv::Group("x".into()));
    // Byte order: digits before letters, a prefix before the longer id.
    assert!(Conv::parse("d.9.a").is_ok());
    assert!(Conv::parse("d.ab.abc").is_ok());
    for s in ["d.a.b", "g.x", "d.0.z", "g.abc123"] {
        assert_eq!(Conv::parse(s).unwrap().to_string(), s);
    }
}

#[test]
fn parse_refuses_everything_else() {
    assert_eq!(Conv::parse("d.b.a"), Err(ConvError::Unordered));
    assert_eq!(Conv::parse("d.abc.ab"), Err(ConvError::Unordered));
    assert_eq!(Conv::parse("d.a.a"), Err(ConvError::SameUser));
    for s in [
        "x", "", "d.", "d.a", "d.a.", "d..b", "d.a.b.c", "g.", "g.X", "g.a.b", "D.a.b", "G.x",
        "d.A.b", "x.a.b", " g.x", "g.x ",
    ] {
        assert_eq!(Conv::parse(s), Err(ConvError::Malformed), "{s:?}");
    }
    assert!(Conv::parse(&format!("g.{}", "a".repeat(33))).is_err());
}

#[test]
fn members_and_other() {
    let d = Conv::parse("d.amy.bob").unwrap();
    assert_eq!(d.members_direct(), Some(("amy", "bob")));
    assert!(d.is_member_direct("amy") && d.is_member_direct("bob"));
    assert!(!d.is_member_direct("cat"));
    assert_eq!(d.other("amy"), Some("bob"));
    assert_eq!(d.other("bob"), Some("amy"));
    assert_eq!(d.other("cat"), None);
    assert_eq!(d.group_id(), None);

    let g = Conv::parse("g.team").unwrap();
    assert_eq!(g.members_direct(), None);
    assert!(!g.is_member_direct("team"));
    assert_eq!(g.other("team"), None);
    assert_eq!(g.group_id(), Some("team"));
}

#[test]
fn conv_is_a_json_string() {
    let conv = Conv::parse("d.amy.bob").unwrap();
    assert_eq!(serde_json::to_string(&conv).unwrap(), r#""d.amy.bob""#);
    assert_eq!(
        serde_json::from_str::<Conv>(r#""d.amy.bob""#).unwrap(),
        conv
    );
    assert!(serde_json::from_str::<Conv>(r#""d.bob.amy""#).is_err());
    assert_eq!("g.x".parse::<Conv>().unwrap(), Conv::Group("x".into()));
}

#[test]
fn target_conv() {
    assert_eq!(
        Target::To("amy".into()).conv("bob").unwrap().to_string(),
        "d.amy.bob"
    );
    assert_eq!(
        Target::Group("team".into())
            .conv("bob")
            .unwrap()
            .to_string(),
        "g.team"
    );
    assert_eq!(
        Target::To("bob".into()).conv("bob"),
        Err(ConvError::SameUser)
    );
}

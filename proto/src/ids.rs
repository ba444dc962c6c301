//! Identifiers: user, device and group ids ([`valid_id`]) and conversation ids ([`Conv`]).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest user, device or group id accepted by [`valid_id`].
pub const MAX_ID_LEN: usize = 32;

/// Whether `s` is a valid user, device or group id: 1 to 32 characters of `[a-z0-9]`.
///
/// Lower-case letters and digits only, so an id never needs escaping in an MQTT topic or a
/// conversation id, and is a valid rumqttd tenant id.
pub fn valid_id(s: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Why a conversation id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConvError {
    /// Neither `d.{a}.{b}` nor `g.{group_id}`, or an id in it is not a valid id.
    #[error("not a conversation id (d.{{a}}.{{b}} or g.{{group_id}}, ids of 1-32 [a-z0-9])")]
    Malformed,
    /// `d.{a}.{b}` with `a > b`: every direct conversation has exactly one spelling.
    #[error("the users of d.{{a}}.{{b}} must be in order (a < b)")]
    Unordered,
    /// `d.{a}.{a}`, or [`Conv::direct`] with the same user twice.
    #[error("a direct conversation needs two different users")]
    SameUser,
}

/// A conversation id: `d.{a}.{b}` for the 1:1 chat of users `a < b`, `g.{group_id}` for a group.
///
/// Users are compared as byte strings, so digits sort before letters and a prefix before the
/// longer id (`"ab" < "abc" < "b"`). [`Conv::parse`] accepts only the canonical spelling and
/// [`fmt::Display`] gives it back; on the wire a `Conv` is that string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Conv {
    /// The direct conversation of two users; the first is the smaller.
    Direct(String, String),
    /// A group conversation.
    Group(String),
}

impl Conv {
    /// The direct conversation between `x` and `y`, in either order.
    pub fn direct(x: &str, y: &str) -> Result<Conv, ConvError> {
        if !valid_id(x) || !valid_id(y) {
            return Err(ConvError::Malformed);
        }
        match x.cmp(y) {
            std::cmp::Ordering::Less => Ok(Conv::Direct(x.to_owned(), y.to_owned())),
            std::cmp::Ordering::Greater => Ok(Conv::Direct(y.to_owned(), x.to_owned())),
            std::cmp::Ordering::Equal => Err(ConvError::SameUser),
        }
    }

    /// The conversation of group `group_id`.
    pub fn group(group_id: &str) -> Result<Conv, ConvError> {
        if valid_id(group_id) {
            Ok(Conv::Group(group_id.to_owned()))
        } else {
            Err(ConvError::Malformed)
        }
    }

    /// Parses the canonical form: `d.{a}.{b}` with valid ids `a < b`, or `g.{group_id}`.
    pub fn parse(s: &str) -> Result<Conv, ConvError> {
        if let Some(group_id) = s.strip_prefix("g.") {
            return Conv::group(group_id);
        }
        let Some((a, b)) = s.strip_prefix("d.").and_then(|rest| rest.split_once('.')) else {
            return Err(ConvError::Malformed);
        };
        if !valid_id(a) || !valid_id(b) {
            return Err(ConvError::Malformed);
        }
        match a.cmp(b) {
            std::cmp::Ordering::Less => Ok(Conv::Direct(a.to_owned(), b.to_owned())),
            std::cmp::Ordering::Greater => Err(ConvError::Unordered),
            std::cmp::Ordering::Equal => Err(ConvError::SameUser),
        }
    }

    /// The two users of a direct conversation (smaller first); `None` for a group.
    pub fn members_direct(&self) -> Option<(&str, &str)> {
        match self {
            Conv::Direct(a, b) => Some((a, b)),
            Conv::Group(_) => None,
        }
    }

    /// Whether `user` is one of the two users of a direct conversation (always `false` for a
    /// group: group membership lives in the store).
    pub fn is_member_direct(&self, user: &str) -> bool {
        matches!(self, Conv::Direct(a, b) if a == user || b == user)
    }

    /// The other user of a direct conversation that `user` is part of; `None` for a group or
    /// when `user` is not one of the two.
    pub fn other(&self, user: &str) -> Option<&str> {
        match self {
            Conv::Direct(a, b) if a == user => Some(b),
            Conv::Direct(a, b) if b == user => Some(a),
            _ => None,
        }
    }

    /// The group id of a group conversation; `None` for a direct one.
    pub fn group_id(&self) -> Option<&str> {
        match self {
            Conv::Group(g) => Some(g),
            Conv::Direct(..) => None,
        }
    }
}

impl fmt::Display for Conv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Conv::Direct(a, b) => write!(f, "d.{a}.{b}"),
            Conv::Group(g) => write!(f, "g.{g}"),
        }
    }
}

impl std::str::FromStr for Conv {
    type Err = ConvError;

    fn from_str(s: &str) -> Result<Conv, ConvError> {
        Conv::parse(s)
    }
}

impl TryFrom<String> for Conv {
    type Error = ConvError;

    fn try_from(s: String) -> Result<Conv, ConvError> {
        Conv::parse(&s)
    }
}

impl From<Conv> for String {
    fn from(conv: Conv) -> String {
        conv.to_string()
    }
}

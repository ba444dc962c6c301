//! Small wire types shared by requests and events: the closed string sets (`"read"`,
//! `"start"`, `"admin"` ...), [`Target`], [`Media`] and the decimal-string form of `msg_id`.

use serde::{Deserialize, Serialize};

use crate::ids::{Conv, ConvError};

/// A closed set of wire strings, for parsing with an error message that lists the choices.
pub(crate) trait WireEnum: Sized + Copy {
    /// Every wire name, in declaration order.
    const NAMES: &'static [&'static str];
    /// The variant with this wire name.
    fn from_wire(s: &str) -> Option<Self>;
}

/// Declares a fieldless enum whose variants travel as fixed strings: serde (de)serialisation,
/// `as_str`, `from_wire`, `NAMES` and `Display` all come from the one table.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $wire:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $wire)] $variant, )+
        }

        impl $name {
            /// Every wire name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($wire),+];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $wire, )+
                }
            }

            /// The variant with this wire name.
            pub fn from_wire(s: &str) -> Option<$name> {
                match s {
                    $( $wire => Some($name::$variant), )+
                    _ => None,
                }
            }
        }

        impl $crate::types::WireEnum for $name {
            const NAMES: &'static [&'static str] = $name::NAMES;

            fn from_wire(s: &str) -> Option<$name> {
                $name::from_wire(s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use wire_enum;

wire_enum! {
    /// How far a receipt says messages got.
    pub enum ReceiptStatus {
        /// Reached a device of the user.
        Delivered = "delivered",
        /// Read by the user; implies `delivered`.
        Read = "read",
    }
}

wire_enum! {
    /// A typing indicator's state.
    pub enum TypingState {
        /// The user started typing.
        Start = "start",
        /// The user stopped typing (or sent the message).
        Stop = "stop",
    }
}

wire_enum! {
    /// A push service.
    pub enum Platform {
        /// Firebase Cloud Messaging (Android, web).
        Fcm = "fcm",
        /// Apple Push Notification service.
        Apns = "apns",
    }
}

wire_enum! {
    /// A group member's role.
    pub enum Role {
        /// May add and remove members; the creator is the first admin.
        Admin = "admin",
        /// An ordinary member.
        Member = "member",
    }
}

wire_enum! {
    /// What happened to a group, in a `group` event.
    pub enum GroupChange {
        /// The group was created; `members` is the whole initial membership.
        Created = "created",
        /// `members` were added.
        Added = "added",
        /// `members` were removed by an admin.
        Removed = "removed",
        /// `members` (the user named in `by`) left.
        Left = "left",
    }
}

wire_enum! {
    /// Whether a user has a connected device.
    pub enum PresenceState {
        /// At least one device is connected.
        Online = "online",
        /// No device is connected.
        Offline = "offline",
    }
}

wire_enum! {
    /// Who a privacy setting lets in (`privacy` request and event).
    pub enum Audience {
        /// Any user.
        Everyone = "everyone",
        /// The user's contacts: users they have written to.
        Contacts = "contacts",
        /// No one.
        Nobody = "nobody",
    }
}

/// Where a message or typing indicator goes: `"to": user_id` for a 1:1 chat or
/// `"group": group_id`. On the wire it is flattened into the request or event, and exactly one
/// of the two fields is present.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A user, for the direct conversation with them.
    To(String),
    /// A group.
    Group(String),
}

impl Target {
    /// The conversation this target means for user `me`: `d.{me}.{to}` (ordered) or
    /// `g.{group}`. Fails when `to` is `me`.
    pub fn conv(&self, me: &str) -> Result<Conv, ConvError> {
        match self {
            Target::To(user) => Conv::direct(me, user),
            Target::Group(group) => Conv::group(group),
        }
    }
}

/// Longest accepted `media.mime`, in characters.
pub const MAX_MIME_LEN: usize = 127;
/// Longest accepted `media.caption`, in characters.
pub const MAX_CAPTION_LEN: usize = 1024;
/// Length of `media.media_id`: the lowercase hex SHA-256 of the file.
pub const MEDIA_ID_LEN: usize = 64;

/// A reference to an uploaded file (`POST /v1/media`), attached to a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Media {
    /// Hex SHA-256 of the bytes, as returned by the upload.
    pub media_id: String,
    /// The content type, e.g. `image/jpeg`.
    pub mime: String,
    /// Size in bytes, at least 1.
    pub size: u64,
    /// Optional caption shown with the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
}

/// Parses a `msg_id` in its wire form: the canonical decimal string of a `u64` (digits only,
/// no sign, no leading zero except `"0"` itself).
pub fn parse_msg_id(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical {
        s.parse().ok()
    } else {
        None
    }
}

/// Serde adapter: a `u64` msg id as a decimal string (JSON numbers lose precision above 2^53).
pub(crate) mod msg_id_str {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_msg_id(&s).ok_or_else(|| D::Error::custom("msg id: expected a decimal string"))
    }
}

/// Serde adapter: an optional `u64` msg id as a decimal string; use with `default` and
/// `skip_serializing_if = "Option::is_none"`.
pub(crate) mod opt_msg_id_str {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(id: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => s.collect_str(id),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => super::parse_msg_id(&s)
                .map(Some)
                .ok_or_else(|| D::Error::custom("msg id: expected a decimal string")),
        }
    }
}

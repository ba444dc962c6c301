//! Typed, validating access to the fields of one JSON object. Every failure names the field
//! (`"media.size: expected an unsigned integer"`), so a client author can fix the request from
//! the error alone.
//!
//! A field whose value is `null` counts as absent: many JSON encoders write `null` for an
//! unset optional field.

use std::collections::HashSet;
use std::fmt::Display;

use serde_json::{Map, Value};

use crate::error::ErrorCode;
use crate::ids::{valid_id, Conv};
use crate::types::WireEnum;

/// Why a request is refused, before the echo fields are attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
}

impl Invalid {
    /// A `bad_request` with this message.
    pub(crate) fn bad(message: impl Into<String>) -> Invalid {
        Invalid {
            code: ErrorCode::BadRequest,
            message: message.into(),
        }
    }
}

/// Result of one validation step.
pub(crate) type Check<T> = Result<T, Invalid>;

/// Longest string quoted back in an error message, in characters.
const MAX_QUOTE_LEN: usize = 40;

/// `s` in double quotes with JSON-like escapes, shortened to [`MAX_QUOTE_LEN`] characters, for
/// echoing client input in an error message.
pub(crate) fn quote(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTE_LEN) {
        Some((cut, _)) => format!("{:?}...", &s[..cut]),
        None => format!("{s:?}"),
    }
}

/// The fields of one JSON object; `prefix` is prepended to field names in error messages
/// (`"media."` for the fields of `media`).
#[derive(Clone, Copy)]
pub(crate) struct Fields<'a> {
    map: &'a Map<String, Value>,
    prefix: &'static str,
}

impl<'a> Fields<'a> {
    /// The fields of a top-level object.
    pub(crate) fn new(map: &'a Map<String, Value>) -> Fields<'a> {
        Fields { map, prefix: "" }
    }

    /// A `bad_request` naming `key`: `"{prefix}{key}: {problem}"`.
    pub(crate) fn fail(&self, key: &str, problem: impl Display) -> Invalid {
        Invalid::bad(format!("{}{key}: {problem}", self.prefix))
    }

    /// The value of `key`; `None` when absent or `null`.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn required<T>(&self, key: &str, value: Option<T>) -> Check<T> {
        value.ok_or_else(|| self.fail(key, "missing"))
    }

    /// An optional string.
    pub(crate) fn opt_str(&self, key: &str) -> Check<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.fail(key, "expected a string")),
        }
    }

    /// A required string.
    pub(crate) fn str(&self, key: &str) -> Check<&'a str> {
        let value = self.opt_str(key)?;
        self.required(key, value)
    }

    /// An optional string of at most `max` characters (Unicode scalar values).
    pub(crate) fn opt_str_max(&self, key: &str, max: usize) -> Check<Option<&'a str>> {
        let value = self.opt_str(key)?;
        match value {
            Some(s) if s.chars().nth(max).is_some() => {
                Err(self.fail(key, format!("longer than {max} characters")))
            }
            _ => Ok(value),
        }
    }

    /// An optional unsigned integer (a JSON number without sign, fraction or exponent that
    /// fits in a `u64`).
    pub(crate) fn opt_u64(&self, key: &str) -> Check<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.fail(key, "expected an unsigned integer")),
        }
    }

    /// A required unsigned integer that is at least 1.
    pub(crate) fn positive_u64(&self, key: &str) -> Check<u64> {
        let value = self.opt_u64(key)?;
        match self.required(key, value)? {
            0 => Err(self.fail(key, "must be at least 1")),
            n => Ok(n),
        }
    }

    /// A page size: `default` when absent, clamped to `max`, refused when 0.
    pub(crate) fn limit(&self, key: &str, default: usize, max: usize) -> Check<usize> {
        match self.opt_u64(key)? {
            None => Ok(default),
            Some(0) => Err(self.fail(key, "must be at least 1")),
            Some(n) => Ok(usize::try_from(n).unwrap_or(max).min(max)),
        }
    }

    /// An optional id ([`valid_id`]); `what` names it in the error (`"user id"`).
    pub(crate) fn opt_id(&self, key: &str, what: &str) -> Check<Option<String>> {
        match self.opt_str(key)? {
            None => Ok(None),
            Some(s) if valid_id(s) => Ok(Some(s.to_owned())),
            Some(_) => Err(self.fail(key, format!("not a valid {what}"))),
        }
    }

    /// A required id ([`valid_id`]); `what` names it in the error (`"group id"`).
    pub(crate) fn id(&self, key: &str, what: &str) -> Check<String> {
        let value = self.opt_id(key, what)?;
        self.required(key, value)
    }

    /// A required array of at most `max` ids (counted before deduplication), deduplicated
    /// with the first occurrence kept. An invalid entry is named by index: `"members[2]: not a
    /// valid user id"`.
    pub(crate) fn ids(
        &self,
        key: &str,
        what: &str,
        non_empty: bool,
        max: usize,
    ) -> Check<Vec<String>> {
        let items = match self.get(key) {
            None => return Err(self.fail(key, "missing")),
            Some(Value::Array(items)) => items,
            Some(_) => return Err(self.fail(key, "expected an array")),
        };
        if non_empty && items.is_empty() {
            return Err(self.fail(key, "must not be empty"));
        }
        if items.len() > max {
            return Err(self.fail(key, format!("more than {max} entries")));
        }
        let mut seen = HashSet::with_capacity(items.len());
        let mut ids = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) if valid_id(s) => {
                    if seen.insert(s) {
                        ids.push(s.to_owned());
                    }
                }
                _ => return Err(self.fail(&format!("{key}[{i}]"), format!("not a valid {what}"))),
            }
        }
        Ok(ids)
    }

    /// A required conversation id.
    pub(crate) fn conv(&self, key: &str) -> Check<Conv> {
        Conv::parse(self.str(key)?).map_err(|e| self.fail(key, e))
    }

    /// A required member of a closed string set.
    pub(crate) fn wire<E: WireEnum>(&self, key: &str) -> Check<E> {
        let s = self.str(key)?;
        E::from_wire(s).ok_or_else(|| {
            let names: Vec<String> = E::NAMES.iter().map(|n| format!("{n:?}")).collect();
            self.fail(key, format!("expected {}", names.join(" or ")))
        })
    }

    /// An optional member of a closed string set.
    pub(crate) fn opt_wire<E: WireEnum>(&self, key: &str) -> Check<Option<E>> {
        match self.get(key) {
            None => Ok(None),
            Some(_) => self.wire(key).map(Some),
        }
    }

    /// An optional nested object, whose fields report errors as `"{key}.{field}"`.
    pub(crate) fn opt_object(
        &self,
        key: &'static str,
        prefix: &'static str,
    ) -> Check<Option<Fields<'a>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Fields { map, prefix })),
            Some(_) => Err(self.fail(key, "expected an object")),
        }
    }
}

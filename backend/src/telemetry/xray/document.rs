//! X-Ray segment documents as typed structs that borrow the spans'
//! strings and serialize straight to JSON, with X-Ray's value limits.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::Value;
use opentelemetry::trace::SpanId;
use serde::{Serialize, Serializer};

use crate::telemetry::ids::put_hex;

pub(super) fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    // No more bytes than `max` is no more characters either: most values
    // need no walk through their characters.
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    match text.char_indices().nth(max) {
        Some((cut, _)) => Cow::Owned(format!("{}…", &text[..cut])),
        None => Cow::Borrowed(text),
    }
}

pub(super) fn seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_micros() as f64) / 1_000_000.0)
}

/// A 64-bit id as X-Ray writes it: 16 lowercase hex digits.
#[derive(Clone, Copy)]
pub(super) struct Hex(pub(super) u64);

impl Hex {
    pub(super) fn of(id: SpanId) -> Hex {
        Hex(u64::from_be_bytes(id.to_bytes()))
    }
}

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut text = [0u8; 16];
        put_hex(&mut text, &self.0.to_be_bytes());
        serializer.serialize_str(std::str::from_utf8(&text).map_err(serde::ser::Error::custom)?)
    }
}

/// An annotation or metadata value.
#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum Scalar<'a> {
    Bool(bool),
    I64(i64),
    F64(f64),
    Text(Cow<'a, str>),
}

impl<'a> Scalar<'a> {
    pub(super) fn new(value: &'a Value, max: usize) -> Scalar<'a> {
        match value {
            Value::Bool(b) => Scalar::Bool(*b),
            Value::I64(i) => Scalar::I64(*i),
            Value::F64(f) => Scalar::F64(*f),
            Value::String(s) => Scalar::Text(truncate(s.as_str(), max)),
            other => Scalar::Text(Cow::Owned(truncate(&other.to_string(), max).into_owned())),
        }
    }
}

/// A JSON object kept as pairs in insertion order; a key set again replaces
/// its value, as a map would.
pub(super) struct Fields<'a>(pub(super) Vec<(Cow<'a, str>, Scalar<'a>)>);

impl<'a> Fields<'a> {
    pub(super) fn insert(&mut self, key: Cow<'a, str>, value: Scalar<'a>) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, old)) => *old = value,
            None => self.0.push((key, value)),
        }
    }
}

impl Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

#[derive(Serialize)]
pub(super) struct Http<'a> {
    pub(super) request: HttpRequest<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) response: Option<HttpResponse>,
}

#[derive(Serialize)]
pub(super) struct HttpRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) method: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) client_ip: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) user_agent: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
pub(super) struct HttpResponse {
    pub(super) status: i64,
}

#[derive(Serialize)]
pub(super) struct Cause {
    pub(super) exceptions: Vec<Exception>,
}

#[derive(Serialize)]
pub(super) struct Exception {
    pub(super) id: Hex,
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) message: String,
}

#[derive(Serialize)]
pub(super) struct Sql<'a> {
    pub(super) database_type: &'a str,
    /// Where the database is, for a server database: never with a user
    /// or password, which spans do not carry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) url: Option<String>,
    pub(super) sanitized_query: Cow<'a, str>,
}

#[derive(Serialize)]
pub(super) struct Metadata<'a> {
    pub(super) default: Fields<'a>,
}

/// What names this SDK in every segment.
#[derive(Serialize)]
pub(super) struct Aws {
    xray: Sdk,
}

#[derive(Serialize)]
pub(super) struct Sdk {
    sdk: &'static str,
    sdk_version: &'static str,
}

pub(super) const AWS: Aws = Aws {
    xray: Sdk {
        sdk: "cruddur-backend",
        sdk_version: env!("CARGO_PKG_VERSION"),
    },
};

fn is_false(flag: &bool) -> bool {
    !flag
}

/// One segment or subsegment document. Written straight from the spans'
/// borrowed strings: building `serde_json` maps first cost an allocation
/// per key and value and most of the X-Ray sink's time.
#[derive(Serialize)]
pub(super) struct Document<'a> {
    pub(super) name: String,
    pub(super) id: Hex,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub(super) kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) trace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) parent_id: Option<Hex>,
    pub(super) start_time: f64,
    pub(super) end_time: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) http: Option<Http<'a>>,
    #[serde(skip_serializing_if = "is_false")]
    pub(super) fault: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub(super) error: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub(super) throttle: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) cause: Option<Cause>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) sql: Option<Sql<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) namespace: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) annotations: Option<Fields<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) metadata: Option<Metadata<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) aws: Option<&'static Aws>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) subsegments: Vec<Document<'a>>,
}

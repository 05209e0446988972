//! Rollbar items as plain data: what one report holds, how it becomes the
//! JSON of Rollbar's item API, scrubbing, fingerprints and the size limit.
//! Pure functions, so all of it is tested without a network.

use std::backtrace::Backtrace;
use std::borrow::Cow;
use std::mem::size_of;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use http::{HeaderMap, Method, Uri};
use opentelemetry::trace::{SpanId, TraceId};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::RollbarLevel;
use crate::telemetry::ids::xray_trace_id;
use crate::telemetry::queue::Weigh;
use crate::telemetry::scrub::{SCRUBBED, is_secret_name, scrub_query};

/// Rollbar refuses larger items; ours are cut down to fit.
pub const MAX_PAYLOAD_BYTES: usize = 128 * 1024;
/// Headers that carry credentials whatever their value looks like.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "set-cookie",
    "x-honeycomb-team",
    "x-rollbar-access-token",
    "x-api-key",
];

fn is_secret_header(name: &str) -> bool {
    SECRET_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) || is_secret_name(name)
}

/// Replaces the value of every secret-looking key, at any depth.
pub fn scrub_json(value: &mut Value) {
    match value {
        Value::Object(map) => scrub_map(map),
        Value::Array(items) => items.iter_mut().for_each(scrub_json),
        _ => {}
    }
}

pub fn scrub_map(map: &mut Map<String, Value>) {
    for (key, value) in map.iter_mut() {
        if is_secret_name(key) {
            *value = Value::from(SCRUBBED);
        } else {
            scrub_json(value);
        }
    }
}

/// A JSON request body with its secret fields replaced; anything that is not
/// JSON is left out, since it cannot be scrubbed by name.
pub fn scrub_body(raw: &[u8]) -> Option<String> {
    let mut value: Value = serde_json::from_slice(raw).ok()?;
    scrub_json(&mut value);
    Some(value.to_string())
}

/// The request an item is about, already scrubbed.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestInfo {
    pub url: String,
    pub method: String,
    pub headers: Map<String, Value>,
    pub query_string: String,
    pub params: Map<String, Value>,
    pub user_ip: String,
    pub body: Option<String>,
}

impl RequestInfo {
    pub fn new(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        user_ip: String,
        body: Option<&[u8]>,
    ) -> RequestInfo {
        let mut shown = Map::new();
        for (name, value) in headers {
            let text = if is_secret_header(name.as_str()) {
                SCRUBBED.to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            // A repeated header shows all its values, as one line would.
            let joined = match shown.remove(name.as_str()) {
                Some(Value::String(before)) => format!("{before}, {text}"),
                _ => text,
            };
            shown.insert(name.as_str().to_owned(), Value::from(joined));
        }
        let (query_string, params) = scrub_query(uri.query().unwrap_or_default());
        let scheme = match headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
        {
            Some("https") => "https",
            _ => "http",
        };
        let host = headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()))
            .unwrap_or("localhost");
        let mut url = format!("{scheme}://{host}{}", uri.path());
        if !query_string.is_empty() {
            url.push('?');
            url.push_str(&query_string);
        }
        RequestInfo {
            url,
            method: method.as_str().to_owned(),
            headers: shown,
            query_string,
            params,
            user_ip,
            body: body.and_then(scrub_body),
        }
    }

    fn to_json(&self) -> Value {
        let mut request = json!({
            "url": self.url,
            "method": self.method,
            "headers": self.headers,
            "query_string": self.query_string,
            "GET": self.params,
            "user_ip": self.user_ip,
        });
        if let Some(body) = &self.body {
            request["body"] = Value::from(body.as_str());
        }
        request
    }
}

/// One stack frame, oldest first in a trace as Rollbar expects.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub filename: String,
    pub lineno: Option<u32>,
    pub method: String,
}

/// A panic's stack. Captured on the panicking thread (the unwinding is
/// cheap); its symbols, which take milliseconds to resolve and read the
/// binary's symbol tables the first time, only by the Rollbar worker and
/// only for the reports the rate limit lets through, so a storm of panics
/// does not slow the requests.
#[derive(Debug, Clone)]
pub enum Stack {
    Captured(Arc<Backtrace>),
    Frames(Vec<Frame>),
}

/// What [`Weigh`] counts for a stack not yet resolved: about 50 frames.
const CAPTURED_WEIGHT: usize = 4096;

impl Stack {
    /// Frames, oldest first.
    pub fn frames(&self) -> Cow<'_, [Frame]> {
        match self {
            Stack::Captured(backtrace) => Cow::Owned(frames_from_backtrace(&backtrace.to_string())),
            Stack::Frames(frames) => Cow::Borrowed(frames),
        }
    }

    fn weight(&self) -> usize {
        match self {
            Stack::Captured(_) => CAPTURED_WEIGHT,
            Stack::Frames(frames) => frames
                .iter()
                .map(|f| size_of::<Frame>() + f.filename.len() + f.method.len())
                .sum(),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Body {
    /// An exception with its stack: panics.
    Trace {
        class: String,
        message: String,
        stack: Stack,
    },
    /// A message with extra fields (already scrubbed): errors without a stack.
    Message {
        text: String,
        extra: Map<String, Value>,
    },
}

/// The trace and span an item belongs to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceRef {
    pub trace_id: TraceId,
    pub span_id: SpanId,
}

/// One error report, before the worker adds what every item shares.
#[derive(Debug, Clone)]
pub struct Report {
    pub level: RollbarLevel,
    pub timestamp: DateTime<Utc>,
    pub body: Body,
    pub request: Option<RequestInfo>,
    /// The route template, as Rollbar's `context`.
    pub context: Option<String>,
    pub trace: Option<TraceRef>,
    pub fingerprint: String,
}

impl Report {
    pub fn new(level: RollbarLevel, body: Body, site: &str) -> Report {
        Report {
            level,
            timestamp: Utc::now(),
            body,
            request: None,
            context: None,
            trace: None,
            fingerprint: fingerprint(site),
        }
    }
}

/// What every item from this process carries.
#[derive(Debug, Clone)]
pub struct Origin {
    pub environment: String,
    pub host: String,
    pub root: String,
    pub code_version: String,
}

/// A short stable id for an error site, so a storm groups into one item.
/// FNV-1a: the same site gives the same fingerprint across builds and hosts.
pub fn fingerprint(site: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in site.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The `data` object of Rollbar's item API.
pub fn item_json(report: &Report, origin: &Origin) -> Value {
    let body = match &report.body {
        Body::Trace {
            class,
            message,
            stack,
        } => json!({ "trace": {
            "exception": { "class": class, "message": message },
            "frames": stack.frames().iter().map(|f| {
                let mut frame = json!({ "filename": f.filename, "method": f.method });
                if let Some(line) = f.lineno {
                    frame["lineno"] = Value::from(line);
                }
                frame
            }).collect::<Vec<_>>(),
        }}),
        Body::Message { text, extra } => {
            let mut message = extra.clone();
            scrub_map(&mut message);
            message.insert("body".into(), Value::from(text.as_str()));
            json!({ "message": message })
        }
    };
    let mut data = json!({
        "environment": origin.environment,
        "level": report.level.as_str(),
        "timestamp": report.timestamp.timestamp(),
        "platform": std::env::consts::OS,
        "language": "rust",
        "framework": "axum",
        "body": body,
        "server": {
            "host": origin.host,
            "root": origin.root,
            "code_version": origin.code_version,
        },
        "code_version": origin.code_version,
        "uuid": Uuid::new_v4().to_string(),
        "fingerprint": report.fingerprint,
        "notifier": { "name": "cruddur-backend", "version": env!("CARGO_PKG_VERSION") },
    });
    if let Some(request) = &report.request {
        data["request"] = request.to_json();
    }
    if let Some(context) = &report.context {
        data["context"] = Value::from(context.as_str());
    }
    if let Some(trace) = &report.trace {
        data["custom"] = json!({
            "trace_id": format!("{:032x}", trace.trace_id),
            "span_id": format!("{:016x}", trace.span_id),
            "xray_trace_id": xray_trace_id(trace.trace_id),
        });
    }
    data
}

/// Frames kept at each end of a stack that is too large.
const KEPT_FRAMES: usize = 10;

fn shorten_strings(value: &mut Value, max_chars: usize) {
    match value {
        Value::String(text) => {
            if let Some((cut, _)) = text.char_indices().nth(max_chars) {
                text.truncate(cut);
                text.push('…');
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| shorten_strings(v, max_chars)),
        Value::Object(map) => map.values_mut().for_each(|v| shorten_strings(v, max_chars)),
        _ => {}
    }
}

/// The request body Rollbar receives: `{"data": ...}`, cut down to
/// [`MAX_PAYLOAD_BYTES`]: the middle of the stack first, then long strings,
/// then the request body and extras, as a last resort the message itself.
pub fn encode(mut data: Value) -> Vec<u8> {
    let fits = |data: &Value| {
        let bytes = json!({ "data": data }).to_string().into_bytes();
        (bytes.len() <= MAX_PAYLOAD_BYTES).then_some(bytes)
    };
    if let Some(bytes) = fits(&data) {
        return bytes;
    }
    if let Some(frames) = data
        .pointer_mut("/body/trace/frames")
        .and_then(Value::as_array_mut)
        && frames.len() > 2 * KEPT_FRAMES
    {
        frames.drain(KEPT_FRAMES..frames.len() - KEPT_FRAMES);
    }
    for max_chars in [1024, 256] {
        if let Some(bytes) = fits(&data) {
            return bytes;
        }
        shorten_strings(&mut data, max_chars);
    }
    if let Some(bytes) = fits(&data) {
        return bytes;
    }
    if let Some(request) = data.get_mut("request").and_then(Value::as_object_mut) {
        request.remove("body");
        request.insert("headers".into(), json!({}));
        request.insert("GET".into(), json!({}));
    }
    if let Some(bytes) = fits(&data) {
        return bytes;
    }
    data["body"] = json!({ "message": { "body": "item too large for Rollbar: truncated" } });
    json!({ "data": data }).to_string().into_bytes()
}

/// Frames of the panic machinery rather than of the code that panicked: the
/// standard library (also its trait impls, `<alloc::...>`) and this
/// module's hook. The hook is known by its file as well: a build whose
/// debug info is line tables only names it `{closure#0}`, with no path.
fn is_machinery(frame: &Frame) -> bool {
    let path = frame.method.trim_start_matches('<');
    ["std::", "core::", "alloc::", "rust_begin_unwind", "__rust"]
        .iter()
        .any(|prefix| path.starts_with(prefix))
        || path.contains("telemetry::rollbar::")
        || frame.filename.contains("src/telemetry/rollbar/")
}

/// Frames out of `std::backtrace::Backtrace`'s text, oldest first, without
/// the panic machinery on top.
pub fn frames_from_backtrace(text: &str) -> Vec<Frame> {
    let mut newest_first: Vec<Frame> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(location) = line.strip_prefix("at ") {
            let mut parts = location.rsplitn(3, ':');
            let (column, line_no, file) = (parts.next(), parts.next(), parts.next());
            if let (Some(frame), Some(_), Some(line_no), Some(file)) =
                (newest_first.last_mut(), column, line_no, file)
            {
                frame.filename = file.to_owned();
                frame.lineno = line_no.parse().ok();
            }
        } else if let Some((index, method)) = line.split_once(": ")
            && index.chars().all(|c| c.is_ascii_digit())
            && !index.is_empty()
        {
            newest_first.push(Frame {
                filename: "<unknown>".into(),
                lineno: None,
                method: method.to_owned(),
            });
        }
    }
    let skip = newest_first.iter().take_while(|f| is_machinery(f)).count();
    let mut frames: Vec<Frame> = newest_first.split_off(skip);
    frames.reverse();
    frames
}

impl Weigh for Report {
    fn weight(&self) -> usize {
        let body = match &self.body {
            Body::Trace {
                class,
                message,
                stack,
            } => class.len() + message.len() + stack.weight(),
            Body::Message { text, extra } => text.len() + map_weight(extra),
        };
        let request = self.request.as_ref().map_or(0, |r| {
            size_of::<RequestInfo>()
                + r.url.len()
                + r.method.len()
                + map_weight(&r.headers)
                + r.query_string.len()
                + map_weight(&r.params)
                + r.user_ip.len()
                + r.body.as_ref().map_or(0, String::len)
        });
        size_of::<Report>()
            + body
            + request
            + self.context.as_ref().map_or(0, String::len)
            + self.fingerprint.len()
    }
}

fn map_weight(map: &Map<String, Value>) -> usize {
    map.iter()
        .map(|(key, value)| key.len() + json_weight(value))
        .sum()
}

fn json_weight(value: &Value) -> usize {
    size_of::<Value>()
        + match value {
            Value::String(text) => text.len(),
            Value::Array(items) => items.iter().map(json_weight).sum(),
            Value::Object(map) => map_weight(map),
            _ => 0,
        }
}

#[cfg(test)]
mod tests;

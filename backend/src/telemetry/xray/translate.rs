//! Spans to X-Ray segment documents: a pure translation, no I/O.
//!
//! A root or SERVER span becomes a segment; its descendants in the same
//! batch are nested in it as subsegments. A span whose parent is not in the
//! batch, and every subsegment of a segment too large for one datagram,
//! goes as an independent subsegment document naming its parent.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;
use serde_json::{Map, Value as Json, json};

use crate::telemetry::ids::xray_trace_id;

/// A UDP datagram holds 64 KiB; the header line takes the rest of the margin.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024 - 64;
/// X-Ray's limit for annotation values.
const MAX_ANNOTATION_CHARS: usize = 1000;
/// Longest string kept in metadata; a 1 MB attribute is never sent whole.
const MAX_METADATA_CHARS: usize = 2048;
/// X-Ray's limit for names and HTTP fields.
const MAX_NAME_CHARS: usize = 200;
const MAX_HTTP_CHARS: usize = 250;

/// How segments are named: `AWS_XRAY_TRACING_NAME` (else the service name),
/// or the request's host when it matches the `AWS_XRAY_URL` pattern.
#[derive(Debug, Clone)]
pub struct Naming {
    pub fallback: String,
    pub pattern: Option<String>,
}

impl Naming {
    fn segment_name(&self, host: Option<&str>) -> String {
        let name = match (&self.pattern, host) {
            (Some(pattern), Some(host)) if wildcard_match(pattern, host) => host,
            _ => self.fallback.as_str(),
        };
        sanitize_name(name)
    }
}

/// X-Ray's `*` (any run) and `?` (one character) wildcards, case-insensitive.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    // Every trace's root is matched against every rule: the common `*` and
    // ASCII cases must not allocate.
    if pattern == "*" {
        return true;
    }
    if pattern.is_ascii() && text.is_ascii() {
        return glob(pattern.as_bytes(), text.as_bytes(), |a, b| {
            a.eq_ignore_ascii_case(b)
        });
    }
    let pattern: Vec<char> = pattern.to_lowercase().chars().collect();
    let text: Vec<char> = text.to_lowercase().chars().collect();
    glob(&pattern, &text, |a, b| a == b)
}

/// `*`/`?` matching with one backtrack point, over bytes or chars.
fn glob<T: Copy + PartialEq + From<u8>>(
    pattern: &[T],
    text: &[T],
    same: impl Fn(&T, &T) -> bool,
) -> bool {
    let (any, one) = (T::from(b'*'), T::from(b'?'));
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == one || same(&pattern[p], &text[t])) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == any {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == any)
}

/// Keeps what X-Ray accepts in a name (letters, digits, spaces and
/// `_.:/%&#=+-@`), replacing anything else with `_`.
pub fn sanitize_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == ' ' || "_.:/%&#=+-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(MAX_NAME_CHARS)
        .collect();
    if clean.is_empty() { "_".into() } else { clean }
}

/// Keeps `[A-Za-z0-9_]` in an annotation key, replacing the rest with `_`.
fn annotation_key(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(500)
        .collect()
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_micros() as f64) / 1_000_000.0)
}

fn hex_id(id: SpanId) -> String {
    format!("{id:016x}")
}

fn json_value(value: &Value, max: usize) -> Json {
    match value {
        Value::Bool(b) => Json::from(*b),
        Value::I64(i) => Json::from(*i),
        Value::F64(f) => Json::from(*f),
        Value::String(s) => Json::from(truncate(s.as_str(), max)),
        other => Json::from(truncate(&other.to_string(), max)),
    }
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn attr_str<'a>(span: &'a SpanData, key: &str) -> Option<&'a str> {
    match attr(span, key)? {
        Value::String(s) => Some(s.as_str()),
        _ => None,
    }
}

fn attr_i64(span: &SpanData, key: &str) -> Option<i64> {
    match attr(span, key)? {
        Value::I64(i) => Some(*i),
        Value::String(s) => s.as_str().parse().ok(),
        _ => None,
    }
}

/// Attribute keys that become X-Ray's own fields rather than metadata.
const HTTP_KEYS: &[&str] = &[
    "http.request.method",
    "url.path",
    "url.scheme",
    "server.address",
    "server.port",
    "client.address",
    "user_agent.original",
    "http.response.status_code",
];
const SQL_KEYS: &[&str] = &["db.system.name", "db.query.text"];

/// The document of one span, without nested subsegments.
fn document(span: &SpanData, name: String) -> Map<String, Json> {
    let mut doc = Map::new();
    doc.insert("name".into(), name.into());
    doc.insert("id".into(), hex_id(span.span_context.span_id()).into());
    doc.insert("start_time".into(), seconds(span.start_time).into());
    doc.insert("end_time".into(), seconds(span.end_time).into());

    let status = attr_i64(span, "http.response.status_code");
    if span.span_kind == SpanKind::Server {
        let mut request = Map::new();
        if let Some(method) = attr_str(span, "http.request.method") {
            request.insert("method".into(), truncate(method, MAX_HTTP_CHARS).into());
        }
        if let Some(path) = attr_str(span, "url.path") {
            let scheme = attr_str(span, "url.scheme").unwrap_or("http");
            let host = attr_str(span, "server.address").unwrap_or("localhost");
            let url = match attr_i64(span, "server.port") {
                Some(port) if port != 80 && port != 443 => {
                    format!("{scheme}://{host}:{port}{path}")
                }
                _ => format!("{scheme}://{host}{path}"),
            };
            request.insert("url".into(), truncate(&url, MAX_HTTP_CHARS - 1).into());
        }
        if let Some(client) = attr_str(span, "client.address") {
            request.insert("client_ip".into(), truncate(client, MAX_HTTP_CHARS).into());
        }
        if let Some(agent) = attr_str(span, "user_agent.original") {
            request.insert(
                "user_agent".into(),
                truncate(agent, MAX_HTTP_CHARS - 1).into(),
            );
        }
        let mut http = Map::new();
        http.insert("request".into(), Json::Object(request));
        if let Some(status) = status {
            http.insert("response".into(), json!({ "status": status }));
        }
        doc.insert("http".into(), Json::Object(http));
    }
    let fault = matches!(span.status, Status::Error { .. }) || status.is_some_and(|s| s >= 500);
    let error = status.is_some_and(|s| (400..500).contains(&s));
    if fault {
        doc.insert("fault".into(), true.into());
    }
    if error {
        doc.insert("error".into(), true.into());
    }
    if status == Some(429) {
        doc.insert("throttle".into(), true.into());
    }

    let exceptions: Vec<Json> = span
        .events
        .iter()
        .filter(|event| event.name == "exception")
        .enumerate()
        .map(|(index, event)| {
            let get = |key: &str| {
                event
                    .attributes
                    .iter()
                    .find(|kv| kv.key.as_str() == key)
                    .map(|kv| truncate(&kv.value.to_string(), MAX_METADATA_CHARS))
            };
            let id = format!(
                "{:016x}",
                u64::from_be_bytes(span.span_context.span_id().to_bytes()) ^ index as u64
            );
            json!({
                "id": id,
                "type": get("exception.type").unwrap_or_else(|| "error".into()),
                "message": get("exception.message").unwrap_or_default(),
            })
        })
        .collect();
    if !exceptions.is_empty() {
        doc.insert("cause".into(), json!({ "exceptions": exceptions }));
    }

    if let (Some(system), Some(query)) = (
        attr_str(span, "db.system.name"),
        attr_str(span, "db.query.text"),
    ) {
        doc.insert(
            "sql".into(),
            json!({
                "database_type": system,
                "sanitized_query": truncate(query, MAX_METADATA_CHARS),
            }),
        );
    }
    if span.span_kind == SpanKind::Client {
        doc.insert("namespace".into(), "remote".into());
    }

    let mut annotations = Map::new();
    let mut metadata = Map::new();
    for KeyValue { key, value, .. } in &span.attributes {
        let key = key.as_str();
        if HTTP_KEYS.contains(&key) || SQL_KEYS.contains(&key) {
            continue;
        }
        let scalar = matches!(
            value,
            Value::Bool(_) | Value::I64(_) | Value::F64(_) | Value::String(_)
        );
        if key.starts_with("app.") && scalar {
            annotations.insert(annotation_key(key), json_value(value, MAX_ANNOTATION_CHARS));
        } else {
            metadata.insert(key.to_owned(), json_value(value, MAX_METADATA_CHARS));
        }
    }
    if !annotations.is_empty() {
        doc.insert("annotations".into(), Json::Object(annotations));
    }
    if !metadata.is_empty() {
        doc.insert("metadata".into(), json!({ "default": metadata }));
    }
    doc
}

/// What names this SDK in every segment.
fn sdk_info() -> Json {
    json!({ "xray": { "sdk": "cruddur-backend", "sdk_version": env!("CARGO_PKG_VERSION") } })
}

fn to_text(doc: &Map<String, Json>) -> String {
    serde_json::to_string(doc).expect("a JSON map always serializes")
}

/// Turns a batch of finished spans into X-Ray documents, each at most
/// `MAX_DOCUMENT_BYTES`.
pub fn documents(spans: &[SpanData], naming: &Naming) -> Vec<String> {
    let by_id: HashMap<SpanId, usize> = spans
        .iter()
        .enumerate()
        .map(|(index, span)| (span.span_context.span_id(), index))
        .collect();
    let is_segment = |span: &SpanData| {
        span.span_kind == SpanKind::Server
            || span.parent_span_id == SpanId::INVALID
            || span.parent_span_is_remote
    };
    // The segment each span belongs to, when it is in this batch.
    let segment_of = |mut index: usize| -> Option<usize> {
        for _ in 0..spans.len() {
            let span = &spans[index];
            if is_segment(span) {
                return Some(index);
            }
            index = *by_id.get(&span.parent_span_id)?;
        }
        None
    };
    let mut children: HashMap<SpanId, Vec<usize>> = HashMap::new();
    let mut orphans = Vec::new();
    let mut segments = Vec::new();
    for (index, span) in spans.iter().enumerate() {
        if is_segment(span) {
            segments.push(index);
        } else if segment_of(index).is_some() {
            children.entry(span.parent_span_id).or_default().push(index);
        } else {
            orphans.push(index);
        }
    }

    let mut out = Vec::new();
    for &index in &segments {
        let span = &spans[index];
        let mut segment = document(span, naming.segment_name(attr_str(span, "server.address")));
        segment.insert(
            "trace_id".into(),
            xray_trace_id(span.span_context.trace_id()).into(),
        );
        if span.parent_span_id != SpanId::INVALID {
            segment.insert("parent_id".into(), hex_id(span.parent_span_id).into());
        }
        segment.insert("aws".into(), sdk_info());
        let subsegments = nest(spans, &children, span.span_context.span_id());
        if !subsegments.is_empty() {
            segment.insert("subsegments".into(), Json::Array(subsegments));
        }
        let text = to_text(&segment);
        if text.len() <= MAX_DOCUMENT_BYTES {
            out.push(text);
            continue;
        }
        segment.remove("subsegments");
        // Too big for one datagram: the segment alone, then each descendant
        // as its own document.
        out.extend(fit(segment));
        let mut stack = vec![span.span_context.span_id()];
        while let Some(parent) = stack.pop() {
            for &child in children.get(&parent).into_iter().flatten() {
                out.extend(independent(&spans[child]));
                stack.push(spans[child].span_context.span_id());
            }
        }
    }
    for &index in &orphans {
        out.extend(independent(&spans[index]));
    }
    out
}

fn nest(spans: &[SpanData], children: &HashMap<SpanId, Vec<usize>>, parent: SpanId) -> Vec<Json> {
    children
        .get(&parent)
        .into_iter()
        .flatten()
        .map(|&index| {
            let span = &spans[index];
            let mut doc = document(span, sanitize_name(&span.name));
            let grandchildren = nest(spans, children, span.span_context.span_id());
            if !grandchildren.is_empty() {
                doc.insert("subsegments".into(), Json::Array(grandchildren));
            }
            Json::Object(doc)
        })
        .collect()
}

/// A subsegment sent on its own: it names its trace and parent.
fn independent(span: &SpanData) -> Option<String> {
    let mut doc = document(span, sanitize_name(&span.name));
    doc.insert("type".into(), "subsegment".into());
    doc.insert(
        "trace_id".into(),
        xray_trace_id(span.span_context.trace_id()).into(),
    );
    doc.insert("parent_id".into(), hex_id(span.parent_span_id).into());
    fit(doc)
}

/// The document as text, shedding metadata and then annotations if it is
/// still too big; `None` only if even that does not fit.
fn fit(mut doc: Map<String, Json>) -> Option<String> {
    for shed in ["metadata", "annotations", "cause", "sql"] {
        let text = to_text(&doc);
        if text.len() <= MAX_DOCUMENT_BYTES {
            return Some(text);
        }
        doc.remove(shed);
    }
    let text = to_text(&doc);
    (text.len() <= MAX_DOCUMENT_BYTES).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::InstrumentationScope;
    use opentelemetry::trace::{SpanContext, TraceFlags, TraceId, TraceState};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use std::time::Duration;

    const TRACE: &str = "5759e988bd862e3fe1be46a994272793";

    fn span(
        id: u64,
        parent: u64,
        kind: SpanKind,
        name: &str,
        attributes: Vec<KeyValue>,
    ) -> SpanData {
        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        SpanData {
            span_context: SpanContext::new(
                TraceId::from_hex(TRACE).unwrap(),
                SpanId::from(id),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::from(parent),
            parent_span_is_remote: false,
            span_kind: kind,
            name: name.to_owned().into(),
            start_time: start,
            end_time: start + Duration::from_millis(12),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("test").build(),
        }
    }

    fn server(status: i64) -> SpanData {
        span(
            1,
            0,
            SpanKind::Server,
            "GET /api/activities/@{handle}",
            vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("url.path", "/api/activities/@worf"),
                KeyValue::new("url.scheme", "http"),
                KeyValue::new("server.address", "4567-ws.gitpod.io"),
                KeyValue::new("server.port", 443),
                KeyValue::new("client.address", "10.0.0.9"),
                KeyValue::new("user_agent.original", "curl/8"),
                KeyValue::new("http.response.status_code", status),
                KeyValue::new("http.route", "/api/activities/@{handle}"),
            ],
        )
    }

    fn naming() -> Naming {
        Naming {
            fallback: "backend-flask".into(),
            pattern: None,
        }
    }

    fn parse(text: &str) -> Json {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn a_request_is_one_segment_with_nested_subsegments() {
        let spans = vec![
            span(
                3,
                2,
                SpanKind::Client,
                "SELECT activities by user",
                vec![
                    KeyValue::new("db.system.name", "sqlite"),
                    KeyValue::new(
                        "db.query.text",
                        "SELECT * FROM activities WHERE user_handle = ?1",
                    ),
                    KeyValue::new("db.operation.name", "SELECT"),
                ],
            ),
            span(
                2,
                1,
                SpanKind::Internal,
                "user_activities",
                vec![
                    KeyValue::new("app.user_handle", "worf"),
                    KeyValue::new("app.result_length", 3),
                ],
            ),
            server(200),
        ];
        let docs = documents(&spans, &naming());
        assert_eq!(docs.len(), 1);
        let segment = parse(&docs[0]);
        assert_eq!(segment["name"], "backend-flask");
        assert_eq!(segment["id"], "0000000000000001");
        assert_eq!(segment["trace_id"], "1-5759e988-bd862e3fe1be46a994272793");
        assert!(segment.get("parent_id").is_none());
        assert_eq!(segment["http"]["request"]["method"], "GET");
        assert_eq!(
            segment["http"]["request"]["url"],
            "http://4567-ws.gitpod.io/api/activities/@worf"
        );
        assert_eq!(segment["http"]["request"]["client_ip"], "10.0.0.9");
        assert_eq!(segment["http"]["response"]["status"], 200);
        assert_eq!(segment["aws"]["xray"]["sdk"], "cruddur-backend");
        assert_eq!(
            segment["metadata"]["default"]["http.route"],
            "/api/activities/@{handle}"
        );
        assert!(segment.get("fault").is_none() && segment.get("error").is_none());
        let service = &segment["subsegments"][0];
        assert_eq!(service["name"], "user_activities");
        assert_eq!(service["annotations"]["app_user_handle"], "worf");
        assert_eq!(service["annotations"]["app_result_length"], 3);
        let query = &service["subsegments"][0];
        assert_eq!(query["namespace"], "remote");
        assert_eq!(query["sql"]["database_type"], "sqlite");
        assert_eq!(
            query["sql"]["sanitized_query"],
            "SELECT * FROM activities WHERE user_handle = ?1"
        );
        assert_eq!(query["metadata"]["default"]["db.operation.name"], "SELECT");
        assert_eq!(query["start_time"], 1_700_000_000.0);
        assert_eq!(query["end_time"], 1_700_000_000.012);
    }

    #[test]
    fn statuses_set_error_throttle_and_fault() {
        let flags = |status| {
            let doc = parse(&documents(&[server(status)], &naming())[0]);
            (
                doc.get("error").is_some(),
                doc.get("throttle").is_some(),
                doc.get("fault").is_some(),
            )
        };
        assert_eq!(flags(200), (false, false, false));
        assert_eq!(flags(404), (true, false, false));
        assert_eq!(flags(429), (true, true, false));
        assert_eq!(flags(503), (false, false, true));
    }

    #[test]
    fn exceptions_become_the_cause() {
        let mut failed = server(500);
        failed.status = Status::error("boom");
        failed.events.events.push(opentelemetry::trace::Event::new(
            "exception",
            UNIX_EPOCH,
            vec![
                KeyValue::new("exception.type", "internal_error"),
                KeyValue::new("exception.message", "database error: no such table"),
            ],
            0,
        ));
        let doc = parse(&documents(&[failed], &naming())[0]);
        assert_eq!(doc["fault"], true);
        let exception = &doc["cause"]["exceptions"][0];
        assert_eq!(exception["type"], "internal_error");
        assert_eq!(exception["message"], "database error: no such table");
        assert_eq!(exception["id"].as_str().unwrap().len(), 16);
    }

    #[test]
    fn a_child_without_its_parent_is_an_independent_subsegment() {
        let lone = span(9, 7, SpanKind::Internal, "late {work}", vec![]);
        let doc = parse(&documents(&[lone], &naming())[0]);
        assert_eq!(doc["type"], "subsegment");
        assert_eq!(doc["parent_id"], "0000000000000007");
        assert_eq!(doc["trace_id"], "1-5759e988-bd862e3fe1be46a994272793");
        assert_eq!(doc["name"], "late _work_");
    }

    #[test]
    fn oversized_segments_split_and_huge_attributes_are_truncated() {
        let mut spans = vec![server(200)];
        for id in 10..120 {
            spans.push(span(
                id,
                1,
                SpanKind::Internal,
                "work",
                vec![KeyValue::new("blob", "x".repeat(1_000_000))],
            ));
        }
        let docs = documents(&spans, &naming());
        assert_eq!(docs.len(), 111, "the segment, then each subsegment alone");
        for doc in &docs {
            assert!(doc.len() <= MAX_DOCUMENT_BYTES, "{}", doc.len());
        }
        let first_child = parse(&docs[1]);
        assert_eq!(first_child["type"], "subsegment");
        assert_eq!(first_child["parent_id"], "0000000000000001");
        let blob = first_child["metadata"]["default"]["blob"].as_str().unwrap();
        assert!(blob.chars().count() <= MAX_METADATA_CHARS + 1);
    }

    #[test]
    fn dynamic_naming_uses_the_host_when_it_matches() {
        let naming = Naming {
            fallback: "backend".into(),
            pattern: Some("*4567-*.gitpod.io*".into()),
        };
        assert_eq!(
            parse(&documents(&[server(200)], &naming)[0])["name"],
            "4567-ws.gitpod.io"
        );
        let other = Naming {
            pattern: Some("*.example.com".into()),
            ..naming
        };
        assert_eq!(
            parse(&documents(&[server(200)], &other)[0])["name"],
            "backend"
        );
    }

    #[test]
    fn wildcards_and_names() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("GET", "get"));
        assert!(wildcard_match("/api/*", "/api/activities/home"));
        assert!(wildcard_match(
            "/api/activities/?ome",
            "/api/activities/home"
        ));
        assert!(!wildcard_match("/api/?", "/api/ab"));
        assert!(!wildcard_match("*.com", "example.org"));
        assert!(wildcard_match("*.COM", "example.com"));
        assert!(wildcard_match("café*", "CAFÉ au lait"));
        assert!(!wildcard_match("café?", "café"));
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
        assert!(!wildcard_match("a*b*c", "aXXbYY"));
        assert_eq!(
            sanitize_name("GET /api/activities/@{handle}"),
            "GET /api/activities/@_handle_"
        );
        assert_eq!(sanitize_name(""), "_");
        assert_eq!(sanitize_name(&"n".repeat(500)).len(), MAX_NAME_CHARS);
        assert_eq!(annotation_key("app.user-handle"), "app_user_handle");
    }
}

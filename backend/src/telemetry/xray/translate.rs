//! Spans to X-Ray segment documents: a pure translation, no I/O.
//!
//! A root or SERVER span becomes a segment; its descendants in the same
//! batch are nested in it as subsegments. A span whose parent is not in the
//! batch, and every subsegment of a segment too large for one datagram,
//! goes as an independent subsegment document naming its parent.

use std::borrow::{Borrow, Cow};
use std::collections::HashMap;

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;

use super::document::{
    AWS, Cause, Document, Exception, Fields, Hex, Http, HttpRequest, HttpResponse, Metadata,
    Scalar, Sql, seconds, truncate,
};
use super::naming::{Naming, annotation_key, sanitize_name};
use crate::telemetry::ids::xray_trace_id;
use crate::telemetry::sink::attribute;

/// A UDP datagram holds 64 KiB; the header line takes the rest of the margin.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024 - 64;
/// X-Ray's limit for annotation values.
const MAX_ANNOTATION_CHARS: usize = 1000;
/// Longest string kept in metadata; a 1 MB attribute is never sent whole.
const MAX_METADATA_CHARS: usize = 2048;
/// X-Ray's limit for HTTP fields.
const MAX_HTTP_CHARS: usize = 250;

fn attr_str<'a>(span: &'a SpanData, key: &str) -> Option<&'a str> {
    match attribute(span, key)? {
        Value::String(s) => Some(s.as_str()),
        _ => None,
    }
}

fn attr_i64(span: &SpanData, key: &str) -> Option<i64> {
    match attribute(span, key)? {
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

fn http_request(span: &SpanData) -> HttpRequest<'_> {
    let url = attr_str(span, "url.path").map(|path| {
        let scheme = attr_str(span, "url.scheme").unwrap_or("http");
        let host = attr_str(span, "server.address").unwrap_or("localhost");
        let url = match attr_i64(span, "server.port") {
            Some(port) if port != 80 && port != 443 => format!("{scheme}://{host}:{port}{path}"),
            _ => format!("{scheme}://{host}{path}"),
        };
        truncate(&url, MAX_HTTP_CHARS - 1).into_owned()
    });
    HttpRequest {
        method: attr_str(span, "http.request.method").map(|m| truncate(m, MAX_HTTP_CHARS)),
        url,
        client_ip: attr_str(span, "client.address").map(|c| truncate(c, MAX_HTTP_CHARS)),
        user_agent: attr_str(span, "user_agent.original").map(|a| truncate(a, MAX_HTTP_CHARS - 1)),
    }
}

fn cause(span: &SpanData) -> Option<Cause> {
    let exceptions: Vec<Exception> = span
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
                    .map(|kv| truncate(&kv.value.to_string(), MAX_METADATA_CHARS).into_owned())
            };
            Exception {
                id: Hex(Hex::of(span.span_context.span_id()).0 ^ index as u64),
                kind: get("exception.type").unwrap_or_else(|| "error".into()),
                message: get("exception.message").unwrap_or_default(),
            }
        })
        .collect();
    (!exceptions.is_empty()).then_some(Cause { exceptions })
}

/// The document of one span, without nested subsegments.
fn document(span: &SpanData, name: String) -> Document<'_> {
    let status = attr_i64(span, "http.response.status_code");
    let http = (span.span_kind == SpanKind::Server).then(|| Http {
        request: http_request(span),
        response: status.map(|status| HttpResponse { status }),
    });
    let sql = match (
        attr_str(span, "db.system.name"),
        attr_str(span, "db.query.text"),
    ) {
        (Some(system), Some(query)) => Some(Sql {
            database_type: system,
            url: attr_str(span, "server.address").map(|host| {
                let port = attr_i64(span, "server.port")
                    .map(|port| format!(":{port}"))
                    .unwrap_or_default();
                let namespace = attr_str(span, "db.namespace").unwrap_or_default();
                format!("{system}://{host}{port}/{namespace}")
            }),
            sanitized_query: truncate(query, MAX_METADATA_CHARS),
        }),
        _ => None,
    };
    let mut annotations = Fields(Vec::new());
    let mut metadata = Fields(Vec::new());
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
            annotations.insert(
                Cow::Owned(annotation_key(key)),
                Scalar::new(value, MAX_ANNOTATION_CHARS),
            );
        } else {
            metadata.insert(Cow::Borrowed(key), Scalar::new(value, MAX_METADATA_CHARS));
        }
    }
    Document {
        name,
        id: Hex::of(span.span_context.span_id()),
        kind: None,
        trace_id: None,
        parent_id: None,
        start_time: seconds(span.start_time),
        end_time: seconds(span.end_time),
        http,
        fault: matches!(span.status, Status::Error { .. }) || status.is_some_and(|s| s >= 500),
        error: status.is_some_and(|s| (400..500).contains(&s)),
        throttle: status == Some(429),
        cause: cause(span),
        sql,
        namespace: (span.span_kind == SpanKind::Client).then_some("remote"),
        annotations: (!annotations.0.is_empty()).then_some(annotations),
        metadata: (!metadata.0.is_empty()).then_some(Metadata { default: metadata }),
        aws: None,
        subsegments: Vec::new(),
    }
}

fn to_text(doc: &Document<'_>) -> String {
    serde_json::to_string(doc).expect("a document of strings and numbers always serializes")
}

/// Turns a batch of finished spans into X-Ray documents, each at most
/// `MAX_DOCUMENT_BYTES`.
pub fn documents<S: Borrow<SpanData>>(spans: &[S], naming: &Naming) -> Vec<String> {
    let spans: Vec<&SpanData> = spans.iter().map(Borrow::borrow).collect();
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
            let span = spans[index];
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
        let span = spans[index];
        let mut segment = document(span, naming.segment_name(attr_str(span, "server.address")));
        segment.trace_id = Some(xray_trace_id(span.span_context.trace_id()));
        segment.parent_id =
            (span.parent_span_id != SpanId::INVALID).then(|| Hex::of(span.parent_span_id));
        segment.aws = Some(&AWS);
        segment.subsegments = nest(&spans, &children, span.span_context.span_id());
        let text = to_text(&segment);
        if text.len() <= MAX_DOCUMENT_BYTES {
            out.push(text);
            continue;
        }
        segment.subsegments.clear();
        // Too big for one datagram: the segment alone, then each descendant
        // as its own document.
        out.extend(fit(segment));
        let mut stack = vec![span.span_context.span_id()];
        while let Some(parent) = stack.pop() {
            for &child in children.get(&parent).into_iter().flatten() {
                out.extend(independent(spans[child]));
                stack.push(spans[child].span_context.span_id());
            }
        }
    }
    for &index in &orphans {
        out.extend(independent(spans[index]));
    }
    out
}

fn nest<'a>(
    spans: &[&'a SpanData],
    children: &HashMap<SpanId, Vec<usize>>,
    parent: SpanId,
) -> Vec<Document<'a>> {
    children
        .get(&parent)
        .into_iter()
        .flatten()
        .map(|&index| {
            let span = spans[index];
            let mut doc = document(span, sanitize_name(&span.name));
            doc.subsegments = nest(spans, children, span.span_context.span_id());
            doc
        })
        .collect()
}

/// A subsegment sent on its own: it names its trace and parent.
fn independent(span: &SpanData) -> Option<String> {
    let mut doc = document(span, sanitize_name(&span.name));
    doc.kind = Some("subsegment");
    doc.trace_id = Some(xray_trace_id(span.span_context.trace_id()));
    doc.parent_id = Some(Hex::of(span.parent_span_id));
    fit(doc)
}

/// The document as text, shedding metadata, annotations, the cause and the
/// SQL block in turn while it is still too big; `None` only if even that
/// does not fit.
fn fit(mut doc: Document<'_>) -> Option<String> {
    let sheds: [fn(&mut Document<'_>); 4] = [
        |doc| doc.metadata = None,
        |doc| doc.annotations = None,
        |doc| doc.cause = None,
        |doc| doc.sql = None,
    ];
    for shed in sheds {
        let text = to_text(&doc);
        if text.len() <= MAX_DOCUMENT_BYTES {
            return Some(text);
        }
        shed(&mut doc);
    }
    let text = to_text(&doc);
    (text.len() <= MAX_DOCUMENT_BYTES).then_some(text)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    const TRACE: &str = "5759e988bd862e3fe1be46a994272793";

    /// Started at 1,700,000,000 s, lasting 12 ms.
    fn span(
        id: u64,
        parent: u64,
        kind: SpanKind,
        name: &str,
        attributes: Vec<KeyValue>,
    ) -> SpanData {
        let trace = u128::from_str_radix(TRACE, 16).unwrap();
        SpanData {
            span_kind: kind,
            attributes,
            ..crate::telemetry::test_span::span(trace, id, parent, name, 1_700_000_000_000, 12)
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

    fn parse(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn a_server_database_statement_names_where_it_is_in_the_sql_block() {
        let spans = vec![
            span(
                2,
                1,
                SpanKind::Client,
                "SELECT activities home",
                vec![
                    KeyValue::new("db.system.name", "postgresql"),
                    KeyValue::new("db.query.text", "SELECT uuid FROM activities LIMIT $1"),
                    KeyValue::new("server.address", "db.internal"),
                    KeyValue::new("server.port", 5432),
                    KeyValue::new("db.namespace", "cruddur"),
                ],
            ),
            server(200),
        ];
        let segment = parse(&documents(&spans, &naming())[0]);
        let sql = &segment["subsegments"][0]["sql"];
        assert_eq!(sql["database_type"], "postgresql");
        assert_eq!(sql["url"], "postgresql://db.internal:5432/cruddur");
        assert_eq!(
            sql["sanitized_query"],
            "SELECT uuid FROM activities LIMIT $1"
        );
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
        assert!(
            query["sql"].get("url").is_none(),
            "an embedded database has none"
        );
        assert_eq!(
            query["sql"]["sanitized_query"],
            "SELECT * FROM activities WHERE user_handle = ?1"
        );
        assert_eq!(query["metadata"]["default"]["db.operation.name"], "SELECT");
        assert_eq!(query["start_time"], 1_700_000_000.0);
        assert_eq!(query["end_time"], 1_700_000_000.012);
    }

    #[test]
    fn keys_that_meet_keep_the_last_value_as_a_map_would() {
        let spans = [span(
            4,
            0,
            SpanKind::Internal,
            "work",
            vec![
                KeyValue::new("app.user-handle", "first"),
                KeyValue::new("app.user_handle", "second"),
                KeyValue::new("retries", 1),
                KeyValue::new("retries", 2),
            ],
        )];
        let text = &documents(&spans, &naming())[0];
        assert_eq!(text.matches("app_user_handle").count(), 1, "{text}");
        assert_eq!(text.matches("retries").count(), 1, "{text}");
        let doc = parse(text);
        assert_eq!(doc["annotations"]["app_user_handle"], "second");
        assert_eq!(doc["metadata"]["default"]["retries"], 2);
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
}

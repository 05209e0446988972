//! OTLP/HTTP request bodies written straight from finished spans.
//!
//! Replaces opentelemetry-proto's conversion plus prost's encoding for HTTP
//! bodies, for a measured reason: the official path copies every name, key
//! and value into the proto structs and computes a nested message's length
//! once per level above it, which was most of the export worker's time
//! (bench/README.md, "Our own fast paths"). This writes the same bytes in
//! one pass, with lengths from arithmetic. Spans with links or array values,
//! which the backend does not make, take the official path.
//!
//! Guarded by tests that compare the bytes with the official encoding: for
//! chosen spans, for links and arrays, and the property test
//! `any_batch_is_written_as_the_official_encoding` for any spans at all.

use std::borrow::Borrow;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_sdk::trace::SpanData;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, message};

fn nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn string_len(text: &str) -> usize {
    if text.is_empty() {
        0
    } else {
        1 + encoded_len_varint(text.len() as u64) + text.len()
    }
}

fn write_string(tag: u32, text: &str, out: &mut Vec<u8>) {
    if !text.is_empty() {
        write_bytes(tag, text.as_bytes(), out);
    }
}

/// A field key: one byte for fields numbered under 16 (all but the span's
/// flags), written without prost's general loop; this runs several times
/// per attribute.
fn key(tag: u32, wire_type: WireType, out: &mut Vec<u8>) {
    if tag < 16 {
        out.push(((tag << 3) | wire_type as u32) as u8);
    } else {
        encode_key(tag, wire_type, out);
    }
}

/// A varint, with the one-byte case (most lengths) written directly.
fn varint(value: u64, out: &mut Vec<u8>) {
    if value < 0x80 {
        out.push(value as u8);
    } else {
        encode_varint(value, out);
    }
}

fn write_bytes(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    key(tag, WireType::LengthDelimited, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// A nested message: its tag, its length, then `write` fills in `len` bytes.
fn nested(tag: u32, len: usize, out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    key(tag, WireType::LengthDelimited, out);
    varint(len as u64, out);
    write(out);
}

fn framed(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// The length of an `AnyValue` body, or `None` for arrays.
fn any_len(value: &Value) -> Option<usize> {
    Some(match value {
        Value::Bool(_) => 2,
        Value::I64(i) => 1 + encoded_len_varint(*i as u64),
        Value::F64(_) => 9,
        Value::String(s) => 1 + encoded_len_varint(s.as_str().len() as u64) + s.as_str().len(),
        _ => return None,
    })
}

fn write_any(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Bool(b) => {
            key(2, WireType::Varint, out);
            out.push(u8::from(*b));
        }
        Value::I64(i) => {
            key(3, WireType::Varint, out);
            varint(*i as u64, out);
        }
        Value::F64(f) => {
            key(4, WireType::SixtyFourBit, out);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Value::String(s) => write_bytes(1, s.as_str().as_bytes(), out),
        _ => unreachable!("arrays take the official path"),
    }
}

/// A `KeyValue` body's length, from its key and its `AnyValue` body length.
fn key_value_body_len(key: &str, value_len: usize) -> usize {
    string_len(key) + framed(value_len)
}

fn key_value_len(kv: &KeyValue) -> Option<usize> {
    Some(key_value_body_len(kv.key.as_str(), any_len(&kv.value)?))
}

fn attributes_len(attributes: &[KeyValue]) -> Option<usize> {
    attributes
        .iter()
        .map(|kv| key_value_len(kv).map(framed))
        .sum()
}

fn write_attributes(tag: u32, attributes: &[KeyValue], out: &mut Vec<u8>) {
    for kv in attributes {
        let name = kv.key.as_str();
        let value_len = any_len(&kv.value).expect("checked before writing");
        nested(tag, key_value_body_len(name, value_len), out, |out| {
            write_string(1, name, out);
            nested(2, value_len, out, |out| write_any(&kv.value, out));
        });
    }
}

fn uint_len(value: u32) -> usize {
    if value == 0 {
        0
    } else {
        1 + encoded_len_varint(u64::from(value))
    }
}

fn write_uint(tag: u32, value: u32, out: &mut Vec<u8>) {
    if value != 0 {
        key(tag, WireType::Varint, out);
        varint(u64::from(value), out);
    }
}

fn fixed64_len(value: u64) -> usize {
    if value == 0 { 0 } else { 9 }
}

fn write_fixed64(tag: u32, value: u64, out: &mut Vec<u8>) {
    if value != 0 {
        key(tag, WireType::SixtyFourBit, out);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

fn kind(kind: &SpanKind) -> u32 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

/// Span flags as OTLP wants them: the W3C flags plus "is the parent remote".
fn flags(span: &SpanData) -> u32 {
    let mut flags = u32::from(span.span_context.trace_flags().to_u8()) | 0x100;
    if span.parent_span_is_remote {
        flags |= 0x200;
    }
    flags
}

fn status(span: &SpanData) -> (u32, &str) {
    match &span.status {
        Status::Unset => (0, ""),
        Status::Ok => (1, ""),
        Status::Error { description } => (2, description.as_ref()),
    }
}

/// A span's start and end in Unix nanoseconds, converted once.
#[derive(Clone, Copy)]
struct Times {
    start: u64,
    end: u64,
}

impl Times {
    fn of(span: &SpanData) -> Times {
        Times {
            start: nanos(span.start_time),
            end: nanos(span.end_time),
        }
    }
}

/// The `Span` body length, or `None` when the span needs the official path.
fn span_len(span: &SpanData, trace_state: &str, times: Times) -> Option<usize> {
    if !span.links.is_empty() {
        return None;
    }
    let mut len = 18 + 10 + string_len(trace_state);
    if span.parent_span_id != SpanId::INVALID {
        len += 10;
    }
    len += string_len(&span.name);
    len += 1 + encoded_len_varint(u64::from(kind(&span.span_kind)));
    len += fixed64_len(times.start) + fixed64_len(times.end);
    len += attributes_len(&span.attributes)?;
    len += uint_len(span.dropped_attributes_count);
    for event in span.events.iter() {
        let event_len = fixed64_len(nanos(event.timestamp))
            + string_len(&event.name)
            + attributes_len(&event.attributes)?
            + uint_len(event.dropped_attributes_count);
        len += framed(event_len);
    }
    len += uint_len(span.events.dropped_count) + uint_len(span.links.dropped_count);
    let (code, message) = status(span);
    len += framed(string_len(message) + uint_len(code));
    len += 6;
    Some(len)
}

fn write_span(span: &SpanData, trace_state: &str, times: Times, len: usize, out: &mut Vec<u8>) {
    nested(2, len, out, |out| {
        write_bytes(1, &span.span_context.trace_id().to_bytes(), out);
        write_bytes(2, &span.span_context.span_id().to_bytes(), out);
        write_string(3, trace_state, out);
        if span.parent_span_id != SpanId::INVALID {
            write_bytes(4, &span.parent_span_id.to_bytes(), out);
        }
        write_string(5, &span.name, out);
        write_uint(6, kind(&span.span_kind), out);
        write_fixed64(7, times.start, out);
        write_fixed64(8, times.end, out);
        write_attributes(9, &span.attributes, out);
        write_uint(10, span.dropped_attributes_count, out);
        for event in span.events.iter() {
            let event_len = fixed64_len(nanos(event.timestamp))
                + string_len(&event.name)
                + attributes_len(&event.attributes).expect("checked before writing")
                + uint_len(event.dropped_attributes_count);
            nested(11, event_len, out, |out| {
                write_fixed64(1, nanos(event.timestamp), out);
                write_string(2, &event.name, out);
                write_attributes(3, &event.attributes, out);
                write_uint(4, event.dropped_attributes_count, out);
            });
        }
        write_uint(12, span.events.dropped_count, out);
        write_uint(14, span.links.dropped_count, out);
        let (code, message) = status(span);
        nested(15, string_len(message) + uint_len(code), out, |out| {
            write_string(2, message, out);
            write_uint(3, code, out);
        });
        key(16, WireType::ThirtyTwoBit, out);
        out.extend_from_slice(&flags(span).to_le_bytes());
    });
}

/// One span as it will be written.
enum Written {
    /// By this module: the `Span` body length, the trace state header and
    /// the span's times.
    Direct(usize, String, Times),
    /// By prost, converted the official way (links or array values).
    Official(Box<Span>),
}

impl Written {
    fn new(span: &SpanData) -> Written {
        let trace_state = span.span_context.trace_state().header();
        let times = Times::of(span);
        match span_len(span, &trace_state, times) {
            Some(len) => Written::Direct(len, trace_state, times),
            None => Written::Official(Box::new(Span::from(span.clone()))),
        }
    }

    /// The length of the span as a `ScopeSpans.spans` field.
    fn field_len(&self) -> usize {
        match self {
            Written::Direct(len, _, _) => framed(*len),
            Written::Official(span) => message::encoded_len(2, span.as_ref()),
        }
    }

    fn write(&self, span: &SpanData, out: &mut Vec<u8>) {
        match self {
            Written::Direct(len, trace_state, times) => {
                write_span(span, trace_state, *times, *len, out);
            }
            Written::Official(span) => message::encode(2, span.as_ref(), out),
        }
    }
}

/// The spans of one instrumentation scope, measured before writing.
struct ScopeSpans<'a> {
    scope: &'a InstrumentationScope,
    /// The encoded `ScopeSpans.scope` field.
    header: Vec<u8>,
    spans: Vec<(&'a SpanData, Written)>,
    len: usize,
}

impl<'a> ScopeSpans<'a> {
    fn new(scope: &'a InstrumentationScope) -> Self {
        let mut header = Vec::new();
        let proto: opentelemetry_proto::tonic::common::v1::InstrumentationScope =
            (scope, None).into();
        message::encode(1, &proto, &mut header);
        let len = header.len() + scope.schema_url().map_or(0, string_len);
        ScopeSpans {
            scope,
            header,
            spans: Vec::new(),
            len,
        }
    }
}

/// The body of an `ExportTraceServiceRequest` holding `spans` (one
/// `ResourceSpans`, spans grouped by scope in order of first appearance, as
/// the official conversion groups them) followed by `relayed`. Everything is
/// measured first, so the body is written once into a buffer of its size.
pub fn encode_request<S: Borrow<SpanData>>(
    spans: &[S],
    resource: &ResourceAttributesWithSchema,
    relayed: &[ResourceSpans],
) -> Vec<u8> {
    let mut scopes: Vec<ScopeSpans<'_>> = Vec::new();
    for span in spans.iter().map(Borrow::borrow) {
        let at = match scopes
            .iter()
            .position(|group| *group.scope == span.instrumentation_scope)
        {
            Some(at) => at,
            None => {
                scopes.push(ScopeSpans::new(&span.instrumentation_scope));
                scopes.len() - 1
            }
        };
        let written = Written::new(span);
        scopes[at].len += written.field_len();
        scopes[at].spans.push((span, written));
    }
    let mut resource_field = Vec::new();
    if !scopes.is_empty() {
        let proto_resource = Resource {
            attributes: resource.attributes.0.clone(),
            dropped_attributes_count: 0,
            entity_refs: vec![],
        };
        message::encode(1, &proto_resource, &mut resource_field);
    }
    let resource_len = resource_field.len()
        + scopes.iter().map(|group| framed(group.len)).sum::<usize>()
        + resource.schema_url.as_deref().map_or(0, string_len);
    let relayed_len: usize = relayed
        .iter()
        .map(|resource_spans| message::encoded_len(1, resource_spans))
        .sum();
    let mut out = Vec::with_capacity(
        if scopes.is_empty() {
            0
        } else {
            framed(resource_len)
        } + relayed_len,
    );
    if !scopes.is_empty() {
        nested(1, resource_len, &mut out, |out| {
            out.extend_from_slice(&resource_field);
            for group in &scopes {
                nested(2, group.len, out, |out| {
                    out.extend_from_slice(&group.header);
                    for (span, written) in &group.spans {
                        written.write(span, out);
                    }
                    if let Some(url) = group.scope.schema_url() {
                        write_string(3, url, out);
                    }
                });
            }
            if let Some(url) = &resource.schema_url {
                write_string(3, url, out);
            }
        });
    }
    for resource_spans in relayed {
        message::encode(1, resource_spans, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{Event, Link, SpanContext, TraceFlags, TraceId, TraceState};
    use opentelemetry::{Array, StringValue};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::Resource as SdkResource;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use prost::Message;
    use std::time::Duration;

    fn span(id: u64, scope: &str) -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(0x5759e988bd862e3fe1be46a994272793u128),
                SpanId::from(id),
                TraceFlags::SAMPLED,
                false,
                TraceState::from_key_value([("xray", "1")]).unwrap(),
            ),
            parent_span_id: if id.is_multiple_of(3) {
                SpanId::INVALID
            } else {
                SpanId::from(id + 1000)
            },
            parent_span_is_remote: id.is_multiple_of(5),
            span_kind: [SpanKind::Server, SpanKind::Client, SpanKind::Internal][id as usize % 3]
                .clone(),
            name: format!("span {id} ").repeat(id as usize % 4).into(),
            start_time: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789 + id),
            end_time: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_223_456_789 + id),
            attributes: vec![
                KeyValue::new(
                    "db.query.text",
                    "SELECT * FROM activities ".repeat(id as usize),
                ),
                KeyValue::new("app.result_length", -(id as i64) * 1000),
                KeyValue::new("http.response.status_code", 200),
                KeyValue::new("ok", id.is_multiple_of(2)),
                KeyValue::new("ratio", 0.25 * id as f64),
                KeyValue::new("", ""),
            ],
            dropped_attributes_count: (id % 2) as u32,
            events: {
                let mut events = SpanEvents::default();
                events.events.push(Event::new(
                    "exception",
                    UNIX_EPOCH + Duration::from_secs(id),
                    vec![KeyValue::new("exception.message", "no such table: ünïcode")],
                    0,
                ));
                events.dropped_count = (id % 4) as u32;
                events
            },
            links: SpanLinks::default(),
            status: [Status::Unset, Status::Ok, Status::error("boom")][id as usize % 3].clone(),
            instrumentation_scope: InstrumentationScope::builder(scope.to_owned())
                .with_version("0.1")
                .build(),
        }
    }

    fn official(
        spans: Vec<SpanData>,
        resource: &ResourceAttributesWithSchema,
        relayed: &[ResourceSpans],
    ) -> Vec<u8> {
        let mut resource_spans = if spans.is_empty() {
            Vec::new()
        } else {
            group_spans_by_resource_and_scope(spans, resource)
        };
        resource_spans.extend(relayed.iter().cloned());
        ExportTraceServiceRequest { resource_spans }.encode_to_vec()
    }

    fn resource() -> ResourceAttributesWithSchema {
        (&SdkResource::builder_empty()
            .with_service_name("cruddur-backend")
            .with_schema_url(
                Vec::<KeyValue>::new(),
                "https://opentelemetry.io/schemas/1.26.0",
            )
            .build())
            .into()
    }

    #[test]
    fn the_bytes_equal_the_official_encoding() {
        let spans: Vec<SpanData> = (1..40)
            .map(|id| {
                span(
                    id,
                    if id.is_multiple_of(7) {
                        "other"
                    } else {
                        "cruddur"
                    },
                )
            })
            .collect();
        let relayed = official(vec![span(99, "browser")], &resource(), &[]);
        let relayed = ExportTraceServiceRequest::decode(relayed.as_slice())
            .unwrap()
            .resource_spans;
        assert_eq!(
            encode_request(&spans, &resource(), &relayed),
            official(spans, &resource(), &relayed)
        );
        assert_eq!(
            encode_request::<SpanData>(&[], &resource(), &relayed),
            official(Vec::new(), &resource(), &relayed)
        );
        assert!(encode_request::<SpanData>(&[], &resource(), &[]).is_empty());
    }

    #[test]
    fn links_and_arrays_take_the_official_path_with_the_same_bytes() {
        let mut linked = span(4, "cruddur");
        linked
            .links
            .links
            .push(Link::with_context(span(8, "cruddur").span_context));
        let mut arrays = span(5, "cruddur");
        arrays.attributes.push(KeyValue::new(
            "tags",
            Value::Array(Array::String(vec![
                StringValue::from("a"),
                StringValue::from("b"),
            ])),
        ));
        let spans = vec![linked, arrays, span(6, "cruddur")];
        assert_eq!(
            encode_request(&spans, &resource(), &[]),
            official(spans, &resource(), &[])
        );
    }

    mod properties {
        use proptest::collection::vec;
        use proptest::prelude::*;

        use super::*;

        fn text() -> impl Strategy<Value = String> {
            vec(any::<char>(), 0..24).prop_map(String::from_iter)
        }

        fn value() -> impl Strategy<Value = Value> {
            prop_oneof![
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::I64),
                any::<f64>().prop_map(Value::F64),
                text().prop_map(|t| Value::String(t.into())),
            ]
        }

        fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
            vec((text(), value()), 0..8).prop_map(|pairs| {
                pairs
                    .into_iter()
                    .map(|(key, value)| KeyValue::new(key, value))
                    .collect()
            })
        }

        prop_compose! {
            fn event()(name in text(), at in any::<u64>(), attributes in attributes(), dropped in any::<u32>()) -> Event {
                Event::new(name, UNIX_EPOCH + Duration::from_nanos(at), attributes, dropped)
            }
        }

        prop_compose! {
            fn any_span()(
                ids in (any::<u128>(), any::<u64>(), any::<u64>()),
                flags in (any::<bool>(), any::<bool>()),
                kind in 0..5usize,
                name in text(),
                times in (any::<u64>(), any::<u64>()),
                attributes in attributes(),
                dropped in (any::<u32>(), any::<u32>()),
                events in vec(event(), 0..4),
                status in (0..3usize, text()),
                scope in 0..3usize,
            ) -> SpanData {
                let mut span_events = SpanEvents::default();
                span_events.events = events;
                span_events.dropped_count = dropped.1;
                SpanData {
                    span_context: SpanContext::new(
                        TraceId::from(ids.0),
                        SpanId::from(ids.1),
                        if flags.0 { TraceFlags::SAMPLED } else { TraceFlags::default() },
                        false,
                        TraceState::default(),
                    ),
                    parent_span_id: SpanId::from(ids.2),
                    parent_span_is_remote: flags.1,
                    span_kind: [
                        SpanKind::Internal,
                        SpanKind::Server,
                        SpanKind::Client,
                        SpanKind::Producer,
                        SpanKind::Consumer,
                    ][kind]
                        .clone(),
                    name: name.into(),
                    start_time: UNIX_EPOCH + Duration::from_nanos(times.0),
                    end_time: UNIX_EPOCH + Duration::from_nanos(times.1),
                    attributes,
                    dropped_attributes_count: dropped.0,
                    events: span_events,
                    links: SpanLinks::default(),
                    status: [Status::Unset, Status::Ok, Status::error(status.1)][status.0].clone(),
                    instrumentation_scope: InstrumentationScope::builder(
                        ["cruddur-backend", "lib", ""][scope],
                    )
                    .build(),
                }
            }
        }

        proptest! {
            /// Whatever the spans hold, the writer's bytes are the official
            /// conversion's, encoded by prost.
            #[test]
            fn any_batch_is_written_as_the_official_encoding(spans in vec(any_span(), 0..12)) {
                prop_assert_eq!(
                    encode_request(&spans, &resource(), &[]),
                    official(spans, &resource(), &[])
                );
            }
        }
    }
}

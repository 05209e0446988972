//! A trace as the console writes it for machines (`LOG_FORMAT=json`): a
//! JSON line per span, in the tree's order, every attribute kept, beside
//! the log lines' JSON.

use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};
use opentelemetry::trace::{SpanId, Status};
use opentelemetry::{Array, Value};
use opentelemetry_sdk::trace::SpanData;
use serde_json::{Map, Value as Json};

use super::pretty::elapsed;
use super::traces::Trace;
use super::tree::{Node, forest};
use crate::telemetry::ids::xray_trace_id;
use crate::telemetry::sink::{SharedSpan, kind_name};

fn timestamp(time: SystemTime) -> String {
    DateTime::<Utc>::from(time).to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn json_value(value: &Value) -> Json {
    match value {
        Value::Bool(flag) => Json::from(*flag),
        Value::I64(number) => Json::from(*number),
        Value::F64(number) => Json::from(*number),
        Value::String(text) => Json::from(text.as_str()),
        Value::Array(Array::Bool(flags)) => Json::from(flags.clone()),
        Value::Array(Array::I64(numbers)) => Json::from(numbers.clone()),
        Value::Array(Array::F64(numbers)) => Json::from(numbers.clone()),
        Value::Array(Array::String(texts)) => {
            Json::from_iter(texts.iter().map(|text| Json::from(text.as_str())))
        }
        other => Json::from(other.as_str().into_owned()),
    }
}

/// One JSON object per span, in the tree's order, each on its own line.
pub fn write(trace: &Trace, out: &mut String) {
    fn walk(spans: &[SharedSpan], node: &Node, out: &mut String) {
        out.push_str(&span_json(&spans[node.span]).to_string());
        out.push('\n');
        for child in &node.children {
            walk(spans, child, out);
        }
    }
    for root in forest(&trace.spans) {
        walk(&trace.spans, &root, out);
    }
}

/// A span as the JSON console prints it: `span` is its name, where a log
/// line has `message`.
fn span_json(span: &SpanData) -> Json {
    let trace_id = span.span_context.trace_id();
    let mut record = Map::new();
    record.insert("timestamp".into(), timestamp(span.start_time).into());
    record.insert("span".into(), span.name.as_ref().into());
    record.insert("kind".into(), kind_name(&span.span_kind).into());
    record.insert(
        "duration_ms".into(),
        Json::from(elapsed(span).as_secs_f64() * 1000.0),
    );
    match &span.status {
        Status::Unset => {}
        Status::Ok => {
            record.insert("status".into(), "ok".into());
        }
        Status::Error { description } => {
            record.insert("status".into(), "error".into());
            record.insert("status_description".into(), description.as_ref().into());
        }
    }
    record.insert("trace_id".into(), format!("{trace_id:032x}").into());
    record.insert(
        "span_id".into(),
        format!("{:016x}", span.span_context.span_id()).into(),
    );
    if span.parent_span_id != SpanId::INVALID {
        record.insert(
            "parent_id".into(),
            format!("{:016x}", span.parent_span_id).into(),
        );
    }
    record.insert("xray_trace_id".into(), xray_trace_id(trace_id).into());
    let attributes: Map<String, Json> = span
        .attributes
        .iter()
        .map(|kv| (kv.key.to_string(), json_value(&kv.value)))
        .collect();
    record.insert("attributes".into(), Json::Object(attributes));
    if !span.events.is_empty() {
        let events = span.events.iter().map(|e| Json::from(e.name.as_ref()));
        record.insert("events".into(), Json::from_iter(events));
    }
    Json::Object(record)
}

#[cfg(test)]
mod tests {
    use super::super::pretty::tests::request;
    use super::*;

    #[test]
    fn json_is_a_line_per_span_root_first_with_every_attribute() {
        let mut out = String::new();
        write(&request(), &mut out);
        let lines: Vec<Json> = out
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let names: Vec<&str> = lines.iter().map(|l| l["span"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "GET /api/activities/home",
                "home_activities",
                "SELECT activities home",
                "SELECT replies"
            ]
        );
        let root = &lines[0];
        assert_eq!(root["kind"], "server");
        assert_eq!(root["duration_ms"], 6.0);
        assert_eq!(root["attributes"]["http.response.status_code"], 200);
        assert_eq!(root["attributes"]["http.request.method"], "GET");
        assert_eq!(root["trace_id"], "00000000000000000000000000000abc");
        assert!(root.get("parent_id").is_none());
        assert_eq!(lines[1]["parent_id"], "0000000000000001");
        assert_eq!(lines[2]["attributes"]["db.system.name"], "sqlite");
    }
}

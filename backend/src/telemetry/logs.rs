//! Log events as records carrying the trace they belong to: what every log
//! sink (console, CloudWatch, Rollbar) formats and ships.

use std::fmt::{self, Write as _};

use chrono::{DateTime, SecondsFormat, Utc};
use opentelemetry::trace::{SpanId, TraceId};
use serde::{Serialize, Serializer};
use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::ids::IdsText;
use super::spans::Recording;
use crate::domain::{API_TIME_LEN, log_time_into};

/// The trace a log event belongs to.
pub struct TraceIds {
    pub trace_id: TraceId,
    pub span_id: SpanId,
}

/// Collects an event's message and fields: each field under its name as
/// tracing spells it (`&'static`), not copied into a `String` key of a map.
#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(&'static str, Value)>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        self.fields.push((field.name(), value));
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.put(field, Value::from(value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.put(field, Value::from(text));
        }
    }
}

/// Fields as a JSON object, in their order (sorted by name).
struct FieldMap<'a>(&'a [(&'static str, Value)]);

impl Serialize for FieldMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(key, value)| (key, value)))
    }
}

/// One log event with the trace it belongs to: what every log sink formats
/// and ships.
pub struct LogRecord {
    pub timestamp: DateTime<Utc>,
    pub level: Level,
    pub target: &'static str,
    pub message: String,
    /// Sorted by name (a field named twice keeps both).
    pub fields: Vec<(&'static str, Value)>,
    pub ids: Option<TraceIds>,
}

impl LogRecord {
    /// Reads an event, and finds the trace of the span it happened in.
    pub fn from_event<S>(event: &Event<'_>, ctx: &Context<'_, S>) -> LogRecord
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let mut fields = Fields::default();
        event.record(&mut fields);
        fields.fields.sort_by_key(|(key, _)| *key);
        let meta = event.metadata();
        LogRecord {
            timestamp: Utc::now(),
            level: *meta.level(),
            target: meta.target(),
            message: fields.message,
            fields: fields.fields,
            ids: trace_ids(event, ctx),
        }
    }

    /// One JSON object: timestamp, level, target, message, fields, and
    /// `trace_id`, `span_id`, `xray_trace_id` when traced; keys in
    /// alphabetical order. Written straight from the record: building a
    /// `serde_json::Value` first (a copy of the message and of every field)
    /// was a sixth of the CloudWatch sink's cost a request; the ids and the
    /// time are written digit by digit into buffers on the stack.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Json<'a> {
            fields: FieldMap<'a>,
            level: &'a str,
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            span_id: Option<&'a str>,
            target: &'a str,
            timestamp: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            trace_id: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            xray_trace_id: Option<&'a str>,
        }
        let ids = self
            .ids
            .as_ref()
            .map(|ids| IdsText::new(ids.trace_id, ids.span_id));
        let mut time = [0; API_TIME_LEN];
        let spelled;
        let timestamp = match log_time_into(self.timestamp, &mut time) {
            Some(text) => text,
            None => {
                spelled = self.timestamp.to_rfc3339_opts(SecondsFormat::Micros, true);
                &spelled
            }
        };
        let json = Json {
            fields: FieldMap(&self.fields),
            level: self.level.as_str(),
            message: &self.message,
            span_id: ids.as_ref().map(IdsText::span_id),
            target: self.target,
            timestamp,
            trace_id: ids.as_ref().map(IdsText::trace_id),
            xray_trace_id: ids.as_ref().map(IdsText::xray_trace_id),
        };
        // Borrowed strings and values: nothing here can fail to serialize.
        serde_json::to_string(&json).expect("a log record always serializes")
    }

    /// One readable line: time, level, target, message, fields, ids.
    pub fn to_pretty(&self) -> String {
        let mut line = format!(
            "{} {:>5} {}: {}",
            self.timestamp.to_rfc3339_opts(SecondsFormat::Micros, true),
            self.level,
            self.target,
            self.message
        );
        for (key, value) in &self.fields {
            let _ = write!(line, " {key}={value}");
        }
        if let Some(ids) = &self.ids {
            let ids = IdsText::new(ids.trace_id, ids.span_id);
            let _ = write!(
                line,
                " trace_id={} span_id={} xray_trace_id={}",
                ids.trace_id(),
                ids.span_id(),
                ids.xray_trace_id()
            );
        }
        line
    }
}

/// The trace and span of the span an event happened in, if it is traced.
pub fn trace_ids<S>(event: &Event<'_>, ctx: &Context<'_, S>) -> Option<TraceIds>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let span = ctx.event_span(event)?;
    let extensions = span.extensions();
    let (trace_id, span_id) = extensions.get::<Recording>()?.ids();
    Some(TraceIds { trace_id, span_id })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_json_line_has_every_part_keys_in_order_and_ids_only_when_traced() {
        let fields = vec![("path", json!("/api/\"quoted\"\n")), ("status", json!(200))];
        let mut record = LogRecord {
            timestamp: DateTime::from_timestamp_micros(1_796_515_134_146_149).unwrap(),
            level: Level::INFO,
            target: "cruddur_backend::access",
            message: "GET /api/activities/home 200 \u{1F680}".into(),
            fields,
            ids: Some(TraceIds {
                trace_id: TraceId::from_hex("6b14a53e00bcc3884d8d942246f3200b").unwrap(),
                span_id: SpanId::from_hex("53995c3f42cd8ad8").unwrap(),
            }),
        };
        let expected = json!({
            "fields": {"path": "/api/\"quoted\"\n", "status": 200},
            "level": "INFO",
            "message": "GET /api/activities/home 200 \u{1F680}",
            "span_id": "53995c3f42cd8ad8",
            "target": "cruddur_backend::access",
            "timestamp": "2026-12-05T23:58:54.146149Z",
            "trace_id": "6b14a53e00bcc3884d8d942246f3200b",
            "xray_trace_id": "1-6b14a53e-00bcc3884d8d942246f3200b",
        });
        assert_eq!(record.to_json(), expected.to_string());
        record.ids = None;
        let mut untraced = expected;
        for key in ["span_id", "trace_id", "xray_trace_id"] {
            untraced.as_object_mut().unwrap().remove(key);
        }
        assert_eq!(record.to_json(), untraced.to_string());
    }
}

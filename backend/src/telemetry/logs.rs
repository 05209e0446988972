//! Log events as records carrying the trace they belong to: what every log
//! sink (console, CloudWatch, Rollbar) formats and ships.

use std::fmt::{self, Write as _};

use chrono::{DateTime, SecondsFormat, Utc};
use opentelemetry::trace::TraceId;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::ids::xray_trace_id;
use super::spans::Recording;

/// The trace a log event belongs to.
pub struct TraceIds {
    pub trace_id: TraceId,
    pub span_id: opentelemetry::trace::SpanId,
}

/// Collects an event's message and fields.
#[derive(Default)]
struct Fields {
    message: String,
    fields: Map<String, Value>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.fields
                .insert(field.name().to_owned(), Value::from(value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields
            .insert(field.name().to_owned(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields
            .insert(field.name().to_owned(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields
            .insert(field.name().to_owned(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields
            .insert(field.name().to_owned(), Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.fields
                .insert(field.name().to_owned(), Value::from(text));
        }
    }
}

/// One log event with the trace it belongs to: what every log sink formats
/// and ships.
pub struct LogRecord {
    pub timestamp: DateTime<Utc>,
    pub level: Level,
    pub target: &'static str,
    pub message: String,
    pub fields: Map<String, Value>,
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
    /// `trace_id`, `span_id`, `xray_trace_id` when traced.
    pub fn to_json(&self) -> String {
        let mut record = Map::new();
        record.insert(
            "timestamp".into(),
            self.timestamp
                .to_rfc3339_opts(SecondsFormat::Micros, true)
                .into(),
        );
        record.insert("level".into(), self.level.as_str().into());
        record.insert("target".into(), self.target.into());
        record.insert("message".into(), self.message.clone().into());
        record.insert("fields".into(), Value::Object(self.fields.clone()));
        if let Some(ids) = &self.ids {
            record.insert("trace_id".into(), format!("{:032x}", ids.trace_id).into());
            record.insert("span_id".into(), format!("{:016x}", ids.span_id).into());
            record.insert("xray_trace_id".into(), xray_trace_id(ids.trace_id).into());
        }
        Value::Object(record).to_string()
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
            let _ = write!(
                line,
                " trace_id={:032x} span_id={:016x} xray_trace_id={}",
                ids.trace_id,
                ids.span_id,
                xray_trace_id(ids.trace_id)
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

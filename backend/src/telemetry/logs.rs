//! Log events as lines carrying the trace they belong to. The record built
//! here is what every log sink (console now) formats and ships.

use std::fmt::{self, Write as _};

use chrono::{SecondsFormat, Utc};
use opentelemetry::trace::{TraceContextExt, TraceId};
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::ids::xray_trace_id;
use super::queue::QueueSender;
use crate::config::LogFormat;

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

/// A tracing layer that formats each event it sees and queues the line.
pub struct ConsoleLogLayer {
    lines: QueueSender<String>,
    json: bool,
}

impl ConsoleLogLayer {
    pub fn new(lines: QueueSender<String>, format: LogFormat) -> Self {
        let json = match format {
            LogFormat::Json => true,
            LogFormat::Pretty => false,
            LogFormat::Auto => !std::io::IsTerminal::is_terminal(&std::io::stdout()),
        };
        ConsoleLogLayer { lines, json }
    }
}

/// The trace and span of the span an event happened in, if it is traced.
pub fn trace_ids<S>(
    event: &Event<'_>,
    ctx: &Context<'_, S>,
    dispatch: &Dispatch,
) -> Option<TraceIds>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let span = ctx.event_span(event)?;
    let cx = tracing_opentelemetry::get_otel_context(&span.id(), dispatch)?;
    let otel_span = cx.span();
    let sc = otel_span.span_context();
    sc.is_valid().then(|| TraceIds {
        trace_id: sc.trace_id(),
        span_id: sc.span_id(),
    })
}

impl<S> tracing_subscriber::Layer<S> for ConsoleLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        // The global dispatcher (ours) is reachable even while it dispatches
        // this event; under a scoped one there are simply no ids.
        let ids = tracing::dispatcher::get_default(|dispatch| trace_ids(event, &ctx, dispatch));
        let meta = event.metadata();
        let timestamp = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        let line = if self.json {
            let mut record = Map::new();
            record.insert("timestamp".into(), timestamp.into());
            record.insert("level".into(), meta.level().as_str().into());
            record.insert("target".into(), meta.target().into());
            record.insert("message".into(), fields.message.into());
            record.insert("fields".into(), Value::Object(fields.fields));
            if let Some(ids) = ids {
                record.insert("trace_id".into(), format!("{:032x}", ids.trace_id).into());
                record.insert("span_id".into(), format!("{:016x}", ids.span_id).into());
                record.insert("xray_trace_id".into(), xray_trace_id(ids.trace_id).into());
            }
            Value::Object(record).to_string()
        } else {
            let mut line = format!(
                "{timestamp} {:>5} {}: {}",
                meta.level(),
                meta.target(),
                fields.message
            );
            for (key, value) in &fields.fields {
                let _ = write!(line, " {key}={value}");
            }
            if let Some(ids) = ids {
                let _ = write!(
                    line,
                    " trace_id={:032x} span_id={:016x} xray_trace_id={}",
                    ids.trace_id,
                    ids.span_id,
                    xray_trace_id(ids.trace_id)
                );
            }
            line
        };
        self.lines.try_send(line);
    }
}

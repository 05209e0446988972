//! The console sink: finished spans and log lines on stdout, one line each,
//! written by the sink's own thread so a slow terminal never slows a request.

use std::fmt::Write as _;
use std::io::Write as _;

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::trace::SpanData;

use super::queue::{SendError, Sink};

pub struct ConsoleSink;

impl Sink<String> for ConsoleSink {
    type Payload = String;

    fn encode(&mut self, batch: Vec<String>) -> String {
        let mut text = batch.join("\n");
        text.push('\n');
        text
    }

    async fn send(&mut self, payload: &String) -> Result<(), SendError> {
        let mut out = std::io::stdout().lock();
        out.write_all(payload.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|err| SendError {
                message: format!("stdout: {err}"),
                retryable: false,
            })
    }
}

/// One readable line per span, like the Python ConsoleSpanExporter's
/// essentials: name, ids, kind, duration, status and attributes.
pub fn span_line(span: &SpanData) -> String {
    let kind = match span.span_kind {
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal => "internal",
    };
    let micros = span
        .end_time
        .duration_since(span.start_time)
        .map_or(0, |d| d.as_micros());
    let mut line = format!(
        "span {:?} trace_id={:032x} span_id={:016x}",
        span.name,
        span.span_context.trace_id(),
        span.span_context.span_id()
    );
    if span.parent_span_id != opentelemetry::trace::SpanId::INVALID {
        let _ = write!(line, " parent_id={:016x}", span.parent_span_id);
    }
    let _ = write!(
        line,
        " kind={kind} duration={}.{:03}ms",
        micros / 1000,
        micros % 1000
    );
    match &span.status {
        Status::Unset => {}
        Status::Ok => line.push_str(" status=ok"),
        Status::Error { description } => {
            let _ = write!(line, " status=error({description})");
        }
    }
    for kv in &span.attributes {
        let _ = write!(line, " {}={:?}", kv.key, kv.value.as_str());
    }
    for event in span.events.iter() {
        let _ = write!(line, " event={:?}", event.name);
    }
    line
}

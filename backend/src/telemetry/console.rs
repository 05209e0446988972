//! The console sink: finished spans and log lines on stdout, one line each,
//! written by the sink's own thread so a slow terminal never slows a request.
//! On by default, so `cargo run` shows traces and logs with no account.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::trace::SpanData;
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer as _};

use super::logs::LogRecord;
use super::queue::{self, QueueConfig, QueueSender, SendError, Sink, SinkStats};
use super::sink::{Shared, SinkParts, SpanSink, TelemetryError, TracesExporter};
use crate::config::values::parse_filter;

/// The console: log lines always (unless `RUST_LOG=off`), spans when
/// `OTEL_TRACES_EXPORTER` names it (by default when OTLP is not on).
#[derive(Debug, Clone, Args)]
pub struct ConsoleSettings {
    /// Console log format: `pretty`, `json`, or `auto` (pretty on a terminal)
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_name = "LOG_FORMAT",
        default_value = "auto"
    )]
    pub log_format: LogFormat,
    /// Console log filter, tracing-subscriber EnvFilter syntax (`off` silences logs)
    #[arg(
        long,
        env = "RUST_LOG",
        value_name = "RUST_LOG",
        default_value = "info",
        value_parser = parse_filter
    )]
    pub log_filter: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Auto,
    Pretty,
    Json,
}

/// Its byte bound is set at start, from `TELEMETRY_QUEUE_MAX_BYTES`.
const QUEUE: QueueConfig = QueueConfig {
    capacity: 16_384,
    max_bytes: usize::MAX,
    max_batch: 256,
    flush_interval: Duration::from_millis(100),
    attempt_timeout: Duration::from_secs(5),
    max_attempts: 1,
    initial_backoff: Duration::from_millis(0),
};

struct ConsoleSink;

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
                retry_after: None,
                hint: None,
            })
    }
}

/// One readable line per span, like the Python ConsoleSpanExporter's
/// essentials: name, ids, kind, duration, status and attributes.
fn span_line(span: &SpanData) -> String {
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

/// A tracing layer that formats each event it sees and queues the line.
struct ConsoleLogLayer {
    lines: QueueSender<String>,
    json: bool,
}

impl ConsoleLogLayer {
    fn new(lines: QueueSender<String>, format: LogFormat) -> Self {
        let json = match format {
            LogFormat::Json => true,
            LogFormat::Pretty => false,
            LogFormat::Auto => !std::io::IsTerminal::is_terminal(&std::io::stdout()),
        };
        ConsoleLogLayer { lines, json }
    }
}

impl<S> tracing_subscriber::Layer<S> for ConsoleLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let record = LogRecord::from_event(event, &ctx);
        let line = if self.json {
            record.to_json()
        } else {
            record.to_pretty()
        };
        self.lines.try_send(line);
    }
}

/// The console queue as the span router sees it: it formats a line from
/// a borrowed span.
struct ConsoleSpans(QueueSender<String>);

impl SpanSink for ConsoleSpans {
    fn reads_only(&self) -> bool {
        true
    }

    fn send(&self, span: Cow<'_, SpanData>) {
        self.0.try_send(span_line(&span));
    }
}

/// Starts the console's queue when it prints spans or logs, and prints the
/// start-up line saying which.
pub fn start(settings: &ConsoleSettings, shared: &Shared) -> Result<SinkParts, TelemetryError> {
    let spans_on = shared.exporter(TracesExporter::Console).is_ok();
    let logs_on = settings.log_filter != "off";
    eprintln!(
        "telemetry: console spans {}, console logs {}",
        if spans_on { "on" } else { "off" },
        if logs_on {
            format!("on ({})", settings.log_filter)
        } else {
            "off".into()
        }
    );
    if !spans_on && !logs_on {
        return Ok(SinkParts::off(
            "console",
            "RUST_LOG=off and console not in OTEL_TRACES_EXPORTER",
        ));
    }
    let queue = QueueConfig {
        max_bytes: shared.queue_max_bytes,
        ..QUEUE
    };
    let lines = queue::spawn(SinkStats::new("console", "stdout".into()), queue, || {
        Ok::<_, TelemetryError>(ConsoleSink)
    })?;
    let mut parts = SinkParts::on(lines.clone());
    if spans_on {
        parts = parts.with_spans(Arc::new(ConsoleSpans(lines.clone())));
    }
    if logs_on {
        // Checked when the config was read (`parse_filter`).
        let filter = EnvFilter::new(&settings.log_filter);
        let layer = ConsoleLogLayer::new(lines, settings.log_format).with_filter(filter);
        parts = parts.with_logs(Box::new(layer));
    }
    Ok(parts)
}

//! The console sink: log lines and finished traces on stdout, written by
//! the sink's own thread so a slow terminal never slows a request. On by
//! default, so `cargo run` shows traces and logs with no account.
//!
//! A trace prints once, when it has ended here, as an indented tree rather
//! than a line per span as each ends (children before their parents):
//! `traces` holds a trace's spans until then, `tree` puts them in their
//! places, `pretty` draws them. `LOG_FORMAT=json` makes every line JSON,
//! spans included (`json`).

mod json;
mod pretty;
mod traces;
mod tree;

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer as _};

use self::traces::{Limits, Trace, Traces};
use super::logs::LogRecord;
use super::queue::{self, QueueConfig, QueueSender, SendError, Sink, SinkStats, Weigh};
use super::sink::{Shared, SharedSpan, SinkParts, SpanSink, TelemetryError, TracesExporter};
use crate::config::values::parse_filter;

/// The console: log lines always (unless `RUST_LOG=off`), spans when
/// `OTEL_TRACES_EXPORTER` names it (by default when OTLP is not on).
#[derive(Debug, Clone, Args)]
pub struct ConsoleSettings {
    /// Console format: `pretty` (log lines, and each trace as a tree), `json` (a JSON line per log event and per span), or `auto` (pretty on a terminal)
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

/// What the console queue carries: a formatted log line, or a finished
/// span for the worker to place in its trace.
enum Output {
    Line(String),
    Span(SharedSpan),
}

impl Weigh for Output {
    fn weight(&self) -> usize {
        match self {
            Output::Line(line) => line.weight(),
            Output::Span(span) => span.weight(),
        }
    }
}

/// Spans held for unfinished traces at most; the bytes are bounded by
/// `TELEMETRY_QUEUE_MAX_BYTES`, as the queue is.
const HELD_SPANS: usize = 16_384;

struct ConsoleSink {
    traces: Traces,
    json: bool,
    colour: bool,
}

impl ConsoleSink {
    fn print(&self, trace: &Trace, text: &mut String) {
        if self.json {
            json::write(trace, text);
        } else {
            pretty::write(trace, self.colour, text);
        }
    }
}

impl Sink<Output> for ConsoleSink {
    type Payload = String;

    fn encode(&mut self, batch: Vec<Output>) -> String {
        let mut text = String::new();
        for item in batch {
            match item {
                Output::Line(line) => {
                    text.push_str(&line);
                    text.push('\n');
                }
                Output::Span(span) => {
                    for trace in self.traces.add(span) {
                        self.print(&trace, &mut text);
                    }
                }
            }
        }
        text
    }

    async fn send(&mut self, payload: &String) -> Result<(), SendError> {
        if payload.is_empty() {
            return Ok(());
        }
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

    /// Traces whose root had not ended, printed as far as they got.
    fn finish(&mut self) -> Option<String> {
        let mut text = String::new();
        for trace in self.traces.drain() {
            self.print(&trace, &mut text);
        }
        (!text.is_empty()).then_some(text)
    }
}

/// A tracing layer that formats each event it sees and queues the line.
struct ConsoleLogLayer {
    lines: QueueSender<Output>,
    json: bool,
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
        self.lines.try_send(Output::Line(line));
    }
}

/// The console queue as the span router sees it: it keeps each span for
/// the worker, which prints it with the rest of its trace.
struct ConsoleSpans(QueueSender<Output>);

impl SpanSink for ConsoleSpans {
    fn send(&self, span: &SharedSpan) {
        self.0.try_send(Output::Span(span.clone()));
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
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let json = match settings.log_format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !terminal,
    };
    let sink = ConsoleSink {
        traces: Traces::new(Limits {
            spans: HELD_SPANS,
            bytes: shared.queue_max_bytes,
        }),
        json,
        colour: terminal,
    };
    let lines = queue::spawn(SinkStats::new("console", "stdout".into()), queue, || {
        Ok::<_, TelemetryError>(sink)
    })?;
    let mut parts = SinkParts::on(lines.clone());
    if spans_on {
        parts = parts.with_spans(Arc::new(ConsoleSpans(lines.clone())));
    }
    if logs_on {
        // Checked when the config was read (`parse_filter`).
        let filter = EnvFilter::new(&settings.log_filter);
        let layer = ConsoleLogLayer { lines, json }.with_filter(filter);
        parts = parts.with_logs(Box::new(layer));
    }
    Ok(parts)
}

//! The trace explorer: the traces this process served, at `/_explorer/`,
//! with no account and no other program. One more span sink: the request
//! path only queues each finished span (`try_send`, as for every sink);
//! the sink's thread keeps them in a [`buffer::Buffer`] bounded in spans
//! and bytes, and the page's JSON API ([`api`]) reads the buffer, never
//! the store. On by default when the server listens on a loopback address
//! only; on any other address only with `TRACE_EXPLORER=true`, since it
//! shows request data to whoever can reach it. Its routes are served
//! outside the request span, so looking at traces makes none.

mod api;
mod buffer;
mod links;
mod reservoir;
mod views;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use clap::builder::BoolishValueParser;

use self::buffer::{Buffer, Limits};
use self::links::LinkMaker;
use self::reservoir::Reservoir;
use super::queue::{self, QueueConfig, QueueSender, SendError, Sink, SinkStats};
use super::sink::{Shared, SharedSpan, SinkParts, SpanSink, TelemetryError};
use crate::config::TelemetryConfig;
use crate::config::values::parse_bytes;

/// The built-in trace explorer.
#[derive(Debug, Clone, Args)]
pub struct ExplorerSettings {
    /// The trace explorer at /_explorer/ (`true` or `false`); default on when BIND_ADDRESS is a loopback address, off otherwise
    #[arg(long = "trace-explorer", env = "TRACE_EXPLORER", value_name = "TRACE_EXPLORER", value_parser = BoolishValueParser::new())]
    pub enabled: Option<bool>,
    /// Spans the trace explorer keeps at most; past it the oldest traces leave whole
    #[arg(long = "trace-explorer-max-spans", env = "TRACE_EXPLORER_MAX_SPANS", value_name = "TRACE_EXPLORER_MAX_SPANS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_spans: u32,
    /// Bytes of spans the trace explorer keeps at most (`32MiB`, `512KiB`)
    #[arg(long = "trace-explorer-max-bytes", env = "TRACE_EXPLORER_MAX_BYTES", value_name = "TRACE_EXPLORER_MAX_BYTES", default_value = "32MiB", value_parser = parse_bytes)]
    pub max_bytes: usize,
    /// Requests a second the trace explorer records when it alone needs spans (no trace or log sink on); past it a request makes no span
    #[arg(long = "trace-explorer-traces-per-second", env = "TRACE_EXPLORER_TRACES_PER_SECOND", value_name = "TRACE_EXPLORER_TRACES_PER_SECOND", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub traces_per_second: u32,
}

impl ExplorerSettings {
    /// Whether the explorer is on, and if not, why.
    fn enabled(&self, shared: &Shared) -> Result<(), String> {
        match self.enabled {
            Some(false) => Err("TRACE_EXPLORER=false".into()),
            _ if shared.sdk_disabled => Err("OTEL_SDK_DISABLED=true".into()),
            Some(true) => Ok(()),
            None if shared.bind_address.is_loopback() => Ok(()),
            None => Err(format!(
                "BIND_ADDRESS={} is not loopback: TRACE_EXPLORER=true shows request data there",
                shared.bind_address
            )),
        }
    }
}

/// A partial batch waits at most this long: what the page shows is this
/// far behind the requests at most.
const QUEUE: QueueConfig = QueueConfig {
    capacity: 16_384,
    max_bytes: usize::MAX,
    max_batch: 512,
    flush_interval: Duration::from_millis(50),
    attempt_timeout: Duration::from_secs(5),
    max_attempts: 1,
    initial_backoff: Duration::from_millis(0),
};

/// The sink's thread: each batch goes into the buffer the API reads.
struct Keeper(Arc<Mutex<Buffer>>);

impl Sink<SharedSpan> for Keeper {
    type Payload = ();

    fn encode(&mut self, batch: Vec<SharedSpan>) {
        let mut buffer = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for span in batch {
            buffer.add(span);
        }
    }

    async fn send(&mut self, (): &()) -> Result<(), SendError> {
        Ok(())
    }
}

struct ExplorerSpans(QueueSender<SharedSpan>);

impl SpanSink for ExplorerSpans {
    fn send(&self, span: &SharedSpan) {
        self.0.try_send(span.clone());
    }
}

/// Starts the explorer's queue when it is on and answers its parts: the
/// span sink and its untraced routes. Prints the start-up line.
pub fn start(config: &TelemetryConfig, shared: &Shared) -> Result<SinkParts, TelemetryError> {
    let settings = &config.explorer;
    if let Err(reason) = settings.enabled(shared) {
        return Ok(SinkParts::announce_off("explorer", reason));
    }
    let limits = Limits {
        spans: settings.max_spans as usize,
        bytes: settings.max_bytes,
    };
    let exposed = if shared.bind_address.is_loopback() {
        String::new()
    } else {
        format!(
            "; BIND_ADDRESS={}: anyone who reaches the port sees request data",
            shared.bind_address
        )
    };
    eprintln!(
        "telemetry: trace explorer on at /_explorer/ (keeps {} spans, {:.1} MiB at most, in memory; records {} requests a second at most when alone{exposed})",
        limits.spans,
        limits.bytes as f64 / f64::from(1 << 20),
        settings.traces_per_second
    );
    let buffer = Arc::new(Mutex::new(Buffer::new(limits)));
    let keeper = Keeper(Arc::clone(&buffer));
    let queue = QueueConfig {
        max_bytes: shared.queue_max_bytes,
        ..QUEUE
    };
    let spans = queue::spawn(
        SinkStats::new("explorer", "/_explorer/".into()),
        queue,
        || Ok::<_, TelemetryError>(keeper),
    )?;
    let links = LinkMaker::new(config, shared);
    let reservoir = Arc::new(Reservoir::new(settings.traces_per_second));
    Ok(SinkParts::on(spans.clone())
        .with_spans(Arc::new(ExplorerSpans(spans)))
        .with_gate(Arc::clone(&reservoir) as _)
        .with_untraced_routes(api::routes(buffer, links, reservoir)))
}

//! What a sink is to the rest of the backend. Each sink's `start(&settings,
//! &shared)` answers its [`SinkParts`]: the tracing layer it adds for log
//! events, the span queue it offers the [`SpanRouter`], its flush handle and
//! health entry, and, for the few that need one, a sampler around the
//! OpenTelemetry one, the `Sampled=` decision callers are told, a part in
//! every request and routes of its own. `telemetry::init` only collects the
//! parts. This module names no sink: sinks import it, never the reverse.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use clap::ValueEnum;
use http::{HeaderValue, Method};
use opentelemetry::trace::{SpanContext, TraceId};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{ShouldSample, SpanData};
use serde::Serialize;
use tracing_subscriber::{Layer, Registry};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

use super::doctor::{DeepCheck, DeepFindings};
use super::queue::{Flush, SinkReport, SinkStats, Weigh};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("{0}")]
    Config(String),
    #[error("cannot start a telemetry worker: {0}")]
    Io(#[from] std::io::Error),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// The span exporters `OTEL_TRACES_EXPORTER` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TracesExporter {
    Otlp,
    Console,
    None,
}

/// What every sink's `start` is given: what all signals share.
pub struct Shared {
    pub service_name: String,
    /// `service.name`, `service.version` and `OTEL_RESOURCE_ATTRIBUTES`.
    pub resource: Resource,
    /// The exporters `OTEL_TRACES_EXPORTER` asks for, defaults applied.
    pub exporters: Vec<TracesExporter>,
    /// `OTEL_TRACES_EXPORTER` was set (a sink missing from it was left out).
    pub exporters_named: bool,
    pub sdk_disabled: bool,
    /// `FRONTEND_URL` and `BACKEND_URL`: the origins browsers call from.
    pub origins: [HeaderValue; 2],
    /// `TELEMETRY_QUEUE_MAX_BYTES`: each sink queue's byte bound.
    pub queue_max_bytes: usize,
    /// `BIND_ADDRESS`: who can reach the sinks' routes.
    pub bind_address: IpAddr,
}

impl Shared {
    /// Whether spans go to `exporter`; if not, why, when the reason is not
    /// the sink's own (`None`: the default left it out).
    pub fn exporter(&self, exporter: TracesExporter) -> Result<(), Option<&'static str>> {
        if self.exporters.contains(&exporter) {
            Ok(())
        } else if self.sdk_disabled {
            Err(Some("OTEL_SDK_DISABLED=true"))
        } else if self.exporters_named {
            Err(Some("not in OTEL_TRACES_EXPORTER"))
        } else {
            Err(None)
        }
    }
}

/// A sink's tracing layer for log events, with its own filter.
pub type LogLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Wraps the OpenTelemetry sampler (X-Ray adds its own decision to it).
pub type SamplerWrap = Box<dyn FnOnce(Box<dyn ShouldSample>) -> Box<dyn ShouldSample>>;

/// A finished span as the sinks share it: never copied, however many
/// sinks keep it (the last one to let go frees it), and weighed once for
/// every queue's byte bound rather than by each queue as it comes and goes.
#[derive(Clone, Debug)]
pub struct SharedSpan(Arc<Weighed>);

#[derive(Debug)]
struct Weighed {
    span: SpanData,
    weight: usize,
}

impl SharedSpan {
    /// The span itself: moved out when no other sink holds it, else copied.
    pub fn into_span(self) -> SpanData {
        match Arc::try_unwrap(self.0) {
            Ok(weighed) => weighed.span,
            Err(shared) => shared.span.clone(),
        }
    }
}

impl From<SpanData> for SharedSpan {
    fn from(span: SpanData) -> Self {
        let weight = std::mem::size_of::<SharedSpan>() + span.weight();
        SharedSpan(Arc::new(Weighed { span, weight }))
    }
}

impl std::ops::Deref for SharedSpan {
    type Target = SpanData;

    fn deref(&self) -> &SpanData {
        &self.0.span
    }
}

impl std::borrow::Borrow<SpanData> for SharedSpan {
    fn borrow(&self) -> &SpanData {
        &self.0.span
    }
}

/// A shared span weighs all of itself in every queue that holds it: each
/// queue's bound holds whatever the other sinks do.
impl Weigh for SharedSpan {
    fn weight(&self) -> usize {
        self.0.weight
    }
}

/// The value of `span`'s attribute `key`, if it has one.
pub fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a opentelemetry::Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

/// A span kind as OpenTelemetry's documents spell it (`server`, `client`, ...).
pub fn kind_name(kind: &opentelemetry::trace::SpanKind) -> &'static str {
    use opentelemetry::trace::SpanKind;
    match kind {
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal => "internal",
    }
}

/// Where finished spans go. `send` runs on the request path: it only queues.
pub trait SpanSink: Send + Sync {
    /// Whether this sink takes `span` (X-Ray: only traces its rules kept).
    fn wants(&self, _span: &SpanData) -> bool {
        true
    }

    fn send(&self, span: &SharedSpan);
}

/// Hands each finished, sampled span to every sink that wants it, shared:
/// a second sink costs a reference count, not a copy of the span (which
/// cost a request 2.3k instructions, and as much again to free).
#[derive(Default)]
pub struct SpanRouter {
    sinks: Vec<Arc<dyn SpanSink>>,
}

impl std::fmt::Debug for SpanRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SpanRouter({} sinks)", self.sinks.len())
    }
}

impl SpanRouter {
    pub fn new(sinks: Vec<Arc<dyn SpanSink>>) -> Self {
        SpanRouter { sinks }
    }

    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    pub fn route(&self, span: SpanData) {
        let Some(first) = self.sinks.iter().position(|sink| sink.wants(&span)) else {
            return;
        };
        let span = SharedSpan::from(span);
        self.sinks[first].send(&span);
        for sink in &self.sinks[first + 1..] {
            if sink.wants(&span) {
                sink.send(&span);
            }
        }
    }
}

/// A log store's stream that other signals may write whole lines into
/// (CloudWatch Logs' stream takes the metrics' EMF records). Writing only
/// queues: the store's sink ships the lines with its own.
pub trait LogLines: Send + Sync {
    fn write(&self, timestamp_ms: i64, line: String);
}

/// Decides, as a request begins, whether it records spans at all: offered
/// by a sink that keeps only some requests' traces (the trace explorer,
/// under load). It applies only when that sink is the one that needs spans;
/// a request it turns away makes no span (see `spans::without_spans`).
pub trait RecordGate: Send + Sync {
    fn admit(&self) -> bool;
}

/// A sink's part in every request (Rollbar's error reports), run by the
/// request middleware inside the request's server span.
pub trait RequestHook: Send + Sync {
    /// Before the handler runs; may wrap the body to keep what the handler
    /// reads. Answers what to do once the answer is known, if anything.
    fn begin(&self, request: &mut Request, start: &RequestStart<'_>)
    -> Option<Box<dyn RequestEnd>>;
}

/// What the request middleware knows of a request before it runs.
pub struct RequestStart<'a> {
    /// The request's server span, open until every [`RequestEnd`] has run.
    pub span: &'a tracing::Span,
    /// The client as the first proxy saw it, else the peer.
    pub client_address: &'a str,
}

pub trait RequestEnd: Send {
    /// After the answer is recorded on the span and its log lines written.
    fn end(self: Box<Self>, span: &tracing::Span, response: &Response);
}

/// A signal that meters every request, whether spans are recorded or not
/// (the metrics'): told as each request begins, when its answer is known,
/// and as it leaves (however it ends: a dropped connection ends it too).
pub trait RequestMeter: Send + Sync {
    fn begin(&self, method: &Method);
    fn answered(&self, answer: &Metered<'_>);
    fn left(&self, method: &Method);
}

/// A request's answer, as a [`RequestMeter`] is told it.
pub struct Metered<'a> {
    pub method: &'a Method,
    /// The route template that matched, if any.
    pub route: Option<&'a str>,
    pub status: u16,
    pub elapsed: Duration,
    /// The request's trace, when it was sampled.
    pub trace: Option<TraceId>,
}

/// A request counted by a [`RequestMeter`] until this is dropped.
pub struct InFlight<'a> {
    meter: &'a dyn RequestMeter,
    method: &'a Method,
}

impl<'a> InFlight<'a> {
    pub fn begin(meter: &'a dyn RequestMeter, method: &'a Method) -> Self {
        meter.begin(method);
        InFlight { meter, method }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.meter.left(self.method);
    }
}

/// What the request middleware needs from telemetry; cheap to clone.
#[derive(Clone)]
pub struct RequestTelemetry {
    /// `OTEL_SEMCONV_STABILITY_OPT_IN=http/dup`: the old names as well.
    pub http_dup_semconv: bool,
    /// The `Sampled=` a caller is answered in `X-Amzn-Trace-Id`:
    /// OpenTelemetry's decision unless a sink's own decides it.
    pub answer_sampled: fn(&SpanContext) -> bool,
    pub hooks: Arc<[Arc<dyn RequestHook>]>,
    /// Each request's duration and status, and the requests in flight.
    pub meter: Option<Arc<dyn RequestMeter>>,
    /// Whether a request records spans, when one sink alone needs them and
    /// keeps only some (see [`RecordGate`]); `None`: every request does.
    pub gate: Option<Arc<dyn RecordGate>>,
}

impl Default for RequestTelemetry {
    fn default() -> Self {
        RequestTelemetry {
            http_dup_semconv: false,
            answer_sampled: SpanContext::is_sampled,
            hooks: Arc::new([]),
            meter: None,
            gate: None,
        }
    }
}

/// A sink as `/api/health-check` lists it.
pub enum SinkEntry {
    On(Arc<SinkStats>),
    Off { name: &'static str, reason: String },
}

/// Per-sink counters for the health check, and the doctor's probes for
/// `?deep=1`; cheap to clone.
#[derive(Clone, Default)]
pub struct Health {
    sinks: Arc<Vec<SinkEntry>>,
    deep: Option<Arc<DeepCheck>>,
}

impl Health {
    pub fn new(sinks: Vec<SinkEntry>) -> Self {
        Health {
            sinks: Arc::new(sinks),
            deep: None,
        }
    }

    pub fn with_deep_check(self, deep: DeepCheck) -> Self {
        Health {
            deep: Some(Arc::new(deep)),
            ..self
        }
    }

    /// The doctor's findings (rate limited), when the probes are wired in.
    pub async fn deep(&self) -> Option<DeepFindings> {
        Some(self.deep.as_ref()?.findings().await)
    }

    /// Each sink by name.
    pub fn report(&self) -> BTreeMap<&'static str, SinkHealth> {
        self.sinks
            .iter()
            .map(|entry| match entry {
                SinkEntry::On(stats) => (stats.name(), SinkHealth::On(stats.report())),
                SinkEntry::Off { name, reason } => (
                    *name,
                    SinkHealth::Off(SinkOff {
                        enabled: false,
                        reason: reason.clone(),
                    }),
                ),
            })
            .collect()
    }
}

/// One sink in `/api/health-check`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum SinkHealth {
    On(SinkReport),
    Off(SinkOff),
}

/// A sink that is off, and why.
#[derive(Serialize, ToSchema)]
pub struct SinkOff {
    pub enabled: bool,
    pub reason: String,
}

/// What one sink contributes; everything but the health entry is optional.
#[must_use = "a sink's parts do nothing until telemetry::init installs them"]
pub struct SinkParts {
    pub entry: SinkEntry,
    /// Flushed under the shutdown deadline, in the order sinks started.
    pub flush: Option<Box<dyn Flush>>,
    /// The sink writes into another (its [`LogLines`]): flushed first.
    pub feeds: bool,
    pub logs: Option<LogLayer>,
    pub spans: Option<Arc<dyn SpanSink>>,
    /// Which requests record spans, when this sink alone needs them.
    pub gate: Option<Arc<dyn RecordGate>>,
    pub sampler: Option<SamplerWrap>,
    pub answer_sampled: Option<fn(&SpanContext) -> bool>,
    pub request_hook: Option<Arc<dyn RequestHook>>,
    /// Routes of its own, each documented where it is defined.
    pub routes: Option<OpenApiRouter>,
    /// Routes served outside the request span: looking at them makes no
    /// trace (the trace explorer's).
    pub untraced_routes: Option<OpenApiRouter>,
    /// What meters every request (see [`RequestMeter`]).
    pub request_meter: Option<Arc<dyn RequestMeter>>,
    /// Told the health check's sinks once every sink has started (the
    /// metrics report their counters).
    pub health_watch: Option<Box<dyn FnOnce(Health)>>,
    /// A stream other signals may write lines into (see [`LogLines`]).
    pub log_lines: Option<Arc<dyn LogLines>>,
}

impl SinkParts {
    /// A sink that is on, flushed through `queue`.
    pub fn on(queue: impl Flush + 'static) -> Self {
        let mut parts = SinkParts::empty(SinkEntry::On(Arc::clone(queue.stats())));
        parts.flush = Some(Box::new(queue));
        parts
    }

    /// A sink that is on with nothing to flush (one that is read, such as
    /// Prometheus's scrape route).
    pub fn serving(entry: SinkEntry) -> Self {
        SinkParts::empty(entry)
    }

    /// A sink that is off, with the reason the health check shows.
    pub fn off(name: &'static str, reason: impl Into<String>) -> Self {
        SinkParts::empty(SinkEntry::Off {
            name,
            reason: reason.into(),
        })
    }

    /// A sink that is off; prints the start-up line saying why.
    pub fn announce_off(name: &'static str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        eprintln!("telemetry: {name} off ({reason})");
        SinkParts::off(name, reason)
    }

    fn empty(entry: SinkEntry) -> Self {
        SinkParts {
            entry,
            flush: None,
            feeds: false,
            logs: None,
            spans: None,
            gate: None,
            sampler: None,
            answer_sampled: None,
            request_hook: None,
            routes: None,
            untraced_routes: None,
            request_meter: None,
            health_watch: None,
            log_lines: None,
        }
    }

    /// Whether the sink needs spans recorded: it takes spans, or its log
    /// lines and reports carry the trace they happened in.
    pub fn needs_spans(&self) -> bool {
        self.spans.is_some() || self.logs.is_some() || self.request_hook.is_some()
    }

    pub fn with_logs(mut self, layer: LogLayer) -> Self {
        self.logs = Some(layer);
        self
    }

    pub fn with_spans(mut self, sink: Arc<dyn SpanSink>) -> Self {
        self.spans = Some(sink);
        self
    }

    pub fn with_gate(mut self, gate: Arc<dyn RecordGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    pub fn with_routes(mut self, routes: OpenApiRouter) -> Self {
        self.routes = Some(routes);
        self
    }

    pub fn with_untraced_routes(mut self, routes: OpenApiRouter) -> Self {
        self.untraced_routes = Some(routes);
        self
    }

    pub fn with_request_meter(mut self, meter: Arc<dyn RequestMeter>) -> Self {
        self.request_meter = Some(meter);
        self
    }

    /// The sink writes into another sink, which must stay open until it
    /// has flushed.
    pub fn feeding(mut self) -> Self {
        self.feeds = true;
        self
    }

    pub fn with_log_lines(mut self, lines: Arc<dyn LogLines>) -> Self {
        self.log_lines = Some(lines);
        self
    }

    pub fn with_health_watch(mut self, watch: impl FnOnce(Health) + 'static) -> Self {
        self.health_watch = Some(Box::new(watch));
        self
    }
}

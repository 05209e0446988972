//! One pipeline for every signal. `tracing` is the instrumentation API; one
//! layer ([`spans`]) records spans as OpenTelemetry `SpanData`, sampled once
//! per trace, and routes each finished span to every trace sink's bounded
//! queue; spans made through the OpenTelemetry API ([`otel_api`]) take the
//! same road. Log events go through the sinks' own tracing layers.
//!
//! Each sink is a plug-in: a folder (or file) with its settings and a
//! `start` answering its [`SinkParts`] ([`sink`] is the vocabulary they
//! share). A sink that is off contributes nothing but its health entry.
//! Adding a sink is one line in [`init`] (and its settings' flatten line in
//! config); removing one is deleting its folder and those lines.

pub mod cloudwatch;
pub mod console;
pub mod doctor;
pub mod explorer;
mod export;
mod guard;
pub mod ids;
mod logs;
pub mod metrics;
mod otel_api;
pub mod otlp;
mod otlp_wire;
pub mod propagation;
pub mod queue;
pub mod rollbar;
pub mod scrub;
mod sigv4;
pub mod sink;
pub mod spans;
#[cfg(test)]
mod test_span;
pub mod xray;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, ShouldSample};
use tracing::Level;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use utoipa_axum::router::OpenApiRouter;

pub use guard::Guard;
pub use sink::{Health, RequestTelemetry, TelemetryError, TracesExporter};

use crate::config::{Config, SamplerKind, TelemetryConfig};
use sink::{Shared, SinkParts, SpanRouter};

/// What `init` hands back: the shutdown guard, and what the app serves
/// with: the health counters, the request middleware's settings and the
/// sinks' own routes, documented.
#[derive(Default)]
pub struct Telemetry {
    pub guard: Guard,
    pub health: Health,
    pub requests: RequestTelemetry,
    pub routes: OpenApiRouter,
    /// Routes served outside the request span.
    pub untraced_routes: OpenApiRouter,
}

/// Starts every configured sink and installs the global subscriber (and the
/// global OpenTelemetry tracer provider). Each sink prints one line saying
/// where it sends or why it is off.
pub fn init(config: &Config) -> Result<Telemetry, TelemetryError> {
    let telemetry = install(start(config)?, &config.telemetry)?;
    Ok(Telemetry {
        health: telemetry
            .health
            .with_deep_check(doctor::DeepCheck::new(config.clone())),
        ..telemetry
    })
}

/// Starts every sink and answers their parts, not installed yet.
pub fn start(config: &Config) -> Result<Vec<SinkParts>, TelemetryError> {
    let t = &config.telemetry;
    let shared = shared(config);
    let mut parts = vec![
        otlp::start(&t.otlp, &shared)?,
        xray::start(&t.xray, &shared)?,
        rollbar::start(&t.rollbar, &shared)?,
        cloudwatch::start(&t.cloudwatch, &shared)?,
        console::start(&t.console, &shared)?,
        explorer::start(t, &shared)?,
    ];
    let log_lines = parts.iter().find_map(|part| part.log_lines.clone());
    parts.extend(metrics::start(&t.metrics, &t.otlp, log_lines, &shared)?);
    Ok(parts)
}

/// The sinks' own subcommands (`cruddur-backend xray setup`), one line each.
#[derive(Debug, Clone, Subcommand)]
pub enum SinkCommand {
    #[command(flatten)]
    Xray(xray::Command),
}

/// Runs a sink's subcommand.
pub async fn run_command(command: SinkCommand, config: &TelemetryConfig) -> ExitCode {
    match command {
        SinkCommand::Xray(command) => command.run(&config.xray, &config.service_name).await,
    }
}

fn shared(config: &Config) -> Shared {
    let t = &config.telemetry;
    Shared {
        service_name: t.service_name.clone(),
        resource: resource(t),
        exporters: t.traces_exporters(),
        exporters_named: t.traces_exporter.is_some(),
        sdk_disabled: t.sdk_disabled,
        origins: [config.frontend_url.clone(), config.backend_url.clone()],
        queue_max_bytes: t.queue_max_bytes,
        bind_address: config.bind_address,
    }
}

fn sampler(config: &TelemetryConfig) -> Sampler {
    let ratio = config.sampler_arg.unwrap_or(1.0);
    match config.sampler {
        SamplerKind::AlwaysOn => Sampler::AlwaysOn,
        SamplerKind::AlwaysOff => Sampler::AlwaysOff,
        SamplerKind::Traceidratio => Sampler::TraceIdRatioBased(ratio),
        SamplerKind::ParentbasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        SamplerKind::ParentbasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        SamplerKind::ParentbasedTraceidratio => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
        }
    }
}

fn resource(config: &TelemetryConfig) -> Resource {
    let mut attributes = vec![
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        KeyValue::new("telemetry.sdk.name", "opentelemetry"),
        KeyValue::new("telemetry.sdk.language", "rust"),
    ];
    if let Some(extra) = &config.resource_attributes {
        attributes.extend(
            extra
                .0
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        );
    }
    Resource::builder_empty()
        .with_attributes(attributes)
        .with_service_name(config.service_name.clone())
        .build()
}

/// Puts the sinks' parts together: the sampler (OpenTelemetry's, wrapped by
/// the sinks that add a decision), the span router, the subscriber with the
/// span layer and every log layer, the OpenTelemetry tracer provider, and
/// what the app needs.
fn install(parts: Vec<SinkParts>, config: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    // Log lines and error reports carry trace ids only where spans are recorded.
    let needing: Vec<&SinkParts> = parts.iter().filter(|part| part.needs_spans()).collect();
    let traced = !needing.is_empty();
    // A sink's gate decides which requests record spans only where that
    // sink alone needs them: any other needs every request's.
    let gate = match needing.as_slice() {
        [only] => only.gate.clone(),
        _ => None,
    };
    let mut sampler: Box<dyn ShouldSample> = Box::new(sampler(config));
    let mut span_sinks = Vec::new();
    let mut log_layers = Vec::new();
    let mut entries = Vec::new();
    let mut flushes = Vec::new();
    let mut feeders = Vec::new();
    let mut hooks = Vec::new();
    let mut health_watches = Vec::new();
    let mut routes = OpenApiRouter::default();
    let mut untraced_routes = OpenApiRouter::default();
    let gated = gate.is_some();
    let mut requests = RequestTelemetry {
        http_dup_semconv: config.http_dup_semconv(),
        gate,
        ..RequestTelemetry::default()
    };
    for part in parts {
        entries.push(part.entry);
        if part.feeds {
            feeders.extend(part.flush);
        } else {
            flushes.extend(part.flush);
        }
        log_layers.extend(part.logs);
        span_sinks.extend(part.spans);
        hooks.extend(part.request_hook);
        if let Some(meter) = part.request_meter {
            requests.meter = Some(meter);
        }
        health_watches.extend(part.health_watch);
        if let Some(wrap) = part.sampler {
            sampler = wrap(sampler);
        }
        if let Some(answer) = part.answer_sampled {
            requests.answer_sampled = answer;
        }
        if let Some(own) = part.routes {
            routes = routes.merge(own);
        }
        if let Some(own) = part.untraced_routes {
            untraced_routes = untraced_routes.merge(own);
        }
    }
    requests.hooks = hooks.into();
    let sampler: Arc<dyn ShouldSample> = Arc::from(sampler);
    let router = Arc::new(SpanRouter::new(span_sinks));
    // Before the subscriber: the SDK logs "global tracer provider set" at
    // INFO, which would be the first line of every log sink.
    if traced {
        otel_api::install(Arc::clone(&sampler), Arc::clone(&router));
    }
    let span_layer = traced.then(|| {
        spans::SpanLayer::new(sampler, router).with_filter(filter_fn(|meta| {
            if meta.is_span() {
                *meta.level() <= Level::INFO
            } else {
                *meta.level() <= Level::WARN
            }
        }))
    });
    // No log layer is `None`, not an empty list: an empty list hints "no
    // level at all" and would turn the span layer off with it.
    let log_layers = (!log_layers.is_empty()).then_some(log_layers);
    tracing_subscriber::registry()
        .with(log_layers)
        .with(span_layer)
        .with(gated.then_some(spans::UnrecordedGate))
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    let health = Health::new(entries);
    for watch in health_watches {
        watch(health.clone());
    }
    Ok(Telemetry {
        guard: Guard {
            feeders,
            sinks: flushes,
        },
        health,
        requests,
        routes,
        untraced_routes,
    })
}

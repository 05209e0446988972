//! One pipeline for every signal. `tracing` is the instrumentation API; one
//! layer ([`spans`]) records spans as OpenTelemetry `SpanData`, sampled once
//! per trace, and routes each finished span to every trace sink's bounded
//! queue. Log events go through tracing-subscriber layers. A sink that is
//! off is simply not there: a `None` layer or no queue.

mod cloudwatch;
mod console;
mod guard;
pub mod ids;
mod logs;
mod otlp;
mod otlp_wire;
pub mod propagation;
pub mod queue;
pub mod rollbar;
pub mod spans;
pub mod xray;

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, ShouldSample, SpanData};
use serde_json::{Map, Value, json};
use tracing::Level;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use guard::Guard;
pub use otlp::OtlpItem;
use queue::{Flush, QueueConfig, QueueSender, SinkStats};

use crate::config::{
    OtlpProtocol, SamplerKind, TelemetryConfig, TracesExporter, XrayMode, XraySampling,
};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("{0}")]
    Config(String),
    #[error("cannot start a telemetry worker: {0}")]
    Io(#[from] std::io::Error),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

const CONSOLE_QUEUE: QueueConfig = QueueConfig {
    capacity: 16_384,
    max_batch: 256,
    flush_interval: Duration::from_millis(100),
    attempt_timeout: Duration::from_secs(5),
    max_attempts: 1,
    initial_backoff: Duration::from_millis(0),
};

/// Hands each finished, sampled span to every trace sink that wants it,
/// copying it only for a second sink that keeps it (X-Ray keeps few of the
/// spans OTLP gets).
#[derive(Debug, Default)]
struct SpanRouter {
    otlp: Option<QueueSender<OtlpItem>>,
    xray: Option<QueueSender<SpanData>>,
    console: Option<QueueSender<String>>,
}

impl SpanRouter {
    fn route(&self, span: SpanData) {
        if let Some(console) = &self.console {
            console.try_send(console::span_line(&span));
        }
        let xray = self
            .xray
            .as_ref()
            .filter(|_| xray::sampling::sampled_for_xray(span.span_context.trace_state()));
        match (&self.otlp, xray) {
            (Some(otlp), Some(xray)) => {
                xray.try_send(span.clone());
                otlp.try_send(OtlpItem::Span(span));
            }
            (Some(otlp), None) => otlp.try_send(OtlpItem::Span(span)),
            (None, Some(xray)) => xray.try_send(span),
            (None, None) => {}
        }
    }
}

/// A sink as `/api/health-check` lists it.
enum SinkEntry {
    On(Arc<SinkStats>),
    Off { name: &'static str, reason: String },
}

/// Per-sink counters for the health check; cheap to clone.
#[derive(Clone, Default)]
pub struct Health {
    sinks: Arc<Vec<SinkEntry>>,
}

impl Health {
    pub fn report(&self) -> Value {
        let mut sinks = Map::new();
        for entry in self.sinks.iter() {
            match entry {
                SinkEntry::On(stats) => {
                    sinks.insert(stats.name().into(), json!(stats.report()));
                }
                SinkEntry::Off { name, reason } => {
                    sinks.insert(
                        (*name).into(),
                        json!({ "enabled": false, "reason": reason }),
                    );
                }
            }
        }
        Value::Object(sinks)
    }
}

/// What `init` hands back: the shutdown guard, the health counters, and the
/// request-span settings.
pub struct Telemetry {
    pub guard: Guard,
    pub health: Health,
    /// The old HTTP attribute names are wanted as well.
    pub http_dup_semconv: bool,
    /// X-Ray sampling decides what X-Ray gets (X-Ray is on).
    pub xray_sampling: bool,
    /// The OTLP queue, for the browser relay when `OTEL_BROWSER_RELAY` is on.
    pub relay: Option<QueueSender<OtlpItem>>,
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

const XRAY_QUEUE: QueueConfig = QueueConfig {
    capacity: 65_536,
    max_batch: 256,
    flush_interval: Duration::from_secs(1),
    attempt_timeout: Duration::from_secs(2),
    max_attempts: 1,
    initial_backoff: Duration::from_millis(0),
};

/// The X-Ray sink for `XRAY_MODE`, with its start-up line.
fn xray_sink(
    config: &TelemetryConfig,
    resource: &Resource,
) -> Result<(QueueSender<SpanData>, Arc<SinkStats>), TelemetryError> {
    let xray = &config.xray;
    let naming = xray::translate::Naming {
        fallback: xray
            .tracing_name
            .clone()
            .unwrap_or_else(|| config.service_name.clone()),
        pattern: xray.url_pattern.clone(),
    };
    let local = match &xray.sampling_rules {
        Some(file) => format!("rules from {} ({} rules)", file.path, file.rules.len()),
        None => "default rule (1/s, then 5%)".to_owned(),
    };
    let sampling = match xray.sampling {
        XraySampling::Local => local,
        XraySampling::Centralized => format!("centralized, falling back to the {local}"),
    };
    let named = format!(
        "segments named {:?}{}",
        naming.fallback,
        naming
            .pattern
            .as_ref()
            .map(|p| format!(" or the host matching {p:?}"))
            .unwrap_or_default()
    );
    let (destination, sender) = match xray.mode.unwrap_or(XrayMode::Daemon) {
        XrayMode::Daemon => {
            let address = xray
                .daemon_address
                .clone()
                .unwrap_or(xray::daemon::DaemonAddress {
                    host: "127.0.0.1".into(),
                    port: 2000,
                });
            let destination = format!("udp://{address} (daemon)");
            let stats = SinkStats::new("xray", destination.clone());
            let sender = queue::spawn(stats, XRAY_QUEUE, || {
                Ok::<_, TelemetryError>(xray::daemon::DaemonSink::new(address, naming.clone()))
            })?;
            (destination, sender)
        }
        XrayMode::Api => {
            let destination = "PutTraceSegments (AWS SDK region and credentials)".to_owned();
            let stats = SinkStats::new("xray", destination.clone());
            let queue = QueueConfig {
                max_attempts: 4,
                attempt_timeout: Duration::from_secs(10),
                initial_backoff: Duration::from_millis(200),
                ..XRAY_QUEUE
            };
            let sender = queue::spawn(stats, queue, || {
                Ok::<_, TelemetryError>(xray::api::ApiSink::new(naming.clone()))
            })?;
            (destination, sender)
        }
        XrayMode::Otlp => {
            let endpoint = xray.otlp_endpoint.as_ref().map(ToString::to_string);
            let destination = format!(
                "{} (OTLP, SigV4)",
                endpoint
                    .as_deref()
                    .unwrap_or("https://xray.{region}.amazonaws.com/v1/traces")
            );
            let stats = SinkStats::new("xray", destination.clone());
            let queue = QueueConfig {
                max_batch: 512,
                max_attempts: 4,
                attempt_timeout: config.otlp_timeout,
                initial_backoff: Duration::from_millis(200),
                ..XRAY_QUEUE
            };
            let sender = queue::spawn(stats, queue, || {
                xray::otlp::XrayOtlpSink::new(resource, endpoint.clone(), config.otlp_timeout)
                    .map_err(|err| {
                        TelemetryError::Config(format!("cannot build the X-Ray OTLP client: {err}"))
                    })
            })?;
            (destination, sender)
        }
    };
    eprintln!("telemetry: xray on: {destination}, {named}, sampling {sampling}");
    let stats = Arc::clone(sender.stats());
    Ok((sender, stats))
}

/// Starts every configured sink and installs the global subscriber. Prints
/// one line per sink saying where it sends or why it is off.
pub fn init(config: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    let exporters = config.traces_exporters();
    let logs_on = config.log_filter.trim() != "off";
    let log_filter = logs_on
        .then(|| EnvFilter::try_new(&config.log_filter))
        .transpose()
        .map_err(|err| {
            TelemetryError::Config(format!(
                "RUST_LOG={:?} is invalid: {err}",
                config.log_filter
            ))
        })?;
    let resource = resource(config);
    let mut entries = Vec::new();
    let mut sinks: Vec<Box<dyn Flush>> = Vec::new();
    let xray_on = config.xray.enabled();
    let mut relay = None;
    let mut router = SpanRouter::default();
    let span_sampler: Box<dyn ShouldSample> = match (&xray_on, &config.xray.sampling_rules) {
        (Ok(()), rules) => {
            let rules = rules.as_ref().map_or_else(
                || vec![xray::sampling::Rule::default_rule()],
                |file| file.rules.clone(),
            );
            let rules = Arc::new(xray::sampling::RuleSampler::new(
                rules,
                Box::new(xray::sampling::SystemClock),
            ));
            if config.xray.sampling == XraySampling::Centralized {
                xray::centralized::start(
                    Arc::clone(&rules),
                    xray::centralized::Intervals {
                        rules: config.xray.sampling_rules_interval,
                        targets: config.xray.sampling_targets_interval,
                    },
                )?;
            }
            Box::new(xray::sampling::XraySampler::new(
                Box::new(sampler(config)),
                rules,
                config.service_name.clone(),
            ))
        }
        (Err(_), _) => Box::new(sampler(config)),
    };

    if exporters.contains(&TracesExporter::Otlp) {
        let url = config.otlp_traces_url().unwrap_or_default();
        let headers = config.otlp_headers();
        let protocol = match config.otlp_protocol {
            OtlpProtocol::HttpProtobuf => "http/protobuf",
            OtlpProtocol::Grpc => "grpc",
        };
        let shown_headers: Vec<String> = headers
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        eprintln!(
            "telemetry: otlp on: {url} ({protocol}){}",
            if shown_headers.is_empty() {
                String::new()
            } else {
                format!(", headers {}", shown_headers.join(" "))
            }
        );
        let stats = SinkStats::new("otlp", format!("{url} ({protocol})"));
        let queue = QueueConfig {
            capacity: config.bsp_max_queue_size as usize,
            max_batch: config.bsp_max_export_batch_size as usize,
            flush_interval: config.bsp_schedule_delay,
            attempt_timeout: config.otlp_timeout,
            max_attempts: 4,
            initial_backoff: Duration::from_millis(200),
        };
        let sender = queue::spawn(Arc::clone(&stats), queue, || {
            otlp::OtlpSink::new(
                config.otlp_protocol,
                &url,
                &headers,
                config.otlp_timeout,
                &resource,
            )
        })?;
        router.otlp = Some(sender.clone());
        if config.browser_relay {
            eprintln!("telemetry: browser relay on: POST /api/telemetry/v1/traces -> otlp");
            relay = Some(sender.clone());
        }
        sinks.push(Box::new(sender));
        entries.push(SinkEntry::On(stats));
    } else {
        let reason = if config.sdk_disabled {
            "OTEL_SDK_DISABLED=true".to_owned()
        } else if config.traces_exporter.is_some() {
            "not in OTEL_TRACES_EXPORTER".to_owned()
        } else {
            "OTEL_EXPORTER_OTLP_ENDPOINT and HONEYCOMB_API_KEY unset".to_owned()
        };
        eprintln!("telemetry: otlp off ({reason})");
        if config.browser_relay {
            eprintln!("telemetry: browser relay off (no OTLP sink to forward to)");
        }
        entries.push(SinkEntry::Off {
            name: "otlp",
            reason,
        });
    }

    match xray_on {
        Ok(()) => {
            let (sender, stats) = xray_sink(config, &resource)?;
            router.xray = Some(sender.clone());
            sinks.push(Box::new(sender));
            entries.push(SinkEntry::On(stats));
        }
        Err(reason) => {
            eprintln!("telemetry: xray off ({reason})");
            entries.push(SinkEntry::Off {
                name: "xray",
                reason: reason.to_owned(),
            });
        }
    }

    let rollbar = rollbar::start(&config.rollbar)?;
    let rollbar_layer = rollbar.layer();
    let rollbar_on = rollbar.is_on();
    entries.push(rollbar.entry);
    sinks.extend(rollbar.sink);

    let cloudwatch = cloudwatch::start(&config.cloudwatch)?;
    entries.push(cloudwatch.entry);
    let cloudwatch_layer = cloudwatch.on.map(|(events, level)| {
        sinks.push(Box::new(events.clone()));
        cloudwatch::layer(events, level)
    });

    let console_spans = exporters.contains(&TracesExporter::Console);
    let console = if console_spans || logs_on {
        let stats = SinkStats::new("console", "stdout".into());
        let sender = queue::spawn(Arc::clone(&stats), CONSOLE_QUEUE, || {
            Ok::<_, TelemetryError>(console::ConsoleSink)
        })?;
        entries.push(SinkEntry::On(stats));
        Some(sender)
    } else {
        entries.push(SinkEntry::Off {
            name: "console",
            reason: "RUST_LOG=off and console not in OTEL_TRACES_EXPORTER".into(),
        });
        None
    };
    eprintln!(
        "telemetry: console spans {}, console logs {}",
        if console_spans { "on" } else { "off" },
        if logs_on {
            format!("on ({})", config.log_filter)
        } else {
            "off".into()
        }
    );
    if console_spans {
        router.console.clone_from(&console);
    }

    // Log lines and Rollbar items carry trace ids only where spans are traced.
    let traced = !exporters.is_empty()
        || logs_on
        || rollbar_on
        || config.xray.enabled().is_ok()
        || cloudwatch_layer.is_some();
    let span_layer = traced.then(|| {
        spans::SpanLayer::new(span_sampler, router).with_filter(filter_fn(|meta| {
            if meta.is_span() {
                *meta.level() <= Level::INFO
            } else {
                *meta.level() <= Level::WARN
            }
        }))
    });
    let log_layer = match (log_filter, &console) {
        (Some(filter), Some(lines)) => {
            Some(logs::ConsoleLogLayer::new(lines.clone(), config.log_format).with_filter(filter))
        }
        _ => None,
    };
    tracing_subscriber::registry()
        .with(span_layer)
        .with(log_layer)
        .with(rollbar_layer)
        .with(cloudwatch_layer)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    if let Some(console) = console {
        sinks.push(Box::new(console));
    }
    Ok(Telemetry {
        guard: Guard { sinks },
        health: Health {
            sinks: Arc::new(entries),
        },
        http_dup_semconv: config.http_dup_semconv(),
        xray_sampling: config.xray.enabled().is_ok(),
        relay,
    })
}

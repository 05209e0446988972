//! AWS X-Ray: a second trace sink behind the same span router, so X-Ray
//! shows the very trace (same id) that OTLP carries.
//!
//! `translate` turns spans into segment documents (pure; `document` and
//! `naming` are its parts); `daemon` sends them to the X-Ray daemon over
//! UDP, `api` to PutTraceSegments, and `otlp` sends the spans themselves to
//! X-Ray's SigV4-signed OTLP endpoint. `sampling` decides per trace which
//! traces reach X-Ray, by X-Ray's rules (`centralized` fetches them from
//! X-Ray); `setup` is the `xray setup` command.

pub mod api;
pub mod centralized;
pub mod daemon;
mod doctor;
mod document;
pub mod naming;
pub mod otlp;
mod rules;
pub mod sampling;
pub mod setup;
pub mod translate;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Args, Subcommand, ValueEnum};
use http::Uri;
use opentelemetry_sdk::trace::SpanData;

use self::daemon::DaemonAddress;
pub use self::doctor::examine;
use self::naming::Naming;
use self::sampling::{Rule, RuleSampler, SystemClock, XraySampler, parse_rules, sampled_for_xray};
use crate::config::values::{parse_duration, parse_millis, parse_url};
use crate::telemetry::queue::{self, QueueConfig, QueueSender, SinkStats};
use crate::telemetry::sink::{Shared, SharedSpan, SinkParts, SpanSink, TelemetryError};

/// AWS X-Ray, on when a daemon address, a naming pattern or a rules file is set.
#[derive(Debug, Clone, Args)]
pub struct XraySettings {
    /// `false` turns X-Ray off whatever else is set
    #[arg(long = "xray-sdk-enabled", env = "AWS_XRAY_SDK_ENABLED", value_name = "AWS_XRAY_SDK_ENABLED", default_value = "true", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub sdk_enabled: bool,
    /// The X-Ray daemon: `host:port` (resolved when sending) or `tcp:host:port udp:host:port`; default 127.0.0.1:2000
    #[arg(long = "xray-daemon-address", env = "AWS_XRAY_DAEMON_ADDRESS", value_name = "AWS_XRAY_DAEMON_ADDRESS", value_parser = DaemonAddress::parse)]
    pub daemon_address: Option<DaemonAddress>,
    /// Dynamic naming: a request whose host matches this pattern (`*`, `?`) names its segment after the host
    #[arg(long = "xray-url", env = "AWS_XRAY_URL", value_name = "AWS_XRAY_URL")]
    pub url_pattern: Option<String>,
    /// Segment name when dynamic naming does not apply (default: OTEL_SERVICE_NAME)
    #[arg(
        long = "xray-tracing-name",
        env = "AWS_XRAY_TRACING_NAME",
        value_name = "AWS_XRAY_TRACING_NAME"
    )]
    pub tracing_name: Option<String>,
    /// How segments reach X-Ray: `daemon` (UDP, the default), `api` (PutTraceSegments) or `otlp` (X-Ray's OTLP endpoint, SigV4)
    #[arg(long = "xray-mode", env = "XRAY_MODE", value_name = "XRAY_MODE")]
    pub mode: Option<XrayMode>,
    /// X-Ray's OTLP endpoint for XRAY_MODE=otlp; default https://xray.{region}.amazonaws.com/v1/traces
    #[arg(id = "xray_otlp_endpoint", long = "xray-otlp-endpoint", env = "XRAY_OTLP_ENDPOINT", value_name = "XRAY_OTLP_ENDPOINT", value_parser = parse_url)]
    pub otlp_endpoint: Option<Uri>,
    /// XRAY_MODE=otlp honours OTEL_EXPORTER_OTLP_TIMEOUT like every OTLP export (listed with OTLP's settings)
    #[arg(id = "xray_otlp_timeout", long = "xray-otlp-timeout", env = "OTEL_EXPORTER_OTLP_TIMEOUT", value_name = "OTEL_EXPORTER_OTLP_TIMEOUT", default_value = "10000", value_parser = parse_millis, hide = true)]
    pub otlp_timeout: Duration,
    /// `local` (the rules file or the default rule) or `centralized` (rules and quotas from the X-Ray API, the local rules when it is unreachable)
    #[arg(
        long = "xray-sampling",
        env = "XRAY_SAMPLING",
        value_name = "XRAY_SAMPLING",
        default_value = "local"
    )]
    pub sampling: XraySampling,
    /// Centralized sampling: how often the rules are fetched
    #[arg(long = "xray-sampling-rules-interval", env = "XRAY_SAMPLING_RULES_INTERVAL", value_name = "XRAY_SAMPLING_RULES_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub sampling_rules_interval: Duration,
    /// Centralized sampling: how often statistics are reported and quotas fetched
    #[arg(long = "xray-sampling-targets-interval", env = "XRAY_SAMPLING_TARGETS_INTERVAL", value_name = "XRAY_SAMPLING_TARGETS_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub sampling_targets_interval: Duration,
    /// Sampling rules: the `SamplingRule` JSON of `aws xray create-sampling-rule`, or the SDKs' local rules file; default 1 request/s then 5%
    #[arg(long = "xray-sampling-rules", env = "XRAY_SAMPLING_RULES", value_name = "XRAY_SAMPLING_RULES", value_parser = parse_rules_file)]
    pub sampling_rules: Option<SamplingRules>,
}

/// A sampling rules file, read and checked at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingRules {
    pub path: String,
    pub rules: Vec<Rule>,
}

fn parse_rules_file(raw: &str) -> Result<SamplingRules, String> {
    let text = std::fs::read_to_string(raw).map_err(|err| format!("cannot read {raw}: {err}"))?;
    let rules = parse_rules(&text).map_err(|err| format!("{raw}: {err}"))?;
    Ok(SamplingRules {
        path: raw.to_owned(),
        rules,
    })
}

impl XraySettings {
    /// Whether X-Ray is on, and if not, why.
    pub fn enabled(&self) -> Result<(), &'static str> {
        if !self.sdk_enabled {
            return Err("AWS_XRAY_SDK_ENABLED=false");
        }
        if self.mode.is_none()
            && self.daemon_address.is_none()
            && self.url_pattern.is_none()
            && self.sampling_rules.is_none()
        {
            return Err(
                "XRAY_MODE, AWS_XRAY_DAEMON_ADDRESS, AWS_XRAY_URL and XRAY_SAMPLING_RULES unset",
            );
        }
        Ok(())
    }

    /// The rules of the rules file, else X-Ray's default rule.
    fn local_rules(&self) -> Vec<Rule> {
        self.sampling_rules
            .as_ref()
            .map_or_else(|| vec![Rule::default_rule()], |file| file.rules.clone())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum XraySampling {
    Local,
    Centralized,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum XrayMode {
    Daemon,
    Api,
    Otlp,
}

/// `cruddur-backend xray ...`
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// AWS X-Ray administration
    Xray {
        #[command(subcommand)]
        action: XrayCommand,
    },
}

impl Command {
    pub async fn run(&self, settings: &XraySettings, service_name: &str) -> ExitCode {
        match self {
            Command::Xray { action } => setup::run(action, settings, service_name).await,
        }
    }
}

#[derive(Debug, Clone, Subcommand)]
pub enum XrayCommand {
    /// Creates or updates the X-Ray group (filtering on the service name) and the rules of XRAY_SAMPLING_RULES, through the X-Ray API; a second run changes nothing
    Setup {
        /// The group's name
        #[arg(long, default_value = "Cruddur")]
        group: String,
    },
}

/// Its byte bound is set at start, from `TELEMETRY_QUEUE_MAX_BYTES`.
const QUEUE: QueueConfig = QueueConfig {
    capacity: 65_536,
    max_bytes: usize::MAX,
    max_batch: 256,
    flush_interval: Duration::from_secs(1),
    attempt_timeout: Duration::from_secs(2),
    max_attempts: 1,
    initial_backoff: Duration::from_millis(0),
};

/// The X-Ray queue as the span router sees it: only traces X-Ray's own
/// sampling kept.
struct XraySpans(QueueSender<SharedSpan>);

impl SpanSink for XraySpans {
    fn wants(&self, span: &SpanData) -> bool {
        sampled_for_xray(span.span_context.trace_state())
    }

    fn send(&self, span: &SharedSpan) {
        self.0.try_send(span.clone());
    }
}

/// The queue and its worker for `XRAY_MODE`, and where it sends.
fn delivery(
    settings: &XraySettings,
    shared: &Shared,
    naming: Naming,
) -> Result<(String, QueueSender<SharedSpan>), TelemetryError> {
    let bounded = QueueConfig {
        max_bytes: shared.queue_max_bytes,
        ..QUEUE
    };
    Ok(match settings.mode.unwrap_or(XrayMode::Daemon) {
        XrayMode::Daemon => {
            let address = settings.daemon_address.clone().unwrap_or(DaemonAddress {
                host: "127.0.0.1".into(),
                port: 2000,
            });
            let destination = format!("udp://{address} (daemon)");
            let stats = SinkStats::new("xray", destination.clone());
            let sender = queue::spawn(stats, bounded, || {
                Ok::<_, TelemetryError>(daemon::DaemonSink::new(address, naming))
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
                ..bounded
            };
            let sender = queue::spawn(stats, queue, || {
                Ok::<_, TelemetryError>(api::ApiSink::new(naming))
            })?;
            (destination, sender)
        }
        XrayMode::Otlp => {
            let endpoint = settings.otlp_endpoint.as_ref().map(ToString::to_string);
            let destination = format!(
                "{} (OTLP, SigV4)",
                endpoint
                    .as_deref()
                    .unwrap_or("https://xray.{region}.amazonaws.com/v1/traces")
            );
            let stats = SinkStats::new("xray", destination.clone());
            let timeout = settings.otlp_timeout;
            let queue = QueueConfig {
                max_batch: 512,
                max_attempts: 4,
                attempt_timeout: timeout,
                initial_backoff: Duration::from_millis(200),
                ..bounded
            };
            let sender = queue::spawn(stats, queue, || {
                otlp::XrayOtlpSink::new(&shared.resource, endpoint.clone(), timeout).map_err(
                    |err| {
                        TelemetryError::Config(format!("cannot build the X-Ray OTLP client: {err}"))
                    },
                )
            })?;
            (destination, sender)
        }
    })
}

/// Starts X-Ray when it is configured: its rules sampler (with the
/// centralized poller if asked for), its delivery queue, and the start-up
/// line. Its parts: spans of the traces its rules keep, a sampler that adds
/// its decision to OpenTelemetry's, and that decision as the `Sampled=`
/// callers are answered.
pub fn start(settings: &XraySettings, shared: &Shared) -> Result<SinkParts, TelemetryError> {
    if let Err(reason) = settings.enabled() {
        return Ok(SinkParts::announce_off("xray", reason));
    }
    let rules = Arc::new(RuleSampler::new(
        settings.local_rules(),
        Box::new(SystemClock),
    ));
    let local = match &settings.sampling_rules {
        Some(file) => format!("rules from {} ({} rules)", file.path, file.rules.len()),
        None => "default rule (1/s, then 5%)".to_owned(),
    };
    let sampling = match settings.sampling {
        XraySampling::Local => local,
        XraySampling::Centralized => {
            centralized::start(
                Arc::clone(&rules),
                centralized::Intervals {
                    rules: settings.sampling_rules_interval,
                    targets: settings.sampling_targets_interval,
                },
            )?;
            format!("centralized, falling back to the {local}")
        }
    };
    let naming = Naming {
        fallback: settings
            .tracing_name
            .clone()
            .unwrap_or_else(|| shared.service_name.clone()),
        pattern: settings.url_pattern.clone(),
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
    let (destination, sender) = delivery(settings, shared, naming)?;
    eprintln!("telemetry: xray on: {destination}, {named}, sampling {sampling}");
    let service = shared.service_name.clone();
    let mut parts = SinkParts::on(sender.clone()).with_spans(Arc::new(XraySpans(sender)));
    parts.sampler = Some(Box::new(move |inner| {
        Box::new(XraySampler::new(inner, rules, service))
    }));
    parts.answer_sampled = Some(|span_context| sampled_for_xray(span_context.trace_state()));
    Ok(parts)
}

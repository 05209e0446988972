//! OTLP traces to Honeycomb or any collector, over HTTP/protobuf or gRPC,
//! and the browser relay that forwards the frontend's spans through it.
//!
//! Spans are sent by our own small transport (`transport`) rather than
//! opentelemetry-otlp's exporter, whose errors are opaque strings: ours
//! retries only what can succeed later and resends the same encoded request.

pub(crate) mod doctor;
mod relay;
mod transport;

use std::sync::Arc;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Args, ValueEnum};
use http::{HeaderName, Uri};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

pub use self::doctor::examine;
use crate::config::values::{
    Headers, Secret, parse_headers, parse_millis, parse_secret, parse_url,
};
use crate::telemetry::queue::{self, QueueConfig, QueueSender, SinkStats, Weigh};
use crate::telemetry::sink::{
    Shared, SharedSpan, SinkParts, SpanSink, TelemetryError, TracesExporter,
};

const HONEYCOMB_ENDPOINT: &str = "https://api.honeycomb.io";

/// OTLP: on when an endpoint or the Honeycomb key is set.
#[derive(Debug, Clone, Args)]
pub struct OtlpSettings {
    /// OTLP base URL; `/v1/traces` is appended for HTTP
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = parse_url)]
    pub otlp_endpoint: Option<Uri>,
    /// Full OTLP traces URL, used as is
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", value_name = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", value_parser = parse_url)]
    pub otlp_traces_endpoint: Option<Uri>,
    /// Headers for every OTLP export: `key=value,key2=value2`
    #[arg(long, env = "OTEL_EXPORTER_OTLP_HEADERS", value_name = "OTEL_EXPORTER_OTLP_HEADERS", value_parser = parse_headers, hide_env_values = true)]
    pub otlp_headers: Option<Headers>,
    /// `http/protobuf` or `grpc`
    #[arg(
        long,
        env = "OTEL_EXPORTER_OTLP_PROTOCOL",
        value_name = "OTEL_EXPORTER_OTLP_PROTOCOL",
        default_value = "http/protobuf"
    )]
    pub otlp_protocol: OtlpProtocol,
    /// Milliseconds one export attempt may take
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TIMEOUT", value_name = "OTEL_EXPORTER_OTLP_TIMEOUT", default_value = "10000", value_parser = parse_millis)]
    pub otlp_timeout: Duration,
    /// Spans the OTLP queue holds while the collector is slow or down; beyond that new spans are dropped and counted
    #[arg(long, env = "OTEL_BSP_MAX_QUEUE_SIZE", value_name = "OTEL_BSP_MAX_QUEUE_SIZE", default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(1..))]
    pub bsp_max_queue_size: u32,
    /// Spans per OTLP export request
    #[arg(long, env = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", value_name = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub bsp_max_export_batch_size: u32,
    /// Milliseconds a partial batch waits before it is exported
    #[arg(long, env = "OTEL_BSP_SCHEDULE_DELAY", value_name = "OTEL_BSP_SCHEDULE_DELAY", default_value = "1000", value_parser = parse_millis)]
    pub bsp_schedule_delay: Duration,
    /// Accept browser spans (OTLP/HTTP protobuf) on POST /api/telemetry/v1/traces from FRONTEND_URL or BACKEND_URL and forward them to the OTLP sink
    #[arg(long, env = "OTEL_BROWSER_RELAY", value_name = "OTEL_BROWSER_RELAY", default_value = "false", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub browser_relay: bool,
    /// Honeycomb key: sends OTLP to https://api.honeycomb.io with the x-honeycomb-team header
    #[arg(long, env = "HONEYCOMB_API_KEY", value_name = "HONEYCOMB_API_KEY", hide_env_values = true, value_parser = parse_secret)]
    pub honeycomb_api_key: Option<Secret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OtlpProtocol {
    #[value(name = "http/protobuf")]
    HttpProtobuf,
    #[value(name = "grpc")]
    Grpc,
}

impl OtlpSettings {
    /// Where OTLP traces go: the traces URL as given, else the base URL with
    /// `/v1/traces` (HTTP) appended, else Honeycomb when its key is set.
    pub fn traces_url(&self) -> Option<String> {
        self.signal_url("traces", self.otlp_traces_endpoint.as_ref())
    }

    /// Where one signal goes (`traces`, `metrics`): `given`, the signal's
    /// own URL, as is; else the base URL with `/v1/{signal}` (HTTP)
    /// appended; else Honeycomb when its key is set.
    pub fn signal_url(&self, signal: &str, given: Option<&Uri>) -> Option<String> {
        if let Some(url) = given {
            return Some(url.to_string());
        }
        let base = match (&self.otlp_endpoint, &self.honeycomb_api_key) {
            (Some(url), _) => url.to_string(),
            (None, Some(_)) => HONEYCOMB_ENDPOINT.to_owned(),
            (None, None) => return None,
        };
        let base = base.trim_end_matches('/');
        let path = format!("/v1/{signal}");
        Some(match self.otlp_protocol {
            OtlpProtocol::Grpc => base.to_owned(),
            OtlpProtocol::HttpProtobuf if base.ends_with(&path) => base.to_owned(),
            OtlpProtocol::HttpProtobuf => format!("{base}{path}"),
        })
    }

    pub fn protocol_name(&self) -> &'static str {
        match self.otlp_protocol {
            OtlpProtocol::HttpProtobuf => "http/protobuf",
            OtlpProtocol::Grpc => "grpc",
        }
    }

    /// Where exports go, as the start-up line and the doctor show it:
    /// `{url} ({protocol}), headers name=…abcd` (secrets' last four only).
    pub fn shown(&self) -> String {
        self.shown_at(&self.traces_url().unwrap_or_default(), &self.headers())
    }

    /// `url` and `headers` as [`Self::shown`] writes them.
    pub fn shown_at(&self, url: &str, headers: &[(HeaderName, Secret)]) -> String {
        let headers: Vec<String> = headers
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        let protocol = self.protocol_name();
        if headers.is_empty() {
            format!("{url} ({protocol})")
        } else {
            format!("{url} ({protocol}), headers {}", headers.join(" "))
        }
    }

    /// Every header an OTLP export carries; the Honeycomb key becomes
    /// `x-honeycomb-team` unless the header list already sets it.
    pub fn headers(&self) -> Vec<(HeaderName, Secret)> {
        let mut headers = self.otlp_headers.clone().map(|h| h.0).unwrap_or_default();
        if let Some(key) = &self.honeycomb_api_key {
            let team = HeaderName::from_static("x-honeycomb-team");
            if !headers.iter().any(|(name, _)| *name == team) {
                headers.push((team, key.clone()));
            }
        }
        headers
    }
}

/// What the OTLP queue carries: our own spans, and spans already encoded
/// elsewhere (the browser's, through the relay) that go out as they are.
pub enum OtlpItem {
    Span(SharedSpan),
    Relayed(ResourceSpans),
}

impl Weigh for OtlpItem {
    fn weight(&self) -> usize {
        match self {
            OtlpItem::Span(span) => span.weight(),
            // Decoded, a message takes a few times its encoded size.
            OtlpItem::Relayed(spans) => 4 * prost::Message::encoded_len(spans),
        }
    }
}

/// The OTLP queue as the span router sees it.
struct OtlpSpans(QueueSender<OtlpItem>);

impl SpanSink for OtlpSpans {
    fn send(&self, span: &SharedSpan) {
        self.0.try_send(OtlpItem::Span(span.clone()));
    }
}

/// Starts the OTLP sink when `OTEL_TRACES_EXPORTER` (or its default) asks
/// for it, and the browser relay with it when that is on.
pub fn start(settings: &OtlpSettings, shared: &Shared) -> Result<SinkParts, TelemetryError> {
    if let Err(reason) = shared.exporter(TracesExporter::Otlp) {
        let parts = SinkParts::announce_off(
            "otlp",
            reason.unwrap_or("OTEL_EXPORTER_OTLP_ENDPOINT and HONEYCOMB_API_KEY unset"),
        );
        if settings.browser_relay {
            eprintln!("telemetry: browser relay off (no OTLP sink to forward to)");
        }
        return Ok(parts.with_routes(relay::routes(None)));
    }
    let url = settings.traces_url().unwrap_or_default();
    let headers = settings.headers();
    eprintln!("telemetry: otlp on: {}", settings.shown());
    let stats = SinkStats::new("otlp", format!("{url} ({})", settings.protocol_name()));
    let queue = QueueConfig {
        capacity: settings.bsp_max_queue_size as usize,
        max_bytes: shared.queue_max_bytes,
        max_batch: settings.bsp_max_export_batch_size as usize,
        flush_interval: settings.bsp_schedule_delay,
        attempt_timeout: settings.otlp_timeout,
        max_attempts: 4,
        initial_backoff: Duration::from_millis(200),
    };
    let sender = queue::spawn(stats, queue, || {
        transport::OtlpSink::new(
            settings.otlp_protocol,
            &url,
            &headers,
            settings.otlp_timeout,
            &shared.resource,
        )
    })?;
    let parts = SinkParts::on(sender.clone()).with_spans(Arc::new(OtlpSpans(sender.clone())));
    if settings.browser_relay {
        eprintln!("telemetry: browser relay on: POST /api/telemetry/v1/traces -> otlp");
        Ok(parts.with_routes(relay::routes(Some((sender, shared.origins.clone())))))
    } else {
        Ok(parts.with_routes(relay::routes(None)))
    }
}

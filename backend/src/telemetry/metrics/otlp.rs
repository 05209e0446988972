//! OTLP metrics to the traces' destination (`/v1/metrics` beside
//! `/v1/traces`), with opentelemetry-otlp's exporter over async reqwest or
//! tonic, driven by `push`. Honeycomb keeps metrics in a dataset of their
//! own: with its key, the requests carry `x-honeycomb-dataset` (the
//! service name unless `HONEYCOMB_METRICS_DATASET` or the OTLP headers say
//! otherwise).

use std::collections::HashMap;

use http::HeaderName;
use opentelemetry_otlp::{
    MetricExporter, Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::metrics::Temporality;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::ClientTlsConfig;

use super::MetricsSettings;
use crate::config::values::Secret;
use crate::telemetry::otlp::doctor::{DATASET, TEAM};
use crate::telemetry::otlp::{OtlpProtocol, OtlpSettings};
use crate::telemetry::sink::TelemetryError;

/// Where OTLP metrics go and with what, resolved from the settings.
pub(super) struct Destination {
    pub url: String,
    pub headers: Vec<(HeaderName, Secret)>,
    /// The start-up line's and health check's view (secrets masked).
    pub shown: String,
}

impl Destination {
    /// `None` when OTLP has nowhere to send.
    pub fn resolve(
        metrics: &MetricsSettings,
        otlp: &OtlpSettings,
        service_name: &str,
    ) -> Option<Self> {
        let url = otlp.signal_url("metrics", metrics.otlp_metrics_endpoint.as_ref())?;
        let mut headers = otlp.headers();
        let team = headers.iter().any(|(name, _)| name.as_str() == TEAM);
        let dataset = headers.iter().any(|(name, _)| name.as_str() == DATASET);
        if team && !dataset {
            let name = metrics.honeycomb_dataset.as_deref().unwrap_or(service_name);
            headers.push((HeaderName::from_static(DATASET), Secret::new(name)));
        }
        let shown = otlp.shown_at(&url, &headers);
        Some(Destination {
            url,
            headers,
            shown,
        })
    }
}

/// The exporter; call on the driver's runtime (tonic's channel needs one).
/// Each attempt takes at most `OTEL_EXPORTER_OTLP_TIMEOUT`, as the traces'
/// do; the driver bounds a whole push, retries included.
pub(super) fn exporter(
    destination: &Destination,
    otlp: &OtlpSettings,
    temporality: Temporality,
) -> Result<MetricExporter, TelemetryError> {
    let timeout = otlp.otlp_timeout;
    let builder = MetricExporter::builder().with_temporality(temporality);
    let built = match otlp.otlp_protocol {
        OtlpProtocol::HttpProtobuf => builder
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(destination.url.clone())
            .with_timeout(timeout)
            .with_headers(
                destination
                    .headers
                    .iter()
                    .map(|(name, value)| (name.to_string(), value.expose().to_owned()))
                    .collect::<HashMap<_, _>>(),
            )
            .build(),
        OtlpProtocol::Grpc => {
            let mut metadata = MetadataMap::new();
            for (name, value) in &destination.headers {
                let key = MetadataKey::from_bytes(name.as_str().as_bytes());
                let value = MetadataValue::try_from(value.expose());
                if let (Ok(key), Ok(value)) = (key, value) {
                    metadata.insert(key, value);
                }
            }
            let mut builder = builder
                .with_tonic()
                .with_protocol(Protocol::Grpc)
                .with_endpoint(destination.url.clone())
                .with_timeout(timeout)
                .with_metadata(metadata);
            if destination.url.starts_with("https://") {
                builder = builder.with_tls_config(ClientTlsConfig::new().with_webpki_roots());
            }
            builder.build()
        }
    };
    built.map_err(|err| TelemetryError::Config(format!("OTLP metrics: {err}")))
}

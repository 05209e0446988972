//! CloudWatch's OTLP metrics endpoint (`CLOUDWATCH_METRICS=otlp`):
//! `https://monitoring.{region}.amazonaws.com/v1/metrics`, or
//! `CLOUDWATCH_METRICS_ENDPOINT`, with opentelemetry-otlp's exporter over an
//! HTTP client of ours that signs each request with SigV4 (service
//! `monitoring`). The client sends only the headers the exporter itself
//! sets: the OTLP header variables (a Honeycomb key among them) are for the
//! OTLP destination, never for AWS.

use http::header::{CONTENT_ENCODING, CONTENT_TYPE, USER_AGENT};
use http::{HeaderName, HeaderValue};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{MetricExporter, Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::metrics::Temporality;

use super::MetricsSettings;
use crate::telemetry::sigv4::Signer;
use crate::telemetry::sink::TelemetryError;

/// Where the metrics go: the endpoint as given, else the region's
/// (`AWS_REGION`, else `AWS_DEFAULT_REGION`); `None` without either.
pub(super) fn url(settings: &MetricsSettings) -> Option<String> {
    if let Some(url) = &settings.cloudwatch_endpoint {
        return Some(url.to_string());
    }
    let region = settings
        .aws
        .region
        .as_ref()
        .or(settings.aws.default_region.as_ref())?;
    Some(format!(
        "https://monitoring.{region}.amazonaws.com/v1/metrics"
    ))
}

/// Signs each request the exporter makes, then sends it with reqwest.
#[derive(Debug)]
struct SignedClient {
    http: reqwest::Client,
    signer: Signer,
}

#[async_trait::async_trait]
impl HttpClient for SignedClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (mut head, body) = request.into_parts();
        let own = std::mem::take(&mut head.headers);
        for name in [CONTENT_TYPE, CONTENT_ENCODING, USER_AGENT] {
            if let Some(value) = own.get(&name) {
                head.headers.insert(name, value.clone());
            }
        }
        let content_type = head
            .headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("application/x-protobuf")
            .to_owned();
        let signed = self
            .signer
            .headers(&head.uri.to_string(), &content_type, &body)
            .await
            .map_err(|err| format!("CloudWatch OTLP: {err}"))?;
        for (name, value) in signed {
            head.headers
                .insert(HeaderName::try_from(name)?, HeaderValue::try_from(value)?);
        }
        self.http.send_bytes(Request::from_parts(head, body)).await
    }
}

/// The exporter; call on the driver's runtime.
pub(super) fn exporter(
    url: &str,
    temporality: Temporality,
    timeout: std::time::Duration,
) -> Result<MetricExporter, TelemetryError> {
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|err| TelemetryError::Config(format!("CloudWatch OTLP metrics: {err}")))?;
    MetricExporter::builder()
        .with_temporality(temporality)
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(timeout)
        .with_http_client(SignedClient {
            http,
            signer: Signer::new("monitoring"),
        })
        .build()
        .map_err(|err| TelemetryError::Config(format!("CloudWatch OTLP metrics: {err}")))
}

//! The OTLP transport: batches of spans encoded once (HTTP bodies by our
//! OTLP writer, gRPC messages by opentelemetry-proto's conversion) and sent
//! by reqwest or tonic, so the queue can tell a retryable answer (timeouts,
//! 429, 5xx, UNAVAILABLE) from a rejected payload and resend the same
//! request without re-encoding.

use std::str::FromStr;

use std::time::{Duration, SystemTime};

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::{OtlpItem, OtlpProtocol};
use crate::config::values::Secret;
use crate::telemetry::export::{describe, retry_after, retryable_status};
use crate::telemetry::otlp_wire::encode_request;
use crate::telemetry::queue::{SendError, Sink};
use crate::telemetry::sink::{SharedSpan, TelemetryError};

enum Transport {
    Http {
        client: reqwest::Client,
        url: String,
        headers: HeaderMap,
    },
    Grpc {
        client: TraceServiceClient<Channel>,
        metadata: MetadataMap,
    },
}

pub struct OtlpSink {
    resource: ResourceAttributesWithSchema,
    transport: Transport,
}

fn invalid(message: String) -> TelemetryError {
    TelemetryError::Config(message)
}

impl OtlpSink {
    /// Builds the client; must run inside a tokio runtime (the worker's).
    pub fn new(
        protocol: OtlpProtocol,
        url: &str,
        headers: &[(http::HeaderName, Secret)],
        timeout: Duration,
        resource: &Resource,
    ) -> Result<Self, TelemetryError> {
        let transport = match protocol {
            OtlpProtocol::HttpProtobuf => {
                let mut map = HeaderMap::new();
                for (name, value) in headers {
                    let value = HeaderValue::from_str(value.expose()).map_err(|_| {
                        invalid(format!("OTEL_EXPORTER_OTLP_HEADERS: bad value for {name}"))
                    })?;
                    map.insert(name.clone(), value);
                }
                map.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-protobuf"),
                );
                let client = reqwest::Client::builder()
                    .timeout(timeout)
                    .connect_timeout(timeout)
                    .build()
                    .map_err(|err| invalid(format!("cannot build the OTLP HTTP client: {err}")))?;
                Transport::Http {
                    client,
                    url: url.to_owned(),
                    headers: map,
                }
            }
            OtlpProtocol::Grpc => {
                let mut endpoint = Endpoint::from_str(url)
                    .map_err(|err| invalid(format!("OTEL_EXPORTER_OTLP_ENDPOINT: {err}")))?
                    .timeout(timeout)
                    .connect_timeout(timeout);
                if url.starts_with("https://") {
                    endpoint = endpoint
                        .tls_config(ClientTlsConfig::new().with_webpki_roots())
                        .map_err(|err| invalid(format!("OTLP gRPC TLS: {err}")))?;
                }
                let mut metadata = MetadataMap::new();
                for (name, value) in headers {
                    let key = MetadataKey::from_bytes(name.as_str().as_bytes()).map_err(|_| {
                        invalid(format!("OTEL_EXPORTER_OTLP_HEADERS: bad gRPC key {name}"))
                    })?;
                    let value = MetadataValue::try_from(value.expose()).map_err(|_| {
                        invalid(format!("OTEL_EXPORTER_OTLP_HEADERS: bad value for {name}"))
                    })?;
                    metadata.insert(key, value);
                }
                Transport::Grpc {
                    client: TraceServiceClient::new(endpoint.connect_lazy()),
                    metadata,
                }
            }
        };
        Ok(OtlpSink {
            resource: resource.into(),
            transport,
        })
    }
}

const NOTHING_LISTENS: &str = "nothing answers there: is the collector running, and is OTEL_EXPORTER_OTLP_ENDPOINT its address?";
const KEY_REJECTED: &str = "the key was rejected: check HONEYCOMB_API_KEY, \
     or x-honeycomb-team in OTEL_EXPORTER_OTLP_HEADERS";
const WRONG_PATH: &str = "nothing takes traces at that path: OTEL_EXPORTER_OTLP_ENDPOINT \
     is the base URL (/v1/traces is added to it); a full URL goes in OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";

/// What to change, for the HTTP answers a configuration causes.
fn status_hint(status: http::StatusCode) -> Option<&'static str> {
    match status.as_u16() {
        401 | 403 => Some(KEY_REJECTED),
        404 | 405 => Some(WRONG_PATH),
        _ => None,
    }
}

/// What to change, for the gRPC codes a configuration causes.
fn code_hint(code: tonic::Code) -> Option<&'static str> {
    match code {
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => Some(KEY_REJECTED),
        tonic::Code::Unimplemented => {
            Some("is that an OTLP/gRPC port (4317)? OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs one")
        }
        tonic::Code::Unavailable => Some(NOTHING_LISTENS),
        _ => None,
    }
}

fn retryable_code(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Cancelled
            | DeadlineExceeded
            | ResourceExhausted
            | Aborted
            | OutOfRange
            | Unavailable
            | DataLoss
            | Internal
            | Unknown
    )
}

/// A batch as its transport sends it: HTTP bodies are written straight from
/// the spans; gRPC needs the message structs tonic encodes.
pub enum OtlpPayload {
    Body(bytes::Bytes),
    Message(ExportTraceServiceRequest),
}

impl Sink<OtlpItem> for OtlpSink {
    type Payload = OtlpPayload;

    fn encode(&mut self, batch: Vec<OtlpItem>) -> OtlpPayload {
        let mut spans = Vec::with_capacity(batch.len());
        let mut relayed = Vec::new();
        for item in batch {
            match item {
                OtlpItem::Span(span) => spans.push(span),
                OtlpItem::Relayed(resource_spans) => relayed.push(resource_spans),
            }
        }
        match self.transport {
            Transport::Http { .. } => {
                OtlpPayload::Body(encode_request(&spans, &self.resource, &relayed).into())
            }
            Transport::Grpc { .. } => {
                let mut resource_spans = if spans.is_empty() {
                    Vec::new()
                } else {
                    // The SDK's conversion takes spans by value: a span
                    // another sink still holds is copied here, off the
                    // request path.
                    let spans = spans.into_iter().map(SharedSpan::into_span).collect();
                    group_spans_by_resource_and_scope(spans, &self.resource)
                };
                resource_spans.extend(relayed);
                OtlpPayload::Message(ExportTraceServiceRequest { resource_spans })
            }
        }
    }

    async fn send(&mut self, payload: &OtlpPayload) -> Result<(), SendError> {
        match (&mut self.transport, payload) {
            (
                Transport::Http {
                    client,
                    url,
                    headers,
                },
                OtlpPayload::Body(body),
            ) => {
                let answer = client
                    .post(url.as_str())
                    .headers(headers.clone())
                    .body(body.clone())
                    .send()
                    .await
                    .map_err(|err| {
                        SendError::retryable(format!("OTLP/HTTP: {}", describe(&err)))
                            .with_hint(err.is_connect().then_some(NOTHING_LISTENS))
                    })?;
                let status = answer.status();
                if status.is_success() {
                    return Ok(());
                }
                Err(SendError {
                    message: format!("OTLP/HTTP answered {status}"),
                    retryable: retryable_status(status),
                    retry_after: retry_after(answer.headers(), SystemTime::now()),
                    hint: status_hint(status),
                })
            }
            (Transport::Grpc { client, metadata }, OtlpPayload::Message(message)) => {
                let mut request = tonic::Request::new(message.clone());
                *request.metadata_mut() = metadata.clone();
                match client.export(request).await {
                    Ok(_) => Ok(()),
                    Err(status) => Err(SendError::new(
                        format!(
                            "OTLP/gRPC answered {:?}: {}",
                            status.code(),
                            status.message()
                        ),
                        retryable_code(status.code()),
                    )
                    .with_hint(code_hint(status.code()))),
                }
            }
            _ => unreachable!("encode makes the payload its transport sends"),
        }
    }
}

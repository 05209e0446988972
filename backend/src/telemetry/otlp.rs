//! OTLP traces to Honeycomb or any collector, over HTTP/protobuf or gRPC.
//!
//! Spans are encoded with opentelemetry-proto (the official messages and
//! SDK-to-wire conversion) and sent by our own small transport, so the queue
//! can tell a retryable answer (timeouts, 429, 5xx, UNAVAILABLE) from a
//! rejected payload and resend the same request without re-encoding.

use std::str::FromStr;
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::TelemetryError;
use super::queue::{SendError, Sink};
use crate::config::{OtlpProtocol, Secret};

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

/// What the OTLP queue carries: our own spans, and spans already encoded
/// elsewhere (the browser's, through the relay) that go out as they are.
#[expect(
    clippy::large_enum_variant,
    reason = "no larger than the SpanData the queue held before; boxing would allocate per span"
)]
pub enum OtlpItem {
    Span(SpanData),
    Relayed(ResourceSpans),
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

/// The OTLP request for a batch, as the official conversion builds it.
pub(super) fn export_request(
    batch: Vec<SpanData>,
    resource: &ResourceAttributesWithSchema,
) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(batch, resource),
    }
}

/// The protobuf bytes of `request`, the same as `Message::encode_to_vec`
/// gives, but with each span's length computed once: prost recomputes a
/// nested message's length at every level above it, which made encoding the
/// largest single cost of an export.
pub(super) fn encode(request: &ExportTraceServiceRequest) -> Vec<u8> {
    use prost::encoding::{WireType, encode_key, encode_varint, message, string};
    fn nested(tag: u32, body: &[u8], out: &mut Vec<u8>) {
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(body.len() as u64, out);
        out.extend_from_slice(body);
    }
    let mut out = Vec::new();
    for resource_spans in &request.resource_spans {
        let mut resource_body = Vec::new();
        if let Some(resource) = &resource_spans.resource {
            message::encode(1, resource, &mut resource_body);
        }
        for scope_spans in &resource_spans.scope_spans {
            let mut scope_body = Vec::new();
            if let Some(scope) = &scope_spans.scope {
                message::encode(1, scope, &mut scope_body);
            }
            for span in &scope_spans.spans {
                message::encode(2, span, &mut scope_body);
            }
            if !scope_spans.schema_url.is_empty() {
                string::encode(3, &scope_spans.schema_url, &mut scope_body);
            }
            nested(2, &scope_body, &mut resource_body);
        }
        if !resource_spans.schema_url.is_empty() {
            string::encode(3, &resource_spans.schema_url, &mut resource_body);
        }
        nested(1, &resource_body, &mut out);
    }
    out
}

/// Whether an HTTP answer is worth another try (OTLP/HTTP spec: 429, 502, 503, 504; we add 500).
pub(super) fn retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
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

impl Sink<OtlpItem> for OtlpSink {
    type Payload = ExportTraceServiceRequest;

    fn encode(&mut self, batch: Vec<OtlpItem>) -> ExportTraceServiceRequest {
        let mut spans = Vec::with_capacity(batch.len());
        let mut relayed = Vec::new();
        for item in batch {
            match item {
                OtlpItem::Span(span) => spans.push(span),
                OtlpItem::Relayed(resource_spans) => relayed.push(resource_spans),
            }
        }
        let mut resource_spans = if spans.is_empty() {
            Vec::new()
        } else {
            group_spans_by_resource_and_scope(spans, &self.resource)
        };
        resource_spans.extend(relayed);
        ExportTraceServiceRequest { resource_spans }
    }

    async fn send(&mut self, payload: &ExportTraceServiceRequest) -> Result<(), SendError> {
        match &mut self.transport {
            Transport::Http {
                client,
                url,
                headers,
            } => {
                let answer = client
                    .post(url.as_str())
                    .headers(headers.clone())
                    .body(encode(payload))
                    .send()
                    .await
                    .map_err(|err| {
                        SendError::retryable(format!("OTLP/HTTP: {}", describe(&err)))
                    })?;
                let status = answer.status();
                if status.is_success() {
                    return Ok(());
                }
                Err(SendError {
                    message: format!("OTLP/HTTP answered {status}"),
                    retryable: retryable_status(status),
                })
            }
            Transport::Grpc { client, metadata } => {
                let mut request = tonic::Request::new(payload.clone());
                *request.metadata_mut() = metadata.clone();
                match client.export(request).await {
                    Ok(_) => Ok(()),
                    Err(status) => Err(SendError {
                        message: format!(
                            "OTLP/gRPC answered {:?}: {}",
                            status.code(),
                            status.message()
                        ),
                        retryable: retryable_code(status.code()),
                    }),
                }
            }
        }
    }
}

/// A transport error without the URL's query or anything sent with it.
pub(super) fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timed out".into()
    } else if err.is_connect() {
        "cannot connect".into()
    } else {
        std::error::Error::source(err)
            .map_or_else(|| "request failed".to_owned(), ToString::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{
        SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry::{InstrumentationScope, KeyValue};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use std::time::{Duration, UNIX_EPOCH};

    fn span(id: u64, attributes: Vec<KeyValue>) -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(7u128),
                SpanId::from(id),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::from(id + 100),
            parent_span_is_remote: false,
            span_kind: SpanKind::Client,
            name: format!("span {id}").into(),
            start_time: UNIX_EPOCH + Duration::from_secs(1),
            end_time: UNIX_EPOCH + Duration::from_secs(2),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::error("boom"),
            instrumentation_scope: InstrumentationScope::builder("cruddur")
                .with_version("1")
                .build(),
        }
    }

    #[test]
    fn encoding_matches_prost_byte_for_byte() {
        let resource = Resource::builder_empty()
            .with_service_name("cruddur")
            .with_schema_url(
                Vec::<KeyValue>::new(),
                "https://opentelemetry.io/schemas/1.0",
            )
            .build();
        let spans = (1..50)
            .map(|id| {
                span(
                    id,
                    vec![
                        KeyValue::new("db.query.text", "SELECT 1 ".repeat(id as usize)),
                        KeyValue::new("app.result_length", id as i64),
                        KeyValue::new("ok", true),
                    ],
                )
            })
            .collect();
        let request = export_request(spans, &(&resource).into());
        assert_eq!(encode(&request), prost::Message::encode_to_vec(&request));
        let empty = ExportTraceServiceRequest::default();
        assert_eq!(encode(&empty), prost::Message::encode_to_vec(&empty));
    }
}

//! `POST /api/telemetry/v1/traces`: the browser relay. The frontend's
//! OpenTelemetry exporter sends its spans here as OTLP/HTTP protobuf, and the
//! backend forwards them through its own OTLP sink with its own credentials,
//! so no API key ever reaches the browser.
//!
//! On only when `OTEL_BROWSER_RELAY=true` (else it answers 404), but always
//! routed and in the OpenAPI document, with that 404, so a client finds it
//! whatever this server's settings. Accepted only from the allowed origins
//! (`FRONTEND_URL`, `BACKEND_URL`), only as well-formed OTLP traces, only up
//! to the app's body limit, and at most [`BURST`] requests at once refilled
//! at [`PER_SECOND`] a second across all clients, so a page cannot flood the
//! sink.

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Required};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::OtlpItem;
use crate::error::ApiError;
use crate::openapi::answers::error_answers;
use crate::openapi::{TELEMETRY, fields};
use crate::telemetry::queue::QueueSender;

/// Requests accepted at once.
const BURST: NonZeroU32 = NonZeroU32::new(20).expect("not zero");
/// Requests a second in the long run.
const PER_SECOND: NonZeroU32 = NonZeroU32::new(10).expect("not zero");

/// OTLP/HTTP protobuf bytes, as the document shows them.
struct Protobuf;

impl PartialSchema for Protobuf {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for Protobuf {}

/// The `Origin` header the relay checks.
struct OriginHeader;

impl IntoParams for OriginHeader {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![fields::parameter(
            "origin",
            ParameterIn::Header,
            Required::False,
            fields::origin(),
        )]
    }
}

/// The relay's route: forwarding to an OTLP queue what comes from the
/// allowed origins, or, with the relay off (`None`), answering 404 to the
/// method it documents (and 405 to others, as any documented path does).
pub fn routes(to: Option<(QueueSender<OtlpItem>, [HeaderValue; 2])>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(relay))
        .with_state(to.map(|(sink, origins)| Relay::new(sink, origins)))
}

/// The relay's state: where spans go, who may send them, and the budget.
#[derive(Clone)]
struct Relay {
    sink: QueueSender<OtlpItem>,
    origins: [HeaderValue; 2],
    budget: Arc<DefaultDirectRateLimiter>,
}

impl Relay {
    fn new(sink: QueueSender<OtlpItem>, origins: [HeaderValue; 2]) -> Relay {
        Relay {
            sink,
            origins,
            budget: Arc::new(RateLimiter::direct(
                Quota::per_second(PER_SECOND).allow_burst(BURST),
            )),
        }
    }

    /// Takes one request from the budget if there is one left.
    fn admit(&self) -> bool {
        self.budget.check().is_ok()
    }
}

/// Checks every span's ids, name and times; answers how many there are.
fn well_formed(request: &ExportTraceServiceRequest) -> Result<usize, &'static str> {
    let mut count = 0;
    for span in request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
    {
        let valid_id = |id: &[u8], len| id.len() == len && id.iter().any(|b| *b != 0);
        if !valid_id(&span.trace_id, 16) {
            return Err("a span has no valid trace_id (16 bytes, not all zero)");
        }
        if !valid_id(&span.span_id, 8) {
            return Err("a span has no valid span_id (8 bytes, not all zero)");
        }
        if !span.parent_span_id.is_empty() && !valid_id(&span.parent_span_id, 8) {
            return Err("a span has an invalid parent_span_id");
        }
        if span.name.is_empty() {
            return Err("a span has no name");
        }
        if span.start_time_unix_nano == 0 || span.end_time_unix_nano < span.start_time_unix_nano {
            return Err("a span has no valid start and end time");
        }
        count += 1;
    }
    if count == 0 {
        return Err("the request holds no spans");
    }
    Ok(count)
}

error_answers! {
    /// Everything the relay refuses, and the 404 of a server with the relay off.
    pub struct RelayErrors {
        ApiError::BadRequest(String::new()) => "not a well-formed ExportTraceServiceRequest with at least one span, each with valid ids, a name and times",
        ApiError::Forbidden("") => "an Origin other than FRONTEND_URL or BACKEND_URL",
        ApiError::NotFound("") => "the relay is off: OTEL_BROWSER_RELAY is not true, or no OTLP sink is configured",
        ApiError::PayloadTooLarge => "a body over 64 KiB",
        ApiError::UnsupportedMediaType(String::new()) => "a body that is not application/x-protobuf",
        ApiError::TooManyRequests => "over the budget: a burst of 20 requests, refilled at 10 a second across all clients",
    }
}

/// The browser traces relay: forwards the page's spans (OTLP/HTTP
/// protobuf, an `ExportTraceServiceRequest`) through the backend's OTLP
/// sink, with the backend's credentials.
#[utoipa::path(
    post,
    path = "/api/telemetry/v1/traces",
    tag = TELEMETRY,
    operation_id = "relay_browser_traces",
    params(OriginHeader),
    request_body(content = inline(Protobuf), content_type = "application/x-protobuf", description = "an OTLP ExportTraceServiceRequest"),
    responses(
        (status = 200, description = "every span accepted: an empty ExportTraceServiceResponse", body = inline(Protobuf), content_type = "application/x-protobuf"),
        RelayErrors,
    ),
)]
async fn relay(
    State(relay): State<Option<Relay>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Some(relay) = relay else {
        return Err(ApiError::NotFound(
            "the browser relay is off (OTEL_BROWSER_RELAY, and an OTLP sink)",
        ));
    };
    if !headers
        .get(header::ORIGIN)
        .is_some_and(|origin| relay.origins.contains(origin))
    {
        return Err(ApiError::Forbidden(
            "spans are accepted only from the frontend's origin",
        ));
    }
    if !relay.admit() {
        return Err(ApiError::TooManyRequests);
    }
    let protobuf = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-protobuf"));
    if !protobuf {
        return Err(ApiError::UnsupportedMediaType(
            "send OTLP/HTTP protobuf with Content-Type: application/x-protobuf".into(),
        ));
    }
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        _ => ApiError::BadRequest(rejection.body_text()),
    })?;
    let request = ExportTraceServiceRequest::decode(body)
        .map_err(|_| ApiError::BadRequest("not an OTLP ExportTraceServiceRequest".into()))?;
    let spans = well_formed(&request).map_err(|why| ApiError::BadRequest(why.into()))?;
    tracing::debug!(spans, "relaying browser spans");
    for resource_spans in request.resource_spans {
        relay.sink.try_send(OtlpItem::Relayed(resource_spans));
    }
    // An empty ExportTraceServiceResponse: everything accepted.
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        Vec::new(),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn request(span: Span) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn span() -> Span {
        Span {
            trace_id: vec![7; 16],
            span_id: vec![3; 8],
            name: "HTTP GET".into(),
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            ..Default::default()
        }
    }

    #[test]
    fn only_well_formed_spans_pass() {
        assert_eq!(well_formed(&request(span())), Ok(1));
        let broken = [
            Span {
                trace_id: vec![0; 16],
                ..span()
            },
            Span {
                trace_id: vec![7; 8],
                ..span()
            },
            Span {
                span_id: vec![],
                ..span()
            },
            Span {
                parent_span_id: vec![1; 3],
                ..span()
            },
            Span {
                name: String::new(),
                ..span()
            },
            Span {
                end_time_unix_nano: 0,
                ..span()
            },
        ];
        for broken in broken {
            assert!(well_formed(&request(broken.clone())).is_err(), "{broken:?}");
        }
        assert!(well_formed(&ExportTraceServiceRequest::default()).is_err());
    }
}

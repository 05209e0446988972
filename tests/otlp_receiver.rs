//! Self-test of the fake OTLP receiver in `tests/support/otlp.rs`: real
//! protobuf over real HTTP and real gRPC, decoded back into `ReceivedSpan`s.

mod support;

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as ProtoStatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message as _;
use support::otlp::{
    AttrValue, Behavior, OtlpReceiver, ReceivedSpan, SPAN_KIND_INTERNAL, SPAN_KIND_SERVER,
    STATUS_CODE_ERROR, STATUS_CODE_UNSET,
};

const WAIT: Duration = Duration::from_secs(10);
const TRACE_ID: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
const PARENT_ID: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];
const CHILD_ID: [u8; 8] = [0x53, 0x99, 0x5c, 0x3f, 0x42, 0xcd, 0x8a, 0xd8];

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn str_value(s: &str) -> Value {
    Value::StringValue(s.to_owned())
}

/// One resource (service.name="t") with two spans: an INTERNAL root, and a
/// SERVER child carrying int/string/bool/double/array attributes, an event and
/// an error status.
fn sample_request() -> ExportTraceServiceRequest {
    let parent = Span {
        trace_id: TRACE_ID.to_vec(),
        span_id: PARENT_ID.to_vec(),
        name: "parent".to_owned(),
        kind: SpanKind::Internal as i32,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_500_000_000,
        ..Default::default()
    };
    let child = Span {
        trace_id: TRACE_ID.to_vec(),
        span_id: CHILD_ID.to_vec(),
        parent_span_id: PARENT_ID.to_vec(),
        name: "GET /api/activities/home".to_owned(),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: 1_700_000_000_100_000_000,
        end_time_unix_nano: 1_700_000_000_200_000_000,
        attributes: vec![
            kv("http.response.status_code", Value::IntValue(500)),
            kv("http.route", str_value("/api/activities/home")),
            kv("app.cached", Value::BoolValue(false)),
            kv("app.ratio", Value::DoubleValue(0.25)),
            kv(
                "app.tags",
                Value::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(str_value("a")),
                        },
                        AnyValue {
                            value: Some(Value::IntValue(2)),
                        },
                    ],
                }),
            ),
        ],
        events: vec![Event {
            name: "exception".to_owned(),
            time_unix_nano: 1_700_000_000_150_000_000,
            attributes: vec![kv("exception.message", str_value("boom"))],
            ..Default::default()
        }],
        status: Some(Status {
            code: ProtoStatusCode::Error as i32,
            message: "boom".to_owned(),
        }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", str_value("t"))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "self-test".to_owned(),
                    ..Default::default()
                }),
                spans: vec![parent, child],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn find<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span named {name:?} in {spans:#?}"))
}

fn assert_sample_spans(spans: &[ReceivedSpan]) {
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let parent = find(spans, "parent");
    let child = find(spans, "GET /api/activities/home");

    assert_eq!(parent.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(parent.span_id, "00f067aa0ba902b7");
    assert_eq!(parent.parent_span_id, "");
    assert!(parent.is_root());
    assert_eq!(parent.kind, SPAN_KIND_INTERNAL);
    assert_eq!(parent.status_code, STATUS_CODE_UNSET);
    assert!(parent.attributes.is_empty());
    assert_eq!(parent.start_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(parent.end_unix_nano, 1_700_000_000_500_000_000);

    assert_eq!(child.trace_id, parent.trace_id);
    assert_eq!(child.span_id, "53995c3f42cd8ad8");
    assert_eq!(child.parent_span_id, parent.span_id);
    assert!(!child.is_root());
    assert_eq!(child.kind, SPAN_KIND_SERVER);
    assert_eq!(child.status_code, STATUS_CODE_ERROR);
    assert_eq!(child.status_message, "boom");
    assert_eq!(child.int_attr("http.response.status_code"), Some(500));
    assert_eq!(child.str_attr("http.route"), Some("/api/activities/home"));
    // Typed accessors do not coerce.
    assert_eq!(child.str_attr("http.response.status_code"), None);
    assert_eq!(child.int_attr("http.route"), None);
    assert_eq!(child.bool_attr("app.cached"), Some(false));
    assert_eq!(child.attr("app.ratio"), Some(&AttrValue::Double(0.25)));
    assert_eq!(
        child.attr("app.tags"),
        Some(&AttrValue::Other("[a, 2]".to_owned()))
    );
    assert_eq!(child.attr("missing"), None);
    assert_eq!(child.events.len(), 1);
    let exception = child.event("exception").expect("exception event");
    assert_eq!(
        exception.get("exception.message"),
        Some(&AttrValue::Str("boom".to_owned()))
    );

    for span in [parent, child] {
        assert_eq!(span.resource_str("service.name"), Some("t"));
        assert_eq!(span.resource.len(), 1);
        assert_eq!(span.scope_name, "self-test");
    }
}

async fn post_protobuf(
    receiver: &OtlpReceiver,
    body: Vec<u8>,
) -> reqwest::Result<reqwest::Response> {
    reqwest::Client::new()
        .post(receiver.traces_url())
        .header("content-type", "application/x-protobuf")
        .header("X-Test-Header", "http-yes")
        .body(body)
        .send()
        .await
}

async fn grpc_client(receiver: &OtlpReceiver) -> TraceServiceClient<tonic::transport::Channel> {
    TraceServiceClient::connect(receiver.endpoint())
        .await
        .expect("connect gRPC client to fake receiver")
}

async fn grpc_export(
    receiver: &OtlpReceiver,
) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
    let mut request = tonic::Request::new(sample_request());
    request
        .metadata_mut()
        .insert("x-test-header", "grpc-yes".parse().unwrap());
    grpc_client(receiver).await.export(request).await
}

#[tokio::test]
async fn http_receiver_decodes_protobuf_export() {
    let receiver = OtlpReceiver::http(Behavior::Accept).await;
    assert!(receiver.endpoint().starts_with("http://127.0.0.1:"));
    assert_eq!(receiver.requests(), 0);
    assert!(receiver.spans().is_empty());

    let response = post_protobuf(&receiver, sample_request().encode_to_vec())
        .await
        .expect("POST /v1/traces");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");
    ExportTraceServiceResponse::decode(response.bytes().await.unwrap())
        .expect("response body is an ExportTraceServiceResponse");

    let spans = receiver.wait_for_spans(2, WAIT).await;
    assert_sample_spans(&spans);
    assert_eq!(receiver.requests(), 1);
    assert_eq!(
        receiver.header("x-test-header").as_deref(),
        Some("http-yes")
    );
    assert_eq!(
        receiver.header("X-TEST-HEADER").as_deref(),
        Some("http-yes")
    );
    assert_eq!(
        receiver.header("content-type").as_deref(),
        Some("application/x-protobuf")
    );
    assert_eq!(receiver.header("absent"), None);
}

#[tokio::test]
async fn grpc_receiver_decodes_grpc_export() {
    let receiver = OtlpReceiver::grpc(Behavior::Accept).await;
    assert!(receiver.endpoint().starts_with("http://127.0.0.1:"));

    grpc_export(&receiver).await.expect("gRPC export succeeds");

    let spans = receiver.wait_for_spans(2, WAIT).await;
    assert_sample_spans(&spans);
    assert_eq!(receiver.requests(), 1);
    assert_eq!(
        receiver.header("x-test-header").as_deref(),
        Some("grpc-yes")
    );
    assert!(
        receiver
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("application/grpc")),
        "{:?}",
        receiver.headers()
    );
}

#[tokio::test]
async fn http_status_behavior_answers_with_it_and_counts_the_request() {
    let receiver = OtlpReceiver::http(Behavior::Status(500)).await;

    let response = post_protobuf(&receiver, sample_request().encode_to_vec())
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(receiver.wait_for_requests(1, WAIT).await, 1);
    // What arrived is still recorded.
    assert_eq!(receiver.spans().len(), 2);

    receiver.set_behavior(Behavior::Status(429));
    let response = post_protobuf(&receiver, sample_request().encode_to_vec())
        .await
        .unwrap();
    assert_eq!(response.status(), 429);

    receiver.set_behavior(Behavior::Accept);
    let response = post_protobuf(&receiver, sample_request().encode_to_vec())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(receiver.requests(), 3);
    assert_eq!(receiver.spans().len(), 6);
}

#[tokio::test]
async fn grpc_status_behavior_maps_to_grpc_codes_and_counts_the_request() {
    let receiver = OtlpReceiver::grpc(Behavior::Status(500)).await;

    let status = grpc_export(&receiver).await.expect_err("export must fail");
    assert_eq!(status.code(), tonic::Code::Internal);
    assert_eq!(receiver.requests(), 1);

    receiver.set_behavior(Behavior::Status(429));
    let status = grpc_export(&receiver).await.expect_err("export must fail");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(receiver.requests(), 2);
}

#[tokio::test]
async fn http_receiver_rejects_wrong_content_type_and_garbage() {
    let receiver = OtlpReceiver::http(Behavior::Accept).await;
    let client = reqwest::Client::new();

    let response = client
        .post(receiver.traces_url())
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);

    let response = post_protobuf(&receiver, vec![0xff, 0xff, 0xff])
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    assert_eq!(receiver.requests(), 2);
    assert!(receiver.spans().is_empty());
}

#[tokio::test]
async fn wait_for_spans_is_woken_by_a_request_and_times_out_otherwise() {
    let receiver = OtlpReceiver::http(Behavior::Accept).await;

    // Nothing arrives: returns what there is once the timeout elapses.
    let started = Instant::now();
    let spans = receiver.wait_for_spans(1, Duration::from_millis(200)).await;
    assert!(spans.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(200));

    // A request arriving while waiting wakes the waiter well before the timeout.
    let url = receiver.traces_url();
    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        reqwest::Client::new()
            .post(url)
            .header("content-type", "application/x-protobuf")
            .body(sample_request().encode_to_vec())
            .send()
            .await
            .unwrap()
            .status()
    });
    let started = Instant::now();
    let spans = receiver.wait_for_spans(2, Duration::from_secs(30)).await;
    assert_eq!(spans.len(), 2);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(sender.await.unwrap(), 200);
    assert_eq!(receiver.wait_for_requests(1, WAIT).await, 1);
}

#[tokio::test]
async fn hang_behavior_never_answers_but_records() {
    let receiver = OtlpReceiver::http(Behavior::Hang).await;
    let result = reqwest::Client::new()
        .post(receiver.traces_url())
        .header("content-type", "application/x-protobuf")
        .timeout(Duration::from_millis(300))
        .body(sample_request().encode_to_vec())
        .send()
        .await;
    let err = result.expect_err("a hanging receiver must not answer");
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(receiver.requests(), 1);
    assert_eq!(receiver.spans().len(), 2);

    let receiver = OtlpReceiver::grpc(Behavior::Hang).await;
    let mut client = grpc_client(&receiver).await;
    let result =
        tokio::time::timeout(Duration::from_millis(300), client.export(sample_request())).await;
    assert!(result.is_err(), "a hanging gRPC receiver must not answer");
    assert_eq!(receiver.wait_for_requests(1, WAIT).await, 1);
}

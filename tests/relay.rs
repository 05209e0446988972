//! The browser relay over real HTTP: the real binary exporting to a local
//! OTLP receiver, and browser spans posted the way the frontend's exporter
//! posts them (OTLP/HTTP protobuf, with the page's Origin).

mod support;

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use support::otlp::{Behavior, OtlpReceiver, ReceivedSpan};
use support::server::Server;

const FRONTEND: &str = "http://localhost:3000";
const PROTOBUF: &str = "application/x-protobuf";
const BROWSER_TRACE: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
const BROWSER_SPAN: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];

fn start(receiver: Option<&OtlpReceiver>, relay: bool) -> Server {
    let mut env = vec![("OTEL_BSP_SCHEDULE_DELAY", "50".to_owned())];
    if let Some(receiver) = receiver {
        env.push(("OTEL_TRACES_EXPORTER", "otlp".into()));
        env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()));
    }
    if relay {
        env.push(("OTEL_BROWSER_RELAY", "true".into()));
    }
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start(&pairs)
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// One browser fetch span, as @opentelemetry/exporter-trace-otlp-proto sends it.
fn browser_export(trace_id: [u8; 16], span_id: [u8; 8]) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![text("service.name", "cruddur-frontend-stub")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: trace_id.to_vec(),
                    span_id: span_id.to_vec(),
                    name: "HTTP POST".into(),
                    kind: 3,
                    start_time_unix_nano: now - 5_000_000,
                    end_time_unix_nano: now,
                    attributes: vec![text("http.url", "http://localhost:4567/api/activities")],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

async fn post(
    server: &Server,
    origin: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(server.url("/api/telemetry/v1/traces"))
        .header("content-type", content_type)
        .body(body);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request.send().await.expect("the relay answers")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_browser(spans: &[ReceivedSpan]) -> Vec<ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.resource_str("service.name") == Some("cruddur-frontend-stub"))
        .cloned()
        .collect()
}

#[tokio::test]
async fn browser_spans_from_the_frontend_reach_the_otlp_sink_as_sent() {
    let receiver = OtlpReceiver::http(Behavior::Accept).await;
    let server = start(Some(&receiver), true);
    assert!(
        server
            .stderr()
            .contains("telemetry: browser relay on: POST /api/telemetry/v1/traces -> otlp"),
        "{}",
        server.stderr()
    );

    let preflight = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            server.url("/api/telemetry/v1/traces"),
        )
        .header("origin", FRONTEND)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        FRONTEND,
        "the page may post its spans cross-origin"
    );

    let answer = post(
        &server,
        Some(FRONTEND),
        PROTOBUF,
        browser_export(BROWSER_TRACE, BROWSER_SPAN),
    )
    .await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], PROTOBUF);
    assert!(
        answer.bytes().await.unwrap().is_empty(),
        "an empty ExportTraceServiceResponse"
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    let relayed = loop {
        let relayed = from_browser(&receiver.spans());
        if !relayed.is_empty() || Instant::now() > deadline {
            break relayed;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(relayed.len(), 1, "the browser span is forwarded");
    let span = &relayed[0];
    assert_eq!(span.trace_id, hex(&BROWSER_TRACE));
    assert_eq!(span.span_id, hex(&BROWSER_SPAN));
    assert_eq!(span.name, "HTTP POST");
    assert_eq!(
        span.str_attr("http.url"),
        Some("http://localhost:4567/api/activities")
    );

    let stopped = server.stop(Duration::from_secs(10)).await;
    let all = receiver.spans();
    assert_eq!(from_browser(&all).len(), 1, "forwarded once");
    assert!(
        all.iter().any(|s| s.name == "POST /api/telemetry/v1/traces"
            && s.resource_str("service.name") == Some("cruddur-backend")),
        "the relay's own request is traced as the backend's: {}",
        stopped.stderr()
    );
}

#[tokio::test]
async fn only_well_formed_traces_from_the_allowed_origins_are_relayed() {
    let receiver = OtlpReceiver::http(Behavior::Accept).await;
    let server = start(Some(&receiver), true);
    let good = || browser_export(BROWSER_TRACE, BROWSER_SPAN);

    let cases = vec![
        ("no Origin", None, PROTOBUF, good(), 403, "forbidden"),
        (
            "another origin",
            Some("https://evil.example"),
            PROTOBUF,
            good(),
            403,
            "forbidden",
        ),
        (
            "JSON",
            Some(FRONTEND),
            "application/json",
            b"{}".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "not protobuf",
            Some(FRONTEND),
            PROTOBUF,
            b"\xff\xff\xff garbage".to_vec(),
            400,
            "bad_request",
        ),
        (
            "no spans",
            Some(FRONTEND),
            PROTOBUF,
            ExportTraceServiceRequest::default().encode_to_vec(),
            400,
            "bad_request",
        ),
        (
            "all-zero trace id",
            Some(FRONTEND),
            PROTOBUF,
            browser_export([0; 16], BROWSER_SPAN),
            400,
            "bad_request",
        ),
        (
            "over 64 KiB",
            Some(FRONTEND),
            PROTOBUF,
            vec![0; 65 * 1024],
            413,
            "payload_too_large",
        ),
    ];
    for (what, origin, content_type, body, status, error) in cases {
        let answer = post(&server, origin, content_type, body).await;
        assert_eq!(answer.status().as_u16(), status, "{what}");
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["error"], error, "{what}: {body}");
    }
    let from_backend_origin = post(&server, Some("http://localhost:4567"), PROTOBUF, good()).await;
    assert_eq!(
        from_backend_origin.status(),
        200,
        "BACKEND_URL is allowed too"
    );

    server.stop(Duration::from_secs(10)).await;
    assert_eq!(
        from_browser(&receiver.spans()).len(),
        1,
        "only the accepted request was forwarded"
    );
}

#[tokio::test]
async fn the_relay_is_rate_limited() {
    let receiver = OtlpReceiver::http(Behavior::Accept).await;
    let server = std::sync::Arc::new(start(Some(&receiver), true));
    // 60 at once: the first 20 pass, the rest only as fast as the budget refills.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..60 {
        let server = std::sync::Arc::clone(&server);
        tasks.push(tokio::spawn(async move {
            let answer = post(
                &server,
                Some(FRONTEND),
                PROTOBUF,
                browser_export(BROWSER_TRACE, BROWSER_SPAN),
            )
            .await;
            let retry_after = answer.headers().get("retry-after").cloned();
            (answer.status().as_u16(), retry_after)
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        let (status, retry_after) = task.await.unwrap();
        if status == 429 {
            assert_eq!(retry_after.unwrap(), "1");
        }
        statuses.push(status);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(accepted + limited, 60, "{statuses:?}");
    let budget = 20 + (elapsed * 10.0).ceil() as usize;
    assert!(
        (20..=budget).contains(&accepted) && limited > 0,
        "a burst of 20 plus 10 a second ({elapsed:.2}s): {accepted} accepted"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = post(
        &server,
        Some(FRONTEND),
        PROTOBUF,
        browser_export(BROWSER_TRACE, BROWSER_SPAN),
    )
    .await;
    assert_eq!(later.status(), 200, "the budget refills");
}

#[tokio::test]
async fn the_relay_is_off_unless_asked_for_and_needs_an_otlp_sink() {
    let receiver = OtlpReceiver::http(Behavior::Accept).await;
    let default = start(Some(&receiver), false);
    let answer = post(
        &default,
        Some(FRONTEND),
        PROTOBUF,
        browser_export(BROWSER_TRACE, BROWSER_SPAN),
    )
    .await;
    assert_eq!(answer.status(), 404, "off by default");

    let no_sink = start(None, true);
    assert!(
        no_sink
            .stderr()
            .contains("telemetry: browser relay off (no OTLP sink to forward to)"),
        "{}",
        no_sink.stderr()
    );
    let answer = post(
        &no_sink,
        Some(FRONTEND),
        PROTOBUF,
        browser_export(BROWSER_TRACE, BROWSER_SPAN),
    )
    .await;
    assert_eq!(answer.status(), 404);
}

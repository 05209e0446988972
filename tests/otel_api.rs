//! Spans made through the OpenTelemetry API, as a library instrumented with
//! it makes them (`opentelemetry::global::tracer`), reach the same sinks as
//! the backend's own: in process, since no product route uses that API, with
//! the product's middleware stack and the real telemetry (`telemetry::init`
//! installs the subscriber and the global tracer provider for this test
//! binary alone), exporting to a local OTLP receiver and a fake X-Ray daemon.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use cruddur_backend::app::with_middleware;
use cruddur_backend::config::Config;
use cruddur_backend::telemetry;
use opentelemetry::trace::{Span as _, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue, global};
use serde_json::Value;
use support::otlp::{Behavior, OtlpReceiver, ReceivedSpan};
use support::xray::{XrayDaemon, all_parts};

/// What a library instrumented with the OpenTelemetry API does: a span of
/// its own, and inside it, code of ours that makes a `tracing` span.
fn library_work() {
    let mut span = global::tracer("lib").start("lib.work");
    span.set_attribute(KeyValue::new("lib.answer", 42));
    let cx = Context::current_with_span(span);
    {
        let _active = cx.clone().attach();
        tracing::info_span!("called_back").in_scope(|| {});
    }
    cx.span().end();
}

#[tracing::instrument(name = "lib_service")]
async fn service() {
    library_work();
}

async fn handler() -> &'static str {
    service().await;
    "ok"
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    spans
        .iter()
        .find(|span| span.name == name)
        .unwrap_or_else(|| panic!("no span {name}: {spans:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_api_spans_join_the_request_trace_in_every_sink() {
    let receiver = OtlpReceiver::http(Behavior::Accept).await;
    let daemon = XrayDaemon::start().await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("xray.json");
    let keep_all = serde_json::json!({"SamplingRule": {
        "RuleName": "All", "ResourceARN": "*", "Priority": 1, "FixedRate": 1.0,
        "ReservoirSize": 0, "ServiceName": "*", "ServiceType": "*", "Host": "*",
        "HTTPMethod": "*", "URLPath": "*", "Version": 1
    }});
    std::fs::write(&rules, keep_all.to_string()).unwrap();
    let endpoint = receiver.endpoint();
    let daemon_address = daemon.addr.to_string();
    let config = Config::try_parse_from([
        "cruddur-backend",
        "--log-filter",
        "off",
        "--traces-exporter",
        "otlp",
        "--otlp-endpoint",
        endpoint.as_str(),
        "--xray-daemon-address",
        daemon_address.as_str(),
        "--xray-sampling-rules",
        rules.to_str().unwrap(),
        // Off without asking the AWS chain, which would look for instance metadata.
        "--cloudwatch-log-level",
        "off",
    ])
    .expect("a valid config");
    let telemetry = telemetry::init(&config).expect("telemetry starts");
    let router = with_middleware(
        Router::new().route("/lib", get(handler)),
        &config,
        &telemetry,
    );
    let addr = support::app::serve(router).await;

    let answer = reqwest::get(format!("http://{addr}/lib")).await.unwrap();
    assert_eq!(answer.status(), 200);
    let header = answer.headers()["x-amzn-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    // Outside any request: a root of its own, with an X-Ray-compatible id.
    global::tracer("lib").start("standalone").end();

    let flushed =
        tokio::task::spawn_blocking(move || telemetry.guard.shutdown(Duration::from_secs(10)))
            .await
            .unwrap();
    assert!(flushed);

    let spans = receiver.spans();
    let request = named(&spans, "GET /lib");
    let service = named(&spans, "lib_service");
    let work = named(&spans, "lib.work");
    let called_back = named(&spans, "called_back");
    assert_eq!(service.parent_span_id, request.span_id);
    assert_eq!(
        work.parent_span_id, service.span_id,
        "the OpenTelemetry span is the child of the current tracing span"
    );
    assert_eq!(
        called_back.parent_span_id, work.span_id,
        "a tracing span inside it is its child"
    );
    for span in [service, work, called_back] {
        assert_eq!(span.trace_id, request.trace_id, "{span:?}");
    }
    assert_eq!(work.scope_name, "lib");
    assert_eq!(work.int_attr("lib.answer"), Some(42));
    assert_eq!(
        work.resource_str("service.name"),
        Some("cruddur-backend"),
        "exported under the backend's resource"
    );

    let standalone = named(&spans, "standalone");
    assert!(standalone.is_root());
    assert_ne!(standalone.trace_id, request.trace_id);
    let seconds = u64::from_str_radix(&standalone.trace_id[..8], 16).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(seconds) < 60, "epoch seconds first: {seconds}");

    let xray_trace = format!("1-{}-{}", &request.trace_id[..8], &request.trace_id[8..]);
    assert!(
        header.starts_with(&format!("Root={xray_trace};")),
        "{header}"
    );
    let datagrams = daemon.wait_for(1, Duration::from_secs(5)).await;
    let segment = datagrams
        .iter()
        .map(|datagram| &datagram.document)
        .find(|document| document["trace_id"] == xray_trace.as_str())
        .unwrap_or_else(|| panic!("no segment of {xray_trace}: {datagrams:#?}"));
    assert!(
        all_parts(segment)
            .iter()
            .any(|part| part["name"] == "lib.work"),
        "X-Ray nests the library's span in the request's segment: {segment:#}"
    );
    let sent: Vec<&Value> = datagrams
        .iter()
        .flat_map(|datagram| all_parts(&datagram.document))
        .filter(|part| part["name"] == "lib.work")
        .collect();
    assert_eq!(sent.len(), 1, "sent to X-Ray once: {sent:#?}");
}

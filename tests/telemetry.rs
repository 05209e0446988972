//! The real binary exporting to a local OTLP receiver that decodes the real
//! protobuf, over HTTP and gRPC: what a person sees in Honeycomb.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::otlp::{
    AttrValue, Behavior, OtlpReceiver, ReceivedSpan, SPAN_KIND_CLIENT, SPAN_KIND_INTERNAL,
    SPAN_KIND_SERVER, STATUS_CODE_ERROR, STATUS_CODE_UNSET,
};
use support::server::{Server, answered_trace_id};

const W3C_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const W3C_PARENT: &str = "b7ad6b7169203331";

fn otlp_env(receiver: &OtlpReceiver, protocol: &'static str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_TRACES_EXPORTER", "otlp".into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.into()),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "x-honeycomb-team=test-key-0123456789".into(),
        ),
        ("OTEL_SERVICE_NAME", "cruddur-test".into()),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=test".into(),
        ),
    ]
}

fn start(env: &[(&'static str, String)]) -> Server {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start(&pairs)
}

fn by_trace(spans: &[ReceivedSpan], trace_id: &str) -> Vec<ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.trace_id == trace_id)
        .cloned()
        .collect()
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
        panic!(
            "no span {name} in {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        )
    })
}

async fn check_one_request_trace(protocol: &'static str) {
    let receiver = match protocol {
        "grpc" => OtlpReceiver::grpc(Behavior::Accept).await,
        _ => OtlpReceiver::http(Behavior::Accept).await,
    };
    let server = start(&otlp_env(&receiver, protocol));
    let client = reqwest::Client::new();
    let response = client
        .get(server.url("/api/activities/@worf"))
        .header("traceparent", format!("00-{W3C_TRACE}-{W3C_PARENT}-01"))
        .header("user-agent", "telemetry-test/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(answered_trace_id(&response), W3C_TRACE);
    let server = server.stop(Duration::from_secs(10)).await;
    assert!(
        server.stderr().contains("telemetry: otlp flushed"),
        "{}",
        server.stderr()
    );

    let spans = by_trace(&receiver.spans(), W3C_TRACE);
    let request = named(&spans, "GET /api/activities/@{handle}");
    assert_eq!(request.kind, SPAN_KIND_SERVER);
    assert_eq!(request.parent_span_id, W3C_PARENT);
    assert_eq!(request.status_code, STATUS_CODE_UNSET);
    assert_eq!(request.str_attr("http.request.method"), Some("GET"));
    assert_eq!(
        request.str_attr("http.route"),
        Some("/api/activities/@{handle}")
    );
    assert_eq!(request.str_attr("url.path"), Some("/api/activities/@worf"));
    assert_eq!(request.str_attr("url.scheme"), Some("http"));
    assert_eq!(request.int_attr("http.response.status_code"), Some(200));
    assert_eq!(request.str_attr("server.address"), Some("127.0.0.1"));
    assert_eq!(
        request.int_attr("server.port"),
        Some(i64::from(server.addr.port()))
    );
    assert_eq!(request.str_attr("client.address"), Some("127.0.0.1"));
    assert_eq!(
        request.str_attr("user_agent.original"),
        Some("telemetry-test/1.0")
    );
    assert_eq!(request.str_attr("network.protocol.version"), Some("1.1"));
    assert!(
        request.attr("http.method").is_none(),
        "old names only under http/dup"
    );
    assert_eq!(request.resource_str("service.name"), Some("cruddur-test"));
    assert_eq!(request.resource_str("deployment.environment"), Some("test"));

    let service = named(&spans, "user_activities");
    assert_eq!(service.kind, SPAN_KIND_INTERNAL);
    assert_eq!(service.parent_span_id, request.span_id);
    assert_eq!(service.str_attr("app.user_handle"), Some("worf"));
    assert_eq!(service.int_attr("app.result_length"), Some(1));
    assert!(
        service
            .str_attr("app.now")
            .is_some_and(|now| now.ends_with("+00:00"))
    );

    let queries: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.kind == SPAN_KIND_CLIENT)
        .collect();
    assert!(queries.len() >= 2, "user lookup and feed query");
    for query in &queries {
        assert_eq!(
            query.parent_span_id, service.span_id,
            "store spans survive spawn_blocking"
        );
        assert_eq!(query.str_attr("db.system.name"), Some("sqlite"));
        assert_eq!(query.str_attr("db.operation.name"), Some("SELECT"));
        assert!(query.str_attr("db.collection.name").is_some());
        let text = query.str_attr("db.query.text").unwrap();
        assert!(
            text.contains('?') && !text.contains("worf"),
            "parameters, never values: {text}"
        );
    }
    assert!(
        queries
            .iter()
            .any(|q| q.str_attr("db.collection.name") == Some("activities"))
    );
    assert_eq!(
        receiver.header("x-honeycomb-team").as_deref(),
        Some("test-key-0123456789")
    );
    assert!(
        server.stderr().contains("x-honeycomb-team=…6789"),
        "{}",
        server.stderr()
    );
    assert!(
        !server.stderr().contains("test-key-0123456789"),
        "the key is never printed whole"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_one_trace_over_otlp_http() {
    check_one_request_trace("http/protobuf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_one_trace_over_otlp_grpc() {
    check_one_request_trace("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_span_of_k_requests_arrives_after_sigterm() {
    let receiver = OtlpReceiver::http(Behavior::Accept).await;
    let mut env = otlp_env(&receiver, "http/protobuf");
    // A long schedule delay and big batches: nothing is exported before the shutdown flush.
    env.push(("OTEL_BSP_SCHEDULE_DELAY", "600000".into()));
    env.push(("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4096".into()));
    let server = start(&env);
    let client = reqwest::Client::new();
    let mut sent = Vec::new();
    for i in 0..150 {
        let response = if i % 3 == 0 {
            client
                .post(server.url("/api/activities"))
                .json(&serde_json::json!({"message": format!("crud {i}"), "ttl": "1-hour"}))
                .send()
                .await
                .unwrap()
        } else {
            client
                .get(server.url("/api/activities/home"))
                .send()
                .await
                .unwrap()
        };
        assert_eq!(response.status(), 200);
        sent.push(answered_trace_id(&response));
    }
    let traces: BTreeSet<String> = sent.iter().cloned().collect();
    assert_eq!(receiver.requests(), 0, "nothing exported before shutdown");
    server.stop(Duration::from_secs(15)).await;
    let spans = receiver.spans();
    let servers: BTreeSet<String> = spans
        .iter()
        .filter(|s| s.kind == SPAN_KIND_SERVER)
        .map(|s| s.trace_id.clone())
        .collect();
    assert_eq!(servers, traces, "one server span per request, none lost");
    let creates = spans.iter().filter(|s| s.name == "create_activity").count();
    assert_eq!(creates, 50, "every third request was a create");
    for (i, trace) in sent.iter().enumerate() {
        let trace_spans = by_trace(&spans, trace);
        // A create, then a read that must query (the create changed the
        // feed), then one the feed cache answers: request and service only.
        if i % 3 == 2 {
            assert_eq!(trace_spans.len(), 2, "request and service: {trace_spans:?}");
            let home = named(&trace_spans, "home_activities");
            assert_eq!(home.bool_attr("app.cache_hit"), Some(true));
            continue;
        }
        assert!(
            trace_spans.len() >= 3,
            "request, service and query spans: {trace_spans:?}"
        );
        if i % 3 == 1 {
            let home = named(&trace_spans, "home_activities");
            assert_eq!(home.bool_attr("app.cache_hit"), Some(false));
        }
        // Writes run on the writer thread: their spans still nest under the service.
        if let Some(create) = trace_spans.iter().find(|s| s.name == "create_activity") {
            let insert = named(&trace_spans, "INSERT activities");
            assert_eq!(insert.parent_span_id, create.span_id);
            assert_eq!(insert.kind, SPAN_KIND_CLIENT);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_handles_give_one_span_name() {
    let receiver = OtlpReceiver::http(Behavior::Accept).await;
    let server = start(&otlp_env(&receiver, "http/protobuf"));
    let client = reqwest::Client::new();
    let base = server.url("/api/activities/@");
    let mut pending = Vec::new();
    for worker in 0..16 {
        let client = client.clone();
        let base = base.clone();
        pending.push(tokio::spawn(async move {
            for i in (worker..10_000).step_by(16) {
                let status = client
                    .get(format!("{base}user{i}"))
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(status, 404);
            }
        }));
    }
    for worker in pending {
        worker.await.unwrap();
    }
    server.stop(Duration::from_secs(30)).await;
    let names: BTreeSet<String> = receiver
        .spans()
        .into_iter()
        .filter(|s| s.kind == SPAN_KIND_SERVER)
        .map(|s| s.name)
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["GET /api/activities/@{handle}".to_owned()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_are_joined_through_w3c_or_xray_headers() {
    let receiver = OtlpReceiver::http(Behavior::Accept).await;
    let server = start(&otlp_env(&receiver, "http/protobuf"));
    let client = reqwest::Client::new();
    // (headers, the trace and parent joined, if any)
    type Case = (
        Vec<(&'static str, &'static str)>,
        Option<(&'static str, &'static str)>,
    );
    let cases: Vec<Case> = vec![
        (
            vec![(
                "x-amzn-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
            )],
            Some(("5759e988bd862e3fe1be46a994272793", "53995c3f42cd8ad8")),
        ),
        (
            vec![(
                "x-amzn-trace-id",
                "Self=1-67891234-12456789abcdef012345678;Root=1-5759e988-aaaaaaaaaaaaaaaaaaaaaaaa",
            )],
            Some(("5759e988aaaaaaaaaaaaaaaaaaaaaaaa", "")),
        ),
        (vec![("traceparent", "00-zzzz-b7ad6b7169203331-01")], None),
        (
            vec![("traceparent", "garbage"), ("x-amzn-trace-id", "Root=junk")],
            None,
        ),
        (vec![("tracestate", "a=b"), ("baggage", "%%%")], None),
    ];
    let mut expected = Vec::new();
    for (headers, joined) in &cases {
        let mut request = client.get(server.url("/api/activities/home"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{headers:?}");
        expected.push((answered_trace_id(&response), *joined));
    }
    server.stop(Duration::from_secs(10)).await;
    let spans = receiver.spans();
    for (trace_id, joined) in expected {
        let servers: Vec<ReceivedSpan> = by_trace(&spans, &trace_id)
            .into_iter()
            .filter(|s| s.kind == SPAN_KIND_SERVER)
            .collect();
        assert_eq!(servers.len(), 1, "{trace_id}");
        let server_span = &servers[0];
        match joined {
            Some((trace, parent)) => {
                assert_eq!(server_span.trace_id, trace);
                assert_eq!(server_span.parent_span_id, parent);
            }
            None => {
                assert!(server_span.is_root());
                let seconds = u64::from_str_radix(&server_span.trace_id[..8], 16).unwrap();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                assert!(now - seconds < 600, "a new X-Ray compatible trace id");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_attribute_names_come_with_http_dup() {
    let receiver = OtlpReceiver::http(Behavior::Accept).await;
    let mut env = otlp_env(&receiver, "http/protobuf");
    env.push(("OTEL_SEMCONV_STABILITY_OPT_IN", "http/dup".into()));
    let server = start(&env);
    let response = reqwest::get(server.url("/api/activities/search?term=juice"))
        .await
        .unwrap();
    let trace = answered_trace_id(&response);
    let with_secret = reqwest::get(
        server.url("/api/activities/search?term=juice&api_key=hunter2&Access-Token=hunter3"),
    )
    .await
    .unwrap();
    let secret_trace = answered_trace_id(&with_secret);
    server.stop(Duration::from_secs(10)).await;
    // A secret parameter's value never leaves in the old `http.target`.
    let secret_spans = by_trace(&receiver.spans(), &secret_trace);
    assert_eq!(
        named(&secret_spans, "GET /api/activities/search").str_attr("http.target"),
        Some("/api/activities/search?term=juice&api_key=********&Access-Token=********")
    );
    let spans = by_trace(&receiver.spans(), &trace);
    let request = named(&spans, "GET /api/activities/search");
    assert_eq!(request.str_attr("http.method"), Some("GET"));
    assert_eq!(
        request.str_attr("http.target"),
        Some("/api/activities/search?term=juice")
    );
    assert_eq!(request.int_attr("http.status_code"), Some(200));
    assert_eq!(
        request.str_attr("http.request.method"),
        Some("GET"),
        "and the stable names"
    );
    let search = named(&spans, "search_activities");
    assert_eq!(search.int_attr("app.result_length"), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_is_an_error_span_with_an_exception_event() {
    let receiver = OtlpReceiver::http(Behavior::Accept).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cruddur.db");
    let mut env = otlp_env(&receiver, "http/protobuf");
    env.push(("DATABASE_PATH", db.to_str().unwrap().into()));
    let server = start(&env);
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("ALTER TABLE activities RENAME TO gone")
        .unwrap();
    let failed = reqwest::get(server.url("/api/activities/home"))
        .await
        .unwrap();
    assert_eq!(failed.status(), 500);
    let trace = answered_trace_id(&failed);
    let missing = reqwest::get(server.url("/api/activities/@nobody"))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let missing_trace = answered_trace_id(&missing);
    let unrouted = reqwest::get(server.url("/no/such/path")).await.unwrap();
    let unrouted_trace = answered_trace_id(&unrouted);
    server.stop(Duration::from_secs(10)).await;
    let spans = receiver.spans();
    let request = named(&by_trace(&spans, &trace), "GET /api/activities/home").clone();
    assert_eq!(request.status_code, STATUS_CODE_ERROR);
    assert_eq!(request.int_attr("http.response.status_code"), Some(500));
    let exception = request.event("exception").expect("an exception event");
    assert!(
        exception
            .get("exception.message")
            .and_then(AttrValue::as_str)
            .is_some_and(|m| m.contains("gone") || m.contains("activities")),
        "{exception:?}"
    );
    let not_found = named(
        &by_trace(&spans, &missing_trace),
        "GET /api/activities/@{handle}",
    )
    .clone();
    assert_eq!(
        not_found.status_code, STATUS_CODE_UNSET,
        "4xx is not an error of ours"
    );
    let unrouted_span = named(&by_trace(&spans, &unrouted_trace), "GET").clone();
    assert!(unrouted_span.attr("http.route").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_check_counts_exports() {
    let receiver = OtlpReceiver::http(Behavior::Accept).await;
    let mut env = otlp_env(&receiver, "http/protobuf");
    env.push(("OTEL_BSP_SCHEDULE_DELAY", "50".into()));
    let server = start(&env);
    let client = reqwest::Client::new();
    for _ in 0..5 {
        client
            .get(server.url("/api/activities/home"))
            .send()
            .await
            .unwrap();
    }
    receiver.wait_for_spans(15, Duration::from_secs(10)).await;
    receiver
        .wait_for_requests(receiver.requests() + 1, Duration::from_millis(300))
        .await;
    let report = server.health().await;
    let otlp = &report["sinks"]["otlp"];
    assert_eq!(otlp["enabled"], true);
    assert!(otlp["exported"].as_u64().unwrap() >= 15, "{otlp}");
    assert_eq!(otlp["dropped"], 0);
    assert_eq!(otlp["failed"], 0);
    assert!(otlp["last_success"].is_string());
    assert!(
        otlp["destination"]
            .as_str()
            .unwrap()
            .ends_with("/v1/traces (http/protobuf)")
    );
    server.stop(Duration::from_secs(10)).await;
}

/// A collector that fails or never answers costs requests nothing, the
/// failures and drops are counted, and shutdown keeps its deadline.
async fn check_a_broken_collector(behavior: Behavior, expect_error: &str) {
    let receiver = OtlpReceiver::http(behavior).await;
    let mut env = otlp_env(&receiver, "http/protobuf");
    env.extend([
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "300".into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "20".into()),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "8".into()),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4".into()),
        ("SHUTDOWN_TIMEOUT", "2s".into()),
    ]);
    let server = start(&env);
    let client = reqwest::Client::new();
    let mut slowest = Duration::ZERO;
    for _ in 0..60 {
        let started = Instant::now();
        let response = client
            .get(server.url("/api/activities/home"))
            .send()
            .await
            .unwrap();
        slowest = slowest.max(started.elapsed());
        assert_eq!(response.status(), 200);
    }
    assert!(
        slowest < Duration::from_millis(250),
        "requests never wait on the sink (slowest {slowest:?})"
    );
    receiver.wait_for_requests(2, Duration::from_secs(10)).await;
    let report = server.health().await;
    let otlp = &report["sinks"]["otlp"];
    assert!(otlp["dropped"].as_u64().unwrap() > 0, "{otlp}");
    assert!(
        otlp["last_error"].as_str().unwrap().contains(expect_error),
        "{otlp}"
    );
    assert!(otlp["last_success"].is_null(), "{otlp}");
    let stopping = Instant::now();
    let server = server.stop(Duration::from_secs(10)).await;
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "shutdown kept its deadline: {:?}",
        stopping.elapsed()
    );
    assert!(
        server.stderr().contains("telemetry: otlp"),
        "{}",
        server.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_answering_500_costs_requests_nothing() {
    check_a_broken_collector(Behavior::Status(500), "500").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_costs_requests_nothing() {
    check_a_broken_collector(Behavior::Hang, "timed out").await;
}

/// A server whose first export answers `status`, and every later one 200;
/// answers it, its receiver and the trace id of one request, after that
/// first export.
async fn first_export_fails(status: u16) -> (Server, OtlpReceiver, String) {
    let receiver = OtlpReceiver::http(Behavior::Status(status)).await;
    let mut env = otlp_env(&receiver, "http/protobuf");
    env.push(("OTEL_BSP_SCHEDULE_DELAY", "20".into()));
    let server = start(&env);
    let response = reqwest::get(server.url("/api/activities/home"))
        .await
        .unwrap();
    let trace = answered_trace_id(&response);
    receiver.wait_for_requests(1, Duration::from_secs(10)).await;
    receiver.set_behavior(Behavior::Accept);
    (server, receiver, trace)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_retries_a_500_and_then_delivers() {
    let (server, receiver, trace) = first_export_fails(503).await;
    server.stop(Duration::from_secs(10)).await;
    let delivered: HashMap<String, usize> =
        receiver
            .spans()
            .iter()
            .fold(HashMap::new(), |mut seen, span| {
                *seen.entry(span.span_id.clone()).or_default() += 1;
                seen
            });
    assert!(receiver.requests() >= 2, "the failed export was retried");
    assert!(!by_trace(&receiver.spans(), &trace).is_empty());
    assert!(delivered.values().all(|n| *n <= 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_key_is_said_once_with_its_hint_and_so_is_the_recovery() {
    let receiver = OtlpReceiver::http(Behavior::Status(401)).await;
    let mut env = otlp_env(&receiver, "http/protobuf");
    env.push(("OTEL_BSP_SCHEDULE_DELAY", "20".into()));
    let server = start(&env);
    // Three failed exports at least (a 401 is not retried).
    for n in 1..=3 {
        let response = reqwest::get(server.url("/api/activities/home"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        receiver.wait_for_requests(n, Duration::from_secs(10)).await;
    }
    server
        .wait_for_stderr(
            "telemetry: otlp failing: OTLP/HTTP answered 401 Unauthorized (the key was rejected: \
             check HONEYCOMB_API_KEY, or x-honeycomb-team in OTEL_EXPORTER_OTLP_HEADERS)",
            Duration::from_secs(10),
        )
        .await;
    receiver.set_behavior(Behavior::Accept);
    reqwest::get(server.url("/api/activities/home"))
        .await
        .unwrap();
    server
        .wait_for_stderr(
            "telemetry: otlp recovered: delivering again",
            Duration::from_secs(10),
        )
        .await;
    let server = server.stop(Duration::from_secs(10)).await;
    let stderr = server.stderr();
    assert_eq!(
        stderr.matches("telemetry: otlp failing").count(),
        1,
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("telemetry: otlp recovered").count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains("test-key-0123456789"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_no_sooner_than_its_retry_after() {
    // The receiver's 429 says `Retry-After: 1`; the sink's own first
    // backoff is 200-300 ms.
    let (server, receiver, trace) = first_export_fails(429).await;
    receiver.wait_for_requests(2, Duration::from_secs(10)).await;
    let arrivals = receiver.arrivals();
    let waited = arrivals[1] - arrivals[0];
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}, before the Retry-After second"
    );
    server.stop(Duration::from_secs(10)).await;
    assert!(
        !by_trace(&receiver.spans(), &trace).is_empty(),
        "then delivered"
    );
}

/// A server with console spans and logs in `format` that answered one
/// `GET /api/activities/home`, stopped (its output complete), and the
/// request's trace id.
async fn one_request_on_the_console(format: &str) -> (Server, String) {
    let server = Server::start(&[
        ("OTEL_TRACES_EXPORTER", "console"),
        ("RUST_LOG", "info"),
        ("LOG_FORMAT", format),
    ]);
    let response = reqwest::get(server.url("/api/activities/home"))
        .await
        .unwrap();
    let trace = answered_trace_id(&response);
    (server.stop(Duration::from_secs(10)).await, trace)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_spans_and_logs_with_the_trace_id() {
    let (server, trace) = one_request_on_the_console("json").await;
    let stdout = server.stdout();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|_| panic!("LOG_FORMAT=json, yet not JSON: {line}"))
        })
        .collect();
    let span = lines
        .iter()
        .find(|l| l["span"] == "GET /api/activities/home" && l["trace_id"] == trace.as_str())
        .unwrap_or_else(|| panic!("no console span: {stdout}"));
    assert_eq!(span["kind"], "server");
    assert_eq!(span["attributes"]["http.response.status_code"], 200);
    assert!(span["duration_ms"].as_f64().is_some_and(|ms| ms > 0.0));
    let service = lines
        .iter()
        .find(|l| l["span"] == "home_activities" && l["trace_id"] == trace.as_str())
        .unwrap_or_else(|| panic!("no service span: {stdout}"));
    assert_eq!(service["parent_id"], span["span_id"]);
    let access = lines
        .iter()
        .find(|l| l["target"] == "cruddur::access" && l["trace_id"] == trace.as_str())
        .unwrap_or_else(|| panic!("no access log line: {stdout}"));
    assert_eq!(access["fields"]["route"], "/api/activities/home");
    assert_eq!(access["fields"]["status"], 200);
    assert_eq!(access["fields"]["method"], "GET");
    assert!(access["fields"]["latency_ms"].is_number());
    assert_eq!(access["level"], "INFO");
    assert_eq!(access["span_id"].as_str().unwrap().len(), 16);
    assert_eq!(
        access["xray_trace_id"],
        format!("1-{}-{}", &trace[..8], &trace[8..])
    );
    assert!(
        server
            .stderr()
            .contains("telemetry: otlp off (not in OTEL_TRACES_EXPORTER)")
    );
}

/// The lines of the tree whose root line starts with `root` and names
/// `trace`: that line and the branch lines under it.
fn console_tree<'a>(stdout: &'a str, root: &str, trace: &str) -> Vec<&'a str> {
    let mut lines = stdout.lines();
    let first = lines
        .by_ref()
        .find(|line| line.starts_with(root) && line.contains(&format!("trace_id={trace}")))
        .unwrap_or_else(|| panic!("no tree for {root} in {trace}:\n{stdout}"));
    let branches = lines.take_while(|line| line.starts_with(['├', '└', '│', ' ']));
    std::iter::once(first).chain(branches).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_prints_each_trace_once_as_a_tree_root_first() {
    let (server, trace) = one_request_on_the_console("pretty").await;
    let stdout = server.stdout();
    assert!(!stdout.contains('\x1b'), "no colour when piped: {stdout}");

    let tree = console_tree(&stdout, "GET /api/activities/home (server) ", &trace);
    assert_eq!(tree.len(), 4, "{tree:#?}");
    assert!(
        tree[0].contains("ms http.response.status_code=200 trace_id="),
        "{tree:#?}"
    );
    assert!(tree[1].starts_with("└─ home_activities "), "{tree:#?}");
    assert!(tree[1].contains(" app.result_length="), "{tree:#?}");
    assert!(
        tree[2].starts_with("   ├─ SELECT activities home (client) "),
        "{tree:#?}"
    );
    assert!(
        tree[3].starts_with("   └─ SELECT replies (client) "),
        "{tree:#?}"
    );
    let printed = stdout
        .lines()
        .filter(|line| line.starts_with(tree[0]))
        .count();
    assert_eq!(printed, 1, "the trace is printed once:\n{stdout}");

    // The start-up seeding is one trace: repeated inserts share a line.
    let seed = stdout
        .lines()
        .filter(|line| line.starts_with("open_database "))
        .count();
    assert_eq!(seed, 1, "{stdout}");
    assert!(stdout.contains("├─ INSERT users (client) ×5 "), "{stdout}");
}

//! `/metrics` after known traffic, read by the official Prometheus Python
//! client's parsers (`tests/support/prometheus_parse.py`; `./scripts/test`
//! installs `prometheus_client` in `.venv` and sets `PROMETHEUS_PYTHON`):
//! counts per route and status as sent, scrapes never counted, creates
//! and validation refusals counted, the store's statements timed, and exemplar trace ids that the OTLP receiver
//! got. Then OTLP metrics as the receiver decodes them from real protobuf,
//! over HTTP and gRPC: names, units, attributes, temporality, Honeycomb's
//! headers, the last interval at shutdown, and a receiver that is down.

mod support;

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::otlp::{
    Behavior, HONEYCOMB_KEY, MetricExport, MetricPoint, OtlpReceiver, TEMPORALITY_CUMULATIVE,
    TEMPORALITY_DELTA,
};
use support::server::Server;
use support::sigv4::SignedEndpoint;

const DURATION: &str = "http_server_request_duration_seconds";

/// The scrape's samples, as the official parser for `kind` reads them.
fn parse(kind: &str, scrape: &str) -> Vec<Value> {
    let python = std::env::var("PROMETHEUS_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/prometheus_parse.py"
    );
    let mut child = Command::new(&python)
        .arg(script)
        .arg(kind)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| {
            panic!("{python}: {err} (./scripts/test installs prometheus_client in .venv)")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the {kind} parser refused the scrape: {}\n{scrape}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&output.stdout).unwrap()
}

/// The value of the one sample named `name` whose labels include `labels`.
fn sample(samples: &[Value], name: &str, labels: Value) -> f64 {
    let matching: Vec<&Value> = samples
        .iter()
        .filter(|s| s["name"] == name)
        .filter(|s| {
            labels
                .as_object()
                .unwrap()
                .iter()
                .all(|(k, v)| &s["labels"][k] == v)
                && (labels.get("http_route").is_some() || s["labels"].get("http_route").is_none())
        })
        .collect();
    assert_eq!(matching.len(), 1, "{name} {labels}: {matching:?}");
    matching[0]["value"].as_f64().unwrap()
}

/// The status of a GET of `path`.
async fn status(client: &reqwest::Client, server: &Server, path: &str) -> u16 {
    let response = client.get(server.url(path)).send().await.unwrap();
    response.status().as_u16()
}

/// The status of a POST of a crud with `message`.
async fn create(client: &reqwest::Client, server: &Server, message: &str) -> u16 {
    let response = client
        .post(server.url("/api/activities"))
        .json(&json!({"message": message, "ttl": "1-day"}))
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

async fn scrape(
    client: &reqwest::Client,
    server: &Server,
    accept: Option<&str>,
) -> (String, String) {
    let mut request = client.get(server.url("/metrics"));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (content_type, response.text().await.unwrap())
}

#[tokio::test]
async fn metrics_count_requests_as_sent_and_link_to_their_traces() {
    let receiver = OtlpReceiver::http(Behavior::Accept).await;
    let endpoint = receiver.endpoint();
    let server = Server::start(&[
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]);
    let client = reqwest::Client::new();
    for _ in 0..5 {
        assert_eq!(status(&client, &server, "/api/activities/home").await, 200);
    }
    assert_eq!(create(&client, &server, "counted once").await, 200);
    // Scrapes between requests must not count themselves.
    let (_, before) = scrape(&client, &server, None).await;
    let inserts = |samples: &[Value]| {
        sample(
            samples,
            "db_client_operation_duration_seconds_count",
            json!({"db_operation_name": "INSERT", "db_collection_name": "activities"}),
        )
    };
    let seeded = inserts(&parse("text", &before));
    assert!(seeded >= 1.0, "the seed's inserts are timed");
    for _ in 0..3 {
        assert_eq!(status(&client, &server, "/api/activities/@worf").await, 200);
    }
    for _ in 0..2 {
        assert_eq!(create(&client, &server, "").await, 422);
    }
    assert_eq!(status(&client, &server, "/no/such/path").await, 404);

    let (content_type, text) = scrape(&client, &server, None).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let samples = parse("text", &text);
    let count = format!("{DURATION}_count");
    let get = |route: &str, status: &str| json!({"http_request_method": "GET", "http_route": route, "http_response_status_code": status});
    assert_eq!(
        sample(&samples, &count, get("/api/activities/home", "200")),
        5.0
    );
    assert_eq!(
        sample(&samples, &count, get("/api/activities/@{handle}", "200")),
        3.0
    );
    assert_eq!(
        sample(
            &samples,
            &count,
            json!({"http_request_method": "POST", "http_route": "/api/activities", "http_response_status_code": "422"})
        ),
        2.0
    );
    assert_eq!(
        sample(
            &samples,
            &count,
            json!({"http_request_method": "GET", "http_response_status_code": "404"})
        ),
        1.0,
        "a path no route matched has no http_route"
    );
    let total: f64 = samples
        .iter()
        .filter(|s| s["name"] == count.as_str())
        .map(|s| s["value"].as_f64().unwrap())
        .sum();
    assert_eq!(total, 12.0, "scrapes are not counted");
    assert_eq!(sample(&samples, "app_cruds_created_total", json!({})), 1.0);
    assert_eq!(
        sample(
            &samples,
            "app_validation_rejected_total",
            json!({"app_validation_code": "message_blank"})
        ),
        2.0,
        "each refused create counted by its code"
    );
    let inf = sample(
        &samples,
        &format!("{DURATION}_bucket"),
        json!({"http_request_method": "GET", "http_route": "/api/activities/home", "http_response_status_code": "200", "le": "+Inf"}),
    );
    assert_eq!(inf, 5.0);
    assert!(
        samples
            .iter()
            .any(|s| s["name"] == "http_server_active_requests"
                && s["labels"]["http_request_method"] == "GET"),
        "requests in flight, per method"
    );

    let statements = "db_client_operation_duration_seconds_count";
    let selects = sample(
        &samples,
        statements,
        json!({"db_system_name": "sqlite", "db_operation_name": "SELECT", "db_collection_name": "activities"}),
    );
    assert!(selects >= 2.0, "the feeds' queries are timed: {selects}");
    assert_eq!(
        inserts(&samples),
        seeded,
        "refused creates stored nothing, so timed no insert"
    );

    let (content_type, open) = scrape(
        &client,
        &server,
        Some("application/openmetrics-text; version=1.0.0"),
    )
    .await;
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    let samples = parse("openmetrics", &open);
    let exemplars: Vec<&Value> = samples
        .iter()
        .filter_map(|s| s["exemplar"].as_object().map(|_| &s["exemplar"]))
        .collect();
    assert!(
        exemplars.len() >= 4,
        "one per series at least: {exemplars:?}"
    );
    let family = samples.iter().find(|s| s["family"] == DURATION).unwrap();
    assert_eq!(
        (&family["type"], &family["unit"]),
        (&json!("histogram"), &json!("seconds"))
    );
    let wanted: HashSet<String> = exemplars
        .iter()
        .map(|e| e["labels"]["trace_id"].as_str().unwrap().to_owned())
        .collect();
    let spans = receiver
        .wait_for_spans_where(
            |spans| {
                let got: HashSet<&str> = spans.iter().map(|s| s.trace_id.as_str()).collect();
                wanted.iter().all(|t| got.contains(t.as_str()))
            },
            Duration::from_secs(10),
        )
        .await;
    let got: HashSet<String> = spans.into_iter().map(|s| s.trace_id).collect();
    for trace in &wanted {
        assert!(
            got.contains(trace),
            "exemplar {trace} is a trace the OTLP receiver got"
        );
    }
    // The sinks' own counters, as the health check has them (the sink
    // counts an export once its answer is in, just after the receiver's).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let (samples, exported) = loop {
        let (_, text) = scrape(&client, &server, None).await;
        let samples = parse("text", &text);
        let exported = sample(
            &samples,
            "cruddur_telemetry_exported_total",
            json!({"sink": "otlp"}),
        );
        if exported >= 1.0 || tokio::time::Instant::now() > deadline {
            break (samples, exported);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let health = server.health().await;
    assert!(exported >= 1.0, "{exported}");
    assert!(health["sinks"]["otlp"]["exported"].as_f64().unwrap() >= exported);
    assert_eq!(
        sample(
            &samples,
            "cruddur_telemetry_dropped_total",
            json!({"sink": "otlp"})
        ),
        0.0
    );
}

#[tokio::test]
async fn metrics_prometheus_false_turns_the_route_off_and_says_why() {
    let server = Server::start(&[("METRICS_PROMETHEUS", "false")]);
    let client = reqwest::Client::new();
    let response = client.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let health = server.health().await;
    assert_eq!(
        health["sinks"]["prometheus"],
        json!({"enabled": false, "reason": "METRICS_PROMETHEUS=false"})
    );
    assert!(
        server
            .stderr()
            .contains("telemetry: prometheus off (METRICS_PROMETHEUS=false)")
    );
}

/// The request-duration points for `route` and `status` in `export`.
fn durations<'a>(
    export: &'a MetricExport,
    route: Option<&str>,
    status: i64,
) -> Vec<&'a MetricPoint> {
    export
        .points
        .iter()
        .filter(|p| p.name == "http.server.request.duration")
        .filter(|p| p.str_attr("http.route") == route)
        .filter(|p| p.int_attr("http.response.status_code") == Some(status))
        .collect()
}

/// The count of the one duration point for `route` and `status` in the
/// latest export that has one (0 when none has).
fn latest_count(exports: &[MetricExport], route: Option<&str>, status: i64) -> u64 {
    exports
        .iter()
        .rev()
        .find_map(|e| durations(e, route, status).first().map(|p| p.count))
        .unwrap_or(0)
}

const HOME: Option<&str> = Some("/api/activities/home");

#[tokio::test]
async fn otlp_metrics_over_http_are_cumulative_red_per_route_with_honeycombs_headers() {
    let receiver = OtlpReceiver::http(Behavior::Accept).await;
    let endpoint = receiver.endpoint();
    let server = Server::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("HONEYCOMB_API_KEY", HONEYCOMB_KEY),
        ("OTEL_SERVICE_NAME", "cruddur-metrics-test"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "100"),
    ]);
    assert!(server.stderr().contains(&format!(
        "telemetry: otlp-metrics on: {endpoint}/v1/metrics (http/protobuf), headers x-honeycomb-team=…"
    )));
    let client = reqwest::Client::new();
    for _ in 0..3 {
        assert_eq!(status(&client, &server, "/api/activities/home").await, 200);
    }
    assert_eq!(status(&client, &server, "/no/such/path").await, 404);
    assert_eq!(create(&client, &server, "").await, 422);
    let exports = receiver
        .wait_for_metrics(
            |e| latest_count(e, HOME, 200) == 3 && latest_count(e, None, 404) == 1,
            Duration::from_secs(10),
        )
        .await;
    let last = exports
        .iter()
        .rev()
        .find(|e| !durations(e, HOME, 200).is_empty())
        .expect("an export with the home feed's requests");
    assert!(last.decoded);
    assert_eq!(last.headers["content-type"], "application/x-protobuf");
    assert_eq!(last.headers["x-honeycomb-team"], HONEYCOMB_KEY);
    assert_eq!(
        last.headers["x-honeycomb-dataset"], "cruddur-metrics-test",
        "metrics go to a dataset named after the service"
    );
    let home = durations(last, HOME, 200)[0];
    assert_eq!((home.unit.as_str(), home.kind), ("s", "histogram"));
    assert_eq!(home.temporality, TEMPORALITY_CUMULATIVE);
    assert_eq!(home.str_attr("http.request.method"), Some("GET"));
    assert_eq!(home.bucket_counts.iter().sum::<u64>(), 3);
    assert_eq!(home.bounds[0], 0.0001);
    assert_eq!(
        home.resource.get("service.name").and_then(|v| v.as_str()),
        Some("cruddur-metrics-test")
    );
    assert_eq!(
        latest_count(&exports, None, 404),
        1,
        "a path no route matched has no http.route"
    );
    let rejected = last
        .points
        .iter()
        .find(|p| p.name == "app.validation.rejected")
        .expect("validation refusals counted");
    assert_eq!(
        (rejected.kind, rejected.monotonic, rejected.value),
        ("sum", true, 1.0)
    );
    assert_eq!(
        rejected.str_attr("app.validation.code"),
        Some("message_blank")
    );
    assert!(
        last.points
            .iter()
            .any(|p| p.name == "db.client.operation.duration" && p.unit == "s"),
        "the store's statements"
    );
    assert!(
        last.points
            .iter()
            .any(|p| p.name == "http.server.active_requests" && p.kind == "sum" && !p.monotonic)
    );

    // Cumulative: the next exports count from the start.
    assert_eq!(status(&client, &server, "/api/activities/home").await, 200);
    let exports = receiver
        .wait_for_metrics(|e| latest_count(e, HOME, 200) == 4, Duration::from_secs(10))
        .await;
    assert_eq!(latest_count(&exports, HOME, 200), 4);
    let health = server.health().await;
    assert!(
        health["sinks"]["otlp-metrics"]["exported"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert_eq!(health["sinks"]["otlp-metrics"]["failed"], 0);
}

#[tokio::test]
async fn otlp_metrics_over_grpc_in_delta_send_the_last_interval_at_shutdown() {
    let receiver = OtlpReceiver::grpc(Behavior::Accept).await;
    let endpoint = receiver.endpoint();
    let server = Server::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "x-honeycomb-team=hcaik_grpc_key_abcd",
        ),
        ("HONEYCOMB_METRICS_DATASET", "cruddur-metrics"),
        ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta"),
        // Never within the test: only shutdown exports.
        ("OTEL_METRIC_EXPORT_INTERVAL", "3600000"),
    ]);
    let client = reqwest::Client::new();
    for _ in 0..4 {
        assert_eq!(status(&client, &server, "/api/activities/home").await, 200);
    }
    assert!(
        receiver.metric_exports().is_empty(),
        "nothing before the interval"
    );
    let server = server.stop(Duration::from_secs(20)).await;
    assert!(
        server.stderr().contains("telemetry: otlp-metrics flushed"),
        "{}",
        server.stderr()
    );
    let exports = receiver.metric_exports();
    assert_eq!(exports.len(), 1, "one export, at shutdown: {exports:?}");
    let export = &exports[0];
    assert_eq!(export.headers["content-type"], "application/grpc");
    assert_eq!(export.headers["x-honeycomb-dataset"], "cruddur-metrics");
    assert_eq!(export.headers["x-honeycomb-team"], "hcaik_grpc_key_abcd");
    let home = durations(export, HOME, 200);
    assert_eq!(home.len(), 1, "{export:?}");
    assert_eq!((home[0].count, home[0].temporality), (4, TEMPORALITY_DELTA));
}

/// With OTLP metrics failing: once the first failure is announced,
/// requests are still answered, and the health check (answered) counts
/// the failed pushes.
async fn failing_pushes_leave_requests_alone(server: &Server) -> Value {
    let client = reqwest::Client::new();
    assert_eq!(status(&client, server, "/api/activities/home").await, 200);
    server
        .wait_for_stderr("telemetry: otlp-metrics failing:", Duration::from_secs(10))
        .await;
    for _ in 0..20 {
        assert_eq!(status(&client, server, "/api/activities/home").await, 200);
    }
    let health = server.health().await;
    assert!(
        health["sinks"]["otlp-metrics"]["failed"].as_u64().unwrap() >= 1,
        "{health}"
    );
    health
}

#[tokio::test]
async fn a_metrics_receiver_that_fails_costs_requests_nothing_and_is_counted() {
    let receiver = OtlpReceiver::http(Behavior::Status(500)).await;
    let endpoint = receiver.endpoint();
    let server = Server::start(&[
        (
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            format!("{endpoint}/v1/metrics").as_str(),
        ),
        ("OTEL_METRICS_EXPORTER", "otlp"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "100"),
        ("OTEL_METRIC_EXPORT_TIMEOUT", "300"),
    ]);
    assert!(
        server
            .stderr()
            .contains("telemetry: prometheus off (not in OTEL_METRICS_EXPORTER)")
    );
    let health = failing_pushes_leave_requests_alone(&server).await;
    assert!(
        health["sinks"]["otlp-metrics"]["last_error"]
            .as_str()
            .unwrap()
            .contains("500"),
        "{health}"
    );
    // Black-holed at shutdown: the export gives up at the deadline.
    receiver.set_behavior(Behavior::Hang);
    let server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        let started = std::time::Instant::now();
        server.signal("TERM");
        let status = server.wait(Duration::from_secs(15));
        (server, status, started.elapsed())
    })
    .await
    .unwrap();
    let (server, exit, took) = server;
    assert!(took < Duration::from_secs(8), "shutdown took {took:?}");
    assert!(exit.code().is_some(), "{}", server.stderr());
    assert!(
        server.stderr().contains("otlp-metrics NOT flushed in time")
            || server.stderr().contains("otlp-metrics flushed"),
        "{}",
        server.stderr()
    );
}

#[tokio::test]
async fn console_metrics_print_each_interval_on_stdout() {
    let server = Server::start(&[
        ("OTEL_METRICS_EXPORTER", "console,prometheus"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "3600000"),
    ]);
    let client = reqwest::Client::new();
    for _ in 0..2 {
        assert_eq!(status(&client, &server, "/api/activities/home").await, 200);
    }
    assert_eq!(
        scrape(&client, &server, None).await.0,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let server = server.stop(Duration::from_secs(20)).await;
    let stdout = server.stdout();
    assert!(
        stdout.lines().any(
            |line| line.starts_with("metric http.server.request.duration{")
                && line.contains("http.route=/api/activities/home")
                && line.contains("http.response.status_code=200")
                && line.contains(" count=2 ")
        ),
        "{stdout}"
    );
    assert!(
        server
            .stderr()
            .contains("telemetry: console-metrics on: stdout every 1h")
    );
}

/// Checks `record` against the rules of the published EMF specification;
/// answers its one directive.
fn valid_emf(record: &Value) -> &Value {
    let aws = &record["_aws"];
    assert!(
        aws["Timestamp"]
            .as_i64()
            .is_some_and(|t| t > 1_600_000_000_000),
        "{record}"
    );
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .expect("CloudWatchMetrics");
    assert_eq!(directives.len(), 1, "{record}");
    let directive = &directives[0];
    let namespace = directive["Namespace"].as_str().unwrap();
    assert!((1..=255).contains(&namespace.len()));
    for set in directive["Dimensions"].as_array().unwrap() {
        let set = set.as_array().unwrap();
        assert!((1..=30).contains(&set.len()), "at most 30 dimensions a set");
        for name in set {
            let name = name.as_str().unwrap();
            assert!(
                record[name].is_string(),
                "dimension {name} is a string member: {record}"
            );
        }
    }
    let metrics = directive["Metrics"].as_array().unwrap();
    assert!(
        (1..=100).contains(&metrics.len()),
        "at most 100 metrics a directive"
    );
    for metric in metrics {
        let name = metric["Name"].as_str().unwrap();
        assert!((1..=1024).contains(&name.len()));
        let value = &record[name];
        let numbers = value
            .as_array()
            .map(|values| values.iter().all(Value::is_number) && values.len() <= 100)
            .unwrap_or(value.is_number());
        assert!(numbers, "{name} is a number or up to 100 numbers: {value}");
        let unit = metric["Unit"].as_str().unwrap_or("None");
        assert!(["Seconds", "Count", "None"].contains(&unit), "{unit}");
        if let Some(resolution) = metric.get("StorageResolution") {
            assert!(resolution == 1 || resolution == 60);
        }
    }
    directive
}

#[tokio::test]
async fn cloudwatch_emf_records_land_in_the_log_stream_one_per_route_with_a_trace() {
    let moto = support::moto::Moto::start().await;
    let mut env = support::moto::Moto::env(&moto.endpoint());
    env.extend([
        ("CLOUDWATCH_LOG_STREAM", "emf-stream".to_owned()),
        ("CLOUDWATCH_METRICS", "emf".to_owned()),
        ("CLOUDWATCH_METRICS_NAMESPACE", "Cruddur/Test".to_owned()),
        ("OTEL_SERVICE_NAME", "cruddur-emf".to_owned()),
        // Only shutdown exports: one interval holds every request below.
        ("OTEL_METRIC_EXPORT_INTERVAL", "3600000".to_owned()),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start(&env);
    assert!(server.stderr().contains(
        "telemetry: cloudwatch-metrics on: EMF records in the cloudwatch stream, namespace Cruddur/Test"
    ));
    let client = reqwest::Client::new();
    let mut home_traces = HashSet::new();
    for _ in 0..3 {
        let response = client
            .get(server.url("/api/activities/home"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        home_traces.insert(support::server::answered_trace_id(&response));
    }
    for _ in 0..2 {
        assert_eq!(status(&client, &server, "/api/activities/@worf").await, 200);
    }
    assert_eq!(status(&client, &server, "/no/such/path").await, 404);
    let server = server.stop(Duration::from_secs(20)).await;
    assert!(
        server
            .stderr()
            .contains("telemetry: cloudwatch-metrics flushed"),
        "{}",
        server.stderr()
    );
    let messages = support::moto::messages(&moto.client(), "cruddur", "emf-stream").await;
    let records: Vec<Value> = messages
        .iter()
        .map(|(_, m)| serde_json::from_str::<Value>(m).unwrap())
        .filter(|r| r.get("_aws").is_some())
        .collect();
    let by_route = |route: &str| {
        let found: Vec<&Value> = records.iter().filter(|r| r["route"] == route).collect();
        assert_eq!(found.len(), 1, "one record for {route}: {records:?}");
        found[0]
    };
    assert_eq!(records.len(), 3, "{records:?}");
    for record in &records {
        let directive = valid_emf(record);
        assert_eq!(directive["Namespace"], "Cruddur/Test");
        assert_eq!(
            directive["Dimensions"],
            json!([["service", "route"], ["service"]])
        );
        assert_eq!(record["service"], "cruddur-emf");
    }
    let home = by_route("/api/activities/home");
    assert_eq!(home["http.server.request.count"], 3);
    assert_eq!(home["http.server.request.errors"], 0);
    let durations = home["http.server.request.duration"].as_array().unwrap();
    assert_eq!(durations.len(), 3, "one value a request");
    assert!(durations.iter().all(|d| d.as_f64().unwrap() > 0.0));
    let trace = home["trace_id"].as_str().expect("a trace of the interval");
    assert!(
        home_traces.contains(trace),
        "{trace} answered one of {home_traces:?}"
    );
    assert_eq!(
        home["xray_trace_id"].as_str().unwrap().replace('-', "")[1..],
        *trace
    );
    assert_eq!(
        by_route("/api/activities/@{handle}")["http.server.request.count"],
        2
    );
    assert_eq!(by_route("unmatched")["http.server.request.count"], 1);
}

#[test]
fn cloudwatch_emf_without_the_cloudwatch_sink_says_why() {
    let server = Server::start(&[("CLOUDWATCH_METRICS", "emf"), ("CLOUDWATCH_LOGS", "false")]);
    assert!(server.stderr().contains(
        "telemetry: cloudwatch-metrics off (CLOUDWATCH_METRICS=emf writes to the CloudWatch Logs stream, and cloudwatch is off)"
    ));
}

/// What a CloudWatch OTLP stand-in accepted, decoded.
fn metric_exports(endpoint: &SignedEndpoint) -> Vec<MetricExport> {
    use prost::Message;
    endpoint
        .accepted()
        .into_iter()
        .map(|accepted| {
            let request =
                opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest::decode(
                    accepted.body,
                )
                .expect("OTLP protobuf");
            MetricExport {
                headers: accepted.headers,
                points: support::otlp::flatten_metrics(&request),
                decoded: true,
            }
        })
        .collect()
}

/// A stand-in for CloudWatch's OTLP metrics endpoint, checking SigV4 for
/// service `monitoring` with `secret`.
async fn cloudwatch_endpoint(secret: &'static str) -> SignedEndpoint {
    SignedEndpoint::start("monitoring", "/v1/metrics", secret).await
}

fn cloudwatch_otlp_env<'a>(
    endpoint: &'a SignedEndpoint,
    interval: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CLOUDWATCH_METRICS", "otlp"),
        ("CLOUDWATCH_METRICS_ENDPOINT", endpoint.url.as_str()),
        ("CLOUDWATCH_LOGS", "false"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", support::sigv4::ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", "right-secret"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        // For an OTLP destination, never for AWS.
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "x-honeycomb-team=hcaik_never_to_aws",
        ),
        ("OTEL_METRIC_EXPORT_INTERVAL", interval),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudwatch_otlp_metrics_are_signed_with_sigv4_and_carry_no_otlp_headers() {
    let endpoint = cloudwatch_endpoint("right-secret").await;
    let server = Server::start(&cloudwatch_otlp_env(&endpoint, "3600000"));
    assert!(server.stderr().contains(&format!(
        "telemetry: cloudwatch-metrics on: {} (OTLP, SigV4)",
        endpoint.url
    )));
    let client = reqwest::Client::new();
    for _ in 0..2 {
        assert_eq!(status(&client, &server, "/api/activities/home").await, 200);
    }
    let server = server.stop(Duration::from_secs(20)).await;
    assert_eq!(endpoint.refused(), 0, "{}", server.stderr());
    let accepted = metric_exports(&endpoint);
    assert_eq!(accepted.len(), 1, "the last interval, at shutdown");
    assert!(!accepted[0].headers.contains_key("x-honeycomb-team"));
    let home = durations(&accepted[0], HOME, 200);
    assert_eq!(home.len(), 1);
    assert_eq!(home[0].count, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudwatch_otlp_metrics_refused_for_a_bad_signature_are_counted() {
    let endpoint = cloudwatch_endpoint("another-secret").await;
    let server = Server::start(&cloudwatch_otlp_env(&endpoint, "100"));
    let client = reqwest::Client::new();
    assert_eq!(status(&client, &server, "/api/activities/home").await, 200);
    server
        .wait_for_stderr(
            "telemetry: cloudwatch-metrics failing:",
            Duration::from_secs(10),
        )
        .await;
    assert!(endpoint.refused() >= 1);
    let health = server.health().await;
    assert!(
        health["sinks"]["cloudwatch-metrics"]["failed"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert!(
        !server.stderr().contains("right-secret"),
        "the secret never shows: {}",
        server.stderr()
    );
}

#[test]
fn cloudwatch_otlp_without_a_region_says_why() {
    let server = Server::start(&[
        ("CLOUDWATCH_METRICS", "otlp"),
        ("AWS_REGION", ""),
        ("AWS_DEFAULT_REGION", ""),
    ]);
    assert!(server.stderr().contains(
        "telemetry: cloudwatch-metrics off (CLOUDWATCH_METRICS=otlp needs a region: set AWS_REGION, or CLOUDWATCH_METRICS_ENDPOINT)"
    ));
}

#[tokio::test]
async fn a_stuck_sinks_queue_depth_is_in_the_metrics_and_the_health_check() {
    let receiver = OtlpReceiver::http(Behavior::Hang).await;
    let endpoint = receiver.endpoint();
    let server = Server::start(&[
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_METRICS_EXPORTER", "prometheus"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1"),
        ("OTEL_BSP_SCHEDULE_DELAY", "10"),
        ("SHUTDOWN_TIMEOUT", "1s"),
    ]);
    let client = reqwest::Client::new();
    for _ in 0..5 {
        assert_eq!(status(&client, &server, "/api/activities/home").await, 200);
    }
    // The worker holds one span in a request that never answers; the
    // others wait in the queue.
    receiver.wait_for_requests(1, Duration::from_secs(10)).await;
    let health = server.health().await;
    let queued = health["sinks"]["otlp"]["queued"].as_u64().unwrap();
    assert!(queued >= 4, "{health}");
    let (_, text) = scrape(&client, &server, None).await;
    let gauge = sample(
        &parse("text", &text),
        "cruddur_telemetry_queued",
        json!({"sink": "otlp"}),
    );
    assert!(gauge >= queued as f64, "{gauge} < {queued}");
    assert!(
        health["sinks"]["prometheus"].get("queued").is_none(),
        "a sink without a queue reports none"
    );
}

#[tokio::test]
async fn a_refused_metrics_destination_is_counted_and_shutdown_keeps_its_deadline() {
    // Nothing listens there: every push is refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/metrics", closed.local_addr().unwrap());
    drop(closed);
    let server = Server::start(&[
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", url.as_str()),
        ("OTEL_METRICS_EXPORTER", "otlp,prometheus"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "100"),
        ("SHUTDOWN_TIMEOUT", "2s"),
    ]);
    failing_pushes_leave_requests_alone(&server).await;
    let started = std::time::Instant::now();
    let server = server.stop(Duration::from_secs(10)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        server
            .stderr()
            .contains("telemetry: not delivered: otlp-metrics")
    );
}

#[tokio::test]
async fn many_handles_are_one_series_per_route() {
    let server = Server::start(&[]);
    let client = reqwest::Client::new();
    for n in 0..200 {
        let path = format!("/api/activities/@someone{n}");
        let _ = status(&client, &server, &path).await;
    }
    let (_, text) = scrape(&client, &server, None).await;
    let samples = parse("text", &text);
    let counts: Vec<&Value> = samples
        .iter()
        .filter(|s| s["name"] == format!("{DURATION}_count").as_str())
        .filter(|s| s["labels"]["http_route"] == "/api/activities/@{handle}")
        .collect();
    assert_eq!(counts.len(), 1, "one series for 200 handles: {counts:?}");
    assert_eq!(counts[0]["value"], 200.0);
}

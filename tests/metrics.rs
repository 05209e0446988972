//! `/metrics` after known traffic, read by the official Prometheus Python
//! client's parsers (`tests/support/prometheus_parse.py`; `./scripts/test`
//! installs `prometheus_client` in `.venv` and sets `PROMETHEUS_PYTHON`):
//! counts per route and status as sent, scrapes never counted, creates
//! and validation refusals counted, the store's statements timed, and exemplar trace ids that the OTLP receiver
//! got.

mod support;

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::otlp::{Behavior, OtlpReceiver};
use support::server::Server;

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

//! The real binary reporting to a local Rollbar item API that validates
//! every item: what a person sees in Rollbar, what must never reach it, and
//! how reporting behaves when Rollbar is slow, refusing or gone.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::rollbar::{Answer, RollbarReceiver};
use support::server::{Server, answered_trace_id};

const TOKEN: &str = "test-rollbar-token-0123456789";

fn rollbar_env(receiver: &RollbarReceiver) -> Vec<(&'static str, String)> {
    vec![
        ("ROLLBAR_ACCESS_TOKEN", TOKEN.into()),
        ("ROLLBAR_ENDPOINT", receiver.endpoint()),
        ("ROLLBAR_ENVIRONMENT", "test".into()),
    ]
}

fn start(env: &[(&'static str, String)]) -> Server {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start(&pairs)
}

/// A server whose database loses its activities table once it is up, so
/// that every feed and create answers 500.
fn start_broken(env: &mut Vec<(&'static str, String)>, dir: &Path) -> Server {
    let db = dir.join("cruddur.db");
    env.push(("DATABASE_PATH", db.to_str().unwrap().into()));
    let server = start(env);
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("ALTER TABLE activities RENAME TO gone")
        .unwrap();
    server
}

/// Polls the health check until `done` holds for the rollbar sink: a
/// timeout inside the server has no signal a test could await.
async fn wait_for_sink(server: &Server, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let sink = server.health().await["sinks"]["rollbar"].clone();
        if done(&sink) || Instant::now() >= deadline {
            return sink;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollbar_test_reports_a_warning_on_the_request_trace() {
    let receiver = RollbarReceiver::start(Answer::Accept).await;
    let mut env = rollbar_env(&receiver);
    env.push(("ROLLBAR_CODE_VERSION", "v-test-1".into()));
    let server = start(&env);
    let response = reqwest::get(server.url("/rollbar/test")).await.unwrap();
    assert_eq!(response.status(), 200);
    let trace = answered_trace_id(&response);
    assert_eq!(response.text().await.unwrap(), "Hello World!");
    receiver.wait_for_requests(1, Duration::from_secs(10)).await;
    // The receiver counts a request before it answers; the sink counts the answer.
    let sink = wait_for_sink(&server, Duration::from_secs(10), |sink| {
        sink["exported"] == 1
    })
    .await;
    let server = server.stop(Duration::from_secs(10)).await;

    assert!(receiver.problems().is_empty(), "{:?}", receiver.problems());
    let items = receiver.items();
    assert_eq!(items.len(), 1, "{items:?}");
    let item = &items[0];
    assert_eq!(item["level"], "warning");
    assert_eq!(item["body"]["message"]["body"], "Hello World!");
    assert_eq!(item["environment"], "test");
    assert_eq!(item["language"], "rust");
    assert_eq!(item["context"], "/rollbar/test");
    assert_eq!(item["custom"]["trace_id"], trace.as_str());
    assert_eq!(
        item["custom"]["xray_trace_id"],
        format!("1-{}-{}", &trace[..8], &trace[8..])
    );
    assert_eq!(item["custom"]["span_id"].as_str().unwrap().len(), 16);
    assert_eq!(item["server"]["code_version"], "v-test-1");
    assert_eq!(item["notifier"]["name"], "cruddur-backend");
    assert_eq!(item["request"]["method"], "GET");
    assert_eq!(
        item["request"]["url"],
        format!("http://{}/rollbar/test", server.addr)
    );
    assert_eq!(item["request"]["user_ip"], "127.0.0.1");
    assert_eq!(receiver.tokens(), vec![TOKEN.to_owned()]);

    assert_eq!(sink["enabled"], true, "{sink}");
    assert_eq!(sink["exported"], 1, "{sink}");
    assert_eq!(sink["destination"], receiver.endpoint());
    let stderr = server.stderr();
    assert!(
        stderr.contains(&format!("telemetry: rollbar on: {}", receiver.endpoint())),
        "{stderr}"
    );
    assert!(stderr.contains("token …6789"), "{stderr}");
    assert!(!stderr.contains(TOKEN), "the token is never printed whole");
    assert!(stderr.contains("telemetry: rollbar flushed"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_reporting_is_off_and_the_test_route_still_answers() {
    let server = Server::start(&[]);
    let response = reqwest::get(server.url("/rollbar/test")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "Hello World!");
    let sink = server.health().await["sinks"]["rollbar"].clone();
    assert_eq!(
        sink,
        json!({"enabled": false, "reason": "ROLLBAR_ACCESS_TOKEN unset"})
    );
    let server = server.stop(Duration::from_secs(10)).await;
    assert!(
        server
            .stderr()
            .contains("telemetry: rollbar off (ROLLBAR_ACCESS_TOKEN unset)"),
        "{}",
        server.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_request_is_one_scrubbed_error_item_and_4xx_are_none() {
    let receiver = RollbarReceiver::start(Answer::Accept).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = rollbar_env(&receiver);
    // Console logs on, so the canary check covers them too.
    env.push(("RUST_LOG", "debug".into()));
    env.push(("LOG_FORMAT", "json".into()));
    env.push(("OTEL_TRACES_EXPORTER", "console".into()));
    let server = start_broken(&mut env, dir.path());
    let canary = format!("canary-{}", uuid::Uuid::new_v4().simple());
    let client = reqwest::Client::new();
    let failed = client
        .post(server.url(&format!("/api/activities?token={canary}&lang=en")))
        .header("authorization", format!("Bearer {canary}"))
        .header("cookie", format!("session={canary}"))
        .header("x-api-key", canary.as_str())
        .json(&json!({"message": "hello", "ttl": "1-day", "password": canary}))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 500);
    let trace = answered_trace_id(&failed);
    let answer = failed.text().await.unwrap();
    assert!(!answer.contains("activities"), "no internals: {answer}");

    let not_found = client
        .get(server.url("/api/activities/@nobody"))
        .send()
        .await
        .unwrap();
    assert_eq!(not_found.status(), 404);
    let invalid = client
        .post(server.url("/api/activities"))
        .json(&json!({"message": "", "ttl": "1-day"}))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), 422);
    receiver.wait_for_requests(1, Duration::from_secs(10)).await;
    let server = server.stop(Duration::from_secs(10)).await;

    assert!(receiver.problems().is_empty(), "{:?}", receiver.problems());
    let items = receiver.items();
    assert_eq!(
        items.len(),
        1,
        "one item for the 500 despite its error log, none for 4xx: {items:#?}"
    );
    let item = &items[0];
    assert_eq!(item["level"], "error");
    assert_eq!(item["context"], "/api/activities");
    assert_eq!(item["custom"]["trace_id"], trace.as_str());
    assert!(
        item["body"]["message"]["body"]
            .as_str()
            .unwrap()
            .contains("activities"),
        "the cause reaches Rollbar: {item}"
    );
    let request = &item["request"];
    assert_eq!(request["method"], "POST");
    assert_eq!(request["headers"]["authorization"], "********");
    assert_eq!(request["headers"]["cookie"], "********");
    assert_eq!(request["headers"]["x-api-key"], "********");
    assert_eq!(request["query_string"], "token=********&lang=en");
    assert_eq!(request["GET"]["lang"], "en");
    let body: Value = serde_json::from_str(request["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["message"], "hello");
    assert_eq!(body["password"], "********");

    assert!(!receiver.raw().contains(&canary), "{}", receiver.raw());
    assert!(
        !server.stdout().contains(&canary),
        "stdout leaks the canary"
    );
    assert!(
        !server.stderr().contains(&canary),
        "stderr leaks the canary"
    );
    assert!(
        server.stdout().contains("request failed"),
        "the error was logged too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_failures_stays_under_the_rate_limit_as_one_fingerprint() {
    let receiver = RollbarReceiver::start(Answer::Accept).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = rollbar_env(&receiver);
    env.push(("ROLLBAR_MAX_ITEMS_PER_MINUTE", "20".into()));
    let server = start_broken(&mut env, dir.path());
    let client = reqwest::Client::new();
    let url = server.url("/api/activities/home");
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..16 {
        let client = client.clone();
        let url = url.clone();
        workers.push(tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            for _ in 0..125 {
                let sent = Instant::now();
                let status = client.get(&url).send().await.unwrap().status();
                slowest = slowest.max(sent.elapsed());
                assert_eq!(status, 500);
            }
            slowest
        }));
    }
    let mut slowest = Duration::ZERO;
    for worker in workers {
        slowest = slowest.max(worker.await.unwrap());
    }
    let storm = started.elapsed();
    assert!(
        slowest < Duration::from_secs(1),
        "requests never wait on reporting (slowest {slowest:?})"
    );
    let sink = server.health().await["sinks"]["rollbar"].clone();
    server.stop(Duration::from_secs(10)).await;

    assert!(receiver.problems().is_empty(), "{:?}", receiver.problems());
    let items = receiver.items();
    // 20 at once, then one every 3 s.
    let allowed = 20 + (storm.as_secs() / 3 + 1) as usize;
    assert!(
        !items.is_empty() && items.len() <= allowed,
        "{} items in {storm:?}",
        items.len()
    );
    let fingerprints: BTreeSet<&str> = items
        .iter()
        .map(|i| i["fingerprint"].as_str().unwrap())
        .collect();
    assert_eq!(fingerprints.len(), 1, "{fingerprints:?}");
    assert!(
        sink["dropped"].as_u64().unwrap() >= 2000 - allowed as u64,
        "{sink}"
    );
}

/// Rollbar failing or silent costs requests nothing, failures are counted,
/// retries are bounded, and shutdown keeps its deadline.
async fn check_a_broken_rollbar(answer: Answer, expect_error: &str, max_requests: usize) {
    let receiver = RollbarReceiver::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = rollbar_env(&receiver);
    env.push(("ROLLBAR_TIMEOUT", "300ms".into()));
    env.push(("SHUTDOWN_TIMEOUT", "2s".into()));
    let server = start_broken(&mut env, dir.path());
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let sent = Instant::now();
        let response = client
            .get(server.url("/api/activities/home"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
        assert!(
            sent.elapsed() < Duration::from_secs(1),
            "{:?}",
            sent.elapsed()
        );
    }
    receiver.wait_for_requests(1, Duration::from_secs(10)).await;
    let sink = wait_for_sink(&server, Duration::from_secs(10), |sink| {
        sink["failed"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    assert!(
        sink["last_error"].as_str().unwrap().contains(expect_error),
        "{sink}"
    );
    assert!(sink["last_success"].is_null(), "{sink}");
    let stopping = Instant::now();
    let server = server.stop(Duration::from_secs(10)).await;
    assert!(
        stopping.elapsed() < Duration::from_secs(4),
        "shutdown kept its deadline: {:?}",
        stopping.elapsed()
    );
    assert!(
        receiver.requests() <= max_requests,
        "bounded retries: {} requests",
        receiver.requests()
    );
    assert!(
        server.stderr().contains("telemetry: rollbar"),
        "{}",
        server.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollbar_answering_500_is_retried_a_bounded_number_of_times() {
    // Three items, three attempts each.
    check_a_broken_rollbar(Answer::Status(500), "500", 9).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollbar_answering_429_pauses_reporting_until_its_reset() {
    // The first 429 pauses everything for a minute: no more requests.
    check_a_broken_rollbar(Answer::RateLimited { reset_in: 60 }, "429", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollbar_never_answering_times_out() {
    check_a_broken_rollbar(Answer::Hang, "timed out", 9).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_is_logged_once_and_reporting_stops() {
    let receiver = RollbarReceiver::start(Answer::Status(401)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = rollbar_env(&receiver);
    let server = start_broken(&mut env, dir.path());
    let client = reqwest::Client::new();
    let url = server.url("/api/activities/home");
    assert_eq!(client.get(&url).send().await.unwrap().status(), 500);
    receiver.wait_for_requests(1, Duration::from_secs(10)).await;
    wait_for_sink(&server, Duration::from_secs(10), |sink| {
        sink["failed"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    for _ in 0..5 {
        assert_eq!(client.get(&url).send().await.unwrap().status(), 500);
    }
    let sink = server.health().await["sinks"]["rollbar"].clone();
    let server = server.stop(Duration::from_secs(10)).await;
    assert_eq!(receiver.requests(), 1, "no retry, no more items");
    assert!(
        sink["last_error"].as_str().unwrap().contains("401"),
        "{sink}"
    );
    assert_eq!(sink["dropped"], 5, "{sink}");
    let stderr = server.stderr();
    let failing: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("telemetry: rollbar failing: "))
        .collect();
    assert_eq!(failing.len(), 1, "{stderr}");
    assert!(
        failing[0].contains("access token ROLLBAR_ACCESS_TOKEN (…")
            && failing[0].contains("rejected (use a project access token"),
        "{}",
        failing[0]
    );
    assert!(!stderr.contains(TOKEN));
}

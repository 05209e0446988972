//! The panic path and log events, in process: there is no panicking route
//! in the product, so this test wraps routes of its own with the product's
//! whole middleware stack (`app::with_middleware`) and the real telemetry
//! (`telemetry::init`, which installs the subscriber, the reporter and the
//! panic hook for this test binary alone), reporting to a local receiver.

mod support;

use std::time::Duration;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cruddur_backend::app::with_middleware;
use cruddur_backend::config::Config;
use cruddur_backend::error::ApiError;
use cruddur_backend::telemetry;
use serde_json::Value;
use support::rollbar::{Answer, RollbarReceiver};

async fn boom() -> &'static str {
    panic!("boom in the handler")
}

async fn logs_and_fails() -> Response {
    tracing::error!(password = "canary-1", "the handler logged its failure");
    ApiError::Internal("the database is gone".into()).into_response()
}

async fn logs_and_succeeds() -> &'static str {
    tracing::error!(handle = "worf", api_token = "canary-2", "odd, but handled");
    tracing::info!("below the threshold");
    "ok"
}

fn find<'a>(items: &'a [Value], pointer: &str, text: &str) -> &'a Value {
    items
        .iter()
        .find(|item| item.pointer(pointer).and_then(Value::as_str) == Some(text))
        .unwrap_or_else(|| panic!("no item with {pointer} = {text}: {items:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_and_error_events_are_reported_once_each() {
    let receiver = RollbarReceiver::start(Answer::Accept).await;
    let endpoint = receiver.endpoint();
    let config = Config::try_parse_from([
        "cruddur-backend",
        "--log-filter",
        "off",
        "--traces-exporter",
        "none",
        // Off without asking the AWS chain, which would look for instance metadata.
        "--cloudwatch-log-level",
        "off",
        "--rollbar-access-token",
        "in-process-token-0123",
        "--rollbar-endpoint",
        endpoint.as_str(),
    ])
    .expect("a valid config");
    let telemetry = telemetry::init(&config).expect("telemetry starts");
    let routes = Router::new()
        .route("/boom", get(boom))
        .route("/logs-and-fails", get(logs_and_fails))
        .route("/logs-and-succeeds", get(logs_and_succeeds));
    let router = with_middleware(routes, &config, &telemetry);
    let addr = support::app::serve(router).await;

    let panicked = reqwest::get(format!("http://{addr}/boom")).await.unwrap();
    assert_eq!(panicked.status(), 500);
    let answer: Value = panicked.json().await.unwrap();
    assert_eq!(answer["error"], "internal_error");
    assert!(
        !answer.to_string().contains("boom"),
        "no internals: {answer}"
    );
    let failed = reqwest::get(format!("http://{addr}/logs-and-fails"))
        .await
        .unwrap();
    assert_eq!(failed.status(), 500);
    let handled = reqwest::get(format!("http://{addr}/logs-and-succeeds"))
        .await
        .unwrap();
    assert_eq!(handled.status(), 200);
    tracing::error!("outside any request");

    let flushed =
        tokio::task::spawn_blocking(move || telemetry.guard.shutdown(Duration::from_secs(10)))
            .await
            .unwrap();
    assert!(flushed);
    assert!(receiver.problems().is_empty(), "{:?}", receiver.problems());
    let items = receiver.items();
    assert_eq!(items.len(), 4, "one per failure, no duplicates: {items:#?}");
    assert!(!receiver.raw().contains("canary"), "{}", receiver.raw());

    let panic = find(
        &items,
        "/body/trace/exception/message",
        "boom in the handler",
    );
    assert_eq!(panic["level"], "critical");
    assert_eq!(panic["body"]["trace"]["exception"]["class"], "panic");
    assert_eq!(panic["context"], "/boom");
    assert_eq!(panic["request"]["method"], "GET");
    assert!(panic["custom"]["trace_id"].is_string(), "{panic}");
    let frames = panic["body"]["trace"]["frames"].as_array().unwrap();
    let newest = frames.last().expect("frames");
    assert!(
        newest["method"].as_str().unwrap().contains("boom"),
        "the newest frame is the handler: {newest}"
    );
    assert!(
        newest["filename"]
            .as_str()
            .unwrap()
            .ends_with("rollbar_panic.rs"),
        "{newest}"
    );

    let failure = find(&items, "/context", "/logs-and-fails");
    assert_eq!(failure["level"], "error");
    assert_eq!(failure["body"]["message"]["body"], "the database is gone");

    let event = find(&items, "/context", "/logs-and-succeeds");
    assert_eq!(event["level"], "error");
    assert_eq!(event["body"]["message"]["body"], "odd, but handled");
    assert_eq!(event["body"]["message"]["handle"], "worf");
    assert_eq!(event["body"]["message"]["api_token"], "********");
    assert_eq!(event["request"]["method"], "GET");
    assert_eq!(
        event["custom"]["trace_id"].as_str().unwrap().len(),
        32,
        "{event}"
    );

    let outside = find(&items, "/body/message/body", "outside any request");
    assert!(outside.get("request").is_none(), "{outside}");
}

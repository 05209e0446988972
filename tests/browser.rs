//! The frontend stub in headless Chromium against the real binary: the home
//! feed renders, a posted crud shows at the top, a reply appears under it, and
//! the backend's server span for each of those fetches is a child of the
//! browser's fetch span in the browser's trace, as seen at a local OTLP
//! receiver that got the browser's spans through the relay.
//!
//! Needs Node, `frontend-stub/node_modules` and Debian's chromium, so it is
//! ignored by a plain `cargo test`; `scripts/check-shipping` installs them
//! and runs it with `cargo test --test browser -- --ignored`. The screenshot
//! of the home feed is left in `test-artifacts/home-feed.png`.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use support::otlp::{Behavior, OtlpReceiver, ReceivedSpan, SPAN_KIND_SERVER};
use support::server::Server;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn node(stub: &PathBuf, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new("node")
        .current_dir(stub)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "node {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn service(span: &ReceivedSpan) -> &str {
    span.resource_str("service.name").unwrap_or_default()
}

/// A backend server span whose name `matches` and whose parent is a browser
/// span of the same trace, with that browser span.
fn joined(
    spans: &[ReceivedSpan],
    matches: impl Fn(&str) -> bool,
) -> Option<(&ReceivedSpan, &ReceivedSpan)> {
    spans
        .iter()
        .filter(|s| {
            service(s) == "cruddur-backend" && s.kind == SPAN_KIND_SERVER && matches(&s.name)
        })
        .find_map(|server| {
            spans
                .iter()
                .find(|browser| {
                    service(browser) == "cruddur-frontend-stub"
                        && browser.trace_id == server.trace_id
                        && browser.span_id == server.parent_span_id
                })
                .map(|browser| (server, browser))
        })
}

#[tokio::test]
#[ignore = "needs chromium and frontend-stub/node_modules: run by scripts/check-shipping"]
async fn browser_and_backend_spans_form_one_trace() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let stub = root.join("frontend-stub");
    let artifacts = root.join("test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("home-feed.png");
    let _ = std::fs::remove_file(&screenshot);

    let receiver = OtlpReceiver::http(Behavior::Accept).await;
    let frontend_port = free_port().to_string();
    let frontend = format!("http://127.0.0.1:{frontend_port}");
    let endpoint = receiver.endpoint();
    let mut server = Server::start(&[
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ("OTEL_BROWSER_RELAY", "true"),
        ("FRONTEND_URL", &frontend),
    ]);
    let backend = format!("http://{}", server.addr);

    let out = tempfile::tempdir().unwrap();
    let outdir = out.path().to_str().unwrap().to_owned();
    let shot = screenshot.to_str().unwrap().to_owned();
    let stub_dir = stub.clone();
    let result = tokio::task::spawn_blocking(move || {
        node(
            &stub_dir,
            &["build.mjs"],
            &[("BACKEND_URL", &backend), ("OUTDIR", &outdir)],
        );
        node(
            &stub_dir,
            &["test/browser.mjs", &outdir, &frontend_port, &shot],
            &[],
        )
    })
    .await
    .unwrap();
    let seen: serde_json::Value = serde_json::from_str(result.trim().lines().last().unwrap())
        .unwrap_or_else(|err| panic!("browser.mjs printed {result:?}: {err}"));
    assert!(
        std::fs::metadata(&screenshot).unwrap().len() > 1000,
        "a screenshot of the home feed"
    );

    // The crud and its reply were stored, as the page showed them.
    let uuid = seen["uuid"].as_str().expect("the new crud's uuid");
    let shown: serde_json::Value = reqwest::get(server.url(&format!("/api/activities/{uuid}")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["message"], seen["message"]);
    assert_eq!(shown["replies"][0]["message"], seen["reply"]);

    let is_home = |name: &str| name == "GET /api/activities/home";
    let is_create = |name: &str| name == "POST /api/activities";
    let is_reply =
        |name: &str| name.starts_with("POST /api/activities/") && name.ends_with("/reply");
    let deadline = Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let spans = receiver.spans();
        let complete = joined(&spans, is_home).is_some()
            && joined(&spans, is_create).is_some()
            && joined(&spans, is_reply).is_some()
            && spans.iter().any(|s| s.name == "documentLoad");
        if complete || Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let names: Vec<String> = spans
        .iter()
        .map(|s| format!("{}: {} {}", service(s), s.name, s.trace_id))
        .collect();
    for (what, matches) in [
        ("the home feed", &is_home as &dyn Fn(&str) -> bool),
        ("posting the crud", &is_create),
        ("the reply", &is_reply),
    ] {
        let (server_span, browser_span) = joined(&spans, matches).unwrap_or_else(|| {
            panic!("no backend span for {what} under a browser span: {names:#?}")
        });
        assert!(
            browser_span.name.starts_with("HTTP ")
                || browser_span.name.starts_with("POST")
                || browser_span.name.starts_with("GET"),
            "{what}: the parent is the browser's fetch span, not {}",
            browser_span.name
        );
        assert_eq!(server_span.trace_id, browser_span.trace_id, "{what}");
    }
    assert!(
        spans
            .iter()
            .any(|s| s.name == "documentLoad" && service(s) == "cruddur-frontend-stub"),
        "the page load is traced: {names:#?}"
    );

    let status = tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

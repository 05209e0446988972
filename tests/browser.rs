//! The frontend stub in headless Chromium against the real binary: the home
//! feed renders, a posted crud shows at the top, a reply appears under it, and
//! the backend's server span for each of those fetches is a child of the
//! browser's fetch span in the browser's trace, as seen at a local OTLP
//! receiver that got the browser's spans through the relay. And the trace
//! explorer's page, checked against the same receiver's copy of the spans.
//!
//! Needs Node, `frontend-stub/node_modules` and Debian's chromium, so it is
//! ignored by a plain `cargo test`; `scripts/check-shipping` installs them
//! and runs it with `cargo test --test browser -- --ignored`. The screenshot
//! of the home feed is left in `test-artifacts/home-feed.png`, the
//! explorer's in `test-artifacts/explorer/`.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use support::otlp::{
    Behavior, OtlpReceiver, ReceivedSpan, SPAN_KIND_SERVER, nearest_rank, server_durations_by_route,
};
use support::server::{Server, answered_trace_id};

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

/// The JSON line a driver script printed last, its report to the test.
fn printed_json(script: &str, output: &str) -> serde_json::Value {
    let last = output.trim().lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|err| panic!("{script} printed {output:?}: {err}"))
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
    let seen = printed_json("browser.mjs", &result);
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

/// The trace explorer in headless Chromium: known requests are listed, the
/// route filter keeps only its own, one trace's waterfall nests server >
/// service > store spans with the durations the OTLP receiver got for the
/// same spans, and a P90-by-route query shows what the receiver's copy of
/// the spans computes. Screenshots of the list, a waterfall and the
/// heatmap are left in `test-artifacts/explorer/`.
#[tokio::test]
#[ignore = "needs chromium and frontend-stub/node_modules: run by scripts/check-shipping"]
async fn the_explorer_shows_what_the_otlp_receiver_got() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let stub = root.join("frontend-stub");
    let artifacts = root.join("test-artifacts").join("explorer");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).unwrap();

    let receiver = OtlpReceiver::http(Behavior::Accept).await;
    let endpoint = receiver.endpoint();
    let mut server = Server::start(&[
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
    ]);
    let mut home = Vec::new();
    let mut others = Vec::new();
    for round in 0..9 {
        let answer = reqwest::get(server.url("/api/activities/home"))
            .await
            .unwrap();
        home.push(answered_trace_id(&answer));
        let other = match round % 3 {
            0 => "/api/activities/@andrewbrown",
            1 => "/api/activities/notifications",
            _ => continue,
        };
        others.push(answered_trace_id(
            &reqwest::get(server.url(other)).await.unwrap(),
        ));
    }
    let all: Vec<String> = home.iter().chain(&others).cloned().collect();
    // Both have every request before the page is opened.
    let spans = loop_until(Duration::from_secs(20), || {
        let spans = receiver.spans();
        let servers = spans.iter().filter(|s| s.kind == SPAN_KIND_SERVER).count();
        (servers == all.len()).then_some(spans)
    })
    .await
    .expect("the receiver got a server span per request");
    let list_url = server.url("/_explorer/api/traces?limit=1000");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list: serde_json::Value = reqwest::get(&list_url).await.unwrap().json().await.unwrap();
        let ids = support::whole_traces(&list);
        if all.iter().all(|id| ids.contains(&id.as_str())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the explorer never listed {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The first home read missed the cache: it has store spans.
    let opened = home[0].clone();
    let expect = artifacts.join("expect.json");
    std::fs::write(
        &expect,
        serde_json::json!({
            "trace_ids": all,
            "trace_id": opened,
            "route": "/api/activities/home",
        })
        .to_string(),
    )
    .unwrap();
    let backend = format!("http://{}", server.addr);
    let out_dir = artifacts.to_str().unwrap().to_owned();
    let expect_path = expect.to_str().unwrap().to_owned();
    let result = tokio::task::spawn_blocking(move || {
        node(
            &stub,
            &["test/explorer.mjs", &backend, &out_dir, &expect_path],
            &[],
        )
    })
    .await
    .unwrap();
    let seen = printed_json("explorer.mjs", &result);
    assert_eq!(seen["problems"], serde_json::json!([]), "{seen:#}");
    for shot in ["list.png", "waterfall.png", "heatmap.png"] {
        assert!(
            std::fs::metadata(artifacts.join(shot)).unwrap().len() > 1000,
            "a screenshot {shot}"
        );
    }

    // The list shows every request; the route filter only home's.
    let ids = |key: &str| -> Vec<String> {
        seen[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_str().unwrap().to_owned())
            .collect()
    };
    let listed = ids("listed");
    for id in &all {
        assert!(listed.contains(id), "{id} not listed: {listed:?}");
    }
    let mut filtered = ids("filtered");
    filtered.sort();
    let mut expected = home.clone();
    expected.sort();
    assert_eq!(filtered, expected);

    // The waterfall: the receiver's spans of that trace, nested.
    let received: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.trace_id == opened).collect();
    let rows = seen["spans"].as_array().unwrap();
    assert_eq!(rows.len(), received.len(), "{rows:#?}");
    let mut depth_of = std::collections::HashMap::new();
    for row in rows {
        let id = row["span_id"].as_str().unwrap();
        let span = received
            .iter()
            .find(|s| s.span_id == id)
            .unwrap_or_else(|| panic!("{row} is not a span the receiver got"));
        assert_eq!(
            row["parent_id"].as_str().unwrap(),
            span.parent_span_id,
            "{row}"
        );
        assert_eq!(row["name"], span.name.as_str());
        let ms = span.duration_ms();
        let shown = row["duration_ms"].as_f64().unwrap();
        assert!((shown - ms).abs() < 1e-3, "{row}: {shown} vs {ms}");
        depth_of.insert(id.to_owned(), row["depth"].as_u64().unwrap());
    }
    let depth = |kind: &str| -> Vec<u64> {
        rows.iter()
            .filter(|r| r["kind"] == kind)
            .map(|r| r["depth"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(depth("server"), [0]);
    assert!(
        !depth("client").is_empty() && depth("client").iter().all(|d| *d == 2),
        "{rows:#?}"
    );
    let service = rows.iter().find(|r| r["depth"] == 1).unwrap();
    assert_eq!(service["name"], "home_activities");
    let keys = ids("detail_keys");
    assert!(keys.contains(&"app.result_length".to_owned()), "{keys:?}");
    assert!(keys.contains(&"app.cache_hit".to_owned()), "{keys:?}");

    // P90 by route, as the receiver's copy computes it (nearest rank).
    let by_route = server_durations_by_route(&spans);
    let query = seen["query"].as_array().unwrap();
    assert_eq!(query.len(), by_route.len(), "{query:#?}");
    for row in query {
        let route = row["group"].as_str().unwrap();
        let values = &by_route[route];
        let p90 = nearest_rank(values, 90.0);
        assert_eq!(
            row["count"].as_u64().unwrap() as usize,
            values.len(),
            "{row}"
        );
        let shown = row["value"].as_f64().unwrap();
        assert!((shown - p90).abs() < 1e-3, "{route}: {shown} vs {p90}");
    }

    let status = tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// Polls `probe` every 50 ms until it answers something or `within` passes.
async fn loop_until<T>(within: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = probe() {
            return Some(found);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

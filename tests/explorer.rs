//! The trace explorer against the real binary: the traces of known requests
//! are listed, newest first, and filtered; one trace has its spans nested
//! server > service > store; the queries agree with the OTLP receiver's
//! copy of the same spans; looking at the explorer makes no trace; it is
//! off on a non-loopback address unless asked for, and bounded.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::otlp::{
    Behavior, HONEYCOMB_KEY, OtlpReceiver, SPAN_KIND_SERVER, nearest_rank,
    server_durations_by_route,
};
use support::server::{Server, answered_trace_id};

async fn get(server: &Server, path: &str) -> (u16, Value) {
    let response = reqwest::get(server.url(path)).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Requests `path`; answers the trace id the answer names.
async fn traced(server: &Server, path: &str) -> String {
    let response = reqwest::get(server.url(path)).await.unwrap();
    assert!(
        response.status().is_success() || response.status() == 404,
        "{path}"
    );
    answered_trace_id(&response)
}

/// The explorer's list once it holds every one of `ids` whole (its sink's
/// thread keeps spans within 50 ms; see `support::whole_traces`).
async fn listing(server: &Server, query: &str, ids: &[String]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, list) = get(server, &format!("/_explorer/api/traces{query}")).await;
        assert_eq!(status, 200, "{list}");
        let whole = support::whole_traces(&list);
        if ids.iter().all(|id| whole.contains(&id.as_str())) {
            return list;
        }
        assert!(Instant::now() < deadline, "{ids:?} never listed: {list:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn listed(list: &Value) -> Vec<String> {
    list["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn known_requests_are_listed_newest_first_and_filtered() {
    let server = Server::start(&[]);
    let home = traced(&server, "/api/activities/home").await;
    let user = traced(&server, "/api/activities/@andrewbrown").await;
    let missing = traced(&server, "/api/activities/@nobody").await;
    let list = listing(&server, "", &[home.clone(), user.clone(), missing.clone()]).await;
    let ids = listed(&list);
    let at = |id: &String| ids.iter().position(|i| i == id).unwrap();
    assert!(at(&missing) < at(&user) && at(&user) < at(&home), "{ids:?}");
    let first = &list["traces"][at(&home)];
    assert_eq!(first["name"], "GET /api/activities/home");
    assert_eq!(first["route"], "/api/activities/home");
    assert_eq!(first["status_code"], 200);
    assert!(first["span_count"].as_u64().unwrap() >= 3, "{first}");
    assert!(first["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(first["start"].as_str().unwrap().ends_with('Z'));
    assert!(list["notice"].as_str().unwrap().contains("request data"));
    let routes = list["routes"].as_array().unwrap();
    assert!(
        routes.contains(&Value::from("/api/activities/home")),
        "{routes:?}"
    );

    let only = |query: &'static str| {
        let server = &server;
        async move {
            listed(
                &get(server, &format!("/_explorer/api/traces{query}"))
                    .await
                    .1,
            )
        }
    };
    assert_eq!(
        only("?route=/api/activities/home").await,
        std::slice::from_ref(&home)
    );
    assert_eq!(only("?status=4xx").await, std::slice::from_ref(&missing));
    let with_length = only("?attribute=app.result_length").await;
    assert!(with_length.contains(&home) && with_length.contains(&user));
    assert!(!with_length.contains(&missing));
    assert_eq!(
        only("?attribute=app.cache_hit&equals=true").await,
        Vec::<String>::new()
    );
    assert_eq!(only("?min_duration_ms=100000").await, Vec::<String>::new());
    // A value alone: any attribute of any span.
    assert_eq!(
        only("?equals=/api/activities/@andrewbrown").await,
        std::slice::from_ref(&user)
    );
    assert_eq!(only("?limit=1").await, [missing]);
}

#[tokio::test]
async fn a_trace_is_its_spans_nested_server_service_store_and_makes_no_trace_of_its_own() {
    let server = Server::start(&[]);
    let id = traced(&server, "/api/activities/home").await;
    listing(&server, "", std::slice::from_ref(&id)).await;
    let (status, trace) = get(&server, &format!("/_explorer/api/traces/{id}")).await;
    assert_eq!(status, 200, "{trace}");
    assert_eq!(trace["trace_id"], id.as_str());
    assert_eq!(trace["xray_id"], format!("1-{}-{}", &id[..8], &id[8..]));
    assert_eq!(
        trace["links"],
        serde_json::json!({"honeycomb": null, "xray": null})
    );
    let spans = trace["spans"].as_array().unwrap();
    let by_id: HashMap<&str, &Value> = spans
        .iter()
        .map(|s| (s["span_id"].as_str().unwrap(), s))
        .collect();
    let server_span = spans.iter().find(|s| s["kind"] == "server").unwrap();
    assert_eq!(server_span["parent_span_id"], Value::Null);
    assert_eq!(
        server_span["attributes"]["http.route"],
        "/api/activities/home"
    );
    let service = spans
        .iter()
        .find(|s| s["name"] == "home_activities")
        .unwrap();
    assert_eq!(service["parent_span_id"], server_span["span_id"]);
    assert_eq!(service["attributes"]["app.cache_hit"], false);
    let queries: Vec<&&Value> = by_id.values().filter(|s| s["kind"] == "client").collect();
    assert!(!queries.is_empty(), "{trace:#}");
    for query in &queries {
        assert_eq!(query["parent_span_id"], service["span_id"], "{query}");
        // Inside its parent on the shared time axis.
        let start = query["start_ms"].as_f64().unwrap();
        assert!(start >= service["start_ms"].as_f64().unwrap());
        assert!(
            start + query["duration_ms"].as_f64().unwrap()
                <= service["start_ms"].as_f64().unwrap()
                    + service["duration_ms"].as_f64().unwrap()
                    + 1e-3
        );
    }
    assert_eq!(trace["duration_ms"], server_span["duration_ms"]);

    // Looking made no trace: only the one request is listed, whatever
    // the explorer was asked meanwhile.
    for path in [
        "/_explorer/",
        "/_explorer/explorer.js",
        "/_explorer/api/query",
    ] {
        assert_eq!(reqwest::get(server.url(path)).await.unwrap().status(), 200);
    }
    let after = traced(&server, "/api/activities/notifications").await;
    let list = listing(&server, "", std::slice::from_ref(&after)).await;
    let names: Vec<&str> = list["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .filter(|name| name.contains("_explorer"))
        .collect();
    assert!(names.is_empty(), "{list:#}");
}

#[tokio::test]
async fn a_query_agrees_with_the_otlp_receivers_copy_of_the_same_spans() {
    let receiver = OtlpReceiver::http(Behavior::Accept).await;
    let endpoint = receiver.endpoint();
    // OTLP records every request: the explorer's traces a second, for
    // when it alone needs spans, turns none of them away.
    let server = Server::start(&[
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "20"),
        ("TRACE_EXPLORER_TRACES_PER_SECOND", "1"),
    ]);
    let mut ids = Vec::new();
    for round in 0..12 {
        ids.push(traced(&server, "/api/activities/home").await);
        if round % 3 == 0 {
            ids.push(traced(&server, "/api/activities/@andrewbrown").await);
        }
    }
    let list = listing(&server, "", &ids).await;
    assert_eq!(list["recorded"]["unrecorded_requests"], 0, "{list:#}");
    let received = receiver
        .wait_for_spans_where(
            |spans| {
                ids.iter().all(|id| {
                    spans
                        .iter()
                        .any(|s| &s.trace_id == id && s.kind == SPAN_KIND_SERVER)
                })
            },
            Duration::from_secs(10),
        )
        .await;
    let (status, answer) = get(
        &server,
        "/_explorer/api/query?calc=p90&of=duration_ms&group_by=http.route&kind=server",
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let by_route = server_durations_by_route(&received);
    let groups = answer["groups"].as_array().unwrap();
    assert_eq!(groups.len(), by_route.len(), "{answer:#}");
    for group in groups {
        let route = group["group"].as_str().unwrap();
        let values = &by_route[route];
        let p90 = nearest_rank(values, 90.0);
        assert_eq!(group["count"], values.len(), "{route}");
        let got = group["value"].as_f64().unwrap();
        assert!((got - p90).abs() < 1e-3, "{route}: {got} vs {p90}");
        assert!((group["max"].as_f64().unwrap() - values.last().unwrap()).abs() < 1e-3);
    }
    let series: f64 = answer["series"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            g["values"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|v| !v.is_null())
                .count() as f64
        })
        .sum();
    assert!(series >= 2.0, "{answer:#}");
    let cells: u64 = answer["heatmap"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|c| c.as_u64().unwrap()))
        .sum();
    assert_eq!(
        cells as usize,
        by_route.values().map(Vec::len).sum::<usize>()
    );
}

#[tokio::test]
async fn links_lead_to_the_same_trace_in_honeycomb_and_the_xray_console() {
    let receiver = OtlpReceiver::http(Behavior::Accept).await;
    let endpoint = receiver.endpoint();
    let daemon = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let daemon = daemon.local_addr().unwrap().to_string();
    let server = Server::start(&[
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("HONEYCOMB_API_KEY", HONEYCOMB_KEY),
        ("AWS_XRAY_DAEMON_ADDRESS", &daemon),
        ("AWS_REGION", "eu-west-2"),
    ]);
    let id = traced(&server, "/api/activities/home").await;
    listing(&server, "", std::slice::from_ref(&id)).await;
    let (status, trace) = get(&server, &format!("/_explorer/api/traces/{id}")).await;
    assert_eq!(status, 200, "{trace}");
    let xray_id = format!("1-{}-{}", &id[..8], &id[8..]);
    assert_eq!(
        trace["links"]["xray"],
        format!(
            "https://eu-west-2.console.aws.amazon.com/cloudwatch/home?region=eu-west-2#xray:traces/{xray_id}"
        )
    );
    let honeycomb = trace["links"]["honeycomb"].as_str().unwrap();
    assert!(
        honeycomb.starts_with(&format!(
            "https://ui.honeycomb.io/cruddur-test/environments/test/datasets/cruddur-backend/trace?trace_id={id}&trace_start_ts="
        )),
        "{honeycomb}"
    );
    assert!(!honeycomb.contains(HONEYCOMB_KEY));
}

#[tokio::test]
async fn bad_ids_and_parameters_get_clear_json_errors() {
    let server = Server::start(&[]);
    for (path, status, words) in [
        ("/_explorer/api/traces/xyz", 400, "32 hex digits"),
        (
            "/_explorer/api/traces/0123456789abcdef0123456789abcdeg",
            400,
            "32 hex digits",
        ),
        (
            "/_explorer/api/traces/0123456789abcdef0123456789abcdef",
            404,
            "evicted",
        ),
        ("/_explorer/api/traces?limit=-1", 400, "limit"),
        (
            "/_explorer/api/traces?limit=0",
            400,
            "limit must be 1 to 1000",
        ),
        (
            "/_explorer/api/traces?limit=279026556052885962752",
            400,
            "limit",
        ),
        (
            "/_explorer/api/query?buckets=201",
            400,
            "buckets must be 1 to 200",
        ),
        ("/_explorer/api/traces?status=9xx", 400, "status"),
        (
            "/_explorer/api/traces?min_duration_ms=fast",
            400,
            "min_duration_ms",
        ),
        ("/_explorer/api/query?calc=median", 400, "calc"),
        ("/_explorer/api/query?buckets=many", 400, "buckets"),
        ("/_explorer/api/query?kind=%FF", 400, "kind"),
    ] {
        let (got, body) = get(&server, path).await;
        assert_eq!(got, status, "{path}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(words), "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let (got, answer) = get(&server, "/_explorer/api/query?calc=max&of=app.nothing").await;
    assert_eq!(got, 200, "{answer}");
    assert_eq!(answer["groups"][0]["value"], Value::Null, "{answer}");
    let (got, _) = get(&server, "/_explorer/api/traces?min_duration_ms=NaN").await;
    assert_eq!(got, 200);
    let response = reqwest::Client::new()
        .post(server.url("/_explorer/api/traces"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET,HEAD");
}

#[tokio::test]
async fn the_page_is_served_from_the_binary_with_a_strict_policy() {
    let server = Server::start(&[]);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let bare = client.get(server.url("/_explorer")).send().await.unwrap();
    assert_eq!(bare.status(), 308);
    assert_eq!(bare.headers()["location"], "/_explorer/");
    for (path, kind, words) in [
        ("/_explorer/", "text/html", "explorer.js"),
        ("/_explorer/explorer.js", "text/javascript", "api/traces"),
        ("/_explorer/explorer.css", "text/css", "{"),
    ] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert!(
            headers["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.starts_with("default-src 'self'"), "{policy}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let body = response.text().await.unwrap();
        assert!(body.contains(words), "{path}");
        // SVG's namespace is a name, not a fetch.
        let elsewhere = body.replace("http://www.w3.org/2000/svg", "");
        assert!(
            !elsewhere.contains("http://") && !elsewhere.contains("https://"),
            "{path} fetches nothing from elsewhere"
        );
    }
}

#[tokio::test]
async fn it_is_off_on_a_shared_address_unless_asked_for_and_says_why() {
    let shared = Server::start(&[("BIND_ADDRESS", "0.0.0.0")]);
    let local = format!("http://127.0.0.1:{}", shared.addr.port());
    let page = reqwest::get(format!("{local}/_explorer/")).await.unwrap();
    assert_eq!(page.status(), 404);
    assert!(
        shared.stderr().contains(
            "telemetry: explorer off (BIND_ADDRESS=0.0.0.0 is not loopback: TRACE_EXPLORER=true shows request data there)"
        ),
        "{}",
        shared.stderr()
    );
    let health = shared.health().await;
    assert_eq!(health["sinks"]["explorer"]["enabled"], false, "{health}");

    let asked = Server::start(&[("BIND_ADDRESS", "0.0.0.0"), ("TRACE_EXPLORER", "true")]);
    let local = format!("http://127.0.0.1:{}", asked.addr.port());
    let page = reqwest::get(format!("{local}/_explorer/")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        asked
            .stderr()
            .contains("BIND_ADDRESS=0.0.0.0: anyone who reaches the port sees request data"),
        "{}",
        asked.stderr()
    );

    let refused = Server::start(&[("TRACE_EXPLORER", "false")]);
    assert_eq!(
        reqwest::get(refused.url("/_explorer/"))
            .await
            .unwrap()
            .status(),
        404
    );
    assert!(
        refused
            .stderr()
            .contains("telemetry: explorer off (TRACE_EXPLORER=false)")
    );

    let on = Server::start(&[]);
    assert!(
        on.stderr()
            .contains("telemetry: trace explorer on at /_explorer/")
    );
    let health = on.health().await;
    assert_eq!(health["sinks"]["explorer"]["enabled"], true, "{health}");
}

#[tokio::test]
async fn what_it_keeps_is_bounded_and_the_oldest_traces_leave_whole() {
    let server = Server::start(&[("TRACE_EXPLORER_MAX_SPANS", "10")]);
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(traced(&server, "/api/activities/home").await);
    }
    let last = ids.last().unwrap().clone();
    let list = listing(&server, "", std::slice::from_ref(&last)).await;
    let buffered = &list["buffered"];
    assert!(buffered["spans"].as_u64().unwrap() <= 10, "{list:#}");
    assert_eq!(buffered["max_spans"], 10);
    assert!(
        buffered["evicted_traces"].as_u64().unwrap() >= 1,
        "{list:#}"
    );
    // What is listed is whole: each trace has its server span as root.
    for trace in list["traces"].as_array().unwrap() {
        assert_eq!(trace["name"], "GET /api/activities/home", "{trace}");
    }
    let (status, _) = get(&server, &format!("/_explorer/api/traces/{}", ids[0])).await;
    assert_eq!(status, 404);
}

/// Requests `path` (a create when `body` is given); answers the trace id
/// the answer names, `None` when it names none (the request made no span).
async fn maybe_traced(server: &Server, path: &str, body: Option<Value>) -> Option<String> {
    let client = reqwest::Client::new();
    let request = match body {
        Some(body) => client.post(server.url(path)).json(&body),
        None => client.get(server.url(path)),
    };
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response
        .headers()
        .contains_key("x-amzn-trace-id")
        .then(|| answered_trace_id(&response))
}

#[tokio::test]
async fn alone_it_records_its_requests_a_second_and_the_rest_make_no_span() {
    let server = Server::start(&[("TRACE_EXPLORER_TRACES_PER_SECOND", "3")]);
    let create = || Some(serde_json::json!({"message": "gated", "ttl": "1-hour"}));
    let began = Instant::now();
    let began_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0;
    let (mut kept, mut reads_away, mut creates_away) = (Vec::new(), 0, 0);
    // Reads make their store spans on the request's thread, creates on the
    // writer's: neither may leave a span behind when turned away.
    while reads_away < 4 || creates_away < 4 {
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "never turned away"
        );
        match maybe_traced(&server, "/api/activities/home", None).await {
            Some(id) => kept.push(id),
            None => reads_away += 1,
        }
        match maybe_traced(&server, "/api/activities", create()).await {
            Some(id) => kept.push(id),
            None => creates_away += 1,
        }
    }
    let seconds = began.elapsed().as_secs() + 1;
    assert!(kept.len() as u64 <= 3 * (seconds + 1), "{kept:?}");
    // Once a new second admits a request, every span of the requests
    // before it is queued ahead of its own.
    let last = loop {
        if let Some(id) = maybe_traced(&server, "/api/activities/home", None).await {
            break id;
        }
        reads_away += 1;
    };
    kept.push(last.clone());
    let list = listing(&server, "", std::slice::from_ref(&last)).await;
    // Every trace listed since the requests began is a whole request kept
    // (or a readiness check): no turned-away request left spans that would
    // list as a trace of their own. Before them, the start-up's.
    for trace in list["traces"].as_array().unwrap() {
        if trace["start_unix_ms"].as_f64().unwrap() < began_unix_ms {
            continue;
        }
        let id = trace["trace_id"].as_str().unwrap();
        assert!(
            !trace["status_code"].is_null(),
            "a span with no request: {list:#}"
        );
        assert!(
            kept.iter().any(|k| k == id) || trace["route"] == "/api/health-check",
            "{trace}"
        );
    }
    let away = list["recorded"]["unrecorded_requests"].as_u64().unwrap();
    assert!(away >= reads_away + creates_away, "{list:#}");
    assert_eq!(list["recorded"]["traces_per_second"], 3);
    // A kept create has its store spans, made on the writer's thread.
    let create = list["traces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["route"] == "/api/activities")
        .expect("a create kept")["trace_id"]
        .as_str()
        .unwrap();
    let (_, trace) = get(&server, &format!("/_explorer/api/traces/{create}")).await;
    let spans = trace["spans"].as_array().unwrap();
    assert!(spans.iter().any(|s| s["kind"] == "client"), "{trace:#}");
}

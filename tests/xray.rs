//! The real binary sending segments to a fake X-Ray daemon over UDP: every
//! document validates against AWS's published schema, and X-Ray shows the
//! same trace OTLP carries.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use support::otlp::{Behavior, OtlpReceiver, SPAN_KIND_SERVER};
use support::server::Server;
use support::sigv4::SignedEndpoint;
use support::xray::{Datagram, XrayDaemon, all_parts};

const SCHEMA: &str = include_str!("fixtures/xray-segmentdocument-schema-v1.0.0.json");

/// Rules that keep everything, or nothing, for X-Ray.
fn rules_file(dir: &tempfile::TempDir, rate: f64) -> String {
    let path = dir.path().join("xray.json");
    let rule = serde_json::json!({"SamplingRule": {
        "RuleName": "Cruddur", "ResourceARN": "*", "Priority": 9000, "FixedRate": rate,
        "ReservoirSize": 0, "ServiceName": "*", "ServiceType": "*", "Host": "*",
        "HTTPMethod": "*", "URLPath": "*", "Version": 1
    }});
    std::fs::write(&path, rule.to_string()).unwrap();
    path.to_str().unwrap().to_owned()
}

fn start(daemon: &XrayDaemon, otlp: &OtlpReceiver, rules: &str, extra: &[(&str, &str)]) -> Server {
    let daemon_address = daemon.addr.to_string();
    let endpoint = otlp.endpoint();
    let mut env = vec![
        ("AWS_XRAY_DAEMON_ADDRESS", daemon_address.as_str()),
        ("XRAY_SAMPLING_RULES", rules),
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_SERVICE_NAME", "backend-flask"),
    ];
    env.extend_from_slice(extra);
    Server::start(&env)
}

fn xray_header(response: &reqwest::Response) -> String {
    response.headers()["x-amzn-trace-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

fn root_of(header: &str) -> String {
    header
        .split(';')
        .find_map(|part| part.strip_prefix("Root="))
        .unwrap()
        .to_owned()
}

fn segments(datagrams: &[Datagram]) -> Vec<Value> {
    datagrams
        .iter()
        .map(|d| d.document.clone())
        .filter(|d| d.get("type").is_none())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_become_valid_segments_in_the_same_trace_as_otlp() {
    let daemon = XrayDaemon::start().await;
    let otlp = OtlpReceiver::http(Behavior::Accept).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(&daemon, &otlp, &rules_file(&dir, 1.0), &[]);
    let client = reqwest::Client::new();
    let feed = client
        .get(server.url("/api/activities/@worf"))
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 200);
    let feed_header = xray_header(&feed);
    assert!(feed_header.ends_with(";Sampled=1"), "{feed_header}");
    let missing = client
        .get(server.url("/api/activities/@nobody"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let missing_root = root_of(&xray_header(&missing));
    let created = client
        .post(server.url("/api/activities"))
        .json(&serde_json::json!({"message": "to X-Ray", "ttl": "1-hour"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    server.stop(Duration::from_secs(10)).await;

    let schema: Value = serde_json::from_str(SCHEMA).unwrap();
    let validator = jsonschema::draft4::new(&schema).expect("the schema compiles");
    let unsanitized = serde_json::json!({"name": "GET /api/{x}", "id": "0000000000000001",
        "start_time": 1.0, "trace_id": "1-5759e988-bd862e3fe1be46a994272793"});
    assert!(
        !validator.is_valid(&unsanitized),
        "the validator checks names"
    );
    let datagrams = daemon.datagrams();
    assert!(!datagrams.is_empty());
    for datagram in &datagrams {
        assert_eq!(
            datagram.header,
            serde_json::json!({"format": "json", "version": 1})
        );
        assert!(datagram.size <= 64 * 1024);
        let errors: Vec<String> = validator
            .iter_errors(&datagram.document)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?} in {}", datagram.document);
        for part in all_parts(&datagram.document) {
            let id = part["id"].as_str().unwrap();
            assert!(
                id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit()),
                "{id}"
            );
        }
    }

    let root = root_of(&feed_header);
    let all = segments(&datagrams);
    let segment = all
        .iter()
        .find(|s| s["trace_id"] == root.as_str())
        .expect("the feed's segment");
    assert_eq!(segment["name"], "backend-flask");
    assert_eq!(segment["http"]["request"]["method"], "GET");
    assert!(
        segment["http"]["request"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/api/activities/@worf")
    );
    assert_eq!(segment["http"]["response"]["status"], 200);
    assert_eq!(segment["aws"]["xray"]["sdk"], "cruddur-backend");
    let service = &segment["subsegments"][0];
    assert_eq!(service["name"], "user_activities");
    assert_eq!(service["annotations"]["app_user_handle"], "worf");
    let queries = service["subsegments"]
        .as_array()
        .expect("query subsegments");
    assert!(queries.len() >= 2);
    for query in queries {
        assert_eq!(query["sql"]["database_type"], "sqlite");
        assert!(
            query["sql"]["sanitized_query"]
                .as_str()
                .unwrap()
                .contains("?1")
        );
    }
    let not_found = all
        .iter()
        .find(|s| s["trace_id"] == missing_root.as_str())
        .expect("the 404's segment");
    assert_eq!(not_found["error"], true);
    assert!(not_found.get("fault").is_none());

    // The same trace in OTLP: the server span's trace id is the segment's.
    let otlp_traces: BTreeSet<String> = otlp
        .spans()
        .into_iter()
        .filter(|s| s.kind == SPAN_KIND_SERVER)
        .map(|s| format!("1-{}-{}", &s.trace_id[..8], &s.trace_id[8..]))
        .collect();
    assert!(otlp_traces.contains(&root), "{root} in {otlp_traces:?}");
    let segment_id = segment["id"].as_str().unwrap();
    assert!(
        otlp.spans()
            .iter()
            .any(|s| s.span_id == segment_id && s.kind == SPAN_KIND_SERVER)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_ray_sampling_decides_what_x_ray_gets_not_what_otlp_gets() {
    let daemon = XrayDaemon::start().await;
    let otlp = OtlpReceiver::http(Behavior::Accept).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(&daemon, &otlp, &rules_file(&dir, 0.0), &[]);
    let client = reqwest::Client::new();
    let dropped = client
        .get(server.url("/api/activities/home"))
        .send()
        .await
        .unwrap();
    let dropped_header = xray_header(&dropped);
    assert!(dropped_header.ends_with(";Sampled=0"), "{dropped_header}");
    let upstream = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    let honoured = client
        .get(server.url("/api/activities/home"))
        .header("x-amzn-trace-id", upstream)
        .send()
        .await
        .unwrap();
    let honoured_header = xray_header(&honoured);
    assert!(honoured_header.starts_with("Root=1-5759e988-bd862e3fe1be46a994272793;"));
    assert!(honoured_header.ends_with(";Sampled=1"), "{honoured_header}");
    // A decision with no parent, as AWS documents `Root=...;Sampled=1`.
    let rootless = client
        .get(server.url("/api/activities/home"))
        .header(
            "x-amzn-trace-id",
            "Root=1-6759e988-bd862e3fe1be46a994272793;Sampled=1",
        )
        .send()
        .await
        .unwrap();
    let rootless_header = xray_header(&rootless);
    assert!(rootless_header.starts_with("Root=1-6759e988-bd862e3fe1be46a994272793;"));
    assert!(rootless_header.ends_with(";Sampled=1"), "{rootless_header}");
    server.stop(Duration::from_secs(10)).await;

    let mut all = segments(&daemon.datagrams());
    all.sort_by_key(|s| s["trace_id"].as_str().unwrap().to_owned());
    assert_eq!(all.len(), 2, "only the caller-sampled traces: {all:?}");
    assert_eq!(all[0]["trace_id"], "1-5759e988-bd862e3fe1be46a994272793");
    assert_eq!(all[0]["parent_id"], "53995c3f42cd8ad8");
    assert_eq!(all[1]["trace_id"], "1-6759e988-bd862e3fe1be46a994272793");
    assert!(all[1].get("parent_id").is_none(), "{}", all[1]);
    let otlp_servers = otlp
        .spans()
        .into_iter()
        .filter(|s| s.kind == SPAN_KIND_SERVER)
        .count();
    assert_eq!(otlp_servers, 3, "OTLP keeps its own sampler");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_sampled_0_without_a_parent_is_honoured() {
    let daemon = XrayDaemon::start().await;
    let otlp = OtlpReceiver::http(Behavior::Accept).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(&daemon, &otlp, &rules_file(&dir, 1.0), &[]);
    let client = reqwest::Client::new();
    let declined = client
        .get(server.url("/api/activities/home"))
        .header(
            "x-amzn-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0",
        )
        .send()
        .await
        .unwrap();
    let declined_header = xray_header(&declined);
    assert!(declined_header.starts_with("Root=1-5759e988-bd862e3fe1be46a994272793;"));
    assert!(declined_header.ends_with(";Sampled=0"), "{declined_header}");
    let ours = client
        .get(server.url("/api/activities/home"))
        .send()
        .await
        .unwrap();
    assert!(xray_header(&ours).ends_with(";Sampled=1"));
    server.stop(Duration::from_secs(10)).await;

    let requests: Vec<Value> = segments(&daemon.datagrams())
        .into_iter()
        .filter(|s| s.get("http").is_some())
        .collect();
    assert_eq!(requests.len(), 1, "only the request the rules picked");
    assert_ne!(
        requests[0]["trace_id"],
        "1-5759e988-bd862e3fe1be46a994272793"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_naming_and_the_tracing_name() {
    let daemon = XrayDaemon::start().await;
    let otlp = OtlpReceiver::http(Behavior::Accept).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        &daemon,
        &otlp,
        &rules_file(&dir, 1.0),
        &[
            ("AWS_XRAY_URL", "*4567-ws.gitpod.io*"),
            ("AWS_XRAY_TRACING_NAME", "cruddur"),
        ],
    );
    let client = reqwest::Client::new();
    let gitpod = client
        .get(server.url("/api/activities/home"))
        .header("host", "4567-ws.gitpod.io")
        .send()
        .await
        .unwrap();
    let gitpod_root = root_of(&xray_header(&gitpod));
    let local = client
        .get(server.url("/api/activities/home"))
        .send()
        .await
        .unwrap();
    let local_root = root_of(&xray_header(&local));
    server.stop(Duration::from_secs(10)).await;
    let all = segments(&daemon.datagrams());
    let name = |root: &str| all.iter().find(|s| s["trace_id"] == root).unwrap()["name"].clone();
    assert_eq!(name(&gitpod_root), "4567-ws.gitpod.io");
    assert_eq!(name(&local_root), "cruddur");
}

async fn check_an_unreachable_daemon(address: &str, expected_error: &str) {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(&dir, 1.0);
    let server = Server::start(&[
        ("AWS_XRAY_DAEMON_ADDRESS", address),
        ("XRAY_SAMPLING_RULES", rules.as_str()),
    ]);
    let client = reqwest::Client::new();
    let mut last_error = Value::Null;
    // Bounded: a batch goes out every second; the error shows after one.
    for _ in 0..40 {
        for _ in 0..5 {
            let response = client
                .get(server.url("/api/activities/home"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
        let report = server.health().await;
        last_error = report["sinks"]["xray"]["last_error"].clone();
        if !last_error.is_null() {
            assert!(
                report["sinks"]["xray"]["failed"].as_u64().unwrap() > 0,
                "{report}"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        last_error
            .as_str()
            .is_some_and(|e| e.contains(expected_error)),
        "{last_error}"
    );
    server.stop(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_that_is_not_there_costs_requests_nothing() {
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap().to_string();
    drop(closed);
    check_an_unreachable_daemon(&address, "refused").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresolvable_daemon_host_costs_requests_nothing() {
    check_an_unreachable_daemon("xray-daemon.invalid:2000", "cannot resolve").await;
}

#[test]
fn bad_x_ray_settings_stop_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"SamplingRule\": {}}").unwrap();
    let cases = [
        ("AWS_XRAY_DAEMON_ADDRESS", "xray-daemon"),
        ("XRAY_SAMPLING_RULES", "/nonexistent/xray.json"),
        ("XRAY_SAMPLING_RULES", broken.to_str().unwrap()),
        ("AWS_XRAY_SDK_ENABLED", "maybe"),
    ];
    for (variable, value) in cases {
        let output = support::server::command(&[(variable, value)])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{variable}={value}: {stderr}"
        );
        assert!(stderr.contains(variable), "{stderr}");
    }
}

/// The names of the spans an X-Ray OTLP stand-in accepted.
fn span_names(endpoint: &SignedEndpoint) -> Vec<String> {
    use prost::Message;
    endpoint
        .accepted()
        .into_iter()
        .map(|accepted| {
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
                accepted.body,
            )
            .expect("OTLP protobuf")
        })
        .flat_map(|request| request.resource_spans)
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .map(|s| s.name)
        .collect()
}

fn otlp_mode_env<'a>(endpoint: &'a SignedEndpoint, rules: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("XRAY_MODE", "otlp"),
        ("XRAY_OTLP_ENDPOINT", endpoint.url.as_str()),
        ("XRAY_SAMPLING_RULES", rules),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
        ("AWS_SECRET_ACCESS_KEY", "right-secret"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_mode_signs_with_sigv4() {
    let endpoint = SignedEndpoint::start("xray", "/v1/traces", "right-secret").await;
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(&dir, 1.0);
    let server = Server::start(&otlp_mode_env(&endpoint, &rules));
    let response = reqwest::get(server.url("/api/activities/home"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let server = server.stop(Duration::from_secs(10)).await;
    assert_eq!(endpoint.refused(), 0, "{}", server.stderr());
    let names = span_names(&endpoint);
    assert!(
        names.contains(&"GET /api/activities/home".to_owned()),
        "{names:?}"
    );
    assert!(names.contains(&"home_activities".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_mode_with_a_wrong_signature_is_refused_and_counted() {
    let endpoint = SignedEndpoint::start("xray", "/v1/traces", "another-secret").await;
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(&dir, 1.0);
    let server = Server::start(&otlp_mode_env(&endpoint, &rules));
    let client = reqwest::Client::new();
    let mut report = Value::Null;
    for _ in 0..40 {
        assert_eq!(
            client
                .get(server.url("/api/activities/home"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        report = server.health().await;
        if report["sinks"]["xray"]["failed"].as_u64() > Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        report["sinks"]["xray"]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("403"),
        "{report}"
    );
    assert!(span_names(&endpoint).is_empty());
    server.stop(Duration::from_secs(10)).await;
}

fn aws_env(api: &support::xray_api::XrayApi) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", api.url()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "AKIDTEST".into()),
        ("AWS_SECRET_ACCESS_KEY", "secret".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

fn run_setup(env: &[(&'static str, String)]) -> (i32, String, String) {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let output = support::server::command(&pairs)
        .args(["xray", "setup"])
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xray_setup_creates_the_group_and_rule_once() {
    let api = support::xray_api::XrayApi::start().await;
    // The README's example: the shipped rules file, the default service name.
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/aws/json/xray.json");
    let mut env = aws_env(&api);
    env.push(("XRAY_SAMPLING_RULES", shipped.into()));

    let first_env = env.clone();
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || run_setup(&first_env))
        .await
        .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("group Cruddur: created with service(\"cruddur-backend\")"),
        "{stdout}"
    );
    assert!(stdout.contains("rule Cruddur: created"), "{stdout}");
    {
        let state = api.state.lock().unwrap();
        assert_eq!(state.groups.len(), 1);
        assert_eq!(
            state.groups[0]["FilterExpression"],
            "service(\"cruddur-backend\")"
        );
        assert_eq!(state.rules.len(), 1, "the built-in default is not created");
        assert_eq!(state.rules[0]["FixedRate"], 0.1);
        assert_eq!(state.rules[0]["ReservoirSize"], 5);
        assert_eq!(state.rules[0]["Priority"], 9000);
        assert_eq!(
            state.rules[0]["ServiceName"], "cruddur-backend",
            "the rule matches the service the group filters"
        );
    }

    let mutations = |calls: &[String]| {
        calls
            .iter()
            .filter(|c| c.starts_with("Create") || c.starts_with("Update"))
            .count()
    };
    let before = mutations(&api.calls());
    let second_env = env.clone();
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || run_setup(&second_env))
        .await
        .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("group Cruddur: already filters"),
        "{stdout}"
    );
    assert!(stdout.contains("rule Cruddur: unchanged"), "{stdout}");
    assert_eq!(
        mutations(&api.calls()),
        before,
        "a second run changes nothing"
    );

    let changed_dir = tempfile::tempdir().unwrap();
    let changed: Vec<(&'static str, String)> = env
        .into_iter()
        .map(|(k, v)| {
            if k == "XRAY_SAMPLING_RULES" {
                (k, rules_file(&changed_dir, 0.5))
            } else {
                (k, v)
            }
        })
        .collect();
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || run_setup(&changed))
        .await
        .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("rule Cruddur: updated"), "{stdout}");
    assert_eq!(api.state.lock().unwrap().rules[0]["FixedRate"], 0.5);
}

#[test]
fn xray_setup_without_a_region_says_so() {
    let (code, _, stderr) = run_setup(&[("AWS_EC2_METADATA_DISABLED", "true".into())]);
    assert_eq!(code, 2);
    assert!(stderr.contains("AWS_REGION"), "{stderr}");
}

/// Waits (bounded) until the fake API has seen `call`.
async fn api_saw(api: &support::xray_api::XrayApi, call: &str) {
    for _ in 0..100 {
        if api.calls().iter().any(|c| c == call) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the API never saw {call}: {:?}", api.calls());
}

async fn sampled_count(client: &reqwest::Client, server: &Server, requests: usize) -> usize {
    let mut sampled = 0;
    for _ in 0..requests {
        let response = client
            .get(server.url("/api/activities/home"))
            .send()
            .await
            .unwrap();
        if xray_header(&response).ends_with(";Sampled=1") {
            sampled += 1;
        }
    }
    sampled
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn centralized_sampling_obeys_x_rays_quota_and_reports_statistics() {
    let api = support::xray_api::XrayApi::start().await;
    {
        let mut state = api.state.lock().unwrap();
        state.rules.push(serde_json::json!({
            "RuleName": "Cruddur", "ResourceARN": "*", "Priority": 1, "FixedRate": 0.0,
            "ReservoirSize": 0, "ServiceName": "*", "ServiceType": "*", "Host": "*",
            "HTTPMethod": "*", "URLPath": "*", "Version": 1
        }));
        state.targets.push(("Cruddur".into(), 0.0, 1000));
    }
    let daemon = XrayDaemon::start().await;
    let daemon_address = daemon.addr.to_string();
    let mut env = aws_env(&api);
    env.extend([
        ("XRAY_SAMPLING", "centralized".to_owned()),
        ("XRAY_SAMPLING_TARGETS_INTERVAL", "200ms".to_owned()),
        ("AWS_XRAY_DAEMON_ADDRESS", daemon_address),
    ]);
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start(&pairs);
    api_saw(&api, "GetSamplingTargets").await;
    let client = reqwest::Client::new();
    // The rule alone samples nothing; X-Ray's quota of 1000/s samples all.
    assert_eq!(sampled_count(&client, &server, 20).await, 20);
    // Statistics reach X-Ray on the next report.
    for _ in 0..100 {
        let requests: i64 = api
            .state
            .lock()
            .unwrap()
            .statistics
            .iter()
            .map(|s| s["RequestCount"].as_i64().unwrap())
            .sum();
        if requests >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let state_statistics = api.state.lock().unwrap().statistics.clone();
    let requests: i64 = state_statistics
        .iter()
        .map(|s| s["RequestCount"].as_i64().unwrap())
        .sum();
    assert!(requests >= 20, "{state_statistics:?}");
    assert!(
        state_statistics
            .iter()
            .all(|s| s["RuleName"] == "Cruddur" && s["ClientID"].as_str().unwrap().len() == 24)
    );
    let server = server.stop(Duration::from_secs(10)).await;
    assert!(
        server.stderr().contains("sampling rules from X-Ray in use"),
        "{}",
        server.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn centralized_sampling_falls_back_to_local_rules_when_x_ray_is_unreachable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unreachable = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(&dir, 1.0);
    let server = Server::start(&[
        ("AWS_ENDPOINT_URL", unreachable.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("XRAY_SAMPLING", "centralized"),
        ("XRAY_SAMPLING_RULES", rules.as_str()),
    ]);
    // The poller tries X-Ray, fails, and says the local rules apply.
    for _ in 0..100 {
        if server.stderr().contains("the local rules apply") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        server.stderr().contains("GetSamplingRules"),
        "{}",
        server.stderr()
    );
    let client = reqwest::Client::new();
    assert_eq!(
        sampled_count(&client, &server, 10).await,
        10,
        "the local rule samples all"
    );
    let server = server.stop(Duration::from_secs(10)).await;
    assert!(
        server
            .stderr()
            .contains("centralized, falling back to the rules from"),
        "{}",
        server.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_mode_documents_are_accepted_and_come_back_whole_from_moto() {
    let moto = support::moto::Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(&dir, 1.0);
    let endpoint = moto.endpoint();
    let server = Server::start(&[
        ("XRAY_MODE", "api"),
        ("XRAY_SAMPLING_RULES", rules.as_str()),
        ("OTEL_SERVICE_NAME", "backend-flask"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ]);
    let client = reqwest::Client::new();
    let mut roots = Vec::new();
    for path in [
        "/api/activities/home",
        "/api/activities/@worf",
        "/api/message_groups",
    ] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        roots.push(root_of(&xray_header(&response)));
    }
    let server = server.stop(Duration::from_secs(15)).await;
    let flushed = server
        .stderr()
        .lines()
        .find(|line| line.starts_with("telemetry: xray flushed"))
        .unwrap_or_else(|| panic!("{}", server.stderr()))
        .to_owned();
    assert!(flushed.contains("failed 0"), "none unprocessed: {flushed}");

    let config = aws_sdk_xray::Config::builder()
        .behavior_version(aws_sdk_xray::config::BehaviorVersion::latest())
        .region(aws_sdk_xray::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_xray::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .endpoint_url(moto.endpoint())
        .build();
    let xray = aws_sdk_xray::Client::from_conf(config);
    let traces = xray
        .batch_get_traces()
        .set_trace_ids(Some(roots.clone()))
        .send()
        .await
        .unwrap();
    let found: BTreeSet<String> = traces
        .traces()
        .iter()
        .filter_map(|t| t.id().map(str::to_owned))
        .collect();
    assert_eq!(found, roots.iter().cloned().collect::<BTreeSet<_>>());
    for trace in traces.traces() {
        let segment = trace
            .segments()
            .iter()
            .map(|s| serde_json::from_str::<Value>(s.document().unwrap()).unwrap())
            .find(|d| d["name"] == "backend-flask")
            .expect("the request's segment");
        assert_eq!(segment["trace_id"], trace.id().unwrap());
        assert!(
            segment["subsegments"][0]["subsegments"]
                .as_array()
                .is_some_and(|q| !q.is_empty()),
            "{segment}"
        );
    }
}

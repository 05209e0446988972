//! `cruddur-backend doctor` against local stand-ins: the fake OTLP
//! receiver (with Honeycomb's `/1/auth`), the fake Rollbar API, moto for
//! CloudWatch Logs and the X-Ray control API stand-in. Each failure a user
//! meets (wrong key, doubled path, refused, black-holed, TLS to a plain
//! HTTP port) with its exit code and hint.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::moto::{Moto, messages};
use support::otlp::{Behavior, HONEYCOMB_CLASSIC_KEY, HONEYCOMB_KEY, OtlpReceiver};
use support::rollbar::{Answer, RollbarReceiver};
use support::server::{Server, command};

/// What a run of the doctor printed.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Asserts that a finding's `field` begins with `prefix`, showing the finding if not.
fn assert_starts(finding: &Value, field: &str, prefix: &str) {
    let text = finding[field].as_str().unwrap();
    assert!(text.starts_with(prefix), "{finding}");
}

impl Run {
    /// The JSON finding of `sink` (runs with `--json`).
    fn finding(&self, sink: &str) -> Value {
        let report: Value = serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.stdout));
        report["sinks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["sink"] == sink)
            .unwrap_or_else(|| panic!("no {sink} in {}", self.stdout))
            .clone()
    }
}

/// Runs `doctor` with `args` and `env` (on top of the tests' quiet base),
/// off the async runtime so that the stand-ins keep answering.
async fn doctor(env: &[(&'static str, String)], args: &[&'static str]) -> Run {
    let env = env.to_vec();
    let args = args.to_vec();
    tokio::task::spawn_blocking(move || {
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let output = command(&pairs)
            .arg("doctor")
            .args(&args)
            .output()
            .expect("the binary runs");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

fn otlp_env(endpoint: String, key: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_TRACES_EXPORTER", "otlp".into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("HONEYCOMB_API_KEY", key.into()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "500".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nothing_configured_every_sink_is_off_and_it_passes() {
    let run = doctor(&[], &[]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    for line in [
        "otlp        off   not in OTEL_TRACES_EXPORTER",
        "xray        off   XRAY_MODE, AWS_XRAY_DAEMON_ADDRESS",
        "cloudwatch  off   CLOUDWATCH_LOG_LEVEL=off",
        "rollbar     off   ROLLBAR_ACCESS_TOKEN unset",
        "no sink is configured: traces and logs go to the console only",
    ] {
        assert!(run.stdout.contains(line), "{line:?} in\n{}", run.stdout);
    }
    let run = doctor(&[], &["--json"]).await;
    assert_eq!(run.code, 0);
    assert_eq!(run.finding("rollbar")["verdict"], "off");
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["healthy"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_collector_takes_an_empty_export_and_honeycomb_names_the_key() {
    let receiver = OtlpReceiver::http(Behavior::Accept).await;
    let run = doctor(&otlp_env(receiver.endpoint(), HONEYCOMB_KEY), &["--json"]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let otlp = run.finding("otlp");
    assert_eq!(otlp["verdict"], "pass", "{otlp}");
    let detail = otlp["detail"].as_str().unwrap();
    assert!(detail.starts_with("accepted an empty export"), "{detail}");
    assert!(
        detail.contains(r#"Honeycomb team "Cruddur Test", environment "test""#),
        "{detail}"
    );
    assert_eq!(
        otlp["configured_by"],
        serde_json::json!(["OTEL_EXPORTER_OTLP_ENDPOINT", "HONEYCOMB_API_KEY"])
    );
    assert_eq!(receiver.requests(), 1, "one export");
    assert!(receiver.spans().is_empty(), "and no span in it");
    assert!(!run.stdout.contains(HONEYCOMB_KEY), "{}", run.stdout);
    assert!(
        run.stdout.contains("x-honeycomb-team=…0123"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_key_needs_a_dataset() {
    let receiver = OtlpReceiver::http(Behavior::Accept).await;
    let env = otlp_env(receiver.endpoint(), HONEYCOMB_CLASSIC_KEY);
    let run = doctor(&env, &["--json"]).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    let otlp = run.finding("otlp");
    assert!(
        otlp["hint"]
            .as_str()
            .unwrap()
            .contains("a Honeycomb Classic key needs a dataset"),
        "{otlp}"
    );
    let mut env = env;
    env.push((
        "OTEL_EXPORTER_OTLP_HEADERS",
        "x-honeycomb-dataset=cruddur".into(),
    ));
    let run = doctor(&env, &["--json"]).await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.finding("otlp")["verdict"], "pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_key_fails_with_its_hint() {
    let receiver = OtlpReceiver::http(Behavior::Status(401)).await;
    let run = doctor(&otlp_env(receiver.endpoint(), "a-wrong-key-0000"), &[]).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("otlp        FAIL  http://127.0.0.1:"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("OTLP/HTTP answered 401 Unauthorized"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("hint: the key was rejected: check HONEYCOMB_API_KEY"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.ends_with("1 configured, 1 failing\n"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("a-wrong-key-0000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_honeycomb_rejects_fails_even_when_the_export_passes() {
    // A collector in front of Honeycomb would take the export; /1/auth tells.
    let receiver = OtlpReceiver::http(Behavior::Accept).await;
    let run = doctor(
        &otlp_env(receiver.endpoint(), "a-wrong-key-0000"),
        &["--json"],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    let otlp = run.finding("otlp");
    assert_starts(&otlp, "detail", "Honeycomb rejected the key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doubled_path_is_named() {
    let receiver = OtlpReceiver::http(Behavior::Accept).await;
    let env = vec![
        ("OTEL_TRACES_EXPORTER", "otlp".into()),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            format!("{}/v1/traces/v1/traces", receiver.endpoint()),
        ),
    ];
    let run = doctor(&env, &["--json"]).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    let otlp = run.finding("otlp");
    assert_eq!(otlp["detail"], "OTLP/HTTP answered 404 Not Found", "{otlp}");
    assert_starts(&otlp, "hint", "/v1/traces is there twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_black_holed_and_tls_to_plain_http_are_each_named() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let run = doctor(&otlp_env(refused, HONEYCOMB_KEY), &["--json"]).await;
    assert_eq!(run.code, 1);
    let otlp = run.finding("otlp");
    assert_eq!(
        otlp["detail"],
        "OTLP/HTTP: connection refused: nothing listens there"
    );
    assert_starts(&otlp, "hint", "nothing answers there");

    let hanging = OtlpReceiver::http(Behavior::Hang).await;
    let started = Instant::now();
    let run = doctor(&otlp_env(hanging.endpoint(), HONEYCOMB_KEY), &["--json"]).await;
    assert_eq!(run.code, 1);
    assert_eq!(run.finding("otlp")["detail"], "OTLP/HTTP: timed out");
    assert!(started.elapsed() < Duration::from_secs(10));

    let plain = OtlpReceiver::http(Behavior::Accept).await;
    let tls = format!("https://{}", plain.addr);
    let run = doctor(&otlp_env(tls, HONEYCOMB_KEY), &["--json"]).await;
    assert_eq!(run.code, 1);
    let detail = run.finding("otlp")["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("TLS handshake failed"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_takes_an_empty_export_too() {
    let receiver = OtlpReceiver::grpc(Behavior::Accept).await;
    let mut env = otlp_env(receiver.endpoint(), HONEYCOMB_KEY);
    env.push(("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()));
    let run = doctor(&env, &["--json"]).await;
    let otlp = run.finding("otlp");
    assert_eq!(otlp["verdict"], "pass", "{otlp}");
    assert_eq!(receiver.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollbar_takes_the_token_and_records_nothing_or_rejects_it() {
    const TOKEN: &str = "doctor-rollbar-token-0123456789";
    let receiver = RollbarReceiver::start(Answer::Accept).await;
    let env = vec![
        ("ROLLBAR_ACCESS_TOKEN", TOKEN.into()),
        ("ROLLBAR_ENDPOINT", receiver.endpoint()),
    ];
    let run = doctor(&env, &["--json"]).await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    let rollbar = run.finding("rollbar");
    assert_eq!(rollbar["verdict"], "pass", "{rollbar}");
    assert_starts(
        &rollbar,
        "detail",
        "the token was accepted (Rollbar answered 422",
    );
    assert_eq!(receiver.requests(), 1);

    receiver.set_answer(Answer::Status(403));
    let run = doctor(&env, &[]).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("Rollbar answered 403 Forbidden: ROLLBAR_ACCESS_TOKEN was rejected"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("hint: use a project access token with the post_server_item scope"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains(TOKEN), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudwatch_says_where_aws_came_from_and_writes_a_test_event_when_asked() {
    let moto = Moto::start().await;
    let env = Moto::env(&moto.endpoint());
    let run = doctor(&env, &["--json"]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let cloudwatch = run.finding("cloudwatch");
    assert_eq!(cloudwatch["verdict"], "pass", "{cloudwatch}");
    assert_eq!(
        cloudwatch["detail"],
        "region us-east-1 from AWS_REGION, credentials from AWS_ACCESS_KEY_ID; \
         the group does not exist yet: it is created with the first events"
    );

    let run = doctor(&env, &["--json", "--write"]).await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    let detail = run.finding("cloudwatch")["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        detail.ends_with("; wrote a test event to cruddur/doctor"),
        "{detail}"
    );
    let written = messages(&moto.client(), "cruddur", "doctor").await;
    assert_eq!(written.len(), 1, "{written:?}");
    assert!(written[0].1.contains("cruddur-backend doctor: test event"));

    let run = doctor(&env, &["--json"]).await;
    assert!(
        run.finding("cloudwatch")["detail"]
            .as_str()
            .unwrap()
            .ends_with("; the group exists"),
        "{}",
        run.stdout
    );

    let mut env = env;
    env.push(("AWS_DEFAULT_REGION", "ca-central-1".into()));
    let run = doctor(&env, &["--json"]).await;
    let cloudwatch = run.finding("cloudwatch");
    assert_eq!(cloudwatch["verdict"], "pass", "{cloudwatch}");
    assert_starts(
        &cloudwatch,
        "hint",
        "AWS_REGION=us-east-1 and AWS_DEFAULT_REGION=ca-central-1 differ",
    );

    env.extend([
        ("CLOUDWATCH_CREATE_GROUP", "false".into()),
        ("CLOUDWATCH_LOG_GROUP", "missing".into()),
    ]);
    let run = doctor(&env, &["--json"]).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(
        run.finding("cloudwatch")["hint"],
        "create the group, or let the backend: CLOUDWATCH_CREATE_GROUP=true"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudwatch_without_a_region_fails_with_its_hint() {
    let env = vec![
        ("CLOUDWATCH_LOG_LEVEL", "info".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
    ];
    let run = doctor(&env, &["--json"]).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    let cloudwatch = run.finding("cloudwatch");
    assert_eq!(cloudwatch["detail"], "no AWS region");
    assert_starts(&cloudwatch, "hint", "set AWS_REGION");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xray_checks_the_daemon_address_or_reads_the_api() {
    // A documentation address (TEST-NET-1): resolved, never contacted.
    let env = vec![("AWS_XRAY_DAEMON_ADDRESS", "192.0.2.1:2000".into())];
    let run = doctor(&env, &["--json"]).await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    let xray = run.finding("xray");
    assert_eq!(xray["destination"], "udp://192.0.2.1:2000 (daemon)");
    assert_starts(&xray, "detail", "resolves to 192.0.2.1:2000");

    let api = support::xray_api::XrayApi::start().await;
    let env = vec![
        ("XRAY_MODE", "api".into()),
        ("AWS_ENDPOINT_URL", api.url()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "AKIDTEST".into()),
        ("AWS_SECRET_ACCESS_KEY", "secret".into()),
    ];
    let run = doctor(&env, &["--json"]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.finding("xray")["detail"],
        "GetSamplingRules answered: 0 rules; \
         Transaction Search: spans go to CloudWatchLogs (ACTIVE)"
    );
    assert_eq!(
        api.calls(),
        vec!["GetSamplingRules", "GetTraceSegmentDestination"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deep_health_check_runs_the_same_probes_at_most_every_30_seconds() {
    const TOKEN: &str = "deep-rollbar-token-0123456789";
    let receiver = RollbarReceiver::start(Answer::Accept).await;
    let endpoint = receiver.endpoint();
    let server = Server::start(&[
        ("ROLLBAR_ACCESS_TOKEN", TOKEN),
        ("ROLLBAR_ENDPOINT", endpoint.as_str()),
    ]);
    let plain = server.health().await;
    assert!(plain.get("doctor").is_none(), "{plain}");
    assert_eq!(
        receiver.requests(),
        0,
        "a plain health check probes nothing"
    );

    let deep = |server: &Server| {
        let url = server.url("/api/health-check?deep=1");
        async move {
            let text = reqwest::get(url).await.unwrap().text().await.unwrap();
            assert!(!text.contains(TOKEN), "{text}");
            serde_json::from_str::<Value>(&text).unwrap()
        }
    };
    let first = deep(&server).await;
    let doctor = &first["doctor"];
    assert_eq!(doctor["healthy"], true, "{first}");
    let rollbar = doctor["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["sink"] == "rollbar")
        .unwrap();
    assert_eq!(rollbar["verdict"], "pass", "{rollbar}");
    assert_eq!(receiver.requests(), 1);

    let second = deep(&server).await;
    assert_eq!(second["doctor"]["sinks"], doctor["sinks"]);
    assert_eq!(
        receiver.requests(),
        1,
        "within 30 s the last findings are reused"
    );
}

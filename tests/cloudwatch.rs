//! The real binary shipping its logs to CloudWatch Logs as moto serves it,
//! through the real AWS SDK, read back with GetLogEvents: what a person
//! sees in the CloudWatch console and in Logs Insights. Faults come from a
//! local proxy in front of moto.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::faults::{Fault, FaultProxy};
use support::moto::{Moto, messages, streams};
use support::server::Server;

const STREAM: &str = "test-stream";

/// The backend on moto (or a proxy in front of it) at `endpoint`, writing
/// to `STREAM`, flushing every 100 ms unless `extra` says otherwise.
fn start(endpoint: &str, extra: &[(&'static str, &str)]) -> Server {
    let mut env = Moto::env(endpoint);
    env.push(("CLOUDWATCH_LOG_STREAM", STREAM.into()));
    env.push(("CLOUDWATCH_FLUSH_INTERVAL", "100ms".into()));
    for (key, value) in extra {
        env.retain(|(k, _)| k != key);
        env.push((key, (*value).to_owned()));
    }
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start(&pairs)
}

/// SIGTERM, off the async runtime; asserts a clean exit.
async fn stop(mut server: Server) -> Server {
    tokio::task::spawn_blocking(move || {
        let status = server.terminate(Duration::from_secs(15));
        assert_eq!(status.code(), Some(0), "{}", server.stderr());
        server
    })
    .await
    .unwrap()
}

/// The W3C trace id named by an answer's `X-Amzn-Trace-Id`
/// (`Root=1-XXXXXXXX-YYYY...` is the trace `XXXXXXXXYYYY...`).
fn answered_trace_id(response: &reqwest::Response) -> String {
    let header = response.headers()["x-amzn-trace-id"].to_str().unwrap();
    let root = header
        .split(';')
        .find_map(|part| part.strip_prefix("Root="))
        .unwrap();
    root[2..].replace('-', "")
}

/// Each stored event as JSON, asserting it is one JSON object.
fn records(events: &[(i64, String)]) -> Vec<Value> {
    events
        .iter()
        .map(|(_, message)| {
            serde_json::from_str::<Value>(message)
                .unwrap_or_else(|err| panic!("not a JSON line ({err}): {message}"))
        })
        .collect()
}

/// Access lines, less those of the health checks the tests poll.
fn access_lines(records: &[Value]) -> Vec<&Value> {
    records
        .iter()
        .filter(|r| r["target"] == "cruddur::access" && r["fields"]["path"] != "/api/health-check")
        .collect()
}

async fn health(client: &reqwest::Client, server: &Server) -> Value {
    client
        .get(server.url("/api/health-check"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls what moto holds until `enough` says so: moto has no other signal.
async fn wait_for_events(
    moto: &Moto,
    group: &str,
    enough: impl Fn(&[(i64, String)]) -> bool,
) -> Vec<(i64, String)> {
    let client = moto.client();
    let started = Instant::now();
    loop {
        let stored = client
            .get_log_events()
            .log_group_name(group)
            .log_stream_name(STREAM)
            .start_from_head(true)
            .send()
            .await;
        if let Ok(stored) = stored {
            let events: Vec<(i64, String)> = stored
                .events()
                .iter()
                .map(|e| (e.timestamp().unwrap_or(0), e.message().unwrap_or("").into()))
                .collect();
            if enough(&events) {
                return events;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the events did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls the health check until `enough` holds for the cloudwatch sink.
async fn wait_for_health(server: &Server, enough: impl Fn(&Value) -> bool) -> Value {
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let report = health(&client, server).await;
        let sink = &report["sinks"]["cloudwatch"];
        if enough(sink) {
            return sink.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "health never got there: {sink}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_land_in_the_group_and_stream_as_json_lines_with_their_trace() {
    let moto = Moto::start().await;
    let server = start(&moto.endpoint(), &[]);
    assert!(server.stderr().contains(&format!(
        "telemetry: cloudwatch on: group cruddur stream {STREAM}, region us-east-1 (from AWS_REGION), \
         credentials from AWS_ACCESS_KEY_ID, endpoint {}",
        moto.endpoint()
    )));
    let client = reqwest::Client::new();
    let first = client
        .get(server.url("/api/activities/home"))
        .header("user-agent", "cloudwatch-test")
        .send()
        .await
        .unwrap();
    let first_trace = answered_trace_id(&first);
    // Shipped on the flush interval, with the server still running.
    wait_for_events(&moto, "cruddur", |events| {
        events.iter().any(|(_, m)| m.contains(&first_trace))
    })
    .await;

    let created = client
        .post(server.url("/api/activities"))
        .json(&json!({"message": "Hello CloudWatch", "ttl": "1-day"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let missing = client
        .get(server.url("/api/activities/@nobody"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let traces = [
        first_trace,
        answered_trace_id(&created),
        answered_trace_id(&missing),
    ];
    stop(server).await;

    let events = messages(&moto.client(), "cruddur", STREAM).await;
    assert!(
        events.windows(2).all(|pair| pair[0].0 <= pair[1].0),
        "in time order"
    );
    let records = records(&events);
    for record in &records {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(record[key].is_string(), "{key} in {record}");
        }
        assert!(record["fields"].is_object(), "{record}");
    }
    let access = access_lines(&records);
    assert_eq!(access.len(), 3, "one access line per request: {access:?}");
    for (line, trace) in access.iter().zip(&traces) {
        assert_eq!(line["trace_id"], trace.as_str(), "{line}");
        assert_eq!(line["span_id"].as_str().unwrap().len(), 16);
        assert_eq!(
            line["xray_trace_id"],
            format!("1-{}-{}", &trace[..8], &trace[8..])
        );
        assert_eq!(line["level"], "INFO");
        let fields = &line["fields"];
        for key in ["method", "path", "route", "client_address", "user_agent"] {
            assert!(fields[key].is_string(), "{key} in {line}");
        }
        assert!(fields["status"].is_u64() && fields["latency_ms"].is_number());
    }
    let home = &access[0]["fields"];
    assert_eq!(home["method"], "GET");
    assert_eq!(home["path"], "/api/activities/home");
    assert_eq!(home["route"], "/api/activities/home");
    assert_eq!(home["status"], 200);
    assert_eq!(home["client_address"], "127.0.0.1");
    assert_eq!(home["user_agent"], "cloudwatch-test");
    assert_eq!(access[1]["fields"]["method"], "POST");
    assert_eq!(access[2]["fields"]["status"], 404);
    assert_eq!(access[2]["fields"]["route"], "/api/activities/@{handle}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_queued_before_sigterm_is_there_after_exit() {
    let moto = Moto::start().await;
    // Nothing is sent on an interval: only shutdown delivers.
    let server = start(&moto.endpoint(), &[("CLOUDWATCH_FLUSH_INTERVAL", "10m")]);
    let client = reqwest::Client::new();
    let mut traces = Vec::new();
    for _ in 0..150 {
        let response = client
            .get(server.url("/api/activities/home"))
            .send()
            .await
            .unwrap();
        traces.push(answered_trace_id(&response));
    }
    let report = health(&client, &server).await;
    assert_eq!(report["sinks"]["cloudwatch"]["exported"], 0);
    // 150 requests and the health check: 151 access lines.
    let server = stop(server).await;
    assert!(
        server
            .stderr()
            .contains("telemetry: cloudwatch flushed: exported 151, dropped 0, failed 0"),
        "{}",
        server.stderr()
    );
    let records = records(&messages(&moto.client(), "cruddur", STREAM).await);
    let shipped: Vec<&str> = access_lines(&records)
        .iter()
        .map(|line| line["trace_id"].as_str().unwrap())
        .collect();
    assert_eq!(shipped, traces);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_group_is_written_without_creating_one() {
    let moto = Moto::start().await;
    let aws = moto.client();
    aws.create_log_group()
        .log_group_name("precreated")
        .send()
        .await
        .unwrap();
    let mut env = Moto::env(&moto.endpoint());
    env.push(("CLOUDWATCH_LOG_GROUP", "precreated".into()));
    env.push(("CLOUDWATCH_CREATE_GROUP", "false".into()));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start(&pairs);
    let response = reqwest::get(server.url("/api/activities/home"))
        .await
        .unwrap();
    let trace = answered_trace_id(&response);
    stop(server).await;

    let groups: Vec<String> = aws
        .describe_log_groups()
        .send()
        .await
        .unwrap()
        .log_groups()
        .iter()
        .filter_map(|g| g.log_group_name().map(ToOwned::to_owned))
        .collect();
    assert_eq!(groups, ["precreated"]);
    // One stream per process, named after the host and the start time.
    let streams = streams(&aws, "precreated").await;
    assert_eq!(streams.len(), 1, "{streams:?}");
    let (host, started) = streams[0].split_once('/').unwrap();
    assert!(!host.is_empty());
    let year = chrono::Utc::now().format("%Y-").to_string();
    assert!(
        started.starts_with(&year) && started.contains('T'),
        "{started}"
    );
    let records = records(&messages(&aws, "precreated", &streams[0]).await);
    assert_eq!(access_lines(&records)[0]["trace_id"], trace.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_group_that_may_not_be_created_is_reported_not_fatal() {
    let moto = Moto::start().await;
    let server = start(&moto.endpoint(), &[("CLOUDWATCH_CREATE_GROUP", "false")]);
    let response = reqwest::get(server.url("/api/activities/home"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let sink = wait_for_health(&server, |sink| sink["failed"].as_u64() > Some(0)).await;
    assert!(
        sink["last_error"]
            .as_str()
            .unwrap()
            .contains("log group cruddur does not exist and CLOUDWATCH_CREATE_GROUP=false"),
        "{sink}"
    );
    let server = stop(server).await;
    assert!(
        server.stderr().contains(
            "telemetry: cloudwatch failing: log group cruddur does not exist \
                       and CLOUDWATCH_CREATE_GROUP=false (create the group, or let the backend"
        ),
        "{}",
        server.stderr()
    );
}

#[test]
fn without_aws_it_is_off_and_says_why() {
    let started = Instant::now();
    let server = Server::start(&[("CLOUDWATCH_LOG_LEVEL", "info")]);
    assert!(started.elapsed() < Duration::from_secs(10));
    let why = "no AWS configured: set AWS_REGION and credentials, \
               or CLOUDWATCH_LOGS=true to use an instance role";
    assert!(
        server
            .stderr()
            .contains(&format!("telemetry: cloudwatch off ({why})")),
        "{}",
        server.stderr()
    );
    let report: Value = reqwest::blocking::get(server.url("/api/health-check"))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        report["sinks"]["cloudwatch"],
        json!({"enabled": false, "reason": why})
    );
    drop(server);

    // Asked to look anyway (the instance-metadata lookup is off in tests).
    let server = Server::start(&[
        ("CLOUDWATCH_LOG_LEVEL", "info"),
        ("CLOUDWATCH_LOGS", "true"),
    ]);
    assert!(
        server
            .stderr()
            .contains("telemetry: cloudwatch off (no AWS region)"),
        "{}",
        server.stderr()
    );
    drop(server);

    let server = Server::start(&[
        ("CLOUDWATCH_LOG_LEVEL", "info"),
        ("CLOUDWATCH_LOGS", "false"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ]);
    assert!(
        server
            .stderr()
            .contains("telemetry: cloudwatch off (CLOUDWATCH_LOGS=false)"),
        "{}",
        server.stderr()
    );
    drop(server);

    let server = Server::start(&[
        ("CLOUDWATCH_LOG_LEVEL", "info"),
        ("AWS_REGION", "us-east-1"),
    ]);
    assert!(
        server
            .stderr()
            .contains("telemetry: cloudwatch off (no AWS credentials)"),
        "{}",
        server.stderr()
    );
    drop(server);

    let server = Server::start(&[
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("CLOUDWATCH_LOG_LEVEL", "off"),
    ]);
    assert!(
        server
            .stderr()
            .contains("telemetry: cloudwatch off (CLOUDWATCH_LOG_LEVEL=off)"),
        "{}",
        server.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdks_own_events_never_reach_cloudwatch() {
    let moto = Moto::start().await;
    // At trace level the SDK and hyper log plenty on every call.
    let server = start(&moto.endpoint(), &[("CLOUDWATCH_LOG_LEVEL", "trace")]);
    let client = reqwest::Client::new();
    for _ in 0..5 {
        client
            .get(server.url("/api/activities/home"))
            .send()
            .await
            .unwrap();
    }
    // Several flush intervals: a loop would show as a growing stream.
    wait_for_health(&server, |sink| sink["exported"].as_u64() >= Some(5)).await;
    let server = stop(server).await;
    let records = records(&messages(&moto.client(), "cruddur", STREAM).await);
    let transport: Vec<&Value> = records
        .iter()
        .filter(|r| {
            let target = r["target"].as_str().unwrap();
            ["aws_", "hyper", "h2", "rustls", "tower"]
                .iter()
                .any(|prefix| target.starts_with(prefix))
        })
        .collect();
    assert!(transport.is_empty(), "{transport:?}");
    assert_eq!(access_lines(&records).len(), 5);
    assert!(!server.stderr().contains("dropping"), "{}", server.stderr());
}

/// Faulty CloudWatch: requests never wait on it, and what it finally takes
/// arrives exactly once.
async fn check_faults_are_retried(
    script: Vec<Fault>,
    expect_error: &str,
    extra: &[(&'static str, &str)],
) {
    let moto = Moto::start().await;
    let faults = script.len();
    let proxy = FaultProxy::start(&moto.endpoint(), script).await;
    let server = start(&proxy.endpoint(), extra);
    let client = reqwest::Client::new();
    let mut traces = Vec::new();
    let mut slowest = Duration::ZERO;
    for _ in 0..30 {
        let started = Instant::now();
        let response = client
            .get(server.url("/api/activities/home"))
            .send()
            .await
            .unwrap();
        slowest = slowest.max(started.elapsed());
        assert_eq!(response.status(), 200);
        traces.push(answered_trace_id(&response));
    }
    assert!(
        slowest < Duration::from_millis(250),
        "requests never wait on the sink (slowest {slowest:?})"
    );
    let sink = wait_for_health(&server, |sink| sink["exported"].as_u64() >= Some(30)).await;
    assert_eq!(
        (&sink["dropped"], &sink["failed"]),
        (&json!(0), &json!(0)),
        "{sink}"
    );
    assert!(
        sink["last_error"].as_str().unwrap().contains(expect_error),
        "{sink}"
    );
    assert!(proxy.puts() > faults, "faulted calls were tried again");
    stop(server).await;
    let records = records(&messages(&moto.client(), "cruddur", STREAM).await);
    let shipped: Vec<&str> = access_lines(&records)
        .iter()
        .map(|line| line["trace_id"].as_str().unwrap())
        .collect();
    assert_eq!(shipped, traces, "every event once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_500s_are_retried_and_nothing_is_lost() {
    check_faults_are_retried(
        vec![Fault::Throttle, Fault::ServerError, Fault::Throttle],
        "HTTP 400 ThrottlingException: Rate exceeded",
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_call_times_out_and_is_retried() {
    check_faults_are_retried(
        vec![Fault::Stall],
        "PutLogEvents: timed out",
        &[("CLOUDWATCH_TIMEOUT", "1s")],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded_when_cloudwatch_keeps_failing() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint(), Vec::new()).await;
    proxy.always(Some(Fault::ServerError));
    // Room at shutdown for all five tries and their backoff (0.2 s doubling,
    // up to 1.5 times that with jitter: 4.5 s at most).
    let server = start(
        &proxy.endpoint(),
        &[
            ("CLOUDWATCH_FLUSH_INTERVAL", "10m"),
            ("SHUTDOWN_TIMEOUT", "10s"),
        ],
    );
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let response = client
            .get(server.url("/api/activities/home"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // One batch, delivered at shutdown: five tries, then counted as failed.
    let stopping = Instant::now();
    let server = stop(server).await;
    assert!(
        stopping.elapsed() < Duration::from_secs(8),
        "{:?}",
        stopping.elapsed()
    );
    assert_eq!(proxy.puts(), 5);
    assert!(
        server
            .stderr()
            .contains("telemetry: cloudwatch flushed: exported 0, dropped 0, failed 3"),
        "{}",
        server.stderr()
    );
    // Five failed calls, one line.
    let stderr = server.stderr();
    let failing: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("telemetry: cloudwatch failing: "))
        .collect();
    assert_eq!(failing.len(), 1, "{stderr}");
    assert!(
        failing[0].contains("PutLogEvents: HTTP 500 InternalFailure: injected"),
        "{}",
        failing[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_events_are_counted_and_not_retried() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(
        &moto.endpoint(),
        vec![Fault::Answer(json!({
            "nextSequenceToken": "1",
            "rejectedLogEventsInfo": {"tooOldLogEventEndIndex": 1}
        }))],
    )
    .await;
    let server = start(&proxy.endpoint(), &[]);
    let refused = reqwest::get(server.url("/api/activities/home"))
        .await
        .unwrap();
    let refused = answered_trace_id(&refused);
    let sink = wait_for_health(&server, |sink| sink["rejected"] == 1).await;
    assert!(
        sink["last_error"]
            .as_str()
            .unwrap()
            .contains("PutLogEvents rejected events: 1 too old"),
        "{sink}"
    );
    assert_eq!(sink["failed"], 0);
    let next = reqwest::get(server.url("/api/activities/home"))
        .await
        .unwrap();
    let next = answered_trace_id(&next);
    stop(server).await;
    // The refused call never reached moto, so it was not sent again; the
    // next request's line arrived.
    let records = records(&messages(&moto.client(), "cruddur", STREAM).await);
    let shipped: Vec<&str> = access_lines(&records)
        .iter()
        .map(|line| line["trace_id"].as_str().unwrap())
        .collect();
    assert_eq!(shipped, [next.as_str()], "not {refused}");
}

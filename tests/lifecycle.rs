//! The real binary: its settings, its errors at start-up, its data across
//! restarts, and a clean exit on SIGTERM.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::server::{Server, command};

fn run_to_end(env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let output = command(env).args(args).output().expect("the binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn help_lists_every_setting_with_its_variable() {
    let (code, stdout, _) = run_to_end(&[], &["--help"]);
    assert_eq!(code, 0);
    for variable in [
        "PORT",
        "BIND_ADDRESS",
        "DATABASE_PATH",
        "DATABASE_URL",
        "DATABASE_MAX_CONNECTIONS",
        "DATABASE_CONNECT_TIMEOUT",
        "DATABASE_STATEMENT_TIMEOUT",
        "METRICS_PROMETHEUS",
        "CRUDDUR_DEFAULT_USER",
        "FRONTEND_URL",
        "BACKEND_URL",
        "SHUTDOWN_TIMEOUT",
        "SERVER_HEADER_TIMEOUT",
        "SERVER_IDLE_TIMEOUT",
        "SERVER_REQUEST_TIMEOUT",
        "SERVER_MAX_CONNECTIONS",
        "TELEMETRY_QUEUE_MAX_BYTES",
        "OTEL_SERVICE_NAME",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_BSP_MAX_QUEUE_SIZE",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        "OTEL_BSP_SCHEDULE_DELAY",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
        "OTEL_TRACES_EXPORTER",
        "OTEL_SDK_DISABLED",
        "HONEYCOMB_API_KEY",
        "OTEL_SEMCONV_STABILITY_OPT_IN",
        "AWS_XRAY_SDK_ENABLED",
        "AWS_XRAY_DAEMON_ADDRESS",
        "AWS_XRAY_URL",
        "AWS_XRAY_TRACING_NAME",
        "XRAY_MODE",
        "XRAY_OTLP_ENDPOINT",
        "XRAY_SAMPLING_RULES",
        "XRAY_SAMPLING",
        "XRAY_SAMPLING_RULES_INTERVAL",
        "XRAY_SAMPLING_TARGETS_INTERVAL",
        "OTEL_BROWSER_RELAY",
        "LOG_FORMAT",
        "RUST_LOG",
        "ROLLBAR_ACCESS_TOKEN",
        "ROLLBAR_ENVIRONMENT",
        "ROLLBAR_ENDPOINT",
        "ROLLBAR_LEVEL",
        "ROLLBAR_CODE_VERSION",
        "ROLLBAR_MAX_ITEMS_PER_MINUTE",
        "ROLLBAR_TIMEOUT",
        "CLOUDWATCH_LOGS",
        "CLOUDWATCH_LOG_GROUP",
        "CLOUDWATCH_LOG_STREAM",
        "CLOUDWATCH_CREATE_GROUP",
        "CLOUDWATCH_LOG_LEVEL",
        "CLOUDWATCH_FLUSH_INTERVAL",
        "CLOUDWATCH_TIMEOUT",
    ] {
        assert!(
            stdout.contains(&format!("[env: {variable}")),
            "--help lacks {variable}"
        );
    }
    assert!(stdout.contains("[default: 4567]"));
    assert!(stdout.contains("[default: ./data/cruddur.db]"));
}

#[test]
fn bad_settings_stop_start_up_with_one_line_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "not a folder").unwrap();
    let under_a_file = format!("{}/cruddur.db", blocker.display());
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("PORT", "abc")], "PORT=\"abc\" is invalid"),
        (vec![("PORT", "70000")], "PORT=\"70000\" is invalid"),
        (
            vec![("DATABASE_MAX_CONNECTIONS", "0")],
            "DATABASE_MAX_CONNECTIONS",
        ),
        (
            vec![("DATABASE_CONNECT_TIMEOUT", "soon")],
            "DATABASE_CONNECT_TIMEOUT",
        ),
        (
            vec![("DATABASE_STATEMENT_TIMEOUT", "0s")],
            "DATABASE_STATEMENT_TIMEOUT",
        ),
        (
            vec![("DATABASE_PATH", under_a_file.as_str())],
            "DATABASE_PATH",
        ),
        (
            vec![("DATABASE_PATH", dir.path().to_str().unwrap())],
            "DATABASE_PATH",
        ),
        (
            vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "::not a url")],
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
        (
            vec![("OTEL_EXPORTER_OTLP_HEADERS", "x-honeycomb-team")],
            "OTEL_EXPORTER_OTLP_HEADERS",
        ),
        (
            vec![("OTEL_TRACES_SAMPLER", "sometimes")],
            "OTEL_TRACES_SAMPLER",
        ),
        (
            vec![("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")],
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (vec![("RUST_LOG", "info,[=bad")], "RUST_LOG"),
        (vec![("FRONTEND_URL", "localhost")], "FRONTEND_URL"),
        (vec![("HONEYCOMB_API_KEY", "")], "HONEYCOMB_API_KEY"),
        (vec![("ROLLBAR_ACCESS_TOKEN", "")], "ROLLBAR_ACCESS_TOKEN"),
        (
            vec![("ROLLBAR_ENDPOINT", "api.rollbar.com")],
            "ROLLBAR_ENDPOINT",
        ),
        (vec![("ROLLBAR_LEVEL", "fatal")], "ROLLBAR_LEVEL"),
        (
            vec![("ROLLBAR_MAX_ITEMS_PER_MINUTE", "-1")],
            "ROLLBAR_MAX_ITEMS_PER_MINUTE",
        ),
        (vec![("ROLLBAR_TIMEOUT", "soon")], "ROLLBAR_TIMEOUT"),
        (
            vec![("SERVER_HEADER_TIMEOUT", "0")],
            "SERVER_HEADER_TIMEOUT=\"0\" is invalid",
        ),
        (
            vec![("SERVER_IDLE_TIMEOUT", "forever")],
            "SERVER_IDLE_TIMEOUT",
        ),
        (
            vec![("SERVER_REQUEST_TIMEOUT", "-5s")],
            "SERVER_REQUEST_TIMEOUT",
        ),
        (
            vec![("SERVER_MAX_CONNECTIONS", "0")],
            "SERVER_MAX_CONNECTIONS=\"0\" is invalid",
        ),
        (
            vec![("SERVER_MAX_CONNECTIONS", "lots")],
            "SERVER_MAX_CONNECTIONS",
        ),
        (
            vec![("TELEMETRY_QUEUE_MAX_BYTES", "8MB")],
            "TELEMETRY_QUEUE_MAX_BYTES=\"8MB\" is invalid",
        ),
        (
            vec![("FEED_CACHE_MAX_BYTES", "off")],
            "FEED_CACHE_MAX_BYTES=\"off\" is invalid",
        ),
        (
            vec![("FEED_CACHE_MAX_BYTES", "-1")],
            "FEED_CACHE_MAX_BYTES=\"-1\" is invalid",
        ),
        (
            vec![("METRICS_PROMETHEUS", "perhaps")],
            "METRICS_PROMETHEUS=\"perhaps\" is invalid",
        ),
        (
            vec![("TRACE_EXPLORER", "maybe")],
            "TRACE_EXPLORER=\"maybe\" is invalid",
        ),
        (
            vec![("TRACE_EXPLORER_MAX_SPANS", "0")],
            "TRACE_EXPLORER_MAX_SPANS=\"0\" is invalid",
        ),
        (
            vec![("TRACE_EXPLORER_MAX_SPANS", "many")],
            "TRACE_EXPLORER_MAX_SPANS=\"many\" is invalid",
        ),
        (
            vec![("TRACE_EXPLORER_MAX_BYTES", "0")],
            "TRACE_EXPLORER_MAX_BYTES=\"0\" is invalid",
        ),
        (
            vec![("TRACE_EXPLORER_MAX_BYTES", "lots")],
            "TRACE_EXPLORER_MAX_BYTES=\"lots\" is invalid",
        ),
        (
            vec![("TRACE_EXPLORER_TRACES_PER_SECOND", "0")],
            "TRACE_EXPLORER_TRACES_PER_SECOND=\"0\" is invalid",
        ),
        (
            vec![("TRACE_EXPLORER_TRACES_PER_SECOND", "-5")],
            "TRACE_EXPLORER_TRACES_PER_SECOND=\"-5\" is invalid",
        ),
    ];
    for (env, expected) in cases {
        let (code, _, stderr) = run_to_end(&env, &[]);
        assert_eq!(code, 2, "{env:?}: {stderr}");
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("cruddur-backend: "))
            .collect();
        assert_eq!(errors.len(), 1, "{env:?}: {stderr}");
        assert!(errors[0].contains(expected), "{env:?}: {stderr}");
        assert!(!stderr.contains("listening on"), "{env:?}");
    }
}

#[test]
fn a_bad_secret_is_never_echoed() {
    let (code, _, stderr) = run_to_end(
        &[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "x-honeycomb-team=sekrit-canary-value,broken",
        )],
        &[],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("OTEL_EXPORTER_OTLP_HEADERS"));
    assert!(!stderr.contains("sekrit-canary-value"), "{stderr}");
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::new()
}

/// POSTs `body` as JSON and answers the JSON answer.
fn post_json(url: String, body: Value) -> Value {
    client()
        .post(url)
        .json(&body)
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// The binary's connections and datagrams (`connect`, `sendto`, `sendmsg`)
/// to IPv4 or IPv6 addresses, as strace saw them, from a start with no
/// configuration but a free port: serving two requests, then SIGTERM.
fn outbound_of_a_plain_start() -> (Vec<String>, String) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("strace.txt");
    let available = Command::new("strace").arg("-V").output();
    assert!(
        available.is_ok_and(|out| out.status.success()),
        "strace is needed (scripts/test installs it)"
    );
    // A fresh HOME (no ~/.aws), the working directory a fresh project
    // (data/cruddur.db is created there); only PORT differs from a plain
    // `cargo run`, so that tests can run side by side.
    let mut child = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=connect,sendto,sendmsg,sendmmsg",
            "-o",
        ])
        .arg(&trace)
        .arg(support::server::binary())
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("PORT", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strace starts");
    let mut stderr = String::new();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("no listening line: {stderr}"))
            .unwrap();
        stderr.push_str(&line);
        stderr.push('\n');
        if let Some(addr) = line.strip_prefix("cruddur-backend listening on http://") {
            break addr.to_owned();
        }
    };
    for path in ["/api/activities/home", "/api/health-check"] {
        let status = client()
            .get(format!("http://{addr}{path}"))
            .send()
            .unwrap()
            .status();
        assert_eq!(status, 200, "{path}");
    }
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()))
        .expect("strace's children are listed");
    let server = children
        .split_whitespace()
        .next()
        .expect("the traced server");
    assert!(
        Command::new("kill")
            .args(["-TERM", server])
            .status()
            .unwrap()
            .success()
    );
    for line in lines {
        stderr.push_str(&line.unwrap());
        stderr.push('\n');
    }
    assert_eq!(child.wait().unwrap().code(), Some(0), "{stderr}");
    let outbound = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .filter(|line| line.contains("AF_INET"))
        .map(str::to_owned)
        .collect();
    (outbound, stderr)
}

#[test]
fn a_plain_start_sends_nothing_anywhere() {
    let (outbound, stderr) = outbound_of_a_plain_start();
    assert!(
        outbound.is_empty(),
        "a plain start reached out:\n{}",
        outbound.join("\n")
    );
    assert!(
        stderr.contains("telemetry: cloudwatch off (no AWS configured"),
        "{stderr}"
    );
    assert!(
        stderr.contains("cruddur-backend listening on http://127.0.0.1:"),
        "a plain start serves this machine only: {stderr}"
    );
}

#[test]
fn data_survives_a_restart_and_sigterm_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/cruddur.db");
    let db = db.to_str().unwrap();
    let mut first = Server::start(&[("DATABASE_PATH", db)]);
    let created = post_json(
        first.url("/api/activities"),
        json!({"message": "remember me", "ttl": "7-days"}),
    );
    let reply = post_json(
        first.url(&format!(
            "/api/activities/{}/reply",
            created["uuid"].as_str().unwrap()
        )),
        json!({"message": "me too"}),
    );
    let status = first.terminate(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", first.stderr());

    let second = Server::start(&[("DATABASE_PATH", db)]);
    let home: Value = client()
        .get(second.url("/api/activities/home"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let list = home.as_array().unwrap();
    let found = list
        .iter()
        .find(|a| a["uuid"] == created["uuid"])
        .expect("the crud survived");
    assert_eq!(found["replies"][0]["uuid"], reply["uuid"]);
    let seeded = list
        .iter()
        .filter(|a| a["message"] == "Cloud is very fun!")
        .count();
    assert_eq!(seeded, 1, "seed data is written once");
}

#[test]
fn healthcheck_subcommand_probes_the_running_server() {
    let mut server = Server::start(&[]);
    let port = server.addr.port().to_string();
    let env = [("PORT", port.as_str())];
    let (code, _, stderr) = run_to_end(&env, &["healthcheck"]);
    assert_eq!(code, 0, "{stderr}");
    let status = server.terminate(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    let (code, _, stderr) = run_to_end(&env, &["healthcheck"]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("cruddur-backend healthcheck: cannot connect to 127.0.0.1:"),
        "{stderr}"
    );
}

#[test]
fn a_clean_exit_leaves_every_write_in_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cruddur.db");
    let mut server = Server::start(&[("DATABASE_PATH", db.to_str().unwrap())]);
    let created = post_json(
        server.url("/api/activities"),
        json!({"message": "in the file itself", "ttl": "7-days"}),
    );
    // Another program has the database open, as a sqlite3 shell or a
    // backup tool would: the server's connections are not the last to
    // close, so closing them alone would leave the log as it is.
    let onlooker = rusqlite::Connection::open(&db).unwrap();
    let cruds: i64 = onlooker
        .query_row("SELECT count(*) FROM activities", [], |row| row.get(0))
        .unwrap();
    assert!(cruds > 0);
    let status = server.terminate(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", server.stderr());

    let wal = dir.path().join("cruddur.db-wal");
    let wal_bytes = std::fs::metadata(&wal).map_or(0, |meta| meta.len());
    assert_eq!(wal_bytes, 0, "the write-ahead log still holds data");
    // A backup that copies only the database file has everything.
    let backup = tempfile::tempdir().unwrap();
    let copy = backup.path().join("cruddur.db");
    std::fs::copy(&db, &copy).unwrap();
    let conn = rusqlite::Connection::open(&copy).unwrap();
    let stored: String = conn
        .query_row(
            "SELECT uuid FROM activities WHERE message = 'in the file itself'",
            [],
            |row| row.get(0),
        )
        .expect("the crud is in the copy");
    assert_eq!(stored, created["uuid"].as_str().unwrap());
    drop(onlooker);
}

#[test]
fn a_port_in_use_is_the_last_line_printed() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    // Every console output on, so start-up and shutdown have lines to print.
    let (code, _, stderr) = run_to_end(
        &[
            ("PORT", port.as_str()),
            ("OTEL_TRACES_EXPORTER", "console"),
            ("RUST_LOG", "info"),
        ],
        &[],
    );
    assert_ne!(code, 0, "{stderr}");
    let last = stderr
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or_default();
    assert!(
        last.starts_with(&format!(
            "cruddur-backend: cannot listen on 127.0.0.1:{port} (BIND_ADDRESS, PORT): "
        )),
        "the last line is {last:?}:\n{stderr}"
    );
}

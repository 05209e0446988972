//! Several replicas of the real binary on one Postgres database: what one
//! writes the others serve at once, starting together migrates once, a
//! database that goes away gives quick 503s and comes back by itself, and
//! a bad `DATABASE_URL` stops the start with one line.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::app::{TestApp, TestStore};
use support::postgres;
use support::server::{Server, command};

fn replica(url: &str, extra: &[(&str, &str)]) -> Server {
    let mut env = vec![("DATABASE_URL", url)];
    env.extend_from_slice(extra);
    Server::start(&env)
}

async fn get(client: &reqwest::Client, url: String) -> (u16, Value) {
    let response = client.get(url).send().await.expect("answered");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn create(client: &reqwest::Client, server: &Server, message: &str) -> (u16, Value) {
    let response = client
        .post(server.url("/api/activities"))
        .json(&json!({"message": message, "ttl": "1-day"}))
        .send()
        .await
        .expect("answered");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn uuids_starting(feed: &Value, prefix: &str) -> Vec<String> {
    feed.as_array()
        .expect("a feed")
        .iter()
        .filter(|a| a["message"].as_str().unwrap().starts_with(prefix))
        .map(|a| a["uuid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn replicas_serve_each_others_writes_at_once_and_lose_none() {
    let database = postgres::database().await;
    let (a, b) = (replica(&database.url, &[]), replica(&database.url, &[]));
    let client = reqwest::Client::new();
    // B's feed cache holds home before A writes: it must not serve it again.
    let (status, before) = get(&client, b.url("/api/activities/home")).await;
    assert_eq!(status, 200);
    let (status, crud) = create(&client, &a, "written through A").await;
    assert_eq!(status, 200);
    let (_, home) = get(&client, b.url("/api/activities/home")).await;
    assert_eq!(home[0]["uuid"], crud["uuid"], "B serves A's crud first");
    assert_eq!(
        home.as_array().unwrap().len(),
        before.as_array().unwrap().len() + 1
    );

    let creates = (0..200).map(|i| {
        let client = client.clone();
        let url = [&a, &b][i % 2].url("/api/activities");
        tokio::spawn(async move {
            let response = client
                .post(url)
                .json(&json!({"message": format!("spread crud {i}"), "ttl": "1-day"}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.unwrap();
            body["uuid"].as_str().unwrap().to_owned()
        })
    });
    let mut created = HashSet::new();
    for create in creates.collect::<Vec<_>>() {
        created.insert(create.await.unwrap());
    }
    assert_eq!(created.len(), 200);
    for server in [&a, &b] {
        let (_, home) = get(&client, server.url("/api/activities/home")).await;
        let shown = uuids_starting(&home, "spread crud ");
        assert_eq!(shown.len(), 200, "each crud once");
        assert_eq!(shown.into_iter().collect::<HashSet<_>>(), created);
    }
}

#[tokio::test]
async fn replicas_starting_at_the_same_moment_migrate_and_seed_once() {
    let database = postgres::database().await;
    let url = database.url.clone();
    let starts: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || replica(&url, &[]))
        })
        .collect();
    let replicas: Vec<Server> = starts.into_iter().map(|s| s.join().unwrap()).collect();
    let users = postgres::count(&url, "SELECT count(*) FROM users").await;
    let migrations = postgres::count(&url, "SELECT count(*) FROM schema_migrations").await;
    let cruds = postgres::count(&url, "SELECT count(*) FROM activities").await;
    assert_eq!(
        (users, migrations, cruds),
        (5, 1, 5),
        "one seed, one migration"
    );
    let client = reqwest::Client::new();
    for server in &replicas {
        let (status, home) = get(&client, server.url("/api/activities/home")).await;
        assert_eq!(status, 200);
        assert_eq!(home.as_array().unwrap().len(), 5);
    }
}

#[tokio::test]
async fn a_database_that_goes_away_gives_quick_503s_and_comes_back_by_itself() {
    let server = postgres::Server::start();
    let name = format!("cruddur_{}", uuid::Uuid::new_v4().simple());
    postgres::execute(&server.url, &format!("CREATE DATABASE {name}")).await;
    let url = postgres::on_database(&server.url, &name);
    let app = replica(
        &url,
        &[
            ("DATABASE_CONNECT_TIMEOUT", "1s"),
            ("DATABASE_STATEMENT_TIMEOUT", "1s"),
        ],
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let limit = Duration::from_secs(3);
    let mut acknowledged = Vec::new();
    let mut slowest = Duration::ZERO;
    let mut write = async |label: &str, acknowledged: &mut Vec<String>| -> u16 {
        let started = Instant::now();
        let (status, body) = create(&client, &app, label).await;
        slowest = slowest.max(started.elapsed());
        assert!(status == 200 || status == 503, "{status}: {body}");
        if status == 200 {
            acknowledged.push(body["uuid"].as_str().unwrap().to_owned());
        } else {
            assert_eq!(body["error"], "unavailable", "{body}");
        }
        status
    };
    for i in 0..20 {
        assert_eq!(write(&format!("before {i}"), &mut acknowledged).await, 200);
    }

    server.stop();
    let (status, _) = get(&client, app.url("/api/ready")).await;
    assert_eq!(status, 503, "not ready while the database is down");
    let (status, health) = get(&client, app.url("/api/health-check")).await;
    assert_eq!(
        (status, &health["success"]),
        (200, &json!(true)),
        "still alive"
    );
    for i in 0..10 {
        assert_eq!(write(&format!("during {i}"), &mut acknowledged).await, 503);
        let (status, _) = get(&client, app.url("/api/activities/home")).await;
        assert_eq!(status, 503);
    }

    server.start_again();
    let back = Instant::now();
    let mut answered = 0;
    while answered < 20 {
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "normal answers within seconds of the database's return"
        );
        if write(&format!("after {answered}"), &mut acknowledged).await == 200 {
            answered += 1;
        }
    }
    assert!(slowest < limit, "a request waited {slowest:?}");
    let (status, _) = get(&client, app.url("/api/ready")).await;
    assert_eq!(status, 200);
    for uuid in &acknowledged {
        let (status, _) = get(&client, app.url(&format!("/api/activities/{uuid}"))).await;
        assert_eq!(status, 200, "acknowledged crud {uuid} is kept");
    }
    assert_eq!(acknowledged.len(), 40);
}

#[test]
fn bad_database_urls_stop_the_start_with_one_masked_line() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let database = runtime.block_on(postgres::database());
    let (credentials, _) = database.url.rsplit_once('@').unwrap();
    let wrong_password = database
        .url
        .replace(credentials, "postgres://cruddur:hunter2-wrong");
    let nobody = format!("postgres://cruddur:hunter2@127.0.0.1:{closed_port}/cruddur");
    let cases = [
        ("mysql://cruddur:hunter2@h/db", "expected postgres://"),
        (
            "postgres://cruddur:hunter2@h/db?sslmode=sometimes",
            "sslmode=sometimes",
        ),
        (wrong_password.as_str(), "password authentication failed"),
        (
            nobody.as_str(),
            "cannot connect to postgres://cruddur:****@127.0.0.1:",
        ),
    ];
    for (url, why) in cases {
        let output = command(&[("DATABASE_URL", url), ("DATABASE_CONNECT_TIMEOUT", "1s")])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{url}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.contains("DATABASE_URL"), "{url}: {stderr}");
        assert!(last.contains(why), "{url}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{url}: {stderr}");
    }
    let missing = postgres::on_database(&database.url, "no_such_database");
    let output = command(&[("DATABASE_URL", missing.as_str())])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(!stderr.contains("cruddur-test-password"), "{stderr}");
}

/// A feed with what differs between two databases by nature (ids, times)
/// taken out.
fn shape(feed: &Value) -> Value {
    let mut feed = feed.clone();
    fn strip(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for key in ["uuid", "reply_to_activity_uuid", "created_at", "expires_at"] {
                    if map.contains_key(key) {
                        map.insert(key.into(), Value::Null);
                    }
                }
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut feed);
    feed
}

#[tokio::test]
async fn both_stores_answer_the_same_feeds() {
    let sqlite = TestApp::start_on(TestStore::sqlite(), &[]).await;
    let postgres = TestApp::start_on(TestStore::postgres().await, &[]).await;
    for app in [&sqlite, &postgres] {
        for message in ["Tied @worf", "50% OFF_today", "Ünïcode ÉCLAIR"] {
            let (status, crud) = app
                .post_json(
                    "/api/activities",
                    json!({"message": message, "ttl": "1-day"}),
                )
                .await;
            assert_eq!(status, 200);
            let uuid = crud["uuid"].as_str().unwrap();
            let (status, _) = app
                .post_json(
                    &format!("/api/activities/{uuid}/reply"),
                    json!({"message": "a reply"}),
                )
                .await;
            assert_eq!(status, 200);
        }
    }
    for path in [
        "/api/activities/home",
        "/api/activities/notifications",
        "/api/activities/@andrewbrown",
        "/api/activities/search?term=off_",
        "/api/activities/search?term=éclair",
        "/api/activities/search?term=ÉCLAIR",
        "/api/message_groups",
        "/api/messages/@worf",
    ] {
        let (one, expected) = sqlite.get_json(path).await;
        let (other, answered) = postgres.get_json(path).await;
        assert_eq!((one, other), (200, 200), "{path}");
        assert_eq!(shape(&answered), shape(&expected), "{path}");
    }
}

#[tokio::test]
async fn postgres_statements_are_client_spans_with_where_and_never_values() {
    use support::otlp::{Behavior, OtlpReceiver, SPAN_KIND_CLIENT};
    let database = postgres::database().await;
    let receiver = OtlpReceiver::http(Behavior::Accept).await;
    let endpoint = receiver.endpoint();
    let app = replica(
        &database.url,
        &[
            ("OTEL_TRACES_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("FEED_CACHE_MAX_BYTES", "0"),
        ],
    );
    let client = reqwest::Client::new();
    let (status, _) = get(&client, app.url("/api/activities/@worf")).await;
    assert_eq!(status, 200);
    let has_query = |spans: &[support::otlp::ReceivedSpan]| {
        spans
            .iter()
            .any(|s| s.str_attr("db.collection.name") == Some("activities"))
    };
    let spans = receiver
        .wait_for_spans_where(has_query, Duration::from_secs(10))
        .await;
    let service = spans
        .iter()
        .find(|s| s.name == "user_activities")
        .expect("the service span");
    let queries: Vec<_> = spans
        .iter()
        .filter(|s| s.kind == SPAN_KIND_CLIENT && s.trace_id == service.trace_id)
        .collect();
    assert!(queries.len() >= 2, "user lookup and feed query");
    let port = database
        .url
        .rsplit_once(':')
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap();
    let namespace = database.url.rsplit_once('/').unwrap().1;
    for query in &queries {
        assert_eq!(query.parent_span_id, service.span_id);
        assert_eq!(query.str_attr("db.system.name"), Some("postgresql"));
        assert_eq!(query.str_attr("server.address"), Some("127.0.0.1"));
        assert_eq!(query.int_attr("server.port"), port.parse().ok());
        assert_eq!(query.str_attr("db.namespace"), Some(namespace));
        assert_eq!(query.str_attr("db.operation.name"), Some("SELECT"));
        let text = query.str_attr("db.query.text").unwrap();
        assert!(text.contains("$1") && !text.contains("worf"), "{text}");
    }
    let wait = spans
        .iter()
        .find(|s| s.name == "wait for a database connection" && s.trace_id == service.trace_id)
        .expect("the wait for a pooled connection is on the trace");
    assert_eq!(wait.parent_span_id, service.span_id);
    let everything = format!("{spans:?}");
    assert!(
        !everything.contains("cruddur-test-password"),
        "no password in any span"
    );
}

#[tokio::test]
async fn tls_is_used_and_the_certificate_checked_as_sslmode_says() {
    let server = postgres::Server::start_tls();
    let name = format!("cruddur_{}", uuid::Uuid::new_v4().simple());
    postgres::execute(&server.url, &format!("CREATE DATABASE {name}")).await;
    let url = postgres::on_database(&server.url, &name);
    let ca = server.ca();
    let ca = ca.to_str().unwrap();
    let client = reqwest::Client::new();
    for (mode, root) in [("verify-full", Some(ca)), ("require", None)] {
        let mut with = format!("{url}?sslmode={mode}");
        if let Some(root) = root {
            with.push_str(&format!("&sslrootcert={root}"));
        }
        let app = replica(&with, &[]);
        let (status, home) = get(&client, app.url("/api/activities/home")).await;
        assert_eq!(status, 200, "sslmode={mode}");
        assert_eq!(home.as_array().unwrap().len(), 5, "sslmode={mode}");
    }
    let refused = [
        // The server takes TLS only: connecting in clear is refused.
        (format!("{url}?sslmode=disable"), "no encryption"),
        // A CA of the test's own is not among the public roots.
        (format!("{url}?sslmode=verify-full"), "certificate"),
    ];
    for (with, why) in refused {
        let output = command(&[
            ("DATABASE_URL", with.as_str()),
            ("DATABASE_CONNECT_TIMEOUT", "1s"),
        ])
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{with}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with(
                "cruddur-backend: DATABASE_URL: cannot connect to postgres://cruddur:****@"
            ),
            "{last}"
        );
        assert!(last.contains(why), "{with}: {last}");
        assert!(!stderr.contains("cruddur-test-password"), "{stderr}");
    }
}

//! The feed cache never answers stale: every feed read after a write shows
//! it, in one process and across two processes on one database, and a crud
//! leaves a cached feed the moment it expires. The trace says whether the
//! cache answered (`app.cache_hit`).

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::app::TestApp;
use support::otlp::{Behavior, OtlpReceiver};
use support::server::Server;

/// Reads every path twice (the second read is the cache's, if anything's).
async fn prime(client: &reqwest::Client, urls: &[String]) {
    for url in urls.iter().chain(urls) {
        let response = client.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
    }
}

async fn get(client: &reqwest::Client, url: &str) -> Value {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.json().await.unwrap()
}

async fn post(client: &reqwest::Client, url: &str, body: Value) -> Value {
    let response = client.post(url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.json().await.unwrap()
}

fn uuids(feed: &Value) -> Vec<&str> {
    feed.as_array()
        .unwrap()
        .iter()
        .map(|crud| crud["uuid"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn every_feed_shows_a_write_on_the_next_read() {
    let app = TestApp::start(&[]).await;
    let (_, home) = app.get_json("/api/activities/home").await;
    let seeded = home[0]["uuid"].as_str().unwrap().to_owned();
    let show = format!("/api/activities/{seeded}");
    let paths = [
        "/api/activities/home".to_owned(),
        "/api/activities/@andrewbrown".to_owned(),
        "/api/activities/search?term=kestrel".to_owned(),
        show.clone(),
    ];
    let urls: Vec<String> = paths.iter().map(|path| app.url(path)).collect();
    for round in 0..3 {
        prime(&app.client, &urls).await;
        let message = format!("kestrel sighting {round}");
        let (status, created) = app
            .post_json(
                "/api/activities",
                json!({"message": message, "ttl": "1-hour"}),
            )
            .await;
        assert_eq!(status, 200);
        let uuid = created["uuid"].as_str().unwrap();
        for path in &paths[..3] {
            let (_, feed) = app.get_json(path).await;
            assert_eq!(uuids(&feed)[0], uuid, "round {round}: {path}");
        }
        let (status, reply) = app
            .post_json(
                &format!("{show}/reply"),
                json!({"message": format!("reply {round}")}),
            )
            .await;
        assert_eq!(status, 200);
        let (_, shown) = app.get_json(&show).await;
        let replies = shown["replies"].as_array().unwrap();
        assert_eq!(
            replies.last().unwrap()["uuid"],
            reply["uuid"],
            "round {round}"
        );
        assert_eq!(shown["replies_count"], json!(replies.len()));
        let (_, home) = app.get_json("/api/activities/home").await;
        let in_home = home
            .as_array()
            .unwrap()
            .iter()
            .find(|crud| crud["uuid"] == seeded.as_str())
            .unwrap();
        assert_eq!(in_home, &shown, "round {round}: home shows the reply too");
    }
}

#[tokio::test]
async fn two_processes_on_one_database_never_read_stale() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cruddur.db");
    let db = db.to_str().unwrap();
    // One start at a time: the first creates and seeds the database.
    let andrew = Server::start(&[("DATABASE_PATH", db)]);
    let worf = Server::start(&[("DATABASE_PATH", db), ("CRUDDUR_DEFAULT_USER", "worf")]);
    let client = reqwest::Client::new();
    let home = get(&client, &andrew.url("/api/activities/home")).await;
    let seeded = home[0]["uuid"].as_str().unwrap().to_owned();
    let show = format!("/api/activities/{seeded}");
    let feeds = [
        "/api/activities/home",
        "/api/activities/notifications",
        "/api/activities/@worf",
        "/api/activities/search?term=tribble",
    ];
    let mut urls: Vec<String> = feeds.iter().map(|path| andrew.url(path)).collect();
    urls.push(andrew.url(&show));
    for round in 0..20 {
        prime(&client, &urls).await;
        // Worf writes through the other process; each answer of andrew's
        // after worf's 200 must show it.
        let message = format!("@andrewbrown tribble {round}");
        let created = post(
            &client,
            &worf.url("/api/activities"),
            json!({"message": message, "ttl": "1-day"}),
        )
        .await;
        let uuid = created["uuid"].as_str().unwrap();
        for url in &urls[..4] {
            let feed = get(&client, url).await;
            assert_eq!(uuids(&feed)[0], uuid, "round {round}: {url}");
        }
        let reply_url = worf.url(&format!("{show}/reply"));
        let reply = post(
            &client,
            &reply_url,
            json!({"message": format!("qapla {round}")}),
        )
        .await;
        let shown = get(&client, &urls[4]).await;
        let last = shown["replies"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["uuid"], reply["uuid"], "round {round}");
    }
}

#[tokio::test]
async fn a_cached_feed_loses_a_crud_the_moment_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now();
    let expires_at = now + chrono::Duration::milliseconds(1500);
    let (db, brief) =
        support::app::database_with_crud(dir.path(), "a brief kestrel", now, expires_at).await;
    let db = db.as_str();
    let app = TestApp::start(&["--database-path", db]).await;
    let paths = [
        "/api/activities/home".to_owned(),
        "/api/activities/@worf".to_owned(),
        "/api/activities/search?term=kestrel".to_owned(),
    ];
    // Read as fast as the app answers, from before the expiry to after it:
    // a read sent after the expiry never shows the crud, whatever was cached.
    let (mut shown_before, mut gone_after) = (0, 0);
    while chrono::Utc::now() < expires_at + chrono::Duration::milliseconds(300) {
        for path in &paths {
            let sent = chrono::Utc::now();
            let (status, feed) = app.get_json(path).await;
            assert_eq!(status, 200);
            let has_it = uuids(&feed).contains(&brief.as_str());
            if sent >= expires_at {
                assert!(!has_it, "{path} sent {sent} after the expiry {expires_at}");
                gone_after += 1;
            } else if has_it {
                shown_before += 1;
            }
        }
        let sent = chrono::Utc::now();
        let (status, _) = app.get_json(&format!("/api/activities/{brief}")).await;
        if sent >= expires_at {
            assert_eq!(
                status, 404,
                "show sent {sent} after the expiry {expires_at}"
            );
        }
    }
    assert!(
        shown_before > 0 && gone_after > 0,
        "{shown_before} {gone_after}"
    );
}

/// The `app.cache_hit` of each read's service span, in the order sent.
async fn cache_hits(extra: &[(&str, &str)], paths: &[&str]) -> Vec<Option<bool>> {
    let receiver = OtlpReceiver::http(Behavior::Accept).await;
    let endpoint = receiver.endpoint();
    let mut env = vec![
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
    ];
    env.extend_from_slice(extra);
    let server = Server::start(&env);
    let client = reqwest::Client::new();
    let mut traces = Vec::new();
    for path in paths {
        let response = if path.starts_with("POST ") {
            let url = server.url(path.trim_start_matches("POST "));
            let body = json!({"message": "kestrel", "ttl": "1-day"});
            client.post(url).json(&body).send().await.unwrap()
        } else {
            client.get(server.url(path)).send().await.unwrap()
        };
        assert_eq!(response.status(), 200, "{path}");
        traces.push(support::server::answered_trace_id(&response));
    }
    server.stop(Duration::from_secs(10)).await;
    let spans = receiver.spans();
    traces
        .iter()
        .zip(paths)
        .filter(|(_, path)| !path.starts_with("POST "))
        .map(|(trace, path)| {
            let service = spans
                .iter()
                .find(|s| &s.trace_id == trace && s.attr("app.now").is_some())
                .unwrap_or_else(|| panic!("no service span for {path}"));
            service.bool_attr("app.cache_hit")
        })
        .collect()
}

#[tokio::test]
async fn the_trace_says_whether_the_cache_answered() {
    let paths = [
        "/api/activities/home",
        "/api/activities/home",
        "/api/activities/search?term=kestrel",
        "/api/activities/search?term=kestrel",
        "POST /api/activities",
        "/api/activities/home",
        "/api/activities/search?term=kestrel",
        "/api/activities/home",
    ];
    let (miss, hit) = (Some(false), Some(true));
    assert_eq!(
        cache_hits(&[], &paths).await,
        [miss, hit, miss, hit, miss, miss, hit]
    );
    assert_eq!(
        cache_hits(&[("FEED_CACHE_MAX_BYTES", "0")], &paths).await,
        [miss; 7],
        "FEED_CACHE_MAX_BYTES=0 turns the cache off"
    );
}

//! The HTTP contract of ../shared/API.md, spoken over real HTTP to the app,
//! on each store: SQLite, and Postgres (see `support::postgres`).

mod support;

use std::collections::HashSet;

use serde_json::{Value, json};
use support::app::{TestApp, TestStore};

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

const ACTIVITY_KEYS: &[&str] = &[
    "created_at",
    "display_name",
    "expires_at",
    "handle",
    "likes_count",
    "message",
    "replies",
    "replies_count",
    "reposts_count",
    "uuid",
];

const REPLY_KEYS: &[&str] = &[
    "created_at",
    "display_name",
    "handle",
    "likes_count",
    "message",
    "replies_count",
    "reply_to_activity_uuid",
    "reposts_count",
    "uuid",
];

fn is_timestamp(value: &Value) -> bool {
    let text = value.as_str().unwrap_or_default();
    chrono::DateTime::parse_from_rfc3339(text).is_ok()
        && text.ends_with("+00:00")
        && text.contains('.')
}

async fn home_lists_live_cruds_newest_first_with_replies(store: TestStore) {
    let app = TestApp::start_on(store, &[]).await;
    let (status, home) = app.get_json("/api/activities/home").await;
    assert_eq!(status, 200);
    let list = home.as_array().unwrap();
    assert!(list.len() >= 3);
    for activity in list {
        assert_eq!(keys(activity), ACTIVITY_KEYS);
        assert!(is_timestamp(&activity["created_at"]) && is_timestamp(&activity["expires_at"]));
        assert_eq!(
            activity["replies"].as_array().unwrap().len() as i64,
            activity["replies_count"].as_i64().unwrap()
        );
        for reply in activity["replies"].as_array().unwrap() {
            assert_eq!(keys(reply), REPLY_KEYS);
            assert_eq!(reply["reply_to_activity_uuid"], activity["uuid"]);
        }
    }
    let times: Vec<&str> = list
        .iter()
        .map(|a| a["created_at"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");
}

async fn a_new_crud_persists_and_shows_in_home_and_its_authors_feed(store: TestStore) {
    let app = TestApp::start_on(store, &[]).await;
    let (status, created) = app
        .post_json(
            "/api/activities",
            json!({"message": "Hello from the test", "ttl": "3-hours"}),
        )
        .await;
    assert_eq!(status, 200, "creates answer exactly 200");
    assert_eq!(keys(&created), ACTIVITY_KEYS);
    assert_eq!(created["replies"], json!([]));
    assert_eq!(created["likes_count"], 0);
    assert_eq!(created["handle"], "andrewbrown");
    let created_at =
        chrono::DateTime::parse_from_rfc3339(created["created_at"].as_str().unwrap()).unwrap();
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(created["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires_at - created_at, chrono::Duration::hours(3));

    let (_, home) = app.get_json("/api/activities/home").await;
    assert_eq!(home[0], created, "the new crud is at the top of home");
    let (status, feed) = app.get_json("/api/activities/@andrewbrown").await;
    assert_eq!(status, 200);
    assert_eq!(feed[0], created);
    let (status, shown) = app
        .get_json(&format!(
            "/api/activities/{}",
            created["uuid"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(shown, created);
}

async fn a_reply_shows_under_its_crud_and_bumps_the_count(store: TestStore) {
    let app = TestApp::start_on(store, &[]).await;
    let (_, created) = app
        .post_json(
            "/api/activities",
            json!({"message": "Reply to me", "ttl": "1-day"}),
        )
        .await;
    let uuid = created["uuid"].as_str().unwrap();
    let (status, reply) = app
        .post_json(
            &format!("/api/activities/{uuid}/reply"),
            json!({"message": "Here I am"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(keys(&reply), REPLY_KEYS);
    assert_eq!(reply["reply_to_activity_uuid"], uuid);
    let (_, shown) = app.get_json(&format!("/api/activities/{uuid}")).await;
    assert_eq!(shown["replies_count"], 1);
    assert_eq!(shown["replies"], json!([reply]));
    let (_, home) = app.get_json("/api/activities/home").await;
    assert_eq!(home[0]["replies"][0]["uuid"], reply["uuid"]);
}

async fn a_reply_to_a_reply_lands_in_the_cruds_thread(store: TestStore) {
    let app = TestApp::start_on(store, &[]).await;
    let (_, created) = app
        .post_json(
            "/api/activities",
            json!({"message": "Start a thread", "ttl": "1-day"}),
        )
        .await;
    let uuid = created["uuid"].as_str().unwrap();
    let (_, first) = app
        .post_json(
            &format!("/api/activities/{uuid}/reply"),
            json!({"message": "First"}),
        )
        .await;
    let (status, second) = app
        .post_json(
            &format!("/api/activities/{}/reply", first["uuid"].as_str().unwrap()),
            json!({"message": "A reply to the reply"}),
        )
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["reply_to_activity_uuid"], uuid);
    let (_, shown) = app.get_json(&format!("/api/activities/{uuid}")).await;
    assert_eq!(shown["replies_count"], 2);
    assert_eq!(shown["replies"], json!([first, second]));
}

async fn messages_show_in_the_conversation_and_the_groups(store: TestStore) {
    let app = TestApp::start_on(store, &[]).await;
    let (status, sent) = app
        .post_json(
            "/api/messages",
            json!({"user_receiver_handle": "garek", "message": "A simple tailor?"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        keys(&sent),
        ["created_at", "display_name", "handle", "message", "uuid"]
    );
    assert_eq!(sent["handle"], "andrewbrown");
    let (status, conversation) = app.get_json("/api/messages/@garek").await;
    assert_eq!(status, 200);
    assert_eq!(conversation.as_array().unwrap().last().unwrap(), &sent);
    let (status, groups) = app.get_json("/api/message_groups").await;
    assert_eq!(status, 200);
    let group = groups
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["handle"] == "garek")
        .expect("a group with garek");
    assert_eq!(
        keys(group),
        ["created_at", "display_name", "handle", "message", "uuid"]
    );
    assert_eq!(group["message"], "A simple tailor?");
    assert_eq!(
        groups[0]["handle"], "garek",
        "the newest conversation is first"
    );
    let (status, seeded) = app.get_json("/api/messages/@worf").await;
    assert_eq!(status, 200);
    assert_eq!(
        seeded.as_array().unwrap().len(),
        2,
        "seeded conversation, oldest first"
    );
    assert_eq!(seeded[0]["handle"], "worf");
}

async fn notifications_and_search(store: TestStore) {
    let app = TestApp::start_on(store, &[]).await;
    let (status, notifications) = app.get_json("/api/activities/notifications").await;
    assert_eq!(status, 200);
    let list = notifications.as_array().unwrap();
    assert!(
        list.iter().any(|a| a["handle"] == "garek"),
        "a mention of @andrewbrown"
    );
    assert!(
        list.iter()
            .any(|a| a["handle"] == "andrewbrown" && a["replies_count"].as_i64() > Some(0))
    );
    assert!(list.iter().all(|a| a["handle"] != "londo"));

    let (status, found) = app.get_json("/api/activities/search?term=PRUNE").await;
    assert_eq!(status, 200);
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["handle"], "worf");
    let (_, none) = app.get_json("/api/activities/search?term=%25").await;
    assert_eq!(none, json!([]), "LIKE wildcards match literally");
}

async fn unknown_things_are_404_json(store: TestStore) {
    let app = TestApp::start_on(store, &[]).await;
    for path in [
        "/api/activities/@nobody",
        "/api/activities/@Worf",
        "/api/activities/@a%20b",
        "/api/activities/@..%2Fetc",
        "/api/activities/@%C3%BC",
        "/api/activities/not-a-uuid",
        "/api/activities/00000000-0000-0000-0000-000000000000",
        "/api/messages/@nobody",
        "/api/messages/@x%00y",
        "/api/nope",
        "/",
    ] {
        let (status, body) = app.get_json(path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["error"], "not_found", "{path}");
        assert!(body["message"].is_string(), "{path}");
    }
    let (status, body) = app
        .post_json(
            "/api/activities/00000000-0000-0000-0000-000000000000/reply",
            json!({"message": "hi"}),
        )
        .await;
    assert_eq!((status, &body["error"]), (404, &json!("not_found")));
    let (status, _) = app
        .post_json("/api/activities/nope/reply", json!({"message": "hi"}))
        .await;
    assert_eq!(status, 404);
    let (status, body) = app
        .post_json(
            "/api/messages",
            json!({"user_receiver_handle": "nobody", "message": "hi"}),
        )
        .await;
    assert_eq!((status, &body["error"]), (404, &json!("not_found")));
}

async fn wrong_method_is_405_json(store: TestStore) {
    let app = TestApp::start_on(store, &[]).await;
    let response = app
        .client
        .delete(app.url("/api/activities/home"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "method_not_allowed");
}

async fn validation_errors_are_422_code_lists_and_store_nothing(store: TestStore) {
    let app = TestApp::start_on(store, &[]).await;
    let before = app.home_len().await;
    let long_crud = "x".repeat(281);
    let long_message = "y".repeat(1025);
    let cases = [
        (
            "/api/activities",
            json!({"message": "", "ttl": "1-day"}),
            json!(["message_blank"]),
        ),
        (
            "/api/activities",
            json!({"message": "   ", "ttl": "1-day"}),
            json!(["message_blank"]),
        ),
        (
            "/api/activities",
            json!({"message": long_crud, "ttl": "1-day"}),
            json!(["message_exceed_max_chars"]),
        ),
        (
            "/api/activities",
            json!({"message": "hi", "ttl": ""}),
            json!(["ttl_blank"]),
        ),
        (
            "/api/activities",
            json!({"message": "hi", "ttl": "2-days"}),
            json!(["ttl_invalid"]),
        ),
        // The limits are the document's: a ttl exactly as listed, a length
        // as sent (trimming happens only when the text is stored).
        (
            "/api/activities",
            json!({"message": "hi", "ttl": " 1-day"}),
            json!(["ttl_invalid"]),
        ),
        (
            "/api/activities",
            json!({"message": format!("x{}", " ".repeat(280)), "ttl": "1-day"}),
            json!(["message_exceed_max_chars"]),
        ),
        (
            "/api/activities",
            json!({}),
            json!(["message_blank", "ttl_blank"]),
        ),
        (
            "/api/messages",
            json!({"message": "hi"}),
            json!(["user_reciever_handle_blank"]),
        ),
        (
            "/api/messages",
            json!({"user_receiver_handle": "worf", "message": long_message}),
            json!(["message_exceed_max_chars"]),
        ),
        (
            "/api/messages",
            json!({"user_receiver_handle": "Not Valid", "message": "hi"}),
            json!(["user_reciever_handle_invalid"]),
        ),
        (
            "/api/messages",
            json!({}),
            json!(["user_reciever_handle_blank", "message_blank"]),
        ),
        (
            "/api/activities/%20/reply",
            json!({"message": "hi"}),
            json!(["activity_uuid_blank"]),
        ),
        (
            "/api/activities/%20%09/reply",
            json!({}),
            json!(["activity_uuid_blank", "message_blank"]),
        ),
    ];
    for (path, body, codes) in cases {
        let (status, answer) = app.post_json(path, body.clone()).await;
        assert_eq!((status, &answer), (422, &codes), "{path} {body}");
    }
    let (_, home) = app.get_json("/api/activities/home").await;
    let uuid = home[0]["uuid"].as_str().unwrap().to_owned();
    let (status, answer) = app
        .post_json(
            &format!("/api/activities/{uuid}/reply"),
            json!({"message": "z".repeat(1025)}),
        )
        .await;
    assert_eq!((status, answer), (422, json!(["message_exceed_max_chars"])));
    let (status, answer) = app
        .post_json(&format!("/api/activities/{uuid}/reply"), json!({}))
        .await;
    assert_eq!((status, answer), (422, json!(["message_blank"])));
    let (status, answer) = app
        .post_json(
            "/api/activities",
            json!({"message": "x".repeat(280), "ttl": "1-hour"}),
        )
        .await;
    assert_eq!(status, 200, "280 characters is allowed: {answer}");
    assert_eq!(
        app.home_len().await,
        before + 1,
        "only the valid crud was stored"
    );
    let (_, shown) = app.get_json(&format!("/api/activities/{uuid}")).await;
    assert_eq!(
        shown["replies_count"], home[0]["replies_count"],
        "no reply was stored"
    );
}

async fn search_terms_are_checked(store: TestStore) {
    let app = TestApp::start_on(store, &[]).await;
    for path in [
        "/api/activities/search",
        "/api/activities/search?term=",
        "/api/activities/search?term=%20%20",
    ] {
        let (status, answer) = app.get_json(path).await;
        assert_eq!(
            (status, answer),
            (422, json!(["search_term_blank"])),
            "{path}"
        );
    }
    let padded = format!("a{}", "%20".repeat(280));
    let (status, answer) = app
        .get_json(&format!("/api/activities/search?term={padded}"))
        .await;
    assert_eq!(
        (status, answer),
        (422, json!(["search_term_exceed_max_chars"])),
        "the limit is on the term as sent"
    );
    let long = "a".repeat(10 * 1024);
    let (status, answer) = app
        .get_json(&format!("/api/activities/search?term={long}"))
        .await;
    assert_eq!(
        (status, answer),
        (422, json!(["search_term_exceed_max_chars"]))
    );
    let (status, answer) = app.get_json("/api/activities/search?term=%FF%FE").await;
    assert_eq!(
        status, 200,
        "undecodable bytes are searched as text: {answer}"
    );
}

async fn malformed_bodies_get_clear_4xx_and_store_nothing(store: TestStore) {
    let app = TestApp::start_on(store, &[]).await;
    let before = app.home_len().await;
    let json_type = "application/json";
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (json_type, "{not json".into(), 400, "bad_request"),
        (json_type, "".into(), 400, "bad_request"),
        (json_type, "[1, 2]".into(), 400, "bad_request"),
        (
            json_type,
            r#"["array crud", "1-hour"]"#.into(),
            400,
            "bad_request",
        ),
        (json_type, r#""a crud""#.into(), 400, "bad_request"),
        (json_type, "null".into(), 400, "bad_request"),
        (json_type, "42".into(), 400, "bad_request"),
        (
            json_type,
            r#"{"message": 42, "ttl": "1-day"}"#.into(),
            400,
            "bad_request",
        ),
        (
            json_type,
            r#"{"message": "hi", "ttl": ["1-day"]}"#.into(),
            400,
            "bad_request",
        ),
        (json_type, "\u{0}\u{1}binary".into(), 400, "bad_request"),
        (
            "text/plain",
            r#"{"message": "hi", "ttl": "1-day"}"#.into(),
            415,
            "unsupported_media_type",
        ),
        (
            "application/x-www-form-urlencoded",
            "message=hi&ttl=1-day".into(),
            415,
            "unsupported_media_type",
        ),
        (
            json_type,
            format!(
                r#"{{"message": "{}", "ttl": "1-day"}}"#,
                "m".repeat(100_000)
            ),
            413,
            "payload_too_large",
        ),
        (
            json_type,
            format!(
                r#"{{"message": "hi", "ttl": "1-day", "pad": "{}"}}"#,
                "p".repeat(70 * 1024)
            ),
            413,
            "payload_too_large",
        ),
    ];
    for (content_type, body, status, code) in cases {
        let shown = body.chars().take(40).collect::<String>();
        let (got, answer) = app.post_raw("/api/activities", content_type, body).await;
        assert_eq!(got, status, "{content_type} {shown}");
        assert_eq!(answer["error"], code, "{content_type} {shown}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let response = app
        .client
        .post(app.url("/api/activities"))
        .body(r#"{"message":"hi","ttl":"1-day"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415, "no content type");
    let (_, home) = app.get_json("/api/activities/home").await;
    let crud = &home[0];
    for (path, body) in [
        (
            format!("/api/activities/{}/reply", crud["uuid"].as_str().unwrap()),
            r#"["a reply"]"#,
        ),
        ("/api/messages".to_owned(), r#"["worf", "a message"]"#),
    ] {
        let (got, answer) = app.post_raw(&path, json_type, body).await;
        assert_eq!(
            (got, &answer["error"]),
            (400, &json!("bad_request")),
            "{path}"
        );
        assert!(
            answer["message"].as_str().unwrap().contains("JSON object"),
            "{answer}"
        );
    }
    assert_eq!(app.home_len().await, before, "nothing was stored");
    let (_, shown) = app
        .get_json(&format!(
            "/api/activities/{}",
            crud["uuid"].as_str().unwrap()
        ))
        .await;
    assert_eq!(shown["replies_count"], crud["replies_count"], "no reply");
}

async fn a_chunked_body_over_the_limit_is_refused(store: TestStore) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::start_on(store, &[]).await;
    let before = app.home_len().await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = "POST /api/activities HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
                transfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("400\r\n{}\r\n", " ".repeat(1024));
    for _ in 0..100 {
        // The server may answer and close before every chunk is written.
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "{}",
        answer.lines().next().unwrap_or_default()
    );
    assert!(answer.contains("payload_too_large"));
    assert_eq!(app.home_len().await, before);
}

async fn two_hundred_parallel_creates_all_land_once(store: TestStore) {
    let app = TestApp::start_on(store, &[]).await;
    let before = app.home_len().await;
    let creates = (0..200).map(|i| {
        let client = app.client.clone();
        let url = app.url("/api/activities");
        tokio::spawn(async move {
            let response = client
                .post(url)
                .json(&json!({"message": format!("parallel crud {i}"), "ttl": "1-day"}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()["uuid"]
                .as_str()
                .unwrap()
                .to_owned()
        })
    });
    let mut created = HashSet::new();
    for create in creates.collect::<Vec<_>>() {
        created.insert(create.await.unwrap());
    }
    assert_eq!(created.len(), 200);
    let (_, home) = app.get_json("/api/activities/home").await;
    let list = home.as_array().unwrap();
    assert_eq!(list.len(), before + 200);
    let shown: Vec<&str> = list
        .iter()
        .filter(|a| a["message"].as_str().unwrap().starts_with("parallel crud "))
        .map(|a| a["uuid"].as_str().unwrap())
        .collect();
    assert_eq!(shown.len(), 200, "each appears once");
    assert_eq!(
        shown.iter().copied().collect::<HashSet<_>>(),
        created.iter().map(String::as_str).collect()
    );
}

async fn cors_allows_only_the_configured_origins(store: TestStore) {
    let app = TestApp::start_on(store, &["--frontend-url", "https://3000-ws.gitpod.io/"]).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/api/activities"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,traceparent")
            .send()
    };
    let allowed = preflight("https://3000-ws.gitpod.io").await.unwrap();
    assert!(allowed.status().is_success());
    let headers = allowed.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://3000-ws.gitpod.io"
    );
    let methods = headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    for method in ["OPTIONS", "GET", "HEAD", "POST"] {
        assert!(methods.contains(method), "{methods}");
    }
    let allow_headers = headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    for header in [
        "content-type",
        "if-modified-since",
        "traceparent",
        "tracestate",
    ] {
        assert!(allow_headers.contains(header), "{allow_headers}");
    }
    let backend = preflight("http://localhost:4567").await.unwrap();
    assert_eq!(
        backend.headers()["access-control-allow-origin"],
        "http://localhost:4567"
    );
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    let simple = app
        .client
        .get(app.url("/api/activities/home"))
        .header("origin", "https://3000-ws.gitpod.io")
        .send()
        .await
        .unwrap();
    let exposed = simple.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        exposed.contains("location") && exposed.contains("link"),
        "{exposed}"
    );
}

async fn hostile_headers_do_not_break_requests(store: TestStore) {
    let app = TestApp::start_on(store, &[]).await;
    let huge = "x".repeat(8 * 1024);
    let response = app
        .client
        .get(app.url("/api/activities/home"))
        .header("user-agent", huge.as_str())
        .header("traceparent", huge.as_str())
        .header("x-amzn-trace-id", "Root=;Parent=;Sampled=;;;")
        .header("x-forwarded-for", "not-an-ip, 10.0.0.1")
        .header("host", "[::1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn health_check_answers_success(store: TestStore) {
    let app = TestApp::start_on(store, &[]).await;
    let (status, body) = app.get_json("/api/health-check").await;
    assert_eq!(status, 200);
    assert_eq!(body["success"], true);
    assert!(body["sinks"].is_object());
}

#[tokio::test]
async fn expired_cruds_disappear_from_feeds() {
    let dir = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now();
    let (db, expired) = support::app::database_with_crud(
        dir.path(),
        "gone already",
        now - chrono::Duration::hours(2),
        now - chrono::Duration::hours(1),
    )
    .await;
    let db = db.as_str();
    let app = TestApp::start(&["--database-path", db]).await;
    for path in [
        "/api/activities/home",
        "/api/activities/@worf",
        "/api/activities/search?term=gone",
    ] {
        let (_, list) = app.get_json(path).await;
        assert!(
            list.as_array()
                .unwrap()
                .iter()
                .all(|a| a["uuid"] != expired.as_str()),
            "{path}"
        );
    }
    let (status, _) = app.get_json(&format!("/api/activities/{expired}")).await;
    assert_eq!(status, 404);
    let (status, _) = app
        .post_json(
            &format!("/api/activities/{expired}/reply"),
            json!({"message": "too late"}),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_store_failure_is_a_json_500_without_internals() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cruddur.db");
    let db = db.to_str().unwrap();
    let app = TestApp::start(&["--database-path", db]).await;
    assert_eq!(app.get("/api/activities/home").await.status(), 200);
    let sabotage = rusqlite::Connection::open(db).unwrap();
    sabotage
        .execute_batch("ALTER TABLE activities RENAME TO gone")
        .unwrap();
    let response = app.get("/api/activities/home").await;
    assert_eq!(response.status(), 500);
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"], "internal_error");
    for secret in ["activities", "SELECT", "sqlite", "no such table"] {
        assert!(!text.contains(secret), "{text}");
    }
    sabotage
        .execute_batch("ALTER TABLE gone RENAME TO activities")
        .unwrap();
    assert_eq!(
        app.get("/api/activities/home").await.status(),
        200,
        "the process is still serving"
    );
}

async fn ready_answers_when_the_store_does(store: TestStore) {
    let app = TestApp::start_on(store, &[]).await;
    let (status, body) = app.get_json("/api/ready").await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"ready": true}));
}

/// Each test above that takes a [`TestStore`], once on each store.
macro_rules! on_both_stores {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::TestStore::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::TestStore::postgres().await).await;
                }
            )*
        }
    };
}

on_both_stores!(
    home_lists_live_cruds_newest_first_with_replies,
    a_new_crud_persists_and_shows_in_home_and_its_authors_feed,
    a_reply_shows_under_its_crud_and_bumps_the_count,
    a_reply_to_a_reply_lands_in_the_cruds_thread,
    messages_show_in_the_conversation_and_the_groups,
    notifications_and_search,
    unknown_things_are_404_json,
    wrong_method_is_405_json,
    validation_errors_are_422_code_lists_and_store_nothing,
    search_terms_are_checked,
    malformed_bodies_get_clear_4xx_and_store_nothing,
    a_chunked_body_over_the_limit_is_refused,
    two_hundred_parallel_creates_all_land_once,
    cors_allows_only_the_configured_origins,
    hostile_headers_do_not_break_requests,
    health_check_answers_success,
    ready_answers_when_the_store_does,
);

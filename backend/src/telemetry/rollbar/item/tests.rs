use super::*;

fn origin() -> Origin {
    Origin {
        environment: "test".into(),
        host: "box".into(),
        root: "/src".into(),
        code_version: "abc123".into(),
    }
}

fn request(uri: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> RequestInfo {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    RequestInfo::new(
        &Method::POST,
        &uri.parse().unwrap(),
        &map,
        "10.0.0.7".into(),
        body,
    )
}

#[test]
fn secret_names_are_recognised_by_substring_and_case() {
    for name in [
        "password",
        "new_Password",
        "client_secret",
        "TOKEN",
        "refresh-token",
        "api_key",
        "x-api-key",
        "apiKey",
        "AWS_ACCESS_KEY_ID",
    ] {
        assert!(is_secret_name(name), "{name}");
    }
    for name in ["message", "ttl", "user_handle", "keyboard"] {
        assert!(!is_secret_name(name), "{name}");
    }
}

#[test]
fn headers_query_and_body_are_scrubbed() {
    let info = request(
        "/api/activities?token=canary1&term=hi&Api_Key=canary2&%74oken=canary3",
        &[
            ("host", "localhost:4567"),
            ("authorization", "Bearer canary4"),
            ("cookie", "session=canary5"),
            ("x-honeycomb-team", "canary6"),
            ("x-rollbar-access-token", "canary7"),
            ("x-api-key", "canary8"),
            ("x-session-token", "canary9"),
            ("user-agent", "curl/8"),
            ("accept", "text/html"),
            ("accept", "application/json"),
            ("cookie", "second=canary12"),
        ],
        Some(
            br#"{"message": "hello", "password": "canary10", "nested": [{"secret": "canary11"}]}"#,
        ),
    );
    let text = serde_json::to_string(&info.to_json()).unwrap();
    assert!(!text.contains("canary"), "{text}");
    assert_eq!(info.headers["user-agent"], "curl/8");
    assert_eq!(info.headers["authorization"], SCRUBBED);
    assert_eq!(info.headers["accept"], "text/html, application/json");
    assert_eq!(info.params["term"], "hi");
    assert_eq!(info.params["token"], SCRUBBED);
    assert_eq!(
        info.url,
        "http://localhost:4567/api/activities?token=********&term=hi&Api_Key=********&%74oken=********"
    );
    let body: Value = serde_json::from_str(info.body.as_deref().unwrap()).unwrap();
    assert_eq!(body["message"], "hello");
    assert_eq!(body["password"], SCRUBBED);
    assert_eq!(body["nested"][0]["secret"], SCRUBBED);
}

#[test]
fn a_body_that_is_not_json_is_left_out() {
    assert_eq!(request("/x", &[], Some(b"password=canary")).body, None);
    assert_eq!(
        scrub_query("a=%zz&b"),
        ("a=%zz&b".into(), {
            let mut m = Map::new();
            m.insert("a".into(), Value::from("%zz"));
            m.insert("b".into(), Value::from(""));
            m
        })
    );
}

#[test]
fn a_message_item_has_every_field_rollbar_needs() {
    let mut extra = Map::new();
    extra.insert("user_token".into(), Value::from("canary"));
    extra.insert("handle".into(), Value::from("worf"));
    let mut report = Report::new(
        RollbarLevel::Warning,
        Body::Message {
            text: "Hello World!".into(),
            extra,
        },
        "message Hello World!",
    );
    report.context = Some("/rollbar/test".into());
    report.trace = Some(TraceRef {
        trace_id: TraceId::from_hex("5759e988bd862e3fe1be46a994272793").unwrap(),
        span_id: SpanId::from_hex("53995c3f42cd8ad8").unwrap(),
    });
    report.request = Some(request("/rollbar/test", &[], None));
    let data = item_json(&report, &origin());
    assert_eq!(data["environment"], "test");
    assert_eq!(data["level"], "warning");
    assert_eq!(data["language"], "rust");
    assert!(data["timestamp"].as_i64().unwrap() > 1_600_000_000);
    assert_eq!(data["body"]["message"]["body"], "Hello World!");
    assert_eq!(data["body"]["message"]["user_token"], SCRUBBED);
    assert_eq!(data["body"]["message"]["handle"], "worf");
    assert_eq!(data["context"], "/rollbar/test");
    assert_eq!(data["server"]["code_version"], "abc123");
    assert_eq!(data["server"]["host"], "box");
    assert_eq!(
        data["custom"]["trace_id"],
        "5759e988bd862e3fe1be46a994272793"
    );
    assert_eq!(data["custom"]["span_id"], "53995c3f42cd8ad8");
    assert_eq!(
        data["custom"]["xray_trace_id"],
        "1-5759e988-bd862e3fe1be46a994272793"
    );
    assert_eq!(data["request"]["user_ip"], "10.0.0.7");
    assert_eq!(data["notifier"]["name"], "cruddur-backend");
    assert!(Uuid::parse_str(data["uuid"].as_str().unwrap()).is_ok());
    assert_eq!(data["fingerprint"], fingerprint("message Hello World!"));
}

#[test]
fn fingerprints_are_stable_and_distinct_per_site() {
    assert_eq!(fingerprint("panic a.rs:1:1"), fingerprint("panic a.rs:1:1"));
    assert_ne!(fingerprint("panic a.rs:1:1"), fingerprint("panic a.rs:2:1"));
    assert_eq!(fingerprint(""), "cbf29ce484222325");
}

const BACKTRACE: &str = "   0: std::backtrace::Backtrace::force_capture
             at /rustc/abc/library/std/src/backtrace.rs:312:13
   1: cruddur_backend::telemetry::rollbar::install_panic_hook::{{closure}}
             at ./backend/src/telemetry/rollbar/mod.rs:250:24
   2: <alloc::boxed::Box<dyn Fn(&PanicHookInfo)> as core::ops::function::Fn<(&PanicHookInfo,)>>::call
             at /rustc/abc/library/alloc/src/boxed.rs:2254:9
   3: std::panicking::rust_panic_with_hook
             at /rustc/abc/library/std/src/panicking.rs:841:13
   4: rollbar_panic::boom
             at ./tests/rollbar_panic.rs:20:5
   5: tokio::runtime::task::harness::poll
   6: main
";

#[test]
fn backtrace_frames_are_oldest_first_without_the_panic_machinery() {
    let frames = frames_from_backtrace(BACKTRACE);
    let methods: Vec<&str> = frames.iter().map(|f| f.method.as_str()).collect();
    assert_eq!(
        methods,
        [
            "main",
            "tokio::runtime::task::harness::poll",
            "rollbar_panic::boom"
        ]
    );
    assert_eq!(frames[2].filename, "./tests/rollbar_panic.rs");
    assert_eq!(frames[2].lineno, Some(20));
    assert_eq!(frames[0].filename, "<unknown>");
    assert_eq!(frames[0].lineno, None);
}

/// The same panic from a build whose debug info is line tables only: the
/// hook's frame has no path, only its file says whose it is.
const BACKTRACE_LINE_TABLES: &str = "   0: std::backtrace::Backtrace::force_capture
             at /rustc/abc/library/std/src/backtrace.rs:312:13
   1: {closure#0}
             at ./backend/src/telemetry/rollbar/mod.rs:274:43
   2: std::panicking::panic_with_hook
             at /rustc/abc/library/std/src/panicking.rs:842:13
   3: rollbar_panic::boom::{{closure}}
             at ./tests/rollbar_panic.rs:22:5
   4: poll<F>
             at /cargo/registry/src/axum-0.8.9/src/handler/mod.rs:217:38
";

#[test]
fn the_hook_is_left_out_when_debug_info_has_no_paths() {
    let frames = frames_from_backtrace(BACKTRACE_LINE_TABLES);
    let newest = frames.last().expect("frames");
    assert_eq!(newest.method, "rollbar_panic::boom::{{closure}}");
    assert_eq!(newest.filename, "./tests/rollbar_panic.rs");
    assert_eq!(frames.len(), 2);
}

#[test]
fn large_items_are_cut_to_fit_frames_first() {
    let frames: Vec<Frame> = (0..5000)
        .map(|i| Frame {
            filename: format!("src/file_{i}.rs"),
            lineno: Some(i),
            method: format!("crate::module::function_number_{i}"),
        })
        .collect();
    let report = Report::new(
        RollbarLevel::Critical,
        Body::Trace {
            class: "panic".into(),
            message: "boom".into(),
            stack: Stack::Frames(frames),
        },
        "panic",
    );
    let bytes = encode(item_json(&report, &origin()));
    assert!(bytes.len() <= MAX_PAYLOAD_BYTES);
    let sent: Value = serde_json::from_slice(&bytes).unwrap();
    let frames = sent["data"]["body"]["trace"]["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 2 * KEPT_FRAMES);
    assert_eq!(frames[0]["lineno"], 0);
    assert_eq!(frames[19]["lineno"], 4999);
    assert_eq!(
        sent["data"]["body"]["trace"]["exception"]["message"],
        "boom"
    );

    let huge = Report::new(
        RollbarLevel::Error,
        Body::Message {
            text: "x".repeat(400_000),
            extra: Map::new(),
        },
        "huge",
    );
    let bytes = encode(item_json(&huge, &origin()));
    assert!(bytes.len() <= MAX_PAYLOAD_BYTES);
    let sent: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(sent["data"]["level"], "error");
    assert!(
        sent["data"]["body"]["message"]["body"]
            .as_str()
            .unwrap()
            .len()
            < 2000
    );
}

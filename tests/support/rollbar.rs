//! A fake Rollbar item API for integration tests, on `127.0.0.1:<random>`.
//!
//! `POST /api/1/item/` takes one item as JSON, like api.rollbar.com. Every
//! request is recorded (its raw head and body bytes, for secret canaries)
//! and every item is validated against the item schema before it is
//! answered: required fields, levels, `body.trace` vs `body.message`
//! shapes, the uuid, the notifier. Problems are collected, so a test sees
//! them all with [`RollbarReceiver::problems`]; like Rollbar, an invalid
//! item is also answered 422 (the doctor's probe relies on it).
//!
//! Tests wait for requests with [`RollbarReceiver::wait_for_requests`],
//! woken by each request (no polling).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How the receiver answers items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200 `{"err": 0, "result": {"uuid": ...}}`.
    Accept,
    /// This status with `{"err": 1, "message": ...}` (401, 403, 500...).
    Status(u16),
    /// 429 with `X-Rate-Limit-Reset` this many seconds from now (epoch seconds).
    RateLimited { reset_in: u64 },
    /// Read the request, then never answer.
    Hang,
}

#[derive(Default)]
struct Recorded {
    items: Vec<Value>,
    raw: Vec<u8>,
    tokens: Vec<String>,
    problems: Vec<String>,
}

struct Shared {
    answer: Mutex<Answer>,
    recorded: Mutex<Recorded>,
    requests: watch::Sender<usize>,
}

impl Shared {
    fn recorded(&self) -> MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct RollbarReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Drop for RollbarReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

const LEVELS: &[&str] = &["debug", "info", "warning", "error", "critical"];

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && groups.iter().all(|g| {
            g.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        })
}

fn string_at<'a>(value: &'a Value, pointer: &str) -> Result<&'a str, String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{pointer} is missing or not a string"))
}

/// Checks one request body against Rollbar's item schema.
pub fn validate(item: &Value) -> Result<(), String> {
    let data = item.get("data").ok_or("no data")?;
    for field in ["/environment", "/platform", "/language", "/fingerprint"] {
        if string_at(data, field)?.is_empty() {
            return Err(format!("{field} is empty"));
        }
    }
    let level = string_at(data, "/level")?;
    if !LEVELS.contains(&level) {
        return Err(format!("level {level:?} is not a Rollbar level"));
    }
    if !data["timestamp"].is_i64() {
        return Err("timestamp is not whole epoch seconds".into());
    }
    let uuid = string_at(data, "/uuid")?;
    if !is_uuid(uuid) || uuid.as_bytes()[14] != b'4' {
        return Err(format!("uuid {uuid:?} is not a v4 uuid"));
    }
    string_at(data, "/notifier/name")?;
    string_at(data, "/notifier/version")?;
    for field in ["/server/host", "/server/root", "/server/code_version"] {
        string_at(data, field)?;
    }
    let body = data["body"].as_object().ok_or("body is not an object")?;
    match (body.get("trace"), body.get("message"), body.len()) {
        (Some(trace), None, 1) => {
            string_at(trace, "/exception/class")?;
            string_at(trace, "/exception/message")?;
            let frames = trace["frames"].as_array().ok_or("trace has no frames")?;
            for frame in frames {
                string_at(frame, "/filename")?;
                string_at(frame, "/method")?;
                if frame.get("lineno").is_some_and(|l| !l.is_u64()) {
                    return Err(format!("frame lineno is not a number: {frame}"));
                }
            }
        }
        (None, Some(message), 1) => {
            string_at(message, "/body")?;
        }
        _ => return Err("body must hold exactly one of trace and message".into()),
    }
    if let Some(request) = data.get("request") {
        for field in ["/url", "/method", "/user_ip", "/query_string"] {
            string_at(request, field)?;
        }
        if !request["headers"].is_object() {
            return Err("request.headers is not an object".into());
        }
    }
    if let Some(custom) = data.get("custom")
        && !custom.is_object()
    {
        return Err("custom is not an object".into());
    }
    Ok(())
}

async fn item(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    {
        let mut recorded = shared.recorded();
        for (name, value) in &headers {
            recorded.raw.extend_from_slice(name.as_str().as_bytes());
            recorded.raw.extend_from_slice(b": ");
            recorded.raw.extend_from_slice(value.as_bytes());
            recorded.raw.push(b'\n');
        }
        recorded.raw.extend_from_slice(&body);
        recorded.raw.push(b'\n');
        match headers
            .get("x-rollbar-access-token")
            .and_then(|v| v.to_str().ok())
        {
            Some(token) => recorded.tokens.push(token.to_owned()),
            None => recorded.problems.push("no X-Rollbar-Access-Token".into()),
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(item) => {
                if let Err(problem) = validate(&item) {
                    recorded.problems.push(format!("{problem}: {item}"));
                }
                recorded.items.push(item["data"].clone());
            }
            Err(err) => recorded.problems.push(format!("not JSON: {err}")),
        }
    }
    shared.requests.send_modify(|n| *n += 1);
    let answer = *shared.answer.lock().unwrap_or_else(PoisonError::into_inner);
    // Rollbar checks the token first, then refuses an invalid item with 422.
    let valid = serde_json::from_slice::<Value>(&body).is_ok_and(|item| validate(&item).is_ok());
    match answer {
        Answer::Accept if !valid => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"err": 1, "message": "Invalid format"})),
        )
            .into_response(),
        Answer::Accept => Json(json!({"err": 0, "result": {"uuid": "x"}})).into_response(),
        Answer::Status(code) => (
            StatusCode::from_u16(code).unwrap(),
            Json(json!({"err": 1, "message": "refused by the test"})),
        )
            .into_response(),
        Answer::RateLimited { reset_in } => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs();
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("x-rate-limit-reset", (now + reset_in).to_string())],
                Json(json!({"err": 1, "message": "rate limited"})),
            )
                .into_response()
        }
        Answer::Hang => std::future::pending().await,
    }
}

impl RollbarReceiver {
    pub async fn start(answer: Answer) -> RollbarReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            answer: Mutex::new(answer),
            recorded: Mutex::new(Recorded::default()),
            requests: watch::channel(0).0,
        });
        let app = axum::Router::new()
            .route("/api/1/item/", post(item))
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        RollbarReceiver {
            addr,
            shared,
            server,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}/api/1/item/", self.addr)
    }

    pub fn set_answer(&self, answer: Answer) {
        *self.shared.answer.lock().unwrap() = answer;
    }

    /// The `data` of every item received, in order.
    pub fn items(&self) -> Vec<Value> {
        self.shared.recorded().items.clone()
    }

    /// Every byte received: header lines and bodies.
    pub fn raw(&self) -> String {
        String::from_utf8_lossy(&self.shared.recorded().raw).into_owned()
    }

    pub fn tokens(&self) -> Vec<String> {
        self.shared.recorded().tokens.clone()
    }

    /// Schema violations found so far; a test expects none.
    pub fn problems(&self) -> Vec<String> {
        self.shared.recorded().problems.clone()
    }

    pub fn requests(&self) -> usize {
        *self.shared.requests.borrow()
    }

    /// Waits until `n` requests arrived (or `timeout`); answers how many did.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> usize {
        let mut requests = self.shared.requests.subscribe();
        let _ = tokio::time::timeout(timeout, requests.wait_for(|seen| *seen >= n)).await;
        self.requests()
    }
}

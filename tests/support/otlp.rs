//! A fake OTLP traces receiver for integration tests.
//!
//! It speaks the real wire protocols the `opentelemetry-otlp` exporters use:
//!
//! * [`OtlpReceiver::http`]: OTLP/HTTP, `POST /v1/traces` with an
//!   `application/x-protobuf` body holding an `ExportTraceServiceRequest`;
//! * [`OtlpReceiver::grpc`]: OTLP/gRPC, the `TraceService/Export` method served
//!   by tonic.
//!
//! Every export request is decoded and its spans are flattened into
//! [`ReceivedSpan`]s (ids as lowercase hex, attributes as [`AttrValue`]s, the
//! resource attributes copied onto each span). Tests wait for data with
//! [`OtlpReceiver::wait_for_spans`] / [`OtlpReceiver::wait_for_requests`],
//! which are woken by each request (no polling).
//!
//! Metrics arrive the same ways (`POST /v1/metrics`, `MetricsService/Export`)
//! and are kept apart from the spans, with their own headers: see
//! [`OtlpReceiver::metric_exports`] and [`MetricPoint`].
//!
//! The HTTP receiver also answers Honeycomb's `GET /1/auth` for
//! [`HONEYCOMB_KEY`] and [`HONEYCOMB_CLASSIC_KEY`] (401 for other keys).
//!
//! The receiver serves on `127.0.0.1:<random port>` until it is dropped.
//!
//! ```ignore
//! let otlp = OtlpReceiver::http(Behavior::Accept).await;
//! // ... point the app's exporter at otlp.endpoint() and make it emit spans ...
//! let spans = otlp.wait_for_spans(1, Duration::from_secs(10)).await;
//! let server = spans.iter().find(|s| s.kind == SPAN_KIND_SERVER).unwrap();
//! assert_eq!(server.int_attr("http.response.status_code"), Some(200));
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// `Span.kind` values (the proto `SpanKind` enum).
pub const SPAN_KIND_UNSPECIFIED: i32 = 0;
pub const SPAN_KIND_INTERNAL: i32 = 1;
pub const SPAN_KIND_SERVER: i32 = 2;
pub const SPAN_KIND_CLIENT: i32 = 3;
pub const SPAN_KIND_PRODUCER: i32 = 4;
pub const SPAN_KIND_CONSUMER: i32 = 5;

/// `Span.status.code` values (the proto `StatusCode` enum).
pub const STATUS_CODE_UNSET: i32 = 0;
pub const STATUS_CODE_OK: i32 = 1;
pub const STATUS_CODE_ERROR: i32 = 2;

/// How the receiver answers export requests.
///
/// Whatever the behavior, every request is counted, its headers are recorded
/// and, if its body decodes, its spans are recorded, *before* it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// Answer success (HTTP 200 / gRPC OK) with an empty `ExportTraceServiceResponse`.
    Accept,
    /// Answer with this HTTP status. A 2xx status is a success. Over gRPC a
    /// non-2xx status becomes the matching gRPC status (500 -> INTERNAL,
    /// 429 -> RESOURCE_EXHAUSTED, 503 -> UNAVAILABLE, ... see [`grpc_status`]).
    Status(u16),
    /// Read the request, then never answer (until the receiver is dropped).
    Hang,
}

/// One span as received, flattened out of its resource and scope.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// 16 lowercase hex digits, or `""` for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// Proto `SpanKind`: 1 internal, 2 server, 3 client (see `SPAN_KIND_*`).
    pub kind: i32,
    /// Proto `StatusCode`: 0 unset, 1 ok, 2 error (see `STATUS_CODE_*`).
    pub status_code: i32,
    pub status_message: String,
    pub attributes: BTreeMap<String, AttrValue>,
    /// `(event name, event attributes)`, in order.
    pub events: Vec<(String, BTreeMap<String, AttrValue>)>,
    /// Attributes of the resource the span was exported under.
    pub resource: BTreeMap<String, AttrValue>,
    /// Name of the instrumentation scope the span was exported under.
    pub scope_name: String,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
}

impl ReceivedSpan {
    pub fn attr(&self, key: &str) -> Option<&AttrValue> {
        self.attributes.get(key)
    }

    /// The attribute's value if it is a string.
    pub fn str_attr(&self, key: &str) -> Option<&str> {
        self.attr(key).and_then(AttrValue::as_str)
    }

    /// The attribute's value if it is an integer.
    pub fn int_attr(&self, key: &str) -> Option<i64> {
        self.attr(key).and_then(AttrValue::as_int)
    }

    /// The attribute's value if it is a boolean.
    pub fn bool_attr(&self, key: &str) -> Option<bool> {
        self.attr(key).and_then(AttrValue::as_bool)
    }

    /// The resource attribute's value if it is a string (e.g. `service.name`).
    pub fn resource_str(&self, key: &str) -> Option<&str> {
        self.resource.get(key).and_then(AttrValue::as_str)
    }

    /// Attributes of the first event with this name.
    pub fn event(&self, name: &str) -> Option<&BTreeMap<String, AttrValue>> {
        self.events
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, attrs)| attrs)
    }

    pub fn is_root(&self) -> bool {
        self.parent_span_id.is_empty()
    }

    pub fn duration_ms(&self) -> f64 {
        (self.end_unix_nano - self.start_unix_nano) as f64 / 1e6
    }
}

/// The server spans' durations in milliseconds by `http.route`, each list
/// sorted: what the trace explorer's queries are checked against.
pub fn server_durations_by_route(spans: &[ReceivedSpan]) -> BTreeMap<String, Vec<f64>> {
    let mut by_route: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for span in spans.iter().filter(|s| s.kind == SPAN_KIND_SERVER) {
        let route = span
            .str_attr("http.route")
            .expect("a server span has a route");
        by_route
            .entry(route.to_owned())
            .or_default()
            .push(span.duration_ms());
    }
    for values in by_route.values_mut() {
        values.sort_by(f64::total_cmp);
    }
    by_route
}

/// The nearest-rank percentile of `sorted`: the value at ceil(p/100 n) - 1.
pub fn nearest_rank(sorted: &[f64], percent: f64) -> f64 {
    sorted[(percent / 100.0 * sorted.len() as f64).ceil() as usize - 1]
}

/// An attribute value. Arrays, key-value lists and bytes are rendered as text
/// in [`AttrValue::Other`] (arrays as `[a, b]`, lists as `{k: v}`, bytes as hex).
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    Other(String),
}

impl AttrValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            AttrValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            AttrValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_double(&self) -> Option<f64> {
        match self {
            AttrValue::Double(d) => Some(*d),
            _ => None,
        }
    }

    fn from_proto(value: Option<&AnyValue>) -> Self {
        match value.and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => AttrValue::Str(s.clone()),
            Some(any_value::Value::IntValue(i)) => AttrValue::Int(*i),
            Some(any_value::Value::DoubleValue(d)) => AttrValue::Double(*d),
            Some(any_value::Value::BoolValue(b)) => AttrValue::Bool(*b),
            other => AttrValue::Other(render(other)),
        }
    }
}

/// Text rendering of any proto value (used for the non-scalar ones).
fn render(value: Option<&any_value::Value>) -> String {
    use any_value::Value;
    let render_any = |v: &AnyValue| render(v.value.as_ref());
    match value {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::BytesValue(bytes)) => hex(bytes),
        Some(Value::StringValueStrindex(i)) => format!("strindex:{i}"),
        Some(Value::ArrayValue(array)) => {
            let items: Vec<String> = array.values.iter().map(render_any).collect();
            format!("[{}]", items.join(", "))
        }
        Some(Value::KvlistValue(list)) => {
            let items: Vec<String> = list
                .values
                .iter()
                .map(|kv| {
                    let v = kv.value.as_ref().map(render_any).unwrap_or_default();
                    format!("{}: {v}", kv.key)
                })
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

fn attr_map(attributes: &[KeyValue]) -> BTreeMap<String, AttrValue> {
    attributes
        .iter()
        .map(|kv| (kv.key.clone(), AttrValue::from_proto(kv.value.as_ref())))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Flattens an export request into one [`ReceivedSpan`] per span.
pub fn flatten(request: &ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in &request.resource_spans {
        let resource = resource_spans
            .resource
            .as_ref()
            .map(|r| attr_map(&r.attributes))
            .unwrap_or_default();
        for scope_spans in &resource_spans.scope_spans {
            let scope_name = scope_spans
                .scope
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default();
            for span in &scope_spans.spans {
                let (status_code, status_message) = span
                    .status
                    .as_ref()
                    .map(|s| (s.code, s.message.clone()))
                    .unwrap_or_default();
                out.push(ReceivedSpan {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name.clone(),
                    kind: span.kind,
                    status_code,
                    status_message,
                    attributes: attr_map(&span.attributes),
                    events: span
                        .events
                        .iter()
                        .map(|e| (e.name.clone(), attr_map(&e.attributes)))
                        .collect(),
                    resource: resource.clone(),
                    scope_name: scope_name.clone(),
                    start_unix_nano: span.start_time_unix_nano,
                    end_unix_nano: span.end_time_unix_nano,
                });
            }
        }
    }
    out
}

/// The gRPC status a [`Behavior::Status`] HTTP status maps to (`None` for 2xx).
pub fn grpc_status(http_status: u16) -> Option<tonic::Status> {
    if (200..300).contains(&http_status) {
        return None;
    }
    let message = format!("injected failure (HTTP {http_status})");
    Some(match http_status {
        400 => tonic::Status::invalid_argument(message),
        401 => tonic::Status::unauthenticated(message),
        403 => tonic::Status::permission_denied(message),
        404 | 501 => tonic::Status::unimplemented(message),
        408 | 504 => tonic::Status::deadline_exceeded(message),
        429 => tonic::Status::resource_exhausted(message),
        500 => tonic::Status::internal(message),
        502 | 503 => tonic::Status::unavailable(message),
        _ => tonic::Status::unknown(message),
    })
}

#[derive(Debug)]
struct Recorded {
    behavior: Behavior,
    requests: usize,
    /// When each request arrived.
    arrivals: Vec<std::time::Instant>,
    spans: Vec<ReceivedSpan>,
    last_headers: BTreeMap<String, String>,
    /// Metrics export requests, apart from the spans' requests.
    metrics: Vec<MetricExport>,
}

struct Shared {
    state: Mutex<Recorded>,
    /// Signalled (notify_waiters) after each request has been recorded.
    notify: Notify,
    /// Changes to "closed" when the receiver is dropped; ends `Hang`s.
    shutdown: watch::Receiver<()>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Recorded> {
        // A panicking test thread must not hide the recorded data from others.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one request and returns how to answer it.
    fn record(&self, headers: &HeaderMap, request: Option<&ExportTraceServiceRequest>) -> Behavior {
        let behavior = {
            let mut state = self.lock();
            state.requests += 1;
            state.arrivals.push(std::time::Instant::now());
            state.last_headers = header_map(headers);
            if let Some(request) = request {
                state.spans.extend(flatten(request));
            }
            state.behavior
        };
        self.notify.notify_waiters();
        behavior
    }

    /// Records one metrics request (`None`: it did not decode) and returns
    /// how to answer it.
    fn record_metrics(
        &self,
        headers: &HeaderMap,
        request: Option<&ExportMetricsServiceRequest>,
    ) -> Behavior {
        let behavior = {
            let mut state = self.lock();
            state.metrics.push(MetricExport {
                headers: header_map(headers),
                points: request.map(flatten_metrics).unwrap_or_default(),
                decoded: request.is_some(),
            });
            state.behavior
        };
        self.notify.notify_waiters();
        behavior
    }

    /// Resolves only once the receiver has been dropped.
    async fn hang(&self) {
        let mut shutdown = self.shutdown.clone();
        while shutdown.changed().await.is_ok() {}
    }
}

fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

/// A running fake OTLP receiver; stops when dropped.
pub struct OtlpReceiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    /// Dropped with the receiver, which releases any hanging request.
    _shutdown: watch::Sender<()>,
}

impl OtlpReceiver {
    /// OTLP/HTTP receiver: `POST /v1/traces`, protobuf body.
    ///
    /// A body that is not `content-type: application/x-protobuf` gets 415 and
    /// one that does not decode gets 400 (both still count as requests).
    pub async fn http(behavior: Behavior) -> Self {
        let listener = bind().await;
        let addr = listener.local_addr().expect("receiver local addr");
        let (shutdown_tx, shared) = shared(behavior);
        let app = axum::Router::new()
            .route("/v1/traces", post(http_export))
            .route("/v1/metrics", post(http_metrics))
            .route("/1/auth", get(honeycomb_auth))
            .layer(DefaultBodyLimit::disable())
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("fake OTLP/HTTP receiver stopped: {e}");
            }
        });
        Self {
            addr,
            shared,
            task,
            _shutdown: shutdown_tx,
        }
    }

    /// OTLP/gRPC receiver: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
    pub async fn grpc(behavior: Behavior) -> Self {
        let listener = bind().await;
        let addr = listener.local_addr().expect("receiver local addr");
        let (shutdown_tx, shared) = shared(behavior);
        let service = TraceServiceServer::new(GrpcTraces(shared.clone()));
        let metrics = MetricsServiceServer::new(GrpcMetrics(shared.clone()));
        let task = tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            if let Err(e) = tonic::transport::Server::builder()
                .add_service(service)
                .add_service(metrics)
                .serve_with_incoming(incoming)
                .await
            {
                eprintln!("fake OTLP/gRPC receiver stopped: {e}");
            }
        });
        Self {
            addr,
            shared,
            task,
            _shutdown: shutdown_tx,
        }
    }

    /// `http://127.0.0.1:PORT` (the OTLP endpoint to configure an exporter with).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/v1/traces` (the full OTLP/HTTP traces URL).
    pub fn traces_url(&self) -> String {
        format!("{}/v1/traces", self.endpoint())
    }

    /// Changes how subsequent requests are answered.
    pub fn set_behavior(&self, behavior: Behavior) {
        self.shared.lock().behavior = behavior;
    }

    /// All spans received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.shared.lock().spans.clone()
    }

    /// Number of export requests received so far (whatever they were answered).
    pub fn requests(&self) -> usize {
        self.shared.lock().requests
    }

    /// When each request arrived, in order.
    pub fn arrivals(&self) -> Vec<std::time::Instant> {
        self.shared.lock().arrivals.clone()
    }

    /// Value of a header (or gRPC metadata entry) on the last request; the
    /// name is case-insensitive, repeated headers are joined with `", "`.
    pub fn header(&self, name: &str) -> Option<String> {
        self.shared
            .lock()
            .last_headers
            .get(&name.to_ascii_lowercase())
            .cloned()
    }

    /// All headers of the last request (lowercase names).
    pub fn headers(&self) -> BTreeMap<String, String> {
        self.shared.lock().last_headers.clone()
    }

    /// Waits until at least `n` spans have arrived or `timeout` elapses, and
    /// returns the spans received so far (fewer than `n` on timeout).
    pub async fn wait_for_spans(&self, n: usize, timeout: Duration) -> Vec<ReceivedSpan> {
        self.wait_until(timeout, |s| s.spans.len() >= n).await;
        self.spans()
    }

    /// Waits until the spans received satisfy `done` or `timeout` elapses,
    /// and returns the spans received so far.
    pub async fn wait_for_spans_where(
        &self,
        done: impl Fn(&[ReceivedSpan]) -> bool,
        timeout: Duration,
    ) -> Vec<ReceivedSpan> {
        self.wait_until(timeout, |s| done(&s.spans)).await;
        self.spans()
    }

    /// Waits until at least `n` requests have arrived or `timeout` elapses,
    /// and returns the number of requests received so far.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> usize {
        self.wait_until(timeout, |s| s.requests >= n).await;
        self.requests()
    }

    /// Every metrics export request so far, in arrival order.
    pub fn metric_exports(&self) -> Vec<MetricExport> {
        self.shared.lock().metrics.clone()
    }

    /// Waits until the metrics requests received satisfy `done` or
    /// `timeout` elapses, and returns them.
    pub async fn wait_for_metrics(
        &self,
        done: impl Fn(&[MetricExport]) -> bool,
        timeout: Duration,
    ) -> Vec<MetricExport> {
        self.wait_until(timeout, |s| done(&s.metrics)).await;
        self.metric_exports()
    }

    async fn wait_until(&self, timeout: Duration, done: impl Fn(&Recorded) -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Created before the check: `notify_waiters` wakes every `Notified`
            // that exists when it is called, even one not yet polled.
            let notified = self.shared.notify.notified();
            if done(&self.shared.lock()) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for OtlpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpReceiver")
            .field("addr", &self.addr)
            .field("state", &*self.shared.lock())
            .finish()
    }
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fake OTLP receiver on 127.0.0.1:0")
}

fn shared(behavior: Behavior) -> (watch::Sender<()>, Arc<Shared>) {
    let (shutdown_tx, shutdown_rx) = watch::channel(());
    let shared = Arc::new(Shared {
        state: Mutex::new(Recorded {
            behavior,
            requests: 0,
            arrivals: Vec::new(),
            spans: Vec::new(),
            last_headers: BTreeMap::new(),
            metrics: Vec::new(),
        }),
        notify: Notify::new(),
        shutdown: shutdown_rx,
    });
    (shutdown_tx, shared)
}

/// The keys `GET /1/auth` knows, as Honeycomb's auth endpoint answers
/// them: an environment's ingest key, and a Classic key (no environment).
pub const HONEYCOMB_KEY: &str = "hcaik_test_environment_key_0123";
pub const HONEYCOMB_CLASSIC_KEY: &str = "0123456789abcdef0123456789abcdef";

/// Honeycomb's `GET /1/auth`: which team and environment a key belongs to;
/// 401 for any other key. Not counted as an export request.
async fn honeycomb_auth(headers: HeaderMap) -> Response {
    let key = headers
        .get("x-honeycomb-team")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let team = serde_json::json!({"name": "Cruddur Test", "slug": "cruddur-test"});
    let environment = match key {
        HONEYCOMB_KEY => serde_json::json!({"name": "test", "slug": "test"}),
        HONEYCOMB_CLASSIC_KEY => serde_json::json!({"name": "", "slug": ""}),
        _ => return (StatusCode::UNAUTHORIZED, "unknown API key").into_response(),
    };
    axum::Json(serde_json::json!({
        "api_key_access": {"events": true},
        "team": team,
        "environment": environment,
    }))
    .into_response()
}

/// The body as `T` (named `what` in the refusal) when it is
/// `application/x-protobuf` and decodes; else the refusal (415, or 400).
fn decode_protobuf<T: prost::Message + Default>(
    headers: &HeaderMap,
    body: Bytes,
    what: &str,
) -> Result<T, (StatusCode, String)> {
    let is_protobuf = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-protobuf"));
    if !is_protobuf {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected content-type: application/x-protobuf".into(),
        ));
    }
    T::decode(body).map_err(|e| (StatusCode::BAD_REQUEST, format!("bad {what}: {e}")))
}

/// The OTLP/HTTP answer `behavior` asks for; `success` is the protobuf
/// response body of an accepted export.
async fn http_answer(shared: &Shared, behavior: Behavior, success: Vec<u8>) -> Response {
    let accepted = |status| {
        (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            )],
            success,
        )
            .into_response()
    };
    match behavior {
        Behavior::Accept => accepted(StatusCode::OK),
        Behavior::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if status.is_success() {
                accepted(status)
            } else if status == StatusCode::TOO_MANY_REQUESTS {
                // As the OTLP/HTTP spec has a throttling server answer.
                (
                    status,
                    [(header::RETRY_AFTER, "1")],
                    format!("injected failure (HTTP {code})"),
                )
                    .into_response()
            } else {
                (status, format!("injected failure (HTTP {code})")).into_response()
            }
        }
        Behavior::Hang => {
            shared.hang().await;
            (StatusCode::SERVICE_UNAVAILABLE, "receiver shut down").into_response()
        }
    }
}

/// The OTLP/gRPC answer `behavior` asks for.
async fn grpc_answer<T: Default>(
    shared: &Shared,
    behavior: Behavior,
) -> Result<tonic::Response<T>, tonic::Status> {
    match behavior {
        Behavior::Accept => Ok(tonic::Response::new(T::default())),
        Behavior::Status(code) => match grpc_status(code) {
            None => Ok(tonic::Response::new(T::default())),
            Some(status) => Err(status),
        },
        Behavior::Hang => {
            shared.hang().await;
            Err(tonic::Status::unavailable("receiver shut down"))
        }
    }
}

async fn http_export(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match decode_protobuf::<ExportTraceServiceRequest>(&headers, body, "ExportTraceServiceRequest")
    {
        Ok(request) => {
            let behavior = shared.record(&headers, Some(&request));
            let success = ExportTraceServiceResponse::default().encode_to_vec();
            http_answer(&shared, behavior, success).await
        }
        Err(refused) => {
            shared.record(&headers, None);
            refused.into_response()
        }
    }
}

struct GrpcTraces(Arc<Shared>);

#[tonic::async_trait]
impl TraceService for GrpcTraces {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = request.metadata().clone().into_headers();
        let behavior = self.0.record(&headers, Some(request.get_ref()));
        grpc_answer(&self.0, behavior).await
    }
}

/// One metrics export request as it arrived.
#[derive(Debug, Clone)]
pub struct MetricExport {
    /// Its headers (gRPC: its metadata), lowercase names.
    pub headers: BTreeMap<String, String>,
    pub points: Vec<MetricPoint>,
    /// Whether its body decoded as an `ExportMetricsServiceRequest`.
    pub decoded: bool,
}

/// `AggregationTemporality` values (the proto enum).
pub const TEMPORALITY_DELTA: i32 = 1;
pub const TEMPORALITY_CUMULATIVE: i32 = 2;

/// One data point of a received metric, with its metric's name, unit and
/// kind, and the resource's attributes.
#[derive(Debug, Clone)]
pub struct MetricPoint {
    pub name: String,
    pub unit: String,
    /// `histogram`, `sum` or `gauge`.
    pub kind: &'static str,
    /// The proto's `AggregationTemporality` (0 for gauges).
    pub temporality: i32,
    pub monotonic: bool,
    pub attributes: BTreeMap<String, AttrValue>,
    pub resource: BTreeMap<String, AttrValue>,
    /// A histogram's count; a sum's or gauge's value (as a float).
    pub count: u64,
    pub value: f64,
    pub bucket_counts: Vec<u64>,
    pub bounds: Vec<f64>,
}

impl MetricPoint {
    pub fn str_attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(AttrValue::as_str)
    }

    pub fn int_attr(&self, key: &str) -> Option<i64> {
        self.attributes.get(key).and_then(AttrValue::as_int)
    }
}

fn number(value: Option<&number_data_point::Value>) -> f64 {
    match value {
        Some(number_data_point::Value::AsDouble(v)) => *v,
        Some(number_data_point::Value::AsInt(v)) => *v as f64,
        None => 0.0,
    }
}

/// Every data point of `request`.
pub fn flatten_metrics(request: &ExportMetricsServiceRequest) -> Vec<MetricPoint> {
    let mut out = Vec::new();
    for resource_metrics in &request.resource_metrics {
        let resource = resource_metrics
            .resource
            .as_ref()
            .map(|r| attr_map(&r.attributes))
            .unwrap_or_default();
        for scope in &resource_metrics.scope_metrics {
            for m in &scope.metrics {
                let point = |kind, temporality, monotonic, attributes: &[KeyValue]| MetricPoint {
                    name: m.name.clone(),
                    unit: m.unit.clone(),
                    kind,
                    temporality,
                    monotonic,
                    attributes: attr_map(attributes),
                    resource: resource.clone(),
                    count: 0,
                    value: 0.0,
                    bucket_counts: Vec::new(),
                    bounds: Vec::new(),
                };
                match &m.data {
                    Some(metric::Data::Histogram(h)) => {
                        for p in &h.data_points {
                            out.push(MetricPoint {
                                count: p.count,
                                value: p.sum.unwrap_or_default(),
                                bucket_counts: p.bucket_counts.clone(),
                                bounds: p.explicit_bounds.clone(),
                                ..point(
                                    "histogram",
                                    h.aggregation_temporality,
                                    false,
                                    &p.attributes,
                                )
                            });
                        }
                    }
                    Some(metric::Data::Sum(sum)) => {
                        for p in &sum.data_points {
                            out.push(MetricPoint {
                                value: number(p.value.as_ref()),
                                ..point(
                                    "sum",
                                    sum.aggregation_temporality,
                                    sum.is_monotonic,
                                    &p.attributes,
                                )
                            });
                        }
                    }
                    Some(metric::Data::Gauge(gauge)) => {
                        for p in &gauge.data_points {
                            out.push(MetricPoint {
                                value: number(p.value.as_ref()),
                                ..point("gauge", 0, false, &p.attributes)
                            });
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

async fn http_metrics(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match decode_protobuf::<ExportMetricsServiceRequest>(
        &headers,
        body,
        "ExportMetricsServiceRequest",
    ) {
        Ok(request) => {
            let behavior = shared.record_metrics(&headers, Some(&request));
            let success = ExportMetricsServiceResponse::default().encode_to_vec();
            http_answer(&shared, behavior, success).await
        }
        Err(refused) => {
            shared.record_metrics(&headers, None);
            refused.into_response()
        }
    }
}

struct GrpcMetrics(Arc<Shared>);

#[tonic::async_trait]
impl MetricsService for GrpcMetrics {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let headers = request.metadata().clone().into_headers();
        let behavior = self.0.record_metrics(&headers, Some(request.get_ref()));
        grpc_answer(&self.0, behavior).await
    }
}

//! The telemetry destinations' stand-in for `bench/run`: an OTLP/HTTP
//! receiver, an X-Ray daemon and a CloudWatch Logs endpoint in one small
//! process, so that what the load generator's core spends on them is as
//! little as can be. It reads every body whole and counts it, and decodes
//! nothing: the tests check what the sinks send (against moto and real
//! protobuf decoders); the bench measures what sending costs the server.
//!
//! On `127.0.0.1:PORT`, TCP and UDP:
//! - `POST /v1/traces` and `POST /v1/metrics`: 200, an empty protobuf body.
//! - `POST /` with `X-Amz-Target: Logs_20140328.<Operation>` (the AWS
//!   JSON protocol, as the AWS SDK sends it to `AWS_ENDPOINT_URL`): 200 and
//!   `{}`, which is a whole answer to CreateLogGroup, CreateLogStream and
//!   PutLogEvents; PutLogEvents' log events are counted.
//! - UDP datagrams (X-Ray segment documents): counted.
//!
//! Prints its totals on SIGTERM or SIGINT, in the line `bench/run` shows
//! under its table. Not shipped: `bench/run` builds it
//! (`cargo build --release --example stand_in`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::signal::unix::{SignalKind, signal};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Default)]
struct Counts {
    traces: AtomicU64,
    trace_bytes: AtomicU64,
    metrics: AtomicU64,
    cloudwatch_calls: AtomicU64,
    log_events: AtomicU64,
    log_bytes: AtomicU64,
    datagrams: AtomicU64,
}

impl Counts {
    fn line(&self) -> String {
        format!(
            "stand-in: otlp_requests={} otlp_bytes={} otlp_metrics={} xray_datagrams={} \
             cloudwatch_calls={} log_events={} log_bytes={}",
            self.traces.load(Relaxed),
            self.trace_bytes.load(Relaxed),
            self.metrics.load(Relaxed),
            self.datagrams.load(Relaxed),
            self.cloudwatch_calls.load(Relaxed),
            self.log_events.load(Relaxed),
            self.log_bytes.load(Relaxed),
        )
    }
}

const PROTOBUF: [(HeaderName, &str); 1] = [(CONTENT_TYPE, "application/x-protobuf")];

async fn traces(State(counts): State<Arc<Counts>>, body: Bytes) -> impl IntoResponse {
    counts.traces.fetch_add(1, Relaxed);
    counts.trace_bytes.fetch_add(body.len() as u64, Relaxed);
    PROTOBUF
}

async fn metrics(State(counts): State<Arc<Counts>>, _body: Bytes) -> impl IntoResponse {
    counts.metrics.fetch_add(1, Relaxed);
    PROTOBUF
}

async fn cloudwatch(
    State(counts): State<Arc<Counts>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let Some(operation) = target.strip_prefix("Logs_20140328.") else {
        return (StatusCode::BAD_REQUEST, "not a CloudWatch Logs call").into_response();
    };
    counts.cloudwatch_calls.fetch_add(1, Relaxed);
    if operation == "PutLogEvents" {
        // Each event is an object with a "timestamp": counted, not parsed.
        let events = body.windows(12).filter(|w| w == b"\"timestamp\":").count();
        counts.log_events.fetch_add(events as u64, Relaxed);
        counts.log_bytes.fetch_add(body.len() as u64, Relaxed);
    }
    ([(CONTENT_TYPE, "application/x-amz-json-1.1")], "{}").into_response()
}

async fn count_datagrams(socket: tokio::net::UdpSocket, counts: Arc<Counts>) {
    let mut buffer = vec![0u8; 65536];
    while socket.recv(&mut buffer).await.is_ok() {
        counts.datagrams.fetch_add(1, Relaxed);
    }
}

async fn run(port: u16) -> std::io::Result<()> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let counts = Arc::new(Counts::default());
    let udp = tokio::net::UdpSocket::bind(address).await?;
    tokio::spawn(count_datagrams(udp, counts.clone()));
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .route("/", post(cloudwatch).get(|| async { "stand-in" }))
        .layer(DefaultBodyLimit::disable())
        .with_state(counts.clone());
    let listener = tokio::net::TcpListener::bind(address).await?;
    let (mut term, mut int) = (
        signal(SignalKind::terminate())?,
        signal(SignalKind::interrupt())?,
    );
    println!("stand-in listening on http://{address} (TCP and UDP)");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
        .await?;
    println!("{}", counts.line());
    Ok(())
}

fn main() -> ExitCode {
    let Some(port) = std::env::args()
        .nth(1)
        .and_then(|port| port.parse::<u16>().ok())
    else {
        eprintln!("usage: stand_in PORT   (binds 127.0.0.1, TCP and UDP)");
        return ExitCode::from(2);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match runtime.and_then(|runtime| runtime.block_on(run(port))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("stand-in: {err}");
            ExitCode::FAILURE
        }
    }
}

//! Serving HTTP with the limits a server open to the internet needs, which
//! `axum::serve` leaves out: a cap on connections, a deadline for a
//! request's headers (a slowloris client), one for an idle keep-alive
//! connection, and a bound on the size of a request's head. The request
//! deadline (`SERVER_REQUEST_TIMEOUT`) is a middleware (`middleware::timeout`),
//! so the answer is the API's JSON and lands on the request's trace.

mod conn;

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

use self::conn::{Deadlines, Tracked};
use crate::config::values::{parse_nonzero_duration, parse_positive};
use crate::middleware::request_span::PeerIp;

/// The largest request head (request line and headers) read; a larger one
/// answers 431. Load balancers stop at the same size (ALB: 64 KiB).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most headers a request may carry; more answer 431.
pub const MAX_HEADERS: usize = 100;

/// How many refused connections may be answered at once; beyond that they
/// are closed without a word.
const MAX_REFUSALS: usize = 64;

/// The answer to a connection over the limit, in the API's error shape.
const REFUSAL_BODY: &str =
    r#"{"error":"unavailable","message":"too many connections are open; try again shortly"}"#;

/// The server's limits. Flattened into the configuration.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerSettings {
    /// How long a client may take to send a request's headers, from their first byte (a slowloris client is cut off)
    #[arg(long = "server-header-timeout", env = "SERVER_HEADER_TIMEOUT", value_name = "SERVER_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_nonzero_duration)]
    pub header_timeout: Duration,
    /// How long a keep-alive connection may sit idle; keep it above a load balancer's idle timeout (ALB: 60 s)
    #[arg(long = "server-idle-timeout", env = "SERVER_IDLE_TIMEOUT", value_name = "SERVER_IDLE_TIMEOUT", default_value = "75s", value_parser = parse_nonzero_duration)]
    pub idle_timeout: Duration,
    /// How long a request may take, reading its body included; later it answers 503
    #[arg(long = "server-request-timeout", env = "SERVER_REQUEST_TIMEOUT", value_name = "SERVER_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_nonzero_duration)]
    pub request_timeout: Duration,
    /// Most connections open at once; more are answered 503 and closed
    #[arg(long = "server-max-connections", env = "SERVER_MAX_CONNECTIONS", value_name = "SERVER_MAX_CONNECTIONS", default_value = "1024", value_parser = parse_positive)]
    pub max_connections: NonZeroUsize,
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets the
/// open connections finish their requests (idle ones close at once).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: &ServerSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let deadlines = Deadlines {
        header: settings.header_timeout,
        idle: settings.idle_timeout,
    };
    let open = Arc::new(Semaphore::new(settings.max_connections.get()));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSALS));
    let mut builder = http1::Builder::new();
    builder
        .max_header_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    on_accept_error(err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            if let Ok(refusal) = Arc::clone(&refusing).try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream).await;
                    drop(refusal);
                });
            }
            continue;
        };
        let (io, tracker) = deadlines.watch(stream);
        let peer_ip = PeerIp::of(peer);
        let service =
            router
                .clone()
                .map_request(move |request: http::Request<hyper::body::Incoming>| {
                    let mut request = request.map(Body::new);
                    let extensions = request.extensions_mut();
                    extensions.insert(ConnectInfo(peer));
                    extensions.insert(peer_ip.clone());
                    request
                });
        let service = Tracked::new(service, tracker);
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(io), service));
        tokio::spawn(async move {
            // A connection's errors are the client's: a reset, a timeout, a
            // malformed request already answered. Nothing to report.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Errors of one connection (it went away before it was accepted) are
/// skipped; others (out of file descriptors) are logged and waited out, as
/// `axum::serve` does.
async fn on_accept_error(err: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %err, "cannot accept a connection; trying again in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Answers a connection over the limit with a 503, then reads what the
/// client sent for a moment so closing does not reset the answer away.
async fn refuse(mut stream: TcpStream) {
    let answered = async {
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
             retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{REFUSAL_BODY}",
            REFUSAL_BODY.len()
        );
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut left = MAX_HEAD_BYTES;
        while left > 0 {
            let read = stream.read(&mut sink).await?;
            if read == 0 {
                break;
            }
            left = left.saturating_sub(read);
        }
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), answered).await;
}

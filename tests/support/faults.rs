//! A small HTTP proxy on 127.0.0.1 in front of moto that answers
//! CloudWatch Logs' PutLogEvents with scripted faults, the way AWS fails:
//! throttling (HTTP 400 with the AWS JSON error), 500s, calls that never
//! answer, and accepted calls that refuse some events. Every other request
//! goes through to moto unchanged.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub enum Fault {
    /// HTTP 400 `{"__type":"ThrottlingException","message":"Rate exceeded"}`.
    Throttle,
    /// HTTP 500 with an `InternalFailure` error.
    ServerError,
    /// Reads the call and never answers.
    Stall,
    /// HTTP 200 with this PutLogEvents answer, without forwarding.
    Answer(serde_json::Value),
}

struct Proxy {
    upstream: String,
    client: reqwest::Client,
    /// Faults for the next PutLogEvents calls, in order.
    script: Mutex<VecDeque<Fault>>,
    /// The fault for every call once the script is done; `None` forwards.
    always: Mutex<Option<Fault>>,
    puts: AtomicUsize,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    proxy: Arc<Proxy>,
    task: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const JSON: &str = "application/x-amz-json-1.1";

impl FaultProxy {
    pub async fn start(upstream: &str, script: Vec<Fault>) -> FaultProxy {
        let proxy = Arc::new(Proxy {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            script: Mutex::new(script.into()),
            always: Mutex::new(None),
            puts: AtomicUsize::new(0),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&proxy));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FaultProxy { addr, proxy, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets the fault every PutLogEvents gets once the script is done.
    pub fn always(&self, fault: Option<Fault>) {
        *self.proxy.always.lock().unwrap() = fault;
    }

    /// PutLogEvents calls seen so far, faulted or not.
    pub fn puts(&self) -> usize {
        self.proxy.puts.load(Ordering::SeqCst)
    }
}

fn aws_error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = serde_json::json!({ "__type": kind, "message": message }).to_string();
    (status, [("content-type", JSON)], body).into_response()
}

async fn handle(
    State(proxy): State<Arc<Proxy>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if target.ends_with(".PutLogEvents") {
        proxy.puts.fetch_add(1, Ordering::SeqCst);
        let fault = proxy
            .script
            .lock()
            .unwrap()
            .pop_front()
            .or_else(|| proxy.always.lock().unwrap().clone());
        match fault {
            Some(Fault::Throttle) => {
                return aws_error(
                    StatusCode::BAD_REQUEST,
                    "ThrottlingException",
                    "Rate exceeded",
                );
            }
            Some(Fault::ServerError) => {
                return aws_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalFailure",
                    "injected",
                );
            }
            Some(Fault::Stall) => std::future::pending::<()>().await,
            Some(Fault::Answer(answer)) => {
                return (StatusCode::OK, [("content-type", JSON)], answer.to_string())
                    .into_response();
            }
            None => {}
        }
    }
    forward(&proxy, method, &uri, headers, body).await
}

async fn forward(
    proxy: &Proxy,
    method: Method,
    uri: &Uri,
    mut headers: HeaderMap,
    body: Bytes,
) -> Response {
    headers.remove("host");
    headers.remove("content-length");
    let url = format!(
        "{}{}",
        proxy.upstream,
        uri.path_and_query().map_or("/", |pq| pq.as_str())
    );
    let answer = match proxy
        .client
        .request(method, url)
        .headers(headers)
        .body(body)
        .send()
        .await
    {
        Ok(answer) => answer,
        Err(err) => return (StatusCode::BAD_GATEWAY, err.to_string()).into_response(),
    };
    let status = answer.status();
    let mut headers = answer.headers().clone();
    for hop in ["transfer-encoding", "content-length", "connection"] {
        headers.remove(hop);
    }
    let body = answer.bytes().await.unwrap_or_default();
    (status, headers, body).into_response()
}

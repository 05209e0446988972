//! SigV4 as AWS checks it: the `authorization` a request signed for
//! `service` in us-east-1 with the key `AKIDTEST` and `secret` must carry,
//! recomputed from its URL, `x-amz-date`, content type and body. The
//! stand-ins for AWS's OTLP endpoints refuse a mismatch with it.

pub const ACCESS_KEY: &str = "AKIDTEST";

pub fn expected_authorization(
    service: &str,
    secret: &str,
    url: &str,
    amz_date: &str,
    content_type: &str,
    body: &[u8],
) -> String {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let time = chrono::NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ")
        .unwrap()
        .and_utc();
    let identity: aws_smithy_runtime_api::client::identity::Identity =
        aws_credential_types::Credentials::new(ACCESS_KEY, secret, None, None, "test").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(service)
        .time(time.into())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let request = SignableRequest::new(
        "POST",
        url,
        std::iter::once(("content-type", content_type)),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(request, &params).unwrap().into_parts();
    instructions
        .headers()
        .find(|(name, _)| *name == "authorization")
        .map(|(_, value)| value.to_owned())
        .unwrap()
}

/// A request a [`SignedEndpoint`] accepted: its headers (lowercase names)
/// and body.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: axum::body::Bytes,
}

/// A stand-in for an AWS OTLP endpoint (X-Ray's traces, CloudWatch's
/// metrics) at `http://127.0.0.1:PORT{path}`: it recomputes each request's
/// SigV4 signature for `service` with the secret it was given, refuses a
/// mismatch with 403, and keeps what it accepted. Stops when dropped.
pub struct SignedEndpoint {
    pub url: String,
    accepted: std::sync::Arc<std::sync::Mutex<Vec<Accepted>>>,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SignedEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SignedEndpoint {
    pub async fn start(
        service: &'static str,
        path: &'static str,
        secret: &'static str,
    ) -> SignedEndpoint {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, StatusCode};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}{path}", listener.local_addr().unwrap());
        let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let app = {
            let (url, accepted, refused) = (url.clone(), accepted.clone(), refused.clone());
            axum::Router::new().route(
                path,
                axum::routing::post(move |headers: HeaderMap, body: Bytes| async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    let expected = expected_authorization(
                        service,
                        secret,
                        &url,
                        &header("x-amz-date"),
                        &header("content-type"),
                        &body,
                    );
                    if header("authorization") != expected {
                        refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        return StatusCode::FORBIDDEN;
                    }
                    let headers = headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                        .collect();
                    accepted.lock().unwrap().push(Accepted { headers, body });
                    StatusCode::OK
                }),
            )
        };
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        SignedEndpoint {
            url,
            accepted,
            refused,
            task,
        }
    }

    /// Every request accepted so far, in arrival order.
    pub fn accepted(&self) -> Vec<Accepted> {
        self.accepted.lock().unwrap().clone()
    }

    /// How many requests were refused for their signature.
    pub fn refused(&self) -> usize {
        self.refused.load(std::sync::atomic::Ordering::SeqCst)
    }
}

//! What the HTTP sinks share (OTLP, X-Ray's OTLP endpoint, Rollbar): which
//! answers are worth another try, and transport errors described without
//! the URL's query or anything that was sent.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};

/// The longest `Retry-After` honoured: a longer one would stall the sink
/// while its queue fills; it waits this long, then tries again.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Whether an HTTP answer is worth another try (OTLP/HTTP spec: 429, 502, 503, 504; we add 500).
pub fn retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// The wait a throttling answer asks for (`Retry-After`: seconds, or an
/// HTTP date compared with `now`), at most [`MAX_RETRY_AFTER`]; `None`
/// when absent or unreadable.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or_default(),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// A transport error without the URL's query or anything sent with it,
/// naming the usual causes: a timeout, a refused connection, a host that
/// does not resolve, a TLS handshake that failed (https to a plain HTTP
/// port, a certificate the system does not trust).
pub fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return "timed out".into();
    }
    let causes = causes(err);
    let why = if causes.contains("Connection refused") {
        "connection refused: nothing listens there"
    } else if causes.contains("dns error") || causes.contains("failed to lookup address") {
        "cannot resolve the host name"
    } else if [
        "tls",
        "TLS",
        "certificate",
        "corrupt message",
        "InvalidContentType",
    ]
    .iter()
    .any(|word| causes.contains(word))
    {
        "TLS handshake failed (https to a plain HTTP port, or an untrusted certificate)"
    } else if err.is_connect() {
        "cannot connect"
    } else {
        return std::error::Error::source(err)
            .map_or_else(|| "request failed".to_owned(), ToString::to_string);
    };
    why.to_owned()
}

/// Every error in `err`'s source chain, as text (URLs are not in them:
/// reqwest keeps the URL on the outer error, which is not included).
fn causes(err: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(&cause.to_string());
        text.push('\n');
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resolver that knows no host, as DNS answers for a mistyped one
    /// (no query leaves the machine).
    struct NoHost;

    impl reqwest::dns::Resolve for NoHost {
        fn resolve(&self, _: reqwest::dns::Name) -> reqwest::dns::Resolving {
            Box::pin(async { Err(std::io::Error::other("no such host").into()) })
        }
    }

    #[tokio::test]
    async fn an_unresolvable_host_and_a_refused_connection_are_named() {
        let client = reqwest::Client::builder()
            .dns_resolver(std::sync::Arc::new(NoHost))
            .build()
            .unwrap();
        let err = client
            .get("http://collector.invalid:4318/v1/traces")
            .send()
            .await
            .unwrap_err();
        assert_eq!(describe(&err), "cannot resolve the host name");
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", closed.local_addr().unwrap());
        drop(closed);
        let err = reqwest::get(url).await.unwrap_err();
        assert_eq!(describe(&err), "connection refused: nothing listens there");
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date_and_is_capped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_784_000_000);
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::RETRY_AFTER, value.parse().unwrap());
            retry_after(&headers, now)
        };
        assert_eq!(with("2"), Some(Duration::from_secs(2)));
        assert_eq!(with(" 0 "), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(with(&later), Some(Duration::from_secs(30)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(with(&past), Some(Duration::ZERO));
        assert_eq!(with("86400"), Some(MAX_RETRY_AFTER));
        assert_eq!(with("soon"), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }
}

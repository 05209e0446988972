//! What the HTTP span exporters share (OTLP, and X-Ray's OTLP endpoint):
//! which answers are worth another try, and transport errors described
//! without the URL's query or anything that was sent.

use http::StatusCode;

/// Whether an HTTP answer is worth another try (OTLP/HTTP spec: 429, 502, 503, 504; we add 500).
pub fn retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// A transport error without the URL's query or anything sent with it.
pub fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timed out".into()
    } else if err.is_connect() {
        "cannot connect".into()
    } else {
        std::error::Error::source(err)
            .map_or_else(|| "request failed".to_owned(), ToString::to_string)
    }
}

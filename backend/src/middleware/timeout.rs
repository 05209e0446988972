//! `SERVER_REQUEST_TIMEOUT`: a request that takes longer, reading its body
//! included, answers 503 `unavailable` inside its own span, so the trace shows
//! it. Work the handler handed to a blocking thread (a database write)
//! still finishes; only the answer is given up.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

pub async fn limit_time(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::timeout(limit).into_response(),
    }
}

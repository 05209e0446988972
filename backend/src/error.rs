//! The API's error answers. Turning an error into a response has no side
//! effects: logging and reporting happen in middleware, which finds the
//! internal cause in the response's extensions.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::StoreError;

/// Why a request failed, as the client will see it.
#[derive(Debug)]
pub enum ApiError {
    /// 422 with the array of validation codes the Flask backend answered.
    Validation(Vec<&'static str>),
    NotFound(&'static str),
    BadRequest(String),
    UnsupportedMediaType(String),
    PayloadTooLarge,
    MethodNotAllowed,
    Forbidden(&'static str),
    /// 429: try again after a second.
    TooManyRequests,
    /// 500; the cause stays inside the process.
    Internal(String),
}

/// The cause of a 500, left in the response extensions for the middleware
/// that logs and reports it. Never serialized.
#[derive(Debug, Clone)]
pub struct InternalCause(pub Arc<str>);

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

fn error_json(status: StatusCode, error: &str, message: &str) -> Response {
    (status, Json(ErrorBody { error, message })).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Validation(codes) => {
                (StatusCode::UNPROCESSABLE_ENTITY, Json(codes)).into_response()
            }
            ApiError::NotFound(what) => error_json(StatusCode::NOT_FOUND, "not_found", what),
            ApiError::BadRequest(message) => {
                error_json(StatusCode::BAD_REQUEST, "bad_request", &message)
            }
            ApiError::UnsupportedMediaType(message) => error_json(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                &message,
            ),
            ApiError::PayloadTooLarge => error_json(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than 64 KiB",
            ),
            ApiError::MethodNotAllowed => error_json(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this path does not accept that method",
            ),
            ApiError::Forbidden(why) => error_json(StatusCode::FORBIDDEN, "forbidden", why),
            ApiError::TooManyRequests => {
                let mut response = error_json(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_requests",
                    "slow down and try again in a second",
                );
                response.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from_static("1"),
                );
                response
            }
            ApiError::Internal(cause) => {
                let mut response = error_json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "something went wrong on our side; it has been reported",
                );
                response
                    .extensions_mut()
                    .insert(InternalCause(cause.into()));
                response
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        ApiError::Internal(err.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(
                "send the body as JSON with Content-Type: application/json".into(),
            ),
            _ => ApiError::BadRequest(rejection.body_text()),
        }
    }
}

/// `Json` whose rejections answer in the API's error shape.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(value))
    }
}

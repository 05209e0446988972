//! The API's error answers. Turning an error into a response has no side
//! effects: logging and reporting happen in middleware, which finds the
//! internal cause in the response's extensions.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::services::ServiceError;
use crate::store::StoreError;

/// Largest request body accepted; larger ones answer 413.
pub const BODY_LIMIT: usize = 64 * 1024;

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
    /// 409: the change clashes with data already stored.
    Conflict,
    /// 500; the cause stays inside the process.
    Internal(String),
    /// 503: the database is not answering; try again after a second. The
    /// cause stays inside the process, as for a 500.
    Unavailable(String),
    /// 503: the request took longer than `SERVER_REQUEST_TIMEOUT`.
    Timeout(Duration),
}

/// The cause of a 500 or 503, left in the response extensions for the
/// middleware that logs and reports it. Never serialized.
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
            ApiError::TooManyRequests => retry_in_a_second(error_json(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "slow down and try again in a second",
            )),
            ApiError::Conflict => error_json(
                StatusCode::CONFLICT,
                "conflict",
                "the change conflicts with data already stored",
            ),
            ApiError::Internal(cause) => with_cause(
                error_json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "something went wrong on our side; it has been reported",
                ),
                cause,
            ),
            ApiError::Unavailable(cause) => with_cause(
                retry_in_a_second(error_json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database is not answering; try again shortly",
                )),
                cause,
            ),
            ApiError::Timeout(limit) => {
                let limit = humantime::format_duration(limit);
                with_cause(
                    retry_in_a_second(error_json(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "timeout",
                        &format!("the request took longer than {limit}; try again shortly"),
                    )),
                    format!("the request took longer than SERVER_REQUEST_TIMEOUT ({limit})"),
                )
            }
        }
    }
}

fn retry_in_a_second(mut response: Response) -> Response {
    response.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("1"),
    );
    response
}

/// Leaves `cause` for the middleware that logs and reports it.
fn with_cause(mut response: Response, cause: String) -> Response {
    response
        .extensions_mut()
        .insert(InternalCause(cause.into()));
    response
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) => ApiError::Unavailable(err.to_string()),
            StoreError::Conflict(_) => ApiError::Conflict,
            StoreError::Internal(_) => ApiError::Internal(err.to_string()),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Invalid(codes) => ApiError::Validation(codes),
            ServiceError::NotFound(what) => ApiError::NotFound(what),
            ServiceError::Store(err) => err.into(),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
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

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        match rejection {
            // A segment that does not decode (`%FF`) names nothing stored.
            PathRejection::FailedToDeserializePathParams(_) => ApiError::NotFound("no such path"),
            other => ApiError::Internal(other.body_text()),
        }
    }
}

/// `Path` whose rejections answer in the API's error shape.
#[derive(FromRequestParts)]
#[from_request(via(Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// Whether every transfer coding named is `chunked` (or none is).
fn only_chunked(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .all(|value| {
            value.to_str().is_ok_and(|codings| {
                codings
                    .split(',')
                    .all(|coding| coding.trim().eq_ignore_ascii_case("chunked"))
            })
        })
}

/// A JSON object body, rejected in the API's error shape. Only an object:
/// serde would read `["hi", "1-day"]` into a struct field by field.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !only_chunked(request.headers()) {
            // hyper reads the body as chunked whatever comes first, so a
            // `gzip, chunked` body would be taken as plain JSON.
            return Err(ApiError::BadRequest(
                "the only Transfer-Encoding understood is chunked".into(),
            ));
        }
        let Json(body) = Json::<Box<RawValue>>::from_request(request, state).await?;
        if !body.get().trim_start().starts_with('{') {
            return Err(ApiError::BadRequest(
                "the body must be a JSON object, such as {\"message\": \"...\"}".into(),
            ));
        }
        let Json(value) = Json::<T>::from_bytes(body.get().as_bytes())?;
        Ok(ApiJson(value))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    async fn answer(err: StoreError) -> (StatusCode, Option<String>, Option<String>, Value) {
        let response = ApiError::from(err).into_response();
        let status = response.status();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .map(|value| value.to_str().unwrap().to_owned());
        let cause = response
            .extensions()
            .get::<InternalCause>()
            .map(|InternalCause(cause)| cause.to_string());
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            retry_after,
            cause,
            serde_json::from_slice(&body).unwrap(),
        )
    }

    #[tokio::test]
    async fn an_unavailable_store_is_a_503_to_retry_with_its_cause_kept() {
        let (status, retry_after, cause, body) =
            answer(StoreError::Unavailable("database is locked".into())).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert_eq!(
            cause.as_deref(),
            Some("database unavailable: database is locked")
        );
        assert_eq!(
            body,
            json!({"error": "unavailable", "message": "the database is not answering; try again shortly"})
        );
    }

    #[tokio::test]
    async fn a_conflict_is_a_409_without_internals() {
        let (status, retry_after, cause, body) = answer(StoreError::Conflict(
            "UNIQUE constraint failed: users.handle".into(),
        ))
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!((retry_after, cause), (None, None));
        assert_eq!(body["error"], "conflict");
        assert!(!body.to_string().contains("UNIQUE"), "{body}");
    }

    #[tokio::test]
    async fn an_internal_store_error_is_a_500_with_its_cause_kept() {
        let (status, retry_after, cause, body) =
            answer(StoreError::Internal("no such table: activities".into())).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(retry_after, None);
        assert_eq!(
            cause.as_deref(),
            Some("database error: no such table: activities")
        );
        assert_eq!(body["error"], "internal_error");
        assert!(!body.to_string().contains("activities"), "{body}");
    }
}

//! The API's error answers. Turning an error into a response has no side
//! effects: logging and reporting happen in middleware, which finds the
//! internal cause in the response's extensions.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

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
    /// 503: the request took longer than `SERVER_REQUEST_TIMEOUT`; says so.
    Timeout(String),
}

/// The cause of a 500 or 503, left in the response extensions for the
/// middleware that logs and reports it. Never serialized.
#[derive(Debug, Clone)]
pub struct InternalCause(pub Arc<str>);

/// Every error answer but a 422's: a code for programs, a sentence for people.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody<'a> {
    /// The status's one code, such as `not_found`.
    pub error: &'a str,
    pub message: &'a str,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Conflict => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) | ApiError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `error` code of the JSON error shape, one per status; a 422
    /// answers its list of codes instead.
    pub fn code(&self) -> Option<&'static str> {
        Some(match self {
            ApiError::Validation(_) => return None,
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::TooManyRequests => "too_many_requests",
            ApiError::Conflict => "conflict",
            ApiError::Internal(_) => "internal_error",
            ApiError::Unavailable(_) | ApiError::Timeout(_) => "unavailable",
        })
    }

    /// Whether the answer carries `Retry-After: 1`.
    pub fn retries(&self) -> bool {
        matches!(
            self,
            ApiError::TooManyRequests | ApiError::Unavailable(_) | ApiError::Timeout(_)
        )
    }

    /// The sentence for people; never the internal cause of a 5xx.
    fn message(&self) -> &str {
        match self {
            ApiError::Validation(_) => "",
            ApiError::NotFound(why) | ApiError::Forbidden(why) => why,
            ApiError::BadRequest(why) | ApiError::UnsupportedMediaType(why) => why,
            ApiError::PayloadTooLarge => "the request body is larger than 64 KiB",
            ApiError::MethodNotAllowed => "this path does not accept that method",
            ApiError::TooManyRequests => "slow down and try again in a second",
            ApiError::Conflict => "the change conflicts with data already stored",
            ApiError::Internal(_) => "something went wrong on our side; it has been reported",
            ApiError::Unavailable(_) => "the database is not answering; try again shortly",
            ApiError::Timeout(why) => why,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let failure = match self {
            ApiError::Validation(codes) => {
                return (StatusCode::UNPROCESSABLE_ENTITY, Json(codes)).into_response();
            }
            failure => failure,
        };
        let mut response = (
            failure.status(),
            Json(ErrorBody {
                error: failure.code().unwrap_or_default(),
                message: failure.message(),
            }),
        )
            .into_response();
        if failure.retries() {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
        }
        if let ApiError::Internal(cause) | ApiError::Unavailable(cause) | ApiError::Timeout(cause) =
            failure
        {
            // Left for the middleware that logs and reports it.
            response
                .extensions_mut()
                .insert(InternalCause(cause.into()));
        }
        response
    }
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

impl ApiError {
    /// The answer to a request that ran past `limit` (`SERVER_REQUEST_TIMEOUT`).
    pub fn timeout(limit: Duration) -> Self {
        ApiError::Timeout(format!(
            "the request took longer than {} (SERVER_REQUEST_TIMEOUT); try again shortly",
            humantime::format_duration(limit)
        ))
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

/// A JSON object body, rejected in the API's error shape.
pub struct ApiJson<T>(pub T);

/// `T` read from a JSON object only: serde would read `["hi", "1-day"]`
/// into a struct field by field. Checked while parsing, in one pass.
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for Object<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object, such as {\"message\": \"...\"}")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        deserializer
            .deserialize_map(Object(PhantomData))
            .map(ObjectOnly)
    }
}

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
        let Json(ObjectOnly(value)) = Json::<ObjectOnly<T>>::from_request(request, state).await?;
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

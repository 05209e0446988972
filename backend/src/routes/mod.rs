//! One router per resource: extract, call the service, answer.

pub mod activities;
pub mod health;
pub mod messages;
pub mod rollbar;
pub mod telemetry_relay;

use axum::extract::rejection::QueryRejection;

use crate::error::ApiError;

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

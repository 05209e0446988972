//! `GET /rollbar/test`, the bootcamp's check that reporting works.

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Reporter, RollbarLevel};
use crate::openapi::OPERATIONS;

/// The route, reporting through `reporter` (none when reporting is off).
pub fn routes(reporter: Option<Reporter>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(hello))
        .with_state(reporter)
}

/// Reports a warning item "Hello World!" to Rollbar (nothing when
/// `ROLLBAR_ACCESS_TOKEN` is unset) and answers the same text.
#[utoipa::path(
    get,
    path = "/rollbar/test",
    tag = OPERATIONS,
    operation_id = "rollbar_test",
    responses((status = 200, description = "always; the item is queued, not awaited", body = String, content_type = "text/plain", example = "Hello World!")),
)]
async fn hello(State(reporter): State<Option<Reporter>>) -> &'static str {
    if let Some(reporter) = reporter {
        reporter.report_message(RollbarLevel::Warning, "Hello World!");
    }
    "Hello World!"
}

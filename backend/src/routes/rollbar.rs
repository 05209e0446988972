//! The bootcamp's check that error reporting works end to end.

use axum::Router;
use axum::routing::get;

use crate::app::AppState;
use crate::config::RollbarLevel;
use crate::telemetry::rollbar::report_message;

pub fn router() -> Router<AppState> {
    Router::new().route("/rollbar/test", get(rollbar_test))
}

/// Reports a warning "Hello World!" (nothing when reporting is off).
async fn rollbar_test() -> &'static str {
    report_message(RollbarLevel::Warning, "Hello World!");
    "Hello World!"
}

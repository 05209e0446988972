use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/health-check", get(health_check))
}

/// Liveness plus each telemetry sink's counters.
async fn health_check(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "success": true,
        "version": env!("CARGO_PKG_VERSION"),
        "sinks": state.health.report(),
    }))
}

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::openapi::OPERATIONS;
use crate::telemetry::sink::SinkHealth;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health_check))
}

#[derive(Serialize, ToSchema)]
struct HealthCheck {
    success: bool,
    version: &'static str,
    /// Each telemetry sink by name, on with its counters or off with why.
    sinks: BTreeMap<&'static str, SinkHealth>,
}

/// Liveness plus each telemetry sink's counters.
#[utoipa::path(
    get,
    path = "/api/health-check",
    tag = OPERATIONS,
    operation_id = "health_check",
    responses((status = 200, description = "the server answers", body = HealthCheck)),
)]
async fn health_check(State(state): State<AppState>) -> Json<HealthCheck> {
    Json(HealthCheck {
        success: true,
        version: env!("CARGO_PKG_VERSION"),
        sinks: state.health.report(),
    })
}

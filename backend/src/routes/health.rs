use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{RawQuery, State};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::error::ApiError;
use crate::openapi::OPERATIONS;
use crate::openapi::answers::NotReady;
use crate::telemetry::doctor::DeepFindings;
use crate::telemetry::sink::SinkHealth;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health_check))
        .routes(routes!(ready))
}

/// How long readiness waits for the store's answer.
const READY_WITHIN: Duration = Duration::from_secs(1);

#[derive(Serialize, ToSchema)]
struct Ready {
    ready: bool,
}

/// Readiness, for a load balancer's target-group check: 200 only when the
/// store answers a trivial query within a second. The health check stays
/// liveness: it answers while the database is down.
#[utoipa::path(
    get,
    path = "/api/ready",
    tag = OPERATIONS,
    operation_id = "ready",
    responses((status = 200, description = "the store answers", body = Ready), NotReady),
)]
async fn ready(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    match tokio::time::timeout(READY_WITHIN, state.store().ping()).await {
        Ok(Ok(())) => Ok(Json(Ready { ready: true })),
        Ok(Err(err)) => Err(ApiError::Unavailable(err.to_string())),
        Err(_) => Err(ApiError::Unavailable(format!(
            "the store did not answer within {READY_WITHIN:?}"
        ))),
    }
}

#[derive(Serialize, ToSchema)]
struct HealthCheck {
    success: bool,
    version: &'static str,
    /// Each telemetry sink by name, on with its counters or off with why.
    sinks: BTreeMap<&'static str, SinkHealth>,
    /// With `?deep=1`: the doctor's probe of each sink (`cruddur-backend doctor`).
    #[serde(skip_serializing_if = "Option::is_none")]
    doctor: Option<DeepFindings>,
}

/// Liveness plus each telemetry sink's counters; with `deep=1`, the
/// doctor's probes too (at most every 30 s; later calls get those findings).
#[utoipa::path(
    get,
    path = "/api/health-check",
    tag = OPERATIONS,
    operation_id = "health_check",
    params(("deep" = Option<String>, Query, description = "`1` (or `true`) adds the doctor's probe of each sink")),
    responses((status = 200, description = "the server answers", body = HealthCheck)),
)]
async fn health_check(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Json<HealthCheck> {
    let deep = query.as_deref().is_some_and(|query| {
        query
            .split('&')
            .any(|pair| pair == "deep=1" || pair == "deep=true")
    });
    let doctor = if deep {
        state.health.deep().await
    } else {
        None
    };
    Json(HealthCheck {
        success: true,
        version: env!("CARGO_PKG_VERSION"),
        sinks: state.health.report(),
        doctor,
    })
}

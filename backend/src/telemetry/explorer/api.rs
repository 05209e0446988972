//! The explorer's routes: the page (three static files compiled into the
//! binary, so it works offline) and its JSON API over the buffer. Each is
//! documented in the OpenAPI document; none is traced (`app` serves them
//! outside the request span).

use std::sync::{Arc, Mutex, MutexGuard};

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use opentelemetry::trace::TraceId;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::buffer::Buffer;
use super::links::LinkMaker;
use super::reservoir::Reservoir;
use super::views::{
    self, ListFilter, MAX_BUCKETS, MAX_LIMIT, QueryAnswer, QueryParams, Recorded, TraceList,
    TraceView,
};
use crate::error::{ApiError, ApiPath};
use crate::openapi::TELEMETRY;
use crate::openapi::answers::{QueryErrors, error_answers};

const NO_SUCH_TRACE: &str = "no such trace in the explorer (never seen, or evicted for room)";

struct Explorer {
    buffer: Arc<Mutex<Buffer>>,
    links: LinkMaker,
    reservoir: Arc<Reservoir>,
}

impl Explorer {
    fn buffer(&self) -> MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type Shared = Arc<Explorer>;

/// A count parameter, when given, is 1 to `most`.
fn within(name: &str, value: Option<usize>, most: usize) -> Result<(), ApiError> {
    match value {
        Some(n) if !(1..=most).contains(&n) => Err(ApiError::BadRequest(format!(
            "{name} must be 1 to {most}, not {n}"
        ))),
        _ => Ok(()),
    }
}

pub fn routes(
    buffer: Arc<Mutex<Buffer>>,
    links: LinkMaker,
    reservoir: Arc<Reservoir>,
) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(bare))
        .routes(routes!(page))
        .routes(routes!(script))
        .routes(routes!(style))
        .routes(routes!(list))
        .routes(routes!(trace))
        .routes(routes!(query))
        .with_state(Arc::new(Explorer {
            buffer,
            links,
            reservoir,
        }))
}

/// Only this origin's scripts and styles; no frames; links leak no path.
const PAGE_HEADERS: [(HeaderName, HeaderValue); 4] = [
    (
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    ),
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ),
    (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
];

fn file(content_type: &'static str, body: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    response.headers_mut().extend(PAGE_HEADERS);
    response
}

/// The explorer's page is at `/_explorer/`.
#[utoipa::path(
    get,
    path = "/_explorer",
    tag = TELEMETRY,
    operation_id = "explorer_redirect",
    responses((status = 308, description = "to `/_explorer/`")),
)]
async fn bare() -> Redirect {
    Redirect::permanent("/_explorer/")
}

/// The trace explorer: recent traces, one trace's waterfall, queries over the spans.
#[utoipa::path(
    get,
    path = "/_explorer/",
    tag = TELEMETRY,
    operation_id = "explorer_page",
    responses((status = 200, description = "the page", body = String, content_type = "text/html")),
)]
async fn page() -> Response {
    file("text/html; charset=utf-8", include_str!("page/index.html"))
}

/// The page's script.
#[utoipa::path(
    get,
    path = "/_explorer/explorer.js",
    tag = TELEMETRY,
    operation_id = "explorer_script",
    responses((status = 200, description = "the script", body = String, content_type = "text/javascript")),
)]
async fn script() -> Response {
    file(
        "text/javascript; charset=utf-8",
        include_str!("page/explorer.js"),
    )
}

/// The page's style sheet.
#[utoipa::path(
    get,
    path = "/_explorer/explorer.css",
    tag = TELEMETRY,
    operation_id = "explorer_style",
    responses((status = 200, description = "the style sheet", body = String, content_type = "text/css")),
)]
async fn style() -> Response {
    file("text/css; charset=utf-8", include_str!("page/explorer.css"))
}

/// The traces kept, newest first, filtered.
#[utoipa::path(
    get,
    path = "/_explorer/api/traces",
    tag = TELEMETRY,
    operation_id = "explorer_traces",
    params(ListFilter),
    responses(
        (status = 200, description = "the traces that pass the filters, newest first", body = TraceList),
        QueryErrors,
    ),
)]
async fn list(
    State(explorer): State<Shared>,
    filter: Result<Query<ListFilter>, QueryRejection>,
) -> Result<Json<TraceList>, ApiError> {
    let Query(filter) = filter?;
    within("limit", filter.limit, MAX_LIMIT)?;
    let recorded = Recorded {
        traces_per_second: explorer.reservoir.per_second(),
        unrecorded_requests: explorer.reservoir.turned_away(),
    };
    Ok(Json(views::list(&explorer.buffer(), &filter, recorded)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct TracePath {
    /// 32 hex digits, as in `traceparent` and every sink.
    #[param(pattern = "^[0-9a-fA-F]{32}$")]
    trace_id: String,
}

error_answers! {
    /// What asking for one trace may answer.
    pub struct TraceErrors {
        ApiError::BadRequest(String::new()) => "a trace id that is not 32 hex digits",
        ApiError::NotFound(NO_SUCH_TRACE) => NO_SUCH_TRACE,
    }
}

/// One trace: its spans with offsets from its start, and links to it in
/// Honeycomb and the X-Ray console when those sinks are on.
#[utoipa::path(
    get,
    path = "/_explorer/api/traces/{trace_id}",
    tag = TELEMETRY,
    operation_id = "explorer_trace",
    params(TracePath),
    responses(
        (status = 200, description = "the trace's spans, by start time", body = TraceView),
        TraceErrors,
    ),
)]
async fn trace(
    State(explorer): State<Shared>,
    ApiPath(TracePath { trace_id }): ApiPath<TracePath>,
) -> Result<Json<TraceView>, ApiError> {
    let id = (trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| TraceId::from_hex(&trace_id).ok())
        .flatten()
        .ok_or_else(|| {
            ApiError::BadRequest(format!("{trace_id:?} is not a trace id (32 hex digits)"))
        })?;
    let found = views::trace(&explorer.buffer(), id, Default::default());
    let mut view = found.ok_or(ApiError::NotFound(NO_SUCH_TRACE))?;
    // Asked outside the buffer's lock: Honeycomb's may wait on its API once.
    view.links = explorer
        .links
        .links(
            id,
            view.start_unix_ms,
            view.start_unix_ms + view.duration_ms,
        )
        .await;
    Ok(Json(view))
}

/// COUNT, P50, P90, P99 or MAX of the duration or a numeric attribute over
/// the kept spans, grouped by an attribute, with a time series and a heatmap.
#[utoipa::path(
    get,
    path = "/_explorer/api/query",
    tag = TELEMETRY,
    operation_id = "explorer_query",
    params(QueryParams),
    responses(
        (status = 200, description = "the groups, the series and the heatmap", body = QueryAnswer),
        QueryErrors,
    ),
)]
async fn query(
    State(explorer): State<Shared>,
    params: Result<Query<QueryParams>, QueryRejection>,
) -> Result<Json<QueryAnswer>, ApiError> {
    let Query(params) = params?;
    within("buckets", params.buckets, MAX_BUCKETS)?;
    Ok(Json(views::query(&explorer.buffer(), &params)))
}

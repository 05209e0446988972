//! `GET /api/openapi.json`: the API's OpenAPI 3.1 document, made from the
//! routes themselves. Every route, the API's and the telemetry sinks'
//! alike, is added with utoipa-axum's `OpenApiRouter::routes(routes!(..))`,
//! which registers a handler and its `#[utoipa::path]` entry in one step,
//! so a route cannot be served without being documented (`app`'s tests
//! compare the router's paths with the document's).

pub mod answers;
pub mod fields;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::OpenApi;
use utoipa::openapi::Components;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Tags grouping the operations.
pub const CRUDS: &str = "cruds";
pub const MESSAGES: &str = "messages";
pub const OPERATIONS: &str = "operations";
/// Routes a telemetry sink adds: not part of the Cruddur API proper.
pub const TELEMETRY: &str = "telemetry";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cruddur API",
        description = "The Cruddur micro-blogging API. Until sign-in exists the acting user is \
            `CRUDDUR_DEFAULT_USER`. Validation failures answer 422 with a JSON array of codes \
            (each operation lists its own); every other error answers \
            `{\"error\": \"<code>\", \"message\": \"<text>\"}`, one code per status \
            (`components.responses` has each). A path not listed here answers 404 `not_found`; \
            a method a listed path does not document answers 405 `method_not_allowed` with `Allow`.",
        license(name = "MIT", identifier = "MIT"),
    ),
    tags(
        (name = CRUDS, description = "Cruds (activities) and their replies"),
        (name = MESSAGES, description = "Direct messages"),
        (name = OPERATIONS, description = "Health, error reporting and this document"),
        (name = TELEMETRY, description = "Routes of the telemetry sinks, such as the browser traces relay"),
    )
)]
struct Frame;

/// An empty router whose document has the API's title, description and tags.
pub fn router<S: Clone + Send + Sync + 'static>() -> OpenApiRouter<S> {
    OpenApiRouter::with_openapi(Frame::openapi())
}

/// The document, serialized once at start.
#[derive(Clone)]
struct Document(Bytes);

/// The OpenAPI 3.1 document of every route this server serves.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = OPERATIONS,
    operation_id = "openapi",
    responses((status = 200, description = "this document", body = serde_json::Value, content_type = "application/json")),
)]
async fn openapi_json(State(Document(json)): State<Document>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json)
}

/// Adds `GET /api/openapi.json` to `api` and answers the axum routers
/// serving `api` with it, and `apart` (routes served outside the request
/// span); the document is what every route of both contributed.
pub fn serve(api: OpenApiRouter, apart: OpenApiRouter) -> (Router, Router) {
    let (own, own_document) = OpenApiRouter::default()
        .routes(routes!(openapi_json))
        .split_for_parts();
    let (router, mut document) = api.split_for_parts();
    let (apart, apart_document) = apart.split_for_parts();
    document.merge(own_document);
    document.merge(apart_document);
    document
        .components
        .get_or_insert_with(Components::new)
        .responses
        .extend(answers::by_code());
    let json = document
        .to_json()
        .expect("an OpenAPI document always serializes");
    (
        router.merge(own.with_state(Document(Bytes::from(json)))),
        apart,
    )
}

//! The composition root: the store, the routes (the API's and the
//! telemetry sinks' own), and the whole middleware stack, put together in
//! one place, as zero-to-production's `Application::build` does.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Method};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::Config;
use crate::error::{ApiError, BODY_LIMIT};
use crate::middleware::panic::panic_response;
use crate::middleware::request_span::trace_request;
use crate::middleware::timeout::limit_time;
use crate::routes::{self, AppState};
use crate::server::{self, ServerSettings};
use crate::store::{self, OpenError, StoreError};
use crate::telemetry::Telemetry;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] OpenError),
    #[error("CRUDDUR_DEFAULT_USER: cannot create the user: {0}")]
    DefaultUser(#[from] StoreError),
    #[error("cannot listen on {address} (BIND_ADDRESS, PORT): {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
}

pub struct App {
    listener: TcpListener,
    router: Router,
    server: ServerSettings,
}

async fn not_found() -> Response {
    ApiError::NotFound("no such path").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::MethodNotAllowed.into_response()
}

fn cors(config: &Config) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list([
            config.frontend_url.clone(),
            config.backend_url.clone(),
        ]))
        .allow_methods([Method::OPTIONS, Method::GET, Method::HEAD, Method::POST])
        .allow_headers([
            HeaderName::from_static("content-type"),
            HeaderName::from_static("if-modified-since"),
            HeaderName::from_static("traceparent"),
            HeaderName::from_static("tracestate"),
        ])
        .expose_headers([
            HeaderName::from_static("location"),
            HeaderName::from_static("link"),
        ])
}

/// The API's routes and the sinks' own, the fallbacks, and every middleware.
pub fn router(config: &Config, state: AppState, telemetry: &Telemetry) -> Router {
    let routes = routes::router()
        .with_state(state)
        .merge(telemetry.routes.clone())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    with_middleware(routes, config, telemetry)
}

/// Every middleware around `routes`, outermost first: the request span
/// (so it covers timeouts, panics and CORS answers too; the sinks' request
/// hooks run inside it), the request deadline, the panic catcher, then CORS. Public so tests can wrap
/// routes of their own, such as one that panics, without adding them to
/// the product.
pub fn with_middleware(routes: Router, config: &Config, telemetry: &Telemetry) -> Router {
    routes.layer(
        ServiceBuilder::new()
            .layer(from_fn_with_state(
                telemetry.requests.clone(),
                trace_request,
            ))
            .layer(from_fn_with_state(
                config.server.request_timeout,
                limit_time,
            ))
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(cors(config)),
    )
}

impl App {
    /// Opens the store and binds the listener (`PORT=0` picks a free port).
    pub async fn build(config: &Config, telemetry: &Telemetry) -> Result<App, AppError> {
        let store = store::open(&config.store, Utc::now())?;
        store
            .ensure_user(&config.default_user, config.default_user.as_str())
            .await?;
        let state = AppState::new(store, config.default_user.clone(), telemetry.health.clone());
        let address = SocketAddr::new(config.bind_address, config.port);
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| AppError::Listen { address, source })?;
        Ok(App {
            listener,
            router: router(config, state, telemetry),
            server: config.server.clone(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        server::serve(self.listener, self.router, &self.server, shutdown).await;
    }
}

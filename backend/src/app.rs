//! Assembles the application: the store, the routes, and the whole
//! middleware stack in one place.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Method};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::Config;
use crate::domain::Handle;
use crate::error::ApiError;
use crate::middleware::panic::panic_response;
use crate::middleware::request_span::{SpanSettings, expose_route, trace_request};
use crate::middleware::rollbar::report_errors;
use crate::routes;
use crate::routes::telemetry_relay::Relay;
use crate::store::{SqliteStore, Store, StoreError};
use crate::telemetry::queue::QueueSender;
use crate::telemetry::{Health, OtlpItem, rollbar};

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    store: Arc<dyn Store>,
    /// The acting user until sign-in exists.
    pub user: Handle,
    pub health: Health,
    /// The browser relay, when `OTEL_BROWSER_RELAY` is on and OTLP is configured.
    pub relay: Option<Relay>,
}

impl AppState {
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("DATABASE_PATH: {0}")]
    Database(#[from] crate::store::sqlite::OpenError),
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

/// The routes, each with its matched route exposed, and every middleware.
pub fn router(config: &Config, state: AppState, spans: SpanSettings) -> Router {
    let routes = Router::new()
        .merge(routes::activities::router())
        .merge(routes::messages::router())
        .merge(routes::health::router())
        .merge(routes::rollbar::router())
        .merge(routes::telemetry_relay::router())
        .route_layer(from_fn(expose_route))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state);
    with_middleware(routes, config, spans)
}

/// Every middleware around `routes`, outermost first: error reporting (when
/// Rollbar is on; outside the span so it sees the span's answer header and
/// the span's own error log), the request span (so it covers everything),
/// the panic catcher, then CORS. Public so tests can wrap routes of their
/// own, such as one that panics, without adding them to the product.
pub fn with_middleware(routes: Router, config: &Config, spans: SpanSettings) -> Router {
    let router = routes.layer(
        ServiceBuilder::new()
            .layer(from_fn_with_state(spans, trace_request))
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(cors(config)),
    );
    match rollbar::reporter() {
        Some(reporter) => router.layer(from_fn_with_state(reporter, report_errors)),
        None => router,
    }
}

impl App {
    /// Opens the store and binds the listener (`PORT=0` picks a free port).
    /// `relay` is the OTLP queue browser spans are forwarded to, if any.
    pub async fn build(
        config: &Config,
        health: Health,
        spans: SpanSettings,
        relay: Option<QueueSender<OtlpItem>>,
    ) -> Result<App, AppError> {
        let store = SqliteStore::open(&config.database_path, Utc::now())?;
        store
            .ensure_user(&config.default_user, config.default_user.as_str())
            .await?;
        let state = AppState {
            store: Arc::new(store),
            user: config.default_user.clone(),
            health,
            relay: relay.map(|sink| Relay::new(sink, config)),
        };
        let address = SocketAddr::new(config.bind_address, config.port);
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| AppError::Listen { address, source })?;
        Ok(App {
            listener,
            router: router(config, state, spans),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
    }
}

//! The composition root: the store, the routes (the API's and the
//! telemetry sinks' own), and the whole middleware stack, put together in
//! one place, as zero-to-production's `Application::build` does.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

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
use crate::openapi;
use crate::routes::{self, AppState};
use crate::server::{self, ServerSettings};
use crate::services::cache::FeedCache;
use crate::store::{self, OpenError, Store, StoreError};
use crate::telemetry::{self, Telemetry};

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
    store: Arc<dyn Store>,
}

async fn not_found() -> Response {
    ApiError::NotFound("no such path").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::MethodNotAllowed.into_response()
}

/// CORS for the frontend's and the backend's own origins. The layer is
/// cloned with each route's service twice a request; as a list the origins
/// are a `Vec` copied each time, behind a predicate an `Arc`.
fn cors(config: &Config) -> CorsLayer {
    let origins = Arc::new([config.frontend_url.clone(), config.backend_url.clone()]);
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| {
            origins.contains(origin)
        }))
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

/// The API's routes and the sinks' own, the OpenAPI document they make,
/// the fallbacks, and every middleware.
pub fn router(config: &Config, state: AppState, telemetry: &Telemetry) -> Router {
    let (traced, untraced) = routes(state, telemetry);
    with_middleware(traced, config, telemetry).merge(without_span(untraced, config))
}

/// Every route, each added with its entry in the OpenAPI document, and
/// the document's own; the fallbacks and the body limit. Answers the
/// routes to trace, and those served outside the request span.
fn routes(state: AppState, telemetry: &Telemetry) -> (Router, Router) {
    let documented = openapi::router()
        .merge(routes::router().with_state(state))
        .merge(telemetry.routes.clone());
    let (traced, untraced) = openapi::serve(documented, telemetry.untraced_routes.clone());
    let traced = traced
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    let untraced = untraced
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    (traced, untraced)
}

/// Every middleware around `routes`, outermost first: the request span
/// (so it covers timeouts, panics and CORS answers too; the sinks' request
/// hooks run inside it), the request deadline, the panic catcher, then CORS. Public so tests can wrap
/// routes of their own, such as one that panics, without adding them to
/// the product.
pub fn with_middleware(routes: Router, config: &Config, telemetry: &Telemetry) -> Router {
    without_span(routes, config).layer(from_fn_with_state(
        telemetry.requests.clone(),
        trace_request,
    ))
}

/// The middleware of [`with_middleware`] but the request span, for routes
/// that make no trace (the trace explorer's).
fn without_span(routes: Router, config: &Config) -> Router {
    routes.layer(
        ServiceBuilder::new()
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
        let store = store::open(&config.store, Utc::now()).await?;
        store
            .ensure_user(&config.default_user, config.default_user.as_str())
            .await?;
        let state = AppState::new(
            Arc::clone(&store),
            FeedCache::new(config.store.feed_cache_max_bytes),
            config.default_user.clone(),
            telemetry.health.clone(),
        );
        let address = SocketAddr::new(config.bind_address, config.port);
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| AppError::Listen { address, source })?;
        Ok(App {
            listener,
            router: router(config, state, telemetry),
            server: config.server.clone(),
            store,
        })
    }

    /// Serves `routes` (already behind their middleware) beside the API's.
    pub fn with_routes(self, routes: Router) -> App {
        App {
            router: self.router.merge(routes),
            ..self
        }
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

/// Runs `work` on a multi-threaded runtime; a runtime that cannot start
/// prints why and answers failure.
pub fn with_runtime(work: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(work),
        Err(err) => {
            eprintln!("cruddur-backend: cannot start the async runtime: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The server's whole life: telemetry, the store and the listener, then
/// serving until SIGTERM or Ctrl-C, then the telemetry flush. `extra` adds
/// routes beside the product's, behind the same middleware; the product
/// has none (the fault suite's storm server, `examples/storm.rs`, adds
/// routes that panic and flood the logs).
pub async fn run(config: Config, extra: Option<Router>) -> ExitCode {
    let telemetry = match telemetry::init(&config) {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("cruddur-backend: {err}");
            return ExitCode::from(2);
        }
    };
    let app = match App::build(&config, &telemetry).await {
        Ok(app) => match extra {
            Some(routes) => app.with_routes(with_middleware(routes, &config, &telemetry)),
            None => app,
        },
        Err(err) => {
            // The sinks' closing lines first: why start-up failed is the
            // last thing printed, where a reader of the output looks.
            let _ = tokio::task::spawn_blocking(move || {
                telemetry.guard.shutdown(Duration::from_secs(1))
            })
            .await;
            eprintln!("cruddur-backend: {err}");
            return ExitCode::from(2);
        }
    };
    eprintln!("cruddur-backend: data: {}", config.store.describe());
    eprintln!("cruddur-backend listening on http://{}", app.local_addr());

    let store = Arc::clone(&app.store);
    let grace = config.shutdown_timeout;
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel();
    let signal = async move {
        shutdown_signal().await;
        eprintln!("cruddur-backend: shutting down: finishing requests, then flushing telemetry");
        let _ = stopping_tx.send(());
    };
    tokio::select! {
        () = app.run(signal) => {}
        () = async {
            let _ = stopping_rx.await;
            tokio::time::sleep(grace).await;
        } => {
            eprintln!("cruddur-backend: requests still running after {grace:?}; stopping anyway");
        }
    }
    if let Err(err) = store.checkpoint().await {
        eprintln!(
            "cruddur-backend: the database was not checkpointed; its -wal file still holds \
             writes, so keep it with the database file: {err}"
        );
    }
    // Flushing blocks on the sinks' own threads: keep it off the runtime's workers.
    let flushed = tokio::task::spawn_blocking(move || telemetry.guard.shutdown(grace))
        .await
        .unwrap_or(false);
    if !flushed {
        eprintln!("cruddur-backend: some telemetry was not delivered before the deadline");
    }
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(terminate) => terminate,
                Err(_) => return interrupt.await.unwrap_or_default(),
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::body::Body;
    use http::Request;
    use serde_json::Value;
    use tower::ServiceExt;
    use utoipa_axum::router::OpenApiRouter;

    use super::*;
    use crate::config::parse;
    use crate::telemetry::{self, Health};

    /// The paths axum routes. axum has no API listing them, so they are
    /// read from the router's `Debug` output, where its `path_router`
    /// shows each as `RouteId(n): "/path"` (before the `fallback_router`,
    /// whose catch-all routes are the fallbacks').
    fn routed_paths(router: &Router) -> BTreeSet<String> {
        let shown = format!("{router:?}");
        let path_router = shown
            .split_once("path_router:")
            .and_then(|(_, rest)| rest.split_once("fallback_router:"))
            .map_or("", |(routes, _)| routes);
        let paths: BTreeSet<String> = path_router
            .split("RouteId(")
            .skip(1)
            .filter_map(|entry| entry.split_once("): \"")?.1.split_once('"'))
            .map(|(path, _)| path.to_owned())
            .collect();
        assert!(
            paths.contains("/api/activities/home"),
            "axum's Debug output changed; update routed_paths: {shown}"
        );
        paths
    }

    async fn send(router: &Router, method: Method, path: &str) -> Response {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        router.clone().oneshot(request).await.unwrap()
    }

    async fn document(router: &Router) -> Value {
        let response = send(router, Method::GET, "/api/openapi.json").await;
        assert_eq!(response.status(), 200);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let document: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        document
    }

    fn documented_paths(document: &Value) -> BTreeSet<String> {
        document["paths"]
            .as_object()
            .expect("the document has paths")
            .keys()
            .cloned()
            .collect()
    }

    /// The app's routes with every sink's own, as `settings` start them.
    async fn app_routes(settings: &[&str]) -> Router {
        let mut args = vec!["--database-path", ":memory:"];
        args.extend_from_slice(settings);
        let config = parse(&args).unwrap();
        let mut sink_routes = OpenApiRouter::default();
        let mut untraced_routes = OpenApiRouter::default();
        for part in telemetry::start(&config).unwrap() {
            if let Some(own) = part.routes {
                sink_routes = sink_routes.merge(own);
            }
            if let Some(own) = part.untraced_routes {
                untraced_routes = untraced_routes.merge(own);
            }
        }
        let telemetry = Telemetry {
            routes: sink_routes,
            untraced_routes,
            ..Telemetry::default()
        };
        let store = store::open(&config.store, Utc::now()).await.unwrap();
        let cache = FeedCache::new(config.store.feed_cache_max_bytes);
        let state = AppState::new(store, cache, config.default_user, Health::default());
        let (traced, untraced) = routes(state, &telemetry);
        traced.merge(untraced)
    }

    #[tokio::test]
    async fn every_route_is_in_the_openapi_document_and_every_entry_routed() {
        // By default, and with every sink's routes on (the relay needs an
        // OTLP sink): a sink's routes are there, on or off.
        for settings in [
            &[][..],
            &[
                "--otlp-endpoint",
                "http://127.0.0.1:9",
                "--browser-relay",
                "true",
            ],
        ] {
            let routes = app_routes(settings).await;
            let routed = routed_paths(&routes);
            assert!(routed.contains("/api/telemetry/v1/traces"), "{routed:?}");
            assert!(routed.contains("/rollbar/test"), "{routed:?}");
            assert!(routed.contains("/_explorer/api/traces"), "{routed:?}");
            let document = document(&routes).await;
            assert_eq!(routed, documented_paths(&document), "{settings:?}");
        }
    }

    #[tokio::test]
    async fn each_path_takes_its_documented_methods_and_answers_405_to_others() {
        let routes = app_routes(&[]).await;
        let document = document(&routes).await;
        let methods = [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ];
        for (template, operations) in document["paths"].as_object().unwrap() {
            let path = template.replace("{handle}", "worf").replace("{uuid}", "x");
            let documented: Vec<Method> = methods
                .iter()
                .filter(|method| operations.get(method.as_str().to_lowercase()).is_some())
                .cloned()
                .collect();
            assert!(!documented.is_empty(), "{template}");
            for method in &methods {
                let response = send(&routes, method.clone(), &path).await;
                if documented.contains(method) {
                    assert_ne!(response.status(), 405, "{method} {template}");
                } else {
                    assert_eq!(response.status(), 405, "{method} {template}");
                    let allow = response.headers()[http::header::ALLOW].to_str().unwrap();
                    for documented in &documented {
                        assert!(allow.contains(documented.as_str()), "{template}: {allow}");
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn every_reference_in_the_document_resolves() {
        fn references<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
            match value {
                Value::Object(entries) => {
                    if let Some(Value::String(to)) = entries.get("$ref") {
                        found.push(to);
                    }
                    entries.values().for_each(|inner| references(inner, found));
                }
                Value::Array(items) => items.iter().for_each(|inner| references(inner, found)),
                _ => {}
            }
        }
        let document = document(&app_routes(&[]).await).await;
        let mut found = Vec::new();
        references(&document, &mut found);
        assert!(
            found.contains(&"#/components/responses/not_found"),
            "{found:?}"
        );
        for to in found {
            let pointer = to.strip_prefix('#').expect("a local reference");
            assert!(
                document.pointer(pointer).is_some(),
                "{to} resolves to nothing"
            );
        }
    }
}

//! The "limit" contender of `bench/run` (issue 19): the least a Rust web
//! server can do to answer the home feed. A minimal axum binary that
//! answers `GET /api/activities/home` with the bytes in `BODY_FILE` (the
//! backend's own home feed, fetched by bench/run) from memory, with no
//! middleware, no store and no telemetry; `GET /api/health-check` answers
//! for bench/run's readiness poll. It uses the product's allocator, so
//! the comparison is the request's work, not the allocator's. Not shipped:
//! bench/run builds it (`cargo build --release --example limit`).

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::Router;
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let (Ok(port), Ok(file)) = (std::env::var("PORT"), std::env::var("BODY_FILE")) else {
        eprintln!("limit: set PORT and BODY_FILE");
        return ExitCode::from(2);
    };
    let (Ok(port), Ok(body)) = (port.parse::<u16>(), std::fs::read(&file)) else {
        eprintln!("limit: PORT must be a port number and BODY_FILE a readable file");
        return ExitCode::from(2);
    };
    let body = Bytes::from(body);
    let app = Router::new()
        .route(
            "/api/activities/home",
            get(move || {
                let body = body.clone();
                async move { ([(CONTENT_TYPE, "application/json")], body) }
            }),
        )
        .route("/api/health-check", get(|| async { r#"{"success":true}"# }));
    let serve = async move {
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        axum::serve(listener, app).await
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    match runtime.map(|runtime| runtime.block_on(serve)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(err)) | Err(err) => {
            eprintln!("limit: {err}");
            ExitCode::FAILURE
        }
    }
}

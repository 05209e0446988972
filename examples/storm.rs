//! The storm server of the fault suite (`tests/faults.rs`, the panic and
//! log storm): the product exactly as `cruddur-backend` serves it, with two
//! routes the product does not have, behind the same middleware and
//! telemetry. `GET /storm/panic` panics in its handler; `GET /storm/logs`
//! logs [`LINES`] info lines, a hundred times what a request normally
//! logs. Not shipped: the test command (`cargo build --example storm`) and
//! `bench/faults` build it.

use std::process::ExitCode;

use axum::Router;
use axum::routing::get;
use cruddur_backend::app;
use cruddur_backend::config::Config;

/// The product's allocator, so memory figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Lines one `/storm/logs` request logs.
const LINES: usize = 200;

async fn panics() -> &'static str {
    panic!("a storm of panics")
}

async fn floods_the_logs() -> &'static str {
    for line in 0..LINES {
        tracing::info!(line, "a storm of log lines");
    }
    "logged"
}

fn main() -> ExitCode {
    let config = match Config::load_or_exit() {
        Ok(config) => config,
        Err(code) => return code,
    };
    let routes = Router::new()
        .route("/storm/panic", get(panics))
        .route("/storm/logs", get(floods_the_logs));
    app::with_runtime(app::run(config, Some(routes)))
}

use std::process::ExitCode;
use std::time::Duration;

use cruddur_backend::app::App;
use cruddur_backend::config::{Command, Config, ConfigError};
use cruddur_backend::healthcheck;
use cruddur_backend::telemetry;

/// Telemetry allocates small, short-lived objects per span; mimalloc keeps
/// that cheap under concurrency (measured in bench/).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = match Config::load() {
        Ok(config) => config,
        Err(ConfigError::Info(info)) => {
            let _ = info.print();
            return ExitCode::SUCCESS;
        }
        Err(ConfigError::Invalid(line)) => {
            eprintln!("cruddur-backend: {line}");
            return ExitCode::from(2);
        }
    };
    match config.command.clone() {
        Some(Command::Healthcheck) => probe_health(&config),
        Some(Command::Sink(command)) => {
            with_runtime(telemetry::run_command(command, &config.telemetry))
        }
        None => with_runtime(run(config)),
    }
}

/// `cruddur-backend healthcheck`: the container's probe, no runtime needed.
fn probe_health(config: &Config) -> ExitCode {
    let target = healthcheck::target(config.bind_address, config.port);
    match healthcheck::probe(target, Duration::from_secs(2)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("cruddur-backend healthcheck: {reason}");
            ExitCode::FAILURE
        }
    }
}

fn with_runtime(work: impl std::future::Future<Output = ExitCode>) -> ExitCode {
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

async fn run(config: Config) -> ExitCode {
    let telemetry = match telemetry::init(&config) {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("cruddur-backend: {err}");
            return ExitCode::from(2);
        }
    };
    let app = match App::build(&config, &telemetry).await {
        Ok(app) => app,
        Err(err) => {
            eprintln!("cruddur-backend: {err}");
            let _ = tokio::task::spawn_blocking(move || {
                telemetry.guard.shutdown(Duration::from_secs(1))
            })
            .await;
            return ExitCode::from(2);
        }
    };
    eprintln!("cruddur-backend listening on http://{}", app.local_addr());

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

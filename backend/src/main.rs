use std::process::ExitCode;
use std::time::Duration;

use cruddur_backend::app::App;
use cruddur_backend::config::{Command, Config, ConfigError, XrayCommand};
use cruddur_backend::healthcheck;
use cruddur_backend::middleware::request_span::SpanSettings;
use cruddur_backend::telemetry;
use cruddur_backend::telemetry::xray::setup;

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
        Some(Command::Xray {
            action: XrayCommand::Setup { group },
        }) => with_runtime(xray_setup(&config, &group)),
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

/// `cruddur-backend xray setup`: the group and sampling rules, idempotently.
async fn xray_setup(config: &Config, group: &str) -> ExitCode {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    if sdk.region().is_none() {
        eprintln!("cruddur-backend: xray setup needs an AWS region (set AWS_REGION)");
        return ExitCode::from(2);
    }
    let xray = &config.telemetry.xray;
    let service = xray
        .tracing_name
        .as_deref()
        .unwrap_or(&config.telemetry.service_name);
    let rules = xray
        .sampling_rules
        .as_ref()
        .map(|file| file.rules.as_slice())
        .unwrap_or_default();
    let client = aws_sdk_xray::Client::new(&sdk);
    match setup::setup(&client, group, service, rules).await {
        Ok(report) => {
            for line in report {
                println!("xray setup: {line}");
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("cruddur-backend: xray setup failed: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> ExitCode {
    let telemetry = match telemetry::init(&config.telemetry) {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("cruddur-backend: {err}");
            return ExitCode::from(2);
        }
    };
    let spans = SpanSettings {
        http_dup_semconv: telemetry.http_dup_semconv,
        xray_sampling: telemetry.xray_sampling,
    };
    let relay = telemetry.relay.clone();
    let app = match App::build(&config, telemetry.health.clone(), spans, relay).await {
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
    let served = tokio::select! {
        served = app.run(signal) => served,
        () = async {
            let _ = stopping_rx.await;
            tokio::time::sleep(grace).await;
        } => {
            eprintln!("cruddur-backend: requests still running after {grace:?}; stopping anyway");
            Ok(())
        }
    };
    // Flushing blocks on the sinks' own threads: keep it off the runtime's workers.
    let flushed = tokio::task::spawn_blocking(move || telemetry.guard.shutdown(grace))
        .await
        .unwrap_or(false);
    match served {
        Err(err) => {
            eprintln!("cruddur-backend: server error: {err}");
            ExitCode::FAILURE
        }
        Ok(()) if !flushed => {
            eprintln!("cruddur-backend: some telemetry was not delivered before the deadline");
            ExitCode::SUCCESS
        }
        Ok(()) => ExitCode::SUCCESS,
    }
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

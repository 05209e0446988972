use std::process::ExitCode;
use std::time::Duration;

use cruddur_backend::app;
use cruddur_backend::config::{Command, Config};
use cruddur_backend::healthcheck;
use cruddur_backend::telemetry;

/// Telemetry allocates small, short-lived objects per span; mimalloc keeps
/// that cheap under concurrency (measured in bench/).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = match Config::load_or_exit() {
        Ok(config) => config,
        Err(code) => return code,
    };
    match config.command.clone() {
        Some(Command::Healthcheck) => probe_health(&config),
        Some(Command::Doctor(args)) => app::with_runtime(telemetry::doctor::run(&config, &args)),
        Some(Command::Sink(command)) => {
            app::with_runtime(telemetry::run_command(command, &config.telemetry))
        }
        None => app::with_runtime(app::run(config, None)),
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

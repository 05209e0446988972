//! The only reader of the environment: every setting, its variable, its
//! default and its validation. The settings of each telemetry sink live
//! with the sink (`telemetry::otlp::OtlpSettings`, ...) and are flattened
//! here, one line each; `values` holds the typed values and their parsers.
//! Secrets are wrapped so they never print whole.

pub mod values;

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use http::HeaderValue;

use self::values::{
    Pairs, parse_bytes, parse_duration, parse_handle, parse_origin, parse_pairs, parse_ratio,
};
use crate::domain::Handle;
use crate::server::ServerSettings;
use crate::store::StoreSettings;
use crate::telemetry::cloudwatch::CloudWatchSettings;
use crate::telemetry::console::ConsoleSettings;
use crate::telemetry::doctor::DoctorArgs;
use crate::telemetry::explorer::ExplorerSettings;
use crate::telemetry::metrics::{MetricsExporter, MetricsSettings};
use crate::telemetry::otlp::OtlpSettings;
use crate::telemetry::rollbar::RollbarSettings;
use crate::telemetry::xray::XraySettings;
use crate::telemetry::{SinkCommand, TracesExporter};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "cruddur-backend",
    version,
    about = "The Cruddur micro-blogging API, traced from its first request"
)]
pub struct Config {
    /// Port to listen on (0 picks a free one)
    #[arg(long, env = "PORT", value_name = "PORT", default_value_t = 4567)]
    pub port: u16,
    /// Address to bind: this machine only by default, since the API writes with no sign-in; 0.0.0.0 (every interface) in containers
    #[arg(
        long,
        env = "BIND_ADDRESS",
        value_name = "BIND_ADDRESS",
        default_value = "127.0.0.1"
    )]
    pub bind_address: IpAddr,
    #[command(flatten)]
    pub server: ServerSettings,
    #[command(flatten)]
    pub store: StoreSettings,
    /// The acting user until sign-in exists
    #[arg(long, env = "CRUDDUR_DEFAULT_USER", value_name = "CRUDDUR_DEFAULT_USER", default_value = "andrewbrown", value_parser = parse_handle)]
    pub default_user: Handle,
    /// Origin of the frontend, allowed by CORS
    #[arg(long, env = "FRONTEND_URL", value_name = "FRONTEND_URL", default_value = "http://localhost:3000", value_parser = parse_origin)]
    pub frontend_url: HeaderValue,
    /// Origin of this backend as browsers see it, allowed by CORS
    #[arg(long, env = "BACKEND_URL", value_name = "BACKEND_URL", default_value = "http://localhost:4567", value_parser = parse_origin)]
    pub backend_url: HeaderValue,
    /// How long a clean shutdown may take to finish requests and flush every sink (`5s`, `500ms`)
    #[arg(long, env = "SHUTDOWN_TIMEOUT", value_name = "SHUTDOWN_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    #[command(flatten)]
    pub telemetry: TelemetryConfig,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do instead of serving.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Probe GET /api/health-check of the server on BIND_ADDRESS and PORT; exit 0 on a 200 (the container HEALTHCHECK)
    Healthcheck,
    /// Check every configured sink with a real, harmless probe and say what to fix; exit 0 when all pass
    Doctor(DoctorArgs),
    /// A telemetry sink's own administration
    #[command(flatten)]
    Sink(SinkCommand),
}

/// Telemetry: what every signal shares, then each sink's own settings.
#[derive(Debug, Clone, Args)]
pub struct TelemetryConfig {
    /// Service name on every span (resource `service.name`)
    #[arg(
        long,
        env = "OTEL_SERVICE_NAME",
        value_name = "OTEL_SERVICE_NAME",
        default_value = "cruddur-backend"
    )]
    pub service_name: String,
    /// Extra resource attributes: `key=value,key2=value2`
    #[arg(long, env = "OTEL_RESOURCE_ATTRIBUTES", value_name = "OTEL_RESOURCE_ATTRIBUTES", value_parser = parse_pairs)]
    pub resource_attributes: Option<Pairs>,
    /// Which spans are kept: always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio
    #[arg(
        long,
        env = "OTEL_TRACES_SAMPLER",
        value_name = "OTEL_TRACES_SAMPLER",
        default_value = "parentbased_always_on"
    )]
    pub sampler: SamplerKind,
    /// Ratio for the traceidratio samplers, 0 to 1
    #[arg(long, env = "OTEL_TRACES_SAMPLER_ARG", value_name = "OTEL_TRACES_SAMPLER_ARG", value_parser = parse_ratio)]
    pub sampler_arg: Option<f64>,
    /// Where spans go: `otlp`, `console`, `none`, or a comma list; default `otlp` when an endpoint or Honeycomb key is set, else `console`
    #[arg(
        long,
        env = "OTEL_TRACES_EXPORTER",
        value_name = "OTEL_TRACES_EXPORTER",
        value_delimiter = ','
    )]
    pub traces_exporter: Option<Vec<TracesExporter>>,
    /// Turns every trace sink off
    #[arg(long, env = "OTEL_SDK_DISABLED", value_name = "OTEL_SDK_DISABLED", default_value = "false", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub sdk_disabled: bool,
    /// `http/dup` also emits the old HTTP attribute names
    #[arg(
        long,
        env = "OTEL_SEMCONV_STABILITY_OPT_IN",
        value_name = "OTEL_SEMCONV_STABILITY_OPT_IN",
        default_value = ""
    )]
    pub semconv_stability_opt_in: String,
    /// Bytes each sink's queue may hold while its destination is slow or down (`8MiB`, `512KiB`); beyond that new items are dropped and counted
    #[arg(long = "telemetry-queue-max-bytes", env = "TELEMETRY_QUEUE_MAX_BYTES", value_name = "TELEMETRY_QUEUE_MAX_BYTES", default_value = "8MiB", value_parser = parse_bytes)]
    pub queue_max_bytes: usize,
    #[command(flatten)]
    pub otlp: OtlpSettings,
    #[command(flatten)]
    pub xray: XraySettings,
    #[command(flatten)]
    pub console: ConsoleSettings,
    #[command(flatten)]
    pub rollbar: RollbarSettings,
    #[command(flatten)]
    pub cloudwatch: CloudWatchSettings,
    #[command(flatten)]
    pub explorer: ExplorerSettings,
    #[command(flatten)]
    pub metrics: MetricsSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum SamplerKind {
    AlwaysOn,
    AlwaysOff,
    Traceidratio,
    ParentbasedAlwaysOn,
    ParentbasedAlwaysOff,
    ParentbasedTraceidratio,
}

/// The variables that say this environment uses AWS: a region, keys, a
/// profile, a web identity or a container's credentials endpoint. Without
/// one of them nothing looks for AWS (`CLOUDWATCH_LOGS=auto`), so a laptop
/// never asks the instance-metadata address for credentials.
pub const AWS_SIGNS: &[&str] = &[
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
];

/// What this environment says of AWS, read with the rest of the
/// configuration: which of [`AWS_SIGNS`] are set (names only: their values
/// stay with the SDK, which reads them itself), and the two region
/// variables, which are not secrets: the SDK takes `AWS_REGION`, some tools
/// `AWS_DEFAULT_REGION`, and the doctor says when they differ.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsEnvironment {
    pub signs: Vec<&'static str>,
    pub region: Option<String>,
    pub default_region: Option<String>,
}

impl AwsEnvironment {
    pub fn read() -> Self {
        let read = |name| std::env::var(name).ok().filter(|value| !value.is_empty());
        AwsEnvironment {
            signs: AWS_SIGNS
                .iter()
                .copied()
                .filter(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
                .collect(),
            region: read("AWS_REGION"),
            default_region: read("AWS_DEFAULT_REGION"),
        }
    }
}

/// Why the configuration was refused, as one line naming the variable.
#[derive(Debug)]
pub enum ConfigError {
    /// `--help` or `--version`: print and exit 0.
    Info(clap::Error),
    Invalid(String),
}

impl Config {
    /// Reads the command line and the environment.
    pub fn load() -> Result<Config, ConfigError> {
        Self::try_parse_from(std::env::args_os())
    }

    /// [`Config::load`] for a binary's `main`: `--help` and `--version`
    /// print and answer exit 0; a bad value prints its one line and
    /// answers exit 2.
    pub fn load_or_exit() -> Result<Config, ExitCode> {
        match Config::load() {
            Ok(config) => Ok(config),
            Err(ConfigError::Info(info)) => {
                let _ = info.print();
                Err(ExitCode::SUCCESS)
            }
            Err(ConfigError::Invalid(line)) => {
                eprintln!("cruddur-backend: {line}");
                Err(ExitCode::from(2))
            }
        }
    }

    pub fn try_parse_from<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let config = <Config as Parser>::try_parse_from(args).map_err(explain)?;
        config.check().map_err(ConfigError::Invalid)?;
        Ok(config)
    }

    /// Checks that need more than one setting.
    fn check(&self) -> Result<(), String> {
        let t = &self.telemetry;
        if let Some(exporters) = &t.traces_exporter
            && exporters.contains(&TracesExporter::Otlp)
            && t.otlp.traces_url().is_none()
        {
            return Err(
                "OTEL_TRACES_EXPORTER includes otlp, but neither OTEL_EXPORTER_OTLP_ENDPOINT, \
                        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT nor HONEYCOMB_API_KEY is set"
                    .into(),
            );
        }
        if let Some(exporters) = &t.metrics.exporter
            && exporters.contains(&MetricsExporter::Otlp)
            && t.otlp
                .signal_url("metrics", t.metrics.otlp_metrics_endpoint.as_ref())
                .is_none()
        {
            return Err(
                "OTEL_METRICS_EXPORTER includes otlp, but neither OTEL_EXPORTER_OTLP_ENDPOINT, \
                        OTEL_EXPORTER_OTLP_METRICS_ENDPOINT nor HONEYCOMB_API_KEY is set"
                    .into(),
            );
        }
        if matches!(
            t.sampler,
            SamplerKind::Traceidratio | SamplerKind::ParentbasedTraceidratio
        ) && t.sampler_arg.is_none()
        {
            return Err(format!(
                "OTEL_TRACES_SAMPLER={} needs OTEL_TRACES_SAMPLER_ARG (a ratio from 0 to 1)",
                t.sampler
                    .to_possible_value()
                    .map(|v| v.get_name().to_owned())
                    .unwrap_or_default()
            ));
        }
        Ok(())
    }
}

impl TelemetryConfig {
    /// The trace sinks asked for, after the defaults are applied: OTLP when
    /// it has somewhere to send, else the console.
    pub fn traces_exporters(&self) -> Vec<TracesExporter> {
        if self.sdk_disabled {
            return Vec::new();
        }
        match &self.traces_exporter {
            Some(list) => list
                .iter()
                .copied()
                .filter(|e| *e != TracesExporter::None)
                .collect(),
            None if self.otlp.traces_url().is_some() => vec![TracesExporter::Otlp],
            None => vec![TracesExporter::Console],
        }
    }

    pub fn http_dup_semconv(&self) -> bool {
        self.semconv_stability_opt_in
            .split(',')
            .any(|item| item.trim() == "http/dup")
    }
}

/// Turns a clap error into one line naming the environment variable.
fn explain(err: clap::Error) -> ConfigError {
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        return ConfigError::Info(err);
    }
    let arg = match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => arg.clone(),
        _ => String::new(),
    };
    let variable = Config::command()
        .get_arguments()
        .find(|a| {
            a.get_long().is_some_and(|long| {
                arg == format!("--{long}") || arg.starts_with(&format!("--{long} "))
            })
        })
        .and_then(|a| a.get_env().map(|env| env.to_string_lossy().into_owned()))
        .unwrap_or(arg);
    let value = match err.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(value)) => value.clone(),
        _ => String::new(),
    };
    let secret =
        variable.contains("KEY") || variable.contains("HEADERS") || variable.contains("TOKEN");
    let shown = if secret {
        "(hidden)".to_owned()
    } else if variable == "DATABASE_URL" {
        format!("{:?}", crate::store::postgres::mask(&value))
    } else {
        format!("{value:?}")
    };
    let reason = std::error::Error::source(&err)
        .map(|source| source.to_string())
        .or_else(|| match err.get(ContextKind::ValidValue) {
            Some(ContextValue::Strings(valid)) => {
                Some(format!("expected one of {}", valid.join(", ")))
            }
            _ => None,
        })
        .unwrap_or_else(|| err.kind().to_string());
    if variable.is_empty() {
        let text = err.to_string();
        return ConfigError::Invalid(
            text.lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_owned(),
        );
    }
    ConfigError::Invalid(format!("{variable}={shown} is invalid: {reason}"))
}

/// Parses `vars` as the command line after the program's name (tests).
#[cfg(test)]
pub(crate) fn parse(vars: &[&str]) -> Result<Config, ConfigError> {
    let mut args = vec!["cruddur-backend".to_owned()];
    args.extend(vars.iter().map(|v| v.to_string()));
    Config::try_parse_from(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(vars: &[&str]) -> String {
        match parse(vars) {
            Err(ConfigError::Invalid(line)) => line,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn every_setting_has_its_own_name() {
        Config::command().debug_assert();
    }

    #[test]
    fn endpoints_are_normalised() {
        let config = parse(&["--otlp-endpoint", "https://api.honeycomb.io/"]).unwrap();
        assert_eq!(
            config.telemetry.otlp.traces_url().unwrap(),
            "https://api.honeycomb.io/v1/traces"
        );
        let config = parse(&["--otlp-endpoint", "http://collector:4318/v1/traces"]).unwrap();
        assert_eq!(
            config.telemetry.otlp.traces_url().unwrap(),
            "http://collector:4318/v1/traces"
        );
        let config = parse(&["--otlp-traces-endpoint", "http://c:4318/custom"]).unwrap();
        assert_eq!(
            config.telemetry.otlp.traces_url().unwrap(),
            "http://c:4318/custom"
        );
        let config = parse(&[
            "--otlp-endpoint",
            "http://c:4317",
            "--otlp-protocol",
            "grpc",
        ])
        .unwrap();
        assert_eq!(config.telemetry.otlp.traces_url().unwrap(), "http://c:4317");
    }

    #[test]
    fn honeycomb_key_alone_turns_otlp_on() {
        let config = parse(&["--honeycomb-api-key", "hcaik_0123456789abcd"]).unwrap();
        let t = &config.telemetry;
        assert_eq!(
            t.otlp.traces_url().unwrap(),
            "https://api.honeycomb.io/v1/traces"
        );
        assert_eq!(t.traces_exporters(), vec![TracesExporter::Otlp]);
        let headers = t.otlp.headers();
        assert_eq!(headers[0].0, "x-honeycomb-team");
        assert_eq!(headers[0].1.expose(), "hcaik_0123456789abcd");
        assert_eq!(headers[0].1.to_string(), "…abcd");
    }

    #[test]
    fn console_is_the_default_sink() {
        let config = parse(&[]).unwrap();
        assert_eq!(
            config.telemetry.traces_exporters(),
            vec![TracesExporter::Console]
        );
        let config = parse(&["--traces-exporter", "none"]).unwrap();
        assert!(config.telemetry.traces_exporters().is_empty());
        let config = parse(&["--sdk-disabled", "true"]).unwrap();
        assert!(config.telemetry.traces_exporters().is_empty());
    }

    #[test]
    fn metrics_go_to_prometheus_and_to_otlp_when_it_has_a_destination() {
        use crate::telemetry::metrics::MetricsExporter::{Console, Otlp, Prometheus};
        let t = parse(&[]).unwrap().telemetry;
        assert_eq!(t.metrics.wants(Prometheus, false), Ok(()));
        assert!(t.metrics.wants(Otlp, false).unwrap_err().contains("unset"));
        assert_eq!(t.metrics.wants(Otlp, true), Ok(()));
        assert!(t.metrics.wants(Console, true).is_err());
        let t = parse(&["--metrics-exporter", "console"]).unwrap().telemetry;
        assert_eq!(t.metrics.wants(Console, false), Ok(()));
        assert_eq!(
            t.metrics.wants(Prometheus, false),
            Err("not in OTEL_METRICS_EXPORTER".into())
        );
        let t = parse(&["--metrics-prometheus", "false"]).unwrap().telemetry;
        assert_eq!(
            t.metrics.wants(Prometheus, false),
            Err("METRICS_PROMETHEUS=false".into())
        );
        let config = parse(&["--otlp-endpoint", "http://c:4318/"]).unwrap();
        let otlp = &config.telemetry.otlp;
        assert_eq!(
            otlp.signal_url("metrics", None).unwrap(),
            "http://c:4318/v1/metrics"
        );
        let given: http::Uri = "http://m:9000/in".parse().unwrap();
        assert_eq!(
            otlp.signal_url("metrics", Some(&given)).unwrap(),
            "http://m:9000/in"
        );
    }

    #[test]
    fn bad_metrics_settings_name_their_variable() {
        assert!(
            invalid(&["--metrics-exporter", "otlp"])
                .contains("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        );
        assert!(invalid(&["--metrics-exporter", "statsd"]).starts_with("OTEL_METRICS_EXPORTER="));
        assert!(
            invalid(&["--metric-export-interval", "0"]).starts_with("OTEL_METRIC_EXPORT_INTERVAL=")
        );
        assert!(
            invalid(&["--metric-export-timeout", "soon"])
                .starts_with("OTEL_METRIC_EXPORT_TIMEOUT=")
        );
        assert!(
            invalid(&["--otlp-metrics-temporality", "sometimes"])
                .starts_with("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=")
        );
        assert!(
            invalid(&["--cloudwatch-metrics-namespace", "AWS/EC2"])
                .starts_with("CLOUDWATCH_METRICS_NAMESPACE=")
        );
        assert!(invalid(&["--cloudwatch-metrics", "yes"]).starts_with("CLOUDWATCH_METRICS="));
        let t = parse(&["--otlp-metrics-temporality", "Delta"])
            .unwrap()
            .telemetry;
        assert_eq!(
            t.metrics.temporality,
            crate::telemetry::metrics::TemporalityPreference::Delta
        );
    }

    #[test]
    fn the_api_is_reachable_from_this_machine_only_unless_asked() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.bind_address, IpAddr::from([127, 0, 0, 1]));
        let config = parse(&["--bind-address", "0.0.0.0"]).unwrap();
        assert_eq!(config.bind_address, IpAddr::from([0, 0, 0, 0]));
    }

    #[test]
    fn header_lists_are_parsed_and_decoded() {
        let config = parse(&["--otlp-headers", "x-honeycomb-team=abc%3D,x-other = two "]).unwrap();
        let headers = config.telemetry.otlp.otlp_headers.unwrap().0;
        assert_eq!(headers[0].1.expose(), "abc=");
        assert_eq!(headers[1].0, "x-other");
        assert_eq!(headers[1].1.expose(), "two");
    }

    #[test]
    fn bad_values_name_their_variable() {
        assert!(invalid(&["--port", "abc"]).starts_with("PORT=\"abc\" is invalid"));
        assert!(
            invalid(&["--otlp-endpoint", "not a url"]).starts_with("OTEL_EXPORTER_OTLP_ENDPOINT=")
        );
        assert!(invalid(&["--otlp-endpoint", "ftp://x"]).contains("http:// or https://"));
        let line = invalid(&["--otlp-headers", "novalue,x=1"]);
        assert!(
            line.starts_with("OTEL_EXPORTER_OTLP_HEADERS=(hidden) is invalid"),
            "{line}"
        );
        assert!(invalid(&["--otlp-protocol", "http/json"]).contains("grpc"));
        assert!(invalid(&["--sampler", "traceidratio"]).contains("OTEL_TRACES_SAMPLER_ARG"));
        assert!(invalid(&["--sampler-arg", "2"]).starts_with("OTEL_TRACES_SAMPLER_ARG="));
        assert!(invalid(&["--shutdown-timeout", "5 parsecs"]).starts_with("SHUTDOWN_TIMEOUT="));
        assert!(invalid(&["--default-user", "Bad User"]).starts_with("CRUDDUR_DEFAULT_USER="));
        assert!(invalid(&["--traces-exporter", "otlp"]).contains("OTEL_EXPORTER_OTLP_ENDPOINT"));
        assert!(
            invalid(&["--cloudwatch-flush-interval", "0s"])
                .starts_with("CLOUDWATCH_FLUSH_INTERVAL=\"0s\" is invalid")
        );
        assert!(invalid(&["--cloudwatch-timeout", "soon"]).starts_with("CLOUDWATCH_TIMEOUT="));
        assert!(
            invalid(&["--cloudwatch-create-group", "maybe"])
                .starts_with("CLOUDWATCH_CREATE_GROUP=")
        );
        assert!(invalid(&["--log-filter", "info,[=bad"]).starts_with("RUST_LOG="));
        assert!(
            invalid(&["--cloudwatch-log-level", "warn,[=bad"]).starts_with("CLOUDWATCH_LOG_LEVEL=")
        );
        assert!(invalid(&["--rollbar-endpoint", "nope"]).starts_with("ROLLBAR_ENDPOINT="));
        assert!(invalid(&["--rollbar-level", "loud"]).contains("warning"));
        assert!(
            invalid(&["--rollbar-max-items-per-minute", "0"])
                .starts_with("ROLLBAR_MAX_ITEMS_PER_MINUTE=")
        );
        assert_eq!(
            invalid(&["--rollbar-access-token", " "]),
            "ROLLBAR_ACCESS_TOKEN=(hidden) is invalid: is set but empty"
        );
    }
}

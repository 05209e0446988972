//! The only reader of the environment: every setting, its variable, its
//! default and its validation. Secrets are wrapped so they never print whole.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use http::{HeaderName, HeaderValue, Uri};

use crate::domain::Handle;
use crate::telemetry::xray::daemon::DaemonAddress;
use crate::telemetry::xray::sampling::{Rule, parse_rules};

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
    /// Address to bind; 0.0.0.0 in containers
    #[arg(
        long,
        env = "BIND_ADDRESS",
        value_name = "BIND_ADDRESS",
        default_value = "0.0.0.0"
    )]
    pub bind_address: IpAddr,
    /// SQLite database file, created on first start; `:memory:` keeps nothing
    #[arg(
        long,
        env = "DATABASE_PATH",
        value_name = "DATABASE_PATH",
        default_value = "./data/cruddur.db"
    )]
    pub database_path: String,
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
    /// AWS X-Ray administration
    Xray {
        #[command(subcommand)]
        action: XrayCommand,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum XrayCommand {
    /// Creates or updates the X-Ray group (filtering on the service name) and the rules of XRAY_SAMPLING_RULES, through the X-Ray API; a second run changes nothing
    Setup {
        /// The group's name
        #[arg(long, default_value = "Cruddur")]
        group: String,
    },
}

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
    /// OTLP base URL; `/v1/traces` is appended for HTTP
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = parse_url)]
    pub otlp_endpoint: Option<Uri>,
    /// Full OTLP traces URL, used as is
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", value_name = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", value_parser = parse_url)]
    pub otlp_traces_endpoint: Option<Uri>,
    /// Headers for every OTLP export: `key=value,key2=value2`
    #[arg(long, env = "OTEL_EXPORTER_OTLP_HEADERS", value_name = "OTEL_EXPORTER_OTLP_HEADERS", value_parser = parse_headers, hide_env_values = true)]
    pub otlp_headers: Option<Headers>,
    /// `http/protobuf` or `grpc`
    #[arg(
        long,
        env = "OTEL_EXPORTER_OTLP_PROTOCOL",
        value_name = "OTEL_EXPORTER_OTLP_PROTOCOL",
        default_value = "http/protobuf"
    )]
    pub otlp_protocol: OtlpProtocol,
    /// Milliseconds one export attempt may take
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TIMEOUT", value_name = "OTEL_EXPORTER_OTLP_TIMEOUT", default_value = "10000", value_parser = parse_millis)]
    pub otlp_timeout: Duration,
    /// Spans the OTLP queue holds while the collector is slow or down; beyond that new spans are dropped and counted
    #[arg(long, env = "OTEL_BSP_MAX_QUEUE_SIZE", value_name = "OTEL_BSP_MAX_QUEUE_SIZE", default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(1..))]
    pub bsp_max_queue_size: u32,
    /// Spans per OTLP export request
    #[arg(long, env = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", value_name = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub bsp_max_export_batch_size: u32,
    /// Milliseconds a partial batch waits before it is exported
    #[arg(long, env = "OTEL_BSP_SCHEDULE_DELAY", value_name = "OTEL_BSP_SCHEDULE_DELAY", default_value = "1000", value_parser = parse_millis)]
    pub bsp_schedule_delay: Duration,
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
    /// Accept browser spans (OTLP/HTTP protobuf) on POST /api/telemetry/v1/traces from FRONTEND_URL or BACKEND_URL and forward them to the OTLP sink
    #[arg(long, env = "OTEL_BROWSER_RELAY", value_name = "OTEL_BROWSER_RELAY", default_value = "false", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub browser_relay: bool,
    /// Honeycomb key: sends OTLP to https://api.honeycomb.io with the x-honeycomb-team header
    #[arg(long, env = "HONEYCOMB_API_KEY", value_name = "HONEYCOMB_API_KEY", hide_env_values = true, value_parser = parse_secret)]
    pub honeycomb_api_key: Option<Secret>,
    /// `http/dup` also emits the old HTTP attribute names
    #[arg(
        long,
        env = "OTEL_SEMCONV_STABILITY_OPT_IN",
        value_name = "OTEL_SEMCONV_STABILITY_OPT_IN",
        default_value = ""
    )]
    pub semconv_stability_opt_in: String,
    #[command(flatten)]
    pub xray: XrayConfig,
    /// Console log format: `pretty`, `json`, or `auto` (pretty on a terminal)
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_name = "LOG_FORMAT",
        default_value = "auto"
    )]
    pub log_format: LogFormat,
    /// Console log filter, tracing-subscriber EnvFilter syntax (`off` silences logs)
    #[arg(
        long,
        env = "RUST_LOG",
        value_name = "RUST_LOG",
        default_value = "info"
    )]
    pub log_filter: String,
    #[command(flatten)]
    pub rollbar: RollbarConfig,
    #[command(flatten)]
    pub cloudwatch: CloudWatchConfig,
}

/// CloudWatch Logs. Region, credentials and endpoint come from the AWS
/// SDK's own chain (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, profiles,
/// `AWS_ENDPOINT_URL`...), read by the SDK itself. Argument ids carry the
/// prefix: other sinks have a `timeout` too, and clap ids must be unique.
#[derive(Debug, Clone, Args)]
pub struct CloudWatchConfig {
    /// Log group every log event goes to
    #[arg(
        id = "cloudwatch-log-group",
        long = "cloudwatch-log-group",
        env = "CLOUDWATCH_LOG_GROUP",
        value_name = "CLOUDWATCH_LOG_GROUP",
        default_value = "cruddur"
    )]
    pub log_group: String,
    /// Log stream of this process; default `{hostname}/{start time}-{pid}`
    #[arg(
        id = "cloudwatch-log-stream",
        long = "cloudwatch-log-stream",
        env = "CLOUDWATCH_LOG_STREAM",
        value_name = "CLOUDWATCH_LOG_STREAM"
    )]
    pub log_stream: Option<String>,
    /// Create the log group if missing; `false` for accounts that may write but not create
    #[arg(id = "cloudwatch-create-group",
        long = "cloudwatch-create-group", env = "CLOUDWATCH_CREATE_GROUP", value_name = "CLOUDWATCH_CREATE_GROUP", default_value = "true", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub create_group: bool,
    /// Which events are shipped, tracing-subscriber EnvFilter syntax (`off` turns CloudWatch off)
    #[arg(
        id = "cloudwatch-log-level",
        long = "cloudwatch-log-level",
        env = "CLOUDWATCH_LOG_LEVEL",
        value_name = "CLOUDWATCH_LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,
    /// How long a partial batch waits before it is sent (`2s`, `500ms`)
    #[arg(id = "cloudwatch-flush-interval",
        long = "cloudwatch-flush-interval", env = "CLOUDWATCH_FLUSH_INTERVAL", value_name = "CLOUDWATCH_FLUSH_INTERVAL", default_value = "2s", value_parser = parse_nonzero_duration)]
    pub flush_interval: Duration,
    /// How long one CloudWatch Logs call may take (`10s`, `500ms`)
    #[arg(id = "cloudwatch-timeout",
        long = "cloudwatch-timeout", env = "CLOUDWATCH_TIMEOUT", value_name = "CLOUDWATCH_TIMEOUT", default_value = "10s", value_parser = parse_nonzero_duration)]
    pub timeout: Duration,
}

/// Error reporting to Rollbar; on when the access token is set.
#[derive(Debug, Clone, Args)]
pub struct RollbarConfig {
    /// Rollbar project access token (post_server_item); reporting is off without it
    #[arg(long = "rollbar-access-token", env = "ROLLBAR_ACCESS_TOKEN", value_name = "ROLLBAR_ACCESS_TOKEN", hide_env_values = true, value_parser = parse_secret)]
    pub access_token: Option<Secret>,
    /// Environment named on every item
    #[arg(
        long = "rollbar-environment",
        env = "ROLLBAR_ENVIRONMENT",
        value_name = "ROLLBAR_ENVIRONMENT",
        default_value = "development"
    )]
    pub environment: String,
    /// Rollbar item API URL
    #[arg(long = "rollbar-endpoint", env = "ROLLBAR_ENDPOINT", value_name = "ROLLBAR_ENDPOINT", default_value = "https://api.rollbar.com/api/1/item/", value_parser = parse_url)]
    pub endpoint: Uri,
    /// Lowest level of log events reported: debug, info, warning, error, critical (no events)
    #[arg(
        long = "rollbar-level",
        env = "ROLLBAR_LEVEL",
        value_name = "ROLLBAR_LEVEL",
        default_value = "error"
    )]
    pub level: RollbarLevel,
    /// Version of the code on every item; default the build's git revision
    #[arg(
        long = "rollbar-code-version",
        env = "ROLLBAR_CODE_VERSION",
        value_name = "ROLLBAR_CODE_VERSION"
    )]
    pub code_version: Option<String>,
    /// Items sent per minute at most; beyond that they are dropped and counted
    #[arg(long = "rollbar-max-items-per-minute", env = "ROLLBAR_MAX_ITEMS_PER_MINUTE", value_name = "ROLLBAR_MAX_ITEMS_PER_MINUTE", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_items_per_minute: u32,
    /// How long one delivery to Rollbar may take (`5s`, `500ms`)
    #[arg(long = "rollbar-timeout", env = "ROLLBAR_TIMEOUT", value_name = "ROLLBAR_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Rollbar's item levels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum RollbarLevel {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl RollbarLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            RollbarLevel::Debug => "debug",
            RollbarLevel::Info => "info",
            RollbarLevel::Warning => "warning",
            RollbarLevel::Error => "error",
            RollbarLevel::Critical => "critical",
        }
    }
}

/// AWS X-Ray, on when a daemon address, a naming pattern or a rules file is set.
#[derive(Debug, Clone, Args)]
pub struct XrayConfig {
    /// `false` turns X-Ray off whatever else is set
    #[arg(long = "xray-sdk-enabled", env = "AWS_XRAY_SDK_ENABLED", value_name = "AWS_XRAY_SDK_ENABLED", default_value = "true", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub sdk_enabled: bool,
    /// The X-Ray daemon: `host:port` (resolved when sending) or `tcp:host:port udp:host:port`; default 127.0.0.1:2000
    #[arg(long = "xray-daemon-address", env = "AWS_XRAY_DAEMON_ADDRESS", value_name = "AWS_XRAY_DAEMON_ADDRESS", value_parser = DaemonAddress::parse)]
    pub daemon_address: Option<DaemonAddress>,
    /// Dynamic naming: a request whose host matches this pattern (`*`, `?`) names its segment after the host
    #[arg(long = "xray-url", env = "AWS_XRAY_URL", value_name = "AWS_XRAY_URL")]
    pub url_pattern: Option<String>,
    /// Segment name when dynamic naming does not apply (default: OTEL_SERVICE_NAME)
    #[arg(
        long = "xray-tracing-name",
        env = "AWS_XRAY_TRACING_NAME",
        value_name = "AWS_XRAY_TRACING_NAME"
    )]
    pub tracing_name: Option<String>,
    /// How segments reach X-Ray: `daemon` (UDP, the default), `api` (PutTraceSegments) or `otlp` (X-Ray's OTLP endpoint, SigV4)
    #[arg(long = "xray-mode", env = "XRAY_MODE", value_name = "XRAY_MODE")]
    pub mode: Option<XrayMode>,
    /// X-Ray's OTLP endpoint for XRAY_MODE=otlp; default https://xray.{region}.amazonaws.com/v1/traces
    #[arg(id = "xray_otlp_endpoint", long = "xray-otlp-endpoint", env = "XRAY_OTLP_ENDPOINT", value_name = "XRAY_OTLP_ENDPOINT", value_parser = parse_url)]
    pub otlp_endpoint: Option<Uri>,
    /// `local` (the rules file or the default rule) or `centralized` (rules and quotas from the X-Ray API, the local rules when it is unreachable)
    #[arg(
        long = "xray-sampling",
        env = "XRAY_SAMPLING",
        value_name = "XRAY_SAMPLING",
        default_value = "local"
    )]
    pub sampling: XraySampling,
    /// Centralized sampling: how often the rules are fetched
    #[arg(long = "xray-sampling-rules-interval", env = "XRAY_SAMPLING_RULES_INTERVAL", value_name = "XRAY_SAMPLING_RULES_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub sampling_rules_interval: Duration,
    /// Centralized sampling: how often statistics are reported and quotas fetched
    #[arg(long = "xray-sampling-targets-interval", env = "XRAY_SAMPLING_TARGETS_INTERVAL", value_name = "XRAY_SAMPLING_TARGETS_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub sampling_targets_interval: Duration,
    /// Sampling rules: the `SamplingRule` JSON of `aws xray create-sampling-rule`, or the SDKs' local rules file; default 1 request/s then 5%
    #[arg(long = "xray-sampling-rules", env = "XRAY_SAMPLING_RULES", value_name = "XRAY_SAMPLING_RULES", value_parser = parse_rules_file)]
    pub sampling_rules: Option<SamplingRules>,
}

/// A sampling rules file, read and checked at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingRules {
    pub path: String,
    pub rules: Vec<Rule>,
}

fn parse_rules_file(raw: &str) -> Result<SamplingRules, String> {
    let text = std::fs::read_to_string(raw).map_err(|err| format!("cannot read {raw}: {err}"))?;
    let rules = parse_rules(&text).map_err(|err| format!("{raw}: {err}"))?;
    Ok(SamplingRules {
        path: raw.to_owned(),
        rules,
    })
}

impl XrayConfig {
    /// Whether X-Ray is on, and if not, why.
    pub fn enabled(&self) -> Result<(), &'static str> {
        if !self.sdk_enabled {
            return Err("AWS_XRAY_SDK_ENABLED=false");
        }
        if self.mode.is_none()
            && self.daemon_address.is_none()
            && self.url_pattern.is_none()
            && self.sampling_rules.is_none()
        {
            return Err(
                "XRAY_MODE, AWS_XRAY_DAEMON_ADDRESS, AWS_XRAY_URL and XRAY_SAMPLING_RULES unset",
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum XraySampling {
    Local,
    Centralized,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum XrayMode {
    Daemon,
    Api,
    Otlp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OtlpProtocol {
    #[value(name = "http/protobuf")]
    HttpProtobuf,
    #[value(name = "grpc")]
    Grpc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TracesExporter {
    Otlp,
    Console,
    None,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Auto,
    Pretty,
    Json,
}

/// A value that must never be printed whole: shows only its last four characters.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chars: Vec<char> = self.0.chars().collect();
        if chars.len() <= 8 {
            return f.write_str("****");
        }
        let tail: String = chars[chars.len() - 4..].iter().collect();
        write!(f, "…{tail}")
    }
}

/// A parsed `key=value,...` header list; every value is treated as secret.
#[derive(Clone, Debug, PartialEq)]
pub struct Headers(pub Vec<(HeaderName, Secret)>);

/// A parsed `key=value,...` list of plain values.
#[derive(Clone, Debug, PartialEq)]
pub struct Pairs(pub Vec<(String, String)>);

fn parse_handle(raw: &str) -> Result<Handle, String> {
    raw.parse().map_err(|err| format!("{err}"))
}

fn parse_url(raw: &str) -> Result<Uri, String> {
    let uri: Uri = raw
        .trim()
        .parse()
        .map_err(|err| format!("not a URL: {err}"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(_)) => Ok(uri),
        _ => Err("must be an http:// or https:// URL with a host".into()),
    }
}

/// An origin as browsers send it: scheme, host and port, no path.
fn parse_origin(raw: &str) -> Result<HeaderValue, String> {
    let uri = parse_url(raw)?;
    let origin = format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map(|a| a.as_str()).unwrap_or_default()
    );
    HeaderValue::from_str(&origin).map_err(|err| err.to_string())
}

/// `5s`, `250ms`, `1m`, or a bare number of seconds.
fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (number, unit) = raw
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((raw, "s"), |at| raw.split_at(at));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("not a duration: {raw:?} (try 5s or 500ms)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit {unit:?} (use ms, s or m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|err| err.to_string())
}

/// A zero interval or timeout would spin or fail every call.
fn parse_nonzero_duration(raw: &str) -> Result<Duration, String> {
    match parse_duration(raw)? {
        Duration::ZERO => Err("must be more than zero".into()),
        duration => Ok(duration),
    }
}

fn parse_millis(raw: &str) -> Result<Duration, String> {
    raw.trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| format!("not a whole number of milliseconds: {raw:?}"))
}

fn parse_ratio(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err(format!("must be a number from 0 to 1, got {raw:?}")),
    }
}

fn parse_secret(raw: &str) -> Result<Secret, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("is set but empty".into());
    }
    Ok(Secret::new(raw))
}

/// Splits a W3C-style `key=value,key2=value2` list, percent-decoding values.
fn split_pairs(raw: &str) -> Result<Vec<(String, String)>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not key=value"))?;
            let key = key.trim();
            if key.is_empty() {
                return Err(format!("{item:?} has an empty key"));
            }
            Ok((key.to_owned(), percent_decode(value.trim())?))
        })
        .collect()
}

fn percent_decode(raw: &str) -> Result<String, String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "has a broken %-escape".to_owned())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "is not UTF-8 once %-decoded".to_owned())
}

fn parse_headers(raw: &str) -> Result<Headers, String> {
    split_pairs(raw)?
        .into_iter()
        .map(|(key, value)| {
            let name = HeaderName::from_bytes(key.as_bytes())
                .map_err(|_| format!("{key:?} is not a valid header name"))?;
            HeaderValue::from_str(&value)
                .map_err(|_| format!("the value of {key:?} is not a valid header value"))?;
            Ok((name, Secret::new(value)))
        })
        .collect::<Result<_, String>>()
        .map(Headers)
}

fn parse_pairs(raw: &str) -> Result<Pairs, String> {
    split_pairs(raw).map(Pairs)
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
            && t.otlp_traces_url().is_none()
        {
            return Err(
                "OTEL_TRACES_EXPORTER includes otlp, but neither OTEL_EXPORTER_OTLP_ENDPOINT, \
                        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT nor HONEYCOMB_API_KEY is set"
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

const HONEYCOMB_ENDPOINT: &str = "https://api.honeycomb.io";

impl TelemetryConfig {
    /// Where OTLP traces go: the traces URL as given, else the base URL with
    /// `/v1/traces` (HTTP) appended, else Honeycomb when its key is set.
    pub fn otlp_traces_url(&self) -> Option<String> {
        if let Some(url) = &self.otlp_traces_endpoint {
            return Some(url.to_string());
        }
        let base = match (&self.otlp_endpoint, &self.honeycomb_api_key) {
            (Some(url), _) => url.to_string(),
            (None, Some(_)) => HONEYCOMB_ENDPOINT.to_owned(),
            (None, None) => return None,
        };
        let base = base.trim_end_matches('/');
        Some(match self.otlp_protocol {
            OtlpProtocol::Grpc => base.to_owned(),
            OtlpProtocol::HttpProtobuf if base.ends_with("/v1/traces") => base.to_owned(),
            OtlpProtocol::HttpProtobuf => format!("{base}/v1/traces"),
        })
    }

    /// Every header an OTLP export carries; the Honeycomb key becomes
    /// `x-honeycomb-team` unless the header list already sets it.
    pub fn otlp_headers(&self) -> Vec<(HeaderName, Secret)> {
        let mut headers = self.otlp_headers.clone().map(|h| h.0).unwrap_or_default();
        if let Some(key) = &self.honeycomb_api_key {
            let team = HeaderName::from_static("x-honeycomb-team");
            if !headers.iter().any(|(name, _)| *name == team) {
                headers.push((team, key.clone()));
            }
        }
        headers
    }

    /// The trace sinks asked for, after the defaults are applied.
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
            None if self.otlp_traces_url().is_some() => vec![TracesExporter::Otlp],
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[&str]) -> Result<Config, ConfigError> {
        let mut args = vec!["cruddur-backend".to_owned()];
        args.extend(vars.iter().map(|v| v.to_string()));
        Config::try_parse_from(args)
    }

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
            config.telemetry.otlp_traces_url().unwrap(),
            "https://api.honeycomb.io/v1/traces"
        );
        let config = parse(&["--otlp-endpoint", "http://collector:4318/v1/traces"]).unwrap();
        assert_eq!(
            config.telemetry.otlp_traces_url().unwrap(),
            "http://collector:4318/v1/traces"
        );
        let config = parse(&["--otlp-traces-endpoint", "http://c:4318/custom"]).unwrap();
        assert_eq!(
            config.telemetry.otlp_traces_url().unwrap(),
            "http://c:4318/custom"
        );
        let config = parse(&[
            "--otlp-endpoint",
            "http://c:4317",
            "--otlp-protocol",
            "grpc",
        ])
        .unwrap();
        assert_eq!(config.telemetry.otlp_traces_url().unwrap(), "http://c:4317");
    }

    #[test]
    fn honeycomb_key_alone_turns_otlp_on() {
        let config = parse(&["--honeycomb-api-key", "hcaik_0123456789abcd"]).unwrap();
        let t = &config.telemetry;
        assert_eq!(
            t.otlp_traces_url().unwrap(),
            "https://api.honeycomb.io/v1/traces"
        );
        assert_eq!(t.traces_exporters(), vec![TracesExporter::Otlp]);
        let headers = t.otlp_headers();
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
    fn header_lists_are_parsed_and_decoded() {
        let config = parse(&["--otlp-headers", "x-honeycomb-team=abc%3D,x-other = two "]).unwrap();
        let headers = config.telemetry.otlp_headers.unwrap().0;
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

    #[test]
    fn cloudwatch_defaults() {
        let cloudwatch = parse(&[]).unwrap().telemetry.cloudwatch;
        assert_eq!(cloudwatch.log_group, "cruddur");
        assert_eq!(cloudwatch.log_stream, None);
        assert!(cloudwatch.create_group);
        assert_eq!(cloudwatch.log_level, "info");
        assert_eq!(cloudwatch.flush_interval, Duration::from_secs(2));
        let cloudwatch = parse(&["--cloudwatch-create-group", "false"])
            .unwrap()
            .telemetry
            .cloudwatch;
        assert!(!cloudwatch.create_group);
    }

    #[test]
    fn rollbar_is_off_without_a_token_and_has_defaults() {
        let rollbar = parse(&[]).unwrap().telemetry.rollbar;
        assert!(rollbar.access_token.is_none());
        assert_eq!(rollbar.environment, "development");
        assert_eq!(rollbar.endpoint, "https://api.rollbar.com/api/1/item/");
        assert_eq!(rollbar.level, RollbarLevel::Error);
        assert_eq!(rollbar.max_items_per_minute, 60);
    }

    #[test]
    fn durations_and_origins() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(
            parse_origin("https://3000-abc.gitpod.io/").unwrap(),
            "https://3000-abc.gitpod.io"
        );
    }

    #[test]
    fn secrets_show_only_their_tail() {
        assert_eq!(format!("{:?}", Secret::new("short")), "****");
        assert_eq!(Secret::new("0123456789").to_string(), "…6789");
    }
}

//! CloudWatch Logs: every log event as one JSON line (the `LogRecord`, with
//! its trace ids) in one stream of this process, shipped in batches by the
//! shared queue. On when the environment names AWS (`CLOUDWATCH_LOGS=auto`,
//! see `config::AWS_SIGNS`) or `CLOUDWATCH_LOGS=true`, and the AWS SDK's own
//! chain then finds a region and credentials; nothing looks for AWS
//! otherwise.

mod batch;
mod client;
mod doctor;

use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::Credentials;
use aws_credential_types::credential_feature::AwsCredentialFeature;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_cloudwatchlogs::config::Builder as ClientConfig;
use aws_sdk_cloudwatchlogs::config::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_cloudwatchlogs::error::DisplayErrorContext;
use chrono::{DateTime, Utc};
use clap::builder::BoolishValueParser;
use clap::{Args, ValueEnum};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

pub use batch::LogEvent;
pub use doctor::examine;

use super::logs::LogRecord;
use super::queue::{self, QueueConfig, QueueSender, SinkStats, Weigh};
use super::sink::{LogLayer, LogLines, Shared, SinkParts, TelemetryError};
use crate::config::values::{parse_filter, parse_nonzero_duration};

/// How long start-up waits for the AWS chain: a machine without AWS must
/// not wait on instance metadata that is not there.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Tries per batch; the queue waits a doubling, jittered backoff between.
const MAX_ATTEMPTS: u32 = 5;
const INITIAL_BACKOFF: Duration = Duration::from_millis(200);

/// CloudWatch Logs. Region, credentials and endpoint come from the AWS
/// SDK's own chain (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, profiles,
/// `AWS_ENDPOINT_URL`...), read by the SDK itself. Argument ids carry the
/// prefix: other sinks have a `timeout` too, and clap ids must be unique.
#[derive(Debug, Clone, Args)]
pub struct CloudWatchSettings {
    /// `auto`: on when AWS_REGION, AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, AWS_PROFILE or a web-identity or container-credentials variable is set; `true`: also look for an instance role where none is (EC2); `false`: off
    #[arg(
        id = "cloudwatch-logs",
        long = "cloudwatch-logs",
        env = "CLOUDWATCH_LOGS",
        value_name = "CLOUDWATCH_LOGS",
        default_value = "auto"
    )]
    pub switch: Switch,
    /// What the environment says of AWS (`config::AWS_SIGNS`, the regions).
    #[arg(skip = crate::config::AwsEnvironment::read())]
    pub aws: crate::config::AwsEnvironment,
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
        default_value = "info",
        value_parser = parse_filter
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

/// `CLOUDWATCH_LOGS`: whether start-up looks for AWS at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// Only when the environment names AWS.
    Auto,
    /// Always: the SDK's whole chain, instance metadata included.
    #[value(name = "true", alias = "on", alias = "1")]
    On,
    #[value(name = "false", alias = "off", alias = "0")]
    Off,
}

/// Whether events from `target` may be shipped. The AWS SDK and its HTTP
/// stack log from the sink's own worker: shipping those would make every
/// call log more to ship.
fn ships(target: &str) -> bool {
    const TRANSPORT: [&str; 5] = ["aws_", "hyper", "h2", "rustls", "tower"];
    !TRANSPORT.iter().any(|prefix| target.starts_with(prefix))
}

/// The layer, filtered by `CLOUDWATCH_LOG_LEVEL` and [`ships`].
fn layer(events: QueueSender<LogEvent>, level: EnvFilter) -> LogLayer {
    Box::new(
        CloudWatchLayer { events }.with_filter(level.and(filter_fn(|meta| ships(meta.target())))),
    )
}

struct CloudWatchLayer {
    events: QueueSender<LogEvent>,
}

impl<S> Layer<S> for CloudWatchLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let record = LogRecord::from_event(event, &ctx);
        self.events.try_send(LogEvent::new(
            record.timestamp.timestamp_millis(),
            record.to_json(),
        ));
    }
}

/// `{hostname}/{start time}-{pid}`: one stream per process, sorted by start,
/// unique even when two processes start in the same second.
fn stream_name(host: &str, started: DateTime<Utc>, pid: u32) -> String {
    // ':' and '*' are not allowed in stream names.
    let host: String = host
        .trim()
        .chars()
        .map(|c| if c == ':' || c == '*' { '-' } else { c })
        .collect();
    let host = if host.is_empty() { "localhost" } else { &host };
    format!("{host}/{}-{pid}", started.format("%Y-%m-%dT%H-%M-%SZ"))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default()
}

/// Why the AWS chain gave nothing usable.
enum Unresolved {
    Region,
    Credentials(String),
    Slow,
}

/// What the SDK's chain found: its configuration, and where the
/// credentials came from.
struct Resolved {
    sdk: aws_config::SdkConfig,
    credentials_from: &'static str,
}

/// Runs the SDK's region and credential chain on a thread of its own,
/// giving up after [`RESOLVE_TIMEOUT`].
fn resolve_aws() -> Result<Resolved, Unresolved> {
    let (found_tx, found) = std::sync::mpsc::channel();
    let resolving = std::thread::Builder::new()
        .name("cloudwatch-resolve".into())
        .spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            let found = runtime.block_on(async {
                let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
                if sdk.region().is_none() {
                    return Err(Unresolved::Region);
                }
                let provider = sdk
                    .credentials_provider()
                    .ok_or_else(|| Unresolved::Credentials("no provider".into()))?;
                let credentials = aws_credential_check(&provider).await?;
                Ok(Resolved {
                    sdk,
                    credentials_from: credentials_source(&credentials),
                })
            });
            let _ = found_tx.send(found);
        });
    if resolving.is_err() {
        return Err(Unresolved::Slow);
    }
    found
        .recv_timeout(RESOLVE_TIMEOUT)
        .unwrap_or(Err(Unresolved::Slow))
}

async fn aws_credential_check(
    provider: &SharedCredentialsProvider,
) -> Result<Credentials, Unresolved> {
    match provider.provide_credentials().await {
        Ok(credentials) => Ok(credentials),
        // Nothing found needs no detail; a broken profile or provider does.
        Err(CredentialsError::CredentialsNotLoaded(_)) => {
            Err(Unresolved::Credentials(String::new()))
        }
        Err(err) => Err(Unresolved::Credentials(
            DisplayErrorContext(&err).to_string(),
        )),
    }
}

/// Where the SDK found `credentials`, as the start-up line says it: read
/// from the tags each provider of the SDK's chain puts on what it returns
/// (the SDK reports them in its user agent).
fn credentials_source(credentials: &Credentials) -> &'static str {
    use AwsCredentialFeature as F;
    let features = credentials
        .get_property::<Vec<AwsCredentialFeature>>()
        .map(Vec::as_slice)
        .unwrap_or_default();
    features
        .iter()
        .find_map(|feature| match feature {
            F::CredentialsEnvVars => Some("AWS_ACCESS_KEY_ID"),
            F::CredentialsEnvVarsStsWebIdToken | F::CredentialsStsAssumeRoleWebId => {
                Some("a web identity token")
            }
            F::CredentialsProfile
            | F::CredentialsProfileSourceProfile
            | F::CredentialsProfileNamedProvider
            | F::CredentialsProfileStsWebIdToken
            | F::CredentialsProfileProcess
            | F::CredentialsProfileLogin => Some("the AWS profile"),
            F::CredentialsProfileSso | F::CredentialsSso => Some("AWS SSO"),
            F::CredentialsHttp => Some("the container credentials endpoint"),
            F::CredentialsImds => Some("the instance metadata service"),
            F::CredentialsProcess => Some("a credential process"),
            _ => None,
        })
        .unwrap_or("the SDK's chain")
}

/// Where the region came from: the environment, else the profile or the
/// instance metadata (the SDK does not say which).
fn region_source(signs: &[&'static str]) -> &'static str {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .into_iter()
        .find(|name| signs.contains(name))
        .unwrap_or("the AWS profile or instance metadata")
}

fn off(reason: String) -> SinkParts {
    SinkParts::announce_off("cloudwatch", reason)
}

/// Events the worker takes at a time: a quarter of what one PutLogEvents
/// call may hold. A batch in flight is held three times over (our events,
/// the SDK's input, the JSON body), so smaller batches lower peak memory
/// under load (5-7 MiB less with every sink on, bench/README.md, "Memory")
/// at no cost in throughput; CloudWatch bills bytes, not calls.
const BATCH_EVENTS: usize = batch::MAX_EVENTS / 4;

/// Why the sink is off before anything is looked up, if it is.
fn off_by_settings(config: &CloudWatchSettings) -> Option<String> {
    if config.log_level.trim() == "off" {
        return Some("CLOUDWATCH_LOG_LEVEL=off".into());
    }
    match config.switch {
        Switch::Off => Some("CLOUDWATCH_LOGS=false".into()),
        Switch::Auto if config.aws.signs.is_empty() => Some(
            "no AWS configured: set AWS_REGION and credentials, \
             or CLOUDWATCH_LOGS=true to use an instance role"
                .into(),
        ),
        Switch::Auto | Switch::On => None,
    }
}

/// What the SDK's chain found, or why it found nothing usable.
fn resolved() -> Result<Resolved, String> {
    resolve_aws().map_err(|unresolved| match unresolved {
        Unresolved::Region => "no AWS region".into(),
        Unresolved::Credentials(why) if why.is_empty() => "no AWS credentials".into(),
        Unresolved::Credentials(why) => format!("no AWS credentials: {why}"),
        Unresolved::Slow => format!("no AWS region and credentials within {RESOLVE_TIMEOUT:?}"),
    })
}

/// What to change when the SDK's chain found nothing usable (`why` is
/// [`resolved`]'s answer).
fn resolve_aws_hint(why: &str) -> &'static str {
    if why.starts_with("no AWS region and credentials") {
        "the SDK's chain did not answer in time: off AWS, set the region and \
         credentials in the environment"
    } else if why.starts_with("no AWS region") {
        "set AWS_REGION (the SDK also reads AWS_DEFAULT_REGION; AWS_REGION wins)"
    } else {
        "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE; on AWS, give \
         the task or instance a role"
    }
}

/// The CloudWatch Logs client: the SDK's own retries off (the queue
/// retries and counts), every call bounded by `timeout`.
fn client(sdk: &aws_config::SdkConfig, timeout: Duration) -> aws_sdk_cloudwatchlogs::Client {
    let config = ClientConfig::from(sdk)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(timeout)
                .operation_attempt_timeout(timeout)
                .operation_timeout(timeout)
                .build(),
        )
        .build();
    aws_sdk_cloudwatchlogs::Client::from_conf(config)
}

/// Where the SDK sends: `AWS_ENDPOINT_URL`, else the region's endpoint.
fn endpoint(sdk: &aws_config::SdkConfig) -> (String, String) {
    let region = sdk.region().map(ToString::to_string).unwrap_or_default();
    let endpoint = sdk
        .endpoint_url()
        .map_or_else(|| format!("logs.{region}.amazonaws.com"), ToOwned::to_owned);
    (region, endpoint)
}

/// Starts the sink if AWS resolves, and prints one line either way.
pub fn start(config: &CloudWatchSettings, shared: &Shared) -> Result<SinkParts, TelemetryError> {
    if let Some(why) = off_by_settings(config) {
        return Ok(off(why));
    }
    // Checked when the config was read (`parse_filter`).
    let level = EnvFilter::new(&config.log_level);
    let Resolved {
        sdk,
        credentials_from,
    } = match resolved() {
        Ok(resolved) => resolved,
        Err(why) => return Ok(off(why)),
    };
    let stream = config
        .log_stream
        .clone()
        .unwrap_or_else(|| stream_name(&hostname(), Utc::now(), std::process::id()));
    let (region, endpoint) = endpoint(&sdk);
    let destination = format!("{endpoint} ({region}) {}/{stream}", config.log_group);
    eprintln!(
        "telemetry: cloudwatch on: group {} stream {stream}, region {region} (from {}), \
         credentials from {credentials_from}, endpoint {endpoint}, level {}",
        config.log_group,
        region_source(&config.aws.signs),
        config.log_level
    );
    let stats = SinkStats::new("cloudwatch", destination);
    let queue = QueueConfig {
        capacity: 32_768,
        max_bytes: shared.queue_max_bytes,
        max_batch: BATCH_EVENTS,
        flush_interval: config.flush_interval,
        // A batch is a call (group and stream once; more calls when events are large);
        // one that takes longer resumes after its accepted calls on the next try.
        attempt_timeout: config.timeout * 4,
        max_attempts: MAX_ATTEMPTS,
        initial_backoff: INITIAL_BACKOFF,
    };
    let logs = client(&sdk, config.timeout);
    let sink_stats = Arc::clone(&stats);
    let group = config.log_group.clone();
    let create_group = config.create_group;
    let events = queue::spawn(Arc::clone(&stats), queue, move || {
        Ok::<_, TelemetryError>(client::CloudWatchSink::new(
            logs,
            group,
            stream,
            create_group,
            sink_stats,
        ))
    })?;
    Ok(SinkParts::on(events.clone())
        .with_logs(layer(events.clone(), level))
        .with_log_lines(Arc::new(Lines(events))))
}

/// The stream as other signals write to it (the metrics' EMF records).
struct Lines(QueueSender<LogEvent>);

impl LogLines for Lines {
    fn write(&self, timestamp_ms: i64, line: String) {
        self.0.try_send(LogEvent::new(timestamp_ms, line));
    }
}

impl Weigh for LogEvent {
    fn weight(&self) -> usize {
        std::mem::size_of::<LogEvent>() + self.message.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

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
    fn cloudwatch_logs_is_auto_true_or_false() {
        let switch = |vars: &[&str]| parse(vars).unwrap().telemetry.cloudwatch.switch;
        assert_eq!(switch(&[]), Switch::Auto);
        assert_eq!(switch(&["--cloudwatch-logs", "true"]), Switch::On);
        assert_eq!(switch(&["--cloudwatch-logs", "on"]), Switch::On);
        assert_eq!(switch(&["--cloudwatch-logs", "false"]), Switch::Off);
        let Err(crate::config::ConfigError::Invalid(line)) = parse(&["--cloudwatch-logs", "maybe"])
        else {
            panic!("maybe is not a switch");
        };
        assert!(
            line.starts_with("CLOUDWATCH_LOGS=\"maybe\" is invalid"),
            "{line}"
        );
    }

    #[test]
    fn the_start_line_says_where_aws_was_found() {
        assert_eq!(region_source(&["AWS_DEFAULT_REGION"]), "AWS_DEFAULT_REGION");
        assert_eq!(
            region_source(&["AWS_ACCESS_KEY_ID", "AWS_REGION", "AWS_DEFAULT_REGION"]),
            "AWS_REGION"
        );
        assert_eq!(
            region_source(&["AWS_PROFILE"]),
            "the AWS profile or instance metadata"
        );
        let mut credentials = Credentials::new("AKID", "secret", None, None, "test");
        assert_eq!(credentials_source(&credentials), "the SDK's chain");
        credentials.set_property(vec![AwsCredentialFeature::CredentialsImds]);
        assert_eq!(
            credentials_source(&credentials),
            "the instance metadata service"
        );
        credentials.set_property(vec![
            AwsCredentialFeature::ResolvedAccountId,
            AwsCredentialFeature::CredentialsEnvVars,
        ]);
        assert_eq!(credentials_source(&credentials), "AWS_ACCESS_KEY_ID");
    }

    #[test]
    fn the_sdk_and_its_http_stack_are_never_shipped() {
        for target in [
            "aws_smithy_runtime::client::orchestrator",
            "aws_config::profile",
            "aws_sdk_cloudwatchlogs::operation",
            "hyper_util::client::legacy::pool",
            "hyper::proto",
            "h2::codec",
            "rustls::client::hs",
            "tower::buffer",
        ] {
            assert!(!ships(target), "{target}");
        }
        for target in ["cruddur::access", "cruddur_backend::services::activities"] {
            assert!(ships(target), "{target}");
        }
    }

    #[test]
    fn the_stream_is_named_after_the_host_and_the_start() {
        let started = DateTime::parse_from_rfc3339("2026-11-22T02:03:04Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            stream_name("ip-10-0-0-7\n", started, 42),
            "ip-10-0-0-7/2026-11-22T02-03-04Z-42"
        );
        assert_eq!(
            stream_name("a:b*c", started, 1),
            "a-b-c/2026-11-22T02-03-04Z-1"
        );
        assert_eq!(
            stream_name("", started, 1),
            "localhost/2026-11-22T02-03-04Z-1"
        );
    }
}

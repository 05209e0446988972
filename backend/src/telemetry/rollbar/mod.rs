//! Error reporting to Rollbar, designed like sentry-tower/sentry-tracing:
//! a reporter behind the shared bounded queue, a tracing layer turning log
//! events at or above `ROLLBAR_LEVEL` into items, a panic hook, and a part
//! in every request (`request`) that gathers what one request produced in
//! the request's own server span, so that a failing request gives exactly
//! one item. `/rollbar/test` is the bootcamp's check that it all works.

mod doctor;
pub mod item;
mod request;
mod sink;
mod test_route;

use std::backtrace::Backtrace;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use clap::{Args, ValueEnum};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::Uri;
use serde_json::{Map, Value};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

pub use self::doctor::examine;
use self::item::{Body, Origin, Report, Stack, TraceRef};
use self::request::Captured;
use super::logs::LogRecord;
use super::queue::{self, QueueConfig, QueueSender, SinkStats};
use super::sink::{LogLayer, Shared, SinkParts, TelemetryError};
use crate::config::values::{Secret, parse_duration, parse_secret, parse_url};

/// Error reporting to Rollbar; on when the access token is set.
#[derive(Debug, Clone, Args)]
pub struct RollbarSettings {
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

/// Items are small and rare; a full queue means Rollbar is unreachable.
/// (Its byte bound is set at start, from `TELEMETRY_QUEUE_MAX_BYTES`.)
const QUEUE: QueueConfig = QueueConfig {
    capacity: 1024,
    max_bytes: usize::MAX,
    max_batch: 1,
    flush_interval: Duration::from_secs(1),
    attempt_timeout: Duration::from_secs(5),
    max_attempts: 3,
    initial_backoff: Duration::from_millis(500),
};

/// Log events from the HTTP stack the reporter itself uses are never
/// reported: a failing delivery must not feed itself.
const TRANSPORT_TARGETS: &[&str] = &["hyper", "reqwest", "h2", "rustls", "tonic"];

/// `per_minute` items at once, refilled evenly over the minute (config
/// refuses 0).
fn rate_limit(per_minute: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN))
}

/// Queues reports for Rollbar; cheap to clone, never blocks.
#[derive(Clone)]
struct Reporter {
    queue: QueueSender<Report>,
    limiter: Arc<DefaultDirectRateLimiter>,
    stopped: Arc<AtomicBool>,
    stats: Arc<SinkStats>,
}

impl Reporter {
    /// Queues `report`, or drops and counts it when over the rate limit or
    /// after Rollbar rejected the token.
    fn send(&self, report: Report) {
        if self.stopped.load(Ordering::Relaxed) || self.limiter.check().is_err() {
            self.stats.count_drop(1);
            return;
        }
        self.queue.try_send(report);
    }

    /// Keeps `report` with the request the current span belongs to, else
    /// sends it now.
    fn keep_or_send(&self, report: Report, keep: fn(&mut Captured, Report)) {
        if let Some(report) = request::keep(&tracing::Span::current(), report, keep) {
            self.send(report);
        }
    }

    /// Reports a message, like pyrollbar's `report_message`.
    fn report_message(&self, level: RollbarLevel, text: &str) {
        let body = Body::Message {
            text: text.to_owned(),
            extra: Map::new(),
        };
        let report = Report::new(level, body, &format!("message {text}"));
        self.keep_or_send(report, |captured, report| captured.messages.push(report));
    }
}

fn rollbar_level(level: &Level) -> RollbarLevel {
    match *level {
        Level::ERROR => RollbarLevel::Error,
        Level::WARN => RollbarLevel::Warning,
        Level::INFO => RollbarLevel::Info,
        _ => RollbarLevel::Debug,
    }
}

fn threshold(level: RollbarLevel) -> Option<Level> {
    match level {
        RollbarLevel::Debug => Some(Level::DEBUG),
        RollbarLevel::Info => Some(Level::INFO),
        RollbarLevel::Warning => Some(Level::WARN),
        RollbarLevel::Error => Some(Level::ERROR),
        RollbarLevel::Critical => None,
    }
}

/// Turns each log event it is given into a report.
struct RollbarLayer {
    reporter: Reporter,
}

impl<S> Layer<S> for RollbarLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        if TRANSPORT_TARGETS
            .iter()
            .any(|target| meta.target().starts_with(target))
        {
            return;
        }
        let record = LogRecord::from_event(event, &ctx);
        let mut extra: Map<String, Value> = record
            .fields
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect();
        extra.insert("target".into(), Value::from(record.target));
        let site = format!(
            "event {} {}:{}",
            meta.target(),
            meta.file().unwrap_or_default(),
            meta.line().unwrap_or_default()
        );
        let body = Body::Message {
            text: record.message,
            extra,
        };
        let mut report = Report::new(rollbar_level(meta.level()), body, &site);
        report.trace = record.ids.map(|ids| TraceRef {
            trace_id: ids.trace_id,
            span_id: ids.span_id,
        });
        // The outermost span of the event's trace is its request's server span.
        let request = ctx.event_span(event).and_then(|span| span.scope().last());
        let unkept = match request {
            Some(span) => {
                request::keep_in(&mut span.extensions_mut(), report, |captured, report| {
                    captured.errors.push(report)
                })
            }
            None => Some(report),
        };
        if let Some(report) = unkept {
            self.reporter.send(report);
        }
    }
}

/// The tracing layer for log events at or above `level`. Spans the traces
/// are made of pass its filter too, so that events find their request.
fn layer(reporter: Reporter, level: Level) -> LogLayer {
    Box::new(
        RollbarLayer { reporter }.with_filter(filter_fn(move |meta| {
            if meta.is_span() {
                *meta.level() <= Level::INFO
            } else {
                *meta.level() <= level
            }
        })),
    )
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panicked".to_owned()
    }
}

/// Reports every panic with its backtrace, then lets the hook that was
/// there before (by default: the message on stderr) do its part. Installed
/// once per process, like the hook itself.
fn install_panic_hook(reporter: Reporter) {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(move || {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = panic_text(info.payload());
            let site = info.location().map_or_else(String::new, |at| {
                format!("{}:{}:{}", at.file(), at.line(), at.column())
            });
            let body = Body::Trace {
                class: "panic".into(),
                message,
                stack: Stack::Captured(Arc::new(Backtrace::force_capture())),
            };
            let report = Report::new(RollbarLevel::Critical, body, &format!("panic {site}"));
            reporter.keep_or_send(report, |captured, report| {
                captured.panic.get_or_insert(report);
            });
            previous(info);
        }));
    });
}

/// The host name, without reading the environment (config owns that).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Starts the Rollbar worker when a token is set, installs the panic hook,
/// and prints the start-up line. Its parts: the error-event layer, its part
/// in every request, and `/rollbar/test` (also when off).
pub fn start(settings: &RollbarSettings, shared: &Shared) -> Result<SinkParts, TelemetryError> {
    let Some(token) = &settings.access_token else {
        return Ok(
            SinkParts::announce_off("rollbar", "ROLLBAR_ACCESS_TOKEN unset")
                .with_routes(test_route::routes(None)),
        );
    };
    let url = settings.endpoint.to_string();
    let origin = Origin {
        environment: settings.environment.clone(),
        host: host_name(),
        root: env!("CARGO_MANIFEST_DIR").into(),
        code_version: settings
            .code_version
            .clone()
            .or_else(|| option_env!("CRUDDUR_GIT_REVISION").map(str::to_owned))
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
    };
    eprintln!(
        "telemetry: rollbar on: {url} (environment {}, code_version {}, events from {}, \
         at most {}/min), token {token}",
        origin.environment,
        origin.code_version,
        settings.level.as_str(),
        settings.max_items_per_minute
    );
    let stats = SinkStats::new("rollbar", url.clone());
    let stopped = Arc::new(AtomicBool::new(false));
    let queue_config = QueueConfig {
        attempt_timeout: settings.timeout,
        max_bytes: shared.queue_max_bytes,
        ..QUEUE
    };
    let queue = queue::spawn(Arc::clone(&stats), queue_config, || {
        sink::RollbarSink::new(url, token, settings.timeout, origin, Arc::clone(&stopped))
    })?;
    let reporter = Reporter {
        queue: queue.clone(),
        limiter: Arc::new(RateLimiter::direct(rate_limit(
            settings.max_items_per_minute,
        ))),
        stopped,
        stats,
    };
    install_panic_hook(reporter.clone());
    let mut parts = SinkParts::on(queue).with_routes(test_route::routes(Some(reporter.clone())));
    parts.request_hook = Some(Arc::new(request::Hook::new(reporter.clone())));
    if let Some(level) = threshold(settings.level) {
        parts = parts.with_logs(layer(reporter, level));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;
    use crate::config::parse;

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
    fn the_rate_limit_allows_a_minute_of_items_at_once_then_refills() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::direct_with_clock(rate_limit(3), clock.clone());
        let allow = || limiter.check().is_ok();
        assert!((0..3).all(|_| allow()));
        assert!(!allow());
        clock.advance(Duration::from_secs(20));
        assert!(allow(), "one item per 20 s at 3/min");
        assert!(!allow());
    }

    #[test]
    fn event_levels_map_to_rollbar_levels() {
        assert_eq!(rollbar_level(&Level::ERROR), RollbarLevel::Error);
        assert_eq!(rollbar_level(&Level::WARN), RollbarLevel::Warning);
        assert_eq!(rollbar_level(&Level::TRACE), RollbarLevel::Debug);
        assert_eq!(threshold(RollbarLevel::Critical), None);
        assert_eq!(threshold(RollbarLevel::Warning), Some(Level::WARN));
    }
}

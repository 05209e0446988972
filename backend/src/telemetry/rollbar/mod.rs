//! Error reporting to Rollbar, designed like sentry-tower/sentry-tracing:
//! a reporter behind the shared bounded queue, a tracing layer turning log
//! events at or above `ROLLBAR_LEVEL` into items, a panic hook, and a
//! request scope (used by `middleware::rollbar`) that gathers what one
//! request produced so that a failing request gives exactly one item.
//!
//! The reporter is process-wide, like the subscriber and the panic hook it
//! works with: `init` installs it once, and the request middleware, the
//! panic hook and [`report_message`] find it there.

pub mod item;
mod sink;

use std::backtrace::Backtrace;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::MatchedPath;
use serde_json::{Map, Value};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use self::item::{Body, Origin, Report, TraceRef};
use super::logs::LogRecord;
use super::queue::{self, Flush, QueueConfig, QueueSender, SinkStats};
use super::{SinkEntry, TelemetryError};
use crate::config::{RollbarConfig, RollbarLevel};

static REPORTER: OnceLock<Reporter> = OnceLock::new();

tokio::task_local! {
    /// What the current request has produced so far.
    static REQUEST: Arc<Mutex<Captured>>;
}

/// Items are small and rare; a full queue means Rollbar is unreachable.
const QUEUE: QueueConfig = QueueConfig {
    capacity: 1024,
    max_batch: 1,
    flush_interval: Duration::from_secs(1),
    attempt_timeout: Duration::from_secs(5),
    max_attempts: 3,
    initial_backoff: Duration::from_millis(500),
};

/// Log events from the HTTP stack the reporter itself uses are never
/// reported: a failing delivery must not feed itself.
const TRANSPORT_TARGETS: &[&str] = &["hyper", "reqwest", "h2", "rustls", "tonic"];

/// A token bucket: `per_minute` items at once, refilled evenly.
struct RateLimiter {
    per_minute: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    fn new(per_minute: u32) -> Self {
        let per_minute = f64::from(per_minute);
        RateLimiter {
            per_minute,
            state: Mutex::new((per_minute, Instant::now())),
        }
    }

    fn allow(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let refill = now.duration_since(state.1).as_secs_f64() * self.per_minute / 60.0;
        state.0 = (state.0 + refill).min(self.per_minute);
        state.1 = now;
        if state.0 >= 1.0 {
            state.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Queues reports for Rollbar; cheap to clone, never blocks.
#[derive(Clone)]
pub struct Reporter {
    queue: QueueSender<Report>,
    limiter: Arc<RateLimiter>,
    stopped: Arc<AtomicBool>,
    stats: Arc<SinkStats>,
}

impl Reporter {
    /// Queues `report`, or drops and counts it when over the rate limit or
    /// after Rollbar rejected the token.
    pub fn send(&self, report: Report) {
        if self.stopped.load(Ordering::Relaxed) || !self.limiter.allow() {
            self.stats.count_drop(1);
            return;
        }
        self.queue.try_send(report);
    }
}

/// The reporter, when `ROLLBAR_ACCESS_TOKEN` is set.
pub fn reporter() -> Option<&'static Reporter> {
    REPORTER.get()
}

/// What one request produced: its route, its panic, its error events, and
/// explicit reports, each still without the request they belong to.
#[derive(Default)]
pub struct Captured {
    pub route: Option<MatchedPath>,
    pub panic: Option<Report>,
    pub errors: Vec<Report>,
    pub messages: Vec<Report>,
}

/// Runs a request's future with a scope that gathers its reports instead of
/// sending them, and hands them back with the output.
pub async fn capture<F: Future>(future: F) -> (F::Output, Captured) {
    let scope = Arc::new(Mutex::new(Captured::default()));
    let output = REQUEST.scope(Arc::clone(&scope), future).await;
    let captured = std::mem::take(&mut *scope.lock().unwrap_or_else(PoisonError::into_inner));
    (output, captured)
}

/// Notes the current request's route (no-op outside a reported request).
pub fn note_route(route: &MatchedPath) {
    let _ = REQUEST.try_with(|scope| {
        scope.lock().unwrap_or_else(PoisonError::into_inner).route = Some(route.clone());
    });
}

/// Keeps `report` in the current request's scope, else sends it now.
fn keep_or_send(reporter: &Reporter, report: Report, keep: fn(&mut Captured, Report)) {
    let mut report = Some(report);
    let _ = REQUEST.try_with(|scope| {
        if let Some(report) = report.take() {
            keep(
                &mut scope.lock().unwrap_or_else(PoisonError::into_inner),
                report,
            );
        }
    });
    if let Some(report) = report {
        reporter.send(report);
    }
}

/// Reports a message, like pyrollbar's `report_message`; nothing when
/// reporting is off.
pub fn report_message(level: RollbarLevel, text: &str) {
    if let Some(reporter) = reporter() {
        let body = Body::Message {
            text: text.to_owned(),
            extra: Map::new(),
        };
        let report = Report::new(level, body, &format!("message {text}"));
        keep_or_send(reporter, report, |captured, report| {
            captured.messages.push(report)
        });
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
        let mut extra = record.fields;
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
            trace_id: format!("{:032x}", ids.trace_id),
            span_id: format!("{:016x}", ids.span_id),
        });
        keep_or_send(&self.reporter, report, |captured, report| {
            captured.errors.push(report)
        });
    }
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
/// there before (by default: the message on stderr) do its part.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(reporter) = reporter() {
            let message = panic_text(info.payload());
            let site = info.location().map_or_else(String::new, |at| {
                format!("{}:{}:{}", at.file(), at.line(), at.column())
            });
            let body = Body::Trace {
                class: "panic".into(),
                message,
                frames: item::frames_from_backtrace(&Backtrace::force_capture().to_string()),
            };
            let report = Report::new(RollbarLevel::Critical, body, &format!("panic {site}"));
            keep_or_send(reporter, report, |captured, report| {
                captured.panic.get_or_insert(report);
            });
        }
        previous(info);
    }));
}

/// The host name, without reading the environment (config.rs owns that).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// What `telemetry::init` needs from this sink.
pub(super) struct Setup {
    pub entry: SinkEntry,
    pub sink: Option<Box<dyn Flush>>,
    events: Option<(Reporter, Level)>,
}

impl Setup {
    pub fn is_on(&self) -> bool {
        self.sink.is_some()
    }

    /// The tracing layer for log events, with its own level filter. Spans
    /// the traces are made of pass it too, so that events find their trace.
    pub fn layer<S>(&self) -> Option<impl Layer<S> + use<S>>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let (reporter, threshold) = self.events.clone()?;
        Some(
            RollbarLayer { reporter }.with_filter(filter_fn(move |meta| {
                if meta.is_span() {
                    *meta.level() <= Level::INFO
                } else {
                    *meta.level() <= threshold
                }
            })),
        )
    }
}

/// Starts the Rollbar worker when a token is set, installs the reporter and
/// the panic hook, and prints the start-up line.
pub(super) fn start(config: &RollbarConfig) -> Result<Setup, TelemetryError> {
    let Some(token) = &config.access_token else {
        let reason = "ROLLBAR_ACCESS_TOKEN unset".to_owned();
        eprintln!("telemetry: rollbar off ({reason})");
        return Ok(Setup {
            entry: SinkEntry::Off {
                name: "rollbar",
                reason,
            },
            sink: None,
            events: None,
        });
    };
    let url = config.endpoint.to_string();
    let origin = Origin {
        environment: config.environment.clone(),
        host: host_name(),
        root: env!("CARGO_MANIFEST_DIR").into(),
        code_version: config
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
        config.level.as_str(),
        config.max_items_per_minute
    );
    let stats = SinkStats::new("rollbar", url.clone());
    let stopped = Arc::new(AtomicBool::new(false));
    let queue_config = QueueConfig {
        attempt_timeout: config.timeout,
        ..QUEUE
    };
    let queue = queue::spawn(Arc::clone(&stats), queue_config, || {
        sink::RollbarSink::new(url, token, config.timeout, origin, Arc::clone(&stopped))
    })?;
    let reporter = Reporter {
        queue: queue.clone(),
        limiter: Arc::new(RateLimiter::new(config.max_items_per_minute)),
        stopped,
        stats: Arc::clone(&stats),
    };
    if REPORTER.set(reporter.clone()).is_ok() {
        install_panic_hook();
    }
    Ok(Setup {
        entry: SinkEntry::On(stats),
        sink: Some(Box::new(queue)),
        events: threshold(config.level).map(|level| (reporter, level)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_allows_a_minute_of_items_at_once_then_refills() {
        let limiter = RateLimiter::new(3);
        assert!((0..3).all(|_| limiter.allow()));
        assert!(!limiter.allow());
        limiter.state.lock().unwrap().1 -= Duration::from_secs(20);
        assert!(limiter.allow(), "one item per 20 s at 3/min");
        assert!(!limiter.allow());
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

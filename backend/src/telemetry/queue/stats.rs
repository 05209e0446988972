//! A sink's counters: written by its worker and its senders, read by the
//! health check and the shutdown summary.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::SendError;

/// After a sink recovers, a new failure is announced only if the last
/// announcement is older than this: a flapping destination prints at most
/// two lines a minute.
const ANNOUNCE_AT_MOST_EVERY: Duration = Duration::from_secs(60);

/// A sink's counters, shared between its worker and the health check.
#[derive(Debug)]
pub struct SinkStats {
    name: &'static str,
    destination: String,
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    rejected: AtomicU64,
    warned_drop: AtomicBool,
    /// The console's view of the sink: failing since an announced failure,
    /// quiet until it recovers.
    console: Mutex<Announced>,
    last_error: Mutex<Option<(DateTime<Utc>, String)>>,
    last_success: Mutex<Option<DateTime<Utc>>>,
    /// How many items wait in the sink's queue, read when reported (never
    /// counted on the request path); set by the queue a sink has.
    depth: OnceLock<Depth>,
}

/// Reads a queue's backlog.
pub(crate) struct Depth(pub Box<dyn Fn() -> u64 + Send + Sync>);

impl std::fmt::Debug for Depth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Depth({})", (self.0)())
    }
}

/// What the console was told of a sink.
#[derive(Debug, Default)]
struct Announced {
    /// The last delivery failed.
    failing: bool,
    /// The current failure was announced (so its recovery will be).
    told: bool,
    /// When a failure was last announced.
    at: Option<Instant>,
}

impl Announced {
    /// A delivery failed: answers whether to announce it.
    fn failed(&mut self, now: Instant) -> bool {
        if self.failing {
            return false;
        }
        self.failing = true;
        if self
            .at
            .is_some_and(|at| now.duration_since(at) < ANNOUNCE_AT_MOST_EVERY)
        {
            return false;
        }
        self.told = true;
        self.at = Some(now);
        true
    }

    /// A delivery succeeded: answers whether to announce the recovery.
    fn succeeded(&mut self) -> bool {
        self.failing = false;
        std::mem::take(&mut self.told)
    }
}

/// What `/api/health-check` shows of a sink that is on.
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
pub struct SinkReport {
    pub enabled: bool,
    /// Where it sends (secrets never shown).
    pub destination: String,
    pub exported: u64,
    pub dropped: u64,
    pub failed: u64,
    /// Items inside an accepted delivery that the destination refused one
    /// by one (CloudWatch's too old or too new events); also in `exported`.
    pub rejected: u64,
    /// Items waiting in its queue now (sinks without a queue have none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    pub last_success: Option<String>,
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, false)
}

impl SinkStats {
    pub fn new(name: &'static str, destination: String) -> Arc<Self> {
        Arc::new(SinkStats {
            name,
            destination,
            exported: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            warned_drop: AtomicBool::new(false),
            console: Mutex::new(Announced::default()),
            last_error: Mutex::new(None),
            last_success: Mutex::new(None),
            depth: OnceLock::new(),
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn report(&self) -> SinkReport {
        let last_error = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let last_success = *self
            .last_success
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        SinkReport {
            enabled: true,
            destination: self.destination.clone(),
            exported: self.exported.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            queued: self.depth.get().map(|depth| (depth.0)()),
            last_error_at: last_error.as_ref().map(|(at, _)| stamp(*at)),
            last_error: last_error.map(|(_, message)| message),
            last_success: last_success.map(stamp),
        }
    }

    /// Reports the queue's backlog from now on.
    pub(crate) fn watch_depth(&self, depth: Depth) {
        let _ = self.depth.set(depth);
    }

    /// Counts items dropped before or instead of delivery.
    pub fn count_drop(&self, items: u64) {
        self.dropped.fetch_add(items, Ordering::Relaxed);
        // The worker's own trouble goes to stderr, never back into a sink.
        if !self.warned_drop.swap(true, Ordering::Relaxed) {
            eprintln!(
                "telemetry: sink {} is dropping items (queue full, over its rate limit or past its deadline); \
                 totals are in /api/health-check",
                self.name
            );
        }
    }

    /// Notes items a destination refused inside an accepted delivery:
    /// retrying them would be refused again.
    pub fn record_rejected(&self, items: u64, reason: &str) {
        self.rejected.fetch_add(items, Ordering::Relaxed);
        self.note_error(reason);
    }

    pub(crate) fn record_success(&self, items: usize) {
        self.exported.fetch_add(items as u64, Ordering::Relaxed);
        *self
            .last_success
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Utc::now());
        if self.console().succeeded() {
            eprintln!("telemetry: {} recovered: delivering again", self.name);
        }
    }

    /// Notes a failed attempt. The first of a run of failures prints one
    /// line with its cause and hint (never a line per failure; the
    /// worker's trouble goes to stderr, never back into a sink).
    pub(crate) fn record_error(&self, err: &SendError) {
        self.note_error(&err.message);
        if self.console().failed(Instant::now()) {
            eprintln!("{}", self.failing_line(err));
        }
    }

    fn failing_line(&self, err: &SendError) -> String {
        let hint = err
            .hint
            .map(|hint| format!(" ({hint})"))
            .unwrap_or_default();
        format!(
            "telemetry: {} failing: {}{hint}; quiet until it recovers, counts in /api/health-check",
            self.name, err.message
        )
    }

    fn console(&self) -> std::sync::MutexGuard<'_, Announced> {
        self.console.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn note_error(&self, message: &str) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((Utc::now(), message.to_owned()));
    }

    /// Counts items given up on after their last attempt.
    pub(crate) fn record_failed(&self, items: usize) {
        self.failed.fetch_add(items as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_failures_is_announced_once_and_its_recovery_once() {
        let mut console = Announced::default();
        let start = Instant::now();
        assert!(console.failed(start));
        assert!(!console.failed(start + Duration::from_secs(1)));
        assert!(!console.failed(start + Duration::from_secs(2)));
        assert!(console.succeeded());
        assert!(!console.succeeded());
    }

    #[test]
    fn a_flapping_sink_prints_at_most_two_lines_a_minute() {
        let mut console = Announced::default();
        let start = Instant::now();
        assert!(console.failed(start));
        assert!(console.succeeded());
        // Failing again within the minute: quiet, and so is its recovery.
        assert!(!console.failed(start + Duration::from_secs(10)));
        assert!(!console.succeeded());
        assert!(console.failed(start + ANNOUNCE_AT_MOST_EVERY));
        assert!(console.succeeded());
    }

    #[test]
    fn the_failing_line_names_the_sink_the_cause_and_the_hint() {
        let stats = SinkStats::new("otlp", "http://collector:4318/v1/traces".into());
        let err = SendError::new("OTLP/HTTP answered 401 Unauthorized", false)
            .with_hint(Some("the key was rejected"));
        assert_eq!(
            stats.failing_line(&err),
            "telemetry: otlp failing: OTLP/HTTP answered 401 Unauthorized (the key was rejected); \
             quiet until it recovers, counts in /api/health-check"
        );
    }
}

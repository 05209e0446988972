//! A sink's counters: written by its worker and its senders, read by the
//! health check and the shutdown summary.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;

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
    last_error: Mutex<Option<(DateTime<Utc>, String)>>,
    last_success: Mutex<Option<DateTime<Utc>>>,
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
            last_error: Mutex::new(None),
            last_success: Mutex::new(None),
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
            last_error_at: last_error.as_ref().map(|(at, _)| stamp(*at)),
            last_error: last_error.map(|(_, message)| message),
            last_success: last_success.map(stamp),
        }
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
        self.record_error(reason);
    }

    pub(super) fn record_success(&self, items: usize) {
        self.exported.fetch_add(items as u64, Ordering::Relaxed);
        *self
            .last_success
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Utc::now());
    }

    pub(super) fn record_error(&self, message: &str) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((Utc::now(), message.to_owned()));
    }

    /// Counts items given up on after their last attempt.
    pub(super) fn record_failed(&self, items: usize) {
        self.failed.fetch_add(items as u64, Ordering::Relaxed);
    }
}

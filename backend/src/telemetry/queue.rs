//! The one bounded queue + worker every sink uses.
//!
//! The request path only calls [`QueueSender::try_send`]: a full queue drops
//! the item and counts it. Each sink's worker runs on its own OS thread with
//! its own single-threaded runtime, batches items, retries what can be
//! retried with backoff, and answers flush and shutdown requests under a
//! deadline. Nothing here can block a request or deadlock the server's
//! runtime, whatever its shape.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use tokio::sync::mpsc;

/// Why a batch could not be delivered.
#[derive(Debug, Clone)]
pub struct SendError {
    pub message: String,
    /// Timeouts, throttling and 5xx are worth another try; a rejected
    /// payload is not.
    pub retryable: bool,
}

impl SendError {
    pub fn retryable(message: impl Into<String>) -> Self {
        SendError {
            message: message.into(),
            retryable: true,
        }
    }
}

/// Where a worker delivers its batches. A batch is encoded once and the
/// same payload is sent again on retry.
pub trait Sink<T>: Send + 'static {
    type Payload: Send + Sync;

    fn encode(&mut self, batch: Vec<T>) -> Self::Payload;
    fn send(
        &mut self,
        payload: &Self::Payload,
    ) -> impl Future<Output = Result<(), SendError>> + Send;
}

#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// Items waiting at most; beyond that new items are dropped.
    pub capacity: usize,
    pub max_batch: usize,
    /// A partial batch waits at most this long.
    pub flush_interval: Duration,
    /// One delivery attempt takes at most this long.
    pub attempt_timeout: Duration,
    /// Attempts per batch, the first included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
}

/// A sink's counters, shared between its worker and the health check.
#[derive(Debug)]
pub struct SinkStats {
    name: &'static str,
    destination: String,
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    warned_drop: AtomicBool,
    last_error: Mutex<Option<(DateTime<Utc>, String)>>,
    last_success: Mutex<Option<DateTime<Utc>>>,
}

/// What `/api/health-check` shows of one sink.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SinkReport {
    pub enabled: bool,
    pub destination: String,
    pub exported: u64,
    pub dropped: u64,
    pub failed: u64,
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
            last_error_at: last_error.as_ref().map(|(at, _)| stamp(*at)),
            last_error: last_error.map(|(_, message)| message),
            last_success: last_success.map(stamp),
        }
    }

    fn count_drop(&self, items: u64) {
        self.dropped.fetch_add(items, Ordering::Relaxed);
        // The worker's own trouble goes to stderr, never back into a sink.
        if !self.warned_drop.swap(true, Ordering::Relaxed) {
            eprintln!(
                "telemetry: sink {} is dropping items (queue full or past its deadline); \
                 totals are in /api/health-check",
                self.name
            );
        }
    }

    fn record_success(&self, items: usize) {
        self.exported.fetch_add(items as u64, Ordering::Relaxed);
        *self
            .last_success
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Utc::now());
    }

    fn record_error(&self, message: &str) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((Utc::now(), message.to_owned()));
    }
}

enum Control {
    Flush {
        deadline: Instant,
        done: std::sync::mpsc::Sender<()>,
    },
    Shutdown {
        deadline: Instant,
        done: std::sync::mpsc::Sender<()>,
    },
}

/// The request-path end of a queue: cheap to clone, never blocks.
pub struct QueueSender<T> {
    items: mpsc::Sender<T>,
    control: mpsc::UnboundedSender<Control>,
    stats: Arc<SinkStats>,
}

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> Self {
        QueueSender {
            items: self.items.clone(),
            control: self.control.clone(),
            stats: Arc::clone(&self.stats),
        }
    }
}

impl<T> std::fmt::Debug for QueueSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueSender")
            .field("sink", &self.stats.name)
            .finish()
    }
}

/// A sink as the shutdown guard and the health check see it.
pub trait Flush: Send + Sync {
    /// Asks the worker to deliver everything queued, giving up at
    /// `deadline`, then stop. Answers a receiver that is signalled when done.
    fn begin_shutdown(&self, deadline: Instant) -> std::sync::mpsc::Receiver<()>;
    fn stats(&self) -> &Arc<SinkStats>;
}

impl<T: Send + 'static> QueueSender<T> {
    /// Queues `item`, or drops and counts it when the queue is full or closed.
    pub fn try_send(&self, item: T) {
        if self.items.try_send(item).is_err() {
            self.stats.count_drop(1);
        }
    }

    /// Delivers everything queued so far; answers whether it finished
    /// before `deadline`.
    pub fn flush(&self, deadline: Instant) -> bool {
        let (done, finished) = std::sync::mpsc::channel();
        if self
            .control
            .send(Control::Flush { deadline, done })
            .is_err()
        {
            return true;
        }
        finished
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

impl<T: Send + 'static> Flush for QueueSender<T> {
    fn begin_shutdown(&self, deadline: Instant) -> std::sync::mpsc::Receiver<()> {
        let (done, finished) = std::sync::mpsc::channel();
        // A worker that is already gone drops `done`, which also ends the wait.
        let _ = self.control.send(Control::Shutdown { deadline, done });
        finished
    }

    fn stats(&self) -> &Arc<SinkStats> {
        &self.stats
    }
}

/// Starts a sink's worker thread. `make_sink` runs on the worker's own
/// runtime, so clients that need one (tonic, reqwest) can be built there.
pub fn spawn<T, S, F, E>(
    stats: Arc<SinkStats>,
    config: QueueConfig,
    make_sink: F,
) -> Result<QueueSender<T>, E>
where
    T: Send + 'static,
    S: Sink<T>,
    F: FnOnce() -> Result<S, E>,
    E: From<std::io::Error>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let sink = {
        let _entered = runtime.enter();
        make_sink()?
    };
    let (items_tx, items_rx) = mpsc::channel(config.capacity);
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let worker = Worker {
        sink,
        config,
        stats: Arc::clone(&stats),
        items: items_rx,
        control: control_rx,
        buffer: Vec::with_capacity(config.max_batch),
    };
    std::thread::Builder::new()
        .name(format!("sink-{}", stats.name))
        .spawn(move || runtime.block_on(worker.run()))?;
    Ok(QueueSender {
        items: items_tx,
        control: control_tx,
        stats,
    })
}

struct Worker<T, S> {
    sink: S,
    config: QueueConfig,
    stats: Arc<SinkStats>,
    items: mpsc::Receiver<T>,
    control: mpsc::UnboundedReceiver<Control>,
    buffer: Vec<T>,
}

impl<T: Send + 'static, S: Sink<T>> Worker<T, S> {
    async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.config.flush_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                control = self.control.recv() => match control {
                    Some(Control::Flush { deadline, done }) => {
                        self.drain(deadline).await;
                        let _ = done.send(());
                    }
                    Some(Control::Shutdown { deadline, done }) => {
                        self.items.close();
                        self.drain(deadline).await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        // Every sender is gone: deliver what is left, then stop.
                        self.items.close();
                        self.drain(Instant::now() + self.config.attempt_timeout).await;
                        return;
                    }
                },
                item = self.items.recv() => match item {
                    Some(item) => {
                        self.buffer.push(item);
                        if self.buffer.len() >= self.config.max_batch {
                            self.deliver(None).await;
                        }
                    }
                    None => {
                        self.deliver(None).await;
                        return;
                    }
                },
                _ = ticker.tick() => {
                    if !self.buffer.is_empty() {
                        self.deliver(None).await;
                    }
                }
            }
        }
    }

    /// Delivers the buffer and everything queued now, batch by batch.
    async fn drain(&mut self, deadline: Instant) {
        loop {
            while self.buffer.len() < self.config.max_batch {
                match self.items.try_recv() {
                    Ok(item) => self.buffer.push(item),
                    Err(_) => break,
                }
            }
            if self.buffer.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                let mut left = self.buffer.len() as u64;
                self.buffer.clear();
                while self.items.try_recv().is_ok() {
                    left += 1;
                }
                self.stats.count_drop(left);
                eprintln!(
                    "telemetry: sink {} reached its shutdown deadline with {left} items undelivered",
                    self.stats.name
                );
                return;
            }
            self.deliver(Some(deadline)).await;
        }
    }

    /// Sends the buffer as one batch, retrying retryable failures with
    /// doubling backoff, never past `deadline`.
    async fn deliver(&mut self, deadline: Option<Instant>) {
        let batch: Vec<T> = std::mem::take(&mut self.buffer);
        self.buffer.reserve(self.config.max_batch);
        let size = batch.len();
        let payload = self.sink.encode(batch);
        let mut backoff = self.config.initial_backoff;
        for attempt in 1..=self.config.max_attempts {
            let mut budget = self.config.attempt_timeout;
            if let Some(deadline) = deadline {
                budget = budget.min(deadline.saturating_duration_since(Instant::now()));
            }
            let outcome = match tokio::time::timeout(budget, self.sink.send(&payload)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(SendError::retryable(format!(
                    "timed out: no answer within {} ms",
                    budget.as_millis()
                ))),
            };
            let err = match outcome {
                Ok(()) => {
                    self.stats.record_success(size);
                    return;
                }
                Err(err) => err,
            };
            self.stats.record_error(&err.message);
            let out_of_time = deadline.is_some_and(|d| Instant::now() + backoff >= d);
            if !err.retryable || attempt == self.config.max_attempts || out_of_time {
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        self.stats.failed.fetch_add(size as u64, Ordering::Relaxed);
    }
}

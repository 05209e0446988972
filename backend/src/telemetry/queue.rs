//! The one bounded queue + worker every sink uses.
//!
//! The request path only calls [`QueueSender::try_send`]: a full queue drops
//! the item and counts it. Each sink's worker runs on its own OS thread with
//! its own single-threaded runtime, batches items, retries what can be
//! retried with backoff, and answers flush and shutdown requests under a
//! deadline. Nothing here can block a request or deadlock the server's
//! runtime, whatever its shape.

use std::collections::VecDeque;
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
    rejected: AtomicU64,
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
    /// Every sender is gone.
    Closed,
}

/// The items waiting for a worker. Producers push under a short lock and
/// wake the worker only when a full batch is waiting; otherwise it wakes on
/// its interval. Waking it per item cost a thread switch per span.
struct Waiting<T> {
    /// A deque: taking a batch from the front must not shift a long backlog.
    items: Mutex<VecDeque<T>>,
    capacity: usize,
    max_batch: usize,
    batch_ready: tokio::sync::Notify,
    closed: AtomicBool,
}

impl<T> Waiting<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<T>> {
        self.items.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves up to `room` of the oldest items into `batch`.
    fn take_into(&self, batch: &mut Vec<T>, room: usize) {
        let mut items = self.lock();
        let take = room.min(items.len());
        batch.extend(items.drain(..take));
    }
}

/// The request-path end of a queue: cheap to clone, never blocks.
pub struct QueueSender<T> {
    waiting: Arc<Waiting<T>>,
    control: mpsc::UnboundedSender<Control>,
    stats: Arc<SinkStats>,
}

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> Self {
        QueueSender {
            waiting: Arc::clone(&self.waiting),
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

/// How much sooner than its caller a worker gives up, so that its answer
/// arrives before the caller stops waiting.
const ANSWER_MARGIN: Duration = Duration::from_millis(50);

fn worker_deadline(deadline: Instant) -> Instant {
    let now = Instant::now();
    deadline
        .checked_sub(ANSWER_MARGIN)
        .filter(|early| *early > now)
        .unwrap_or(now)
}

/// A sink as the shutdown guard and the health check see it.
pub trait Flush: Send + Sync {
    /// Asks the worker to deliver everything queued, giving up at
    /// `deadline`, then stop. Answers a receiver that is signalled when done.
    fn begin_shutdown(&self, deadline: Instant) -> std::sync::mpsc::Receiver<()>;
    /// Delivers everything queued so far; answers whether it finished
    /// before `deadline`.
    fn flush(&self, deadline: Instant) -> bool;
    fn stats(&self) -> &Arc<SinkStats>;
}

impl<T: Send + 'static> QueueSender<T> {
    /// Queues `item`, or drops and counts it when the queue is full or closed.
    pub fn try_send(&self, item: T) {
        let waiting = &*self.waiting;
        if waiting.closed.load(Ordering::Relaxed) {
            self.stats.count_drop(1);
            return;
        }
        let mut items = waiting.lock();
        if items.len() >= waiting.capacity {
            drop(items);
            self.stats.count_drop(1);
            return;
        }
        items.push_back(item);
        let full_batch = items.len() == waiting.max_batch;
        drop(items);
        if full_batch {
            waiting.batch_ready.notify_one();
        }
    }
}

impl<T: Send + 'static> Flush for QueueSender<T> {
    fn flush(&self, deadline: Instant) -> bool {
        let (done, finished) = std::sync::mpsc::channel();
        if self
            .control
            .send(Control::Flush {
                deadline: worker_deadline(deadline),
                done,
            })
            .is_err()
        {
            return true;
        }
        finished
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }

    fn begin_shutdown(&self, deadline: Instant) -> std::sync::mpsc::Receiver<()> {
        let (done, finished) = std::sync::mpsc::channel();
        // A worker that is already gone drops `done`, which also ends the wait.
        let _ = self.control.send(Control::Shutdown {
            deadline: worker_deadline(deadline),
            done,
        });
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
    let waiting = Arc::new(Waiting {
        items: Mutex::new(VecDeque::with_capacity(config.max_batch)),
        capacity: config.capacity,
        max_batch: config.max_batch,
        batch_ready: tokio::sync::Notify::new(),
        closed: AtomicBool::new(false),
    });
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let worker = Worker {
        sink,
        config,
        stats: Arc::clone(&stats),
        waiting: Arc::clone(&waiting),
        control: control_rx,
        buffer: Vec::with_capacity(config.max_batch),
        pending: None,
        deadline: None,
    };
    std::thread::Builder::new()
        .name(format!("sink-{}", stats.name))
        .spawn(move || runtime.block_on(worker.run()))?;
    Ok(QueueSender {
        waiting,
        control: control_tx,
        stats,
    })
}

struct Worker<T, S> {
    sink: S,
    config: QueueConfig,
    stats: Arc<SinkStats>,
    waiting: Arc<Waiting<T>>,
    control: mpsc::UnboundedReceiver<Control>,
    buffer: Vec<T>,
    /// A flush or shutdown that arrived while a batch was on its way.
    pending: Option<Control>,
    /// When set, no delivery may run past it.
    deadline: Option<Instant>,
}

impl Control {
    fn deadline(&self, attempt_timeout: Duration) -> Instant {
        match self {
            Control::Flush { deadline, .. } | Control::Shutdown { deadline, .. } => *deadline,
            Control::Closed => Instant::now() + attempt_timeout,
        }
    }
}

/// Between all and one and a half of `backoff`, so that sinks failing
/// together do not retry in step; never sooner than the backoff asked for.
fn jittered(backoff: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // Each RandomState is freshly keyed: a random number without a dependency.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    backoff.mul_f64(1.0 + (random % 1024) as f64 / 2048.0)
}

/// Notes a flush or shutdown that arrives mid-delivery: the delivery now
/// keeps its deadline, and the request is carried out next.
fn note(
    pending: &mut Option<Control>,
    deadline: &mut Option<Instant>,
    timeout: Duration,
    control: Option<Control>,
) {
    let control = control.unwrap_or(Control::Closed);
    let asked = control.deadline(timeout);
    *deadline = Some(deadline.map_or(asked, |d| d.min(asked)));
    *pending = Some(control);
}

impl<T: Send + 'static, S: Sink<T>> Worker<T, S> {
    async fn run(mut self) {
        let period = self.config.flush_interval;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Some(control) = self.pending.take() {
                if self.obey(control).await {
                    return;
                }
                continue;
            }
            tokio::select! {
                biased;
                control = self.control.recv() => {
                    if self.obey(control.unwrap_or(Control::Closed)).await {
                        return;
                    }
                }
                () = self.waiting.batch_ready.notified() => {
                    // Every full batch now; a partial one waits for the interval.
                    loop {
                        self.fill();
                        if self.buffer.len() < self.config.max_batch {
                            break;
                        }
                        self.deliver().await;
                    }
                }
                _ = ticker.tick() => {
                    self.fill();
                    if !self.buffer.is_empty() {
                        self.deliver().await;
                    }
                }
            }
        }
    }

    /// Carries out a flush or shutdown; answers whether the worker stops.
    async fn obey(&mut self, control: Control) -> bool {
        let deadline = control.deadline(self.config.attempt_timeout);
        match control {
            Control::Flush { done, .. } => {
                self.drain(deadline).await;
                let _ = done.send(());
                false
            }
            Control::Shutdown { done, .. } => {
                self.waiting.closed.store(true, Ordering::Relaxed);
                self.drain(deadline).await;
                let _ = done.send(());
                true
            }
            Control::Closed => {
                // Every sender is gone: deliver what is left, then stop.
                self.waiting.closed.store(true, Ordering::Relaxed);
                self.drain(deadline).await;
                true
            }
        }
    }

    /// Tops the current batch up from the waiting items.
    fn fill(&mut self) {
        let room = self.config.max_batch.saturating_sub(self.buffer.len());
        if room > 0 {
            self.waiting.take_into(&mut self.buffer, room);
        }
    }

    /// Delivers the buffer and everything queued now, batch by batch.
    async fn drain(&mut self, deadline: Instant) {
        self.deadline = Some(self.deadline.map_or(deadline, |d| d.min(deadline)));
        loop {
            self.fill();
            if self.buffer.is_empty() {
                break;
            }
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                let left = (self.buffer.len() + self.waiting.lock().len()) as u64;
                self.buffer.clear();
                self.waiting.lock().clear();
                self.stats.count_drop(left);
                eprintln!(
                    "telemetry: sink {} reached its deadline with {left} items undelivered",
                    self.stats.name
                );
                break;
            }
            self.deliver().await;
        }
        self.deadline = None;
    }

    /// Sends the buffer as one batch, retrying retryable failures with
    /// doubling backoff, never past the deadline.
    async fn deliver(&mut self) {
        let batch: Vec<T> = std::mem::take(&mut self.buffer);
        self.buffer.reserve(self.config.max_batch);
        let size = batch.len();
        let payload = self.sink.encode(batch);
        let mut backoff = self.config.initial_backoff;
        for attempt in 1..=self.config.max_attempts {
            let started = Instant::now();
            let outcome = {
                let send = self.sink.send(&payload);
                tokio::pin!(send);
                loop {
                    let mut limit = started + self.config.attempt_timeout;
                    if let Some(deadline) = self.deadline {
                        limit = limit.min(deadline);
                    }
                    tokio::select! {
                        biased;
                        outcome = tokio::time::timeout_at(limit.into(), &mut send) => {
                            break outcome.unwrap_or_else(|_| {
                                Err(SendError::retryable(format!(
                                    "timed out: no answer within {} ms",
                                    limit.saturating_duration_since(started).as_millis()
                                )))
                            });
                        }
                        control = self.control.recv(), if self.pending.is_none() => {
                            note(&mut self.pending, &mut self.deadline, self.config.attempt_timeout, control);
                        }
                    }
                }
            };
            let err = match outcome {
                Ok(()) => {
                    self.stats.record_success(size);
                    return;
                }
                Err(err) => err,
            };
            self.stats.record_error(&err.message);
            let wake = Instant::now() + jittered(backoff);
            let out_of_time = self.deadline.is_some_and(|d| wake >= d);
            if !err.retryable || attempt == self.config.max_attempts || out_of_time {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {}
                control = self.control.recv(), if self.pending.is_none() => {
                    note(&mut self.pending, &mut self.deadline, self.config.attempt_timeout, control);
                }
            }
            backoff *= 2;
        }
        self.stats.failed.fetch_add(size as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    type Batches = Arc<Mutex<Vec<Vec<u32>>>>;

    /// Records batches; fails the first `failures` attempts with `error`.
    struct FakeSink {
        batches: Batches,
        attempts: Arc<AtomicUsize>,
        failures: usize,
        error: SendError,
        gate: Option<Arc<tokio::sync::Notify>>,
    }

    impl Sink<u32> for FakeSink {
        type Payload = Vec<u32>;

        fn encode(&mut self, batch: Vec<u32>) -> Vec<u32> {
            batch
        }

        async fn send(&mut self, payload: &Vec<u32>) -> Result<(), SendError> {
            if let Some(gate) = &self.gate {
                gate.notified().await;
            }
            let attempt = self.attempts.fetch_add(1, Ordering::SeqCst);
            if attempt < self.failures {
                return Err(self.error.clone());
            }
            self.batches.lock().unwrap().push(payload.clone());
            Ok(())
        }
    }

    const CONFIG: QueueConfig = QueueConfig {
        capacity: 100,
        max_batch: 10,
        flush_interval: Duration::from_secs(3600),
        attempt_timeout: Duration::from_secs(5),
        max_attempts: 3,
        initial_backoff: Duration::from_millis(1),
    };

    fn start(
        config: QueueConfig,
        failures: usize,
        error: SendError,
        gate: Option<Arc<tokio::sync::Notify>>,
    ) -> (QueueSender<u32>, Batches, Arc<AtomicUsize>) {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let attempts = Arc::new(AtomicUsize::new(0));
        let sink = FakeSink {
            batches: Arc::clone(&batches),
            attempts: Arc::clone(&attempts),
            failures,
            error,
            gate,
        };
        let sender = spawn(SinkStats::new("fake", "memory".into()), config, move || {
            Ok::<_, std::io::Error>(sink)
        })
        .unwrap();
        (sender, batches, attempts)
    }

    fn shutdown(sender: &QueueSender<u32>, within: Duration) -> bool {
        sender
            .begin_shutdown(Instant::now() + within)
            .recv_timeout(within)
            .is_ok()
    }

    #[test]
    fn batches_are_full_and_shutdown_delivers_the_rest_in_order() {
        let (sender, batches, _) = start(CONFIG, 0, SendError::retryable("x"), None);
        for item in 0..25 {
            sender.try_send(item);
        }
        assert!(shutdown(&sender, Duration::from_secs(5)));
        let batches = batches.lock().unwrap();
        assert!(batches.iter().all(|b| b.len() <= 10));
        assert_eq!(batches.concat(), (0..25).collect::<Vec<_>>());
        let report = sender.stats().report();
        assert_eq!((report.exported, report.dropped, report.failed), (25, 0, 0));
        assert!(report.last_success.is_some());
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let gate = Arc::new(tokio::sync::Notify::new());
        let config = QueueConfig {
            capacity: 5,
            max_batch: 1,
            ..CONFIG
        };
        let (sender, _, _) = start(
            config,
            0,
            SendError::retryable("x"),
            Some(Arc::clone(&gate)),
        );
        for item in 0..50 {
            sender.try_send(item);
        }
        let report = sender.stats().report();
        // At most the queue plus the batch in the worker's hands survive.
        assert!(report.dropped >= 50 - 5 - 1, "{report:?}");
        for _ in 0..10 {
            gate.notify_one();
        }
    }

    #[test]
    fn retryable_failures_are_retried_then_delivered() {
        let (sender, batches, attempts) = start(CONFIG, 2, SendError::retryable("503"), None);
        sender.try_send(7);
        assert!(shutdown(&sender, Duration::from_secs(5)));
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        assert_eq!(*batches.lock().unwrap(), vec![vec![7]]);
        let report = sender.stats().report();
        assert_eq!((report.exported, report.failed), (1, 0));
        assert_eq!(report.last_error.as_deref(), Some("503"));
    }

    #[test]
    fn retries_are_bounded_and_counted_as_failed() {
        let (sender, batches, attempts) =
            start(CONFIG, usize::MAX, SendError::retryable("500"), None);
        sender.try_send(1);
        sender.try_send(2);
        assert!(shutdown(&sender, Duration::from_secs(5)));
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        assert!(batches.lock().unwrap().is_empty());
        assert_eq!(sender.stats().report().failed, 2);
    }

    #[test]
    fn a_rejected_batch_is_not_retried() {
        let rejected = SendError {
            message: "400".into(),
            retryable: false,
        };
        let (sender, _, attempts) = start(CONFIG, usize::MAX, rejected, None);
        sender.try_send(1);
        assert!(shutdown(&sender, Duration::from_secs(5)));
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
        assert_eq!(sender.stats().report().failed, 1);
    }

    #[test]
    fn shutdown_keeps_its_deadline_when_the_sink_hangs() {
        let gate = Arc::new(tokio::sync::Notify::new());
        let (sender, _, _) = start(CONFIG, 0, SendError::retryable("x"), Some(gate));
        for item in 0..30 {
            sender.try_send(item);
        }
        let started = Instant::now();
        let finished = shutdown(&sender, Duration::from_millis(300));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(finished, "the worker gives up at the deadline and answers");
        let report = sender.stats().report();
        assert_eq!(report.exported, 0);
        assert_eq!(report.failed + report.dropped, 30, "{report:?}");
    }

    #[test]
    fn backoff_is_jittered_between_all_and_one_and_a_half() {
        let backoff = Duration::from_millis(1000);
        let waits: Vec<Duration> = (0..50).map(|_| jittered(backoff)).collect();
        assert!(waits.iter().all(|w| *w >= backoff && *w < backoff * 3 / 2));
        assert!(waits.iter().any(|w| *w != waits[0]), "{waits:?}");
    }

    #[test]
    fn shutdown_from_inside_any_runtime_shape_cannot_deadlock() {
        for multi_thread in [false, true] {
            let (sender, batches, _) = start(CONFIG, 0, SendError::retryable("x"), None);
            sender.try_send(1);
            let runtime = if multi_thread {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            }
            .unwrap();
            // Blocking the caller's only worker is fine: sinks run on threads of their own.
            let finished = runtime.block_on(async { shutdown(&sender, Duration::from_secs(5)) });
            assert!(finished);
            assert_eq!(*batches.lock().unwrap(), vec![vec![1]]);
        }
    }

    #[test]
    fn flush_delivers_a_partial_batch() {
        let config = QueueConfig {
            flush_interval: Duration::from_millis(20),
            ..CONFIG
        };
        let (sender, batches, _) = start(config, 0, SendError::retryable("x"), None);
        sender.try_send(1);
        assert!(sender.flush(Instant::now() + Duration::from_secs(5)));
        assert_eq!(*batches.lock().unwrap(), vec![vec![1]]);
        assert!(shutdown(&sender, Duration::from_secs(5)));
    }
}

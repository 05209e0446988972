//! The one bounded queue + worker every sink uses.
//!
//! The request path only calls [`QueueSender::try_send`]: a full queue drops
//! the item and counts it. Full means a number of items or of bytes
//! ([`Weigh`]), whichever comes first: spans differ in size tenfold, so a
//! count alone does not bound memory while a sink is down. Each sink's worker runs on its own OS thread with
//! its own single-threaded runtime, batches items, retries what can be
//! retried with backoff, and answers flush and shutdown requests under a
//! deadline. Nothing here can block a request or deadlock the server's
//! runtime, whatever its shape.
//!
//! It stands where opentelemetry_sdk's `BatchSpanProcessor` (and
//! tracing-appender's non-blocking writer) would, because every sink needs
//! the same things they do not give: spans, log events and error items
//! alike, the counters the health check shows, a retryable failure told
//! from a rejected payload, and one shutdown deadline for all sinks. It
//! wakes its worker once per full batch, not per item (a thread switch per
//! span, measured: bench/README.md, "Our own fast paths").
//!
//! Guarded by the tests below (the property test
//! `every_item_is_delivered_once_in_order_or_counted_as_dropped` among
//! them) and the sinks' fault tests in tests/.

mod stats;
mod weigh;
mod worker;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use self::stats::Depth;
pub use self::stats::{SinkReport, SinkStats};
use self::worker::{Control, Worker};

/// Why a batch could not be delivered.
#[derive(Debug, Clone)]
pub struct SendError {
    pub message: String,
    /// Timeouts, throttling and 5xx are worth another try; a rejected
    /// payload is not.
    pub retryable: bool,
    /// How long the destination asked us to wait before trying again
    /// (`Retry-After`); the next try waits at least this long.
    pub retry_after: Option<Duration>,
    /// What the user most likely has to change, for the console line that
    /// announces a sink's first failure (a 401 names the key's variable).
    pub hint: Option<&'static str>,
}

impl SendError {
    pub fn retryable(message: impl Into<String>) -> Self {
        SendError::new(message, true)
    }

    pub fn new(message: impl Into<String>, retryable: bool) -> Self {
        SendError {
            message: message.into(),
            retryable,
            retry_after: None,
            hint: None,
        }
    }

    pub fn with_hint(self, hint: Option<&'static str>) -> Self {
        SendError { hint, ..self }
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

    /// What the sink held back from the batches it encoded (the console's
    /// unfinished traces), asked for once as its worker stops, after the
    /// last batch.
    fn finish(&mut self) -> Option<Self::Payload> {
        None
    }
}

/// What an item holds in memory, roughly (its heap parts and its own
/// size): what a queue's byte bound counts.
pub trait Weigh {
    fn weight(&self) -> usize;
}

impl Weigh for String {
    fn weight(&self) -> usize {
        std::mem::size_of::<String>() + self.len()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// Items waiting at most; beyond that new items are dropped.
    pub capacity: usize,
    /// Bytes waiting at most ([`Weigh`]); beyond that new items are dropped.
    pub max_bytes: usize,
    pub max_batch: usize,
    /// A partial batch waits at most this long.
    pub flush_interval: Duration,
    /// One delivery attempt takes at most this long.
    pub attempt_timeout: Duration,
    /// Attempts per batch, the first included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
}

/// The items waiting for a worker. Producers push under a short lock and
/// wake the worker only when a full batch is waiting; otherwise it wakes on
/// its interval. Waking it per item cost a thread switch per span.
struct Waiting<T> {
    backlog: Mutex<Backlog<T>>,
    capacity: usize,
    max_bytes: usize,
    max_batch: usize,
    batch_ready: tokio::sync::Notify,
    closed: AtomicBool,
}

struct Backlog<T> {
    /// A deque: taking a batch from the front must not shift a long backlog.
    items: VecDeque<T>,
    /// The items' total weight.
    bytes: usize,
}

impl<T: Weigh> Waiting<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Backlog<T>> {
        self.backlog.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves up to `room` of the oldest items into `batch`.
    fn take_into(&self, batch: &mut Vec<T>, room: usize) {
        let mut backlog = self.lock();
        let Backlog { items, bytes } = &mut *backlog;
        let take = room.min(items.len());
        for item in items.drain(..take) {
            *bytes = bytes.saturating_sub(item.weight());
            batch.push(item);
        }
    }

    /// Drops every waiting item; answers how many there were.
    fn clear(&self) -> usize {
        let mut backlog = self.lock();
        let dropped = backlog.items.len();
        backlog.items.clear();
        backlog.bytes = 0;
        dropped
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
            .field("sink", &self.stats.name())
            .finish()
    }
}

/// How much sooner than its caller a worker gives up, so that its answer
/// arrives before the caller stops waiting.
const ANSWER_MARGIN: Duration = Duration::from_millis(50);

pub(crate) fn worker_deadline(deadline: Instant) -> Instant {
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

impl<T: Weigh + Send + 'static> QueueSender<T> {
    /// Queues `item`, or drops and counts it when the queue is full (by
    /// count or by bytes) or closed.
    pub fn try_send(&self, item: T) {
        let waiting = &*self.waiting;
        if waiting.closed.load(Ordering::Relaxed) {
            self.stats.count_drop(1);
            return;
        }
        let weight = item.weight();
        let mut backlog = waiting.lock();
        if backlog.items.len() >= waiting.capacity
            || backlog.bytes.saturating_add(weight) > waiting.max_bytes
        {
            drop(backlog);
            self.stats.count_drop(1);
            return;
        }
        backlog.items.push_back(item);
        backlog.bytes += weight;
        let full_batch = backlog.items.len() == waiting.max_batch;
        drop(backlog);
        if full_batch {
            waiting.batch_ready.notify_one();
        }
    }
}

impl<T: Weigh + Send + 'static> Flush for QueueSender<T> {
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
    T: Weigh + Send + 'static,
    S: Sink<T>,
    F: FnOnce() -> Result<S, E>,
    E: From<std::io::Error>,
{
    let waiting = Arc::new(Waiting {
        backlog: Mutex::new(Backlog {
            items: VecDeque::with_capacity(config.max_batch),
            bytes: 0,
        }),
        capacity: config.capacity,
        max_bytes: config.max_bytes,
        max_batch: config.max_batch,
        batch_ready: tokio::sync::Notify::new(),
        closed: AtomicBool::new(false),
    });
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let worker_stats = Arc::clone(&stats);
    let worker_waiting = Arc::clone(&waiting);
    on_own_thread(stats.name(), make_sink, move |sink| {
        Worker::new(sink, config, worker_stats, worker_waiting, control_rx).run()
    })?;
    let backlog = Arc::downgrade(&waiting);
    stats.watch_depth(Depth(Box::new(move || {
        backlog
            .upgrade()
            .map_or(0, |waiting| waiting.lock().items.len() as u64)
    })));
    Ok(QueueSender {
        waiting,
        control: control_tx,
        stats,
    })
}

/// A sink's own thread (`sink-{name}`) with its own single-threaded
/// runtime: `make` runs on that runtime, so clients that need one (tonic,
/// reqwest) can be built there, then the thread drives `run(made)` to its
/// end. The queue's workers and the metrics' push drivers run this way.
pub(crate) fn on_own_thread<M, R, Made, Run, E>(name: &str, make: M, run: R) -> Result<(), E>
where
    M: FnOnce() -> Result<Made, E>,
    R: FnOnce(Made) -> Run + Send + 'static,
    Made: Send + 'static,
    Run: Future<Output = ()>,
    E: From<std::io::Error>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let made = {
        let _entered = runtime.enter();
        make()?
    };
    std::thread::Builder::new()
        .name(format!("sink-{name}"))
        .spawn(move || runtime.block_on(run(made)))?;
    Ok(())
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

    /// A test item weighs what it says.
    impl Weigh for u32 {
        fn weight(&self) -> usize {
            *self as usize
        }
    }

    const CONFIG: QueueConfig = QueueConfig {
        capacity: 100,
        max_bytes: usize::MAX,
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

    /// Holds back the odd items it is given until its worker stops.
    struct HoldingSink {
        held: Vec<u32>,
        sent: Batches,
    }

    impl Sink<u32> for HoldingSink {
        type Payload = Vec<u32>;

        fn encode(&mut self, batch: Vec<u32>) -> Vec<u32> {
            let (odd, even): (Vec<u32>, Vec<u32>) = batch.into_iter().partition(|n| n % 2 == 1);
            self.held.extend(odd);
            even
        }

        async fn send(&mut self, payload: &Vec<u32>) -> Result<(), SendError> {
            self.sent.lock().unwrap().push(payload.clone());
            Ok(())
        }

        fn finish(&mut self) -> Option<Vec<u32>> {
            (!self.held.is_empty()).then(|| std::mem::take(&mut self.held))
        }
    }

    #[test]
    fn what_a_sink_held_back_is_delivered_once_as_it_stops_not_on_a_flush() {
        let sent: Batches = Arc::new(Mutex::new(Vec::new()));
        let sink = HoldingSink {
            held: Vec::new(),
            sent: Arc::clone(&sent),
        };
        let sender = spawn(
            SinkStats::new("holding", "memory".into()),
            CONFIG,
            move || Ok::<_, std::io::Error>(sink),
        )
        .unwrap();
        for item in 0..6 {
            sender.try_send(item);
        }
        assert!(sender.flush(Instant::now() + Duration::from_secs(5)));
        assert_eq!(sent.lock().unwrap().concat(), [0, 2, 4]);
        assert!(shutdown(&sender, Duration::from_secs(5)));
        assert_eq!(*sent.lock().unwrap(), [vec![0, 2, 4], vec![1, 3, 5]]);
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
    fn a_queue_full_by_bytes_drops_and_counts_and_frees_what_it_sent() {
        let gate = Arc::new(tokio::sync::Notify::new());
        let config = QueueConfig {
            max_bytes: 25,
            max_batch: 1,
            ..CONFIG
        };
        let (sender, batches, _) = start(
            config,
            0,
            SendError::retryable("x"),
            Some(Arc::clone(&gate)),
        );
        for _ in 0..50 {
            sender.try_send(10);
        }
        let report = sender.stats().report();
        // Two fit in 25 bytes, plus the one in the worker's hands.
        assert!(report.dropped >= 50 - 2 - 1, "{report:?}");
        let accepted = 50 - report.dropped as usize;
        let deliver = |count: usize| {
            while batches.lock().unwrap().len() < count {
                gate.notify_one();
                std::thread::yield_now();
            }
        };
        deliver(accepted);
        sender.try_send(12);
        sender.try_send(13);
        assert_eq!(
            sender.stats().report().dropped,
            report.dropped,
            "what was sent no longer counts"
        );
        deliver(accepted + 2);
        let sent = batches.lock().unwrap().concat();
        assert_eq!(&sent[sent.len() - 2..], &[12, 13]);
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
        let rejected = SendError::new("400", false);
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

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]

            /// Whatever the queue's size and batch, every item sent is either
            /// delivered once, in the order sent, or counted as dropped.
            #[test]
            fn every_item_is_delivered_once_in_order_or_counted_as_dropped(
                capacity in 1..40usize,
                max_batch in 1..16usize,
                items in 0..150u32,
            ) {
                let config = QueueConfig {
                    capacity,
                    max_batch,
                    flush_interval: Duration::from_millis(5),
                    ..CONFIG
                };
                let (sender, batches, _) = start(config, 0, SendError::retryable("x"), None);
                for item in 0..items {
                    sender.try_send(item);
                }
                prop_assert!(shutdown(&sender, Duration::from_secs(5)));
                let batches = batches.lock().unwrap();
                let delivered = batches.concat();
                let report = sender.stats().report();
                prop_assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= max_batch));
                prop_assert!(delivered.windows(2).all(|pair| pair[0] < pair[1]));
                prop_assert_eq!(report.exported as usize, delivered.len());
                prop_assert_eq!(report.exported + report.dropped, u64::from(items));
                prop_assert_eq!(report.failed, 0);
            }
        }
    }
}

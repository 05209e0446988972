//! A sink's worker: batches what its senders queued, delivers each batch
//! with retries and backoff, and carries out flush and shutdown requests
//! under their deadline.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{QueueConfig, SendError, Sink, SinkStats, Waiting, Weigh};

pub(super) enum Control {
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

pub(super) struct Worker<T, S> {
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
    backoff.mul_f64(1.0 + rand::random_range(0.0..0.5))
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

impl<T: Weigh + Send + 'static, S: Sink<T>> Worker<T, S> {
    pub(super) fn new(
        sink: S,
        config: QueueConfig,
        stats: Arc<SinkStats>,
        waiting: Arc<Waiting<T>>,
        control: mpsc::UnboundedReceiver<Control>,
    ) -> Self {
        Worker {
            sink,
            config,
            stats,
            waiting,
            control,
            buffer: Vec::with_capacity(config.max_batch),
            pending: None,
            deadline: None,
        }
    }

    pub(super) async fn run(mut self) {
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
                self.finish(deadline).await;
                let _ = done.send(());
                true
            }
            Control::Closed => {
                // Every sender is gone: deliver what is left, then stop.
                self.waiting.closed.store(true, Ordering::Relaxed);
                self.drain(deadline).await;
                self.finish(deadline).await;
                true
            }
        }
    }

    /// Delivers what the sink held back, once, before the deadline.
    async fn finish(&mut self, deadline: Instant) {
        let Some(payload) = self.sink.finish() else {
            return;
        };
        let sent = tokio::time::timeout_at(deadline.into(), self.sink.send(&payload)).await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(err)) => self.stats.record_error(&err),
            Err(_) => self.stats.record_error(&SendError::new(
                "timed out delivering what the sink held back",
                false,
            )),
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
                let left = (self.buffer.len() + self.waiting.clear()) as u64;
                self.buffer.clear();
                self.stats.count_drop(left);
                eprintln!(
                    "telemetry: sink {} reached its deadline with {left} items undelivered",
                    self.stats.name()
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
            self.stats.record_error(&err);
            let wait = jittered(backoff).max(err.retry_after.unwrap_or_default());
            let wake = Instant::now() + wait;
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
        self.stats.record_failed(size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_between_all_and_one_and_a_half() {
        let backoff = Duration::from_millis(1000);
        let waits: Vec<Duration> = (0..50).map(|_| jittered(backoff)).collect();
        assert!(waits.iter().all(|w| *w >= backoff && *w < backoff * 3 / 2));
        assert!(waits.iter().any(|w| *w != waits[0]), "{waits:?}");
    }
}

//! The push exporters' driver: every `OTEL_METRIC_EXPORT_INTERVAL` it
//! collects a reader of its own and hands what it read to its exporter (the
//! OTLP one from opentelemetry-otlp, the console's, CloudWatch's EMF), with
//! the health check's counters kept; at shutdown it collects once more and
//! exports under the shutdown deadline, so the last interval is not lost.
//!
//! It stands where the SDK's `PeriodicReader` would: that one exports from
//! a thread of its own with no Tokio runtime, where the OTLP exporter's
//! async HTTP client and its gRPC channel cannot run, and it has no
//! deadline to share with the other sinks' shutdown. This one runs on its
//! own thread with its own single-threaded runtime, as every sink's queue
//! worker does (`queue::on_own_thread`): nothing it does can block a
//! request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{ManualReader, Temporality};
use tokio::sync::mpsc;

use crate::telemetry::queue::{Flush, SendError, SinkStats, on_own_thread, worker_deadline};
use crate::telemetry::sink::TelemetryError;

/// A reader for one exporter, in its temporality; shared between the
/// provider (which owns its readers) and the exporter's driver.
#[derive(Debug, Clone)]
pub(super) struct SharedReader {
    reader: Arc<ManualReader>,
    /// What it was asked for, as the start-up line says it.
    pub temporality: Temporality,
}

impl SharedReader {
    pub fn new(temporality: Temporality) -> Self {
        SharedReader {
            reader: Arc::new(
                ManualReader::builder()
                    .with_temporality(temporality)
                    .build(),
            ),
            temporality,
        }
    }
}

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: std::sync::Weak<opentelemetry_sdk::metrics::Pipeline>) {
        self.reader.register_pipeline(pipeline);
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> opentelemetry_sdk::error::OTelSdkResult {
        self.reader.collect(rm)
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.reader.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.reader.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: opentelemetry_sdk::metrics::InstrumentKind) -> Temporality {
        self.reader.temporality(kind)
    }
}

/// How often and how long.
#[derive(Debug, Clone, Copy)]
pub(super) struct Schedule {
    pub interval: Duration,
    /// One export, retries included, takes at most this long.
    pub timeout: Duration,
}

/// Asks the driver to export one last time by `deadline`, then stop.
struct Stop {
    deadline: Instant,
    done: std::sync::mpsc::Sender<()>,
}

/// The handle the shutdown guard flushes.
pub(super) struct Pusher {
    control: mpsc::UnboundedSender<Stop>,
    stats: Arc<SinkStats>,
}

/// Starts `exporter`'s driver on its own thread. `make` runs on the
/// driver's runtime, so clients that need one (tonic, reqwest) can be
/// built there.
pub(super) fn spawn<E, F>(
    stats: Arc<SinkStats>,
    reader: SharedReader,
    schedule: Schedule,
    make: F,
) -> Result<Pusher, TelemetryError>
where
    E: PushMetricExporter,
    F: FnOnce() -> Result<E, TelemetryError>,
{
    let (control, stops) = mpsc::unbounded_channel();
    let driver_stats = Arc::clone(&stats);
    on_own_thread(stats.name(), make, move |exporter| {
        Driver {
            exporter,
            reader,
            schedule,
            stats: driver_stats,
        }
        .run(stops)
    })?;
    Ok(Pusher { control, stats })
}

struct Driver<E> {
    exporter: E,
    reader: SharedReader,
    schedule: Schedule,
    stats: Arc<SinkStats>,
}

impl<E: PushMetricExporter> Driver<E> {
    async fn run(self, mut stops: mpsc::UnboundedReceiver<Stop>) {
        let mut next = tokio::time::Instant::now() + self.schedule.interval;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next) => {
                    self.export(Instant::now() + self.schedule.timeout).await;
                    next = tokio::time::Instant::now() + self.schedule.interval;
                }
                stop = stops.recv() => {
                    // A guard dropped without shutdown: nothing waits.
                    let Some(stop) = stop else { return };
                    self.export(stop.deadline.min(Instant::now() + self.schedule.timeout)).await;
                    let _ = self
                        .exporter
                        .shutdown_with_timeout(stop.deadline.saturating_duration_since(Instant::now()));
                    let _ = stop.done.send(());
                    return;
                }
            }
        }
    }

    /// Collects and exports what was recorded, giving up at `deadline`.
    async fn export(&self, deadline: Instant) {
        let mut collected = ResourceMetrics::default();
        if let Err(err) = self.reader.collect(&mut collected) {
            self.stats.record_error(&SendError::new(
                format!("cannot collect the metrics: {err}"),
                false,
            ));
            return;
        }
        let points = data_points(&collected);
        if points == 0 {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.exporter.export(&collected)).await {
            Ok(Ok(())) => self.stats.record_success(points),
            Ok(Err(err)) => self.failed(points, err.to_string()),
            Err(_) => self.failed(points, format!("no answer within {left:?}")),
        }
    }

    fn failed(&self, points: usize, message: String) {
        self.stats.record_error(&SendError::new(message, true));
        self.stats.record_failed(points);
    }
}

/// The data points in `collected`: what the health check counts.
pub(super) fn data_points(collected: &ResourceMetrics) -> usize {
    collected
        .scope_metrics()
        .flat_map(|scope| scope.metrics())
        .map(|metric| match metric.data() {
            AggregatedMetrics::F64(data) => points(data),
            AggregatedMetrics::U64(data) => points(data),
            AggregatedMetrics::I64(data) => points(data),
        })
        .sum()
}

fn points<T>(data: &MetricData<T>) -> usize {
    match data {
        MetricData::Gauge(gauge) => gauge.data_points().count(),
        MetricData::Sum(sum) => sum.data_points().count(),
        MetricData::Histogram(histogram) => histogram.data_points().count(),
        MetricData::ExponentialHistogram(histogram) => histogram.data_points().count(),
    }
}

impl Flush for Pusher {
    fn begin_shutdown(&self, deadline: Instant) -> std::sync::mpsc::Receiver<()> {
        let (done, finished) = std::sync::mpsc::channel();
        // A driver that is already gone drops `done`, which ends the wait.
        let _ = self.control.send(Stop {
            deadline: worker_deadline(deadline),
            done,
        });
        finished
    }

    /// Pushes are periodic: between them nothing waits to be flushed.
    fn flush(&self, _deadline: Instant) -> bool {
        true
    }

    fn stats(&self) -> &Arc<SinkStats> {
        &self.stats
    }
}

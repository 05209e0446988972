//! Shutdown: every sink flushed under one deadline, totals reported once.

use std::time::{Duration, Instant};

use super::queue::Flush;

/// Held by `main` for the life of the process; `shutdown` drains every sink.
#[must_use = "dropping the guard without shutdown loses queued telemetry"]
#[derive(Default)]
pub struct Guard {
    /// Trace sinks first, the console last so it can still print.
    pub(super) sinks: Vec<Box<dyn Flush>>,
}

impl Guard {
    /// Flushes every sink in parallel, giving up at `timeout`. Blocks: call
    /// it off the async runtime (e.g. in `spawn_blocking`).
    pub fn shutdown(self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let waits: Vec<_> = self
            .sinks
            .iter()
            .map(|sink| sink.begin_shutdown(deadline))
            .collect();
        let mut complete = true;
        for (sink, wait) in self.sinks.iter().zip(waits) {
            let finished = wait
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .is_ok();
            let report = sink.stats().report();
            eprintln!(
                "telemetry: {} {}: exported {}, dropped {}, failed {}",
                sink.stats().name(),
                if finished {
                    "flushed"
                } else {
                    "NOT flushed in time"
                },
                report.exported,
                report.dropped,
                report.failed
            );
            complete &= finished;
        }
        complete
    }
}

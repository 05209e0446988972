//! Shutdown: every sink flushed under one deadline, totals reported once.

use std::time::{Duration, Instant};

use super::queue::{Flush, SinkReport};

/// Held by `main` for the life of the process; `shutdown` drains every sink.
#[must_use = "dropping the guard without shutdown loses queued telemetry"]
#[derive(Default)]
pub struct Guard {
    /// Sinks that write into other sinks (the EMF records' driver): shut
    /// down, and waited for, before the others.
    pub(super) feeders: Vec<Box<dyn Flush>>,
    /// Trace sinks first, the console last so it can still print.
    pub(super) sinks: Vec<Box<dyn Flush>>,
}

impl Guard {
    /// Flushes every sink in parallel, the feeders first, giving up at
    /// `timeout`. Blocks: call it off the async runtime (e.g. in
    /// `spawn_blocking`).
    pub fn shutdown(self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut lost = Vec::new();
        let fed = shut(&self.feeders, deadline, &mut lost);
        let complete = shut(&self.sinks, deadline, &mut lost) && fed;
        if !lost.is_empty() {
            eprintln!("telemetry: not delivered: {}", lost.join(", "));
        }
        complete
    }
}

/// Flushes `sinks` in parallel by `deadline`, printing each one's totals
/// and adding what each lost to `lost`. Answers whether all finished in time.
fn shut(sinks: &[Box<dyn Flush>], deadline: Instant, lost: &mut Vec<String>) -> bool {
    let waits: Vec<_> = sinks
        .iter()
        .map(|sink| sink.begin_shutdown(deadline))
        .collect();
    let mut complete = true;
    for (sink, wait) in sinks.iter().zip(waits) {
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
        lost.extend(loss(sink.stats().name(), &report));
    }
    complete
}

/// What a sink gave up on over its life, for the one summary line at
/// shutdown: `otlp 194 (dropped 142, failed 52)`.
fn loss(name: &str, report: &SinkReport) -> Option<String> {
    let total = report.dropped + report.failed;
    (total > 0).then(|| {
        format!(
            "{name} {total} (dropped {}, failed {})",
            report.dropped, report.failed
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::queue::SinkStats;

    #[test]
    fn the_summary_names_each_sink_that_lost_items_with_its_totals() {
        let stats = SinkStats::new("otlp", "memory".into());
        assert_eq!(loss("otlp", &stats.report()), None, "nothing lost, no line");
        stats.count_drop(142);
        assert_eq!(
            loss("otlp", &stats.report()).as_deref(),
            Some("otlp 142 (dropped 142, failed 0)")
        );
    }
}

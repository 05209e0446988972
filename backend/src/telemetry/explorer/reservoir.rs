//! The explorer's traces a second. Where the explorer alone needs spans
//! (no trace or log sink is on), recording every request's spans would be
//! most of what it costs a loaded server: `tracing`'s registry and the span
//! layer, about 16k instructions on a cached read's 35k, before the
//! explorer keeps anything (bench/README.md, "The trace explorer"). So it records the first
//! `TRACE_EXPLORER_TRACES_PER_SECOND` requests of each second and turns the
//! rest away before they make a span. A learner's few requests a second are
//! all kept; under load the list holds a steady sample, and the page says
//! how many requests were not recorded. Where another sink records every
//! span anyway, the explorer keeps them all and this is not asked.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::telemetry::sink::RecordGate;

pub struct Reservoir {
    per_second: u32,
    epoch: Instant,
    /// The second (since `epoch`) being counted, in the high half, and the
    /// requests admitted in it, in the low half: one atomic for both.
    window: AtomicU64,
    turned_away: AtomicU64,
}

impl Reservoir {
    pub fn new(per_second: u32) -> Self {
        Reservoir {
            per_second,
            epoch: Instant::now(),
            window: AtomicU64::new(0),
            turned_away: AtomicU64::new(0),
        }
    }

    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    /// Requests not recorded since the start.
    pub fn turned_away(&self) -> u64 {
        self.turned_away.load(Ordering::Relaxed)
    }

    /// Whether a request beginning in `second` is recorded.
    fn admit_in(&self, second: u32) -> bool {
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let (counted, admitted) = ((current >> 32) as u32, current as u32);
            let next = if second > counted {
                (u64::from(second) << 32) | 1
            } else if admitted < self.per_second {
                current + 1
            } else {
                self.turned_away.fetch_add(1, Ordering::Relaxed);
                return false;
            };
            match self.window.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }
}

impl RecordGate for Reservoir {
    fn admit(&self) -> bool {
        // Seconds since start fit 32 bits for 136 years.
        let second = u32::try_from(self.epoch.elapsed().as_secs()).unwrap_or(u32::MAX);
        self.admit_in(second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_second_admits_its_allowance_and_counts_the_rest() {
        let reservoir = Reservoir::new(3);
        let admitted = |second| (0..5).filter(|_| reservoir.admit_in(second)).count();
        assert_eq!(admitted(0), 3);
        assert_eq!(reservoir.turned_away(), 2);
        assert_eq!(admitted(1), 3);
        assert_eq!(admitted(7), 3);
        assert_eq!(reservoir.turned_away(), 6);
    }

    #[test]
    fn a_late_caller_counts_in_the_second_already_begun() {
        let reservoir = Reservoir::new(2);
        assert!(reservoir.admit_in(5));
        // A request whose clock read came before another's new second.
        assert!(reservoir.admit_in(4));
        assert!(!reservoir.admit_in(5));
        assert!(reservoir.admit_in(6));
    }

    #[test]
    fn threads_together_admit_no_more_than_the_allowance() {
        let reservoir = Reservoir::new(1_000);
        let admitted: usize = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| (0..1_000).filter(|_| reservoir.admit_in(9)).count()))
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        assert_eq!(admitted, 1_000);
        assert_eq!(reservoir.turned_away(), 3_000);
    }

    #[test]
    fn the_clock_starts_a_new_allowance() {
        let reservoir = Reservoir::new(1);
        assert!(reservoir.admit());
        // The first second's allowance is spent; the test does not wait a
        // second for the next, which the tests above cover.
        let spent = !reservoir.admit();
        assert!(spent || reservoir.epoch.elapsed().as_secs() >= 1);
    }
}

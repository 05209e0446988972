//! The console's traces, held until they can be printed whole. A span
//! ends after the spans it contains, so a trace's spans arrive children
//! first, and from concurrent tasks in any order; each finished span is
//! held with its trace until the span that began the trace in this process
//! (its local root: no parent, or a caller's) ends, and then the trace is
//! handed over at once, to be printed as one tree. What is held is bounded
//! in spans and in bytes: past a bound the oldest unfinished trace is
//! handed over as it is. A span that ends after its trace was printed
//! (work a request left running) is handed over with whatever it contains,
//! as a late part of that trace.

use std::collections::{HashMap, HashSet, VecDeque};

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::SpanData;

use crate::telemetry::queue::Weigh;
use crate::telemetry::sink::SharedSpan;

/// The most spans and bytes held while their traces are unfinished.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub spans: usize,
    pub bytes: usize,
}

/// Why spans are handed over now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The local root ended: the trace as this process saw it.
    Whole,
    /// Spans whose parent was printed before they ended.
    Late,
    /// The root had not ended when a bound was reached or the console stopped.
    Unfinished,
}

/// Spans of one trace, printed together.
#[derive(Debug)]
pub struct Trace {
    pub spans: Vec<SharedSpan>,
    pub ending: Ending,
}

/// How many printed spans are remembered, to know a late span's parent.
const REMEMBERED: usize = 4096;

type SpanKey = (TraceId, SpanId);

pub struct Traces {
    limits: Limits,
    held: HashMap<TraceId, Vec<SharedSpan>>,
    /// Held traces in the order their first span arrived: past a bound
    /// the oldest goes first.
    arrival: VecDeque<TraceId>,
    spans: usize,
    bytes: usize,
    printed: HashSet<SpanKey>,
    printed_order: VecDeque<SpanKey>,
}

fn key(span: &SpanData) -> SpanKey {
    (span.span_context.trace_id(), span.span_context.span_id())
}

/// The first span of its trace in this process: nothing above it, or only
/// a caller's span.
fn is_local_root(span: &SpanData) -> bool {
    span.parent_span_id == SpanId::INVALID || span.parent_span_is_remote
}

impl Traces {
    pub fn new(limits: Limits) -> Self {
        Traces {
            limits,
            held: HashMap::new(),
            arrival: VecDeque::new(),
            spans: 0,
            bytes: 0,
            printed: HashSet::new(),
            printed_order: VecDeque::new(),
        }
    }

    /// Takes a finished span; answers what is ready to print because of it.
    pub fn add(&mut self, span: impl Into<SharedSpan>) -> Vec<Trace> {
        let span = span.into();
        let trace_id = span.span_context.trace_id();
        let ending = if is_local_root(&span) {
            Some(Ending::Whole)
        } else if self.printed.contains(&(trace_id, span.parent_span_id)) {
            Some(Ending::Late)
        } else {
            None
        };
        if let Some(ending) = ending {
            let mut spans = vec![span];
            self.take_descendants(trace_id, &mut spans);
            return vec![self.hand_over(spans, ending)];
        }
        self.hold(span);
        let mut ready = Vec::new();
        while self.spans > self.limits.spans || self.bytes > self.limits.bytes {
            let Some(oldest) = self.pop_oldest() else {
                break;
            };
            ready.push(oldest);
        }
        ready
    }

    /// Everything still held, oldest trace first: the console is stopping.
    pub fn drain(&mut self) -> Vec<Trace> {
        std::iter::from_fn(|| self.pop_oldest()).collect()
    }

    /// The oldest trace held, as far as it got.
    fn pop_oldest(&mut self) -> Option<Trace> {
        while let Some(oldest) = self.arrival.pop_front() {
            if let Some(spans) = self.held.remove(&oldest) {
                self.forget(&spans);
                return Some(self.hand_over(spans, Ending::Unfinished));
            }
        }
        None
    }

    fn hold(&mut self, span: SharedSpan) {
        self.spans += 1;
        self.bytes += span.weight();
        let trace_id = span.span_context.trace_id();
        let held = self.held.entry(trace_id).or_default();
        if held.is_empty() {
            self.arrival.push_back(trace_id);
        }
        held.push(span);
    }

    /// Moves every held span below `spans[0]` into `spans`. Only those: two
    /// requests of one browser trace each have their own local root here.
    fn take_descendants(&mut self, trace_id: TraceId, spans: &mut Vec<SharedSpan>) {
        let Some(held) = self.held.get_mut(&trace_id) else {
            return;
        };
        let mut family: HashSet<SpanId> = HashSet::from([spans[0].span_context.span_id()]);
        let first_taken = spans.len();
        loop {
            let before = spans.len();
            let mut index = 0;
            while index < held.len() {
                if family.contains(&held[index].parent_span_id) {
                    let child = held.swap_remove(index);
                    family.insert(child.span_context.span_id());
                    spans.push(child);
                } else {
                    index += 1;
                }
            }
            if spans.len() == before {
                break;
            }
        }
        if held.is_empty() {
            self.held.remove(&trace_id);
            self.arrival.retain(|id| *id != trace_id);
        }
        self.forget(&spans[first_taken..]);
    }

    /// Counts `spans` as no longer held.
    fn forget(&mut self, spans: &[SharedSpan]) {
        self.spans -= spans.len();
        self.bytes -= spans.iter().map(Weigh::weight).sum::<usize>();
    }

    fn hand_over(&mut self, spans: Vec<SharedSpan>, ending: Ending) -> Trace {
        for span in &spans {
            if self.printed.insert(key(span)) {
                self.printed_order.push_back(key(span));
            }
        }
        while self.printed_order.len() > REMEMBERED {
            if let Some(old) = self.printed_order.pop_front() {
                self.printed.remove(&old);
            }
        }
        Trace { spans, ending }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::test_span::span;

    fn roomy() -> Traces {
        Traces::new(Limits {
            spans: 1000,
            bytes: usize::MAX,
        })
    }

    fn names(trace: &Trace) -> Vec<&str> {
        trace.spans.iter().map(|s| s.name.as_ref()).collect()
    }

    #[test]
    fn a_trace_is_held_until_its_root_ends_then_handed_over_whole() {
        let mut traces = roomy();
        assert!(traces.add(span(1, 3, 2, "query", 2, 1)).is_empty());
        assert!(traces.add(span(1, 2, 1, "service", 1, 3)).is_empty());
        let ready = traces.add(span(1, 1, 0, "GET /", 0, 5));
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].ending, Ending::Whole);
        let mut got = names(&ready[0]);
        got.sort_unstable();
        assert_eq!(got, ["GET /", "query", "service"]);
        assert!(traces.drain().is_empty(), "nothing is left held");
        assert_eq!((traces.spans, traces.bytes), (0, 0));
    }

    #[test]
    fn a_root_whose_parent_is_a_callers_ends_its_trace_here() {
        let mut traces = roomy();
        assert!(traces.add(span(1, 3, 2, "service", 1, 1)).is_empty());
        let mut root = span(1, 2, 9, "GET /", 0, 3);
        root.parent_span_is_remote = true;
        let ready = traces.add(root);
        assert_eq!(names(&ready[0]).len(), 2);
    }

    #[test]
    fn two_local_roots_of_one_trace_take_only_their_own_spans() {
        // A browser trace with two fetches: two server spans here, one trace id.
        let mut traces = roomy();
        traces.add(span(1, 11, 10, "first's query", 1, 1));
        traces.add(span(1, 21, 20, "second's query", 1, 1));
        let mut first = span(1, 10, 99, "GET /first", 0, 3);
        first.parent_span_is_remote = true;
        let ready = traces.add(first);
        assert_eq!(names(&ready[0]), ["GET /first", "first's query"]);
        let left = traces.drain();
        assert_eq!(names(&left[0]), ["second's query"]);
    }

    #[test]
    fn a_span_that_ends_after_its_trace_was_printed_is_handed_over_as_late() {
        let mut traces = roomy();
        traces.add(span(1, 1, 0, "GET /", 0, 5));
        // Work the request left running: a task and the query inside it.
        assert!(traces.add(span(1, 3, 2, "late query", 6, 1)).is_empty());
        let ready = traces.add(span(1, 2, 1, "background", 4, 10));
        assert_eq!(ready[0].ending, Ending::Late);
        assert_eq!(names(&ready[0]), ["background", "late query"]);
    }

    #[test]
    fn past_the_span_bound_the_oldest_unfinished_trace_is_handed_over() {
        let mut traces = Traces::new(Limits {
            spans: 2,
            bytes: usize::MAX,
        });
        assert!(traces.add(span(1, 2, 1, "old child", 0, 1)).is_empty());
        assert!(traces.add(span(2, 2, 1, "new child", 1, 1)).is_empty());
        let ready = traces.add(span(2, 3, 1, "new child 2", 2, 1));
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].ending, Ending::Unfinished);
        assert_eq!(names(&ready[0]), ["old child"]);
        assert_eq!(traces.spans, 2);
        let ready = traces.add(span(2, 1, 0, "new root", 0, 5));
        assert_eq!(names(&ready[0]).len(), 3, "the newer trace is still whole");
    }

    #[test]
    fn past_the_byte_bound_the_oldest_unfinished_trace_is_handed_over() {
        let one = SharedSpan::from(span(1, 2, 1, "child", 0, 1)).weight();
        let mut traces = Traces::new(Limits {
            spans: 1000,
            bytes: one * 2,
        });
        traces.add(span(1, 2, 1, "child", 0, 1));
        traces.add(span(2, 2, 1, "child", 0, 1));
        assert_eq!(traces.bytes, one * 2);
        let ready = traces.add(span(3, 2, 1, "child", 0, 1));
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].spans[0].span_context.trace_id(), TraceId::from(1));
        assert_eq!(traces.bytes, one * 2);
    }

    #[test]
    fn drain_hands_over_every_held_trace_oldest_first() {
        let mut traces = roomy();
        traces.add(span(2, 2, 1, "b", 0, 1));
        traces.add(span(1, 2, 1, "a", 0, 1));
        traces.add(span(2, 3, 1, "b2", 0, 1));
        let left = traces.drain();
        assert_eq!(left.len(), 2);
        assert!(left.iter().all(|t| t.ending == Ending::Unfinished));
        assert_eq!(names(&left[0]), ["b", "b2"]);
        assert_eq!(names(&left[1]), ["a"]);
    }

    #[test]
    fn only_the_latest_printed_spans_are_remembered() {
        let mut traces = roomy();
        for trace in 0..(REMEMBERED as u128 + 10) {
            traces.add(span(trace + 1, 1, 0, "root", 0, 1));
        }
        assert_eq!(traces.printed.len(), REMEMBERED);
        assert_eq!(traces.printed_order.len(), REMEMBERED);
    }
}

//! The explorer's spans, kept by trace and bounded in spans and bytes. A
//! trace's spans arrive children first, and from concurrent tasks in any
//! order; they are kept together under their trace id as they come, and a
//! trace is assembled (root, order, offsets) only when it is read. Past a
//! bound the trace whose first span arrived earliest leaves whole, so what
//! the explorer shows is never a trace with holes made by eviction.

use std::collections::{HashMap, VecDeque};
use std::time::SystemTime;

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::SpanData;

use crate::telemetry::queue::Weigh;
use crate::telemetry::sink::SharedSpan;

/// The most spans and bytes kept.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub spans: usize,
    pub bytes: usize,
}

/// One trace's spans, in the order they arrived.
#[derive(Debug, Default)]
pub struct Kept {
    pub spans: Vec<SharedSpan>,
    bytes: usize,
}

impl Kept {
    /// The span the trace began with here: the earliest span with no
    /// parent, a caller's parent, or a parent that is not kept.
    pub fn root(&self) -> Option<&SharedSpan> {
        self.spans
            .iter()
            .filter(|span| {
                span.parent_span_id == SpanId::INVALID
                    || span.parent_span_is_remote
                    || !self.has(span.parent_span_id)
            })
            .min_by_key(|span| span.start_time)
    }

    fn has(&self, id: SpanId) -> bool {
        self.spans.iter().any(|s| s.span_context.span_id() == id)
    }

    /// The earliest start and the latest end of the trace's spans.
    pub fn bounds(&self) -> (SystemTime, SystemTime) {
        let start = self.spans.iter().map(|s| s.start_time).min();
        let end = self.spans.iter().map(|s| s.end_time).max();
        let start = start.unwrap_or(SystemTime::UNIX_EPOCH);
        (start, end.unwrap_or(start))
    }
}

/// What the buffer holds, for the page's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub traces: usize,
    pub spans: usize,
    pub bytes: usize,
    pub evicted_traces: u64,
}

pub struct Buffer {
    limits: Limits,
    traces: HashMap<TraceId, Kept>,
    /// Trace ids in the order their first span arrived: the oldest leaves first.
    arrival: VecDeque<TraceId>,
    spans: usize,
    bytes: usize,
    evicted: u64,
}

impl Buffer {
    pub fn new(limits: Limits) -> Self {
        Buffer {
            limits,
            traces: HashMap::new(),
            arrival: VecDeque::new(),
            spans: 0,
            bytes: 0,
            evicted: 0,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Keeps `span` with its trace; evicts the oldest traces past a bound
    /// (the span's own trace too, if it alone is over one).
    pub fn add(&mut self, span: impl Into<SharedSpan>) {
        let span = span.into();
        let weight = span.weight();
        let trace_id = span.span_context.trace_id();
        let kept = self.traces.entry(trace_id).or_default();
        if kept.spans.is_empty() {
            self.arrival.push_back(trace_id);
        }
        kept.spans.push(span);
        kept.bytes += weight;
        self.spans += 1;
        self.bytes += weight;
        while self.spans > self.limits.spans || self.bytes > self.limits.bytes {
            let Some(oldest) = self.arrival.pop_front() else {
                break;
            };
            if let Some(gone) = self.traces.remove(&oldest) {
                self.spans -= gone.spans.len();
                self.bytes -= gone.bytes;
                self.evicted += 1;
            }
        }
    }

    pub fn get(&self, trace_id: TraceId) -> Option<&Kept> {
        self.traces.get(&trace_id)
    }

    pub fn traces(&self) -> impl Iterator<Item = (&TraceId, &Kept)> {
        self.traces.iter()
    }

    pub fn spans(&self) -> impl Iterator<Item = &SpanData> {
        self.traces
            .values()
            .flat_map(|kept| kept.spans.iter().map(|span| &**span))
    }

    pub fn counts(&self) -> Counts {
        Counts {
            traces: self.traces.len(),
            spans: self.spans,
            bytes: self.bytes,
            evicted_traces: self.evicted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::test_span::span;

    fn roomy() -> Limits {
        Limits {
            spans: 100,
            bytes: usize::MAX,
        }
    }

    #[test]
    fn spans_arriving_out_of_order_make_one_trace_with_its_root() {
        let mut buffer = Buffer::new(roomy());
        // Children end, and arrive, before their parents.
        buffer.add(span(1, 3, 2, "query", 12, 2));
        buffer.add(span(2, 9, 0, "other trace", 5, 1));
        buffer.add(span(1, 2, 1, "service", 11, 5));
        buffer.add(span(1, 1, 0, "GET /", 10, 8));
        let kept = buffer.get(TraceId::from(1)).unwrap();
        assert_eq!(kept.spans.len(), 3);
        assert_eq!(kept.root().unwrap().name, "GET /");
        let (start, end) = kept.bounds();
        assert_eq!(start, span(1, 1, 0, "", 10, 0).start_time);
        assert_eq!(end, span(1, 1, 0, "", 18, 0).start_time);
        assert_eq!(buffer.counts().traces, 2);
        assert_eq!(buffer.counts().spans, 4);
    }

    #[test]
    fn a_trace_whose_root_has_not_arrived_is_rooted_at_its_earliest_orphan() {
        let mut buffer = Buffer::new(roomy());
        buffer.add(span(1, 3, 2, "query", 12, 2));
        buffer.add(span(1, 4, 2, "query 2", 11, 2));
        let kept = buffer.get(TraceId::from(1)).unwrap();
        assert_eq!(kept.root().unwrap().name, "query 2");
        // A caller's span is the parent of the local root: still the root.
        let mut buffer = Buffer::new(roomy());
        let mut server = span(5, 1, 77, "GET /", 10, 8);
        server.parent_span_is_remote = true;
        buffer.add(span(5, 2, 1, "service", 11, 5));
        buffer.add(server);
        assert_eq!(
            buffer.get(TraceId::from(5)).unwrap().root().unwrap().name,
            "GET /"
        );
    }

    #[test]
    fn past_the_span_bound_the_oldest_trace_leaves_whole() {
        let mut buffer = Buffer::new(Limits {
            spans: 4,
            bytes: usize::MAX,
        });
        buffer.add(span(1, 1, 0, "one", 1, 1));
        buffer.add(span(2, 1, 0, "two", 2, 1));
        buffer.add(span(1, 2, 1, "one's child", 1, 1));
        buffer.add(span(3, 1, 0, "three", 3, 1));
        assert_eq!(buffer.counts().spans, 4);
        buffer.add(span(3, 2, 1, "three's child", 3, 1));
        // Trace 1 arrived first: both its spans go, though one came later.
        assert!(buffer.get(TraceId::from(1)).is_none());
        assert!(buffer.get(TraceId::from(2)).is_some());
        assert_eq!(buffer.get(TraceId::from(3)).unwrap().spans.len(), 2);
        assert_eq!(
            buffer.counts(),
            Counts {
                traces: 2,
                spans: 3,
                bytes: buffer.counts().bytes,
                evicted_traces: 1
            }
        );
    }

    #[test]
    fn past_the_byte_bound_traces_leave_and_the_bytes_are_given_back() {
        let one = SharedSpan::from(span(1, 1, 0, "one", 1, 1)).weight();
        let mut buffer = Buffer::new(Limits {
            spans: 1000,
            bytes: one * 3,
        });
        for trace in 1..=10u128 {
            buffer.add(span(trace, 1, 0, "one", 1, 1));
        }
        let counts = buffer.counts();
        assert_eq!((counts.traces, counts.spans), (3, 3));
        assert_eq!(counts.bytes, one * 3);
        assert_eq!(counts.evicted_traces, 7);
        assert!(buffer.get(TraceId::from(10)).is_some());
        assert!(buffer.get(TraceId::from(7)).is_none());
    }

    #[test]
    fn a_span_larger_than_the_bound_is_not_kept() {
        let mut buffer = Buffer::new(Limits { spans: 0, bytes: 0 });
        buffer.add(span(1, 1, 0, "one", 1, 1));
        assert_eq!(buffer.counts().traces, 0);
        assert_eq!(buffer.counts().spans, 0);
        assert_eq!(buffer.counts().bytes, 0);
    }
}

//! One finished span for tests, for the modules that turn spans into
//! something else (the console's trees, X-Ray documents, queue weights);
//! a test changes the fields it is about with struct update syntax.

use std::time::{Duration, UNIX_EPOCH};

use opentelemetry::InstrumentationScope;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

/// An internal, sampled span `id` in trace `trace`, under `parent` (0:
/// none), started `start` ms after the epoch, lasting `length` ms, with no
/// attributes, events or links.
pub(crate) fn span(
    trace: u128,
    id: u64,
    parent: u64,
    name: &str,
    start: u64,
    length: u64,
) -> SpanData {
    let start_time = UNIX_EPOCH + Duration::from_millis(start);
    SpanData {
        span_context: SpanContext::new(
            TraceId::from(trace),
            SpanId::from(id),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: SpanId::from(parent),
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name: name.to_owned().into(),
        start_time,
        end_time: start_time + Duration::from_millis(length),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: InstrumentationScope::builder("test").build(),
    }
}

//! X-Ray compatible ids: the first 32 bits of a trace id are its epoch
//! seconds, so `1-{8 hex}-{24 hex}` and the W3C form name the same trace.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};

thread_local! {
    /// A trace id the next root span on this thread must take: an incoming
    /// X-Ray header can name a trace (`Root=`) without a parent segment.
    static NEXT_TRACE_ID: Cell<Option<TraceId>> = const { Cell::new(None) };
}

/// Runs `start` (which starts a root span) so that the span joins `trace_id`.
pub fn with_trace_id<R>(trace_id: Option<TraceId>, start: impl FnOnce() -> R) -> R {
    NEXT_TRACE_ID.with(|next| next.set(trace_id));
    let started = start();
    NEXT_TRACE_ID.with(|next| next.set(None));
    started
}

#[derive(Debug, Default)]
pub struct XrayIdGenerator {
    random: RandomIdGenerator,
}

impl IdGenerator for XrayIdGenerator {
    fn new_trace_id(&self) -> TraceId {
        if let Some(forced) = NEXT_TRACE_ID.with(Cell::take) {
            return forced;
        }
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        let mut bytes = self.random.new_trace_id().to_bytes();
        bytes[..4].copy_from_slice(&seconds.to_be_bytes());
        TraceId::from_bytes(bytes)
    }

    fn new_span_id(&self) -> SpanId {
        self.random.new_span_id()
    }
}

/// The X-Ray spelling of a trace id: `1-5759e988-bd862e3fe1be46a994272793`.
pub fn xray_trace_id(trace_id: TraceId) -> String {
    let hex = format!("{trace_id:032x}");
    format!("1-{}-{}", &hex[..8], &hex[8..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_start_with_epoch_seconds() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let id = XrayIdGenerator::default().new_trace_id();
        let seconds = u32::from_be_bytes(id.to_bytes()[..4].try_into().unwrap()) as u64;
        assert!(seconds >= before && seconds <= before + 2);
        let xray = xray_trace_id(id);
        assert_eq!(xray.len(), 35);
        assert_eq!(xray.replace('-', "")[1..], format!("{id:032x}"));
    }

    #[test]
    fn a_forced_trace_id_is_used_once() {
        let generator = XrayIdGenerator::default();
        let forced = TraceId::from_hex("5759e988bd862e3fe1be46a994272793").unwrap();
        let first = with_trace_id(Some(forced), || generator.new_trace_id());
        assert_eq!(first, forced);
        assert_ne!(generator.new_trace_id(), forced);
    }
}

//! X-Ray compatible ids: the first 32 bits of a trace id are its epoch
//! seconds, so `1-{8 hex}-{24 hex}` and the W3C form name the same trace.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};

#[derive(Debug, Default)]
pub struct XrayIdGenerator {
    random: RandomIdGenerator,
}

impl IdGenerator for XrayIdGenerator {
    fn new_trace_id(&self) -> TraceId {
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

/// Writes `bytes` as lowercase hex at the start of `out`.
pub(crate) fn put_hex(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
}

const XRAY_TRACE_ID_LEN: usize = 35;

/// Writes `1-{8 hex}-{24 hex}` at the start of `out`.
fn put_xray_trace_id(out: &mut [u8], trace_id: TraceId) {
    let bytes = trace_id.to_bytes();
    out[..2].copy_from_slice(b"1-");
    put_hex(&mut out[2..10], &bytes[..4]);
    out[10] = b'-';
    put_hex(&mut out[11..XRAY_TRACE_ID_LEN], &bytes[4..]);
}

/// The X-Ray spelling of a trace id: `1-5759e988-bd862e3fe1be46a994272793`.
pub fn xray_trace_id(trace_id: TraceId) -> String {
    let mut text = [0; XRAY_TRACE_ID_LEN];
    put_xray_trace_id(&mut text, trace_id);
    String::from_utf8(text.to_vec()).expect("hex digits and dashes are ASCII")
}

/// A trace id, a span id and the X-Ray trace id as text, written into one
/// buffer: every log line carries all three, and formatting them
/// (`{:032x}`, `{:016x}`, a `String` each) cost a line 2.7k instructions.
pub struct IdsText([u8; 32 + 16 + XRAY_TRACE_ID_LEN]);

impl IdsText {
    pub fn new(trace_id: TraceId, span_id: SpanId) -> Self {
        let mut text = [0; 32 + 16 + XRAY_TRACE_ID_LEN];
        put_hex(&mut text[..32], &trace_id.to_bytes());
        put_hex(&mut text[32..48], &span_id.to_bytes());
        put_xray_trace_id(&mut text[48..], trace_id);
        IdsText(text)
    }

    fn part(&self, range: std::ops::Range<usize>) -> &str {
        std::str::from_utf8(&self.0[range]).expect("hex digits and dashes are ASCII")
    }

    /// 32 lowercase hex digits.
    pub fn trace_id(&self) -> &str {
        self.part(0..32)
    }

    /// 16 lowercase hex digits.
    pub fn span_id(&self) -> &str {
        self.part(32..48)
    }

    /// `1-{8 hex}-{24 hex}`.
    pub fn xray_trace_id(&self) -> &str {
        self.part(48..48 + XRAY_TRACE_ID_LEN)
    }
}

/// The `X-Amzn-Trace-Id` answer: `Root={X-Ray trace id};Parent={span id};Sampled={0|1}`,
/// written without formatting machinery since every traced request sends it.
pub fn xray_header(trace_id: TraceId, span_id: SpanId, sampled: bool) -> http::HeaderValue {
    const ROOT: &[u8] = b"Root=";
    const PARENT: &[u8] = b";Parent=";
    const SAMPLED: &[u8] = b";Sampled=";
    let mut text = [0; ROOT.len() + XRAY_TRACE_ID_LEN + PARENT.len() + 16 + SAMPLED.len() + 1];
    let (root, rest) = text.split_at_mut(ROOT.len());
    root.copy_from_slice(ROOT);
    let (id, rest) = rest.split_at_mut(XRAY_TRACE_ID_LEN);
    put_xray_trace_id(id, trace_id);
    let (parent, rest) = rest.split_at_mut(PARENT.len());
    parent.copy_from_slice(PARENT);
    let (span, rest) = rest.split_at_mut(16);
    put_hex(span, &span_id.to_bytes());
    let (label, decision) = rest.split_at_mut(SAMPLED.len());
    label.copy_from_slice(SAMPLED);
    decision[0] = if sampled { b'1' } else { b'0' };
    http::HeaderValue::from_bytes(&text).expect("the header is ASCII")
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
    fn the_xray_header_spells_root_parent_and_decision() {
        let trace = TraceId::from_hex("5759e988bd862e3fe1be46a994272793").unwrap();
        let span = SpanId::from_hex("53995c3f42cd8ad8").unwrap();
        assert_eq!(
            xray_header(trace, span, true),
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
        );
        assert_eq!(
            xray_header(TraceId::from(0xf), SpanId::from(0xa0), false),
            "Root=1-00000000-00000000000000000000000f;Parent=00000000000000a0;Sampled=0"
        );
        assert_eq!(xray_trace_id(trace), "1-5759e988-bd862e3fe1be46a994272793");
    }

    #[test]
    fn ids_as_text_are_the_formatted_ids() {
        let trace = TraceId::from_hex("0059e988bd862e3fe1be46a99427279f").unwrap();
        let span = SpanId::from_hex("03995c3f42cd8ad0").unwrap();
        let text = IdsText::new(trace, span);
        assert_eq!(text.trace_id(), format!("{trace:032x}"));
        assert_eq!(text.span_id(), format!("{span:016x}"));
        assert_eq!(text.xray_trace_id(), "1-0059e988-bd862e3fe1be46a99427279f");
    }
}

//! Incoming trace context: W3C `traceparent`/`tracestate` and `baggage`,
//! else `X-Amzn-Trace-Id`. Anything malformed is ignored: a new trace starts.

use http::{HeaderMap, HeaderName};
use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceId};
use opentelemetry_aws::trace::xray_propagator::span_context_from_str;
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

/// The trace-state key that carries an X-Ray sampling decision: a caller's
/// `Sampled=` lands here, and X-Ray's own sampling (when on) writes it.
pub const DECISION_KEY: &str = "xray";

const XRAY_HEADER: HeaderName = HeaderName::from_static("x-amzn-trace-id");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const BAGGAGE: HeaderName = HeaderName::from_static("baggage");

/// Where a request's server span belongs.
pub struct Incoming {
    /// The caller's context, when it named a parent span, a sampling
    /// decision or baggage (a parent span is then valid only if named).
    pub parent: Option<Context>,
    /// A trace to join without a parent (an X-Ray `Root=` with no `Parent=`,
    /// as a load balancer sends).
    pub trace_id: Option<TraceId>,
}

/// Whether the header's `Root=` is exactly `1-{8 hex}-{24 hex}`.
fn has_valid_root(header: &str) -> bool {
    header
        .split(';')
        .filter_map(|part| part.trim().strip_prefix("Root="))
        .any(|root| {
            let bytes = root.as_bytes();
            bytes.len() == 35
                && root.starts_with("1-")
                && bytes[10] == b'-'
                && bytes
                    .iter()
                    .enumerate()
                    .all(|(i, b)| i < 2 || i == 10 || b.is_ascii_hexdigit())
        })
}

pub fn extract(headers: &HeaderMap) -> Incoming {
    // Most requests carry no context: found out by three look-ups with
    // ready-made names, instead of the propagators parsing each name.
    if ![TRACEPARENT, XRAY_HEADER, BAGGAGE]
        .iter()
        .any(|name| headers.contains_key(name))
    {
        return Incoming {
            parent: None,
            trace_id: None,
        };
    }
    let carrier = HeaderExtractor(headers);
    let with_baggage = |cx: &Context| BaggagePropagator::new().extract_with_context(cx, &carrier);
    let w3c = TraceContextPropagator::new().extract(&carrier);
    if w3c.span().span_context().is_valid() {
        return Incoming {
            parent: Some(with_baggage(&w3c)),
            trace_id: None,
        };
    }
    let xray = headers
        .get(XRAY_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| has_valid_root(value))
        .and_then(|value| span_context_from_str(value.trim()));
    match xray {
        Some(sc) if sc.trace_id() != TraceId::INVALID => {
            // A caller's `Sampled=1/0` is the X-Ray decision for the whole
            // trace, with or without `Parent=`; with none (`Sampled=?` or
            // absent) the decision is ours, and OpenTelemetry keeps the trace.
            let decided = sc.trace_flags() == TraceFlags::SAMPLED
                || sc.trace_flags() == TraceFlags::default();
            if !decided && !sc.is_valid() {
                // A load balancer's `Root=` alone: a trace to join by id,
                // sampled as a new one.
                return Incoming {
                    parent: Some(with_baggage(&Context::new())),
                    trace_id: Some(sc.trace_id()),
                };
            }
            let (flags, state) = if decided {
                let decision = if sc.is_sampled() { "1" } else { "0" };
                let state = sc
                    .trace_state()
                    .insert(DECISION_KEY, decision)
                    .unwrap_or_else(|_| sc.trace_state().clone());
                (sc.trace_flags(), state)
            } else {
                (TraceFlags::SAMPLED, sc.trace_state().clone())
            };
            // Without `Parent=` the context is not valid: the trace is
            // joined by id, and the decision still reaches the samplers
            // (OpenTelemetry's parent-based one takes it as a remote parent's).
            let trace_id = (!sc.is_valid()).then(|| sc.trace_id());
            let sc = SpanContext::new(sc.trace_id(), sc.span_id(), flags, true, state);
            Incoming {
                parent: Some(with_baggage(&Context::new()).with_remote_span_context(sc)),
                trace_id,
            }
        }
        _ => Incoming {
            parent: headers
                .contains_key(BAGGAGE)
                .then(|| with_baggage(&Context::new())),
            trace_id: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::baggage::BaggageExt;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    fn parent_of(pairs: &[(&'static str, &str)]) -> Option<SpanContext> {
        extract(&headers(pairs))
            .parent
            .map(|cx| cx.span().span_context().clone())
            .filter(SpanContext::is_valid)
    }

    #[test]
    fn w3c_parent_is_joined_with_its_flags_and_baggage() {
        let incoming = extract(&headers(&[
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("baggage", "user=worf"),
        ]));
        let cx = incoming.parent.unwrap();
        let sc = cx.span().span_context().clone();
        assert_eq!(
            format!("{:032x}", sc.trace_id()),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(format!("{:016x}", sc.span_id()), "b7ad6b7169203331");
        assert!(sc.is_sampled() && sc.is_remote());
        assert_eq!(
            cx.baggage().get("user").map(|v| v.as_str().to_owned()),
            Some("worf".into())
        );
    }

    #[test]
    fn xray_header_is_joined() {
        let sc = parent_of(&[(
            "x-amzn-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        )])
        .unwrap();
        assert_eq!(
            format!("{:032x}", sc.trace_id()),
            "5759e988bd862e3fe1be46a994272793"
        );
        assert_eq!(format!("{:016x}", sc.span_id()), "53995c3f42cd8ad8");
        assert!(sc.is_sampled());
        assert_eq!(sc.trace_state().get(DECISION_KEY), Some("1"));
        let unsampled = parent_of(&[(
            "x-amzn-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
        )])
        .unwrap();
        assert!(!unsampled.is_sampled());
        assert_eq!(unsampled.trace_state().get(DECISION_KEY), Some("0"));
    }

    #[test]
    fn xray_without_decision_is_kept() {
        let sc = parent_of(&[(
            "x-amzn-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",
        )])
        .unwrap();
        assert!(sc.is_sampled());
        assert_eq!(
            sc.trace_state().get(DECISION_KEY),
            None,
            "X-Ray decides here"
        );
    }

    #[test]
    fn load_balancer_root_without_parent_names_the_trace() {
        let incoming = extract(&headers(&[(
            "x-amzn-trace-id",
            "Self=1-67891234-12456789abcdef012345678;Root=1-5759e988-bd862e3fe1be46a994272793",
        )]));
        assert_eq!(
            incoming.trace_id.map(|id| format!("{id:032x}")),
            Some("5759e988bd862e3fe1be46a994272793".into())
        );
        assert!(!incoming.parent.unwrap().span().span_context().is_valid());
    }

    #[test]
    fn a_decision_without_a_parent_reaches_the_sampler() {
        for (sampled, decision) in [("1", Some("1")), ("0", Some("0")), ("?", None)] {
            let incoming = extract(&headers(&[(
                "x-amzn-trace-id",
                &format!("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled={sampled}"),
            )]));
            assert_eq!(
                incoming.trace_id.map(|id| format!("{id:032x}")),
                Some("5759e988bd862e3fe1be46a994272793".into()),
                "Sampled={sampled}"
            );
            let sc = incoming.parent.unwrap().span().span_context().clone();
            assert!(!sc.is_valid(), "no parent to join");
            assert_eq!(
                sc.trace_state().get(DECISION_KEY),
                decision,
                "Sampled={sampled}"
            );
        }
    }

    #[test]
    fn w3c_wins_over_xray() {
        let sc = parent_of(&[
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            (
                "x-amzn-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
            ),
        ])
        .unwrap();
        assert_eq!(
            format!("{:032x}", sc.trace_id()),
            "0af7651916cd43dd8448eb211c80319c"
        );
    }

    #[test]
    fn malformed_headers_start_a_new_trace() {
        for pairs in [
            vec![("traceparent", "00-zzzz-b7ad6b7169203331-01")],
            vec![(
                "traceparent",
                "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            )],
            vec![(
                "traceparent",
                "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )],
            vec![("x-amzn-trace-id", "Root=garbage;Parent=53995c3f42cd8ad8")],
            vec![("x-amzn-trace-id", ";;;===;")],
            vec![(
                "x-amzn-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a99427279;Sampled=1",
            )],
        ] {
            let incoming = extract(&headers(&pairs));
            assert!(incoming.trace_id.is_none(), "{pairs:?}");
            assert!(parent_of(&pairs).is_none(), "{pairs:?}");
        }
    }
}

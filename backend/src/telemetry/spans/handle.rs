//! What the rest of the backend asks of a span the layer records: its
//! context, its request's per-request state, and the request path's own
//! writes (joining the caller's trace, the answer, an event), each one look-up
//! of the recording instead of a `Span::record` through every layer.

use std::borrow::Cow;
use std::time::SystemTime;

use opentelemetry::trace::{Event, SpanContext, Status, TraceContextExt, TraceId};
use opentelemetry::{Context, KeyValue};
use tracing_subscriber::registry::{ExtensionsMut, LookupSpan, Registry, SpanData as _};

use super::{Recording, SpanLayer};

/// Runs `f` on the recording of `span`, with the layer that records it.
pub(super) fn with_recording<T>(
    span: &tracing::Span,
    f: impl FnOnce(&SpanLayer, &mut Recording) -> T,
) -> Option<T> {
    span.with_subscriber(|(id, dispatch)| {
        let layer = dispatch.downcast_ref::<SpanLayer>()?;
        let data = dispatch.downcast_ref::<Registry>()?.span_data(id)?;
        let mut extensions = data.extensions_mut();
        extensions
            .get_mut::<Recording>()
            .map(|recording| f(layer, recording))
    })
    .flatten()
}

/// Runs `f` on the extensions of the outermost span of `span`'s trace in
/// this process: a request's server span, where per-request state lives.
pub fn with_root_extensions<T>(
    span: &tracing::Span,
    f: impl FnOnce(&mut ExtensionsMut<'_>) -> T,
) -> Option<T> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let root = registry.span(id)?.scope().last()?;
        let mut extensions = root.extensions_mut();
        Some(f(&mut extensions))
    })
    .flatten()
}

/// The context of `span` (its trace and span ids and its trace's sampling
/// decision, made now if it has not been); `None` when no layer records it.
pub fn span_context(span: &tracing::Span) -> Option<SpanContext> {
    with_recording(span, |layer, recording| {
        layer.decide(recording, None);
        recording.span_context()
    })
}

/// Starts the root span of a request: joins the caller's trace (`parent`, a
/// context extracted from its headers) or the trace `trace_id` names, and
/// makes the sampling decision for the whole trace. Answers the span's
/// context; `None` when no layer records the span (tracing is off).
pub fn start_root(
    span: &tracing::Span,
    parent: Option<&Context>,
    trace_id: Option<TraceId>,
) -> Option<SpanContext> {
    with_recording(span, |layer, recording| {
        if recording.decision.is_none() {
            let remote = parent
                .map(|cx| cx.span().span_context().clone())
                .filter(SpanContext::is_valid);
            if let Some(remote) = remote {
                recording.trace_id = remote.trace_id();
                recording.parent_span_id = remote.span_id();
                recording.parent_is_remote = true;
            } else if let Some(trace_id) = trace_id {
                recording.trace_id = trace_id;
            }
            layer.decide(recording, parent);
        }
        recording.span_context()
    })
}

/// What a server span learns from its response.
pub struct Answer<'a> {
    pub method: &'a str,
    /// The matched route template, if a route matched.
    pub route: Option<&'a str>,
    pub status: http::StatusCode,
    /// The status goes under its old name `http.status_code` as well.
    pub old_status_name: bool,
}

/// Names a server span `{method} {route}` and records `http.route`, the
/// status code and, on 5xx, the error status, in one step: done as three
/// `Span::record` calls, each looked the span up again and copied its value
/// through a field visitor.
pub fn record_answer(span: &tracing::Span, answer: &Answer<'_>) {
    with_recording(span, |_, recording| {
        if !recording.recording() {
            return;
        }
        if let Some(route) = answer.route {
            recording.name = Cow::Owned(format!("{} {route}", answer.method));
            recording
                .attributes
                .push(KeyValue::new("http.route", route.to_owned()));
        }
        let status = i64::from(answer.status.as_u16());
        recording
            .attributes
            .push(KeyValue::new("http.response.status_code", status));
        if answer.old_status_name {
            recording
                .attributes
                .push(KeyValue::new("http.status_code", status));
        }
        if answer.status.is_server_error() {
            recording.status = Status::error("");
        }
    });
}

/// Adds an event with `attributes` to `span`, if it is recorded.
pub fn add_event(span: &tracing::Span, name: &'static str, attributes: Vec<KeyValue>) {
    with_recording(span, |_, recording| {
        if recording.recording() {
            recording.push_event(Event::new(name, SystemTime::now(), attributes, 0));
        }
    });
}

//! `tracing` spans recorded straight into the SDK's `SpanData`.
//!
//! Replaces tracing-opentelemetry's layer, for a measured reason: for the
//! same four spans of a feed request it cost a third more instructions on
//! the request path (it builds an SDK span builder per span, starts an SDK
//! span for every span with a child, tracks every enter and exit and builds
//! the span again on close); the figures are in bench/README.md, "Our own
//! fast paths". What users of that crate rely on is kept: the fields it
//! gives meaning to (`otel.name`, `otel.kind`, `otel.status_code`,
//! `otel.status_description`), events inside a span as span events (an
//! ERROR event marks the span an error), `follows_from` as a link, and
//! spans made through the OpenTelemetry API reaching the same sinks in the
//! same traces (`otel_api`; a tracing span started inside one is its child).
//!
//! Here a span is one [`Recording`] in the registry's extensions: ids up
//! front, the sampler called once per trace at the local root, children
//! inheriting its decision (what every standard sampler answers for a local
//! child), fields of unsampled spans never turned into attributes, and
//! nothing done on enter or exit. The SDK still supplies the types,
//! samplers and id generator; [`SpanRouter`] hands finished spans to the
//! sinks.
//!
//! Guarded by the tests below (the property test
//! `any_span_tree_keeps_its_shape` among them) and by every wire-level test
//! in tests/ that reads the spans back (OTLP, X-Ray, the OpenTelemetry API).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::trace::{
    Event, Link, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{
    IdGenerator, SamplingDecision, ShouldSample, SpanData, SpanEvents, SpanLinks,
};
use tracing::span::{Attributes, Id, Record};
use tracing::{Level, Subscriber};
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::registry::LookupSpan;

mod fields;
mod handle;
#[cfg(test)]
mod tests;
mod unrecorded;

pub use self::handle::{
    Answer, add_event, record_answer, span_context, start_root, with_root_extensions,
};
pub use self::unrecorded::{Caller, UnrecordedGate, unrecorded, without_spans};

use self::fields::{Fields, Owner};
use super::ids::XrayIdGenerator;
use super::sink::SpanRouter;

/// Events kept per span; later ones are counted as dropped (the SDK's limit).
const MAX_EVENTS: usize = 128;

/// One span while it is open, in the registry's extensions.
pub struct Recording {
    trace_id: TraceId,
    span_id: SpanId,
    parent_span_id: SpanId,
    parent_is_remote: bool,
    /// The trace's sampling decision and trace state, once made: at the
    /// local root when it starts, inherited by every child.
    decision: Option<(TraceFlags, TraceState)>,
    name: Cow<'static, str>,
    kind: SpanKind,
    start: SystemTime,
    attributes: Vec<KeyValue>,
    events: Vec<Event>,
    dropped_events: u32,
    links: Vec<Link>,
    status: Status,
    /// Whether a sink takes spans at all (see [`SpanLayer`]'s `keeps`).
    kept: bool,
}

impl Recording {
    /// Whether fields and events are worth keeping: a sink takes spans, and
    /// the span is sampled or its root has not decided yet.
    fn recording(&self) -> bool {
        self.kept
            && self
                .decision
                .as_ref()
                .is_none_or(|(flags, _)| flags.is_sampled())
    }

    fn span_context(&self) -> SpanContext {
        self.as_parent().span_context()
    }

    /// What a child takes from this span: one copy of the trace state (a
    /// `SpanContext` first, then the state copied out of it, was two, of 3
    /// allocations each, for every span of every request).
    fn as_parent(&self) -> Parent {
        self.parent_with(self.decision.clone())
    }

    /// This span as a parent, with `decision` for its trace's.
    fn parent_with(&self, decision: Option<(TraceFlags, TraceState)>) -> Parent {
        let (flags, state) = decision.unwrap_or_default();
        Parent {
            trace_id: self.trace_id,
            span_id: self.span_id,
            flags,
            state,
        }
    }

    /// The span's trace and span ids (log lines carry them).
    pub fn ids(&self) -> (TraceId, SpanId) {
        (self.trace_id, self.span_id)
    }

    fn push_event(&mut self, event: Event) {
        if self.events.len() < MAX_EVENTS {
            self.events.push(event);
        } else {
            self.dropped_events = self.dropped_events.saturating_add(1);
        }
    }
}

/// A new span's parent, as the new span keeps it.
struct Parent {
    trace_id: TraceId,
    span_id: SpanId,
    flags: TraceFlags,
    state: TraceState,
}

impl Parent {
    fn span_context(self) -> SpanContext {
        SpanContext::new(self.trace_id, self.span_id, self.flags, false, self.state)
    }
}

impl From<&SpanContext> for Parent {
    fn from(sc: &SpanContext) -> Self {
        Parent {
            trace_id: sc.trace_id(),
            span_id: sc.span_id(),
            flags: sc.trace_flags(),
            state: sc.trace_state().clone(),
        }
    }
}

/// Whether `span` or one of its ancestors is, or was started inside, the
/// span `otel`.
fn descends_from<S>(span: &tracing_subscriber::registry::SpanRef<'_, S>, otel: SpanId) -> bool
where
    S: for<'a> LookupSpan<'a>,
{
    span.scope().any(|ancestor| {
        ancestor
            .extensions()
            .get::<Recording>()
            .is_some_and(|recording| recording.span_id == otel || recording.parent_span_id == otel)
    })
}

/// The active span of the current OpenTelemetry context, if there is one.
fn otel_current() -> Option<SpanContext> {
    Context::map_current(|cx| {
        cx.has_active_span()
            .then(|| cx.span().span_context().clone())
            .filter(SpanContext::is_valid)
    })
}

/// The layer: records every span it is shown and hands each finished,
/// sampled one to the [`SpanRouter`].
pub struct SpanLayer {
    ids: XrayIdGenerator,
    sampler: Arc<dyn ShouldSample>,
    router: Arc<SpanRouter>,
    scope: InstrumentationScope,
    /// Whether any sink takes spans. With none (log lines and error
    /// reports alone need spans, for their ids: CloudWatch Logs or the
    /// console's logs alone, as in `cargo run`), a span keeps its ids and
    /// its trace's decision, and no field, event or link becomes an
    /// attribute that nobody would read.
    keeps: bool,
}

impl SpanLayer {
    pub(super) fn new(sampler: Arc<dyn ShouldSample>, router: Arc<SpanRouter>) -> Self {
        SpanLayer {
            ids: XrayIdGenerator::default(),
            sampler,
            keeps: !router.is_empty(),
            router,
            scope: InstrumentationScope::builder(env!("CARGO_PKG_NAME")).build(),
        }
    }

    /// Makes a root's sampling decision, once; `parent` is the caller's
    /// context when the trace came in from outside.
    fn decide(&self, span: &mut Recording, parent: Option<&Context>) {
        if span.decision.is_some() {
            return;
        }
        let result = self.sampler.should_sample(
            parent,
            span.trace_id,
            &span.name,
            &span.kind,
            &span.attributes,
            &span.links,
        );
        let flags = if result.decision == SamplingDecision::RecordAndSample {
            span.attributes.extend(result.attributes);
            TraceFlags::SAMPLED
        } else {
            span.attributes = Vec::new();
            span.events = Vec::new();
            TraceFlags::default()
        };
        span.decision = Some((flags, result.trace_state));
    }

    /// A span this layer records as a parent, deciding its trace's sampling
    /// first if it has not been.
    fn started<S>(&self, span: &tracing_subscriber::registry::SpanRef<'_, S>) -> Option<Parent>
    where
        S: for<'a> LookupSpan<'a>,
    {
        let mut extensions = span.extensions_mut();
        let recording = extensions.get_mut::<Recording>()?;
        self.decide(recording, None);
        Some(recording.as_parent())
    }
}

impl<S> tracing_subscriber::Layer<S> for SpanLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let parent = match attrs.parent() {
            Some(parent) => ctx.span(parent),
            None if attrs.is_contextual() => ctx.lookup_current(),
            None => None,
        };
        // A span made through the OpenTelemetry API and made current (in
        // `tracer.in_span`) is the parent when it is the innermost: there is
        // no tracing parent, or the tracing parent does not descend from it.
        // A remote one is decided like a request's caller.
        let otel = attrs.is_contextual().then(otel_current).flatten();
        let otel = otel.filter(|otel| {
            parent
                .as_ref()
                .is_none_or(|parent| !descends_from(parent, otel.span_id()))
        });
        let (parent, remote) = match otel {
            Some(otel) => {
                let remote = otel.is_remote().then(Context::current);
                (Some(Parent::from(&otel)), remote)
            }
            None => (parent.and_then(|parent| self.started(&parent)), None),
        };
        let meta = attrs.metadata();
        let trace_id = parent
            .as_ref()
            .map_or_else(|| self.ids.new_trace_id(), |parent| parent.trace_id);
        let parent_span_id = parent
            .as_ref()
            .map_or(SpanId::INVALID, |parent| parent.span_id);
        let decision = parent
            .filter(|_| remote.is_none())
            .map(|parent| (parent.flags, parent.state));
        let mut fields = Fields::default();
        if self.keeps
            && decision
                .as_ref()
                .is_none_or(|(flags, _)| flags.is_sampled())
        {
            fields.attributes.reserve_exact(meta.fields().len());
            attrs.record(&mut fields);
        }
        let mut recording = Recording {
            trace_id,
            span_id: self.ids.new_span_id(),
            parent_span_id,
            parent_is_remote: remote.is_some(),
            decision,
            name: fields.name.unwrap_or(Cow::Borrowed(meta.name())),
            kind: fields.kind.unwrap_or(SpanKind::Internal),
            start: SystemTime::now(),
            attributes: fields.attributes,
            events: Vec::new(),
            dropped_events: 0,
            links: Vec::new(),
            status: fields.status.unwrap_or(Status::Unset),
            kept: self.keeps,
        };
        if let Some(caller) = &remote {
            self.decide(&mut recording, Some(caller));
        }
        span.extensions_mut().insert(recording);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let recording = span
            .extensions()
            .get::<Recording>()
            .map(Recording::recording);
        if recording != Some(true) {
            return;
        }
        let mut fields = Fields::default();
        values.record(&mut fields);
        if let Some(recording) = span.extensions_mut().get_mut::<Recording>() {
            fields.apply(recording);
        }
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: LayerContext<'_, S>) {
        let Some(follows) = ctx
            .span(follows)
            .and_then(|span| self.started(&span))
            .map(Parent::span_context)
        else {
            return;
        };
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(recording) = extensions.get_mut::<Recording>()
            && recording.recording()
        {
            recording.links.push(Link::with_context(follows));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.event_span(event) else {
            return;
        };
        let meta = event.metadata();
        let mut fields = Fields {
            owner: Owner::Event,
            attributes: vec![
                KeyValue::new("level", meta.level().as_str()),
                KeyValue::new("target", meta.target()),
            ],
            ..Fields::default()
        };
        // Before the lock: formatting a field may itself log into this span.
        event.record(&mut fields);
        let mut extensions = span.extensions_mut();
        let Some(recording) = extensions.get_mut::<Recording>() else {
            return;
        };
        if !recording.recording() {
            return;
        }
        if *meta.level() == Level::ERROR && recording.status == Status::Unset {
            recording.status = Status::error("");
        }
        let name = fields.name.unwrap_or(Cow::Borrowed(meta.name()));
        recording.push_event(Event::new(name, SystemTime::now(), fields.attributes, 0));
    }

    fn on_close(&self, id: Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(mut recording) = span.extensions_mut().remove::<Recording>() else {
            return;
        };
        self.decide(&mut recording, None);
        if !recording.recording() {
            return;
        }
        // The recording ends here: its trace state moves into the span.
        let decision = recording.decision.take();
        let span_context = recording.parent_with(decision).span_context();
        let mut events = SpanEvents::default();
        events.events = recording.events;
        events.dropped_count = recording.dropped_events;
        let mut links = SpanLinks::default();
        links.links = recording.links;
        self.router.route(SpanData {
            span_context,
            parent_span_id: recording.parent_span_id,
            parent_span_is_remote: recording.parent_is_remote,
            span_kind: recording.kind,
            name: recording.name,
            start_time: recording.start,
            end_time: SystemTime::now(),
            attributes: recording.attributes,
            dropped_attributes_count: 0,
            events,
            links,
            status: recording.status,
            instrumentation_scope: self.scope.clone(),
        });
    }
}

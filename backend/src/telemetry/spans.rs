//! `tracing` spans recorded straight into the SDK's `SpanData`.
//!
//! This layer stands where tracing-opentelemetry stood. That crate builds an
//! SDK `SpanBuilder` per span, starts an SDK span (sampler and all) for every
//! span with a child, tracks every enter and exit, and builds the SDK span a
//! second way on close. Measured with callgrind on `/api/activities/home`
//! (four spans), the request path paid 42.9k instructions a request for its
//! spans through tracing-opentelemetry and pays 31.6k through this layer
//! (bench/README.md has the breakdown). Here a span is
//! one [`Recording`] in the registry's extensions: ids up front, the sampler
//! called once per trace at the local root, children inheriting its
//! decision (what every standard sampler answers for a local child), fields
//! of unsampled spans never turned into attributes, and nothing done on
//! enter or exit. The SDK still supplies the types, samplers, id generator
//! and, through [`SpanRouter`], every sink.
//!
//! The fields tracing-opentelemetry gives meaning to keep it: `otel.name`,
//! `otel.kind`, `otel.status_code`, `otel.status_description`; events inside
//! a span become span events (an ERROR event marks the span an error);
//! `follows_from` becomes a link.

use std::borrow::Cow;
use std::time::SystemTime;

use opentelemetry::trace::{
    Event, Link, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::trace::{
    IdGenerator, SamplingDecision, ShouldSample, SpanData, SpanEvents, SpanLinks,
};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Level, Subscriber};
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::registry::{LookupSpan, Registry, SpanData as _};

use super::SpanRouter;
use super::ids::XrayIdGenerator;

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
}

impl Recording {
    /// Whether fields and events are worth keeping: the span is sampled, or
    /// its root has not decided yet.
    fn recording(&self) -> bool {
        self.decision
            .as_ref()
            .is_none_or(|(flags, _)| flags.is_sampled())
    }

    fn span_context(&self) -> SpanContext {
        let (flags, state) = self.decision.clone().unwrap_or_default();
        SpanContext::new(self.trace_id, self.span_id, flags, false, state)
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

fn span_kind(text: &str) -> Option<SpanKind> {
    [
        ("server", SpanKind::Server),
        ("client", SpanKind::Client),
        ("producer", SpanKind::Producer),
        ("consumer", SpanKind::Consumer),
        ("internal", SpanKind::Internal),
    ]
    .into_iter()
    .find_map(|(name, kind)| text.eq_ignore_ascii_case(name).then_some(kind))
}

fn status(text: &str) -> Status {
    if text.eq_ignore_ascii_case("ok") {
        Status::Ok
    } else if text.eq_ignore_ascii_case("error") {
        Status::error("")
    } else {
        Status::Unset
    }
}

/// Whose fields a [`Fields`] reads: a span's `otel.*` fields give its name,
/// kind and status; an event's `message` is its name.
#[derive(Clone, Copy, Default, PartialEq)]
enum Owner {
    #[default]
    Span,
    Event,
}

/// A span's or an event's fields as attributes, and the name, kind and
/// status they set. Collected before the span's recording is locked, so that
/// a field whose formatting logs cannot deadlock on it.
#[derive(Default)]
struct Fields {
    owner: Owner,
    name: Option<Cow<'static, str>>,
    kind: Option<SpanKind>,
    status: Option<Status>,
    attributes: Vec<KeyValue>,
}

impl Fields {
    fn text(&mut self, field: &Field, text: Cow<'_, str>) {
        match (self.owner, field.name()) {
            (Owner::Event, "message") | (Owner::Span, "otel.name") => {
                self.name = Some(Cow::Owned(text.into_owned()));
            }
            (Owner::Span, "otel.kind") => self.kind = span_kind(&text).or(self.kind.take()),
            (Owner::Span, "otel.status_code") => self.status = Some(status(&text)),
            (Owner::Span, "otel.status_description") => {
                self.status = Some(Status::error(text.into_owned()));
            }
            (_, name) => self
                .attributes
                .push(KeyValue::new(name, Value::String(text.into_owned().into()))),
        }
    }

    /// Applies a span's later fields (`Span::record`) to its recording.
    fn apply(self, span: &mut Recording) {
        if let Some(name) = self.name {
            span.name = name;
        }
        if let Some(kind) = self.kind {
            span.kind = kind;
        }
        if let Some(status) = self.status {
            span.status = status;
        }
        span.attributes.extend(self.attributes);
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, Cow::Borrowed(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.text(field, Cow::Owned(format!("{value:?}")));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.attributes.push(KeyValue::new(field.name(), value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(value) => self.record_i64(field, value),
            Err(_) => self.text(field, Cow::Owned(value.to_string())),
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.attributes.push(KeyValue::new(field.name(), value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.attributes.push(KeyValue::new(field.name(), value));
    }
}

/// The layer: records every span it is shown and hands each finished,
/// sampled one to the [`SpanRouter`].
pub struct SpanLayer {
    ids: XrayIdGenerator,
    sampler: Box<dyn ShouldSample>,
    router: SpanRouter,
    scope: InstrumentationScope,
}

impl SpanLayer {
    pub(super) fn new(sampler: Box<dyn ShouldSample>, router: SpanRouter) -> Self {
        SpanLayer {
            ids: XrayIdGenerator::default(),
            sampler,
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

    /// The span context of a span this layer records, deciding its trace's
    /// sampling first if it has not been.
    fn started<S>(&self, span: &tracing_subscriber::registry::SpanRef<'_, S>) -> Option<SpanContext>
    where
        S: for<'a> LookupSpan<'a>,
    {
        let mut extensions = span.extensions_mut();
        let recording = extensions.get_mut::<Recording>()?;
        self.decide(recording, None);
        Some(recording.span_context())
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
        let parent = parent.and_then(|parent| self.started(&parent));
        let meta = attrs.metadata();
        let decision = parent
            .as_ref()
            .map(|sc| (sc.trace_flags(), sc.trace_state().clone()));
        let mut fields = Fields::default();
        if decision
            .as_ref()
            .is_none_or(|(flags, _)| flags.is_sampled())
        {
            fields.attributes.reserve_exact(meta.fields().len());
            attrs.record(&mut fields);
        }
        let recording = Recording {
            trace_id: parent
                .as_ref()
                .map_or_else(|| self.ids.new_trace_id(), SpanContext::trace_id),
            span_id: self.ids.new_span_id(),
            parent_span_id: parent
                .as_ref()
                .map_or(SpanId::INVALID, SpanContext::span_id),
            parent_is_remote: false,
            decision,
            name: fields.name.unwrap_or(Cow::Borrowed(meta.name())),
            kind: fields.kind.unwrap_or(SpanKind::Internal),
            start: SystemTime::now(),
            attributes: fields.attributes,
            events: Vec::new(),
            dropped_events: 0,
            links: Vec::new(),
            status: fields.status.unwrap_or(Status::Unset),
        };
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
        let Some(follows) = ctx.span(follows).and_then(|span| self.started(&span)) else {
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
        let span_context = recording.span_context();
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

/// Runs `f` on the recording of `span`, with the layer that records it.
fn with_recording<T>(
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use opentelemetry::trace::Link;
    use opentelemetry_sdk::trace::{Sampler, SamplingResult};
    use tracing::field::Empty;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::telemetry::OtlpItem;
    use crate::telemetry::queue::{self, Flush, QueueConfig, SendError, Sink, SinkStats};

    /// An OTLP queue's far end that keeps the spans it is given.
    #[derive(Clone, Default)]
    struct Collected(Arc<Mutex<Vec<SpanData>>>);

    impl Sink<OtlpItem> for Collected {
        type Payload = ();

        fn encode(&mut self, batch: Vec<OtlpItem>) {
            let spans = batch.into_iter().filter_map(|item| match item {
                OtlpItem::Span(span) => Some(span),
                OtlpItem::Relayed(_) => None,
            });
            self.0.lock().unwrap().extend(spans);
        }

        async fn send(&mut self, (): &()) -> Result<(), SendError> {
            Ok(())
        }
    }

    /// A sampler that counts its calls.
    #[derive(Clone, Debug)]
    struct Counting {
        calls: Arc<AtomicUsize>,
        inner: Sampler,
    }

    impl ShouldSample for Counting {
        fn should_sample(
            &self,
            parent: Option<&Context>,
            trace_id: TraceId,
            name: &str,
            kind: &SpanKind,
            attributes: &[KeyValue],
            links: &[Link],
        ) -> SamplingResult {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.inner
                .should_sample(parent, trace_id, name, kind, attributes, links)
        }
    }

    /// Runs `work` under a subscriber with only this layer, and answers the
    /// spans it exported, in the order they ended.
    fn record(sampler: impl ShouldSample + 'static, work: impl FnOnce()) -> Vec<SpanData> {
        let collected = Collected::default();
        let config = QueueConfig {
            capacity: 1024,
            max_batch: 512,
            flush_interval: Duration::from_secs(60),
            attempt_timeout: Duration::from_secs(1),
            max_attempts: 1,
            initial_backoff: Duration::ZERO,
        };
        let sink = collected.clone();
        let sender = queue::spawn(SinkStats::new("otlp", "test".into()), config, move || {
            Ok::<_, std::io::Error>(sink)
        })
        .unwrap();
        let router = SpanRouter {
            otlp: Some(sender.clone()),
            ..SpanRouter::default()
        };
        let subscriber =
            tracing_subscriber::registry().with(SpanLayer::new(Box::new(sampler), router));
        tracing::subscriber::with_default(subscriber, work);
        assert!(sender.flush(Instant::now() + Duration::from_secs(5)));
        collected.0.lock().unwrap().clone()
    }

    fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
        spans
            .iter()
            .find(|span| span.name == name)
            .unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
    }

    fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
        attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    #[test]
    fn children_join_the_parents_trace_and_fields_become_typed_attributes() {
        let spans = record(Sampler::AlwaysOn, || {
            let root = tracing::info_span!(
                "request",
                otel.name = "GET",
                otel.kind = "server",
                otel.status_code = Empty,
                http.route = Empty,
                server.port = 8080_i64,
                big = u64::MAX,
                small = 7_u64,
                ratio = 0.5,
                flag = true,
                shown = %"displayed",
            );
            root.in_scope(|| {
                let _query = tracing::info_span!(
                    "db.query",
                    otel.kind = "CLIENT",
                    db.system.name = "sqlite"
                )
                .entered();
            });
            root.record("http.route", "/api/x");
            root.record("otel.name", "GET /api/x");
            root.record("otel.status_code", "ERROR");
        });
        assert_eq!(spans.len(), 2);
        let root = named(&spans, "GET /api/x");
        let query = named(&spans, "db.query");
        assert_eq!(root.span_kind, SpanKind::Server);
        assert_eq!(query.span_kind, SpanKind::Client);
        assert_eq!(root.status, Status::error(""));
        assert_eq!(query.status, Status::Unset);
        let attributes = &root.attributes;
        assert_eq!(
            attribute(attributes, "server.port"),
            Some(&Value::I64(8080))
        );
        assert_eq!(
            attribute(attributes, "big"),
            Some(&Value::from(u64::MAX.to_string()))
        );
        assert_eq!(attribute(attributes, "small"), Some(&Value::I64(7)));
        assert_eq!(attribute(attributes, "ratio"), Some(&Value::F64(0.5)));
        assert_eq!(attribute(attributes, "flag"), Some(&Value::Bool(true)));
        assert_eq!(
            attribute(attributes, "shown"),
            Some(&Value::from("displayed"))
        );
        assert_eq!(
            attribute(attributes, "http.route"),
            Some(&Value::from("/api/x"))
        );
        assert!(
            attributes
                .iter()
                .all(|kv| !kv.key.as_str().starts_with("otel.")),
            "{attributes:?}"
        );
        assert_eq!(
            attribute(&query.attributes, "db.system.name"),
            Some(&Value::from("sqlite"))
        );
        assert_eq!(query.span_context.trace_id(), root.span_context.trace_id());
        assert_eq!(query.parent_span_id, root.span_context.span_id());
        assert!(!query.parent_span_is_remote);
        assert_eq!(root.parent_span_id, SpanId::INVALID);
        assert!(root.span_context.is_sampled() && query.span_context.is_sampled());
        assert!(root.end_time >= query.end_time && query.end_time >= query.start_time);
        assert_eq!(root.instrumentation_scope.name(), "cruddur-backend");
    }

    #[test]
    fn the_sampler_decides_once_per_trace() {
        let calls = Arc::new(AtomicUsize::new(0));
        let sampler = Counting {
            calls: Arc::clone(&calls),
            inner: Sampler::AlwaysOn,
        };
        let spans = record(sampler, || {
            let root = tracing::info_span!("root");
            root.in_scope(|| {
                let service = tracing::info_span!("service");
                service.in_scope(|| {
                    tracing::info_span!("query 1").in_scope(|| {});
                    tracing::info_span!("query 2").in_scope(|| {});
                });
            });
        });
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(spans.len(), 4);
        let trace_id = named(&spans, "root").span_context.trace_id();
        assert!(spans.iter().all(|s| s.span_context.trace_id() == trace_id));
    }

    #[test]
    fn an_unsampled_trace_has_ids_but_exports_nothing() {
        let mut started = None;
        let spans = record(Sampler::AlwaysOff, || {
            let root = tracing::info_span!("request");
            started = start_root(&root, None, None);
            root.in_scope(|| tracing::info_span!("child", field = "unrecorded").in_scope(|| {}));
        });
        assert!(spans.is_empty(), "{spans:#?}");
        let started = started.expect("the layer records the span");
        assert!(started.is_valid());
        assert!(!started.is_sampled());
    }

    #[test]
    fn a_root_joins_the_callers_trace() {
        let remote = SpanContext::new(
            TraceId::from(0x1234),
            SpanId::from(0x99),
            TraceFlags::SAMPLED,
            true,
            TraceState::from_key_value([("vendor", "x")]).unwrap(),
        );
        let caller = Context::new().with_remote_span_context(remote);
        let mut answers = Vec::new();
        let spans = record(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)), || {
            let root = tracing::info_span!("request");
            answers.push(start_root(&root, Some(&caller), None));
            root.in_scope(|| tracing::info_span!("child").in_scope(|| {}));
            // Asked again, the span keeps its trace and decision.
            answers.push(start_root(&root, None, Some(TraceId::from(0xdead))));
        });
        let root = named(&spans, "request");
        let child = named(&spans, "child");
        assert_eq!(root.span_context.trace_id(), TraceId::from(0x1234));
        assert_eq!(root.parent_span_id, SpanId::from(0x99));
        assert!(root.parent_span_is_remote);
        assert!(root.span_context.is_sampled(), "the caller's decision");
        assert_eq!(child.span_context.trace_id(), TraceId::from(0x1234));
        assert_eq!(child.parent_span_id, root.span_context.span_id());
        assert_eq!(child.span_context.trace_state().header(), "vendor=x");
        assert!(
            answers
                .iter()
                .all(|a| a.as_ref() == Some(&root.span_context))
        );

        let unsampled = SpanContext::new(
            TraceId::from(0x5678),
            SpanId::from(0x98),
            TraceFlags::default(),
            true,
            TraceState::NONE,
        );
        let caller = Context::new().with_remote_span_context(unsampled);
        let spans = record(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)), || {
            let root = tracing::info_span!("request");
            start_root(&root, Some(&caller), None);
        });
        assert!(spans.is_empty(), "a caller's no is kept: {spans:#?}");
    }

    #[test]
    fn a_root_can_take_a_trace_id_without_a_parent() {
        let spans = record(Sampler::AlwaysOn, || {
            let root = tracing::info_span!("request");
            let started = start_root(&root, Some(&Context::new()), Some(TraceId::from(0xabc)));
            assert_eq!(started.map(|sc| sc.trace_id()), Some(TraceId::from(0xabc)));
        });
        assert_eq!(spans[0].span_context.trace_id(), TraceId::from(0xabc));
        assert_eq!(spans[0].parent_span_id, SpanId::INVALID);
        assert!(!spans[0].parent_span_is_remote);
    }

    #[test]
    fn events_in_a_span_become_span_events_up_to_a_limit() {
        let spans = record(Sampler::AlwaysOn, || {
            let span = tracing::info_span!("work");
            span.in_scope(|| tracing::error!(error = "disk full", "request failed"));
            add_event(
                &span,
                "exception",
                vec![KeyValue::new("exception.message", "boom")],
            );
            span.in_scope(|| {
                for attempt in 0..200 {
                    tracing::warn!(attempt, "again");
                }
            });
        });
        let span = &spans[0];
        assert_eq!(
            span.status,
            Status::error(""),
            "an ERROR event marks the span"
        );
        let failed = &span.events[0];
        assert_eq!(failed.name, "request failed");
        assert_eq!(
            attribute(&failed.attributes, "level"),
            Some(&Value::from("ERROR"))
        );
        assert_eq!(
            attribute(&failed.attributes, "target"),
            Some(&Value::from(module_path!()))
        );
        assert_eq!(
            attribute(&failed.attributes, "error"),
            Some(&Value::from("disk full"))
        );
        assert_eq!(span.events[1].name, "exception");
        assert_eq!(
            attribute(&span.events[2].attributes, "attempt"),
            Some(&Value::I64(0))
        );
        assert_eq!(span.events.len(), MAX_EVENTS);
        assert_eq!(span.events.dropped_count, 202 - 128);
    }

    #[test]
    fn follows_from_becomes_a_link() {
        let spans = record(Sampler::AlwaysOn, || {
            let first = tracing::info_span!("first");
            let second = tracing::info_span!("second");
            second.follows_from(&first);
        });
        let first = named(&spans, "first");
        let second = named(&spans, "second");
        assert_eq!(second.links.len(), 1);
        assert_eq!(second.links[0].span_context, first.span_context);
        assert_ne!(
            first.span_context.trace_id(),
            second.span_context.trace_id(),
            "a link, not a parent"
        );
    }
}

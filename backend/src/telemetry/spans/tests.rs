use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use opentelemetry::Value;
use opentelemetry::trace::Link;
use opentelemetry_sdk::trace::{Sampler, SamplingResult};
use tracing::field::Empty;
use tracing_subscriber::layer::SubscriberExt;

use super::*;
use crate::telemetry::sink::{SharedSpan, SpanSink};

/// A span sink that keeps the spans it is given.
#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Vec<SpanData>>>);

impl SpanSink for Collected {
    fn send(&self, span: &SharedSpan) {
        self.0.lock().unwrap().push((**span).clone());
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
    let router = SpanRouter::new(vec![Arc::new(collected.clone())]);
    let subscriber =
        tracing_subscriber::registry().with(SpanLayer::new(Arc::new(sampler), Arc::new(router)));
    tracing::subscriber::with_default(subscriber, work);
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
            let _query =
                tracing::info_span!("db.query", otel.kind = "CLIENT", db.system.name = "sqlite")
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
fn with_no_sink_taking_spans_a_span_keeps_its_ids_and_nothing_else() {
    let layer = SpanLayer::new(Arc::new(Sampler::AlwaysOn), Arc::default());
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let root = tracing::info_span!("request", http.request.method = "GET");
        let started = start_root(&root, None, None).expect("the layer records the span");
        assert!(started.is_valid() && started.is_sampled());
        root.in_scope(|| {
            let child = tracing::info_span!("child", field = "unkept", later = Empty);
            child.record("later", 7);
            child.in_scope(|| tracing::error!(detail = "unkept", "failed"));
            let context = span_context(&child).expect("the child has ids");
            assert_eq!(context.trace_id(), started.trace_id());
            assert!(context.is_sampled());
            let kept = handle::with_recording(&child, |_, recording| {
                (
                    recording.attributes.len(),
                    recording.events.len(),
                    recording.status.clone(),
                )
            });
            assert_eq!(kept, Some((0, 0, Status::Unset)));
        });
        record_answer(
            &root,
            &Answer {
                method: "GET",
                route: Some("/home"),
                status: http::StatusCode::INTERNAL_SERVER_ERROR,
                old_status_name: false,
            },
        );
        let kept = handle::with_recording(&root, |_, recording| {
            (recording.attributes.len(), recording.name.clone())
        });
        assert_eq!(kept, Some((0, Cow::Borrowed("request"))));
    });
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
fn a_span_made_current_through_the_opentelemetry_api_is_the_parent() {
    let local = SpanContext::new(
        TraceId::from(0x77),
        SpanId::from(0x55),
        TraceFlags::SAMPLED,
        false,
        TraceState::from_key_value([("xray", "1")]).unwrap(),
    );
    let remote_unsampled = SpanContext::new(
        TraceId::from(0x88),
        SpanId::from(0x66),
        TraceFlags::default(),
        true,
        TraceState::NONE,
    );
    let spans = record(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)), || {
        let _active = Context::new().with_remote_span_context(local).attach();
        tracing::info_span!("root inside").in_scope(|| {
            tracing::info_span!("child of ours").in_scope(|| {});
        });
        let _caller = Context::new()
            .with_remote_span_context(remote_unsampled)
            .attach();
        tracing::info_span!("a remote no").in_scope(|| {});
    });
    let root = named(&spans, "root inside");
    assert_eq!(root.span_context.trace_id(), TraceId::from(0x77));
    assert_eq!(root.parent_span_id, SpanId::from(0x55));
    assert!(!root.parent_span_is_remote);
    assert_eq!(root.span_context.trace_state().header(), "xray=1");
    let child = named(&spans, "child of ours");
    assert_eq!(
        child.parent_span_id,
        root.span_context.span_id(),
        "a tracing parent started inside it stays the parent"
    );
    assert!(
        spans.iter().all(|span| span.name != "a remote no"),
        "a remote caller's decision is the sampler's input: {spans:#?}"
    );
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

mod properties {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any forest of spans (`parents[k]` names span k's parent: 0
        /// for none, else an earlier span) is exported whole: each span
        /// once, in its parent's trace and under its parent's id, each
        /// root a trace of its own decided by one sampler call.
        #[test]
        fn any_span_tree_keeps_its_shape(parents in vec(any::<prop::sample::Index>(), 1..24)) {
            let parents: Vec<usize> = parents
                .iter()
                .enumerate()
                .map(|(k, index)| index.index(k + 1))
                .collect();
            let calls = Arc::new(AtomicUsize::new(0));
            let sampler = Counting {
                calls: Arc::clone(&calls),
                inner: Sampler::AlwaysOn,
            };
            let spans = record(sampler, || {
                let mut open: Vec<tracing::Span> = Vec::new();
                for (k, parent) in parents.iter().enumerate() {
                    let name = format!("s{}", k + 1);
                    let span = match parent {
                        0 => tracing::info_span!(parent: None, "span", otel.name = name),
                        p => tracing::info_span!(parent: &open[p - 1], "span", otel.name = name),
                    };
                    open.push(span);
                }
                while open.pop().is_some() {}
            });
            prop_assert_eq!(spans.len(), parents.len());
            let roots = parents.iter().filter(|p| **p == 0).count();
            prop_assert_eq!(calls.load(Ordering::SeqCst), roots);
            let mut traces = std::collections::HashSet::new();
            for (k, parent) in parents.iter().enumerate() {
                let span = named(&spans, &format!("s{}", k + 1));
                if *parent == 0 {
                    prop_assert_eq!(span.parent_span_id, SpanId::INVALID);
                    prop_assert!(traces.insert(span.span_context.trace_id()));
                } else {
                    let up = named(&spans, &format!("s{parent}"));
                    prop_assert_eq!(span.parent_span_id, up.span_context.span_id());
                    prop_assert_eq!(span.span_context.trace_id(), up.span_context.trace_id());
                }
            }
        }
    }
}

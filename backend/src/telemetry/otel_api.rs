//! Spans made through the OpenTelemetry API, as libraries instrumented with
//! it make them (`opentelemetry::global::tracer("lib").start(..)`). Our own
//! span layer stands where tracing-opentelemetry stood, so nothing would
//! bridge them; this installs the global tracer provider that does: the
//! SDK's tracer, with our sampler and X-Ray-compatible ids, a span with no
//! OpenTelemetry parent made the child of the current `tracing` span, and
//! every finished span handed to the same span router as ours.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::{SpanBuilder, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, InstrumentationScope, global};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    SamplingResult, SdkTracer, SdkTracerProvider, ShouldSample, Span, SpanData, SpanProcessor,
};

use super::ids::XrayIdGenerator;
use super::sink::SpanRouter;
use super::spans;

/// Installs the global tracer provider; its spans are sampled by `sampler`
/// (the one `tracing` spans use) and routed by `router`.
pub(super) fn install(sampler: Arc<dyn ShouldSample>, router: Arc<SpanRouter>) {
    let provider = SdkTracerProvider::builder()
        .with_sampler(SharedSampler(sampler))
        .with_id_generator(XrayIdGenerator::default())
        .with_span_processor(Route(router))
        .build();
    global::set_tracer_provider(Provider(provider));
}

/// The one sampler, shared with the span layer.
#[derive(Clone, Debug)]
struct SharedSampler(Arc<dyn ShouldSample>);

impl ShouldSample for SharedSampler {
    fn should_sample(
        &self,
        parent: Option<&Context>,
        trace_id: opentelemetry::trace::TraceId,
        name: &str,
        kind: &opentelemetry::trace::SpanKind,
        attributes: &[opentelemetry::KeyValue],
        links: &[opentelemetry::trace::Link],
    ) -> SamplingResult {
        self.0
            .should_sample(parent, trace_id, name, kind, attributes, links)
    }
}

/// Hands each finished span to the span router, as the span layer does.
#[derive(Debug)]
struct Route(Arc<SpanRouter>);

impl SpanProcessor for Route {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if span.span_context.is_sampled() {
            self.0.route(span);
        }
    }

    /// The sinks' queues are flushed by the shutdown guard.
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// The SDK's provider, handing out [`BridgedTracer`]s.
struct Provider(SdkTracerProvider);

impl TracerProvider for Provider {
    type Tracer = BridgedTracer;

    fn tracer_with_scope(&self, scope: InstrumentationScope) -> BridgedTracer {
        BridgedTracer(self.0.tracer_with_scope(scope))
    }
}

/// The SDK's tracer, except that a span without an OpenTelemetry parent
/// gets the current `tracing` span as its parent, and a span made in a
/// request that records none is non-recording.
struct BridgedTracer(SdkTracer);

impl Tracer for BridgedTracer {
    type Span = Span;

    fn build_with_context(&self, builder: SpanBuilder, parent: &Context) -> Span {
        if spans::unrecorded() {
            return self
                .0
                .build_with_context(builder, &parent.with_telemetry_suppressed());
        }
        if parent.has_active_span() {
            return self.0.build_with_context(builder, parent);
        }
        match spans::span_context(&tracing::Span::current()).filter(|sc| sc.is_valid()) {
            Some(current) => self
                .0
                .build_with_context(builder, &parent.with_remote_span_context(current)),
            None => self.0.build_with_context(builder, parent),
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

    use super::*;

    #[tokio::test]
    async fn a_span_made_in_a_request_that_records_none_does_not_record() {
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::AlwaysOn)
            .build();
        let tracer = BridgedTracer(provider.tracer("lib"));
        assert!(tracer.start("lib.work").is_recording());
        let inside = spans::without_spans(async { tracer.start("lib.work").is_recording() });
        assert!(!inside.await);
    }
}

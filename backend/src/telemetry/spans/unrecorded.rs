//! Requests that record no span at all. Recording a request's spans costs
//! `tracing`'s registry and this layer about 16k instructions on a cached
//! read's 35k, whether a sink keeps them or not (bench/README.md, "The
//! trace explorer"). When the
//! only sink that needs spans keeps just some requests (the trace
//! explorer's traces a second, [`RecordGate`](crate::telemetry::sink::RecordGate)),
//! a request it turns away runs inside [`without_spans`]: a layer
//! ([`UnrecordedGate`]) then turns off every span made while it runs,
//! however deep, and spans made through the OpenTelemetry API are
//! non-recording.

use std::future::Future;

use tracing::subscriber::Interest;
use tracing::{Metadata, Span, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

tokio::task_local! {
    /// Set while an unrecorded request runs (its presence is the mark).
    static UNRECORDED: ();
}

/// Whether the code running now belongs to a request that records no span.
pub fn unrecorded() -> bool {
    UNRECORDED.try_with(|()| ()).is_ok()
}

/// Runs `request` so that it records no span, in its task or in work it
/// hands to another thread through a [`Caller`].
pub fn without_spans<F: Future>(request: F) -> impl Future<Output = F::Output> {
    UNRECORDED.scope((), request)
}

/// Where a piece of work was asked for, to run it there on another thread
/// (the SQLite writer's): inside the caller's span, or recording no span
/// when the caller's request records none.
pub struct Caller {
    span: Span,
    unrecorded: bool,
}

impl Caller {
    pub fn current() -> Self {
        Caller {
            span: Span::current(),
            unrecorded: unrecorded(),
        }
    }

    pub fn in_scope<T>(&self, work: impl FnOnce() -> T) -> T {
        if self.unrecorded {
            UNRECORDED.sync_scope((), work)
        } else {
            self.span.in_scope(work)
        }
    }
}

/// Where a request may be turned away: turns off every span made while one
/// runs. It is a layer's own `enabled`, which turns a span off for every
/// layer, and not the span layer's per-layer filter: tracing-subscriber
/// 0.3.23 takes one filter's "no" for "some filter wants it", so the
/// registry still made and closed every turned-away span, and the explorer
/// saved a third of what it could (bench/README.md). Only span callsites
/// are asked again each time; events keep their cached answer.
pub struct UnrecordedGate;

impl<S: Subscriber> Layer<S> for UnrecordedGate {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.is_span() {
            Interest::sometimes()
        } else {
            Interest::always()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>, _: Context<'_, S>) -> bool {
        !(meta.is_span() && unrecorded())
    }
}

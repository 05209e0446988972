//! Rollbar's part in every request: a 5xx answer or a panic gives one item
//! with the request (scrubbed), its route as `context` and its trace ids.
//! Whatever else the request reported (its "request failed" log, a
//! handler's `error!`) belongs to that same item, so nothing is reported
//! twice; a request that answers fine still reports its error events and
//! explicit messages, each with the request attached.
//!
//! What a request produces is gathered in its server span ([`Captured`] in
//! the span's extensions), where the layer, the panic hook and
//! `report_message` find it from whatever span they run in. The route is
//! axum's `MatchedPath`, the trace ids are the span's own. On the request
//! path this only clones the request head and, for JSON bodies, keeps the
//! chunks the handler reads; items are built only when something failed.

use std::sync::{Arc, Mutex, PoisonError};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, Method, Uri};
use http_body_util::BodyExt;
use serde_json::{Map, Value};
use tracing_subscriber::registry::ExtensionsMut;

use super::item::{self, Report, RequestInfo, TraceRef};
use super::{Reporter, RollbarLevel};
use crate::error::{BODY_LIMIT, InternalCause};
use crate::telemetry::sink::{RequestEnd, RequestHook, RequestStart};
use crate::telemetry::spans;

/// What one request has produced so far, each report still without the
/// request it belongs to.
#[derive(Default)]
pub(super) struct Captured {
    pub panic: Option<Report>,
    pub errors: Vec<Report>,
    pub messages: Vec<Report>,
}

/// Keeps `report` in the request whose extensions these are, if one is
/// being captured there; answers it back otherwise.
pub(super) fn keep_in(
    extensions: &mut ExtensionsMut<'_>,
    report: Report,
    keep: fn(&mut Captured, Report),
) -> Option<Report> {
    match extensions.get_mut::<Captured>() {
        Some(captured) => {
            keep(captured, report);
            None
        }
        None => Some(report),
    }
}

/// Keeps `report` in the request `span` belongs to; answers it back when
/// `span` is not part of a captured request.
pub(super) fn keep(
    span: &tracing::Span,
    report: Report,
    keep: fn(&mut Captured, Report),
) -> Option<Report> {
    let mut report = Some(report);
    spans::with_root_extensions(span, |extensions| {
        if let Some(kept) = report.take() {
            report = keep_in(extensions, kept, keep);
        }
    });
    report
}

/// The chunks of a JSON body as the handler read them, up to the body limit.
#[derive(Clone, Default)]
struct BodyCopy(Arc<Mutex<(usize, Vec<Bytes>)>>);

impl BodyCopy {
    /// Wraps `body` so that what the handler reads is kept here too.
    fn tee(&self, body: Body) -> Body {
        let copy = self.clone();
        Body::new(body.map_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                let mut kept = copy.0.lock().unwrap_or_else(PoisonError::into_inner);
                if kept.0 + data.len() <= BODY_LIMIT {
                    kept.0 += data.len();
                    // A reference to the same buffer: no copy.
                    kept.1.push(data.clone());
                }
            }
            frame
        }))
    }

    fn bytes(&self) -> Vec<u8> {
        let kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        kept.1.concat()
    }
}

fn is_json(request: &Request) -> bool {
    request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

pub(super) struct Hook {
    reporter: Reporter,
}

impl Hook {
    pub(super) fn new(reporter: Reporter) -> Self {
        Hook { reporter }
    }
}

impl RequestHook for Hook {
    fn begin(
        &self,
        request: &mut Request,
        start: &RequestStart<'_>,
    ) -> Option<Box<dyn RequestEnd>> {
        spans::with_root_extensions(start.span, |extensions| {
            extensions.replace(Captured::default());
        });
        let body_copy = is_json(request).then(BodyCopy::default);
        if let Some(copy) = &body_copy {
            let body = std::mem::take(request.body_mut());
            *request.body_mut() = copy.tee(body);
        }
        Some(Box::new(Pending {
            reporter: self.reporter.clone(),
            method: request.method().clone(),
            uri: request.uri().clone(),
            headers: request.headers().clone(),
            user_ip: start.client_address.to_owned(),
            route: request.extensions().get::<MatchedPath>().cloned(),
            body_copy,
        }))
    }
}

/// A request on its way, as Rollbar will describe it if something fails.
struct Pending {
    reporter: Reporter,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    user_ip: String,
    route: Option<MatchedPath>,
    body_copy: Option<BodyCopy>,
}

impl RequestEnd for Pending {
    fn end(self: Box<Self>, span: &tracing::Span, response: &Response) {
        let Pending {
            reporter,
            method,
            uri,
            headers,
            user_ip,
            route,
            body_copy,
        } = *self;
        let captured =
            spans::with_root_extensions(span, |extensions| extensions.remove::<Captured>())
                .flatten()
                .unwrap_or_default();
        let status = response.status();
        let failed = status.is_server_error() || captured.panic.is_some();
        if !failed && captured.errors.is_empty() && captured.messages.is_empty() {
            return;
        }
        let route = route.map(|path| path.as_str().to_owned());
        let trace = spans::span_context(span)
            .filter(|sc| sc.is_valid())
            .map(|sc| TraceRef {
                trace_id: sc.trace_id(),
                span_id: sc.span_id(),
            });
        let body = body_copy.map(|copy| copy.bytes());
        let request = RequestInfo::new(&method, &uri, &headers, user_ip, body.as_deref());
        let attach = |mut report: Report| {
            report.request = Some(request.clone());
            report.context.clone_from(&route);
            if report.trace.is_none() {
                report.trace = trace;
            }
            reporter.send(report);
        };

        if failed {
            // One item for the failure: the panic with its stack, else the
            // cause the handler left, else the first error it logged.
            let report = captured.panic.unwrap_or_else(|| {
                let cause = response
                    .extensions()
                    .get::<InternalCause>()
                    .map(|InternalCause(cause)| cause.to_string())
                    .or_else(|| captured.errors.first().map(message_text))
                    .unwrap_or_else(|| format!("answered {status}"));
                let mut extra = Map::new();
                extra.insert("status".into(), Value::from(status.as_u16()));
                let site = format!("{status} {method} {}", route.as_deref().unwrap_or_default());
                let body = item::Body::Message { text: cause, extra };
                Report::new(RollbarLevel::Error, body, &site)
            });
            attach(report);
        } else {
            captured.errors.into_iter().for_each(&attach);
        }
        captured.messages.into_iter().for_each(&attach);
    }
}

fn message_text(report: &Report) -> String {
    match &report.body {
        item::Body::Message { text, .. } => text.clone(),
        item::Body::Trace { message, .. } => message.clone(),
    }
}

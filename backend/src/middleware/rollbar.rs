//! The error-reporting hook for requests: a 5xx answer or a panic gives one
//! Rollbar item with the request (scrubbed), its route as `context` and its
//! trace ids. Whatever else the request reported (its "request failed" log,
//! a handler's `error!`) belongs to that same item, so nothing is reported
//! twice; a request that answers fine still reports its error events and
//! explicit messages, each with the request attached.
//!
//! On the request path this only clones the request head and, for JSON
//! bodies, keeps the chunks the handler reads; items are built and queued
//! only when something went wrong.

use std::sync::{Arc, Mutex, PoisonError};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::header::CONTENT_TYPE;
use http_body_util::BodyExt;
use serde_json::{Map, Value};

use crate::app::BODY_LIMIT;
use crate::config::RollbarLevel;
use crate::error::InternalCause;
use crate::middleware::request_span::client_address;
use crate::telemetry::rollbar::item::{self, Report, RequestInfo, TraceRef};
use crate::telemetry::rollbar::{self, Reporter};

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

pub async fn report_errors(
    State(reporter): State<&'static Reporter>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let headers = request.headers().clone();
    let user_ip = client_address(&request);
    let body_copy = is_json(&request).then(BodyCopy::default);
    let request = match &body_copy {
        Some(copy) => request.map(|body| copy.tee(body)),
        None => request,
    };

    let (response, captured) = rollbar::capture(next.run(request)).await;

    let status = response.status();
    let failed = status.is_server_error() || captured.panic.is_some();
    if !failed && captured.errors.is_empty() && captured.messages.is_empty() {
        return response;
    }
    let route = captured.route.as_ref().map(|p| p.as_str().to_owned());
    let trace = response
        .headers()
        .get("x-amzn-trace-id")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceRef::from_xray_header);
    let body = body_copy.map(|copy| copy.bytes());
    let request_info = RequestInfo::new(&method, &uri, &headers, user_ip, body.as_deref());
    let attach = |mut report: Report| {
        report.request = Some(request_info.clone());
        report.context.clone_from(&route);
        if report.trace.is_none() {
            report.trace.clone_from(&trace);
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
    response
}

fn message_text(report: &Report) -> String {
    match &report.body {
        item::Body::Message { text, .. } => text.clone(),
        item::Body::Trace { message, .. } => message.clone(),
    }
}

//! The SERVER span of each request: joins the caller's trace, carries the
//! stable HTTP attributes (and the old names under `http/dup`), is named from
//! the matched route, turns ERROR on 5xx, and ends with one access-log line.
//! The sinks' request hooks (Rollbar's error reports) run inside it: they
//! see the request before the handler and the answer after the span has
//! recorded it, while the span is still open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::header::{HOST, USER_AGENT};
use opentelemetry::KeyValue;
use tracing::field::Empty;
use tracing::{Instrument, Span};

use crate::error::InternalCause;
use crate::telemetry::scrub::scrub_query;
use crate::telemetry::sink::{InFlight, Metered, RequestStart};
use crate::telemetry::{RequestTelemetry, ids, propagation, spans};

/// Longest header text copied into a span attribute.
const MAX_ATTRIBUTE_CHARS: usize = 256;

fn header_text(request: &Request, name: http::HeaderName) -> &str {
    let text = request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    match text.char_indices().nth(MAX_ATTRIBUTE_CHARS) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

fn protocol_version(request: &Request) -> &'static str {
    match request.version() {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// The peer's address as text, written once per connection by the server
/// beside its `ConnectInfo`: formatting it for every request cost 0.8k of a
/// cached read's 35.0k instructions (bench/README.md, "Data path").
#[derive(Debug, Clone)]
pub struct PeerIp(pub Arc<str>);

impl PeerIp {
    pub fn of(peer: SocketAddr) -> Self {
        PeerIp(peer.ip().to_string().into())
    }
}

/// The client as the first proxy saw it, else the peer.
fn client_address(request: &Request) -> String {
    let forwarded = header_text(request, http::HeaderName::from_static("x-forwarded-for"))
        .split(',')
        .next()
        .map(str::trim)
        .filter(|first| first.parse::<std::net::IpAddr>().is_ok());
    if let Some(first) = forwarded {
        return first.to_owned();
    }
    let extensions = request.extensions();
    match (
        extensions.get::<PeerIp>(),
        extensions.get::<ConnectInfo<SocketAddr>>(),
    ) {
        (Some(PeerIp(text)), _) => text.to_string(),
        (None, Some(ConnectInfo(peer))) => peer.ip().to_string(),
        (None, None) => String::new(),
    }
}

pub async fn trace_request(
    State(settings): State<RequestTelemetry>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let host = header_text(&request, HOST);
    let (server_address, server_port) = match host.rsplit_once(':') {
        Some((name, port)) if port.parse::<u16>().is_ok() => {
            (name, port.parse::<i64>().unwrap_or_default())
        }
        _ => (host, 80),
    };
    let scheme = match header_text(&request, http::HeaderName::from_static("x-forwarded-proto")) {
        "https" => "https",
        _ => "http",
    };
    let user_agent = header_text(&request, USER_AGENT).to_owned();
    let client = client_address(&request);
    // A request the one sink needing spans turns away records none at all.
    let recorded = settings.gate.as_ref().is_none_or(|gate| gate.admit());
    let span = if recorded {
        tracing::info_span!(
            "request",
            otel.name = method.as_str(),
            otel.kind = "server",
            http.request.method = method.as_str(),
            url.path = path.as_str(),
            url.scheme = scheme,
            server.address = server_address,
            server.port = server_port,
            client.address = client.as_str(),
            user_agent.original = user_agent.as_str(),
            network.protocol.version = protocol_version(&request),
            http.method = Empty,
            http.target = Empty,
            http.scheme = Empty,
            http.host = Empty,
            http.user_agent = Empty,
            http.flavor = Empty,
            http.client_ip = Empty,
        )
    } else {
        Span::none()
    };
    if settings.http_dup_semconv {
        span.record("http.method", method.as_str());
        // The query as the client sent it, but for secret parameters' values.
        let target = match request.uri().query() {
            Some(query) => format!("{}?{}", request.uri().path(), scrub_query(query).0),
            None => request.uri().path().to_owned(),
        };
        span.record("http.target", target.as_str());
        span.record("http.scheme", scheme);
        span.record("http.host", host);
        span.record("http.user_agent", user_agent.as_str());
        span.record("http.flavor", protocol_version(&request));
        span.record("http.client_ip", client.as_str());
    }

    let _in_flight = settings
        .meter
        .as_deref()
        .map(|meter| InFlight::begin(meter, &method));
    let mut trace_header = None;
    let mut sampled_trace = None;
    if !span.is_disabled() {
        let incoming = propagation::extract(request.headers());
        // Starting the span now fixes its trace id for the response header and logs.
        let started = spans::start_root(&span, incoming.parent.as_ref(), incoming.trace_id);
        if let Some(sc) = started.filter(|sc| sc.is_valid()) {
            sampled_trace = sc.is_sampled().then(|| sc.trace_id());
            let sampled = (settings.answer_sampled)(&sc);
            trace_header = Some(ids::xray_header(sc.trace_id(), sc.span_id(), sampled));
        }
    }
    let route = request.extensions().get::<MatchedPath>().cloned();
    let start = RequestStart {
        span: &span,
        client_address: &client,
    };
    let ends: Vec<_> = settings
        .hooks
        .iter()
        .filter_map(|hook| hook.begin(&mut request, &start))
        .collect();

    // The instrumented future keeps the span for afterwards: a clone would
    // cost a reference count, and a trip through every layer when dropped.
    let mut handled = std::pin::pin!(next.run(request).instrument(span));
    let mut response = if recorded {
        handled.as_mut().await
    } else {
        spans::without_spans(handled.as_mut()).await
    };
    let span = handled.span();

    let status = response.status();
    let route = route.as_ref().map(MatchedPath::as_str);
    if let Some(meter) = &settings.meter {
        meter.answered(&Metered {
            method: &method,
            route,
            status: status.as_u16(),
            elapsed: started.elapsed(),
            trace: sampled_trace,
        });
    }
    spans::record_answer(
        span,
        &spans::Answer {
            method: method.as_str(),
            route,
            status,
            old_status_name: settings.http_dup_semconv,
        },
    );
    if let Some(InternalCause(cause)) = response.extensions().get::<InternalCause>() {
        spans::add_event(
            span,
            "exception",
            vec![
                KeyValue::new(
                    "exception.type",
                    if cause.starts_with("panic:") {
                        "panic"
                    } else {
                        "internal_error"
                    },
                ),
                KeyValue::new("exception.message", cause.to_string()),
            ],
        );
        span.in_scope(|| tracing::error!(error = %cause, "request failed"));
    }
    // Entering the span costs even when no sink takes the line.
    if tracing::enabled!(target: "cruddur::access", tracing::Level::INFO) {
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        span.in_scope(|| {
            tracing::info!(
                target: "cruddur::access",
                method = method.as_str(),
                path = path.as_str(),
                route = route.unwrap_or(""),
                status = status.as_u16(),
                latency_ms,
                client_address = client.as_str(),
                user_agent = user_agent.as_str(),
                "{method} {path} {} {latency_ms:.3}ms",
                status.as_u16()
            )
        });
    }
    for end in ends {
        end.end(span, &response);
    }
    if let Some(value) = trace_header {
        response.headers_mut().insert("x-amzn-trace-id", value);
    }
    response
}

//! `GET /metrics`: the SDK's manual reader collected on every scrape and
//! written in the Prometheus text format (0.0.4), or in OpenMetrics 1.0
//! with exemplars when the scraper's `Accept` asks for
//! `application/openmetrics-text`. Names follow OpenTelemetry's Prometheus
//! compatibility rules: dots become underscores, the unit is a suffix
//! (`http_server_request_duration_seconds`), attributes are labels.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::push::SharedReader;
use super::{Exemplar, RequestMetrics};
use crate::error::ApiError;
use crate::openapi::TELEMETRY;
use crate::telemetry::queue::SinkStats;

const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What a scrape reads.
pub(super) struct Scrape {
    pub reader: SharedReader,
    pub requests: Arc<RequestMetrics>,
    pub stats: Arc<SinkStats>,
}

pub(super) fn routes(scrape: Arc<Scrape>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(metrics))
        .with_state(scrape)
}

/// Metrics for Prometheus: request rate, errors and durations per route,
/// and requests in flight. Prometheus text by default; OpenMetrics, with
/// each histogram bucket's latest sampled trace id as its exemplar, when
/// `Accept` asks for `application/openmetrics-text`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = TELEMETRY,
    operation_id = "metrics",
    responses(
        (status = 200, description = "the metrics", body = String, content_type = "text/plain"),
        (status = 500, description = "the metrics could not be collected", body = crate::error::ErrorBody),
    ),
)]
async fn metrics(State(scrape): State<Arc<Scrape>>, headers: HeaderMap) -> Response {
    let open = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("application/openmetrics-text"));
    let mut collected = ResourceMetrics::default();
    if let Err(err) = scrape.reader.collect(&mut collected) {
        return ApiError::Internal(format!("cannot collect the metrics: {err}")).into_response();
    }
    let body = encode(&collected, &scrape.requests, open);
    scrape.stats.record_success(1);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(if open { OPENMETRICS } else { TEXT }),
        )],
        body,
    )
        .into_response()
}

/// A Prometheus name: letters, digits and underscores.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The unit as a name suffix, for the units the instruments use.
fn unit_suffix(unit: &str) -> Option<&'static str> {
    match unit {
        "s" => Some("seconds"),
        "By" => Some("bytes"),
        "ms" => Some("milliseconds"),
        _ => None,
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn label_value(value: &Value) -> String {
    escape(&value.to_string())
}

/// `{a="1",b="2"}` from attributes, sorted by name, plus `extra` last.
fn labels<'a>(
    attributes: impl Iterator<Item = &'a KeyValue>,
    extra: Option<(&str, &str)>,
) -> String {
    let mut pairs: Vec<(String, String)> = attributes
        .map(|kv| (sanitize(kv.key.as_str()), label_value(&kv.value)))
        .collect();
    pairs.sort();
    if let Some((name, value)) = extra {
        pairs.push((name.to_owned(), value.to_owned()));
    }
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .into_iter()
        .map(|(name, value)| format!("{name}=\"{value}\""))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn attribute<'a>(attributes: impl Iterator<Item = &'a KeyValue>, key: &str) -> Option<Value> {
    attributes
        .into_iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

/// A number as both formats spell it.
fn number(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{value}")
    }
}

fn exemplar_suffix(exemplar: &Exemplar) -> String {
    let at = exemplar
        .at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    format!(
        " # {{trace_id=\"{}\"}} {} {at:.3}",
        exemplar.trace_id,
        number(exemplar.seconds)
    )
}

/// Every metric collected, in the chosen format.
fn encode(collected: &ResourceMetrics, requests: &RequestMetrics, open: bool) -> String {
    let mut out = String::new();
    for scope in collected.scope_metrics() {
        for metric in scope.metrics() {
            let mut name = sanitize(metric.name());
            let unit = unit_suffix(metric.unit());
            if let Some(suffix) = unit
                && !name.ends_with(suffix)
            {
                name = format!("{name}_{suffix}");
            }
            match metric.data() {
                AggregatedMetrics::F64(MetricData::Histogram(histogram)) => {
                    header(
                        &mut out,
                        &name,
                        metric.description(),
                        "histogram",
                        unit,
                        open,
                    );
                    for point in histogram.data_points() {
                        let exemplars = if open && metric.name() == "http.server.request.duration" {
                            let method = attribute(point.attributes(), "http.request.method")
                                .map(|v| v.to_string())
                                .unwrap_or_default();
                            let route = attribute(point.attributes(), "http.route")
                                .map(|v| v.to_string())
                                .unwrap_or_default();
                            let status =
                                match attribute(point.attributes(), "http.response.status_code") {
                                    Some(Value::I64(status)) => status as u16,
                                    _ => 0,
                                };
                            requests.exemplars(&method, &route, status)
                        } else {
                            Vec::new()
                        };
                        let mut cumulative = 0;
                        let bounds: Vec<f64> = point.bounds().chain([f64::INFINITY]).collect();
                        for (index, (bound, count)) in
                            bounds.iter().zip(point.bucket_counts()).enumerate()
                        {
                            cumulative += count;
                            let le = number(*bound);
                            let _ = write!(
                                out,
                                "{name}_bucket{} {cumulative}",
                                labels(point.attributes(), Some(("le", &le)))
                            );
                            if let Some(Some(exemplar)) = exemplars.get(index) {
                                out.push_str(&exemplar_suffix(exemplar));
                            }
                            out.push('\n');
                        }
                        let plain = labels(point.attributes(), None);
                        let _ = writeln!(out, "{name}_sum{plain} {}", number(point.sum()));
                        let _ = writeln!(out, "{name}_count{plain} {}", point.count());
                    }
                }
                AggregatedMetrics::I64(MetricData::Sum(sum)) if !sum.is_monotonic() => {
                    header(&mut out, &name, metric.description(), "gauge", unit, open);
                    for point in sum.data_points() {
                        let _ = writeln!(
                            out,
                            "{name}{} {}",
                            labels(point.attributes(), None),
                            point.value()
                        );
                    }
                }
                AggregatedMetrics::U64(MetricData::Gauge(gauge)) => {
                    header(&mut out, &name, metric.description(), "gauge", unit, open);
                    for point in gauge.data_points() {
                        let _ = writeln!(
                            out,
                            "{name}{} {}",
                            labels(point.attributes(), None),
                            point.value()
                        );
                    }
                }
                AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                    let base = name.strip_suffix("_total").unwrap_or(&name).to_owned();
                    header(&mut out, &base, metric.description(), "counter", unit, open);
                    for point in sum.data_points() {
                        let _ = writeln!(
                            out,
                            "{base}_total{} {}",
                            labels(point.attributes(), None),
                            point.value()
                        );
                    }
                }
                _ => {}
            }
        }
    }
    if open {
        out.push_str("# EOF\n");
    }
    out
}

fn header(out: &mut String, name: &str, help: &str, kind: &str, unit: Option<&str>, open: bool) {
    let _ = writeln!(
        out,
        "# HELP {name} {}",
        help.replace('\\', "\\\\").replace('\n', "\\n")
    );
    let _ = writeln!(out, "# TYPE {name} {kind}");
    if open && let Some(unit) = unit {
        let _ = writeln!(out, "# UNIT {name} {unit}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels_follow_prometheus_rules() {
        assert_eq!(
            sanitize("http.server.request.duration"),
            "http_server_request_duration"
        );
        assert_eq!(unit_suffix("s"), Some("seconds"));
        let attributes = [
            KeyValue::new("http.route", "/api/activities/@{handle}"),
            KeyValue::new("http.request.method", "GET"),
        ];
        assert_eq!(
            labels(attributes.iter(), Some(("le", "+Inf"))),
            r#"{http_request_method="GET",http_route="/api/activities/@{handle}",le="+Inf"}"#
        );
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(0.25), "0.25");
    }
}

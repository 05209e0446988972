//! `OTEL_METRICS_EXPORTER=console`: each interval's metrics on stdout, a
//! line per series, in delta temporality (what happened since the last
//! lines; gauges as they are now):
//!
//! ```text
//! metric http.server.request.duration{http.request.method=GET http.response.status_code=200 http.route=/api/activities/home} count=12 sum=0.004021s
//! ```

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;

pub(super) struct ConsoleExporter;

impl PushMetricExporter for ConsoleExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let lines = lines(metrics);
        std::io::stdout()
            .lock()
            .write_all(lines.as_bytes())
            .map_err(|err| OTelSdkError::InternalFailure(format!("stdout: {err}")))
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Delta
    }
}

/// `{a=1 b=2}`, attributes sorted by name.
fn attributes<'a>(attributes: impl Iterator<Item = &'a KeyValue>) -> String {
    let mut pairs: Vec<String> = attributes
        .map(|kv| format!("{}={}", kv.key, kv.value))
        .collect();
    pairs.sort();
    format!("{{{}}}", pairs.join(" "))
}

/// A line per data point; a series with nothing new in a delta interval
/// (a count of zero) is left out.
fn lines(metrics: &ResourceMetrics) -> String {
    let mut out = String::new();
    for metric in metrics.scope_metrics().flat_map(|scope| scope.metrics()) {
        let (name, unit) = (metric.name(), metric.unit());
        match metric.data() {
            AggregatedMetrics::F64(MetricData::Histogram(histogram)) => {
                for point in histogram.data_points().filter(|p| p.count() > 0) {
                    let _ = writeln!(
                        out,
                        "metric {name}{} count={} sum={:.6}{unit}",
                        attributes(point.attributes()),
                        point.count(),
                        point.sum()
                    );
                }
            }
            AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                for point in sum.data_points().filter(|p| p.value() > 0) {
                    let _ = writeln!(
                        out,
                        "metric {name}{} +{}",
                        attributes(point.attributes()),
                        point.value()
                    );
                }
            }
            AggregatedMetrics::U64(MetricData::Gauge(gauge)) => {
                for point in gauge.data_points() {
                    let _ = writeln!(
                        out,
                        "metric {name}{} {}",
                        attributes(point.attributes()),
                        point.value()
                    );
                }
            }
            AggregatedMetrics::I64(MetricData::Sum(sum)) => {
                for point in sum.data_points() {
                    let _ = writeln!(
                        out,
                        "metric {name}{} {}",
                        attributes(point.attributes()),
                        point.value()
                    );
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_print_sorted_in_braces() {
        let kv = [
            KeyValue::new("http.route", "/api/activities/home"),
            KeyValue::new("http.request.method", "GET"),
        ];
        assert_eq!(
            attributes(kv.iter()),
            "{http.request.method=GET http.route=/api/activities/home}"
        );
    }
}

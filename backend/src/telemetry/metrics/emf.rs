//! CloudWatch Metrics as Embedded Metric Format records in the CloudWatch
//! Logs stream the backend already writes (`CLOUDWATCH_METRICS=emf`): no
//! other API, no other permission. Each interval gives one record per route
//! that answered requests in it, under `CLOUDWATCH_METRICS_NAMESPACE`, with
//! dimensions `service` and `route` (and `service` alone, for the whole):
//!
//! * `http.server.request.count` (Count): requests answered;
//! * `http.server.request.errors` (Count): those answered 5xx;
//! * `http.server.request.duration` (Seconds): the durations, as at most
//!   100 values (the specification's limit), one per request when there
//!   were 100 or fewer, else spread over the histogram's buckets in
//!   proportion; each value is its bucket's middle, kept within the
//!   interval's minimum and maximum.
//!
//! The record also carries `trace_id` and `xray_trace_id` (named as the log
//! lines name them) of a sampled request of that route in the interval, so
//! a spike leads to a trace. Records follow the published EMF
//! specification; the PutLogEvents calls carry `x-amzn-logs-format:
//! json/emf` (`cloudwatch::client`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::Value;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use serde_json::{Map, json};

use super::RequestMetrics;
use crate::telemetry::ids::xray_trace_id;
use crate::telemetry::sink::LogLines;

/// Values one metric may carry in a record (the EMF specification's limit).
const MAX_VALUES: usize = 100;
/// `route` of requests no route matched.
const UNMATCHED: &str = "unmatched";

pub(super) struct EmfExporter {
    pub namespace: String,
    pub service: String,
    pub lines: Arc<dyn LogLines>,
    /// Set once the request metrics exist (they are built after the
    /// provider, which is built after this exporter's reader).
    pub requests: Arc<OnceLock<Arc<RequestMetrics>>>,
    /// When the last interval ended: the start of the next one's exemplars.
    pub since: Mutex<SystemTime>,
}

/// One route's interval.
#[derive(Default)]
struct Route {
    count: u64,
    errors: u64,
    sum: f64,
    min: f64,
    max: f64,
    bounds: Vec<f64>,
    buckets: Vec<u64>,
}

impl Route {
    /// One series' interval, answered `status`.
    fn series(
        status: i64,
        count: u64,
        sum: f64,
        range: (f64, f64),
        bounds: Vec<f64>,
        buckets: Vec<u64>,
    ) -> Route {
        Route {
            count,
            errors: if status >= 500 { count } else { 0 },
            sum,
            min: range.0,
            max: range.1,
            bounds,
            buckets,
        }
    }

    /// Adds another series of the same route.
    fn add(&mut self, other: Route) {
        if self.count == 0 {
            *self = other;
            return;
        }
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.count += other.count;
        self.errors += other.errors;
        self.sum += other.sum;
        for (total, n) in self.buckets.iter_mut().zip(other.buckets) {
            *total += n;
        }
    }

    /// The durations as at most [`MAX_VALUES`] values (see the module doc).
    fn values(&self) -> Vec<f64> {
        let scale = (self.count as f64 / MAX_VALUES as f64).max(1.0);
        let mut spread: Vec<(f64, usize)> = self
            .buckets
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(index, &n)| {
                let low = if index == 0 {
                    0.0
                } else {
                    self.bounds[index - 1]
                };
                let high = self.bounds.get(index).copied().unwrap_or(self.max);
                let middle = ((low + high) / 2.0).clamp(self.min, self.max);
                (middle, ((n as f64 / scale) as usize).max(1))
            })
            .collect();
        // Every bucket keeps a value; what is over the limit comes off the fullest.
        let total: usize = spread.iter().map(|(_, times)| times).sum();
        if let Some(fullest) = spread.iter_mut().max_by_key(|(_, times)| *times) {
            fullest.1 -= total.saturating_sub(MAX_VALUES).min(fullest.1 - 1);
        }
        spread
            .into_iter()
            .flat_map(|(value, times)| std::iter::repeat_n(value, times))
            .take(MAX_VALUES)
            .collect()
    }
}

impl EmfExporter {
    /// One record per route, as JSON lines.
    fn records(
        &self,
        metrics: &ResourceMetrics,
        since: SystemTime,
        now: SystemTime,
    ) -> Vec<String> {
        let mut routes: BTreeMap<String, Route> = BTreeMap::new();
        for metric in metrics.scope_metrics().flat_map(|scope| scope.metrics()) {
            if metric.name() != "http.server.request.duration" {
                continue;
            }
            let AggregatedMetrics::F64(MetricData::Histogram(histogram)) = metric.data() else {
                continue;
            };
            for point in histogram.data_points().filter(|p| p.count() > 0) {
                let mut route = UNMATCHED.to_owned();
                let mut status = 0;
                for kv in point.attributes() {
                    match (kv.key.as_str(), &kv.value) {
                        ("http.route", value) => route = value.to_string(),
                        ("http.response.status_code", Value::I64(code)) => status = *code,
                        _ => {}
                    }
                }
                routes.entry(route).or_default().add(Route::series(
                    status,
                    point.count(),
                    point.sum(),
                    (point.min().unwrap_or(0.0), point.max().unwrap_or(0.0)),
                    point.bounds().collect(),
                    point.bucket_counts().collect(),
                ));
            }
        }
        let timestamp = millis(now);
        routes
            .into_iter()
            .map(|(route, interval)| {
                let mut record = Map::new();
                record.insert(
                    "_aws".into(),
                    json!({
                        "Timestamp": timestamp,
                        "CloudWatchMetrics": [{
                            "Namespace": self.namespace,
                            "Dimensions": [["service", "route"], ["service"]],
                            "Metrics": [
                                {"Name": "http.server.request.count", "Unit": "Count"},
                                {"Name": "http.server.request.errors", "Unit": "Count"},
                                {"Name": "http.server.request.duration", "Unit": "Seconds"},
                            ],
                        }],
                    }),
                );
                record.insert("service".into(), json!(self.service));
                record.insert("route".into(), json!(route));
                record.insert("http.server.request.count".into(), json!(interval.count));
                record.insert("http.server.request.errors".into(), json!(interval.errors));
                record.insert(
                    "http.server.request.duration".into(),
                    json!(interval.values()),
                );
                let matched = if route == UNMATCHED {
                    ""
                } else {
                    route.as_str()
                };
                if let Some(trace) = self
                    .requests
                    .get()
                    .and_then(|requests| requests.latest_trace(matched, since))
                {
                    record.insert("trace_id".into(), json!(format!("{trace:032x}")));
                    record.insert("xray_trace_id".into(), json!(xray_trace_id(trace)));
                }
                serde_json::Value::Object(record).to_string()
            })
            .collect()
    }
}

fn millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl PushMetricExporter for EmfExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let now = SystemTime::now();
        let since = std::mem::replace(
            &mut *self.since.lock().unwrap_or_else(PoisonError::into_inner),
            now,
        );
        for line in self.records(metrics, since, now) {
            self.lines.write(millis(now), line);
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_one_value_a_request_up_to_a_hundred_then_spread() {
        let mut route = Route::default();
        let bounds = vec![0.001, 0.01];
        route.add(Route::series(
            200,
            3,
            0.003,
            (0.0008, 0.0012),
            bounds.clone(),
            vec![2, 1, 0],
        ));
        assert_eq!(route.values(), vec![0.0008, 0.0008, 0.0012]);
        let mut busy = Route::default();
        busy.add(Route::series(
            200,
            1000,
            5.0,
            (0.0001, 0.02),
            bounds.clone(),
            vec![900, 99, 1],
        ));
        busy.add(Route::series(
            503,
            10,
            0.1,
            (0.005, 0.01),
            bounds,
            vec![0, 10, 0],
        ));
        let values = busy.values();
        assert!(values.len() <= MAX_VALUES, "{}", values.len());
        assert_eq!(values.iter().filter(|v| **v == 0.0005).count(), 89);
        assert_eq!(
            values.last(),
            Some(&0.015),
            "the slowest bucket keeps a value"
        );
        assert_eq!((busy.count, busy.errors), (1010, 10));
    }
}

//! Metrics, the third signal: RED per route (issue 15), recorded with the
//! OpenTelemetry metrics SDK and served to Prometheus at `GET /metrics`.
//!
//! Instruments, with OpenTelemetry's semantic-convention names and units:
//! `http.server.request.duration` (histogram, seconds; `http.request.method`,
//! `http.route` when a route matched, `http.response.status_code`,
//! `error.type` for 5xx), `http.server.active_requests`, and
//! `db.client.operation.duration` (each statement's, recorded by the stores
//! through the global meter provider set here; see `store::statement`),
//! the app's counters (`services::counters`, through the same), and each
//! sink's `cruddur.telemetry.{exported,dropped,failed}`.
//! Their cardinality is bounded by construction: routes are the router's
//! templates, methods outside HTTP's own are `_OTHER`, statements are
//! constants.
//!
//! Recording costs the request path a read lock and a few atomics: each
//! series is bound once (the SDK's bound instruments,
//! `experimental_metrics_bound_instruments`), since an unbound record hashes
//! its attribute set every time: 110 ns a record against 16 ns bound, on
//! this machine (bench/README.md, "Metrics").
//!
//! Prometheus reads through a manual reader
//! (`experimental_metrics_custom_reader`) on every scrape; the `/metrics`
//! route is served outside the request span and the metrics, so scraping
//! is never counted in them. Exemplars (the SDK has none) are kept here:
//! per series and bucket, the trace id of the latest sampled request that
//! fell in it, shown to scrapers that ask for OpenMetrics.

mod prometheus;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::SystemTime;

use clap::builder::BoolishValueParser;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{
    BoundHistogram, Histogram, Meter, MeterProvider as _, ObservableCounter,
    ObservableUpDownCounter,
};
use opentelemetry::trace::TraceId;
use opentelemetry_sdk::metrics::{ManualReader, SdkMeterProvider};

use super::Shared;
use super::sink::{Health, Metered, RequestMeter, SinkEntry, SinkHealth, SinkParts};
use crate::telemetry::queue::SinkStats;

/// Where Prometheus scrapes.
pub const PATH: &str = "/metrics";

/// Seconds; finer than the semantic conventions' default at the low end,
/// where this backend answers (tens of microseconds to a few milliseconds).
const DURATION_BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0,
];

#[derive(Debug, Clone, clap::Args)]
pub struct MetricsSettings {
    /// Serve metrics to Prometheus at GET /metrics (Prometheus text, or OpenMetrics with exemplars when asked)
    #[arg(
        long = "metrics-prometheus",
        env = "METRICS_PROMETHEUS",
        value_name = "METRICS_PROMETHEUS",
        default_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub prometheus: bool,
}

/// The request middleware's meter (see [`RequestMeter`]).
pub struct RequestMetrics {
    duration: Histogram<f64>,
    /// Bound series by route template ("" when none matched), then method
    /// and status.
    series: RwLock<HashMap<Box<str>, Vec<Series>>>,
    /// Requests in flight by method (index in [`METHODS`]), read by the
    /// observable `http.server.active_requests` when collected.
    active: Arc<Active>,
    _active_gauge: ObservableUpDownCounter<i64>,
    /// Every sink's counters, once telemetry has put them together.
    sinks: Arc<OnceLock<Health>>,
    _sink_counters: [ObservableCounter<u64>; 3],
}

/// Requests in flight per method, and whether a method was ever seen (so
/// a method's series stays, at 0, once it has been reported).
#[derive(Default)]
struct Active {
    counts: [AtomicI64; METHODS.len()],
    seen: [AtomicBool; METHODS.len()],
}

/// One combination of method, route and status: its bound histogram and
/// the latest exemplar of each bucket.
struct Series {
    method: usize,
    status: u16,
    duration: BoundHistogram<f64>,
    exemplars: Vec<Mutex<Option<Exemplar>>>,
}

/// A sampled request that fell in a bucket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exemplar {
    pub trace_id: TraceId,
    pub seconds: f64,
    pub at: SystemTime,
}

/// The `http.request.method` values: HTTP's own methods, then `_OTHER`.
const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "_OTHER",
];

/// The method's index in [`METHODS`].
fn method_index(method: &http::Method) -> usize {
    match *method {
        http::Method::GET => 0,
        http::Method::HEAD => 1,
        http::Method::POST => 2,
        http::Method::PUT => 3,
        http::Method::DELETE => 4,
        http::Method::CONNECT => 5,
        http::Method::OPTIONS => 6,
        http::Method::TRACE => 7,
        http::Method::PATCH => 8,
        _ => 9,
    }
}

impl RequestMetrics {
    fn new(provider: &SdkMeterProvider) -> Self {
        let meter = provider.meter("cruddur-backend");
        let active = Arc::new(Active::default());
        let observed = Arc::clone(&active);
        let sinks: Arc<OnceLock<Health>> = Arc::default();
        RequestMetrics {
            duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("Duration of HTTP server requests.")
                .with_boundaries(DURATION_BOUNDS.to_vec())
                .build(),
            series: RwLock::default(),
            active,
            _active_gauge: meter
                .i64_observable_up_down_counter("http.server.active_requests")
                .with_unit("{request}")
                .with_description("Number of active HTTP server requests.")
                .with_callback(move |observer| {
                    for (index, method) in METHODS.iter().enumerate() {
                        if observed.seen[index].load(Ordering::Relaxed) {
                            observer.observe(
                                observed.counts[index].load(Ordering::Relaxed),
                                &[
                                    KeyValue::new("http.request.method", *method),
                                    KeyValue::new("url.scheme", "http"),
                                ],
                            );
                        }
                    }
                })
                .build(),
            _sink_counters: [
                sink_counter(&meter, &sinks, "exported", |r| r.exported),
                sink_counter(&meter, &sinks, "dropped", |r| r.dropped),
                sink_counter(&meter, &sinks, "failed", |r| r.failed),
            ],
            sinks,
        }
    }

    /// Reports `health`'s sinks as `cruddur.telemetry.*` from now on.
    fn watch(&self, health: Health) {
        let _ = self.sinks.set(health);
    }

    fn bind(&self, method: usize, route: &str, status: u16) -> Series {
        let mut attributes = vec![
            KeyValue::new("http.request.method", METHODS[method]),
            KeyValue::new("http.response.status_code", i64::from(status)),
        ];
        if !route.is_empty() {
            attributes.push(KeyValue::new("http.route", route.to_owned()));
        }
        if status >= 500 {
            attributes.push(KeyValue::new("error.type", status.to_string()));
        }
        Series {
            method,
            status,
            duration: self.duration.bind(&attributes),
            exemplars: (0..=DURATION_BOUNDS.len())
                .map(|_| Mutex::new(None))
                .collect(),
        }
    }

    /// The exemplars of the series with these attributes, by bucket.
    fn exemplars(&self, method: &str, route: &str, status: u16) -> Vec<Option<Exemplar>> {
        let Some(method) = METHODS.iter().position(|m| *m == method) else {
            return Vec::new();
        };
        let all = self.series.read().unwrap_or_else(PoisonError::into_inner);
        let Some(series) = all.get(route).and_then(|list| find(list, method, status)) else {
            return Vec::new();
        };
        series
            .exemplars
            .iter()
            .map(|slot| *slot.lock().unwrap_or_else(PoisonError::into_inner))
            .collect()
    }
}

impl RequestMeter for RequestMetrics {
    fn begin(&self, method: &http::Method) {
        let method = method_index(method);
        self.active.seen[method].store(true, Ordering::Relaxed);
        self.active.counts[method].fetch_add(1, Ordering::Relaxed);
    }

    /// The request's duration in its series, and the trace it was in as
    /// the bucket's exemplar when it was sampled.
    fn answered(&self, answer: &Metered<'_>) {
        let (method, status) = (method_index(answer.method), answer.status);
        let seconds = answer.elapsed.as_secs_f64();
        let route = answer.route.unwrap_or_default();
        {
            let all = self.series.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(series) = all.get(route).and_then(|list| find(list, method, status)) {
                series.record(seconds, answer.trace);
                return;
            }
        }
        let mut all = self.series.write().unwrap_or_else(PoisonError::into_inner);
        let list = all.entry(route.into()).or_default();
        if find(list, method, status).is_none() {
            list.push(self.bind(method, route, status));
        }
        if let Some(series) = find(list, method, status) {
            series.record(seconds, answer.trace);
        }
    }

    fn left(&self, method: &http::Method) {
        self.active.counts[method_index(method)].fetch_sub(1, Ordering::Relaxed);
    }
}

/// `cruddur.telemetry.<what>`: a count of each sink that is on, by `sink`,
/// read from the health check's counters when collected.
fn sink_counter(
    meter: &Meter,
    sinks: &Arc<OnceLock<Health>>,
    what: &'static str,
    read: fn(&crate::telemetry::queue::SinkReport) -> u64,
) -> ObservableCounter<u64> {
    let sinks = Arc::clone(sinks);
    meter
        .u64_observable_counter(format!("cruddur.telemetry.{what}"))
        .with_unit("{item}")
        .with_description(format!("Telemetry items each sink has {what}."))
        .with_callback(move |observer| {
            let Some(health) = sinks.get() else { return };
            for (name, sink) in health.report() {
                if let SinkHealth::On(report) = sink {
                    observer.observe(read(&report), &[KeyValue::new("sink", name)]);
                }
            }
        })
        .build()
}

fn find(list: &[Series], method: usize, status: u16) -> Option<&Series> {
    list.iter()
        .find(|s| s.method == method && s.status == status)
}

impl Series {
    fn record(&self, seconds: f64, trace: Option<TraceId>) {
        self.duration.record(seconds);
        if let Some(trace_id) = trace {
            let bucket = DURATION_BOUNDS.partition_point(|&bound| bound < seconds);
            *self.exemplars[bucket]
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Exemplar {
                trace_id,
                seconds,
                at: SystemTime::now(),
            });
        }
    }
}

/// The metrics' parts: the Prometheus route and the request middleware's
/// recorder when on; prints the start-up line.
pub fn start(settings: &MetricsSettings, shared: &Shared) -> SinkParts {
    if shared.sdk_disabled {
        return SinkParts::announce_off("prometheus", "OTEL_SDK_DISABLED=true");
    }
    if !settings.prometheus {
        return SinkParts::announce_off("prometheus", "METRICS_PROMETHEUS=false");
    }
    let reader = Arc::new(ManualReader::builder().build());
    let provider = SdkMeterProvider::builder()
        .with_reader(prometheus::Shared(Arc::clone(&reader)))
        .with_resource(shared.resource.clone())
        .build();
    // The global provider: the store's statements record their durations
    // through it, and so can code using the OpenTelemetry metrics API.
    opentelemetry::global::set_meter_provider(provider.clone());
    let requests = Arc::new(RequestMetrics::new(&provider));
    eprintln!(
        "telemetry: prometheus on at {PATH} (RED per route; OpenMetrics with exemplars when asked)"
    );
    let stats = SinkStats::new("prometheus", PATH.into());
    let scrape = prometheus::Scrape {
        reader,
        requests: Arc::clone(&requests),
        stats: Arc::clone(&stats),
        _provider: provider,
    };
    SinkParts::serving(SinkEntry::On(stats))
        .with_request_meter(Arc::clone(&requests) as Arc<dyn RequestMeter>)
        .with_health_watch(move |health| requests.watch(health))
        .with_untraced_routes(prometheus::routes(Arc::new(scrape)))
}

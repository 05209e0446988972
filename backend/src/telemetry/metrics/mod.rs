//! Metrics, the third signal: RED per route (issue 15), recorded with the
//! OpenTelemetry metrics SDK, served to Prometheus at `GET /metrics` and
//! pushed every `OTEL_METRIC_EXPORT_INTERVAL` to OTLP (`otlp`, with
//! opentelemetry-otlp's exporter) and the console (`console`) as
//! `OTEL_METRICS_EXPORTER` names them, and to CloudWatch as EMF records
//! (`emf`) or to its OTLP endpoint, signed (`cloudwatch_otlp`), as
//! `CLOUDWATCH_METRICS` says. Each exporter has a reader of its own, in its
//! own temporality; `push` drives the pushed ones.
//!
//! Instruments, with OpenTelemetry's semantic-convention names and units:
//! `http.server.request.duration` (histogram, seconds; `http.request.method`,
//! `http.route` when a route matched, `http.response.status_code`,
//! `error.type` for 5xx), `http.server.active_requests`, and
//! `db.client.operation.duration` (each statement's, recorded by the stores
//! through the global meter provider set here; see `store::statement`),
//! the app's counters (`services::counters`, through the same), and each
//! sink's `cruddur.telemetry.{exported,dropped,failed}` and
//! `cruddur.telemetry.queued` (its queue's backlog when collected).
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

mod cloudwatch_otlp;
mod console;
mod emf;
mod otlp;
mod prometheus;
mod push;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use clap::ValueEnum;
use clap::builder::BoolishValueParser;
use http::Uri;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{
    BoundHistogram, Histogram, Meter, MeterProvider as _, ObservableCounter, ObservableGauge,
    ObservableUpDownCounter,
};
use opentelemetry::trace::TraceId;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{SdkMeterProvider, Temporality};

use self::push::{Schedule, SharedReader};
use super::Shared;
use super::otlp::OtlpSettings;
use super::sink::{
    Health, LogLines, Metered, RequestMeter, SinkEntry, SinkHealth, SinkParts, TelemetryError,
};
use crate::config::values::{parse_millis, parse_url};
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
        value_parser = BoolishValueParser::new(),
        action = clap::ArgAction::Set
    )]
    pub prometheus: bool,
    /// Where metrics go: `otlp`, `prometheus`, `console`, `none`, or a comma list; default `prometheus`, and `otlp` too when an OTLP endpoint or Honeycomb key is set
    #[arg(
        long = "metrics-exporter",
        env = "OTEL_METRICS_EXPORTER",
        value_name = "OTEL_METRICS_EXPORTER",
        value_delimiter = ','
    )]
    pub exporter: Option<Vec<MetricsExporter>>,
    /// Full OTLP metrics URL, used as is (default: the OTLP endpoint with /v1/metrics)
    #[arg(long, env = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", value_name = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", value_parser = parse_url)]
    pub otlp_metrics_endpoint: Option<Uri>,
    /// Milliseconds between pushes of metrics (OTLP, console)
    #[arg(long = "metric-export-interval", env = "OTEL_METRIC_EXPORT_INTERVAL", value_name = "OTEL_METRIC_EXPORT_INTERVAL", default_value = "60000", value_parser = parse_interval)]
    pub export_interval: Duration,
    /// Milliseconds one push of metrics may take, retries included
    #[arg(long = "metric-export-timeout", env = "OTEL_METRIC_EXPORT_TIMEOUT", value_name = "OTEL_METRIC_EXPORT_TIMEOUT", default_value = "30000", value_parser = parse_interval)]
    pub export_timeout: Duration,
    /// OTLP metrics' temporality: `cumulative`, `delta` or `lowmemory`
    #[arg(
        long = "otlp-metrics-temporality",
        env = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
        value_name = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
        default_value = "cumulative",
        ignore_case = true
    )]
    pub temporality: TemporalityPreference,
    /// Honeycomb dataset for metrics (the x-honeycomb-dataset header sent with HONEYCOMB_API_KEY); default the service name
    #[arg(
        long,
        env = "HONEYCOMB_METRICS_DATASET",
        value_name = "HONEYCOMB_METRICS_DATASET"
    )]
    pub honeycomb_dataset: Option<String>,
    /// CloudWatch Metrics: `emf` (Embedded Metric Format records in the CloudWatch Logs stream, which must be on), `otlp` (CloudWatch's OTLP endpoint, SigV4) or `off`
    #[arg(
        long = "cloudwatch-metrics",
        env = "CLOUDWATCH_METRICS",
        value_name = "CLOUDWATCH_METRICS",
        default_value = "off"
    )]
    pub cloudwatch: CloudWatchMetrics,
    /// CloudWatch Metrics namespace of the EMF records
    #[arg(long = "cloudwatch-metrics-namespace", env = "CLOUDWATCH_METRICS_NAMESPACE", value_name = "CLOUDWATCH_METRICS_NAMESPACE", default_value = "Cruddur", value_parser = parse_namespace)]
    pub cloudwatch_namespace: String,
    /// CloudWatch's OTLP metrics URL for CLOUDWATCH_METRICS=otlp; default https://monitoring.{region}.amazonaws.com/v1/metrics
    #[arg(long = "cloudwatch-metrics-endpoint", env = "CLOUDWATCH_METRICS_ENDPOINT", value_name = "CLOUDWATCH_METRICS_ENDPOINT", value_parser = parse_url)]
    pub cloudwatch_endpoint: Option<Uri>,
    /// The region variables, for CloudWatch's endpoint.
    #[arg(skip = crate::config::AwsEnvironment::read())]
    pub aws: crate::config::AwsEnvironment,
}

/// `CLOUDWATCH_METRICS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CloudWatchMetrics {
    Emf,
    Otlp,
    #[value(alias = "false", alias = "none")]
    Off,
}

/// A CloudWatch namespace: 1 to 255 letters, digits and `.-_/#: `, not
/// starting with `AWS/` (AWS's own).
fn parse_namespace(raw: &str) -> Result<String, String> {
    let fits = (1..=255).contains(&raw.len())
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c))
        && !raw.starts_with("AWS/")
        && !raw.starts_with(':');
    if fits {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "not a CloudWatch namespace: {raw:?} (1-255 of letters, digits and .-_/#: , not AWS/...)"
        ))
    }
}

/// The metrics exporters `OTEL_METRICS_EXPORTER` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetricsExporter {
    Otlp,
    Prometheus,
    Console,
    None,
}

/// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`, as the
/// specification spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TemporalityPreference {
    Cumulative,
    Delta,
    Lowmemory,
}

impl TemporalityPreference {
    fn sdk(self) -> Temporality {
        match self {
            TemporalityPreference::Cumulative => Temporality::Cumulative,
            TemporalityPreference::Delta => Temporality::Delta,
            TemporalityPreference::Lowmemory => Temporality::LowMemory,
        }
    }
}

/// A whole number of milliseconds, at least one.
fn parse_interval(raw: &str) -> Result<Duration, String> {
    match parse_millis(raw)? {
        Duration::ZERO => Err(format!("must be at least 1 millisecond, got {raw:?}")),
        interval => Ok(interval),
    }
}

impl MetricsSettings {
    /// Whether `exporter` is on; if not, why. OTLP needs somewhere to send
    /// (`otlp_configured`), which the configuration check ensures when it
    /// is named.
    pub fn wants(&self, exporter: MetricsExporter, otlp_configured: bool) -> Result<(), String> {
        if let Some(list) = &self.exporter
            && !list.contains(&exporter)
        {
            return Err("not in OTEL_METRICS_EXPORTER".into());
        }
        match exporter {
            MetricsExporter::Prometheus if !self.prometheus => {
                Err("METRICS_PROMETHEUS=false".into())
            }
            MetricsExporter::Otlp if !otlp_configured => Err(
                "OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_METRICS_ENDPOINT and HONEYCOMB_API_KEY unset".into(),
            ),
            MetricsExporter::Console if self.exporter.is_none() => {
                Err("not in OTEL_METRICS_EXPORTER".into())
            }
            _ => Ok(()),
        }
    }
}

/// The request middleware's meter (see [`RequestMeter`]).
pub struct RequestMetrics {
    duration: Histogram<f64>,
    /// Bound series by route template ("" when none matched), then method
    /// and status.
    /// Hashed with foldhash (SipHash cost a request 200 instructions here);
    /// the keys are the router's templates, never user input.
    series: RwLock<HashMap<Box<str>, Vec<Series>, foldhash::fast::FixedState>>,
    /// Requests in flight by method (index in [`METHODS`]), read by the
    /// observable `http.server.active_requests` when collected.
    active: Arc<Active>,
    _active_gauge: ObservableUpDownCounter<i64>,
    /// Every sink's counters, once telemetry has put them together.
    sinks: Arc<OnceLock<Health>>,
    _sink_counters: [ObservableCounter<u64>; 3],
    _sink_queues: ObservableGauge<u64>,
    /// Kept so the instruments keep recording.
    _provider: SdkMeterProvider,
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
            _sink_queues: sink_queues(&meter, &sinks),
            sinks,
            _provider: provider.clone(),
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

    /// The newest sampled request of `route` ("" for none matched) since
    /// `since`, across its methods, statuses and buckets.
    fn latest_trace(&self, route: &str, since: SystemTime) -> Option<TraceId> {
        let all = self.series.read().unwrap_or_else(PoisonError::into_inner);
        all.get(route)?
            .iter()
            .flat_map(|series| &series.exemplars)
            .filter_map(|slot| *slot.lock().unwrap_or_else(PoisonError::into_inner))
            .filter(|exemplar| exemplar.at >= since)
            .max_by_key(|exemplar| exemplar.at)
            .map(|exemplar| exemplar.trace_id)
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

/// `cruddur.telemetry.queued`: the items waiting in each sink's queue,
/// by `sink`, read when collected (sinks without a queue have none).
fn sink_queues(meter: &Meter, sinks: &Arc<OnceLock<Health>>) -> ObservableGauge<u64> {
    let sinks = Arc::clone(sinks);
    meter
        .u64_observable_gauge("cruddur.telemetry.queued")
        .with_unit("{item}")
        .with_description("Telemetry items waiting in each sink's queue.")
        .with_callback(move |observer| {
            let Some(health) = sinks.get() else { return };
            for (name, sink) in health.report() {
                if let SinkHealth::On(report) = sink
                    && let Some(queued) = report.queued
                {
                    observer.observe(queued, &[KeyValue::new("sink", name)]);
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
/// recorder when anything is on, then a part for each pushed exporter;
/// prints a start-up line for each.
pub fn start(
    settings: &MetricsSettings,
    otlp_settings: &OtlpSettings,
    log_lines: Option<Arc<dyn LogLines>>,
    shared: &Shared,
) -> Result<Vec<SinkParts>, TelemetryError> {
    let otlp = otlp::Destination::resolve(settings, otlp_settings, &shared.service_name);
    let on = |exporter| {
        if shared.sdk_disabled {
            Err("OTEL_SDK_DISABLED=true".to_owned())
        } else {
            settings.wants(exporter, otlp.is_some())
        }
    };
    let schedule = Schedule {
        interval: settings.export_interval,
        timeout: settings.export_timeout,
    };
    let mut readers = Readers::default();
    let mut pushed = Vec::new();
    pushed.push(match (on(MetricsExporter::Otlp), &otlp) {
        (Ok(()), Some(destination)) => start_pushed(
            "otlp-metrics",
            format!("{} ({})", destination.url, otlp_settings.protocol_name()),
            &format!("{},", destination.shown),
            readers.get(settings.temporality.sdk()),
            schedule,
            || otlp::exporter(destination, otlp_settings, settings.temporality.sdk()),
        )?,
        // Never (Ok, None): OTLP is on only with somewhere to send.
        (result, _) => SinkParts::announce_off("otlp-metrics", result.err().unwrap_or_default()),
    });
    if on(MetricsExporter::Console).is_ok() {
        pushed.push(start_pushed(
            "console-metrics",
            "stdout".into(),
            "stdout",
            readers.get(Temporality::Delta),
            schedule,
            || Ok(console::ConsoleExporter),
        )?);
    }
    let requests_cell: Arc<OnceLock<Arc<RequestMetrics>>> = Arc::default();
    pushed.push(match (settings.cloudwatch, log_lines) {
        (CloudWatchMetrics::Off, _) => {
            SinkParts::off("cloudwatch-metrics", "CLOUDWATCH_METRICS=off")
        }
        (_, _) if shared.sdk_disabled => {
            SinkParts::announce_off("cloudwatch-metrics", "OTEL_SDK_DISABLED=true")
        }
        (CloudWatchMetrics::Emf, None) => SinkParts::announce_off(
            "cloudwatch-metrics",
            "CLOUDWATCH_METRICS=emf writes to the CloudWatch Logs stream, and cloudwatch is off",
        ),
        (CloudWatchMetrics::Otlp, _) => match cloudwatch_otlp::url(settings) {
            Some(url) => start_pushed(
                "cloudwatch-metrics",
                format!("{url} (OTLP, SigV4)"),
                &format!("{url} (OTLP, SigV4),"),
                readers.get(settings.temporality.sdk()),
                schedule,
                || cloudwatch_otlp::exporter(&url, settings.temporality.sdk(), schedule.timeout),
            )?,
            None => SinkParts::announce_off(
                "cloudwatch-metrics",
                "CLOUDWATCH_METRICS=otlp needs a region: set AWS_REGION, or CLOUDWATCH_METRICS_ENDPOINT",
            ),
        },
        (CloudWatchMetrics::Emf, Some(lines)) => {
            let exporter = emf::EmfExporter {
                namespace: settings.cloudwatch_namespace.clone(),
                service: shared.service_name.clone(),
                lines,
                requests: Arc::clone(&requests_cell),
                since: Mutex::new(SystemTime::now()),
            };
            let destination = format!("EMF, namespace {}", exporter.namespace);
            let detail = format!(
                "EMF records in the cloudwatch stream, namespace {},",
                exporter.namespace
            );
            // Shut down before the stream it writes into.
            start_pushed(
                "cloudwatch-metrics",
                destination,
                &detail,
                readers.get(Temporality::Delta),
                schedule,
                || Ok(exporter),
            )?
            .feeding()
        }
    });
    let prometheus = on(MetricsExporter::Prometheus);
    let prometheus_reader = prometheus
        .is_ok()
        .then(|| readers.get(Temporality::Cumulative));
    let provider = readers.all().fold(
        SdkMeterProvider::builder().with_resource(shared.resource.clone()),
        |provider, reader| provider.with_reader(reader),
    );
    let mut parts = Vec::with_capacity(pushed.len() + 1);
    let main = match (&prometheus_reader, &prometheus) {
        (None, Err(reason))
            if pushed
                .iter()
                .all(|p| matches!(p.entry, SinkEntry::Off { .. })) =>
        {
            parts.push(SinkParts::announce_off("prometheus", reason.clone()));
            parts.extend(pushed);
            return Ok(parts);
        }
        _ => provider.build(),
    };
    // The global provider: the store's statements record their durations
    // through it, and so can code using the OpenTelemetry metrics API.
    opentelemetry::global::set_meter_provider(main.clone());
    let requests = Arc::new(RequestMetrics::new(&main));
    let _ = requests_cell.set(Arc::clone(&requests));
    let watched = Arc::clone(&requests);
    let first = match (prometheus_reader, prometheus) {
        (Some(reader), _) => {
            eprintln!(
                "telemetry: prometheus on at {PATH} (RED per route; OpenMetrics with exemplars when asked)"
            );
            let stats = SinkStats::new("prometheus", PATH.into());
            let scrape = prometheus::Scrape {
                reader,
                requests: Arc::clone(&requests),
                stats: Arc::clone(&stats),
            };
            SinkParts::serving(SinkEntry::On(stats))
                .with_untraced_routes(prometheus::routes(Arc::new(scrape)))
        }
        (None, reason) => SinkParts::announce_off("prometheus", reason.err().unwrap_or_default()),
    };
    parts.push(
        first
            .with_request_meter(requests as Arc<dyn RequestMeter>)
            .with_health_watch(move |health| watched.watch(health)),
    );
    parts.extend(pushed);
    Ok(parts)
}

/// The provider's readers. Every exporter that wants cumulative values
/// shares one reader (collecting a cumulative reader changes nothing, so
/// Prometheus and OTLP can both read it), since each reader is another
/// aggregation every record lands in: a second one cost a request 0.3k
/// instructions (bench/README.md, "Metrics"). A delta reader is reset by
/// each collect, so each delta exporter has its own.
#[derive(Default)]
struct Readers {
    cumulative: Option<SharedReader>,
    own: Vec<SharedReader>,
}

impl Readers {
    fn get(&mut self, temporality: Temporality) -> SharedReader {
        if temporality == Temporality::Cumulative {
            return self
                .cumulative
                .get_or_insert_with(|| SharedReader::new(Temporality::Cumulative))
                .clone();
        }
        let reader = SharedReader::new(temporality);
        self.own.push(reader.clone());
        reader
    }

    fn all(self) -> impl Iterator<Item = SharedReader> {
        self.cumulative.into_iter().chain(self.own)
    }
}

/// A pushed exporter, read from `reader` every interval: prints its
/// start-up line (`{name} on: {detail} every {interval}, {temporality}`)
/// and answers its part, which the health check shows with `destination`.
fn start_pushed<E, F>(
    name: &'static str,
    destination: String,
    detail: &str,
    reader: SharedReader,
    schedule: Schedule,
    make: F,
) -> Result<SinkParts, TelemetryError>
where
    E: PushMetricExporter,
    F: FnOnce() -> Result<E, TelemetryError>,
{
    eprintln!(
        "telemetry: {name} on: {detail} every {}, {}",
        humantime::format_duration(schedule.interval),
        format!("{:?}", reader.temporality).to_lowercase()
    );
    let pusher = push::spawn(SinkStats::new(name, destination), reader, schedule, make)?;
    Ok(SinkParts::on(pusher))
}

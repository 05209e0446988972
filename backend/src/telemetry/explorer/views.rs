//! What the explorer's API answers, computed from the buffer when asked:
//! the trace list with its filters, one trace's spans with offsets from
//! its start, and the queries the course runs in Honeycomb (COUNT, P50,
//! P90, P99 and MAX of the duration or a numeric attribute, grouped by an
//! attribute, as a table, a time series and a heatmap). Percentiles are
//! nearest-rank: of n sorted values, pXX is the value at ceil(XX/100 n) - 1.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use opentelemetry::{Array, KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::buffer::{Buffer, Kept};
use crate::telemetry::ids::xray_trace_id;
use crate::telemetry::sink::{attribute, kind_name};

/// The status classes the list filters by; `error`: a span's status is error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
pub enum StatusClass {
    #[serde(rename = "2xx")]
    Success,
    #[serde(rename = "3xx")]
    Redirect,
    #[serde(rename = "4xx")]
    ClientError,
    #[serde(rename = "5xx")]
    ServerError,
    #[serde(rename = "error")]
    Error,
}

/// The list's filters; every one is optional.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListFilter {
    /// The root span's `http.route`, exactly.
    pub route: Option<String>,
    /// The root's `http.response.status_code` class, or `error`: any span's status is error.
    #[param(inline)]
    pub status: Option<StatusClass>,
    /// The root span lasted at least this many milliseconds.
    pub min_duration_ms: Option<f64>,
    /// Some span of the trace has this attribute (such as `app.result_length`).
    pub attribute: Option<String>,
    /// With `attribute`: its value, as text (`true`, `5`, `/api/activities/home`);
    /// alone: any attribute of some span has this value.
    pub equals: Option<String>,
    /// At most this many traces, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// One trace in the list.
#[derive(Debug, Serialize, ToSchema)]
pub struct TraceSummary {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// The root span's name.
    pub name: String,
    pub route: Option<String>,
    /// The root span's status: `ok`, `error` or `unset`.
    pub status: &'static str,
    pub status_code: Option<i64>,
    pub duration_ms: f64,
    pub span_count: usize,
    /// RFC 3339, microseconds.
    pub start: String,
    pub start_unix_ms: f64,
}

/// How many traces and spans are kept, and how many traces left for room.
#[derive(Debug, Serialize, ToSchema)]
pub struct Buffered {
    pub traces: usize,
    pub spans: usize,
    pub max_spans: usize,
    pub evicted_traces: u64,
}

/// How many requests the explorer records when it alone needs spans.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct Recorded {
    /// `TRACE_EXPLORER_TRACES_PER_SECOND`: past it, in a second, a request
    /// makes no span, when no other sink needs spans.
    pub traces_per_second: u32,
    /// Requests not recorded for that since the start.
    pub unrecorded_requests: u64,
}

/// `GET /_explorer/api/traces`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TraceList {
    /// Newest first.
    pub traces: Vec<TraceSummary>,
    /// Every root `http.route` kept, sorted.
    pub routes: Vec<String>,
    pub buffered: Buffered,
    pub recorded: Recorded,
    /// What the page says about the data it shows.
    pub notice: &'static str,
}

pub const NOTICE: &str = "This page shows request data (paths, handles, attributes) of the \
    requests this process served, kept in memory only. Spans hold no credentials: no request \
    header but the user agent, and secret query parameters scrubbed. Do not expose it on a \
    shared address.";

fn millis(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn between(from: SystemTime, to: SystemTime) -> f64 {
    to.duration_since(from)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn rfc3339(time: SystemTime) -> String {
    DateTime::<Utc>::from(time).to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::I64(n) => Some(*n as f64),
        Value::F64(n) if n.is_finite() => Some(*n),
        _ => None,
    }
}

fn status_name(status: &Status) -> &'static str {
    match status {
        Status::Unset => "unset",
        Status::Ok => "ok",
        Status::Error { .. } => "error",
    }
}

/// Whether `span` has `key` (any attribute when `None`), equal to `equals`
/// as text when given; with neither, every span passes.
fn has(span: &SpanData, key: Option<&str>, equals: Option<&str>) -> bool {
    let equal = |value: &Value| equals.is_none_or(|text| value.as_str() == text);
    match key {
        Some(key) => attribute(span, key).is_some_and(equal),
        None => equals.is_none() || span.attributes.iter().any(|kv| equal(&kv.value)),
    }
}

fn summary(trace_id: TraceId, kept: &Kept) -> Option<TraceSummary> {
    let root = kept.root()?;
    let (start, _) = kept.bounds();
    Some(TraceSummary {
        trace_id: trace_id.to_string(),
        name: root.name.to_string(),
        route: attribute(root, "http.route").map(|v| v.as_str().into_owned()),
        status: status_name(&root.status),
        status_code: attribute(root, "http.response.status_code").and_then(|v| match v {
            Value::I64(code) => Some(*code),
            _ => None,
        }),
        duration_ms: between(root.start_time, root.end_time),
        span_count: kept.spans.len(),
        start: rfc3339(start),
        start_unix_ms: millis(start),
    })
}

fn matches(filter: &ListFilter, kept: &Kept, summary: &TraceSummary) -> bool {
    if filter
        .route
        .as_deref()
        .is_some_and(|route| summary.route.as_deref() != Some(route))
    {
        return false;
    }
    if filter
        .min_duration_ms
        .is_some_and(|least| summary.duration_ms < least)
    {
        return false;
    }
    let class = |low: i64| {
        summary
            .status_code
            .is_some_and(|c| (low..low + 100).contains(&c))
    };
    let status_ok = match filter.status {
        None => true,
        Some(StatusClass::Success) => class(200),
        Some(StatusClass::Redirect) => class(300),
        Some(StatusClass::ClientError) => class(400),
        Some(StatusClass::ServerError) => class(500),
        Some(StatusClass::Error) => kept
            .spans
            .iter()
            .any(|s| matches!(s.status, Status::Error { .. })),
    };
    let attribute_ok = (filter.attribute.is_none() && filter.equals.is_none())
        || kept
            .spans
            .iter()
            .any(|s| has(s, filter.attribute.as_deref(), filter.equals.as_deref()));
    status_ok && attribute_ok
}

/// The traces that pass `filter`, newest first.
pub fn list(buffer: &Buffer, filter: &ListFilter, recorded: Recorded) -> TraceList {
    let mut routes: Vec<String> = Vec::new();
    let mut traces: Vec<TraceSummary> = buffer
        .traces()
        .filter_map(|(id, kept)| {
            let summary = summary(*id, kept)?;
            if let Some(route) = &summary.route
                && !routes.contains(route)
            {
                routes.push(route.clone());
            }
            matches(filter, kept, &summary).then_some(summary)
        })
        .collect();
    traces.sort_by(|a, b| b.start_unix_ms.total_cmp(&a.start_unix_ms));
    traces.truncate(filter.limit.unwrap_or(DEFAULT_LIMIT));
    routes.sort();
    let counts = buffer.counts();
    TraceList {
        traces,
        routes,
        buffered: Buffered {
            traces: counts.traces,
            spans: counts.spans,
            max_spans: buffer.limits().spans,
            evicted_traces: counts.evicted_traces,
        },
        recorded,
        notice: NOTICE,
    }
}

/// One event of a span.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub name: String,
    /// Milliseconds after the trace's start.
    pub time_ms: f64,
    #[schema(value_type = Object)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// One span of a trace.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpanView {
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// `null`: the span has no parent.
    pub parent_span_id: Option<String>,
    /// The parent is a caller's span (another process).
    pub remote_parent: bool,
    pub name: String,
    /// `server`, `client`, `internal`, `producer` or `consumer`.
    pub kind: &'static str,
    /// `ok`, `error` or `unset`.
    pub status: &'static str,
    pub status_message: Option<String>,
    /// Milliseconds after the trace's start.
    pub start_ms: f64,
    pub duration_ms: f64,
    #[schema(value_type = Object)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    pub events: Vec<EventView>,
}

/// Where the same trace is in the other sinks' consoles, when they are on.
#[derive(Debug, Default, Clone, Serialize, ToSchema)]
pub struct Links {
    pub honeycomb: Option<String>,
    pub xray: Option<String>,
}

/// `GET /_explorer/api/traces/{trace_id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TraceView {
    pub trace_id: String,
    /// The same id as X-Ray spells it: `1-{8 hex}-{24 hex}`.
    pub xray_id: String,
    pub start: String,
    pub start_unix_ms: f64,
    pub duration_ms: f64,
    pub links: Links,
    /// By start time.
    pub spans: Vec<SpanView>,
}

fn json(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    fn float(n: f64) -> J {
        serde_json::Number::from_f64(n).map_or_else(|| J::String(n.to_string()), J::Number)
    }
    match value {
        Value::Bool(b) => J::Bool(*b),
        Value::I64(n) => J::from(*n),
        Value::F64(n) => float(*n),
        Value::String(text) => J::String(text.as_str().to_owned()),
        Value::Array(Array::Bool(items)) => items.iter().copied().map(J::Bool).collect(),
        Value::Array(Array::I64(items)) => items.iter().copied().map(J::from).collect(),
        Value::Array(Array::F64(items)) => items.iter().copied().map(float).collect(),
        Value::Array(Array::String(items)) => items
            .iter()
            .map(|text| J::String(text.as_str().to_owned()))
            .collect(),
        other => J::String(other.as_str().into_owned()),
    }
}

fn attributes(pairs: &[KeyValue]) -> serde_json::Map<String, serde_json::Value> {
    pairs
        .iter()
        .map(|kv| (kv.key.as_str().to_owned(), json(&kv.value)))
        .collect()
}

/// One trace's spans, offsets from its first span's start, or `None` when
/// it is not (or no longer) kept.
pub fn trace(buffer: &Buffer, trace_id: TraceId, links: Links) -> Option<TraceView> {
    let kept = buffer.get(trace_id)?;
    let (start, end) = kept.bounds();
    let mut spans: Vec<&SpanData> = kept.spans.iter().map(|span| &**span).collect();
    spans.sort_by_key(|span| span.start_time);
    let spans = spans
        .into_iter()
        .map(|span| SpanView {
            span_id: span.span_context.span_id().to_string(),
            parent_span_id: (span.parent_span_id != SpanId::INVALID)
                .then(|| span.parent_span_id.to_string()),
            remote_parent: span.parent_span_is_remote,
            name: span.name.to_string(),
            kind: kind_name(&span.span_kind),
            status: status_name(&span.status),
            status_message: match &span.status {
                Status::Error { description } if !description.is_empty() => {
                    Some(description.to_string())
                }
                _ => None,
            },
            start_ms: between(start, span.start_time),
            duration_ms: between(span.start_time, span.end_time),
            attributes: attributes(&span.attributes),
            events: span
                .events
                .iter()
                .map(|event| EventView {
                    name: event.name.to_string(),
                    time_ms: between(start, event.timestamp),
                    attributes: attributes(&event.attributes),
                })
                .collect(),
        })
        .collect();
    Some(TraceView {
        trace_id: trace_id.to_string(),
        xray_id: xray_trace_id(trace_id),
        start: rfc3339(start),
        start_unix_ms: millis(start),
        duration_ms: between(start, end),
        links,
        spans,
    })
}

/// What a query computes per group; `value` is this one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Calc {
    #[default]
    Count,
    P50,
    P90,
    P99,
    Max,
}

/// The kinds a query filters by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KindFilter {
    Server,
    Client,
    Internal,
    Producer,
    Consumer,
}

/// A query over the kept spans, as Honeycomb runs one over its events.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueryParams {
    /// `count` (default), `p50`, `p90`, `p99` or `max`: what `value` is.
    #[param(inline)]
    pub calc: Option<Calc>,
    /// `duration_ms` (default) or a numeric attribute, such as `app.result_length`.
    pub of: Option<String>,
    /// An attribute to group by, such as `http.route`.
    pub group_by: Option<String>,
    /// Only spans with this attribute.
    pub attribute: Option<String>,
    /// With `attribute`: its value, as text; alone: any attribute has this value.
    pub equals: Option<String>,
    /// Only spans of this kind.
    #[param(inline)]
    pub kind: Option<KindFilter>,
    /// Time buckets of the series and the heatmap, 1 to 200 (default 30).
    #[param(minimum = 1, maximum = 200)]
    pub buckets: Option<usize>,
}

pub const DEFAULT_BUCKETS: usize = 30;
pub const MAX_BUCKETS: usize = 200;
const HEATMAP_ROWS: usize = 10;

/// One group of a query's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Group {
    /// The `group_by` attribute's value as text; `null`: spans without it
    /// (or every span, with no `group_by`).
    pub group: Option<String>,
    /// Spans in the group.
    pub count: usize,
    /// Over the spans that have a numeric `of`; `null` when none has.
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
    /// The one `calc` names.
    pub value: Option<f64>,
}

/// One group's value per time bucket.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesLine {
    pub group: Option<String>,
    pub values: Vec<Option<f64>>,
}

/// `calc` per group per time bucket (by span start).
#[derive(Debug, Serialize, ToSchema)]
pub struct Series {
    pub start_unix_ms: f64,
    pub step_ms: f64,
    pub groups: Vec<SeriesLine>,
}

/// Spans counted per time bucket and per `of` bucket.
#[derive(Debug, Serialize, ToSchema)]
pub struct Heatmap {
    pub start_unix_ms: f64,
    pub step_ms: f64,
    /// The `of` buckets' edges, lowest first: one more than the rows.
    pub edges: Vec<f64>,
    /// `counts[time bucket][of bucket]`.
    pub counts: Vec<Vec<usize>>,
}

/// `GET /_explorer/api/query`.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueryAnswer {
    pub calc: Calc,
    pub of: String,
    pub group_by: Option<String>,
    /// By `value`, highest first; groups without one last.
    pub groups: Vec<Group>,
    pub series: Series,
    pub heatmap: Heatmap,
}

/// The nearest-rank percentile of sorted `values`.
fn percentile(sorted: &[f64], percent: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (percent / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// `calc` over a group of `count` spans with these (sorted) numeric values.
fn calculate(calc: Calc, count: usize, sorted: &[f64]) -> Option<f64> {
    match calc {
        Calc::Count => Some(count as f64),
        Calc::P50 => percentile(sorted, 50.0),
        Calc::P90 => percentile(sorted, 90.0),
        Calc::P99 => percentile(sorted, 99.0),
        Calc::Max => sorted.last().copied(),
    }
}

/// A span that passed the query's filters: its group, start and value.
struct Row {
    group: Option<String>,
    start: f64,
    value: Option<f64>,
}

/// Time buckets over `rows`: the first start, and a step that puts the
/// last start in the last bucket.
fn timeline(rows: &[Row], buckets: usize) -> (f64, f64) {
    let first = rows.iter().map(|r| r.start).fold(f64::INFINITY, f64::min);
    let last = rows
        .iter()
        .map(|r| r.start)
        .fold(f64::NEG_INFINITY, f64::max);
    if !first.is_finite() {
        return (0.0, 1000.0);
    }
    let step = ((last - first) / buckets as f64).max(1.0);
    (first, step)
}

fn bucket(at: f64, first: f64, step: f64, buckets: usize) -> usize {
    (((at - first) / step) as usize).min(buckets - 1)
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

/// Runs `params` over every kept span.
pub fn query(buffer: &Buffer, params: &QueryParams) -> QueryAnswer {
    let calc = params.calc.unwrap_or_default();
    let of = params.of.clone().unwrap_or_else(|| "duration_ms".into());
    let buckets = params.buckets.unwrap_or(DEFAULT_BUCKETS);
    let kind = params.kind.map(|k| match k {
        KindFilter::Server => SpanKind::Server,
        KindFilter::Client => SpanKind::Client,
        KindFilter::Internal => SpanKind::Internal,
        KindFilter::Producer => SpanKind::Producer,
        KindFilter::Consumer => SpanKind::Consumer,
    });
    let rows: Vec<Row> = buffer
        .spans()
        .filter(|span| kind.as_ref().is_none_or(|k| &span.span_kind == k))
        .filter(|span| has(span, params.attribute.as_deref(), params.equals.as_deref()))
        .map(|span| Row {
            group: params
                .group_by
                .as_deref()
                .and_then(|key| attribute(span, key))
                .map(|v| v.as_str().into_owned()),
            start: millis(span.start_time),
            value: if of == "duration_ms" {
                Some(between(span.start_time, span.end_time))
            } else {
                attribute(span, &of).and_then(number)
            },
        })
        .collect();

    let mut by_group: BTreeMap<Option<&str>, Vec<&Row>> = BTreeMap::new();
    for row in &rows {
        by_group.entry(row.group.as_deref()).or_default().push(row);
    }
    let (first, step) = timeline(&rows, buckets);
    let mut groups = Vec::new();
    let mut lines = Vec::new();
    for (group, members) in &by_group {
        let values = sorted(members.iter().filter_map(|r| r.value).collect());
        groups.push(Group {
            group: group.map(str::to_owned),
            count: members.len(),
            p50: percentile(&values, 50.0),
            p90: percentile(&values, 90.0),
            p99: percentile(&values, 99.0),
            max: values.last().copied(),
            value: calculate(calc, members.len(), &values),
        });
        let mut per_bucket: Vec<(usize, Vec<f64>)> = vec![(0, Vec::new()); buckets];
        for row in members {
            let slot = &mut per_bucket[bucket(row.start, first, step, buckets)];
            slot.0 += 1;
            slot.1.extend(row.value);
        }
        lines.push(SeriesLine {
            group: group.map(str::to_owned),
            values: per_bucket
                .into_iter()
                .map(|(count, values)| {
                    (count > 0)
                        .then(|| calculate(calc, count, &sorted(values)))
                        .flatten()
                })
                .collect(),
        });
    }
    groups.sort_by(|a, b| match (a.value, b.value) {
        (Some(a), Some(b)) => b.total_cmp(&a),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    QueryAnswer {
        calc,
        of,
        group_by: params.group_by.clone(),
        groups,
        series: Series {
            start_unix_ms: first,
            step_ms: step,
            groups: lines,
        },
        heatmap: heatmap(&rows, first, step, buckets),
    }
}

/// Counts per time bucket and per value bucket, the values' range cut in
/// [`HEATMAP_ROWS`] equal parts.
fn heatmap(rows: &[Row], first: f64, step: f64, buckets: usize) -> Heatmap {
    let values = rows.iter().filter_map(|r| r.value);
    let low = values.clone().fold(f64::INFINITY, f64::min);
    let high = values.fold(f64::NEG_INFINITY, f64::max);
    let (low, high) = if low.is_finite() {
        (low, if high > low { high } else { low + 1.0 })
    } else {
        (0.0, 1.0)
    };
    let height = (high - low) / HEATMAP_ROWS as f64;
    let edges = (0..=HEATMAP_ROWS)
        .map(|i| low + height * i as f64)
        .collect();
    let mut counts = vec![vec![0; HEATMAP_ROWS]; buckets];
    for row in rows {
        if let Some(value) = row.value {
            let y = (((value - low) / height) as usize).min(HEATMAP_ROWS - 1);
            counts[bucket(row.start, first, step, buckets)][y] += 1;
        }
    }
    Heatmap {
        start_unix_ms: first,
        step_ms: step,
        edges,
        counts,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use opentelemetry::trace::Event;

    use super::*;
    use crate::telemetry::explorer::buffer::Limits;
    use crate::telemetry::test_span::span;

    /// A request trace: a server span on `route` answering `code`, a
    /// service span with `app.result_length`, a query span.
    fn request(buffer: &mut Buffer, trace: u128, route: &str, code: i64, start: u64, ms: u64) {
        let mut query = span(trace, 3, 2, "SELECT", start + 1, 1);
        query.span_kind = SpanKind::Client;
        buffer.add(query);
        let mut service = span(trace, 2, 1, "service", start, ms - 1);
        service.attributes = vec![KeyValue::new("app.result_length", trace as i64)];
        buffer.add(service);
        let mut server = span(trace, 1, 0, &format!("GET {route}"), start, ms);
        server.span_kind = SpanKind::Server;
        server.attributes = vec![
            KeyValue::new("http.route", route.to_owned()),
            KeyValue::new("http.response.status_code", code),
        ];
        if code >= 500 {
            server.status = Status::error("boom");
        }
        buffer.add(server);
    }

    fn buffer() -> Buffer {
        let mut buffer = Buffer::new(Limits {
            spans: 1000,
            bytes: usize::MAX,
        });
        request(&mut buffer, 1, "/home", 200, 1_000, 4);
        request(&mut buffer, 2, "/home", 200, 2_000, 10);
        request(&mut buffer, 3, "/show", 404, 3_000, 2);
        request(&mut buffer, 4, "/show", 500, 4_000, 20);
        buffer
    }

    fn ids(list: &TraceList) -> Vec<String> {
        list.traces.iter().map(|t| t.trace_id.clone()).collect()
    }

    fn id(trace: u128) -> String {
        TraceId::from(trace).to_string()
    }

    #[test]
    fn the_list_is_newest_first_with_each_root_summed_up() {
        let recorded = Recorded {
            traces_per_second: 100,
            unrecorded_requests: 7,
        };
        let list = list(&buffer(), &ListFilter::default(), recorded);
        assert_eq!(ids(&list), [id(4), id(3), id(2), id(1)]);
        let newest = &list.traces[0];
        assert_eq!(newest.name, "GET /show");
        assert_eq!(newest.route.as_deref(), Some("/show"));
        assert_eq!(newest.status, "error");
        assert_eq!(newest.status_code, Some(500));
        assert_eq!(newest.duration_ms, 20.0);
        assert_eq!(newest.span_count, 3);
        assert_eq!(newest.start, "1970-01-01T00:00:04.000000Z");
        assert_eq!(newest.start_unix_ms, 4000.0);
        assert_eq!(list.routes, ["/home", "/show"]);
        assert_eq!(list.buffered.traces, 4);
        assert_eq!(list.buffered.spans, 12);
        assert_eq!(list.recorded.unrecorded_requests, 7);
    }

    #[test]
    fn the_list_filters_by_route_status_duration_and_attribute() {
        let buffer = buffer();
        let recorded = Recorded {
            traces_per_second: 100,
            unrecorded_requests: 0,
        };
        let with = |filter: ListFilter| ids(&list(&buffer, &filter, recorded));
        let route = |r: &str| Some(r.to_owned());
        assert_eq!(
            with(ListFilter {
                route: route("/home"),
                ..ListFilter::default()
            }),
            [id(2), id(1)]
        );
        for (class, expected) in [
            (StatusClass::Success, vec![id(2), id(1)]),
            (StatusClass::ClientError, vec![id(3)]),
            (StatusClass::ServerError, vec![id(4)]),
            (StatusClass::Error, vec![id(4)]),
            (StatusClass::Redirect, vec![]),
        ] {
            let filter = ListFilter {
                status: Some(class),
                ..ListFilter::default()
            };
            assert_eq!(with(filter), expected, "{class:?}");
        }
        let long = ListFilter {
            min_duration_ms: Some(10.0),
            ..ListFilter::default()
        };
        assert_eq!(with(long), [id(4), id(2)]);
        let exists = ListFilter {
            attribute: route("app.result_length"),
            ..ListFilter::default()
        };
        assert_eq!(with(exists).len(), 4);
        let equals = ListFilter {
            attribute: route("app.result_length"),
            equals: route("3"),
            ..ListFilter::default()
        };
        assert_eq!(with(equals), [id(3)]);
        let anywhere = ListFilter {
            equals: route("/show"),
            ..ListFilter::default()
        };
        assert_eq!(with(anywhere), [id(4), id(3)]);
        let missing = ListFilter {
            attribute: route("app.nothing"),
            ..ListFilter::default()
        };
        assert!(with(missing).is_empty());
        let one = ListFilter {
            limit: Some(1),
            ..ListFilter::default()
        };
        assert_eq!(with(one), [id(4)]);
    }

    #[test]
    fn a_trace_has_its_spans_by_start_with_offsets_parents_and_attributes() {
        let mut buffer = buffer();
        let mut late = span(9, 7, 0, "GET /late", 5_000, 3);
        late.span_kind = SpanKind::Server;
        late.parent_span_is_remote = true;
        late.parent_span_id = SpanId::from(0x42);
        let mut events = opentelemetry_sdk::trace::SpanEvents::default();
        events.events.push(Event::new(
            "exception",
            late.start_time + Duration::from_millis(2),
            vec![KeyValue::new("exception.message", "no")],
            0,
        ));
        late.events = events;
        buffer.add(late);
        let view = trace(&buffer, TraceId::from(9), Links::default()).unwrap();
        assert_eq!(view.spans.len(), 1);
        let root = &view.spans[0];
        assert!(root.remote_parent);
        assert_eq!(root.parent_span_id.as_deref(), Some("0000000000000042"));
        assert_eq!(root.events[0].name, "exception");
        assert_eq!(root.events[0].time_ms, 2.0);
        assert_eq!(root.events[0].attributes["exception.message"], "no");

        let view = trace(&buffer, TraceId::from(4), Links::default()).unwrap();
        assert_eq!(view.trace_id, id(4));
        assert_eq!(view.xray_id, "1-00000000-000000000000000000000004");
        assert_eq!(view.duration_ms, 20.0);
        let names: Vec<&str> = view.spans.iter().map(|s| s.name.as_str()).collect();
        // By start; the server and service spans start together.
        assert!(
            names == ["GET /show", "service", "SELECT"]
                || names == ["service", "GET /show", "SELECT"]
        );
        let server = view.spans.iter().find(|s| s.kind == "server").unwrap();
        assert_eq!(server.parent_span_id, None);
        assert_eq!(server.status, "error");
        assert_eq!(server.status_message.as_deref(), Some("boom"));
        assert_eq!(server.attributes["http.response.status_code"], 500);
        let query = view.spans.iter().find(|s| s.kind == "client").unwrap();
        assert_eq!(query.parent_span_id.as_deref(), Some("0000000000000002"));
        assert_eq!(query.start_ms, 1.0);
        assert_eq!(query.duration_ms, 1.0);
        assert!(trace(&buffer, TraceId::from(77), Links::default()).is_none());
    }

    fn run(buffer: &Buffer, calc: Calc, of: &str, group_by: Option<&str>) -> QueryAnswer {
        query(
            buffer,
            &QueryParams {
                calc: Some(calc),
                of: Some(of.into()),
                group_by: group_by.map(Into::into),
                kind: Some(KindFilter::Server),
                buckets: Some(4),
                ..QueryParams::default()
            },
        )
    }

    #[test]
    fn a_query_groups_spans_and_computes_each_calc() {
        let mut buffer = buffer();
        for (trace, ms) in [(11, 30), (12, 6), (13, 8)] {
            request(&mut buffer, trace, "/home", 200, 4_000 + trace as u64, ms);
        }
        let answer = run(&buffer, Calc::P90, "duration_ms", Some("http.route"));
        // /home: 4, 6, 8, 10, 30 ms; /show: 2, 20 ms.
        let home = answer
            .groups
            .iter()
            .find(|g| g.group.as_deref() == Some("/home"))
            .unwrap();
        assert_eq!(home.count, 5);
        assert_eq!(
            (home.p50, home.p90, home.p99, home.max),
            (Some(8.0), Some(30.0), Some(30.0), Some(30.0))
        );
        assert_eq!(home.value, home.p90);
        let show = answer
            .groups
            .iter()
            .find(|g| g.group.as_deref() == Some("/show"))
            .unwrap();
        assert_eq!(
            (show.count, show.p50, show.value),
            (2, Some(2.0), Some(20.0))
        );
        assert_eq!(
            answer.groups[0].group.as_deref(),
            Some("/home"),
            "highest value first"
        );

        let count = run(&buffer, Calc::Count, "duration_ms", None);
        assert_eq!(count.groups.len(), 1);
        assert_eq!(count.groups[0].group, None);
        assert_eq!(count.groups[0].value, Some(7.0));
        // Every span lands in one time bucket and one heatmap cell.
        let line: f64 = count.series.groups[0].values.iter().flatten().sum();
        assert_eq!(line, 7.0);
        assert_eq!(count.series.groups[0].values.len(), 4);
        let cells: usize = count.heatmap.counts.iter().flatten().sum();
        assert_eq!(cells, 7);
        assert_eq!(count.heatmap.edges.len(), HEATMAP_ROWS + 1);
        assert_eq!(count.heatmap.edges[0], 2.0);
        assert_eq!(*count.heatmap.edges.last().unwrap(), 30.0);
        assert_eq!(count.series.start_unix_ms, 1000.0);
    }

    #[test]
    fn a_query_of_an_attribute_skips_spans_without_a_number() {
        let buffer = buffer();
        let answer = query(
            &buffer,
            &QueryParams {
                calc: Some(Calc::Max),
                of: Some("app.result_length".into()),
                attribute: Some("app.result_length".into()),
                ..QueryParams::default()
            },
        );
        assert_eq!(answer.groups.len(), 1);
        assert_eq!(answer.groups[0].count, 4);
        assert_eq!(answer.groups[0].value, Some(4.0));
        // Server spans have no result length: counted, with no value.
        let servers = run(&buffer, Calc::Max, "app.result_length", Some("http.route"));
        assert!(
            servers
                .groups
                .iter()
                .all(|g| g.value.is_none() && g.count == 2)
        );
        let empty = run(
            &Buffer::new(Limits { spans: 1, bytes: 1 }),
            Calc::P50,
            "duration_ms",
            None,
        );
        assert!(empty.groups.is_empty());
        assert_eq!(empty.heatmap.counts.len(), 4);
    }
}

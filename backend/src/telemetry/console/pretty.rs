//! A trace as the console shows it to a person: one indented tree per
//! trace, the root first, each span with its duration and the facts the
//! app recorded (`app.*`, and a server span's status code), in colour on a
//! terminal. Leaf spans of one name that record nothing of their own (the
//! seed's inserts, an N+1 query) are one line with their count.

use std::fmt::Write as _;
use std::time::Duration;

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry_sdk::trace::SpanData;

use super::traces::{Ending, Trace};
use super::tree::{Node, forest};
use crate::telemetry::sink::{SharedSpan, kind_name};

const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const RED: &str = "\x1b[31m";
const CYAN: &str = "\x1b[36m";
const RESET: &str = "\x1b[0m";

/// Writes `text` in `style` when colour is on.
struct Painter {
    colour: bool,
}

impl Painter {
    fn paint(&self, out: &mut String, style: &str, text: &str) {
        if self.colour {
            out.push_str(style);
            out.push_str(text);
            out.push_str(RESET);
        } else {
            out.push_str(text);
        }
    }
}

pub(super) fn elapsed(span: &SpanData) -> Duration {
    span.end_time
        .duration_since(span.start_time)
        .unwrap_or_default()
}

/// `0.489ms` below a second, `1.204s` from there.
fn duration(length: Duration) -> String {
    let micros = length.as_micros();
    if micros < 1_000_000 {
        format!("{}.{:03}ms", micros / 1000, micros % 1000)
    } else {
        format!("{}.{:03}s", micros / 1_000_000, micros / 1000 % 1000)
    }
}

/// The attributes a tree line shows: what the app recorded, and what a
/// request answered.
fn facts(span: &SpanData) -> impl Iterator<Item = &opentelemetry::KeyValue> {
    span.attributes.iter().filter(|kv| {
        let key = kv.key.as_str();
        key.starts_with("app.")
            || (span.span_kind == SpanKind::Server && key == "http.response.status_code")
    })
}

/// A leaf that records nothing of its own, so that others of its name
/// beside it can share its line.
fn plain_leaf(span: &SpanData, node: &Node) -> bool {
    node.children.is_empty()
        && !matches!(span.status, Status::Error { .. })
        && span.events.is_empty()
        && facts(span).next().is_none()
}

/// One line of a tree: a span, or plain leaves of one name.
struct Entry<'a> {
    node: &'a Node,
    count: usize,
    total: Duration,
}

/// `children` in start order, plain leaves of one name folded into the
/// place of the first.
fn entries<'a>(spans: &[SharedSpan], children: &'a [Node]) -> Vec<Entry<'a>> {
    let mut entries: Vec<Entry<'a>> = Vec::with_capacity(children.len());
    for node in children {
        let span = &spans[node.span];
        if plain_leaf(span, node)
            && let Some(entry) = entries.iter_mut().find(|entry| {
                let first = &spans[entry.node.span];
                first.name == span.name && plain_leaf(first, entry.node)
            })
        {
            entry.count += 1;
            entry.total += elapsed(span);
            continue;
        }
        entries.push(Entry {
            node,
            count: 1,
            total: elapsed(span),
        });
    }
    entries
}

/// Prints `trace` as indented trees (one, unless parts of it were
/// printed apart).
pub fn write(trace: &Trace, colour: bool, out: &mut String) {
    let painter = Painter { colour };
    let spans = &trace.spans;
    for root in forest(spans) {
        let span = &spans[root.span];
        let entry = Entry {
            node: &root,
            count: 1,
            total: elapsed(span),
        };
        line(&painter, spans, &entry, out);
        painter.paint(
            out,
            DIM,
            &format!(" trace_id={:032x}", span.span_context.trace_id()),
        );
        let parent = span.parent_span_id;
        if parent != SpanId::INVALID && !span.parent_span_is_remote {
            let note = match trace.ending {
                Ending::Late => format!(" (ended after its parent {parent:016x} was printed)"),
                _ => format!(" (its parent {parent:016x} had not ended)"),
            };
            painter.paint(out, DIM, &note);
        }
        out.push('\n');
        branches(&painter, spans, &root.children, "", out);
    }
}

fn branches(
    painter: &Painter,
    spans: &[SharedSpan],
    children: &[Node],
    indent: &str,
    out: &mut String,
) {
    let entries = entries(spans, children);
    let last = entries.len().saturating_sub(1);
    for (at, entry) in entries.iter().enumerate() {
        let (branch, below) = if at == last {
            ("└─ ", "   ")
        } else {
            ("├─ ", "│  ")
        };
        painter.paint(out, DIM, &format!("{indent}{branch}"));
        line(painter, spans, entry, out);
        out.push('\n');
        branches(
            painter,
            spans,
            &entry.node.children,
            &format!("{indent}{below}"),
            out,
        );
    }
}

/// Name, count, duration, kind, error, facts and events: one line, no end.
fn line(painter: &Painter, spans: &[SharedSpan], entry: &Entry<'_>, out: &mut String) {
    let span = &spans[entry.node.span];
    painter.paint(out, BOLD, &span.name);
    if span.span_kind != SpanKind::Internal {
        out.push(' ');
        painter.paint(out, DIM, &format!("({})", kind_name(&span.span_kind)));
    }
    if entry.count > 1 {
        let _ = write!(out, " ×{}", entry.count);
    }
    out.push(' ');
    painter.paint(out, CYAN, &duration(entry.total));
    if entry.count > 1 {
        out.push_str(" in all");
    }
    if let Status::Error { description } = &span.status {
        out.push(' ');
        painter.paint(out, RED, &format!("error: {description}"));
    }
    for kv in facts(span) {
        out.push(' ');
        painter.paint(out, DIM, &format!("{}=", kv.key));
        out.push_str(&kv.value.as_str());
    }
    for event in span.events.iter() {
        out.push(' ');
        painter.paint(out, DIM, "event=");
        out.push_str(&event.name);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use opentelemetry::KeyValue;

    use super::*;
    use crate::telemetry::test_span::span;

    /// A feed request: server, service, two queries, as they end.
    pub(in crate::telemetry::console) fn request() -> Trace {
        let mut root = span(0xabc, 1, 0, "GET /api/activities/home", 0, 6);
        root.span_kind = SpanKind::Server;
        root.attributes = vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("http.response.status_code", 200),
        ];
        let mut service = span(0xabc, 2, 1, "home_activities", 1, 4);
        service.attributes = vec![KeyValue::new("app.result_length", 5)];
        let query = |id, name, start| {
            let mut query = span(0xabc, id, 2, name, start, 1);
            query.span_kind = SpanKind::Client;
            query.attributes = vec![KeyValue::new("db.system.name", "sqlite")];
            query
        };
        Trace {
            spans: vec![
                query(4, "SELECT replies", 3).into(),
                query(3, "SELECT activities home", 2).into(),
                service.into(),
                root.into(),
            ],
            ending: Ending::Whole,
        }
    }

    #[test]
    fn a_request_reads_as_a_tree_with_durations_and_app_facts() {
        let mut out = String::new();
        write(&request(), false, &mut out);
        assert_eq!(
            out,
            "GET /api/activities/home (server) 6.000ms http.response.status_code=200 \
             trace_id=00000000000000000000000000000abc\n\
             └─ home_activities 4.000ms app.result_length=5\n\
             \u{20}  ├─ SELECT activities home (client) 1.000ms\n\
             \u{20}  └─ SELECT replies (client) 1.000ms\n"
        );
    }

    #[test]
    fn colour_only_when_asked() {
        let mut plain = String::new();
        write(&request(), false, &mut plain);
        assert!(!plain.contains('\x1b'));
        let mut coloured = String::new();
        write(&request(), true, &mut coloured);
        assert!(coloured.contains(&format!("{BOLD}home_activities{RESET}")));
        assert!(coloured.contains(&format!("{CYAN}4.000ms{RESET}")));
    }

    #[test]
    fn repeated_plain_leaves_share_a_line_and_anything_else_keeps_its_own() {
        let mut failed = span(7, 9, 1, "INSERT users", 6, 1);
        failed.status = Status::error("constraint");
        let spans = vec![
            span(7, 1, 0, "open_database", 0, 20),
            span(7, 2, 1, "INSERT users", 1, 1),
            span(7, 3, 1, "INSERT activities", 2, 2),
            span(7, 4, 1, "INSERT users", 3, 1),
            span(7, 5, 1, "INSERT activities", 4, 2),
            span(7, 6, 1, "INSERT users", 5, 1),
            failed,
        ];
        let mut out = String::new();
        write(
            &Trace {
                spans: spans.into_iter().map(Into::into).collect(),
                ending: Ending::Whole,
            },
            false,
            &mut out,
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[1..],
            [
                "├─ INSERT users ×3 3.000ms in all",
                "├─ INSERT activities ×2 4.000ms in all",
                "└─ INSERT users 1.000ms error: constraint",
            ]
        );
    }

    #[test]
    fn parts_printed_apart_say_where_they_belong() {
        let trace = Trace {
            spans: vec![span(7, 5, 4, "background", 0, 1).into()],
            ending: Ending::Late,
        };
        let mut out = String::new();
        write(&trace, false, &mut out);
        assert!(
            out.ends_with("(ended after its parent 0000000000000004 was printed)\n"),
            "{out}"
        );
        let unfinished = Trace {
            ending: Ending::Unfinished,
            ..trace
        };
        let mut out = String::new();
        write(&unfinished, false, &mut out);
        assert!(
            out.ends_with("(its parent 0000000000000004 had not ended)\n"),
            "{out}"
        );
    }

    #[test]
    fn durations_read_in_milliseconds_then_seconds() {
        assert_eq!(duration(Duration::from_micros(489)), "0.489ms");
        assert_eq!(duration(Duration::from_micros(999_999)), "999.999ms");
        assert_eq!(duration(Duration::from_micros(1_204_000)), "1.204s");
    }
}

//! Reading a span's or an event's fields: the values as typed attributes,
//! and the fields tracing-opentelemetry gives meaning to (`otel.name`,
//! `otel.kind`, `otel.status_code`, `otel.status_description`).

use std::borrow::Cow;

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{KeyValue, Value};
use tracing::field::{Field, Visit};

use super::Recording;

fn span_kind(text: &str) -> Option<SpanKind> {
    [
        ("server", SpanKind::Server),
        ("client", SpanKind::Client),
        ("producer", SpanKind::Producer),
        ("consumer", SpanKind::Consumer),
        ("internal", SpanKind::Internal),
    ]
    .into_iter()
    .find_map(|(name, kind)| text.eq_ignore_ascii_case(name).then_some(kind))
}

fn status(text: &str) -> Status {
    if text.eq_ignore_ascii_case("ok") {
        Status::Ok
    } else if text.eq_ignore_ascii_case("error") {
        Status::error("")
    } else {
        Status::Unset
    }
}

/// Whose fields a [`Fields`] reads: a span's `otel.*` fields give its name,
/// kind and status; an event's `message` is its name.
#[derive(Clone, Copy, Default, PartialEq)]
pub(super) enum Owner {
    #[default]
    Span,
    Event,
}

/// A span's or an event's fields as attributes, and the name, kind and
/// status they set. Collected before the span's recording is locked, so that
/// a field whose formatting logs cannot deadlock on it.
#[derive(Default)]
pub(super) struct Fields {
    pub(super) owner: Owner,
    pub(super) name: Option<Cow<'static, str>>,
    pub(super) kind: Option<SpanKind>,
    pub(super) status: Option<Status>,
    pub(super) attributes: Vec<KeyValue>,
}

impl Fields {
    fn text(&mut self, field: &Field, text: Cow<'_, str>) {
        match (self.owner, field.name()) {
            (Owner::Event, "message") | (Owner::Span, "otel.name") => {
                self.name = Some(Cow::Owned(text.into_owned()));
            }
            (Owner::Span, "otel.kind") => self.kind = span_kind(&text).or(self.kind.take()),
            (Owner::Span, "otel.status_code") => self.status = Some(status(&text)),
            (Owner::Span, "otel.status_description") => {
                self.status = Some(Status::error(text.into_owned()));
            }
            (_, name) => self
                .attributes
                .push(KeyValue::new(name, Value::String(text.into_owned().into()))),
        }
    }

    /// Applies a span's later fields (`Span::record`) to its recording.
    pub(super) fn apply(self, span: &mut Recording) {
        if let Some(name) = self.name {
            span.name = name;
        }
        if let Some(kind) = self.kind {
            span.kind = kind;
        }
        if let Some(status) = self.status {
            span.status = status;
        }
        span.attributes.extend(self.attributes);
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, Cow::Borrowed(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.text(field, Cow::Owned(format!("{value:?}")));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.attributes.push(KeyValue::new(field.name(), value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(value) => self.record_i64(field, value),
            Err(_) => self.text(field, Cow::Owned(value.to_string())),
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.attributes.push(KeyValue::new(field.name(), value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.attributes.push(KeyValue::new(field.name(), value));
    }
}

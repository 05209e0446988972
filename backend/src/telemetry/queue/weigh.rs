//! What the spans and attributes every span sink queues weigh.

use std::mem::size_of;

use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;

use super::Weigh;

/// Attributes: each pair's own size plus its strings.
fn attributes(attributes: &[KeyValue]) -> usize {
    attributes
        .iter()
        .map(|kv| size_of::<KeyValue>() + kv.key.as_str().len() + value(&kv.value))
        .sum()
}

fn value(value: &Value) -> usize {
    match value {
        Value::String(text) => text.as_str().len(),
        Value::Array(array) => array.to_string().len(),
        _ => 0,
    }
}

impl Weigh for SpanData {
    fn weight(&self) -> usize {
        let events: usize = self
            .events
            .iter()
            .map(|event| event.name.len() + attributes(&event.attributes))
            .sum();
        let links: usize = self
            .links
            .iter()
            .map(|link| attributes(&link.attributes))
            .sum();
        size_of::<SpanData>()
            + self.name.len()
            + attributes(&self.attributes)
            + self.events.len() * size_of::<opentelemetry::trace::Event>()
            + events
            + self.links.len() * size_of::<opentelemetry::trace::Link>()
            + links
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use opentelemetry::InstrumentationScope;
    use opentelemetry::trace::{SpanContext, SpanKind, Status};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};

    use super::*;

    fn span(attributes: Vec<KeyValue>) -> SpanData {
        SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: opentelemetry::trace::SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: "GET /api/activities/home".into(),
            start_time: UNIX_EPOCH,
            end_time: UNIX_EPOCH,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("cruddur").build(),
        }
    }

    #[test]
    fn a_span_weighs_its_own_size_plus_its_strings() {
        let plain = span(vec![KeyValue::new("http.response.status_code", 200)]);
        let heavier = span(vec![
            KeyValue::new("http.response.status_code", 200),
            KeyValue::new("app.message", "m".repeat(1000)),
        ]);
        assert_eq!(
            plain.weight(),
            size_of::<SpanData>()
                + "GET /api/activities/home".len()
                + size_of::<KeyValue>()
                + "http.response.status_code".len()
        );
        assert_eq!(
            heavier.weight() - plain.weight(),
            size_of::<KeyValue>() + "app.message".len() + 1000
        );
    }
}

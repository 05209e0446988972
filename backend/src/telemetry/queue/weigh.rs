//! What the spans and attributes every span sink queues weigh.

use std::mem::size_of;

use opentelemetry::{Array, KeyValue, StringValue, Value};
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
        Value::Array(Array::String(texts)) => texts
            .iter()
            .map(|text| size_of::<StringValue>() + text.as_str().len())
            .sum(),
        Value::Array(Array::I64(numbers)) => numbers.len() * size_of::<i64>(),
        Value::Array(Array::F64(numbers)) => numbers.len() * size_of::<f64>(),
        Value::Array(Array::Bool(flags)) => flags.len(),
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
    use opentelemetry::trace::SpanKind;

    use super::*;
    use crate::telemetry::test_span;

    fn span(attributes: Vec<KeyValue>) -> SpanData {
        SpanData {
            span_kind: SpanKind::Server,
            attributes,
            ..test_span::span(0, 0, 0, "GET /api/activities/home", 0, 0)
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

    #[test]
    fn an_array_attribute_weighs_its_elements_without_formatting_them() {
        let texts = KeyValue::new(
            "a",
            Value::Array(Array::String(vec!["xy".into(), "z".into()])),
        );
        let numbers = KeyValue::new("a", Value::Array(Array::I64(vec![1, 2, 3])));
        let pair = size_of::<KeyValue>() + 1;
        assert_eq!(
            attributes(&[texts]),
            pair + 2 * size_of::<StringValue>() + 3
        );
        assert_eq!(attributes(&[numbers]), pair + 3 * size_of::<i64>());
    }
}

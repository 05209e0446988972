//! One database statement, the CLIENT span it runs in and the duration it
//! adds to `db.client.operation.duration`, shared by every backend so
//! their spans and metrics carry the same OpenTelemetry attributes.

use std::collections::HashMap;
use std::sync::{OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{BoundHistogram, Histogram};
use tracing::Span;
use tracing::field::Empty;

/// One statement and the names its span carries. A backend keeps its
/// statements as constants of this type and runs each inside [`Statement::span`].
pub struct Statement {
    /// The span's name: operation and collection, plus what tells it apart.
    pub name: &'static str,
    pub operation: &'static str,
    pub collection: &'static str,
    /// The statement as sent: parameters, never values.
    pub sql: &'static str,
}

impl Statement {
    /// The statement's CLIENT span for the database `system` (`db.system.name`).
    /// A backend with a server records `server.address`, `server.port` and
    /// `db.namespace` on it; left empty, they are not attributes at all.
    pub fn span(&self, system: &'static str) -> Span {
        tracing::info_span!(
            "db.query",
            otel.name = self.name,
            otel.kind = "client",
            db.system.name = system,
            db.operation.name = self.operation,
            db.collection.name = self.collection,
            db.query.text = self.sql,
            server.address = Empty,
            server.port = Empty,
            db.namespace = Empty,
        )
    }

    /// Adds one run's duration to `db.client.operation.duration`, for the
    /// database `system`.
    pub fn observe(&self, system: &'static str, took: Duration) {
        durations().record(self, system, took.as_secs_f64());
    }

    /// Runs `work` (a backend's blocking call) inside the statement's span,
    /// its duration observed.
    pub fn timed<T>(&self, system: &'static str, work: impl FnOnce() -> T) -> T {
        let _entered = self.span(system).entered();
        let started = Instant::now();
        let answer = work();
        self.observe(system, started.elapsed());
        answer
    }
}

/// Seconds, fine at the low end: an embedded database answers in tens of
/// microseconds.
const DURATION_BOUNDS: &[f64] = &[
    0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0,
];

/// The histogram, each statement's series bound once (by the address of
/// its SQL, a constant), from the global meter provider: the one
/// telemetry installed, or none (then nothing is recorded).
struct Durations {
    histogram: Histogram<f64>,
    series: RwLock<HashMap<usize, BoundHistogram<f64>>>,
}

fn durations() -> &'static Durations {
    static DURATIONS: OnceLock<Durations> = OnceLock::new();
    DURATIONS.get_or_init(|| Durations {
        histogram: opentelemetry::global::meter("cruddur-backend")
            .f64_histogram("db.client.operation.duration")
            .with_unit("s")
            .with_description("Duration of database client operations.")
            .with_boundaries(DURATION_BOUNDS.to_vec())
            .build(),
        series: RwLock::default(),
    })
}

impl Durations {
    /// Records in the statement's series, bound on its first run.
    fn record(&self, statement: &Statement, system: &'static str, seconds: f64) {
        let key = statement.sql.as_ptr() as usize;
        if let Some(bound) = self
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            bound.record(seconds);
            return;
        }
        self.series
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_insert_with(|| {
                self.histogram.bind(&[
                    KeyValue::new("db.system.name", system),
                    KeyValue::new("db.operation.name", statement.operation),
                    KeyValue::new("db.collection.name", statement.collection),
                ])
            })
            .record(seconds);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::Attributes;
    use tracing::subscriber::Subscriber;
    use tracing::{Id, Level};
    use tracing_subscriber::layer::{Context, SubscriberExt};
    use tracing_subscriber::registry::LookupSpan;

    use super::*;

    /// Keeps the fields each new span was given a value for.
    #[derive(Clone, Default)]
    struct Given(Arc<Mutex<Vec<(String, String)>>>);

    impl Visit for Given {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let value = format!("{value:?}").trim_matches('"').to_owned();
            self.0
                .lock()
                .unwrap()
                .push((field.name().to_owned(), value));
        }
    }

    impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Given {
        fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
            attrs.record(&mut self.clone());
        }
    }

    const SELECT: Statement = Statement {
        name: "SELECT users",
        operation: "SELECT",
        collection: "users",
        sql: "SELECT display_name FROM users WHERE handle = ?1",
    };

    #[test]
    fn a_span_carries_the_database_attributes_and_nothing_unset() {
        let given = Given::default();
        let subscriber = tracing_subscriber::registry().with(given.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = SELECT.span("sqlite");
            assert_eq!(span.metadata().unwrap().level(), &Level::INFO);
            assert!(span.has_field("server.address") && span.has_field("db.namespace"));
        });
        let fields = given.0.lock().unwrap().clone();
        let expected = [
            ("otel.name", "SELECT users"),
            ("otel.kind", "client"),
            ("db.system.name", "sqlite"),
            ("db.operation.name", "SELECT"),
            ("db.collection.name", "users"),
            (
                "db.query.text",
                "SELECT display_name FROM users WHERE handle = ?1",
            ),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        assert_eq!(fields, expected);
    }
}

//! The app's own counters (issue 15), from the global meter provider that
//! telemetry sets when metrics are on (a no-op otherwise): what was
//! created, and which validation codes requests were refused with.

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;

struct Counters {
    cruds: Counter<u64>,
    replies: Counter<u64>,
    messages: Counter<u64>,
    rejected: Counter<u64>,
}

fn counters() -> &'static Counters {
    static COUNTERS: OnceLock<Counters> = OnceLock::new();
    COUNTERS.get_or_init(|| {
        let meter = opentelemetry::global::meter("cruddur-backend");
        let counter = |name: &'static str, unit: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_unit(unit)
                .with_description(description)
                .build()
        };
        Counters {
            cruds: counter("app.cruds.created", "{crud}", "Cruds created."),
            replies: counter("app.replies.created", "{reply}", "Replies created."),
            messages: counter("app.messages.created", "{message}", "Direct messages sent."),
            rejected: counter(
                "app.validation.rejected",
                "{code}",
                "Validation codes requests were refused with, by code.",
            ),
        }
    })
}

/// What a service created.
pub enum Created {
    Crud,
    Reply,
    Message,
}

pub fn created(what: Created) {
    let counters = counters();
    let counter = match what {
        Created::Crud => &counters.cruds,
        Created::Reply => &counters.replies,
        Created::Message => &counters.messages,
    };
    counter.add(1, &[]);
}

/// Counts each code a request was refused with.
pub fn rejected(codes: &[&'static str]) {
    for code in codes {
        counters()
            .rejected
            .add(1, &[KeyValue::new("app.validation.code", *code)]);
    }
}

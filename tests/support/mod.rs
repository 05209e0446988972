//! Shared helpers for the integration tests. Use with `mod support;`.
#![allow(dead_code)]

pub mod app;
pub mod faults;
pub mod gate;
pub mod load;
pub mod moto;
pub mod otlp;
pub mod postgres;
pub mod rig;
pub mod rollbar;
pub mod server;
pub mod sigv4;
pub mod xray;
pub mod xray_api;

/// The trace ids of the trace explorer's list (`/_explorer/api/traces`)
/// whose traces are whole: their root, filed last (and possibly after the
/// client has its answer), is in, with its status code.
pub fn whole_traces(list: &serde_json::Value) -> Vec<&str> {
    list["traces"]
        .as_array()
        .expect("a trace list")
        .iter()
        .filter(|t| !t["status_code"].is_null())
        .map(|t| t["trace_id"].as_str().expect("a trace id"))
        .collect()
}

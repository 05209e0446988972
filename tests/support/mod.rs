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
pub mod xray;
pub mod xray_api;

//! AWS X-Ray: a second trace sink on the same tracer provider, so X-Ray
//! shows the very trace (same id) that OTLP carries.
//!
//! `translate` turns spans into segment documents (pure); `daemon` sends
//! them to the X-Ray daemon over UDP, `api` to PutTraceSegments, and `otlp`
//! sends the spans themselves to X-Ray's SigV4-signed OTLP endpoint;
//! `sampling` decides per trace which traces reach X-Ray, by X-Ray's rules;
//! `setup` creates the group and rules in the X-Ray API.

pub mod api;
pub mod centralized;
pub mod daemon;
pub mod otlp;
pub mod sampling;
pub mod setup;
pub mod translate;

//! Request middleware: the server span around each request, and the
//! panic catcher that turns a handler panic into the API's JSON 500.

pub mod panic;
pub mod request_span;

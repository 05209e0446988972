//! Request middleware: the server span around each request, the panic
//! catcher that turns a handler panic into the API's JSON 500, and the
//! error-reporting hook.

pub mod panic;
pub mod request_span;
pub mod rollbar;

//! Request middleware: the server span around each request (which runs the
//! sinks' request hooks inside it), the request deadline, and the panic
//! catcher that turns a handler panic into the API's JSON 500.

pub mod panic;
pub mod request_span;
pub mod timeout;

//! A panicking handler answers a JSON 500 instead of dropping the connection.

use std::any::Any;

use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// `CatchPanicLayer` callback: the panic message stays in the process (in the
/// response's `InternalCause`, for the request span to record).
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "handler panicked".to_owned()
    };
    ApiError::Internal(format!("panic: {message}")).into_response()
}

//! One function per use case, each in its own span with the `app.*` facts a
//! person filtering traces needs. No HTTP types and no environment here.

pub mod activities;
pub mod messages;

use tracing::Span;

use crate::domain::{Handle, HandleError};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid input: {0:?}")]
    Invalid(Vec<&'static str>),
    #[error("{0}")]
    NotFound(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(crate) const NO_SUCH_USER: &str = "no user has that handle";

/// A handle from a path: blank is a validation error, one that cannot
/// exist is simply not found.
fn path_handle(raw: &str) -> Result<Handle, ServiceError> {
    raw.parse().map_err(|err| match err {
        HandleError::Blank => ServiceError::Invalid(vec!["user_handle_blank"]),
        HandleError::Invalid => ServiceError::NotFound(NO_SUCH_USER),
    })
}

/// Records how many items a service answers with on its span.
fn counted<T>(items: Vec<T>) -> Vec<T> {
    Span::current().record("app.result_length", items.len() as i64);
    items
}

/// Checks a message body: present, not blank, at most `max` characters.
fn check_message(message: Option<&str>, max: usize, codes: &mut Vec<&'static str>) {
    match message.map(str::trim) {
        None | Some("") => codes.push("message_blank"),
        Some(text) if text.chars().count() > max => codes.push("message_exceed_max_chars"),
        Some(_) => {}
    }
}

//! One function per use case, each in its own span with the `app.*` facts a
//! person filtering traces needs. No HTTP types and no environment here.

pub mod activities;
pub mod cache;
pub mod counters;
pub mod messages;

use tracing::Span;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

use crate::domain::{Handle, HandleError};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The 422 codes, as the Flask backend spelled them.
    #[error("invalid input: {0:?}")]
    Invalid(Vec<&'static str>),
    #[error("{0}")]
    NotFound(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(crate) const NO_SUCH_USER: &str = "no user has that handle";
pub(crate) use activities::NO_SUCH_CRUD;

/// Defines the validation codes one use case can answer: an enum whose
/// variants are its only codes, each spelled once, for the 422 answer and
/// for the OpenAPI document's list of that operation's codes alike.
macro_rules! validation_codes {
    ($(#[$meta:meta])* pub enum $name:ident { $($variant:ident = $code:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($variant,)+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $code,)+ }
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $crate::services::codes_schema(&[$($code),+])
            }
        }

        impl utoipa::ToSchema for $name {}

        impl From<Vec<$name>> for $crate::services::ServiceError {
            fn from(codes: Vec<$name>) -> Self {
                let codes: Vec<&'static str> = codes.into_iter().map($name::as_str).collect();
                $crate::services::counters::rejected(&codes);
                $crate::services::ServiceError::Invalid(codes)
            }
        }
    };
}
pub(crate) use validation_codes;

/// A string that is one of `codes`.
pub(crate) fn codes_schema(codes: &[&str]) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(codes.iter().copied()))
        .into()
}

validation_codes! {
    /// Why a handle in a path is refused: one that cannot exist is a 404.
    pub enum PathHandleInvalid {
        UserHandleBlank = "user_handle_blank",
    }
}

/// A handle from a path: blank is a validation error, one that cannot
/// exist is simply not found.
fn path_handle(raw: &str) -> Result<Handle, ServiceError> {
    raw.parse().map_err(|err| match err {
        HandleError::Blank => vec![PathHandleInvalid::UserHandleBlank].into(),
        HandleError::Invalid => ServiceError::NotFound(NO_SUCH_USER),
    })
}

/// Records how many items a service answers with on its span.
fn counted<T>(items: Vec<T>) -> Vec<T> {
    Span::current().record("app.result_length", items.len() as i64);
    items
}

/// Checks a message body: present, not blank once trimmed, at most `max`
/// characters as sent (the original's limit, and the document's
/// `maxLength`); answers `blank` or `too_long` if not.
fn check_message<C>(
    message: Option<&str>,
    max: usize,
    [blank, too_long]: [C; 2],
    codes: &mut Vec<C>,
) {
    match message {
        None => codes.push(blank),
        Some(text) if text.trim().is_empty() => codes.push(blank),
        Some(text) if text.chars().count() > max => codes.push(too_long),
        Some(_) => {}
    }
}

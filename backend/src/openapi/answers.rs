//! The error answers the operations document, made from the `ApiError`
//! variants themselves: each response's status, `error` code and
//! `Retry-After` header come from the methods its answer is made with, so
//! the document cannot promise a code the backend does not send.

use std::collections::BTreeMap;

use utoipa::PartialSchema;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Ref, Schema, Type};
use utoipa::openapi::{ContentBuilder, RefOr, Response, ResponseBuilder};

use crate::error::{ApiError, ErrorBody};
use crate::services::{NO_SUCH_CRUD, NO_SUCH_USER};

/// The responses for `errors`: each refers to its code's entry in
/// `components.responses` ([`by_code`]) with its own description.
pub fn documented(errors: &[(ApiError, &str)]) -> BTreeMap<String, RefOr<Response>> {
    errors
        .iter()
        .map(|(error, description)| {
            let code = error
                .code()
                .expect("a 422 documents its own list of codes, not the error shape");
            let mut reference = Ref::from_response_name(code);
            reference.description = (*description).to_owned();
            (error.status().as_u16().to_string(), RefOr::Ref(reference))
        })
        .collect()
}

fn error_response(error: &ApiError, code: &str, description: &str) -> Response {
    let mut body = match ErrorBody::schema() {
        RefOr::T(Schema::Object(body)) => body,
        _ => unreachable!("ErrorBody derives an object schema"),
    };
    body.properties.insert(
        "error".into(),
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some([code]))
            .into(),
    );
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new().schema(Some(body)).build(),
    );
    if error.retries() {
        response = response.header(
            "retry-after",
            HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                .description(Some("seconds to wait before trying again"))
                .build(),
        );
    }
    response.build()
}

/// Declares a type whose `IntoResponses` are the given `ApiError`s, for
/// `#[utoipa::path(responses(...))]`.
macro_rules! error_answers {
    ($(#[$meta:meta])* pub struct $name:ident { $($error:expr => $description:expr,)+ }) => {
        $(#[$meta])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::Response>,
            > {
                $crate::openapi::answers::documented(&[$(($error, $description)),+])
            }
        }
    };
}
pub(crate) use error_answers;

error_answers! {
    /// What any operation that reads or writes the store may answer.
    pub struct StoreErrors {
        ApiError::Internal(String::new()) => "something failed inside; the cause is logged and reported, never sent",
        ApiError::Unavailable(String::new()) => "the database is busy or not answering",
    }
}

error_answers! {
    /// What the readiness check answers when the store does not.
    pub struct NotReady {
        ApiError::Unavailable(String::new()) => "the database did not answer a trivial query within a second",
    }
}

error_answers! {
    /// What an operation taking a JSON object body may answer.
    pub struct BodyErrors {
        ApiError::BadRequest(String::new()) => "malformed JSON, a value of the wrong JSON type, or a body that is not a JSON object",
        ApiError::PayloadTooLarge => "a body over 64 KiB",
        ApiError::UnsupportedMediaType(String::new()) => "a body whose Content-Type is not application/json",
    }
}

error_answers! {
    /// What an operation that stores something may answer besides.
    pub struct WriteErrors {
        ApiError::Conflict => "the change clashes with data already stored",
    }
}

error_answers! {
    /// What an operation reading a query string may answer.
    pub struct QueryErrors {
        ApiError::BadRequest(String::new()) => "a malformed query string, such as a parameter given twice",
    }
}

error_answers! {
    /// A crud's uuid that names no live crud or reply.
    pub struct UnknownCrud {
        ApiError::NotFound(NO_SUCH_CRUD) => NO_SUCH_CRUD,
    }
}

error_answers! {
    /// A handle that names no user, including handles that cannot exist.
    pub struct UnknownUser {
        ApiError::NotFound(NO_SUCH_USER) => NO_SUCH_USER,
    }
}

/// Every answer in the JSON error shape, named by its code, for the
/// document's `components.responses`: those the operations list, and
/// `method_not_allowed` (405, with `Allow`), which any path answers for a
/// method it does not document.
pub fn by_code() -> BTreeMap<String, RefOr<Response>> {
    let errors = [
        (
            ApiError::BadRequest(String::new()),
            "the request cannot be read",
        ),
        (
            ApiError::Forbidden(""),
            "the request is not allowed from where it came",
        ),
        (
            ApiError::NotFound(""),
            "no such path, or nothing by that name",
        ),
        (
            ApiError::MethodNotAllowed,
            "a method the path does not document",
        ),
        (
            ApiError::Conflict,
            "the change clashes with data already stored",
        ),
        (ApiError::PayloadTooLarge, "a body over 64 KiB"),
        (
            ApiError::UnsupportedMediaType(String::new()),
            "a body of a content type the operation does not take",
        ),
        (ApiError::TooManyRequests, "over the rate limit"),
        (
            ApiError::Internal(String::new()),
            "something failed inside; the cause is logged and reported, never sent",
        ),
        (
            ApiError::Unavailable(String::new()),
            "the database is busy or not answering",
        ),
    ];
    errors
        .iter()
        .filter_map(|(error, description)| {
            let code = error.code()?;
            Some((
                code.to_owned(),
                error_response(error, code, description).into(),
            ))
        })
        .collect()
}

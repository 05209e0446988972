//! Schemas of the API's inputs, made from the limits the services apply,
//! so that what the document calls valid is exactly what the backend
//! accepts (a fuzzer sends both sides of every limit).

use std::sync::LazyLock;

use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use crate::domain::{MAX_ACTIVITY_CHARS, MAX_MESSAGE_CHARS, MAX_SEARCH_CHARS, Ttl};

/// A parameter with one of these schemas, for `IntoParams` (the derive
/// cannot mark a parameter with a schema of its own required).
pub fn parameter(name: &str, place: ParameterIn, required: Required, schema: Object) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(place)
        .required(required)
        .schema(Some(schema))
        .build()
}

/// What `str::trim` removes (Unicode White_Space), as the body of a
/// regular expression character class.
static WHITESPACE_CLASS: LazyLock<String> = LazyLock::new(|| {
    let mut class = String::new();
    let mut chars = ('\0'..=char::MAX).filter(|c| c.is_whitespace()).peekable();
    while let Some(first) = chars.next() {
        let mut last = first;
        while let Some(&next) = chars.peek() {
            if u32::from(next) != u32::from(last) + 1 {
                break;
            }
            last = next;
            chars.next();
        }
        class.push_str(&format!("\\u{:04x}", u32::from(first)));
        if last != first {
            class.push_str(&format!("-\\u{:04x}", u32::from(last)));
        }
    }
    class
});

/// Contains a character `str::trim` keeps: not blank.
fn not_blank_pattern() -> String {
    format!("[^{}]", *WHITESPACE_CLASS)
}

/// Text that is not blank once trimmed, at most `max` characters.
fn text(max: usize, description: &str, example: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(not_blank_pattern()))
        .description(Some(description))
        .examples([example])
        .build()
}

pub fn crud_message() -> Object {
    text(
        MAX_ACTIVITY_CHARS,
        "the crud: not blank, at most 280 characters",
        "Hello Cruddur",
    )
}

pub fn message() -> Object {
    text(
        MAX_MESSAGE_CHARS,
        "the reply or message: not blank, at most 1024 characters",
        "Qapla'!",
    )
}

pub fn search_term() -> Object {
    text(
        MAX_SEARCH_CHARS,
        "found in a crud's message, case-insensitively (`%` and `_` are literal); not blank, \
         at most 280 characters",
        "prune",
    )
}

/// A browser's `Origin` header.
pub fn origin() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "the page's origin: FRONTEND_URL or BACKEND_URL (else 403)",
        ))
        .build()
}

/// A handle; whitespace around it is trimmed, as `Handle` parses it.
pub fn handle() -> Object {
    let space = format!("[{}]*", *WHITESPACE_CLASS);
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^{space}[a-z0-9_]{{1,32}}{space}$")))
        .description(Some(
            "a user's handle: 1 to 32 of a-z, 0-9 and _ (whitespace around it is ignored)",
        ))
        .examples(["worf"])
        .build()
}

pub fn ttl() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(Ttl::ALL.map(Ttl::as_str)))
        .description(Some("how long the crud lives"))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whitespace_class_is_what_trim_removes() {
        // 9-d, 20, 85, a0, 1680, 2000-200a, 2028-2029, 202f, 205f, 3000
        assert_eq!(
            *WHITESPACE_CLASS,
            "\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028-\\u2029\\u202f\\u205f\\u3000"
        );
        let mut one = [0; 4];
        for c in '\0'..=char::MAX {
            let trimmed = c.encode_utf8(&mut one).trim().is_empty();
            assert_eq!(trimmed, c.is_whitespace(), "{:04x}", u32::from(c));
        }
    }
}

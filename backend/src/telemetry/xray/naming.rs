//! X-Ray's names: how a segment is named (`AWS_XRAY_TRACING_NAME`, the
//! `AWS_XRAY_URL` dynamic naming pattern), the `*`/`?` wildcards that
//! naming and sampling rules share, and the characters X-Ray accepts in
//! names and annotation keys.

/// X-Ray's limit for names.
const MAX_NAME_CHARS: usize = 200;

/// How segments are named: `AWS_XRAY_TRACING_NAME` (else the service name),
/// or the request's host when it matches the `AWS_XRAY_URL` pattern.
#[derive(Debug, Clone)]
pub struct Naming {
    pub fallback: String,
    pub pattern: Option<String>,
}

impl Naming {
    pub(super) fn segment_name(&self, host: Option<&str>) -> String {
        let name = match (&self.pattern, host) {
            (Some(pattern), Some(host)) if wildcard_match(pattern, host) => host,
            _ => self.fallback.as_str(),
        };
        sanitize_name(name)
    }
}

/// X-Ray's `*` (any run) and `?` (one character) wildcards, case-insensitive.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    // Every trace's root is matched against every rule: the common `*` and
    // ASCII cases must not allocate.
    if pattern == "*" {
        return true;
    }
    if pattern.is_ascii() && text.is_ascii() {
        return glob(pattern.as_bytes(), text.as_bytes(), |a, b| {
            a.eq_ignore_ascii_case(b)
        });
    }
    let pattern: Vec<char> = pattern.to_lowercase().chars().collect();
    let text: Vec<char> = text.to_lowercase().chars().collect();
    glob(&pattern, &text, |a, b| a == b)
}

/// `*`/`?` matching with one backtrack point, over bytes or chars.
fn glob<T: Copy + PartialEq + From<u8>>(
    pattern: &[T],
    text: &[T],
    same: impl Fn(&T, &T) -> bool,
) -> bool {
    let (any, one) = (T::from(b'*'), T::from(b'?'));
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == one || same(&pattern[p], &text[t])) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == any {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == any)
}

/// Keeps what X-Ray accepts in a name (letters, digits, spaces and
/// `_.:/%&#=+-@`), replacing anything else with `_`.
pub fn sanitize_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == ' ' || "_.:/%&#=+-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(MAX_NAME_CHARS)
        .collect();
    if clean.is_empty() { "_".into() } else { clean }
}

/// Keeps `[A-Za-z0-9_]` in an annotation key, replacing the rest with `_`.
pub(super) fn annotation_key(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(500)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_names() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("GET", "get"));
        assert!(wildcard_match("/api/*", "/api/activities/home"));
        assert!(wildcard_match(
            "/api/activities/?ome",
            "/api/activities/home"
        ));
        assert!(!wildcard_match("/api/?", "/api/ab"));
        assert!(!wildcard_match("*.com", "example.org"));
        assert!(wildcard_match("*.COM", "example.com"));
        assert!(wildcard_match("café*", "CAFÉ au lait"));
        assert!(!wildcard_match("café?", "café"));
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
        assert!(!wildcard_match("a*b*c", "aXXbYY"));
        assert_eq!(
            sanitize_name("GET /api/activities/@{handle}"),
            "GET /api/activities/@_handle_"
        );
        assert_eq!(sanitize_name(""), "_");
        assert_eq!(sanitize_name(&"n".repeat(500)).len(), MAX_NAME_CHARS);
        assert_eq!(annotation_key("app.user-handle"), "app_user_handle");
    }
}

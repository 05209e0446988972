//! What counts as a secret by its name, and the query strings scrubbed by
//! it: shared by every place that sends request data out of the process
//! (Rollbar's items, the server span's `http.target`).

use serde_json::{Map, Value};

/// What a secret is replaced with.
pub const SCRUBBED: &str = "********";

/// A field, parameter or header whose name contains one of these (ignoring
/// case, `-` and `_`) holds a secret.
const SECRET_NAME_PARTS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "accesskey",
];

pub fn is_secret_name(name: &str) -> bool {
    let folded: String = name
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_NAME_PARTS.iter().any(|part| folded.contains(part))
}

/// `%xx` and `+` decoded, lossily: only used to recognise and show names.
fn form_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| char::from(b).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push((high * 16 + low) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A query string with secret parameters' values replaced, and its
/// parameters as a map (Rollbar's `GET`).
pub fn scrub_query(raw: &str) -> (String, Map<String, Value>) {
    let mut kept = Vec::new();
    let mut params = Map::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = form_decode(key);
        if is_secret_name(&name) {
            kept.push(format!("{key}={SCRUBBED}"));
            params.insert(name, Value::from(SCRUBBED));
        } else {
            kept.push(pair.to_owned());
            params.insert(name, Value::from(form_decode(value)));
        }
    }
    (kept.join("&"), params)
}

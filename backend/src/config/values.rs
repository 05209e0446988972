//! The typed values settings are parsed into, and their parsers: URLs,
//! origins, durations, header and pair lists, secrets, log filters. Every
//! parser answers the reason a value was refused; `explain` in the parent
//! module turns it into one line naming the variable.

use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};
use secrecy::{ExposeSecret, SecretString};
use tracing_subscriber::EnvFilter;

use crate::domain::Handle;

/// A value that must never be printed whole. Held by `secrecy` (zeroed when
/// dropped, never in a `Debug` dump); shown only as its last four characters.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(SecretString::from(value.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = self.expose();
        let count = secret.chars().count();
        if count <= 8 {
            return f.write_str("****");
        }
        let tail: String = secret.chars().skip(count - 4).collect();
        write!(f, "…{tail}")
    }
}

/// A parsed `key=value,...` header list; every value is treated as secret.
#[derive(Clone, Debug)]
pub struct Headers(pub Vec<(HeaderName, Secret)>);

/// A parsed `key=value,...` list of plain values.
#[derive(Clone, Debug, PartialEq)]
pub struct Pairs(pub Vec<(String, String)>);

pub fn parse_handle(raw: &str) -> Result<Handle, String> {
    raw.parse().map_err(|err| format!("{err}"))
}

pub fn parse_url(raw: &str) -> Result<Uri, String> {
    let uri: Uri = raw
        .trim()
        .parse()
        .map_err(|err| format!("not a URL: {err}"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(_)) => Ok(uri),
        _ => Err("must be an http:// or https:// URL with a host".into()),
    }
}

/// An origin as browsers send it: scheme, host and port, no path.
pub fn parse_origin(raw: &str) -> Result<HeaderValue, String> {
    let uri = parse_url(raw)?;
    let origin = format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map(|a| a.as_str()).unwrap_or_default()
    );
    HeaderValue::from_str(&origin).map_err(|err| err.to_string())
}

/// `5s`, `250ms`, `1m 30s` (humantime's forms), or a bare number of seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    if let Ok(seconds) = raw.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(raw).map_err(|err| format!("{err} (try 5s or 500ms)"))
}

/// A zero interval or timeout would spin or fail every call.
pub fn parse_nonzero_duration(raw: &str) -> Result<Duration, String> {
    match parse_duration(raw)? {
        Duration::ZERO => Err("must be more than zero".into()),
        duration => Ok(duration),
    }
}

/// A size in bytes: a bare number, or one with `KiB`, `MiB` or `GiB`
/// (`8MiB`, `512 KiB`); more than zero.
pub fn parse_bytes(raw: &str) -> Result<usize, String> {
    match parse_bytes_or_zero(raw)? {
        0 => Err("must be more than zero".into()),
        bytes => Ok(bytes),
    }
}

/// A size as [`parse_bytes`] reads it, where zero (turning something off)
/// is allowed.
pub fn parse_bytes_or_zero(raw: &str) -> Result<usize, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "kib" => 10,
        "mib" => 20,
        "gib" => 30,
        _ => return Err(format!("not a size: {raw:?} (try 8MiB or 512KiB)")),
    };
    match number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
    {
        Some(bytes) => Ok(bytes),
        None => Err(format!("not a size: {raw:?} (try 8MiB or 512KiB)")),
    }
}

/// A count that must be at least one (`SERVER_MAX_CONNECTIONS`).
pub fn parse_positive(raw: &str) -> Result<NonZeroUsize, String> {
    raw.trim()
        .parse::<NonZeroUsize>()
        .map_err(|_| format!("must be a whole number above zero, got {raw:?}"))
}

pub fn parse_millis(raw: &str) -> Result<Duration, String> {
    raw.trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| format!("not a whole number of milliseconds: {raw:?}"))
}

pub fn parse_ratio(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err(format!("must be a number from 0 to 1, got {raw:?}")),
    }
}

pub fn parse_secret(raw: &str) -> Result<Secret, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("is set but empty".into());
    }
    Ok(Secret::new(raw))
}

/// A tracing-subscriber `EnvFilter` (`info`, `warn,cruddur::access=info`),
/// or `off`; checked here so a typo stops start-up instead of silencing logs.
pub fn parse_filter(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw != "off" {
        EnvFilter::try_new(raw).map_err(|err| err.to_string())?;
    }
    Ok(raw.to_owned())
}

/// Splits a W3C-style `key=value,key2=value2` list, percent-decoding values.
fn split_pairs(raw: &str) -> Result<Vec<(String, String)>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not key=value"))?;
            let key = key.trim();
            if key.is_empty() {
                return Err(format!("{item:?} has an empty key"));
            }
            Ok((key.to_owned(), percent_decode(value.trim())?))
        })
        .collect()
}

fn percent_decode(raw: &str) -> Result<String, String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "has a broken %-escape".to_owned())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "is not UTF-8 once %-decoded".to_owned())
}

pub fn parse_headers(raw: &str) -> Result<Headers, String> {
    split_pairs(raw)?
        .into_iter()
        .map(|(key, value)| {
            let name = HeaderName::from_bytes(key.as_bytes())
                .map_err(|_| format!("{key:?} is not a valid header name"))?;
            HeaderValue::from_str(&value)
                .map_err(|_| format!("the value of {key:?} is not a valid header value"))?;
            Ok((name, Secret::new(value)))
        })
        .collect::<Result<_, String>>()
        .map(Headers)
}

pub fn parse_pairs(raw: &str) -> Result<Pairs, String> {
    split_pairs(raw).map(Pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units_and_refuse_zero_and_overflow() {
        assert_eq!(parse_bytes("8MiB"), Ok(8 << 20));
        assert_eq!(parse_bytes(" 512 KiB "), Ok(512 << 10));
        assert_eq!(parse_bytes("1gib"), Ok(1 << 30));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        for bad in [
            "0",
            "0MiB",
            "",
            "MiB",
            "8MB",
            "-1",
            "1.5MiB",
            "99999999999999999999GiB",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_bytes_or_zero("0"), Ok(0));
        assert_eq!(parse_bytes_or_zero("0KiB"), Ok(0));
        assert_eq!(parse_bytes_or_zero("8MiB"), Ok(8 << 20));
        for bad in ["", "off", "8MB", "-1"] {
            assert!(parse_bytes_or_zero(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_and_origins() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(
            parse_origin("https://3000-abc.gitpod.io/").unwrap(),
            "https://3000-abc.gitpod.io"
        );
    }

    #[test]
    fn secrets_show_only_their_tail() {
        assert_eq!(format!("{:?}", Secret::new("short")), "****");
        assert_eq!(Secret::new("0123456789").to_string(), "…6789");
    }

    #[test]
    fn log_filters_are_checked() {
        assert_eq!(parse_filter(" off ").unwrap(), "off");
        assert_eq!(
            parse_filter("warn,cruddur::access=info").unwrap(),
            "warn,cruddur::access=info"
        );
        assert!(parse_filter("info,[=bad").is_err());
    }
}

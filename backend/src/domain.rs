//! The Cruddur vocabulary: what is stored and what the API answers, with the
//! validation rules of the original backend.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use utoipa::ToSchema;
use uuid::Uuid;

/// Longest crud message, in characters.
pub const MAX_ACTIVITY_CHARS: usize = 280;
/// Longest reply or direct message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 1024;
/// Longest search term: a term longer than any crud can never match.
pub const MAX_SEARCH_CHARS: usize = MAX_ACTIVITY_CHARS;

/// Serializes timestamps as RFC 3339 with microseconds and an explicit offset
/// (`2026-11-21T10:00:00.123456+00:00`), the form the Flask backend produced.
fn rfc3339<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    let mut text = [0; API_TIME_LEN];
    match api_time_into(*at, &mut text) {
        Some(text) => serializer.serialize_str(text),
        None => serializer.serialize_str(&api_time(*at)),
    }
}

/// A timestamp as the API spells it.
pub fn api_time(at: DateTime<Utc>) -> String {
    let mut text = [0; API_TIME_LEN];
    match api_time_into(at, &mut text) {
        Some(text) => text.to_owned(),
        None => at.to_rfc3339_opts(SecondsFormat::Micros, false),
    }
}

/// `2026-11-21T10:00:00.123456+00:00`
pub const API_TIME_LEN: usize = 32;

/// A timestamp as log lines spell it, `2026-11-21T10:00:00.123456Z`
/// (chrono's `to_rfc3339_opts(Micros, true)`), written into `text` as the
/// API's is; `None` for the times chrono spells differently.
pub fn log_time_into(at: DateTime<Utc>, text: &mut [u8; API_TIME_LEN]) -> Option<&str> {
    api_time_into(at, text)?;
    text[26] = b'Z';
    std::str::from_utf8(&text[..27]).ok()
}

/// A timestamp as the API spells it, written into `text` digit by digit:
/// every feed item carries two, and chrono's general formatter cost a
/// sixth of a feed's JSON (bench/README.md, "Data path"). `None` for the
/// times chrono spells differently (years outside 0 to 9999, a leap
/// second), which the caller formats with chrono.
fn api_time_into(at: DateTime<Utc>, text: &mut [u8; API_TIME_LEN]) -> Option<&str> {
    use chrono::{Datelike, Timelike};
    let (year, micros) = (at.year(), at.nanosecond() / 1000);
    if !(0..=9999).contains(&year) || micros >= 1_000_000 {
        return None;
    }
    let mut put = |at: usize, value: u32, digits: usize| {
        let mut value = value;
        for place in (at..at + digits).rev() {
            text[place] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, year as u32, 4);
    put(5, at.month(), 2);
    put(8, at.day(), 2);
    put(11, at.hour(), 2);
    put(14, at.minute(), 2);
    put(17, at.second(), 2);
    put(20, micros, 6);
    for (place, byte) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
    ] {
        text[place] = byte;
    }
    text[26..].copy_from_slice(b"+00:00");
    std::str::from_utf8(text).ok()
}

/// A user handle: lowercase ASCII letters, digits and `_`, 1 to 32 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Handle(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    #[error("a handle cannot be blank")]
    Blank,
    #[error("a handle is 1 to 32 characters of a-z, 0-9 and _")]
    Invalid,
}

impl Handle {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Handle {
    type Err = HandleError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(HandleError::Blank);
        }
        let valid = trimmed.len() <= 32
            && trimmed
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if valid {
            Ok(Handle(trimmed.to_owned()))
        } else {
            Err(HandleError::Invalid)
        }
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How long a crud lives, as the API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    ThirtyDays,
    SevenDays,
    ThreeDays,
    OneDay,
    TwelveHours,
    ThreeHours,
    OneHour,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ttl must be one of 30-days 7-days 3-days 1-day 12-hours 3-hours 1-hour")]
pub struct UnknownTtl;

impl Ttl {
    pub const ALL: [Ttl; 7] = [
        Ttl::ThirtyDays,
        Ttl::SevenDays,
        Ttl::ThreeDays,
        Ttl::OneDay,
        Ttl::TwelveHours,
        Ttl::ThreeHours,
        Ttl::OneHour,
    ];

    pub fn duration(self) -> Duration {
        match self {
            Ttl::ThirtyDays => Duration::days(30),
            Ttl::SevenDays => Duration::days(7),
            Ttl::ThreeDays => Duration::days(3),
            Ttl::OneDay => Duration::days(1),
            Ttl::TwelveHours => Duration::hours(12),
            Ttl::ThreeHours => Duration::hours(3),
            Ttl::OneHour => Duration::hours(1),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Ttl::ThirtyDays => "30-days",
            Ttl::SevenDays => "7-days",
            Ttl::ThreeDays => "3-days",
            Ttl::OneDay => "1-day",
            Ttl::TwelveHours => "12-hours",
            Ttl::ThreeHours => "3-hours",
            Ttl::OneHour => "1-hour",
        }
    }
}

impl FromStr for Ttl {
    type Err = UnknownTtl;

    /// Exactly as the API spells it: the document lists the seven.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Ok(match raw {
            "30-days" => Ttl::ThirtyDays,
            "7-days" => Ttl::SevenDays,
            "3-days" => Ttl::ThreeDays,
            "1-day" => Ttl::OneDay,
            "12-hours" => Ttl::TwelveHours,
            "3-hours" => Ttl::ThreeHours,
            "1-hour" => Ttl::OneHour,
            _ => return Err(UnknownTtl),
        })
    }
}

/// A reply to a crud; `handle` and `display_name` are its author's.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Reply {
    pub uuid: Uuid,
    /// The crud whose thread the reply is in.
    pub reply_to_activity_uuid: Uuid,
    pub display_name: String,
    pub handle: String,
    pub message: String,
    #[schema(minimum = 0)]
    pub likes_count: i64,
    #[schema(minimum = 0)]
    pub replies_count: i64,
    #[schema(minimum = 0)]
    pub reposts_count: i64,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
}

/// A crud; `handle` and `display_name` are its author's.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Activity {
    pub uuid: Uuid,
    pub display_name: String,
    pub handle: String,
    pub message: String,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub expires_at: DateTime<Utc>,
    #[schema(minimum = 0)]
    pub likes_count: i64,
    #[schema(minimum = 0)]
    pub replies_count: i64,
    #[schema(minimum = 0)]
    pub reposts_count: i64,
    /// Oldest first.
    pub replies: Vec<Reply>,
}

/// A conversation as listed in the inbox: the other person and the last word.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MessageGroup {
    pub uuid: Uuid,
    pub display_name: String,
    pub handle: String,
    pub message: String,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
}

/// One direct message; `handle` and `display_name` are its sender's.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Message {
    pub uuid: Uuid,
    pub display_name: String,
    pub handle: String,
    pub message: String,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
}

/// Whether `message` mentions `@handle` as a whole word.
pub fn mentions(message: &str, handle: &Handle) -> bool {
    let needle = format!("@{handle}");
    message.match_indices(&needle).any(|(at, _)| {
        let after = message[at + needle.len()..].bytes().next();
        !matches!(after, Some(b) if b.is_ascii_alphanumeric() || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_lowercase_ascii_up_to_32() {
        assert_eq!(
            "andrew_brown2".parse::<Handle>().unwrap().as_str(),
            "andrew_brown2"
        );
        assert_eq!(" worf ".parse::<Handle>().unwrap().as_str(), "worf");
        assert_eq!("".parse::<Handle>(), Err(HandleError::Blank));
        assert_eq!("   ".parse::<Handle>(), Err(HandleError::Blank));
        for bad in ["Worf", "a-b", "a b", "ü", "../etc", "a%00", &"a".repeat(33)] {
            assert_eq!(bad.parse::<Handle>(), Err(HandleError::Invalid), "{bad}");
        }
        assert!("a".repeat(32).parse::<Handle>().is_ok());
    }

    proptest::proptest! {
        #[test]
        fn api_times_are_spelled_as_chrono_spells_them(micros in -70_000_000_000_000_000i64..300_000_000_000_000_000) {
            let at = DateTime::from_timestamp_micros(micros).unwrap();
            proptest::prop_assert_eq!(api_time(at), at.to_rfc3339_opts(SecondsFormat::Micros, false));
            let mut text = [0; API_TIME_LEN];
            if let Some(logged) = log_time_into(at, &mut text) {
                proptest::prop_assert_eq!(logged, at.to_rfc3339_opts(SecondsFormat::Micros, true));
            }
        }
    }

    #[test]
    fn api_times_of_every_kind() {
        for micros in [
            0,
            1,
            999_999,
            1_796_515_134_146_149,
            -1,
            -62_167_219_200_000_000,
        ] {
            let at = DateTime::from_timestamp_micros(micros).unwrap();
            assert_eq!(
                api_time(at),
                at.to_rfc3339_opts(SecondsFormat::Micros, false)
            );
        }
        assert_eq!(
            api_time(DateTime::from_timestamp_micros(1_796_515_134_000_042).unwrap()),
            "2026-12-05T23:58:54.000042+00:00"
        );
    }

    #[test]
    fn every_ttl_round_trips() {
        for ttl in Ttl::ALL {
            assert_eq!(ttl.as_str().parse::<Ttl>(), Ok(ttl));
        }
        assert_eq!("2-days".parse::<Ttl>(), Err(UnknownTtl));
        assert_eq!(" 1-day".parse::<Ttl>(), Err(UnknownTtl));
        assert_eq!(Ttl::TwelveHours.duration(), Duration::hours(12));
    }

    #[test]
    fn mentions_match_whole_handles_only() {
        let worf: Handle = "worf".parse().unwrap();
        assert!(mentions("hey @worf!", &worf));
        assert!(mentions("@worf", &worf));
        assert!(!mentions("hey @worfy", &worf));
        assert!(!mentions("hey worf", &worf));
        assert!(mentions("@worfy and @worf", &worf));
    }

    #[test]
    fn timestamps_have_micros_and_offset() {
        let at = DateTime::parse_from_rfc3339("2026-11-21T10:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let json = serde_json::to_value(Message {
            uuid: Uuid::nil(),
            display_name: "W".into(),
            handle: "worf".into(),
            message: "m".into(),
            created_at: at,
        })
        .unwrap();
        assert_eq!(json["created_at"], "2026-11-21T10:00:00.123456+00:00");
    }
}

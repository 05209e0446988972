//! Delivery to Rollbar's item API: one item per POST, the token in the
//! `X-Rollbar-Access-Token` header, Rollbar's own rate limit honoured, and a
//! rejected token stopping all reporting instead of retrying forever.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, StatusCode};

use super::item::{self, Origin, Report};
use crate::config::values::Secret;
use crate::telemetry::export::describe;
use crate::telemetry::queue::{SendError, Sink};
use crate::telemetry::sink::TelemetryError;

/// What to do about a 401 or 403 (the sink's failing line, the doctor).
pub const TOKEN_REJECTED: &str = "use a project access token with the post_server_item scope; \
     error reporting is off until it is fixed and the server restarted";

/// Longest pause a 429 can impose, whatever its reset header says.
const MAX_PAUSE: Duration = Duration::from_secs(3600);

pub struct RollbarSink {
    client: reqwest::Client,
    url: String,
    token: HeaderValue,
    shown_token: String,
    origin: Origin,
    /// Set once Rollbar rejects the token; the reporter stops queueing too.
    stopped: Arc<AtomicBool>,
    /// Until when Rollbar asked us to stop sending (429).
    paused_until: Option<Instant>,
}

impl RollbarSink {
    /// Builds the client; runs on the worker's runtime.
    pub fn new(
        url: String,
        token: &Secret,
        timeout: Duration,
        origin: Origin,
        stopped: Arc<AtomicBool>,
    ) -> Result<Self, TelemetryError> {
        let mut header = HeaderValue::from_str(token.expose()).map_err(|_| {
            TelemetryError::Config("ROLLBAR_ACCESS_TOKEN is not a valid header value".into())
        })?;
        header.set_sensitive(true);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|err| {
                TelemetryError::Config(format!("cannot build the Rollbar client: {err}"))
            })?;
        Ok(RollbarSink {
            client,
            url,
            token: header,
            shown_token: token.to_string(),
            origin,
            stopped,
            paused_until: None,
        })
    }
}

/// When a 429 lets us send again. Rollbar sends the window's end in epoch
/// seconds; a small number is taken as seconds from now.
pub fn pause_from_reset(reset: Option<&str>, now: SystemTime) -> Duration {
    let Some(value) = reset.and_then(|r| r.trim().parse::<u64>().ok()) else {
        return Duration::from_secs(60);
    };
    let epoch_now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let seconds = if value > 1_000_000_000 {
        value.saturating_sub(epoch_now)
    } else {
        value
    };
    Duration::from_secs(seconds).min(MAX_PAUSE)
}

impl Sink<Report> for RollbarSink {
    /// One encoded item per report: Rollbar takes one item per request, so
    /// the queue hands over batches of one.
    type Payload = Vec<Vec<u8>>;

    fn encode(&mut self, batch: Vec<Report>) -> Vec<Vec<u8>> {
        batch
            .iter()
            .map(|report| item::encode(item::item_json(report, &self.origin)))
            .collect()
    }

    async fn send(&mut self, payload: &Vec<Vec<u8>>) -> Result<(), SendError> {
        if self.stopped.load(Ordering::Relaxed) {
            return Err(SendError {
                message: "reporting stopped: Rollbar rejected the access token".into(),
                retryable: false,
                retry_after: None,
                hint: None,
            });
        }
        if let Some(until) = self.paused_until {
            let left = until.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                return Err(SendError::retryable(format!(
                    "paused after Rollbar answered 429 Too Many Requests: {} s left",
                    left.as_secs() + 1
                )));
            }
            self.paused_until = None;
        }
        for body in payload {
            let answer = self
                .client
                .post(self.url.as_str())
                .header("x-rollbar-access-token", self.token.clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await
                .map_err(|err| SendError::retryable(format!("Rollbar: {}", describe(&err))))?;
            let status = answer.status();
            if status.is_success() {
                continue;
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                self.stopped.store(true, Ordering::Relaxed);
                return Err(SendError {
                    message: format!(
                        "Rollbar answered {status}: access token ROLLBAR_ACCESS_TOKEN ({}) rejected",
                        self.shown_token
                    ),
                    retryable: false,
                    retry_after: None,
                    hint: Some(TOKEN_REJECTED),
                });
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                let reset = answer
                    .headers()
                    .get("x-rate-limit-reset")
                    .and_then(|v| v.to_str().ok());
                let pause = pause_from_reset(reset, SystemTime::now());
                self.paused_until = Some(Instant::now() + pause);
                return Err(SendError::retryable(format!(
                    "Rollbar answered {status}: rate limited for {} s",
                    pause.as_secs()
                )));
            }
            return Err(SendError {
                message: format!("Rollbar answered {status}"),
                retryable: status.is_server_error(),
                retry_after: None,
                hint: None,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reset_header_is_epoch_seconds_or_a_delay() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            pause_from_reset(Some("1700000030"), now),
            Duration::from_secs(30)
        );
        assert_eq!(pause_from_reset(Some("12"), now), Duration::from_secs(12));
        assert_eq!(pause_from_reset(Some("1600000000"), now), Duration::ZERO);
        assert_eq!(pause_from_reset(None, now), Duration::from_secs(60));
        assert_eq!(pause_from_reset(Some("soon"), now), Duration::from_secs(60));
        assert_eq!(pause_from_reset(Some("99999999"), now), MAX_PAUSE);
    }
}

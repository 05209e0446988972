//! The doctor's Rollbar probe: an empty item posted with the token. Rollbar
//! checks the token before the item, so a rejected token answers 401 or
//! 403, and an accepted one 422 for the empty item, which records nothing.

use http::header::CONTENT_TYPE;

use super::RollbarSettings;
use super::sink::TOKEN_REJECTED;
use crate::telemetry::doctor::{Finding, Verdict};
use crate::telemetry::export::describe;

pub async fn examine(settings: &RollbarSettings) -> Finding {
    let Some(token) = &settings.access_token else {
        return Finding::off("rollbar", "ROLLBAR_ACCESS_TOKEN unset");
    };
    let url = settings.endpoint.to_string();
    let mut finding = Finding {
        sink: "rollbar",
        verdict: Verdict::Fail,
        configured_by: vec!["ROLLBAR_ACCESS_TOKEN"],
        destination: Some(format!("{url}, token {token}")),
        detail: String::new(),
        hint: None,
    };
    let answer = match reqwest::Client::builder().timeout(settings.timeout).build() {
        Ok(client) => {
            client
                .post(&url)
                .header("X-Rollbar-Access-Token", token.expose())
                .header(CONTENT_TYPE, "application/json")
                .body("{}")
                .send()
                .await
        }
        Err(err) => {
            finding.detail = format!("cannot build an HTTP client: {err}");
            return finding;
        }
    };
    let status = match answer {
        Ok(answer) => answer.status(),
        Err(err) => {
            finding.detail = format!("Rollbar: {}", describe(&err));
            finding.hint =
                Some("is ROLLBAR_ENDPOINT right? Leave it unset for Rollbar's own".into());
            return finding;
        }
    };
    (finding.verdict, finding.detail) = match status.as_u16() {
        400 | 422 => (
            Verdict::Pass,
            format!(
                "the token was accepted (Rollbar answered {status} to the empty probe item, which records nothing)"
            ),
        ),
        429 => (
            Verdict::Pass,
            format!(
                "the token was accepted, but Rollbar answered {status}: over the project's rate limit"
            ),
        ),
        200..=299 => (Verdict::Pass, format!("answered {status}")),
        401 | 403 => {
            finding.hint = Some(TOKEN_REJECTED.into());
            (
                Verdict::Fail,
                format!("Rollbar answered {status}: ROLLBAR_ACCESS_TOKEN was rejected"),
            )
        }
        _ => (Verdict::Fail, format!("Rollbar answered {status}")),
    };
    finding
}

//! The doctor's OTLP probe: an empty export (no spans) through the sink's
//! own transport, so the answer is the one real exports get; and, when an
//! `x-honeycomb-team` header is sent, Honeycomb's auth endpoint
//! (`GET /1/auth`), which names the key's team and environment.

use std::time::Duration;

use http::{HeaderName, Uri};
use serde::Deserialize;

use super::OtlpSettings;
use super::transport::OtlpSink;
use crate::config::values::Secret;
use crate::telemetry::doctor::{Finding, Verdict};
use crate::telemetry::export::describe;
use crate::telemetry::queue::Sink;
use crate::telemetry::sink::{Shared, TracesExporter};

pub(crate) const TEAM: &str = "x-honeycomb-team";
pub(crate) const DATASET: &str = "x-honeycomb-dataset";

pub async fn examine(settings: &OtlpSettings, shared: &Shared) -> Finding {
    if let Err(reason) = shared.exporter(TracesExporter::Otlp) {
        return Finding::off(
            "otlp",
            reason.unwrap_or("OTEL_EXPORTER_OTLP_ENDPOINT and HONEYCOMB_API_KEY unset"),
        );
    }
    let url = settings.traces_url().unwrap_or_default();
    let headers = settings.headers();
    let mut finding = Finding {
        sink: "otlp",
        verdict: Verdict::Fail,
        configured_by: configured_by(settings),
        destination: Some(settings.shown()),
        detail: String::new(),
        hint: mistake(&url, &headers),
    };
    let mut sink = match OtlpSink::new(
        settings.otlp_protocol,
        &url,
        &headers,
        settings.otlp_timeout,
        &shared.resource,
    ) {
        Ok(sink) => sink,
        Err(err) => {
            finding.detail = err.to_string();
            return finding;
        }
    };
    let empty = sink.encode(Vec::new());
    match sink.send(&empty).await {
        Ok(()) => {
            finding.verdict = Verdict::Pass;
            finding.detail = "accepted an empty export".into();
        }
        Err(err) => {
            finding.detail = err.message;
            finding.hint = finding.hint.or(err.hint.map(str::to_owned));
            return finding;
        }
    }
    if let Some((_, key)) = headers.iter().find(|(name, _)| name.as_str() == TEAM) {
        let dataset = headers.iter().any(|(name, _)| name.as_str() == DATASET);
        honeycomb_auth(&url, key, dataset, settings.otlp_timeout, &mut finding).await;
    }
    finding
}

/// The variables that configure the sink, of those that can.
fn configured_by(settings: &OtlpSettings) -> Vec<&'static str> {
    [
        (
            settings.otlp_endpoint.is_some(),
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
        (
            settings.otlp_traces_endpoint.is_some(),
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ),
        (settings.honeycomb_api_key.is_some(), "HONEYCOMB_API_KEY"),
        (
            settings.otlp_headers.is_some(),
            "OTEL_EXPORTER_OTLP_HEADERS",
        ),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect()
}

/// The usual mistakes, visible before anything is sent.
fn mistake(url: &str, headers: &[(HeaderName, Secret)]) -> Option<String> {
    if url.contains("/v1/traces/v1/traces") {
        return Some(
            "/v1/traces is there twice: OTEL_EXPORTER_OTLP_ENDPOINT is the base URL \
             (https://api.honeycomb.io); the path is added to it"
                .into(),
        );
    }
    let team = headers.iter().find(|(name, _)| name.as_str() == TEAM);
    if team.is_some_and(|(_, key)| key.expose().trim().is_empty()) {
        return Some(
            "x-honeycomb-team is empty: the variable it was made from \
             (HONEYCOMB_API_KEY?) was unset where OTEL_EXPORTER_OTLP_HEADERS was written"
                .into(),
        );
    }
    let honeycomb = url.parse::<Uri>().is_ok_and(|uri| {
        uri.host()
            .is_some_and(|host| host.ends_with("honeycomb.io"))
    });
    if team.is_none() && honeycomb {
        return Some(
            "Honeycomb needs the key in x-honeycomb-team: set HONEYCOMB_API_KEY \
             (or x-honeycomb-team=... in OTEL_EXPORTER_OTLP_HEADERS)"
                .into(),
        );
    }
    None
}

/// What Honeycomb's `GET /1/auth` answers about a key.
#[derive(Debug, Deserialize)]
pub struct Auth {
    pub team: Named,
    #[serde(default)]
    pub environment: Option<Named>,
}

#[derive(Debug, Deserialize)]
pub struct Named {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub slug: String,
}

/// Why Honeycomb's `GET /1/auth` told nothing.
pub enum AuthError {
    /// The request failed: no answer, refused, timed out.
    Unreachable(String),
    /// 401 or 403.
    Rejected(http::StatusCode),
    /// Another answer: not Honeycomb's API (a collector passing the header on).
    NotHoneycomb,
}

/// Asks the Honeycomb API at `url`'s scheme and authority (`/1/auth`)
/// which team and environment `key` belongs to.
pub async fn lookup(url: &str, key: &Secret, timeout: Duration) -> Result<Auth, AuthError> {
    let uri = url.parse::<Uri>().map_err(|_| AuthError::NotHoneycomb)?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(AuthError::NotHoneycomb);
    };
    let auth_url = format!("{scheme}://{authority}/1/auth");
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|_| AuthError::NotHoneycomb)?;
    let answer = client
        .get(&auth_url)
        .header(TEAM, key.expose())
        .send()
        .await
        .map_err(|err| AuthError::Unreachable(describe(&err)))?;
    let status = answer.status();
    if status == 401 || status == 403 {
        return Err(AuthError::Rejected(status));
    }
    let body = answer.bytes().await.unwrap_or_default();
    serde_json::from_slice::<Auth>(&body).map_err(|_| AuthError::NotHoneycomb)
}

/// Asks the destination's `/1/auth` which Honeycomb team and environment
/// the key belongs to. A destination that is not Honeycomb (a collector
/// passing the header on) has no such path, and is left as it is.
async fn honeycomb_auth(
    url: &str,
    key: &Secret,
    dataset: bool,
    timeout: Duration,
    finding: &mut Finding,
) {
    let auth_url = url
        .parse::<Uri>()
        .ok()
        .and_then(|uri| {
            Some(format!(
                "{}://{}/1/auth",
                uri.scheme_str()?,
                uri.authority()?
            ))
        })
        .unwrap_or_default();
    let auth = match lookup(url, key, timeout).await {
        Ok(auth) => auth,
        Err(AuthError::Unreachable(why)) => {
            finding.detail.push_str(&format!(
                "; Honeycomb's key check ({auth_url}) failed: {why}"
            ));
            return;
        }
        Err(AuthError::Rejected(status)) => {
            finding.verdict = Verdict::Fail;
            finding.detail = format!("Honeycomb rejected the key ({auth_url} answered {status})");
            finding.hint = Some(
                "the key was rejected: check HONEYCOMB_API_KEY (an ingest key of the right \
                 environment), or x-honeycomb-team in OTEL_EXPORTER_OTLP_HEADERS"
                    .into(),
            );
            return;
        }
        // Not Honeycomb's API: nothing more to learn.
        Err(AuthError::NotHoneycomb) => return,
    };
    let environment = auth.environment.filter(|e| !e.slug.is_empty());
    match environment {
        Some(environment) => finding.detail.push_str(&format!(
            "; Honeycomb team {:?}, environment {:?}",
            auth.team.name, environment.name
        )),
        None => {
            finding.detail.push_str(&format!(
                "; Honeycomb team {:?}, a Classic key (no environment)",
                auth.team.name
            ));
            if !dataset {
                finding.verdict = Verdict::Fail;
                finding.hint = Some(
                    "a Honeycomb Classic key needs a dataset: add \
                     x-honeycomb-dataset=<name> to OTEL_EXPORTER_OTLP_HEADERS"
                        .into(),
                );
            }
        }
    }
    if !auth.team.slug.is_empty() {
        finding
            .detail
            .push_str(&format!(" (team slug {})", auth.team.slug));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &'static str, value: &str) -> (HeaderName, Secret) {
        (HeaderName::from_static(name), Secret::new(value.to_owned()))
    }

    #[test]
    fn the_usual_mistakes_are_named_before_anything_is_sent() {
        let doubled = mistake("https://api.honeycomb.io/v1/traces/v1/traces", &[]);
        assert!(doubled.unwrap().contains("/v1/traces is there twice"));
        let empty = mistake(
            "https://api.honeycomb.io/v1/traces",
            &[header("x-honeycomb-team", " ")],
        );
        assert!(empty.unwrap().contains("x-honeycomb-team is empty"));
        let missing = mistake("https://api.honeycomb.io:443/v1/traces", &[]);
        assert!(missing.unwrap().contains("set HONEYCOMB_API_KEY"));
        assert_eq!(mistake("http://collector:4318/v1/traces", &[]), None);
        assert_eq!(
            mistake(
                "https://api.honeycomb.io/v1/traces",
                &[header("x-honeycomb-team", "abc")]
            ),
            None
        );
    }
}

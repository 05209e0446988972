//! Where a trace is in the other consoles: X-Ray's when the X-Ray sink is
//! on (its trace id is the same trace's, spelled X-Ray's way), Honeycomb's
//! when OTLP carries a Honeycomb key. Honeycomb's links need the key's
//! team and environment, which only Honeycomb's `GET /1/auth` names: it is
//! asked once, the first time a trace is opened, at the destination the
//! OTLP sink already sends to, and never when no trace is opened.

use std::time::Duration;

use http::Uri;
use opentelemetry::trace::TraceId;
use tokio::sync::OnceCell;

use super::views::Links;
use crate::config::TelemetryConfig;
use crate::config::values::Secret;
use crate::telemetry::ids::xray_trace_id;
use crate::telemetry::otlp::doctor::{self, DATASET, TEAM};
use crate::telemetry::sink::{Shared, TracesExporter};

/// The longest the first trace opened waits for Honeycomb's `/1/auth`;
/// without an answer the page has no Honeycomb link.
const AUTH_TIMEOUT: Duration = Duration::from_secs(3);

/// What Honeycomb's link is made from, before `/1/auth` is asked.
struct Honeycomb {
    url: String,
    key: Secret,
    dataset: String,
    timeout: Duration,
}

pub struct LinkMaker {
    /// The X-Ray console's traces page, up to the trace id.
    xray: Option<String>,
    honeycomb: Option<Honeycomb>,
    /// Honeycomb's dataset page, up to `trace?`, once `/1/auth` answered.
    honeycomb_base: OnceCell<Option<String>>,
}

/// `text` as one URL path segment: every byte but RFC 3986's unreserved
/// ones percent-encoded (a dataset may be named `my service/v2`).
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The UI host beside an API host: `api.eu1.honeycomb.io` -> `ui.eu1.honeycomb.io`.
fn ui_host(url: &str) -> String {
    url.parse::<Uri>()
        .ok()
        .and_then(|uri| {
            let host = uri.host()?;
            let rest = host.strip_prefix("api.")?;
            rest.ends_with("honeycomb.io").then(|| format!("ui.{rest}"))
        })
        .unwrap_or_else(|| "ui.honeycomb.io".into())
}

impl LinkMaker {
    pub fn new(config: &TelemetryConfig, shared: &Shared) -> Self {
        let xray = config.xray.enabled().is_ok().then(|| {
            let region = config.cloudwatch.aws.region.as_ref();
            let region = region.or(config.cloudwatch.aws.default_region.as_ref());
            match region {
                Some(region) => format!(
                    "https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#xray:traces/"
                ),
                None => "https://console.aws.amazon.com/cloudwatch/home#xray:traces/".into(),
            }
        });
        let otlp = &config.otlp;
        let honeycomb = shared
            .exporter(TracesExporter::Otlp)
            .ok()
            .and_then(|()| otlp.traces_url())
            .and_then(|url| {
                let headers = otlp.headers();
                let value = |name: &str| {
                    headers
                        .iter()
                        .find(|(header, _)| header.as_str() == name)
                        .map(|(_, value)| value.clone())
                };
                Some(Honeycomb {
                    key: value(TEAM)?,
                    dataset: value(DATASET)
                        .map_or_else(|| shared.service_name.clone(), |d| d.expose().to_owned()),
                    url,
                    // The first trace opened waits for it: briefly.
                    timeout: otlp.otlp_timeout.min(AUTH_TIMEOUT),
                })
            });
        LinkMaker {
            xray,
            honeycomb,
            honeycomb_base: OnceCell::new(),
        }
    }

    /// The links for one trace; the first call may ask Honeycomb's `/1/auth`.
    pub async fn links(&self, trace_id: TraceId, start_ms: f64, end_ms: f64) -> Links {
        let xray = self
            .xray
            .as_ref()
            .map(|base| format!("{base}{}", xray_trace_id(trace_id)));
        let base = match &self.honeycomb {
            Some(honeycomb) => {
                self.honeycomb_base
                    .get_or_init(|| honeycomb_base(honeycomb))
                    .await
            }
            None => &None,
        };
        // Honeycomb finds a trace at once given the seconds it spans.
        let honeycomb = base.as_ref().map(|base| {
            let from = (start_ms / 1000.0).floor() as u64;
            let to = (end_ms / 1000.0).ceil() as u64 + 1;
            format!("{base}trace?trace_id={trace_id}&trace_start_ts={from}&trace_end_ts={to}")
        });
        Links { honeycomb, xray }
    }
}

async fn honeycomb_base(honeycomb: &Honeycomb) -> Option<String> {
    let auth = doctor::lookup(&honeycomb.url, &honeycomb.key, honeycomb.timeout)
        .await
        .ok()?;
    let team = &auth.team.slug;
    if team.is_empty() {
        return None;
    }
    let ui = ui_host(&honeycomb.url);
    let dataset = path_segment(&honeycomb.dataset);
    Some(match auth.environment.filter(|e| !e.slug.is_empty()) {
        Some(environment) => format!(
            "https://{ui}/{team}/environments/{}/datasets/{dataset}/",
            environment.slug
        ),
        None => format!("https://{ui}/{team}/datasets/{dataset}/"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dataset_is_one_path_segment() {
        assert_eq!(path_segment("cruddur-backend"), "cruddur-backend");
        assert_eq!(path_segment("my service/v2"), "my%20service%2Fv2");
        assert_eq!(path_segment("é"), "%C3%A9");
    }

    #[test]
    fn the_ui_is_beside_the_api() {
        assert_eq!(
            ui_host("https://api.honeycomb.io/v1/traces"),
            "ui.honeycomb.io"
        );
        assert_eq!(
            ui_host("https://api.eu1.honeycomb.io:443/v1/traces"),
            "ui.eu1.honeycomb.io"
        );
        assert_eq!(
            ui_host("http://127.0.0.1:4318/v1/traces"),
            "ui.honeycomb.io"
        );
        assert_eq!(
            ui_host("https://api.evil.example/v1/traces"),
            "ui.honeycomb.io"
        );
    }
}

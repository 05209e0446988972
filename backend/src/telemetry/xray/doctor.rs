//! The doctor's X-Ray probes, per `XRAY_MODE`: the daemon's address
//! resolved (UDP has no answer to wait for, so that is all that can be
//! checked, plus the classic container mistake of a loopback address);
//! the API read with GetSamplingRules; X-Ray's OTLP endpoint sent an empty,
//! signed export. Centralized sampling reads the rules too. Where the API
//! answers, the Transaction Search destination is reported (X-Ray's OTLP
//! endpoint needs it on).

use std::net::IpAddr;
use std::path::Path;

use super::daemon::DaemonAddress;
use super::otlp::XrayOtlpSink;
use super::setup::sampling_rules;
use super::{XrayMode, XraySampling, XraySettings, centralized};
use crate::telemetry::doctor::{Finding, Verdict};
use crate::telemetry::queue::Sink;
use crate::telemetry::sink::Shared;

pub async fn examine(settings: &XraySettings, shared: &Shared) -> Finding {
    if let Err(reason) = settings.enabled() {
        return Finding::off("xray", reason);
    }
    let configured_by = [
        (settings.mode.is_some(), "XRAY_MODE"),
        (settings.daemon_address.is_some(), "AWS_XRAY_DAEMON_ADDRESS"),
        (settings.url_pattern.is_some(), "AWS_XRAY_URL"),
        (settings.sampling_rules.is_some(), "XRAY_SAMPLING_RULES"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect();
    let mut finding = match settings.mode.unwrap_or(XrayMode::Daemon) {
        XrayMode::Daemon => {
            daemon(settings.daemon_address.clone().unwrap_or(DaemonAddress {
                host: "127.0.0.1".into(),
                port: 2000,
            }))
            .await
        }
        XrayMode::Api => api().await,
        XrayMode::Otlp => otlp(settings, shared).await,
    };
    finding.configured_by = configured_by;
    if settings.sampling == XraySampling::Centralized
        && settings.mode != Some(XrayMode::Api)
        && finding.verdict == Verdict::Pass
    {
        let rules = api().await;
        finding.detail = format!("{}; centralized sampling: {}", finding.detail, rules.detail);
        finding.verdict = rules.verdict;
        finding.hint = rules.hint;
    }
    finding
}

fn finding(destination: String) -> Finding {
    Finding {
        sink: "xray",
        verdict: Verdict::Fail,
        configured_by: Vec::new(),
        destination: Some(destination),
        detail: String::new(),
        hint: None,
    }
}

/// Where this process runs, as far as a loopback daemon address goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Not in a container: 127.0.0.1 is this machine.
    Host,
    /// In a container: 127.0.0.1 is the container (or its ECS task, where
    /// a daemon sidecar does listen on it).
    Container,
    /// In a container on a Docker network (docker-compose): 127.0.0.1 is
    /// this container alone; the daemon is another service.
    ComposeNetwork,
}

fn place() -> Place {
    let container = Path::new("/.dockerenv").exists() || Path::new("/run/.containerenv").exists();
    // Docker's embedded DNS server serves user-defined networks (compose).
    let compose = std::fs::read_to_string("/etc/resolv.conf").is_ok_and(|conf| {
        conf.lines()
            .any(|line| line.trim() == "nameserver 127.0.0.11")
    });
    match (container, compose) {
        (true, true) => Place::ComposeNetwork,
        (true, false) => Place::Container,
        (false, _) => Place::Host,
    }
}

/// The daemon's address, checked as far as UDP allows.
async fn daemon(address: DaemonAddress) -> Finding {
    let mut finding = finding(format!("udp://{address} (daemon)"));
    let resolved = tokio::net::lookup_host((address.host.as_str(), address.port))
        .await
        .ok()
        .and_then(|mut addresses| addresses.next());
    let Some(target) = resolved else {
        finding.detail = format!("cannot resolve {}", address.host);
        finding.hint = Some(
            "AWS_XRAY_DAEMON_ADDRESS names the daemon's host: in docker-compose, \
             its service (xray-daemon:2000)"
                .into(),
        );
        return finding;
    };
    let (verdict, hint) = loopback(target.ip(), place());
    finding.verdict = verdict;
    finding.hint = hint.map(str::to_owned);
    finding.detail = format!(
        "resolves to {target} (UDP: segments are sent without an answer, so a daemon \
         that is down is not seen here; the daemon's own log shows what it received)"
    );
    finding
}

/// A loopback daemon address: wrong on a compose network, doubtful in
/// another container (right for an ECS sidecar), fine on a host.
fn loopback(ip: IpAddr, place: Place) -> (Verdict, Option<&'static str>) {
    const COMPOSE: &str = "on a docker-compose network 127.0.0.1 is this container alone: \
         point AWS_XRAY_DAEMON_ADDRESS at the daemon's service (xray-daemon:2000)";
    const CONTAINER: &str = "inside a container 127.0.0.1 is the container itself (or its \
         ECS task, where a daemon sidecar listens on it): elsewhere, name the daemon's host";
    match (ip.is_loopback(), place) {
        (true, Place::ComposeNetwork) => (Verdict::Fail, Some(COMPOSE)),
        (true, Place::Container) => (Verdict::Pass, Some(CONTAINER)),
        _ => (Verdict::Pass, None),
    }
}

/// Where X-Ray stores spans (Transaction Search), when the API says.
async fn transaction_search(client: &aws_sdk_xray::Client) -> Option<String> {
    let answer = client.get_trace_segment_destination().send().await.ok()?;
    Some(format!(
        "Transaction Search: spans go to {} ({})",
        answer.destination()?.as_str(),
        answer.status().map_or("status unknown", |s| s.as_str())
    ))
}

/// The X-Ray API, read with GetSamplingRules.
async fn api() -> Finding {
    let mut finding = finding("X-Ray API (AWS SDK region and credentials)".into());
    let client = centralized::client().await;
    match sampling_rules(&client).await {
        Ok(rules) => {
            finding.verdict = Verdict::Pass;
            finding.detail = format!("GetSamplingRules answered: {} rules", rules.len());
            if let Some(search) = transaction_search(&client).await {
                finding.detail = format!("{}; {search}", finding.detail);
            }
        }
        Err(err) => {
            finding.detail = err;
            finding.hint = Some(
                "the X-Ray API needs AWS_REGION and credentials allowed \
                 xray:GetSamplingRules (and xray:PutTraceSegments for XRAY_MODE=api)"
                    .into(),
            );
        }
    }
    finding
}

/// X-Ray's OTLP endpoint, sent an empty signed export.
async fn otlp(settings: &XraySettings, shared: &Shared) -> Finding {
    let endpoint = settings.otlp_endpoint.as_ref().map(ToString::to_string);
    let mut finding = finding(format!(
        "{} (OTLP, SigV4)",
        endpoint
            .as_deref()
            .unwrap_or("https://xray.{region}.amazonaws.com/v1/traces")
    ));
    let mut sink = match XrayOtlpSink::new(&shared.resource, endpoint, settings.otlp_timeout) {
        Ok(sink) => sink,
        Err(err) => {
            finding.detail = format!("cannot build the HTTP client: {err}");
            return finding;
        }
    };
    let empty = sink.encode(Vec::new());
    let search = transaction_search(&centralized::client().await).await;
    match sink.send(&empty).await {
        Ok(()) => {
            finding.verdict = Verdict::Pass;
            finding.detail = "accepted an empty signed export".into();
            if let Some(search) = search {
                finding.detail = format!("{}; {search}", finding.detail);
            }
        }
        Err(err) => {
            finding.detail = match search {
                Some(search) => format!("{}; {search}", err.message),
                None => err.message,
            };
            finding.hint = Some(err.hint.map_or_else(
                || {
                    "X-Ray's OTLP endpoint needs AWS_REGION, credentials allowed \
                     xray:PutSpans, and Transaction Search enabled"
                        .to_owned()
                },
                str::to_owned,
            ));
        }
    }
    finding
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_daemon_is_wrong_on_compose_and_doubtful_in_a_container() {
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "172.18.0.3".parse().unwrap();
        let (verdict, hint) = loopback(local, Place::ComposeNetwork);
        assert_eq!(verdict, Verdict::Fail);
        assert!(hint.unwrap().contains("xray-daemon:2000"));
        let (verdict, hint) = loopback(local, Place::Container);
        assert_eq!(verdict, Verdict::Pass);
        assert!(hint.unwrap().contains("ECS"));
        assert_eq!(loopback(local, Place::Host), (Verdict::Pass, None));
        assert_eq!(
            loopback(other, Place::ComposeNetwork),
            (Verdict::Pass, None)
        );
    }
}

//! `cruddur-backend doctor`: for every sink, whether it is configured and
//! by which variables, where it would send, and the answer of a real,
//! harmless probe (an empty OTLP export, the X-Ray daemon's address or an
//! X-Ray API read, the CloudWatch log group's existence, an empty Rollbar
//! item), each within its sink's timeout. Sinks that are off are not
//! contacted. Each sink's probe lives with the sink (`examine`); this
//! module runs them side by side and prints the table or JSON.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use utoipa::ToSchema;

use super::{cloudwatch, otlp, rollbar, shared, xray};
use crate::config::Config;

/// `cruddur-backend doctor [--json] [--write]`
#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// Print the findings as one JSON document
    #[arg(long)]
    pub json: bool,
    /// Also write one test event to CloudWatch Logs (stream `doctor`)
    #[arg(long)]
    pub write: bool,
}

/// What a probe concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Configured, and the destination answered as it should.
    Pass,
    /// Configured, and something is wrong: `hint` says what to change.
    Fail,
    /// Not configured (or turned off): not contacted.
    Off,
}

/// One sink's row.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Finding {
    pub sink: &'static str,
    pub verdict: Verdict,
    /// The variables that configure it (names only).
    pub configured_by: Vec<&'static str>,
    /// Where it sends; secrets show their last four characters.
    pub destination: Option<String>,
    /// What the probe found, or why the sink is off.
    pub detail: String,
    /// What to change, when something is wrong or likely to be.
    pub hint: Option<String>,
}

impl Finding {
    pub fn off(sink: &'static str, why: impl Into<String>) -> Finding {
        Finding {
            sink,
            verdict: Verdict::Off,
            configured_by: Vec::new(),
            destination: None,
            detail: why.into(),
            hint: None,
        }
    }
}

/// Every sink's finding, probes run side by side.
pub async fn examine(config: &Config, write: bool) -> Vec<Finding> {
    let t = &config.telemetry;
    let shared = shared(config);
    let (otlp, xray, cloudwatch, rollbar) = tokio::join!(
        otlp::examine(&t.otlp, &shared),
        xray::examine(&t.xray, &shared),
        cloudwatch::examine(&t.cloudwatch, write),
        rollbar::examine(&t.rollbar),
    );
    vec![otlp, xray, cloudwatch, rollbar]
}

/// How often `GET /api/health-check?deep=1` probes at most; callers in
/// between get the last findings.
const DEEP_EVERY: Duration = Duration::from_secs(30);

/// The doctor's probes behind `GET /api/health-check?deep=1`, rate limited:
/// a load balancer or a curious user cannot make the server flood its own
/// destinations.
pub struct DeepCheck {
    config: Config,
    last: tokio::sync::Mutex<Option<(Instant, Vec<Finding>)>>,
}

/// What `?deep=1` adds to the health check.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeepFindings {
    /// Every configured sink passed.
    pub healthy: bool,
    /// Seconds since these probes ran (they run at most every 30 s).
    pub age_seconds: u64,
    pub sinks: Vec<Finding>,
}

impl DeepCheck {
    pub fn new(config: Config) -> Self {
        DeepCheck {
            config,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The findings of the last 30 s, probing again when they are older.
    /// Concurrent callers wait for the one run.
    pub async fn findings(&self) -> DeepFindings {
        let mut last = self.last.lock().await;
        let stale = last
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() >= DEEP_EVERY);
        if stale {
            *last = Some((Instant::now(), examine(&self.config, false).await));
        }
        let (at, sinks) = last.as_ref().expect("just filled");
        DeepFindings {
            healthy: sinks.iter().all(|f| f.verdict != Verdict::Fail),
            age_seconds: at.elapsed().as_secs(),
            sinks: sinks.clone(),
        }
    }
}

/// Runs the doctor: exit 0 when every configured sink passes, 1 otherwise.
pub async fn run(config: &Config, args: &DoctorArgs) -> ExitCode {
    let findings = examine(config, args.write).await;
    let healthy = findings.iter().all(|f| f.verdict != Verdict::Fail);
    if args.json {
        let document = serde_json::json!({ "healthy": healthy, "sinks": findings });
        println!("{document:#}");
    } else {
        print!("{}", table(&findings));
    }
    if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The findings as text: a line per sink, then its details indented.
fn table(findings: &[Finding]) -> String {
    let mut out = String::new();
    for finding in findings {
        let verdict = match finding.verdict {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Off => "off",
        };
        let headline = finding.destination.as_deref().unwrap_or(&finding.detail);
        out.push_str(&format!("{:<11} {verdict:<5} {headline}\n", finding.sink));
        let indent = " ".repeat(18);
        if !finding.configured_by.is_empty() {
            out.push_str(&format!(
                "{indent}set by {}\n",
                finding.configured_by.join(", ")
            ));
        }
        if finding.destination.is_some() {
            out.push_str(&format!("{indent}{}\n", finding.detail));
        }
        if let Some(hint) = &finding.hint {
            out.push_str(&format!("{indent}hint: {hint}\n"));
        }
    }
    let configured = findings
        .iter()
        .filter(|f| f.verdict != Verdict::Off)
        .count();
    let failing = findings
        .iter()
        .filter(|f| f.verdict == Verdict::Fail)
        .count();
    out.push_str(&match (configured, failing) {
        (0, _) => "no sink is configured: traces and logs go to the console only\n".to_owned(),
        (n, 0) => format!("{n} configured, all pass\n"),
        (n, failing) => format!("{n} configured, {failing} failing\n"),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_line_per_sink_its_details_and_a_summary() {
        let findings = vec![
            Finding {
                sink: "otlp",
                verdict: Verdict::Fail,
                configured_by: vec!["HONEYCOMB_API_KEY"],
                destination: Some("https://api.honeycomb.io/v1/traces (http/protobuf)".into()),
                detail: "OTLP/HTTP answered 401 Unauthorized".into(),
                hint: Some("the key was rejected".into()),
            },
            Finding::off("rollbar", "ROLLBAR_ACCESS_TOKEN unset"),
        ];
        assert_eq!(
            table(&findings),
            "otlp        FAIL  https://api.honeycomb.io/v1/traces (http/protobuf)\n\
             \x20                 set by HONEYCOMB_API_KEY\n\
             \x20                 OTLP/HTTP answered 401 Unauthorized\n\
             \x20                 hint: the key was rejected\n\
             rollbar     off   ROLLBAR_ACCESS_TOKEN unset\n\
             1 configured, 1 failing\n"
        );
        assert_eq!(
            table(&[Finding::off("rollbar", "unset")]),
            "rollbar     off   unset\n\
             no sink is configured: traces and logs go to the console only\n"
        );
    }
}

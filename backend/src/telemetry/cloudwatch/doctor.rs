//! The doctor's CloudWatch Logs probe: the region and credentials the SDK's
//! chain finds, and from where; whether the log group exists (or will be
//! created); with `--write`, one test event in a `doctor` stream.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatchlogs::types::InputLogEvent;

use super::client::describe;
use super::{CloudWatchSettings, Resolved, Switch, client, endpoint, off_by_settings, resolved};
use super::{region_source, resolve_aws_hint};
use crate::config::AwsEnvironment;
use crate::telemetry::doctor::{Finding, Verdict};
use crate::telemetry::queue::SendError;

/// The stream `--write` writes its test event to.
const STREAM: &str = "doctor";

pub async fn examine(config: &CloudWatchSettings, write: bool) -> Finding {
    if let Some(why) = off_by_settings(config) {
        return Finding::off("cloudwatch", why);
    }
    let mut configured_by = config.aws.signs.clone();
    if config.switch == Switch::On {
        configured_by.push("CLOUDWATCH_LOGS");
    }
    let group = &config.log_group;
    let mut finding = Finding {
        sink: "cloudwatch",
        verdict: Verdict::Fail,
        configured_by,
        destination: Some(format!("log group {group}")),
        detail: String::new(),
        hint: None,
    };
    let found = tokio::task::spawn_blocking(resolved)
        .await
        .unwrap_or_else(|_| Err("the AWS lookup stopped".into()));
    let Resolved {
        sdk,
        credentials_from,
    } = match found {
        Ok(found) => found,
        Err(why) => {
            finding.hint = Some(resolve_aws_hint(&why).into());
            finding.detail = why;
            return finding;
        }
    };
    let (region, endpoint) = endpoint(&sdk);
    finding.destination = Some(format!("{endpoint} ({region}) log group {group}"));
    finding.detail = format!(
        "region {region} from {}, credentials from {credentials_from}",
        region_source(&config.aws.signs)
    );
    let logs = client(&sdk, config.timeout);
    let groups = logs
        .describe_log_groups()
        .log_group_name_prefix(group)
        .send()
        .await;
    let exists = match groups {
        Ok(answer) => answer
            .log_groups()
            .iter()
            .any(|g| g.log_group_name() == Some(group)),
        Err(err) => {
            let err = describe("DescribeLogGroups", &err);
            finding.detail = format!("{}; {}", finding.detail, err.message);
            finding.hint = err.hint.map(str::to_owned);
            return finding;
        }
    };
    let state = match (exists, config.create_group) {
        (true, _) => "the group exists",
        (false, true) => "the group does not exist yet: it is created with the first events",
        (false, false) => {
            finding.detail = format!(
                "{}; the group does not exist and CLOUDWATCH_CREATE_GROUP=false",
                finding.detail
            );
            finding.hint =
                Some("create the group, or let the backend: CLOUDWATCH_CREATE_GROUP=true".into());
            return finding;
        }
    };
    finding.detail = format!("{}; {state}", finding.detail);
    finding.hint = regions_differ(&config.aws);
    if write {
        if let Err(err) = write_test_event(&logs, group, exists).await {
            finding.detail = format!(
                "{}; writing a test event failed: {}",
                finding.detail, err.message
            );
            finding.hint = err.hint.map(str::to_owned);
            return finding;
        }
        finding.detail = format!("{}; wrote a test event to {group}/{STREAM}", finding.detail);
    }
    finding.verdict = Verdict::Pass;
    finding
}

/// The bootcamp's Gitpod sets `AWS_DEFAULT_REGION`; the SDK reads
/// `AWS_REGION` first, so two different values send logs where the user
/// does not look.
fn regions_differ(regions: &AwsEnvironment) -> Option<String> {
    match (&regions.region, &regions.default_region) {
        (Some(region), Some(default)) if region != default => Some(format!(
            "AWS_REGION={region} and AWS_DEFAULT_REGION={default} differ: the backend \
             (like the AWS CLI) uses AWS_REGION; set them alike"
        )),
        _ => None,
    }
}

/// Creates the group (if missing) and the `doctor` stream, then puts one
/// event.
async fn write_test_event(
    logs: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    exists: bool,
) -> Result<(), SendError> {
    if !exists {
        logs.create_log_group()
            .log_group_name(group)
            .send()
            .await
            .map_err(|err| describe("CreateLogGroup", &err))?;
    }
    let created = logs
        .create_log_stream()
        .log_group_name(group)
        .log_stream_name(STREAM)
        .send()
        .await;
    if let Err(err) = created
        && err
            .as_service_error()
            .is_none_or(|e| !e.is_resource_already_exists_exception())
    {
        return Err(describe("CreateLogStream", &err));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let event = InputLogEvent::builder()
        .timestamp(now)
        .message(r#"{"level":"INFO","target":"cruddur::doctor","message":"cruddur-backend doctor: test event"}"#)
        .build()
        .map_err(|err| SendError::new(err.to_string(), false))?;
    logs.put_log_events()
        .log_group_name(group)
        .log_stream_name(STREAM)
        .log_events(event)
        .send()
        .await
        .map_err(|err| describe("PutLogEvents", &err))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn different_region_variables_are_named() {
        let regions = |region: Option<&str>, default: Option<&str>| AwsEnvironment {
            signs: Vec::new(),
            region: region.map(str::to_owned),
            default_region: default.map(str::to_owned),
        };
        let hint = regions_differ(&regions(Some("us-east-1"), Some("ca-central-1"))).unwrap();
        assert!(
            hint.starts_with("AWS_REGION=us-east-1 and AWS_DEFAULT_REGION=ca-central-1 differ"),
            "{hint}"
        );
        assert_eq!(
            regions_differ(&regions(Some("us-east-1"), Some("us-east-1"))),
            None
        );
        assert_eq!(regions_differ(&regions(None, Some("us-east-1"))), None);
    }
}

//! `cruddur-backend xray setup`: the X-Ray group and sampling rules the
//! bootcamp created by hand with `aws xray create-group` and
//! `create-sampling-rule`, made idempotent: a second run changes nothing.

use std::process::ExitCode;

use aws_sdk_xray::Client;
use aws_sdk_xray::types::{SamplingRule, SamplingRuleUpdate};

use super::sampling::Rule;
use super::{XrayCommand, XraySettings};

/// What one run did, a line per group or rule.
pub type Report = Vec<String>;

fn failed(what: &str, err: impl std::fmt::Debug) -> String {
    format!("{what}: {err:?}")
}

/// Every sampling rule X-Ray has, page by page.
pub(super) async fn sampling_rules(client: &Client) -> Result<Vec<SamplingRule>, String> {
    let mut rules = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .get_sampling_rules()
            .set_next_token(token)
            .send()
            .await
            .map_err(|err| failed("GetSamplingRules", err))?;
        rules.extend(
            page.sampling_rule_records()
                .iter()
                .filter_map(|r| r.sampling_rule().cloned()),
        );
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(rules);
        }
    }
}

/// The filter expression of the group: every trace through the service.
pub fn group_filter(service: &str) -> String {
    format!("service(\"{}\")", service.replace('"', "\\\""))
}

/// Creates or updates the group `name` to filter on `service`, then each
/// rule that is not X-Ray's built-in default.
pub async fn setup(
    client: &Client,
    name: &str,
    service: &str,
    rules: &[Rule],
) -> Result<Report, String> {
    let mut report = Vec::new();
    let filter = group_filter(service);

    let mut groups = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .get_groups()
            .set_next_token(token)
            .send()
            .await
            .map_err(|err| failed("GetGroups", err))?;
        groups.extend(page.groups().iter().cloned());
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    match groups.iter().find(|g| g.group_name() == Some(name)) {
        Some(group) if group.filter_expression() == Some(filter.as_str()) => {
            report.push(format!("group {name}: already filters {filter}"));
        }
        Some(_) => {
            client
                .update_group()
                .group_name(name)
                .filter_expression(&filter)
                .send()
                .await
                .map_err(|err| failed("UpdateGroup", err))?;
            report.push(format!("group {name}: filter updated to {filter}"));
        }
        None => {
            client
                .create_group()
                .group_name(name)
                .filter_expression(&filter)
                .send()
                .await
                .map_err(|err| failed("CreateGroup", err))?;
            report.push(format!("group {name}: created with {filter}"));
        }
    }

    let existing = sampling_rules(client).await?;
    for rule in rules.iter().filter(|rule| rule.name != "Default") {
        let same = |current: &SamplingRule| {
            current.priority() == rule.priority as i32
                && current.fixed_rate() == rule.rate
                && current.reservoir_size() == rule.reservoir as i32
                && current.service_name() == rule.service_name
                && current.host() == rule.host
                && current.http_method() == rule.http_method
                && current.url_path() == rule.url_path
        };
        match existing
            .iter()
            .find(|r| r.rule_name() == Some(rule.name.as_str()))
        {
            Some(current) if same(current) => report.push(format!("rule {}: unchanged", rule.name)),
            Some(_) => {
                let update = SamplingRuleUpdate::builder()
                    .rule_name(&rule.name)
                    .priority(rule.priority as i32)
                    .fixed_rate(rule.rate)
                    .reservoir_size(rule.reservoir as i32)
                    .service_name(&rule.service_name)
                    .host(&rule.host)
                    .http_method(&rule.http_method)
                    .url_path(&rule.url_path)
                    .build();
                client
                    .update_sampling_rule()
                    .sampling_rule_update(update)
                    .send()
                    .await
                    .map_err(|err| failed("UpdateSamplingRule", err))?;
                report.push(format!("rule {}: updated", rule.name));
            }
            None => {
                let created = SamplingRule::builder()
                    .rule_name(&rule.name)
                    .resource_arn("*")
                    .priority(rule.priority as i32)
                    .fixed_rate(rule.rate)
                    .reservoir_size(rule.reservoir as i32)
                    .service_name(&rule.service_name)
                    .service_type("*")
                    .host(&rule.host)
                    .http_method(&rule.http_method)
                    .url_path(&rule.url_path)
                    .version(1)
                    .build()
                    .map_err(|err| failed("SamplingRule", err))?;
                client
                    .create_sampling_rule()
                    .sampling_rule(created)
                    .send()
                    .await
                    .map_err(|err| failed("CreateSamplingRule", err))?;
                report.push(format!("rule {}: created", rule.name));
            }
        }
    }
    Ok(report)
}

/// `cruddur-backend xray setup`: the group and sampling rules, idempotently,
/// through the X-Ray API with the AWS SDK's region and credentials.
pub async fn run(command: &XrayCommand, settings: &XraySettings, service_name: &str) -> ExitCode {
    let XrayCommand::Setup { group } = command;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    if sdk.region().is_none() {
        eprintln!("cruddur-backend: xray setup needs an AWS region (set AWS_REGION)");
        return ExitCode::from(2);
    }
    let service = settings.tracing_name.as_deref().unwrap_or(service_name);
    let rules = settings
        .sampling_rules
        .as_ref()
        .map(|file| file.rules.as_slice())
        .unwrap_or_default();
    let client = Client::new(&sdk);
    match setup(&client, group, service, rules).await {
        Ok(report) => {
            for line in report {
                println!("xray setup: {line}");
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("cruddur-backend: xray setup failed: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_filters_on_the_service() {
        assert_eq!(group_filter("backend-flask"), "service(\"backend-flask\")");
        assert_eq!(group_filter("a\"b"), "service(\"a\\\"b\")");
    }
}

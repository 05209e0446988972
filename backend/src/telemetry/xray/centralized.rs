//! Centralized sampling (`XRAY_SAMPLING=centralized`): the rules come from
//! X-Ray's GetSamplingRules (every 5 minutes) and each rule's reservoir
//! quota from GetSamplingTargets (every 10 seconds), as the X-Ray SDKs do.
//! When X-Ray cannot be reached the local rules apply.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_xray::Client;
use aws_sdk_xray::primitives::DateTime;
use aws_sdk_xray::types::SamplingStatisticsDocument;

use super::sampling::{Rule, RuleSampler};
use super::setup::sampling_rules;

/// How often each call is made.
#[derive(Debug, Clone, Copy)]
pub struct Intervals {
    pub rules: Duration,
    pub targets: Duration,
}

/// Starts the poller on a thread of its own; it lives as long as the process.
pub fn start(sampler: Arc<RuleSampler>, intervals: Intervals) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("xray-sampling".into())
        .spawn(move || runtime.block_on(poll(sampler, intervals)))?;
    Ok(())
}

pub(super) async fn client() -> Client {
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let config = aws_sdk_xray::config::Builder::from(&sdk)
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(5))
                .build(),
        )
        .build();
    Client::from_conf(config)
}

async fn fetch_rules(client: &Client) -> Result<Vec<Rule>, String> {
    let rules = sampling_rules(client).await?;
    Ok(rules
        .iter()
        .map(|rule| Rule {
            name: rule.rule_name().unwrap_or("unnamed").to_owned(),
            priority: i64::from(rule.priority()),
            service_name: rule.service_name().to_owned(),
            host: rule.host().to_owned(),
            http_method: rule.http_method().to_owned(),
            url_path: rule.url_path().to_owned(),
            reservoir: u32::try_from(rule.reservoir_size()).unwrap_or(0),
            rate: rule.fixed_rate(),
        })
        .collect())
}

async fn report(client: &Client, sampler: &RuleSampler, client_id: &str) -> Result<(), String> {
    let now = DateTime::from(SystemTime::now());
    let documents = sampler
        .take_statistics()
        .into_iter()
        .map(|stats| {
            SamplingStatisticsDocument::builder()
                .rule_name(stats.rule)
                .client_id(client_id)
                .timestamp(now)
                .request_count(i32::try_from(stats.requests).unwrap_or(i32::MAX))
                .sampled_count(i32::try_from(stats.sampled).unwrap_or(i32::MAX))
                .borrow_count(i32::try_from(stats.borrowed).unwrap_or(i32::MAX))
                .build()
                .map_err(|err| format!("SamplingStatisticsDocument: {err}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let answer = client
        .get_sampling_targets()
        .set_sampling_statistics_documents(Some(documents))
        .send()
        .await
        .map_err(|err| format!("GetSamplingTargets: {err}"))?;
    let targets: Vec<(String, f64, u32, Duration)> = answer
        .sampling_target_documents()
        .iter()
        .filter_map(|target| {
            let until = SystemTime::try_from(*target.reservoir_quota_ttl()?).ok()?;
            Some((
                target.rule_name()?.to_owned(),
                target.fixed_rate(),
                u32::try_from(target.reservoir_quota()?).ok()?,
                until.duration_since(SystemTime::now()).unwrap_or_default(),
            ))
        })
        .collect();
    sampler.use_targets(&targets);
    Ok(())
}

async fn poll(sampler: Arc<RuleSampler>, intervals: Intervals) {
    let client = client().await;
    // Names this process in X-Ray's statistics: 24 hex characters.
    let client_id: String = uuid::Uuid::new_v4().simple().to_string()[..24].to_owned();
    let mut rules_tick = tokio::time::interval(intervals.rules);
    let mut targets_tick = tokio::time::interval(intervals.targets);
    let mut centralized = false;
    let mut reported_failure = false;
    loop {
        tokio::select! {
            _ = rules_tick.tick() => match fetch_rules(&client).await {
                Ok(rules) => {
                    sampler.use_rules(Some(rules));
                    if !centralized {
                        eprintln!("telemetry: xray sampling rules from X-Ray in use");
                    }
                    centralized = true;
                    reported_failure = false;
                }
                Err(err) => {
                    if centralized || !reported_failure {
                        eprintln!("telemetry: xray sampling: {err}; the local rules apply");
                    }
                    sampler.use_rules(None);
                    centralized = false;
                    reported_failure = true;
                }
            },
            _ = targets_tick.tick(), if centralized => {
                if let Err(err) = report(&client, &sampler, &client_id).await {
                    eprintln!("telemetry: xray sampling: {err}");
                }
            }
        }
    }
}

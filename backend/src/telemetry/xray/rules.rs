//! X-Ray sampling rules: what a rule matches (service, host, method and
//! path, with X-Ray's wildcards) and how many traces it keeps, read from
//! the two file formats users have: the `SamplingRule` JSON the X-Ray API
//! and the bootcamp use, and the X-Ray SDKs' local rules file.

use serde::Deserialize;

use super::naming::wildcard_match;

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub priority: i64,
    pub service_name: String,
    pub host: String,
    pub http_method: String,
    pub url_path: String,
    /// Traces a second taken before the rate applies.
    pub reservoir: u32,
    pub rate: f64,
}

impl Rule {
    /// X-Ray's built-in default: one request a second, then 5%.
    pub fn default_rule() -> Rule {
        Rule {
            name: "Default".into(),
            priority: 10_000,
            service_name: "*".into(),
            host: "*".into(),
            http_method: "*".into(),
            url_path: "*".into(),
            reservoir: 1,
            rate: 0.05,
        }
    }

    pub(super) fn matches(&self, request: &RequestFacts<'_>) -> bool {
        wildcard_match(&self.service_name, request.service)
            && wildcard_match(&self.host, request.host)
            && wildcard_match(&self.http_method, request.method)
            && wildcard_match(&self.url_path, request.path)
    }
}

/// What rules are matched against.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub service: &'a str,
    pub host: &'a str,
    pub method: &'a str,
    pub path: &'a str,
}

/// The `SamplingRule` JSON that `aws xray create-sampling-rule` takes.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ApiRule {
    rule_name: String,
    priority: i64,
    fixed_rate: f64,
    reservoir_size: u32,
    #[serde(default = "any")]
    service_name: String,
    #[serde(default = "any")]
    host: String,
    #[serde(rename = "HTTPMethod", default = "any")]
    http_method: String,
    #[serde(rename = "URLPath", default = "any")]
    url_path: String,
}

/// One rule of the X-Ray SDKs' local rules file (versions 1 and 2).
#[derive(Deserialize)]
struct LocalRule {
    #[serde(default)]
    description: String,
    #[serde(default = "any")]
    service_name: String,
    #[serde(default = "any")]
    host: String,
    #[serde(default = "any")]
    http_method: String,
    #[serde(default = "any")]
    url_path: String,
    fixed_target: u32,
    rate: f64,
}

#[derive(Deserialize)]
struct LocalDefault {
    fixed_target: u32,
    rate: f64,
}

#[derive(Deserialize)]
struct LocalRules {
    version: u32,
    #[serde(default)]
    rules: Vec<LocalRule>,
    default: LocalDefault,
}

fn any() -> String {
    "*".into()
}

/// Reads a rules file: `{"SamplingRule": {...}}` (what the bootcamp keeps in
/// aws/json/xray.json), a bare `SamplingRule`, a list of them, or the SDKs'
/// local rules (`{"version": 2, "rules": [...], "default": {...}}`). The
/// default rule always comes last.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|err| format!("not JSON: {err}"))?;
    let from_api = |rule: ApiRule| Rule {
        name: rule.rule_name,
        priority: rule.priority,
        service_name: rule.service_name,
        host: rule.host,
        http_method: rule.http_method,
        url_path: rule.url_path,
        reservoir: rule.reservoir_size,
        rate: rule.fixed_rate,
    };
    let api = |value: serde_json::Value| {
        serde_json::from_value::<ApiRule>(value)
            .map(from_api)
            .map_err(|err| format!("not a SamplingRule: {err}"))
    };
    let mut rules = if let Some(rule) = value.get("SamplingRule") {
        vec![api(rule.clone())?]
    } else if let Some(list) = value.as_array() {
        list.iter()
            .map(|item| api(item.get("SamplingRule").unwrap_or(item).clone()))
            .collect::<Result<Vec<_>, _>>()?
    } else if value.get("version").is_some() {
        let local: LocalRules = serde_json::from_value(value)
            .map_err(|err| format!("not an X-Ray local rules file: {err}"))?;
        if !(1..=2).contains(&local.version) {
            return Err(format!(
                "local rules version {} is not 1 or 2",
                local.version
            ));
        }
        let mut rules: Vec<Rule> = local
            .rules
            .into_iter()
            .enumerate()
            .map(|(index, rule)| Rule {
                name: if rule.description.is_empty() {
                    format!("rule {}", index + 1)
                } else {
                    rule.description
                },
                priority: index as i64 + 1,
                service_name: rule.service_name,
                host: rule.host,
                http_method: rule.http_method,
                url_path: rule.url_path,
                reservoir: rule.fixed_target,
                rate: rule.rate,
            })
            .collect();
        rules.push(Rule {
            reservoir: local.default.fixed_target,
            rate: local.default.rate,
            ..Rule::default_rule()
        });
        rules
    } else {
        vec![api(value)?]
    };
    for rule in &rules {
        if !(0.0..=1.0).contains(&rule.rate) {
            return Err(format!(
                "rule {:?}: the rate must be from 0 to 1",
                rule.name
            ));
        }
    }
    rules.sort_by_key(|rule| rule.priority);
    if !rules.iter().any(|rule| rule.name == "Default") {
        rules.push(Rule::default_rule());
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bootcamp_rule_file_is_read() {
        let rules = parse_rules(
            r#"{"SamplingRule": {"RuleName": "Cruddur", "ResourceARN": "*", "Priority": 9000,
                "FixedRate": 0.1, "ReservoirSize": 5, "ServiceName": "backend-flask",
                "ServiceType": "*", "Host": "*", "HTTPMethod": "*", "URLPath": "*", "Version": 1}}"#,
        )
        .unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].name, "Cruddur");
        assert_eq!((rules[0].reservoir, rules[0].rate), (5, 0.1));
        assert_eq!(rules[0].service_name, "backend-flask");
        assert_eq!(rules[1], Rule::default_rule());
    }

    /// The file the README's `xray setup` example names: the bootcamp's
    /// rule, for the service name this backend reports by default.
    #[test]
    fn the_shipped_rules_file_is_the_bootcamp_rule_for_this_service() {
        use clap::CommandFactory;

        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/aws/json/xray.json");
        let text = std::fs::read_to_string(path).expect("aws/json/xray.json is shipped");
        let rules = parse_rules(&text).unwrap();
        let default_service = crate::config::Config::command()
            .get_arguments()
            .find(|arg| arg.get_env().is_some_and(|env| env == "OTEL_SERVICE_NAME"))
            .and_then(|arg| arg.get_default_values().first().cloned())
            .expect("OTEL_SERVICE_NAME has a default");
        assert_eq!(
            rules[0],
            Rule {
                name: "Cruddur".into(),
                priority: 9000,
                service_name: default_service.to_string_lossy().into_owned(),
                host: "*".into(),
                http_method: "*".into(),
                url_path: "*".into(),
                reservoir: 5,
                rate: 0.1,
            }
        );
        assert_eq!(rules[1..], [Rule::default_rule()]);
    }

    #[test]
    fn the_sdk_local_rules_file_is_read() {
        let rules = parse_rules(
            r#"{"version": 2, "rules": [{"description": "Player moves.", "host": "*",
                "http_method": "*", "url_path": "/api/move/*", "fixed_target": 0, "rate": 0.05}],
                "default": {"fixed_target": 1, "rate": 0.1}}"#,
        )
        .unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].name, "Player moves.");
        assert_eq!(rules[0].url_path, "/api/move/*");
        assert_eq!((rules[1].reservoir, rules[1].rate), (1, 0.1));
    }

    #[test]
    fn bad_rule_files_are_refused_with_a_reason() {
        assert!(parse_rules("{").unwrap_err().contains("not JSON"));
        assert!(
            parse_rules(r#"{"SamplingRule": {"RuleName": "x"}}"#)
                .unwrap_err()
                .contains("SamplingRule")
        );
        assert!(
            parse_rules(r#"{"version": 7, "default": {"fixed_target": 1, "rate": 0.1}}"#)
                .unwrap_err()
                .contains("version")
        );
        let too_high = r#"{"RuleName": "x", "Priority": 1, "FixedRate": 2, "ReservoirSize": 1}"#;
        assert!(parse_rules(too_high).unwrap_err().contains("rate"));
    }
}

//! A small stand-in for the X-Ray control API (moto does not implement
//! groups or sampling): it keeps state, checks what the SDK sends, and
//! counts calls. Point the SDK at it with `AWS_ENDPOINT_URL`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};

#[derive(Default)]
pub struct ApiState {
    pub groups: Vec<Value>,
    pub rules: Vec<Value>,
    /// Every call, by path, in order.
    pub calls: Vec<String>,
    /// Statistics documents received by GetSamplingTargets.
    pub statistics: Vec<Value>,
    /// What GetSamplingTargets answers: (rule, fixed rate, reservoir quota).
    pub targets: Vec<(String, f64, u32)>,
}

pub struct XrayApi {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<ApiState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for XrayApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Shared = State<Arc<Mutex<ApiState>>>;

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn bad(message: &str) -> (StatusCode, Json<Value>) {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"__type": "InvalidRequestException", "message": message})),
    )
}

fn record(state: &Shared, call: &str) {
    state.0.lock().unwrap().calls.push(call.to_owned());
}

async fn get_groups(state: Shared) -> Json<Value> {
    record(&state, "GetGroups");
    Json(json!({"Groups": state.0.lock().unwrap().groups}))
}

async fn create_group(state: Shared, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    record(&state, "CreateGroup");
    let (Some(name), Some(filter)) = (
        body["GroupName"].as_str(),
        body["FilterExpression"].as_str(),
    ) else {
        return bad("GroupName and FilterExpression are required");
    };
    let mut state = state.0.lock().unwrap();
    if state.groups.iter().any(|g| g["GroupName"] == name) {
        return bad("Group already exists");
    }
    let group = json!({"GroupName": name, "GroupARN": format!("arn:aws:xray:us-east-1:123456789012:group/{name}"), "FilterExpression": filter});
    state.groups.push(group.clone());
    (StatusCode::OK, Json(json!({"Group": group})))
}

async fn update_group(state: Shared, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    record(&state, "UpdateGroup");
    let mut state = state.0.lock().unwrap();
    let Some(group) = state
        .groups
        .iter_mut()
        .find(|g| g["GroupName"] == body["GroupName"])
    else {
        return bad("no such group");
    };
    group["FilterExpression"] = body["FilterExpression"].clone();
    let group = group.clone();
    (StatusCode::OK, Json(json!({"Group": group})))
}

/// Transaction Search on: spans go to CloudWatch Logs.
async fn get_trace_segment_destination(state: Shared) -> Json<Value> {
    record(&state, "GetTraceSegmentDestination");
    Json(json!({"Destination": "CloudWatchLogs", "Status": "ACTIVE"}))
}

fn rule_record(rule: &Value) -> Value {
    json!({"SamplingRule": rule, "CreatedAt": now(), "ModifiedAt": now()})
}

async fn get_sampling_rules(state: Shared) -> Json<Value> {
    record(&state, "GetSamplingRules");
    let records: Vec<Value> = state
        .0
        .lock()
        .unwrap()
        .rules
        .iter()
        .map(rule_record)
        .collect();
    Json(json!({"SamplingRuleRecords": records}))
}

const RULE_FIELDS: &[&str] = &[
    "RuleName",
    "ResourceARN",
    "Priority",
    "FixedRate",
    "ReservoirSize",
    "ServiceName",
    "ServiceType",
    "Host",
    "HTTPMethod",
    "URLPath",
    "Version",
];

async fn create_sampling_rule(state: Shared, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    record(&state, "CreateSamplingRule");
    let rule = body["SamplingRule"].clone();
    if let Some(missing) = RULE_FIELDS.iter().find(|field| rule.get(**field).is_none()) {
        return bad(&format!("SamplingRule.{missing} is required"));
    }
    if !(1..=9999).contains(&rule["Priority"].as_i64().unwrap_or(0)) {
        return bad("Priority must be from 1 to 9999");
    }
    let mut state = state.0.lock().unwrap();
    if state
        .rules
        .iter()
        .any(|r| r["RuleName"] == rule["RuleName"])
    {
        return bad("Rule already exists");
    }
    state.rules.push(rule.clone());
    (
        StatusCode::OK,
        Json(json!({"SamplingRuleRecord": rule_record(&rule)})),
    )
}

async fn update_sampling_rule(state: Shared, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    record(&state, "UpdateSamplingRule");
    let update = body["SamplingRuleUpdate"].clone();
    let mut state = state.0.lock().unwrap();
    let Some(rule) = state
        .rules
        .iter_mut()
        .find(|r| r["RuleName"] == update["RuleName"])
    else {
        return bad("no such rule");
    };
    for (key, value) in update.as_object().unwrap() {
        rule[key] = value.clone();
    }
    let rule = rule.clone();
    (
        StatusCode::OK,
        Json(json!({"SamplingRuleRecord": rule_record(&rule)})),
    )
}

async fn sampling_targets(state: Shared, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    record(&state, "GetSamplingTargets");
    let Some(documents) = body["SamplingStatisticsDocuments"].as_array() else {
        return bad("SamplingStatisticsDocuments is required");
    };
    let mut state = state.0.lock().unwrap();
    for document in documents {
        for field in [
            "RuleName",
            "ClientID",
            "Timestamp",
            "RequestCount",
            "SampledCount",
        ] {
            if document.get(field).is_none() {
                return bad(&format!("{field} is required"));
            }
        }
        state.statistics.push(document.clone());
    }
    let targets: Vec<Value> = state
        .targets
        .iter()
        .map(|(rule, rate, quota)| {
            json!({"RuleName": rule, "FixedRate": rate, "ReservoirQuota": quota,
                   "ReservoirQuotaTTL": now() + 60.0, "Interval": 10})
        })
        .collect();
    (
        StatusCode::OK,
        Json(
            json!({"SamplingTargetDocuments": targets, "LastRuleModification": 0.0, "UnprocessedStatistics": []}),
        ),
    )
}

impl XrayApi {
    pub async fn start() -> XrayApi {
        let state = Arc::new(Mutex::new(ApiState::default()));
        let app = axum::Router::new()
            .route("/Groups", post(get_groups))
            .route("/CreateGroup", post(create_group))
            .route("/UpdateGroup", post(update_group))
            .route("/GetSamplingRules", post(get_sampling_rules))
            .route(
                "/GetTraceSegmentDestination",
                post(get_trace_segment_destination),
            )
            .route("/CreateSamplingRule", post(create_sampling_rule))
            .route("/UpdateSamplingRule", post(update_sampling_rule))
            .route("/SamplingTargets", post(sampling_targets))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        XrayApi { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }
}

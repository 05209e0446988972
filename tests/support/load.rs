//! A fixed request rate against a running server, and what it measured:
//! each request's status, latency and trace, percentiles, and the server's
//! peak resident memory.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

/// What a request of the load is, and so what telemetry it must leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A read: spans, a segment, an access log line.
    Read,
    /// `GET /rollbar/test`: the same plus a Rollbar item.
    RollbarTest,
    /// `POST /api/activities`: the same as a read, and a crud stored.
    Create,
    /// `GET /storm/panic` (the storm server only): a panic, answered 500.
    Panic,
    /// `GET /storm/logs` (the storm server only): a flood of log lines.
    LogStorm,
}

/// Which requests a load sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// Reads, and every tenth a Rollbar test item.
    Reads,
    /// Creates only.
    Writes,
    /// Panics and log floods, in turn.
    Storm,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub kind: Kind,
    /// `None`: no answer (refused or cut off).
    pub status: Option<u16>,
    pub latency: Duration,
    /// The W3C trace id the answer named (32 hex digits), if it answered.
    pub trace: Option<String>,
    /// A created crud's uuid.
    pub created: Option<String>,
}

/// Which request the `n`th tick of `mix` sends.
fn pick(n: u64, mix: Mix) -> Kind {
    match mix {
        Mix::Writes => Kind::Create,
        Mix::Reads if n % 10 == 9 => Kind::RollbarTest,
        Mix::Reads => Kind::Read,
        Mix::Storm if n.is_multiple_of(2) => Kind::Panic,
        Mix::Storm => Kind::LogStorm,
    }
}

async fn one(client: reqwest::Client, base: String, n: u64, kind: Kind) -> Outcome {
    let request = match kind {
        Kind::Read if n.is_multiple_of(2) => client.get(format!("{base}/api/activities/home")),
        Kind::Read => client.get(format!("{base}/api/activities/@andrewbrown")),
        Kind::RollbarTest => client.get(format!("{base}/rollbar/test")),
        Kind::Panic => client.get(format!("{base}/storm/panic")),
        Kind::LogStorm => client.get(format!("{base}/storm/logs")),
        Kind::Create => client
            .post(format!("{base}/api/activities"))
            .json(&serde_json::json!({"message": format!("load crud {n}"), "ttl": "1-day"})),
    };
    let sent = Instant::now();
    let answer = request.timeout(Duration::from_secs(30)).send().await;
    let mut outcome = Outcome {
        kind,
        status: None,
        latency: Duration::ZERO,
        trace: None,
        created: None,
    };
    let Ok(answer) = answer else {
        return outcome;
    };
    outcome.trace = answer
        .headers()
        .get("x-amzn-trace-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|header| header.split(';').find_map(|p| p.strip_prefix("Root=1-")))
        .map(|root| root.replace('-', ""));
    let status = answer.status().as_u16();
    let body = answer.bytes().await;
    outcome.latency = sent.elapsed();
    if body.is_err() {
        return outcome;
    }
    outcome.status = Some(status);
    if kind == Kind::Create && status == 200 {
        outcome.created = body
            .ok()
            .and_then(|body| serde_json::from_slice::<serde_json::Value>(&body).ok())
            .and_then(|crud| crud["uuid"].as_str().map(str::to_owned));
    }
    outcome
}

/// Sends `rate` requests a second of `mix` to `base` until `until` resolves (each on
/// its own task, so a slow answer never slows the rate), then waits for
/// every answer. `answered` is told the count of answered requests as it
/// grows, for whoever waits on the load's progress.
pub async fn run(
    base: &str,
    rate: u32,
    mix: Mix,
    until: impl Future<Output = ()>,
    answered: Option<tokio::sync::watch::Sender<usize>>,
) -> Vec<Outcome> {
    let client = reqwest::Client::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut requests = JoinSet::new();
    let mut outcomes = Vec::new();
    let mut n = 0u64;
    let record = |outcome: Outcome, outcomes: &mut Vec<Outcome>| {
        if outcome.status.is_some()
            && let Some(answered) = &answered
        {
            answered.send_modify(|count| *count += 1);
        }
        outcomes.push(outcome);
    };
    tokio::pin!(until);
    loop {
        tokio::select! {
            () = &mut until => break,
            _ = tick.tick() => {
                requests.spawn(one(client.clone(), base.to_owned(), n, pick(n, mix)));
                n += 1;
            }
            Some(done) = requests.join_next() => {
                record(done.expect("a request task"), &mut outcomes);
            }
        }
    }
    while let Some(done) = requests.join_next().await {
        record(done.expect("a request task"), &mut outcomes);
    }
    outcomes
}

/// The `p`th percentile (0..=100) of the answered requests' latencies, in ms.
pub fn percentile_ms(outcomes: &[Outcome], p: f64) -> f64 {
    let mut latencies: Vec<Duration> = outcomes
        .iter()
        .filter(|o| o.status.is_some())
        .map(|o| o.latency)
        .collect();
    if latencies.is_empty() {
        return f64::NAN;
    }
    latencies.sort();
    let rank = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
    latencies[rank.clamp(1, latencies.len()) - 1].as_secs_f64() * 1000.0
}

/// The process's peak resident set (`VmHWM`), in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmHWM line");
    kib / 1024.0
}

/// Starts a new peak: `VmHWM` from now on (Linux's `clear_refs` 5).
pub fn reset_peak_rss(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("/proc/PID/clear_refs");
}

//! The real binary with every sink on at once, each against its local
//! stand-in on 127.0.0.1 and each breakable on demand: OTLP to the OTLP
//! receiver, X-Ray to the fake daemon with every trace sampled, CloudWatch
//! Logs to moto through the fault proxy, Rollbar to the Rollbar receiver;
//! the TCP ones behind a [`Gate`] each.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::faults::{Fault as CloudWatchFault, FaultProxy};
use super::gate::{Gate, Mode};
use super::load::{Kind, Outcome};
use super::moto::{Moto, messages};
use super::otlp::{Behavior, OtlpReceiver, SPAN_KIND_SERVER};
use super::rollbar::{Answer, RollbarReceiver};
use super::server::{Server, binary};
use super::xray::{Datagram, XrayDaemon};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sink {
    Otlp,
    Xray,
    CloudWatch,
    Rollbar,
}

pub const SINKS: [Sink; 4] = [Sink::Otlp, Sink::Xray, Sink::CloudWatch, Sink::Rollbar];

impl Sink {
    /// Its name in `/api/health-check`.
    pub fn name(self) -> &'static str {
        match self {
            Sink::Otlp => "otlp",
            Sink::Xray => "xray",
            Sink::CloudWatch => "cloudwatch",
            Sink::Rollbar => "rollbar",
        }
    }
}

/// How a destination is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Refuse,
    Hang,
    ServerError,
    /// Answers, after 2 s.
    Slow,
    /// 429 with its reset header (CloudWatch: the AWS throttling error).
    Throttle,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Refuse => "refused",
            Fault::Hang => "never answers",
            Fault::ServerError => "500",
            Fault::Slow => "answers after 2 s",
            Fault::Throttle => "429",
        }
    }
}

pub const SLOW_ANSWER: Duration = Duration::from_secs(2);
const STREAM: &str = "faults";
const GROUP: &str = "cruddur-faults";

/// `exported`, `dropped`, `failed` of one sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub exported: u64,
    pub dropped: u64,
    pub failed: u64,
}

impl Counters {
    pub fn since(self, before: Counters) -> Counters {
        Counters {
            exported: self.exported - before.exported,
            dropped: self.dropped - before.dropped,
            failed: self.failed - before.failed,
        }
    }

    /// Items given up on, as the health check counts them.
    pub fn lost(self) -> u64 {
        self.dropped + self.failed
    }
}

pub struct Rig {
    pub otlp: OtlpReceiver,
    otlp_gate: Gate,
    pub rollbar: RollbarReceiver,
    rollbar_gate: Gate,
    moto: Moto,
    cloudwatch: FaultProxy,
    cloudwatch_gate: Gate,
    xray: Option<XrayDaemon>,
    xray_addr: SocketAddr,
    /// What daemons that were taken down had received.
    xray_before: Vec<Datagram>,
    pub database: PathBuf,
    _dir: tempfile::TempDir,
    pub server: Server,
}

impl Rig {
    /// Every sink on and healthy; each delivery attempt times out after
    /// `timeout`; `extra` adds or overrides variables.
    pub async fn start(timeout: Duration, extra: &[(&'static str, String)]) -> Rig {
        Rig::start_program(&binary(), timeout, extra).await
    }

    /// The same with `program` as the server (the storm server).
    pub async fn start_program(
        program: &str,
        timeout: Duration,
        extra: &[(&'static str, String)],
    ) -> Rig {
        let otlp = OtlpReceiver::http(Behavior::Accept).await;
        let otlp_gate = Gate::start(otlp.addr).await;
        let rollbar = RollbarReceiver::start(Answer::Accept).await;
        let rollbar_gate = Gate::start(rollbar_addr(&rollbar)).await;
        let moto = Moto::start().await;
        let cloudwatch = FaultProxy::start(&moto.endpoint(), Vec::new()).await;
        let cloudwatch_gate = Gate::start(cloudwatch.addr).await;
        let xray = XrayDaemon::start().await;
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("xray-every-trace.json");
        std::fs::write(
            &rules,
            r#"{"version": 2, "rules": [], "default": {"fixed_target": 0, "rate": 1.0}}"#,
        )
        .unwrap();
        let database = dir.path().join("cruddur.db");
        let millis = timeout.as_millis().to_string();
        let mut env: Vec<(&'static str, String)> = Moto::env(&cloudwatch_gate.endpoint());
        env.extend([
            ("DATABASE_PATH", database.to_str().unwrap().to_owned()),
            ("OTEL_TRACES_EXPORTER", "otlp".into()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_gate.endpoint()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", millis.clone()),
            ("OTEL_BSP_SCHEDULE_DELAY", "200".into()),
            ("AWS_XRAY_DAEMON_ADDRESS", xray.addr.to_string()),
            ("XRAY_SAMPLING_RULES", rules.to_str().unwrap().to_owned()),
            ("CLOUDWATCH_LOG_GROUP", GROUP.into()),
            ("CLOUDWATCH_LOG_STREAM", STREAM.into()),
            ("CLOUDWATCH_FLUSH_INTERVAL", "300ms".into()),
            ("CLOUDWATCH_TIMEOUT", format!("{millis}ms")),
            ("ROLLBAR_ACCESS_TOKEN", "test-rollbar-token-faults".into()),
            (
                "ROLLBAR_ENDPOINT",
                format!("{}/api/1/item/", rollbar_gate.endpoint()),
            ),
            // Every item of every request is the promise under test, not
            // the rate limit (tests/rollbar.rs covers that).
            ("ROLLBAR_MAX_ITEMS_PER_MINUTE", "1000000".into()),
            ("ROLLBAR_TIMEOUT", format!("{millis}ms")),
        ]);
        for (key, value) in extra {
            env.retain(|(k, _)| k != key);
            env.push((key, value.clone()));
        }
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let server = Server::start_program(program, &pairs);
        Rig {
            otlp,
            otlp_gate,
            rollbar,
            rollbar_gate,
            moto,
            cloudwatch,
            cloudwatch_gate,
            xray_addr: xray.addr,
            xray: Some(xray),
            xray_before: Vec::new(),
            database,
            _dir: dir,
            server,
        }
    }

    pub fn base(&self) -> String {
        self.server.url("")
    }

    pub fn pid(&self) -> u32 {
        self.server.pid().expect("the server runs")
    }

    /// Breaks `sink` with `fault`; answers false for a fault the sink
    /// cannot have (X-Ray's daemon speaks UDP: it can only be absent).
    pub fn break_sink(&mut self, sink: Sink, fault: Fault) -> bool {
        let gate = match sink {
            Sink::Otlp => &self.otlp_gate,
            Sink::CloudWatch => &self.cloudwatch_gate,
            Sink::Rollbar => &self.rollbar_gate,
            Sink::Xray => {
                if fault != Fault::Refuse {
                    return false;
                }
                if let Some(daemon) = self.xray.take() {
                    self.xray_before.extend(daemon.datagrams());
                }
                return true;
            }
        };
        match fault {
            Fault::Refuse => gate.set(Mode::Refuse),
            Fault::Hang => gate.set(Mode::Hang),
            Fault::Slow => gate.set(Mode::Slow(SLOW_ANSWER)),
            Fault::ServerError | Fault::Throttle => match sink {
                Sink::Otlp => {
                    self.otlp
                        .set_behavior(Behavior::Status(if fault == Fault::Throttle {
                            429
                        } else {
                            500
                        }))
                }
                Sink::Rollbar => self.rollbar.set_answer(if fault == Fault::Throttle {
                    Answer::RateLimited { reset_in: 1 }
                } else {
                    Answer::Status(500)
                }),
                Sink::CloudWatch => self.cloudwatch.always(Some(if fault == Fault::Throttle {
                    CloudWatchFault::Throttle
                } else {
                    CloudWatchFault::ServerError
                })),
                Sink::Xray => unreachable!("handled above"),
            },
        }
        true
    }

    /// Every sink healthy again.
    pub async fn heal(&mut self) {
        for gate in [&self.otlp_gate, &self.cloudwatch_gate, &self.rollbar_gate] {
            gate.set(Mode::Open);
        }
        self.otlp.set_behavior(Behavior::Accept);
        self.rollbar.set_answer(Answer::Accept);
        self.cloudwatch.always(None);
        if self.xray.is_none() {
            self.xray = Some(XrayDaemon::start_on(self.xray_addr).await);
        }
    }

    /// Every datagram the daemon received, across its restarts.
    pub fn xray_datagrams(&self) -> Vec<Datagram> {
        let mut all = self.xray_before.clone();
        all.extend(self.xray.iter().flat_map(XrayDaemon::datagrams));
        all
    }

    /// The JSON records stored in CloudWatch (moto).
    pub async fn cloudwatch_records(&self) -> Vec<Value> {
        match self
            .moto
            .client()
            .get_log_events()
            .log_group_name(GROUP)
            .log_stream_name(STREAM)
            .limit(1)
            .send()
            .await
        {
            Ok(_) => messages(&self.moto.client(), GROUP, STREAM)
                .await
                .into_iter()
                .filter_map(|(_, line)| serde_json::from_str(&line).ok())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The traces (W3C ids) of which `sink` holds this request's part:
    /// the server span, the segment, the access line, the item.
    pub async fn arrived(&self, sink: Sink) -> HashSet<String> {
        match sink {
            Sink::Otlp => self
                .otlp
                .spans()
                .into_iter()
                .filter(|span| span.kind == SPAN_KIND_SERVER)
                .map(|span| span.trace_id)
                .collect(),
            Sink::Xray => self
                .xray_datagrams()
                .iter()
                .filter_map(|d| d.document["trace_id"].as_str())
                .filter_map(|id| id.strip_prefix("1-"))
                .map(|id| id.replace('-', ""))
                .collect(),
            Sink::CloudWatch => self
                .cloudwatch_records()
                .await
                .iter()
                .filter(|r| r["target"] == "cruddur::access")
                .filter_map(|r| r["trace_id"].as_str().map(str::to_owned))
                .collect(),
            Sink::Rollbar => self
                .rollbar
                .items()
                .iter()
                .filter_map(|item| item["custom"]["trace_id"].as_str().map(str::to_owned))
                .collect(),
        }
    }

    /// Waits (bounded) until `sink` holds every answered request's part;
    /// answers the traces still missing then.
    pub async fn missing(&self, sink: Sink, outcomes: &[Outcome], within: Duration) -> Vec<String> {
        let expected: Vec<&String> = outcomes
            .iter()
            .filter(|o| o.status == Some(200))
            .filter(|o| sink != Sink::Rollbar || o.kind == Kind::RollbarTest)
            .filter_map(|o| o.trace.as_ref())
            .collect();
        let deadline = Instant::now() + within;
        loop {
            let arrived = self.arrived(sink).await;
            let missing: Vec<String> = expected
                .iter()
                .filter(|trace| !arrived.contains(**trace))
                .map(|trace| (*trace).clone())
                .collect();
            if missing.is_empty() || Instant::now() >= deadline {
                return missing;
            }
            // moto and the receivers have no signal for "everything is in".
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Each sink's counters from `/api/health-check`.
    pub async fn counters(&self, sink: Sink) -> Counters {
        let health = self.server.health().await;
        let report = &health["sinks"][sink.name()];
        assert_eq!(report["enabled"], true, "{health}");
        let count = |field: &str| report[field].as_u64().unwrap();
        Counters {
            exported: count("exported"),
            dropped: count("dropped"),
            failed: count("failed"),
        }
    }

    pub async fn all_counters(&self) -> [Counters; 4] {
        let mut all = [Counters::default(); 4];
        for (slot, sink) in all.iter_mut().zip(SINKS) {
            *slot = self.counters(sink).await;
        }
        all
    }
}

fn rollbar_addr(rollbar: &RollbarReceiver) -> SocketAddr {
    rollbar
        .endpoint()
        .trim_start_matches("http://")
        .trim_end_matches("/api/1/item/")
        .parse()
        .expect("the receiver's address")
}

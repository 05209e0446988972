//! X-Ray sampling: rules matched on service, host, method and path, each
//! with a per-second reservoir and a fixed rate after it. The decision is
//! made once per trace, where it enters this service: a kept trace carries
//! `xray=1` in its trace state, so every span of the trace, the X-Ray sink
//! and the `X-Amzn-Trace-Id` answer agree; a trace without it is not kept.
//! It decides what reaches X-Ray only: the OpenTelemetry sampler (what OTLP
//! gets) runs unchanged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId, TraceState};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::trace::{SamplingResult, ShouldSample};

pub use super::rules::{RequestFacts, Rule, parse_rules};
use crate::telemetry::propagation::DECISION_KEY;

/// Whether a span context's trace was sampled for X-Ray.
pub fn sampled_for_xray(state: &TraceState) -> bool {
    state.get(DECISION_KEY) == Some("1")
}

/// A clock the tests can drive.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Instant;
}

#[derive(Debug)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A rule in use, with its reservoir and what it reports to X-Ray.
#[derive(Debug)]
struct ActiveRule {
    rule: Rule,
    /// Rules fetched from the X-Ray API borrow one trace a second until X-Ray
    /// assigns them a quota; local rules use their own reservoir.
    centralized: bool,
    reservoir: Mutex<Reservoir>,
    requests: AtomicU64,
    sampled: AtomicU64,
    borrowed: AtomicU64,
}

#[derive(Debug)]
struct Reservoir {
    second: Option<Instant>,
    used: u32,
    /// X-Ray's assignment: (fixed rate, traces a second, until).
    target: Option<(f64, u32, Instant)>,
}

impl ActiveRule {
    fn new(rule: Rule, centralized: bool) -> ActiveRule {
        ActiveRule {
            rule,
            centralized,
            reservoir: Mutex::new(Reservoir {
                second: None,
                used: 0,
                target: None,
            }),
            requests: AtomicU64::new(0),
            sampled: AtomicU64::new(0),
            borrowed: AtomicU64::new(0),
        }
    }
}

/// What a centralized rule did since the last report to X-Ray.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleStatistics {
    pub rule: String,
    pub requests: u64,
    pub sampled: u64,
    pub borrowed: u64,
}

/// Matches rules and keeps each rule's reservoir. The rules are the local
/// ones until X-Ray's own are fetched (`XRAY_SAMPLING=centralized`), and
/// again whenever X-Ray cannot be reached.
#[derive(Debug)]
pub struct RuleSampler {
    local: Vec<Rule>,
    active: RwLock<Vec<ActiveRule>>,
    clock: Box<dyn Clock>,
}

impl RuleSampler {
    pub fn new(rules: Vec<Rule>, clock: Box<dyn Clock>) -> Self {
        let active = rules
            .iter()
            .cloned()
            .map(|rule| ActiveRule::new(rule, false))
            .collect();
        RuleSampler {
            local: rules,
            active: RwLock::new(active),
            clock,
        }
    }

    fn active(&self) -> std::sync::RwLockReadGuard<'_, Vec<ActiveRule>> {
        self.active
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Uses the rules X-Ray answered (sorted by priority), or the local ones
    /// again when `rules` is `None`.
    pub fn use_rules(&self, rules: Option<Vec<Rule>>) {
        let active = match rules {
            Some(mut rules) => {
                rules.sort_by_key(|rule| rule.priority);
                rules
                    .into_iter()
                    .map(|rule| ActiveRule::new(rule, true))
                    .collect()
            }
            None => self
                .local
                .iter()
                .cloned()
                .map(|rule| ActiveRule::new(rule, false))
                .collect(),
        };
        *self
            .active
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = active;
    }

    /// Applies X-Ray's targets: (rule, fixed rate, traces a second, valid for).
    pub fn use_targets(&self, targets: &[(String, f64, u32, Duration)]) {
        let now = self.clock.now();
        for active in self.active().iter() {
            if let Some((_, rate, quota, ttl)) = targets.iter().find(|t| t.0 == active.rule.name) {
                let mut reservoir = active
                    .reservoir
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                reservoir.target = Some((*rate, *quota, now + *ttl));
            }
        }
    }

    /// Each centralized rule's counts since the last call, which resets them.
    pub fn take_statistics(&self) -> Vec<RuleStatistics> {
        self.active()
            .iter()
            .filter(|active| active.centralized)
            .map(|active| RuleStatistics {
                rule: active.rule.name.clone(),
                requests: active.requests.swap(0, Ordering::Relaxed),
                sampled: active.sampled.swap(0, Ordering::Relaxed),
                borrowed: active.borrowed.swap(0, Ordering::Relaxed),
            })
            .collect()
    }

    /// The decision for a new trace: the first matching rule's reservoir,
    /// else its rate, drawn from the trace id's random bits.
    pub fn decide(&self, request: &RequestFacts<'_>, trace_id: TraceId) -> bool {
        let active = self.active();
        let Some(matched) = active.iter().find(|active| active.rule.matches(request)) else {
            return false;
        };
        matched.requests.fetch_add(1, Ordering::Relaxed);
        let now = self.clock.now();
        let (sampled, borrowed) = {
            let mut reservoir = matched
                .reservoir
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if reservoir
                .second
                .is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1))
            {
                reservoir.second = Some(now);
                reservoir.used = 0;
            }
            let target = reservoir.target.filter(|(_, _, until)| now < *until);
            let (rate, per_second, borrowing) = match (target, matched.centralized) {
                (Some((rate, quota, _)), _) => (rate, quota, false),
                (None, true) => (matched.rule.rate, 1, true),
                (None, false) => (matched.rule.rate, matched.rule.reservoir, false),
            };
            if reservoir.used < per_second {
                reservoir.used += 1;
                (true, borrowing)
            } else {
                // The low 64 bits of the trace id are random.
                let bits =
                    u64::from_be_bytes(trace_id.to_bytes()[8..].try_into().unwrap_or_default());
                ((bits as f64 / u64::MAX as f64) < rate, false)
            }
        };
        if sampled {
            matched.sampled.fetch_add(1, Ordering::Relaxed);
        }
        if borrowed {
            matched.borrowed.fetch_add(1, Ordering::Relaxed);
        }
        sampled
    }
}

/// An OpenTelemetry sampler that leaves the OTLP decision to `inner` and adds
/// the X-Ray decision to the trace state where a trace enters this service.
#[derive(Debug, Clone)]
pub struct XraySampler {
    inner: Box<dyn ShouldSample>,
    rules: std::sync::Arc<RuleSampler>,
    service: String,
}

impl XraySampler {
    pub fn new(
        inner: Box<dyn ShouldSample>,
        rules: std::sync::Arc<RuleSampler>,
        service: String,
    ) -> Self {
        XraySampler {
            inner,
            rules,
            service,
        }
    }
}

fn string_attr<'a>(attributes: &'a [KeyValue], key: &str) -> &'a str {
    attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .and_then(|kv| match &kv.value {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        })
        .unwrap_or("")
}

impl ShouldSample for XraySampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let mut result =
            self.inner
                .should_sample(parent_context, trace_id, name, span_kind, attributes, links);
        let parent = parent_context.map(|cx| cx.span().span_context().clone());
        let local_child = parent
            .as_ref()
            .is_some_and(|sc| sc.is_valid() && !sc.is_remote());
        if local_child {
            // Inherited with the rest of the parent's trace state.
            return result;
        }
        let inherited = parent
            .as_ref()
            .and_then(|sc| sc.trace_state().get(DECISION_KEY).map(str::to_owned));
        let decision = match inherited {
            Some(decision) => decision == "1",
            None => self.rules.decide(
                &RequestFacts {
                    service: &self.service,
                    host: string_attr(attributes, "server.address"),
                    method: string_attr(attributes, "http.request.method"),
                    path: string_attr(attributes, "url.path"),
                },
                trace_id,
            ),
        };
        // Only a kept trace carries the key: the usual unsampled trace then
        // has an empty trace state, which its spans copy for free.
        if decision {
            if let Ok(state) = result.trace_state.insert(DECISION_KEY, "1") {
                result.trace_state = state;
            }
        } else if result.trace_state.get(DECISION_KEY).is_some() {
            result.trace_state = match result.trace_state.delete(DECISION_KEY) {
                Ok(state) if state.header().is_empty() => TraceState::NONE,
                Ok(state) => state,
                Err(_) => TraceState::NONE,
            };
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A clock moved by hand, in milliseconds from a fixed start.
    #[derive(Debug)]
    struct ManualClock {
        start: Instant,
        millis: Arc<AtomicU64>,
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            self.start + Duration::from_millis(self.millis.load(Ordering::SeqCst))
        }
    }

    fn sampler(rules: Vec<Rule>) -> (RuleSampler, Arc<AtomicU64>) {
        let millis = Arc::new(AtomicU64::new(0));
        let clock = ManualClock {
            start: Instant::now(),
            millis: Arc::clone(&millis),
        };
        (RuleSampler::new(rules, Box::new(clock)), millis)
    }

    const HOME: RequestFacts<'static> = RequestFacts {
        service: "backend-flask",
        host: "localhost",
        method: "GET",
        path: "/api/activities/home",
    };

    fn trace(n: u64) -> TraceId {
        // Spread the random half evenly, as real ids are.
        let mut bytes = [0u8; 16];
        bytes[8..].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
        TraceId::from_bytes(bytes)
    }

    /// What the X-Ray sampler leaves in the trace state of a span whose
    /// parent is `parent` (a remote span context, or none).
    fn trace_state_after(rate: f64, parent: Option<TraceState>) -> TraceState {
        let rule = Rule {
            reservoir: 0,
            rate,
            ..Rule::default_rule()
        };
        let (rules, _) = sampler(vec![rule]);
        let xray = XraySampler::new(
            Box::new(opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(
                opentelemetry_sdk::trace::Sampler::AlwaysOn,
            ))),
            Arc::new(rules),
            "backend-flask".into(),
        );
        let parent = parent.map(|state| {
            Context::new().with_remote_span_context(opentelemetry::trace::SpanContext::new(
                trace(1),
                opentelemetry::trace::SpanId::from_bytes([1; 8]),
                opentelemetry::trace::TraceFlags::SAMPLED,
                true,
                state,
            ))
        });
        xray.should_sample(
            parent.as_ref(),
            trace(1),
            "GET",
            &SpanKind::Server,
            &[],
            &[],
        )
        .trace_state
    }

    #[test]
    fn only_a_kept_trace_carries_the_decision() {
        assert_eq!(trace_state_after(1.0, None).header(), "xray=1");
        assert!(sampled_for_xray(&trace_state_after(1.0, None)));
        assert_eq!(trace_state_after(0.0, None), TraceState::NONE);
        assert!(!sampled_for_xray(&trace_state_after(0.0, None)));
    }

    #[test]
    fn a_callers_decision_wins_and_a_refusal_leaves_no_key() {
        let state = |pairs: &[(&str, &str)]| TraceState::from_key_value(pairs.to_vec()).unwrap();
        let kept = trace_state_after(0.0, Some(state(&[("xray", "1"), ("vendor", "a")])));
        assert!(sampled_for_xray(&kept));
        assert_eq!(kept.get("vendor"), Some("a"));
        let refused = trace_state_after(1.0, Some(state(&[("xray", "0"), ("vendor", "a")])));
        assert_eq!(refused.header(), "vendor=a");
        assert_eq!(
            trace_state_after(1.0, Some(state(&[("xray", "0")]))),
            TraceState::NONE
        );
    }

    #[test]
    fn the_default_rule_takes_one_a_second_then_five_percent() {
        let (sampler, millis) = sampler(vec![Rule::default_rule()]);
        let mut kept = 0;
        let seconds = 200;
        for second in 0..seconds {
            for request in 0..100 {
                millis.store(second * 1000 + request * 10, Ordering::SeqCst);
                if sampler.decide(&HOME, trace(second * 100 + request)) {
                    kept += 1;
                }
            }
        }
        // 1 a second from the reservoir plus 5% of the other 99.
        let expected = seconds as f64 * (1.0 + 99.0 * 0.05);
        assert!(
            (kept as f64 - expected).abs() < expected * 0.15,
            "kept {kept}, expected about {expected}"
        );
    }

    #[test]
    fn the_reservoir_refills_each_second() {
        let rule = Rule {
            reservoir: 3,
            rate: 0.0,
            ..Rule::default_rule()
        };
        let (sampler, millis) = sampler(vec![rule]);
        let kept =
            |sampler: &RuleSampler| (0..10).filter(|n| sampler.decide(&HOME, trace(*n))).count();
        assert_eq!(kept(&sampler), 3);
        millis.store(999, Ordering::SeqCst);
        assert_eq!(kept(&sampler), 0);
        millis.store(1000, Ordering::SeqCst);
        assert_eq!(kept(&sampler), 3);
    }

    #[test]
    fn centralized_rules_borrow_then_obey_their_quota_and_report() {
        let local = Rule {
            reservoir: 0,
            rate: 1.0,
            ..Rule::default_rule()
        };
        let (sampler, millis) = sampler(vec![local]);
        let kept = |sampler: &RuleSampler, from: u64| {
            (from..from + 20)
                .filter(|n| sampler.decide(&HOME, trace(*n)))
                .count()
        };
        assert_eq!(kept(&sampler, 0), 20, "local rule: rate 1");
        let central = Rule {
            name: "Cruddur".into(),
            reservoir: 50,
            rate: 0.0,
            ..Rule::default_rule()
        };
        sampler.use_rules(Some(vec![central]));
        millis.store(1_000, Ordering::SeqCst);
        assert_eq!(kept(&sampler, 100), 1, "no quota yet: borrow one a second");
        sampler.use_targets(&[("Cruddur".into(), 0.0, 5, Duration::from_secs(60))]);
        millis.store(2_000, Ordering::SeqCst);
        assert_eq!(kept(&sampler, 200), 5, "X-Ray's quota");
        let stats = sampler.take_statistics();
        assert_eq!(
            stats,
            vec![RuleStatistics {
                rule: "Cruddur".into(),
                requests: 40,
                sampled: 6,
                borrowed: 1
            }]
        );
        assert_eq!(sampler.take_statistics()[0].requests, 0, "reported once");
        millis.store(70_000, Ordering::SeqCst);
        assert_eq!(kept(&sampler, 300), 1, "an expired quota borrows again");
        sampler.use_rules(None);
        assert_eq!(
            kept(&sampler, 400),
            20,
            "X-Ray unreachable: the local rules again"
        );
        assert!(sampler.take_statistics().is_empty());
    }

    #[test]
    fn rules_match_by_priority_with_wildcards() {
        let health = Rule {
            name: "health".into(),
            priority: 1,
            url_path: "/api/health-check".into(),
            reservoir: 0,
            rate: 0.0,
            ..Rule::default_rule()
        };
        let posts = Rule {
            name: "posts".into(),
            priority: 2,
            http_method: "POST".into(),
            url_path: "/api/*".into(),
            reservoir: 0,
            rate: 1.0,
            ..Rule::default_rule()
        };
        let (sampler, _) = sampler(vec![
            health,
            posts,
            Rule {
                reservoir: 0,
                rate: 0.0,
                ..Rule::default_rule()
            },
        ]);
        let facts = |method, path| RequestFacts {
            method,
            path,
            ..HOME
        };
        assert!(!sampler.decide(&facts("GET", "/api/health-check"), trace(1)));
        assert!(sampler.decide(&facts("post", "/api/activities"), trace(2)));
        assert!(!sampler.decide(&facts("GET", "/api/activities/home"), trace(3)));
    }
}

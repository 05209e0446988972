//! The fault and load suite: the real binary with every sink on at once,
//! under a fixed request rate, while its destinations fail in every way
//! they can, on SIGTERM and on `kill -9`.
//!
//! Short by default (a second of load per phase, in `cargo test`);
//! `FAULTS_SECONDS=60` is the long form `bench/faults` runs, with each sink
//! broken in turn as well as all at once. `FAULTS_RATE` sets requests a
//! second. Each scenario prints a `FAULTS|` row (see `--nocapture`), which
//! `bench/faults` gathers into its table. The assertions are the promises
//! that do not depend on timing; the latencies are printed, not asserted.

mod support;

use std::time::{Duration, Instant};

use support::load::{self, Kind, Mix, Outcome, peak_rss_mib, percentile_ms, reset_peak_rss};
use support::rig::{Counters, Fault, Rig, SINKS, Sink};
use support::server::{Server, storm_binary};

/// Seconds of load per phase.
fn seconds() -> Duration {
    let seconds = std::env::var("FAULTS_SECONDS").map_or(1.0, |s| {
        s.parse::<f64>()
            .expect("FAULTS_SECONDS is a number of seconds")
    });
    Duration::from_secs_f64(seconds)
}

/// The long form breaks each sink in turn too.
fn long_form() -> bool {
    std::env::var_os("FAULTS_SECONDS").is_some()
}

fn rate() -> u32 {
    std::env::var("FAULTS_RATE").map_or(40, |s| s.parse().expect("FAULTS_RATE is a number"))
}

/// How long a sink may take to catch up once it is healthy.
const CATCH_UP: Duration = Duration::from_secs(60);

fn cell(counters: Option<Counters>) -> String {
    counters.map_or("-".into(), |c| {
        format!("{}/{}/{}", c.exported, c.dropped, c.failed)
    })
}

/// One row of the table, on stdout.
fn row(scenario: &str, outcomes: &[Outcome], rss: f64, sinks: [Option<Counters>; 4]) {
    let [otlp, xray, cloudwatch, rollbar] = sinks.map(cell);
    println!(
        "FAULTS|{scenario}|{}|{:.1}|{:.1}|{rss:.1}|{otlp}|{xray}|{cloudwatch}|{rollbar}|ok",
        outcomes.len(),
        percentile_ms(outcomes, 50.0),
        percentile_ms(outcomes, 99.0),
    );
}

/// Requests of `kind` that were answered.
fn all_of(outcomes: &[Outcome], kind: Kind) -> u64 {
    outcomes
        .iter()
        .filter(|o| o.kind == kind && o.status.is_some())
        .count() as u64
}

fn assert_all_answered(outcomes: &[Outcome], what: &str) {
    let bad: Vec<&Outcome> = outcomes.iter().filter(|o| o.status != Some(200)).collect();
    assert!(
        bad.is_empty(),
        "{what}: {} of {} requests not answered 200, first {:?}",
        bad.len(),
        outcomes.len(),
        bad.first()
    );
}

async fn load_for(rig: &Rig, duration: Duration) -> Vec<Outcome> {
    load::run(
        &rig.base(),
        rate(),
        Mix::Reads,
        tokio::time::sleep(duration),
        None,
    )
    .await
}

fn deltas(after: [Counters; 4], before: [Counters; 4]) -> [Option<Counters>; 4] {
    [0, 1, 2, 3].map(|i| Some(after[i].since(before[i])))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_every_span_segment_log_event_and_item_arrives() {
    let rig = Rig::start(Duration::from_secs(5), &[]).await;
    let before = rig.all_counters().await;
    reset_peak_rss(rig.pid());
    let outcomes = load_for(&rig, seconds()).await;
    let rss = peak_rss_mib(rig.pid());
    assert_all_answered(&outcomes, "baseline");
    for sink in SINKS {
        let missing = rig.missing(sink, &outcomes, CATCH_UP).await;
        assert!(missing.is_empty(), "{sink:?} lacks {missing:?}");
    }
    // Every span, not only the server span: each trace has as many spans
    // at the OTLP receiver as segment parts at the daemon.
    let spans = rig.otlp.spans();
    let datagrams = rig.xray_datagrams();
    let mut widest_read = 0;
    for (kind, trace) in outcomes
        .iter()
        .filter_map(|o| o.trace.as_ref().map(|t| (o.kind, t)))
    {
        let otlp = spans.iter().filter(|s| &s.trace_id == trace).count();
        let xray_id = format!("1-{}-{}", &trace[..8], &trace[8..]);
        let xray: usize = datagrams
            .iter()
            .filter(|d| d.document["trace_id"] == xray_id.as_str())
            .map(|d| support::xray::all_parts(&d.document).len())
            .sum();
        if kind == Kind::Read {
            assert!(otlp >= 2, "server and service spans: {otlp}");
            widest_read = widest_read.max(otlp);
        }
        assert_eq!(otlp, xray, "trace {trace}: OTLP spans vs X-Ray parts");
    }
    // A read the feed cache answers has no query span; the first of each
    // feed cannot be answered so, and its query spans arrive like the rest.
    assert!(
        widest_read >= 3,
        "server, service and query spans: {widest_read}"
    );
    let after = rig.all_counters().await;
    for (sink, counters) in SINKS.iter().zip(after) {
        assert_eq!(counters.lost(), 0, "{sink:?}: {counters:?}");
    }
    let stored = rig.cloudwatch_records().await.len() as u64;
    assert!(
        stored >= after[2].exported,
        "CloudWatch holds {stored} events of {} exported",
        after[2].exported
    );
    row("baseline", &outcomes, rss, deltas(after, before));
    rig.server.stop(Duration::from_secs(15)).await;
}

/// Breaks `broken` with `fault` under load, then heals them: requests all
/// answered, the healthy sinks got everything, the broken ones counted
/// what they lost, and every sink resumes by itself.
async fn phase(rig: &mut Rig, fault: Fault, broken: &[Sink], name: &str) {
    let before = rig.all_counters().await;
    let broken: Vec<Sink> = broken
        .iter()
        .copied()
        .filter(|sink| {
            // X-Ray's daemon is absent in every "all sinks" phase.
            let fault = if *sink == Sink::Xray && broken.len() > 1 {
                Fault::Refuse
            } else {
                fault
            };
            rig.break_sink(*sink, fault)
        })
        .collect();
    reset_peak_rss(rig.pid());
    let counted = async {
        tokio::time::sleep(seconds()).await;
        if fault == Fault::Slow {
            return;
        }
        // Load goes on until the health check shows each broken sink's
        // losses (retries take their time), or the bound.
        let deadline = Instant::now() + CATCH_UP;
        for sink in &broken {
            let index = SINKS.iter().position(|s| s == sink).unwrap();
            while rig.counters(*sink).await.since(before[index]).lost() == 0
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let during = load::run(&rig.base(), rate(), Mix::Reads, counted, None).await;
    let rss = peak_rss_mib(rig.pid());
    assert_all_answered(&during, name);
    for sink in SINKS.iter().filter(|s| !broken.contains(s)) {
        let missing = rig.missing(*sink, &during, CATCH_UP).await;
        assert!(
            missing.is_empty(),
            "{name}: healthy {sink:?} lacks {missing:?}"
        );
    }

    rig.heal().await;
    let after_heal = load_for(rig, seconds()).await;
    assert_all_answered(&after_heal, name);
    for sink in SINKS {
        let missing = rig.missing(sink, &after_heal, CATCH_UP).await;
        assert!(
            missing.is_empty(),
            "{name}: {sink:?} did not resume: lacks {missing:?}"
        );
    }
    let after = rig.all_counters().await;
    for sink in &broken {
        let index = SINKS.iter().position(|s| s == sink).unwrap();
        let counted = after[index].since(before[index]);
        if fault != Fault::Slow {
            assert!(
                counted.lost() > 0,
                "{name}: {sink:?} lost nothing? {counted:?}"
            );
        }
        // Whatever did not arrive is counted: each missing request is at
        // least one item dropped or failed.
        let missing = rig.missing(*sink, &during, Duration::ZERO).await;
        assert!(
            missing.len() as u64 <= counted.lost(),
            "{name}: {sink:?} lost {} requests' telemetry but counted {counted:?}",
            missing.len()
        );
    }
    let mut all = during;
    all.extend(after_heal);
    row(name, &all, rss, deltas(after, before));
}

async fn check_fault(fault: Fault) {
    // Long enough for a slow answer to succeed, short enough for a hung
    // one to be given up on soon.
    let timeout = if fault == Fault::Slow {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(1)
    };
    let mut rig = Rig::start(timeout, &[]).await;
    if long_form() || fault == Fault::Refuse {
        for sink in SINKS {
            if sink == Sink::Xray && fault != Fault::Refuse {
                continue;
            }
            let name = format!("{}: {}", fault.name(), sink.name());
            phase(&mut rig, fault, &[sink], &name).await;
        }
    }
    let name = format!("{}: all sinks", fault.name());
    phase(&mut rig, fault, &SINKS, &name).await;
    rig.server.stop(Duration::from_secs(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_refusing_connections() {
    check_fault(Fault::Refuse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_never_answering() {
    check_fault(Fault::Hang).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_answering_500() {
    check_fault(Fault::ServerError).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_answering_after_2_s() {
    check_fault(Fault::Slow).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_answering_429() {
    check_fault(Fault::Throttle).await;
}

/// A panic storm and a log storm at once, beside the usual reads, against
/// the storm server (the product with two routes more, `examples/storm.rs`):
/// half the storm's requests panic, half log 200 lines, a hundred times the
/// lines the reads log. The reads are all answered, each panic is a 500,
/// the sinks keep to their bounds (what they drop is counted), and once the
/// storm has passed every sink gets every read's telemetry again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_and_log_storm_keeps_answering_in_bounded_memory() {
    // Rollbar's default limit, not the rig's unlimited one: storms are
    // what it is for.
    let limit = [("ROLLBAR_MAX_ITEMS_PER_MINUTE", "60".to_owned())];
    let rig = Rig::start_program(&storm_binary(), Duration::from_secs(5), &limit).await;
    let before = rig.all_counters().await;
    reset_peak_rss(rig.pid());
    let base = rig.base();
    let storming = load::run(
        &base,
        rate(),
        Mix::Storm,
        tokio::time::sleep(seconds()),
        None,
    );
    let (reads, storm) = tokio::join!(load_for(&rig, seconds()), storming);
    let rss = peak_rss_mib(rig.pid());
    let during = rig.all_counters().await;
    assert_all_answered(&reads, "reads during the storm");
    for outcome in &storm {
        let expected = if outcome.kind == Kind::Panic {
            500
        } else {
            200
        };
        assert_eq!(outcome.status, Some(expected), "{outcome:?}");
    }
    // Each panic and Rollbar test item is sent or counted as dropped by
    // Rollbar's rate limit, none lost silently.
    let items = all_of(&storm, Kind::Panic) + all_of(&reads, Kind::RollbarTest);
    let deadline = Instant::now() + CATCH_UP;
    let rollbar = loop {
        let rollbar = rig.counters(Sink::Rollbar).await.since(before[3]);
        if rollbar.exported + rollbar.lost() >= items || Instant::now() >= deadline {
            break rollbar;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(rollbar.exported + rollbar.lost(), items, "{rollbar:?}");
    // Once the storm has passed, the other sinks get every read's part
    // (Rollbar's limit holds for the rest of its minute).
    let after_storm = load_for(&rig, Duration::from_secs(1)).await;
    assert_all_answered(&after_storm, "reads after the storm");
    for sink in [Sink::Otlp, Sink::Xray, Sink::CloudWatch] {
        let missing = rig.missing(sink, &after_storm, CATCH_UP).await;
        assert!(
            missing.is_empty(),
            "{sink:?} lacks {missing:?} after the storm"
        );
    }
    // The row's latencies are the reads', to compare with the baseline's.
    row(
        &format!("storm ({} panics, log lines x100): reads", storm.len() / 2),
        &reads,
        rss,
        deltas(during, before),
    );
    rig.server.stop(Duration::from_secs(15)).await;
}

/// Load until `target` requests were answered, then `signal`, then a
/// moment more of load through the shutdown (refused from then on).
async fn load_then_signal(rig: &Rig, signal: &str) -> (Vec<Outcome>, f64) {
    let target = (f64::from(rate()) * seconds().as_secs_f64()) as usize;
    let (answered, mut progress) = tokio::sync::watch::channel(0);
    let rss = std::sync::Mutex::new(0.0);
    let until = async {
        let _ = progress.wait_for(|n| *n >= target).await;
        *rss.lock().unwrap() = peak_rss_mib(rig.pid());
        rig.server.signal(signal);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let outcomes = load::run(&rig.base(), rate(), Mix::Reads, until, Some(answered)).await;
    let rss = *rss.lock().unwrap();
    (outcomes, rss)
}

/// The line a sink's shutdown printed: `(flushed in time, exported, dropped, failed)`.
fn shutdown_line(stderr: &str, sink: Sink) -> (bool, Counters) {
    let prefix = format!("telemetry: {} ", sink.name());
    let line = stderr
        .lines()
        .find(|l| l.starts_with(&prefix) && l.contains(": exported "))
        .unwrap_or_else(|| panic!("no shutdown line for {sink:?}: {stderr}"));
    let number = |label: &str| -> u64 {
        line.split(&format!("{label} "))
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {label} in {line}"))
    };
    (
        !line.contains("NOT flushed"),
        Counters {
            exported: number("exported"),
            dropped: number("dropped"),
            failed: number("failed"),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_nothing() {
    let mut rig = Rig::start(Duration::from_secs(5), &[]).await;
    reset_peak_rss(rig.pid());
    let (outcomes, rss) = load_then_signal(&rig, "TERM").await;
    let status = tokio::task::block_in_place(|| rig.server.wait(Duration::from_secs(30)));
    assert_eq!(status.code(), Some(0), "{}", rig.server.stderr());
    let answered: Vec<Outcome> = outcomes
        .iter()
        .filter(|o| o.status.is_some())
        .cloned()
        .collect();
    assert_all_answered(&answered, "SIGTERM");
    let stderr = rig.server.stderr();
    let mut totals = [None; 4];
    for (slot, sink) in totals.iter_mut().zip(SINKS) {
        let missing = rig.missing(sink, &answered, Duration::from_secs(10)).await;
        assert!(
            missing.is_empty(),
            "{sink:?} lacks {missing:?} after SIGTERM"
        );
        let (flushed, counters) = shutdown_line(&stderr, sink);
        assert!(flushed && counters.lost() == 0, "{sink:?}: {stderr}");
        *slot = Some(counters);
    }
    assert!(!stderr.contains("telemetry: not delivered"), "{stderr}");
    row("SIGTERM under load, sinks healthy", &answered, rss, totals);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_black_holed_sinks_exits_in_time_and_says_what_was_lost() {
    let shutdown = Duration::from_secs(2);
    let mut rig = Rig::start(Duration::from_secs(5), &[("SHUTDOWN_TIMEOUT", "2s".into())]).await;
    for sink in SINKS {
        let fault = if sink == Sink::Xray {
            Fault::Refuse
        } else {
            Fault::Hang
        };
        assert!(rig.break_sink(sink, fault));
    }
    reset_peak_rss(rig.pid());
    let (outcomes, rss) = load_then_signal(&rig, "TERM").await;
    let signalled = Instant::now();
    // In-flight requests get SHUTDOWN_TIMEOUT, then the sinks get it again.
    let status =
        tokio::task::block_in_place(|| rig.server.wait(shutdown * 2 + Duration::from_secs(3)));
    let took = signalled.elapsed();
    let stderr = rig.server.stderr();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let answered: Vec<Outcome> = outcomes
        .iter()
        .filter(|o| o.status.is_some())
        .cloned()
        .collect();
    assert_all_answered(&answered, "SIGTERM, sinks black-holed");
    let summary: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("telemetry: not delivered: "))
        .collect();
    assert_eq!(summary.len(), 1, "one line says what was lost: {stderr}");
    let mut totals = [None; 4];
    for (slot, sink) in totals.iter_mut().zip(SINKS) {
        let (_, counters) = shutdown_line(&stderr, sink);
        if counters.lost() > 0 {
            let named = format!("{} {} (", sink.name(), counters.lost());
            assert!(summary[0].contains(&named), "{named} in {}", summary[0]);
        }
        *slot = Some(counters);
    }
    println!("SIGTERM with every sink black-holed: exit 0 after {took:?}");
    row(
        &format!(
            "SIGTERM, sinks black-holed (exit in {:.1} s)",
            took.as_secs_f64()
        ),
        &answered,
        rss,
        totals,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_writes_keeps_every_answered_create() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("cruddur.db");
    let database = database.to_str().unwrap();
    let mut server = Server::start(&[("DATABASE_PATH", database)]);
    let pid = server.pid().unwrap();
    reset_peak_rss(pid);
    let target = (f64::from(rate()) * seconds().as_secs_f64()) as usize;
    let (answered, mut progress) = tokio::sync::watch::channel(0);
    let rss = std::sync::Mutex::new(0.0);
    let until = async {
        let _ = progress.wait_for(|n| *n >= target).await;
        *rss.lock().unwrap() = peak_rss_mib(pid);
        server.signal("KILL");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let outcomes = load::run(&server.url(""), rate(), Mix::Writes, until, Some(answered)).await;
    let rss = *rss.lock().unwrap();
    let status = tokio::task::block_in_place(|| server.wait(Duration::from_secs(10)));
    assert_eq!(status.code(), None, "killed by a signal");
    let created: Vec<&String> = outcomes
        .iter()
        .filter(|o| o.kind == Kind::Create && o.status == Some(200))
        .map(|o| o.created.as_ref().expect("a 200 create names its crud"))
        .collect();
    assert!(
        created.len() >= target,
        "{} creates answered",
        created.len()
    );

    let again = Server::start(&[("DATABASE_PATH", database)]);
    let client = reqwest::Client::new();
    for uuid in &created {
        let answer = client
            .get(again.url(&format!("/api/activities/{uuid}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status(),
            200,
            "crud {uuid}, answered 200 before the kill"
        );
    }
    let home = client
        .get(again.url("/api/activities/home"))
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), 200);
    again.stop(Duration::from_secs(15)).await;
    let check: String = rusqlite::Connection::open(database)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    row(
        &format!("kill -9 during writes: {} creates kept", created.len()),
        &outcomes,
        rss,
        [None; 4],
    );
}

//! schemathesis against the real binary, from the document it serves:
//! every operation fuzzed with schema-valid and schema-violating input, every
//! check on (server errors, undocumented statuses, content types and
//! headers, response schemas, accepted invalid and rejected valid data,
//! undocumented methods), and stateful runs along the document's links
//! (create a crud, show it, reply to it, reply to the reply).
//!
//! Needs schemathesis, so it is ignored by a plain `cargo test`;
//! `./scripts/test` installs a pinned one in `.venv` and runs it with
//! `SCHEMATHESIS=.venv/bin/st cargo test --test schemathesis -- --ignored`.
//! `SCHEMATHESIS_EXAMPLES` (default 300 per operation) and
//! `SCHEMATHESIS_SEED` (default fixed, so CI runs the same cases; `random`
//! for a new draw) widen a run by hand.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::server::Server;

const EXAMPLES: &str = "300";
const SEED: &str = "17";

#[test]
#[ignore = "needs schemathesis: ./scripts/test installs it and runs this"]
fn schemathesis_finds_nothing() {
    let data = tempfile::tempdir().unwrap();
    let database = data.path().join("cruddur.db");
    let mut server = Server::start(&[("DATABASE_PATH", database.to_str().unwrap())]);

    let program = std::env::var("SCHEMATHESIS").unwrap_or_else(|_| "st".into());
    let examples = std::env::var("SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| EXAMPLES.into());
    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| SEED.into());
    let hooks = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis/hooks.py");
    let mut command = Command::new(&program);
    command
        .args(["run", &server.url("/api/openapi.json")])
        .args(["--checks", "all"])
        .args(["--max-examples", &examples])
        .args(["--request-timeout", "10"])
        .args(["--generation-database", "none"])
        .arg("--no-color")
        // Its cache folder goes with the database, not into the work tree.
        .current_dir(data.path())
        .env_clear()
        .env("SCHEMATHESIS_HOOKS", hooks)
        .env("PYTHONIOENCODING", "utf-8")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null());
    if seed != "random" {
        command.args(["--seed", &seed]);
    }
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    let status = command.status().unwrap_or_else(|err| {
        panic!("cannot run {program} ({err}): run ./scripts/test, which installs schemathesis")
    });
    assert!(status.success(), "schemathesis found failures (above)");

    // Still answering, and it stops cleanly, having logged no panic.
    let health = reqwest::blocking::get(server.url("/api/health-check")).unwrap();
    assert_eq!(health.status(), 200);
    let exit = server.terminate(Duration::from_secs(10));
    assert_eq!(exit.code(), Some(0), "{}", server.stderr());
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

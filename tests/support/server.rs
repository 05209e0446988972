//! The real binary as a child process, configured only by the environment
//! given here (nothing inherited), on 127.0.0.1 port 0.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

pub const BINARY: &str = env!("CARGO_BIN_EXE_cruddur-backend");

/// The binary the tests start: `CRUDDUR_TEST_BINARY` (a release build, for
/// `bench/faults`), else the one cargo built for this test run.
pub fn binary() -> String {
    std::env::var("CRUDDUR_TEST_BINARY").unwrap_or_else(|_| BINARY.to_owned())
}

/// The fault suite's storm server (`examples/storm.rs`), built beside the
/// binary the tests start: `cargo build --example storm` (`scripts/test`
/// does; `cargo test` compiles examples but leaves no binary by that name),
/// or for release in `bench/faults`.
pub fn storm_binary() -> String {
    let binary = binary();
    let storm = std::path::Path::new(&binary)
        .parent()
        .expect("the binary is in a directory")
        .join("examples/storm");
    assert!(
        storm.exists(),
        "{} is missing: build it with `cargo build --example storm` (scripts/test does)",
        storm.display()
    );
    storm.to_str().expect("a UTF-8 path").to_owned()
}

pub struct Server {
    pub addr: SocketAddr,
    child: Option<Child>,
    readers: Vec<std::thread::JoinHandle<()>>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    /// Notified after each line added to `stderr`.
    stderr_grew: Arc<tokio::sync::Notify>,
}

/// The environment every test server starts from: quiet and local.
const BASE_ENV: &[(&str, &str)] = &[
    ("PORT", "0"),
    ("BIND_ADDRESS", "127.0.0.1"),
    ("DATABASE_PATH", ":memory:"),
    ("RUST_LOG", "off"),
    ("OTEL_TRACES_EXPORTER", "none"),
    // The SDK's chain must not look for AWS at the instance metadata
    // address, and a test that sets AWS credentials for another sink must
    // not ship logs to the real CloudWatch: the CloudWatch tests turn it on.
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("CLOUDWATCH_LOG_LEVEL", "off"),
];

pub fn command(env: &[(&str, &str)]) -> Command {
    command_for(&binary(), env)
}

/// `program` (the binary or the storm server) with the test environment.
pub fn command_for(program: &str, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(program);
    command.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    for (key, value) in BASE_ENV.iter().chain(env) {
        command.env(key, value);
    }
    command
}

/// Where a child's output goes, line by line: its buffer, and for stderr
/// the start-up line channel and a notification.
struct Sinks {
    into: Arc<Mutex<String>>,
    lines: Option<mpsc::Sender<String>>,
    grew: Option<Arc<tokio::sync::Notify>>,
}

fn collect(mut from: impl Read + Send + 'static, sinks: Sinks) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(&mut from);
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            sinks.into.lock().unwrap().push_str(&line);
            if let Some(lines) = &sinks.lines {
                let _ = lines.send(line.clone());
            }
            if let Some(grew) = &sinks.grew {
                grew.notify_waiters();
            }
            line.clear();
        }
    })
}

impl Server {
    /// Starts the binary and waits for its "listening on" line.
    pub fn start(env: &[(&str, &str)]) -> Server {
        Server::start_program(&binary(), env)
    }

    /// Starts `program` and waits for its "listening on" line.
    pub fn start_program(program: &str, env: &[(&str, &str)]) -> Server {
        let mut child = command_for(program, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_grew = Arc::new(tokio::sync::Notify::new());
        let (lines_tx, lines) = mpsc::channel();
        let readers = vec![
            collect(
                child.stdout.take().unwrap(),
                Sinks {
                    into: Arc::clone(&stdout),
                    lines: None,
                    grew: None,
                },
            ),
            collect(
                child.stderr.take().unwrap(),
                Sinks {
                    into: Arc::clone(&stderr),
                    lines: Some(lines_tx),
                    grew: Some(Arc::clone(&stderr_grew)),
                },
            ),
        ];
        let addr = loop {
            match lines.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    if let Some(url) = line
                        .trim()
                        .strip_prefix("cruddur-backend listening on http://")
                    {
                        break url.parse().expect("an address");
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("the server did not start: {}", stderr.lock().unwrap());
                }
            }
        };
        Server {
            addr,
            child: Some(child),
            readers,
            stdout,
            stderr,
            stderr_grew,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` (`TERM`, `KILL`...) and returns at once.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().expect("the server is running").to_string();
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success());
    }

    /// Sends SIGTERM, waits (bounded) for the exit, then for the last of
    /// its output.
    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
        self.signal("TERM");
        self.wait(within)
    }

    /// Waits (bounded) for the exit a signal asked for, then for the last
    /// of its output; past `within` it is killed and the test fails.
    pub fn wait(&mut self, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("the server is running");
        let pid = child.id().to_string();
        let (exited_tx, exited) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = exited_tx.send(child.wait());
        });
        let status = match exited.recv_timeout(within) {
            Ok(status) => status.expect("wait works"),
            Err(_) => {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                panic!("no exit within {within:?}: {}", self.stderr());
            }
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Server {
    /// SIGTERM off the async runtime; asserts a clean exit and answers the
    /// stopped server, whose output is then complete.
    pub async fn stop(mut self, within: Duration) -> Server {
        tokio::task::spawn_blocking(move || {
            let status = self.terminate(within);
            assert_eq!(status.code(), Some(0), "{}", self.stderr());
            self
        })
        .await
        .expect("the stopping task ends")
    }

    /// Waits (bounded) until stderr holds `needle`; answers all of it.
    pub async fn wait_for_stderr(&self, needle: &str, within: Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let grew = self.stderr_grew.notified();
            tokio::pin!(grew);
            grew.as_mut().enable();
            let stderr = self.stderr();
            if stderr.contains(needle) {
                return stderr;
            }
            if tokio::time::timeout_at(deadline, grew).await.is_err() {
                panic!("stderr never said {needle:?} within {within:?}:\n{stderr}");
            }
        }
    }

    /// `/api/health-check` as JSON.
    pub async fn health(&self) -> serde_json::Value {
        reqwest::get(self.url("/api/health-check"))
            .await
            .expect("the health check answers")
            .json()
            .await
            .expect("the health check is JSON")
    }
}

/// The W3C trace id named by an answer's `X-Amzn-Trace-Id`
/// (`Root=1-XXXXXXXX-YYYY...` is `XXXXXXXXYYYY...`).
pub fn answered_trace_id(response: &reqwest::Response) -> String {
    let header = response.headers()["x-amzn-trace-id"].to_str().unwrap();
    let root = header
        .split(';')
        .find_map(|part| part.strip_prefix("Root="))
        .unwrap();
    assert!(root.starts_with("1-") && root.len() == 35, "{header}");
    root[2..].replace('-', "")
}

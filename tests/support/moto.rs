//! moto's server, the AWS API stand-in, on 127.0.0.1 for one test, and a
//! CloudWatch Logs client of the real SDK to read back what arrived.
//!
//! `./scripts/test` installs moto in `.venv` and sets `MOTO_SERVER`;
//! otherwise `moto_server` is taken from `PATH`.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::config::{BehaviorVersion, Credentials, Region};

pub struct Moto {
    pub addr: SocketAddr,
    child: Child,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

impl Moto {
    /// Starts moto and waits (bounded) until it answers.
    pub async fn start() -> Moto {
        let program = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let port = free_port();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot run {program} ({err}): run ./scripts/test, which installs moto")
            });
        let moto = Moto {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
        };
        moto.wait_until_ready(Duration::from_secs(30)).await;
        moto
    }

    /// Polls moto's own status page: it has no other signal of readiness.
    async fn wait_until_ready(&self, within: Duration) {
        let client = reqwest::Client::new();
        let started = Instant::now();
        while started.elapsed() < within {
            let answer = client
                .get(format!("{}/moto-api/", self.endpoint()))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if answer.is_ok_and(|answer| answer.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("moto did not answer on {} within {within:?}", self.addr);
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the backend needs to ship logs here: region, test credentials
    /// and the endpoint, through the SDK's own variables, and CloudWatch on.
    pub fn env(endpoint: &str) -> Vec<(&'static str, String)> {
        vec![
            ("CLOUDWATCH_LOG_LEVEL", "info".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_ENDPOINT_URL", endpoint.into()),
        ]
    }

    /// A client that reads back what the backend wrote.
    pub fn client(&self) -> Client {
        let config = aws_sdk_cloudwatchlogs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url(self.endpoint())
            .build();
        Client::from_conf(config)
    }
}

/// Every event's message in a stream, oldest first.
pub async fn messages(client: &Client, group: &str, stream: &str) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .get_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .start_from_head(true)
            .set_next_token(token.clone())
            .send()
            .await
            .expect("GetLogEvents");
        let events = page.events();
        out.extend(events.iter().map(|e| {
            (
                e.timestamp().unwrap_or(0),
                e.message().unwrap_or("").to_owned(),
            )
        }));
        let next = page.next_forward_token().map(ToOwned::to_owned);
        if events.is_empty() || next == token {
            return out;
        }
        token = next;
    }
}

/// Names of the streams in a group.
pub async fn streams(client: &Client, group: &str) -> Vec<String> {
    client
        .describe_log_streams()
        .log_group_name(group)
        .send()
        .await
        .expect("DescribeLogStreams")
        .log_streams()
        .iter()
        .filter_map(|s| s.log_stream_name().map(ToOwned::to_owned))
        .collect()
}

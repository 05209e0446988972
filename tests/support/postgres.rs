//! Postgres for tests, on 127.0.0.1: a fresh database on the server
//! `./scripts/test` started (its superuser URL in `CRUDDUR_TEST_POSTGRES`),
//! or, when that is unset (a plain `cargo test`), on a server of the
//! test's own. A test that stops and starts the server always has its own.
//! Servers are started and stopped by `scripts/postgres`, which installs
//! Debian's `postgresql` when it is missing; a server that cannot start
//! fails the test, never skips it.

use std::path::PathBuf;
use std::process::Command;

/// Names the shared server, for the test command.
pub const SHARED: &str = "CRUDDUR_TEST_POSTGRES";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres")
}

/// A server of the test's own, crashed and deleted when dropped.
pub struct Server {
    dir: tempfile::TempDir,
    /// The superuser's URL, on database `postgres`.
    pub url: String,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// A server that takes TLS only (but for the superuser's `postgres`
    /// database), its certificate signed by a CA of its own ([`Server::ca`]).
    pub fn start_tls() -> Server {
        Server::start_with(&["--tls"])
    }

    /// The PEM file of the CA that signed a TLS server's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("server/ca.pem")
    }

    fn start_with(options: &[&str]) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("cruddur-pg")
            .tempdir_in("/tmp")
            .expect("a temporary directory");
        let output = Command::new(script())
            .arg("start")
            .arg(dir.path().join("server"))
            .args(options)
            .output()
            .expect("scripts/postgres runs");
        assert!(
            output.status.success(),
            "scripts/postgres could not start a server: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let url = String::from_utf8(output.stdout)
            .expect("a UTF-8 URL")
            .trim()
            .to_owned();
        Server { dir, url }
    }

    fn run(&self, args: &[&str]) {
        let status = Command::new(script())
            .arg(args[0])
            .arg(self.dir.path().join("server"))
            .args(&args[1..])
            .status()
            .expect("scripts/postgres runs");
        assert!(status.success(), "scripts/postgres {args:?} failed");
    }

    /// A clean shutdown: connections are closed, the data kept.
    pub fn stop(&self) {
        self.run(&["stop"]);
    }

    /// Starts the stopped server again, on the same port.
    pub fn start_again(&self) {
        self.run(&["again"]);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("stop")
            .arg(self.dir.path().join("server"))
            .arg("--crash")
            .output();
    }
}

/// A database of the test's own, and the server it is on when that is
/// the test's own too.
pub struct Database {
    pub url: String,
    pub server: Option<Server>,
}

/// `url` with its database replaced by `name`.
pub fn on_database(url: &str, name: &str) -> String {
    let (server, _) = url.rsplit_once('/').expect("a URL with a database");
    format!("{server}/{name}")
}

/// An empty database, created for the caller.
pub async fn database() -> Database {
    let (admin, server) = match std::env::var(SHARED) {
        Ok(url) => (url, None),
        Err(_) => {
            let server = Server::start();
            (server.url.clone(), Some(server))
        }
    };
    let name = format!("cruddur_{}", uuid::Uuid::new_v4().simple());
    execute(&admin, &format!("CREATE DATABASE {name}")).await;
    Database {
        url: on_database(&admin, &name),
        server,
    }
}

/// A connection to the database at `url`, and the task driving it.
async fn connect(url: &str) -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|err| panic!("cannot connect to the test server: {err}"));
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, connection)
}

/// Runs SQL on the database at `url`, panicking on failure.
pub async fn execute(url: &str, sql: &str) {
    let (client, connection) = connect(url).await;
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"));
    drop(client);
    let _ = connection.await;
}

/// The first column of the first row of `sql`, as a number.
pub async fn count(url: &str, sql: &str) -> i64 {
    let (client, connection) = connect(url).await;
    let value = client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
        .get(0);
    drop(client);
    let _ = connection.await;
    value
}

//! The real application, in process, on 127.0.0.1 port 0.

use std::net::SocketAddr;

use cruddur_backend::app::App;
use cruddur_backend::config::Config;
use cruddur_backend::telemetry::Telemetry;

/// Serves `router` (routes of a test's own inside the product's middleware)
/// on 127.0.0.1 port 0 until the test ends; answers its address.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

/// The store a test app keeps its data in: a new in-memory SQLite
/// database, or a new Postgres database (see `support::postgres`).
pub enum TestStore {
    Sqlite,
    Postgres(super::postgres::Database),
}

impl TestStore {
    pub fn sqlite() -> TestStore {
        TestStore::Sqlite
    }

    pub async fn postgres() -> TestStore {
        TestStore::Postgres(super::postgres::database().await)
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
    /// Kept for as long as the app: a Postgres server of the test's own
    /// stops when dropped.
    _store: TestStore,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestApp {
    /// Starts the app with `extra` settings, by default on an in-memory database.
    pub async fn start(extra: &[&str]) -> TestApp {
        TestApp::start_on(TestStore::Sqlite, extra).await
    }

    /// Starts the app on `store`, with `extra` settings.
    pub async fn start_on(store: TestStore, extra: &[&str]) -> TestApp {
        let mut args = vec![
            "cruddur-backend",
            "--port",
            "0",
            "--bind-address",
            "127.0.0.1",
        ];
        if !extra.contains(&"--database-path") {
            args.extend(["--database-path", ":memory:"]);
        }
        if let TestStore::Postgres(database) = &store {
            args.extend(["--database-url", database.url.as_str()]);
        }
        args.extend_from_slice(extra);
        let config = Config::try_parse_from(args).expect("test config is valid");
        let app = App::build(&config, &Telemetry::default())
            .await
            .expect("app builds");
        let addr = app.local_addr();
        let server = tokio::spawn(async move {
            app.run(std::future::pending()).await;
        });
        TestApp {
            addr,
            client: reqwest::Client::new(),
            server,
            _store: store,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request is answered")
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("answer is JSON"))
    }

    pub async fn post_json(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request is answered");
        let status = response.status().as_u16();
        (status, response.json().await.expect("answer is JSON"))
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, serde_json::Value) {
        let response = self
            .client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request is answered");
        let status = response.status().as_u16();
        (status, response.json().await.expect("answer is JSON"))
    }

    /// How many cruds the home feed shows.
    pub async fn home_len(&self) -> usize {
        let (status, home) = self.get_json("/api/activities/home").await;
        assert_eq!(status, 200);
        home.as_array().expect("home is a list").len()
    }
}

/// A seeded database file in `dir` with one more crud, worf's, written
/// straight to the store (so its times can be in the past or seconds
/// away); answers the file's path and the crud's uuid.
pub async fn database_with_crud(
    dir: &std::path::Path,
    message: &str,
    created_at: chrono::DateTime<chrono::Utc>,
    expires_at: chrono::DateTime<chrono::Utc>,
) -> (String, String) {
    use cruddur_backend::store::{NewActivity, SqliteStore, Store};
    let db = dir.join("cruddur.db").to_str().unwrap().to_owned();
    let store = SqliteStore::open(&db, chrono::Utc::now()).unwrap();
    let crud = store
        .create_activity(NewActivity {
            handle: "worf".parse().unwrap(),
            message: message.into(),
            created_at,
            expires_at,
        })
        .await
        .unwrap();
    (db, crud.uuid.to_string())
}

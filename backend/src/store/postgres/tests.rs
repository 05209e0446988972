use std::num::NonZeroUsize;

use super::*;
use crate::store::Store;
use crate::store::seed;

/// The integration tests' Postgres helper, shared; these tests use part of it.
#[allow(dead_code)]
#[path = "../../../../tests/support/postgres.rs"]
mod server;

fn settings() -> StoreSettings {
    StoreSettings {
        database_path: String::new(),
        feed_cache_max_bytes: 0,
        database_url: None,
        database_max_connections: NonZeroUsize::new(4).unwrap(),
        database_connect_timeout: Duration::from_secs(5),
        database_statement_timeout: Duration::from_secs(5),
    }
}

async fn open(url: &str) -> Result<PostgresStore, OpenError> {
    PostgresStore::open(&url.parse().unwrap(), &settings(), Utc::now()).await
}

async fn fresh() -> (PostgresStore, server::Database) {
    let database = server::database().await;
    (open(&database.url).await.unwrap(), database)
}

crate::store::behaviour::behaviour_suite!(on_postgres, fresh().await);

#[tokio::test]
async fn replicas_starting_together_migrate_and_seed_once() {
    let database = server::database().await;
    let (one, two, three) = tokio::join!(
        open(&database.url),
        open(&database.url),
        open(&database.url)
    );
    let (one, _two, _three) = (one.unwrap(), two.unwrap(), three.unwrap());
    drop(open(&database.url).await.unwrap());
    let users = server::count(&database.url, "SELECT count(*) FROM users").await;
    assert_eq!(users as usize, seed::data(Utc::now()).users.len());
    let migrations = server::count(&database.url, "SELECT count(*) FROM schema_migrations").await;
    assert_eq!(migrations as usize, migrate::MIGRATIONS.len());
    assert_eq!(
        one.home_activities(Utc::now()).await.unwrap().len(),
        seed::data(Utc::now()).activities.len()
    );
}

#[tokio::test]
async fn a_wrong_password_or_a_missing_database_fails_at_once_and_says_why() {
    let database = server::database().await;
    let (credentials, _) = database.url.rsplit_once('@').unwrap();
    let wrong = database
        .url
        .replace(credentials, "postgres://cruddur:not-the-password");
    let started = std::time::Instant::now();
    let err = open(&wrong)
        .await
        .err()
        .expect("a wrong password is refused");
    let line = err.to_string();
    assert!(
        line.starts_with("DATABASE_URL: cannot connect to postgres://cruddur:****@127.0.0.1:"),
        "{line}"
    );
    assert!(line.contains("password authentication failed"), "{line}");
    assert!(!line.contains("not-the-password"), "{line}");
    let missing = server::on_database(&database.url, "no_such_database");
    let err = open(&missing)
        .await
        .err()
        .expect("a missing database is refused");
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "refusals are not retried until the timeout"
    );
}

#[tokio::test]
async fn nobody_listening_is_retried_until_the_connect_timeout_then_named() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url: DatabaseUrl = format!("postgres://cruddur:secret@127.0.0.1:{port}/cruddur")
        .parse()
        .unwrap();
    let mut settings = settings();
    settings.database_connect_timeout = Duration::from_millis(700);
    let started = std::time::Instant::now();
    let err = PostgresStore::open(&url, &settings, Utc::now())
        .await
        .err()
        .expect("nothing listens there");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "retried: {waited:?}");
    assert!(waited < Duration::from_secs(3), "bounded: {waited:?}");
    let line = err.to_string();
    assert!(
        line.starts_with(&format!(
            "DATABASE_URL: cannot connect to postgres://cruddur:****@127.0.0.1:{port}/cruddur"
        )),
        "{line}"
    );
    assert!(!line.contains("secret"), "{line}");
}

#[test]
fn failures_are_sorted_by_whether_trying_again_may_work() {
    assert!(matches!(
        store_error(Failure::TimedOut(Duration::from_secs(5))),
        StoreError::Unavailable(_)
    ));
    assert!(matches!(
        store_error(Failure::Pool(PoolError::Closed)),
        StoreError::Unavailable(_)
    ));
    assert!(matches!(
        store_error(Failure::Missing("a row")),
        StoreError::Internal(_)
    ));
}

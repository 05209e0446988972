//! The Postgres store, for several stateless replicas on one database
//! (RDS behind a load balancer): `DATABASE_URL=postgres://...` selects it.
//!
//! A bounded pool (`deadpool-postgres`) of `tokio-postgres` connections,
//! each statement prepared once per connection. Every operation has a
//! deadline: waiting for a connection is bounded by
//! `DATABASE_CONNECT_TIMEOUT`, the statements by `DATABASE_STATEMENT_TIMEOUT`
//! (on the server, and here too, for a server that stopped answering);
//! past either, the store answers [`StoreError::Unavailable`], a 503.
//!
//! Split as the SQLite store is: `url` reads `DATABASE_URL`, `queries`
//! holds every statement, `methods` answers the [`Store`](super::Store)
//! trait, `migrate` applies the schema and seeds, once per database
//! whatever the number of replicas starting. This folder is the only code
//! that names tokio-postgres.

mod methods;
mod migrate;
mod queries;
mod url;

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tracing::Instrument;

pub use url::{DatabaseUrl, mask};

use super::statement::Statement;
use super::{OpenError, StoreError, StoreFuture, StoreSettings};

/// The setting named when the database cannot be used.
const SETTING: &str = "DATABASE_URL";

/// `db.system.name` of every query span.
const SYSTEM: &str = "postgresql";

/// What the store connects with, and where, for the spans.
pub struct PostgresStore {
    pool: Pool,
    /// `server.address`, `server.port` and `db.namespace` of every span.
    address: String,
    port: u16,
    namespace: String,
    /// How long the statements of one operation may take, all together.
    statement_timeout: Duration,
    /// Writes committed through this store object: the local half of
    /// [`StoreVersion`](super::StoreVersion); the `store_version` table's
    /// sum is the shared half, which every replica's writes move.
    writes: AtomicU64,
}

/// Why an operation failed, before it is sorted into a [`StoreError`].
#[derive(Debug)]
enum Failure {
    Postgres(tokio_postgres::Error),
    Pool(PoolError),
    TimedOut(Duration),
    /// A row a statement of ours had to find was not there.
    Missing(&'static str),
}

impl Failure {
    /// The driver's error inside, if the failure is one.
    fn postgres(&self) -> Option<&tokio_postgres::Error> {
        match self {
            Failure::Pool(PoolError::Backend(err)) | Failure::Postgres(err) => Some(err),
            Failure::Pool(_) | Failure::TimedOut(_) | Failure::Missing(_) => None,
        }
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(err: tokio_postgres::Error) -> Self {
        Failure::Postgres(err)
    }
}

impl PostgresStore {
    /// Connects (retrying with backoff for `DATABASE_CONNECT_TIMEOUT`, so
    /// a database still starting is waited for), migrates and seeds.
    pub async fn open(
        url: &DatabaseUrl,
        settings: &StoreSettings,
        now: DateTime<Utc>,
    ) -> Result<Self, OpenError> {
        let failed =
            |action: &str, cause: String| OpenError::new(SETTING, format!("{action} {url}"), cause);
        let mut config = url.config().clone();
        config
            .connect_timeout(settings.database_connect_timeout)
            .application_name("cruddur-backend")
            .options(format!(
                "-c statement_timeout={}",
                settings.database_statement_timeout.as_millis()
            ));
        let tls = url.tls().map_err(|err| failed("set up TLS for", err))?;
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let timeout = Some(settings.database_connect_timeout);
        let pool = Pool::builder(manager)
            .max_size(settings.database_max_connections.get())
            .runtime(Runtime::Tokio1)
            .wait_timeout(timeout)
            .create_timeout(timeout)
            .recycle_timeout(timeout)
            .build()
            .map_err(|err| failed("set up the connection pool for", err.to_string()))?;
        let (address, port) = url.server();
        let store = PostgresStore {
            pool,
            address,
            port,
            namespace: url.namespace().to_owned(),
            statement_timeout: settings.database_statement_timeout,
            writes: AtomicU64::new(0),
        };
        let opening = tracing::info_span!("open_database", db.system.name = SYSTEM, db.namespace = %store.namespace);
        async {
            let client = store
                .first_connection(settings.database_connect_timeout)
                .await
                .map_err(|err| failed("connect to", describe(&err)))?;
            migrate::migrate_and_seed(&store, client, now)
                .await
                .map_err(|err| failed("migrate and seed", describe(&err)))
        }
        .instrument(opening)
        .await?;
        Ok(store)
    }

    /// The first connection, tried again with backoff while the failure
    /// may pass (the server is starting, the name does not resolve yet);
    /// a refused password or a missing database fails at once.
    async fn first_connection(&self, patience: Duration) -> Result<Object, Failure> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut pause = Duration::from_millis(100);
        loop {
            let failure = match self.pool.get().await {
                Ok(client) => return Ok(client),
                Err(err) => Failure::Pool(err),
            };
            if !passing(&failure) || tokio::time::Instant::now() + pause > deadline {
                return Err(failure);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// A pooled connection, the wait for it in a span of its own (a pool
    /// too small for the load shows there).
    async fn client(&self) -> Result<Object, Failure> {
        let span = tracing::info_span!(
            "db.client.connection.wait",
            otel.name = "wait for a database connection",
            db.system.name = SYSTEM,
            db.client.connection.pool.name = %self.namespace,
        );
        self.pool
            .get()
            .instrument(span)
            .await
            .map_err(Failure::Pool)
    }

    /// The statement's CLIENT span, with where the server is.
    fn span(&self, statement: &Statement) -> tracing::Span {
        let span = statement.span(SYSTEM);
        span.record("server.address", self.address.as_str());
        span.record("server.port", self.port);
        span.record("db.namespace", self.namespace.as_str());
        span
    }

    /// Runs a statement's `work` in its span, its duration counted in
    /// `db.client.operation.duration`.
    async fn timed<T>(&self, statement: &Statement, work: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let answer = work.instrument(self.span(statement)).await;
        statement.observe(SYSTEM, started.elapsed());
        answer
    }

    /// Runs a statement in its span, answering its rows.
    async fn rows(
        &self,
        client: &impl GenericClient,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        self.timed(statement, async {
            let prepared = client.prepare_cached(statement.sql).await?;
            client.query(&prepared, params).await
        })
        .await
    }

    /// Runs a statement in its span, answering its first row if any.
    async fn row(
        &self,
        client: &impl GenericClient,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        self.timed(statement, async {
            let prepared = client.prepare_cached(statement.sql).await?;
            client.query_opt(&prepared, params).await
        })
        .await
    }

    /// Runs a statement that changes rows, answering how many it changed.
    async fn execute(
        &self,
        client: &impl GenericClient,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        self.timed(statement, async {
            let prepared = client.prepare_cached(statement.sql).await?;
            client.execute(&prepared, params).await
        })
        .await
    }

    /// Runs one operation under its deadline (the connection wait plus the
    /// statement timeout), sorting its failure into a [`StoreError`]. An
    /// operation cut short drops its transaction, which rolls back.
    fn run<'a, T: Send + 'a>(
        &'a self,
        work: impl Future<Output = Result<T, Failure>> + Send + 'a,
    ) -> StoreFuture<'a, T> {
        let deadline = self.statement_timeout + self.pool.timeouts().wait.unwrap_or_default();
        Box::pin(async move {
            match tokio::time::timeout(deadline, work).await {
                Ok(answer) => answer.map_err(store_error),
                Err(_) => Err(store_error(Failure::TimedOut(deadline))),
            }
        })
    }
}

/// Whether trying again later may succeed: the server could not be
/// reached or is not ready yet, as opposed to refusing who we are or what
/// we asked for.
fn passing(failure: &Failure) -> bool {
    let Some(err) = failure.postgres() else {
        return !matches!(failure, Failure::Missing(_));
    };
    match err.code() {
        None => true,
        Some(code) => {
            code == &SqlState::CANNOT_CONNECT_NOW
                || code == &SqlState::TOO_MANY_CONNECTIONS
                || code.code().starts_with("08")
        }
    }
}

/// The failure as one line: tokio-postgres's own text ("db error") says
/// less than the server's message it holds.
fn describe(failure: &Failure) -> String {
    let err = match failure {
        Failure::Pool(PoolError::Backend(err)) | Failure::Postgres(err) => err,
        Failure::Pool(PoolError::Timeout(_)) => return "timed out".into(),
        Failure::Pool(err) => return err.to_string(),
        Failure::TimedOut(after) => return format!("no answer within {after:?}"),
        Failure::Missing(what) => return format!("not found: {what}"),
    };
    if let Some(db) = err.as_db_error() {
        return format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
    }
    match std::error::Error::source(err) {
        Some(source) => format!("{err}: {source}"),
        None => err.to_string(),
    }
}

/// A broken constraint is a conflict; anything that may pass by itself
/// (the server unreachable, restarting, overloaded, a statement over its
/// timeout, a serialization failure) is unavailable; the rest internal.
fn store_error(failure: Failure) -> StoreError {
    let line = describe(&failure).into();
    let Some(err) = failure.postgres() else {
        return match failure {
            Failure::Missing(_) => StoreError::Internal(line),
            _ => StoreError::Unavailable(line),
        };
    };
    match err.code().map(|code| &code.code()[..2]) {
        Some("23") => StoreError::Conflict(line),
        Some("08" | "40" | "53" | "57" | "58") => StoreError::Unavailable(line),
        Some(_) => StoreError::Internal(line),
        None if lost_connection(err) => StoreError::Unavailable(line),
        None => StoreError::Internal(line),
    }
}

/// An error with no SQLSTATE that is about the connection, not the data:
/// a closed or broken connection, a timeout.
fn lost_connection(err: &tokio_postgres::Error) -> bool {
    err.is_closed()
        || std::error::Error::source(err).is_some_and(|source| source.is::<std::io::Error>())
        || {
            let text = err.to_string();
            text.contains("connect") || text.contains("timeout") || text.contains("TLS")
        }
}

#[cfg(test)]
mod tests;

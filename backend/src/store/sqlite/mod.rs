//! The SQLite store: the embedded database the app starts with. A writer
//! connection owned by one thread (group commit) and a reader used inline.
//!
//! Split by concern: `queries` holds every statement, `rows` decodes rows,
//! `methods` answers the [`Store`](super::Store) trait, `writer` runs the
//! writes, `migrate` applies the schema and `seed` inserts the seed data. This folder is the only code
//! that names rusqlite: what leaves it are domain values, [`StoreError`]s
//! and [`OpenError`]s, the same as any other backend's.

mod methods;
mod migrate;
mod queries;
mod rows;
mod seed;
mod wal_index;
mod writer;

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::{BoxError, OpenError, StoreError, StoreFuture};
use wal_index::WalIndex;
use writer::Writer;

/// The setting the database path comes from, named when it cannot be opened.
const SETTING: &str = "DATABASE_PATH";

/// `db.system.name` of every query span.
const SYSTEM: &str = "sqlite";

/// Statements kept prepared per connection: every one in `queries` fits.
const STATEMENT_CACHE: usize = 64;

/// Keeps prepared statements prepared. SQLite built with STAT4 (as the
/// bundled one is) re-plans a statement whenever a value bound in a range
/// constraint changes, and every feed query binds "now": without the query
/// planner stability guarantee each request parsed and planned its SQL again.
fn tune(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
}

#[derive(Clone)]
pub struct SqliteStore {
    /// Hands writes to the thread that owns the writer connection (see
    /// `writer`): a commit may wait on the disk.
    writes_to: Writer,
    /// Reads use their own connection, inline on the caller's task: WAL lets
    /// them run beside a write, and a read of a database this size takes tens
    /// of microseconds, less than handing it to another thread costs. An
    /// in-memory database has one connection for both.
    reader: Arc<Mutex<Connection>>,
    /// Commits of the writer thread, counted before it answers: the
    /// local half of [`StoreVersion`](super::StoreVersion). The reader's
    /// `PRAGMA data_version` is the shared half: it moves with every commit
    /// by another connection, this process's writer and other processes
    /// on the same file alike, but an in-memory database has one
    /// connection, whose own commits it does not count.
    writes: Arc<AtomicU64>,
    /// Tells whether anything was committed since the version was last
    /// read, without a read transaction; none for an in-memory database.
    wal_index: Option<Arc<Mutex<WalIndex>>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, or an in-memory one
    /// for `:memory:`, applies pending migrations and seeds an empty database.
    pub fn open(path: &str, now: DateTime<Utc>) -> Result<Self, OpenError> {
        // Migration and seed queries form one start-up trace, not one each.
        let _opening = tracing::info_span!("open_database", db.system.name = SYSTEM).entered();
        let open_error = |cause: rusqlite::Error| {
            OpenError::new(SETTING, format!("open the database {path}"), cause)
        };
        let mut conn = if path == ":memory:" {
            Connection::open_in_memory().map_err(open_error)?
        } else {
            if let Some(folder) = Path::new(path)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
            {
                std::fs::create_dir_all(folder).map_err(|cause| {
                    let action = format!("create the database folder {}", folder.display());
                    OpenError::new(SETTING, action, cause)
                })?;
            }
            let conn = Connection::open(path).map_err(open_error)?;
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(open_error)?;
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(open_error)?;
            conn
        };
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_error)?;
        tune(&conn).map_err(open_error)?;
        migrate::migrate(&mut conn).map_err(open_error)?;
        seed::seed_if_empty(&mut conn, now).map_err(open_error)?;
        let writer = Arc::new(Mutex::new(conn));
        let (reader, wal_index) = if path == ":memory:" {
            (Arc::clone(&writer), None)
        } else {
            let reader = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(open_error)?;
            tune(&reader).map_err(open_error)?;
            // Without it every version is read from the database: slower,
            // never stale.
            let wal_index = WalIndex::open(Path::new(path))
                .inspect_err(|err| {
                    tracing::warn!(
                        "the feed cache reads the database's version on every read: \
                         cannot open {path}-shm: {err}"
                    );
                })
                .ok()
                .map(|index| Arc::new(Mutex::new(index)));
            (Arc::new(Mutex::new(reader)), wal_index)
        };
        let writes = Arc::new(AtomicU64::new(0));
        let writes_to =
            Writer::start(Arc::clone(&writer), Arc::clone(&writes)).map_err(|cause| {
                OpenError::new(SETTING, "start the database writer thread".into(), cause)
            })?;
        Ok(SqliteStore {
            writes_to,
            reader,
            writes,
            wal_index,
        })
    }

    /// Runs a read inline, inside the caller's span.
    fn read<'a, T, F>(&'a self, work: F) -> StoreFuture<'a, T>
    where
        T: Send + 'a,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'a,
    {
        Box::pin(async move {
            let conn = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
            work(&conn).map_err(store_error)
        })
    }

    /// Runs a write in a transaction (shared with the writes waiting beside
    /// it) on the writer thread, inside the caller's span, so query spans
    /// nest under the service span that asked for them.
    fn write<T, F>(&self, work: F) -> StoreFuture<'_, T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        Box::pin(self.writes_to.write(work))
    }
}

/// Busy or locked once the busy timeout has passed is worth a retry; a
/// broken constraint is a conflict; anything else is internal.
fn store_error(err: rusqlite::Error) -> StoreError {
    let kind = kind_of(&err);
    kind(err.into())
}

/// The error of a commit every write of its batch answers with: the same
/// kind for each, its text as the cause.
fn shared_error(err: &rusqlite::Error) -> StoreError {
    kind_of(err)(err.to_string().into())
}

fn kind_of(err: &rusqlite::Error) -> fn(BoxError) -> StoreError {
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Unavailable,
        Some(ErrorCode::ConstraintViolation) => StoreError::Conflict,
        _ => StoreError::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Handle;
    use crate::store::{Store, StoreVersion};

    #[test]
    fn busy_is_unavailable_a_broken_constraint_a_conflict_the_rest_internal() {
        let failure = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        assert!(matches!(
            store_error(failure(rusqlite::ffi::SQLITE_BUSY)),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            store_error(failure(rusqlite::ffi::SQLITE_LOCKED)),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            store_error(failure(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)),
            StoreError::Conflict(_)
        ));
        assert!(matches!(
            store_error(rusqlite::Error::QueryReturnedNoRows),
            StoreError::Internal(_)
        ));
    }

    #[test]
    fn migrations_are_idempotent_and_seed_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/cruddur.db");
        let path = path.to_str().unwrap();
        let now = Utc::now();
        drop(SqliteStore::open(path, now).unwrap());
        let store = SqliteStore::open(path, now).unwrap();
        let conn = store.reader.lock().unwrap();
        let users: i64 = conn
            .query_row("SELECT count(*) FROM users", [], |row| row.get(0))
            .unwrap();
        assert_eq!(users as usize, crate::store::seed::data(now).users.len());
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version as usize, migrate::MIGRATIONS.len());
    }

    fn on_a_temporary_file() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cruddur.db");
        let store = SqliteStore::open(path.to_str().unwrap(), Utc::now()).unwrap();
        (store, dir)
    }

    /// Another process's commit, as SQLite sees it: another connection.
    fn commit_elsewhere(dir: &tempfile::TempDir) {
        let other = Connection::open(dir.path().join("cruddur.db")).unwrap();
        other
            .execute("UPDATE users SET display_name = display_name || '!'", [])
            .unwrap();
    }

    #[tokio::test]
    async fn the_version_moves_with_a_commit_of_another_connection_and_only_then() {
        let (store, dir) = on_a_temporary_file();
        let first = store.version().await.unwrap();
        assert_eq!(store.version().await.unwrap(), first);
        commit_elsewhere(&dir);
        let second = store.version().await.unwrap();
        assert_ne!(second, first, "another connection's commit");
        assert_eq!(store.version().await.unwrap(), second);
    }

    #[tokio::test]
    async fn the_wal_index_header_moves_with_every_commit_and_answers_the_version_until_then() {
        let (store, dir) = on_a_temporary_file();
        let mut index = WalIndex::open(&dir.path().join("cruddur.db")).unwrap();
        let header = index.header();
        assert!(header.is_some(), "the two copies agree at rest");
        assert_eq!(index.header(), header, "and stay while nothing commits");
        let version = StoreVersion::new(3, 7);
        assert_eq!(
            index.unchanged(header.as_ref(), 3),
            None,
            "nothing seen yet"
        );
        index.remember(header, version);
        assert_eq!(index.unchanged(index.header().as_ref(), 3), Some(version));
        assert_eq!(index.unchanged(header.as_ref(), 4), None, "a local commit");
        assert_eq!(index.unchanged(None, 3), None, "a header being written");

        commit_elsewhere(&dir);
        let moved = index.header();
        assert!(
            moved.is_some() && moved != header,
            "another connection's commit"
        );
        assert_eq!(index.unchanged(moved.as_ref(), 3), None);
        store
            .ensure_user(&"wal".parse::<Handle>().unwrap(), "Wal")
            .await
            .unwrap();
        assert_ne!(index.header(), moved, "the writer thread's commit");
        index.remember(None, version);
        assert_eq!(index.unchanged(index.header().as_ref(), 3), None);
    }

    crate::store::behaviour::behaviour_suite!(
        in_memory,
        (SqliteStore::open(":memory:", Utc::now()).unwrap(), ())
    );
    crate::store::behaviour::behaviour_suite!(on_a_file, on_a_temporary_file());
}

//! SQLite store: one connection behind a mutex, used from the blocking pool.
//! Every statement is a `Query` constant and runs inside its own CLIENT span.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use rusqlite::config::DbConfig;
use rusqlite::types::Type;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, Transaction, params};
use tracing::Span;
use uuid::Uuid;

use super::{FEED_LIMIT, NewActivity, NewMessage, NewReply, Store, StoreError, StoreFuture, seed};
use crate::domain::{Activity, Handle, Message, MessageGroup, Reply, mentions};

const MIGRATIONS: &[&str] = &[include_str!("migrations/0001_init.sql")];

/// One SQL statement and the names its span carries.
pub(super) struct Query {
    name: &'static str,
    operation: &'static str,
    collection: &'static str,
    sql: &'static str,
}

impl Query {
    fn span(&self) -> Span {
        tracing::info_span!(
            "db.query",
            otel.name = self.name,
            otel.kind = "client",
            db.system.name = "sqlite",
            db.operation.name = self.operation,
            db.collection.name = self.collection,
            db.query.text = self.sql,
        )
    }

    /// Runs a statement that returns rows, mapping each with `map`.
    pub(super) fn rows<T>(
        &self,
        conn: &Connection,
        params: impl rusqlite::Params,
        map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Vec<T>> {
        let _entered = self.span().entered();
        let mut statement = conn.prepare_cached(self.sql)?;
        statement.query_map(params, map)?.collect()
    }

    /// Runs a statement that returns at most one row.
    pub(super) fn row<T>(
        &self,
        conn: &Connection,
        params: impl rusqlite::Params,
        map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Option<T>> {
        let _entered = self.span().entered();
        let mut statement = conn.prepare_cached(self.sql)?;
        statement.query_row(params, map).optional()
    }

    /// Runs a statement that changes rows, answering how many it changed.
    pub(super) fn execute(
        &self,
        conn: &Connection,
        params: impl rusqlite::Params,
    ) -> rusqlite::Result<usize> {
        let _entered = self.span().entered();
        let mut statement = conn.prepare_cached(self.sql)?;
        statement.execute(params)
    }
}

macro_rules! activity_query {
    ($name:literal, $where:literal) => {
        Query {
            name: $name,
            operation: "SELECT",
            collection: "activities",
            sql: concat!(
                "SELECT a.uuid, u.display_name, a.user_handle, a.message, a.created_at, ",
                "a.expires_at, a.likes_count, a.replies_count, a.reposts_count ",
                "FROM activities a JOIN users u ON u.handle = a.user_handle WHERE ",
                $where
            ),
        }
    };
}

const HOME_ACTIVITIES: Query = activity_query!(
    "SELECT activities home",
    "a.expires_at > ?1 ORDER BY a.created_at DESC, a.rowid DESC LIMIT ?2"
);
const NOTIFICATION_ACTIVITIES: Query = activity_query!(
    "SELECT activities notifications",
    "a.expires_at > ?1 AND ((a.user_handle <> ?2 AND a.message LIKE ?3 ESCAPE '\\') \
     OR (a.user_handle = ?2 AND EXISTS (SELECT 1 FROM replies r \
     WHERE r.reply_to_activity_uuid = a.uuid AND r.user_handle <> ?2))) \
     ORDER BY a.created_at DESC, a.rowid DESC LIMIT ?4"
);
const USER_ACTIVITIES: Query = activity_query!(
    "SELECT activities by user",
    "a.user_handle = ?1 AND a.expires_at > ?2 ORDER BY a.created_at DESC, a.rowid DESC LIMIT ?3"
);
const SEARCH_ACTIVITIES: Query = activity_query!(
    "SELECT activities search",
    "a.expires_at > ?1 AND a.message LIKE ?2 ESCAPE '\\' \
     ORDER BY a.created_at DESC, a.rowid DESC LIMIT ?3"
);
const SHOW_ACTIVITY: Query = activity_query!(
    "SELECT activities by uuid",
    "a.uuid = ?1 AND a.expires_at > ?2"
);
const REPLIES_FOR: Query = Query {
    name: "SELECT replies",
    operation: "SELECT",
    collection: "replies",
    sql: "SELECT r.uuid, r.reply_to_activity_uuid, u.display_name, r.user_handle, r.message, \
          r.likes_count, r.replies_count, r.reposts_count, r.created_at \
          FROM replies r JOIN users u ON u.handle = r.user_handle \
          WHERE r.reply_to_activity_uuid IN (SELECT value FROM json_each(?1)) \
          ORDER BY r.created_at, r.rowid",
};
const USER_DISPLAY_NAME: Query = Query {
    name: "SELECT users",
    operation: "SELECT",
    collection: "users",
    sql: "SELECT display_name FROM users WHERE handle = ?1",
};
pub(super) const INSERT_USER: Query = Query {
    name: "INSERT users",
    operation: "INSERT",
    collection: "users",
    sql: "INSERT OR IGNORE INTO users (uuid, handle, display_name, created_at) VALUES (?1, ?2, ?3, ?4)",
};
pub(super) const INSERT_ACTIVITY: Query = Query {
    name: "INSERT activities",
    operation: "INSERT",
    collection: "activities",
    sql: "INSERT INTO activities (uuid, user_handle, message, created_at, expires_at) \
          VALUES (?1, ?2, ?3, ?4, ?5)",
};
const ACTIVITY_IS_LIVE: Query = Query {
    name: "SELECT activities live",
    operation: "SELECT",
    collection: "activities",
    sql: "SELECT 1 FROM activities WHERE uuid = ?1 AND expires_at > ?2",
};
pub(super) const INSERT_REPLY: Query = Query {
    name: "INSERT replies",
    operation: "INSERT",
    collection: "replies",
    sql: "INSERT INTO replies (uuid, reply_to_activity_uuid, user_handle, message, created_at) \
          VALUES (?1, ?2, ?3, ?4, ?5)",
};
pub(super) const COUNT_REPLY: Query = Query {
    name: "UPDATE activities",
    operation: "UPDATE",
    collection: "activities",
    sql: "UPDATE activities SET replies_count = replies_count + 1 WHERE uuid = ?1",
};
const MESSAGE_GROUPS: Query = Query {
    name: "SELECT message_groups",
    operation: "SELECT",
    collection: "message_groups",
    sql: "SELECT g.uuid, u.handle, u.display_name, m.message, m.created_at \
          FROM message_groups g \
          JOIN users u ON u.handle = CASE WHEN g.user_a = ?1 THEN g.user_b ELSE g.user_a END \
          JOIN messages m ON m.uuid = (SELECT uuid FROM messages \
               WHERE message_group_uuid = g.uuid ORDER BY created_at DESC, rowid DESC LIMIT 1) \
          WHERE g.user_a = ?1 OR g.user_b = ?1 \
          ORDER BY m.created_at DESC",
};
const CONVERSATION: Query = Query {
    name: "SELECT messages",
    operation: "SELECT",
    collection: "messages",
    sql: "SELECT m.uuid, u.display_name, m.sender_handle, m.message, m.created_at \
          FROM messages m \
          JOIN message_groups g ON g.uuid = m.message_group_uuid \
          JOIN users u ON u.handle = m.sender_handle \
          WHERE g.user_a = ?1 AND g.user_b = ?2 \
          ORDER BY m.created_at, m.rowid LIMIT ?3",
};
pub(super) const INSERT_MESSAGE_GROUP: Query = Query {
    name: "INSERT message_groups",
    operation: "INSERT",
    collection: "message_groups",
    sql: "INSERT OR IGNORE INTO message_groups (uuid, user_a, user_b) VALUES (?1, ?2, ?3)",
};
pub(super) const MESSAGE_GROUP_UUID: Query = Query {
    name: "SELECT message_groups by users",
    operation: "SELECT",
    collection: "message_groups",
    sql: "SELECT uuid FROM message_groups WHERE user_a = ?1 AND user_b = ?2",
};
pub(super) const INSERT_MESSAGE: Query = Query {
    name: "INSERT messages",
    operation: "INSERT",
    collection: "messages",
    sql: "INSERT INTO messages (uuid, message_group_uuid, sender_handle, message, created_at) \
          VALUES (?1, ?2, ?3, ?4, ?5)",
};

pub(super) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn time_at(row: &Row<'_>, index: usize) -> rusqlite::Result<DateTime<Utc>> {
    let micros: i64 = row.get(index)?;
    DateTime::from_timestamp_micros(micros).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            Type::Integer,
            format!("timestamp out of range: {micros}").into(),
        )
    })
}

fn uuid_at(row: &Row<'_>, index: usize) -> rusqlite::Result<Uuid> {
    let text: String = row.get(index)?;
    Uuid::parse_str(&text)
        .map_err(|err| rusqlite::Error::FromSqlConversionFailure(index, Type::Text, err.into()))
}

fn activity_from(row: &Row<'_>) -> rusqlite::Result<Activity> {
    Ok(Activity {
        uuid: uuid_at(row, 0)?,
        display_name: row.get(1)?,
        handle: row.get(2)?,
        message: row.get(3)?,
        created_at: time_at(row, 4)?,
        expires_at: time_at(row, 5)?,
        likes_count: row.get(6)?,
        replies_count: row.get(7)?,
        reposts_count: row.get(8)?,
        replies: Vec::new(),
    })
}

fn reply_from(row: &Row<'_>) -> rusqlite::Result<Reply> {
    Ok(Reply {
        uuid: uuid_at(row, 0)?,
        reply_to_activity_uuid: uuid_at(row, 1)?,
        display_name: row.get(2)?,
        handle: row.get(3)?,
        message: row.get(4)?,
        likes_count: row.get(5)?,
        replies_count: row.get(6)?,
        reposts_count: row.get(7)?,
        created_at: time_at(row, 8)?,
    })
}

fn message_from(row: &Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        uuid: uuid_at(row, 0)?,
        display_name: row.get(1)?,
        handle: row.get(2)?,
        message: row.get(3)?,
        created_at: time_at(row, 4)?,
    })
}

/// Fills in each activity's replies with one query for the whole page.
fn with_replies(
    conn: &Connection,
    mut activities: Vec<Activity>,
) -> rusqlite::Result<Vec<Activity>> {
    if activities.iter().all(|a| a.replies_count == 0) {
        return Ok(activities);
    }
    let uuids: Vec<String> = activities
        .iter()
        .filter(|a| a.replies_count > 0)
        .map(|a| a.uuid.to_string())
        .collect();
    let list = serde_json::Value::from(uuids).to_string();
    for reply in REPLIES_FOR.rows(conn, [list], reply_from)? {
        if let Some(activity) = activities
            .iter_mut()
            .find(|a| a.uuid == reply.reply_to_activity_uuid)
        {
            activity.replies.push(reply);
        }
    }
    Ok(activities)
}

/// Escapes `%`, `_` and `\` so user text matches literally inside LIKE.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

fn display_name(conn: &Connection, handle: &Handle) -> rusqlite::Result<Option<String>> {
    USER_DISPLAY_NAME.row(conn, [handle.as_str()], |row| row.get(0))
}

/// The two handles of a conversation in the order message_groups keeps them.
fn ordered<'h>(one: &'h Handle, other: &'h Handle) -> (&'h str, &'h str) {
    if one.as_str() <= other.as_str() {
        (one.as_str(), other.as_str())
    } else {
        (other.as_str(), one.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the database folder {path}: {source}")]
    Folder {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open the database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
}

/// Statements kept prepared per connection: every query of this file fits.
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
    /// Writes go through one connection on the blocking pool: a commit may
    /// wait on the disk.
    writer: Arc<Mutex<Connection>>,
    /// Reads use their own connection, inline on the caller's task: WAL lets
    /// them run beside a write, and a read of a database this size takes tens
    /// of microseconds, less than handing it to another thread costs. An
    /// in-memory database has one connection for both.
    reader: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, or an in-memory one
    /// for `:memory:`, applies pending migrations and seeds an empty database.
    pub fn open(path: &str, now: DateTime<Utc>) -> Result<Self, OpenError> {
        // Migration and seed queries form one start-up trace, not one each.
        let _opening = tracing::info_span!("open_database", db.system.name = "sqlite").entered();
        let open_error = |source| OpenError::Open {
            path: path.to_owned(),
            source,
        };
        let mut conn = if path == ":memory:" {
            Connection::open_in_memory().map_err(open_error)?
        } else {
            if let Some(folder) = Path::new(path)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
            {
                std::fs::create_dir_all(folder).map_err(|source| OpenError::Folder {
                    path: folder.display().to_string(),
                    source,
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
        migrate(&mut conn).map_err(open_error)?;
        seed::seed_if_empty(&mut conn, now).map_err(open_error)?;
        let writer = Arc::new(Mutex::new(conn));
        let reader = if path == ":memory:" {
            Arc::clone(&writer)
        } else {
            let reader = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(open_error)?;
            tune(&reader).map_err(open_error)?;
            Arc::new(Mutex::new(reader))
        };
        Ok(SqliteStore { writer, reader })
    }

    /// Runs a read inline, inside the caller's span.
    fn read<'a, T, F>(&'a self, work: F) -> StoreFuture<'a, T>
    where
        T: Send + 'a,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'a,
    {
        Box::pin(async move {
            let conn = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
            work(&conn).map_err(StoreError::from)
        })
    }

    /// Runs a write on the blocking pool inside the caller's span, so query
    /// spans nest under the service span that asked for them.
    fn write<T, F>(&self, work: F) -> StoreFuture<'_, T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.writer);
        let span = Span::current();
        Box::pin(async move {
            let answer = tokio::task::spawn_blocking(move || {
                span.in_scope(|| {
                    let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
                    work(&mut conn)
                })
            })
            .await?;
            answer.map_err(StoreError::from)
        })
    }

    fn in_transaction<T, F>(&self, work: F) -> StoreFuture<'_, T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let answer = work(&tx)?;
            tx.commit()?;
            Ok(answer)
        })
    }
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let applied: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

fn feed_limit() -> i64 {
    FEED_LIMIT as i64
}

impl Store for SqliteStore {
    fn ensure_user<'a>(&'a self, handle: &'a Handle, display_name: &'a str) -> StoreFuture<'a, ()> {
        let (handle, display_name) = (handle.to_string(), display_name.to_owned());
        self.write(move |conn| {
            INSERT_USER.execute(
                conn,
                params![
                    Uuid::new_v4().to_string(),
                    handle,
                    display_name,
                    micros(Utc::now())
                ],
            )?;
            Ok(())
        })
    }

    fn home_activities(&self, now: DateTime<Utc>) -> StoreFuture<'_, Vec<Activity>> {
        self.read(move |conn| {
            let page =
                HOME_ACTIVITIES.rows(conn, params![micros(now), feed_limit()], activity_from)?;
            with_replies(conn, page)
        })
    }

    fn notification_activities<'a>(
        &'a self,
        handle: &'a Handle,
        now: DateTime<Utc>,
    ) -> StoreFuture<'a, Vec<Activity>> {
        let handle = handle.clone();
        self.read(move |conn| {
            let mention = like_pattern(&format!("@{handle}"));
            let page = NOTIFICATION_ACTIVITIES.rows(
                conn,
                params![micros(now), handle.as_str(), mention, feed_limit()],
                activity_from,
            )?;
            let page = page
                .into_iter()
                .filter(|a| a.handle == handle.as_str() || mentions(&a.message, &handle))
                .collect();
            with_replies(conn, page)
        })
    }

    fn user_activities<'a>(
        &'a self,
        handle: &'a Handle,
        now: DateTime<Utc>,
    ) -> StoreFuture<'a, Option<Vec<Activity>>> {
        let handle = handle.clone();
        self.read(move |conn| {
            if display_name(conn, &handle)?.is_none() {
                return Ok(None);
            }
            let page = USER_ACTIVITIES.rows(
                conn,
                params![handle.as_str(), micros(now), feed_limit()],
                activity_from,
            )?;
            with_replies(conn, page).map(Some)
        })
    }

    fn search_activities<'a>(
        &'a self,
        term: &'a str,
        now: DateTime<Utc>,
    ) -> StoreFuture<'a, Vec<Activity>> {
        let pattern = like_pattern(term);
        self.read(move |conn| {
            let page = SEARCH_ACTIVITIES.rows(
                conn,
                params![micros(now), pattern, feed_limit()],
                activity_from,
            )?;
            with_replies(conn, page)
        })
    }

    fn show_activity(&self, uuid: Uuid, now: DateTime<Utc>) -> StoreFuture<'_, Option<Activity>> {
        self.read(move |conn| {
            match SHOW_ACTIVITY.row(conn, params![uuid.to_string(), micros(now)], activity_from)? {
                Some(activity) => Ok(with_replies(conn, vec![activity])?.pop()),
                None => Ok(None),
            }
        })
    }

    fn create_activity(&self, new: NewActivity) -> StoreFuture<'_, Activity> {
        self.in_transaction(move |tx| {
            let display_name =
                display_name(tx, &new.handle)?.unwrap_or_else(|| new.handle.to_string());
            let uuid = Uuid::new_v4();
            INSERT_ACTIVITY.execute(
                tx,
                params![
                    uuid.to_string(),
                    new.handle.as_str(),
                    new.message,
                    micros(new.created_at),
                    micros(new.expires_at)
                ],
            )?;
            Ok(Activity {
                uuid,
                display_name,
                handle: new.handle.to_string(),
                message: new.message,
                created_at: new.created_at,
                expires_at: new.expires_at,
                likes_count: 0,
                replies_count: 0,
                reposts_count: 0,
                replies: Vec::new(),
            })
        })
    }

    fn create_reply(&self, new: NewReply) -> StoreFuture<'_, Option<Reply>> {
        self.in_transaction(move |tx| {
            let activity = new.activity_uuid.to_string();
            if ACTIVITY_IS_LIVE
                .row(tx, params![activity, micros(new.created_at)], |_| Ok(()))?
                .is_none()
            {
                return Ok(None);
            }
            let display_name =
                display_name(tx, &new.handle)?.unwrap_or_else(|| new.handle.to_string());
            let uuid = Uuid::new_v4();
            INSERT_REPLY.execute(
                tx,
                params![
                    uuid.to_string(),
                    activity,
                    new.handle.as_str(),
                    new.message,
                    micros(new.created_at)
                ],
            )?;
            COUNT_REPLY.execute(tx, [&activity])?;
            Ok(Some(Reply {
                uuid,
                reply_to_activity_uuid: new.activity_uuid,
                display_name,
                handle: new.handle.to_string(),
                message: new.message,
                likes_count: 0,
                replies_count: 0,
                reposts_count: 0,
                created_at: new.created_at,
            }))
        })
    }

    fn message_groups<'a>(&'a self, handle: &'a Handle) -> StoreFuture<'a, Vec<MessageGroup>> {
        let handle = handle.to_string();
        self.read(move |conn| {
            MESSAGE_GROUPS.rows(conn, [handle], |row| {
                Ok(MessageGroup {
                    uuid: uuid_at(row, 0)?,
                    handle: row.get(1)?,
                    display_name: row.get(2)?,
                    message: row.get(3)?,
                    created_at: time_at(row, 4)?,
                })
            })
        })
    }

    fn messages<'a>(
        &'a self,
        handle: &'a Handle,
        other: &'a Handle,
    ) -> StoreFuture<'a, Option<Vec<Message>>> {
        let (handle, other) = (handle.clone(), other.clone());
        self.read(move |conn| {
            if display_name(conn, &other)?.is_none() {
                return Ok(None);
            }
            let (a, b) = ordered(&handle, &other);
            CONVERSATION
                .rows(conn, params![a, b, feed_limit()], message_from)
                .map(Some)
        })
    }

    fn create_message(&self, new: NewMessage) -> StoreFuture<'_, Option<Message>> {
        self.in_transaction(move |tx| {
            if display_name(tx, &new.receiver)?.is_none() {
                return Ok(None);
            }
            let (a, b) = ordered(&new.sender, &new.receiver);
            INSERT_MESSAGE_GROUP.execute(tx, params![Uuid::new_v4().to_string(), a, b])?;
            let group: String = MESSAGE_GROUP_UUID
                .row(tx, params![a, b], |row| row.get(0))?
                .ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            let display_name =
                display_name(tx, &new.sender)?.unwrap_or_else(|| new.sender.to_string());
            let uuid = Uuid::new_v4();
            INSERT_MESSAGE.execute(
                tx,
                params![
                    uuid.to_string(),
                    group,
                    new.sender.as_str(),
                    new.message,
                    micros(new.created_at)
                ],
            )?;
            Ok(Some(Message {
                uuid,
                display_name,
                handle: new.sender.to_string(),
                message: new.message,
                created_at: new.created_at,
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_match_literally() {
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }

    #[test]
    fn migrations_are_idempotent_and_seed_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/cruddur.db");
        let path = path.to_str().unwrap();
        let now = Utc::now();
        drop(SqliteStore::open(path, now).unwrap());
        let store = SqliteStore::open(path, now).unwrap();
        let conn = store.writer.lock().unwrap();
        let users: i64 = conn
            .query_row("SELECT count(*) FROM users", [], |row| row.get(0))
            .unwrap();
        assert_eq!(users as usize, seed::USERS.len());
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version as usize, MIGRATIONS.len());
    }
}

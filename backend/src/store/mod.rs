//! The data behind one small interface, so stores are added without
//! touching routes or services: services call [`Store`], a backend folder
//! (`sqlite/`, `postgres/`) implements it, and [`open`] picks one.
//! What crosses the boundary names no backend: domain values, [`StoreError`],
//! [`OpenError`], the seed data as plain values (`seed`) and the query span
//! every backend's statements run in (`statement`).

#[cfg(test)]
mod behaviour;
pub mod postgres;
mod seed;
pub mod sqlite;
pub mod statement;

use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{Activity, Handle, Message, MessageGroup, Reply};

pub use postgres::{DatabaseUrl, PostgresStore};
pub use sqlite::SqliteStore;

/// The most items a feed answers with.
pub const FEED_LIMIT: usize = 1000;

/// Where the data lives. Flattened into the configuration, which stays the
/// only reader of the environment.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreSettings {
    /// SQLite database file, created on first start; `:memory:` keeps nothing
    #[arg(
        long = "database-path",
        env = "DATABASE_PATH",
        value_name = "DATABASE_PATH",
        default_value = "./data/cruddur.db"
    )]
    pub database_path: String,
    /// Memory for the feeds' ready-made answers (`8MiB`, `512KiB`); 0 turns the feed cache off
    #[arg(
        long = "feed-cache-max-bytes",
        env = "FEED_CACHE_MAX_BYTES",
        value_name = "FEED_CACHE_MAX_BYTES",
        default_value = "8MiB",
        value_parser = crate::config::values::parse_bytes_or_zero
    )]
    pub feed_cache_max_bytes: usize,
    /// Postgres to keep the data in instead of SQLite (`postgres://user:password@host:5432/cruddur?sslmode=verify-full&sslrootcert=FILE`); unset keeps SQLite at DATABASE_PATH
    #[arg(
        long = "database-url",
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        hide_env_values = true,
        value_parser = str::parse::<DatabaseUrl>
    )]
    pub database_url: Option<DatabaseUrl>,
    /// Postgres connections this process keeps at most
    #[arg(
        long = "database-max-connections",
        env = "DATABASE_MAX_CONNECTIONS",
        value_name = "DATABASE_MAX_CONNECTIONS",
        default_value = "10",
        value_parser = crate::config::values::parse_positive
    )]
    pub database_max_connections: NonZeroUsize,
    /// How long to wait for a Postgres connection: at start-up (retrying while the database comes up) and for each request
    #[arg(
        long = "database-connect-timeout",
        env = "DATABASE_CONNECT_TIMEOUT",
        value_name = "DATABASE_CONNECT_TIMEOUT",
        default_value = "5s",
        value_parser = crate::config::values::parse_nonzero_duration
    )]
    pub database_connect_timeout: Duration,
    /// How long a request's Postgres statements may take in all before it answers 503
    #[arg(
        long = "database-statement-timeout",
        env = "DATABASE_STATEMENT_TIMEOUT",
        value_name = "DATABASE_STATEMENT_TIMEOUT",
        default_value = "5s",
        value_parser = crate::config::values::parse_nonzero_duration
    )]
    pub database_statement_timeout: Duration,
}

impl StoreSettings {
    /// Where the data is, for a start-up line: the Postgres URL with its
    /// password masked, or the SQLite file.
    pub fn describe(&self) -> String {
        match &self.database_url {
            Some(url) => format!("postgresql at {url}"),
            None => format!("sqlite at {}", self.database_path),
        }
    }
}

/// Opens the store the settings select, ready to answer: schema migrated,
/// an empty database seeded with data dated relative to `now`. Postgres
/// when `DATABASE_URL` is set, SQLite otherwise.
pub async fn open(
    settings: &StoreSettings,
    now: DateTime<Utc>,
) -> Result<Arc<dyn Store>, OpenError> {
    Ok(match &settings.database_url {
        Some(url) => Arc::new(PostgresStore::open(url, settings, now).await?),
        None => Arc::new(SqliteStore::open(&settings.database_path, now)?),
    })
}

/// The two handles of a conversation in the order every store keeps them.
pub(crate) fn conversation_pair<'h>(one: &'h str, other: &'h str) -> (&'h str, &'h str) {
    if one <= other {
        (one, other)
    } else {
        (other, one)
    }
}

/// A LIKE pattern matching `text` anywhere, with `%`, `_` and `\` escaped
/// (for `ESCAPE '\'`) so user text matches literally.
pub(crate) fn like_pattern(text: &str) -> String {
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

/// Why a store could not be opened, naming the setting to fix: one line.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: cannot {action}: {cause}")]
pub struct OpenError {
    setting: &'static str,
    action: String,
    cause: BoxError,
}

impl OpenError {
    /// `action` completes "cannot ...": `open the database ./data/cruddur.db`.
    pub fn new(setting: &'static str, action: String, cause: impl Into<BoxError>) -> Self {
        OpenError {
            setting,
            action,
            cause: cause.into(),
        }
    }
}

/// Any error a backend wraps, kept whole for the logs.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a store could not answer, in terms every backend can map to: the
/// source stays for the logs, and callers decide on the kind alone.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database is busy, locked or unreachable: trying again may work.
    #[error("database unavailable: {0}")]
    Unavailable(BoxError),
    /// The change breaks a constraint of the data already stored.
    #[error("database conflict: {0}")]
    Conflict(BoxError),
    /// Anything else: a broken schema, corrupt data, a failed task.
    #[error("database error: {0}")]
    Internal(BoxError),
}

/// Where the stored data stands: two versions are equal only if no write
/// that could change an answer was committed between them, by this process
/// or any other that shares the data. Caches keep an answer with the
/// version read before it was computed and serve it while the version holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreVersion {
    /// Writes committed through this store object.
    local: u64,
    /// What the backend says of everyone's writes (SQLite's `data_version`;
    /// for a server database, the change notifications received).
    shared: u64,
}

impl StoreVersion {
    pub fn new(local: u64, shared: u64) -> Self {
        StoreVersion { local, shared }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = StoreResult<T>> + Send + 'a>>;

pub struct NewActivity {
    pub handle: Handle,
    pub message: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub struct NewReply {
    pub activity_uuid: Uuid,
    pub handle: Handle,
    pub message: String,
    pub created_at: DateTime<Utc>,
}

pub struct NewMessage {
    pub sender: Handle,
    pub receiver: Handle,
    pub message: String,
    pub created_at: DateTime<Utc>,
}

impl NewActivity {
    /// The crud as stored under `uuid`, by an author of that display name.
    pub(crate) fn stored(self, uuid: Uuid, display_name: String) -> Activity {
        Activity {
            uuid,
            display_name,
            handle: self.handle.to_string(),
            message: self.message,
            created_at: self.created_at,
            expires_at: self.expires_at,
            likes_count: 0,
            replies_count: 0,
            reposts_count: 0,
            replies: Vec::new(),
        }
    }
}

impl NewReply {
    /// The reply as stored under `uuid`, in the thread of crud `thread`.
    pub(crate) fn stored(self, uuid: Uuid, thread: Uuid, display_name: String) -> Reply {
        Reply {
            uuid,
            reply_to_activity_uuid: thread,
            display_name,
            handle: self.handle.to_string(),
            message: self.message,
            likes_count: 0,
            replies_count: 0,
            reposts_count: 0,
            created_at: self.created_at,
        }
    }
}

impl NewMessage {
    /// The message as stored under `uuid`, by a sender of that display name.
    pub(crate) fn stored(self, uuid: Uuid, display_name: String) -> Message {
        Message {
            uuid,
            display_name,
            handle: self.sender.to_string(),
            message: self.message,
            created_at: self.created_at,
        }
    }
}

/// Every query the services need. Feeds hide cruds expired at `now`, answer
/// at most [`FEED_LIMIT`] newest first, each crud with its replies oldest
/// first; an `Option` answer is `None` when the thing it hangs off does not
/// exist. Business rules stay in the services: a store answers what is stored.
pub trait Store: Send + Sync + 'static {
    /// Where the data stands now (see [`StoreVersion`]). Called before
    /// every cached read, so it must cost far less than a feed query, and
    /// it runs in no span of its own.
    fn version(&self) -> StoreFuture<'_, StoreVersion>;
    /// Answers once the database answers a trivial query: readiness.
    fn ping(&self) -> StoreFuture<'_, ()>;
    /// Creates the user unless one has that handle already.
    fn ensure_user<'a>(&'a self, handle: &'a Handle, display_name: &'a str) -> StoreFuture<'a, ()>;
    fn home_activities(&self, now: DateTime<Utc>) -> StoreFuture<'_, Vec<Activity>>;
    /// The candidates for `handle`'s notifications: cruds by others whose
    /// text contains `@handle` anywhere (so `@worfy` is one for `worf`, and
    /// case may be ignored), and `handle`'s own cruds that someone else
    /// replied to. Which of them really mention `handle` the caller decides.
    fn notification_candidates<'a>(
        &'a self,
        handle: &'a Handle,
        now: DateTime<Utc>,
    ) -> StoreFuture<'a, Vec<Activity>>;
    /// `None` when no user has that handle.
    fn user_activities<'a>(
        &'a self,
        handle: &'a Handle,
        now: DateTime<Utc>,
    ) -> StoreFuture<'a, Option<Vec<Activity>>>;
    /// Cruds whose text contains `term`, ignoring ASCII case; `%` and `_`
    /// are plain characters.
    fn search_activities<'a>(
        &'a self,
        term: &'a str,
        now: DateTime<Utc>,
    ) -> StoreFuture<'a, Vec<Activity>>;
    /// `None` when no crud has that uuid or it has expired.
    fn show_activity(&self, uuid: Uuid, now: DateTime<Utc>) -> StoreFuture<'_, Option<Activity>>;
    fn create_activity(&self, new: NewActivity) -> StoreFuture<'_, Activity>;
    /// Stores the reply and counts it on its crud; `None` when no crud has
    /// that uuid or it has expired at `new.created_at`. The uuid may also be
    /// one of a crud's replies (clients offer to reply to a reply): the
    /// reply then lands in that crud's thread, under the crud's uuid.
    fn create_reply(&self, new: NewReply) -> StoreFuture<'_, Option<Reply>>;
    /// One group per conversation partner with its latest message, newest first.
    fn message_groups<'a>(&'a self, handle: &'a Handle) -> StoreFuture<'a, Vec<MessageGroup>>;
    /// The conversation between the two, oldest first; `None` when no user
    /// has the handle `other`.
    fn messages<'a>(
        &'a self,
        handle: &'a Handle,
        other: &'a Handle,
    ) -> StoreFuture<'a, Option<Vec<Message>>>;
    /// `None` when no user has the receiver's handle.
    fn create_message(&self, new: NewMessage) -> StoreFuture<'_, Option<Message>>;
    /// Called once at a clean exit, when serving has stopped: leaves every
    /// write in the store's own files, so that a copy of them alone holds
    /// the data, whoever else has them open. A store that keeps its data
    /// on a server has nothing to do.
    fn checkpoint(&self) -> StoreFuture<'_, ()>;
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_patterns_match_literally() {
        assert_eq!(super::like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }
}

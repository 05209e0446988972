//! The embedded database behind a small interface, so another store (Postgres)
//! can be added without touching routes or services.

mod seed;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{Activity, Handle, Message, MessageGroup, Reply};

pub use sqlite::SqliteStore;

/// The most items a feed answers with.
pub const FEED_LIMIT: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("database task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
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

/// Every query the services need. Feeds hide cruds expired at `now`; an
/// `Option` answer is `None` when the thing it hangs off does not exist.
pub trait Store: Send + Sync + 'static {
    fn ensure_user<'a>(&'a self, handle: &'a Handle, display_name: &'a str) -> StoreFuture<'a, ()>;
    fn home_activities(&self, now: DateTime<Utc>) -> StoreFuture<'_, Vec<Activity>>;
    fn notification_activities<'a>(
        &'a self,
        handle: &'a Handle,
        now: DateTime<Utc>,
    ) -> StoreFuture<'a, Vec<Activity>>;
    fn user_activities<'a>(
        &'a self,
        handle: &'a Handle,
        now: DateTime<Utc>,
    ) -> StoreFuture<'a, Option<Vec<Activity>>>;
    fn search_activities<'a>(
        &'a self,
        term: &'a str,
        now: DateTime<Utc>,
    ) -> StoreFuture<'a, Vec<Activity>>;
    fn show_activity(&self, uuid: Uuid, now: DateTime<Utc>) -> StoreFuture<'_, Option<Activity>>;
    fn create_activity(&self, new: NewActivity) -> StoreFuture<'_, Activity>;
    fn create_reply(&self, new: NewReply) -> StoreFuture<'_, Option<Reply>>;
    fn message_groups<'a>(&'a self, handle: &'a Handle) -> StoreFuture<'a, Vec<MessageGroup>>;
    fn messages<'a>(
        &'a self,
        handle: &'a Handle,
        other: &'a Handle,
    ) -> StoreFuture<'a, Option<Vec<Message>>>;
    fn create_message(&self, new: NewMessage) -> StoreFuture<'_, Option<Message>>;
}

//! The [`Store`] methods: reads on a pooled connection, each write in one
//! transaction that also counts it in `store_version`.

use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::Row;
use uuid::Uuid;

use super::migrate::conversation;
use super::queries::*;
use super::{Failure, PostgresStore};
use crate::domain::{Activity, Handle, Message, MessageGroup, Reply};
use crate::store::{
    FEED_LIMIT, NewActivity, NewMessage, NewReply, Store, StoreFuture, StoreVersion,
    conversation_pair, like_pattern,
};

/// The feed limit as Postgres binds it.
const LIMIT: i64 = FEED_LIMIT as i64;

/// How many rows `store_version` spreads the write count over.
const VERSION_SHARDS: u64 = 16;

fn activity_from(row: &Row) -> Result<Activity, tokio_postgres::Error> {
    Ok(Activity {
        uuid: row.try_get(0)?,
        display_name: row.try_get(1)?,
        handle: row.try_get(2)?,
        message: row.try_get(3)?,
        created_at: row.try_get(4)?,
        expires_at: row.try_get(5)?,
        likes_count: row.try_get(6)?,
        replies_count: row.try_get(7)?,
        reposts_count: row.try_get(8)?,
        replies: Vec::new(),
    })
}

fn reply_from(row: &Row) -> Result<Reply, tokio_postgres::Error> {
    Ok(Reply {
        uuid: row.try_get(0)?,
        reply_to_activity_uuid: row.try_get(1)?,
        display_name: row.try_get(2)?,
        handle: row.try_get(3)?,
        message: row.try_get(4)?,
        likes_count: row.try_get(5)?,
        replies_count: row.try_get(6)?,
        reposts_count: row.try_get(7)?,
        created_at: row.try_get(8)?,
    })
}

fn message_from(row: &Row) -> Result<Message, tokio_postgres::Error> {
    Ok(Message {
        uuid: row.try_get(0)?,
        display_name: row.try_get(1)?,
        handle: row.try_get(2)?,
        message: row.try_get(3)?,
        created_at: row.try_get(4)?,
    })
}

fn message_group_from(row: &Row) -> Result<MessageGroup, tokio_postgres::Error> {
    Ok(MessageGroup {
        uuid: row.try_get(0)?,
        handle: row.try_get(1)?,
        display_name: row.try_get(2)?,
        message: row.try_get(3)?,
        created_at: row.try_get(4)?,
    })
}

fn all<T>(
    rows: Vec<Row>,
    from: fn(&Row) -> Result<T, tokio_postgres::Error>,
) -> Result<Vec<T>, Failure> {
    rows.iter()
        .map(|row| from(row).map_err(Failure::from))
        .collect()
}

/// Text matching as SQLite's LIKE does it: ASCII case folded, `%`, `_`
/// and `\` literal.
fn folded_pattern(text: &str) -> String {
    like_pattern(&text.to_ascii_lowercase())
}

impl PostgresStore {
    /// A page of cruds, each with its replies oldest first (one query for
    /// the whole page).
    async fn page(
        &self,
        client: &impl GenericClient,
        rows: Vec<Row>,
    ) -> Result<Vec<Activity>, Failure> {
        let mut activities = all(rows, activity_from)?;
        let replied: Vec<Uuid> = activities
            .iter()
            .filter(|a| a.replies_count > 0)
            .map(|a| a.uuid)
            .collect();
        if replied.is_empty() {
            return Ok(activities);
        }
        let replies = all(
            self.rows(client, &REPLIES_FOR, &[&replied]).await?,
            reply_from,
        )?;
        for reply in replies {
            if let Some(activity) = activities
                .iter_mut()
                .find(|a| a.uuid == reply.reply_to_activity_uuid)
            {
                activity.replies.push(reply);
            }
        }
        Ok(activities)
    }

    async fn display_name(
        &self,
        client: &impl GenericClient,
        handle: &str,
    ) -> Result<Option<String>, Failure> {
        match self.row(client, &USER_DISPLAY_NAME, &[&handle]).await? {
            Some(row) => Ok(Some(row.try_get(0)?)),
            None => Ok(None),
        }
    }

    /// Counts the transaction's write for every replica's feed cache, then
    /// commits it, then counts it locally.
    async fn commit(&self, tx: Transaction<'_>) -> Result<(), Failure> {
        let shard = (rand::random::<u64>() % VERSION_SHARDS) as i16;
        self.execute(&tx, &COUNT_WRITE, &[&shard]).await?;
        tx.commit().await?;
        self.writes.fetch_add(1, Ordering::Release);
        Ok(())
    }
}

impl Store for PostgresStore {
    fn version(&self) -> StoreFuture<'_, StoreVersion> {
        self.run(async move {
            // The local count first: a write counted after this read began
            // moves one half or the other.
            let local = self.writes.load(Ordering::Acquire);
            let client = self.pool.get().await.map_err(Failure::Pool)?;
            let prepared = client.prepare_cached(VERSION).await?;
            let shared: i64 = client.query_one(&prepared, &[]).await?.try_get(0)?;
            Ok(StoreVersion::new(local, shared as u64))
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        self.run(async move {
            let client = self.pool.get().await.map_err(Failure::Pool)?;
            client.simple_query(PING).await?;
            Ok(())
        })
    }

    fn ensure_user<'a>(&'a self, handle: &'a Handle, display_name: &'a str) -> StoreFuture<'a, ()> {
        self.run(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let inserted = self
                .execute(
                    &tx,
                    &INSERT_USER,
                    &[
                        &Uuid::new_v4(),
                        &handle.as_str(),
                        &display_name,
                        &Utc::now(),
                    ],
                )
                .await?;
            if inserted > 0 {
                self.commit(tx).await
            } else {
                Ok(tx.commit().await?)
            }
        })
    }

    fn home_activities(&self, now: DateTime<Utc>) -> StoreFuture<'_, Vec<Activity>> {
        self.run(async move {
            let client = self.client().await?;
            let rows = self
                .rows(&client, &HOME_ACTIVITIES, &[&now, &LIMIT])
                .await?;
            self.page(&client, rows).await
        })
    }

    fn notification_candidates<'a>(
        &'a self,
        handle: &'a Handle,
        now: DateTime<Utc>,
    ) -> StoreFuture<'a, Vec<Activity>> {
        self.run(async move {
            let client = self.client().await?;
            let mention = folded_pattern(&format!("@{handle}"));
            let rows = self
                .rows(
                    &client,
                    &NOTIFICATION_CANDIDATES,
                    &[&now, &handle.as_str(), &mention, &LIMIT],
                )
                .await?;
            self.page(&client, rows).await
        })
    }

    fn user_activities<'a>(
        &'a self,
        handle: &'a Handle,
        now: DateTime<Utc>,
    ) -> StoreFuture<'a, Option<Vec<Activity>>> {
        self.run(async move {
            let client = self.client().await?;
            if self.display_name(&client, handle.as_str()).await?.is_none() {
                return Ok(None);
            }
            let rows = self
                .rows(&client, &USER_ACTIVITIES, &[&handle.as_str(), &now, &LIMIT])
                .await?;
            self.page(&client, rows).await.map(Some)
        })
    }

    fn search_activities<'a>(
        &'a self,
        term: &'a str,
        now: DateTime<Utc>,
    ) -> StoreFuture<'a, Vec<Activity>> {
        self.run(async move {
            let client = self.client().await?;
            let pattern = folded_pattern(term);
            let rows = self
                .rows(&client, &SEARCH_ACTIVITIES, &[&now, &pattern, &LIMIT])
                .await?;
            self.page(&client, rows).await
        })
    }

    fn show_activity(&self, uuid: Uuid, now: DateTime<Utc>) -> StoreFuture<'_, Option<Activity>> {
        self.run(async move {
            let client = self.client().await?;
            let Some(row) = self.row(&client, &SHOW_ACTIVITY, &[&uuid, &now]).await? else {
                return Ok(None);
            };
            Ok(self.page(&client, vec![row]).await?.pop())
        })
    }

    fn create_activity(&self, new: NewActivity) -> StoreFuture<'_, Activity> {
        self.run(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let display_name = self
                .display_name(&tx, new.handle.as_str())
                .await?
                .unwrap_or_else(|| new.handle.to_string());
            let uuid = Uuid::new_v4();
            self.execute(
                &tx,
                &INSERT_ACTIVITY,
                &[
                    &uuid,
                    &new.handle.as_str(),
                    &new.message,
                    &new.created_at,
                    &new.expires_at,
                ],
            )
            .await?;
            self.commit(tx).await?;
            Ok(new.stored(uuid, display_name))
        })
    }

    fn create_reply(&self, new: NewReply) -> StoreFuture<'_, Option<Reply>> {
        self.run(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let thread = self
                .row(&tx, &THREAD, &[&new.activity_uuid, &new.created_at])
                .await?;
            let Some(thread) = thread else {
                return Ok(None);
            };
            let activity_uuid: Uuid = thread.try_get(0)?;
            let display_name = self
                .display_name(&tx, new.handle.as_str())
                .await?
                .unwrap_or_else(|| new.handle.to_string());
            let uuid = Uuid::new_v4();
            self.execute(
                &tx,
                &INSERT_REPLY,
                &[
                    &uuid,
                    &activity_uuid,
                    &new.handle.as_str(),
                    &new.message,
                    &new.created_at,
                ],
            )
            .await?;
            self.execute(&tx, &COUNT_REPLY, &[&activity_uuid]).await?;
            self.commit(tx).await?;
            Ok(Some(new.stored(uuid, activity_uuid, display_name)))
        })
    }

    fn message_groups<'a>(&'a self, handle: &'a Handle) -> StoreFuture<'a, Vec<MessageGroup>> {
        self.run(async move {
            let client = self.client().await?;
            let rows = self
                .rows(&client, &MESSAGE_GROUPS, &[&handle.as_str()])
                .await?;
            all(rows, message_group_from)
        })
    }

    fn messages<'a>(
        &'a self,
        handle: &'a Handle,
        other: &'a Handle,
    ) -> StoreFuture<'a, Option<Vec<Message>>> {
        self.run(async move {
            let client = self.client().await?;
            if self.display_name(&client, other.as_str()).await?.is_none() {
                return Ok(None);
            }
            let (a, b) = conversation_pair(handle.as_str(), other.as_str());
            let rows = self.rows(&client, &CONVERSATION, &[&a, &b, &LIMIT]).await?;
            all(rows, message_from).map(Some)
        })
    }

    fn create_message(&self, new: NewMessage) -> StoreFuture<'_, Option<Message>> {
        self.run(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            if self
                .display_name(&tx, new.receiver.as_str())
                .await?
                .is_none()
            {
                return Ok(None);
            }
            let group = conversation(self, &tx, new.sender.as_str(), new.receiver.as_str()).await?;
            let display_name = self
                .display_name(&tx, new.sender.as_str())
                .await?
                .unwrap_or_else(|| new.sender.to_string());
            let uuid = Uuid::new_v4();
            self.execute(
                &tx,
                &INSERT_MESSAGE,
                &[
                    &uuid,
                    &group,
                    &new.sender.as_str(),
                    &new.message,
                    &new.created_at,
                ],
            )
            .await?;
            self.commit(tx).await?;
            Ok(Some(new.stored(uuid, display_name)))
        })
    }

    /// The data lives on the server, which keeps it: nothing to do.
    fn checkpoint(&self) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

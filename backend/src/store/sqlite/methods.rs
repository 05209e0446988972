//! The [`Store`] methods: each runs a few statements from `queries` on the
//! reader inline or as one write on the writer thread.

use std::sync::PoisonError;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use uuid::Uuid;

use super::queries::*;
use super::rows::{activity_from, message_from, message_group_from, micros, reply_from, uuid_at};
use super::{SqliteStore, store_error};
use crate::domain::{Activity, Handle, Message, MessageGroup, Reply};
use crate::store::{
    NewActivity, NewMessage, NewReply, Store, StoreFuture, StoreVersion, conversation_pair,
    like_pattern,
};

/// Fills in each activity's replies with one query for the whole page,
/// oldest first.
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
    let mut replies: Vec<(i64, Reply)> =
        REPLIES_FOR.rows(conn, [list], |row| Ok((row.get(9)?, reply_from(row)?)))?;
    // Oldest first, the insertion order breaking ties of the same microsecond.
    replies.sort_unstable_by_key(|(rowid, reply)| (reply.created_at, *rowid));
    for (_, reply) in replies {
        if let Some(activity) = activities
            .iter_mut()
            .find(|a| a.uuid == reply.reply_to_activity_uuid)
        {
            activity.replies.push(reply);
        }
    }
    Ok(activities)
}

/// `local` with what SQLite says of the commits of every other connection.
fn data_version(conn: &Connection, local: u64) -> rusqlite::Result<StoreVersion> {
    let shared: i64 = conn
        .prepare_cached(DATA_VERSION)?
        .query_row([], |row| row.get(0))?;
    Ok(StoreVersion::new(local, shared as u64))
}

fn display_name(conn: &Connection, handle: &Handle) -> rusqlite::Result<Option<String>> {
    USER_DISPLAY_NAME.row(conn, [handle.as_str()], |row| row.get(0))
}

impl Store for SqliteStore {
    fn version(&self) -> StoreFuture<'_, StoreVersion> {
        // The local count first: a write counted after this began moves
        // one half or the other.
        let local = self.writes.load(std::sync::atomic::Ordering::Acquire);
        let Some(wal_index) = &self.wal_index else {
            return self.read(move |conn| data_version(conn, local));
        };
        // The header before the database: a commit between the two is in
        // the version read, and moves the header the next look compares.
        let mut wal_index = wal_index.lock().unwrap_or_else(PoisonError::into_inner);
        let header = wal_index.header();
        let version = match wal_index.unchanged(header.as_ref(), local) {
            Some(version) => Ok(version),
            None => {
                let conn = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
                data_version(&conn, local).inspect(|&version| wal_index.remember(header, version))
            }
        };
        Box::pin(std::future::ready(version.map_err(store_error)))
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
    }

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

    fn notification_candidates<'a>(
        &'a self,
        handle: &'a Handle,
        now: DateTime<Utc>,
    ) -> StoreFuture<'a, Vec<Activity>> {
        self.read(move |conn| {
            let mention = like_pattern(&format!("@{handle}"));
            let page = NOTIFICATION_CANDIDATES.rows(
                conn,
                params![micros(now), handle.as_str(), mention, feed_limit()],
                activity_from,
            )?;
            with_replies(conn, page)
        })
    }

    fn user_activities<'a>(
        &'a self,
        handle: &'a Handle,
        now: DateTime<Utc>,
    ) -> StoreFuture<'a, Option<Vec<Activity>>> {
        self.read(move |conn| {
            if display_name(conn, handle)?.is_none() {
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
        self.write(move |tx| {
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
            Ok(new.stored(uuid, display_name))
        })
    }

    fn create_reply(&self, new: NewReply) -> StoreFuture<'_, Option<Reply>> {
        self.write(move |tx| {
            let thread = THREAD.row(
                tx,
                params![new.activity_uuid.to_string(), micros(new.created_at)],
                |row| uuid_at(row, 0),
            )?;
            let Some(activity_uuid) = thread else {
                return Ok(None);
            };
            let activity = activity_uuid.to_string();
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
            Ok(Some(new.stored(uuid, activity_uuid, display_name)))
        })
    }

    fn message_groups<'a>(&'a self, handle: &'a Handle) -> StoreFuture<'a, Vec<MessageGroup>> {
        self.read(move |conn| MESSAGE_GROUPS.rows(conn, [handle.as_str()], message_group_from))
    }

    fn messages<'a>(
        &'a self,
        handle: &'a Handle,
        other: &'a Handle,
    ) -> StoreFuture<'a, Option<Vec<Message>>> {
        self.read(move |conn| {
            if display_name(conn, other)?.is_none() {
                return Ok(None);
            }
            let (a, b) = conversation_pair(handle.as_str(), other.as_str());
            CONVERSATION
                .rows(conn, params![a, b, feed_limit()], message_from)
                .map(Some)
        })
    }

    fn create_message(&self, new: NewMessage) -> StoreFuture<'_, Option<Message>> {
        self.write(move |tx| {
            if display_name(tx, &new.receiver)?.is_none() {
                return Ok(None);
            }
            let group = conversation(tx, new.sender.as_str(), new.receiver.as_str())?;
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
            Ok(Some(new.stored(uuid, display_name)))
        })
    }

    /// Copies the write-ahead log into the database file and cuts the log
    /// to nothing. SQLite does that by itself only when the last connection
    /// to the file closes, which is not this process's while a sqlite3
    /// shell or a backup tool has the file open.
    fn checkpoint(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.writes_to.alone(|conn| {
            // The first column says whether a reader kept it from finishing.
            let blocked: i64 =
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
            if blocked != 0 {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                    Some("a reader kept the write-ahead log from being checkpointed".into()),
                ));
            }
            Ok(())
        }))
    }
}

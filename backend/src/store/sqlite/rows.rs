//! Decoding rows into domain values. SQLite keeps times as microseconds
//! since the epoch (so ORDER BY is exact) and uuids as text.

use chrono::{DateTime, Utc};
use rusqlite::Row;
use rusqlite::types::Type;
use uuid::Uuid;

use crate::domain::{Activity, Message, MessageGroup, Reply};

pub(super) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub(super) fn time_at(row: &Row<'_>, index: usize) -> rusqlite::Result<DateTime<Utc>> {
    let micros: i64 = row.get(index)?;
    DateTime::from_timestamp_micros(micros).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            Type::Integer,
            format!("timestamp out of range: {micros}").into(),
        )
    })
}

pub(super) fn uuid_at(row: &Row<'_>, index: usize) -> rusqlite::Result<Uuid> {
    let text: String = row.get(index)?;
    Uuid::parse_str(&text)
        .map_err(|err| rusqlite::Error::FromSqlConversionFailure(index, Type::Text, err.into()))
}

pub(super) fn activity_from(row: &Row<'_>) -> rusqlite::Result<Activity> {
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

pub(super) fn reply_from(row: &Row<'_>) -> rusqlite::Result<Reply> {
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

pub(super) fn message_from(row: &Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        uuid: uuid_at(row, 0)?,
        display_name: row.get(1)?,
        handle: row.get(2)?,
        message: row.get(3)?,
        created_at: time_at(row, 4)?,
    })
}

pub(super) fn message_group_from(row: &Row<'_>) -> rusqlite::Result<MessageGroup> {
    Ok(MessageGroup {
        uuid: uuid_at(row, 0)?,
        handle: row.get(1)?,
        display_name: row.get(2)?,
        message: row.get(3)?,
        created_at: time_at(row, 4)?,
    })
}

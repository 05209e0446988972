//! Inserts the neutral seed data into an empty SQLite database, with the
//! same statements the store's methods use, in one transaction.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::queries::{
    COUNT_REPLY, INSERT_ACTIVITY, INSERT_MESSAGE, INSERT_REPLY, INSERT_USER, Run, conversation,
};
use super::rows::micros;
use crate::store::seed;

/// Inserts the seed data, dated relative to `now`, when the database has no
/// user yet.
pub(super) fn seed_if_empty(conn: &mut Connection, now: DateTime<Utc>) -> rusqlite::Result<()> {
    let users: i64 = conn.query_row("SELECT count(*) FROM users", [], |row| row.get(0))?;
    if users > 0 {
        return Ok(());
    }
    let seed = seed::data(now);
    let tx = conn.transaction()?;
    for user in &seed.users {
        INSERT_USER.execute(
            &tx,
            params![
                user.uuid.to_string(),
                user.handle,
                user.display_name,
                micros(user.created_at)
            ],
        )?;
    }
    for activity in &seed.activities {
        INSERT_ACTIVITY.execute(
            &tx,
            params![
                activity.uuid.to_string(),
                activity.handle,
                activity.message,
                micros(activity.created_at),
                micros(activity.expires_at)
            ],
        )?;
    }
    for reply in &seed.replies {
        let activity = reply.activity_uuid.to_string();
        INSERT_REPLY.execute(
            &tx,
            params![
                reply.uuid.to_string(),
                activity,
                reply.handle,
                reply.message,
                micros(reply.created_at)
            ],
        )?;
        COUNT_REPLY.execute(&tx, [activity])?;
    }
    for message in &seed.messages {
        let group = conversation(&tx, message.sender, message.receiver)?;
        INSERT_MESSAGE.execute(
            &tx,
            params![
                message.uuid.to_string(),
                group,
                message.sender,
                message.message,
                micros(message.created_at)
            ],
        )?;
    }
    tx.commit()
}

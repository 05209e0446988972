//! Every statement the SQLite store runs, as [`Statement`] constants, and
//! how one runs inside its CLIENT span. Kept apart from the store's methods
//! so the SQL of each query can be read in one place.

use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use super::SYSTEM;
use crate::store::statement::Statement;
use crate::store::{FEED_LIMIT, conversation_pair};

/// Runs a [`Statement`] on a connection inside its span.
pub(super) trait Run {
    /// Runs a statement that returns rows, mapping each with `map`.
    fn rows<T>(
        &self,
        conn: &Connection,
        params: impl rusqlite::Params,
        map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Vec<T>>;

    /// Runs a statement that returns at most one row.
    fn row<T>(
        &self,
        conn: &Connection,
        params: impl rusqlite::Params,
        map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Option<T>>;

    /// Runs a statement that changes rows, answering how many it changed.
    fn execute(&self, conn: &Connection, params: impl rusqlite::Params) -> rusqlite::Result<usize>;
}

impl Run for Statement {
    fn rows<T>(
        &self,
        conn: &Connection,
        params: impl rusqlite::Params,
        map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Vec<T>> {
        self.timed(SYSTEM, || {
            let mut statement = conn.prepare_cached(self.sql)?;
            statement.query_map(params, map)?.collect()
        })
    }

    fn row<T>(
        &self,
        conn: &Connection,
        params: impl rusqlite::Params,
        map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Option<T>> {
        self.timed(SYSTEM, || {
            let mut statement = conn.prepare_cached(self.sql)?;
            statement.query_row(params, map).optional()
        })
    }

    fn execute(&self, conn: &Connection, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.timed(SYSTEM, || {
            let mut statement = conn.prepare_cached(self.sql)?;
            statement.execute(params)
        })
    }
}

macro_rules! activity_query {
    ($name:literal, $where:literal) => {
        Statement {
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

pub(super) const HOME_ACTIVITIES: Statement = activity_query!(
    "SELECT activities home",
    "a.expires_at > ?1 ORDER BY a.created_at DESC, a.rowid DESC LIMIT ?2"
);
pub(super) const NOTIFICATION_CANDIDATES: Statement = activity_query!(
    "SELECT activities notifications",
    "a.expires_at > ?1 AND ((a.user_handle <> ?2 AND a.message LIKE ?3 ESCAPE '\\') \
     OR (a.user_handle = ?2 AND EXISTS (SELECT 1 FROM replies r \
     WHERE r.reply_to_activity_uuid = a.uuid AND r.user_handle <> ?2))) \
     ORDER BY a.created_at DESC, a.rowid DESC LIMIT ?4"
);
pub(super) const USER_ACTIVITIES: Statement = activity_query!(
    "SELECT activities by user",
    "a.user_handle = ?1 AND a.expires_at > ?2 ORDER BY a.created_at DESC, a.rowid DESC LIMIT ?3"
);
pub(super) const SEARCH_ACTIVITIES: Statement = activity_query!(
    "SELECT activities search",
    "a.expires_at > ?1 AND a.message LIKE ?2 ESCAPE '\\' \
     ORDER BY a.created_at DESC, a.rowid DESC LIMIT ?3"
);
pub(super) const SHOW_ACTIVITY: Statement = activity_query!(
    "SELECT activities by uuid",
    "a.uuid = ?1 AND a.expires_at > ?2"
);
pub(super) const REPLIES_FOR: Statement = Statement {
    name: "SELECT replies",
    operation: "SELECT",
    collection: "replies",
    // Read per crud through replies_by_activity, with no ORDER BY: an IN
    // list and an ORDER BY each cost a temporary b-tree per request
    // (bench/README.md, "Data path"); `with_replies` orders the replies.
    sql: "SELECT r.uuid, r.reply_to_activity_uuid, u.display_name, r.user_handle, r.message, \
          r.likes_count, r.replies_count, r.reposts_count, r.created_at, r.rowid \
          FROM json_each(?1) j CROSS JOIN replies r ON r.reply_to_activity_uuid = j.value \
          JOIN users u ON u.handle = r.user_handle",
};
pub(super) const USER_DISPLAY_NAME: Statement = Statement {
    name: "SELECT users",
    operation: "SELECT",
    collection: "users",
    sql: "SELECT display_name FROM users WHERE handle = ?1",
};
pub(super) const INSERT_USER: Statement = Statement {
    name: "INSERT users",
    operation: "INSERT",
    collection: "users",
    sql: "INSERT OR IGNORE INTO users (uuid, handle, display_name, created_at) VALUES (?1, ?2, ?3, ?4)",
};
pub(super) const INSERT_ACTIVITY: Statement = Statement {
    name: "INSERT activities",
    operation: "INSERT",
    collection: "activities",
    sql: "INSERT INTO activities (uuid, user_handle, message, created_at, expires_at) \
          VALUES (?1, ?2, ?3, ?4, ?5)",
};
/// The live crud whose thread `?1` (a crud's or a reply's uuid) is in.
pub(super) const THREAD: Statement = Statement {
    name: "SELECT activities thread",
    operation: "SELECT",
    collection: "activities",
    sql: "SELECT uuid FROM activities \
          WHERE uuid = COALESCE((SELECT reply_to_activity_uuid FROM replies WHERE uuid = ?1), ?1) \
          AND expires_at > ?2",
};
pub(super) const INSERT_REPLY: Statement = Statement {
    name: "INSERT replies",
    operation: "INSERT",
    collection: "replies",
    sql: "INSERT INTO replies (uuid, reply_to_activity_uuid, user_handle, message, created_at) \
          VALUES (?1, ?2, ?3, ?4, ?5)",
};
pub(super) const COUNT_REPLY: Statement = Statement {
    name: "UPDATE activities",
    operation: "UPDATE",
    collection: "activities",
    sql: "UPDATE activities SET replies_count = replies_count + 1 WHERE uuid = ?1",
};
pub(super) const MESSAGE_GROUPS: Statement = Statement {
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
pub(super) const CONVERSATION: Statement = Statement {
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
pub(super) const INSERT_MESSAGE_GROUP: Statement = Statement {
    name: "INSERT message_groups",
    operation: "INSERT",
    collection: "message_groups",
    sql: "INSERT OR IGNORE INTO message_groups (uuid, user_a, user_b) VALUES (?1, ?2, ?3)",
};
pub(super) const MESSAGE_GROUP_UUID: Statement = Statement {
    name: "SELECT message_groups by users",
    operation: "SELECT",
    collection: "message_groups",
    sql: "SELECT uuid FROM message_groups WHERE user_a = ?1 AND user_b = ?2",
};
pub(super) const INSERT_MESSAGE: Statement = Statement {
    name: "INSERT messages",
    operation: "INSERT",
    collection: "messages",
    sql: "INSERT INTO messages (uuid, message_group_uuid, sender_handle, message, created_at) \
          VALUES (?1, ?2, ?3, ?4, ?5)",
};

/// Moves whenever another connection commits (see `SqliteStore::writes`).
/// Run without a span: it is the feed cache's check before every read, not
/// a query of the data.
pub(super) const DATA_VERSION: &str = "PRAGMA data_version";

/// The uuid of the conversation between two users, created if it is the
/// first message between them.
pub(super) fn conversation(conn: &Connection, one: &str, other: &str) -> rusqlite::Result<String> {
    let (a, b) = conversation_pair(one, other);
    INSERT_MESSAGE_GROUP.execute(conn, params![Uuid::new_v4().to_string(), a, b])?;
    MESSAGE_GROUP_UUID
        .row(conn, params![a, b], |row| row.get(0))?
        .ok_or(rusqlite::Error::QueryReturnedNoRows)
}

/// The feed limit as SQLite binds it.
pub(super) fn feed_limit() -> i64 {
    FEED_LIMIT as i64
}

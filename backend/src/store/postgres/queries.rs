//! Every statement the Postgres store runs, as [`Statement`] constants: the
//! SQLite store's queries in Postgres's dialect. `seq` stands in for
//! SQLite's rowid as the tie-break of rows of the same microsecond, and
//! text matching folds ASCII case only (`translate`), as SQLite's LIKE
//! does, so both stores answer the same feeds.

use crate::store::statement::Statement;

macro_rules! activity_query {
    ($name:literal, $($where:tt)+) => {
        Statement {
            name: $name,
            operation: "SELECT",
            collection: "activities",
            sql: concat!(
                "SELECT a.uuid, u.display_name, a.user_handle, a.message, a.created_at, ",
                "a.expires_at, a.likes_count, a.replies_count, a.reposts_count ",
                "FROM activities a JOIN users u ON u.handle = a.user_handle WHERE ",
                $($where)+
            ),
        }
    };
}

/// `text` with ASCII capitals made small, and nothing else changed.
macro_rules! ascii_lower {
    ($text:literal) => {
        concat!(
            "translate(",
            $text,
            ", 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')"
        )
    };
}

pub(super) const HOME_ACTIVITIES: Statement = activity_query!(
    "SELECT activities home",
    "a.expires_at > $1 ORDER BY a.created_at DESC, a.seq DESC LIMIT $2"
);
pub(super) const NOTIFICATION_CANDIDATES: Statement = activity_query!(
    "SELECT activities notifications",
    concat!(
        "a.expires_at > $1 AND ((a.user_handle <> $2 AND ",
        ascii_lower!("a.message"),
        " LIKE $3 ESCAPE '\\') \
         OR (a.user_handle = $2 AND EXISTS (SELECT 1 FROM replies r \
         WHERE r.reply_to_activity_uuid = a.uuid AND r.user_handle <> $2))) \
         ORDER BY a.created_at DESC, a.seq DESC LIMIT $4"
    )
);
pub(super) const USER_ACTIVITIES: Statement = activity_query!(
    "SELECT activities by user",
    "a.user_handle = $1 AND a.expires_at > $2 ORDER BY a.created_at DESC, a.seq DESC LIMIT $3"
);
pub(super) const SEARCH_ACTIVITIES: Statement = activity_query!(
    "SELECT activities search",
    concat!(
        "a.expires_at > $1 AND ",
        ascii_lower!("a.message"),
        " LIKE $2 ESCAPE '\\' ORDER BY a.created_at DESC, a.seq DESC LIMIT $3"
    )
);
pub(super) const SHOW_ACTIVITY: Statement = activity_query!(
    "SELECT activities by uuid",
    "a.uuid = $1 AND a.expires_at > $2"
);
pub(super) const REPLIES_FOR: Statement = Statement {
    name: "SELECT replies",
    operation: "SELECT",
    collection: "replies",
    sql: "SELECT r.uuid, r.reply_to_activity_uuid, u.display_name, r.user_handle, r.message, \
          r.likes_count, r.replies_count, r.reposts_count, r.created_at \
          FROM replies r JOIN users u ON u.handle = r.user_handle \
          WHERE r.reply_to_activity_uuid = ANY($1) ORDER BY r.created_at, r.seq",
};
pub(super) const USER_DISPLAY_NAME: Statement = Statement {
    name: "SELECT users",
    operation: "SELECT",
    collection: "users",
    sql: "SELECT display_name FROM users WHERE handle = $1",
};
pub(super) const INSERT_USER: Statement = Statement {
    name: "INSERT users",
    operation: "INSERT",
    collection: "users",
    sql: "INSERT INTO users (uuid, handle, display_name, created_at) VALUES ($1, $2, $3, $4) \
          ON CONFLICT (handle) DO NOTHING",
};
pub(super) const INSERT_ACTIVITY: Statement = Statement {
    name: "INSERT activities",
    operation: "INSERT",
    collection: "activities",
    sql: "INSERT INTO activities (uuid, user_handle, message, created_at, expires_at) \
          VALUES ($1, $2, $3, $4, $5)",
};
/// The live crud whose thread `$1` (a crud's or a reply's uuid) is in.
pub(super) const THREAD: Statement = Statement {
    name: "SELECT activities thread",
    operation: "SELECT",
    collection: "activities",
    sql: "SELECT uuid FROM activities \
          WHERE uuid = COALESCE((SELECT reply_to_activity_uuid FROM replies WHERE uuid = $1), $1) \
          AND expires_at > $2",
};
pub(super) const INSERT_REPLY: Statement = Statement {
    name: "INSERT replies",
    operation: "INSERT",
    collection: "replies",
    sql: "INSERT INTO replies (uuid, reply_to_activity_uuid, user_handle, message, created_at) \
          VALUES ($1, $2, $3, $4, $5)",
};
pub(super) const COUNT_REPLY: Statement = Statement {
    name: "UPDATE activities",
    operation: "UPDATE",
    collection: "activities",
    sql: "UPDATE activities SET replies_count = replies_count + 1 WHERE uuid = $1",
};
pub(super) const MESSAGE_GROUPS: Statement = Statement {
    name: "SELECT message_groups",
    operation: "SELECT",
    collection: "message_groups",
    sql: "SELECT g.uuid, u.handle, u.display_name, m.message, m.created_at \
          FROM message_groups g \
          JOIN users u ON u.handle = CASE WHEN g.user_a = $1 THEN g.user_b ELSE g.user_a END \
          JOIN messages m ON m.uuid = (SELECT uuid FROM messages \
               WHERE message_group_uuid = g.uuid ORDER BY created_at DESC, seq DESC LIMIT 1) \
          WHERE g.user_a = $1 OR g.user_b = $1 \
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
          WHERE g.user_a = $1 AND g.user_b = $2 \
          ORDER BY m.created_at, m.seq LIMIT $3",
};
pub(super) const INSERT_MESSAGE_GROUP: Statement = Statement {
    name: "INSERT message_groups",
    operation: "INSERT",
    collection: "message_groups",
    sql: "INSERT INTO message_groups (uuid, user_a, user_b) VALUES ($1, $2, $3) \
          ON CONFLICT (user_a, user_b) DO NOTHING",
};
pub(super) const MESSAGE_GROUP_UUID: Statement = Statement {
    name: "SELECT message_groups by users",
    operation: "SELECT",
    collection: "message_groups",
    sql: "SELECT uuid FROM message_groups WHERE user_a = $1 AND user_b = $2",
};
pub(super) const INSERT_MESSAGE: Statement = Statement {
    name: "INSERT messages",
    operation: "INSERT",
    collection: "messages",
    sql: "INSERT INTO messages (uuid, message_group_uuid, sender_handle, message, created_at) \
          VALUES ($1, $2, $3, $4, $5)",
};
/// Counts a committed write for every replica's feed cache (see the
/// `store_version` table).
pub(super) const COUNT_WRITE: Statement = Statement {
    name: "UPDATE store_version",
    operation: "UPDATE",
    collection: "store_version",
    sql: "UPDATE store_version SET writes = writes + 1 WHERE shard = $1",
};

/// Where the data stands: run without a span before every cached read.
pub(super) const VERSION: &str = "SELECT sum(writes)::bigint FROM store_version";

/// The readiness probe's trivial query.
pub(super) const PING: &str = "SELECT 1";

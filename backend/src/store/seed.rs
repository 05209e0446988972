//! Seed data for a new database: a few users, cruds, replies and
//! conversations, dated relative to the first start so the feeds are live.

use chrono::{DateTime, Duration, Utc};
use rusqlite::{Connection, params};
use uuid::Uuid;

use super::sqlite::{
    COUNT_REPLY, INSERT_ACTIVITY, INSERT_MESSAGE, INSERT_MESSAGE_GROUP, INSERT_REPLY, INSERT_USER,
    MESSAGE_GROUP_UUID, micros,
};

pub(super) const USERS: &[(&str, &str)] = &[
    ("andrewbrown", "Andrew Brown"),
    ("worf", "Worf"),
    ("garek", "Garek"),
    ("bayko", "Andrew Bayko"),
    ("londo", "Londo Mollari"),
];

/// (author, message, hours ago, hours to live)
const ACTIVITIES: &[(&str, &str, i64, i64)] = &[
    ("andrewbrown", "Cloud is very fun!", 2, 30 * 24),
    ("worf", "I am out of prune juice", 5, 7 * 24),
    (
        "garek",
        "My dear doctor, I am just a simple tailor. Ask @andrewbrown.",
        8,
        3 * 24,
    ),
    (
        "londo",
        "Have you thought about a career in the diplomatic service?",
        12,
        24,
    ),
    (
        "bayko",
        "Cruddur runs on Rust now, and every request is one trace.",
        20,
        30 * 24,
    ),
];

/// (author, message, index of the activity replied to, hours ago)
const REPLIES: &[(&str, &str, usize, i64)] = &[
    ("worf", "This post has no honor!", 0, 1),
    ("garek", "Fun is a matter of perspective.", 0, 1),
    ("andrewbrown", "Try the replicator on deck 10.", 1, 4),
];

/// (sender, receiver, message, hours ago)
const MESSAGES: &[(&str, &str, &str, i64)] = &[
    (
        "worf",
        "andrewbrown",
        "Do you know where the prune juice went?",
        6,
    ),
    ("andrewbrown", "worf", "Ask Garek, he knows everything.", 5),
    ("bayko", "andrewbrown", "Is the backend traced yet?", 3),
    (
        "andrewbrown",
        "bayko",
        "End to end, from the browser to the database.",
        2,
    ),
];

pub(super) fn seed_if_empty(conn: &mut Connection, now: DateTime<Utc>) -> rusqlite::Result<()> {
    let users: i64 = conn.query_row("SELECT count(*) FROM users", [], |row| row.get(0))?;
    if users > 0 {
        return Ok(());
    }
    let tx = conn.transaction()?;
    let ago = |hours: i64| micros(now - Duration::hours(hours));
    for (handle, display_name) in USERS {
        INSERT_USER.execute(
            &tx,
            params![
                Uuid::new_v4().to_string(),
                handle,
                display_name,
                ago(24 * 30)
            ],
        )?;
    }
    let mut activity_uuids = Vec::with_capacity(ACTIVITIES.len());
    for (handle, message, hours_ago, ttl_hours) in ACTIVITIES {
        let uuid = Uuid::new_v4().to_string();
        INSERT_ACTIVITY.execute(
            &tx,
            params![
                uuid,
                handle,
                message,
                ago(*hours_ago),
                ago(hours_ago - ttl_hours)
            ],
        )?;
        activity_uuids.push(uuid);
    }
    for (handle, message, activity, hours_ago) in REPLIES {
        let activity = &activity_uuids[*activity];
        INSERT_REPLY.execute(
            &tx,
            params![
                Uuid::new_v4().to_string(),
                activity,
                handle,
                message,
                ago(*hours_ago)
            ],
        )?;
        COUNT_REPLY.execute(&tx, [activity])?;
    }
    for (sender, receiver, message, hours_ago) in MESSAGES {
        let (a, b) = if sender <= receiver {
            (sender, receiver)
        } else {
            (receiver, sender)
        };
        INSERT_MESSAGE_GROUP.execute(&tx, params![Uuid::new_v4().to_string(), a, b])?;
        let group: String = MESSAGE_GROUP_UUID
            .row(&tx, params![a, b], |row| row.get(0))?
            .ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        INSERT_MESSAGE.execute(
            &tx,
            params![
                Uuid::new_v4().to_string(),
                group,
                sender,
                message,
                ago(*hours_ago)
            ],
        )?;
    }
    tx.commit()
}

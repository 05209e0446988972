//! Seed data for a new database: a few users, cruds, replies and
//! conversations, dated relative to the first start so the feeds are live.
//! Plain values, so that every backend inserts the same data its own way.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

const USERS: &[(&str, &str)] = &[
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

pub struct SeedUser {
    pub uuid: Uuid,
    pub handle: &'static str,
    pub display_name: &'static str,
    pub created_at: DateTime<Utc>,
}

pub struct SeedActivity {
    pub uuid: Uuid,
    pub handle: &'static str,
    pub message: &'static str,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A reply to one of the seed's activities; a backend counts it on its
/// activity as `create_reply` does.
pub struct SeedReply {
    pub uuid: Uuid,
    pub activity_uuid: Uuid,
    pub handle: &'static str,
    pub message: &'static str,
    pub created_at: DateTime<Utc>,
}

/// A direct message; a backend files it in the pair's conversation as
/// `create_message` does.
pub struct SeedMessage {
    pub uuid: Uuid,
    pub sender: &'static str,
    pub receiver: &'static str,
    pub message: &'static str,
    pub created_at: DateTime<Utc>,
}

/// Everything a new database starts with, in the order it is inserted.
pub struct SeedData {
    pub users: Vec<SeedUser>,
    pub activities: Vec<SeedActivity>,
    pub replies: Vec<SeedReply>,
    pub messages: Vec<SeedMessage>,
}

/// The seed data with fresh uuids, dated relative to `now`.
pub fn data(now: DateTime<Utc>) -> SeedData {
    let ago = |hours: i64| now - Duration::hours(hours);
    let users = USERS
        .iter()
        .map(|&(handle, display_name)| SeedUser {
            uuid: Uuid::new_v4(),
            handle,
            display_name,
            created_at: ago(24 * 30),
        })
        .collect();
    let activities: Vec<SeedActivity> = ACTIVITIES
        .iter()
        .map(|&(handle, message, hours_ago, ttl_hours)| SeedActivity {
            uuid: Uuid::new_v4(),
            handle,
            message,
            created_at: ago(hours_ago),
            expires_at: ago(hours_ago - ttl_hours),
        })
        .collect();
    let replies = REPLIES
        .iter()
        .map(|&(handle, message, activity, hours_ago)| SeedReply {
            uuid: Uuid::new_v4(),
            activity_uuid: activities[activity].uuid,
            handle,
            message,
            created_at: ago(hours_ago),
        })
        .collect();
    let messages = MESSAGES
        .iter()
        .map(|&(sender, receiver, message, hours_ago)| SeedMessage {
            uuid: Uuid::new_v4(),
            sender,
            receiver,
            message,
            created_at: ago(hours_ago),
        })
        .collect();
    SeedData {
        users,
        activities,
        replies,
        messages,
    }
}

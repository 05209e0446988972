-- Users, cruds (top-level activities), replies and direct messages.
-- Timestamps are microseconds since the Unix epoch (UTC), so ORDER BY is exact.
CREATE TABLE users (
    uuid          TEXT PRIMARY KEY,
    handle        TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE activities (
    uuid           TEXT PRIMARY KEY,
    user_handle    TEXT NOT NULL REFERENCES users (handle),
    message        TEXT NOT NULL,
    likes_count    INTEGER NOT NULL DEFAULT 0,
    replies_count  INTEGER NOT NULL DEFAULT 0,
    reposts_count  INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
);
CREATE INDEX activities_by_time ON activities (created_at DESC);
CREATE INDEX activities_by_user ON activities (user_handle, created_at DESC);

CREATE TABLE replies (
    uuid                    TEXT PRIMARY KEY,
    reply_to_activity_uuid  TEXT NOT NULL REFERENCES activities (uuid),
    user_handle             TEXT NOT NULL REFERENCES users (handle),
    message                 TEXT NOT NULL,
    likes_count             INTEGER NOT NULL DEFAULT 0,
    replies_count           INTEGER NOT NULL DEFAULT 0,
    reposts_count           INTEGER NOT NULL DEFAULT 0,
    created_at              INTEGER NOT NULL
);
CREATE INDEX replies_by_activity ON replies (reply_to_activity_uuid, created_at);

-- One group per pair of users; user_a sorts before user_b.
CREATE TABLE message_groups (
    uuid    TEXT PRIMARY KEY,
    user_a  TEXT NOT NULL REFERENCES users (handle),
    user_b  TEXT NOT NULL REFERENCES users (handle),
    UNIQUE (user_a, user_b)
);

CREATE TABLE messages (
    uuid                TEXT PRIMARY KEY,
    message_group_uuid  TEXT NOT NULL REFERENCES message_groups (uuid),
    sender_handle       TEXT NOT NULL REFERENCES users (handle),
    message             TEXT NOT NULL,
    created_at          INTEGER NOT NULL
);
CREATE INDEX messages_by_group ON messages (message_group_uuid, created_at);

-- Users, cruds (top-level activities), replies and direct messages: the
-- SQLite schema in Postgres's types. `seq` keeps insertion order, which
-- breaks ties between rows of the same microsecond (SQLite's rowid).
CREATE TABLE users (
    uuid          UUID PRIMARY KEY,
    handle        TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE activities (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY,
    uuid           UUID PRIMARY KEY,
    user_handle    TEXT NOT NULL REFERENCES users (handle),
    message        TEXT NOT NULL,
    likes_count    BIGINT NOT NULL DEFAULT 0,
    replies_count  BIGINT NOT NULL DEFAULT 0,
    reposts_count  BIGINT NOT NULL DEFAULT 0,
    created_at     TIMESTAMPTZ NOT NULL,
    expires_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX activities_by_time ON activities (created_at, seq);
CREATE INDEX activities_by_user ON activities (user_handle, created_at, seq);

CREATE TABLE replies (
    seq                     BIGINT GENERATED ALWAYS AS IDENTITY,
    uuid                    UUID PRIMARY KEY,
    reply_to_activity_uuid  UUID NOT NULL REFERENCES activities (uuid),
    user_handle             TEXT NOT NULL REFERENCES users (handle),
    message                 TEXT NOT NULL,
    likes_count             BIGINT NOT NULL DEFAULT 0,
    replies_count           BIGINT NOT NULL DEFAULT 0,
    reposts_count           BIGINT NOT NULL DEFAULT 0,
    created_at              TIMESTAMPTZ NOT NULL
);
CREATE INDEX replies_by_activity ON replies (reply_to_activity_uuid, created_at, seq);

-- One group per pair of users; user_a sorts before user_b.
CREATE TABLE message_groups (
    uuid    UUID PRIMARY KEY,
    user_a  TEXT NOT NULL REFERENCES users (handle),
    user_b  TEXT NOT NULL REFERENCES users (handle),
    UNIQUE (user_a, user_b)
);

CREATE TABLE messages (
    seq                 BIGINT GENERATED ALWAYS AS IDENTITY,
    uuid                UUID PRIMARY KEY,
    message_group_uuid  UUID NOT NULL REFERENCES message_groups (uuid),
    sender_handle       TEXT NOT NULL REFERENCES users (handle),
    message             TEXT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX messages_by_group ON messages (message_group_uuid, created_at, seq);

-- Where the data stands, for the feed caches of every replica: each write
-- adds one to a shard in its own transaction, so the sum moves exactly
-- when a write commits. Shards keep concurrent writes from queueing on
-- one row's lock.
CREATE TABLE store_version (
    shard   SMALLINT PRIMARY KEY,
    writes  BIGINT NOT NULL DEFAULT 0
);
INSERT INTO store_version (shard) SELECT generate_series(0, 15);

//! The schema and the seed, applied by whichever replica takes the lock
//! first: the others wait for it, then find nothing left to do. The lock
//! is Postgres's session advisory lock, so a replica that dies holding it
//! releases it with its connection.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Object};
use uuid::Uuid;

use super::queries::{
    COUNT_REPLY, INSERT_ACTIVITY, INSERT_MESSAGE, INSERT_MESSAGE_GROUP, INSERT_REPLY, INSERT_USER,
    MESSAGE_GROUP_UUID,
};
use super::{Failure, PostgresStore};
use crate::store::{conversation_pair, seed};

/// The migrations in order; the number applied is kept in `schema_migrations`.
pub(super) const MIGRATIONS: &[&str] = &[include_str!("migrations/0001_init.sql")];

/// The advisory lock's key: any number, the same in every replica.
const LOCK: i64 = 0x0c72_dd07;

pub(super) async fn migrate_and_seed(
    store: &PostgresStore,
    mut client: Object,
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    // Waiting for another replica's migration is not a slow statement:
    // this connection leaves the pool afterwards, settings and all.
    client
        .batch_execute("SET statement_timeout = 0; SET lock_timeout = '60s'")
        .await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK])
        .await?;
    let applied = apply(store, &mut client, now).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK])
        .await;
    drop(Object::take(client));
    applied?;
    unlocked?;
    Ok(())
}

async fn apply(
    store: &PostgresStore,
    client: &mut Object,
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (\
             version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await?;
    let applied: i64 = client
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await?
        .get(0);
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied.max(0) as usize) {
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&(index as i32 + 1)],
        )
        .await?;
        tx.commit().await?;
    }
    let users: i64 = client
        .query_one("SELECT count(*) FROM users", &[])
        .await?
        .get(0);
    if users == 0 {
        let tx = client.transaction().await?;
        insert_seed(store, &tx, now).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// The seed data, with the statements the store's methods use.
async fn insert_seed(
    store: &PostgresStore,
    tx: &impl GenericClient,
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    let seed = seed::data(now);
    for user in &seed.users {
        store
            .execute(
                tx,
                &INSERT_USER,
                &[
                    &user.uuid,
                    &user.handle,
                    &user.display_name,
                    &user.created_at,
                ],
            )
            .await?;
    }
    for activity in &seed.activities {
        store
            .execute(
                tx,
                &INSERT_ACTIVITY,
                &[
                    &activity.uuid,
                    &activity.handle,
                    &activity.message,
                    &activity.created_at,
                    &activity.expires_at,
                ],
            )
            .await?;
    }
    for reply in &seed.replies {
        store
            .execute(
                tx,
                &INSERT_REPLY,
                &[
                    &reply.uuid,
                    &reply.activity_uuid,
                    &reply.handle,
                    &reply.message,
                    &reply.created_at,
                ],
            )
            .await?;
        store
            .execute(tx, &COUNT_REPLY, &[&reply.activity_uuid])
            .await?;
    }
    for message in &seed.messages {
        let group = conversation(store, tx, message.sender, message.receiver).await?;
        store
            .execute(
                tx,
                &INSERT_MESSAGE,
                &[
                    &message.uuid,
                    &group,
                    &message.sender,
                    &message.message,
                    &message.created_at,
                ],
            )
            .await?;
    }
    Ok(())
}

/// The uuid of the conversation between two users, created if it is the
/// first message between them.
pub(super) async fn conversation(
    store: &PostgresStore,
    tx: &impl GenericClient,
    one: &str,
    other: &str,
) -> Result<Uuid, Failure> {
    let (a, b) = conversation_pair(one, other);
    store
        .execute(tx, &INSERT_MESSAGE_GROUP, &[&Uuid::new_v4(), &a, &b])
        .await?;
    let row = store.row(tx, &MESSAGE_GROUP_UUID, &[&a, &b]).await?;
    row.map(|row| row.get(0))
        .ok_or_else(|| Failure::Missing("the conversation just created"))
}

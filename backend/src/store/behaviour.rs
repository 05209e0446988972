//! What every [`Store`] must do, written once against `&dyn Store`. A
//! backend runs the whole suite with one line in its tests:
//! `behaviour_suite!(name, open_expression)`, where the expression opens a
//! fresh store and answers `(store, what_must_outlive_it)`.
//!
//! Stores open seeded, so each behaviour works with handles of its own.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::{NewActivity, NewMessage, NewReply, Store};
use crate::domain::{Activity, Handle, Message};

/// Expands to one test per behaviour for the store `$open` answers.
macro_rules! behaviour_suite {
    ($suite:ident, $open:expr) => {
        $crate::store::behaviour::behaviour_suite!(@tests $suite, $open, [
            ensure_user_is_idempotent,
            a_created_crud_is_in_home_its_authors_feed_and_search,
            search_ignores_case_and_takes_wildcards_literally,
            expired_cruds_are_hidden_everywhere,
            replies_are_counted_and_listed_oldest_first,
            cruds_and_replies_of_the_same_instant_keep_their_order,
            replying_to_an_unknown_or_expired_crud_answers_none,
            a_reply_to_a_reply_lands_in_its_cruds_thread,
            unknown_handles_answer_none,
            notification_candidates_are_mentions_and_replied_own_cruds,
            messages_are_grouped_and_listed_in_order,
            the_version_moves_with_every_write_and_only_then,
        ]);
    };
    (@tests $suite:ident, $open:expr, [$($behaviour:ident),* $(,)?]) => {
        mod $suite {
            use super::*;
            $(
                #[tokio::test]
                async fn $behaviour() {
                    let (store, _keep) = $open;
                    $crate::store::behaviour::$behaviour(&store).await;
                }
            )*
        }
    };
}
pub(crate) use behaviour_suite;

/// Now, to the microsecond every store keeps.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

fn handle(raw: &str) -> Handle {
    raw.parse().unwrap()
}

/// A user of the behaviour's own, created in `store`.
async fn user(store: &dyn Store, raw: &str, display_name: &str) -> Handle {
    let handle = handle(raw);
    store.ensure_user(&handle, display_name).await.unwrap();
    handle
}

async fn post(store: &dyn Store, by: &Handle, message: &str, at: DateTime<Utc>) -> Activity {
    store
        .create_activity(NewActivity {
            handle: by.clone(),
            message: message.into(),
            created_at: at,
            expires_at: at + Duration::days(1),
        })
        .await
        .unwrap()
}

async fn reply(
    store: &dyn Store,
    by: &Handle,
    to: Uuid,
    at: DateTime<Utc>,
) -> Option<crate::domain::Reply> {
    store
        .create_reply(NewReply {
            activity_uuid: to,
            handle: by.clone(),
            message: format!("{by} answers"),
            created_at: at,
        })
        .await
        .unwrap()
}

async fn send(
    store: &dyn Store,
    from: &Handle,
    to: &Handle,
    text: &str,
    at: DateTime<Utc>,
) -> Option<Message> {
    store
        .create_message(NewMessage {
            sender: from.clone(),
            receiver: to.clone(),
            message: text.into(),
            created_at: at,
        })
        .await
        .unwrap()
}

fn uuids(activities: &[Activity]) -> Vec<Uuid> {
    activities.iter().map(|a| a.uuid).collect()
}

async fn search(store: &dyn Store, term: &str, at: DateTime<Utc>) -> Vec<Uuid> {
    uuids(&store.search_activities(term, at).await.unwrap())
}

pub(crate) async fn ensure_user_is_idempotent(store: &dyn Store) {
    let quark = user(store, "quark", "Quark").await;
    store.ensure_user(&quark, "Someone Else").await.unwrap();
    let crud = post(store, &quark, "Rule of Acquisition 1", now()).await;
    assert_eq!(crud.display_name, "Quark", "the first display name stays");
    let feed = store.user_activities(&quark, now()).await.unwrap();
    assert_eq!(feed.map(|feed| uuids(&feed)), Some(vec![crud.uuid]));
}

pub(crate) async fn a_created_crud_is_in_home_its_authors_feed_and_search(store: &dyn Store) {
    let quark = user(store, "quark", "Quark").await;
    let at = now();
    let older = post(store, &quark, "Latinum for sale", at - Duration::minutes(1)).await;
    let crud = post(store, &quark, "Latinum at the bar", at).await;
    assert_eq!(
        (
            crud.handle.as_str(),
            crud.display_name.as_str(),
            crud.message.as_str()
        ),
        ("quark", "Quark", "Latinum at the bar")
    );
    assert_eq!(
        (
            crud.likes_count,
            crud.replies_count,
            crud.reposts_count,
            crud.replies.len()
        ),
        (0, 0, 0, 0)
    );
    let home = store.home_activities(at).await.unwrap();
    assert_eq!(home.first(), Some(&crud), "the newest crud comes first");
    assert!(
        home.windows(2)
            .all(|pair| pair[0].created_at >= pair[1].created_at),
        "home is newest first"
    );
    let feed = store.user_activities(&quark, at).await.unwrap().unwrap();
    assert_eq!(feed, vec![crud.clone(), older.clone()]);
    assert_eq!(
        search(store, "latinum", at).await,
        vec![crud.uuid, older.uuid]
    );
}

pub(crate) async fn search_ignores_case_and_takes_wildcards_literally(store: &dyn Store) {
    let quark = user(store, "quark", "Quark").await;
    let at = now();
    let sale = post(store, &quark, "Dabo night: 50%_OFF", at).await;
    let plain = post(
        store,
        &quark,
        "Dabo night: 50 off",
        at - Duration::minutes(1),
    )
    .await;
    assert_eq!(
        search(store, "DABO NIGHT", at).await,
        vec![sale.uuid, plain.uuid]
    );
    assert_eq!(search(store, "50%_off", at).await, vec![sale.uuid]);
    assert_eq!(search(store, "0%", at).await, vec![sale.uuid]);
    assert!(
        search(store, "50_off", at).await.is_empty(),
        "_ is no wildcard"
    );
    assert!(
        search(store, "night%off", at).await.is_empty(),
        "% is no wildcard"
    );
}

pub(crate) async fn expired_cruds_are_hidden_everywhere(store: &dyn Store) {
    let quark = user(store, "quark", "Quark").await;
    let odo = user(store, "odo", "Odo").await;
    let at = now();
    let expired = store
        .create_activity(NewActivity {
            handle: quark.clone(),
            message: "Gone already, @odo".into(),
            created_at: at - Duration::hours(2),
            expires_at: at - Duration::hours(1),
        })
        .await
        .unwrap();
    let home = store.home_activities(at).await.unwrap();
    assert!(!uuids(&home).contains(&expired.uuid), "home");
    let feed = store.user_activities(&quark, at).await.unwrap().unwrap();
    assert!(feed.is_empty(), "author's feed");
    assert!(search(store, "gone already", at).await.is_empty(), "search");
    let candidates = store.notification_candidates(&odo, at).await.unwrap();
    assert!(candidates.is_empty(), "notifications");
    assert_eq!(store.show_activity(expired.uuid, at).await.unwrap(), None);
    let before = expired.created_at + Duration::minutes(1);
    let shown = store.show_activity(expired.uuid, before).await.unwrap();
    assert_eq!(
        shown.map(|a| a.uuid),
        Some(expired.uuid),
        "live before it expired"
    );
}

/// Feeds list the newest crud first and a thread the oldest reply first;
/// two of the same microsecond keep the order they were made in (a feed
/// never reshuffles between two reads).
pub(crate) async fn cruds_and_replies_of_the_same_instant_keep_their_order(store: &dyn Store) {
    let garak = user(store, "garak", "Garak").await;
    let at = now();
    let older = post(store, &garak, "first of the instant", at).await;
    let newer = post(store, &garak, "second of the instant", at).await;
    let feed = store.user_activities(&garak, at).await.unwrap().unwrap();
    let uuids: Vec<Uuid> = feed.iter().map(|a| a.uuid).collect();
    assert_eq!(uuids, vec![newer.uuid, older.uuid], "newest made first");
    let home = store.home_activities(at).await.unwrap();
    let mine: Vec<Uuid> = home
        .iter()
        .filter(|a| a.handle == garak.as_str())
        .map(|a| a.uuid)
        .collect();
    assert_eq!(mine, vec![newer.uuid, older.uuid]);

    let one = reply(store, &garak, older.uuid, at + Duration::seconds(1))
        .await
        .unwrap();
    let two = reply(store, &garak, older.uuid, at + Duration::seconds(1))
        .await
        .unwrap();
    let earlier = reply(store, &garak, older.uuid, at).await.unwrap();
    let shown = store.show_activity(older.uuid, at).await.unwrap().unwrap();
    assert_eq!(
        shown.replies,
        vec![earlier.clone(), one.clone(), two.clone()]
    );
    let home = store.home_activities(at).await.unwrap();
    let listed = home.iter().find(|a| a.uuid == older.uuid).unwrap();
    assert_eq!(listed.replies, vec![earlier, one, two]);
}

pub(crate) async fn replies_are_counted_and_listed_oldest_first(store: &dyn Store) {
    let quark = user(store, "quark", "Quark").await;
    let odo = user(store, "odo", "Odo").await;
    let at = now();
    let crud = post(
        store,
        &quark,
        "Who took my latinum?",
        at - Duration::minutes(2),
    )
    .await;
    let first = reply(store, &odo, crud.uuid, at - Duration::minutes(1))
        .await
        .unwrap();
    let second = reply(store, &quark, crud.uuid, at).await.unwrap();
    assert_eq!(
        (
            first.reply_to_activity_uuid,
            first.handle.as_str(),
            first.display_name.as_str()
        ),
        (crud.uuid, "odo", "Odo")
    );
    assert_eq!(
        (first.likes_count, first.replies_count, first.reposts_count),
        (0, 0, 0)
    );
    let shown = store.show_activity(crud.uuid, at).await.unwrap().unwrap();
    assert_eq!(shown.replies_count, 2);
    assert_eq!(shown.replies, vec![first.clone(), second.clone()]);
    let home = store.home_activities(at).await.unwrap();
    let listed = home.iter().find(|a| a.uuid == crud.uuid).unwrap();
    assert_eq!(listed, &shown, "feeds carry the replies too");
    let feed = store.user_activities(&quark, at).await.unwrap().unwrap();
    assert_eq!(feed, vec![shown]);
}

pub(crate) async fn replying_to_an_unknown_or_expired_crud_answers_none(store: &dyn Store) {
    let quark = user(store, "quark", "Quark").await;
    let at = now();
    assert_eq!(reply(store, &quark, Uuid::new_v4(), at).await, None);
    let expired = store
        .create_activity(NewActivity {
            handle: quark.clone(),
            message: "Short-lived".into(),
            created_at: at - Duration::hours(2),
            expires_at: at - Duration::hours(1),
        })
        .await
        .unwrap();
    assert_eq!(reply(store, &quark, expired.uuid, at).await, None);
    let shown = store
        .show_activity(expired.uuid, at - Duration::hours(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((shown.replies_count, shown.replies.len()), (0, 0));
}

pub(crate) async fn a_reply_to_a_reply_lands_in_its_cruds_thread(store: &dyn Store) {
    let quark = user(store, "quark", "Quark").await;
    let odo = user(store, "odo", "Odo").await;
    let at = now();
    let crud = post(store, &quark, "Anyone seen Rom?", at - Duration::minutes(2)).await;
    let first = reply(store, &odo, crud.uuid, at - Duration::minutes(1))
        .await
        .unwrap();
    let second = reply(store, &quark, first.uuid, at).await.unwrap();
    assert_eq!(
        second.reply_to_activity_uuid, crud.uuid,
        "the crud's thread"
    );
    let shown = store.show_activity(crud.uuid, at).await.unwrap().unwrap();
    assert_eq!(shown.replies_count, 2);
    assert_eq!(shown.replies, vec![first.clone(), second]);
    assert_eq!(
        store.show_activity(first.uuid, at).await.unwrap(),
        None,
        "a reply is no crud of its own"
    );
    let later = crud.expires_at + Duration::seconds(1);
    assert_eq!(
        reply(store, &odo, first.uuid, later).await,
        None,
        "a reply's thread expires with its crud"
    );
}

pub(crate) async fn unknown_handles_answer_none(store: &dyn Store) {
    let quark = user(store, "quark", "Quark").await;
    let nobody = handle("nobody_here");
    assert_eq!(store.user_activities(&nobody, now()).await.unwrap(), None);
    assert_eq!(store.messages(&quark, &nobody).await.unwrap(), None);
    assert_eq!(send(store, &quark, &nobody, "Hello?", now()).await, None);
    assert!(store.message_groups(&quark).await.unwrap().is_empty());
}

pub(crate) async fn notification_candidates_are_mentions_and_replied_own_cruds(store: &dyn Store) {
    let odo = user(store, "odo", "Odo").await;
    let quark = user(store, "quark", "Quark").await;
    let at = now();
    let minutes_ago = |minutes| at - Duration::minutes(minutes);
    let mention = post(store, &quark, "@odo, a word", minutes_ago(6)).await;
    let longer_handle = post(store, &quark, "Ask @odoo instead", minutes_ago(5)).await;
    post(store, &quark, "odo without the at", minutes_ago(4)).await;
    post(store, &odo, "Note to self: watch @odo", minutes_ago(3)).await;
    let replied = post(store, &odo, "Curfew tonight", minutes_ago(2)).await;
    reply(store, &quark, replied.uuid, minutes_ago(1))
        .await
        .unwrap();
    let self_replied = post(store, &odo, "Changelings rest", minutes_ago(2)).await;
    reply(store, &odo, self_replied.uuid, minutes_ago(1))
        .await
        .unwrap();
    let candidates = store.notification_candidates(&odo, at).await.unwrap();
    assert_eq!(
        uuids(&candidates),
        vec![replied.uuid, longer_handle.uuid, mention.uuid],
        "newest first: others' cruds containing @odo, and odo's own cruds others replied to"
    );
    let listed = candidates.iter().find(|a| a.uuid == replied.uuid).unwrap();
    assert_eq!(listed.replies.len(), 1, "with their replies");
}

pub(crate) async fn messages_are_grouped_and_listed_in_order(store: &dyn Store) {
    let quark = user(store, "quark", "Quark").await;
    let odo = user(store, "odo", "Odo").await;
    let rom = user(store, "rom", "Rom").await;
    let at = now();
    let seconds_ago = |seconds| at - Duration::seconds(seconds);
    let one = send(store, &quark, &odo, "One", seconds_ago(3))
        .await
        .unwrap();
    assert_eq!(
        (
            one.handle.as_str(),
            one.display_name.as_str(),
            one.message.as_str()
        ),
        ("quark", "Quark", "One"),
        "a message carries its sender"
    );
    let two = send(store, &odo, &quark, "Two", seconds_ago(2))
        .await
        .unwrap();
    let three = send(store, &rom, &quark, "Three", seconds_ago(1))
        .await
        .unwrap();
    let conversation = store.messages(&quark, &odo).await.unwrap().unwrap();
    assert_eq!(conversation, vec![one.clone(), two.clone()], "oldest first");
    let other_side = store.messages(&odo, &quark).await.unwrap().unwrap();
    assert_eq!(other_side, conversation, "one conversation for both");
    let groups = store.message_groups(&quark).await.unwrap();
    let summary: Vec<_> = groups
        .iter()
        .map(|g| {
            (
                g.handle.as_str(),
                g.display_name.as_str(),
                g.message.as_str(),
                g.created_at,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("rom", "Rom", "Three", three.created_at),
            ("odo", "Odo", "Two", two.created_at)
        ],
        "newest first, each with the other person and the last word"
    );
    let groups = store.message_groups(&odo).await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(
        (groups[0].handle.as_str(), groups[0].message.as_str()),
        ("quark", "Two")
    );
}

/// The feed cache serves an answer while the version holds: every kind of
/// write must move it, and reads must not.
pub(crate) async fn the_version_moves_with_every_write_and_only_then(store: &dyn Store) {
    let at = now();
    let mut seen = vec![store.version().await.unwrap()];
    let mut check = |version, what: &str| {
        assert!(!seen.contains(&version), "{what} did not move the version");
        seen.push(version);
    };
    let kira = user(store, "kira", "Kira Nerys").await;
    check(store.version().await.unwrap(), "a new user");
    let crud = post(store, &kira, "Bajor first", at).await;
    check(store.version().await.unwrap(), "a crud");
    reply(store, &kira, crud.uuid, at).await.unwrap();
    check(store.version().await.unwrap(), "a reply");
    send(store, &kira, &kira, "a note to self", at)
        .await
        .unwrap();
    check(store.version().await.unwrap(), "a message");
    let before = store.version().await.unwrap();
    store.home_activities(at).await.unwrap();
    store.search_activities("bajor", at).await.unwrap();
    store.show_activity(crud.uuid, at).await.unwrap();
    assert_eq!(
        store.version().await.unwrap(),
        before,
        "reads moved the version"
    );
}

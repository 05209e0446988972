//! Cruds: the feeds, search, show, create and reply.

use chrono::{DateTime, Utc};
use tracing::field::Empty;
use uuid::Uuid;

use super::cache::{Feed, FeedCache, FeedKey, Page, earliest_expiry};
use super::counters::{self, Created};
use super::{NO_SUCH_USER, ServiceError, check_message, path_handle, validation_codes};
use crate::domain::{
    Activity, Handle, MAX_ACTIVITY_CHARS, MAX_MESSAGE_CHARS, MAX_SEARCH_CHARS, Reply, Ttl,
    api_time, mentions,
};
use crate::store::{NewActivity, NewReply, Store};

pub(crate) const NO_SUCH_CRUD: &str = "no crud has that uuid, or it has expired";

validation_codes! {
    /// Why a search is refused.
    pub enum SearchInvalid {
        SearchTermBlank = "search_term_blank",
        SearchTermExceedMaxChars = "search_term_exceed_max_chars",
    }
}

validation_codes! {
    /// Why a new crud is refused.
    pub enum CreateInvalid {
        MessageBlank = "message_blank",
        MessageExceedMaxChars = "message_exceed_max_chars",
        TtlBlank = "ttl_blank",
        TtlInvalid = "ttl_invalid",
    }
}

validation_codes! {
    /// Why a reply is refused.
    pub enum ReplyInvalid {
        ActivityUuidBlank = "activity_uuid_blank",
        MessageBlank = "message_blank",
        MessageExceedMaxChars = "message_exceed_max_chars",
    }
}

#[tracing::instrument(
    name = "home_activities",
    skip_all,
    fields(app.now = api_time(now), app.result_length = Empty, app.cache_hit = Empty)
)]
pub async fn home(
    store: &dyn Store,
    cache: &FeedCache,
    now: DateTime<Utc>,
) -> Result<Feed, ServiceError> {
    cache
        .answer(store, FeedKey::Home, now, || async {
            Ok(feed_page(store.home_activities(now).await?))
        })
        .await
}

/// A feed as the store answered it, holding until its first crud expires.
fn feed_page(cruds: Vec<Activity>) -> Page<Vec<Activity>> {
    let (length, valid_until) = (cruds.len(), earliest_expiry(&cruds));
    Page {
        value: cruds,
        length,
        valid_until,
    }
}

#[tracing::instrument(
    name = "notifications_activities",
    skip_all,
    fields(app.now = api_time(now), app.user_handle = user.as_str(), app.result_length = Empty, app.cache_hit = Empty)
)]
pub async fn notifications(
    store: &dyn Store,
    cache: &FeedCache,
    user: &Handle,
    now: DateTime<Utc>,
) -> Result<Feed, ServiceError> {
    let key = FeedKey::Notifications(user.clone());
    cache
        .answer(store, key, now, || async {
            let candidates = store.notification_candidates(user, now).await?;
            // One candidate expiring may let another in: the page holds
            // until the first of them all expires.
            let valid_until = earliest_expiry(&candidates);
            let notifications: Vec<Activity> = candidates
                .into_iter()
                .filter(|a| a.handle == user.as_str() || mentions(&a.message, user))
                .collect();
            Ok(Page {
                length: notifications.len(),
                value: notifications,
                valid_until,
            })
        })
        .await
}

#[tracing::instrument(
    name = "user_activities",
    skip_all,
    fields(app.now = api_time(now), app.user_handle = handle, app.result_length = Empty, app.cache_hit = Empty)
)]
pub async fn user_feed(
    store: &dyn Store,
    cache: &FeedCache,
    handle: &str,
    now: DateTime<Utc>,
) -> Result<Feed, ServiceError> {
    let handle = path_handle(handle)?;
    let key = FeedKey::User(handle.clone());
    cache
        .answer(store, key, now, || async {
            match store.user_activities(&handle, now).await? {
                Some(feed) => Ok(feed_page(feed)),
                None => Err(ServiceError::NotFound(NO_SUCH_USER)),
            }
        })
        .await
}

#[tracing::instrument(
    name = "search_activities",
    skip_all,
    fields(app.now = api_time(now), app.search_term_length = term.map_or(0, |t| t.chars().count() as i64), app.result_length = Empty, app.cache_hit = Empty)
)]
pub async fn search(
    store: &dyn Store,
    cache: &FeedCache,
    term: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Feed, ServiceError> {
    let term = term.unwrap_or_default();
    if term.trim().is_empty() {
        return Err(vec![SearchInvalid::SearchTermBlank].into());
    }
    // As sent, like a message's limit.
    if term.chars().count() > MAX_SEARCH_CHARS {
        return Err(vec![SearchInvalid::SearchTermExceedMaxChars].into());
    }
    let term = term.trim();
    let key = FeedKey::Search(term.to_owned());
    cache
        .answer(store, key, now, || async {
            Ok(feed_page(store.search_activities(term, now).await?))
        })
        .await
}

/// `app.result_length` is the crud's number of replies.
#[tracing::instrument(
    name = "show_activity",
    skip_all,
    fields(app.now = api_time(now), app.activity_uuid = uuid, app.result_length = Empty, app.cache_hit = Empty)
)]
pub async fn show(
    store: &dyn Store,
    cache: &FeedCache,
    uuid: &str,
    now: DateTime<Utc>,
) -> Result<Feed, ServiceError> {
    let not_found = || ServiceError::NotFound(NO_SUCH_CRUD);
    let uuid = Uuid::parse_str(uuid).map_err(|_| not_found())?;
    cache
        .answer(store, FeedKey::Show(uuid), now, || async {
            let crud = store
                .show_activity(uuid, now)
                .await?
                .ok_or_else(not_found)?;
            Ok(Page {
                length: crud.replies.len(),
                valid_until: Some(crud.expires_at),
                value: crud,
            })
        })
        .await
}

#[tracing::instrument(
    name = "create_activity",
    skip_all,
    fields(app.now = api_time(now), app.user_handle = user.as_str(), app.ttl = ttl, app.message_length = message.map_or(0, |m| m.chars().count() as i64), app.activity_uuid = Empty)
)]
pub async fn create(
    store: &dyn Store,
    user: &Handle,
    message: Option<&str>,
    ttl: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Activity, ServiceError> {
    let mut codes = Vec::new();
    check_message(
        message,
        MAX_ACTIVITY_CHARS,
        [
            CreateInvalid::MessageBlank,
            CreateInvalid::MessageExceedMaxChars,
        ],
        &mut codes,
    );
    let ttl = match ttl {
        None => {
            codes.push(CreateInvalid::TtlBlank);
            None
        }
        Some(raw) if raw.trim().is_empty() => {
            codes.push(CreateInvalid::TtlBlank);
            None
        }
        Some(raw) => match raw.parse::<Ttl>() {
            Ok(ttl) => Some(ttl),
            Err(_) => {
                codes.push(CreateInvalid::TtlInvalid);
                None
            }
        },
    };
    let (Some(message), Some(ttl), true) = (message, ttl, codes.is_empty()) else {
        return Err(codes.into());
    };
    let activity = store
        .create_activity(NewActivity {
            handle: user.clone(),
            message: message.trim().to_owned(),
            created_at: now,
            expires_at: now + ttl.duration(),
        })
        .await?;
    tracing::Span::current().record("app.activity_uuid", activity.uuid.to_string());
    counters::created(Created::Crud);
    Ok(activity)
}

#[tracing::instrument(
    name = "create_reply",
    skip_all,
    fields(app.now = api_time(now), app.user_handle = user.as_str(), app.activity_uuid = activity_uuid, app.reply_uuid = Empty)
)]
pub async fn reply(
    store: &dyn Store,
    user: &Handle,
    activity_uuid: &str,
    message: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Reply, ServiceError> {
    let mut codes = Vec::new();
    if activity_uuid.trim().is_empty() {
        codes.push(ReplyInvalid::ActivityUuidBlank);
    }
    check_message(
        message,
        MAX_MESSAGE_CHARS,
        [
            ReplyInvalid::MessageBlank,
            ReplyInvalid::MessageExceedMaxChars,
        ],
        &mut codes,
    );
    let (Some(message), true) = (message, codes.is_empty()) else {
        return Err(codes.into());
    };
    let not_found = || ServiceError::NotFound(NO_SUCH_CRUD);
    let activity_uuid = Uuid::parse_str(activity_uuid).map_err(|_| not_found())?;
    let reply = store
        .create_reply(NewReply {
            activity_uuid,
            handle: user.clone(),
            message: message.trim().to_owned(),
            created_at: now,
        })
        .await?
        .ok_or_else(not_found)?;
    tracing::Span::current().record("app.reply_uuid", reply.uuid.to_string());
    counters::created(Created::Reply);
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::store::SqliteStore;

    #[tokio::test]
    async fn notifications_are_real_mentions_and_replied_own_cruds() {
        let store = SqliteStore::open(":memory:", Utc::now()).unwrap();
        let (odo, quark): (Handle, Handle) = ("odo".parse().unwrap(), "quark".parse().unwrap());
        for user in [&odo, &quark] {
            store.ensure_user(user, user.as_str()).await.unwrap();
        }
        let now = Utc::now();
        let mut posted = Vec::new();
        for (minutes_ago, message) in [(3, "Ask @odo!"), (2, "Ask @odoo"), (1, "Ask @ODO")] {
            let at = now - Duration::minutes(minutes_ago);
            posted.push(
                create(&store, &quark, Some(message), Some("1-day"), at)
                    .await
                    .unwrap(),
            );
        }
        let own = create(&store, &odo, Some("Curfew"), Some("1-day"), now)
            .await
            .unwrap();
        let uuid = own.uuid.to_string();
        reply(&store, &quark, &uuid, Some("No"), now).await.unwrap();
        let cache = FeedCache::new(0);
        let found = notifications(&store, &cache, &odo, now).await.unwrap();
        let found: Vec<serde_json::Value> = serde_json::from_slice(&found.0).unwrap();
        let found: Vec<_> = found.iter().map(|a| a["uuid"].as_str().unwrap()).collect();
        let expected = [own.uuid.to_string(), posted[0].uuid.to_string()];
        assert_eq!(found, expected);
    }
}

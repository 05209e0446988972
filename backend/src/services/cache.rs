//! The feed cache: each feed's JSON answer, kept ready to send while the
//! data it was made from still stands (issue 19; figures in bench/README.md,
//! "Data path").
//!
//! No stale reads: an answer is kept with the [`StoreVersion`] read before
//! it was computed, and served only while the store still answers that
//! version, so a write committed by anyone (this process, or another
//! replica on the same data) before a read begins makes that read compute
//! the feed again. Time is the other thing that changes a feed: cruds
//! leave it when they expire, so an answer is served only before the
//! earliest expiry among the cruds the store answered, to the microsecond.
//!
//! Bounded: answers (with a fixed charge per entry for the key and the
//! bookkeeping) fit in `FEED_CACHE_MAX_BYTES`, at most [`MAX_ENTRIES`] of
//! them; the least recently used go first, and answers of a version that
//! has passed are dropped as soon as a newer one is kept. The service span
//! says which way each read went (`app.cache_hit`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::Span;
use uuid::Uuid;

use super::ServiceError;
use crate::domain::{Activity, Handle};
use crate::store::{Store, StoreVersion};

/// The most answers kept, whatever their size: a search for every word of
/// the dictionary must not make each miss scan a huge table.
const MAX_ENTRIES: usize = 1024;

/// What an entry costs besides its answer: the key, the map's slot and the
/// bookkeeping, rounded up.
const ENTRY_OVERHEAD: usize = 128;

/// Which feed an answer is, with everything that selects it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FeedKey {
    Home,
    Notifications(Handle),
    User(Handle),
    /// The term as searched, trimmed.
    Search(String),
    Show(Uuid),
}

impl FeedKey {
    fn size(&self) -> usize {
        match self {
            FeedKey::Home | FeedKey::Show(_) => 0,
            FeedKey::Notifications(handle) | FeedKey::User(handle) => handle.as_str().len(),
            FeedKey::Search(term) => term.len(),
        }
    }
}

/// A feed's answer: its JSON, ready to send.
#[derive(Debug, Clone)]
pub struct Feed(pub Bytes);

/// What a service loads on a miss: the value to answer, its length for
/// `app.result_length`, and until when it holds.
pub(super) struct Page<T> {
    pub value: T,
    pub length: usize,
    pub valid_until: Option<DateTime<Utc>>,
}

/// When the first of `cruds` expires: the feed they make changes then.
pub(super) fn earliest_expiry(cruds: &[Activity]) -> Option<DateTime<Utc>> {
    cruds.iter().map(|crud| crud.expires_at).min()
}

struct Entry {
    body: Bytes,
    length: usize,
    version: StoreVersion,
    valid_until: Option<DateTime<Utc>>,
    /// When it was last served, in `Entries::clock` ticks.
    used: u64,
    cost: usize,
}

impl Entry {
    fn holds(&self, version: StoreVersion, now: DateTime<Utc>) -> bool {
        self.version == version && self.valid_until.is_none_or(|until| now < until)
    }
}

#[derive(Default)]
struct Entries {
    map: HashMap<FeedKey, Entry>,
    bytes: usize,
    clock: u64,
    /// The version the kept answers were last purged against.
    purged_at: Option<StoreVersion>,
}

impl Entries {
    fn remove(&mut self, key: &FeedKey) {
        if let Some(entry) = self.map.remove(key) {
            self.bytes -= entry.cost;
        }
    }

    fn evict_least_recently_used(&mut self) {
        let oldest = self
            .map
            .iter()
            .min_by_key(|(_, entry)| entry.used)
            .map(|(key, _)| key.clone());
        if let Some(key) = oldest {
            self.remove(&key);
        }
    }
}

/// Every feed's kept answers. One per process, shared by the requests.
pub struct FeedCache {
    max_bytes: usize,
    entries: Mutex<Entries>,
}

impl FeedCache {
    /// A cache holding at most `max_bytes`; 0 keeps nothing, and then no
    /// read asks the store for its version either.
    pub fn new(max_bytes: usize) -> Self {
        FeedCache {
            max_bytes,
            entries: Mutex::default(),
        }
    }

    /// The feed `key` as of `now`: the kept answer if it still holds,
    /// else `load`'s, kept for the next reads. Records `app.cache_hit` and
    /// `app.result_length` on the current (service) span.
    pub(super) async fn answer<T, F, Fut>(
        &self,
        store: &dyn Store,
        key: FeedKey,
        now: DateTime<Utc>,
        load: F,
    ) -> Result<Feed, ServiceError>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Page<T>, ServiceError>>,
    {
        let span = Span::current();
        // Read before the feed is: a write committed after this point
        // changes the version the next read compares with. None when the
        // cache is off: nothing is looked up or kept.
        let version = match self.max_bytes {
            0 => None,
            _ => Some(store.version().await?),
        };
        if let Some(version) = version
            && let Some((body, length)) = self.kept(&key, version, now)
        {
            span.record("app.cache_hit", true);
            span.record("app.result_length", length as i64);
            return Ok(Feed(body));
        }
        span.record("app.cache_hit", false);
        let page = load().await?;
        span.record("app.result_length", page.length as i64);
        let body = to_json(&page.value);
        if let Some(version) = version {
            self.keep(key, version, page, body.clone());
        }
        Ok(Feed(body))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn kept(
        &self,
        key: &FeedKey,
        version: StoreVersion,
        now: DateTime<Utc>,
    ) -> Option<(Bytes, usize)> {
        let mut entries = self.lock();
        entries.clock += 1;
        let clock = entries.clock;
        let entry = entries.map.get_mut(key).filter(|e| e.holds(version, now))?;
        entry.used = clock;
        Some((entry.body.clone(), entry.length))
    }

    fn keep<T>(&self, key: FeedKey, version: StoreVersion, page: Page<T>, body: Bytes) {
        let cost = body.len() + key.size() + ENTRY_OVERHEAD;
        if cost > self.max_bytes {
            return;
        }
        let mut entries = self.lock();
        if entries.purged_at != Some(version) {
            entries.purged_at = Some(version);
            entries.map.retain(|_, entry| entry.version == version);
            entries.bytes = entries.map.values().map(|entry| entry.cost).sum();
        }
        entries.remove(&key);
        while entries.bytes + cost > self.max_bytes || entries.map.len() >= MAX_ENTRIES {
            entries.evict_least_recently_used();
        }
        entries.clock += 1;
        let used = entries.clock;
        entries.bytes += cost;
        entries.map.insert(
            key,
            Entry {
                body,
                length: page.length,
                version,
                valid_until: page.valid_until,
                used,
                cost,
            },
        );
    }
}

/// The JSON of a feed. Our feeds have no maps and no fallible fields, so
/// serde_json cannot refuse them; 4 KiB holds the seeded home feed (2.4 KB)
/// without growing the buffer, which is then shrunk to its length, so that
/// a kept answer (an empty search's `[]`) holds no more memory than the
/// cache charges it for.
fn to_json<T: Serialize>(value: &T) -> Bytes {
    let mut buffer = Vec::with_capacity(4096);
    serde_json::to_writer(&mut buffer, value).expect("a feed always serializes");
    buffer.shrink_to_fit();
    Bytes::from(buffer)
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn page(at: DateTime<Utc>) -> Page<()> {
        Page {
            value: (),
            length: 1,
            valid_until: Some(at),
        }
    }

    #[test]
    fn an_answer_holds_for_its_version_and_until_its_first_expiry_only() {
        let cache = FeedCache::new(1 << 20);
        let now = Utc::now();
        let expiry = now + Duration::seconds(10);
        let (v1, v2) = (StoreVersion::new(1, 7), StoreVersion::new(1, 8));
        cache.keep(FeedKey::Home, v1, page(expiry), Bytes::from_static(b"[1]"));
        assert!(cache.kept(&FeedKey::Home, v1, now).is_some());
        let last_microsecond = expiry - Duration::microseconds(1);
        assert!(cache.kept(&FeedKey::Home, v1, last_microsecond).is_some());
        assert!(cache.kept(&FeedKey::Home, v1, expiry).is_none());
        assert!(cache.kept(&FeedKey::Home, v2, now).is_none());
        assert!(
            cache
                .kept(&FeedKey::Home, StoreVersion::new(2, 7), now)
                .is_none()
        );
        assert!(cache.kept(&FeedKey::Search("x".into()), v1, now).is_none());
    }

    #[test]
    fn answers_fit_the_budget_least_recently_used_out_first_and_old_versions_dropped() {
        let body = Bytes::from(vec![b'x'; 1000]);
        let cost = 1000 + ENTRY_OVERHEAD;
        let cache = FeedCache::new(3 * cost);
        let (now, v) = (Utc::now(), StoreVersion::new(0, 1));
        let later = now + Duration::days(1);
        let show = |n: u128| FeedKey::Show(Uuid::from_u128(n));
        for n in 0..3 {
            cache.keep(show(n), v, page(later), body.clone());
        }
        assert!(cache.kept(&show(0), v, now).is_some());
        cache.keep(show(3), v, page(later), body.clone());
        assert!(
            cache.kept(&show(1), v, now).is_none(),
            "the least recently used"
        );
        for n in [0, 2, 3] {
            assert!(cache.kept(&show(n), v, now).is_some(), "{n}");
        }
        assert_eq!(cache.lock().bytes, 3 * cost);

        let too_big = Bytes::from(vec![b'x'; 3 * cost]);
        cache.keep(FeedKey::Home, v, page(later), too_big);
        assert!(cache.kept(&FeedKey::Home, v, now).is_none());

        let newer = StoreVersion::new(1, 1);
        cache.keep(FeedKey::Home, newer, page(later), body);
        assert_eq!(cache.lock().map.len(), 1, "answers of a past version go");
        assert_eq!(cache.lock().bytes, cost);
    }

    #[test]
    fn no_more_than_max_entries_however_small() {
        let cache = FeedCache::new(usize::MAX);
        let (now, v) = (Utc::now(), StoreVersion::new(0, 0));
        for n in 0..MAX_ENTRIES + 10 {
            cache.keep(
                FeedKey::Search(n.to_string()),
                v,
                page(now + Duration::days(1)),
                Bytes::from_static(b"[]"),
            );
        }
        assert_eq!(cache.lock().map.len(), MAX_ENTRIES);
    }
}

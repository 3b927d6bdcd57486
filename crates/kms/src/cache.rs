//! The data-key cache between the object path and the KMS backend (moka).
//!
//! - Write side: per (key id, bucket, encryption context) one KMS data key — the "bucket key" — serves writes for
//!   at most `ttl` and at most `max_uses` requests; the SSE layer derives a distinct key per object from it. A bucket
//!   key past its uses is retired and replaced by a fresh one. Concurrent misses for the same entry wait for one
//!   backend call (moka's `or_try_insert_with` coalesces them); failures are not cached.
//! - Read side: unwrapped data keys keyed by (wrapped blob, context), for at most `ttl`, so repeated reads don't call
//!   the KMS. A freshly generated bucket key is entered here too, so reading back what was just written is free.
//! - Off: every request is one backend call.
//!
//! [`DataKeyCache::clear`] swaps in empty caches and drops the old ones: their keys are zeroized as soon as requests
//! already holding one finish. Nothing else keeps a copy of cached key material: moka keeps clones of cached values
//! out of our reach (the waiters of coalesced misses and removed entries both wait for crossbeam-epoch reclamation,
//! which another thread can hold up indefinitely), so each cached key sits in a [`Slot`] that is emptied when its
//! entry leaves the cache (the eviction listener, for every cause) or when the cache is dropped.
//!
//! Invalidating a key's entries (it was disabled, rotated, or its older versions retired) also drops what a backend
//! call already under way caches after it: that call may have seen the key as it was before the change.
//!
//! Counting: a request served by a cached entry, or by another request's backend call it waited for, is a hit;
//! every other request (it made the backend call, or the call failed) is a miss. Evictions are entries dropped for age (TTL) or capacity; explicit
//! invalidation, retirement after `max_uses` and clearing are not evictions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::ops::compute::Op;
use serde::Serialize;

use crate::backend::KmsBackend;
use crate::config::CacheConfig;
use crate::error::{KmsError, Result};
use crate::stats::Stats;
use crate::types::{DataKey, EncryptionContext, KeyMaterial};
use crate::wrapped::WrappedKey;

/// How the cache behaves; built from [`CacheConfig`] (whose TTL is in seconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheSettings {
    pub enabled: bool,
    /// Most entries on each side (bucket keys; unwrapped keys).
    pub capacity: u64,
    pub ttl: Duration,
    /// Most requests one bucket key serves.
    pub max_uses: u64,
}

impl From<&CacheConfig> for CacheSettings {
    fn from(config: &CacheConfig) -> Self {
        Self {
            enabled: config.enabled,
            capacity: config.max_cached_keys,
            ttl: Duration::from_secs(config.ttl_seconds),
            max_uses: config.max_uses,
        }
    }
}

/// A snapshot of the cache counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    pub enabled: bool,
    pub hit_count: u64,
    pub miss_count: u64,
    /// Entries on both sides.
    pub entry_count: u64,
    pub eviction_count: u64,
}

impl CacheStats {
    /// The shared counters with the given on/off state and entry count (0 when no cache exists).
    pub(crate) fn from_counters(stats: &Stats, enabled: bool, entry_count: u64) -> Self {
        Self {
            enabled,
            hit_count: stats.hits.load(Ordering::Relaxed),
            miss_count: stats.misses.load(Ordering::Relaxed),
            entry_count,
            eviction_count: stats.evictions.load(Ordering::Relaxed),
        }
    }
}

/// Data keys cached for the object path; see the module documentation.
pub struct DataKeyCache {
    settings: CacheSettings,
    stats: Arc<Stats>,
    /// `None` when the cache is off.
    caches: Option<RwLock<Arc<Caches>>>,
}

struct Caches {
    bucket_keys: Cache<BucketKeyId, Arc<BucketKey>>,
    unwrapped: Cache<UnwrappedId, Arc<Slot<KeyMaterial>>>,
    /// Counts invalidations. A backend call that one overtook may have seen the key as it was before the change
    /// (enabled, or with a lower minimum decryption version); what that call cached is dropped again.
    invalidations: AtomicU64,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct BucketKeyId {
    key_id: String,
    bucket: String,
    context: EncryptionContext,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct UnwrappedId {
    key_id: String,
    wrapped: WrappedKey,
    context: EncryptionContext,
}

/// A cached bucket key and how many requests it has served.
struct BucketKey {
    data_key: Slot<DataKey>,
    uses: AtomicU64,
}

/// A cached key that can be taken out of every clone of its entry at once; see the module documentation.
struct Slot<T>(Mutex<Option<Arc<T>>>);

impl<T> Slot<T> {
    fn new(value: Arc<T>) -> Self {
        Self(Mutex::new(Some(value)))
    }

    /// The key, unless its entry has left the cache.
    fn get(&self) -> Option<Arc<T>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn empty(&self) {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
    }
}

impl std::fmt::Debug for DataKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeyCache").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl DataKeyCache {
    pub fn new(settings: CacheSettings) -> Self {
        Self::with_stats(settings, Arc::default())
    }

    /// A cache counting into `stats`, which outlive it (the manager rebuilds caches, the counters stay).
    pub(crate) fn with_stats(settings: CacheSettings, stats: Arc<Stats>) -> Self {
        let caches = settings.enabled.then(|| RwLock::new(Arc::new(Caches::build(&settings, &stats))));
        Self { settings, stats, caches }
    }

    /// The bucket key for writes under `key_id` in `bucket` with `context`: cached, or made by one backend call.
    pub async fn bucket_key(
        &self,
        backend: &dyn KmsBackend,
        key_id: &str,
        bucket: &str,
        context: &EncryptionContext,
    ) -> Result<Arc<DataKey>> {
        let Some(caches) = self.current() else {
            return backend.generate_data_key(key_id, context).await.map(Arc::new);
        };
        let id = BucketKeyId { key_id: key_id.to_owned(), bucket: bucket.to_owned(), context: context.clone() };
        loop {
            let invalidations = caches.invalidations();
            // The key this request generated, if it made the backend call: its entry may already be gone (evicted
            // on admission, cleared), but the request that paid for the key still uses it.
            let mut generated = None;
            let entry = caches
                .bucket_keys
                .entry(id.clone())
                .or_try_insert_with(async {
                    let data_key = Arc::new(backend.generate_data_key(key_id, context).await?);
                    generated = Some(Arc::clone(&data_key));
                    Ok::<_, KmsError>(Arc::new(BucketKey { data_key: Slot::new(data_key), uses: AtomicU64::new(0) }))
                })
                .await
                .map_err(|err| self.missed(&err))?;
            let fresh = entry.is_fresh();
            let bucket_key = entry.into_value();
            let data_key = match generated {
                Some(data_key) => {
                    self.stats.misses.fetch_add(1, Ordering::Relaxed);
                    let read_side = caches.remember_unwrapped(&data_key, context).await;
                    if caches.invalidations() != invalidations {
                        caches.bucket_keys.invalidate(&id).await;
                        caches.unwrapped.invalidate(&read_side).await;
                    }
                    data_key
                }
                // The entry left the cache between lookup and use: look again.
                None => match bucket_key.data_key.get() {
                    Some(data_key) => data_key,
                    None => continue,
                },
            };
            if bucket_key.uses.fetch_add(1, Ordering::Relaxed) < self.settings.max_uses {
                if !fresh {
                    self.stats.hits.fetch_add(1, Ordering::Relaxed);
                }
                return Ok(data_key);
            }
            caches.retire(&id, &bucket_key).await;
        }
    }

    /// The plaintext of `wrapped` under `context`: cached, or opened by one backend call.
    pub async fn unwrap_key(
        &self,
        backend: &dyn KmsBackend,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<Arc<KeyMaterial>> {
        let Some(caches) = self.current() else {
            return backend.decrypt_data_key(wrapped, context).await.map(Arc::new);
        };
        let key_id = wrapped.header()?.key_id.to_owned();
        let id = UnwrappedId { key_id, wrapped: wrapped.clone(), context: context.clone() };
        loop {
            let invalidations = caches.invalidations();
            // As in `bucket_key`: the request that made the backend call uses its key even if the entry is gone.
            let mut opened = None;
            let entry = caches
                .unwrapped
                .entry(id.clone())
                .or_try_insert_with(async {
                    let key = Arc::new(backend.decrypt_data_key(wrapped, context).await?);
                    opened = Some(Arc::clone(&key));
                    Ok::<_, KmsError>(Arc::new(Slot::new(key)))
                })
                .await
                .map_err(|err| self.missed(&err))?;
            let (key, counter) = match opened {
                Some(key) => {
                    if caches.invalidations() != invalidations {
                        caches.unwrapped.invalidate(&id).await;
                    }
                    (key, &self.stats.misses)
                }
                None => match entry.into_value().get() {
                    Some(key) => (key, &self.stats.hits),
                    None => continue,
                },
            };
            counter.fetch_add(1, Ordering::Relaxed);
            return Ok(key);
        }
    }

    /// Drops every cached key at once: the next request calls the backend. Keys still held by requests in flight
    /// are zeroized when those finish.
    pub async fn clear(&self) {
        if let Some(caches) = &self.caches {
            let empty = Arc::new(Caches::build(&self.settings, &self.stats));
            let old = std::mem::replace(&mut *caches.write().unwrap_or_else(|poisoned| poisoned.into_inner()), empty);
            // Expired entries are invisible to iteration; maintenance removes them, which empties their slots.
            old.bucket_keys.run_pending_tasks().await;
            old.unwrapped.run_pending_tasks().await;
            drop(old);
        }
    }

    /// Drops every entry of `key_id`, both sides (the key was disabled or scheduled for deletion).
    pub async fn invalidate_key(&self, key_id: &str) {
        if let Some(caches) = self.current() {
            caches.invalidate_bucket_keys(key_id).await;
            caches.invalidate_unwrapped(key_id).await;
        }
    }

    /// Drops the bucket keys of `key_id` so new writes use its newest version (the key was rotated).
    pub async fn invalidate_bucket_keys(&self, key_id: &str) {
        if let Some(caches) = self.current() {
            caches.invalidate_bucket_keys(key_id).await;
        }
    }

    pub async fn stats(&self) -> CacheStats {
        let entry_count = match self.current() {
            Some(caches) => {
                // moka counts entries and notices expiry during maintenance; run it so the numbers are current.
                caches.bucket_keys.run_pending_tasks().await;
                caches.unwrapped.run_pending_tasks().await;
                caches.bucket_keys.entry_count() + caches.unwrapped.entry_count()
            }
            None => 0,
        };
        CacheStats::from_counters(&self.stats, self.settings.enabled, entry_count)
    }

    /// Counts a request that got no key (the backend call failed, or the call it waited for did) as a miss.
    fn missed(&self, err: &KmsError) -> KmsError {
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        err.duplicate()
    }

    fn current(&self) -> Option<Arc<Caches>> {
        let caches = self.caches.as_ref()?;
        Some(Arc::clone(&caches.read().unwrap_or_else(|poisoned| poisoned.into_inner())))
    }
}

impl Caches {
    fn build(settings: &CacheSettings, stats: &Arc<Stats>) -> Self {
        Self {
            bucket_keys: Cache::builder()
                .max_capacity(settings.capacity)
                .time_to_live(settings.ttl)
                .eviction_listener(on_removal(stats, |bucket_key: &Arc<BucketKey>| bucket_key.data_key.empty()))
                .build(),
            unwrapped: Cache::builder()
                .max_capacity(settings.capacity)
                .time_to_live(settings.ttl)
                .eviction_listener(on_removal(stats, |key: &Arc<Slot<KeyMaterial>>| key.empty()))
                .build(),
            invalidations: AtomicU64::new(0),
        }
    }

    fn invalidations(&self) -> u64 {
        self.invalidations.load(Ordering::SeqCst)
    }

    /// Enters a freshly generated data key on the read side, under the id it returns.
    async fn remember_unwrapped(&self, data_key: &DataKey, context: &EncryptionContext) -> UnwrappedId {
        let id = UnwrappedId {
            key_id: data_key.key_id.clone(),
            wrapped: data_key.wrapped.clone(),
            context: context.clone(),
        };
        self.unwrapped.insert(id.clone(), Arc::new(Slot::new(Arc::new(data_key.plaintext.clone())))).await;
        id
    }

    /// Removes a used-up bucket key unless another request already replaced it.
    async fn retire(&self, id: &BucketKeyId, used_up: &Arc<BucketKey>) {
        self.bucket_keys
            .entry(id.clone())
            .and_compute_with(|current| {
                let op = match current {
                    Some(entry) if Arc::ptr_eq(entry.value(), used_up) => Op::Remove,
                    _ => Op::Nop,
                };
                std::future::ready(op)
            })
            .await;
    }

    async fn invalidate_bucket_keys(&self, key_id: &str) {
        // Counted before the entries go, so a backend call finishing after this sees it.
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        let ids: Vec<_> = self.bucket_keys.iter().filter(|(id, _)| id.key_id == key_id).map(|(id, _)| id).collect();
        for id in ids {
            self.bucket_keys.invalidate(id.as_ref()).await;
        }
        // Invalidated values are only dropped (and zeroized) by maintenance.
        self.bucket_keys.run_pending_tasks().await;
    }

    async fn invalidate_unwrapped(&self, key_id: &str) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        let ids: Vec<_> = self.unwrapped.iter().filter(|(id, _)| id.key_id == key_id).map(|(id, _)| id).collect();
        for id in ids {
            self.unwrapped.invalidate(id.as_ref()).await;
        }
        self.unwrapped.run_pending_tasks().await;
    }
}

impl Drop for Caches {
    /// Empties the slots of the entries still cached, so that moka's lingering clones hold no key.
    fn drop(&mut self) {
        for (_, bucket_key) in self.bucket_keys.iter() {
            bucket_key.data_key.empty();
        }
        for (_, key) in self.unwrapped.iter() {
            key.empty();
        }
    }
}

/// The eviction listener: empties the removed entry's slot, whatever the cause, and counts evictions.
fn on_removal<K, V>(
    stats: &Arc<Stats>,
    empty: impl Fn(&V) + Send + Sync + 'static,
) -> impl Fn(Arc<K>, V, RemovalCause) + Send + Sync + 'static {
    let stats = Arc::clone(stats);
    move |_, value, cause| {
        empty(&value);
        if matches!(cause, RemovalCause::Expired | RemovalCause::Size) {
            stats.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests;

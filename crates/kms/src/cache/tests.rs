//! Tests of the data-key cache against a counting (and optionally gated) local backend.

use std::sync::atomic::AtomicUsize;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use super::*;
use crate::backend::BackendKind;
use crate::config::{LocalConfig, Secret};
use crate::local::LocalBackend;
use crate::types::{Health, KeyMetadata, KeyPage};

/// The real local backend, counting data-key calls; `generate_data_key` can be held at a gate before it runs, and
/// `decrypt_data_key` at another after it ran (to finish after a key change it did not see).
struct Counting {
    inner: LocalBackend,
    generates: AtomicUsize,
    decrypts: AtomicUsize,
    gate: Option<Semaphore>,
    decrypted_gate: Option<Semaphore>,
}

#[async_trait]
impl KmsBackend for Counting {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }
    async fn create_key(&self, key_id: Option<&str>, description: Option<&str>) -> Result<KeyMetadata> {
        self.inner.create_key(key_id, description).await
    }
    async fn describe_key(&self, key_id: &str) -> Result<KeyMetadata> {
        self.inner.describe_key(key_id).await
    }
    async fn list_keys(&self, limit: usize, marker: Option<&str>) -> Result<KeyPage> {
        self.inner.list_keys(limit, marker).await
    }
    async fn enable_key(&self, key_id: &str) -> Result<KeyMetadata> {
        self.inner.enable_key(key_id).await
    }
    async fn disable_key(&self, key_id: &str) -> Result<KeyMetadata> {
        self.inner.disable_key(key_id).await
    }
    async fn schedule_deletion(&self, key_id: &str, pending_window_days: u32) -> Result<KeyMetadata> {
        self.inner.schedule_deletion(key_id, pending_window_days).await
    }
    async fn cancel_deletion(&self, key_id: &str) -> Result<KeyMetadata> {
        self.inner.cancel_deletion(key_id).await
    }
    async fn rotate_key(&self, key_id: &str) -> Result<KeyMetadata> {
        self.inner.rotate_key(key_id).await
    }
    async fn set_expiry(&self, key_id: &str, expires_at: Option<time::OffsetDateTime>) -> Result<KeyMetadata> {
        self.inner.set_expiry(key_id, expires_at).await
    }
    async fn set_min_decryption_version(&self, key_id: &str, version: u32) -> Result<KeyMetadata> {
        self.inner.set_min_decryption_version(key_id, version).await
    }
    async fn generate_data_key(&self, key_id: &str, context: &EncryptionContext) -> Result<DataKey> {
        self.generates.fetch_add(1, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            drop(gate.acquire().await.expect("the gate is never closed"));
        }
        self.inner.generate_data_key(key_id, context).await
    }
    async fn decrypt_data_key(&self, wrapped: &WrappedKey, context: &EncryptionContext) -> Result<KeyMaterial> {
        self.decrypts.fetch_add(1, Ordering::SeqCst);
        let opened = self.inner.decrypt_data_key(wrapped, context).await;
        if let Some(gate) = &self.decrypted_gate {
            drop(gate.acquire().await.expect("the gate is never closed"));
        }
        opened
    }
    async fn health(&self) -> Health {
        self.inner.health().await
    }
}

impl Counting {
    fn generates(&self) -> usize {
        self.generates.load(Ordering::SeqCst)
    }
    fn decrypts(&self) -> usize {
        self.decrypts.load(Ordering::SeqCst)
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    backend: Arc<Counting>,
}

async fn fixture(gated: bool) -> Fixture {
    fixture_with(gated.then(|| Semaphore::new(0)), None).await
}

async fn fixture_with(gate: Option<Semaphore>, decrypted_gate: Option<Semaphore>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = LocalConfig {
        key_dir: Some(dir.path().to_owned()),
        master_key: Some(Secret::new("cache-tests-master-key-0123456789abcdef")),
        master_key_file: None,
    };
    let inner = LocalBackend::open(&config).await.unwrap();
    inner.create_key(Some("k"), None).await.unwrap();
    inner.create_key(Some("k2"), None).await.unwrap();
    let (generates, decrypts) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let backend = Arc::new(Counting { inner, generates, decrypts, gate, decrypted_gate });
    Fixture { _dir: dir, backend }
}

fn settings(ttl: Duration, max_uses: u64) -> CacheSettings {
    CacheSettings { enabled: true, capacity: 100, ttl, max_uses }
}

fn long() -> CacheSettings {
    settings(Duration::from_secs(300), 1000)
}

fn context(bucket: &str) -> EncryptionContext {
    EncryptionContext::new().with("aws:s3:arn", format!("arn:aws:s3:::{bucket}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_for_one_entry_make_exactly_one_backend_call() {
    let fx = fixture(true).await;
    let cache = Arc::new(DataKeyCache::new(long()));
    let entered = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (cache, backend, entered) = (Arc::clone(&cache), Arc::clone(&fx.backend), Arc::clone(&entered));
            tokio::spawn(async move {
                entered.fetch_add(1, Ordering::SeqCst);
                cache.bucket_key(backend.as_ref(), "k", "photos", &context("photos")).await.unwrap()
            })
        })
        .collect();
    // Hold the first backend call until every request is under way, so they all miss together.
    while entered.load(Ordering::SeqCst) < 100 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    fx.backend.gate.as_ref().unwrap().add_permits(1000);

    let mut keys = Vec::new();
    for task in tasks {
        keys.push(task.await.unwrap());
    }
    assert_eq!(fx.backend.generates(), 1);
    assert!(keys.iter().all(|key| Arc::ptr_eq(key, &keys[0])), "every request got the one bucket key");
    let stats = cache.stats().await;
    assert_eq!((stats.miss_count, stats.hit_count), (1, 99));
}

#[tokio::test]
async fn entries_are_per_key_bucket_and_context_and_counted() {
    let fx = fixture(false).await;
    let cache = DataKeyCache::new(long());
    let backend = fx.backend.as_ref();
    let first = cache.bucket_key(backend, "k", "photos", &context("photos")).await.unwrap();
    let again = cache.bucket_key(backend, "k", "photos", &context("photos")).await.unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    cache.bucket_key(backend, "k", "photos", &context("photos")).await.unwrap();
    assert_eq!(fx.backend.generates(), 1);

    let other_bucket = cache.bucket_key(backend, "k", "videos", &context("photos")).await.unwrap();
    let other_context = cache.bucket_key(backend, "k", "photos", &context("photos").with("x", "y")).await.unwrap();
    let other_key = cache.bucket_key(backend, "k2", "photos", &context("photos")).await.unwrap();
    assert_eq!(fx.backend.generates(), 4);
    for other in [&other_bucket, &other_context, &other_key] {
        assert_ne!(other.plaintext.as_bytes(), first.plaintext.as_bytes());
    }
    let stats = cache.stats().await;
    assert_eq!((stats.miss_count, stats.hit_count, stats.enabled), (4, 2, true));
    assert_eq!(stats.entry_count, 8, "4 bucket keys, each also on the read side");
}

#[tokio::test]
async fn reads_are_cached_by_blob_and_context() {
    let fx = fixture(false).await;
    let cache = DataKeyCache::new(long());
    let backend = fx.backend.as_ref();
    let written = fx.backend.inner.generate_data_key("k", &context("b")).await.unwrap();

    let opened = cache.unwrap_key(backend, &written.wrapped, &context("b")).await.unwrap();
    assert_eq!(opened.as_bytes(), written.plaintext.as_bytes());
    let again = cache.unwrap_key(backend, &written.wrapped, &context("b")).await.unwrap();
    assert!(Arc::ptr_eq(&opened, &again));
    assert_eq!(fx.backend.decrypts(), 1);

    // A wrong context is the backend's to refuse, every time: failures are never cached.
    for _ in 0..2 {
        let err = cache.unwrap_key(backend, &written.wrapped, &context("other")).await.unwrap_err();
        assert!(matches!(err, KmsError::InvalidCiphertext), "{err}");
    }
    assert_eq!(fx.backend.decrypts(), 3);

    // What the cache itself generated opens without a backend call.
    let bucket_key = cache.bucket_key(backend, "k", "b", &context("b")).await.unwrap();
    let read_back = cache.unwrap_key(backend, &bucket_key.wrapped, &context("b")).await.unwrap();
    assert_eq!(read_back.as_bytes(), bucket_key.plaintext.as_bytes());
    assert_eq!(fx.backend.decrypts(), 3);
    let stats = cache.stats().await;
    assert_eq!((stats.miss_count, stats.hit_count), (4, 2));
}

#[tokio::test]
async fn entries_expire_after_the_ttl() {
    let fx = fixture(false).await;
    let cache = DataKeyCache::new(settings(Duration::from_millis(100), 1000));
    let backend = fx.backend.as_ref();
    let first = cache.bucket_key(backend, "k", "b", &context("b")).await.unwrap();
    let opened = cache.unwrap_key(backend, &first.wrapped, &context("b")).await.unwrap();
    assert_eq!((fx.backend.generates(), fx.backend.decrypts()), (1, 0));
    drop(opened);

    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = cache.bucket_key(backend, "k", "b", &context("b")).await.unwrap();
    assert_ne!(second.plaintext.as_bytes(), first.plaintext.as_bytes());
    cache.unwrap_key(backend, &first.wrapped, &context("b")).await.unwrap();
    assert_eq!((fx.backend.generates(), fx.backend.decrypts()), (2, 1));
    let stats = cache.stats().await;
    assert!(stats.eviction_count >= 2, "{stats:?}");
}

#[tokio::test]
async fn a_bucket_key_serves_at_most_max_uses_requests() {
    let fx = fixture(false).await;
    let cache = DataKeyCache::new(settings(Duration::from_secs(300), 3));
    let mut keys = Vec::new();
    for _ in 0..7 {
        keys.push(cache.bucket_key(fx.backend.as_ref(), "k", "b", &context("b")).await.unwrap());
    }
    assert_eq!(fx.backend.generates(), 3);
    let batches: Vec<_> = keys.chunks(3).collect();
    for batch in &batches {
        assert!(batch.iter().all(|key| Arc::ptr_eq(key, &batch[0])));
    }
    assert!(!Arc::ptr_eq(&batches[0][0], &batches[1][0]) && !Arc::ptr_eq(&batches[1][0], &batches[2][0]));
    let stats = cache.stats().await;
    assert_eq!((stats.miss_count, stats.hit_count, stats.eviction_count), (3, 4, 0));
}

#[tokio::test]
async fn clearing_drops_every_key_and_nothing_else_holds_them() {
    let fx = fixture(false).await;
    let cache = DataKeyCache::new(long());
    let backend = fx.backend.as_ref();
    let bucket_key = cache.bucket_key(backend, "k", "b", &context("b")).await.unwrap();
    let written = fx.backend.inner.generate_data_key("k", &context("b")).await.unwrap();
    let unwrapped = cache.unwrap_key(backend, &written.wrapped, &context("b")).await.unwrap();
    let (bucket_key_weak, unwrapped_weak) = (Arc::downgrade(&bucket_key), Arc::downgrade(&unwrapped));
    drop((bucket_key, unwrapped));
    assert!(bucket_key_weak.upgrade().is_some() && unwrapped_weak.upgrade().is_some(), "cached");

    cache.clear().await;
    assert!(bucket_key_weak.upgrade().is_none(), "the bucket key was dropped (and so zeroized)");
    assert!(unwrapped_weak.upgrade().is_none(), "the unwrapped key was dropped (and so zeroized)");
    assert_eq!(cache.stats().await.entry_count, 0);

    cache.bucket_key(backend, "k", "b", &context("b")).await.unwrap();
    cache.unwrap_key(backend, &written.wrapped, &context("b")).await.unwrap();
    assert_eq!((fx.backend.generates(), fx.backend.decrypts()), (2, 2), "the next requests call the backend");
}

#[tokio::test]
async fn invalidating_a_key_stops_its_writes_and_reads_at_once() {
    let fx = fixture(false).await;
    let cache = DataKeyCache::new(long());
    let backend = fx.backend.as_ref();
    let bucket_key = cache.bucket_key(backend, "k", "b", &context("b")).await.unwrap();
    let kept = cache.bucket_key(backend, "k2", "b", &context("b")).await.unwrap();
    backend.disable_key("k").await.unwrap();
    cache.invalidate_key("k").await;

    let err = cache.bucket_key(backend, "k", "b", &context("b")).await.unwrap_err();
    assert!(matches!(err, KmsError::KeyDisabled(_)), "{err}");
    let err = cache.unwrap_key(backend, &bucket_key.wrapped, &context("b")).await.unwrap_err();
    assert!(matches!(err, KmsError::KeyDisabled(_)), "{err}");
    let still = cache.bucket_key(backend, "k2", "b", &context("b")).await.unwrap();
    assert!(Arc::ptr_eq(&still, &kept), "other keys stay cached");
}

#[tokio::test]
async fn invalidating_bucket_keys_after_rotation_moves_writes_to_the_new_version() {
    let fx = fixture(false).await;
    let cache = DataKeyCache::new(long());
    let backend = fx.backend.as_ref();
    let old = cache.bucket_key(backend, "k", "b", &context("b")).await.unwrap();
    backend.rotate_key("k").await.unwrap();
    cache.invalidate_bucket_keys("k").await;
    let new = cache.bucket_key(backend, "k", "b", &context("b")).await.unwrap();
    assert_eq!((old.key_version, new.key_version), (1, 2));
    cache.unwrap_key(backend, &old.wrapped, &context("b")).await.unwrap();
    assert_eq!(fx.backend.decrypts(), 0, "the old version's key is still cached for reads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_reach_every_waiter_and_are_not_cached() {
    let fx = fixture(false).await;
    let cache = Arc::new(DataKeyCache::new(long()));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (cache, backend) = (Arc::clone(&cache), Arc::clone(&fx.backend));
            tokio::spawn(async move { cache.bucket_key(backend.as_ref(), "missing", "b", &context("b")).await })
        })
        .collect();
    for task in tasks {
        assert!(matches!(task.await.unwrap(), Err(KmsError::KeyNotFound(id)) if id == "missing"));
    }
    let calls = fx.backend.generates();
    assert!((1..=20).contains(&calls));
    assert_eq!(cache.stats().await.miss_count, 20, "a request that got no key is a miss");
    assert!(cache.bucket_key(fx.backend.as_ref(), "missing", "b", &context("b")).await.is_err());
    assert_eq!(fx.backend.generates(), calls + 1);
    assert_eq!(cache.stats().await.entry_count, 0);
}

#[tokio::test]
async fn with_the_cache_off_every_request_calls_the_backend() {
    let fx = fixture(false).await;
    let cache = DataKeyCache::new(CacheSettings { enabled: false, ..long() });
    let backend = fx.backend.as_ref();
    let mut plaintexts = Vec::new();
    for _ in 0..3 {
        let key = cache.bucket_key(backend, "k", "b", &context("b")).await.unwrap();
        cache.unwrap_key(backend, &key.wrapped, &context("b")).await.unwrap();
        plaintexts.push(*key.plaintext.as_bytes());
    }
    assert_eq!((fx.backend.generates(), fx.backend.decrypts()), (3, 3));
    assert!(plaintexts[0] != plaintexts[1] && plaintexts[1] != plaintexts[2]);
    let stats = cache.stats().await;
    assert_eq!((stats.enabled, stats.hit_count, stats.miss_count, stats.entry_count), (false, 0, 0, 0));
    cache.clear().await;
}

#[test]
fn settings_follow_the_configuration_and_debug_shows_no_keys() {
    let config = CacheConfig { enabled: true, max_cached_keys: 7, ttl_seconds: 9, max_uses: 11 };
    let settings = CacheSettings::from(&config);
    assert_eq!(settings, CacheSettings { enabled: true, capacity: 7, ttl: Duration::from_secs(9), max_uses: 11 });
    let shown = format!("{:?}", DataKeyCache::new(settings));
    assert!(shown.starts_with("DataKeyCache"), "{shown}");
}

/// A key change lands while a backend call that saw the key as it was is still finishing: that call's answer serves
/// its own request, but is not cached past the invalidation that followed the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwrap_overtaken_by_an_invalidation_is_not_cached() {
    let fx = fixture_with(None, Some(Semaphore::new(0))).await;
    let cache = Arc::new(DataKeyCache::new(long()));
    let old = fx.backend.inner.generate_data_key("k", &context("b")).await.unwrap();
    fx.backend.inner.rotate_key("k").await.unwrap();
    let in_flight = {
        let (cache, backend, wrapped) = (Arc::clone(&cache), Arc::clone(&fx.backend), old.wrapped.clone());
        tokio::spawn(async move { cache.unwrap_key(backend.as_ref(), &wrapped, &context("b")).await })
    };
    while fx.backend.decrypts() == 0 {
        tokio::task::yield_now().await;
    }
    fx.backend.inner.set_min_decryption_version("k", 2).await.unwrap();
    cache.invalidate_key("k").await;
    fx.backend.decrypted_gate.as_ref().unwrap().add_permits(1000);
    assert_eq!(in_flight.await.unwrap().unwrap().as_bytes(), old.plaintext.as_bytes());

    let err = cache.unwrap_key(fx.backend.as_ref(), &old.wrapped, &context("b")).await.unwrap_err();
    assert!(matches!(err, KmsError::KeyVersionRetired { version: 1, .. }), "{err}");
    assert_eq!(fx.backend.decrypts(), 2, "the second read asked the backend");
}

//! What a rewrap job does to one object version: select it by its encryption, move it onto the target with a
//! compare-and-swap on the version it read, and say what happened. docs/rewrap.md is the user's side of this.
//!
//! Every version is resealed, current or not: an older version must stay readable once its old key is retired.
//! Plaintext is encrypted in the current version only (its data is rewritten, which a past version never is).

use coffer_admin_api::api::{ObjectMode, RewrapSpec, MAX_JOB_CONCURRENCY};
use coffer_admin_api::ObjectAdminError;
use coffer_kms::{validate_store_name, KeyOrigin, KmsError};
use coffer_sse::{ObjectEncryption, RewrapTarget, Rewrapped, SseError, SseMode};
use coffer_store::{ObjectMeta, StoreError};

use super::Outcome;
use crate::audit_log::{key_use, KeyAction, Requester};
use crate::checksum::ChecksumAlgorithm;
use crate::object_io::restage_object;
use crate::service::AppState;

/// How often one object is retried when clients keep replacing it between the job's read and its commit.
const MAX_ATTEMPTS: usize = 5;

/// A checked rewrap spec: the filters and the target, resolved once.
#[derive(Debug)]
pub(crate) struct RewrapPlan {
    from_store: Option<String>,
    /// `(store, key id)`.
    from_key: Option<(String, String)>,
    versions_below: Option<u32>,
    from_mode: Option<ObjectMode>,
    target: RewrapTarget,
    dry_run: bool,
    /// Whom the job's key uses are audited as: `job:ID`, with the job id as request id.
    requester: Requester,
}

impl RewrapPlan {
    /// The plan as job `id` runs it: its key uses are audited under the job's name.
    pub(crate) fn for_job(mut self, id: &str) -> Self {
        self.requester = Requester { request_id: id.to_owned(), access_key: format!("job:{id}") };
        self
    }

    /// Checks `spec` against the running KMS and the store; refuses what could never work, before any job exists.
    pub(crate) async fn check(state: &AppState, spec: &RewrapSpec) -> Result<(), ObjectAdminError> {
        Self::new(state, spec)?;
        for bucket in &spec.buckets {
            match state.store.head_bucket(bucket).await {
                Ok(_) => {}
                Err(StoreError::NoSuchBucket | StoreError::InvalidBucketName(_)) => {
                    return Err(invalid(format!("there is no bucket {bucket}")));
                }
                Err(e) => return Err(ObjectAdminError::Internal(e.to_string())),
            }
        }
        if let Some(store) = &spec.from.store {
            if !state.kms.store_names().contains(store) {
                return Err(invalid(format!("from.store: there is no KMS store {store}")));
            }
        }
        for (field, key) in [("from.key", &spec.from.key), ("to.key", &spec.to.key)] {
            let Some(key) = key else { continue };
            state.kms.describe_key(key).await.map_err(|err| match err {
                KmsError::KeyNotFound(_) | KmsError::StoreNotFound(_) => {
                    invalid(format!("{field}: there is no key {key}"))
                }
                other => other.into(),
            })?;
        }
        Ok(())
    }

    /// The plan of a spec: its fields checked and its key references resolved (no KMS call).
    pub(crate) fn new(state: &AppState, spec: &RewrapSpec) -> Result<Self, ObjectAdminError> {
        if !(1..=MAX_JOB_CONCURRENCY).contains(&spec.concurrency) {
            return Err(invalid(format!("concurrency must be 1 to {MAX_JOB_CONCURRENCY}")));
        }
        if spec.from.versions_below == Some(0) {
            return Err(invalid("from.versions_below must be at least 1"));
        }
        if let Some(store) = &spec.from.store {
            validate_store_name(store).map_err(|e| invalid(format!("from.store: {e}")))?;
        }
        let from_key = spec.from.key.as_deref().map(|key| state.kms.locate_key(key)).transpose()?;
        let mode = match spec.to.mode {
            None => None,
            Some(ObjectMode::SseS3) => Some(SseMode::SseS3),
            Some(ObjectMode::SseKms) => Some(SseMode::SseKms),
            Some(ObjectMode::Plaintext) => {
                return Err(invalid("to.mode is sse-s3 or sse-kms: a rewrap never decrypts objects"));
            }
        };
        Ok(Self {
            from_store: spec.from.store.clone(),
            from_key,
            versions_below: spec.from.versions_below,
            from_mode: spec.from.mode,
            target: RewrapTarget { key: spec.to.key.clone(), mode },
            dry_run: spec.dry_run,
            requester: Requester { request_id: "-".to_owned(), access_key: "job".to_owned() },
        })
    }

    /// Moves one object version (`None`: the current one), retrying while clients replace it between the read
    /// and the commit.
    pub(crate) async fn process(&self, state: &AppState, bucket: &str, key: &str, version: Option<&str>) -> Outcome {
        for _ in 0..MAX_ATTEMPTS {
            match self.attempt(state, bucket, key, version).await {
                Err(Attempt::Raced) => continue,
                Err(Attempt::Failed(reason)) => return Outcome::Failed(reason),
                Ok(outcome) => return outcome,
            }
        }
        Outcome::Failed(format!("the object was replaced {MAX_ATTEMPTS} times while the job tried to change it"))
    }

    async fn attempt(
        &self,
        state: &AppState,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<Outcome, Attempt> {
        let read = match version {
            Some(version) => state.store.head_version(bucket, key, version).await,
            None => state.store.head_object(bucket, key).await,
        };
        let meta = match read {
            Ok(meta) => meta,
            Err(StoreError::NoSuchKey | StoreError::NoSuchVersion | StoreError::NoSuchBucket) => {
                return Ok(Outcome::Unchanged)
            }
            Err(StoreError::DeleteMarker { .. }) => return Ok(Outcome::Skipped),
            Err(e) => return Err(Attempt::Failed(e.to_string())),
        };
        let stored = meta
            .encryption
            .as_ref()
            .map(|json| ObjectEncryption::from_json(json.get()))
            .transpose()
            .map_err(sse_failure)?;
        match stored {
            None => self.encrypt_plaintext(state, bucket, key, meta).await,
            Some(stored) if stored.mode() == SseMode::SseC => {
                Ok(if self.from_mode.is_some() { Outcome::Unchanged } else { Outcome::SkippedSseC })
            }
            Some(stored) => {
                let origin = state.sse.key_origin(&stored).map_err(sse_failure)?;
                if !self.selects(stored.mode(), origin.as_ref()) {
                    return Ok(Outcome::Unchanged);
                }
                let resealed = match state.sse.rewrap(bucket, key, &stored, &self.target).await {
                    Ok(Rewrapped::Unchanged) => return Ok(Outcome::Unchanged),
                    Ok(Rewrapped::Resealed(resealed)) => resealed,
                    Err(e) => {
                        let who = &self.requester;
                        key_use(who, KeyAction::Decrypt, bucket, key, origin.as_ref(), None, Some(e.code()));
                        return Err(sse_failure(e));
                    }
                };
                // The object key was opened under its old bucket key and sealed under the target's.
                let who = &self.requester;
                key_use(who, KeyAction::Decrypt, bucket, key, origin.as_ref(), None, None);
                let target = state.sse.key_origin(&resealed).ok().flatten();
                key_use(who, KeyAction::GenerateDataKey, bucket, key, target.as_ref(), None, None);
                let size = meta.size;
                if !self.dry_run {
                    let mut changed = meta.clone();
                    changed.encryption = Some(resealed.to_json().into());
                    state.store.update_object_meta(bucket, key, meta, changed).await.map_err(store_failure)?;
                }
                Ok(Outcome::Changed(size))
            }
        }
    }

    /// Whether an SSE-S3 or SSE-KMS object under `origin` matches every `from` filter.
    fn selects(&self, mode: SseMode, origin: Option<&KeyOrigin>) -> bool {
        let mode_matches = match self.from_mode {
            None => true,
            Some(ObjectMode::SseS3) => mode == SseMode::SseS3,
            Some(ObjectMode::SseKms) => mode == SseMode::SseKms,
            Some(ObjectMode::Plaintext) => false,
        };
        let Some(origin) = origin else { return false };
        mode_matches
            && self.from_store.as_ref().is_none_or(|store| *store == origin.store)
            && self.from_key.as_ref().is_none_or(|(store, key_id)| *store == origin.store && *key_id == origin.key_id)
            && self.versions_below.is_none_or(|below| origin.version < below)
    }

    /// Encrypts a plaintext object when the job targets a mode and selects plaintext: its data is rewritten (a copy
    /// onto itself) and committed only over the version that was read.
    async fn encrypt_plaintext(
        &self,
        state: &AppState,
        bucket: &str,
        key: &str,
        meta: ObjectMeta,
    ) -> Result<Outcome, Attempt> {
        let selected = self.target.mode.is_some()
            && self.from_mode.is_none_or(|mode| mode == ObjectMode::Plaintext)
            && self.from_store.is_none()
            && self.from_key.is_none()
            && self.versions_below.is_none();
        if !selected {
            return Ok(Outcome::Unchanged);
        }
        let size = meta.size;
        let reader = match state.store.open_object(bucket, key).await {
            Ok(reader) if *reader.meta() == meta => reader,
            // A past version (or one a client replaced since it was listed) keeps its data as written.
            Ok(reader) if reader.meta().version_id != meta.version_id => return Ok(Outcome::Unchanged),
            Ok(_) | Err(StoreError::NoSuchKey) => return Err(Attempt::Raced),
            Err(e) => return Err(Attempt::Failed(e.to_string())),
        };
        if self.dry_run {
            return Ok(Outcome::Changed(size));
        }
        let new = state.sse.encrypt_plaintext(bucket, key, &self.target).await.map_err(sse_failure)?;
        let origin = state.sse.key_origin(&new.encryption).ok().flatten();
        key_use(&self.requester, KeyAction::GenerateDataKey, bucket, key, origin.as_ref(), None, None);
        let algorithm = meta.checksum.as_ref().and_then(|checksum| ChecksumAlgorithm::from_name(&checksum.algorithm));
        let (file, encrypted, _) =
            restage_object(&state.store, key, reader, None, Some(new), algorithm, meta.headers.clone())
                .await
                .map_err(|e| Attempt::Failed(format!("{}: {}", e.code().as_str(), e.message().unwrap_or_default())))?;
        state.store.replace_object(bucket, key, file, encrypted, meta).await.map_err(store_failure)?;
        Ok(Outcome::Changed(size))
    }
}

/// Why one attempt at an object did not settle it.
enum Attempt {
    /// A client replaced or deleted the object after the job read it: read it again.
    Raced,
    Failed(String),
}

fn store_failure(err: StoreError) -> Attempt {
    match err {
        StoreError::Changed => Attempt::Raced,
        other => Attempt::Failed(other.to_string()),
    }
}

fn sse_failure(err: SseError) -> Attempt {
    Attempt::Failed(format!("{}: {}", err.code(), err.message()))
}

fn invalid(message: impl Into<String>) -> ObjectAdminError {
    ObjectAdminError::Invalid(message.into())
}

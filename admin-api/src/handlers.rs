//! What each admin endpoint does with the [`KmsManager`]: inputs (body, query, key id) are all checked before the
//! manager is called, so a refused request changes nothing; answers are the documents of [`crate::api`].

use std::sync::Arc;

use coffer_kms::{
    expiry_to_set, split_key_ref, BackendConfig, EncryptionContext, KmsConfig, KmsError, KmsManager, StoreStatus,
};
use http::StatusCode;
use serde::Serialize;

use crate::api::{
    BucketKeyInfo, JobList, KeyInfo, KeyList, KmsStatusInfo, MinioKeyInfo, MinioKeyStatus, StoreInfo, StoreList,
};
use crate::body::{
    parse_bucket_key, parse_create_key, parse_expiry, parse_kms_config, parse_min_decryption_version, parse_rewrap,
    parse_scrub, parse_store, ConfigBody,
};
use crate::error::ApiError;
use crate::objects::{ImpactScope, JobAction, ObjectAdmin};
use crate::query::Query;
use crate::routes::{self, Endpoint};
use crate::users::{UserAdmin, UserPolicy};

const DEFAULT_PAGE_SIZE: u32 = 100;
const MAX_PAGE_SIZE: u32 = 1000;
/// AWS KMS's default waiting period before a scheduled key deletion happens (the KMS enforces the allowed range).
const DEFAULT_PENDING_WINDOW_DAYS: u32 = 30;

/// Runs admin endpoints against one KMS manager and, for impact reports and jobs, the server's object side.
pub(crate) struct Handlers {
    kms: Arc<KmsManager>,
    objects: Option<Arc<dyn ObjectAdmin>>,
    users: Option<Arc<dyn UserAdmin>>,
}

/// One resolved admin request: the endpoint, the key it is about, query and body.
pub(crate) struct Call<'a> {
    pub endpoint: Endpoint,
    /// The path's `{…}` segment (a key id, store or bucket); after [`Handlers::handle`], what the call was about
    /// (also a created key's id, whether given in the body or the query or generated), for the audit line.
    pub subject: Option<String>,
    pub query: Query,
    pub body: &'a [u8],
}

impl Handlers {
    pub fn new(kms: Arc<KmsManager>) -> Self {
        Self { kms, objects: None, users: None }
    }

    pub fn set_objects(&mut self, objects: Arc<dyn ObjectAdmin>) {
        self.objects = Some(objects);
    }

    pub fn set_users(&mut self, users: Arc<dyn UserAdmin>) {
        self.users = Some(users);
    }

    fn users(&self) -> Result<&dyn UserAdmin, ApiError> {
        self.users.as_deref().ok_or_else(|| {
            ApiError::new(StatusCode::NOT_IMPLEMENTED, "NotImplemented", "this server has no user side mounted")
        })
    }

    fn objects(&self) -> Result<&dyn ObjectAdmin, ApiError> {
        self.objects.as_deref().ok_or_else(|| {
            ApiError::new(StatusCode::NOT_IMPLEMENTED, "NotImplemented", "this server has no object side mounted")
        })
    }

    /// A configure body, with the secrets it shows redacted (`***`) taken from the configuration in force.
    /// The flat RustFS document acts on the default store and the global settings; the other stores, and the
    /// per-bucket keys, stay.
    fn parse_config(&self, body: &[u8]) -> Result<KmsConfig, ApiError> {
        let current = self.kms.saved_config().ok().flatten();
        let mut config = match (parse_kms_config(body)?, &current) {
            (ConfigBody::Flat(flat), Some(current)) => {
                let mut merged = current.clone();
                merged.set_default_backend(flat.default_backend().clone());
                KmsConfig {
                    default_key_id: flat.default_key_id,
                    timeout_seconds: flat.timeout_seconds,
                    retry_attempts: flat.retry_attempts,
                    cache: flat.cache,
                    ..merged
                }
            }
            (ConfigBody::Flat(config) | ConfigBody::Document(config), _) => config,
        };
        config.restore_redacted(current.as_ref())?;
        Ok(config)
    }

    /// Runs one call; the serialized JSON answer on success.
    pub async fn handle(&self, call: &mut Call<'_>) -> Result<Vec<u8>, ApiError> {
        let (endpoint, body) = (call.endpoint, call.body);
        let mut query = std::mem::take(&mut call.query);
        let takes_body = matches!(
            endpoint,
            Endpoint::Configure
                | Endpoint::Reconfigure
                | Endpoint::CreateKey
                | Endpoint::SetKeyExpiry
                | Endpoint::SetKeyMinDecryptionVersion
                | Endpoint::AddStore
                | Endpoint::UpdateStore
                | Endpoint::SetBucketKey
                | Endpoint::StartRewrap
                | Endpoint::PutUserPolicy
                | Endpoint::StartScrub
        );
        if !takes_body && !body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request(
                "UnexpectedBody",
                "this endpoint takes no request body; its parameters go in the query string",
            ));
        }
        if routes::subject_is_key(endpoint) {
            if let Some(store) = query.string("store") {
                let key_id = call.subject.take().unwrap_or_default();
                call.subject = Some(format!("{store}/{key_id}"));
            }
        }
        let path_key = call.subject.clone().unwrap_or_default();
        match endpoint {
            Endpoint::Configure => {
                let config = self.parse_config(body)?;
                query.finish()?;
                self.kms.configure(config).await.map_err(|err| match err {
                    KmsError::WrongState { .. } => {
                        let mut api = ApiError::from(err);
                        api.message.push_str("; stop the KMS first, or use reconfigure to change a running KMS");
                        api
                    }
                    other => other.into(),
                })?;
                self.status().await
            }
            Endpoint::Reconfigure => {
                let config = self.parse_config(body)?;
                query.finish()?;
                self.kms.reconfigure(config).await?;
                self.status().await
            }
            Endpoint::Start => {
                query.finish()?;
                self.kms.start().await?;
                self.status().await
            }
            Endpoint::Stop => {
                query.finish()?;
                self.kms.stop().await?;
                self.status().await
            }
            Endpoint::Status => {
                query.finish()?;
                self.status().await
            }
            Endpoint::Config => {
                query.finish()?;
                Ok(json(self.kms.config().ok_or(KmsError::NotConfigured)?))
            }
            Endpoint::ClearCache => {
                let store = query.string("store");
                query.finish()?;
                self.kms.clear_cache(store.as_deref()).await?;
                self.status().await
            }
            Endpoint::ListStores => {
                query.finish()?;
                let status = self.kms.status().await;
                let config = self.kms.saved_config().ok().flatten();
                let stores = status.stores.into_iter().map(|store| store_info(store, config.as_ref())).collect();
                Ok(json(StoreList { default_store: status.default_store, stores }))
            }
            Endpoint::DescribeStore => {
                query.finish()?;
                Ok(json(self.describe_store(&path_key).await?))
            }
            Endpoint::AddStore => {
                let backend = parse_store(body)?;
                query.finish()?;
                self.kms.add_store(&path_key, backend).await?;
                Ok(json(self.describe_store(&path_key).await?))
            }
            Endpoint::UpdateStore => {
                let backend = parse_store(body)?;
                query.finish()?;
                self.kms.update_store(&path_key, backend).await?;
                Ok(json(self.describe_store(&path_key).await?))
            }
            Endpoint::RemoveStore => {
                query.finish()?;
                self.check_unused(&path_key).await?;
                self.kms.remove_store(&path_key).await?;
                self.status().await
            }
            Endpoint::SetDefaultStore => {
                query.finish()?;
                self.kms.set_default_store(&path_key).await?;
                self.status().await
            }
            Endpoint::ClearStoreCache => {
                query.finish()?;
                self.kms.clear_cache(Some(&path_key)).await?;
                Ok(json(self.describe_store(&path_key).await?))
            }
            Endpoint::GetBucketKey => {
                query.finish()?;
                Ok(json(self.bucket_key(&path_key)?))
            }
            Endpoint::SetBucketKey => {
                let key_id = parse_bucket_key(body)?;
                query.finish()?;
                self.kms.set_bucket_key(&path_key, &key_id).await?;
                Ok(json(self.bucket_key(&path_key)?))
            }
            Endpoint::UnsetBucketKey => {
                query.finish()?;
                self.kms.unset_bucket_key(&path_key).await?;
                Ok(json(self.bucket_key(&path_key)?))
            }
            Endpoint::CreateKey => {
                let request = parse_create_key(body)?;
                query.finish()?;
                call.subject.clone_from(&request.key_id);
                // Checked before the key is made, so a refused expiry creates nothing.
                expiry_to_set(request.expires_at)?;
                let mut key = self.kms.create_key(request.key_id.as_deref(), request.description.as_deref()).await?;
                call.subject = Some(key.key_id.clone());
                if request.expires_at.is_some() {
                    key = self.kms.set_key_expiry(&key.key_id, request.expires_at).await?;
                }
                Ok(json(KeyInfo::from(key)))
            }
            Endpoint::ListKeys => {
                let limit = query.integer("limit", 1..=MAX_PAGE_SIZE)?.unwrap_or(DEFAULT_PAGE_SIZE);
                let marker = query.string("marker");
                let store = query.string("store");
                query.finish()?;
                let page = self.kms.list_keys(store.as_deref(), limit as usize, marker.as_deref()).await?;
                let keys = page.keys.into_iter().map(KeyInfo::from).collect();
                Ok(json(KeyList { keys, next_marker: page.next_marker }))
            }
            Endpoint::DescribeKey => {
                query.finish()?;
                Ok(json(KeyInfo::from(self.kms.describe_key(&path_key).await?)))
            }
            Endpoint::RotateKey => {
                query.finish()?;
                Ok(json(KeyInfo::from(self.kms.rotate_key(&path_key).await?)))
            }
            Endpoint::EnableKey => {
                query.finish()?;
                Ok(json(KeyInfo::from(self.kms.enable_key(&path_key).await?)))
            }
            Endpoint::DisableKey => {
                query.finish()?;
                Ok(json(KeyInfo::from(self.kms.disable_key(&path_key).await?)))
            }
            Endpoint::DeleteKey => {
                let days = query.integer("pending_window_days", 0..=u32::MAX)?.unwrap_or(DEFAULT_PENDING_WINDOW_DAYS);
                query.finish()?;
                Ok(json(KeyInfo::from(self.kms.schedule_deletion(&path_key, days).await?)))
            }
            Endpoint::SetKeyExpiry => {
                let expires_at = parse_expiry(body)?;
                query.finish()?;
                Ok(json(KeyInfo::from(self.kms.set_key_expiry(&path_key, expires_at).await?)))
            }
            Endpoint::SetKeyMinDecryptionVersion => {
                let version = parse_min_decryption_version(body)?;
                let force = query.flag("force")?;
                query.finish()?;
                if !force {
                    self.check_versions_unused(&path_key, version).await?;
                }
                Ok(json(KeyInfo::from(self.kms.set_min_decryption_version(&path_key, version).await?)))
            }
            Endpoint::CancelKeyDeletion => {
                query.finish()?;
                Ok(json(KeyInfo::from(self.kms.cancel_deletion(&path_key).await?)))
            }
            Endpoint::KeyImpact => {
                query.finish()?;
                Ok(json(self.objects()?.impact(&ImpactScope::Key(path_key)).await?))
            }
            Endpoint::StoreImpact => {
                query.finish()?;
                Ok(json(self.objects()?.impact(&ImpactScope::Store(path_key)).await?))
            }
            Endpoint::StartRewrap => {
                let spec = parse_rewrap(body)?;
                query.finish()?;
                let job = self.objects()?.start_rewrap(spec).await?;
                call.subject = Some(job.id.clone());
                Ok(json(job))
            }
            Endpoint::StartScrub => {
                let spec = parse_scrub(body)?;
                query.finish()?;
                let job = self.objects()?.start_scrub(spec).await?;
                call.subject = Some(job.id.clone());
                Ok(json(job))
            }
            Endpoint::ListJobs => {
                query.finish()?;
                Ok(json(JobList { jobs: self.objects()?.jobs().await }))
            }
            Endpoint::DescribeJob => {
                query.finish()?;
                Ok(json(self.objects()?.job(&path_key).await?))
            }
            Endpoint::PauseJob | Endpoint::ResumeJob | Endpoint::CancelJob => {
                query.finish()?;
                let action = match endpoint {
                    Endpoint::PauseJob => JobAction::Pause,
                    Endpoint::ResumeJob => JobAction::Resume,
                    _ => JobAction::Cancel,
                };
                Ok(json(self.objects()?.control_job(&path_key, action).await?))
            }
            Endpoint::GetUserPolicy => {
                query.finish()?;
                let policy = self.users()?.user_policy(&path_key).await?;
                Ok(user_policy(path_key, Some(policy)))
            }
            Endpoint::PutUserPolicy => {
                query.finish()?;
                let policy = std::str::from_utf8(body)
                    .map_err(|_| ApiError::bad_request("MalformedPolicy", "the policy document is not UTF-8"))?;
                self.users()?.put_user_policy(&path_key, policy).await?;
                Ok(user_policy(path_key, Some(policy.to_owned())))
            }
            Endpoint::DeleteUserPolicy => {
                query.finish()?;
                self.users()?.delete_user_policy(&path_key).await?;
                Ok(user_policy(path_key, None))
            }
            Endpoint::MinioCreateKey => {
                let key_id = query.required_string("key-id")?;
                query.finish()?;
                call.subject = Some(key_id.clone());
                Ok(json(KeyInfo::from(self.kms.create_key(Some(&key_id), None).await?)))
            }
            Endpoint::MinioKeyStatus => {
                let key_id = query.required_string("key-id")?;
                query.finish()?;
                call.subject = Some(key_id.clone());
                self.check_round_trip(&key_id).await?;
                Ok(json(MinioKeyStatus { key_id }))
            }
            Endpoint::MinioListKeys => {
                let pattern = query.string("pattern").unwrap_or_else(|| "*".to_owned());
                query.finish()?;
                Ok(json(self.all_keys_matching(&pattern).await?))
            }
        }
    }

    /// A store's health and configuration (secrets as `***`).
    async fn describe_store(&self, name: &str) -> Result<StoreInfo, ApiError> {
        let status = self.kms.status().await;
        let store = status.stores.into_iter().find(|store| store.name == name);
        match store {
            Some(store) => Ok(store_info(store, self.kms.saved_config().ok().flatten().as_ref())),
            // Not running: the configuration alone says whether the store exists.
            None => {
                let config = self.kms.saved_config()?.ok_or(KmsError::NotConfigured)?;
                let backend = config.stores.get(name).ok_or_else(|| KmsError::StoreNotFound(name.to_owned()))?;
                Ok(StoreInfo {
                    name: name.to_owned(),
                    backend_type: backend.kind().as_str().to_owned(),
                    default: config.default_store == name,
                    healthy: false,
                    reason: Some(KmsError::NotRunning.to_string()),
                    cached_keys: 0,
                    config: Some(backend.redacted()),
                })
            }
        }
    }

    /// Refuses to remove a store objects still need (their data could never be read again).
    async fn check_unused(&self, store: &str) -> Result<(), ApiError> {
        let Some(objects) = &self.objects else {
            return Ok(());
        };
        let report = objects.impact(&ImpactScope::Store(store.to_owned())).await?;
        if report.objects == 0 {
            return Ok(());
        }
        let buckets: Vec<&str> = report.buckets.iter().map(|usage| usage.bucket.as_str()).collect();
        Err(KmsError::StoreInUse(format!(
            "{} objects ({} bytes) in {} still need KMS store {store}; rewrap them onto another store first \
             (docs/rewrap.md)",
            report.objects,
            report.bytes,
            buckets.join(", ")
        ))
        .into())
    }

    /// Refuses to retire key versions objects still need (unless forced): their reads would fail until the
    /// minimum is lowered again.
    async fn check_versions_unused(&self, key_ref: &str, min_version: u32) -> Result<(), ApiError> {
        let Some(objects) = &self.objects else {
            return Ok(());
        };
        if !(1..=self.kms.describe_key(key_ref).await?.current_version).contains(&min_version) {
            // Out of range: the KMS refuses it with the reason.
            return Ok(());
        }
        let report = objects.impact(&ImpactScope::Key(key_ref.to_owned())).await?;
        let below = report.versions.unwrap_or_default().into_iter().filter(|count| count.version < min_version);
        let (count, bytes) =
            below.fold((0, 0), |(count, bytes), version| (count + version.objects, bytes + version.bytes));
        if count == 0 {
            return Ok(());
        }
        let message = format!(
            "{count} objects ({bytes} bytes) still need versions below {min_version} of key {key_ref}; rewrap them \
             first (coffer admin kms rewrap --from-key {key_ref} --from-versions-below {min_version}), or retire the \
             versions anyway with force=true"
        );
        Err(ApiError::new(StatusCode::CONFLICT, "KeyVersionInUse", message))
    }

    fn bucket_key(&self, bucket: &str) -> Result<BucketKeyInfo, ApiError> {
        let own = self.kms.bucket_key_ref(bucket);
        let key_id = match &own {
            Some(key_id) => key_id.clone(),
            None => self.kms.default_key_id().ok_or(KmsError::NotConfigured)?,
        };
        Ok(BucketKeyInfo { bucket: bucket.to_owned(), key_id, own: own.is_some() })
    }

    async fn status(&self) -> Result<Vec<u8>, ApiError> {
        Ok(json(KmsStatusInfo::from(self.kms.status().await)))
    }

    /// MinIO's key status: the key makes a data key and opens it again (AEAD: opening proves it is the same key).
    /// Straight through the backend, not the cache: the point is to exercise the key now.
    async fn check_round_trip(&self, key_ref: &str) -> Result<(), ApiError> {
        let (store, key_id) = split_key_ref(key_ref);
        let backend = self.kms.backend(store)?;
        let context = EncryptionContext::new().with("coffer-admin", "key-status");
        let data_key = backend.generate_data_key(key_id, &context).await?;
        backend.decrypt_data_key(&data_key.wrapped, &context).await?;
        Ok(())
    }

    async fn all_keys_matching(&self, pattern: &str) -> Result<Vec<MinioKeyInfo>, ApiError> {
        let mut matching = Vec::new();
        let mut marker = None;
        loop {
            let page = self.kms.list_keys(None, MAX_PAGE_SIZE as usize, marker.as_deref()).await?;
            matching.extend(page.keys.into_iter().filter(|key| glob_match(pattern, &key.key_id)).map(|key| {
                let key = KeyInfo::from(key);
                MinioKeyInfo { name: key.key_id, created_at: key.created_at }
            }));
            match page.next_marker {
                Some(next) => marker = Some(next),
                None => return Ok(matching),
            }
        }
    }
}

/// Serialized straight from the typed document, so fields keep their declared order (`status` first, …).
/// The answer of the user-policy endpoints. A stored policy was checked as JSON when attached.
fn user_policy(user: String, policy: Option<String>) -> Vec<u8> {
    let policy = policy.and_then(|text| serde_json::value::RawValue::from_string(text).ok());
    json(UserPolicy { user, policy })
}

fn json(document: impl Serialize) -> Vec<u8> {
    serde_json::to_vec(&document).expect("API documents always serialize")
}

/// MinIO's key-list patterns: `*` matches any run of characters, everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let middle_and_last: Vec<&str> = parts.collect();
    let Some((last, middle)) = middle_and_last.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// A store's status with its configuration (secrets as `***`) from `config`.
fn store_info(store: StoreStatus, config: Option<&KmsConfig>) -> StoreInfo {
    let shown = config.and_then(|config| config.stores.get(&store.name).map(BackendConfig::redacted));
    StoreInfo { config: shown, ..StoreInfo::from(store) }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn glob_patterns_match_like_minio() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("*", ""));
        assert!(glob_match("app-*", "app-1"));
        assert!(!glob_match("app-*", "web-1"));
        assert!(glob_match("*-prod", "db-prod"));
        assert!(glob_match("a*b*c", "a-x-b-y-c"));
        assert!(!glob_match("a*b*c", "a-x-c"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(!glob_match("ab*ba", "aba"));
    }
}

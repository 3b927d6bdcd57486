//! The object path's entry point: the server holds one [`SseService`] and asks it for object keys.
//!
//! Writes: [`SseService::start_object`] makes a fresh object key and seals it under the outer key of the decision
//! (KMS bucket key or customer key); the result is the metadata to store and the [`ObjectCipher`] to encrypt parts
//! with. Reads and UploadPart: [`SseService::open_object`] / [`SseService::open_upload`] check the customer key
//! and unseal the object key. Self-copy with a new key: [`SseService::reseal`] seals the same object key under a new
//! outer key, so only metadata changes.
//!
//! KMS bucket keys are requested per (key, bucket, encryption context) and cached by the KMS manager; the context
//! always carries `coffer:bucket`, so a bucket key (and every object key sealed under it) is bound to its bucket.

use std::sync::Arc;

use coffer_kms::{
    split_key_ref, validate_key_id, validate_store_name, DataKey, EncryptionContext, KeyMaterial, KeyOrigin, KmsError,
    KmsManager, WrappedKey, MAX_KEY_ID_LEN,
};

use crate::error::{Result, SseError};
use crate::headers::{
    authorize_read, authorize_upload_part, kms_lookup_id, CustomerKey, KmsContext, KmsRequest, WriteEncryption,
    RESERVED_CONTEXT_PREFIX,
};
use crate::keys::{ObjectKey, SealBinding, KEY_LEN};
use crate::metadata::{ObjectEncryption, Scheme, SseMode};
use crate::package::ObjectCipher;

/// Encrypts and opens objects with keys from the KMS (SSE-S3, SSE-KMS) or the client (SSE-C).
pub struct SseService {
    kms: Arc<KmsManager>,
}

/// A new object (or multipart upload): the metadata to store and the cipher to encrypt its parts with.
#[derive(Debug)]
pub struct NewObject {
    pub encryption: ObjectEncryption,
    pub cipher: ObjectCipher,
}

impl SseService {
    pub fn new(kms: Arc<KmsManager>) -> Self {
        Self { kms }
    }

    /// PutObject, CreateMultipartUpload, CopyObject to another object: a fresh object key sealed as `encryption`
    /// says. `None` when the decision is to store plaintext. KMS errors come back as their S3 answers
    /// (`KMS.NotFoundException`, `KMS.DisabledException`, 503 when the KMS is down).
    pub async fn start_object(
        &self,
        bucket: &str,
        key: &str,
        encryption: &WriteEncryption,
    ) -> Result<Option<NewObject>> {
        let object_key = ObjectKey::generate();
        let Some(encryption) = self.seal(bucket, key, &object_key, encryption).await? else {
            return Ok(None);
        };
        Ok(Some(NewObject { cipher: ObjectCipher::new(object_key, encryption.mode(), None), encryption }))
    }

    /// Checks a KMS key that is named now and used later (PutBucketEncryption's `KMSMasterKeyID`), so a
    /// configuration every later write would fail on is refused up front: the id must be in a form the object path
    /// accepts (a key id or key ARN, resolved by [`kms_lookup_id`]) and name a key the running KMS has. A disabled key
    /// or one pending deletion exists and passes: it can be enabled again. Answers: a malformed id `InvalidArgument`,
    /// an unknown key `KMS.NotFoundException` (as a write naming it), a KMS that is not running 503.
    pub async fn check_kms_key(&self, named: &str) -> Result<()> {
        let key_ref = kms_lookup_id(named);
        let (store, key_id) = split_key_ref(key_ref);
        let well_formed =
            validate_key_id(key_id).is_ok() && store.is_none_or(|store| validate_store_name(store).is_ok());
        if !well_formed {
            return Err(SseError::invalid_argument(format!(
                "The KMS key id must be a key id of 1 to {MAX_KEY_ID_LEN} letters, digits, '-', '_' or '.' (starting \
                 with a letter or digit), `store/key` for a key of another KMS store, or the ARN of such a key"
            )));
        }
        self.kms.describe_key(key_ref).await?;
        Ok(())
    }

    /// GetObject, copy source, UploadPartCopy source: checks the customer key against the object
    /// ([`authorize_read`]) and opens the object key.
    pub async fn open_object(
        &self,
        bucket: &str,
        key: &str,
        stored: &ObjectEncryption,
        customer_key: Option<&CustomerKey>,
    ) -> Result<ObjectCipher> {
        authorize_read(Some(stored), customer_key)?;
        self.unseal(bucket, key, stored, customer_key).await
    }

    /// UploadPart, UploadPartCopy destination: checks the customer key against the upload
    /// ([`authorize_upload_part`]) and opens the upload's object key.
    pub async fn open_upload(
        &self,
        bucket: &str,
        key: &str,
        upload: &ObjectEncryption,
        customer_key: Option<&CustomerKey>,
    ) -> Result<ObjectCipher> {
        authorize_upload_part(Some(upload), customer_key)?;
        self.unseal(bucket, key, upload, customer_key).await
    }

    /// CopyObject onto itself with new encryption (new SSE-C key, another KMS key or mode), or a rewrap after KMS
    /// key rotation: the same object key under a new outer key. Only the object-level metadata changes; the data,
    /// the part metadata and the ETag stay. Both sides must be encrypted: copying between plaintext and encrypted
    /// rewrites the data through `start_object` instead.
    pub async fn reseal(
        &self,
        bucket: &str,
        key: &str,
        stored: &ObjectEncryption,
        customer_key: Option<&CustomerKey>,
        new: &WriteEncryption,
    ) -> Result<ObjectEncryption> {
        let cipher = self.open_object(bucket, key, stored, customer_key).await?;
        let resealed = self
            .seal(bucket, key, cipher.object_key(), new)
            .await?
            .ok_or_else(|| SseError::internal("A metadata-only re-encryption needs an encrypted destination"))?;
        Ok(resealed.keeping_part_list_of(stored))
    }

    async fn seal(
        &self,
        bucket: &str,
        key: &str,
        object_key: &ObjectKey,
        encryption: &WriteEncryption,
    ) -> Result<Option<ObjectEncryption>> {
        let sealed = match encryption {
            WriteEncryption::None => return Ok(None),
            WriteEncryption::SseS3 => {
                let key_ref = self.default_key_for(bucket)?;
                self.seal_under_kms(bucket, key, object_key, &KmsSeal::SseS3 { key_ref: &key_ref }).await?
            }
            WriteEncryption::SseKms(KmsRequest { key_id, context, bucket_key_enabled }) => {
                let key_id = match key_id {
                    Some(named) => named.clone(),
                    None => self.default_key_for(bucket)?,
                };
                let seal = KmsSeal::SseKms {
                    key_id: &key_id,
                    lookup: kms_lookup_id(&key_id),
                    context: context.as_ref(),
                    bucket_key_enabled: *bucket_key_enabled,
                };
                self.seal_under_kms(bucket, key, object_key, &seal).await?
            }
            WriteEncryption::SseC(customer) => {
                let sealed = object_key.seal(customer.key(), SealBinding { bucket, key, mode: SseMode::SseC });
                ObjectEncryption::new(Scheme::SseC { key_md5: *customer.md5() }, sealed)
            }
        };
        Ok(Some(sealed))
    }

    /// Seals `object_key` under the current bucket key of a KMS key.
    async fn seal_under_kms(
        &self,
        bucket: &str,
        key: &str,
        object_key: &ObjectKey,
        seal: &KmsSeal<'_>,
    ) -> Result<ObjectEncryption> {
        let data_key = self.kms_bucket_key(bucket, seal).await?;
        Ok(seal_with(bucket, key, object_key, seal, &data_key))
    }

    async fn kms_bucket_key(&self, bucket: &str, seal: &KmsSeal<'_>) -> Result<Arc<DataKey>> {
        let (key_ref, context) = match seal {
            KmsSeal::SseS3 { key_ref } => (*key_ref, sse_s3_context(bucket)),
            KmsSeal::SseKms { lookup, context, .. } => (*lookup, sse_kms_context(bucket, *context)),
        };
        Ok(self.kms.bucket_key(key_ref, bucket, &context).await?)
    }

    /// The store, key and key version an object's outer key was wrapped by; `None` for SSE-C (no KMS key). Reads
    /// only the metadata: no KMS call.
    pub fn key_origin(&self, stored: &ObjectEncryption) -> Result<Option<KeyOrigin>> {
        let wrapped_key = match stored.scheme() {
            Scheme::SseS3 { wrapped_key } | Scheme::SseKms { wrapped_key, .. } => wrapped_key,
            Scheme::SseC { .. } => return Ok(None),
        };
        let wrapped = WrappedKey::from_base64(wrapped_key).map_err(|_| corrupted())?;
        Ok(Some(self.kms.key_origin(&wrapped)?))
    }

    /// Moves an SSE-S3 or SSE-KMS object onto `target` (docs/rewrap.md): the same object key, sealed under the
    /// target's current bucket key. `Unchanged` when the object is already under the newest version of the target
    /// key in the target mode. The data, part metadata and ETag stay valid.
    pub async fn rewrap(
        &self,
        bucket: &str,
        key: &str,
        stored: &ObjectEncryption,
        target: &RewrapTarget,
    ) -> Result<Rewrapped> {
        let mode = target.mode.unwrap_or(stored.mode());
        let (kept_key_id, kept_context) = match stored.scheme() {
            Scheme::SseKms { key_id, context, .. } => (Some(key_id.as_str()), context.as_deref()),
            Scheme::SseS3 { .. } => (None, None),
            Scheme::SseC { .. } => return Err(SseError::invalid_argument("SSE-C objects cannot be rewrapped")),
        };
        let origin = self.key_origin(stored)?;
        let (default_key, own_key);
        // What the metadata records, and the key to seal under: an SSE-KMS object's own key is found by its origin,
        // not by its recorded name (a bare name follows the default store, which may have changed since).
        let (recorded, lookup) = match (&target.key, mode, kept_key_id, &origin) {
            (Some(named), ..) => (named.as_str(), kms_lookup_id(named)),
            (None, SseMode::SseKms, Some(kept), Some(origin)) => {
                own_key = format!("{}/{}", origin.store, origin.key_id);
                (kept, own_key.as_str())
            }
            _ => {
                default_key = self.default_key_for(bucket)?;
                (default_key.as_str(), kms_lookup_id(&default_key))
            }
        };
        let context = match (mode, kept_context) {
            (SseMode::SseKms, Some(header)) => Some(KmsContext::parse(header).map_err(|_| corrupted())?),
            _ => None,
        };
        let seal = match mode {
            SseMode::SseS3 => KmsSeal::SseS3 { key_ref: lookup },
            SseMode::SseKms => KmsSeal::SseKms {
                key_id: recorded,
                lookup,
                context: context.as_ref(),
                bucket_key_enabled: matches!(stored.scheme(), Scheme::SseKms { bucket_key_enabled: true, .. }),
            },
            SseMode::SseC => return Err(SseError::invalid_argument("a rewrap targets SSE-S3 or SSE-KMS")),
        };
        let data_key = self.kms_bucket_key(bucket, &seal).await?;
        let same_key = origin == Some(self.kms.key_origin(&data_key.wrapped)?);
        // SSE-S3 records no key name; SSE-KMS records the name the target gives.
        let same_name = mode == SseMode::SseS3 || kept_key_id == Some(recorded);
        if same_key && mode == stored.mode() && same_name {
            return Ok(Rewrapped::Unchanged);
        }
        let cipher = self.unseal(bucket, key, stored, None).await?;
        let resealed = seal_with(bucket, key, cipher.object_key(), &seal, &data_key).keeping_part_list_of(stored);
        Ok(Rewrapped::Resealed(resealed))
    }

    /// A fresh object key for a plaintext object a rewrap encrypts, sealed as `target` says (`target.mode` must
    /// be SSE-S3 or SSE-KMS; the key defaults to the bucket's key, as for a new write).
    pub async fn encrypt_plaintext(&self, bucket: &str, key: &str, target: &RewrapTarget) -> Result<NewObject> {
        let default_key;
        let key_ref = match &target.key {
            Some(named) => named.as_str(),
            None => {
                default_key = self.default_key_for(bucket)?;
                &default_key
            }
        };
        let seal = match target.mode {
            Some(SseMode::SseS3) => KmsSeal::SseS3 { key_ref: kms_lookup_id(key_ref) },
            Some(SseMode::SseKms) => KmsSeal::SseKms {
                key_id: key_ref,
                lookup: kms_lookup_id(key_ref),
                context: None,
                bucket_key_enabled: false,
            },
            _ => {
                return Err(SseError::invalid_argument(
                    "encrypting a plaintext object needs an SSE-S3 or SSE-KMS target",
                ))
            }
        };
        let object_key = ObjectKey::generate();
        let encryption = self.seal_under_kms(bucket, key, &object_key, &seal).await?;
        Ok(NewObject { cipher: ObjectCipher::new(object_key, encryption.mode(), None), encryption })
    }

    async fn unseal(
        &self,
        bucket: &str,
        key: &str,
        stored: &ObjectEncryption,
        customer_key: Option<&CustomerKey>,
    ) -> Result<ObjectCipher> {
        let mode = stored.mode();
        let outer: OuterKey = match stored.scheme() {
            Scheme::SseS3 { wrapped_key } => OuterKey::Kms(self.unwrap(wrapped_key, &sse_s3_context(bucket)).await?),
            Scheme::SseKms { wrapped_key, context, .. } => {
                let context = context.as_deref().map(KmsContext::parse).transpose().map_err(|_| corrupted())?;
                OuterKey::Kms(self.unwrap(wrapped_key, &sse_kms_context(bucket, context.as_ref())).await?)
            }
            // Callers authorized the key first, so it is present and its MD5 matches.
            Scheme::SseC { .. } => OuterKey::Customer(
                customer_key.ok_or_else(|| SseError::internal("An SSE-C object was opened without its key"))?,
            ),
        };
        let object_key = ObjectKey::unseal(outer.bytes(), stored.sealed_key(), SealBinding { bucket, key, mode })
            .ok_or_else(corrupted)?;
        Ok(ObjectCipher::new(object_key, mode, stored.part_list().cloned()))
    }

    async fn unwrap(&self, wrapped_key: &str, context: &EncryptionContext) -> Result<Arc<KeyMaterial>> {
        let wrapped = WrappedKey::from_base64(wrapped_key).map_err(|_| corrupted())?;
        Ok(self.kms.unwrap_key(&wrapped, context).await?)
    }

    /// The bucket's own key if it has one, else the default key (`store/key` or `key` in the default store).
    fn default_key_for(&self, bucket: &str) -> Result<String> {
        self.kms.default_key_for(bucket).ok_or_else(|| SseError::from(KmsError::NotConfigured))
    }
}

/// Where a rewrap moves objects: `key` (`store/key` or `key`; default: the object's own SSE-KMS key, else the
/// bucket's key) and `mode` (SSE-S3 or SSE-KMS; default: the object's mode).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RewrapTarget {
    pub key: Option<String>,
    pub mode: Option<SseMode>,
}

/// What [`SseService::rewrap`] decided for one object.
#[derive(Debug)]
pub enum Rewrapped {
    /// Already under the target: nothing to write.
    Unchanged,
    /// The object-level encryption metadata to store instead of the old one.
    Resealed(ObjectEncryption),
}

/// A KMS bucket key to seal under, and what the metadata records of it.
enum KmsSeal<'a> {
    /// SSE-S3 under `key_ref` (a key reference, resolved as given).
    SseS3 { key_ref: &'a str },
    /// SSE-KMS under `lookup` (a key reference), recorded as `key_id` (as named: a key reference or its ARN).
    SseKms { key_id: &'a str, lookup: &'a str, context: Option<&'a KmsContext>, bucket_key_enabled: bool },
}

/// The key an object key is sealed under.
enum OuterKey<'a> {
    Kms(Arc<KeyMaterial>),
    Customer(&'a CustomerKey),
}

impl OuterKey<'_> {
    fn bytes(&self) -> &[u8; KEY_LEN] {
        match self {
            Self::Kms(material) => material.as_bytes(),
            Self::Customer(customer) => customer.key(),
        }
    }
}

/// `object_key` sealed under `data_key`, with the metadata `seal` records.
fn seal_with(
    bucket: &str,
    key: &str,
    object_key: &ObjectKey,
    seal: &KmsSeal<'_>,
    data_key: &DataKey,
) -> ObjectEncryption {
    let mode = match seal {
        KmsSeal::SseS3 { .. } => SseMode::SseS3,
        KmsSeal::SseKms { .. } => SseMode::SseKms,
    };
    let sealed = object_key.seal(data_key.plaintext.as_bytes(), SealBinding { bucket, key, mode });
    let wrapped_key = data_key.wrapped.to_base64();
    let scheme = match seal {
        KmsSeal::SseS3 { .. } => Scheme::SseS3 { wrapped_key },
        KmsSeal::SseKms { key_id, context, bucket_key_enabled, .. } => Scheme::SseKms {
            key_id: (*key_id).to_owned(),
            wrapped_key,
            context: context.map(|c| c.header().to_owned()),
            bucket_key_enabled: *bucket_key_enabled,
        },
    };
    ObjectEncryption::new(scheme, sealed)
}

fn corrupted() -> SseError {
    SseError::internal("The object's key could not be opened: its encryption metadata is corrupted or was moved")
}

fn bucket_context_key() -> String {
    format!("{RESERVED_CONTEXT_PREFIX}bucket")
}

/// `{"coffer:bucket": B, "coffer:mode": "sse-s3"}`: SSE-S3 bucket keys are never SSE-KMS bucket keys.
fn sse_s3_context(bucket: &str) -> EncryptionContext {
    EncryptionContext::new()
        .with(bucket_context_key(), bucket)
        .with(format!("{RESERVED_CONTEXT_PREFIX}mode"), SseMode::SseS3.as_str())
}

/// The client's pairs plus `{"coffer:bucket": B}` (clients cannot set `coffer:` keys).
fn sse_kms_context(bucket: &str, client: Option<&KmsContext>) -> EncryptionContext {
    let pairs = client.map(|c| c.pairs().clone()).unwrap_or_default();
    EncryptionContext(pairs).with(bucket_context_key(), bucket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_bind_the_bucket_and_keep_modes_apart() {
        let s3 = sse_s3_context("b1");
        assert_eq!(
            String::from_utf8(s3.canonical_bytes()).unwrap(),
            r#"{"coffer:bucket":"b1","coffer:mode":"sse-s3"}"#
        );
        let kms = sse_kms_context("b1", None);
        assert_eq!(String::from_utf8(kms.canonical_bytes()).unwrap(), r#"{"coffer:bucket":"b1"}"#);
        let client = KmsContext::parse("eyJwcm9qZWN0IjoieCJ9").unwrap(); // {"project":"x"}
        let kms = sse_kms_context("b1", Some(&client));
        assert_eq!(String::from_utf8(kms.canonical_bytes()).unwrap(), r#"{"coffer:bucket":"b1","project":"x"}"#);
    }
}

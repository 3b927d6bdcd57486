//! Versioning as the directory engine sees it: it keeps one version per key, so every bucket is unversioned, every
//! object is its key's null version, and versions are asked for by the name "null" only (what S3 shows of a
//! bucket never versioned).

use crate::engine::Engine;
use crate::error::{Result, StoreError};
use crate::listing::{ListQuery, VersionPage, VersionQuery, VersionSummary};
use crate::meta::{Deletion, ObjectMeta, Versioning};
use crate::names::{is_version_id, validate_key, NULL_VERSION};
use crate::reader::ObjectReader;

impl Engine {
    pub(crate) fn bucket_versioning(&self, bucket: &str) -> Result<Versioning> {
        self.bucket_record(bucket)?;
        Ok(Versioning::Unversioned)
    }

    pub(crate) fn set_bucket_versioning(&self, bucket: &str) -> Result<()> {
        self.bucket_record(bucket)?;
        Err(StoreError::NotImplemented("bucket versioning needs the SQL metadata engine (SQLite or PostgreSQL)"))
    }

    /// Checks that `version_id` names the null version, the only one a key has here: a missing version otherwise.
    fn null_version_only(&self, bucket: &str, key: &str, version_id: &str) -> Result<()> {
        validate_key(key)?;
        self.bucket_record(bucket)?;
        if version_id == NULL_VERSION {
            Ok(())
        } else {
            Err(StoreError::NoSuchVersion)
        }
    }

    pub(crate) fn head_version(&self, bucket: &str, key: &str, version_id: &str) -> Result<ObjectMeta> {
        self.null_version_only(bucket, key, version_id)?;
        self.head_object(bucket, key).map_err(no_such_version)
    }

    pub(crate) fn open_version(&self, bucket: &str, key: &str, version_id: &str) -> Result<ObjectReader> {
        self.null_version_only(bucket, key, version_id)?;
        self.open_object(bucket, key).map_err(no_such_version)
    }

    /// Deletes the null version (the object); any other well-formed id names a version that does not exist,
    /// which is no error.
    pub(crate) fn delete_version(&self, bucket: &str, key: &str, version_id: &str) -> Result<Deletion> {
        match self.null_version_only(bucket, key, version_id) {
            Ok(()) => self.delete_object(bucket, key),
            Err(StoreError::NoSuchVersion) if is_version_id(version_id) => {
                Ok(Deletion { version_id: Some(version_id.to_owned()), delete_marker: false })
            }
            Err(e) => Err(e),
        }
    }

    /// The objects as their null versions: a key's only version, so a version marker resumes after its key.
    pub(crate) fn list_object_versions(&self, bucket: &str, query: &VersionQuery) -> Result<VersionPage> {
        let objects = ListQuery {
            prefix: query.prefix.clone(),
            delimiter: query.delimiter.clone(),
            start_after: query.key_marker.clone(),
            max_keys: query.max_keys,
        };
        let page = self.list_objects(bucket, &objects)?;
        // A page's last entry is its last key or its last common prefix, whichever sorts later (never both: a key
        // that equals a common prefix is rolled up into it).
        let ended_on_a_version =
            page.next_start_after.is_some() && page.objects.last().map(|o| &o.key) == page.next_start_after.as_ref();
        Ok(VersionPage {
            versions: page
                .objects
                .into_iter()
                .map(|object| VersionSummary {
                    key: object.key,
                    version_id: None,
                    is_latest: true,
                    delete_marker: false,
                    size: object.size,
                    etag: object.etag,
                    last_modified: object.last_modified,
                })
                .collect(),
            common_prefixes: page.common_prefixes,
            is_truncated: page.is_truncated,
            next_key_marker: page.next_start_after,
            next_version_id_marker: ended_on_a_version.then(|| NULL_VERSION.to_owned()),
        })
    }
}

/// A key without an object has no null version either.
fn no_such_version(e: StoreError) -> StoreError {
    match e {
        StoreError::NoSuchKey => StoreError::NoSuchVersion,
        other => other,
    }
}

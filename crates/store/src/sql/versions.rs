//! Object versions in the SQL engine (work in progress: the API surface).

use super::SqlEngine;
use crate::error::{Result, StoreError};
use crate::listing::{VersionPage, VersionQuery};
use crate::meta::{Deletion, ObjectMeta, Versioning};
use crate::reader::ObjectReader;

const PENDING: &str = "object versions in the SQL engine";

impl SqlEngine {
    pub(crate) async fn bucket_versioning(&self, bucket: &str) -> Result<Versioning> {
        Ok(self.bucket_record(None, bucket).await?.versioning)
    }

    pub(crate) async fn set_bucket_versioning(&self, bucket: &str, state: Versioning) -> Result<()> {
        if state == Versioning::Unversioned {
            return Err(StoreError::InvalidMeta("a bucket's versioning is set to Enabled or Suspended"));
        }
        self.change_bucket(bucket, move |record| record.versioning = state).await
    }

    pub(crate) async fn head_version(&self, _bucket: &str, _key: &str, _version_id: &str) -> Result<ObjectMeta> {
        Err(StoreError::NotImplemented(PENDING))
    }

    pub(crate) async fn open_version(&self, _bucket: &str, _key: &str, _version_id: &str) -> Result<ObjectReader> {
        Err(StoreError::NotImplemented(PENDING))
    }

    pub(crate) async fn delete_version(&self, _bucket: &str, _key: &str, _version_id: &str) -> Result<Deletion> {
        Err(StoreError::NotImplemented(PENDING))
    }

    pub(crate) async fn list_object_versions(&self, _bucket: &str, _query: &VersionQuery) -> Result<VersionPage> {
        Err(StoreError::NotImplemented(PENDING))
    }
}

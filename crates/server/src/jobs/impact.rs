//! Key impact reports: which stored objects need a key (or one of its versions, or any key of a store) to be read.
//! Reads the record of every object version, current or not (no KMS call): the wrapped bucket key in it names the
//! store, key and version.

use std::collections::BTreeMap;

use coffer_admin_api::api::{ImpactReport, UsageCount, VersionCount};
use coffer_admin_api::{ImpactScope, ObjectAdminError};
use coffer_kms::{validate_store_name, KeyOrigin, KmsError};
use coffer_sse::ObjectEncryption;
use coffer_store::{StoreError, VersionSummary, NULL_VERSION};
use futures::{StreamExt, TryStreamExt};

use super::{versions_page, Item};
use crate::service::AppState;

/// Records read at once while counting.
const READ_AHEAD: usize = 16;

/// Counts the object versions (and bytes) that depend on `scope`, per bucket and, for a key, per key version.
pub(crate) async fn impact(state: &AppState, scope: &ImpactScope) -> Result<ImpactReport, ObjectAdminError> {
    let (store, key_id) = match scope {
        ImpactScope::Key(key_ref) => {
            let (store, key_id) = state.kms.locate_key(key_ref)?;
            // A mistyped key must not read as "nothing depends on it". A store that cannot answer now does not
            // stop the count: it needs only the objects' records.
            if let Err(e @ (KmsError::KeyNotFound(_) | KmsError::StoreNotFound(_))) =
                state.kms.describe_key(key_ref).await
            {
                return Err(e.into());
            }
            (store, Some(key_id))
        }
        ImpactScope::Store(store) => {
            validate_store_name(store)?;
            if !state.kms.store_names().contains(store) {
                return Err(KmsError::StoreNotFound(store.clone()).into());
            }
            (store.clone(), None)
        }
    };
    let depends = |origin: &KeyOrigin| origin.store == store && key_id.as_ref().is_none_or(|id| *id == origin.key_id);
    let mut buckets = Vec::new();
    let mut versions: BTreeMap<u32, VersionCount> = BTreeMap::new();
    for bucket in state.store.list_buckets().await.map_err(internal)? {
        let mut usage = UsageCount { bucket: bucket.name.clone(), objects: 0, bytes: 0 };
        let mut after = None;
        loop {
            let page = match versions_page(state, &bucket.name, "", after.as_ref()).await {
                Ok(page) => page,
                Err(StoreError::NoSuchBucket) => break,
                Err(e) => return Err(internal(e)),
            };
            let next = page.next_key_marker.filter(|_| page.is_truncated);
            let next_version = page.next_version_id_marker;
            let stored = page.versions.into_iter().filter(|version| !version.delete_marker);
            let origins: Vec<Option<(KeyOrigin, u64)>> = futures::stream::iter(stored)
                .map(|version| origin_of(state, bucket.name.clone(), version))
                .buffered(READ_AHEAD)
                .try_collect()
                .await?;
            for (origin, size) in origins.into_iter().flatten().filter(|(origin, _)| depends(origin)) {
                usage.objects += 1;
                usage.bytes += size;
                let version = versions
                    .entry(origin.version)
                    .or_insert(VersionCount { version: origin.version, ..VersionCount::default() });
                version.objects += 1;
                version.bytes += size;
            }
            match next {
                Some(key) => after = Some(Item { key, version: next_version }),
                _ => break,
            }
        }
        if usage.objects > 0 {
            buckets.push(usage);
        }
    }
    Ok(ImpactReport {
        objects: buckets.iter().map(|usage| usage.objects).sum(),
        bytes: buckets.iter().map(|usage| usage.bytes).sum(),
        key: key_id.map(|id| format!("{store}/{id}")),
        versions: matches!(scope, ImpactScope::Key(_)).then(|| versions.into_values().collect()),
        store,
        buckets,
    })
}

/// The key origin and size of one object version; `None` when it needs no KMS key (plaintext, SSE-C) or is gone.
async fn origin_of(
    state: &AppState,
    bucket: String,
    version: VersionSummary,
) -> Result<Option<(KeyOrigin, u64)>, ObjectAdminError> {
    let key = version.key;
    let version_id = version.version_id.as_deref().unwrap_or(NULL_VERSION);
    let meta = match state.store.head_version(&bucket, &key, version_id).await {
        Ok(meta) => meta,
        Err(
            StoreError::NoSuchKey
            | StoreError::NoSuchVersion
            | StoreError::DeleteMarker { .. }
            | StoreError::NoSuchBucket,
        ) => return Ok(None),
        Err(e) => return Err(internal(e)),
    };
    let Some(json) = &meta.encryption else { return Ok(None) };
    let unreadable = |_| ObjectAdminError::Internal(format!("the encryption metadata of {bucket}/{key} is unreadable"));
    let stored = ObjectEncryption::from_json(json.get()).map_err(unreadable)?;
    let origin = state
        .sse
        .key_origin(&stored)
        .map_err(|e| ObjectAdminError::Internal(format!("{bucket}/{key}: {}", e.message())))?;
    Ok(origin.map(|origin| (origin, meta.size)))
}

fn internal(err: StoreError) -> ObjectAdminError {
    ObjectAdminError::Internal(err.to_string())
}

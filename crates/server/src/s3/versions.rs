//! Object versioning: PutBucketVersioning, GetBucketVersioning, ListObjectVersions, and how the other operations
//! name versions (`versionId` in requests, `x-amz-version-id` and `x-amz-delete-marker` in answers).
//!
//! The store keeps the versions (SQL metadata engine only) and decides per its bucket's state whether a write makes
//! a new version, replaces the null version or replaces the object; this module only translates.

use coffer_store::{is_version_id, Deletion, VersionPage, VersionQuery, VersionSummary, Versioning, NULL_VERSION};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::etag;
use crate::errors::store_error;
use crate::listing::{page_size, NameEncoding};
use crate::service::AppState;

/// The version a request's `versionId` names, checked for form: `None` means the current version.
pub(super) fn requested_version(version_id: Option<&str>) -> S3Result<Option<&str>> {
    match version_id {
        None => Ok(None),
        Some(id) if id == NULL_VERSION || is_version_id(id) => Ok(Some(id)),
        Some(_) => Err(s3_error!(InvalidArgument, "Invalid version id specified")),
    }
}

/// What a delete reports: the version it removed (the one the request named) or the delete marker it created, and
/// whether that is a delete marker. A delete marker made while versioning is suspended is the null version.
pub(super) fn deletion_output(requested: Option<&str>, deletion: Deletion) -> (Option<String>, Option<bool>) {
    let version_id = match requested {
        Some(version) => Some(version.to_owned()),
        None => deletion.version_id.or_else(|| deletion.delete_marker.then(|| NULL_VERSION.to_owned())),
    };
    (version_id, deletion.delete_marker.then_some(true))
}

/// A DeleteObjects result entry for `key`. S3 names a delete marker the request created or removed in
/// `DeleteMarkerVersionId`, and the version the request named in `VersionId`.
pub(super) fn deleted_object(key: String, requested: Option<&str>, deletion: Deletion) -> DeletedObject {
    let (version_id, delete_marker) = deletion_output(requested, deletion);
    DeletedObject {
        key: Some(key),
        delete_marker_version_id: delete_marker.and(version_id.clone()),
        version_id: requested.and(version_id),
        delete_marker,
    }
}

pub async fn put_bucket_versioning(
    state: &AppState,
    req: S3Request<PutBucketVersioningInput>,
) -> S3Result<S3Response<PutBucketVersioningOutput>> {
    let input = req.input;
    let configuration = input.versioning_configuration;
    if configuration.mfa_delete.as_ref().is_some_and(|mfa| mfa.as_str() == MFADelete::ENABLED) {
        return Err(s3_error!(NotImplemented, "MFA delete is not supported."));
    }
    let versioning = match configuration.status.as_ref().map(BucketVersioningStatus::as_str) {
        Some(BucketVersioningStatus::ENABLED) => Versioning::Enabled,
        Some(BucketVersioningStatus::SUSPENDED) => Versioning::Suspended,
        _ => return Err(s3_error!(MalformedXML, "The versioning Status must be Enabled or Suspended.")),
    };
    state.store.set_bucket_versioning(&input.bucket, versioning).await.map_err(store_error)?;
    Ok(S3Response::new(PutBucketVersioningOutput::default()))
}

pub async fn get_bucket_versioning(
    state: &AppState,
    req: S3Request<GetBucketVersioningInput>,
) -> S3Result<S3Response<GetBucketVersioningOutput>> {
    let status = match state.store.bucket_versioning(&req.input.bucket).await.map_err(store_error)? {
        Versioning::Unversioned => None,
        Versioning::Enabled => Some(BucketVersioningStatus::from_static(BucketVersioningStatus::ENABLED)),
        Versioning::Suspended => Some(BucketVersioningStatus::from_static(BucketVersioningStatus::SUSPENDED)),
    };
    Ok(S3Response::new(GetBucketVersioningOutput { status, mfa_delete: None }))
}

pub async fn list_object_versions(
    state: &AppState,
    req: S3Request<ListObjectVersionsInput>,
) -> S3Result<S3Response<ListObjectVersionsOutput>> {
    let input = req.input;
    let encoding = NameEncoding::from_request(input.encoding_type.as_ref())?;
    let max_keys = page_size(input.max_keys, "max-keys")?;
    let key_marker = input.key_marker.clone().filter(|marker| !marker.is_empty());
    let version_id_marker = input.version_id_marker.clone().filter(|marker| !marker.is_empty());
    if version_id_marker.is_some() {
        if key_marker.is_none() {
            return Err(s3_error!(InvalidArgument, "A version-id marker cannot be specified without a key marker."));
        }
        requested_version(version_id_marker.as_deref())?;
    }
    let query = VersionQuery {
        prefix: input.prefix.clone().unwrap_or_default(),
        delimiter: input.delimiter.clone().filter(|delimiter| !delimiter.is_empty()),
        key_marker,
        version_id_marker,
        max_keys,
    };
    let VersionPage { versions, common_prefixes, is_truncated, next_key_marker, next_version_id_marker } =
        state.store.list_object_versions(&input.bucket, &query).await.map_err(store_error)?;
    let (markers, objects): (Vec<VersionSummary>, Vec<VersionSummary>) =
        versions.into_iter().partition(|version| version.delete_marker);
    Ok(S3Response::new(ListObjectVersionsOutput {
        name: Some(input.bucket),
        prefix: Some(encoding.apply(&query.prefix)),
        delimiter: encoding.apply_opt(input.delimiter.as_deref()),
        key_marker: Some(encoding.apply(input.key_marker.as_deref().unwrap_or_default())),
        version_id_marker: Some(input.version_id_marker.unwrap_or_default()),
        max_keys: i32::try_from(max_keys).ok(),
        is_truncated: Some(is_truncated),
        next_key_marker: encoding.apply_opt(next_key_marker.as_deref()),
        next_version_id_marker,
        encoding_type: encoding.response_value(),
        versions: Some(objects.into_iter().map(|version| object_version(version, encoding)).collect()),
        delete_markers: Some(markers.into_iter().map(|marker| delete_marker_entry(marker, encoding)).collect()),
        common_prefixes: Some(
            common_prefixes.iter().map(|prefix| CommonPrefix { prefix: Some(encoding.apply(prefix)) }).collect(),
        ),
        ..Default::default()
    }))
}

fn object_version(version: VersionSummary, encoding: NameEncoding) -> ObjectVersion {
    ObjectVersion {
        key: Some(encoding.apply(&version.key)),
        version_id: Some(version.version_id.unwrap_or_else(|| NULL_VERSION.to_owned())),
        is_latest: Some(version.is_latest),
        size: i64::try_from(version.size).ok(),
        e_tag: Some(etag(&version.etag)),
        last_modified: Some(Timestamp::from(version.last_modified)),
        storage_class: Some(ObjectVersionStorageClass::from_static(ObjectVersionStorageClass::STANDARD)),
        ..Default::default()
    }
}

fn delete_marker_entry(marker: VersionSummary, encoding: NameEncoding) -> DeleteMarkerEntry {
    DeleteMarkerEntry {
        key: Some(encoding.apply(&marker.key)),
        version_id: Some(marker.version_id.unwrap_or_else(|| NULL_VERSION.to_owned())),
        is_latest: Some(marker.is_latest),
        last_modified: Some(Timestamp::from(marker.last_modified)),
        owner: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ids_are_checked_for_form() {
        assert_eq!(requested_version(None).unwrap(), None);
        assert_eq!(requested_version(Some("null")).unwrap(), Some("null"));
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(requested_version(Some(id)).unwrap(), Some(id));
        for bad in ["", "NULL", "0123456789ABCDEF0123456789ABCDEF", "0123", "../x", &format!("{id}0")] {
            assert!(requested_version(Some(bad)).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn deletes_report_markers_and_removed_versions() {
        let id = "0123456789abcdef0123456789abcdef".to_owned();
        let marker = Deletion { version_id: Some(id.clone()), delete_marker: true };
        let entry = deleted_object("k".into(), None, marker);
        assert_eq!(
            (entry.delete_marker, entry.delete_marker_version_id, entry.version_id),
            (Some(true), Some(id.clone()), None)
        );

        let suspended = Deletion { version_id: None, delete_marker: true };
        assert_eq!(deletion_output(None, suspended), (Some("null".to_owned()), Some(true)));
        let null_removed = Deletion { version_id: None, delete_marker: false };
        assert_eq!(deletion_output(Some("null"), null_removed), (Some("null".to_owned()), None));

        let removed = Deletion { version_id: Some(id.clone()), delete_marker: false };
        let entry = deleted_object("k".into(), Some(&id), removed);
        assert_eq!((entry.delete_marker, entry.delete_marker_version_id, entry.version_id), (None, None, Some(id)));

        let unversioned = Deletion { version_id: None, delete_marker: false };
        assert_eq!(deletion_output(None, unversioned), (None, None));
    }
}

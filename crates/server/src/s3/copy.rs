//! CopyObject and UploadPartCopy. The source is read with the GetObject path and written with the PutObject /
//! UploadPart path of [`crate::object_io`], so a copy streams and never holds the object in memory.

use std::ops::Range;

use coffer_store::ObjectMeta;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::multipart::{commit_part, part_number, upload_algorithm};
use super::objects::reject_versions;
use super::{etag, now};
use crate::checksum::{set_checksum_fields, ChecksumAlgorithm, ChecksumFields, ChecksumValue, DeclaredIntegrity};
use crate::conditions::ReadConditions;
use crate::errors::store_error;
use crate::object_headers::{object_headers_from, ObjectHeaders};
use crate::object_io::{receive, ObjectBody};
use crate::service::AppState;

/// The bucket and key named by `x-amz-copy-source`.
fn copy_source(source: &CopySource) -> S3Result<(String, String)> {
    match source {
        CopySource::Bucket { bucket, key, version_id } => {
            reject_versions(version_id.as_deref())?;
            Ok((bucket.to_string(), key.to_string()))
        }
        _ => Err(s3_error!(NotImplemented, "Only bucket/key copy sources are supported.")),
    }
}

fn metadata_directive_is_replace(directive: Option<&MetadataDirective>) -> S3Result<bool> {
    match directive.map(MetadataDirective::as_str) {
        None => Ok(false),
        Some(value) if value.eq_ignore_ascii_case(MetadataDirective::COPY) => Ok(false),
        Some(value) if value.eq_ignore_ascii_case(MetadataDirective::REPLACE) => Ok(true),
        Some(_) => Err(s3_error!(InvalidArgument, "Unknown metadata directive.")),
    }
}

fn requested_algorithm(algorithm: Option<&s3s::dto::ChecksumAlgorithm>) -> S3Result<Option<ChecksumAlgorithm>> {
    algorithm
        .map(|name| {
            ChecksumAlgorithm::from_name(name.as_str())
                .ok_or_else(|| s3_error!(InvalidRequest, "Checksum algorithm provided is unsupported."))
        })
        .transpose()
}

pub async fn copy_object(state: &AppState, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
    let mut input = req.input;
    let (source_bucket, source_key) = copy_source(&input.copy_source)?;
    let reader = state.store.open_object(&source_bucket, &source_key).await.map_err(store_error)?;
    let source = reader.meta().clone();
    ReadConditions {
        if_match: input.copy_source_if_match.take(),
        if_none_match: input.copy_source_if_none_match.take(),
        if_modified_since: input.copy_source_if_modified_since.take(),
        if_unmodified_since: input.copy_source_if_unmodified_since.take(),
    }
    .check_copy_source(&source)?;

    let replace = metadata_directive_is_replace(input.metadata_directive.as_ref())?;
    let requested = requested_algorithm(input.checksum_algorithm.as_ref())?;
    let source_algorithm = source.checksum.as_ref().and_then(|c| ChecksumAlgorithm::from_name(&c.algorithm));
    let same_object = source_bucket == input.bucket && source_key == input.key;
    let keeps_data = same_object && requested.is_none_or(|algorithm| Some(algorithm) == source_algorithm);
    if keeps_data && !replace {
        return Err(s3_error!(
            InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the \
             object's metadata, storage class, website redirect location or encryption attributes."
        ));
    }
    let headers = if replace { object_headers_from!(input)? } else { ObjectHeaders::from_meta(&source) };

    let stored = if keeps_data {
        // Only the metadata changes: rewrite it in place instead of copying the data onto itself.
        let mut meta = source;
        headers.apply_to(&mut meta);
        meta.last_modified = now();
        state.store.update_object_meta(&input.bucket, &input.key, meta).await.map_err(store_error)?
    } else {
        let size = source.size;
        let algorithm = requested.or(source_algorithm);
        let body = ObjectBody::new(reader, 0..size).into_copy_source();
        let received =
            receive(&state.store, &input.bucket, body, Some(size), DeclaredIntegrity::compute(algorithm)).await?;
        let mut meta = ObjectMeta::new(input.key.clone(), received.size, received.etag());
        headers.apply_to(&mut meta);
        meta.checksum = received.digests.checksum.as_ref().map(ChecksumValue::to_stored);
        state.store.put_object(&input.bucket, &input.key, received.file, meta).await.map_err(store_error)?
    };

    let mut result = CopyObjectResult {
        e_tag: Some(etag(&stored.etag)),
        last_modified: Some(Timestamp::from(stored.last_modified)),
        ..Default::default()
    };
    set_checksum_fields!(result, ChecksumFields::from_stored(stored.checksum.as_ref()));
    Ok(S3Response::new(CopyObjectOutput { copy_object_result: Some(result), ..Default::default() }))
}

/// Parses `x-amz-copy-source-range: bytes=first-last` against the source size.
fn copy_range(range: &str, size: u64) -> S3Result<Range<u64>> {
    let (first, last) = range
        .strip_prefix("bytes=")
        .and_then(|bounds| bounds.split_once('-'))
        .and_then(|(first, last)| Some((first.parse::<u64>().ok()?, last.parse::<u64>().ok()?)))
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are \
                 the zero-based offsets of the first and last bytes to copy"
            )
        })?;
    if first > last || last >= size {
        return Err(s3_error!(InvalidArgument, "Range specified is not valid for source object of size: {size}"));
    }
    Ok(first..last + 1)
}

pub async fn upload_part_copy(
    state: &AppState,
    req: S3Request<UploadPartCopyInput>,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    let mut input = req.input;
    let number = part_number(input.part_number)?;
    let upload = state.store.upload_meta(&input.bucket, &input.key, &input.upload_id).await.map_err(store_error)?;
    let (source_bucket, source_key) = copy_source(&input.copy_source)?;
    let reader = state.store.open_object(&source_bucket, &source_key).await.map_err(store_error)?;
    let source = reader.meta();
    ReadConditions {
        if_match: input.copy_source_if_match.take(),
        if_none_match: input.copy_source_if_none_match.take(),
        if_modified_since: input.copy_source_if_modified_since.take(),
        if_unmodified_since: input.copy_source_if_unmodified_since.take(),
    }
    .check_copy_source(source)?;
    let range = match input.copy_source_range.as_deref() {
        Some(range) => copy_range(range, source.size)?,
        None => 0..source.size,
    };
    let len = range.end - range.start;
    let body = ObjectBody::new(reader, range).into_copy_source();
    let integrity = DeclaredIntegrity::compute(upload_algorithm(&upload));
    let received = receive(&state.store, &input.bucket, body, Some(len), integrity).await?;
    let part = commit_part(state, &input.bucket, &input.key, &input.upload_id, number, received).await?;

    let mut result = CopyPartResult {
        e_tag: Some(etag(&part.etag)),
        last_modified: Some(Timestamp::from(part.last_modified)),
        ..Default::default()
    };
    set_checksum_fields!(result, ChecksumFields::from_stored(part.checksum.as_ref()));
    Ok(S3Response::new(UploadPartCopyOutput { copy_part_result: Some(result), ..Default::default() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_ranges() {
        assert_eq!(copy_range("bytes=0-9", 10).unwrap(), 0..10);
        assert_eq!(copy_range("bytes=5-5", 10).unwrap(), 5..6);
        assert!(copy_range("bytes=0-10", 10).is_err());
        assert!(copy_range("bytes=6-5", 10).is_err());
        assert!(copy_range("bytes=-5", 10).is_err());
        assert!(copy_range("bytes=5-", 10).is_err());
        assert!(copy_range("0-5", 10).is_err());
    }
}

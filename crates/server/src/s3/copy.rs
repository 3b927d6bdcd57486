//! CopyObject and UploadPartCopy. The source is read with the GetObject path and written with the PutObject /
//! UploadPart path of [`crate::object_io`], so a copy streams and never holds the object in memory: it is
//! decrypted with the source's key (the copy-source SSE-C headers for an SSE-C source) and encrypted under a fresh
//! key as the destination asks. Copying an encrypted object onto itself with new encryption only reseals its
//! object key: the data is not rewritten.

use std::ops::Range;

use coffer_sse::{authorize_read, CustomerKey, WriteEncryption};
use coffer_store::{ObjectReader, Versioning};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::multipart::{commit_part, part_number, upload_checksum};
use super::objects::open_version;
use super::{etag, now};
use crate::audit_log::Requester;
use crate::checksum::{set_checksum_fields, ChecksumAlgorithm, ChecksumFields, DeclaredIntegrity};
use crate::conditions::ReadConditions;
use crate::encryption::{
    copy_source_customer_headers, customer_headers, names_encryption, part_encryptor, read_cipher, reseal,
    set_sse_fields, sse_error, sse_headers, start_object, stored_encryption, transport, write_encryption,
};
use crate::errors::store_error;
use crate::object_headers::object_headers_from;
use crate::object_io::{receive, restage_object, ObjectBody};
use crate::service::AppState;

/// The object named by `x-amz-copy-source`.
struct Source {
    bucket: String,
    key: String,
    /// The `versionId` of the copy source; `None` copies the current version.
    version_id: Option<String>,
}

impl Source {
    fn of(source: &CopySource) -> S3Result<Source> {
        match source {
            CopySource::Bucket { bucket, key, version_id } => Ok(Source {
                bucket: bucket.to_string(),
                key: key.to_string(),
                version_id: version_id.as_deref().map(str::to_owned),
            }),
            _ => Err(s3_error!(NotImplemented, "Only bucket/key copy sources are supported.")),
        }
    }

    async fn open(&self, state: &AppState) -> S3Result<ObjectReader> {
        open_version(state, &self.bucket, &self.key, self.version_id.as_deref()).await
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

/// The customer key of a copy source (`x-amz-copy-source-server-side-encryption-customer-*`), if sent.
fn source_customer_key(state: &AppState, req: &S3Request<impl Send>) -> S3Result<Option<CustomerKey>> {
    copy_source_customer_headers(&req.headers)?.parse(&transport(state, &req.extensions)).map_err(sse_error)
}

pub async fn copy_object(state: &AppState, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
    let transport = transport(state, &req.extensions);
    let source_key_material = source_customer_key(state, &req)?;
    let destination_sse = sse_headers(&req.headers)?;
    let who = Requester::of(&req);
    let mut input = req.input;
    let source_object = Source::of(&input.copy_source)?;
    let reader = source_object.open(state).await?;
    let Source { bucket: source_bucket, key: source_key, .. } = &source_object;
    let source = reader.meta().clone();
    let source_version_id = source.version_id.clone();
    ReadConditions {
        if_match: input.copy_source_if_match.take(),
        if_none_match: input.copy_source_if_none_match.take(),
        if_modified_since: input.copy_source_if_modified_since.take(),
        if_unmodified_since: input.copy_source_if_unmodified_since.take(),
    }
    .check_copy_source(&source)?;
    let source_encryption = stored_encryption(source.encryption.as_ref())?;
    authorize_read(source_encryption.as_ref(), source_key_material.as_ref()).map_err(sse_error)?;
    let write = write_encryption(state, &input.bucket, &destination_sse, &transport).await?;

    let replace = metadata_directive_is_replace(input.metadata_directive.as_ref())?;
    let requested = requested_algorithm(input.checksum_algorithm.as_ref())?;
    let source_algorithm = source.checksum.as_ref().and_then(|c| ChecksumAlgorithm::from_name(&c.algorithm));
    let same_object = *source_bucket == input.bucket && *source_key == input.key;
    // Plaintext stays plaintext and encrypted stays encrypted (under a new outer key): the data can stay put. In a
    // versioned bucket the copy is a new version, with data of its own.
    let keeps_data = same_object
        && requested.is_none_or(|algorithm| Some(algorithm) == source_algorithm)
        && source_encryption.is_some() == !matches!(write, WriteEncryption::None)
        && source_object.version_id.is_none()
        && state.store.bucket_versioning(&input.bucket).await.map_err(store_error)? == Versioning::Unversioned;
    if keeps_data && !replace && !names_encryption(&destination_sse) {
        return Err(s3_error!(
            InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the \
             object's metadata, storage class, website redirect location or encryption attributes."
        ));
    }
    let headers = if replace { object_headers_from!(input)? } else { source.headers.clone() };

    let (stored, encryption) = if keeps_data {
        // Only the metadata changes: rewrite it in place instead of copying the data onto itself. An encrypted
        // object keeps its object key (so its data and parts), sealed under the new outer key.
        let encryption = match &source_encryption {
            Some(stored) => Some(
                reseal(state, &who, &input.bucket, &input.key, stored, source_key_material.as_ref(), &write).await?,
            ),
            None => None,
        };
        let mut meta = source.clone();
        meta.headers = headers;
        meta.last_modified = now();
        meta.encryption = encryption.as_ref().map(|e| e.to_json().into());
        // Only onto the version that was resealed: a concurrent overwrite has another object key.
        let stored =
            state.store.update_object_meta(&input.bucket, &input.key, source, meta).await.map_err(store_error)?;
        (stored, encryption)
    } else {
        let cipher = read_cipher(
            state,
            &who,
            source_bucket,
            source_key,
            source_encryption.as_ref(),
            source_key_material.as_ref(),
        )
        .await?;
        let new = start_object(state, &who, &input.bucket, &input.key, &write).await?;
        let algorithm = requested.or(source_algorithm);
        let (file, meta, encryption) =
            restage_object(&state.store, &input.key, reader, cipher, new, algorithm, headers).await?;
        let stored = state.store.put_object(&input.bucket, &input.key, file, meta).await.map_err(store_error)?;
        (stored, encryption)
    };

    let mut result = CopyObjectResult {
        e_tag: Some(etag(&stored.etag)),
        last_modified: Some(Timestamp::from(stored.last_modified)),
        ..Default::default()
    };
    set_checksum_fields!(result, ChecksumFields::from_stored(stored.checksum.as_ref()));
    let mut output = CopyObjectOutput {
        copy_object_result: Some(result),
        version_id: stored.version_id,
        copy_source_version_id: source_version_id,
        ..Default::default()
    };
    set_sse_fields!(output, encryption.as_ref(), context);
    Ok(S3Response::new(output))
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
    let source_key_material = source_customer_key(state, &req)?;
    let customer_key = customer_headers(&req.headers)?.parse(&transport(state, &req.extensions)).map_err(sse_error)?;
    let who = Requester::of(&req);
    let mut input = req.input;
    let number = part_number(input.part_number)?;
    let upload = state.store.upload_meta(&input.bucket, &input.key, &input.upload_id).await.map_err(store_error)?;
    let upload_encryption = stored_encryption(upload.encryption.as_ref())?;
    let source_object = Source::of(&input.copy_source)?;
    let reader = source_object.open(state).await?;
    let Source { bucket: source_bucket, key: source_key, .. } = &source_object;
    let source = reader.meta();
    let copy_source_version_id = source.version_id.clone();
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
    let source_encryption = stored_encryption(source.encryption.as_ref())?;
    let cipher =
        read_cipher(state, &who, source_bucket, source_key, source_encryption.as_ref(), source_key_material.as_ref())
            .await?;
    let encryptor = part_encryptor(
        state,
        &who,
        &input.bucket,
        &input.key,
        upload_encryption.as_ref(),
        customer_key.as_ref(),
        number,
    )
    .await?;
    let len = range.end - range.start;
    let body = ObjectBody::new(reader, range, cipher)?.into_copy_source();
    let integrity = DeclaredIntegrity::compute(upload_checksum(&upload).map(|c| c.algorithm));
    let received = receive(&state.store, body, Some(len), integrity, encryptor).await?;
    let part = commit_part(state, &input.bucket, &input.key, &input.upload_id, number, received).await?;

    let mut result = CopyPartResult {
        e_tag: Some(etag(&part.etag)),
        last_modified: Some(Timestamp::from(part.last_modified)),
        ..Default::default()
    };
    set_checksum_fields!(result, ChecksumFields::from_stored(part.checksum.as_ref()));
    let mut output =
        UploadPartCopyOutput { copy_part_result: Some(result), copy_source_version_id, ..Default::default() };
    set_sse_fields!(output, upload_encryption.as_ref());
    Ok(S3Response::new(output))
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

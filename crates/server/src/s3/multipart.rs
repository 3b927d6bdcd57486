//! Multipart uploads: CreateMultipartUpload, UploadPart, CompleteMultipartUpload, AbortMultipartUpload,
//! ListParts and ListMultipartUploads.
//!
//! Parts are verified and stored as they arrive (MD5 ETag, and the upload's checksum algorithm when it has one);
//! CompleteMultipartUpload validates the chosen list (order, ETags, checksums, minimum part size) before the store
//! assembles the object, and computes the `md5-of-md5s-N` ETag and the object's checksum from the parts' checksums:
//! composite (`checksum-of-checksums-N`) or full-object (the CRCs combined), as the upload was created.
//!
//! An encrypted upload gets its object key at CreateMultipartUpload (sealed into the upload's metadata); every part
//! is encrypted on its own under a key derived from it, and the object takes the upload's encryption metadata,
//! committed to its part list at completion (SSE-S3 and SSE-KMS; see `coffer_sse::ListedPart`).

use std::collections::HashMap;

use coffer_store::{ChecksumKind, ObjectMeta, PartMeta, UploadMeta};
use s3s::crypto::{Checksum as _, Md5};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::etag;
use super::objects::{declared_length, existing_object};
use crate::audit_log::Requester;
use crate::checksum::{
    checksum_type, kind_name, set_checksum_fields, take_checksum_fields, ChecksumAlgorithm, ChecksumFields,
    ChecksumValue, DeclaredIntegrity, IntegrityHeaders, MultipartChecksum,
};
use crate::conditions::check_write;
use crate::encryption::{
    completed_encryption, customer_headers, part_encryptor, set_sse_fields, sse_error, sse_headers, start_object,
    stored_encryption, transport, write_encryption,
};
use crate::errors::store_error;
use crate::listing::{page_size, NameEncoding};
use crate::object_headers::object_headers_from;
use crate::object_io::{receive, request_body, Received};
use crate::service::AppState;

/// A part number as the store wants it: 1..=10000.
pub(super) fn part_number(number: i32) -> S3Result<u32> {
    u32::try_from(number)
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(|| s3_error!(InvalidArgument, "Part number must be an integer between 1 and 10000, inclusive"))
}

/// The checksum chosen at CreateMultipartUpload, if any.
pub(super) fn upload_checksum(upload: &UploadMeta) -> Option<MultipartChecksum> {
    let algorithm = upload.checksum_algorithm.as_deref().and_then(ChecksumAlgorithm::from_name)?;
    Some(MultipartChecksum { algorithm, kind: upload.checksum_kind.unwrap_or(ChecksumKind::Composite) })
}

/// Stores received data as part `number` of the upload.
pub(super) async fn commit_part(
    state: &AppState,
    bucket: &str,
    key: &str,
    upload_id: &str,
    number: u32,
    received: Received,
) -> S3Result<PartMeta> {
    let part = received.part(number);
    state.store.put_part(bucket, key, upload_id, part, received.file).await.map_err(store_error)
}

pub async fn create_multipart_upload(
    state: &AppState,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let write =
        write_encryption(state, &req.input.bucket, &sse_headers(&req.headers)?, &transport(state, &req.extensions))
            .await?;
    let who = Requester::of(&req);
    let mut input = req.input;
    let headers = object_headers_from!(input)?;
    let checksum = MultipartChecksum::from_request(
        input.checksum_algorithm.as_ref().map(s3s::dto::ChecksumAlgorithm::as_str),
        input.checksum_type.as_ref().map(ChecksumType::as_str),
    )?;
    let encryption = start_object(state, &who, &input.bucket, &input.key, &write).await?.map(|new| new.encryption);
    let mut upload = UploadMeta { headers, ..UploadMeta::default() };
    upload.checksum_algorithm = checksum.map(|c| c.algorithm.name().to_owned());
    upload.checksum_kind = checksum.map(|c| c.kind);
    upload.encryption = encryption.as_ref().map(|e| e.to_json().into());
    let upload_id = state.store.create_upload(&input.bucket, &input.key, upload).await.map_err(store_error)?;
    let mut output = CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(upload_id),
        checksum_algorithm: checksum.map(|c| s3s::dto::ChecksumAlgorithm::from(c.algorithm.name().to_owned())),
        checksum_type: checksum.map(|c| checksum_type(c.kind)),
        ..Default::default()
    };
    set_sse_fields!(output, encryption.as_ref(), context);
    Ok(S3Response::new(output))
}

pub async fn upload_part(
    state: &AppState,
    mut req: S3Request<UploadPartInput>,
) -> S3Result<S3Response<UploadPartOutput>> {
    let who = Requester::of(&req);
    let input = &mut req.input;
    let number = part_number(input.part_number)?;
    let upload = state.store.upload_meta(&input.bucket, &input.key, &input.upload_id).await.map_err(store_error)?;
    let customer_key = customer_headers(&req.headers)?.parse(&transport(state, &req.extensions)).map_err(sse_error)?;
    let encryption = stored_encryption(upload.encryption.as_ref())?;
    let expected_algorithm = upload_checksum(&upload).map(|c| c.algorithm);
    let checksums = take_checksum_fields!(input);
    let integrity = DeclaredIntegrity::from_request(
        IntegrityHeaders {
            checksums: &checksums,
            algorithm: input.checksum_algorithm.as_ref().map(s3s::dto::ChecksumAlgorithm::as_str),
            headers: &req.headers,
            trailing: req.trailing_headers.take(),
        },
        expected_algorithm,
    )?;
    if let (Some(expected), Some(actual)) = (expected_algorithm, integrity.algorithm()) {
        if expected != actual {
            return Err(s3_error!(
                InvalidRequest,
                "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {}",
                expected.name().to_lowercase(),
                actual.name().to_lowercase()
            ));
        }
    }
    let declared_len = declared_length(input.content_length, &req.headers)?;
    let encryptor =
        part_encryptor(state, &who, &input.bucket, &input.key, encryption.as_ref(), customer_key.as_ref(), number)
            .await?;
    let received =
        receive(&state.store, request_body(input.body.take(), &req.extensions), declared_len, integrity, encryptor)
            .await?;
    let part = commit_part(state, &input.bucket, &input.key, &input.upload_id, number, received).await?;

    let mut output = UploadPartOutput { e_tag: Some(etag(&part.etag)), ..Default::default() };
    set_checksum_fields!(output, ChecksumFields::from_stored(part.checksum.as_ref()));
    set_sse_fields!(output, encryption.as_ref());
    Ok(S3Response::new(output))
}

/// Checks the client's part list against the stored parts and returns the chosen parts in order.
fn chosen_parts(
    requested: &[CompletedPart],
    stored: &HashMap<u32, PartMeta>,
    min_part_size: u64,
) -> S3Result<Vec<PartMeta>> {
    if requested.is_empty() {
        return Err(s3_error!(MalformedXML, "You must specify at least one part."));
    }
    let mut chosen: Vec<PartMeta> = Vec::with_capacity(requested.len());
    for completed in requested {
        let number = completed.part_number.ok_or_else(|| s3_error!(MalformedXML, "Every part needs a PartNumber."))?;
        let number = part_number(number)?;
        if chosen.last().is_some_and(|previous| previous.number >= number) {
            return Err(s3_error!(
                InvalidPartOrder,
                "The list of parts was not in ascending order. Parts must be ordered by part number."
            ));
        }
        let invalid_part = || {
            s3_error!(
                InvalidPart,
                "One or more of the specified parts could not be found. The part may not have been uploaded, or the \
                 specified entity tag may not have matched the part's entity tag. (part {number})"
            )
        };
        let part = stored.get(&number).ok_or_else(invalid_part)?;
        let requested_etag = completed.e_tag.as_ref().map(|etag| etag.value().trim_matches('"'));
        if requested_etag.is_some_and(|requested| requested != part.etag) {
            return Err(invalid_part());
        }
        let requested_checksum = ChecksumFields {
            crc32: completed.checksum_crc32.clone(),
            crc32c: completed.checksum_crc32c.clone(),
            crc64nvme: completed.checksum_crc64nvme.clone(),
            sha1: completed.checksum_sha1.clone(),
            sha256: completed.checksum_sha256.clone(),
        };
        if let Some((algorithm, value)) = requested_checksum.single()? {
            let stored_value = part.checksum.as_ref().and_then(ChecksumValue::from_stored);
            let matches = stored_value.is_some_and(|stored| {
                stored.algorithm == algorithm && algorithm.decode(value).is_some_and(|bytes| bytes == stored.bytes)
            });
            if !matches {
                return Err(invalid_part());
            }
        }
        chosen.push(part.clone());
    }
    if let Some((_, all_but_last)) = chosen.split_last() {
        if let Some(small) = all_but_last.iter().find(|part| part.size < min_part_size) {
            return Err(s3_error!(
                EntityTooSmall,
                "Your proposed upload is smaller than the minimum allowed object size: part {} has {} bytes, every \
                 part but the last needs at least {min_part_size}.",
                small.number,
                small.size
            ));
        }
    }
    Ok(chosen)
}

/// `hex(md5(md5(part 1) ‖ … ‖ md5(part N)))-N`.
fn multipart_etag(parts: &[PartMeta]) -> S3Result<String> {
    let mut md5 = Md5::new();
    for part in parts {
        let digest =
            hex::decode(&part.etag).map_err(|_| crate::errors::internal(&"a stored part has a non-hex ETag"))?;
        md5.update(&digest);
    }
    Ok(format!("{}-{}", hex::encode(md5.finalize()), parts.len()))
}

pub async fn complete_multipart_upload(
    state: &AppState,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let who = Requester::of(&req);
    let mut input = req.input;
    let upload = state.store.upload_meta(&input.bucket, &input.key, &input.upload_id).await.map_err(store_error)?;
    let stored: HashMap<u32, PartMeta> = state
        .store
        .list_parts(&input.bucket, &input.key, &input.upload_id)
        .await
        .map_err(store_error)?
        .into_iter()
        .map(|part| (part.number, part))
        .collect();
    let requested = input.multipart_upload.take().and_then(|upload| upload.parts).unwrap_or_default();
    let parts = chosen_parts(&requested, &stored, state.settings.min_part_size)?;

    let size: u64 = parts.iter().map(|part| part.size).sum();
    if let Some(expected) = input.mpu_object_size {
        if u64::try_from(expected).ok() != Some(size) {
            return Err(s3_error!(
                InvalidRequest,
                "The provided x-amz-mp-object-size ({expected}) does not match the size of the parts ({size})."
            ));
        }
    }
    let chosen = upload_checksum(&upload);
    if let Some(requested) = &input.checksum_type {
        let created = chosen.map_or("no", |c| kind_name(c.kind));
        if !requested.as_str().eq_ignore_ascii_case(created) {
            return Err(s3_error!(
                InvalidRequest,
                "The upload was created using the {created} checksum mode. The complete request must use the same \
                 checksum mode."
            ));
        }
    }
    let checksum = match chosen {
        Some(checksum) => {
            let values: Option<Vec<(ChecksumValue, u64)>> = parts
                .iter()
                .map(|part| {
                    let value = part.checksum.as_ref().and_then(ChecksumValue::from_stored);
                    value.filter(|v| v.algorithm == checksum.algorithm).map(|v| (v, part.size))
                })
                .collect();
            let values = values.ok_or_else(|| {
                s3_error!(InvalidRequest, "A part of this upload has no {} checksum.", checksum.algorithm.name())
            })?;
            Some(checksum.of_parts(&values))
        }
        None => None,
    };
    let declared = take_checksum_fields!(input);
    if let Some((algorithm, value)) = declared.single()? {
        let matches = checksum.as_ref().is_some_and(|computed| {
            computed.algorithm == algorithm.name()
                && (computed.value == value || computed.value.split_once('-').is_some_and(|(base, _)| base == value))
        });
        if !matches {
            return Err(s3_error!(
                BadDigest,
                "The {} you specified did not match the calculated checksum.",
                algorithm.name()
            ));
        }
    }
    if input.if_match.is_some() || input.if_none_match.is_some() {
        let existing = existing_object(state, &input.bucket, &input.key).await?;
        check_write(input.if_match.as_ref(), input.if_none_match.as_ref(), existing.as_ref())?;
    }

    let upload_encryption = stored_encryption(upload.encryption.as_ref())?;
    let encryption = completed_encryption(state, &who, &input.bucket, &input.key, upload_encryption, &parts).await?;
    let mut meta = ObjectMeta::new(input.key.clone(), size, multipart_etag(&parts)?);
    meta.headers = upload.headers;
    meta.checksum = checksum;
    meta.encryption = encryption.as_ref().map(|e| e.to_json().into());
    let numbers: Vec<u32> = parts.iter().map(|part| part.number).collect();
    // What the ETag, checksum and part-list commitment were computed from: a part uploaded again since is refused.
    meta.parts = parts;
    let object = state
        .store
        .complete_upload(&input.bucket, &input.key, &input.upload_id, &numbers, meta)
        .await
        .map_err(store_error)?;

    let mut output = CompleteMultipartUploadOutput {
        location: Some(format!("/{}/{}", input.bucket, input.key)),
        bucket: Some(input.bucket),
        key: Some(input.key),
        e_tag: Some(etag(&object.etag)),
        checksum_type: object.checksum.as_ref().map(|c| checksum_type(c.kind)),
        version_id: object.version_id.clone(),
        ..Default::default()
    };
    set_checksum_fields!(output, ChecksumFields::from_stored(object.checksum.as_ref()));
    set_sse_fields!(output, encryption.as_ref(), kms);
    Ok(S3Response::new(output))
}

pub async fn abort_multipart_upload(
    state: &AppState,
    req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let input = req.input;
    state.store.abort_upload(&input.bucket, &input.key, &input.upload_id).await.map_err(store_error)?;
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

pub async fn list_parts(state: &AppState, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
    let input = req.input;
    let upload = state.store.upload_meta(&input.bucket, &input.key, &input.upload_id).await.map_err(store_error)?;
    let max_parts = page_size(input.max_parts, "max-parts")?;
    let marker = match input.part_number_marker {
        Some(marker) if marker < 0 => {
            return Err(s3_error!(InvalidArgument, "part-number-marker must be a non-negative integer."))
        }
        Some(marker) => u32::try_from(marker).unwrap_or(0),
        None => 0,
    };
    let stored = state.store.list_parts(&input.bucket, &input.key, &input.upload_id).await.map_err(store_error)?;
    let mut remaining = stored.into_iter().filter(|part| part.number > marker).peekable();
    let page: Vec<PartMeta> = remaining.by_ref().take(max_parts).collect();
    let is_truncated = remaining.peek().is_some();
    let next_marker = if is_truncated { page.last().map(|part| part.number) } else { None };
    let parts = page
        .into_iter()
        .map(|part| {
            let mut out = Part {
                e_tag: Some(etag(&part.etag)),
                last_modified: Some(Timestamp::from(part.last_modified)),
                part_number: i32::try_from(part.number).ok(),
                size: i64::try_from(part.size).ok(),
                ..Default::default()
            };
            set_checksum_fields!(out, ChecksumFields::from_stored(part.checksum.as_ref()));
            out
        })
        .collect();
    let checksum = upload_checksum(&upload);
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        max_parts: i32::try_from(max_parts).ok(),
        part_number_marker: input.part_number_marker,
        next_part_number_marker: next_marker.and_then(|n| i32::try_from(n).ok()),
        is_truncated: Some(is_truncated),
        parts: Some(parts),
        checksum_algorithm: checksum.map(|c| s3s::dto::ChecksumAlgorithm::from(c.algorithm.name().to_owned())),
        checksum_type: checksum.map(|c| checksum_type(c.kind)),
        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
        ..Default::default()
    }))
}

pub async fn list_multipart_uploads(
    state: &AppState,
    req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let input = req.input;
    let encoding = NameEncoding::from_request(input.encoding_type.as_ref())?;
    let max_uploads = page_size(input.max_uploads, "max-uploads")?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
    let uploads = state.store.list_uploads(&input.bucket, &prefix).await.map_err(store_error)?;

    // Resume after (key-marker, upload-id-marker): S3 orders uploads by key, then initiation time.
    let start = match (&input.key_marker, &input.upload_id_marker) {
        (Some(key), Some(id)) => uploads
            .iter()
            .position(|u| &u.key == key && &u.upload_id == id)
            .map_or_else(|| uploads.partition_point(|u| &u.key <= key), |at| at + 1),
        (Some(key), None) => uploads.partition_point(|u| &u.key <= key),
        (None, _) => 0,
    };

    let mut listed = Vec::new();
    let mut common_prefixes: Vec<String> = Vec::new();
    let mut last_position = None;
    let mut is_truncated = false;
    for (position, upload) in uploads.iter().enumerate().skip(start) {
        let rolled_up = delimiter.as_deref().and_then(|d| {
            upload.key[prefix.len()..].find(d).map(|at| upload.key[..prefix.len() + at + d.len()].to_owned())
        });
        if let Some(common) = &rolled_up {
            if common_prefixes.last() == Some(common) {
                last_position = Some(position);
                continue;
            }
        }
        if listed.len() + common_prefixes.len() == max_uploads {
            is_truncated = true;
            break;
        }
        match rolled_up {
            Some(common) => common_prefixes.push(common),
            None => listed.push(upload),
        }
        last_position = Some(position);
    }
    let next = if is_truncated { last_position.map(|at| &uploads[at]) } else { None };
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: Some(encoding.apply(&prefix)),
        delimiter: encoding.apply_opt(input.delimiter.as_deref()),
        key_marker: encoding.apply_opt(input.key_marker.as_deref()),
        upload_id_marker: input.upload_id_marker,
        next_key_marker: next.map(|u| encoding.apply(&u.key)),
        next_upload_id_marker: next.map(|u| u.upload_id.clone()),
        max_uploads: i32::try_from(max_uploads).ok(),
        is_truncated: Some(is_truncated),
        encoding_type: encoding.response_value(),
        uploads: Some(
            listed
                .into_iter()
                .map(|u| MultipartUpload {
                    key: Some(encoding.apply(&u.key)),
                    upload_id: Some(u.upload_id.clone()),
                    initiated: Some(Timestamp::from(u.initiated)),
                    storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                    ..Default::default()
                })
                .collect(),
        ),
        common_prefixes: Some(
            common_prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(encoding.apply(&p)) }).collect(),
        ),
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored_part(number: u32, size: u64, etag: &str) -> PartMeta {
        PartMeta {
            number,
            size,
            stored_size: size,
            etag: etag.to_owned(),
            checksum: None,
            last_modified: time::OffsetDateTime::UNIX_EPOCH,
            encryption: None,
        }
    }

    fn completed(number: i32, etag: &str) -> CompletedPart {
        CompletedPart { part_number: Some(number), e_tag: Some(ETag::Strong(etag.to_owned())), ..Default::default() }
    }

    fn stored() -> HashMap<u32, PartMeta> {
        [stored_part(1, 100, "aa"), stored_part(2, 100, "bb"), stored_part(3, 10, "cc")]
            .into_iter()
            .map(|p| (p.number, p))
            .collect()
    }

    #[test]
    fn a_valid_list_is_accepted() {
        let parts = chosen_parts(&[completed(1, "aa"), completed(3, "cc")], &stored(), 100).unwrap();
        assert_eq!(parts.iter().map(|p| p.number).collect::<Vec<_>>(), vec![1, 3]);
    }

    #[test]
    fn order_etag_and_presence_are_checked() {
        let code = |list: &[CompletedPart]| chosen_parts(list, &stored(), 1).unwrap_err().code().clone();
        assert_eq!(code(&[completed(2, "bb"), completed(1, "aa")]), s3s::S3ErrorCode::InvalidPartOrder);
        assert_eq!(code(&[completed(1, "aa"), completed(1, "aa")]), s3s::S3ErrorCode::InvalidPartOrder);
        assert_eq!(code(&[completed(1, "xx")]), s3s::S3ErrorCode::InvalidPart);
        assert_eq!(code(&[completed(4, "dd")]), s3s::S3ErrorCode::InvalidPart);
        assert_eq!(code(&[]), s3s::S3ErrorCode::MalformedXML);
    }

    #[test]
    fn only_the_last_part_may_be_small() {
        let err = chosen_parts(&[completed(1, "aa"), completed(2, "bb")], &stored(), 101).unwrap_err();
        assert_eq!(err.code(), &s3s::S3ErrorCode::EntityTooSmall);
        assert!(chosen_parts(&[completed(3, "cc")], &stored(), 101).is_ok());
    }

    #[test]
    fn multipart_etag_is_md5_of_part_md5s() {
        let a = Md5::checksum(b"a");
        let b = Md5::checksum(b"b");
        let parts = [stored_part(1, 1, &hex::encode(a)), stored_part(2, 1, &hex::encode(b))];
        let mut concatenated = a.to_vec();
        concatenated.extend_from_slice(&b);
        assert_eq!(multipart_etag(&parts).unwrap(), format!("{}-2", hex::encode(Md5::checksum(&concatenated))));
    }
}

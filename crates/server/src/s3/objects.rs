//! Object operations: PutObject, GetObject, HeadObject, DeleteObject, DeleteObjects, each on the version a
//! `versionId` names where S3 takes one.
//!
//! PutObject encrypts as the SSE headers or the bucket default say; GetObject and HeadObject check the customer key
//! of SSE-C objects, and GetObject decrypts only the packages covering the requested range.

use std::ops::Range;

use coffer_sse::authorize_read;
use coffer_store::{Deletion, ObjectMeta, ObjectReader, StoreError};
use http::{HeaderMap, HeaderValue, StatusCode};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::etag;
use super::versions::{deleted_object, deletion_output, requested_version};
use crate::audit_log::Requester;
use crate::body_taps::{verify_captured_body, CapturedBody};
use crate::checksum::{
    checksum_type, set_checksum_fields, take_checksum_fields, ChecksumFields, ChecksumValue, DeclaredIntegrity,
    IntegrityHeaders,
};
use crate::conditions::{check_write, ReadConditions};
use crate::encryption::{
    committed_encryption, read_cipher, set_sse_fields, single_part_encryptor, sse_error, sse_headers, start_object,
    stored_encryption, transport, write_encryption,
};
use crate::errors::{custom_error, store_error};
use crate::http_server::PartialContent;
use crate::object_headers::{expires_timestamp, object_headers_from, user_metadata};
use crate::object_io::{part_range, receive, request_body, ObjectBody};
use crate::service::AppState;

/// DeleteObjects accepts at most this many keys (S3's limit).
const MAX_DELETE_KEYS: usize = 1000;

pub async fn put_object(state: &AppState, mut req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
    let who = Requester::of(&req);
    let input = &mut req.input;
    let headers = object_headers_from!(input)?;
    let encryption =
        write_encryption(state, &input.bucket, &sse_headers(&req.headers)?, &transport(state, &req.extensions)).await?;
    let checksums = take_checksum_fields!(input);
    let integrity = DeclaredIntegrity::from_request(
        IntegrityHeaders {
            checksums: &checksums,
            algorithm: input.checksum_algorithm.as_ref().map(ChecksumAlgorithm::as_str),
            headers: &req.headers,
            trailing: req.trailing_headers.take(),
        },
        None,
    )?;
    if input.if_match.is_some() || input.if_none_match.is_some() {
        let existing = existing_object(state, &input.bucket, &input.key).await?;
        check_write(input.if_match.as_ref(), input.if_none_match.as_ref(), existing.as_ref())?;
    }
    let declared_len = declared_length(input.content_length, &req.headers)?;
    let new = start_object(state, &who, &input.bucket, &input.key, &encryption).await?;
    let encryptor = single_part_encryptor(new.as_ref());
    let received =
        receive(&state.store, request_body(input.body.take(), &req.extensions), declared_len, integrity, encryptor)
            .await?;

    let mut meta = ObjectMeta::new(input.key.clone(), received.size, received.etag.clone());
    meta.headers = headers;
    meta.checksum = received.digests.checksum.as_ref().map(ChecksumValue::to_stored);
    meta.parts = vec![received.part(1)];
    let encryption = committed_encryption(new, &meta.parts)?;
    meta.encryption = encryption.as_ref().map(|e| e.to_json().into());
    let stored = state.store.put_object(&input.bucket, &input.key, received.file, meta).await.map_err(store_error)?;

    let mut output =
        PutObjectOutput { e_tag: Some(etag(&stored.etag)), version_id: stored.version_id, ..Default::default() };
    set_checksum_fields!(output, ChecksumFields::from_stored(stored.checksum.as_ref()));
    set_sse_fields!(output, encryption.as_ref(), context);
    Ok(S3Response::new(output))
}

/// The object's metadata, or `None` if the key does not exist (the bucket must).
pub(super) async fn existing_object(state: &AppState, bucket: &str, key: &str) -> S3Result<Option<ObjectMeta>> {
    match state.store.head_object(bucket, key).await {
        Ok(meta) => Ok(Some(meta)),
        Err(StoreError::NoSuchKey) => Ok(None),
        Err(err) => Err(store_error(err)),
    }
}

/// The length of the request's body as bytes: its Content-Length, or for an aws-chunked body whose length s3s does
/// not pass on (unsigned streaming with trailers, as botocore sends over HTTPS) its `x-amz-decoded-content-length`.
pub(super) fn declared_length(content_length: Option<i64>, headers: &http::HeaderMap) -> S3Result<Option<u64>> {
    if let Some(len) = content_length {
        return u64::try_from(len)
            .map(Some)
            .map_err(|_| s3_error!(InvalidArgument, "Content-Length must not be negative."));
    }
    headers
        .get("x-amz-decoded-content-length")
        .map(|value| {
            value.to_str().ok().and_then(|text| text.parse::<u64>().ok()).ok_or_else(|| {
                s3_error!(InvalidArgument, "x-amz-decoded-content-length must be a non-negative number.")
            })
        })
        .transpose()
}

/// What GetObject and HeadObject ask for beyond the key.
struct ReadRequest {
    conditions: ReadConditions,
    range: Option<s3s::dto::Range>,
    part_number: Option<i32>,
    checksum_mode: bool,
}

/// How a GetObject / HeadObject is answered.
struct ReadPlan {
    range: Range<u64>,
    content_range: Option<String>,
    parts_count: Option<i32>,
    checksum: Option<(ChecksumFields, ChecksumType)>,
}

fn plan_read(meta: &ObjectMeta, request: &ReadRequest) -> S3Result<ReadPlan> {
    request.conditions.check_read(meta)?;
    let size = meta.size;
    let is_multipart = meta.etag.contains('-');
    let mut plan = ReadPlan { range: 0..size, content_range: None, parts_count: None, checksum: None };
    match (request.part_number, request.range) {
        (Some(_), Some(_)) => {
            return Err(s3_error!(InvalidRequest, "Cannot specify both Range header and partNumber query parameter"))
        }
        (Some(number), None) => {
            let number = usize::try_from(number).ok().filter(|n| (1..=10_000).contains(n)).ok_or_else(|| {
                s3_error!(InvalidArgument, "Part number must be an integer between 1 and 10000, inclusive")
            })?;
            plan.range = part_range(meta, number).ok_or_else(|| {
                custom_error(
                    "InvalidPartNumber",
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "The requested partnumber is not satisfiable",
                )
            })?;
            if is_multipart {
                plan.parts_count = i32::try_from(meta.parts.len()).ok();
                if request.checksum_mode {
                    let part_checksum = meta.parts.get(number - 1).and_then(|part| part.checksum.as_ref());
                    plan.checksum =
                        part_checksum.map(|c| (ChecksumFields::from_stored(Some(c)), checksum_type(c.kind)));
                }
            }
        }
        (None, Some(range)) => {
            plan.range = range.check(size).map_err(|_| range_not_satisfiable(size))?;
        }
        (None, None) => {}
    }
    let partial = request.range.is_some() || request.part_number.is_some();
    if partial && !plan.range.is_empty() {
        plan.content_range = Some(format!("bytes {}-{}/{size}", plan.range.start, plan.range.end - 1));
    }
    if request.checksum_mode && !partial {
        plan.checksum = meta.checksum.as_ref().map(|c| (ChecksumFields::from_stored(Some(c)), checksum_type(c.kind)));
    }
    Ok(plan)
}

fn range_not_satisfiable(size: u64) -> s3s::S3Error {
    let mut err = s3_error!(InvalidRange, "The requested range is not satisfiable");
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
        headers.insert(http::header::CONTENT_RANGE, value);
    }
    err.set_headers(headers);
    err
}

fn checksum_mode_enabled(mode: Option<&ChecksumMode>) -> bool {
    mode.is_some_and(|mode| mode.as_str().eq_ignore_ascii_case(ChecksumMode::ENABLED))
}

/// The read parameters shared by GetObjectInput and HeadObjectInput.
macro_rules! read_request {
    ($input:expr) => {
        ReadRequest {
            conditions: ReadConditions {
                if_match: $input.if_match,
                if_none_match: $input.if_none_match,
                if_modified_since: $input.if_modified_since,
                if_unmodified_since: $input.if_unmodified_since,
            },
            range: $input.range,
            part_number: $input.part_number,
            checksum_mode: checksum_mode_enabled($input.checksum_mode.as_ref()),
        }
    };
}

/// GetObjectOutput / HeadObjectOutput fields describing the object and the planned response.
macro_rules! read_output {
    ($output:ident, $meta:expr, $plan:expr, $($body:tt)*) => {{
        let headers = $meta.headers.clone();
        let mut output = $output {
            accept_ranges: Some("bytes".to_owned()),
            content_length: i64::try_from($plan.range.end - $plan.range.start).ok(),
            content_range: $plan.content_range,
            parts_count: $plan.parts_count,
            e_tag: Some(etag(&$meta.etag)),
            last_modified: Some(Timestamp::from($meta.last_modified)),
            expires: expires_timestamp(&headers),
            metadata: user_metadata(&headers),
            content_type: headers.content_type,
            content_encoding: headers.content_encoding,
            content_disposition: headers.content_disposition,
            content_language: headers.content_language,
            cache_control: headers.cache_control,
            $($body)*
            ..Default::default()
        };
        if let Some((fields, kind)) = $plan.checksum {
            set_checksum_fields!(output, fields);
            output.checksum_type = Some(kind);
        }
        output
    }};
}

pub async fn get_object(state: &AppState, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
    let customer_key = sse_headers(&req.headers)?.for_read(&transport(state, &req.extensions)).map_err(sse_error)?;
    let who = Requester::of(&req);
    let input = req.input;
    let reader = open_version(state, &input.bucket, &input.key, input.version_id.as_deref()).await?;
    let meta = reader.meta().clone();
    let encryption = stored_encryption(meta.encryption.as_ref())?;
    authorize_read(encryption.as_ref(), customer_key.as_ref()).map_err(sse_error)?;
    let plan = plan_read(&meta, &read_request!(input))?;
    let cipher =
        read_cipher(state, &who, &input.bucket, &input.key, encryption.as_ref(), customer_key.as_ref()).await?;
    let body = ObjectBody::new(reader, plan.range.clone(), cipher)?.first_chunk_checked().await?.into_blob();
    let mut output = read_output!(GetObjectOutput, meta, plan, body: Some(body), version_id: meta.version_id.clone(),);
    set_sse_fields!(output, encryption.as_ref());
    Ok(S3Response::new(output))
}

pub async fn head_object(state: &AppState, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
    let customer_key = sse_headers(&req.headers)?.for_read(&transport(state, &req.extensions)).map_err(sse_error)?;
    let input = req.input;
    let meta = head_version(state, &input.bucket, &input.key, input.version_id.as_deref()).await?;
    let encryption = stored_encryption(meta.encryption.as_ref())?;
    authorize_read(encryption.as_ref(), customer_key.as_ref()).map_err(sse_error)?;
    let plan = plan_read(&meta, &read_request!(input))?;
    let mut output = read_output!(HeadObjectOutput, meta, plan, version_id: meta.version_id.clone(),);
    set_sse_fields!(output, encryption.as_ref());
    let partial = output.content_range.is_some();
    let mut response = S3Response::new(output);
    if partial {
        response.extensions.insert(PartialContent);
    }
    Ok(response)
}

/// The metadata of the version `version_id` names (the current one without it).
pub(super) async fn head_version(
    state: &AppState,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> S3Result<ObjectMeta> {
    match requested_version(version_id)? {
        Some(version) => state.store.head_version(bucket, key, version).await,
        None => state.store.head_object(bucket, key).await,
    }
    .map_err(store_error)
}

/// Opens the version `version_id` names (the current one without it).
pub(super) async fn open_version(
    state: &AppState,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> S3Result<ObjectReader> {
    match requested_version(version_id)? {
        Some(version) => state.store.open_version(bucket, key, version).await,
        None => state.store.open_object(bucket, key).await,
    }
    .map_err(store_error)
}

/// Deletes the version `version_id` names, or without it the object (a delete marker in a versioned bucket).
async fn delete_version(state: &AppState, bucket: &str, key: &str, version_id: Option<&str>) -> S3Result<Deletion> {
    match requested_version(version_id)? {
        Some(version) => state.store.delete_version(bucket, key, version).await,
        None => state.store.delete_object(bucket, key).await,
    }
    .map_err(store_error)
}

pub async fn delete_object(
    state: &AppState,
    req: S3Request<DeleteObjectInput>,
) -> S3Result<S3Response<DeleteObjectOutput>> {
    let input = req.input;
    let deletion = delete_version(state, &input.bucket, &input.key, input.version_id.as_deref()).await?;
    let (version_id, delete_marker) = deletion_output(input.version_id.as_deref(), deletion);
    Ok(S3Response::new(DeleteObjectOutput { version_id, delete_marker, ..Default::default() }))
}

pub async fn delete_objects(
    state: &AppState,
    mut req: S3Request<DeleteObjectsInput>,
) -> S3Result<S3Response<DeleteObjectsOutput>> {
    let checksums = ChecksumFields::from_headers(&req.headers)?;
    let integrity = DeclaredIntegrity::from_request(
        IntegrityHeaders {
            checksums: &checksums,
            algorithm: req.input.checksum_algorithm.as_ref().map(ChecksumAlgorithm::as_str),
            headers: &req.headers,
            trailing: req.trailing_headers.take(),
        },
        None,
    )?;
    verify_captured_body(integrity, req.extensions.get::<CapturedBody>())?;
    let input = req.input;
    if input.delete.objects.len() > MAX_DELETE_KEYS {
        return Err(s3_error!(MalformedXML, "A DeleteObjects request may name at most {MAX_DELETE_KEYS} keys."));
    }
    state.store.head_bucket(&input.bucket).await.map_err(store_error)?;
    let quiet = input.delete.quiet.unwrap_or(false);
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for object in input.delete.objects {
        let requested = object.version_id.as_deref();
        match delete_version(state, &input.bucket, &object.key, requested).await {
            Ok(_) if quiet => {}
            Ok(deletion) => deleted.push(deleted_object(object.key, requested, deletion)),
            Err(err) => errors.push(Error {
                code: Some(err.code().as_str().to_owned()),
                key: Some(object.key),
                message: err.message().map(str::to_owned),
                version_id: object.version_id,
            }),
        }
    }
    Ok(S3Response::new(DeleteObjectsOutput {
        deleted: Some(deleted),
        errors: (!errors.is_empty()).then_some(errors),
        ..Default::default()
    }))
}

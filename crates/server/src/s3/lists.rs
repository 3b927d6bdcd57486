//! ListObjects (V1) and ListObjectsV2 over the store's ordered listing.

use coffer_store::{ListPage, ListQuery, ObjectSummary};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};

use super::etag;
use crate::errors::store_error;
use crate::listing::{continuation_token, page_size, parse_continuation_token, NameEncoding};
use crate::service::AppState;

fn object_entry(summary: ObjectSummary, encoding: NameEncoding) -> Object {
    Object {
        key: Some(encoding.apply(&summary.key)),
        size: i64::try_from(summary.size).ok(),
        e_tag: Some(etag(&summary.etag)),
        last_modified: Some(Timestamp::from(summary.last_modified)),
        storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
        ..Default::default()
    }
}

fn common_prefixes(page: &mut ListPage, encoding: NameEncoding) -> Vec<CommonPrefix> {
    page.common_prefixes.drain(..).map(|prefix| CommonPrefix { prefix: Some(encoding.apply(&prefix)) }).collect()
}

pub async fn list_objects_v2(
    state: &AppState,
    req: S3Request<ListObjectsV2Input>,
) -> S3Result<S3Response<ListObjectsV2Output>> {
    let input = req.input;
    let encoding = NameEncoding::from_request(input.encoding_type.as_ref())?;
    let max_keys = page_size(input.max_keys, "max-keys")?;
    let start_after = match &input.continuation_token {
        Some(token) => Some(parse_continuation_token(token)?),
        None => input.start_after.clone(),
    };
    let query = ListQuery {
        prefix: input.prefix.clone().unwrap_or_default(),
        delimiter: input.delimiter.clone(),
        start_after,
        max_keys,
    };
    let mut page = state.store.list_objects(&input.bucket, &query).await.map_err(store_error)?;
    let prefixes = common_prefixes(&mut page, encoding);
    let contents: Vec<Object> = page.objects.into_iter().map(|summary| object_entry(summary, encoding)).collect();
    Ok(S3Response::new(ListObjectsV2Output {
        name: Some(input.bucket),
        prefix: Some(encoding.apply(&query.prefix)),
        delimiter: encoding.apply_opt(input.delimiter.as_deref()),
        start_after: encoding.apply_opt(input.start_after.as_deref()),
        max_keys: i32::try_from(max_keys).ok(),
        key_count: i32::try_from(contents.len() + prefixes.len()).ok(),
        continuation_token: input.continuation_token,
        next_continuation_token: page.next_start_after.as_deref().map(continuation_token),
        is_truncated: Some(page.is_truncated),
        encoding_type: encoding.response_value(),
        contents: Some(contents),
        common_prefixes: Some(prefixes),
        ..Default::default()
    }))
}

pub async fn list_objects(
    state: &AppState,
    req: S3Request<ListObjectsInput>,
) -> S3Result<S3Response<ListObjectsOutput>> {
    let input = req.input;
    let encoding = NameEncoding::from_request(input.encoding_type.as_ref())?;
    let max_keys = page_size(input.max_keys, "max-keys")?;
    let query = ListQuery {
        prefix: input.prefix.clone().unwrap_or_default(),
        delimiter: input.delimiter.clone(),
        start_after: input.marker.clone().filter(|marker| !marker.is_empty()),
        max_keys,
    };
    let mut page = state.store.list_objects(&input.bucket, &query).await.map_err(store_error)?;
    let prefixes = common_prefixes(&mut page, encoding);
    let contents: Vec<Object> = page.objects.into_iter().map(|summary| object_entry(summary, encoding)).collect();
    Ok(S3Response::new(ListObjectsOutput {
        name: Some(input.bucket),
        prefix: Some(encoding.apply(&query.prefix)),
        delimiter: encoding.apply_opt(input.delimiter.as_deref()),
        marker: Some(encoding.apply(input.marker.as_deref().unwrap_or_default())),
        next_marker: page.next_start_after.as_deref().map(|next| encoding.apply(next)),
        max_keys: i32::try_from(max_keys).ok(),
        is_truncated: Some(page.is_truncated),
        encoding_type: encoding.response_value(),
        contents: Some(contents),
        common_prefixes: Some(prefixes),
        ..Default::default()
    }))
}

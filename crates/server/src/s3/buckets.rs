//! Bucket operations: CreateBucket, DeleteBucket, HeadBucket, ListBuckets, GetBucketLocation.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};

use crate::errors::store_error;
use crate::service::AppState;

/// The single owner every bucket belongs to.
fn owner() -> Owner {
    Owner { display_name: Some("coffer".to_owned()), id: Some("coffer".to_owned()) }
}

pub async fn create_bucket(
    state: &AppState,
    req: S3Request<CreateBucketInput>,
) -> S3Result<S3Response<CreateBucketOutput>> {
    let bucket = req.input.bucket;
    state.store.create_bucket(&bucket).await.map_err(store_error)?;
    Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{bucket}")) }))
}

pub async fn delete_bucket(
    state: &AppState,
    req: S3Request<DeleteBucketInput>,
) -> S3Result<S3Response<DeleteBucketOutput>> {
    state.store.delete_bucket(&req.input.bucket).await.map_err(store_error)?;
    Ok(S3Response::new(DeleteBucketOutput::default()))
}

pub async fn head_bucket(state: &AppState, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
    state.store.head_bucket(&req.input.bucket).await.map_err(store_error)?;
    Ok(S3Response::new(HeadBucketOutput { bucket_region: Some(state.region.to_string()), ..Default::default() }))
}

pub async fn list_buckets(
    state: &AppState,
    _req: S3Request<ListBucketsInput>,
) -> S3Result<S3Response<ListBucketsOutput>> {
    let buckets = state.store.list_buckets().await.map_err(store_error)?;
    let buckets = buckets
        .into_iter()
        .map(|info| Bucket {
            name: Some(info.name),
            creation_date: Some(Timestamp::from(info.created)),
            bucket_region: Some(state.region.to_string()),
        })
        .collect();
    Ok(S3Response::new(ListBucketsOutput { buckets: Some(buckets), owner: Some(owner()), ..Default::default() }))
}

pub async fn get_bucket_location(
    state: &AppState,
    req: S3Request<GetBucketLocationInput>,
) -> S3Result<S3Response<GetBucketLocationOutput>> {
    state.store.head_bucket(&req.input.bucket).await.map_err(store_error)?;
    // S3 reports us-east-1 as an empty location constraint.
    let location_constraint =
        (&*state.region != "us-east-1").then(|| BucketLocationConstraint::from(state.region.to_string()));
    Ok(S3Response::new(GetBucketLocationOutput { location_constraint }))
}

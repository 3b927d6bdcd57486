//! Bucket operations: CreateBucket (the creator owns the bucket), DeleteBucket, HeadBucket, ListBuckets (the buckets
//! the caller may see), GetBucketLocation, default encryption (PutBucketEncryption, GetBucketEncryption,
//! DeleteBucketEncryption) and bucket policies (PutBucketPolicy, GetBucketPolicy, DeleteBucketPolicy).

use coffer_sse::BucketEncryption;
use http::StatusCode;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use coffer_store::StoreError;

use crate::authz::{request_context, signer};
use crate::encryption::{bucket_default, sse_error};
use crate::errors::{custom_error, store_error};
use crate::policy::{Policy, PolicyKind};
use crate::service::AppState;

/// The caller as the owner ListBuckets reports.
fn owner(access_key: &str) -> Owner {
    Owner { display_name: Some(access_key.to_owned()), id: Some(access_key.to_owned()) }
}

pub async fn create_bucket(
    state: &AppState,
    req: S3Request<CreateBucketInput>,
) -> S3Result<S3Response<CreateBucketOutput>> {
    let caller = signer(&req)?;
    let bucket = req.input.bucket;
    match state.store.create_bucket(&bucket, Some(&caller)).await {
        Ok(()) => Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{bucket}")) })),
        Err(StoreError::BucketAlreadyOwnedByYou) => {
            let info = state.store.head_bucket(&bucket).await.map_err(store_error)?;
            // Buckets made before buckets had owners belong to the admins.
            let owned = match info.owner {
                Some(owner) => owner == caller,
                None => state.users.rights(&caller).is_some_and(|rights| rights.admin),
            };
            Err(if owned {
                store_error(StoreError::BucketAlreadyOwnedByYou)
            } else {
                s3_error!(BucketAlreadyExists, "The requested bucket name is not available.")
            })
        }
        Err(err) => Err(store_error(err)),
    }
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
    Ok(S3Response::new(HeadBucketOutput {
        bucket_region: Some(state.settings.region.to_string()),
        ..Default::default()
    }))
}

pub async fn list_buckets(
    state: &AppState,
    req: S3Request<ListBucketsInput>,
) -> S3Result<S3Response<ListBucketsOutput>> {
    let caller = signer(&req)?;
    let context = request_context(&caller, &req.extensions);
    let buckets = state.store.list_buckets().await.map_err(store_error)?;
    let buckets = buckets
        .into_iter()
        .filter(|info| state.authz.may_see_bucket(&caller, info, &context))
        .map(|info| Bucket {
            name: Some(info.name),
            creation_date: Some(Timestamp::from(info.created)),
            bucket_region: Some(state.settings.region.to_string()),
        })
        .collect();
    let output = ListBucketsOutput { buckets: Some(buckets), owner: Some(owner(&caller)), ..Default::default() };
    Ok(S3Response::new(output))
}

pub async fn get_bucket_location(
    state: &AppState,
    req: S3Request<GetBucketLocationInput>,
) -> S3Result<S3Response<GetBucketLocationOutput>> {
    state.store.head_bucket(&req.input.bucket).await.map_err(store_error)?;
    // S3 reports us-east-1 as an empty location constraint.
    let location_constraint = (&*state.settings.region != "us-east-1")
        .then(|| BucketLocationConstraint::from(state.settings.region.to_string()));
    Ok(S3Response::new(GetBucketLocationOutput { location_constraint }))
}

pub async fn put_bucket_encryption(
    state: &AppState,
    req: S3Request<PutBucketEncryptionInput>,
) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
    let input = req.input;
    let [rule] = input.server_side_encryption_configuration.rules.as_slice() else {
        return Err(s3_error!(MalformedXML, "The server side encryption configuration must hold exactly one rule."));
    };
    let default = rule.apply_server_side_encryption_by_default.as_ref().ok_or_else(|| {
        s3_error!(MalformedXML, "The encryption rule must contain ApplyServerSideEncryptionByDefault.")
    })?;
    let config = BucketEncryption::from_rule(
        default.sse_algorithm.as_str(),
        default.kms_master_key_id.as_deref(),
        rule.bucket_key_enabled,
    )
    .map_err(sse_error)?;
    if let Some(key_id) = config.kms_master_key_id() {
        state.sse.check_kms_key(key_id).await.map_err(sse_error)?;
    }
    state.store.set_bucket_encryption(&input.bucket, Some(config.to_json().into())).await.map_err(store_error)?;
    Ok(S3Response::new(PutBucketEncryptionOutput::default()))
}

pub async fn get_bucket_encryption(
    state: &AppState,
    req: S3Request<GetBucketEncryptionInput>,
) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
    let config = bucket_default(state, &req.input.bucket).await?.ok_or_else(|| {
        custom_error(
            "ServerSideEncryptionConfigurationNotFoundError",
            StatusCode::NOT_FOUND,
            "The server side encryption configuration was not found",
        )
    })?;
    let rule = ServerSideEncryptionRule {
        apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
            sse_algorithm: ServerSideEncryption::from_static(config.sse_algorithm()),
            kms_master_key_id: config.kms_master_key_id().map(str::to_owned),
        }),
        bucket_key_enabled: Some(config.bucket_key_enabled()),
    };
    Ok(S3Response::new(GetBucketEncryptionOutput {
        server_side_encryption_configuration: Some(ServerSideEncryptionConfiguration { rules: vec![rule] }),
    }))
}

pub async fn delete_bucket_encryption(
    state: &AppState,
    req: S3Request<DeleteBucketEncryptionInput>,
) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
    state.store.set_bucket_encryption(&req.input.bucket, None).await.map_err(store_error)?;
    Ok(S3Response::new(DeleteBucketEncryptionOutput::default()))
}

pub async fn put_bucket_policy(
    state: &AppState,
    req: S3Request<PutBucketPolicyInput>,
) -> S3Result<S3Response<PutBucketPolicyOutput>> {
    let input = req.input;
    state.store.head_bucket(&input.bucket).await.map_err(store_error)?;
    let policy = Policy::parse(&input.policy, &PolicyKind::Bucket(input.bucket.clone()))
        .map_err(|err| s3_error!(MalformedPolicy, "{err}"))?;
    state.store.set_bucket_policy(&input.bucket, Some(policy.text().to_owned())).await.map_err(store_error)?;
    Ok(S3Response::new(PutBucketPolicyOutput::default()))
}

pub async fn get_bucket_policy(
    state: &AppState,
    req: S3Request<GetBucketPolicyInput>,
) -> S3Result<S3Response<GetBucketPolicyOutput>> {
    let info = state.store.head_bucket(&req.input.bucket).await.map_err(store_error)?;
    let policy = info.policy.ok_or_else(|| s3_error!(NoSuchBucketPolicy, "The bucket policy does not exist"))?;
    Ok(S3Response::new(GetBucketPolicyOutput { policy: Some(policy) }))
}

pub async fn delete_bucket_policy(
    state: &AppState,
    req: S3Request<DeleteBucketPolicyInput>,
) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
    state.store.set_bucket_policy(&req.input.bucket, None).await.map_err(store_error)?;
    Ok(S3Response::new(DeleteBucketPolicyOutput::default()))
}

//! s3s's access check for S3 operations ([`AccessCheck`]): notes each request's identity for the request log, refuses
//! unsigned requests, and asks the [`Authorizer`] about the operation's `s3:` action.
//!
//! Most operations are decided in [`S3Access::check`], before their body is read. Those whose decision needs their
//! parsed input are decided in their own hook instead: copies (the source is read too), DeleteObjects (one decision
//! per key), listings (their prefix is a condition key) and the part operations (their encryption condition keys are the upload's, chosen at
//! CreateMultipartUpload, so that a policy requiring encryption does not refuse the parts of an encrypted upload).

use std::sync::Arc;

use coffer_store::Store;
use http::{Extensions, HeaderMap};
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::Credentials;
use s3s::dto::{
    CompleteMultipartUploadInput, CopyObjectInput, CopySource, DeleteObjectsInput, ListObjectVersionsInput,
    ListObjectsInput, ListObjectsV2Input, UploadPartCopyInput, UploadPartInput,
};
use s3s::path::S3Path;
use s3s::{s3_error, S3Error, S3Request, S3Result};

use super::{request_context, Authorizer, S3Action};
use crate::encryption::stored_encryption;
use crate::policy::ConditionContext;
use crate::request_record::RequestIdentity;

const SSE: &str = "x-amz-server-side-encryption";
const SSE_KMS_KEY_ID: &str = "x-amz-server-side-encryption-aws-kms-key-id";
const SSE_C_ALGORITHM: &str = "x-amz-server-side-encryption-customer-algorithm";

/// Operations decided in their own hook (see the module doc).
const DECIDED_WITH_INPUT: [&str; 8] = [
    "CopyObject",
    "UploadPartCopy",
    "DeleteObjects",
    "UploadPart",
    "CompleteMultipartUpload",
    "ListObjects",
    "ListObjectsV2",
    "ListObjectVersions",
];

/// The access check s3s runs for every S3 operation.
#[derive(Debug)]
pub struct AccessCheck {
    authz: Arc<Authorizer>,
    store: Store,
}

impl AccessCheck {
    pub fn new(authz: Arc<Authorizer>, store: Store) -> Self {
        Self { authz, store }
    }

    /// The encryption condition keys of an upload, from what CreateMultipartUpload recorded. None if the upload
    /// does not exist (the operation then answers NoSuchUpload).
    async fn add_upload_encryption(&self, context: &mut ConditionContext, bucket: &str, key: &str, upload_id: &str) {
        let Ok(upload) = self.store.upload_meta(bucket, key, upload_id).await else {
            return;
        };
        let Ok(Some(encryption)) = stored_encryption(upload.encryption.as_ref()) else {
            return;
        };
        let response = encryption.response();
        if let Some(mode) = response.server_side_encryption {
            context.insert(&format!("s3:{SSE}"), mode);
        }
        if let Some(key_id) = response.kms_key_id {
            context.insert(&format!("s3:{SSE_KMS_KEY_ID}"), key_id);
        }
        if let Some(algorithm) = response.customer_algorithm {
            context.insert(&format!("s3:{SSE_C_ALGORITHM}"), algorithm);
        }
    }

    /// ListObjects and ListObjectsV2 (`s3:ListBucket`) and ListObjectVersions (`s3:ListBucketVersions`), with the
    /// listing's parameters as condition keys.
    async fn check_listing(
        &self,
        credentials: Option<&Credentials>,
        extensions: &Extensions,
        (action, bucket): (&'static str, &str),
        (prefix, delimiter, max_keys): (Option<&str>, Option<&str>, Option<i32>),
    ) -> S3Result<()> {
        let access_key = credentials.map(|c| c.access_key.as_str()).ok_or_else(signature_required)?;
        let mut context = request_context(access_key, extensions);
        add_list_parameters(&mut context, prefix, delimiter, max_keys);
        let request = S3Action { action, bucket: Some(bucket), key: None };
        self.authz.check_s3(access_key, &request, &context).await
    }

    /// UploadPart, UploadPartCopy (whose source must be readable too) and CompleteMultipartUpload: `s3:PutObject`
    /// with the upload's encryption as condition keys.
    async fn check_part_write(
        &self,
        credentials: Option<&Credentials>,
        extensions: &Extensions,
        (bucket, key, upload_id): (&str, &str, &str),
        copy_source: Option<&CopySource>,
    ) -> S3Result<()> {
        let access_key = credentials.map(|c| c.access_key.as_str()).ok_or_else(signature_required)?;
        let mut context = request_context(access_key, extensions);
        if let Some(source) = copy_source {
            self.check_copy_source(access_key, source, &context).await?;
        }
        self.add_upload_encryption(&mut context, bucket, key, upload_id).await;
        let request = S3Action { action: "s3:PutObject", bucket: Some(bucket), key: Some(key) };
        self.authz.check_s3(access_key, &request, &context).await
    }

    /// The copy source must be readable: `s3:GetObject` on it (`s3:GetObjectVersion` for a version named by id).
    async fn check_copy_source(
        &self,
        access_key: &str,
        source: &CopySource,
        context: &ConditionContext,
    ) -> S3Result<()> {
        let CopySource::Bucket { bucket, key, version_id } = source else {
            return Err(s3_error!(NotImplemented, "Access point copy sources are not supported"));
        };
        let action = if version_id.is_some() { "s3:GetObjectVersion" } else { "s3:GetObject" };
        let source = S3Action { action, bucket: Some(bucket), key: Some(key) };
        self.authz.check_s3(access_key, &source, context).await
    }
}

#[async_trait::async_trait]
impl S3Access for AccessCheck {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let operation = cx.s3_op().name().to_owned();
        let operation = operation.as_str();
        let access_key = cx.credentials().map(|credentials| credentials.access_key.clone());
        if let Some(identity) = cx.extensions_mut().get::<RequestIdentity>() {
            identity.note(operation, access_key.as_deref());
        }
        let Some(access_key) = access_key else {
            return Err(signature_required());
        };
        if DECIDED_WITH_INPUT.contains(&operation) {
            return Ok(());
        }
        let (bucket, key) = match cx.s3_path() {
            S3Path::Root => (None, None),
            S3Path::Bucket { bucket } => (Some(bucket.to_string()), None),
            S3Path::Object { bucket, key } => (Some(bucket.to_string()), Some(key.to_string())),
        };
        let mut context = request_context(&access_key, cx.extensions_mut());
        if matches!(operation, "PutObject" | "CreateMultipartUpload") {
            add_header_encryption(&mut context, cx.headers());
        }
        let action = s3_action(operation, names_version(cx.uri()));
        let request = S3Action { action, bucket: bucket.as_deref(), key: key.as_deref() };
        self.authz.check_s3(&access_key, &request, &context).await
    }

    async fn copy_object(&self, req: &mut S3Request<CopyObjectInput>) -> S3Result<()> {
        let access_key = signer(req)?;
        let mut context = request_context(&access_key, &req.extensions);
        self.check_copy_source(&access_key, &req.input.copy_source, &context).await?;
        add_header_encryption(&mut context, &req.headers);
        let input = &req.input;
        let destination = S3Action { action: "s3:PutObject", bucket: Some(&input.bucket), key: Some(&input.key) };
        self.authz.check_s3(&access_key, &destination, &context).await
    }

    async fn upload_part_copy(&self, req: &mut S3Request<UploadPartCopyInput>) -> S3Result<()> {
        let input = &req.input;
        let upload = (input.bucket.as_str(), input.key.as_str(), input.upload_id.as_str());
        self.check_part_write(req.credentials.as_ref(), &req.extensions, upload, Some(&input.copy_source)).await
    }

    async fn upload_part(&self, req: &mut S3Request<UploadPartInput>) -> S3Result<()> {
        let input = &req.input;
        let upload = (input.bucket.as_str(), input.key.as_str(), input.upload_id.as_str());
        self.check_part_write(req.credentials.as_ref(), &req.extensions, upload, None).await
    }

    async fn complete_multipart_upload(&self, req: &mut S3Request<CompleteMultipartUploadInput>) -> S3Result<()> {
        let input = &req.input;
        let upload = (input.bucket.as_str(), input.key.as_str(), input.upload_id.as_str());
        self.check_part_write(req.credentials.as_ref(), &req.extensions, upload, None).await
    }

    async fn list_objects(&self, req: &mut S3Request<ListObjectsInput>) -> S3Result<()> {
        let input = &req.input;
        let listing = (input.prefix.as_deref(), input.delimiter.as_deref(), input.max_keys);
        self.check_listing(req.credentials.as_ref(), &req.extensions, ("s3:ListBucket", &input.bucket), listing).await
    }

    async fn list_objects_v2(&self, req: &mut S3Request<ListObjectsV2Input>) -> S3Result<()> {
        let input = &req.input;
        let listing = (input.prefix.as_deref(), input.delimiter.as_deref(), input.max_keys);
        self.check_listing(req.credentials.as_ref(), &req.extensions, ("s3:ListBucket", &input.bucket), listing).await
    }

    async fn list_object_versions(&self, req: &mut S3Request<ListObjectVersionsInput>) -> S3Result<()> {
        let input = &req.input;
        let listing = (input.prefix.as_deref(), input.delimiter.as_deref(), input.max_keys);
        let action = ("s3:ListBucketVersions", input.bucket.as_str());
        self.check_listing(req.credentials.as_ref(), &req.extensions, action, listing).await
    }

    /// Every key must be deletable; one refused key refuses the whole request, so nothing is half-applied.
    async fn delete_objects(&self, req: &mut S3Request<DeleteObjectsInput>) -> S3Result<()> {
        let access_key = signer(req)?;
        let context = request_context(&access_key, &req.extensions);
        let input = &req.input;
        for object in &input.delete.objects {
            let action = if object.version_id.is_some() { "s3:DeleteObjectVersion" } else { "s3:DeleteObject" };
            let request = S3Action { action, bucket: Some(&input.bucket), key: Some(&object.key) };
            self.authz.check_s3(&access_key, &request, &context).await?;
        }
        Ok(())
    }
}

/// The signing access key (unsigned requests are refused by [`AccessCheck`] before any operation runs).
pub(crate) fn signer<T>(req: &S3Request<T>) -> S3Result<String> {
    req.credentials.as_ref().map(|credentials| credentials.access_key.clone()).ok_or_else(signature_required)
}

fn signature_required() -> S3Error {
    s3_error!(AccessDenied, "Signature is required")
}

/// Whether the request names an object version (`versionId`), which makes reads and deletes the `...Version`
/// actions.
fn names_version(uri: &http::Uri) -> bool {
    uri.query().is_some_and(|query| {
        query.split('&').any(|pair| pair.split_once('=').map_or(pair, |(name, _)| name) == "versionId")
    })
}

/// The `s3:` action an S3 operation performs, as policies name it; `versioned` when it names a version by id.
fn s3_action(operation: &str, versioned: bool) -> &'static str {
    match (operation, versioned) {
        ("GetObject" | "HeadObject", true) => "s3:GetObjectVersion",
        ("DeleteObject", true) => "s3:DeleteObjectVersion",
        ("GetObjectAttributes", true) => "s3:GetObjectVersionAttributes",
        _ => s3_operation_action(operation),
    }
}

fn s3_operation_action(operation: &str) -> &'static str {
    match operation {
        "AbortMultipartUpload" => "s3:AbortMultipartUpload",
        "CreateBucket" => "s3:CreateBucket",
        "DeleteBucket" => "s3:DeleteBucket",
        "PutBucketEncryption" | "DeleteBucketEncryption" => "s3:PutEncryptionConfiguration",
        "GetBucketEncryption" => "s3:GetEncryptionConfiguration",
        "PutBucketPolicy" => "s3:PutBucketPolicy",
        "GetBucketPolicy" => "s3:GetBucketPolicy",
        "DeleteBucketPolicy" => "s3:DeleteBucketPolicy",
        "DeleteObject" => "s3:DeleteObject",
        "GetBucketLocation" => "s3:GetBucketLocation",
        "GetObject" | "HeadObject" => "s3:GetObject",
        "GetObjectAttributes" => "s3:GetObjectAttributes",
        "GetBucketVersioning" => "s3:GetBucketVersioning",
        "PutBucketVersioning" => "s3:PutBucketVersioning",
        "HeadBucket" | "ListObjects" | "ListObjectsV2" => "s3:ListBucket",
        "ListBuckets" => "s3:ListAllMyBuckets",
        "ListMultipartUploads" => "s3:ListBucketMultipartUploads",
        "ListParts" => "s3:ListMultipartUploadParts",
        "PutObject" | "CreateMultipartUpload" => "s3:PutObject",
        // Operations Coffer does not implement answer NotImplemented after the check; anything else is an
        // action no policy grants.
        _ => "s3:Unsupported",
    }
}

/// The encryption a write names in its headers (not a bucket default, as in AWS).
fn add_header_encryption(context: &mut ConditionContext, headers: &HeaderMap) {
    for name in [SSE, SSE_KMS_KEY_ID, SSE_C_ALGORITHM] {
        if let Some(value) = headers.get(name).and_then(|value| value.to_str().ok()) {
            context.insert(&format!("s3:{name}"), value);
        }
    }
}

/// `s3:prefix`, `s3:delimiter` and `s3:max-keys` of a listing.
fn add_list_parameters(
    context: &mut ConditionContext,
    prefix: Option<&str>,
    delimiter: Option<&str>,
    max_keys: Option<i32>,
) {
    if let Some(prefix) = prefix {
        context.insert("s3:prefix", prefix);
    }
    if let Some(delimiter) = delimiter {
        context.insert("s3:delimiter", delimiter);
    }
    if let Some(max_keys) = max_keys {
        context.insert("s3:max-keys", max_keys.to_string());
    }
}

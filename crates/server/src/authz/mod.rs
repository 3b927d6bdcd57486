//! Who may do what: the one place that turns a caller, an action and a resource into allowed or refused.
//!
//! The rule, AWS's evaluation with Coffer's users standing in for accounts:
//! 1. the caller's identity policy (users file) and, for `s3:` actions on a bucket, the bucket's policy are
//!    evaluated together; an explicit `Deny` in either refuses the request — also for admins and the bucket's
//!    owner, except that they may always read, replace or delete a bucket's policy (so no one locks themselves out);
//! 2. otherwise an `Allow` in either allows it;
//! 3. otherwise only what needs no policy is allowed: everything for admins (the root user and `admin = true`
//!    users); creating buckets and listing one's buckets for everyone; every `s3:` action on a bucket one owns.
//!    `kms:` and `iam:` actions (a key's use on the object path, the admin API) need an admin or a policy.
//!
//! Requests on a bucket that does not exist pass, so that the operation answers `NoSuchBucket` as S3 does.

mod s3_access;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use coffer_admin_api::{AdminAuthorizer, AdminPermission};
use coffer_kms::{KeyOrigin, KmsManager};
use coffer_store::{BucketInfo, Store, StoreError};
use http::Extensions;
use s3s::{s3_error, S3Error, S3Result};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tracing::warn;

use crate::errors::store_error;
use crate::http_server::ClientConnection;
use crate::policy::{ConditionContext, Decision, Policy, PolicyKind, Request};
use crate::users::{UserRegistry, UserRights};

pub(crate) use s3_access::signer;
pub use s3_access::AccessCheck;

/// Resource name of actions on no bucket or key (ListAllMyBuckets, CreateBucket is on its bucket).
const ALL_S3: &str = "arn:aws:s3:::*";
/// Resource name of admin actions on the KMS as a whole (configuration, stores, jobs, key creation and listing).
const ALL_KMS: &str = "arn:aws:kms:::*";

/// Actions that need no policy: any user may create buckets and list the buckets they may see.
const ANYONE_MAY: [&str; 2] = ["s3:CreateBucket", "s3:ListAllMyBuckets"];
/// Actions the owner and admins keep despite a bucket policy's `Deny`.
const POLICY_ACTIONS: [&str; 3] = ["s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy"];

/// Decides S3 requests, key uses and admin calls. Cheap to share.
pub struct Authorizer {
    users: UserRegistry,
    store: Store,
    kms: Arc<KmsManager>,
    /// Parsed bucket policies by bucket, reparsed only when the stored text changes.
    bucket_policies: Mutex<HashMap<String, Arc<Policy>>>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer").field("users", &self.users).finish_non_exhaustive()
    }
}

/// What an S3 request asks to do.
#[derive(Debug)]
pub struct S3Action<'a> {
    /// `s3:…`.
    pub action: &'static str,
    pub bucket: Option<&'a str>,
    pub key: Option<&'a str>,
}

impl Authorizer {
    pub fn new(users: UserRegistry, store: Store, kms: Arc<KmsManager>) -> Self {
        Self { users, store, kms, bucket_policies: Mutex::new(HashMap::new()) }
    }

    /// Allows or refuses (403 AccessDenied naming the action) an S3 request by `access_key`.
    pub async fn check_s3(&self, access_key: &str, request: &S3Action<'_>, context: &ConditionContext) -> S3Result<()> {
        let bucket = match request.bucket {
            Some(bucket) => match self.store.head_bucket(bucket).await {
                Ok(info) => Some(info),
                Err(StoreError::NoSuchBucket) => return Ok(()),
                Err(err) => return Err(store_error(err)),
            },
            None => None,
        };
        let resource = match (request.bucket, request.key) {
            (Some(bucket), Some(key)) => format!("arn:aws:s3:::{bucket}/{key}"),
            (Some(bucket), None) => format!("arn:aws:s3:::{bucket}"),
            _ => ALL_S3.to_owned(),
        };
        if self.allows_s3(access_key, request.action, &resource, bucket.as_ref(), context) {
            Ok(())
        } else {
            Err(denied(access_key, request.action, &resource))
        }
    }

    /// Whether `access_key` may see `bucket` in ListBuckets: they own it, are an admin, or may list it.
    pub fn may_see_bucket(&self, access_key: &str, bucket: &BucketInfo, context: &ConditionContext) -> bool {
        let resource = format!("arn:aws:s3:::{}", bucket.name);
        self.allows_s3(access_key, "s3:ListBucket", &resource, Some(bucket), context)
    }

    fn allows_s3(
        &self,
        access_key: &str,
        action: &'static str,
        resource: &str,
        bucket: Option<&BucketInfo>,
        context: &ConditionContext,
    ) -> bool {
        let Some(rights) = self.users.rights(access_key) else {
            return false;
        };
        let resources = [resource.to_owned()];
        let request = Request { principal: access_key, action, resources: &resources, context };
        let bucket_policy = bucket.and_then(|bucket| self.bucket_policy(bucket));
        let owns = bucket.is_some_and(|bucket| bucket.owner.as_deref() == Some(access_key));
        let decision = identity_decision(&rights, &request)
            .and(bucket_policy.map_or(Decision::NotApplicable, |policy| policy.evaluate(&request)));
        match decision {
            Decision::Allow => true,
            Decision::Deny => (rights.admin || owns) && POLICY_ACTIONS.contains(&action),
            Decision::NotApplicable => rights.admin || owns || ANYONE_MAY.contains(&action),
        }
    }

    /// Allows or refuses (403 AccessDenied naming the action) a use of a KMS key on the object path.
    pub fn check_key_use(&self, access_key: &str, action: &'static str, origin: &KeyOrigin) -> S3Result<()> {
        let resources = self.key_resources(Some(&origin.store), &origin.key_id);
        if self.allows_by_policy(access_key, action, &resources, &ConditionContext::default()) {
            Ok(())
        } else {
            Err(denied(access_key, action, &resources[0]))
        }
    }

    fn allows_by_policy(
        &self,
        access_key: &str,
        action: &str,
        resources: &[String],
        context: &ConditionContext,
    ) -> bool {
        let Some(rights) = self.users.rights(access_key) else {
            return false;
        };
        let request = Request { principal: access_key, action, resources, context };
        match identity_decision(&rights, &request) {
            Decision::Allow => true,
            Decision::Deny => false,
            Decision::NotApplicable => rights.admin,
        }
    }

    /// A key's ARN, `arn:aws:kms:STORE::key/ID`, and for the default store also `arn:aws:kms:::key/ID`.
    fn key_resources(&self, store: Option<&str>, key_id: &str) -> Vec<String> {
        let default = self.kms.default_store();
        let store = store.or(default.as_deref()).unwrap_or_default();
        let mut resources = vec![format!("arn:aws:kms:{store}::key/{key_id}")];
        if default.as_deref() == Some(store) {
            resources.push(format!("arn:aws:kms:::key/{key_id}"));
        }
        resources
    }

    /// The parsed policy of `bucket`, if it has one. A stored policy that no longer parses (it was valid when
    /// stored) applies no statement, and is logged.
    fn bucket_policy(&self, bucket: &BucketInfo) -> Option<Arc<Policy>> {
        let text = bucket.policy.as_deref()?;
        let mut cache = self.bucket_policies.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(policy) = cache.get(&bucket.name).filter(|policy| policy.text() == text) {
            return Some(Arc::clone(policy));
        }
        match Policy::parse(text, &PolicyKind::Bucket(bucket.name.clone())) {
            Ok(policy) => {
                let policy = Arc::new(policy);
                cache.insert(bucket.name.clone(), Arc::clone(&policy));
                Some(policy)
            }
            Err(err) => {
                warn!(bucket = %bucket.name, error = %err, "the stored bucket policy does not parse; ignoring it");
                None
            }
        }
    }
}

impl AdminAuthorizer for Authorizer {
    fn allows(&self, access_key: &str, permission: &AdminPermission<'_>) -> bool {
        let resources = match (permission.key, permission.user) {
            (Some(key), _) => self.key_resources(key.store, key.key_id),
            (None, Some(user)) => vec![format!("arn:aws:iam:::user/{user}")],
            (None, None) => vec![ALL_KMS.to_owned()],
        };
        self.allows_by_policy(access_key, permission.action, &resources, &ConditionContext::default())
    }
}

/// The condition keys every request has: who, from where, over what, when.
pub fn request_context(access_key: &str, extensions: &Extensions) -> ConditionContext {
    let mut context = ConditionContext::default();
    context.insert("aws:username", access_key);
    context.insert("aws:userid", access_key);
    let now = OffsetDateTime::now_utc();
    if let Ok(time) = now.format(&Rfc3339) {
        context.insert("aws:CurrentTime", time);
    }
    context.insert("aws:EpochTime", now.unix_timestamp().to_string());
    if let Some(connection) = extensions.get::<ClientConnection>() {
        context.insert("aws:SecureTransport", connection.tls.to_string());
        context.insert("aws:SourceIp", connection.peer.ip().to_canonical().to_string());
    }
    context
}

fn identity_decision(rights: &UserRights, request: &Request<'_>) -> Decision {
    rights.policies.iter().fold(Decision::NotApplicable, |decision, policy| decision.and(policy.evaluate(request)))
}

fn denied(access_key: &str, action: &str, resource: &str) -> S3Error {
    s3_error!(AccessDenied, "Access Denied: {access_key} is not allowed to perform {action} on {resource}")
}

//! What an admin call needs permission for: a `kms:` action and, for calls on one key, that key; or an `iam:` action
//! on one user's policy. The server decides
//! ([`AdminAuthorizer`]) from its users and their policies; this crate only names the action each endpoint performs.

use crate::routes::{self, Endpoint};

/// The permission one admin call needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminPermission<'a> {
    /// A `kms:` or `iam:` action, e.g. `kms:RotateKey`.
    pub action: &'static str,
    /// The key the call acts on (endpoints with a key in their path); `None` for calls on the KMS as a whole.
    pub key: Option<KeyRef<'a>>,
    /// The user whose policy the call reads or changes.
    pub user: Option<&'a str>,
}

/// A key named by an admin call: `store` is `None` for the default store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRef<'a> {
    pub store: Option<&'a str>,
    pub key_id: &'a str,
}

/// Decides whether an authenticated caller may make an admin call.
pub trait AdminAuthorizer: Send + Sync {
    fn allows(&self, access_key: &str, permission: &AdminPermission<'_>) -> bool;
}

impl<F> AdminAuthorizer for F
where
    F: Fn(&str, &AdminPermission<'_>) -> bool + Send + Sync,
{
    fn allows(&self, access_key: &str, permission: &AdminPermission<'_>) -> bool {
        self(access_key, permission)
    }
}

impl<'a> AdminPermission<'a> {
    /// The permission `endpoint` needs, for `subject` (the path's `{…}` segment) and the `?store=` of the query.
    pub fn of(endpoint: Endpoint, subject: Option<&'a str>, store: Option<&'a str>) -> Self {
        let key = match subject {
            Some(key_id) if routes::subject_is_key(endpoint) => Some(KeyRef { store, key_id }),
            _ => None,
        };
        let user = subject.filter(|_| routes::subject_is_user(endpoint));
        AdminPermission { action: endpoint.permission(), key, user }
    }
}

impl Endpoint {
    /// The `kms:` (or, for user policies, `iam:`) action this endpoint performs, as policies name it.
    pub fn permission(self) -> &'static str {
        match self {
            Self::Configure
            | Self::Reconfigure
            | Self::Start
            | Self::Stop
            | Self::AddStore
            | Self::UpdateStore
            | Self::RemoveStore
            | Self::SetDefaultStore => "kms:Configure",
            Self::Status | Self::Config | Self::ListStores | Self::DescribeStore | Self::StoreImpact => "kms:GetStatus",
            Self::ClearCache | Self::ClearStoreCache => "kms:ClearCache",
            Self::CreateKey | Self::MinioCreateKey => "kms:CreateKey",
            Self::ListKeys | Self::MinioListKeys => "kms:ListKeys",
            Self::DescribeKey | Self::MinioKeyStatus | Self::KeyImpact => "kms:DescribeKey",
            Self::RotateKey => "kms:RotateKey",
            Self::EnableKey => "kms:EnableKey",
            Self::DisableKey => "kms:DisableKey",
            Self::DeleteKey => "kms:ScheduleKeyDeletion",
            Self::CancelKeyDeletion => "kms:CancelKeyDeletion",
            Self::SetKeyExpiry => "kms:SetKeyExpiry",
            Self::SetKeyMinDecryptionVersion => "kms:SetKeyMinDecryptionVersion",
            Self::GetBucketKey => "kms:GetBucketKey",
            Self::SetBucketKey | Self::UnsetBucketKey => "kms:PutBucketKey",
            Self::StartRewrap => "kms:ReEncrypt",
            Self::ListJobs | Self::DescribeJob => "kms:ListJobs",
            Self::PauseJob | Self::ResumeJob | Self::CancelJob | Self::StartScrub => "kms:ManageJobs",
            Self::GetUserPolicy => "iam:GetUserPolicy",
            Self::PutUserPolicy => "iam:PutUserPolicy",
            Self::DeleteUserPolicy => "iam:DeleteUserPolicy",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_endpoints_name_their_key_and_store() {
        let rotate = AdminPermission::of(Endpoint::RotateKey, Some("k1"), Some("vault"));
        assert_eq!(rotate.action, "kms:RotateKey");
        assert_eq!(rotate.key, Some(KeyRef { store: Some("vault"), key_id: "k1" }));
        let delete = AdminPermission::of(Endpoint::DeleteKey, Some("k1"), None);
        assert_eq!(delete.action, "kms:ScheduleKeyDeletion");
        assert_eq!(delete.key, Some(KeyRef { store: None, key_id: "k1" }));
        // A store or bucket in the path is not a key.
        assert_eq!(AdminPermission::of(Endpoint::RemoveStore, Some("vault"), None).key, None);
        assert_eq!(AdminPermission::of(Endpoint::SetBucketKey, Some("photos"), None).action, "kms:PutBucketKey");
    }

    #[test]
    fn every_endpoint_has_an_action() {
        for route in routes::ROUTES {
            let action = route.endpoint.permission();
            let (service, name) = action.split_once(':').unwrap();
            assert!(matches!(service, "kms" | "iam") && !name.is_empty(), "{:?}", route.endpoint);
        }
        let put = AdminPermission::of(Endpoint::PutUserPolicy, Some("bob"), None);
        assert_eq!((put.action, put.key, put.user), ("iam:PutUserPolicy", None, Some("bob")));
    }
}

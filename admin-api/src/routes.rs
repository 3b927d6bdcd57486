//! The admin API's route table, kept as data so the router, the OpenAPI spec check and the docs agree on one list.
//!
//! Paths are relative to a mount prefix: the canonical `/coffer/admin/v3/kms` or the RustFS and MinIO aliases, so
//! scripts written for those servers work unchanged.

use http::Method;

/// The prefixes the admin API answers under (each followed by a route path such as `/status`).
pub const MOUNT_PREFIXES: [&str; 3] = ["/coffer/admin/v3/kms", "/rustfs/admin/v3/kms", "/minio/admin/v3/kms"];

/// One operation of the admin API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Configure,
    Reconfigure,
    Start,
    Stop,
    Status,
    Config,
    ClearCache,
    CreateKey,
    ListKeys,
    DescribeKey,
    RotateKey,
    EnableKey,
    DisableKey,
    DeleteKey,
    CancelKeyDeletion,
    SetKeyExpiry,
    SetKeyMinDecryptionVersion,
    MinioCreateKey,
    MinioKeyStatus,
    MinioListKeys,
    ListStores,
    DescribeStore,
    AddStore,
    UpdateStore,
    RemoveStore,
    SetDefaultStore,
    ClearStoreCache,
    GetBucketKey,
    SetBucketKey,
    UnsetBucketKey,
    KeyImpact,
    StoreImpact,
    StartRewrap,
    StartScrub,
    ListJobs,
    DescribeJob,
    PauseJob,
    ResumeJob,
    CancelJob,
    GetUserPolicy,
    PutUserPolicy,
    DeleteUserPolicy,
}

impl Endpoint {
    /// The name audit lines use for the action.
    pub fn action(self) -> &'static str {
        match self {
            Self::Configure => "kms.configure",
            Self::Reconfigure => "kms.reconfigure",
            Self::Start => "kms.start",
            Self::Stop => "kms.stop",
            Self::Status => "kms.status",
            Self::Config => "kms.config",
            Self::ClearCache => "kms.clear-cache",
            Self::CreateKey | Self::MinioCreateKey => "kms.key.create",
            Self::ListKeys | Self::MinioListKeys => "kms.key.list",
            Self::DescribeKey | Self::MinioKeyStatus => "kms.key.describe",
            Self::RotateKey => "kms.key.rotate",
            Self::EnableKey => "kms.key.enable",
            Self::DisableKey => "kms.key.disable",
            Self::DeleteKey => "kms.key.delete",
            Self::CancelKeyDeletion => "kms.key.cancel-deletion",
            Self::SetKeyExpiry => "kms.key.set-expiry",
            Self::SetKeyMinDecryptionVersion => "kms.key.set-min-decryption-version",
            Self::ListStores => "kms.store.list",
            Self::DescribeStore => "kms.store.describe",
            Self::AddStore => "kms.store.add",
            Self::UpdateStore => "kms.store.update",
            Self::RemoveStore => "kms.store.remove",
            Self::SetDefaultStore => "kms.store.set-default",
            Self::ClearStoreCache => "kms.store.clear-cache",
            Self::GetBucketKey => "kms.bucket-key.get",
            Self::SetBucketKey => "kms.bucket-key.set",
            Self::UnsetBucketKey => "kms.bucket-key.unset",
            Self::KeyImpact => "kms.key.impact",
            Self::StoreImpact => "kms.store.impact",
            Self::StartRewrap => "kms.job.rewrap",
            Self::StartScrub => "kms.job.scrub",
            Self::ListJobs => "kms.job.list",
            Self::DescribeJob => "kms.job.describe",
            Self::PauseJob => "kms.job.pause",
            Self::ResumeJob => "kms.job.resume",
            Self::CancelJob => "kms.job.cancel",
            Self::GetUserPolicy => "iam.user-policy.get",
            Self::PutUserPolicy => "iam.user-policy.put",
            Self::DeleteUserPolicy => "iam.user-policy.delete",
        }
    }

    /// Whether the operation changes KMS configuration or keys (and so must leave an audit line).
    pub fn changes_state(self) -> bool {
        !matches!(
            self,
            Self::Status
                | Self::Config
                | Self::ListKeys
                | Self::DescribeKey
                | Self::MinioKeyStatus
                | Self::MinioListKeys
                | Self::ListStores
                | Self::DescribeStore
                | Self::GetBucketKey
                | Self::KeyImpact
                | Self::StoreImpact
                | Self::ListJobs
                | Self::DescribeJob
                | Self::GetUserPolicy
        )
    }
}

/// A method and a path template served by one endpoint. A `{…}` part (`{key_id}`, `{store}`, `{bucket}`, `{job_id}`,
/// `{user}`) stands
/// for one path segment, the call's subject; a template has at most one.
#[derive(Debug)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub endpoint: Endpoint,
}

/// Every route the admin API serves.
pub static ROUTES: &[Route] = &[
    route(Method::POST, "/configure", Endpoint::Configure),
    route(Method::POST, "/reconfigure", Endpoint::Reconfigure),
    route(Method::POST, "/start", Endpoint::Start),
    route(Method::POST, "/stop", Endpoint::Stop),
    route(Method::GET, "/status", Endpoint::Status),
    route(Method::GET, "/config", Endpoint::Config),
    route(Method::POST, "/clear-cache", Endpoint::ClearCache),
    route(Method::POST, "/keys", Endpoint::CreateKey),
    route(Method::GET, "/keys", Endpoint::ListKeys),
    route(Method::GET, "/keys/{key_id}", Endpoint::DescribeKey),
    route(Method::DELETE, "/keys/{key_id}", Endpoint::DeleteKey),
    route(Method::POST, "/keys/{key_id}/rotate", Endpoint::RotateKey),
    route(Method::POST, "/keys/{key_id}/enable", Endpoint::EnableKey),
    route(Method::POST, "/keys/{key_id}/disable", Endpoint::DisableKey),
    route(Method::POST, "/keys/{key_id}/cancel-deletion", Endpoint::CancelKeyDeletion),
    route(Method::POST, "/keys/{key_id}/expiry", Endpoint::SetKeyExpiry),
    route(Method::PUT, "/keys/{key_id}/min-decryption-version", Endpoint::SetKeyMinDecryptionVersion),
    route(Method::POST, "/key/create", Endpoint::MinioCreateKey),
    route(Method::GET, "/key/status", Endpoint::MinioKeyStatus),
    route(Method::GET, "/key/list", Endpoint::MinioListKeys),
    route(Method::GET, "/stores", Endpoint::ListStores),
    route(Method::GET, "/stores/{store}", Endpoint::DescribeStore),
    route(Method::POST, "/stores/{store}", Endpoint::AddStore),
    route(Method::PUT, "/stores/{store}", Endpoint::UpdateStore),
    route(Method::DELETE, "/stores/{store}", Endpoint::RemoveStore),
    route(Method::POST, "/stores/{store}/default", Endpoint::SetDefaultStore),
    route(Method::POST, "/stores/{store}/clear-cache", Endpoint::ClearStoreCache),
    route(Method::GET, "/buckets/{bucket}/key", Endpoint::GetBucketKey),
    route(Method::PUT, "/buckets/{bucket}/key", Endpoint::SetBucketKey),
    route(Method::DELETE, "/buckets/{bucket}/key", Endpoint::UnsetBucketKey),
    route(Method::GET, "/keys/{key_id}/impact", Endpoint::KeyImpact),
    route(Method::GET, "/stores/{store}/impact", Endpoint::StoreImpact),
    // Before `/jobs/{job_id}`: `rewrap` and `scrub` are not job ids.
    route(Method::POST, "/jobs/rewrap", Endpoint::StartRewrap),
    route(Method::POST, "/jobs/scrub", Endpoint::StartScrub),
    route(Method::GET, "/jobs", Endpoint::ListJobs),
    route(Method::GET, "/jobs/{job_id}", Endpoint::DescribeJob),
    route(Method::POST, "/jobs/{job_id}/pause", Endpoint::PauseJob),
    route(Method::POST, "/jobs/{job_id}/resume", Endpoint::ResumeJob),
    route(Method::POST, "/jobs/{job_id}/cancel", Endpoint::CancelJob),
    route(Method::GET, "/users/{user}/policy", Endpoint::GetUserPolicy),
    route(Method::PUT, "/users/{user}/policy", Endpoint::PutUserPolicy),
    route(Method::DELETE, "/users/{user}/policy", Endpoint::DeleteUserPolicy),
];

/// Whether the endpoint's path segment is a key id: such endpoints also take `?store=S` for a key of store `S`, since
/// a `%2F` in a path (`S%2Fkey`) does not survive SigV4 path canonicalization on the server (s3s signs the decoded
/// path).
pub fn subject_is_key(endpoint: Endpoint) -> bool {
    ROUTES.iter().any(|route| route.endpoint == endpoint && route.path.contains("{key_id}"))
}

/// Whether the endpoint's path segment is a user's access key.
pub fn subject_is_user(endpoint: Endpoint) -> bool {
    ROUTES.iter().any(|route| route.endpoint == endpoint && route.path.contains("{user}"))
}

const fn route(method: Method, path: &'static str, endpoint: Endpoint) -> Route {
    Route { method, path, endpoint }
}

/// The outcome of looking a request up in [`ROUTES`].
#[derive(Debug, PartialEq, Eq)]
pub enum Resolution {
    Found {
        endpoint: Endpoint,
        /// The path's `{…}` segment, decoded.
        subject: Option<String>,
    },
    /// The path exists but not with this method; carries the methods it does take.
    MethodNotAllowed(Vec<Method>),
    NotFound,
}

/// Whether a raw request path lies under one of the admin API prefixes.
pub fn is_admin_path(path: &str) -> bool {
    route_path(path).is_some()
}

/// Finds the endpoint for a method and a raw (percent-encoded) request path.
pub fn resolve(method: &Method, path: &str) -> Resolution {
    let Some(relative) = route_path(path) else {
        return Resolution::NotFound;
    };
    let segments: Vec<&str> = relative.split('/').skip(1).collect();
    let mut allowed = Vec::new();
    for route in ROUTES {
        let Some(key_id) = match_template(route.path, &segments) else {
            continue;
        };
        if route.method == method {
            return match key_id {
                Some(raw) => match percent_decode(raw) {
                    Some(decoded) => Resolution::Found { endpoint: route.endpoint, subject: Some(decoded) },
                    None => Resolution::NotFound,
                },
                None => Resolution::Found { endpoint: route.endpoint, subject: None },
            };
        }
        allowed.push(route.method.clone());
    }
    if allowed.is_empty() {
        Resolution::NotFound
    } else {
        Resolution::MethodNotAllowed(allowed)
    }
}

/// The part of `path` after a mount prefix, starting with `/`.
fn route_path(path: &str) -> Option<&str> {
    MOUNT_PREFIXES.iter().filter_map(|prefix| path.strip_prefix(prefix)).find(|rest| rest.starts_with('/'))
}

/// Matches path segments against a template; `Some(subject segment)` on a match.
fn match_template<'a>(template: &str, segments: &[&'a str]) -> Option<Option<&'a str>> {
    let parts: Vec<&str> = template.split('/').skip(1).collect();
    if parts.len() != segments.len() {
        return None;
    }
    let mut key_id = None;
    for (part, segment) in parts.iter().zip(segments) {
        if part.starts_with('{') && part.ends_with('}') {
            if segment.is_empty() {
                return None;
            }
            key_id = Some(*segment);
        } else if part != segment {
            return None;
        }
    }
    Some(key_id)
}

/// Decodes `%XX` escapes (as clients send in paths and query strings); `None` for broken escapes or non-UTF-8.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // `from_str_radix` alone would also take a sign (`%+f`).
            let hex = bytes.get(i + 1..i + 3).filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(endpoint: Endpoint, key_id: Option<&str>) -> Resolution {
        Resolution::Found { endpoint, subject: key_id.map(str::to_owned) }
    }

    #[test]
    fn every_prefix_serves_the_same_routes() {
        for prefix in MOUNT_PREFIXES {
            assert_eq!(resolve(&Method::GET, &format!("{prefix}/status")), found(Endpoint::Status, None));
            assert_eq!(
                resolve(&Method::POST, &format!("{prefix}/keys/k1/rotate")),
                found(Endpoint::RotateKey, Some("k1"))
            );
        }
    }

    #[test]
    fn key_ids_are_percent_decoded() {
        assert_eq!(
            resolve(&Method::GET, "/coffer/admin/v3/kms/keys/app%2Dkey%3A1"),
            found(Endpoint::DescribeKey, Some("app-key:1"))
        );
        assert_eq!(resolve(&Method::GET, "/coffer/admin/v3/kms/keys/bad%zz"), Resolution::NotFound);
    }

    #[test]
    fn store_and_bucket_routes_take_their_subject() {
        let kms = "/coffer/admin/v3/kms";
        assert_eq!(resolve(&Method::POST, &format!("{kms}/stores/eu")), found(Endpoint::AddStore, Some("eu")));
        assert_eq!(
            resolve(&Method::POST, &format!("{kms}/stores/eu/default")),
            found(Endpoint::SetDefaultStore, Some("eu"))
        );
        assert_eq!(resolve(&Method::GET, &format!("{kms}/stores")), found(Endpoint::ListStores, None));
        assert_eq!(
            resolve(&Method::PUT, &format!("{kms}/buckets/photos/key")),
            found(Endpoint::SetBucketKey, Some("photos"))
        );
        assert_eq!(
            resolve(&Method::GET, &format!("{kms}/keys/eu%2Fgdpr")),
            found(Endpoint::DescribeKey, Some("eu/gdpr"))
        );
    }

    #[test]
    fn wrong_method_lists_the_allowed_ones() {
        assert_eq!(
            resolve(&Method::PUT, "/coffer/admin/v3/kms/keys/k1"),
            Resolution::MethodNotAllowed(vec![Method::GET, Method::DELETE])
        );
        assert_eq!(
            resolve(&Method::GET, "/minio/admin/v3/kms/clear-cache"),
            Resolution::MethodNotAllowed(vec![Method::POST])
        );
    }

    #[test]
    fn only_paths_under_the_kms_prefixes_are_admin_paths() {
        assert!(is_admin_path("/coffer/admin/v3/kms/anything"));
        assert!(is_admin_path("/rustfs/admin/v3/kms/status"));
        assert!(is_admin_path("/coffer/admin/v3/kms/"));
        assert!(!is_admin_path("/coffer/admin/v3/kms"));
        assert!(!is_admin_path("/coffer/admin/v3/kmsx/status"));
        assert!(!is_admin_path("/coffer/admin/v3/config"));
        assert!(!is_admin_path("/bucket/coffer/admin/v3/kms/status"));
        assert_eq!(resolve(&Method::GET, "/coffer/admin/v3/kms/"), Resolution::NotFound);
        assert_eq!(resolve(&Method::GET, "/coffer/admin/v3/kms/unknown"), Resolution::NotFound);
        assert_eq!(resolve(&Method::GET, "/coffer/admin/v3/kms/keys/"), Resolution::NotFound);
        assert_eq!(resolve(&Method::GET, "/coffer/admin/v3/kms/status/"), Resolution::NotFound);
    }
}

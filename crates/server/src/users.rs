//! Users and their SigV4 secrets: the root user from `COFFER_ROOT_USER` / `COFFER_ROOT_PASSWORD` (always admin)
//! plus optional users from a TOML users file.
//!
//! [`UserRegistry`] answers s3s's secret-key lookups ([`S3Auth`]) and tells [`crate::authz`] each user's rights: the
//! admin flag and the user's policy (`policy`, a JSON policy document in the users file). Secrets
//! are held as s3s [`SecretKey`]s, which zeroize on drop and print a placeholder in `Debug`. The users file is read
//! again by [`UserRegistry::reload`] (on SIGHUP); a file that does not load leaves the users as they were.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Result};
use serde::Deserialize;
use zeroize::Zeroize;

use crate::policy::{Policy, PolicyError, PolicyKind};

/// Env var holding the root user's access key.
pub const ROOT_USER_ENV: &str = "COFFER_ROOT_USER";
/// Env var holding the root user's secret key.
pub const ROOT_PASSWORD_ENV: &str = "COFFER_ROOT_PASSWORD";
/// Credentials used on a loopback bind when none are configured.
const DEFAULT_ROOT: &str = "admin";

/// Why the users could not be set up. Messages never contain a secret.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error(
        "no credentials configured and {address} is not a loopback address: set {ROOT_USER_ENV} and \
         {ROOT_PASSWORD_ENV} (the default admin/admin is only allowed on 127.0.0.1 / ::1)"
    )]
    DefaultCredentialsOnPublicAddress { address: SocketAddr },
    #[error("{ROOT_USER_ENV} and {ROOT_PASSWORD_ENV} must be set together")]
    IncompleteRoot,
    #[error("{ROOT_USER_ENV} and {ROOT_PASSWORD_ENV} must not be empty")]
    EmptyRoot,
    #[error("cannot read users file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("users file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("users file {path}: access key `{access_key}` is defined more than once (or is the root user)")]
    Duplicate { path: PathBuf, access_key: String },
    #[error("users file {path}: a user has an empty access key or secret key")]
    Empty { path: PathBuf },
    #[error("users file {path}: the policy of `{access_key}` is not valid: {source}")]
    Policy { path: PathBuf, access_key: String, source: PolicyError },
}

/// The root user's credentials and where they came from.
pub struct RootCredentials {
    access_key: String,
    secret_key: SecretKey,
    is_default: bool,
}

impl std::fmt::Debug for RootCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootCredentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("is_default", &self.is_default)
            .finish()
    }
}

impl RootCredentials {
    /// Reads `COFFER_ROOT_USER` / `COFFER_ROOT_PASSWORD` and applies the loopback-default rule for `address`.
    pub fn from_env(address: SocketAddr) -> Result<Self, UsersError> {
        let user = std::env::var(ROOT_USER_ENV).ok();
        let password = std::env::var(ROOT_PASSWORD_ENV).ok();
        Self::resolve(user, password, address)
    }

    /// Root credentials from explicit values: both set → those; neither set → `admin`/`admin` on a loopback
    /// address, an error elsewhere.
    pub fn resolve(user: Option<String>, password: Option<String>, address: SocketAddr) -> Result<Self, UsersError> {
        match (user, password) {
            (Some(user), Some(mut password)) => {
                if user.is_empty() || password.is_empty() {
                    password.zeroize();
                    return Err(UsersError::EmptyRoot);
                }
                let secret_key = SecretKey::from(password.as_str());
                password.zeroize();
                Ok(RootCredentials { access_key: user, secret_key, is_default: false })
            }
            (None, None) if address.ip().is_loopback() => Ok(RootCredentials {
                access_key: DEFAULT_ROOT.to_owned(),
                secret_key: SecretKey::from(DEFAULT_ROOT),
                is_default: true,
            }),
            (None, None) => Err(UsersError::DefaultCredentialsOnPublicAddress { address }),
            (_, Some(mut password)) => {
                password.zeroize();
                Err(UsersError::IncompleteRoot)
            }
            (Some(_), None) => Err(UsersError::IncompleteRoot),
        }
    }

    /// The root access key (not secret).
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// True when the built-in `admin`/`admin` is in use (the caller warns about it).
    pub fn is_default(&self) -> bool {
        self.is_default
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    user: Vec<UserEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    access_key: String,
    secret_key: String,
    #[serde(default)]
    admin: bool,
    /// An IAM-style identity policy (JSON text).
    policy: Option<String>,
}

impl Drop for UserEntry {
    fn drop(&mut self) {
        self.secret_key.zeroize();
    }
}

struct User {
    secret_key: SecretKey,
    rights: UserRights,
}

/// What a user may do beyond what they own: everything (admins), or what their policies allow.
#[derive(Clone, Debug, Default)]
pub struct UserRights {
    /// The root user and users file entries with `admin = true`: every action, unless a policy denies it.
    pub admin: bool,
    /// The user's identity policies: the users file's, then the one attached through the admin API.
    pub policies: Vec<Arc<Policy>>,
}

/// Policies attached through the admin API, by access key.
type AttachedPolicies = HashMap<String, Arc<Policy>>;

type Users = HashMap<String, User>;

/// All users that may sign requests. Cheap to clone; clones share the users, and a reload.
#[derive(Clone)]
pub struct UserRegistry {
    shared: Arc<Shared>,
}

struct Shared {
    root: RootCredentials,
    users_file: Option<PathBuf>,
    /// Replaced whole by a reload; a lookup takes the current map.
    users: RwLock<Arc<Users>>,
    /// Kept by the store ([`crate::user_policies`]), mirrored here; a users-file reload leaves them alone.
    attached: RwLock<AttachedPolicies>,
}

impl std::fmt::Debug for UserRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let users = self.current();
        let mut keys: Vec<&String> = users.keys().collect();
        keys.sort();
        f.debug_struct("UserRegistry").field("access_keys", &keys).finish()
    }
}

impl UserRegistry {
    /// The root user (admin) plus the users of `users_file`, if given.
    pub fn load(root: RootCredentials, users_file: Option<&Path>) -> Result<Self, UsersError> {
        let users = read_users(&root, users_file)?;
        let shared = Shared {
            root,
            users_file: users_file.map(Path::to_owned),
            users: RwLock::new(Arc::new(users)),
            attached: RwLock::new(HashMap::new()),
        };
        Ok(UserRegistry { shared: Arc::new(shared) })
    }

    /// Reads the users file again and, if it loads, replaces every user but the root user with its users. Returns
    /// how many users there are now, root included. Without a users file there is nothing to read: `Ok(1)`.
    pub fn reload(&self) -> Result<usize, UsersError> {
        let users = read_users(&self.shared.root, self.shared.users_file.as_deref())?;
        let count = users.len();
        *self.shared.users.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(users);
        Ok(count)
    }

    /// Whether there is a users file to reload.
    pub fn has_users_file(&self) -> bool {
        self.shared.users_file.is_some()
    }

    fn current(&self) -> Arc<Users> {
        Arc::clone(&self.shared.users.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The secret key of `access_key`, if such a user exists.
    pub fn secret_for(&self, access_key: &str) -> Option<SecretKey> {
        self.current().get(access_key).map(|user| user.secret_key.clone())
    }

    /// The rights of `access_key`, if such a user exists.
    pub fn rights(&self, access_key: &str) -> Option<UserRights> {
        let mut rights = self.current().get(access_key).map(|user| user.rights.clone())?;
        let attached = self.shared.attached.read().unwrap_or_else(PoisonError::into_inner);
        rights.policies.extend(attached.get(access_key).cloned());
        Some(rights)
    }

    /// Attaches (`Some`) or detaches (`None`) the admin API policy of `access_key`.
    pub fn attach(&self, access_key: &str, policy: Option<Arc<Policy>>) {
        let mut attached = self.shared.attached.write().unwrap_or_else(PoisonError::into_inner);
        match policy {
            Some(policy) => attached.insert(access_key.to_owned(), policy),
            None => attached.remove(access_key),
        };
    }
}

/// The root user plus the users of `users_file`, if given.
fn read_users(root: &RootCredentials, users_file: Option<&Path>) -> Result<Users, UsersError> {
    let mut users = HashMap::new();
    let root_rights = UserRights { admin: true, policies: Vec::new() };
    users.insert(root.access_key.clone(), User { secret_key: root.secret_key.clone(), rights: root_rights });
    if let Some(path) = users_file {
        let mut text =
            std::fs::read_to_string(path).map_err(|source| UsersError::Read { path: path.to_owned(), source })?;
        let parsed = toml::from_str::<UsersFile>(&text);
        text.zeroize();
        let file =
            parsed.map_err(|e| UsersError::Parse { path: path.to_owned(), message: describe_parse_error(&e) })?;
        for entry in &file.user {
            if entry.access_key.is_empty() || entry.secret_key.is_empty() {
                return Err(UsersError::Empty { path: path.to_owned() });
            }
            if users.contains_key(&entry.access_key) {
                return Err(UsersError::Duplicate { path: path.to_owned(), access_key: entry.access_key.clone() });
            }
            let policy =
                entry.policy.as_deref().map(|text| Policy::parse(text, &PolicyKind::Identity)).transpose().map_err(
                    |source| UsersError::Policy { path: path.to_owned(), access_key: entry.access_key.clone(), source },
                )?;
            let rights = UserRights { admin: entry.admin, policies: policy.map(Arc::new).into_iter().collect() };
            let user = User { secret_key: SecretKey::from(entry.secret_key.as_str()), rights };
            users.insert(entry.access_key.clone(), user);
        }
    }
    Ok(users)
}

/// A users-file parse error without the offending value: type errors quote the value, which may be a secret.
fn describe_parse_error(error: &toml::de::Error) -> String {
    let message = error.message();
    if message.starts_with("unknown field") || message.starts_with("missing field") {
        message.to_owned()
    } else {
        "expected [[user]] tables with string access_key and secret_key, an optional boolean admin and an optional \
         string policy"
            .to_owned()
    }
}

#[async_trait::async_trait]
impl S3Auth for UserRegistry {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        self.secret_for(access_key).ok_or_else(|| s3_error!(InvalidAccessKeyId))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> SocketAddr {
        "127.0.0.1:9000".parse().unwrap()
    }

    #[test]
    fn default_root_only_on_loopback() {
        let root = RootCredentials::resolve(None, None, loopback()).unwrap();
        assert!(root.is_default());
        assert_eq!(root.access_key(), "admin");
        let ipv6 = RootCredentials::resolve(None, None, "[::1]:9000".parse().unwrap()).unwrap();
        assert!(ipv6.is_default());
        let err = RootCredentials::resolve(None, None, "0.0.0.0:9000".parse().unwrap()).unwrap_err();
        assert!(matches!(err, UsersError::DefaultCredentialsOnPublicAddress { .. }));
        assert!(err.to_string().contains("COFFER_ROOT_USER"));
    }

    #[test]
    fn explicit_root_is_used_anywhere_and_must_be_complete() {
        let root =
            RootCredentials::resolve(Some("boss".into()), Some("s3cret-pass".into()), "0.0.0.0:1".parse().unwrap())
                .unwrap();
        assert!(!root.is_default());
        assert!(!format!("{root:?}").contains("s3cret-pass"));
        assert!(matches!(
            RootCredentials::resolve(Some("boss".into()), None, loopback()),
            Err(UsersError::IncompleteRoot)
        ));
        assert!(matches!(
            RootCredentials::resolve(Some(String::new()), Some("x".into()), loopback()),
            Err(UsersError::EmptyRoot)
        ));
    }

    #[test]
    fn users_file_adds_users_with_admin_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        std::fs::write(
            &path,
            "[[user]]\naccess_key = \"reader\"\nsecret_key = \"reader-secret\"\n\n\
             [[user]]\naccess_key = \"ops\"\nsecret_key = \"ops-secret\"\nadmin = true\n",
        )
        .unwrap();
        let root = RootCredentials::resolve(Some("root".into()), Some("root-secret".into()), loopback()).unwrap();
        let users = UserRegistry::load(root, Some(&path)).unwrap();
        assert_eq!(users.secret_for("reader").unwrap().expose(), "reader-secret");
        let is_admin = |access_key: &str| users.rights(access_key).is_some_and(|rights| rights.admin);
        assert!(!is_admin("reader"));
        assert!(is_admin("ops"));
        assert!(is_admin("root"));
        assert!(!is_admin("nobody"));
        assert!(users.secret_for("nobody").is_none());
        assert!(!format!("{users:?}").contains("secret"));
    }

    #[test]
    fn reload_replaces_the_file_users_and_keeps_them_when_the_file_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        std::fs::write(&path, "[[user]]\naccess_key = \"alice\"\nsecret_key = \"alice-secret\"\n").unwrap();
        let root = RootCredentials::resolve(Some("root".into()), Some("root-secret".into()), loopback()).unwrap();
        let users = UserRegistry::load(root, Some(&path)).unwrap();
        let shared = users.clone();

        std::fs::write(&path, "[[user]]\naccess_key = \"bob\"\nsecret_key = \"bob-secret\"\nadmin = true\n").unwrap();
        assert_eq!(users.reload().unwrap(), 2);
        assert!(shared.secret_for("alice").is_none());
        assert_eq!(shared.secret_for("bob").unwrap().expose(), "bob-secret");
        assert!(shared.rights("bob").unwrap().admin && shared.rights("root").unwrap().admin);

        std::fs::write(&path, "[[user]]\naccess_key = \"carol\"\n").unwrap();
        assert!(matches!(users.reload(), Err(UsersError::Parse { .. })));
        assert!(shared.secret_for("bob").is_some() && shared.secret_for("carol").is_none());
    }

    #[test]
    fn users_file_rejects_duplicates_and_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let root = || RootCredentials::resolve(None, None, loopback()).unwrap();

        std::fs::write(&path, "[[user]]\naccess_key = \"admin\"\nsecret_key = \"x\"\n").unwrap();
        assert!(matches!(UserRegistry::load(root(), Some(&path)), Err(UsersError::Duplicate { .. })));

        std::fs::write(&path, "[[user]]\naccess_key = \"a\"\nsecret = \"x\"\n").unwrap();
        let err = UserRegistry::load(root(), Some(&path)).unwrap_err();
        assert!(matches!(err, UsersError::Parse { .. }), "{err}");
        assert!(err.to_string().contains("unknown field `secret`"), "{err}");

        std::fs::write(&path, "[[user]]\naccess_key = \"a\"\nsecret_key = 918273645\n").unwrap();
        let err = UserRegistry::load(root(), Some(&path)).unwrap_err();
        assert!(!err.to_string().contains("918273645"), "{err}");
    }
}

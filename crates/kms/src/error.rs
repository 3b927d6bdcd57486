//! The one error type of the KMS: every backend and the manager report through it, and its messages are safe to
//! show to operators (they name keys and files, never key material or credentials).

/// Result alias for KMS operations.
pub type Result<T, E = KmsError> = std::result::Result<T, E>;

/// What went wrong in a KMS operation.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    #[error("KMS is not configured")]
    NotConfigured,
    #[error("KMS is not running")]
    NotRunning,
    #[error("KMS key not found: {0}")]
    KeyNotFound(String),
    /// A key reference or wrapped key names a store that is not configured.
    #[error("KMS store not configured: {0}")]
    StoreNotFound(String),
    /// A store change that would strand data or settings that depend on the store.
    #[error("{0}")]
    StoreInUse(String),
    #[error("KMS key is disabled: {0}")]
    KeyDisabled(String),
    #[error("KMS key is pending deletion: {0}")]
    KeyPendingDeletion(String),
    /// The key's expiration time has passed: it makes no new data keys (it still opens the ones it made).
    #[error("KMS key {key_id} expired at {expired_at}: it no longer encrypts new data")]
    KeyExpired { key_id: String, expired_at: String },
    /// The data key was wrapped by a version below the key's minimum decryption version: that version is retired.
    #[error(
        "version {version} of KMS key {key_id} is retired (below the key's minimum decryption version): data keys it \
         wrapped no longer decrypt"
    )]
    KeyVersionRetired { key_id: String, version: u32 },
    #[error("KMS key already exists: {0}")]
    KeyExists(String),
    #[error("invalid key id: {0}")]
    InvalidKeyId(String),
    /// The key exists but cannot wrap data keys (a signing or asymmetric transit key, say).
    #[error("KMS key {key_id} cannot be used for encryption: {reason}")]
    UnusableKey { key_id: String, reason: String },
    /// A request argument is out of range or malformed; `message` names the argument.
    #[error("{message}")]
    InvalidArgument { field: String, message: String },
    /// The wrapped key does not open: wrong encryption context, tampered bytes or another backend's blob.
    #[error("wrapped data key could not be decrypted (wrong encryption context, wrong key or corrupted blob)")]
    InvalidCiphertext,
    /// A configuration value is missing or wrong; `message` names the field in words an operator can act on.
    #[error("{message}")]
    InvalidConfig { field: String, message: String },
    #[error("cannot {action} while the KMS is {state}")]
    WrongState { state: String, action: String },
    /// The backend cannot be reached or cannot serve (sealed, timed out, refused).
    #[error("KMS backend unavailable: {0}")]
    Unavailable(String),
    /// The backend answered with an error that fits no other variant.
    #[error("KMS backend error: {0}")]
    Backend(String),
    /// Another node of the cluster changed the same state meanwhile; the change was not applied.
    #[error("{0}")]
    Conflict(String),
    #[error("KMS storage error: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl KmsError {
    /// Wraps an I/O error with what was being done (a path or an operation), never with data.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }

    pub fn invalid_argument(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidArgument { field: field.into(), message: message.into() }
    }

    /// Whether this is a fault of the KMS (unreachable, misconfigured, failing storage) rather than an answer to what
    /// was asked (an unknown, disabled or unusable key, a wrong context, a bad argument). Only faults count in the
    /// health counters and `last_error`.
    pub fn is_fault(&self) -> bool {
        match self {
            Self::NotConfigured
            | Self::NotRunning
            | Self::Unavailable(_)
            | Self::Backend(_)
            | Self::Io { .. }
            | Self::InvalidConfig { .. } => true,
            Self::KeyNotFound(_)
            | Self::StoreNotFound(_)
            | Self::StoreInUse(_)
            | Self::KeyDisabled(_)
            | Self::KeyPendingDeletion(_)
            | Self::KeyExpired { .. }
            | Self::KeyVersionRetired { .. }
            | Self::KeyExists(_)
            | Self::InvalidKeyId(_)
            | Self::UnusableKey { .. }
            | Self::InvalidArgument { .. }
            | Self::InvalidCiphertext
            | Self::WrongState { .. }
            | Self::Conflict(_) => false,
        }
    }

    /// An equal error for a second receiver (errors are not `Clone`: an I/O error keeps its kind and message).
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Self::NotConfigured => Self::NotConfigured,
            Self::NotRunning => Self::NotRunning,
            Self::KeyNotFound(id) => Self::KeyNotFound(id.clone()),
            Self::StoreNotFound(name) => Self::StoreNotFound(name.clone()),
            Self::StoreInUse(message) => Self::StoreInUse(message.clone()),
            Self::KeyDisabled(id) => Self::KeyDisabled(id.clone()),
            Self::KeyPendingDeletion(id) => Self::KeyPendingDeletion(id.clone()),
            Self::KeyExpired { key_id, expired_at } => {
                Self::KeyExpired { key_id: key_id.clone(), expired_at: expired_at.clone() }
            }
            Self::KeyVersionRetired { key_id, version } => {
                Self::KeyVersionRetired { key_id: key_id.clone(), version: *version }
            }
            Self::KeyExists(id) => Self::KeyExists(id.clone()),
            Self::InvalidKeyId(message) => Self::InvalidKeyId(message.clone()),
            Self::UnusableKey { key_id, reason } => {
                Self::UnusableKey { key_id: key_id.clone(), reason: reason.clone() }
            }
            Self::InvalidArgument { field, message } => {
                Self::InvalidArgument { field: field.clone(), message: message.clone() }
            }
            Self::InvalidCiphertext => Self::InvalidCiphertext,
            Self::InvalidConfig { field, message } => {
                Self::InvalidConfig { field: field.clone(), message: message.clone() }
            }
            Self::WrongState { state, action } => Self::WrongState { state: state.clone(), action: action.clone() },
            Self::Unavailable(message) => Self::Unavailable(message.clone()),
            Self::Backend(message) => Self::Backend(message.clone()),
            Self::Conflict(message) => Self::Conflict(message.clone()),
            Self::Io { context, source } => {
                Self::io(context.clone(), std::io::Error::new(source.kind(), source.to_string()))
            }
        }
    }
}

//! `coffer server` configuration: command-line flags, `COFFER_*` environment variables and an optional TOML file.
//!
//! Precedence is flags > environment > file > built-in defaults. Clap resolves the first two; the file fills what
//! is still unset. File keys are the long flag names (`min-part-size = 8388608`), so one table documents all three
//! sources. Secrets never come from flags or the file: see [`crate::users`] for `COFFER_ROOT_USER` /
//! `COFFER_ROOT_PASSWORD`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Deserialize;

use crate::logging::LogFormat;

/// The PostgreSQL URL of `--metadata-url`. It usually carries a password, so its `Debug` form shows nothing of it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl(<redacted>)")
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        Ok(DatabaseUrl(url.to_owned()))
    }
}

/// The metadata engine of the store (`--metadata`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetadataEngine {
    /// Records as files in the data directory, listings from an index built in memory.
    Directory,
    /// An SQLite database in the data directory.
    #[default]
    Sqlite,
    /// A PostgreSQL database (`--metadata-url`), which several servers can share.
    Postgres,
}

/// Where the SQL metadata engine keeps stored bytes (`--data-engine`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataEngineKind {
    /// Files under the data directory.
    #[default]
    Directory,
    /// Objects in a bucket of an S3-compatible cluster (`--data-s3-*`).
    S3,
}

/// The data engine's settings, credentials aside (they come from the environment only, see
/// [`S3DataSettings::location`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSettings {
    Directory,
    S3(S3DataSettings),
}

/// Where the S3 data engine keeps stored bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3DataSettings {
    pub endpoint: String,
    pub bucket: String,
    pub prefix: String,
    pub region: String,
    pub release_grace: Duration,
}

/// Environment variables holding the data bucket's credentials.
pub const DATA_S3_ACCESS_KEY_ENV: &str = "COFFER_DATA_S3_ACCESS_KEY_ID";
pub const DATA_S3_SECRET_KEY_ENV: &str = "COFFER_DATA_S3_SECRET_ACCESS_KEY";

impl DataSettings {
    /// The store's data location, with the data bucket's credentials from `env` (the process environment).
    pub fn location(&self, env: impl Fn(&str) -> Option<String>) -> Result<coffer_store::DataLocation, ConfigError> {
        match self {
            DataSettings::Directory => Ok(coffer_store::DataLocation::Directory),
            DataSettings::S3(settings) => settings.location(env),
        }
    }
}

impl S3DataSettings {
    /// The store's data location, with the credentials `env` (the process environment in the server) holds.
    pub fn location(&self, env: impl Fn(&str) -> Option<String>) -> Result<coffer_store::DataLocation, ConfigError> {
        let var =
            |name: &'static str| env(name).filter(|value| !value.is_empty()).ok_or(ConfigError::DataS3Credentials);
        Ok(coffer_store::DataLocation::S3(coffer_store::S3Location {
            endpoint: self.endpoint.clone(),
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
            region: self.region.clone(),
            access_key_id: var(DATA_S3_ACCESS_KEY_ENV)?,
            secret_access_key: coffer_store::S3SecretKey::new(var(DATA_S3_SECRET_KEY_ENV)?),
            release_grace: self.release_grace,
        }))
    }
}

/// Listen address when none is configured.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:9000";
/// Data directory when none is configured.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Region reported to clients when none is configured.
pub const DEFAULT_REGION: &str = "us-east-1";
/// S3's minimum size of every multipart part but the last (5 MiB).
pub const DEFAULT_MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Seconds a new connection has to deliver its first request head.
pub const DEFAULT_HEADER_READ_TIMEOUT: u64 = 10;
/// Seconds an HTTP/1.1 connection may wait for its next request.
pub const DEFAULT_IDLE_TIMEOUT: u64 = 30;
/// Connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Bytes an audit file grows to before it is rotated.
pub const DEFAULT_AUDIT_MAX_BYTES: u64 = 100 * 1024 * 1024;

const AFTER_HELP: &str = "\
Every flag can also be given as an environment variable (shown as [env: …]) or as a key in the TOML file named by \
--config; the key is the long flag name, e.g. `address = \"0.0.0.0:9000\"`, `min-part-size = 8388608`, \
`kms-cache = false`. Precedence: flags > environment > file > defaults.

Credentials (environment only, never flags or the config file):
  COFFER_ROOT_USER, COFFER_ROOT_PASSWORD   the admin user's access key and secret key. When neither is set and the
                                           address is a loopback address, admin/admin is used (with a warning);
                                           on any other address the server refuses to start.
  --users-file FILE                        more users, TOML: [[user]] access_key = \"…\" secret_key = \"…\" admin = false

Logging: --log-level or RUST_LOG with per-crate filters, e.g. info,coffer_store=debug (default: info);
--log-format text or json.

Metrics: GET /metrics (Prometheus text format), open to anyone unless --metrics-token-file is set; --metrics=false
turns it off.

SIGHUP reloads the users file, the TLS certificate and key, the metrics token and the config file's log-level.";

/// Flags of `coffer server`. Every value is optional here so that unset flags can fall back to the file.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[command(after_help = AFTER_HELP)]
pub struct ServerArgs {
    /// TOML configuration file (keys are the long flag names).
    #[arg(long, env = "COFFER_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address to listen on [default: 127.0.0.1:9000].
    #[arg(long, env = "COFFER_ADDRESS", value_name = "IP:PORT")]
    pub address: Option<SocketAddr>,

    /// Data directory (created if missing) [default: ./data].
    #[arg(long, env = "COFFER_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// PEM certificate chain; together with --tls-key the server speaks HTTPS (HTTP/1.1 and h2).
    #[arg(long, env = "COFFER_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for --tls-cert.
    #[arg(long, env = "COFFER_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// TOML file with additional users: [[user]] access_key, secret_key, admin (default false).
    #[arg(long, env = "COFFER_USERS_FILE", value_name = "FILE")]
    pub users_file: Option<PathBuf>,

    /// Region reported by GetBucketLocation and HeadBucket [default: us-east-1].
    #[arg(long, env = "COFFER_REGION", value_name = "REGION")]
    pub region: Option<String>,

    /// Minimum size in bytes of every multipart part except the last, checked at CompleteMultipartUpload
    /// [default: 5242880].
    #[arg(long, env = "COFFER_MIN_PART_SIZE", value_name = "BYTES")]
    pub min_part_size: Option<u64>,

    /// Accept SSE-C keys over plain HTTP from non-loopback clients (they are always accepted over HTTPS and from
    /// loopback) [default: false].
    #[arg(long, env = "COFFER_ALLOW_INSECURE_SSE_C", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true")]
    pub allow_insecure_sse_c: Option<bool>,

    /// Seconds a new connection has to send its first complete request head, TLS handshake included; then it is
    /// closed [default: 10].
    #[arg(long, env = "COFFER_HEADER_READ_TIMEOUT", value_name = "SECONDS")]
    pub header_read_timeout: Option<u64>,

    /// Seconds an HTTP/1.1 keep-alive connection may wait for its next request (idle time and the reading of that
    /// request's head together); then it is closed [default: 30].
    #[arg(long, env = "COFFER_IDLE_TIMEOUT", value_name = "SECONDS")]
    pub idle_timeout: Option<u64>,

    /// Connections served at once; further connections wait in the listen backlog until one closes [default: 4096].
    #[arg(long, env = "COFFER_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// Log filter: a level (`info`, `debug`) or per-crate directives (`info,coffer_store=debug`); overrides
    /// RUST_LOG. The config file's value is read again on SIGHUP [default: RUST_LOG, else info].
    #[arg(long, env = "COFFER_LOG_LEVEL", value_name = "DIRECTIVES")]
    pub log_level: Option<String>,

    /// Append every audit event — admin actions and each use of a KMS key on the object path — to this file, one
    /// JSON line each (created 0600) [default: audit events go to the log only].
    #[arg(long, env = "COFFER_AUDIT_FILE", value_name = "FILE")]
    pub audit_file: Option<PathBuf>,

    /// Size in bytes past which the audit file is renamed to FILE.1 and a new one started [default: 104857600].
    #[arg(long, env = "COFFER_AUDIT_MAX_BYTES", value_name = "BYTES")]
    pub audit_max_bytes: Option<u64>,

    /// Log line format: `text` (human-readable) or `json` (one JSON object per line) [default: text].
    #[arg(long, env = "COFFER_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Serve Prometheus metrics at GET /metrics on the S3 listener [default: true].
    #[arg(long, env = "COFFER_METRICS", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub metrics: Option<bool>,

    /// File holding a bearer token that /metrics then requires (`Authorization: Bearer TOKEN`); read again on
    /// SIGHUP [default: none, /metrics is open to anyone].
    #[arg(long, env = "COFFER_METRICS_TOKEN_FILE", value_name = "FILE")]
    pub metrics_token_file: Option<PathBuf>,

    /// Scrub every stored object (as `coffer admin scrub` does) whenever the last scrub finished this long ago: a
    /// number with s, m, h or d (`24h`), or `off` [default: off].
    #[arg(long, env = "COFFER_SCRUB_INTERVAL", value_name = "DURATION")]
    pub scrub_interval: Option<String>,

    /// Where the metadata is kept: `directory` (records in the data directory), `sqlite` (an SQLite database in
    /// the data directory) or `postgres` (the PostgreSQL database at --metadata-url) [default: sqlite].
    #[arg(long, env = "COFFER_METADATA", value_name = "ENGINE")]
    pub metadata: Option<MetadataEngine>,

    /// The PostgreSQL database of `--metadata postgres`: `postgres://user:password@host:port/database`. Prefer the
    /// environment variable: a password in a flag shows in the process list.
    #[arg(long, env = "COFFER_METADATA_URL", value_name = "URL", hide_env_values = true)]
    pub metadata_url: Option<DatabaseUrl>,

    #[command(flatten)]
    #[serde(flatten)]
    pub data_location: DataArgs,

    /// Makes this server a node of a cluster sharing the `--metadata postgres` database: the file holds the cluster
    /// key (32 random bytes, `head -c 32 /dev/urandom`, mode 0600), the same on every node. It signs the records and
    /// seals the KMS state kept in the database (configuration, local key files), which every node then shares
    /// [default: none, a single node].
    #[arg(long, env = "COFFER_CLUSTER_KEY_FILE", value_name = "FILE")]
    pub cluster_key_file: Option<PathBuf>,

    #[command(flatten)]
    #[serde(flatten)]
    pub kms: KmsArgs,
}

/// Where the SQL metadata engine keeps stored bytes: flags of `coffer server` and of `coffer migrate` (which imports
/// into the same places).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DataArgs {
    /// Where the SQL metadata engine (`--metadata sqlite|postgres`) keeps stored bytes: `directory` (the data
    /// directory) or `s3` (a bucket of any S3-compatible cluster, see --data-s3-*) [default: directory].
    #[arg(long, env = "COFFER_DATA_ENGINE", value_name = "ENGINE")]
    pub data_engine: Option<DataEngineKind>,

    /// The S3 API endpoint of `--data-engine s3`, e.g. `https://s3.eu-west-1.amazonaws.com` or
    /// `http://seaweedfs:8333`. Credentials: COFFER_DATA_S3_ACCESS_KEY_ID and COFFER_DATA_S3_SECRET_ACCESS_KEY.
    #[arg(long, env = "COFFER_DATA_S3_ENDPOINT", value_name = "URL")]
    pub data_s3_endpoint: Option<String>,

    /// The bucket of `--data-engine s3` (it must exist).
    #[arg(long, env = "COFFER_DATA_S3_BUCKET", value_name = "BUCKET")]
    pub data_s3_bucket: Option<String>,

    /// A prefix for every name Coffer writes in the data bucket, e.g. `coffer/` [default: none].
    #[arg(long, env = "COFFER_DATA_S3_PREFIX", value_name = "PREFIX")]
    pub data_s3_prefix: Option<String>,

    /// The data bucket's region [default: us-east-1].
    #[arg(long, env = "COFFER_DATA_S3_REGION", value_name = "REGION")]
    pub data_s3_region: Option<String>,

    /// How long a data file in the bucket stays after no object names it any more (overwritten, deleted), so that
    /// reads in flight on any node finish: a number with s, m, h or d [default: 15m].
    #[arg(long, env = "COFFER_DATA_RELEASE_GRACE", value_name = "DURATION")]
    pub data_release_grace: Option<String>,
}

/// KMS backend selectable with `--kms-backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KmsBackendKind {
    /// Keys in a local directory, wrapped with a master secret.
    Local,
    /// HashiCorp Vault / OpenBao transit engine.
    Vault,
}

/// KMS settings, parsed and merged like every other setting. When any is given the KMS is configured from them at
/// start (see [`crate::kms::kms_config`]); otherwise the persisted KMS state, or the embedded default, applies.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct KmsArgs {
    /// KMS backend: local or vault [default: an embedded local backend under DATA/.coffer/kms].
    #[arg(long, env = "COFFER_KMS_BACKEND", value_name = "BACKEND")]
    pub kms_backend: Option<KmsBackendKind>,

    /// Key directory of the local backend (required with --kms-backend local; without --kms-backend, other KMS
    /// settings apply to the embedded key directory under DATA/.coffer/kms).
    #[arg(long, env = "COFFER_KMS_KEY_DIR", value_name = "DIR")]
    pub kms_key_dir: Option<PathBuf>,

    /// File holding the local backend's master secret (alternatively env COFFER_KMS_LOCAL_MASTER_KEY).
    #[arg(long, env = "COFFER_KMS_MASTER_KEY_FILE", value_name = "FILE")]
    pub kms_master_key_file: Option<PathBuf>,

    /// Key used when a request asks for SSE-KMS without naming a key [default: coffer-default].
    #[arg(long, env = "COFFER_KMS_DEFAULT_KEY_ID", value_name = "KEY_ID")]
    pub kms_default_key_id: Option<String>,

    /// Vault/OpenBao address, e.g. https://vault.example:8200.
    #[arg(long, env = "COFFER_KMS_VAULT_ADDRESS", value_name = "URL")]
    pub kms_vault_address: Option<String>,

    /// Mount path of the transit engine [default: transit].
    #[arg(long, env = "COFFER_KMS_VAULT_MOUNT", value_name = "PATH")]
    pub kms_vault_mount: Option<String>,

    /// Vault namespace (Enterprise / OpenBao namespaces).
    #[arg(long, env = "COFFER_KMS_VAULT_NAMESPACE", value_name = "NS")]
    pub kms_vault_namespace: Option<String>,

    /// File holding a Vault token (alternatively env COFFER_KMS_VAULT_TOKEN).
    #[arg(long, env = "COFFER_KMS_VAULT_TOKEN_FILE", value_name = "FILE")]
    pub kms_vault_token_file: Option<PathBuf>,

    /// AppRole role id (AppRole auth instead of a token).
    #[arg(long, env = "COFFER_KMS_VAULT_ROLE_ID", value_name = "ROLE_ID")]
    pub kms_vault_role_id: Option<String>,

    /// File holding the AppRole secret id (alternatively env COFFER_KMS_VAULT_SECRET_ID).
    #[arg(long, env = "COFFER_KMS_VAULT_SECRET_ID_FILE", value_name = "FILE")]
    pub kms_vault_secret_id_file: Option<PathBuf>,

    /// PEM CA certificate to verify the Vault server.
    #[arg(long, env = "COFFER_KMS_VAULT_CA_CERT", value_name = "FILE")]
    pub kms_vault_ca_cert: Option<PathBuf>,

    /// Do not verify Vault's TLS certificate (testing only) [default: false].
    #[arg(long, env = "COFFER_KMS_VAULT_SKIP_TLS_VERIFY", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true")]
    pub kms_vault_skip_tls_verify: Option<bool>,

    /// PEM client certificate for Vault's TLS (mutual TLS; with --kms-vault-client-key).
    #[arg(long, env = "COFFER_KMS_VAULT_CLIENT_CERT", value_name = "FILE")]
    pub kms_vault_client_cert: Option<PathBuf>,

    /// PEM private key of that client certificate.
    #[arg(long, env = "COFFER_KMS_VAULT_CLIENT_KEY", value_name = "FILE")]
    pub kms_vault_client_key: Option<PathBuf>,

    /// Time limit of one Vault call in seconds [default: 10].
    #[arg(long, env = "COFFER_KMS_TIMEOUT_SECONDS", value_name = "SECONDS")]
    pub kms_timeout_seconds: Option<u64>,

    /// Retries of a Vault call that could not connect or got a 5xx answer [default: 3].
    #[arg(long, env = "COFFER_KMS_RETRY_ATTEMPTS", value_name = "N")]
    pub kms_retry_attempts: Option<u32>,

    /// Cache data keys (bucket keys and unwrapped keys) [default: true].
    #[arg(long, env = "COFFER_KMS_CACHE", value_name = "BOOL")]
    pub kms_cache: Option<bool>,

    /// Lifetime of a cached data key in seconds [default: 300].
    #[arg(long, env = "COFFER_KMS_CACHE_TTL_SECONDS", value_name = "SECONDS")]
    pub kms_cache_ttl_seconds: Option<u64>,

    /// Maximum number of cached data keys [default: 1000].
    #[arg(long, env = "COFFER_KMS_CACHE_CAPACITY", value_name = "N")]
    pub kms_cache_capacity: Option<u64>,

    /// Let the --kms-* settings replace a saved KMS configuration that names another store (by default the server
    /// refuses to start: objects encrypted under the saved store need it) [default: false].
    #[arg(long, env = "COFFER_KMS_REPLACE_SAVED_CONFIG", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true")]
    pub kms_replace_saved_config: Option<bool>,
}

/// Why the configuration could not be loaded. Messages name files and keys, never values.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid TOML for coffer: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: unknown key `{key}` (keys are the long flag names of `coffer server --help`)")]
    UnknownKey { path: PathBuf, key: String },
    #[error("--tls-cert and --tls-key must be given together")]
    TlsIncomplete,
    #[error("cannot resolve the data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("--{key} must be at least 1")]
    Zero { key: &'static str },
    #[error("--{key} {value:?} is not a duration: a whole number with s, m, h or d (e.g. `24h`), or `off`")]
    Duration { key: &'static str, value: String },
    #[error("--data-engine s3 needs the SQL metadata engine (--metadata sqlite or postgres)")]
    DataEngineNeedsSql,
    #[error("--data-engine s3 needs --{key}")]
    DataS3Missing { key: &'static str },
    #[error("--{key} is a setting of --data-engine s3")]
    DataS3Unused { key: &'static str },
    #[error(
        "--data-engine s3 needs the bucket's credentials in COFFER_DATA_S3_ACCESS_KEY_ID and \
             COFFER_DATA_S3_SECRET_ACCESS_KEY"
    )]
    DataS3Credentials,
}

/// Certificate and key files for HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How the listener treats connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From accept to the first complete request head (TLS handshake included).
    pub header_read_timeout: Duration,
    /// From the end of a response on an HTTP/1.1 connection to the next complete request head.
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Where audit events are written besides the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    pub file: PathBuf,
    pub max_bytes: u64,
}

/// The effective configuration after merging all sources and applying defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub address: SocketAddr,
    pub data_dir: PathBuf,
    pub tls: Option<TlsFiles>,
    pub users_file: Option<PathBuf>,
    pub region: String,
    pub min_part_size: u64,
    pub allow_insecure_sse_c: bool,
    pub connections: ConnectionLimits,
    pub log_level: Option<String>,
    pub audit: Option<AuditSettings>,
    pub log_format: LogFormat,
    pub metrics: MetricsAccess,
    /// How long after the last scrub finished a background scrub starts; `None`: no background scrubs.
    pub scrub_interval: Option<Duration>,
    pub metadata: MetadataEngine,
    pub metadata_url: Option<DatabaseUrl>,
    pub data: DataSettings,
    pub cluster_key_file: Option<PathBuf>,
    pub kms: KmsArgs,
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsAccess {
    Off,
    Public,
    /// Requests must carry the bearer token held in this file.
    TokenFile(PathBuf),
}

impl ServerConfig {
    /// Merges `args` (flags and env, as parsed by clap) over the file named by `--config`, then applies defaults.
    pub fn load(args: ServerArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_config_file(path)?,
            None => ServerArgs::default(),
        };
        Self::resolve(args.or(file))
    }

    /// Applies defaults to fully merged arguments.
    pub fn resolve(args: ServerArgs) -> Result<Self, ConfigError> {
        let data = args.data_location.settings(args.metadata)?;
        let tls = match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => return Err(ConfigError::TlsIncomplete),
        };
        let connections = ConnectionLimits {
            header_read_timeout: Duration::from_secs(at_least_one(
                args.header_read_timeout,
                DEFAULT_HEADER_READ_TIMEOUT,
                "header-read-timeout",
            )?),
            idle_timeout: Duration::from_secs(at_least_one(args.idle_timeout, DEFAULT_IDLE_TIMEOUT, "idle-timeout")?),
            max_connections: at_least_one(args.max_connections, DEFAULT_MAX_CONNECTIONS, "max-connections")?,
        };
        Ok(ServerConfig {
            address: args.address.unwrap_or_else(|| DEFAULT_ADDRESS.parse().expect("valid default address")),
            data_dir: absolute(args.data.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)))?,
            tls,
            users_file: args.users_file,
            region: args.region.unwrap_or_else(|| DEFAULT_REGION.to_owned()),
            min_part_size: args.min_part_size.unwrap_or(DEFAULT_MIN_PART_SIZE),
            allow_insecure_sse_c: args.allow_insecure_sse_c.unwrap_or(false),
            connections,
            log_level: args.log_level,
            audit: match args.audit_file {
                Some(file) => Some(AuditSettings {
                    file,
                    max_bytes: at_least_one(args.audit_max_bytes, DEFAULT_AUDIT_MAX_BYTES, "audit-max-bytes")?,
                }),
                None => None,
            },
            log_format: args.log_format.unwrap_or_default(),
            metrics: match (args.metrics.unwrap_or(true), args.metrics_token_file) {
                (false, _) => MetricsAccess::Off,
                (true, None) => MetricsAccess::Public,
                (true, Some(path)) => MetricsAccess::TokenFile(path),
            },
            metadata: args.metadata.unwrap_or_default(),
            metadata_url: args.metadata_url,
            data,
            cluster_key_file: args.cluster_key_file,
            scrub_interval: match args.scrub_interval {
                Some(text) => parse_interval(&text)
                    .ok_or_else(|| ConfigError::Duration { key: "scrub-interval", value: text.clone() })?,
                None => None,
            },
            kms: args.kms,
        })
    }
}

impl DataArgs {
    /// The data engine's settings, checked: `s3` needs the SQL metadata engine, an endpoint and a bucket, and the S3
    /// settings mean nothing without it.
    pub fn settings(&self, metadata: Option<MetadataEngine>) -> Result<DataSettings, ConfigError> {
        let release_grace = match &self.data_release_grace {
            Some(text) => parse_interval(text)
                .flatten()
                .ok_or_else(|| ConfigError::Duration { key: "data-release-grace", value: text.clone() })?,
            None => coffer_store::DEFAULT_RELEASE_GRACE,
        };
        if self.data_engine.unwrap_or_default() == DataEngineKind::Directory {
            let given = [
                ("data-s3-endpoint", self.data_s3_endpoint.is_some()),
                ("data-s3-bucket", self.data_s3_bucket.is_some()),
                ("data-s3-prefix", self.data_s3_prefix.is_some()),
                ("data-s3-region", self.data_s3_region.is_some()),
                ("data-release-grace", self.data_release_grace.is_some()),
            ];
            return match given.into_iter().find(|(_, given)| *given) {
                Some((key, _)) => Err(ConfigError::DataS3Unused { key }),
                None => Ok(DataSettings::Directory),
            };
        }
        if metadata.unwrap_or_default() == MetadataEngine::Directory {
            return Err(ConfigError::DataEngineNeedsSql);
        }
        let required = |value: &Option<String>, key| value.clone().ok_or(ConfigError::DataS3Missing { key });
        Ok(DataSettings::S3(S3DataSettings {
            endpoint: required(&self.data_s3_endpoint, "data-s3-endpoint")?,
            bucket: required(&self.data_s3_bucket, "data-s3-bucket")?,
            prefix: self.data_s3_prefix.clone().unwrap_or_default(),
            region: self.data_s3_region.clone().unwrap_or_else(|| DEFAULT_REGION.to_owned()),
            release_grace,
        }))
    }

    /// Field-wise `self.or(lower)`: values set here win.
    fn or(self, lower: DataArgs) -> DataArgs {
        DataArgs {
            data_engine: self.data_engine.or(lower.data_engine),
            data_s3_endpoint: self.data_s3_endpoint.or(lower.data_s3_endpoint),
            data_s3_bucket: self.data_s3_bucket.or(lower.data_s3_bucket),
            data_s3_prefix: self.data_s3_prefix.or(lower.data_s3_prefix),
            data_s3_region: self.data_s3_region.or(lower.data_s3_region),
            data_release_grace: self.data_release_grace.or(lower.data_release_grace),
        }
    }
}

/// The data directory as an absolute path: everything saved under it (the KMS configuration's paths among them)
/// then means the same place whatever directory the server is started from.
fn absolute(path: PathBuf) -> Result<PathBuf, ConfigError> {
    std::path::absolute(&path).map_err(|source| ConfigError::DataDir { path, source })
}

impl ServerArgs {
    /// `--log-level` as it stands now: the flag or environment value, else the config file's, read afresh.
    pub fn current_log_level(&self) -> Result<Option<String>, ConfigError> {
        match (&self.log_level, &self.config) {
            (Some(level), _) => Ok(Some(level.clone())),
            (None, Some(path)) => Ok(read_config_file(path)?.log_level),
            (None, None) => Ok(None),
        }
    }

    /// Field-wise `self.or(lower)`: values set here win.
    fn or(self, lower: ServerArgs) -> ServerArgs {
        ServerArgs {
            config: self.config.or(lower.config),
            address: self.address.or(lower.address),
            data: self.data.or(lower.data),
            tls_cert: self.tls_cert.or(lower.tls_cert),
            tls_key: self.tls_key.or(lower.tls_key),
            users_file: self.users_file.or(lower.users_file),
            region: self.region.or(lower.region),
            min_part_size: self.min_part_size.or(lower.min_part_size),
            allow_insecure_sse_c: self.allow_insecure_sse_c.or(lower.allow_insecure_sse_c),
            header_read_timeout: self.header_read_timeout.or(lower.header_read_timeout),
            idle_timeout: self.idle_timeout.or(lower.idle_timeout),
            max_connections: self.max_connections.or(lower.max_connections),
            log_level: self.log_level.or(lower.log_level),
            audit_file: self.audit_file.or(lower.audit_file),
            audit_max_bytes: self.audit_max_bytes.or(lower.audit_max_bytes),
            log_format: self.log_format.or(lower.log_format),
            metrics: self.metrics.or(lower.metrics),
            metrics_token_file: self.metrics_token_file.or(lower.metrics_token_file),
            scrub_interval: self.scrub_interval.or(lower.scrub_interval),
            metadata: self.metadata.or(lower.metadata),
            metadata_url: self.metadata_url.or(lower.metadata_url),
            data_location: self.data_location.or(lower.data_location),
            cluster_key_file: self.cluster_key_file.or(lower.cluster_key_file),
            kms: self.kms.or(lower.kms),
        }
    }
}

impl KmsArgs {
    /// Whether any KMS setting was given (flag, environment or file).
    pub fn any_given(&self) -> bool {
        let KmsArgs {
            kms_backend,
            kms_key_dir,
            kms_master_key_file,
            kms_default_key_id,
            kms_vault_address,
            kms_vault_mount,
            kms_vault_namespace,
            kms_vault_token_file,
            kms_vault_role_id,
            kms_vault_secret_id_file,
            kms_vault_ca_cert,
            kms_vault_skip_tls_verify,
            kms_vault_client_cert,
            kms_vault_client_key,
            kms_timeout_seconds,
            kms_retry_attempts,
            kms_cache,
            kms_cache_ttl_seconds,
            kms_cache_capacity,
            // Not a KMS setting: it only says how settings meet a saved configuration.
            kms_replace_saved_config: _,
        } = self;
        kms_backend.is_some()
            || kms_key_dir.is_some()
            || kms_master_key_file.is_some()
            || kms_default_key_id.is_some()
            || kms_vault_address.is_some()
            || kms_vault_mount.is_some()
            || kms_vault_namespace.is_some()
            || kms_vault_token_file.is_some()
            || kms_vault_role_id.is_some()
            || kms_vault_secret_id_file.is_some()
            || kms_vault_ca_cert.is_some()
            || kms_vault_skip_tls_verify.is_some()
            || kms_vault_client_cert.is_some()
            || kms_vault_client_key.is_some()
            || kms_timeout_seconds.is_some()
            || kms_retry_attempts.is_some()
            || kms_cache.is_some()
            || kms_cache_ttl_seconds.is_some()
            || kms_cache_capacity.is_some()
    }

    fn or(self, lower: KmsArgs) -> KmsArgs {
        KmsArgs {
            kms_backend: self.kms_backend.or(lower.kms_backend),
            kms_key_dir: self.kms_key_dir.or(lower.kms_key_dir),
            kms_master_key_file: self.kms_master_key_file.or(lower.kms_master_key_file),
            kms_default_key_id: self.kms_default_key_id.or(lower.kms_default_key_id),
            kms_vault_address: self.kms_vault_address.or(lower.kms_vault_address),
            kms_vault_mount: self.kms_vault_mount.or(lower.kms_vault_mount),
            kms_vault_namespace: self.kms_vault_namespace.or(lower.kms_vault_namespace),
            kms_vault_token_file: self.kms_vault_token_file.or(lower.kms_vault_token_file),
            kms_vault_role_id: self.kms_vault_role_id.or(lower.kms_vault_role_id),
            kms_vault_secret_id_file: self.kms_vault_secret_id_file.or(lower.kms_vault_secret_id_file),
            kms_vault_ca_cert: self.kms_vault_ca_cert.or(lower.kms_vault_ca_cert),
            kms_vault_skip_tls_verify: self.kms_vault_skip_tls_verify.or(lower.kms_vault_skip_tls_verify),
            kms_vault_client_cert: self.kms_vault_client_cert.or(lower.kms_vault_client_cert),
            kms_vault_client_key: self.kms_vault_client_key.or(lower.kms_vault_client_key),
            kms_timeout_seconds: self.kms_timeout_seconds.or(lower.kms_timeout_seconds),
            kms_retry_attempts: self.kms_retry_attempts.or(lower.kms_retry_attempts),
            kms_cache: self.kms_cache.or(lower.kms_cache),
            kms_cache_ttl_seconds: self.kms_cache_ttl_seconds.or(lower.kms_cache_ttl_seconds),
            kms_cache_capacity: self.kms_cache_capacity.or(lower.kms_cache_capacity),
            kms_replace_saved_config: self.kms_replace_saved_config.or(lower.kms_replace_saved_config),
        }
    }

    /// Whether any setting of the Vault backend was given.
    pub fn any_vault_setting(&self) -> bool {
        self.kms_vault_address.is_some()
            || self.kms_vault_mount.is_some()
            || self.kms_vault_namespace.is_some()
            || self.kms_vault_token_file.is_some()
            || self.kms_vault_role_id.is_some()
            || self.kms_vault_secret_id_file.is_some()
            || self.kms_vault_ca_cert.is_some()
            || self.kms_vault_skip_tls_verify.is_some()
            || self.kms_vault_client_cert.is_some()
            || self.kms_vault_client_key.is_some()
    }
}

/// `value`, or `default` when unset; zero is refused.
fn at_least_one<T: PartialEq + From<u8>>(value: Option<T>, default: T, key: &'static str) -> Result<T, ConfigError> {
    let value = value.unwrap_or(default);
    if value == T::from(0) {
        return Err(ConfigError::Zero { key });
    }
    Ok(value)
}

/// An interval such as `90s`, `30m`, `24h`, `7d`: `Some(None)` for `off`, `None` if it is neither.
fn parse_interval(text: &str) -> Option<Option<Duration>> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Some(None);
    }
    let unit = match text.chars().last()? {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let count: u64 = text[..text.len() - 1].parse().ok().filter(|count| *count > 0)?;
    Some(Some(Duration::from_secs(count.checked_mul(unit)?)))
}

/// Reads a config file. Unknown keys are errors: a typo must not silently fall back to a default.
pub fn read_config_file(path: &Path) -> Result<ServerArgs, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    parse_config(path, &text)
}

fn parse_config(path: &Path, text: &str) -> Result<ServerArgs, ConfigError> {
    let parse_error = |message: String| ConfigError::Parse { path: path.to_owned(), message };
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| parse_error(e.message().to_owned()))?;
    let known = file_keys();
    if let Some(key) = table.keys().find(|key| !known.contains(key.as_str())) {
        return Err(ConfigError::UnknownKey { path: path.to_owned(), key: key.clone() });
    }
    toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| parse_error(e.message().to_owned()))
}

/// The keys a config file may hold: every long flag of `coffer server` except `--config` itself.
fn file_keys() -> BTreeSet<String> {
    let command = ServerArgs::augment_args(clap::Command::new("server"));
    command
        .get_arguments()
        .filter_map(|arg| arg.get_long())
        .filter(|long| *long != "config")
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServerArgs,
    }

    fn parse_flags(flags: &[&str]) -> ServerArgs {
        Cli::try_parse_from(std::iter::once("coffer").chain(flags.iter().copied())).unwrap().args
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = ServerConfig::resolve(ServerArgs::default()).unwrap();
        assert_eq!(config.address, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(config.data_dir, std::env::current_dir().unwrap().join("data"));
        assert_eq!(config.region, "us-east-1");
        assert_eq!(config.min_part_size, 5 * 1024 * 1024);
        assert!(!config.allow_insecure_sse_c);
        assert!(config.tls.is_none());
        assert_eq!(
            config.connections,
            ConnectionLimits {
                header_read_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(30),
                max_connections: 4096
            }
        );
    }

    #[test]
    fn connection_limits_come_from_flags_or_the_file_and_must_not_be_zero() {
        let file = parse_config(
            Path::new("c.toml"),
            "idle-timeout = 75
max-connections = 100
",
        )
        .unwrap();
        let flags = parse_flags(&["--header-read-timeout", "2", "--max-connections", "10"]);
        let limits = ServerConfig::resolve(flags.or(file)).unwrap().connections;
        assert_eq!(limits.header_read_timeout, Duration::from_secs(2));
        assert_eq!(limits.idle_timeout, Duration::from_secs(75));
        assert_eq!(limits.max_connections, 10);
        for flag in ["--header-read-timeout", "--idle-timeout", "--max-connections"] {
            let err = ServerConfig::resolve(parse_flags(&[flag, "0"])).unwrap_err();
            assert_eq!(err.to_string(), format!("{flag} must be at least 1"));
        }
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let file = parse_config(
            Path::new("c.toml"),
            "address = \"0.0.0.0:9100\"\nregion = \"eu-west-1\"\nmin-part-size = 1024\nkms-cache = false\n\
             kms-backend = \"vault\"\nallow-insecure-sse-c = true\n",
        )
        .unwrap();
        let flags = parse_flags(&["--address", "127.0.0.1:9200", "--kms-cache-ttl-seconds", "7"]);
        let config = ServerConfig::resolve(flags.or(file)).unwrap();
        assert_eq!(config.address, "127.0.0.1:9200".parse().unwrap());
        assert_eq!(config.region, "eu-west-1");
        assert_eq!(config.min_part_size, 1024);
        assert!(config.allow_insecure_sse_c);
        assert_eq!(config.kms.kms_cache, Some(false));
        assert_eq!(config.kms.kms_backend, Some(KmsBackendKind::Vault));
        assert_eq!(config.kms.kms_cache_ttl_seconds, Some(7));
    }

    #[test]
    fn boolean_flags_take_an_optional_value() {
        assert_eq!(parse_flags(&["--allow-insecure-sse-c"]).allow_insecure_sse_c, Some(true));
        assert_eq!(parse_flags(&["--allow-insecure-sse-c=false"]).allow_insecure_sse_c, Some(false));
        assert_eq!(parse_flags(&[]).allow_insecure_sse_c, None);
    }

    #[test]
    fn the_log_level_is_read_from_the_file_again_unless_a_flag_sets_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coffer.toml");
        std::fs::write(&path, "log-level = \"warn\"\n").unwrap();
        let from_file = ServerArgs { config: Some(path.clone()), ..ServerArgs::default() };
        assert_eq!(from_file.current_log_level().unwrap().as_deref(), Some("warn"));
        std::fs::write(&path, "log-level = \"debug\"\n").unwrap();
        assert_eq!(from_file.current_log_level().unwrap().as_deref(), Some("debug"));
        std::fs::write(&path, "region = \"x\"\n").unwrap();
        assert_eq!(from_file.current_log_level().unwrap(), None);
        std::fs::write(&path, "log-levle = \"debug\"\n").unwrap();
        assert!(matches!(from_file.current_log_level(), Err(ConfigError::UnknownKey { .. })));

        let flagged = ServerArgs { log_level: Some("error".into()), ..from_file };
        assert_eq!(flagged.current_log_level().unwrap().as_deref(), Some("error"));
    }

    #[test]
    fn metrics_access_and_log_format_come_from_flags_or_the_file() {
        let defaults = ServerConfig::resolve(ServerArgs::default()).unwrap();
        assert_eq!((defaults.metrics, defaults.log_format), (MetricsAccess::Public, LogFormat::Text));
        let file = parse_config(
            Path::new("c.toml"),
            "log-format = \"json\"\nmetrics-token-file = \"/etc/coffer/metrics.token\"\n",
        )
        .unwrap();
        let config = ServerConfig::resolve(parse_flags(&[]).or(file.clone())).unwrap();
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.metrics, MetricsAccess::TokenFile("/etc/coffer/metrics.token".into()));
        let off = ServerConfig::resolve(parse_flags(&["--metrics=false"]).or(file)).unwrap();
        assert_eq!(off.metrics, MetricsAccess::Off);
        assert!(Cli::try_parse_from(["coffer", "--log-format", "xml"]).is_err());
        assert!(matches!(parse_config(Path::new("c.toml"), "log-format = \"xml\"\n"), Err(ConfigError::Parse { .. })));
    }

    #[test]
    fn the_metadata_url_never_shows_in_debug_output() {
        let url = "postgres://coffer:s3cret-pw@db:5432/coffer";
        let config = ServerConfig::resolve(parse_flags(&["--metadata", "postgres", "--metadata-url", url])).unwrap();
        assert_eq!(config.metadata, MetadataEngine::Postgres);
        assert_eq!(config.metadata_url.as_ref().map(DatabaseUrl::expose), Some(url));
        assert!(!format!("{config:?}").contains("s3cret-pw"), "{config:?}");
        let file = parse_config(Path::new("c.toml"), &format!("metadata-url = \"{url}\"\n")).unwrap();
        assert!(!format!("{file:?}").contains("s3cret-pw"));
    }

    #[test]
    fn the_scrub_interval_is_off_by_default_and_takes_a_unit() {
        assert_eq!(ServerConfig::resolve(ServerArgs::default()).unwrap().scrub_interval, None);
        let file = parse_config(Path::new("c.toml"), "scrub-interval = \"7d\"\n").unwrap();
        let config = ServerConfig::resolve(parse_flags(&[]).or(file.clone())).unwrap();
        assert_eq!(config.scrub_interval, Some(Duration::from_secs(7 * 86_400)));
        for (flag, interval) in [("24h", Some(86_400)), ("90m", Some(5400)), ("30s", Some(30)), ("off", None)] {
            let config = ServerConfig::resolve(parse_flags(&["--scrub-interval", flag]).or(file.clone())).unwrap();
            assert_eq!(config.scrub_interval, interval.map(Duration::from_secs), "{flag}");
        }
        for bad in ["24", "0h", "-1h", "1.5h", "h", "1w", ""] {
            let err = ServerConfig::resolve(parse_flags(&[&format!("--scrub-interval={bad}")])).unwrap_err();
            assert!(matches!(err, ConfigError::Duration { key: "scrub-interval", .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn the_s3_data_engine_needs_the_sql_engine_an_endpoint_and_a_bucket() {
        let s3 = ["--data-engine", "s3", "--data-s3-endpoint", "http://127.0.0.1:8333", "--data-s3-bucket", "b"];
        // The default metadata engine (SQLite) keeps its data anywhere; the directory engine keeps its own.
        let config = ServerConfig::resolve(parse_flags(&s3)).unwrap();
        let DataSettings::S3(settings) = &config.data else { panic!("{:?}", config.data) };
        assert_eq!(settings.bucket, "b");
        assert_eq!((settings.prefix.as_str(), settings.region.as_str()), ("", DEFAULT_REGION));
        assert_eq!(settings.release_grace, coffer_store::DEFAULT_RELEASE_GRACE);
        let refused =
            ServerConfig::resolve(parse_flags(&[&["--metadata", "directory"], &s3[..]].concat())).unwrap_err();
        assert!(matches!(refused, ConfigError::DataEngineNeedsSql), "{refused}");
        let refused = ServerConfig::resolve(parse_flags(&[
            "--metadata",
            "sqlite",
            "--data-engine",
            "s3",
            "--data-s3-bucket",
            "b",
        ]))
        .unwrap_err();
        assert!(matches!(refused, ConfigError::DataS3Missing { key: "data-s3-endpoint" }), "{refused}");
        let refused = ServerConfig::resolve(parse_flags(&["--data-s3-bucket", "b"])).unwrap_err();
        assert!(matches!(refused, ConfigError::DataS3Unused { key: "data-s3-bucket" }), "{refused}");
        let file = parse_config(Path::new("c.toml"), "data-engine = \"s3\"\ndata-release-grace = \"30s\"\n").unwrap();
        assert_eq!(file.data_location.data_engine, Some(DataEngineKind::S3));
        assert_eq!(file.data_location.data_release_grace.as_deref(), Some("30s"));
    }

    #[test]
    fn the_data_bucket_secret_comes_from_the_environment_and_never_shows_in_debug_output() {
        let settings = S3DataSettings {
            endpoint: "http://127.0.0.1:8333".into(),
            bucket: "b".into(),
            prefix: String::new(),
            region: DEFAULT_REGION.into(),
            release_grace: Duration::from_secs(1),
        };
        let secret = "wJalrXUtnFEMI-secret";
        let env = |name: &str| match name {
            DATA_S3_ACCESS_KEY_ENV => Some("AKID".to_owned()),
            DATA_S3_SECRET_KEY_ENV => Some(secret.to_owned()),
            _ => None,
        };
        let location = settings.location(env).unwrap();
        assert!(!format!("{location:?}").contains(secret));
        assert!(matches!(settings.location(|_| None), Err(ConfigError::DataS3Credentials)));
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        let err = parse_config(Path::new("c.toml"), "min_part_size = 1\n").unwrap_err();
        assert!(matches!(err, ConfigError::UnknownKey { ref key, .. } if key == "min_part_size"), "{err}");
        let err = parse_config(Path::new("c.toml"), "config = \"x\"\n").unwrap_err();
        assert!(matches!(err, ConfigError::UnknownKey { .. }), "{err}");
    }

    #[test]
    fn wrong_value_types_in_the_file_are_rejected() {
        let err = parse_config(Path::new("c.toml"), "min-part-size = \"big\"\n").unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    }

    #[test]
    fn tls_needs_both_files() {
        let args = ServerArgs { tls_cert: Some("c.pem".into()), ..ServerArgs::default() };
        assert!(matches!(ServerConfig::resolve(args), Err(ConfigError::TlsIncomplete)));
        assert!(Cli::try_parse_from(["coffer", "--tls-cert", "c.pem"]).is_err());
    }
}

//! Wiring: the shared [`AppState`], the s3s service built from it ([`build_service`], the one place where extra
//! routes such as the admin API are mounted, and where [`AccessCheck`] becomes s3s's access check), and [`run`], which starts `coffer server` from its configuration.

use std::fmt;
use std::sync::Arc;

use coffer_kms::{KmsError, KmsManager};
use coffer_sse::SseService;
use coffer_store::{ClusterKey, SharedState, Store, StoreError};
use s3s::route::S3Route;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{Body, S3Request, S3Response, S3Result};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::audit_log::AuditFile;
use crate::authz::{AccessCheck, Authorizer};
use crate::config::{MetadataEngine, ServerArgs, ServerConfig};
use crate::health::Health;
use crate::http_server::{serve, shutdown_signal, LocalEndpoints};
use crate::jobs::Jobs;
use crate::kms::{kms_state_dir, start_kms, KmsSecrets};
use crate::logging::{InvalidLogLevel, LogFilter};
use crate::metrics::{Metrics, MetricsTokenError, UpkeepMetrics};
use crate::reload::Reloader;
use crate::request_record::{RequestIdentity, ADMIN_OPERATION};
use crate::s3::CofferS3;
use crate::tls::{ServerCertificate, TlsError};
use crate::user_policies::UserPolicies;
use crate::users::{RootCredentials, UserRegistry, UsersError};

/// What every request handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub users: UserRegistry,
    /// Who may do what (users' and buckets' policies, bucket ownership).
    pub authz: Arc<Authorizer>,
    /// The KMS (shared with the admin API).
    pub kms: Arc<KmsManager>,
    /// Server-side encryption, drawing keys from `kms`.
    pub sse: Arc<SseService>,
    pub settings: ObjectSettings,
}

impl AppState {
    /// The state of a server over `store`, `users` and `kms`; encryption and authorization are built on them.
    pub fn new(store: Store, users: UserRegistry, kms: Arc<KmsManager>, settings: ObjectSettings) -> Self {
        AppState {
            authz: Arc::new(Authorizer::new(users.clone(), store.clone(), Arc::clone(&kms))),
            sse: Arc::new(SseService::new(Arc::clone(&kms))),
            store,
            users,
            kms,
            settings,
        }
    }
}

/// The settings of the S3 operations.
#[derive(Clone, Debug)]
pub struct ObjectSettings {
    /// Region reported by GetBucketLocation / HeadBucket.
    pub region: Arc<str>,
    /// Minimum size of every multipart part but the last, checked at CompleteMultipartUpload.
    pub min_part_size: u64,
    /// Accept SSE-C keys over plain HTTP from non-loopback clients (`--allow-insecure-sse-c`).
    pub allow_insecure_sse_c: bool,
}

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store)
            .field("kms", &self.kms)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Builds the S3 service: Coffer's operations, SigV4 auth against `state.users`, and `route` (requests it matches
/// never reach the S3 operations; they are still authenticated first).
pub fn build_service(state: &AppState, route: Option<Box<dyn S3Route>>) -> S3Service {
    let mut builder = S3ServiceBuilder::new(CofferS3::new(state.clone()));
    builder.set_auth(state.users.clone());
    builder.set_access(AccessCheck::new(Arc::clone(&state.authz), state.store.clone()));
    if let Some(route) = route {
        builder.set_route(BoxedRoute(route));
    }
    builder.build()
}

/// Lets [`build_service`] take any route as a trait object, and notes its requests' identity (s3s does not run its
/// access check for routes).
struct BoxedRoute(Box<dyn S3Route>);

#[async_trait::async_trait]
impl S3Route for BoxedRoute {
    fn is_match(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        extensions: &mut http::Extensions,
    ) -> bool {
        self.0.is_match(method, uri, headers, extensions)
    }

    async fn check_access(&self, req: &mut S3Request<Body>) -> S3Result<()> {
        if let Some(identity) = req.extensions.get::<RequestIdentity>() {
            identity.note(ADMIN_OPERATION, req.credentials.as_ref().map(|credentials| credentials.access_key.as_str()));
        }
        self.0.check_access(req).await
    }

    async fn call(&self, req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        self.0.call(req).await
    }
}

/// What a cluster node shares with the others.
struct ClusterNode {
    key: ClusterKey,
    url: String,
    shared: Arc<SharedState>,
    /// The last change event when the node started: it follows the ones after.
    events_seen: i64,
}

/// With `--cluster-key-file`: reads the key and joins the cluster of the `--metadata postgres` database (refused if
/// the database belongs to a cluster with another key).
async fn join_cluster(config: &ServerConfig) -> Result<Option<ClusterNode>, StartError> {
    let Some(path) = &config.cluster_key_file else {
        return Ok(None);
    };
    let url = match (config.metadata, &config.metadata_url) {
        (MetadataEngine::Postgres, Some(url)) => url.expose().to_owned(),
        _ => return Err(StartError::Cluster("--cluster-key-file needs --metadata postgres and --metadata-url".into())),
    };
    let key = ClusterKey::read(path)
        .map_err(|err| StartError::Cluster(format!("cannot read the cluster key file {}: {err}", path.display())))?;
    let shared = SharedState::open(&url, &key).await.map_err(|err| StartError::Cluster(err.to_string()))?;
    let events_seen = shared.last_event().await.map_err(|err| StartError::Cluster(err.to_string()))?;
    Ok(Some(ClusterNode { key, url, shared: Arc::new(shared), events_seen }))
}

/// Why `coffer server` could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Users(#[from] UsersError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    LogLevel(#[from] InvalidLogLevel),
    #[error("cannot open the audit file {path}: {source}")]
    Audit { path: std::path::PathBuf, source: std::io::Error },
    #[error(transparent)]
    MetricsToken(#[from] MetricsTokenError),
    #[error("cannot listen for SIGHUP: {0}")]
    Signal(std::io::Error),
    #[error("cannot open the data directory {path}: {source}")]
    Store { path: std::path::PathBuf, source: StoreError },
    #[error("cannot listen on {address}: {source}")]
    Bind { address: std::net::SocketAddr, source: std::io::Error },
    /// The cluster key cannot be read, or is not the cluster's.
    #[error("cluster: {0}")]
    Cluster(String),
    /// The KMS settings cannot work, or its state directory cannot be opened.
    #[error(transparent)]
    Kms(#[from] KmsError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// Runs `coffer server` with `config` (loaded from `args`) until SIGINT/SIGTERM, then drains in-flight requests and
/// returns. SIGHUP reloads users, certificate, metrics token and log level ([`Reloader`]).
pub async fn run(args: ServerArgs, config: ServerConfig, log: LogFilter) -> Result<(), StartError> {
    log.set(config.log_level.as_deref())?;
    let audit = match &config.audit {
        Some(settings) => Some(
            AuditFile::open(log.audit(), &settings.file, settings.max_bytes)
                .map_err(|source| StartError::Audit { path: settings.file.clone(), source })?,
        ),
        None => None,
    };
    crate::resources::raise_open_file_limit(config.connections.max_connections);
    let root = RootCredentials::from_env(config.address)?;
    if root.is_default() {
        warn!(
            "no credentials configured: using access key `admin` / secret key `admin` (loopback only); set \
             COFFER_ROOT_USER and COFFER_ROOT_PASSWORD for anything but local testing"
        );
    }
    let users = UserRegistry::load(root, config.users_file.as_deref())?;
    let (certificate, tls) = match &config.tls {
        Some(files) => {
            let (certificate, acceptor) = ServerCertificate::load(files)?;
            (Some(certificate), Some(acceptor))
        }
        None => (None, None),
    };
    let data = config.data.location(|name| std::env::var(name).ok())?;
    let cluster = join_cluster(&config).await?;
    let store = match (config.metadata, &cluster) {
        (_, Some(node)) => Store::open_cluster(config.data_dir.clone(), &node.url, &node.key, &data).await,
        (MetadataEngine::Directory, None) => Store::open(config.data_dir.clone()).await,
        (MetadataEngine::Sqlite, None) => Store::open_sql(config.data_dir.clone(), None, &data).await,
        (MetadataEngine::Postgres, None) => match &config.metadata_url {
            Some(url) => Store::open_sql(config.data_dir.clone(), Some(url.expose()), &data).await,
            None => Err(coffer_store::StoreError::InvalidMeta("--metadata postgres needs --metadata-url")),
        },
    }
    .map_err(|source| StartError::Store { path: config.data_dir.clone(), source })?;
    let shared_kms = cluster.as_ref().map(|node| crate::cluster::shared_kms(&node.shared));
    let kms = start_kms(kms_state_dir(&config.data_dir), &config.kms, KmsSecrets::from_env(), shared_kms).await?;
    if let Some(node) = cluster {
        crate::cluster::follow_changes(Arc::clone(&node.shared), Arc::clone(&kms), node.events_seen);
        info!("cluster node: KMS state shared through the metadata database; changes on other nodes apply within 2 s");
    }
    let shutdown = shutdown_signal();
    let listener = TcpListener::bind(config.address)
        .await
        .map_err(|source| StartError::Bind { address: config.address, source })?;
    let settings = ObjectSettings {
        region: Arc::from(config.region.as_str()),
        min_part_size: config.min_part_size,
        allow_insecure_sse_c: config.allow_insecure_sse_c,
    };
    let state = AppState::new(store, users, kms, settings);
    let upkeep = Arc::new(UpkeepMetrics::default());
    let jobs = Jobs::start(state.clone(), Arc::clone(&upkeep)).await;
    crate::jobs::upkeep::start(Arc::clone(&jobs), config.scrub_interval);
    let metrics = Metrics::new(&config.metrics, Arc::clone(&state.kms), Some(jobs.clone()), upkeep)?;
    let user_policies = UserPolicies::load(state.users.clone(), state.store.clone())
        .await
        .map_err(|source| StartError::Store { path: config.data_dir.clone(), source })?;
    let admin = coffer_admin_api::AdminRoute::new(Arc::clone(&state.kms), state.authz.clone())
        .with_objects(jobs)
        .with_users(Arc::new(user_policies));
    let service = build_service(&state, Some(Box::new(admin)));
    let metrics_token = metrics.token();
    let local = Arc::new(LocalEndpoints { health: Health::new(state.store.clone(), Arc::clone(&state.kms)), metrics });
    Reloader { args, users: state.users.clone(), certificate, metrics_token, log }
        .on_sighup()
        .map_err(StartError::Signal)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let address = listener.local_addr().unwrap_or(config.address);
    info!(data = %config.data_dir.display(), "coffer listening on {scheme}://{address}");
    serve(listener, service, local, tls, config.connections, shutdown).await;
    if let Some(audit) = audit {
        audit.close();
    }
    Ok(())
}

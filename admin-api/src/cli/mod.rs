//! `coffer admin`: the command-line client of the admin API. The `coffer` binary adds [`AdminCommand`] as a
//! subcommand and calls [`run`]; everything else (credentials, signing, HTTP, output) lives here.
//!
//! Every command is one signed request, the same one an operator would make with awscurl, so the CLI can do
//! exactly what the HTTP API does and nothing more. Three add requests around it (see [`jobs`]): `rewrap` and
//! `jobs watch` follow the job, and `key disable` / `key delete` first ask for the key's impact.

mod client;
mod jobs;
mod output;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use http::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use client::{AdminClient, AdminRequest, CliError, SigningKeys};

use crate::api::{ObjectMode, RewrapFrom, RewrapSpec, RewrapTo, ScrubSpec};

/// Manage a running Coffer server through its admin API (requests are SigV4-signed like S3 requests).
#[derive(Args, Debug)]
pub struct AdminCommand {
    #[command(flatten)]
    connection: Connection,
    /// Print the server's JSON answers (and errors) instead of tables, for scripts.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    area: AdminArea,
}

/// Where the server is and who signs.
#[derive(Args)]
struct Connection {
    /// Server URL.
    #[arg(long, env = "COFFER_ENDPOINT", default_value = "http://127.0.0.1:9000", global = true)]
    endpoint: String,
    /// Access key of an admin user (falls back to AWS_ACCESS_KEY_ID).
    #[arg(long, env = "COFFER_ROOT_USER", global = true)]
    access_key: Option<String>,
    /// Secret key of that user (falls back to AWS_SECRET_ACCESS_KEY); prefer the environment to the command line.
    #[arg(long, env = "COFFER_ROOT_PASSWORD", hide_env_values = true, global = true)]
    secret_key: Option<String>,
    /// Region the signature is scoped to.
    #[arg(long, env = "COFFER_REGION", default_value = "us-east-1", global = true)]
    region: String,
    /// PEM file with the certificate authority of a server using its own TLS certificates.
    #[arg(long, env = "COFFER_CA_CERT", global = true)]
    ca_cert: Option<PathBuf>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("endpoint", &self.endpoint)
            .field("access_key", &self.access_key)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "***"))
            .field("region", &self.region)
            .field("ca_cert", &self.ca_cert)
            .finish()
    }
}

#[derive(Subcommand, Debug)]
enum AdminArea {
    /// The key management service: lifecycle, configuration and master keys.
    #[command(subcommand)]
    Kms(KmsCommand),
    /// Check every stored object (of one bucket, under a prefix) against the checksums and MACs kept for it — no
    /// KMS needed, nothing changed — and report the damaged ones (docs/operations.md).
    Scrub(ScrubArgs),
}

#[derive(Args, Debug)]
struct ScrubArgs {
    /// Only this bucket (default: every bucket).
    #[arg(long)]
    bucket: Option<String>,
    /// Only keys starting with this.
    #[arg(long)]
    prefix: Option<String>,
    /// At most this many objects per second (0: no limit).
    #[arg(long, default_value_t = 0)]
    objects_per_second: u32,
    /// Follow the job until it ends; then exit with status 1 if it found damaged objects or could not check some.
    #[arg(long)]
    wait: bool,
}

impl ScrubArgs {
    fn request(&self) -> AdminRequest {
        let spec = ScrubSpec {
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
            objects_per_second: self.objects_per_second,
        };
        let body = serde_json::to_vec(&spec).expect("a scrub spec always serializes");
        with_body(request(Method::POST, &["jobs", "scrub"]), body)
    }
}

#[derive(Subcommand, Debug)]
enum KmsCommand {
    /// Show the KMS state, backend, health and cache statistics.
    Status,
    /// Show the active configuration (secrets shown as ***).
    Config,
    /// Configure a KMS that is not running, from a JSON file (RustFS's configure body; `-` reads stdin).
    Configure {
        #[arg(long, short)]
        file: PathBuf,
    },
    /// Replace the configuration of a running KMS without stopping it.
    Reconfigure {
        #[arg(long, short)]
        file: PathBuf,
    },
    /// Start the configured KMS.
    Start,
    /// Stop the KMS (encrypted objects cannot be written or read until it starts again).
    Stop,
    /// Drop and zeroize every cached data key (of one store with --store).
    ClearCache {
        #[arg(long)]
        store: Option<String>,
    },
    /// Manage master keys (KEY_ID is `store/key` for a key outside the default store).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Manage KMS stores: several backends at once, one of them the default.
    #[command(subcommand)]
    Stores(StoreCommand),
    /// The key SSE-S3, and SSE-KMS naming no key, use in one bucket.
    #[command(subcommand)]
    BucketKey(BucketKeyCommand),
    /// Move stored objects onto a key's newest version, another key or store, or the other KMS mode, and follow
    /// the job (docs/rewrap.md).
    Rewrap(RewrapArgs),
    /// Jobs (rewraps and scrubs): list, show, pause, resume, cancel, watch.
    #[command(subcommand)]
    Jobs(JobCommand),
    /// Identity policies attached to users (next to the users file's; docs/authorization.md).
    #[command(subcommand)]
    UserPolicy(UserPolicyCommand),
}

#[derive(Subcommand, Debug)]
enum UserPolicyCommand {
    /// Show the policy attached to USER.
    Get { user: String },
    /// Attach the policy in a JSON file (`-` reads stdin) to USER, replacing any.
    Set {
        user: String,
        #[arg(long, short)]
        file: PathBuf,
    },
    /// Detach USER's policy.
    Delete { user: String },
}

#[derive(Args, Debug)]
struct RewrapArgs {
    /// Only this bucket (repeat for several; default: every bucket).
    #[arg(long = "bucket")]
    buckets: Vec<String>,
    /// Only keys starting with this.
    #[arg(long)]
    prefix: Option<String>,
    /// Only objects whose bucket key this store wrapped.
    #[arg(long)]
    from_store: Option<String>,
    /// Only objects whose bucket key this key wrapped (`store/key`, or `key` in the default store).
    #[arg(long)]
    from_key: Option<String>,
    /// Only objects wrapped by a key version lower than this.
    #[arg(long)]
    from_versions_below: Option<u32>,
    /// Only objects in this mode.
    #[arg(long)]
    from_mode: Option<ObjectMode>,
    /// The key to move objects onto (default: their own key's newest version; SSE-S3: the bucket's key).
    #[arg(long)]
    to_key: Option<String>,
    /// The mode to move objects to (sse-s3 or sse-kms; with plaintext objects selected, encrypts them).
    #[arg(long)]
    to_mode: Option<ObjectMode>,
    /// At most this many objects per second (0: no limit).
    #[arg(long, default_value_t = 0)]
    objects_per_second: u32,
    /// Objects changed at once, 1 to 64.
    #[arg(long, default_value_t = 4)]
    concurrency: u32,
    /// Report what would change, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Start the job and return at once instead of following it.
    #[arg(long)]
    detach: bool,
}

impl RewrapArgs {
    fn spec(&self) -> RewrapSpec {
        RewrapSpec {
            buckets: self.buckets.clone(),
            prefix: self.prefix.clone(),
            from: RewrapFrom {
                store: self.from_store.clone(),
                key: self.from_key.clone(),
                versions_below: self.from_versions_below,
                mode: self.from_mode,
            },
            to: RewrapTo { key: self.to_key.clone(), mode: self.to_mode },
            objects_per_second: self.objects_per_second,
            concurrency: self.concurrency,
            dry_run: self.dry_run,
        }
    }
}

#[derive(Subcommand, Debug)]
enum JobCommand {
    /// Every job, newest first.
    List,
    /// A job's state, counters and failures.
    Show { job_id: String },
    /// Pause a running job (it keeps its position).
    Pause { job_id: String },
    /// Go on with a paused job.
    Resume { job_id: String },
    /// Stop a job for good.
    Cancel { job_id: String },
    /// Follow a job until it is no longer running.
    Watch { job_id: String },
}

#[derive(Subcommand, Debug)]
enum StoreCommand {
    /// List the stores with their health.
    List,
    /// Show a store's health and configuration (secrets shown as ***).
    Show { name: String },
    /// Add a store from a JSON file (`{"type":"vault-transit","address":…,"auth":{…}}`; `-` reads stdin).
    Add {
        name: String,
        #[arg(long, short)]
        file: PathBuf,
    },
    /// Change a store's settings from a JSON file (secrets given as *** keep their values).
    Update {
        name: String,
        #[arg(long, short)]
        file: PathBuf,
    },
    /// Remove a store (refused for the default store and while buckets or objects use it).
    Remove { name: String },
    /// The objects and bytes, per bucket, whose keys the store wrapped.
    Impact { name: String },
    /// Make a store the default: requests naming no store use it.
    SetDefault { name: String },
    /// Drop and zeroize the store's cached data keys.
    ClearCache { name: String },
}

#[derive(Subcommand, Debug)]
enum BucketKeyCommand {
    /// Show the key the bucket uses (its own, or the default key).
    Get { bucket: String },
    /// Give the bucket its own key: `store/key`, or `key` in the default store.
    Set { bucket: String, key_id: String },
    /// Let the bucket use the default key again.
    Unset { bucket: String },
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Create a master key; without KEY_ID the KMS generates one.
    Create {
        /// 1 to 128 letters, digits, '-', '_' or '.', starting with a letter or digit.
        key_id: Option<String>,
        /// What the key is for.
        #[arg(long)]
        description: Option<String>,
        /// When the key stops encrypting new data (RFC 3339, e.g. 2027-01-01T00:00:00Z); objects stay readable.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Set when a key stops encrypting new data (RFC 3339); without --at, the key never expires.
    SetExpiry {
        key_id: String,
        #[arg(long)]
        at: Option<String>,
    },
    /// Retire a key's older versions: data keys they wrapped no longer decrypt (rewrap objects off them first).
    /// Lowering it again makes them decrypt again.
    SetMinVersion {
        key_id: String,
        /// The lowest version that still decrypts, 1 to the key's current version.
        version: u32,
        /// Retire the versions even while objects still need them (the server refuses otherwise).
        #[arg(long)]
        force: bool,
    },
    /// List master keys, a page at a time.
    List {
        /// The store whose keys to list (default: the default store).
        #[arg(long)]
        store: Option<String>,
        /// Keys per page, 1 to 1000 (server default 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Continue after this key id (the `next_marker` of the previous page).
        #[arg(long)]
        marker: Option<String>,
    },
    /// Show a key's state, versions, creation and deletion dates.
    Describe { key_id: String },
    /// Add a key version: new data keys use it, existing objects keep decrypting.
    Rotate { key_id: String },
    /// Enable a disabled key again.
    Enable { key_id: String },
    /// Disable a key: it no longer makes or opens data keys until enabled again. Asks first if objects need it.
    Disable {
        key_id: String,
        /// Do not ask, even if objects need the key.
        #[arg(long)]
        yes: bool,
    },
    /// Schedule a key for deletion after a waiting period (cancel it with cancel-deletion). Asks first if objects
    /// need it.
    Delete {
        key_id: String,
        /// Days before the key is destroyed, 7 to 30 (server default 30).
        #[arg(long)]
        pending_window_days: Option<u32>,
        /// Do not ask, even if objects need the key.
        #[arg(long)]
        yes: bool,
    },
    /// The objects and bytes, per bucket and per key version, that need the key to be read.
    Impact { key_id: String },
    /// Cancel a scheduled deletion.
    CancelDeletion { key_id: String },
}

/// How an answer is shown without `--json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rendering {
    Status,
    Config,
    Key,
    KeyList,
    Stores,
    Impact,
    Job,
    JobList,
    Json,
}

/// Runs `coffer admin …`: 0 on success, 1 when the server refused or could not be reached, 2 for local problems
/// (missing credentials, unreadable file, bad endpoint).
pub async fn run(command: AdminCommand) -> ExitCode {
    match execute(&command).await {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            if let (true, CliError::Api { status, code, message }) = (command.json, &err) {
                println!("{}", serde_json::json!({"status": status, "code": code, "message": message}));
            }
            eprintln!("coffer admin: {err}");
            match err {
                CliError::Api { .. } | CliError::Transport(_) | CliError::Incomplete(_) => ExitCode::from(1),
                CliError::Usage(_) => ExitCode::from(2),
            }
        }
    }
}

async fn execute(command: &AdminCommand) -> Result<String, CliError> {
    let (request, rendering, follow) = match &command.area {
        AdminArea::Kms(kms) => {
            let (request, rendering) = kms.request()?;
            let follow = match kms {
                KmsCommand::Rewrap(args) => !args.detach,
                KmsCommand::Jobs(JobCommand::Watch { .. }) => true,
                _ => false,
            };
            (request, rendering, follow)
        }
        AdminArea::Scrub(args) => (args.request(), Rendering::Job, args.wait),
    };
    let client = command.connection.client()?;
    match &command.area {
        AdminArea::Kms(KmsCommand::Key(KeyCommand::Disable { key_id, yes: false })) => {
            jobs::confirm_key_change(&client, key_id, "disable").await?;
        }
        AdminArea::Kms(KmsCommand::Key(KeyCommand::Delete { key_id, yes: false, .. })) => {
            jobs::confirm_key_change(&client, key_id, "delete").await?;
        }
        _ => {}
    }
    let mut answer = client.send(&request).await?;
    let mut ended = Ok(());
    if follow {
        let id = answer.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
        let job = jobs::follow(&client, &id).await?;
        ended = jobs::outcome(&job);
        answer = serde_json::to_value(&job).expect("a job always serializes");
    }
    let text = if command.json {
        format!("{}\n", serde_json::to_string_pretty(&answer).expect("JSON values always serialize"))
    } else {
        render(answer, rendering)
    };
    match ended {
        Ok(()) => Ok(text),
        Err(err) => {
            // The job's last state is the useful part of the failure: show it before the error.
            print!("{text}");
            Err(err)
        }
    }
}

fn render(answer: Value, rendering: Rendering) -> String {
    match rendering {
        Rendering::Status => typed(answer, output::status),
        Rendering::Config => output::config(&answer),
        Rendering::Key => typed(answer, output::key),
        Rendering::KeyList => typed(answer, output::key_list),
        Rendering::Stores => typed(answer, output::stores),
        Rendering::Impact => typed(answer, output::impact),
        Rendering::Job => typed(answer, output::job),
        Rendering::JobList => typed(answer, output::job_list),
        Rendering::Json => {
            format!("{}\n", serde_json::to_string_pretty(&answer).expect("JSON values always serialize"))
        }
    }
}

/// Renders a typed answer; an answer of another shape (a newer server, say) is shown as JSON rather than lost.
fn typed<T: DeserializeOwned>(answer: Value, render: impl Fn(&T) -> String) -> String {
    match serde_json::from_value::<T>(answer.clone()) {
        Ok(value) => render(&value),
        Err(_) => format!("{}\n", serde_json::to_string_pretty(&answer).expect("JSON values always serialize")),
    }
}

impl Connection {
    fn client(&self) -> Result<AdminClient, CliError> {
        let from_env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let access_key = self.access_key.clone().or_else(|| from_env("AWS_ACCESS_KEY_ID"));
        let secret_key = self.secret_key.clone().or_else(|| from_env("AWS_SECRET_ACCESS_KEY"));
        let (Some(access_key), Some(secret_key)) = (access_key, secret_key) else {
            return Err(CliError::Usage(
                "no credentials: pass --access-key and --secret-key, or set COFFER_ROOT_USER and COFFER_ROOT_PASSWORD \
                 (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
                    .to_owned(),
            ));
        };
        let ca_cert =
            match &self.ca_cert {
                Some(path) => Some(std::fs::read(path).map_err(|err| {
                    CliError::Usage(format!("cannot read the CA certificate {}: {err}", path.display()))
                })?),
                None => None,
            };
        AdminClient::new(
            &self.endpoint,
            SigningKeys { access_key, secret_key },
            self.region.clone(),
            ca_cert.as_deref(),
        )
    }
}

impl KmsCommand {
    /// The one admin request this command makes and how its answer is shown.
    fn request(&self) -> Result<(AdminRequest, Rendering), CliError> {
        let post = |path: &[&str]| request(Method::POST, path);
        Ok(match self {
            Self::Status => (request(Method::GET, &["status"]), Rendering::Status),
            Self::Config => (request(Method::GET, &["config"]), Rendering::Config),
            Self::Configure { file } => (with_body(post(&["configure"]), read_body_file(file)?), Rendering::Status),
            Self::Reconfigure { file } => (with_body(post(&["reconfigure"]), read_body_file(file)?), Rendering::Status),
            Self::Start => (post(&["start"]), Rendering::Status),
            Self::Stop => (post(&["stop"]), Rendering::Status),
            Self::ClearCache { store } => {
                let mut clear = post(&["clear-cache"]);
                clear.query.extend(store.clone().map(|store| ("store", store)));
                (clear, Rendering::Status)
            }
            Self::Key(key) => (
                key.request(),
                match key {
                    KeyCommand::List { .. } => Rendering::KeyList,
                    KeyCommand::Impact { .. } => Rendering::Impact,
                    _ => Rendering::Key,
                },
            ),
            Self::Stores(store) => store.request()?,
            Self::BucketKey(bucket) => (bucket.request(), Rendering::Json),
            Self::Rewrap(args) => {
                let body = serde_json::to_vec(&args.spec()).expect("a rewrap spec always serializes");
                (with_body(post(&["jobs", "rewrap"]), body), Rendering::Job)
            }
            Self::Jobs(job) => job.request(),
            Self::UserPolicy(command) => (command.request()?, Rendering::Json),
        })
    }
}

impl UserPolicyCommand {
    fn request(&self) -> Result<AdminRequest, CliError> {
        let on_user = |method: Method, user: &str| request(method, &["users", user, "policy"]);
        Ok(match self {
            Self::Get { user } => on_user(Method::GET, user),
            Self::Set { user, file } => with_body(on_user(Method::PUT, user), read_body_file(file)?),
            Self::Delete { user } => on_user(Method::DELETE, user),
        })
    }
}

impl StoreCommand {
    fn request(&self) -> Result<(AdminRequest, Rendering), CliError> {
        let on_store = |method: Method, name: &str, action: Option<&str>| {
            request(method, &[["stores", name].as_slice(), action.as_slice()].concat())
        };
        Ok(match self {
            Self::List => (request(Method::GET, &["stores"]), Rendering::Stores),
            Self::Show { name } => (on_store(Method::GET, name, None), Rendering::Json),
            Self::Add { name, file } => {
                (with_body(on_store(Method::POST, name, None), read_body_file(file)?), Rendering::Json)
            }
            Self::Update { name, file } => {
                (with_body(on_store(Method::PUT, name, None), read_body_file(file)?), Rendering::Json)
            }
            Self::Remove { name } => (on_store(Method::DELETE, name, None), Rendering::Status),
            Self::Impact { name } => (on_store(Method::GET, name, Some("impact")), Rendering::Impact),
            Self::SetDefault { name } => (on_store(Method::POST, name, Some("default")), Rendering::Status),
            Self::ClearCache { name } => (on_store(Method::POST, name, Some("clear-cache")), Rendering::Json),
        })
    }
}

impl BucketKeyCommand {
    fn request(&self) -> AdminRequest {
        match self {
            Self::Get { bucket } => request(Method::GET, &["buckets", bucket, "key"]),
            Self::Set { bucket, key_id } => with_body(
                request(Method::PUT, &["buckets", bucket, "key"]),
                serde_json::json!({ "key_id": key_id }).to_string().into_bytes(),
            ),
            Self::Unset { bucket } => request(Method::DELETE, &["buckets", bucket, "key"]),
        }
    }
}

/// A request about one key: `store/key` goes as `keys/key?store=store` (a `%2F` in the path would not verify).
fn key_request(method: Method, key_ref: &str, action: Option<&str>) -> AdminRequest {
    let (store, key_id) = coffer_kms::split_key_ref(key_ref);
    let mut on_key = request(method, &[["keys", key_id].as_slice(), action.as_slice()].concat());
    on_key.query.extend(store.map(|store| ("store", store.to_owned())));
    on_key
}

impl KeyCommand {
    fn request(&self) -> AdminRequest {
        let on_key = key_request;
        match self {
            Self::Create { key_id, description, expires_at } => {
                let mut body = serde_json::Map::new();
                if let Some(key_id) = key_id {
                    body.insert("key_id".into(), key_id.as_str().into());
                }
                if let Some(description) = description {
                    body.insert("description".into(), description.as_str().into());
                }
                if let Some(expires_at) = expires_at {
                    body.insert("expires_at".into(), expires_at.as_str().into());
                }
                with_body(request(Method::POST, &["keys"]), Value::Object(body).to_string().into_bytes())
            }
            Self::List { store, limit, marker } => {
                let mut list = request(Method::GET, &["keys"]);
                list.query.extend(store.clone().map(|store| ("store", store)));
                list.query.extend(limit.map(|limit| ("limit", limit.to_string())));
                list.query.extend(marker.clone().map(|marker| ("marker", marker)));
                list
            }
            Self::Describe { key_id } => on_key(Method::GET, key_id, None),
            Self::Rotate { key_id } => on_key(Method::POST, key_id, Some("rotate")),
            Self::Enable { key_id } => on_key(Method::POST, key_id, Some("enable")),
            Self::Disable { key_id, .. } => on_key(Method::POST, key_id, Some("disable")),
            Self::Impact { key_id } => on_key(Method::GET, key_id, Some("impact")),
            Self::Delete { key_id, pending_window_days, .. } => {
                let mut delete = on_key(Method::DELETE, key_id, None);
                delete.query.extend(pending_window_days.map(|days| ("pending_window_days", days.to_string())));
                delete
            }
            Self::CancelDeletion { key_id } => on_key(Method::POST, key_id, Some("cancel-deletion")),
            Self::SetExpiry { key_id, at } => with_body(
                on_key(Method::POST, key_id, Some("expiry")),
                serde_json::json!({ "expires_at": at }).to_string().into_bytes(),
            ),
            Self::SetMinVersion { key_id, version, force } => {
                let mut retire = with_body(
                    on_key(Method::PUT, key_id, Some("min-decryption-version")),
                    serde_json::json!({ "min_decryption_version": version }).to_string().into_bytes(),
                );
                retire.query.extend(force.then(|| ("force", "true".to_owned())));
                retire
            }
        }
    }
}

impl JobCommand {
    fn request(&self) -> (AdminRequest, Rendering) {
        let on_job = |method: Method, id: &str, action: Option<&str>| {
            request(method, &[["jobs", id].as_slice(), action.as_slice()].concat())
        };
        match self {
            Self::List => (request(Method::GET, &["jobs"]), Rendering::JobList),
            Self::Show { job_id } | Self::Watch { job_id } => (on_job(Method::GET, job_id, None), Rendering::Job),
            Self::Pause { job_id } => (on_job(Method::POST, job_id, Some("pause")), Rendering::Job),
            Self::Resume { job_id } => (on_job(Method::POST, job_id, Some("resume")), Rendering::Job),
            Self::Cancel { job_id } => (on_job(Method::POST, job_id, Some("cancel")), Rendering::Job),
        }
    }
}

fn request(method: Method, segments: &[&str]) -> AdminRequest {
    AdminRequest { method, segments: segments.iter().map(|s| (*s).to_owned()).collect(), query: Vec::new(), body: None }
}

fn with_body(mut request: AdminRequest, body: Vec<u8>) -> AdminRequest {
    request.body = Some(body);
    request
}

/// A request body from a file, or from stdin for `-`.
fn read_body_file(path: &Path) -> Result<Vec<u8>, CliError> {
    let mut body = Vec::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut body).map(drop)
    } else {
        std::fs::read(path).map(|bytes| body = bytes)
    };
    read.map_err(|err| CliError::Usage(format!("cannot read {}: {err}", path.display())))?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::routes::{self, Resolution};

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        admin: AdminCommand,
    }

    fn parse(args: &[&str]) -> AdminCommand {
        Cli::try_parse_from(std::iter::once("admin").chain(args.iter().copied())).unwrap().admin
    }

    fn kms_request(args: &[&str]) -> AdminRequest {
        match parse(args).area {
            AdminArea::Kms(kms) => kms.request().unwrap().0,
            AdminArea::Scrub(scrub) => scrub.request(),
        }
    }

    /// Every CLI command must hit a route the server serves.
    #[test]
    fn every_command_maps_to_a_served_route() {
        let commands: &[&[&str]] = &[
            &["kms", "status"],
            &["kms", "config"],
            &["kms", "start"],
            &["kms", "stop"],
            &["kms", "clear-cache"],
            &["kms", "key", "create"],
            &["kms", "key", "create", "app", "--description", "for the app"],
            &["kms", "key", "list", "--limit", "5", "--marker", "m"],
            &["kms", "key", "describe", "app"],
            &["kms", "key", "rotate", "app"],
            &["kms", "key", "enable", "app"],
            &["kms", "key", "disable", "app"],
            &["kms", "key", "delete", "app", "--pending-window-days", "7"],
            &["kms", "key", "cancel-deletion", "app"],
            &["kms", "key", "impact", "app"],
            &["kms", "stores", "impact", "local"],
            &["kms", "rewrap", "--from-key", "app", "--to-mode", "sse-kms"],
            &["kms", "jobs", "list"],
            &["kms", "jobs", "show", "rewrap-1"],
            &["kms", "jobs", "watch", "rewrap-1"],
            &["kms", "jobs", "pause", "rewrap-1"],
            &["kms", "jobs", "resume", "rewrap-1"],
            &["kms", "jobs", "cancel", "rewrap-1"],
            &["scrub"],
            &["scrub", "--bucket", "b", "--prefix", "p/", "--wait"],
            &["kms", "key", "set-expiry", "app", "--at", "2027-01-01T00:00:00Z"],
            &["kms", "key", "set-min-version", "app", "2"],
        ];
        for args in commands {
            let request = kms_request(args);
            let path = format!("{}/{}", routes::MOUNT_PREFIXES[0], request.segments.join("/"));
            assert!(
                matches!(routes::resolve(&request.method, &path), Resolution::Found { .. }),
                "{args:?} -> {} {path}",
                request.method
            );
        }
    }

    #[test]
    fn key_commands_carry_their_parameters() {
        let create = kms_request(&["kms", "key", "create", "app", "--description", "for the app"]);
        let body: Value = serde_json::from_slice(create.body.as_deref().unwrap()).unwrap();
        assert_eq!(body, serde_json::json!({"key_id": "app", "description": "for the app"}));
        let delete = kms_request(&["kms", "key", "delete", "app", "--pending-window-days", "7"]);
        assert_eq!(delete.query, vec![("pending_window_days", "7".to_owned())]);
        let list = kms_request(&["kms", "key", "list", "--limit", "5"]);
        assert_eq!(list.query, vec![("limit", "5".to_owned())]);
        let retire = kms_request(&["kms", "key", "set-min-version", "app", "2"]);
        let body: Value = serde_json::from_slice(retire.body.as_deref().unwrap()).unwrap();
        assert_eq!((retire.method, body), (Method::PUT, serde_json::json!({"min_decryption_version": 2})));
    }

    #[test]
    fn keys_of_other_stores_go_as_a_store_parameter() {
        let rotate = kms_request(&["kms", "key", "rotate", "bao/orders"]);
        assert_eq!(rotate.segments, ["keys", "orders", "rotate"]);
        assert_eq!(rotate.query, vec![("store", "bao".to_owned())]);
        let impact = kms_request(&["kms", "key", "impact", "orders"]);
        assert_eq!(impact.segments, ["keys", "orders", "impact"]);
        assert!(impact.query.is_empty());
    }

    #[test]
    fn rewrap_sends_the_spec_it_was_given() {
        let rewrap = kms_request(&[
            "kms",
            "rewrap",
            "--bucket",
            "a",
            "--bucket",
            "b",
            "--from-store",
            "local",
            "--from-versions-below",
            "3",
            "--from-mode",
            "plaintext",
            "--to-key",
            "bao/k",
            "--to-mode",
            "sse-s3",
            "--objects-per-second",
            "50",
            "--dry-run",
        ]);
        let body: Value = serde_json::from_slice(rewrap.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"buckets": ["a", "b"], "prefix": null,
                "from": {"store": "local", "versions_below": 3, "mode": "plaintext"},
                "to": {"key": "bao/k", "mode": "sse-s3"},
                "objects_per_second": 50, "concurrency": 4, "dry_run": true})
        );
        let spec: RewrapSpec = serde_json::from_value(body).unwrap();
        assert_eq!(spec.from.mode, Some(ObjectMode::Plaintext));
    }

    #[test]
    fn scrub_sends_its_scope() {
        let scrub = kms_request(&["scrub", "--bucket", "b", "--prefix", "logs/", "--objects-per-second", "9"]);
        assert_eq!((scrub.method, scrub.segments.join("/")), (Method::POST, "jobs/scrub".to_owned()));
        let body: Value = serde_json::from_slice(scrub.body.as_deref().unwrap()).unwrap();
        assert_eq!(body, serde_json::json!({"bucket": "b", "prefix": "logs/", "objects_per_second": 9}));
        let all: Value = serde_json::from_slice(kms_request(&["scrub"]).body.as_deref().unwrap()).unwrap();
        assert_eq!(all, serde_json::json!({"bucket": null, "prefix": null, "objects_per_second": 0}));
    }

    #[test]
    fn options_go_anywhere_and_secrets_stay_out_of_debug() {
        let command = parse(&["kms", "status", "--json", "--endpoint", "http://h:1", "--secret-key", "hunter2"]);
        assert!(command.json);
        assert_eq!(command.connection.endpoint, "http://h:1");
        assert!(!format!("{command:?}").contains("hunter2"));
    }

    #[test]
    fn configure_reads_its_body_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kms.json");
        std::fs::write(&file, br#"{"backend_type":"local","key_dir":"/k"}"#).unwrap();
        let request = kms_request(&["kms", "configure", "--file", file.to_str().unwrap()]);
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.body.as_deref(), Some(br#"{"backend_type":"local","key_dir":"/k"}"#.as_slice()));
        let AdminArea::Kms(kms) = parse(&["kms", "configure", "--file", "/nonexistent/kms.json"]).area else {
            panic!("a kms command")
        };
        assert!(matches!(kms.request(), Err(CliError::Usage(_))));
    }
}

//! The `coffer` binary: parses the command line and dispatches to a subcommand.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use coffer_server::config::{DataArgs, DataSettings, DatabaseUrl, MetadataEngine, ServerArgs, ServerConfig};
use coffer_server::logging::{self, LogFormat};
use coffer_store::{ClusterKey, ImportTarget, SharedState};

/// Coffer: an S3-compatible object store with server-side encryption.
#[derive(Debug, Parser)]
#[command(name = "coffer", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the S3 server.
    Server(Box<ServerArgs>),
    /// Manage a running server through its admin API (KMS status, configuration, keys).
    Admin(Box<coffer_admin_api::cli::AdminCommand>),
    /// Import a data directory of the directory metadata engine into the SQL engine (stop the server first), with its
    /// stored bytes kept in the data directory (hard links) or uploaded to a data bucket (--data-engine s3). An
    /// interrupted import runs again; the directory form is kept under DATA/.coffer/imported-TIME/.
    Migrate(MigrateArgs),
}

#[derive(Debug, clap::Args)]
// An import releases no data file, so the grace period of released ones has nothing to say here.
#[command(mut_arg("data_release_grace", |arg| arg.hide(true)))]
struct MigrateArgs {
    /// The data directory to import.
    #[arg(long, env = "COFFER_DATA", value_name = "DIR")]
    data: std::path::PathBuf,
    /// The engine to import into: `sqlite` (in the data directory) or `postgres` (at --metadata-url).
    #[arg(long, env = "COFFER_METADATA", value_name = "ENGINE", default_value = "sqlite")]
    metadata: MetadataEngine,
    /// The PostgreSQL database of `--metadata postgres`.
    #[arg(long, env = "COFFER_METADATA_URL", value_name = "URL", hide_env_values = true)]
    metadata_url: Option<DatabaseUrl>,
    /// Where the stored bytes go, as for `coffer server`. Data bucket credentials: COFFER_DATA_S3_ACCESS_KEY_ID and
    /// COFFER_DATA_S3_SECRET_ACCESS_KEY.
    #[command(flatten)]
    data_location: DataArgs,
    /// The cluster key of the nodes that will share the `--metadata postgres` database (`coffer server
    /// --cluster-key-file`): it signs the imported records [default: the data directory's own record key].
    #[arg(long, env = "COFFER_CLUSTER_KEY_FILE", value_name = "FILE")]
    cluster_key_file: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Server(args) => server(*args),
        Command::Migrate(args) => {
            logging::init(LogFormat::Text);
            match runtime() {
                Ok(runtime) => runtime.block_on(migrate(args)),
                Err(code) => code,
            }
        }
        Command::Admin(command) => {
            logging::init(LogFormat::Text);
            match runtime() {
                Ok(runtime) => runtime.block_on(coffer_admin_api::cli::run(*command)),
                Err(code) => code,
            }
        }
    }
}

fn server(args: ServerArgs) -> ExitCode {
    // Read before logging starts: it says how log lines look.
    let config = match ServerConfig::load(args.clone()) {
        Ok(config) => config,
        Err(error) => return fail(&error),
    };
    let log = logging::init(config.log_format);
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(coffer_server::service::run(args, config, log)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

async fn migrate(args: MigrateArgs) -> ExitCode {
    let url = match (args.metadata, &args.metadata_url) {
        (MetadataEngine::Sqlite, _) => None,
        (MetadataEngine::Postgres, Some(url)) => Some(url.expose().to_owned()),
        (MetadataEngine::Postgres, None) => return fail(&"--metadata postgres needs --metadata-url"),
        (MetadataEngine::Directory, _) => return fail(&"migrate imports into --metadata sqlite or postgres"),
    };
    let settings = match args.data_location.settings(Some(args.metadata)) {
        Ok(settings) => settings,
        Err(error) => return fail(&error),
    };
    let data = match settings.location(|name| std::env::var(name).ok()) {
        Ok(data) => data,
        Err(error) => return fail(&error),
    };
    let cluster = match (&args.cluster_key_file, url.as_deref()) {
        (None, _) => None,
        (Some(_), None) => return fail(&"--cluster-key-file needs --metadata postgres and --metadata-url"),
        (Some(path), Some(url)) => match join_cluster(path, url).await {
            Ok(key) => Some(key),
            Err(error) => return fail(&error),
        },
    };
    let progress = |bucket: &str, done: &coffer_store::Imported| {
        println!(
            "imported bucket {bucket}: {} buckets, {} objects, {} uploads ({} parts), {} stored bytes so far",
            done.buckets, done.objects, done.uploads, done.parts, done.stored_bytes
        );
    };
    let target = ImportTarget { postgres_url: url.as_deref(), data: &data, cluster: cluster.as_ref() };
    match coffer_store::import_directory(&args.data, target, progress).await {
        Ok((done, moved)) => {
            println!(
                "done: {} buckets, {} objects, {} uploads; start the server with {}; the directory form is in {} \
                 (delete it once the store checks out)",
                done.buckets,
                done.objects,
                done.uploads,
                server_flags(&args, &settings),
                moved.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => fail(&format_args!("migrate: {error}")),
    }
}

/// Reads the cluster key and records it as the key of the database's cluster (as the first node would), or checks
/// it is: records signed with another key would be refused by every node.
async fn join_cluster(path: &std::path::Path, url: &str) -> Result<ClusterKey, String> {
    let key = ClusterKey::read(path)
        .map_err(|error| format!("cannot read the cluster key file {}: {error}", path.display()))?;
    SharedState::open(url, &key).await.map_err(|error| format!("cluster: {error}"))?;
    Ok(key)
}

/// The flags that start a server on what `args` imported (the database URL and the credentials not shown).
fn server_flags(args: &MigrateArgs, settings: &DataSettings) -> String {
    let mut flags = match args.metadata {
        MetadataEngine::Postgres => "--metadata postgres --metadata-url (the same URL)".to_owned(),
        _ => "--metadata sqlite".to_owned(),
    };
    if let DataSettings::S3(s3) = settings {
        flags += &format!(" --data-engine s3 --data-s3-endpoint {} --data-s3-bucket {}", s3.endpoint, s3.bucket);
        if !s3.prefix.is_empty() {
            flags += &format!(" --data-s3-prefix {}", s3.prefix);
        }
        flags += &format!(" --data-s3-region {} (and the same data bucket credentials)", s3.region);
    }
    if let Some(path) = &args.cluster_key_file {
        flags += &format!(" --cluster-key-file {}", path.display());
    }
    flags
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| fail(&format_args!("cannot start the async runtime: {error}")))
}

fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("coffer: {error}");
    ExitCode::FAILURE
}

//! The `coffer` binary: parses the command line and dispatches to a subcommand.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use coffer_server::config::{DatabaseUrl, MetadataEngine, ServerArgs, ServerConfig};
use coffer_server::logging::{self, LogFormat};

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
    /// Import a data directory of the directory metadata engine into the SQL engine, in place (stop the server
    /// first). An interrupted import runs again; the directory form is kept under DATA/.coffer/imported-TIME/.
    Migrate(MigrateArgs),
}

#[derive(Debug, clap::Args)]
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
    let url = match (args.metadata, args.metadata_url) {
        (MetadataEngine::Sqlite, _) => None,
        (MetadataEngine::Postgres, Some(url)) => Some(url.expose().to_owned()),
        (MetadataEngine::Postgres, None) => return fail(&"--metadata postgres needs --metadata-url"),
        (MetadataEngine::Directory, _) => return fail(&"migrate imports into --metadata sqlite or postgres"),
    };
    let progress = |bucket: &str, done: &coffer_store::Imported| {
        println!(
            "imported bucket {bucket}: {} buckets, {} objects, {} uploads ({} parts), {} stored bytes so far",
            done.buckets, done.objects, done.uploads, done.parts, done.stored_bytes
        );
    };
    match coffer_store::import_directory(&args.data, url.as_deref(), progress).await {
        Ok((done, moved)) => {
            println!(
                "done: {} buckets, {} objects, {} uploads; start the server with --metadata {}; the directory form is \
                 in {} (delete it once the store checks out)",
                done.buckets,
                done.objects,
                done.uploads,
                if url.is_some() { "postgres" } else { "sqlite" },
                moved.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => fail(&format_args!("migrate: {error}")),
    }
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

//! The `coffer` binary: parses the command line and dispatches to a subcommand.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use coffer_server::config::ServerArgs;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = coffer_server::logging::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("coffer: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Server(args) => runtime.block_on(coffer_server::service::run(*args, log)),
        Command::Admin(command) => return runtime.block_on(coffer_admin_api::cli::run(*command)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("coffer: {error}");
            ExitCode::FAILURE
        }
    }
}

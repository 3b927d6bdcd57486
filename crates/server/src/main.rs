//! The `coffer` binary: parses the command line and dispatches to a subcommand.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use coffer_server::config::{ServerArgs, ServerConfig};
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
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Server(args) => server(*args),
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

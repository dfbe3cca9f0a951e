//! `dtn`: run a bundle protocol node, and send, receive and inspect bundles.

mod bundle_cmd;
mod input;
mod store_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A Bundle Protocol version 7 node (RFC 9171) and the tools around it.
#[derive(Debug, Parser)]
#[command(name = "dtn", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node in the foreground.
    ///
    /// Example: dtn daemon --config /etc/dtn/node.toml
    Daemon {
        /// Configuration file; without one the embedded defaults are used.
        #[arg(long, value_name = "FILE")]
        config: Option<std::path::PathBuf>,
    },
    /// Offline tools over bundle files: create, inspect, validate.
    #[command(subcommand)]
    Bundle(Box<bundle_cmd::BundleCommand>),
    /// Offline tools over a node's store (run them while its daemon is stopped).
    #[command(subcommand)]
    Store(store_cmd::StoreCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs (the store's recovery summary, warnings) go to stderr; RUST_LOG picks the level.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let result = match cli.command {
        Command::Daemon { config } => daemon(config),
        Command::Bundle(command) => bundle_cmd::run(*command),
        Command::Store(command) => store_cmd::run(command),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("dtn: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Until the agent lands (issue 4), say plainly what the daemon will do and that it cannot yet.
fn daemon(config: Option<std::path::PathBuf>) -> anyhow::Result<ExitCode> {
    let config = config.map_or_else(|| "the embedded defaults".to_string(), |p| p.display().to_string());
    println!(
        "dtn daemon: would run a bundle protocol agent with {config}: a persistent store under the data \
         directory, TCPCLv4 on port 4556, and the local API on the data directory's socket.\n\
         The agent is not built yet (it arrives with the agent issue); the codec tools work now: \
         try `dtn bundle create --help`."
    );
    Ok(ExitCode::SUCCESS)
}

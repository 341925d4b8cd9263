//! `mongobak`: the one binary. This file is glue: it parses the command
//! line, runs the chosen command, prints one error line and sets the exit
//! status. The work lives in the library crates and in:
//!
//! * [`config`]: the TOML file and `MONGOBAK_*` overrides;
//! * [`accounts`]: the generated root account of an install without
//!   `[[accounts]]`;
//! * [`instances`]: registered deployments from config and command line;
//! * [`serve`]: `mongobak serve`; [`private`] keeps its files to their
//!   owner;
//! * [`restore`]: `mongobak verify` and `mongobak restore`;
//! * [`gc`]: `mongobak gc`, garbage collection of stored data;
//! * [`backup`] and [`download`]: the client commands, which call a running
//!   server through [`client`]; [`output`] and [`progress`] are what they
//!   print, [`failure`] their exit statuses.

mod accounts;
mod backup;
mod client;
mod config;
mod download;
mod failure;
mod gc;
mod instances;
mod output;
mod point_in_time;
mod private;
mod progress;
mod restore;
mod serve;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc: a request allocates and frees many small strings and buffers,
/// which glibc's allocator made about a sixth of the API's CPU time
/// (`perf` under `bench/api`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use config::Config;

/// A self-hosted MongoDB backup service that speaks the TencentDB for
/// MongoDB API.
#[derive(Debug, Parser)]
#[command(
    name = "mongobak",
    version,
    propagate_version = true,
    after_help = failure::EXIT_STATUSES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API server.
    Serve(ServeArgs),
    /// Register, list and remove the MongoDB deployments to back up.
    #[command(subcommand)]
    Instance(instances::InstanceCommand),
    /// Print the root account's keys as TENCENTCLOUD_* shell exports.
    Credentials(ConfigArg),
    /// Check a downloaded archive offline: its checksum (when a .sha256
    /// lies beside it) and its whole structure; print the counts.
    Verify(restore::VerifyArgs),
    /// Restore an archive (mongobak's or mongodump's) into a MongoDB, or
    /// (--instance) an instance's collections to a point in time.
    Restore(restore::RestoreArgs),
    /// Delete stored data no backup or download task accounts for.
    Gc(gc::GcArgs),
    /// Take and list backups through the API of a running mongobak.
    Backup(backup::BackupArgs),
    /// Download a backup's files (one per replica set), resumable and verified.
    Download(download::DownloadArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ConfigArg {
    /// Configuration file (TOML); every key is optional.
    #[arg(long, short, env = "MONGOBAK_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mongobak: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mongobak: {err:#}");
            ExitCode::from(failure::exit_code(&err))
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            private::restrict_new_files();
            init_logging(args.log_format);
            let config = Config::load(args.config.config.as_deref())?;
            serve::serve(config).await
        }
        Command::Instance(command) => {
            private::restrict_new_files();
            init_logging(LogFormat::Text);
            instances::run(command).await
        }
        Command::Verify(args) => restore::verify(args),
        Command::Restore(args) => {
            init_logging(LogFormat::Text);
            restore::restore(args).await
        }
        Command::Gc(args) => {
            private::restrict_new_files();
            init_logging(LogFormat::Text);
            gc::run(args).await
        }
        Command::Backup(args) => backup::run(args).await,
        Command::Download(args) => download::run(args).await,
        Command::Credentials(args) => {
            private::restrict_new_files();
            let config = Config::load(args.config.as_deref())?;
            let (accounts, _) = accounts::root_accounts(&config)?;
            let root = accounts.first().context("no root account is configured")?;
            println!("export TENCENTCLOUD_SECRET_ID={}", root.secret_id);
            println!("export TENCENTCLOUD_SECRET_KEY={}", root.secret_key);
            println!("export TENCENTCLOUD_REGION=ap-guangzhou");
            Ok(())
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MONGOBAK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal, not in files and pipes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

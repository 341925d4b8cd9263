//! `mongobak`: the one binary. This file is glue: it parses the command
//! line, runs the chosen command, prints one error line and sets the exit
//! status. The work lives in the library crates and in:
//!
//! * [`config`]: the TOML file and `MONGOBAK_*` overrides;
//! * [`accounts`]: the generated root account of an install without
//!   `[[accounts]]`;
//! * [`instances`]: registered deployments from config and command line;
//! * [`serve`]: `mongobak serve`.

mod accounts;
mod config;
mod instances;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use config::{Config, InstanceEntry};
use mongobak_catalog::{Catalog, InstanceSource};

/// A self-hosted MongoDB backup service that speaks the TencentDB for
/// MongoDB API.
#[derive(Debug, Parser)]
#[command(name = "mongobak", version, propagate_version = true)]
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
    Instance(InstanceCommand),
    /// Print the root account's keys as TENCENTCLOUD_* shell exports.
    Credentials(ConfigArg),
}

#[derive(Debug, Args)]
struct ConfigArg {
    /// Configuration file (TOML); every key is optional.
    #[arg(long, short, env = "MONGOBAK_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
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

#[derive(Debug, Subcommand)]
enum InstanceCommand {
    /// Register a deployment: one --replica-set URI for a replica set, one
    /// per shard (in order) for a sharded cluster.
    Add(AddArgs),
    /// List registered deployments.
    List(ListArgs),
    /// Forget a deployment registered with `instance add`.
    Remove(RemoveArgs),
}

#[derive(Debug, Args)]
struct AddArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Instance ID (cmgo- + 8 of a-z0-9); derived from owner and name when absent.
    #[arg(long)]
    id: Option<String>,
    /// Display name.
    #[arg(long)]
    name: Option<String>,
    /// Region the instance is served in.
    #[arg(long, default_value = "ap-guangzhou")]
    region: String,
    /// Owner's root Uin (default: the first root account).
    #[arg(long)]
    owner_uin: Option<String>,
    /// Connection URI of a replica set / shard; repeat for each shard.
    #[arg(long = "replica-set", value_name = "URI", required = true)]
    replica_sets: Vec<String>,
    /// A mongos URI of a sharded cluster.
    #[arg(long, value_name = "URI")]
    mongos: Option<String>,
    /// Register as a sharded cluster even with one shard.
    #[arg(long)]
    sharded: bool,
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    /// Aligned columns.
    Table,
    /// JSON.
    Json,
}

#[derive(Debug, Args)]
struct RemoveArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The instance ID.
    id: String,
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
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            init_logging(args.log_format);
            let config = Config::load(args.config.config.as_deref())?;
            serve::serve(config).await
        }
        Command::Instance(command) => {
            init_logging(LogFormat::Text);
            instance(command).await
        }
        Command::Credentials(args) => {
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

async fn instance(command: InstanceCommand) -> anyhow::Result<()> {
    match command {
        InstanceCommand::Add(args) => {
            let config = Config::load(args.config.config.as_deref())?;
            let catalog = Catalog::open(&config.metadata_url).await?;
            let (accounts, _) = accounts::root_accounts(&config)?;
            let entry = InstanceEntry {
                id: args.id,
                name: args.name,
                region: Some(args.region),
                owner_uin: args.owner_uin,
                replica_sets: args.replica_sets,
                mongos: args.mongos,
                sharded: args.sharded.then_some(true),
            };
            if !config
                .api
                .regions
                .contains(entry.region.as_deref().unwrap_or_default())
            {
                anyhow::bail!(
                    "the region {:?} is not among the served regions",
                    entry.region.unwrap_or_default()
                );
            }
            let instance = instances::resolve(&entry, &accounts[0].uin, InstanceSource::Cli)?;
            catalog.add_instance(&instance).await?;
            println!("{}", instance.id);
            Ok(())
        }
        InstanceCommand::List(args) => {
            let config = Config::load(args.config.config.as_deref())?;
            let catalog = Catalog::open(&config.metadata_url).await?;
            let list = catalog.instances().await?;
            match args.output {
                Output::Json => {
                    let rows: Vec<serde_json::Value> = list
                        .iter()
                        .map(|i| {
                            serde_json::json!({
                                "InstanceId": i.id,
                                "InstanceName": i.name,
                                "Region": i.region,
                                "OwnerUin": i.owner_uin,
                                "ClusterType": i.cluster_type.code(),
                                "ReplicaSets": i.replica_set_ids(),
                            })
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                }
                Output::Table => {
                    println!(
                        "{:<15} {:<20} {:<16} {:<8} REPLICA SETS",
                        "ID", "NAME", "REGION", "TYPE"
                    );
                    for i in &list {
                        let kind = match i.cluster_type {
                            mongobak_catalog::ClusterType::ReplicaSet => "replset",
                            mongobak_catalog::ClusterType::Sharded => "sharded",
                        };
                        println!(
                            "{:<15} {:<20} {:<16} {:<8} {}",
                            i.id,
                            i.name,
                            i.region,
                            kind,
                            i.replica_set_ids().join(",")
                        );
                    }
                }
            }
            Ok(())
        }
        InstanceCommand::Remove(args) => {
            let config = Config::load(args.config.config.as_deref())?;
            let catalog = Catalog::open(&config.metadata_url).await?;
            match catalog.instance(&args.id).await? {
                None => anyhow::bail!("no instance {} is registered", args.id),
                Some(i) if i.source == InstanceSource::Config => anyhow::bail!(
                    "instance {} comes from [[instances]] in the configuration; remove it there",
                    args.id
                ),
                Some(_) => {
                    catalog.remove_instance(&args.id).await?;
                    println!("removed {}", args.id);
                    Ok(())
                }
            }
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MONGOBAK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

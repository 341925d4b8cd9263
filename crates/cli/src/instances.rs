//! Registered deployments: turning `[[instances]]` entries and
//! `mongobak instance add` flags into catalog instances, and the
//! `mongobak instance add|list|remove` commands.
//!
//! `instance add` checks every replica set as a backup would reach it
//! (reachable, credentials accepted, a replica set member with an oplog)
//! before recording anything; `--mongos` alone discovers the shards with
//! `listShards`. Errors name the replica set, never the URI, which may
//! hold a password.

use std::collections::BTreeSet;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use futures::future::try_join_all;
use jiff::Timestamp;

use mongobak_catalog::{Catalog, ClusterType, Instance, InstanceId, InstanceSource};

use crate::config::{Config, InstanceEntry};
use crate::output::{print_json, print_table, Output};
use crate::{accounts, ConfigArg};

/// `mongobak instance ...`.
#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// Register a deployment: one --replica-set URI for a replica set, one
    /// per shard (in order) for a sharded cluster, or only --mongos to
    /// discover the shards.
    Add(AddArgs),
    /// List registered deployments.
    List(ListArgs),
    /// Forget a deployment registered with `instance add`.
    Remove(RemoveArgs),
}

/// `mongobak instance add`.
#[derive(Debug, Args)]
pub struct AddArgs {
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
    /// Connection URI of a replica set / shard; repeat for each shard, in order.
    #[arg(
        long = "replica-set",
        value_name = "URI",
        required_unless_present = "mongos"
    )]
    replica_sets: Vec<String>,
    /// A mongos URI of a sharded cluster; without --replica-set, its shards
    /// are discovered with listShards.
    #[arg(long, value_name = "URI")]
    mongos: Option<String>,
    /// Register as a sharded cluster even with one shard.
    #[arg(long)]
    sharded: bool,
    /// Record the instance without connecting to it.
    #[arg(long)]
    no_check: bool,
}

/// `mongobak instance list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

/// `mongobak instance remove`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The instance ID.
    id: String,
}

/// Runs an `instance` command.
pub async fn run(command: InstanceCommand) -> anyhow::Result<()> {
    match command {
        InstanceCommand::Add(args) => add(args).await,
        InstanceCommand::List(args) => list(args).await,
        InstanceCommand::Remove(args) => remove(args).await,
    }
}

async fn add(args: AddArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.config.as_deref())?;
    if !config.api.regions.contains(&args.region) {
        bail!(
            "the region {:?} is not among the served regions",
            args.region
        );
    }
    let mut replica_sets = args.replica_sets;
    if replica_sets.is_empty() {
        let mongos = args
            .mongos
            .as_deref()
            .context("give --replica-set URIs or a --mongos URI")?;
        replica_sets = mongobak_dump::probe::discover_shards(mongos).await?;
        if replica_sets.is_empty() {
            bail!("the mongos lists no shards");
        }
    }
    let catalog = Catalog::open(&config.metadata_url).await?;
    let (accounts, _) = accounts::root_accounts(&config)?;
    let entry = InstanceEntry {
        id: args.id,
        name: args.name,
        region: Some(args.region),
        owner_uin: args.owner_uin,
        replica_sets,
        mongos: args.mongos,
        sharded: args.sharded.then_some(true),
    };
    let mut instance = resolve(&entry, &accounts[0].uin, InstanceSource::Cli)?;
    if catalog.instances().get(&instance.id).await?.is_some() {
        bail!("an instance with ID {} is already registered", instance.id);
    }
    if !args.no_check {
        let ids = instance.replica_set_ids();
        let reports = try_join_all(
            ids.iter()
                .zip(&instance.replica_set_uris)
                .map(|(id, uri)| mongobak_dump::probe::probe(id, uri)),
        )
        .await?;
        for (id, report) in ids.iter().zip(&reports) {
            eprintln!(
                "{id}: replica set {:?}, server version {}",
                report.set_name, report.server_version
            );
        }
        // DescribeDBInstances shows it as MongoVersion; shards of a
        // cluster run one version, so the first one's stands for all.
        if let Some(first) = reports.first() {
            instance.server_version = first.server_version.clone();
        }
    }
    catalog.instances().add(&instance).await?;
    println!("{}", instance.id);
    Ok(())
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.config.as_deref())?;
    let catalog = Catalog::open(&config.metadata_url).await?;
    let list = catalog.instances().all().await?;
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
                        "MongoVersion": i.server_version,
                    })
                })
                .collect();
            print_json(&serde_json::Value::Array(rows))?;
        }
        Output::Table => print_table(
            &["ID", "NAME", "REGION", "TYPE", "REPLICA SETS"],
            list.iter().map(|i| {
                let kind = match i.cluster_type {
                    ClusterType::ReplicaSet => "replset",
                    ClusterType::Sharded => "sharded",
                };
                vec![
                    i.id.to_string(),
                    i.name.clone(),
                    i.region.clone(),
                    kind.to_string(),
                    i.replica_set_ids().join(","),
                ]
            }),
        ),
    }
    Ok(())
}

async fn remove(args: RemoveArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.config.as_deref())?;
    let catalog = Catalog::open(&config.metadata_url).await?;
    match catalog.instances().get(&args.id).await? {
        None => bail!("no instance {} is registered", args.id),
        Some(i) if i.source == InstanceSource::Config => bail!(
            "instance {} comes from [[instances]] in the configuration; remove it there",
            args.id
        ),
        Some(_) => {
            catalog.instances().remove(&args.id).await?;
            println!("removed {}", args.id);
            Ok(())
        }
    }
}

/// Region of instances that name none.
const DEFAULT_REGION: &str = "ap-guangzhou";

/// Builds the catalog instance of `entry`; `default_owner` is the first
/// root account's Uin.
pub fn resolve(
    entry: &InstanceEntry,
    default_owner: &str,
    source: InstanceSource,
) -> anyhow::Result<Instance> {
    if entry.replica_sets.is_empty() {
        bail!("an instance needs at least one replica set URI");
    }
    for uri in entry.replica_sets.iter().chain(entry.mongos.iter()) {
        if !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://")) {
            bail!("a connection URI must start with mongodb:// or mongodb+srv://");
        }
    }
    let owner_uin = entry
        .owner_uin
        .clone()
        .unwrap_or_else(|| default_owner.to_string());
    let id = match &entry.id {
        Some(id) => match InstanceId::parse(id) {
            Some(id) => id,
            None => {
                bail!("instance ID {id:?} must be cmgo- followed by 8 characters of a-z and 0-9")
            }
        },
        None => {
            let seed = entry.name.as_deref().unwrap_or(&entry.replica_sets[0]);
            InstanceId::derive(&format!("{owner_uin}/{seed}"))
        }
    };
    let sharded = entry
        .sharded
        .unwrap_or(entry.replica_sets.len() > 1 || entry.mongos.is_some());
    if !sharded && entry.replica_sets.len() > 1 {
        bail!("instance {id}: a replica set has exactly one URI; set sharded = true for a cluster");
    }
    Ok(Instance {
        name: entry.name.clone().unwrap_or_else(|| id.to_string()),
        region: entry
            .region
            .clone()
            .unwrap_or_else(|| DEFAULT_REGION.to_string()),
        owner_uin,
        cluster_type: if sharded {
            ClusterType::Sharded
        } else {
            ClusterType::ReplicaSet
        },
        replica_set_uris: entry.replica_sets.clone(),
        mongos_uri: entry.mongos.clone(),
        source,
        created_at: Timestamp::now(),
        server_version: String::new(),
        id,
    })
}

/// Registers the configuration's instances (see
/// [`InstanceStore::sync_config`](mongobak_catalog::InstanceStore::sync_config)).
pub async fn sync_config(
    catalog: &Catalog,
    entries: &[InstanceEntry],
    default_owner: &str,
) -> anyhow::Result<()> {
    let mut ids = BTreeSet::new();
    let mut instances = Vec::with_capacity(entries.len());
    for (n, entry) in entries.iter().enumerate() {
        let instance = resolve(entry, default_owner, InstanceSource::Config)
            .with_context(|| format!("[[instances]] entry {n}"))?;
        if !ids.insert(instance.id.clone()) {
            bail!(
                "[[instances]] entry {n}: the ID {} is used twice",
                instance.id
            );
        }
        instances.push(instance);
    }
    catalog
        .instances()
        .sync_config(&instances)
        .await
        .context("cannot register the configured instances")
}

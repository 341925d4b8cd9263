//! Turning `[[instances]]` entries and `mongobak instance add` flags into
//! catalog instances, and the `mongobak instance` commands.

use std::collections::BTreeSet;

use anyhow::{bail, Context};
use jiff::Timestamp;

use mongobak_catalog::instance::{derive_instance_id, is_valid_instance_id};
use mongobak_catalog::{Catalog, ClusterType, Instance, InstanceSource};

use crate::config::InstanceEntry;

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
        Some(id) if is_valid_instance_id(id) => id.clone(),
        Some(id) => {
            bail!("instance ID {id:?} must be cmgo- followed by 8 characters of a-z and 0-9")
        }
        None => {
            let seed = entry.name.as_deref().unwrap_or(&entry.replica_sets[0]);
            derive_instance_id(&format!("{owner_uin}/{seed}"))
        }
    };
    let sharded = entry
        .sharded
        .unwrap_or(entry.replica_sets.len() > 1 || entry.mongos.is_some());
    if !sharded && entry.replica_sets.len() > 1 {
        bail!("instance {id}: a replica set has exactly one URI; set sharded = true for a cluster");
    }
    Ok(Instance {
        name: entry.name.clone().unwrap_or_else(|| id.clone()),
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
        id,
    })
}

/// Registers the configuration's instances (see
/// [`Catalog::sync_config_instances`]).
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
        .sync_config_instances(&instances)
        .await
        .context("cannot register the configured instances")
}

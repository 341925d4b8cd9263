//! Registered MongoDB deployments.
//!
//! An instance is a replica set (one connection URI) or a sharded cluster
//! (one URI per shard, in order). Its replica sets / shards are named
//! `<instance id>_<n>` in that order, the TencentDB convention the download
//! API's `ReplicaSetId` refers to. Registering an instance only records it.

use jiff::Timestamp;
use sha2::{Digest, Sha256};

/// Replica set or sharded cluster; the numbers are the API's `ClusterType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterType {
    /// A replica set: one URI, one replica set `<id>_0`.
    ReplicaSet = 0,
    /// A sharded cluster: one URI per shard.
    Sharded = 1,
}

impl ClusterType {
    /// The API's number for this type.
    pub fn code(self) -> i64 {
        self as i64
    }

    /// The type with API number `code`.
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(ClusterType::ReplicaSet),
            1 => Some(ClusterType::Sharded),
            _ => None,
        }
    }
}

/// Where an instance's registration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceSource {
    /// `[[instances]]` in the configuration file; re-synced at every start.
    Config,
    /// `mongobak instance add`; kept until `mongobak instance remove`.
    Cli,
}

impl InstanceSource {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            InstanceSource::Config => "config",
            InstanceSource::Cli => "cli",
        }
    }

    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "config" => InstanceSource::Config,
            _ => InstanceSource::Cli,
        }
    }
}

/// A registered deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// `cmgo-` followed by 8 characters of `[a-z0-9]`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The region the instance is served in.
    pub region: String,
    /// Uin of the root account that owns it.
    pub owner_uin: String,
    /// Replica set or sharded cluster.
    pub cluster_type: ClusterType,
    /// Connection URIs, one per replica set / shard, in order. May hold
    /// credentials: never log them.
    pub replica_set_uris: Vec<String>,
    /// For a sharded cluster, a mongos URI (optional).
    pub mongos_uri: Option<String>,
    /// Where the registration came from.
    pub source: InstanceSource,
    /// When it was first registered.
    pub created_at: Timestamp,
    /// The server version (`buildInfo.version`) that `instance add`'s
    /// probe or the latest successful backup saw; empty until one has
    /// connected.
    pub server_version: String,
}

impl Instance {
    /// The IDs of its replica sets / shards: `<id>_0`, `<id>_1`, ...
    pub fn replica_set_ids(&self) -> Vec<String> {
        (0..self.replica_set_uris.len())
            .map(|n| format!("{}_{n}", self.id))
            .collect()
    }
}

/// Whether `id` has the form `cmgo-` + 8 `[a-z0-9]`.
pub fn is_valid_instance_id(id: &str) -> bool {
    id.strip_prefix("cmgo-").is_some_and(|rest| {
        rest.len() == 8
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// A stable instance ID derived from `seed` (owner and name), so that an
/// `[[instances]]` entry without an `id` keeps the same ID across restarts
/// and across the nodes of a cluster.
pub fn derive_instance_id(seed: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let digest = Sha256::digest(seed.as_bytes());
    let suffix: String = digest[..8]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    format!("cmgo-{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids() {
        assert!(is_valid_instance_id("cmgo-dygv1rnp"));
        assert!(!is_valid_instance_id("cmgo-DYGV1RNP"));
        assert!(!is_valid_instance_id("cmgo-dygv1rn"));
        assert!(!is_valid_instance_id("xmgo-dygv1rnp"));
        let id = derive_instance_id("100000000001/orders");
        assert!(is_valid_instance_id(&id), "{id}");
        assert_eq!(id, derive_instance_id("100000000001/orders"));
        assert_ne!(id, derive_instance_id("100000000001/billing"));
    }
}

//! Registered MongoDB deployments.
//!
//! An instance is a replica set (one connection URI) or a sharded cluster
//! (one URI per shard, in order). Its replica sets / shards are named
//! `<instance id>_<n>` in that order, the TencentDB convention the download
//! API's `ReplicaSetId` refers to. Registering an instance only records it.

use jiff::Timestamp;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::store::{AnyQuery, CatalogError, FromRow, InstanceStore};

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

impl InstanceStore<'_> {
    /// Registers a new instance; refuses an ID that is taken.
    pub async fn add(&self, instance: &Instance) -> Result<(), CatalogError> {
        let result = insert(instance).execute(self.catalog.pool()).await;
        self.catalog.forget_registry();
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(CatalogError::InstanceExists {
                    id: instance.id.clone(),
                })
            }
            other => other.map(drop).map_err(Into::into),
        }
    }

    /// Makes the configuration's instances the registered ones of source
    /// `config`: adds or updates each (keeping its first registration
    /// time) and forgets config instances no longer listed. Instances added
    /// from the command line are left alone, but an ID clash with one is an
    /// error.
    pub async fn sync_config(&self, instances: &[Instance]) -> Result<(), CatalogError> {
        let mut tx = self.catalog.begin_write().await?;
        for instance in instances {
            let existing = sqlx::query("SELECT source FROM instances WHERE id = $1")
                .bind(&instance.id)
                .fetch_optional(&mut *tx)
                .await?;
            match existing.map(|row| InstanceSource::parse(row.get::<&str, _>(0))) {
                Some(InstanceSource::Cli) => {
                    return Err(CatalogError::InstanceExists {
                        id: instance.id.clone(),
                    })
                }
                Some(InstanceSource::Config) => {
                    bind_deployment(
                        sqlx::query(
                            "UPDATE instances SET name = $2, region = $3, owner_uin = $4, \
                             cluster_type = $5, replica_sets = $6, mongos_uri = $7 WHERE id = $1",
                        ),
                        instance,
                    )
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    insert(instance).execute(&mut *tx).await?;
                }
            }
        }
        let keep: Vec<&str> = instances.iter().map(|i| i.id.as_str()).collect();
        let configured: Vec<String> =
            sqlx::query_scalar("SELECT id FROM instances WHERE source = 'config'")
                .fetch_all(&mut *tx)
                .await?;
        for id in configured.iter().filter(|id| !keep.contains(&id.as_str())) {
            sqlx::query("DELETE FROM instances WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.catalog.forget_registry();
        Ok(())
    }

    /// Records the server version a connection to the instance saw
    /// (`buildInfo.version`); an unknown instance is left alone.
    pub async fn set_server_version(&self, id: &str, version: &str) -> Result<(), CatalogError> {
        let done = sqlx::query(
            "UPDATE instances SET server_version = $2 WHERE id = $1 AND server_version <> $2",
        )
        .bind(id)
        .bind(version)
        .execute(self.catalog.pool())
        .await?;
        if done.rows_affected() > 0 {
            self.catalog.forget_registry();
        }
        Ok(())
    }

    /// Forgets an instance; false when it was not registered.
    pub async fn remove(&self, id: &str) -> Result<bool, CatalogError> {
        let done = sqlx::query("DELETE FROM instances WHERE id = $1")
            .bind(id)
            .execute(self.catalog.pool())
            .await?;
        self.catalog.rules().forget(id).await?;
        self.catalog.forget_registry();
        Ok(done.rows_affected() > 0)
    }

    /// One instance by ID (from the registry cache).
    pub async fn get(&self, id: &str) -> Result<Option<Instance>, CatalogError> {
        Ok(self
            .catalog
            .registry()
            .await?
            .iter()
            .find(|i| i.id == id)
            .cloned())
    }

    /// Every registered instance, oldest first (from the registry cache).
    pub async fn all(&self) -> Result<Vec<Instance>, CatalogError> {
        Ok(self.catalog.registry().await?.as_ref().clone())
    }

    /// Every registered instance, oldest first, as the shared snapshot of
    /// the registry cache: no copy, for callers that only read.
    pub async fn registry(&self) -> Result<Arc<Vec<Instance>>, CatalogError> {
        self.catalog.registry().await
    }
}

impl FromRow for Instance {
    fn from_row(row: &AnyRow) -> Result<Self, CatalogError> {
        decode_instance(row)
    }
}

pub(crate) const SELECT_INSTANCE: &str =
    "SELECT id, name, region, owner_uin, cluster_type, replica_sets, \
                               mongos_uri, source, created_at, server_version FROM instances";

/// Binds `$1` to `$7`: the instance's ID and what describes its
/// deployment (name, region, owner, cluster type, replica set URIs, mongos
/// URI), in that order.
fn bind_deployment<'q>(query: AnyQuery<'q>, instance: &'q Instance) -> AnyQuery<'q> {
    query
        .bind(&instance.id)
        .bind(&instance.name)
        .bind(&instance.region)
        .bind(&instance.owner_uin)
        .bind(instance.cluster_type.code())
        .bind(uris_json(&instance.replica_set_uris))
        .bind(&instance.mongos_uri)
}

fn insert(instance: &Instance) -> AnyQuery<'_> {
    bind_deployment(
        sqlx::query(
            "INSERT INTO instances (id, name, region, owner_uin, cluster_type, replica_sets, \
             mongos_uri, source, created_at, server_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        ),
        instance,
    )
    .bind(instance.source.as_str())
    .bind(instance.created_at.as_second())
    .bind(&instance.server_version)
}

fn uris_json(uris: &[String]) -> String {
    serde_json::to_string(uris).expect("a list of strings serializes")
}

pub(crate) fn decode_instance(row: &AnyRow) -> Result<Instance, CatalogError> {
    let id: String = row.try_get("id")?;
    let corrupt = |detail: String| CatalogError::Corrupt {
        what: format!("instance {id}"),
        detail,
    };
    let cluster_type = ClusterType::from_code(row.try_get("cluster_type")?)
        .ok_or_else(|| corrupt("unknown cluster type".into()))?;
    let uris: String = row.try_get("replica_sets")?;
    let replica_set_uris = serde_json::from_str(&uris).map_err(|e| corrupt(e.to_string()))?;
    let created_at =
        Timestamp::from_second(row.try_get("created_at")?).map_err(|e| corrupt(e.to_string()))?;
    Ok(Instance {
        name: row.try_get("name")?,
        region: row.try_get("region")?,
        owner_uin: row.try_get("owner_uin")?,
        cluster_type,
        replica_set_uris,
        mongos_uri: row.try_get("mongos_uri")?,
        source: InstanceSource::parse(row.try_get::<&str, _>("source")?),
        created_at,
        server_version: row.try_get("server_version")?,
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestCatalog;

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

    fn instance(id: &str, source: InstanceSource) -> Instance {
        Instance {
            id: id.to_string(),
            name: format!("name of {id}"),
            region: "ap-guangzhou".into(),
            owner_uin: "100".into(),
            cluster_type: ClusterType::ReplicaSet,
            replica_set_uris: vec!["mongodb://u:p@127.0.0.1:27017/?directConnection=true".into()],
            mongos_uri: None,
            source,
            created_at: Timestamp::from_second(1_700_000_000).unwrap(),
            server_version: String::new(),
        }
    }

    crate::testing::on_each_engine!(add_list_remove, config_sync_updates_adds_and_forgets);

    async fn add_list_remove(c: TestCatalog) {
        c.ping().await.unwrap();
        let a = instance("cmgo-aaaaaaaa", InstanceSource::Cli);
        c.instances().add(&a).await.unwrap();
        assert!(matches!(
            c.instances().add(&a).await,
            Err(CatalogError::InstanceExists { .. })
        ));
        assert_eq!(c.instances().all().await.unwrap(), vec![a.clone()]);
        assert_eq!(
            c.instances().get("cmgo-aaaaaaaa").await.unwrap(),
            Some(a.clone())
        );
        c.instances()
            .set_server_version("cmgo-aaaaaaaa", "7.0.14")
            .await
            .unwrap();
        let seen = c.instances().get("cmgo-aaaaaaaa").await.unwrap().unwrap();
        assert_eq!(seen.server_version, "7.0.14");
        // A re-sync from the configuration keeps what a connection saw.
        assert!(c.instances().remove("cmgo-aaaaaaaa").await.unwrap());
        let configured = instance("cmgo-aaaaaaaa", InstanceSource::Config);
        c.instances()
            .sync_config(std::slice::from_ref(&configured))
            .await
            .unwrap();
        c.instances()
            .set_server_version("cmgo-aaaaaaaa", "6.0.1")
            .await
            .unwrap();
        c.instances().sync_config(&[configured]).await.unwrap();
        let seen = c.instances().get("cmgo-aaaaaaaa").await.unwrap().unwrap();
        assert_eq!(seen.server_version, "6.0.1");
        assert!(c.instances().remove("cmgo-aaaaaaaa").await.unwrap());
        assert!(!c.instances().remove("cmgo-aaaaaaaa").await.unwrap());
    }

    async fn config_sync_updates_adds_and_forgets(c: TestCatalog) {
        let cli = instance("cmgo-cli00000", InstanceSource::Cli);
        c.instances().add(&cli).await.unwrap();
        let mut a = instance("cmgo-aaaaaaaa", InstanceSource::Config);
        let b = instance("cmgo-bbbbbbbb", InstanceSource::Config);
        c.instances()
            .sync_config(&[a.clone(), b.clone()])
            .await
            .unwrap();
        a.name = "renamed".into();
        c.instances().sync_config(&[a.clone()]).await.unwrap();
        let ids: Vec<String> = c
            .instances()
            .all()
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(ids, vec!["cmgo-aaaaaaaa", "cmgo-cli00000"]);
        assert_eq!(
            c.instances()
                .get("cmgo-aaaaaaaa")
                .await
                .unwrap()
                .unwrap()
                .name,
            "renamed"
        );
        // A config entry may not take over an instance added by hand.
        let clash = instance("cmgo-cli00000", InstanceSource::Config);
        assert!(matches!(
            c.instances().sync_config(&[clash]).await,
            Err(CatalogError::InstanceExists { .. })
        ));
        // Reopening keeps the data (migrations are idempotent).
        let reopened = c.reopen().await;
        assert_eq!(reopened.instances().all().await.unwrap().len(), 2);
    }
}

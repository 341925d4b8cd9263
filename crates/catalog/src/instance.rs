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
    pub id: InstanceId,
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
    pub fn replica_set_ids(&self) -> Vec<ReplicaSetId> {
        (0..self.replica_set_uris.len())
            .map(|index| self.id.replica_set(index))
            .collect()
    }
}

/// An instance ID: `cmgo-` followed by 8 characters of `[a-z0-9]`.
///
/// Made only here: checked from text by [`InstanceId::parse`], or derived
/// from a seed by [`InstanceId::derive`]. Reads as a `&str`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct InstanceId(String);

impl InstanceId {
    /// The ID `text` names, if it has the form of one.
    pub fn parse(text: &str) -> Option<Self> {
        let valid = text.strip_prefix("cmgo-").is_some_and(|rest| {
            rest.len() == 8
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
        valid.then(|| InstanceId(text.to_string()))
    }

    /// A stable ID derived from `seed` (owner and name), so that an
    /// `[[instances]]` entry without an `id` keeps the same ID across
    /// restarts and across the nodes of a cluster.
    pub fn derive(seed: &str) -> Self {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let digest = Sha256::digest(seed.as_bytes());
        let suffix: String = digest[..8]
            .iter()
            .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
            .collect();
        InstanceId(format!("cmgo-{suffix}"))
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The ID of its replica set / shard number `index` (from 0).
    pub fn replica_set(&self, index: usize) -> ReplicaSetId {
        ReplicaSetId(format!("{}_{index}", self.0))
    }
}

/// A replica set / shard of an instance: `<instance id>_<n>`, `n` counting
/// from 0 in the order of the instance's connection URIs (the TencentDB
/// convention the download API's `ReplicaSetId` refers to).
///
/// Made only here: by [`InstanceId::replica_set`], or checked from text by
/// [`ReplicaSetId::parse`]. Reads as a `&str`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct ReplicaSetId(String);

impl ReplicaSetId {
    /// The replica set ID `text` names, if it has the form of one.
    pub fn parse(text: &str) -> Option<Self> {
        let (instance, index) = text.rsplit_once('_')?;
        let index: usize = index.parse().ok()?;
        Some(InstanceId::parse(instance)?.replica_set(index))
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The instance it belongs to.
    pub fn instance_id(&self) -> InstanceId {
        let (instance, _) = self.0.rsplit_once('_').expect("made with a `_<n>` suffix");
        InstanceId(instance.to_string())
    }

    /// Its position among the instance's replica sets / shards.
    pub fn index(&self) -> usize {
        let (_, index) = self.0.rsplit_once('_').expect("made with a `_<n>` suffix");
        index.parse().expect("made with a numeric suffix")
    }
}

macro_rules! reads_as_str {
    ($($id:ty),*) => {$(
        impl std::ops::Deref for $id {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $id {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $id {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $id {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $id {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $id {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $id {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$id> for String {
            fn eq(&self, other: &$id) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$id> for str {
            fn eq(&self, other: &$id) -> bool {
                *self == other.0
            }
        }

        impl From<$id> for String {
            fn from(id: $id) -> String {
                id.0
            }
        }
    )*};
}

reads_as_str!(InstanceId, ReplicaSetId);

impl InstanceStore<'_> {
    /// Registers a new instance; refuses an ID that is taken.
    pub async fn add(&self, instance: &Instance) -> Result<(), CatalogError> {
        let result = insert(instance).execute(self.catalog.pool()).await;
        self.catalog.forget_registry();
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(CatalogError::InstanceExists {
                    id: instance.id.to_string(),
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
                .bind(instance.id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            match existing.map(|row| InstanceSource::parse(row.get::<&str, _>(0))) {
                Some(InstanceSource::Cli) => {
                    return Err(CatalogError::InstanceExists {
                        id: instance.id.to_string(),
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
        .bind(instance.id.as_str())
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
        id: InstanceId::parse(&id).ok_or_else(|| corrupt("malformed instance ID".into()))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestCatalog;

    #[test]
    fn instance_ids() {
        assert!(InstanceId::parse("cmgo-dygv1rnp").is_some());
        assert!(InstanceId::parse("cmgo-DYGV1RNP").is_none());
        assert!(InstanceId::parse("cmgo-dygv1rn").is_none());
        assert!(InstanceId::parse("xmgo-dygv1rnp").is_none());
        let id = InstanceId::derive("100000000001/orders");
        assert!(InstanceId::parse(&id).is_some(), "{id}");
        assert_eq!(id, InstanceId::derive("100000000001/orders"));
        assert_ne!(id, InstanceId::derive("100000000001/billing"));
    }

    #[test]
    fn replica_set_ids() {
        let instance = InstanceId::parse("cmgo-dygv1rnp").unwrap();
        let second = instance.replica_set(1);
        assert_eq!(second, "cmgo-dygv1rnp_1");
        assert_eq!(second.instance_id(), instance);
        assert_eq!(second.index(), 1);
        assert_eq!(ReplicaSetId::parse("cmgo-dygv1rnp_1"), Some(second));
        for malformed in [
            "cmgo-dygv1rnp",
            "cmgo-dygv1rnp_",
            "cmgo-dygv1rnp_x",
            "cmgo-dy_0",
            "_0",
        ] {
            assert_eq!(ReplicaSetId::parse(malformed), None, "{malformed}");
        }
    }

    fn instance(id: &str, source: InstanceSource) -> Instance {
        Instance {
            id: InstanceId::parse(id).unwrap(),
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
        let ids: Vec<InstanceId> = c
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

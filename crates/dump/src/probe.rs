//! Checks before a deployment is registered: can it be reached, do the
//! credentials work, is it a replica set member (a backup needs the
//! oplog)? And, for a sharded cluster given by a mongos, its shards.
//!
//! And what a registered deployment holds now, read live rather than from
//! a backup: its databases ([`list_databases`]) and a database's
//! collections ([`list_collections`]), through its mongos when it has one,
//! else from every replica set / shard, merged. Each listing gives up after
//! [`LISTING_TIMEOUT`].

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use futures::future::try_join_all;
use mongodb::bson::doc;
use mongodb::options::ClientOptions;
use mongodb::Client;

use crate::replica_set::ReplicaSetSource;
use crate::DumpError;

/// How long a live listing may take, connecting included.
pub const LISTING_TIMEOUT: Duration = Duration::from_secs(10);

/// Databases a listing leaves out: the server's own (users and roles,
/// the oplog and replication state, a sharded cluster's metadata).
const INTERNAL_DATABASES: &[&str] = &["admin", "local", "config"];

/// A registered deployment, as much of it as a live listing needs.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// For a sharded cluster, a mongos URI: the only server asked when
    /// given. May hold credentials: never logged.
    pub mongos_uri: Option<String>,
    /// `(replica set id, connection URI)` of every replica set / shard, in
    /// order; all of them are asked when there is no mongos. The URIs may
    /// hold credentials: never logged.
    pub replica_sets: Vec<(String, String)>,
}

impl Deployment {
    /// The servers to ask, each with the name errors give it (a replica
    /// set ID, or `mongos`).
    fn targets(&self) -> Vec<(&str, &str)> {
        match &self.mongos_uri {
            Some(uri) => vec![("mongos", uri.as_str())],
            None => self
                .replica_sets
                .iter()
                .map(|(id, uri)| (id.as_str(), uri.as_str()))
                .collect(),
        }
    }
}

/// The deployment's databases, sorted, without the server's own (`admin`,
/// `local`, `config`): the union of every replica set's when there is no
/// mongos. Errors name the replica set or `mongos`, never a URI.
pub async fn list_databases(deployment: &Deployment) -> Result<Vec<String>, DumpError> {
    let names = merged_listing(deployment, "listDatabases", |client| async move {
        client.list_database_names().await
    })
    .await?;
    Ok(names
        .into_iter()
        .filter(|db| !INTERNAL_DATABASES.contains(&db.as_str()))
        .collect())
}

/// The collections (views and time series included) of database `db`,
/// sorted, without the server's `system.*` ones: the union of every
/// replica set's when there is no mongos. A database that does not exist
/// has none. Errors name the replica set or `mongos`, never a URI.
pub async fn list_collections(deployment: &Deployment, db: &str) -> Result<Vec<String>, DumpError> {
    let names = merged_listing(deployment, "listCollections", |client| {
        let db = db.to_string();
        async move { client.database(&db).list_collection_names().await }
    })
    .await?;
    Ok(names
        .into_iter()
        .filter(|name| !name.starts_with("system."))
        .collect())
}

/// The union, sorted, of `list` run against every server of the
/// deployment at once, each given [`LISTING_TIMEOUT`].
async fn merged_listing<F, Fut>(
    deployment: &Deployment,
    action: &str,
    list: F,
) -> Result<BTreeSet<String>, DumpError>
where
    F: Fn(Client) -> Fut,
    Fut: Future<Output = mongodb::error::Result<Vec<String>>>,
{
    let list = &list;
    let listings = deployment
        .targets()
        .into_iter()
        .map(|(name, uri)| async move {
            let listing = async {
                let client = listing_client(name, uri).await?;
                list(client)
                    .await
                    .map_err(|source| listing_error(name, action, source))
            };
            tokio::time::timeout(LISTING_TIMEOUT, listing)
                .await
                .unwrap_or_else(|_| {
                    Err(DumpError::TimedOut {
                        replica_set: name.to_string(),
                        action: action.to_string(),
                        waited_secs: LISTING_TIMEOUT.as_secs(),
                    })
                })
        });
    Ok(try_join_all(listings)
        .await?
        .into_iter()
        .flatten()
        .collect())
}

/// A client of the server at `uri` that waits for it no longer than a
/// listing may take (less when the URI says so).
async fn listing_client(name: &str, uri: &str) -> Result<Client, DumpError> {
    let mut options = ClientOptions::parse(uri)
        .await
        .map_err(|source| DumpError::connecting(name, source))?;
    options.app_name = Some("mongobak".into());
    for timeout in [
        &mut options.server_selection_timeout,
        &mut options.connect_timeout,
    ] {
        *timeout = Some(timeout.map_or(LISTING_TIMEOUT, |t| t.min(LISTING_TIMEOUT)));
    }
    Client::with_options(options).map_err(|source| DumpError::connecting(name, source))
}

/// A listing command's failure: the server unreachable or the credentials
/// refused (the driver connects on the first command), or the command
/// itself refused.
fn listing_error(name: &str, action: &str, source: mongodb::error::Error) -> DumpError {
    match *source.kind {
        mongodb::error::ErrorKind::Authentication { .. }
        | mongodb::error::ErrorKind::ServerSelection { .. } => DumpError::connecting(name, source),
        _ => DumpError::Mongo {
            replica_set: name.to_string(),
            action: action.to_string(),
            source: Box::new(source),
        },
    }
}

/// What a reachable replica set member reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// `setName`.
    pub set_name: String,
    /// `buildInfo.version`.
    pub server_version: String,
}

/// Connects to `uri` as a backup would and reports what it found. Errors
/// name `replica_set_id`, never the URI (it may hold a password).
pub async fn probe(replica_set_id: &str, uri: &str) -> Result<ProbeReport, DumpError> {
    let source = ReplicaSetSource::connect(replica_set_id, uri).await?;
    Ok(ProbeReport {
        set_name: source.set_name,
        server_version: source.server_version,
    })
}

/// The connection URIs of a sharded cluster's shards, in `listShards`
/// order, built from the mongos URI's credentials and options.
pub async fn discover_shards(mongos_uri: &str) -> Result<Vec<String>, DumpError> {
    let connect_error = |source| DumpError::Connect {
        replica_set: "mongos".into(),
        source: Box::new(source),
    };
    let mut options = ClientOptions::parse(mongos_uri)
        .await
        .map_err(connect_error)?;
    options
        .server_selection_timeout
        .get_or_insert(Duration::from_secs(15));
    let client = Client::with_options(options).map_err(connect_error)?;
    let reply = client
        .database("admin")
        .run_command(doc! {"listShards": 1})
        .await
        .map_err(|source| DumpError::Mongo {
            replica_set: "mongos".into(),
            action: "listShards".into(),
            source: Box::new(source),
        })?;
    let shards = reply.get_array("shards").map_err(|_| DumpError::Corrupt {
        path: "listShards".into(),
        detail: "the reply has no shards list".into(),
    })?;
    shards
        .iter()
        .map(|shard| {
            let host = shard
                .as_document()
                .and_then(|d| d.get_str("host").ok())
                .ok_or_else(|| DumpError::Corrupt {
                    path: "listShards".into(),
                    detail: "a shard has no host".into(),
                })?;
            shard_uri(mongos_uri, host).ok_or_else(|| DumpError::Corrupt {
                path: "listShards".into(),
                detail: format!("the shard host {host:?} is not rsName/host:port,..."),
            })
        })
        .collect()
}

/// The URI of a shard whose `listShards` host is `rsName/h1:p1,h2:p2`: the
/// mongos URI's scheme, credentials, database and options, with the
/// shard's hosts and `replicaSet`. `None` for a host of another shape.
pub fn shard_uri(mongos_uri: &str, shard_host: &str) -> Option<String> {
    let (set_name, hosts) = shard_host.split_once('/')?;
    if set_name.is_empty() || hosts.is_empty() {
        return None;
    }
    let rest = mongos_uri.strip_prefix("mongodb://")?;
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let credentials = authority.rsplit_once('@').map(|(c, _)| c);
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, q),
        None => (tail, ""),
    };
    let mut params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let key = p.split('=').next().unwrap_or("").to_ascii_lowercase();
            key != "replicaset" && key != "directconnection"
        })
        .collect();
    let replica_set = format!("replicaSet={set_name}");
    params.push(&replica_set);
    let path = if path.is_empty() { "/" } else { path };
    Some(format!(
        "mongodb://{}{hosts}{path}?{}",
        credentials.map(|c| format!("{c}@")).unwrap_or_default(),
        params.join("&")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mongos_is_asked_alone() {
        let mut deployment = Deployment {
            mongos_uri: None,
            replica_sets: vec![
                ("cmgo-a_0".into(), "mongodb://h0".into()),
                ("cmgo-a_1".into(), "mongodb://h1".into()),
            ],
        };
        assert_eq!(
            deployment.targets(),
            [("cmgo-a_0", "mongodb://h0"), ("cmgo-a_1", "mongodb://h1")]
        );
        deployment.mongos_uri = Some("mongodb://m".into());
        assert_eq!(deployment.targets(), [("mongos", "mongodb://m")]);
    }

    #[test]
    fn shard_uris_keep_credentials_and_options() {
        assert_eq!(
            shard_uri(
                "mongodb://u:p%40w@mongos1:27017,mongos2:27017/admin?authSource=admin&tls=true",
                "rs0/a:1,b:2"
            )
            .unwrap(),
            "mongodb://u:p%40w@a:1,b:2/admin?authSource=admin&tls=true&replicaSet=rs0"
        );
        assert_eq!(
            shard_uri("mongodb://mongos:27017", "shard1/h:27018").unwrap(),
            "mongodb://h:27018/?replicaSet=shard1"
        );
        assert_eq!(
            shard_uri("mongodb://m/?directConnection=true&replicaSet=x", "s/h:1").unwrap(),
            "mongodb://h:1/?replicaSet=s"
        );
        assert_eq!(shard_uri("mongodb://m", "h:1"), None);
        assert_eq!(shard_uri("mongodb+srv://m", "s/h:1"), None);
    }
}

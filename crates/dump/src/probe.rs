//! Checks before a deployment is registered: can it be reached, do the
//! credentials work, is it a replica set member (a backup needs the
//! oplog)? And, for a sharded cluster given by a mongos, its shards.

use std::time::Duration;

use mongodb::bson::doc;
use mongodb::options::ClientOptions;
use mongodb::Client;

use crate::replica_set::ReplicaSetSource;
use crate::DumpError;

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

//! One replica set of a backup: connect, list namespaces, dump documents,
//! capture the oplog slice.

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt, TryStreamExt};
use mongobak_blob::BlobStore;
use mongodb::bson::{doc, Bson, Document, RawDocumentBuf, Timestamp};
use mongodb::options::ClientOptions;
use mongodb::Client;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};

use crate::stored::format::{CollectionEntry, CollectionKind, OplogTime, SegmentSet};
use crate::{DumpError, DumpOptions, Progress};

/// Databases a full-instance dump leaves out, as mongodump does.
const SKIPPED_DATABASES: &[&str] = &["local", "config"];
/// The `admin.system.*` collections that are part of a backup (users,
/// roles and the auth schema version), read even when `listCollections`
/// does not show them.
const ADMIN_SYSTEM_COLLECTIONS: &[&str] = &["system.users", "system.roles", "system.version"];
/// Other `system.*` collections with user data mongodump keeps.
const KEPT_SYSTEM_COLLECTIONS: &[&str] = &["system.js"];

/// A connected replica set with its recorded start position. Clones share
/// the connection pool.
#[derive(Clone)]
pub(crate) struct ReplicaSetSource {
    pub id: String,
    pub set_name: String,
    pub server_version: String,
    pub oplog_start: OplogTime,
    client: Client,
}

/// A namespace to back up, as listed by the server.
struct Namespace {
    db: String,
    name: String,
    kind: CollectionKind,
    options: Document,
    uuid: Option<String>,
    /// The collection the documents come from (`None` for a view).
    data_from: Option<String>,
}

/// Held by a replica set's estimating task: reports it done estimating
/// when dropped, which happens once, however the task ends.
struct Estimating(Progress);

impl Drop for Estimating {
    fn drop(&mut self) {
        self.0.estimated();
    }
}

impl ReplicaSetSource {
    /// Connects, checks the node is a replica set member, and records the
    /// oplog position before anything is read.
    pub(crate) async fn connect(id: &str, uri: &str) -> Result<Self, DumpError> {
        let connect_error = |source| DumpError::connecting(id, source);
        let mut options = ClientOptions::parse(uri).await.map_err(connect_error)?;
        options.app_name = Some("mongobak".into());
        options
            .server_selection_timeout
            .get_or_insert(Duration::from_secs(15));
        options
            .connect_timeout
            .get_or_insert(Duration::from_secs(10));
        let client = Client::with_options(options).map_err(connect_error)?;
        let hello = client
            .database("admin")
            .run_command(doc! {"hello": 1})
            .await
            .map_err(connect_error)?;
        let set_name = match hello.get_str("setName") {
            Ok(name) => name.to_string(),
            Err(_) => {
                return Err(DumpError::NotReplicaSet {
                    replica_set: id.to_string(),
                })
            }
        };
        let mut source = ReplicaSetSource {
            id: id.to_string(),
            set_name,
            server_version: String::new(),
            oplog_start: OplogTime::ZERO,
            client,
        };
        let build_info = source
            .command("admin", doc! {"buildInfo": 1}, "buildInfo")
            .await?;
        source.server_version = build_info.get_str("version").unwrap_or("0.0.0").to_string();
        source.oplog_start = source.last_oplog_time().await?;
        tracing::info!(replica_set = id, set_name = %source.set_name, version = %source.server_version, "connected");
        Ok(source)
    }

    /// The replica set's oplog, read as raw entries.
    pub(crate) fn oplog_collection(&self) -> mongodb::Collection<RawDocumentBuf> {
        self.client.database("local").collection("oplog.rs")
    }

    /// An oplog entry or answer that does not have the expected shape.
    pub(crate) fn corrupt(&self, detail: String) -> DumpError {
        DumpError::Corrupt {
            path: format!("{} local.oplog.rs", self.id),
            detail,
        }
    }

    pub(crate) fn mongo_error(
        &self,
        action: &str,
    ) -> impl FnOnce(mongodb::error::Error) -> DumpError + '_ {
        let action = action.to_string();
        move |source| DumpError::Mongo {
            replica_set: self.id.clone(),
            action,
            source: Box::new(source),
        }
    }

    async fn command(
        &self,
        db: &str,
        command: Document,
        action: &str,
    ) -> Result<Document, DumpError> {
        self.client
            .database(db)
            .run_command(command)
            .await
            .map_err(self.mongo_error(action))
    }

    async fn cursor_command(
        &self,
        db: &str,
        command: Document,
        action: &str,
    ) -> Result<Vec<Document>, DumpError> {
        let cursor = self
            .client
            .database(db)
            .run_cursor_command(command)
            .await
            .map_err(self.mongo_error(action))?;
        cursor.try_collect().await.map_err(self.mongo_error(action))
    }

    /// The timestamp of the newest oplog entry (zero for an empty oplog).
    pub(crate) async fn last_oplog_time(&self) -> Result<OplogTime, DumpError> {
        let newest = self
            .client
            .database("local")
            .collection::<Document>("oplog.rs")
            .find_one(doc! {})
            .sort(doc! {"$natural": -1})
            .await
            .map_err(self.mongo_error("reading the newest oplog entry"))?;
        Ok(
            match newest.as_ref().map(|entry| entry.get_timestamp("ts")) {
                Some(Ok(ts)) => ts.into(),
                _ => OplogTime::ZERO,
            },
        )
    }

    /// Every namespace a full-instance mongodump would take, sorted.
    async fn namespaces(&self) -> Result<Vec<Namespace>, DumpError> {
        let listed = self
            .command(
                "admin",
                doc! {"listDatabases": 1, "nameOnly": true},
                "listDatabases",
            )
            .await?;
        let mut databases: Vec<String> = listed
            .get_array("databases")
            .map(|dbs| {
                dbs.iter()
                    .filter_map(|d| d.as_document()?.get_str("name").ok().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if !databases.iter().any(|d| d == "admin") {
            databases.push("admin".into());
        }
        databases.retain(|d| !SKIPPED_DATABASES.contains(&d.as_str()));
        databases.sort();

        let mut namespaces = Vec::new();
        for db in databases {
            let specs = self
                .cursor_command(
                    &db,
                    doc! {"listCollections": 1},
                    &format!("listCollections on {db}"),
                )
                .await?;
            for spec in specs {
                if let Some(ns) = namespace_of(&db, spec) {
                    namespaces.push(ns);
                }
            }
            if db == "admin" {
                for name in ADMIN_SYSTEM_COLLECTIONS {
                    let present = namespaces
                        .iter()
                        .any(|n| n.db == "admin" && n.name == *name);
                    let has_documents = self
                        .client
                        .database("admin")
                        .collection::<Document>(name)
                        .find_one(doc! {})
                        .await
                        .map_err(self.mongo_error(&format!("reading admin.{name}")))?
                        .is_some();
                    if !present && has_documents {
                        namespaces.push(Namespace {
                            db: "admin".into(),
                            name: name.to_string(),
                            kind: CollectionKind::Collection,
                            options: Document::new(),
                            uuid: None,
                            data_from: Some(name.to_string()),
                        });
                    }
                }
            }
        }
        namespaces.sort_by(|a, b| (&a.db, &a.name).cmp(&(&b.db, &b.name)));
        Ok(namespaces)
    }

    /// Dumps every namespace into `<folder>/cNNNN/`, `concurrency` at a time.
    ///
    /// Each namespace is dumped by a task of its own, so the runtime spreads
    /// their CPU work (BSON, zstd, BLAKE3) over its worker threads; polled
    /// inside one task they would share one thread. The tasks are aborted
    /// when this future is dropped (the first failure ends the backup); the
    /// segment writers they start run on `writers`.
    pub(crate) async fn dump_collections(
        &self,
        store: &BlobStore,
        folder: String,
        options: &DumpOptions,
        progress: &Progress,
        writers: &TaskTracker,
    ) -> Result<Vec<CollectionEntry>, DumpError> {
        let namespaces = self.namespaces().await?;
        // The estimated counts only serve the progress figure, so they are
        // asked for beside the dump, not before it: one round trip per
        // collection, and on some servers a scan, kept off the way to the
        // first document. Aborted with the dump should it fail first.
        let counted: Vec<(String, String)> = namespaces
            .iter()
            .filter_map(|ns| Some((ns.db.clone(), ns.data_from.clone()?)))
            .collect();
        let _estimates = {
            let client = self.client.clone();
            // Reports this replica set done estimating when the task ends,
            // whether its counts are all in or the dump ended first and
            // aborted it.
            let estimating = Estimating(progress.clone());
            AbortOnDropHandle::new(tokio::spawn(async move {
                for (db, collection) in counted {
                    let count = client
                        .database(&db)
                        .collection::<Document>(&collection)
                        .estimated_document_count()
                        .await
                        .unwrap_or(0);
                    estimating.0.expect(count);
                }
            }))
        };
        stream::iter(namespaces.into_iter().enumerate())
            .map(|(n, ns)| {
                let source = self.clone();
                let store = store.clone();
                let folder = format!("{folder}/c{n:04}");
                let options = options.clone();
                let progress = progress.clone();
                let writers = writers.clone();
                let task = tokio::spawn(async move {
                    source
                        .dump_namespace(ns, &store, folder, &options, &progress, &writers)
                        .await
                });
                AbortOnDropHandle::new(task)
            })
            .buffered(options.collection_concurrency.max(1))
            .map(|joined| match joined {
                Ok(result) => result,
                Err(e) => Err(DumpError::TaskFailed {
                    replica_set: self.id.clone(),
                    detail: e.to_string(),
                }),
            })
            .try_collect()
            .await
    }

    async fn dump_namespace(
        &self,
        ns: Namespace,
        store: &BlobStore,
        folder: String,
        options: &DumpOptions,
        progress: &Progress,
        writers: &TaskTracker,
    ) -> Result<CollectionEntry, DumpError> {
        let namespace = format!("{}.{}", ns.db, ns.name);
        let started = Instant::now();
        let indexes = match ns.kind {
            CollectionKind::View => Vec::new(),
            CollectionKind::Collection | CollectionKind::Timeseries => self
                .cursor_command(
                    &ns.db,
                    doc! {"listIndexes": &ns.name},
                    &format!("listIndexes on {namespace}"),
                )
                .await
                .or_else(|e| match &e {
                    // Some servers keep no index catalog for collections
                    // they do not list (admin.system.*) or list time series
                    // indexes only on the buckets.
                    DumpError::Mongo { source, .. } if is_namespace_not_found(source) => {
                        Ok(Vec::new())
                    }
                    _ => Err(e),
                })?,
        };
        let mut sink = options.segment_sink(store, folder, writers)?;
        if let Some(source) = &ns.data_from {
            let mut cursor = self
                .client
                .database(&ns.db)
                .collection::<RawDocumentBuf>(source)
                .find(doc! {})
                .await
                .map_err(self.mongo_error(&format!("reading {namespace}")))?;
            let documents_total = metrics::counter!("mongobak_dump_documents_total");
            let bytes_total = metrics::counter!("mongobak_dump_bytes_total");
            // `advance` and `current` lend each document out of the server's
            // reply, where `try_next` would copy it into an allocation of
            // its own first.
            while cursor
                .advance()
                .await
                .map_err(self.mongo_error(&format!("reading {namespace}")))?
            {
                let bytes = cursor.current().as_bytes();
                sink.push(bytes).await?;
                progress.dumped(bytes.len() as u64);
                documents_total.increment(1);
                bytes_total.increment(bytes.len() as u64);
            }
        }
        let data = sink.finish().await?;
        tracing::info!(
            replica_set = %self.id,
            namespace = %namespace,
            documents = data.documents,
            bytes = data.raw_bytes,
            stored = data.stored_bytes,
            seconds = started.elapsed().as_secs_f64(),
            "collection dumped"
        );
        Ok(CollectionEntry {
            db: ns.db,
            name: ns.name,
            kind: ns.kind,
            options: Bson::Document(ns.options).into_canonical_extjson(),
            uuid: ns.uuid,
            indexes: indexes
                .into_iter()
                .map(|spec| Bson::Document(spec).into_canonical_extjson())
                .collect(),
            data,
        })
    }

    /// Waits until no write on this replica set can be stamped at or before
    /// `end`: its oplog has reached `end` (advanced with `appendOplogNote`
    /// where the server has it), or the local clock is past `end` by the
    /// allowed clock skew.
    pub(crate) async fn wait_until_past(
        &self,
        end: OplogTime,
        options: &DumpOptions,
    ) -> Result<(), DumpError> {
        let deadline = Instant::now() + options.cluster_time_wait;
        let note = doc! {
            "appendOplogNote": 1,
            "maxClusterTime": Timestamp::from(end),
            "data": {"mongobak": "common cluster time of a sharded backup"},
        };
        // Servers without the command (or without the privilege) fall back
        // to the clock rule; the error itself is not a failure.
        if let Err(e) = self.client.database("admin").run_command(note).await {
            tracing::debug!(replica_set = %self.id, error = %e, "appendOplogNote unavailable");
        }
        loop {
            if self.last_oplog_time().await? >= end {
                return Ok(());
            }
            let now = jiff::Timestamp::now().as_second();
            if now > i64::from(end.t) + options.clock_skew_allowance.as_secs() as i64 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(DumpError::ClusterTimeNotReached {
                    replica_set: self.id.clone(),
                    waited_secs: options.cluster_time_wait.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Copies the oplog entries with `start < ts <= end` into `folder`,
    /// checking that the start position is still there (no gap).
    pub(crate) async fn capture_oplog(
        &self,
        end: OplogTime,
        store: &BlobStore,
        folder: String,
        options: &DumpOptions,
        writers: &TaskTracker,
    ) -> Result<SegmentSet, DumpError> {
        let start = self.oplog_start;
        let filter = if start == OplogTime::ZERO {
            doc! {"ts": {"$lte": Timestamp::from(end)}}
        } else {
            doc! {"ts": {"$gte": Timestamp::from(start), "$lte": Timestamp::from(end)}}
        };
        let mut cursor = self
            .client
            .database("local")
            .collection::<RawDocumentBuf>("oplog.rs")
            .find(filter)
            .sort(doc! {"$natural": 1})
            .await
            .map_err(self.mongo_error("reading the oplog"))?;
        let mut sink = options.segment_sink(store, folder, writers)?;
        let mut first = true;
        while cursor
            .advance()
            .await
            .map_err(self.mongo_error("reading the oplog"))?
        {
            let entry = cursor.current();
            let ts: OplogTime = entry
                .get_timestamp("ts")
                .map_err(|e| DumpError::Corrupt {
                    path: format!("{} oplog", self.id),
                    detail: format!("an entry has no timestamp: {e}"),
                })?
                .into();
            if first && start != OplogTime::ZERO {
                first = false;
                if ts != start {
                    return Err(DumpError::OplogRolledOver {
                        replica_set: self.id.clone(),
                    });
                }
                continue;
            }
            first = false;
            sink.push(entry.as_bytes()).await?;
        }
        if first && start != OplogTime::ZERO {
            return Err(DumpError::OplogRolledOver {
                replica_set: self.id.clone(),
            });
        }
        let slice = sink.finish().await?;
        tracing::info!(replica_set = %self.id, entries = slice.documents, "oplog slice captured");
        Ok(slice)
    }
}

fn is_namespace_not_found(error: &mongodb::error::Error) -> bool {
    matches!(&*error.kind, mongodb::error::ErrorKind::Command(c) if c.code == 26)
}

/// The namespace of one `listCollections` entry, or `None` for what a
/// backup leaves out (internal `system.*` collections, time series buckets
/// which come with their time series collection).
fn namespace_of(db: &str, spec: Document) -> Option<Namespace> {
    let name = spec.get_str("name").ok()?.to_string();
    if name.starts_with("system.") {
        let kept = KEPT_SYSTEM_COLLECTIONS.contains(&name.as_str())
            || (db == "admin" && ADMIN_SYSTEM_COLLECTIONS.contains(&name.as_str()));
        if !kept {
            return None;
        }
    }
    let options = spec.get_document("options").cloned().unwrap_or_default();
    let uuid = spec
        .get_document("info")
        .ok()
        .and_then(|info| info.get("uuid"))
        .and_then(|uuid| match uuid {
            Bson::Binary(binary) => Some(hex::encode(&binary.bytes)),
            _ => None,
        });
    let (kind, data_from) = match spec.get_str("type").unwrap_or("collection") {
        "view" => (CollectionKind::View, None),
        "timeseries" => (
            CollectionKind::Timeseries,
            Some(format!("system.buckets.{name}")),
        ),
        _ => (CollectionKind::Collection, Some(name.clone())),
    };
    Some(Namespace {
        db: db.to_string(),
        name,
        kind,
        options,
        uuid,
        data_from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_follow_mongodump() {
        let spec = |name: &str, kind: &str| doc! {"name": name, "type": kind, "options": {}};
        assert!(namespace_of("shop", spec("system.profile", "collection")).is_none());
        assert!(namespace_of("shop", spec("system.buckets.m", "collection")).is_none());
        assert!(namespace_of("shop", spec("system.views", "collection")).is_none());
        assert!(namespace_of("shop", spec("system.js", "collection")).is_some());
        assert!(namespace_of("admin", spec("system.users", "collection")).is_some());
        let view = namespace_of("shop", spec("v", "view")).unwrap();
        assert_eq!((view.kind, view.data_from), (CollectionKind::View, None));
        let ts = namespace_of("shop", spec("m", "timeseries")).unwrap();
        assert_eq!(ts.data_from.as_deref(), Some("system.buckets.m"));
    }
}

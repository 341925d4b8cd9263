//! Logical backups of MongoDB deployments into blob storage.
//!
//! [`run_backup`] takes a registered instance (one connection URI per replica
//! set / shard) and writes a consistent logical backup under a prefix of a
//! [`BlobStore`], in the stored format of [`stored`] (whose
//! [`format`](mod@format) and [`segment`] modules are also here, at the
//! root):
//!
//! 1. connect to every replica set and record its oplog position before the
//!    first read (the `replica_set` module);
//! 2. dump every namespace a full-instance `mongodump` would (all databases
//!    but `local` and `config`; users, roles and `admin.system.version`;
//!    view definitions; collection options, indexes and UUIDs), collections
//!    in parallel, documents streamed into zstd segments ([`segment`]);
//! 3. pick the end time: the replica set's last oplog entry, or, for a
//!    sharded cluster, one common cluster time for all shards (the method
//!    of Percona Backup for MongoDB), waiting until each shard has passed it;
//! 4. capture each oplog slice from the start position to the end time, so
//!    that replaying it over the documents gives the state at the end time;
//! 5. write the manifests, the backup's own last: it is the commit point.
//!
//! On any failure everything written under the prefix is deleted.
//!
//! [`stored`] reads a backup back: its manifests, its segments, and
//! [`stored::export_archive`], which turns one replica set's backup into
//! a mongodump archive.
//!
//! [`tail`] follows a replica set's oplog after a saved position, for
//! continuous oplog backup.

pub mod probe;
mod replica_set;
pub mod stored;
pub mod tail;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::try_join_all;
use mongobak_blob::{BlobError, BlobStore};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::replica_set::ReplicaSetSource;
use crate::stored::format::{
    BackupManifest, OplogTime, ReplicaSetEntry, ReplicaSetManifest, FORMAT, MANIFEST,
};
use crate::stored::segment::SegmentSink;

pub use stored::{format, read_manifests, segment, Compression, SegmentReader};

/// Why a backup failed.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The replica set could not be reached or refused the credentials.
    #[error("cannot connect to replica set {replica_set}: {source}")]
    Connect {
        /// `<instance>_<n>`.
        replica_set: String,
        /// The driver's error.
        source: Box<mongodb::error::Error>,
    },
    /// The server refused the credentials of the URI.
    #[error("authentication to replica set {replica_set} failed: check the user, password and authSource in its URI")]
    AuthenticationFailed {
        /// `<instance>_<n>`.
        replica_set: String,
    },
    /// The server is not a replica set member, so it has no oplog.
    #[error("{replica_set} is not a replica set member: a consistent backup needs the oplog")]
    NotReplicaSet {
        /// `<instance>_<n>`.
        replica_set: String,
    },
    /// A command or read failed during the backup.
    #[error("replica set {replica_set}: {action} failed: {source}")]
    Mongo {
        /// `<instance>_<n>`.
        replica_set: String,
        /// What was being done.
        action: String,
        /// The driver's error.
        source: Box<mongodb::error::Error>,
    },
    /// A server gave no answer within the time allowed.
    #[error("replica set {replica_set}: {action} got no answer within {waited_secs} s")]
    TimedOut {
        /// `<instance>_<n>`, or `mongos`.
        replica_set: String,
        /// What was being done.
        action: String,
        /// How long we waited.
        waited_secs: u64,
    },
    /// The oplog lost the start position while the backup ran.
    #[error(
        "replica set {replica_set}: the oplog no longer holds the backup's start position; \
         it is too small for a backup of this duration"
    )]
    OplogRolledOver {
        /// `<instance>_<n>`.
        replica_set: String,
    },
    /// A shard's oplog did not reach the common cluster time.
    #[error("shard {replica_set} did not reach the common cluster time within {waited_secs} s")]
    ClusterTimeNotReached {
        /// `<instance>_<n>`.
        replica_set: String,
        /// How long we waited.
        waited_secs: u64,
    },
    /// Blob storage failed.
    #[error(transparent)]
    Storage(#[from] BlobError),
    /// zstd failed.
    #[error("compression failed: {0}")]
    Compression(std::io::Error),
    /// A collection's dump task panicked or was cancelled.
    #[error("replica set {replica_set}: the dump of a collection ended abnormally: {detail}")]
    TaskFailed {
        /// `<instance>_<n>`.
        replica_set: String,
        /// What the runtime reported.
        detail: String,
    },
    /// The task storing a collection's segments panicked or was cancelled.
    #[error("the writer of the segments under {folder} ended abnormally: {detail}")]
    WriterFailed {
        /// Where the segments go.
        folder: String,
        /// What the runtime reported.
        detail: String,
    },
    /// The backup was given up (the service is shutting down).
    #[error("stopped: the service shut down while the backup ran")]
    Stopped,
    /// Stored data does not match its manifest.
    #[error("stored data at {path} is damaged: {detail}")]
    Corrupt {
        /// The object.
        path: String,
        /// What is wrong.
        detail: String,
    },
}

impl DumpError {
    /// A failure to connect to `replica_set`: refused credentials, or any
    /// other reason the server could not be reached.
    pub(crate) fn connecting(replica_set: &str, source: mongodb::error::Error) -> Self {
        match *source.kind {
            mongodb::error::ErrorKind::Authentication { .. } => DumpError::AuthenticationFailed {
                replica_set: replica_set.to_string(),
            },
            _ => DumpError::Connect {
                replica_set: replica_set.to_string(),
                source: Box::new(source),
            },
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            DumpError::Storage(e) => e.is_transient(),
            DumpError::Connect { .. }
            | DumpError::Mongo { .. }
            | DumpError::TimedOut { .. }
            | DumpError::ClusterTimeNotReached { .. } => true,
            DumpError::NotReplicaSet { .. }
            | DumpError::AuthenticationFailed { .. }
            | DumpError::OplogRolledOver { .. }
            | DumpError::Compression(_)
            | DumpError::TaskFailed { .. }
            | DumpError::Stopped
            | DumpError::WriterFailed { .. }
            | DumpError::Corrupt { .. } => false,
        }
    }
}

/// Tuning of a backup.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    /// Collections dumped at once within one replica set.
    pub collection_concurrency: usize,
    /// Uncompressed BSON bytes per segment.
    pub segment_bytes: u64,
    /// How segments are stored.
    pub compression: Compression,
    /// How long a shard may take to reach the common cluster time.
    pub cluster_time_wait: Duration,
    /// Largest clock difference assumed between shards whose oplog cannot be
    /// advanced on demand (no `appendOplogNote`): once the local clock is
    /// this far past the common time, no later write can be stamped before it.
    pub clock_skew_allowance: Duration,
}

impl Default for DumpOptions {
    fn default() -> Self {
        DumpOptions {
            collection_concurrency: 4,
            segment_bytes: 256 << 20,
            compression: Compression::Zstd(1),
            cluster_time_wait: Duration::from_secs(60),
            clock_skew_allowance: Duration::from_secs(2),
        }
    }
}

impl DumpOptions {
    /// A sink that stores segments under `folder` as these options say.
    pub(crate) fn segment_sink(
        &self,
        store: &BlobStore,
        folder: String,
        writers: &TaskTracker,
    ) -> Result<SegmentSink, DumpError> {
        SegmentSink::new(
            store.clone(),
            folder,
            self.segment_bytes,
            self.compression,
            writers,
        )
    }
}

/// What to back up.
#[derive(Debug, Clone)]
pub struct BackupSource {
    /// The instance ID.
    pub instance_id: String,
    /// Cut every replica set at one common cluster time.
    pub sharded: bool,
    /// `(replica set id, connection URI)`, in order.
    pub replica_sets: Vec<(String, String)>,
}

/// Progress of a running backup, readable from other tasks. Clones share
/// the same counters.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    /// Replica sets whose estimated counts are not all in yet.
    estimating: AtomicU64,
    expected_documents: AtomicU64,
    documents: AtomicU64,
    bytes: AtomicU64,
}

impl Progress {
    /// Percent done (0-99 while running), by documents against the
    /// servers' estimated counts; 0 until every replica set's estimates
    /// are in.
    pub fn percent(&self) -> u64 {
        if self.counters.estimating.load(Ordering::Relaxed) > 0 {
            return 0;
        }
        let expected = self
            .counters
            .expected_documents
            .load(Ordering::Relaxed)
            .max(1);
        (self.counters.documents.load(Ordering::Relaxed) * 100 / expected).min(99)
    }

    /// Documents the servers' estimates add up to so far.
    pub fn expected_documents(&self) -> u64 {
        self.counters.expected_documents.load(Ordering::Relaxed)
    }

    /// Documents dumped so far.
    pub fn documents(&self) -> u64 {
        self.counters.documents.load(Ordering::Relaxed)
    }

    /// BSON bytes dumped so far.
    pub fn bytes(&self) -> u64 {
        self.counters.bytes.load(Ordering::Relaxed)
    }

    /// A backup of `replica_sets` begins: each estimates its documents.
    fn estimating(&self, replica_sets: usize) {
        self.counters
            .estimating
            .store(replica_sets as u64, Ordering::Relaxed);
    }

    /// One replica set has all its estimates in (or stopped estimating).
    pub(crate) fn estimated(&self) {
        let _ = self
            .counters
            .estimating
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    pub(crate) fn expect(&self, documents: u64) {
        self.counters
            .expected_documents
            .fetch_add(documents, Ordering::Relaxed);
    }

    pub(crate) fn dumped(&self, bytes: u64) {
        self.counters.documents.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Backs up `source` under `prefix` (no trailing `/`) in `store` and returns
/// the manifest, which is the last thing written. On failure nothing is
/// left under the prefix.
pub async fn run_backup(
    source: &BackupSource,
    store: &BlobStore,
    prefix: &str,
    options: &DumpOptions,
    progress: &Progress,
) -> Result<BackupManifest, DumpError> {
    let never = CancellationToken::new();
    run_backup_until(source, store, prefix, options, progress, &never).await
}

/// [`run_backup`], given up with [`DumpError::Stopped`] when `stop` is
/// cancelled; what was written is deleted then too, once every task that
/// was writing has ended.
pub async fn run_backup_until(
    source: &BackupSource,
    store: &BlobStore,
    prefix: &str,
    options: &DumpOptions,
    progress: &Progress,
    stop: &CancellationToken,
) -> Result<BackupManifest, DumpError> {
    let writers = TaskTracker::new();
    let result = tokio::select! {
        result = backup(source, store, prefix, options, progress, &writers) => result,
        // Dropping the backup aborts its collection tasks, which closes the
        // writers' queues: they end after the blocks already queued.
        _ = stop.cancelled() => Err(DumpError::Stopped),
    };
    if result.is_err() {
        // A segment writer still storing its queue could add an object
        // after the deletion: wait until every one has ended.
        writers.close();
        writers.wait().await;
        if let Err(e) = store.delete_prefix(&format!("{prefix}/")).await {
            tracing::error!(prefix, error = %e, "cannot delete the data of a failed backup");
        }
    }
    result
}

async fn backup(
    source: &BackupSource,
    store: &BlobStore,
    prefix: &str,
    options: &DumpOptions,
    progress: &Progress,
    writers: &TaskTracker,
) -> Result<BackupManifest, DumpError> {
    let started_at = jiff::Timestamp::now().as_second();
    progress.estimating(source.replica_sets.len());
    let sources = try_join_all(
        source
            .replica_sets
            .iter()
            .map(|(id, uri)| ReplicaSetSource::connect(id, uri)),
    )
    .await?;

    // Documents of every replica set, in parallel.
    let collections = try_join_all(sources.iter().map(|rs| {
        let folder = format!("{prefix}/{}", rs.id);
        rs.dump_collections(store, folder, options, progress, writers)
    }))
    .await?;

    // The end time of each oplog slice.
    let local_ends = try_join_all(sources.iter().map(|rs| rs.last_oplog_time())).await?;
    let ends: Vec<OplogTime> = if source.sharded {
        let common = local_ends.iter().copied().max().unwrap_or(OplogTime::ZERO);
        try_join_all(sources.iter().map(|rs| rs.wait_until_past(common, options))).await?;
        vec![common; sources.len()]
    } else {
        local_ends
    };

    let oplogs = try_join_all(sources.iter().zip(&ends).map(|(rs, end)| {
        let folder = format!("{prefix}/{}/oplog", rs.id);
        rs.capture_oplog(*end, store, folder, options, writers)
    }))
    .await?;

    let mut entries = Vec::with_capacity(sources.len());
    for ((rs, collections), (oplog, end)) in sources
        .iter()
        .zip(collections)
        .zip(oplogs.into_iter().zip(ends))
    {
        let manifest = ReplicaSetManifest {
            format: FORMAT.to_string(),
            replica_set_id: rs.id.clone(),
            set_name: rs.set_name.clone(),
            server_version: rs.server_version.clone(),
            oplog_start: rs.oplog_start,
            oplog_end: end,
            collections,
            oplog,
        };
        let stored_bytes = manifest
            .collections
            .iter()
            .map(|c| c.data.stored_bytes)
            .sum::<u64>()
            + manifest.oplog.stored_bytes;
        let raw_bytes = manifest
            .collections
            .iter()
            .map(|c| c.data.raw_bytes)
            .sum::<u64>()
            + manifest.oplog.raw_bytes;
        let path = format!("{prefix}/{}/{MANIFEST}", rs.id);
        let bytes = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
        let manifest_sha256 = hex::encode(Sha256::digest(&bytes));
        store.put(&path, bytes).await?;
        entries.push(ReplicaSetEntry {
            replica_set_id: rs.id.clone(),
            manifest: path,
            manifest_sha256,
            stored_bytes,
            raw_bytes,
            oplog_stored_bytes: manifest.oplog.stored_bytes,
            server_version: manifest.server_version.clone(),
            oplog_end: Some(manifest.oplog_end),
        });
    }
    let manifest = BackupManifest {
        format: FORMAT.to_string(),
        instance_id: source.instance_id.clone(),
        sharded: source.sharded,
        started_at,
        finished_at: jiff::Timestamp::now().as_second(),
        replica_sets: entries,
    };
    let bytes = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    store.put(&format!("{prefix}/{MANIFEST}"), bytes).await?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_zero_until_every_replica_set_has_estimated() {
        let progress = Progress::default();
        progress.estimating(2);
        progress.expect(100);
        for _ in 0..50 {
            progress.dumped(10);
        }
        assert_eq!(progress.percent(), 0, "one replica set still estimating");
        progress.estimated();
        assert_eq!(progress.percent(), 0, "one replica set still estimating");
        progress.estimated();
        assert_eq!(progress.percent(), 50);
        progress.estimated();
        assert_eq!(progress.percent(), 50, "an extra report changes nothing");
        for _ in 0..60 {
            progress.dumped(10);
        }
        assert_eq!(progress.percent(), 99, "never 100 while running");
    }
}

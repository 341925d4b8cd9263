//! The stored format of a backup (documented for operators in
//! `docs/backup-format.md`).
//!
//! ```text
//! <backup prefix>/
//!   <replica set id>/
//!     c0000/s00000.bson.zst     documents of collection 0, segment 0
//!     c0000/s00001.bson.zst
//!     c0001/...
//!     oplog/s00000.bson.zst     the oplog slice of the backup
//!     manifest.json             ReplicaSetManifest
//!   manifest.json               BackupManifest: written last, the commit point
//! ```
//!
//! A segment is a zstd frame of concatenated BSON documents, exactly as the
//! server returned them. Collections are numbered, not named, in paths, so
//! any namespace (unicode, dots, `$`) is safe on every store. Options and
//! index specifications are kept as canonical Extended JSON, which keeps
//! every BSON type and is what mongodump's metadata files hold.

use mongodb::bson::Timestamp;
use serde::{Deserialize, Serialize};

/// The format name written into every manifest.
pub const FORMAT: &str = "mongobak-backup/1";

/// Name of a manifest file inside its folder.
pub const MANIFEST: &str = "manifest.json";

/// The manifest of a whole backup; its presence means the backup is complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupManifest {
    /// [`FORMAT`].
    pub format: String,
    /// The instance backed up.
    pub instance_id: String,
    /// Whether the instance is a sharded cluster (its replica sets were cut
    /// at one common cluster time).
    pub sharded: bool,
    /// Start of the backup, Unix seconds.
    pub started_at: i64,
    /// End of the backup, Unix seconds.
    pub finished_at: i64,
    /// One entry per replica set / shard, in order.
    pub replica_sets: Vec<ReplicaSetEntry>,
}

impl BackupManifest {
    /// Stored bytes of every segment of every replica set.
    pub fn stored_bytes(&self) -> u64 {
        self.replica_sets.iter().map(|r| r.stored_bytes).sum()
    }

    /// Stored bytes of every replica set's oplog slice.
    pub fn oplog_stored_bytes(&self) -> u64 {
        self.replica_sets.iter().map(|r| r.oplog_stored_bytes).sum()
    }
}

/// Where a replica set's manifest is, and what it adds up to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaSetEntry {
    /// `<instance id>_<n>`.
    pub replica_set_id: String,
    /// Path of its [`ReplicaSetManifest`], relative to the store root.
    pub manifest: String,
    /// SHA-256 of the manifest file, hex.
    pub manifest_sha256: String,
    /// Stored (compressed) bytes of its segments.
    pub stored_bytes: u64,
    /// Uncompressed BSON bytes of its documents and oplog entries.
    pub raw_bytes: u64,
    /// Stored bytes of its oplog slice (part of `stored_bytes`).
    #[serde(default)]
    pub oplog_stored_bytes: u64,
    /// The server's version, as in its manifest; empty in manifests
    /// written before it was recorded here.
    #[serde(default)]
    pub server_version: String,
    /// Where its oplog slice ends, as in its manifest: the replica set as
    /// restored is its state at this position. Absent in manifests
    /// written before it was recorded here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oplog_end: Option<OplogTime>,
}

/// Everything about one replica set's part of a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaSetManifest {
    /// [`FORMAT`].
    pub format: String,
    /// `<instance id>_<n>`.
    pub replica_set_id: String,
    /// The replica set name the server reported (`setName`).
    pub set_name: String,
    /// The server's version (`buildInfo.version`).
    pub server_version: String,
    /// Oplog position recorded before the first read.
    pub oplog_start: OplogTime,
    /// Oplog position the slice runs to: replaying the slice over the
    /// documents gives the state at this time.
    pub oplog_end: OplogTime,
    /// Databases, collections and views, sorted by namespace.
    pub collections: Vec<CollectionEntry>,
    /// The oplog entries with `oplog_start < ts <= oplog_end`.
    pub oplog: SegmentSet,
}

/// An oplog timestamp, `(seconds, increment)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OplogTime {
    /// Seconds since the Unix epoch.
    pub t: u32,
    /// Ordinal within the second.
    pub i: u32,
}

impl OplogTime {
    /// Before every entry.
    pub const ZERO: OplogTime = OplogTime { t: 0, i: 0 };
}

impl From<Timestamp> for OplogTime {
    fn from(ts: Timestamp) -> Self {
        OplogTime {
            t: ts.time,
            i: ts.increment,
        }
    }
}

impl From<OplogTime> for Timestamp {
    fn from(ts: OplogTime) -> Self {
        Timestamp {
            time: ts.t,
            increment: ts.i,
        }
    }
}

/// What kind of namespace a collection entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CollectionKind {
    /// An ordinary (possibly capped, clustered) collection.
    Collection,
    /// A view: definition only, no documents.
    View,
    /// A time series collection; its documents are the buckets of
    /// `system.buckets.<name>`.
    Timeseries,
}

/// One namespace of a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionEntry {
    /// Database name.
    pub db: String,
    /// Collection name.
    pub name: String,
    /// Collection, view or time series.
    pub kind: CollectionKind,
    /// `listCollections` options (capped, validator, collation, clustered,
    /// timeseries, viewOn/pipeline...), canonical Extended JSON.
    pub options: serde_json::Value,
    /// The collection UUID, 32 hex digits, when the server reports one.
    pub uuid: Option<String>,
    /// `listIndexes` specifications, canonical Extended JSON.
    pub indexes: Vec<serde_json::Value>,
    /// The documents.
    pub data: SegmentSet,
}

impl CollectionEntry {
    /// `db.name`.
    pub fn namespace(&self) -> String {
        format!("{}.{}", self.db, self.name)
    }
}

/// A stream of BSON documents stored as one or more segments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentSet {
    /// Documents in all segments.
    pub documents: u64,
    /// Uncompressed BSON bytes in all segments.
    pub raw_bytes: u64,
    /// Compressed bytes in all segments.
    pub stored_bytes: u64,
    /// The segments, in order.
    pub segments: Vec<SegmentInfo>,
}

/// One stored segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentInfo {
    /// Path relative to the store root.
    pub path: String,
    /// Documents in it.
    pub documents: u64,
    /// Uncompressed BSON bytes.
    pub raw_bytes: u64,
    /// Stored (compressed) bytes.
    pub stored_bytes: u64,
    /// BLAKE3 of the stored bytes, hex (what `b3sum` prints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// SHA-256 of the stored bytes, hex: the digest of segments written
    /// before BLAKE3, which hashes about four times faster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

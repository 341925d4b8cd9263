//! The stored backup format, `mongobak-backup/1` (docs/backup-format.md):
//! what a backup is once written, and everything that reads it back.
//!
//! * [`format`](mod@format): the layout and the manifests of a backup and
//!   of each replica set.
//! * [`segment`]: runs of BSON documents, zstd-compressed or not; the
//!   dump engine writes them, [`SegmentReader`] reads them back, checked.
//! * [`read_manifests`]: a backup's manifests, each checked against the
//!   digest recorded for it.
//! * [`export_archive`]: one replica set's backup as a mongodump archive
//!   (optionally gzipped, hashed as it is written) into a blob, the file
//!   a download task publishes.
//! * [`slice`](mod@slice): the objects of continuous oplog backup, one per sealed
//!   stretch of a replica set's oplog.

mod export;
pub mod format;
pub mod segment;
pub mod slice;

use mongobak_blob::BlobStore;
use sha2::{Digest, Sha256};

use crate::DumpError;
use format::{BackupManifest, ReplicaSetManifest, MANIFEST};

pub use export::{
    export_archive, ExportError, ExportOptions, ExportProgress, Exported, DEFAULT_GZIP_LEVEL,
};
pub use segment::{Compression, SegmentReader};

/// Reads a backup's manifest and the manifests of its replica sets,
/// checking each against the digest recorded for it.
pub async fn read_manifests(
    store: &BlobStore,
    prefix: &str,
) -> Result<(BackupManifest, Vec<ReplicaSetManifest>), DumpError> {
    let path = format!("{prefix}/{MANIFEST}");
    let top: BackupManifest = parse_json(&path, &store.get(&path).await?)?;
    let mut sets = Vec::with_capacity(top.replica_sets.len());
    for entry in &top.replica_sets {
        let bytes = store.get(&entry.manifest).await?;
        if hex::encode(Sha256::digest(&bytes)) != entry.manifest_sha256 {
            return Err(DumpError::Corrupt {
                path: entry.manifest.clone(),
                detail: "its SHA-256 does not match the backup manifest".into(),
            });
        }
        sets.push(parse_json(&entry.manifest, &bytes)?);
    }
    Ok((top, sets))
}

fn parse_json<T: serde::de::DeserializeOwned>(path: &str, bytes: &[u8]) -> Result<T, DumpError> {
    serde_json::from_slice(bytes).map_err(|e| DumpError::Corrupt {
        path: path.to_string(),
        detail: e.to_string(),
    })
}

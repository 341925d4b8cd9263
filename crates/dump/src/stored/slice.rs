//! Oplog slices of continuous oplog backup (docs/backup-format.md, "Oplog
//! slices"): one object per sealed stretch of a replica set's oplog, the
//! entries back to back as one zstd frame, named by the positions it
//! covers, with its SHA-256 kept in the catalog.
//!
//! A slice is small by construction (a tailer seals every few seconds, and
//! at a byte cap under load), so it is compressed and stored in one piece,
//! and an object appears whole or not at all. [`read_slice`] streams one
//! back through the segment reader, so a damaged object is refused the same
//! way a damaged backup segment is.

use mongobak_blob::BlobStore;
use sha2::{Digest, Sha256};

use super::format::{OplogTime, SegmentInfo, SegmentSet};
use super::segment::SegmentReader;
use crate::tail::OplogEntry;
use crate::DumpError;

/// zstd level of slices: the fastest of the usual levels, since a tailer
/// must keep up with the source.
const SLICE_ZSTD_LEVEL: i32 = 1;

/// Where a slice of `replica_set_id` holding the entries after `after` up
/// to `last` is stored: `oplog/<instance>/<replica set>/<after>-<last>.bson.zst`,
/// each position as `<seconds>.<increment>`, zero-padded so that names
/// sort as positions do.
pub fn slice_path(
    instance_id: &str,
    replica_set_id: &str,
    after: OplogTime,
    last: OplogTime,
) -> String {
    format!(
        "oplog/{instance_id}/{replica_set_id}/{:010}.{:010}-{:010}.{:010}.bson.zst",
        after.t, after.i, last.t, last.i
    )
}

/// What [`write_slice`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenSlice {
    /// Entries in the object.
    pub entries: u64,
    /// Their BSON bytes.
    pub raw_bytes: u64,
    /// The object's bytes.
    pub stored_bytes: u64,
    /// SHA-256 of the object, hex.
    pub sha256: String,
}

/// Compresses `entries` into one object at `path`, which appears whole
/// when this returns.
pub async fn write_slice<'a>(
    store: &BlobStore,
    path: &str,
    entries: impl IntoIterator<Item = &'a OplogEntry>,
) -> Result<WrittenSlice, DumpError> {
    let mut raw = Vec::new();
    let mut count = 0u64;
    for entry in entries {
        raw.extend_from_slice(entry.raw.as_bytes());
        count += 1;
    }
    let raw_bytes = raw.len() as u64;
    let stored = tokio::task::spawn_blocking(move || zstd::bulk::compress(&raw, SLICE_ZSTD_LEVEL))
        .await
        .map_err(|e| DumpError::WriterFailed {
            folder: path.to_string(),
            detail: e.to_string(),
        })?
        .map_err(DumpError::Compression)?;
    let sha256 = hex::encode(Sha256::digest(&stored));
    let stored_bytes = stored.len() as u64;
    store.put(path, stored).await?;
    Ok(WrittenSlice {
        entries: count,
        raw_bytes,
        stored_bytes,
        sha256,
    })
}

/// Reads the entries of a slice back, checking its size, digest and count.
pub fn read_slice(store: BlobStore, path: &str, written: &WrittenSlice) -> SegmentReader {
    let set = SegmentSet {
        documents: written.entries,
        raw_bytes: written.raw_bytes,
        stored_bytes: written.stored_bytes,
        segments: vec![SegmentInfo {
            path: path.to_string(),
            documents: written.entries,
            raw_bytes: written.raw_bytes,
            stored_bytes: written.stored_bytes,
            blake3: None,
            sha256: Some(written.sha256.clone()),
        }],
    };
    SegmentReader::new(store, &set)
}

//! A replica set's stored backup exported as a mongodump archive, the file
//! `mongorestore --archive [--gzip]` reads: users, roles and the auth
//! schema first (restore reads them before any collection), the other
//! namespaces in manifest order with their metadata, the oplog slice last.
//!
//! The archive is written on a blocking thread: documents stream one at a
//! time out of their segments, through the archive writer and, optionally,
//! parallel gzip, and are hashed (SHA-256) on their way into a blob writer,
//! which stores them in chunks of `UPLOAD_CHUNK`. So memory stays bounded
//! by a few chunks whatever the size of the backup. The object appears
//! only when the writer closes; any failure abandons it.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use mongobak_archive::{
    metadata_json, ArchiveHeader, ArchiveWriter, Checksum, GzipWriter, HashingWriter,
    MetadataError, Namespace, NamespaceKind, NamespaceMeta, WriteError,
};
use mongobak_blob::{BlobError, BlobStore, BlobWriter};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use super::format::{CollectionEntry, CollectionKind, ReplicaSetManifest, SegmentSet};
use super::segment::SegmentReader;
use crate::DumpError;

/// Archive bytes gathered before a write to storage.
const UPLOAD_CHUNK: usize = 4 << 20;
/// The tool version written into archive headers.
const TOOL_VERSION: &str = concat!("mongobak-", env!("CARGO_PKG_VERSION"));

/// The gzip level of mongodump, and of an export by default.
pub const DEFAULT_GZIP_LEVEL: u32 = mongobak_archive::DEFAULT_LEVEL;

/// How an archive is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// gzip level (1 to 9); `None` writes the archive uncompressed.
    pub gzip_level: Option<u32>,
    /// Threads compressing gzip members (0: one per core).
    pub gzip_threads: usize,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            gzip_level: Some(DEFAULT_GZIP_LEVEL),
            gzip_threads: 0,
        }
    }
}

/// Progress of an export, readable from other tasks. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct ExportProgress {
    percent: Arc<AtomicU64>,
}

impl ExportProgress {
    /// Percent of the documents written (0-99 until the export returns).
    pub fn percent(&self) -> u64 {
        self.percent.load(Ordering::Relaxed)
    }
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// Bytes of the file, as stored.
    pub bytes: u64,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The stop signal was given.
    #[error("the export was stopped")]
    Stopped,
    /// The stored backup could not be read, or is damaged.
    #[error(transparent)]
    Read(#[from] DumpError),
    /// A namespace's stored options or indexes make no metadata.
    #[error("metadata of {namespace}: {source}")]
    Metadata {
        /// `<db>.<collection>`.
        namespace: String,
        /// What is wrong.
        source: MetadataError,
    },
    /// The stored backup breaks a rule of the archive format.
    #[error("the backup cannot be written as an archive: {0}")]
    Archive(WriteError),
    /// Writing the archive's bytes failed.
    #[error("writing the file: {0}")]
    Write(io::Error),
    /// Storing the file failed (its last write or its close).
    #[error(transparent)]
    Storage(#[from] BlobError),
    /// The thread writing the archive ended abnormally.
    #[error("the packaging thread failed: {0}")]
    Thread(String),
}

impl ExportError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ExportError::Read(e) => e.is_transient(),
            ExportError::Write(_) | ExportError::Storage(_) | ExportError::Thread(_) => true,
            ExportError::Stopped | ExportError::Metadata { .. } | ExportError::Archive(_) => false,
        }
    }
}

/// Exports the backup of one replica set, described by `manifest`, from
/// `store` as a mongodump archive into `into`, which is closed (the file
/// published) on success and abandoned on any failure. `progress` follows
/// the documents written; cancelling `stop` ends the export with
/// [`ExportError::Stopped`] at its next write to storage.
pub async fn export_archive(
    store: &BlobStore,
    manifest: ReplicaSetManifest,
    into: BlobWriter,
    options: &ExportOptions,
    progress: &ExportProgress,
    stop: &CancellationToken,
) -> Result<Exported, ExportError> {
    let store = store.clone();
    let options = options.clone();
    let progress = progress.clone();
    let stop = stop.clone();
    let handle = Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut sink = BlobSink {
            handle: &handle,
            writer: into,
            buffer: Vec::with_capacity(UPLOAD_CHUNK),
            stop: &stop,
        };
        let written = write_archive(
            &handle, &store, &manifest, &mut sink, &options, &progress, &stop,
        );
        sink.publish(written)
    })
    .await
    .map_err(|e| ExportError::Thread(e.to_string()))?
}

/// A `Write` that hands chunks of `UPLOAD_CHUNK` to an async blob writer.
struct BlobSink<'a> {
    handle: &'a Handle,
    writer: BlobWriter,
    buffer: Vec<u8>,
    stop: &'a CancellationToken,
}

impl BlobSink<'_> {
    fn push(&mut self) -> io::Result<()> {
        if self.stop.is_cancelled() {
            return Err(io::Error::other("packaging stopped"));
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(UPLOAD_CHUNK),
        ));
        self.handle
            .block_on(self.writer.write(chunk))
            .map_err(io::Error::other)
    }

    /// Stores the rest and closes the object after a whole archive, or
    /// abandons it after a failure (every failure, the last write and the
    /// close included), so that no temporary object outlives the export.
    fn publish(mut self, written: Result<Checksum, ExportError>) -> Result<Exported, ExportError> {
        let result = self.close(written);
        if result.is_err() {
            if let Err(e) = self.handle.block_on(self.writer.abort()) {
                tracing::warn!(error = %e, "cannot abandon a partial archive");
            }
        }
        result
    }

    fn close(&mut self, written: Result<Checksum, ExportError>) -> Result<Exported, ExportError> {
        let checksum = written?;
        if !self.buffer.is_empty() {
            let tail = Bytes::from(std::mem::take(&mut self.buffer));
            self.handle.block_on(self.writer.write(tail))?;
        }
        self.handle.block_on(self.writer.close())?;
        Ok(Exported {
            bytes: checksum.bytes,
            sha256: checksum.sha256_hex(),
        })
    }
}

impl Write for BlobSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= UPLOAD_CHUNK {
            self.push()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The archive's bytes on their way to the hash: gzipped or not.
enum Compressed<W: Write> {
    Gzip(Box<GzipWriter<W>>),
    Plain(W),
}

impl<W: Write> Compressed<W> {
    fn finish(self) -> io::Result<W> {
        match self {
            Compressed::Gzip(gzip) => (*gzip).finish(),
            Compressed::Plain(inner) => Ok(inner),
        }
    }
}

impl<W: Write> Write for Compressed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressed::Gzip(gzip) => gzip.write(buf),
            Compressed::Plain(inner) => inner.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressed::Gzip(gzip) => gzip.flush(),
            Compressed::Plain(inner) => inner.flush(),
        }
    }
}

/// The blocking part: archive, gzip and hash into `sink`. Returns the
/// size and SHA-256 of what reached it.
fn write_archive(
    handle: &Handle,
    store: &BlobStore,
    manifest: &ReplicaSetManifest,
    sink: &mut BlobSink<'_>,
    options: &ExportOptions,
    progress: &ExportProgress,
    stop: &CancellationToken,
) -> Result<Checksum, ExportError> {
    let io_failure = |e: io::Error| {
        if stop.is_cancelled() {
            ExportError::Stopped
        } else {
            ExportError::Write(e)
        }
    };
    let archive_failure = |e: WriteError| match e {
        WriteError::Io { source, .. } => io_failure(source),
        other => ExportError::Archive(other),
    };
    let hashing = HashingWriter::new(sink);
    let compressed = match options.gzip_level {
        Some(level) => Compressed::Gzip(Box::new(GzipWriter::parallel(
            hashing,
            level,
            options.gzip_threads,
        ))),
        None => Compressed::Plain(hashing),
    };
    let header = ArchiveHeader {
        concurrent_collections: 1,
        server_version: manifest.server_version.clone(),
        tool_version: TOOL_VERSION.into(),
    };
    let mut archive = ArchiveWriter::new(compressed, header).map_err(archive_failure)?;

    // Users, roles and the auth schema first, then the rest in manifest
    // order; the oplog last.
    let mut ordered: Vec<&CollectionEntry> =
        manifest.collections.iter().filter(|c| is_auth(c)).collect();
    ordered.extend(manifest.collections.iter().filter(|c| !is_auth(c)));
    let mut metas = Vec::with_capacity(ordered.len());
    for collection in &ordered {
        let kind = match collection.kind {
            CollectionKind::Collection => NamespaceKind::Collection,
            CollectionKind::View => NamespaceKind::View,
            CollectionKind::Timeseries => NamespaceKind::Timeseries,
        };
        let metadata = metadata_json(
            &collection.name,
            kind,
            &collection.options,
            &collection.indexes,
            collection.uuid.as_deref(),
        )
        .map_err(|source| ExportError::Metadata {
            namespace: collection.namespace(),
            source,
        })?;
        let meta = NamespaceMeta {
            db: collection.db.clone(),
            collection: collection.name.clone(),
            metadata_json: metadata,
            kind,
        };
        archive
            .add_namespace(meta.clone())
            .map_err(archive_failure)?;
        metas.push(meta);
    }
    archive
        .add_namespace(NamespaceMeta::oplog())
        .map_err(archive_failure)?;

    let total = ordered.iter().map(|c| c.data.documents).sum::<u64>() + manifest.oplog.documents;
    let mut done = 0u64;
    let mut copies: Vec<(Namespace, &SegmentSet)> = ordered
        .iter()
        .zip(&metas)
        .map(|(collection, meta)| (archive.data_namespace(meta), &collection.data))
        .collect();
    copies.push((Namespace::oplog(), &manifest.oplog));
    for (namespace, set) in copies {
        archive
            .begin_namespace(&namespace.db, &namespace.collection)
            .map_err(archive_failure)?;
        let mut reader = SegmentReader::new(store.clone(), set);
        while let Some(document) = handle.block_on(reader.next_document())? {
            archive.write_document(&document).map_err(archive_failure)?;
            done += 1;
            progress
                .percent
                .store(done * 99 / total.max(1), Ordering::Relaxed);
        }
        archive.end_namespace().map_err(archive_failure)?;
    }

    let compressed = archive.finish().map_err(archive_failure)?;
    let hashing = compressed.finish().map_err(io_failure)?;
    let (_, checksum) = hashing.finish();
    Ok(checksum)
}

/// Whether `collection` is one restore must read first: users, roles, the
/// auth schema.
fn is_auth(collection: &CollectionEntry) -> bool {
    Namespace::new(collection.db.as_str(), collection.name.as_str()).is_auth()
}

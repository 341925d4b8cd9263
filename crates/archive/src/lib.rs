//! mongodump archives: the single-stream format of `mongodump --archive`
//! (format "0.1"), which `mongorestore --archive[=FILE] [--gzip]` reads.
//!
//! The rules are those of `docs/archive-format.md`; the section numbers in
//! parentheses in these docs refer to it.
//!
//! # What it does
//! - [`ArchiveWriter`] writes an archive: MAGIC, header, prelude of
//!   [`NamespaceMeta`]s, then each namespace's segments and EOF block with
//!   its CRC-64/XZ. It refuses, before writing, anything restore would
//!   reject or deadlock on: bad names, undeclared or repeated namespaces,
//!   documents that are not BSON-framed, the oplog not last, an unwritten
//!   namespace at the end.
//! - [`metadata_json`] builds a namespace's `.metadata.json` text from the
//!   stored options, indexes and UUID; [`data_collection`] maps timeseries
//!   collections to the body namespace restore expects (1.5).
//! - [`ArchiveReader`] reads an archive back as [`Event`]s and checks every
//!   reader rule (terminators, lengths, truncation, trailing bytes, CRCs,
//!   namespace order and completeness); [`ArchiveReader::verify`] does it
//!   for a whole stream.
//! - [`GzipWriter`] (one member, or members compressed on worker threads),
//!   [`gunzip`], and [`HashingWriter`] for the SHA-256 of the final bytes.
//!
//! # What it doesn't
//! No I/O policy: everything works on [`std::io::Write`] sinks and
//! [`std::io::Read`] sources chosen by the caller. It opens no file, talks
//! to no server, spawns nothing but the gzip worker threads, and reads no
//! configuration. Documents are raw BSON bytes, passed through unparsed.
//!
//! # Layout
//! - `format`: constants, header and namespace types, name and document
//!   rules, server versions, the BSON of header documents.
//! - `metadata`: the metadata JSON.
//! - `writer`, `reader`: the two directions.
//! - `gzip`, `hash`: stream adapters.
//!
//! # Example
//! ```
//! use std::io::Write;
//! use mongobak_archive::*;
//!
//! let gz = GzipWriter::new(HashingWriter::new(Vec::new()), DEFAULT_LEVEL);
//! let header = ArchiveHeader {
//!     concurrent_collections: 1,
//!     server_version: "7.0.14".into(),
//!     tool_version: "mongobak".into(),
//! };
//! let mut archive = ArchiveWriter::new(gz, header)?;
//! let metadata = metadata_json("foo", NamespaceKind::Collection, &serde_json::json!({}), &[], None)?;
//! archive.add_namespace(NamespaceMeta {
//!     db: "test".into(),
//!     collection: "foo".into(),
//!     metadata_json: metadata,
//!     kind: NamespaceKind::Collection,
//! })?;
//! archive.begin_namespace("test", "foo")?;
//! archive.write_document(&[5, 0, 0, 0, 0])?;
//! archive.end_namespace()?;
//! let (file, checksum) = archive.finish()?.finish()?.finish();
//! assert_eq!(checksum.bytes, file.len() as u64);
//!
//! let summary = ArchiveReader::verify(gunzip(&file[..]))?;
//! assert_eq!(summary.namespaces[0].documents, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod format;
mod gzip;
mod hash;
mod metadata;
mod reader;
mod writer;

pub use format::{
    check_collection_name, check_db_name, check_document, data_collection, ArchiveHeader,
    DocumentProblem, InvalidServerVersion, NameProblem, Namespace, NamespaceKind, NamespaceMeta,
    ServerVersion, DEFAULT_SEGMENT_LIMIT, FORMAT_VERSION, MAGIC, MAX_DB_NAME_BYTES,
    MAX_DOCUMENT_SIZE, MIN_DOCUMENT_SIZE, OPLOG_COLLECTION, TERMINATOR, TIMESERIES_VIEWLESS_SINCE,
};
pub use gzip::{gunzip, GzipWriter, DEFAULT_LEVEL, DEFAULT_MEMBER_SIZE};
pub use hash::{Checksum, HashingWriter};
pub use metadata::{check_metadata_json, metadata_json, MetadataError};
pub use reader::{
    ArchiveReader, ArchiveSummary, Event, NamespaceSummary, ReadError, ReadErrorKind,
};
pub use writer::{ArchiveWriter, NamespaceStats, WriteError};

/// CRC-64/XZ of bytes, the namespace checksum of the EOF header (1.4).
/// Feed it every document of a namespace, in order, to predict the CRC.
pub fn crc64(bytes: &[u8]) -> u64 {
    format::CRC64.checksum(bytes)
}

//! [`ArchiveWriter`]: writes a mongodump archive that mongorestore accepts.
//!
//! The order of calls is checked at run time, and every call that would
//! break a reader rule fails before writing anything:
//!
//! ```text
//! new (MAGIC + header) -> add_namespace* -> ( begin_namespace -> write_document* -> end_namespace )* -> finish
//! ```
//!
//! One namespace is open at a time, which keeps restore's worker pool from
//! deadlocking whatever `concurrent_collections` says (1.5 rule 3). After an
//! I/O error the stream is incomplete and every later call fails with
//! [`WriteError::Poisoned`].

use std::collections::HashMap;
use std::io::Write;

use crc::Digest;

use crate::format::{
    check_collection_name, check_db_name, check_document, data_collection, header_doc,
    metadata_doc, namespace_header_doc, ArchiveHeader, DocumentProblem, InvalidServerVersion,
    NameProblem, Namespace, NamespaceKind, NamespaceMeta, ServerVersion, CRC64,
    DEFAULT_SEGMENT_LIMIT, MAGIC, MAX_DOCUMENT_SIZE, OPLOG_COLLECTION, TERMINATOR,
};
use crate::metadata::{check_metadata_json, has_timeseries_options, MetadataError};

/// Why the writer refused a call.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Writing to the sink failed; the archive is incomplete.
    #[error("writing the archive failed after {offset} bytes")]
    Io {
        /// Archive bytes written before the failure.
        offset: u64,
        /// The sink's error.
        #[source]
        source: std::io::Error,
    },
    /// A previous I/O error left the archive incomplete.
    #[error("the archive writer failed earlier; start a new archive")]
    Poisoned,
    /// The header's server version is not `N.N.N[-...]`.
    #[error(transparent)]
    InvalidServerVersion(#[from] InvalidServerVersion),
    /// `concurrent_collections` below 1.
    #[error("concurrent_collections must be at least 1, not {value}")]
    InvalidConcurrency {
        /// The rejected value.
        value: i32,
    },
    /// A database name restore would refuse.
    #[error("database name {db:?} is refused by mongorestore: {problem}")]
    InvalidDbName {
        /// The name.
        db: String,
        /// What is wrong with it.
        problem: NameProblem,
    },
    /// An empty collection name or one with NUL.
    #[error("collection name {collection:?} in database {db:?} is invalid: {problem}")]
    InvalidCollectionName {
        /// Database name.
        db: String,
        /// The collection name.
        collection: String,
        /// What is wrong with it.
        problem: NameProblem,
    },
    /// `db: ""` that is not exactly the oplog entry.
    #[error("only the oplog entry ({{db:\"\", collection:\"oplog\", metadata:\"\", type:\"\"}}, see NamespaceMeta::oplog) may have an empty database name")]
    InvalidOplogEntry,
    /// The metadata text would make restore fail.
    #[error("metadata of {namespace}: {source}")]
    InvalidMetadata {
        /// The namespace.
        namespace: Namespace,
        /// What is wrong.
        #[source]
        source: MetadataError,
    },
    /// The collection-metadata document would exceed 16 MiB.
    #[error("the prelude entry of {namespace} is {size} bytes, over the 16 MiB BSON limit")]
    MetadataTooLarge {
        /// The namespace.
        namespace: Namespace,
        /// Its size in bytes.
        size: usize,
    },
    /// The same namespace (or the same data namespace) declared twice.
    #[error("{namespace} is already declared in the prelude")]
    DuplicateNamespace {
        /// The namespace.
        namespace: Namespace,
    },
    /// `add_namespace` after the body started.
    #[error("{namespace} declared after the prelude was closed: declare every namespace before the first begin_namespace")]
    PreludeClosed {
        /// The namespace.
        namespace: Namespace,
    },
    /// `begin_namespace` for a namespace the prelude does not declare as a
    /// data namespace.
    #[error("{namespace} is not declared in the prelude{}", hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
    NotDeclared {
        /// The namespace.
        namespace: Namespace,
        /// A suggestion, e.g. the timeseries data namespace to use.
        hint: Option<String>,
    },
    /// `begin_namespace` while another namespace is open.
    #[error("cannot begin {requested} while {open} is open: end_namespace first")]
    NamespaceStillOpen {
        /// The open namespace.
        open: Namespace,
        /// The one asked for.
        requested: Namespace,
    },
    /// A namespace begun a second time: restore fails on a header after EOF.
    #[error("{namespace} was already written and closed")]
    AlreadyWritten {
        /// The namespace.
        namespace: Namespace,
    },
    /// `write_document` or `end_namespace` with no namespace open.
    #[error("no namespace is open: call begin_namespace first")]
    NoOpenNamespace,
    /// A document for a view.
    #[error("{namespace} is a view and holds no documents")]
    ViewHasDocuments {
        /// The namespace.
        namespace: Namespace,
    },
    /// A document restore would call corruption.
    #[error("document #{index} of {namespace}: {problem}")]
    InvalidDocument {
        /// The namespace.
        namespace: Namespace,
        /// 0-based position in the namespace.
        index: u64,
        /// What is wrong.
        problem: DocumentProblem,
    },
    /// The oplog begun while other namespaces are not closed.
    #[error(
        "the oplog must come after every other namespace; still to write: {}",
        list(pending)
    )]
    OplogNotLast {
        /// Namespaces not yet closed.
        pending: Vec<Namespace>,
    },
    /// `admin.system.users/roles/version` after another namespace.
    #[error("{namespace} must be written before every other namespace (restore reads it first)")]
    AuthNotFirst {
        /// The namespace.
        namespace: Namespace,
    },
    /// `finish` with a namespace open.
    #[error("{namespace} is still open: end_namespace before finish")]
    FinishWithOpenNamespace {
        /// The namespace.
        namespace: Namespace,
    },
    /// `finish` before every declared namespace was written.
    #[error("declared but never written (restore would fail with \"archive finished before all collections were seen\"): {}", list(missing))]
    Unwritten {
        /// Data namespaces not closed.
        missing: Vec<Namespace>,
    },
}

/// Restore recognises timeseries and views by their options, not by
/// `type` (3); the writer follows the stronger of the two.
fn effective_kind(
    kind: NamespaceKind,
    metadata: Option<&serde_json::Map<String, serde_json::Value>>,
) -> NamespaceKind {
    let options = metadata.and_then(|m| m.get("options"));
    if kind == NamespaceKind::Timeseries || metadata.is_some_and(has_timeseries_options) {
        NamespaceKind::Timeseries
    } else if kind == NamespaceKind::View || options.and_then(|o| o.get("viewOn")).is_some() {
        NamespaceKind::View
    } else {
        kind
    }
}

fn list(namespaces: &[Namespace]) -> String {
    namespaces
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What was written for one namespace, returned by
/// [`ArchiveWriter::end_namespace`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceStats {
    /// The data namespace written.
    pub namespace: Namespace,
    /// Documents written.
    pub documents: u64,
    /// Bytes of those documents.
    pub document_bytes: u64,
    /// Segments (header + documents + TERM blocks) before the EOF block.
    pub segments: u64,
    /// CRC-64/XZ of the documents, as stored in the EOF header.
    pub crc: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Prelude,
    Body,
    Poisoned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Open,
    Closed,
}

#[derive(Debug)]
struct Declared {
    data: Namespace,
    view: bool,
    state: State,
}

struct Open {
    index: usize,
    crc: Digest<'static, u64>,
    documents: u64,
    document_bytes: u64,
    segments: u64,
    segment_bytes: usize,
    segment_documents: u64,
}

/// Writes a mongodump archive (format "0.1") into any [`Write`] sink.
///
/// The writer issues many small writes: give it a buffered sink (a
/// `BufWriter`, or a [`crate::GzipWriter`], which buffers).
pub struct ArchiveWriter<W: Write> {
    sink: W,
    bytes: u64,
    header: ArchiveHeader,
    server: ServerVersion,
    segment_limit: usize,
    phase: Phase,
    declared: Vec<Declared>,
    prelude_names: HashMap<Namespace, usize>,
    by_data: HashMap<Namespace, usize>,
    open: Option<Open>,
    non_auth_started: bool,
}

impl<W: Write> ArchiveWriter<W> {
    /// Checks the header and writes MAGIC and the header document.
    pub fn new(sink: W, header: ArchiveHeader) -> Result<Self, WriteError> {
        let server = ServerVersion::parse(&header.server_version)?;
        if header.concurrent_collections < 1 {
            return Err(WriteError::InvalidConcurrency {
                value: header.concurrent_collections,
            });
        }
        let doc = header_doc(&header);
        let mut writer = ArchiveWriter {
            sink,
            bytes: 0,
            header,
            server,
            segment_limit: DEFAULT_SEGMENT_LIMIT,
            phase: Phase::Prelude,
            declared: Vec::new(),
            prelude_names: HashMap::new(),
            by_data: HashMap::new(),
            open: None,
            non_auth_started: false,
        };
        writer.put(&MAGIC)?;
        writer.put(doc.as_bytes())?;
        Ok(writer)
    }

    /// Sets the bound on the document bytes of a segment (default 16 MiB).
    /// A segment always takes at least one document.
    pub fn set_segment_limit(&mut self, bytes: usize) {
        self.segment_limit = bytes;
    }

    /// The header written.
    pub fn header(&self) -> &ArchiveHeader {
        &self.header
    }

    /// The parsed source server version.
    pub fn server_version(&self) -> ServerVersion {
        self.server
    }

    /// Archive bytes written to the sink so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// The namespace under which `meta`'s documents go in the body: see
    /// [`data_collection`].
    pub fn data_namespace(&self, meta: &NamespaceMeta) -> Namespace {
        if let Some(&index) = self.prelude_names.get(&meta.namespace()) {
            return self.declared[index].data.clone();
        }
        let parsed = check_metadata_json(&meta.metadata_json).ok().flatten();
        let kind = effective_kind(meta.kind, parsed.as_ref());
        Namespace::new(
            meta.db.clone(),
            data_collection(kind, &meta.collection, self.server),
        )
    }

    /// Declares a namespace in the prelude. Every namespace must be
    /// declared before the first [`begin_namespace`](Self::begin_namespace),
    /// and every declared one written before [`finish`](Self::finish).
    pub fn add_namespace(&mut self, meta: NamespaceMeta) -> Result<(), WriteError> {
        self.usable()?;
        let namespace = meta.namespace();
        if self.phase != Phase::Prelude {
            return Err(WriteError::PreludeClosed { namespace });
        }
        if meta.db.is_empty() {
            if meta != NamespaceMeta::oplog() {
                return Err(WriteError::InvalidOplogEntry);
            }
        } else {
            check_db_name(&meta.db).map_err(|problem| WriteError::InvalidDbName {
                db: meta.db.clone(),
                problem,
            })?;
        }
        check_collection_name(&meta.collection).map_err(|problem| {
            WriteError::InvalidCollectionName {
                db: meta.db.clone(),
                collection: meta.collection.clone(),
                problem,
            }
        })?;
        let parsed = check_metadata_json(&meta.metadata_json).map_err(|source| {
            WriteError::InvalidMetadata {
                namespace: namespace.clone(),
                source,
            }
        })?;
        let kind = effective_kind(meta.kind, parsed.as_ref());
        let view = kind == NamespaceKind::View;
        let data = Namespace::new(
            meta.db.clone(),
            data_collection(kind, &meta.collection, self.server),
        );
        if self.prelude_names.contains_key(&namespace) || self.by_data.contains_key(&data) {
            return Err(WriteError::DuplicateNamespace { namespace });
        }
        let doc = metadata_doc(&meta);
        if doc.as_bytes().len() > MAX_DOCUMENT_SIZE {
            return Err(WriteError::MetadataTooLarge {
                namespace,
                size: doc.as_bytes().len(),
            });
        }
        self.put(doc.as_bytes())?;
        let index = self.declared.len();
        self.declared.push(Declared {
            data: data.clone(),
            view,
            state: State::Pending,
        });
        self.prelude_names.insert(namespace, index);
        self.by_data.insert(data, index);
        Ok(())
    }

    /// Starts writing the documents of a declared data namespace (closing
    /// the prelude on the first call) and opens its first segment.
    ///
    /// Views and empty collections need it too: `begin_namespace` then
    /// `end_namespace` writes the empty segment and EOF block restore
    /// waits for (1.5 rule 2). Timeseries data goes under
    /// [`data_namespace`](Self::data_namespace).
    pub fn begin_namespace(&mut self, db: &str, collection: &str) -> Result<(), WriteError> {
        self.usable()?;
        let requested = Namespace::new(db, collection);
        if let Some(open) = &self.open {
            return Err(WriteError::NamespaceStillOpen {
                open: self.declared[open.index].data.clone(),
                requested,
            });
        }
        let Some(&index) = self.by_data.get(&requested) else {
            let hint = self.not_declared_hint(&requested);
            return Err(WriteError::NotDeclared {
                namespace: requested,
                hint,
            });
        };
        if self.declared[index].state == State::Closed {
            return Err(WriteError::AlreadyWritten {
                namespace: requested,
            });
        }
        if requested.is_oplog() {
            let pending: Vec<Namespace> = self
                .declared
                .iter()
                .filter(|d| d.state != State::Closed && !d.data.is_oplog())
                .map(|d| d.data.clone())
                .collect();
            if !pending.is_empty() {
                return Err(WriteError::OplogNotLast { pending });
            }
        }
        if requested.is_auth() && self.non_auth_started {
            return Err(WriteError::AuthNotFirst {
                namespace: requested,
            });
        }

        if self.phase == Phase::Prelude {
            self.put(&TERMINATOR)?;
            self.phase = Phase::Body;
        }
        let header = namespace_header_doc(&requested, false, 0);
        self.put(header.as_bytes())?;
        if !requested.is_oplog() && !requested.is_auth() {
            self.non_auth_started = true;
        }
        self.declared[index].state = State::Open;
        self.open = Some(Open {
            index,
            crc: CRC64.digest(),
            documents: 0,
            document_bytes: 0,
            segments: 1,
            segment_bytes: 0,
            segment_documents: 0,
        });
        Ok(())
    }

    /// Writes one raw BSON document of the open namespace, starting a new
    /// segment when the current one would pass the segment limit.
    pub fn write_document(&mut self, doc: &[u8]) -> Result<(), WriteError> {
        self.usable()?;
        let Some(open) = &self.open else {
            return Err(WriteError::NoOpenNamespace);
        };
        let declared = &self.declared[open.index];
        if declared.view {
            return Err(WriteError::ViewHasDocuments {
                namespace: declared.data.clone(),
            });
        }
        if let Err(problem) = check_document(doc) {
            return Err(WriteError::InvalidDocument {
                namespace: declared.data.clone(),
                index: open.documents,
                problem,
            });
        }
        if open.segment_documents > 0
            && open.segment_bytes.saturating_add(doc.len()) > self.segment_limit
        {
            let header = namespace_header_doc(&declared.data, false, 0);
            self.put(&TERMINATOR)?;
            self.put(header.as_bytes())?;
            let open = self.open.as_mut().expect("checked above");
            open.segments += 1;
            open.segment_bytes = 0;
            open.segment_documents = 0;
        }
        self.put(doc)?;
        let open = self.open.as_mut().expect("checked above");
        open.crc.update(doc);
        open.documents += 1;
        open.document_bytes += doc.len() as u64;
        open.segment_bytes += doc.len();
        open.segment_documents += 1;
        Ok(())
    }

    /// Closes the open segment and writes the namespace's EOF block
    /// (header with the CRC, then TERM).
    pub fn end_namespace(&mut self) -> Result<NamespaceStats, WriteError> {
        self.usable()?;
        let Some(open) = self.open.take() else {
            return Err(WriteError::NoOpenNamespace);
        };
        let namespace = self.declared[open.index].data.clone();
        let crc = open.crc.finalize();
        let eof = namespace_header_doc(&namespace, true, crc);
        self.put(&TERMINATOR)?;
        self.put(eof.as_bytes())?;
        self.put(&TERMINATOR)?;
        self.declared[open.index].state = State::Closed;
        Ok(NamespaceStats {
            namespace,
            documents: open.documents,
            document_bytes: open.document_bytes,
            segments: open.segments,
            crc,
        })
    }

    /// Checks that every declared namespace was written, ends the prelude
    /// if no namespace was, flushes, and returns the sink.
    pub fn finish(mut self) -> Result<W, WriteError> {
        self.usable()?;
        if let Some(open) = &self.open {
            return Err(WriteError::FinishWithOpenNamespace {
                namespace: self.declared[open.index].data.clone(),
            });
        }
        let missing: Vec<Namespace> = self
            .declared
            .iter()
            .filter(|d| d.state != State::Closed)
            .map(|d| d.data.clone())
            .collect();
        if !missing.is_empty() {
            return Err(WriteError::Unwritten { missing });
        }
        if self.phase == Phase::Prelude {
            self.put(&TERMINATOR)?;
            self.phase = Phase::Body;
        }
        if let Err(source) = self.sink.flush() {
            return Err(WriteError::Io {
                offset: self.bytes,
                source,
            });
        }
        Ok(self.sink)
    }

    fn usable(&self) -> Result<(), WriteError> {
        if self.phase == Phase::Poisoned {
            Err(WriteError::Poisoned)
        } else {
            Ok(())
        }
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        match self.sink.write_all(bytes) {
            Ok(()) => {
                self.bytes += bytes.len() as u64;
                Ok(())
            }
            Err(source) => {
                self.phase = Phase::Poisoned;
                Err(WriteError::Io {
                    offset: self.bytes,
                    source,
                })
            }
        }
    }

    fn not_declared_hint(&self, requested: &Namespace) -> Option<String> {
        if let Some(&index) = self.prelude_names.get(requested) {
            let data = &self.declared[index].data;
            return Some(format!(
                "its documents go under {data}: source {} keeps timeseries data in system.buckets",
                self.server
            ));
        }
        if let Some(name) = requested.collection.strip_prefix("system.buckets.") {
            if self
                .prelude_names
                .contains_key(&Namespace::new(requested.db.clone(), name))
            {
                return Some(format!(
                    "source {} >= 8.3.0 keeps timeseries data under {}.{name}",
                    self.server, requested.db
                ));
            }
        }
        if requested.db.is_empty() && requested.collection == OPLOG_COLLECTION {
            return Some("declare it with add_namespace(NamespaceMeta::oplog())".to_owned());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> ArchiveHeader {
        ArchiveHeader {
            concurrent_collections: 1,
            server_version: "7.0.14".into(),
            tool_version: "t".into(),
        }
    }

    fn meta(db: &str, coll: &str, kind: NamespaceKind) -> NamespaceMeta {
        NamespaceMeta {
            db: db.into(),
            collection: coll.into(),
            metadata_json: String::new(),
            kind,
        }
    }

    #[test]
    fn empty_archive_is_magic_header_term() {
        let w = ArchiveWriter::new(Vec::new(), header()).unwrap();
        let header_len = header_doc(&header()).as_bytes().len();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len(), 4 + header_len + 4);
        assert_eq!(&bytes[..4], &MAGIC);
        assert_eq!(&bytes[bytes.len() - 4..], &TERMINATOR);
    }

    #[test]
    fn empty_namespace_layout() {
        let mut w = ArchiveWriter::new(Vec::new(), header()).unwrap();
        w.add_namespace(meta("d", "c", NamespaceKind::Collection))
            .unwrap();
        let body_start = w.bytes_written() + 4;
        w.begin_namespace("d", "c").unwrap();
        let stats = w.end_namespace().unwrap();
        assert_eq!(stats.crc, 0);
        assert_eq!(stats.segments, 1);
        let bytes = w.finish().unwrap();
        let ns = Namespace::new("d", "c");
        let mut expected = namespace_header_doc(&ns, false, 0).into_bytes();
        expected.extend_from_slice(&TERMINATOR);
        expected.extend_from_slice(namespace_header_doc(&ns, true, 0).as_bytes());
        expected.extend_from_slice(&TERMINATOR);
        assert_eq!(&bytes[body_start as usize..], &expected[..]);
    }

    #[test]
    fn io_error_poisons() {
        struct Failing(usize);
        impl Write for Failing {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                if self.0 < buf.len() {
                    return Err(std::io::Error::other("disk full"));
                }
                self.0 -= buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut w = ArchiveWriter::new(Failing(200), header()).unwrap();
        w.add_namespace(meta("d", "c", NamespaceKind::Collection))
            .unwrap();
        let err = w
            .add_namespace(meta("d", "e", NamespaceKind::Collection))
            .unwrap_err();
        assert!(matches!(err, WriteError::Io { .. }), "{err}");
        assert!(matches!(
            w.begin_namespace("d", "c"),
            Err(WriteError::Poisoned)
        ));
    }
}

//! [`ArchiveReader`]: reads a mongodump archive and checks every rule
//! mongorestore enforces (`docs/archive-format.md` §1 and §1.5).
//!
//! The reader is an iterator of [`Event`]s; the first error ends it. It
//! reads the stream once, keeps one document in memory at a time, and
//! reports errors with the byte offset (in the uncompressed archive) of the
//! item at fault and the namespace involved.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read};

use crc::Digest;

use crate::format::{
    check_collection_name, check_db_name, data_collection, parse_header_doc, parse_metadata_doc,
    parse_namespace_header, ArchiveHeader, InvalidServerVersion, NameProblem, Namespace,
    NamespaceKind, NamespaceMeta, ServerVersion, CRC64, MAGIC, MAX_DOCUMENT_SIZE,
    MIN_DOCUMENT_SIZE,
};
use crate::metadata::{check_metadata_json, has_timeseries_options, MetadataError};

/// A reading error: what went wrong, where, and in which namespace.
#[derive(Debug, thiserror::Error)]
pub struct ReadError {
    /// Offset in the (uncompressed) archive of the item at fault.
    pub offset: u64,
    /// The namespace concerned, when there is one.
    pub namespace: Option<Namespace>,
    /// What went wrong.
    #[source]
    pub kind: ReadErrorKind,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "archive byte {}", self.offset)?;
        if let Some(ns) = &self.namespace {
            write!(f, ", namespace {ns}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// The kinds of [`ReadError`].
#[derive(Debug, thiserror::Error)]
pub enum ReadErrorKind {
    /// Reading the input failed.
    #[error("reading failed: {0}")]
    Io(#[source] io::Error),
    /// The input does not start with the archive MAGIC.
    #[error("not a mongodump archive (starts with {found:02x?}){}", if *gzipped { "; it is gzip data: read it through gunzip" } else { "" })]
    NotAnArchive {
        /// The first bytes found.
        found: Vec<u8>,
        /// Whether they are a gzip header.
        gzipped: bool,
    },
    /// The input ends inside an item or a block.
    #[error("archive is truncated: {context}")]
    Truncated {
        /// What was being read.
        context: &'static str,
    },
    /// Bytes after the last complete block.
    #[error("{count} trailing bytes after the last block")]
    TrailingBytes {
        /// How many bytes (1..=3) could be read.
        count: usize,
    },
    /// A length prefix outside 5..=16 MiB ("corruption found in archive").
    #[error("corruption found in archive: document length {length} is outside {MIN_DOCUMENT_SIZE}..={MAX_DOCUMENT_SIZE}")]
    BadDocumentLength {
        /// The length read.
        length: u32,
    },
    /// A document whose last byte is not 0 ("corruption found in archive").
    #[error("corruption found in archive: document does not end with 0x00")]
    MissingDocumentNul,
    /// TERM where a block header is expected.
    #[error("terminator where a block header is expected: consecutive terminators / headerless blocks are not allowed")]
    HeaderlessBlock,
    /// The archive header is malformed.
    #[error("invalid archive header: {reason}")]
    InvalidHeader {
        /// Why.
        reason: String,
    },
    /// The header's server version is not `N.N.N[-...]`.
    #[error(transparent)]
    InvalidServerVersion(InvalidServerVersion),
    /// A prelude entry is malformed.
    #[error("invalid prelude entry: {reason}")]
    InvalidPreludeEntry {
        /// Why.
        reason: String,
    },
    /// A prelude database name restore refuses.
    #[error("database name {db:?} is refused by mongorestore: {problem}")]
    InvalidDbName {
        /// The name.
        db: String,
        /// What is wrong.
        problem: NameProblem,
    },
    /// A prelude collection name that cannot be a namespace.
    #[error("collection name {collection:?} is invalid: {problem}")]
    InvalidCollectionName {
        /// The name.
        collection: String,
        /// What is wrong.
        problem: NameProblem,
    },
    /// The metadata JSON of a prelude entry would make restore fail.
    #[error("metadata JSON: {0}")]
    InvalidMetadata(#[source] MetadataError),
    /// The same namespace twice in the prelude.
    #[error("namespace declared twice in the prelude")]
    DuplicateNamespace,
    /// A namespace header is malformed (1.3).
    #[error("invalid namespace header: {reason}")]
    InvalidNamespaceHeader {
        /// Why.
        reason: String,
    },
    /// A body namespace missing from the prelude ("no intent for collection in archive").
    #[error("namespace is not declared in the prelude (no intent for collection in archive)")]
    UndeclaredNamespace,
    /// A header for a namespace that already reached EOF.
    #[error("namespace header for already opened namespace: it already reached EOF")]
    AfterEof,
    /// An EOF header for a namespace without a segment.
    #[error("EOF header for a namespace that has no segment")]
    EofWithoutSegment,
    /// An EOF header not followed by TERM.
    #[error("EOF header not directly followed by a terminator")]
    EofNotTerminated,
    /// The stored CRC differs from the documents' CRC.
    #[error("CRC mismatch for namespace: stored {stored:#018x}, documents give {computed:#018x}")]
    CrcMismatch {
        /// The CRC in the EOF header.
        stored: u64,
        /// The CRC of the documents read.
        computed: u64,
    },
    /// More namespaces open at once than `concurrent_collections`.
    #[error("{open} namespaces open at once, more than concurrent_collections = {limit}: restore may deadlock")]
    TooManyOpen {
        /// Namespaces open.
        open: usize,
        /// The header's limit.
        limit: usize,
    },
    /// A namespace after the oplog started.
    #[error("namespace after the oplog, which must come last")]
    AfterOplog,
    /// The oplog started while other namespaces were not closed.
    #[error("the oplog starts before every other namespace reached EOF; pending: {}", pending.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    OplogNotLast {
        /// Namespaces not yet closed.
        pending: Vec<Namespace>,
    },
    /// `admin.system.users/roles/version` after another namespace.
    #[error("admin.system.users/roles/version must come before every other namespace")]
    AuthNotFirst,
    /// End of input before every prelude namespace reached EOF.
    #[error("archive finished before all collections were seen; missing: {}", missing.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    Unfinished {
        /// Data namespaces that did not reach EOF.
        missing: Vec<Namespace>,
    },
}

/// One item of the archive body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A segment header: the documents that follow, up to the next
    /// `SegmentStart` or `NamespaceEnd`, belong to this namespace.
    SegmentStart {
        /// The data namespace.
        namespace: Namespace,
    },
    /// One raw BSON document (framing checked, content not parsed).
    Document(Vec<u8>),
    /// The namespace's EOF block, its CRC checked.
    NamespaceEnd {
        /// The data namespace.
        namespace: Namespace,
        /// Documents it held.
        documents: u64,
        /// Bytes of those documents.
        document_bytes: u64,
        /// Segments it held.
        segments: u64,
        /// Its CRC (equal to the stored one).
        crc: u64,
    },
}

/// Per-namespace totals of a whole archive, from [`ArchiveReader::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceSummary {
    /// The data namespace.
    pub namespace: Namespace,
    /// Documents.
    pub documents: u64,
    /// Bytes of documents.
    pub document_bytes: u64,
    /// Segments.
    pub segments: u64,
    /// CRC-64/XZ.
    pub crc: u64,
}

/// What [`ArchiveReader::verify`] found in a valid archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSummary {
    /// The header.
    pub header: ArchiveHeader,
    /// The header's format version (`"0.1"`).
    pub format_version: String,
    /// The prelude, in order.
    pub prelude: Vec<NamespaceMeta>,
    /// Body namespaces in the order they reached EOF.
    pub namespaces: Vec<NamespaceSummary>,
    /// Length of the archive in bytes.
    pub archive_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NsState {
    Pending,
    Open,
    Closed,
}

struct NsTrack {
    data: Namespace,
    state: NsState,
    crc: Digest<'static, u64>,
    documents: u64,
    document_bytes: u64,
    segments: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Between blocks: a namespace header, or the end of input, comes next.
    BlockStart,
    /// Inside a segment of the namespace at this index.
    InSegment(usize),
    /// The iterator ended (cleanly or with an error).
    Done,
}

/// Reads a mongodump archive from any [`Read`] source (use
/// [`crate::gunzip`] first for `--gzip` archives).
pub struct ArchiveReader<R: Read> {
    input: R,
    offset: u64,
    header: ArchiveHeader,
    format_version: String,
    server: ServerVersion,
    prelude: Vec<NamespaceMeta>,
    tracks: Vec<NsTrack>,
    by_data: HashMap<Namespace, usize>,
    position: Position,
    open_count: usize,
    non_auth_started: bool,
    oplog_started: bool,
}

/// Result of reading a length prefix or a terminator.
enum Item {
    Terminator,
    Document(Vec<u8>),
}

impl<R: Read> ArchiveReader<R> {
    /// Reads and checks MAGIC, the header and the prelude.
    pub fn new(mut input: R) -> Result<Self, ReadError> {
        let mut magic = [0_u8; 4];
        let n = fill(&mut input, &mut magic).map_err(|e| at(0, None, ReadErrorKind::Io(e)))?;
        if n < 4 || magic != MAGIC {
            let found = magic[..n].to_vec();
            let gzipped = found.starts_with(&[0x1f, 0x8b]);
            let kind = if n == 0 {
                ReadErrorKind::Truncated {
                    context: "empty input",
                }
            } else {
                ReadErrorKind::NotAnArchive { found, gzipped }
            };
            return Err(at(0, None, kind));
        }
        let mut reader = ArchiveReader {
            input,
            offset: 4,
            header: ArchiveHeader {
                concurrent_collections: 0,
                server_version: String::new(),
                tool_version: String::new(),
            },
            format_version: String::new(),
            server: ServerVersion {
                major: 0,
                minor: 0,
                patch: 0,
            },
            prelude: Vec::new(),
            tracks: Vec::new(),
            by_data: HashMap::new(),
            position: Position::BlockStart,
            open_count: 0,
            non_auth_started: false,
            oplog_started: false,
        };
        reader.read_prelude()?;
        Ok(reader)
    }

    /// Reads the whole archive, checking every rule, and sums it up.
    pub fn verify(input: R) -> Result<ArchiveSummary, ReadError> {
        let mut reader = ArchiveReader::new(input)?;
        let mut namespaces = Vec::new();
        while let Some(event) = reader.next_event()? {
            if let Event::NamespaceEnd {
                namespace,
                documents,
                document_bytes,
                segments,
                crc,
            } = event
            {
                namespaces.push(NamespaceSummary {
                    namespace,
                    documents,
                    document_bytes,
                    segments,
                    crc,
                });
            }
        }
        Ok(ArchiveSummary {
            header: reader.header.clone(),
            format_version: reader.format_version.clone(),
            prelude: reader.prelude.clone(),
            namespaces,
            archive_bytes: reader.offset,
        })
    }

    /// The archive header.
    pub fn header(&self) -> &ArchiveHeader {
        &self.header
    }

    /// The header's format version (`"0.1"`; restore only logs it).
    pub fn format_version(&self) -> &str {
        &self.format_version
    }

    /// The parsed source server version.
    pub fn server_version(&self) -> ServerVersion {
        self.server
    }

    /// The prelude's namespaces, in order.
    pub fn prelude(&self) -> &[NamespaceMeta] {
        &self.prelude
    }

    /// The data namespace (body name) of each prelude entry, in prelude order.
    pub fn data_namespaces(&self) -> impl Iterator<Item = &Namespace> {
        self.tracks.iter().map(|t| &t.data)
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next body event; `Ok(None)` at a valid end of the archive.
    /// After an error, or the end, it keeps returning `Ok(None)`.
    pub fn next_event(&mut self) -> Result<Option<Event>, ReadError> {
        let result = self.step();
        if !matches!(result, Ok(Some(_))) {
            self.position = Position::Done;
        }
        result
    }

    fn step(&mut self) -> Result<Option<Event>, ReadError> {
        match self.position {
            Position::Done => Ok(None),
            Position::InSegment(index) => match self.read_item("inside a segment")? {
                Item::Terminator => {
                    self.position = Position::BlockStart;
                    self.step()
                }
                Item::Document(doc) => {
                    let track = &mut self.tracks[index];
                    track.crc.update(&doc);
                    track.documents += 1;
                    track.document_bytes += doc.len() as u64;
                    Ok(Some(Event::Document(doc)))
                }
            },
            Position::BlockStart => self.block_start(),
        }
    }

    fn block_start(&mut self) -> Result<Option<Event>, ReadError> {
        let start = self.offset;
        let mut prefix = [0_u8; 4];
        let n = fill(&mut self.input, &mut prefix).map_err(|e| self.io(e))?;
        if n == 0 {
            return self.end_of_input();
        }
        if n < 4 {
            self.offset += n as u64;
            return Err(at(start, None, ReadErrorKind::TrailingBytes { count: n }));
        }
        self.offset += 4;
        let doc = match self.item_after_prefix(prefix, start, "a namespace header")? {
            Item::Terminator => return Err(at(start, None, ReadErrorKind::HeaderlessBlock)),
            Item::Document(doc) => doc,
        };
        let header = parse_namespace_header(&doc).map_err(|reason| {
            at(
                start,
                None,
                ReadErrorKind::InvalidNamespaceHeader { reason },
            )
        })?;
        let ns = header.namespace;
        let Some(&index) = self.by_data.get(&ns) else {
            return Err(at(start, Some(ns), ReadErrorKind::UndeclaredNamespace));
        };
        let state = self.tracks[index].state;
        if state == NsState::Closed {
            return Err(at(start, Some(ns), ReadErrorKind::AfterEof));
        }
        if header.eof {
            if state != NsState::Open {
                return Err(at(start, Some(ns), ReadErrorKind::EofWithoutSegment));
            }
            let term_at = self.offset;
            match self.read_item("after an EOF header")? {
                Item::Terminator => {}
                Item::Document(_) => {
                    return Err(at(term_at, Some(ns), ReadErrorKind::EofNotTerminated))
                }
            }
            let track = &mut self.tracks[index];
            let computed = std::mem::replace(&mut track.crc, CRC64.digest()).finalize();
            if computed != header.crc {
                return Err(at(
                    start,
                    Some(ns),
                    ReadErrorKind::CrcMismatch {
                        stored: header.crc,
                        computed,
                    },
                ));
            }
            track.state = NsState::Closed;
            self.open_count -= 1;
            return Ok(Some(Event::NamespaceEnd {
                namespace: ns,
                documents: track.documents,
                document_bytes: track.document_bytes,
                segments: track.segments,
                crc: computed,
            }));
        }

        if state == NsState::Pending {
            if self.oplog_started {
                return Err(at(start, Some(ns), ReadErrorKind::AfterOplog));
            }
            if ns.is_oplog() {
                let pending: Vec<Namespace> = self
                    .tracks
                    .iter()
                    .filter(|t| t.state != NsState::Closed && !t.data.is_oplog())
                    .map(|t| t.data.clone())
                    .collect();
                if !pending.is_empty() {
                    return Err(at(start, Some(ns), ReadErrorKind::OplogNotLast { pending }));
                }
                self.oplog_started = true;
            } else if ns.is_auth() {
                if self.non_auth_started {
                    return Err(at(start, Some(ns), ReadErrorKind::AuthNotFirst));
                }
            } else {
                self.non_auth_started = true;
            }
            let limit = self.header.concurrent_collections.max(1) as usize;
            if self.open_count + 1 > limit {
                return Err(at(
                    start,
                    Some(ns),
                    ReadErrorKind::TooManyOpen {
                        open: self.open_count + 1,
                        limit,
                    },
                ));
            }
            self.open_count += 1;
            self.tracks[index].state = NsState::Open;
        }
        self.tracks[index].segments += 1;
        self.position = Position::InSegment(index);
        Ok(Some(Event::SegmentStart { namespace: ns }))
    }

    fn end_of_input(&mut self) -> Result<Option<Event>, ReadError> {
        let missing: Vec<Namespace> = self
            .tracks
            .iter()
            .filter(|t| t.state != NsState::Closed)
            .map(|t| t.data.clone())
            .collect();
        if missing.is_empty() {
            Ok(None)
        } else {
            Err(at(self.offset, None, ReadErrorKind::Unfinished { missing }))
        }
    }

    fn read_prelude(&mut self) -> Result<(), ReadError> {
        let start = self.offset;
        let header = match self.read_item("the archive header")? {
            Item::Terminator => return Err(at(start, None, ReadErrorKind::HeaderlessBlock)),
            Item::Document(doc) => doc,
        };
        let (header, version) = parse_header_doc(&header)
            .map_err(|reason| at(start, None, ReadErrorKind::InvalidHeader { reason }))?;
        self.server = ServerVersion::parse(&header.server_version)
            .map_err(|e| at(start, None, ReadErrorKind::InvalidServerVersion(e)))?;
        self.header = header;
        self.format_version = version;

        let mut prelude_names: HashMap<Namespace, ()> = HashMap::new();
        loop {
            let start = self.offset;
            let doc = match self.read_item("the prelude")? {
                Item::Terminator => break,
                Item::Document(doc) => doc,
            };
            let meta = parse_metadata_doc(&doc)
                .map_err(|reason| at(start, None, ReadErrorKind::InvalidPreludeEntry { reason }))?;
            let ns = meta.namespace();
            let fail = |kind| at(start, Some(ns.clone()), kind);
            if !ns.is_oplog() {
                check_db_name(&meta.db).map_err(|problem| {
                    fail(ReadErrorKind::InvalidDbName {
                        db: meta.db.clone(),
                        problem,
                    })
                })?;
            }
            check_collection_name(&meta.collection).map_err(|problem| {
                fail(ReadErrorKind::InvalidCollectionName {
                    collection: meta.collection.clone(),
                    problem,
                })
            })?;
            let parsed = check_metadata_json(&meta.metadata_json)
                .map_err(|e| fail(ReadErrorKind::InvalidMetadata(e)))?;
            let timeseries = meta.kind == NamespaceKind::Timeseries
                || parsed.as_ref().is_some_and(has_timeseries_options);
            let kind = if timeseries {
                NamespaceKind::Timeseries
            } else {
                meta.kind
            };
            let data = Namespace::new(
                meta.db.clone(),
                data_collection(kind, &meta.collection, self.server),
            );
            if prelude_names.insert(ns.clone(), ()).is_some() || self.by_data.contains_key(&data) {
                return Err(fail(ReadErrorKind::DuplicateNamespace));
            }
            self.by_data.insert(data.clone(), self.tracks.len());
            self.tracks.push(NsTrack {
                data,
                state: NsState::Pending,
                crc: CRC64.digest(),
                documents: 0,
                document_bytes: 0,
                segments: 0,
            });
            self.prelude.push(meta);
        }
        Ok(())
    }

    /// Reads a terminator or a whole document; the end of input is truncation.
    fn read_item(&mut self, context: &'static str) -> Result<Item, ReadError> {
        let start = self.offset;
        let mut prefix = [0_u8; 4];
        let n = fill(&mut self.input, &mut prefix).map_err(|e| self.io(e))?;
        self.offset += n as u64;
        if n < 4 {
            return Err(at(
                start,
                self.current_ns(),
                ReadErrorKind::Truncated { context },
            ));
        }
        self.item_after_prefix(prefix, start, context)
    }

    fn item_after_prefix(
        &mut self,
        prefix: [u8; 4],
        start: u64,
        context: &'static str,
    ) -> Result<Item, ReadError> {
        if prefix == [0xff; 4] {
            return Ok(Item::Terminator);
        }
        let length = u32::from_le_bytes(prefix);
        let size = length as usize;
        if !(MIN_DOCUMENT_SIZE..=MAX_DOCUMENT_SIZE).contains(&size) {
            return Err(at(
                start,
                self.current_ns(),
                ReadErrorKind::BadDocumentLength { length },
            ));
        }
        let mut doc = vec![0_u8; size];
        doc[..4].copy_from_slice(&prefix);
        let n = fill(&mut self.input, &mut doc[4..]).map_err(|e| self.io(e))?;
        self.offset += n as u64;
        if n < size - 4 {
            return Err(at(
                start,
                self.current_ns(),
                ReadErrorKind::Truncated { context },
            ));
        }
        if doc[size - 1] != 0 {
            return Err(at(
                start,
                self.current_ns(),
                ReadErrorKind::MissingDocumentNul,
            ));
        }
        Ok(Item::Document(doc))
    }

    fn current_ns(&self) -> Option<Namespace> {
        match self.position {
            Position::InSegment(index) => Some(self.tracks[index].data.clone()),
            _ => None,
        }
    }

    fn io(&self, e: io::Error) -> ReadError {
        at(self.offset, self.current_ns(), ReadErrorKind::Io(e))
    }
}

impl<R: Read> Iterator for ArchiveReader<R> {
    type Item = Result<Event, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_event().transpose()
    }
}

fn at(offset: u64, namespace: Option<Namespace>, kind: ReadErrorKind) -> ReadError {
    ReadError {
        offset,
        namespace,
        kind,
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn fill(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

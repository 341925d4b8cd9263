//! The pieces of the archive format shared by the writer and the reader:
//! constants, the header and namespace types, name rules, the server
//! version and the timeseries mapping, and the BSON of the header docs.
//!
//! Section numbers refer to `docs/archive-format.md`.

use std::fmt;
use std::str::FromStr;

use crc::{Crc, CRC_64_XZ};
use mongodb::bson::raw::{RawBsonRef, RawDocument, RawDocumentBuf};

/// `0x8199E26D` little-endian: the first four bytes of every archive (1).
pub const MAGIC: [u8; 4] = [0x6d, 0xe2, 0x99, 0x81];

/// The block terminator `0xFFFFFFFF` (1).
pub const TERMINATOR: [u8; 4] = [0xff; 4];

/// The archive format version written into the header (1.1).
pub const FORMAT_VERSION: &str = "0.1";

/// Smallest BSON document: length prefix and the closing NUL.
pub const MIN_DOCUMENT_SIZE: usize = 5;

/// Largest document the archive reader of mongorestore accepts (1).
pub const MAX_DOCUMENT_SIZE: usize = 16 * 1024 * 1024;

/// Default bound on the document bytes of one segment: mongodump flushes
/// 16 MiB buffers (1.5).
pub const DEFAULT_SEGMENT_LIMIT: usize = 16 * 1024 * 1024;

/// Longest database name restore accepts, in bytes (1.2).
pub const MAX_DB_NAME_BYTES: usize = 63;

/// Collection name of the oplog namespace; its database is `""` (1.2).
pub const OPLOG_COLLECTION: &str = "oplog";

/// The namespace CRC: Go `hash/crc64` with the ECMA table (1.4).
pub(crate) static CRC64: Crc<u64> = Crc::<u64>::new(&CRC_64_XZ);

/// The archive header (1.1), minus the format version, which is always
/// [`FORMAT_VERSION`] when written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveHeader {
    /// Dump parallelism. The writer keeps at most this many namespaces
    /// open at once (it keeps one); restore uses `max(this, -j)` workers.
    pub concurrent_collections: i32,
    /// The source server's version, `N.N.N` optionally followed by `-...`
    /// or `+...` (e.g. `8.0.3-120-gbc35ab4`).
    pub server_version: String,
    /// The dumping tool's version; only logged by restore.
    pub tool_version: String,
}

/// What a namespace of the prelude is: its `type` field (1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NamespaceKind {
    /// An ordinary collection (capped and clustered included).
    Collection,
    /// A view: definition only, never documents.
    View,
    /// A time series collection; see [`data_collection`].
    Timeseries,
    /// `type` empty or absent: the oplog entry, and archives of tools
    /// older than 100.0.
    Unspecified,
}

impl NamespaceKind {
    /// The value of the prelude's `type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            NamespaceKind::Collection => "collection",
            NamespaceKind::View => "view",
            NamespaceKind::Timeseries => "timeseries",
            NamespaceKind::Unspecified => "",
        }
    }

    /// Parses a `type` field; `None` for a value mongodump never writes.
    pub fn from_type_field(value: &str) -> Option<NamespaceKind> {
        match value {
            "collection" => Some(NamespaceKind::Collection),
            "view" => Some(NamespaceKind::View),
            "timeseries" => Some(NamespaceKind::Timeseries),
            "" => Some(NamespaceKind::Unspecified),
            _ => None,
        }
    }
}

/// A database and collection name pair. Displays as `db.collection`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace {
    /// Database name (`""` for the oplog).
    pub db: String,
    /// Collection name, raw (not escaped).
    pub collection: String,
}

impl Namespace {
    /// Builds a namespace from its two names.
    pub fn new(db: impl Into<String>, collection: impl Into<String>) -> Namespace {
        Namespace {
            db: db.into(),
            collection: collection.into(),
        }
    }

    /// The oplog namespace, `"".oplog`.
    pub fn oplog() -> Namespace {
        Namespace::new("", OPLOG_COLLECTION)
    }

    /// Whether this is the oplog namespace.
    pub fn is_oplog(&self) -> bool {
        self.db.is_empty() && self.collection == OPLOG_COLLECTION
    }

    /// Whether this is `admin.system.users`, `.roles` or `.version`, which
    /// restore needs before any other namespace (1.5 rule 4).
    pub fn is_auth(&self) -> bool {
        self.db == "admin"
            && matches!(
                self.collection.as_str(),
                "system.users" | "system.roles" | "system.version"
            )
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.db, self.collection)
    }
}

/// One collection-metadata document of the prelude (1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceMeta {
    /// Database name.
    pub db: String,
    /// Collection name, raw (not escaped).
    pub collection: String,
    /// The `.metadata.json` text (see [`crate::metadata_json`]), or `""`.
    pub metadata_json: String,
    /// The `type` field.
    pub kind: NamespaceKind,
}

impl NamespaceMeta {
    /// The oplog entry `{db:"", collection:"oplog", metadata:"", size:0, type:""}`.
    pub fn oplog() -> NamespaceMeta {
        NamespaceMeta {
            db: String::new(),
            collection: OPLOG_COLLECTION.to_owned(),
            metadata_json: String::new(),
            kind: NamespaceKind::Unspecified,
        }
    }

    /// The namespace as declared in the prelude.
    pub fn namespace(&self) -> Namespace {
        Namespace::new(self.db.clone(), self.collection.clone())
    }
}

/// A server version `major.minor.patch`, as restore parses the header's
/// `server_version` (1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
}

/// Sources before this version keep timeseries data in `system.buckets.X`
/// inside the archive (1.5 rule 5).
pub const TIMESERIES_VIEWLESS_SINCE: ServerVersion = ServerVersion {
    major: 8,
    minor: 3,
    patch: 0,
};

/// A `server_version` that restore cannot parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "server version {value:?} is not N.N.N (optionally followed by -suffix or +suffix); \
     mongorestore refuses such an archive"
)]
pub struct InvalidServerVersion {
    /// The rejected text.
    pub value: String,
}

impl ServerVersion {
    /// Parses `N.N.N` after cutting at the first `-` or `+`.
    pub fn parse(value: &str) -> Result<ServerVersion, InvalidServerVersion> {
        let invalid = || InvalidServerVersion {
            value: value.to_owned(),
        };
        let core = value.split(['-', '+']).next().unwrap_or_default();
        let mut parts = core.split('.');
        let mut next = || -> Result<u32, InvalidServerVersion> {
            let part = parts.next().ok_or_else(invalid)?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            part.parse().map_err(|_| invalid())
        };
        let version = ServerVersion {
            major: next()?,
            minor: next()?,
            patch: next()?,
        };
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(version)
    }

    /// Whether a timeseries collection's documents travel under
    /// `system.buckets.<name>` for a source of this version.
    pub fn timeseries_uses_buckets_namespace(self) -> bool {
        self < TIMESERIES_VIEWLESS_SINCE
    }
}

impl FromStr for ServerVersion {
    type Err = InvalidServerVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ServerVersion::parse(s)
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The collection name under which a namespace's documents appear in the
/// archive body (1.5 rule 5): `system.buckets.<name>` for a timeseries
/// collection of a source older than 8.3.0, the name itself otherwise.
///
/// The prelude always lists `<name>`; only the body differs.
pub fn data_collection(kind: NamespaceKind, collection: &str, source: ServerVersion) -> String {
    if kind == NamespaceKind::Timeseries && source.timeseries_uses_buckets_namespace() {
        format!("system.buckets.{collection}")
    } else {
        collection.to_owned()
    }
}

/// Why a database or collection name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameProblem {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_DB_NAME_BYTES`].
    TooLong,
    /// The name holds a character restore refuses.
    ForbiddenChar(char),
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameProblem::Empty => f.write_str("it is empty"),
            NameProblem::TooLong => write!(f, "it is longer than {MAX_DB_NAME_BYTES} bytes"),
            NameProblem::ForbiddenChar(c) => write!(f, "it contains {c:?}"),
        }
    }
}

/// Restore's database-name check (1.2): non-empty, at most 63 bytes, none
/// of `/ \ . space " NUL $`.
pub fn check_db_name(db: &str) -> Result<(), NameProblem> {
    if db.is_empty() {
        return Err(NameProblem::Empty);
    }
    if db.len() > MAX_DB_NAME_BYTES {
        return Err(NameProblem::TooLong);
    }
    if let Some(c) = db
        .chars()
        .find(|c| matches!(c, '/' | '\\' | '.' | ' ' | '"' | '\0' | '$'))
    {
        return Err(NameProblem::ForbiddenChar(c));
    }
    Ok(())
}

/// Collection names: non-empty and without NUL (a namespace header needs a
/// non-empty collection, 1.3; the server refuses NUL in names).
pub fn check_collection_name(collection: &str) -> Result<(), NameProblem> {
    if collection.is_empty() {
        return Err(NameProblem::Empty);
    }
    if collection.contains('\0') {
        return Err(NameProblem::ForbiddenChar('\0'));
    }
    Ok(())
}

/// Why a data document is refused: what mongorestore calls "corruption
/// found in archive" (1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentProblem {
    /// Fewer than 5 bytes, or more than 16 MiB.
    BadSize(usize),
    /// The length prefix does not match the bytes given.
    LengthMismatch {
        /// The length prefix.
        declared: u32,
        /// The bytes given.
        actual: usize,
    },
    /// The last byte is not `0x00`.
    NoTrailingNul,
}

impl fmt::Display for DocumentProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DocumentProblem::BadSize(n) => write!(
                f,
                "a BSON document is {MIN_DOCUMENT_SIZE}..={MAX_DOCUMENT_SIZE} bytes, not {n}"
            ),
            DocumentProblem::LengthMismatch { declared, actual } => write!(
                f,
                "length prefix says {declared} bytes but {actual} were given"
            ),
            DocumentProblem::NoTrailingNul => f.write_str("the last byte is not 0x00"),
        }
    }
}

/// Checks the framing of one BSON document as restore's parser does.
pub fn check_document(doc: &[u8]) -> Result<(), DocumentProblem> {
    if !(MIN_DOCUMENT_SIZE..=MAX_DOCUMENT_SIZE).contains(&doc.len()) {
        return Err(DocumentProblem::BadSize(doc.len()));
    }
    let declared = u32::from_le_bytes([doc[0], doc[1], doc[2], doc[3]]);
    if declared as usize != doc.len() {
        return Err(DocumentProblem::LengthMismatch {
            declared,
            actual: doc.len(),
        });
    }
    if doc[doc.len() - 1] != 0 {
        return Err(DocumentProblem::NoTrailingNul);
    }
    Ok(())
}

/// BSON of the archive header (1.1).
pub(crate) fn header_doc(header: &ArchiveHeader) -> RawDocumentBuf {
    let mut doc = RawDocumentBuf::new();
    doc.append("concurrent_collections", header.concurrent_collections);
    doc.append("version", FORMAT_VERSION);
    doc.append("server_version", header.server_version.as_str());
    doc.append("tool_version", header.tool_version.as_str());
    doc
}

/// BSON of a collection-metadata document (1.2).
pub(crate) fn metadata_doc(meta: &NamespaceMeta) -> RawDocumentBuf {
    let mut doc = RawDocumentBuf::new();
    doc.append("db", meta.db.as_str());
    doc.append("collection", meta.collection.as_str());
    doc.append("metadata", meta.metadata_json.as_str());
    doc.append("size", 0_i32);
    doc.append("type", meta.kind.as_str());
    doc
}

/// BSON of a namespace header (1.3): exactly `db, collection, EOF, CRC`.
pub(crate) fn namespace_header_doc(ns: &Namespace, eof: bool, crc: u64) -> RawDocumentBuf {
    let mut doc = RawDocumentBuf::new();
    doc.append("db", ns.db.as_str());
    doc.append("collection", ns.collection.as_str());
    doc.append("EOF", eof);
    // The 64 CRC bits stored unchanged in an int64 (1.4).
    doc.append("CRC", crc as i64);
    doc
}

/// A parsed namespace header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamespaceHeader {
    pub namespace: Namespace,
    pub eof: bool,
    pub crc: u64,
}

/// Parses a namespace header, requiring exactly the four fields in order
/// with their types, as mongorestore >= 100.14 does (1.3).
pub(crate) fn parse_namespace_header(bytes: &[u8]) -> Result<NamespaceHeader, String> {
    let doc = RawDocument::from_bytes(bytes).map_err(|e| e.to_string())?;
    let mut fields = doc.iter();
    let mut next = |name: &str| -> Result<RawBsonRef<'_>, String> {
        match fields.next() {
            Some(Ok((key, value))) if key == name => Ok(value),
            Some(Ok((key, _))) => Err(format!("expected field {name:?}, found {key:?}")),
            Some(Err(e)) => Err(e.to_string()),
            None => Err(format!("missing field {name:?}")),
        }
    };
    let db = match next("db")? {
        RawBsonRef::String(s) => s.to_owned(),
        other => return Err(wrong_type("db", "string", other)),
    };
    let collection = match next("collection")? {
        RawBsonRef::String(s) => s.to_owned(),
        other => return Err(wrong_type("collection", "string", other)),
    };
    let eof = match next("EOF")? {
        RawBsonRef::Boolean(b) => b,
        other => return Err(wrong_type("EOF", "bool", other)),
    };
    let crc = match next("CRC")? {
        RawBsonRef::Int64(v) => v as u64,
        other => return Err(wrong_type("CRC", "int64", other)),
    };
    match fields.next() {
        None => {}
        Some(Ok((key, _))) => return Err(format!("unexpected extra field {key:?}")),
        Some(Err(e)) => return Err(e.to_string()),
    }
    if collection.is_empty() {
        return Err("empty collection name".to_owned());
    }
    Ok(NamespaceHeader {
        namespace: Namespace { db, collection },
        eof,
        crc,
    })
}

/// Parsed archive header with the format version it declared.
pub(crate) fn parse_header_doc(bytes: &[u8]) -> Result<(ArchiveHeader, String), String> {
    let doc = RawDocument::from_bytes(bytes).map_err(|e| e.to_string())?;
    let mut concurrent_collections = None;
    let mut version = None;
    let mut server_version = None;
    let mut tool_version = None;
    // Restore unmarshals the header into a struct: order does not matter and
    // unknown fields are ignored, but the types must fit.
    for field in doc.iter() {
        let (key, value) = field.map_err(|e| e.to_string())?;
        match key {
            "concurrent_collections" => match value {
                RawBsonRef::Int32(v) => concurrent_collections = Some(v),
                other => return Err(wrong_type(key, "int32", other)),
            },
            "version" => version = Some(string_field(key, value)?),
            "server_version" => server_version = Some(string_field(key, value)?),
            "tool_version" => tool_version = Some(string_field(key, value)?),
            _ => {}
        }
    }
    let header = ArchiveHeader {
        concurrent_collections: concurrent_collections.unwrap_or(0),
        server_version: server_version.ok_or("missing field \"server_version\"")?,
        tool_version: tool_version.unwrap_or_default(),
    };
    Ok((header, version.unwrap_or_default()))
}

/// Parses a collection-metadata document of the prelude (1.2).
pub(crate) fn parse_metadata_doc(bytes: &[u8]) -> Result<NamespaceMeta, String> {
    let doc = RawDocument::from_bytes(bytes).map_err(|e| e.to_string())?;
    let mut db = None;
    let mut collection = None;
    let mut metadata = None;
    let mut kind = NamespaceKind::Unspecified;
    for field in doc.iter() {
        let (key, value) = field.map_err(|e| e.to_string())?;
        match key {
            "db" => db = Some(string_field(key, value)?),
            "collection" => collection = Some(string_field(key, value)?),
            "metadata" => metadata = Some(string_field(key, value)?),
            "size" => match value {
                RawBsonRef::Int32(_) | RawBsonRef::Int64(_) => {}
                other => return Err(wrong_type(key, "int32", other)),
            },
            "type" => {
                let value = string_field(key, value)?;
                kind = NamespaceKind::from_type_field(&value)
                    .ok_or_else(|| format!("unknown type {value:?}"))?;
            }
            _ => {}
        }
    }
    Ok(NamespaceMeta {
        db: db.ok_or("missing field \"db\"")?,
        collection: collection.ok_or("missing field \"collection\"")?,
        metadata_json: metadata.unwrap_or_default(),
        kind,
    })
}

fn string_field(key: &str, value: RawBsonRef<'_>) -> Result<String, String> {
    match value {
        RawBsonRef::String(s) => Ok(s.to_owned()),
        other => Err(wrong_type(key, "string", other)),
    }
}

fn wrong_type(key: &str, expected: &str, found: RawBsonRef<'_>) -> String {
    format!(
        "field {key:?} must be {expected}, found {:?}",
        found.element_type()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_is_crc64_xz() {
        assert_eq!(CRC64.checksum(b"123456789"), 0x995D_C9BB_DF19_39FA);
        assert_eq!(CRC64.checksum(b""), 0);
    }

    #[test]
    fn server_versions() {
        let v = |s: &str| ServerVersion::parse(s).ok();
        assert_eq!(
            v("8.0.3-120-gbc35ab4"),
            Some(ServerVersion {
                major: 8,
                minor: 0,
                patch: 3
            })
        );
        assert_eq!(v("5.0.0-rc0").map(|v| v.to_string()), Some("5.0.0".into()));
        assert_eq!(v("7.0.14+build").map(|v| v.patch), Some(14));
        for bad in [
            "unknown", "", "8.0", "8.0.3.1", "8..3", "v8.0.3", "8.0.x", "-8.0.3",
        ] {
            assert_eq!(v(bad), None, "{bad:?}");
        }
        assert!(v("8.2.9").unwrap().timeseries_uses_buckets_namespace());
        assert!(!v("8.3.0-rc1").unwrap().timeseries_uses_buckets_namespace());
    }

    #[test]
    fn timeseries_mapping() {
        let old = ServerVersion::parse("7.0.14").unwrap();
        let new = ServerVersion::parse("8.3.0").unwrap();
        assert_eq!(
            data_collection(NamespaceKind::Timeseries, "ts", old),
            "system.buckets.ts"
        );
        assert_eq!(data_collection(NamespaceKind::Timeseries, "ts", new), "ts");
        assert_eq!(data_collection(NamespaceKind::Collection, "ts", old), "ts");
    }

    #[test]
    fn db_names() {
        assert!(check_db_name("test").is_ok());
        assert!(check_db_name("café").is_ok());
        assert!(check_db_name(&"a".repeat(63)).is_ok());
        assert_eq!(check_db_name(&"a".repeat(64)), Err(NameProblem::TooLong));
        assert_eq!(check_db_name(""), Err(NameProblem::Empty));
        for c in ['/', '\\', '.', ' ', '"', '\0', '$'] {
            assert_eq!(
                check_db_name(&format!("a{c}b")),
                Err(NameProblem::ForbiddenChar(c))
            );
        }
    }

    #[test]
    fn documents() {
        assert!(check_document(&[5, 0, 0, 0, 0]).is_ok());
        assert_eq!(
            check_document(&[4, 0, 0, 0]),
            Err(DocumentProblem::BadSize(4))
        );
        assert_eq!(
            check_document(&[6, 0, 0, 0, 0]),
            Err(DocumentProblem::LengthMismatch {
                declared: 6,
                actual: 5
            })
        );
        assert_eq!(
            check_document(&[5, 0, 0, 0, 1]),
            Err(DocumentProblem::NoTrailingNul)
        );
    }

    #[test]
    fn namespace_header_round_trip_and_strictness() {
        let ns = Namespace::new("test", "foo");
        let doc = namespace_header_doc(&ns, true, u64::MAX - 1);
        let parsed = parse_namespace_header(doc.as_bytes()).unwrap();
        assert_eq!(parsed.namespace, ns);
        assert!(parsed.eof);
        assert_eq!(parsed.crc, u64::MAX - 1);

        let mut extra = namespace_header_doc(&ns, false, 0);
        extra.append("x", 1_i32);
        assert!(parse_namespace_header(extra.as_bytes())
            .unwrap_err()
            .contains("extra"));

        let mut int32_crc = RawDocumentBuf::new();
        int32_crc.append("db", "test");
        int32_crc.append("collection", "foo");
        int32_crc.append("EOF", false);
        int32_crc.append("CRC", 0_i32);
        assert!(parse_namespace_header(int32_crc.as_bytes())
            .unwrap_err()
            .contains("int64"));
    }
}

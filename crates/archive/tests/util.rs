//! Test helpers: the test vectors of `testdata/mongodump`, BSON documents,
//! hand-built archives.

use std::path::Path;

use mongobak_archive::{ArchiveHeader, NamespaceKind, NamespaceMeta, MAGIC, TERMINATOR};
use mongodb::bson::{rawdoc, RawDocumentBuf};

/// Bytes of a file under `testdata/mongodump/` at the top of the repository.
pub fn testdata(path: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/mongodump")
        .join(path);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub fn header(server_version: &str) -> ArchiveHeader {
    ArchiveHeader {
        concurrent_collections: 1,
        server_version: server_version.to_owned(),
        tool_version: "test".to_owned(),
    }
}

pub fn meta(db: &str, collection: &str, kind: NamespaceKind) -> NamespaceMeta {
    NamespaceMeta {
        db: db.to_owned(),
        collection: collection.to_owned(),
        metadata_json: String::new(),
        kind,
    }
}

/// `{_id: i}` as BSON bytes.
pub fn id_doc(i: i32) -> Vec<u8> {
    rawdoc! { "_id": i }.into_bytes()
}

/// Low-level archive pieces, to build archives that break rules.
pub struct Raw(pub Vec<u8>);

impl Raw {
    /// MAGIC and a header with the given concurrency and server version.
    pub fn new(concurrent_collections: i32, server_version: &str) -> Raw {
        let mut raw = Raw(MAGIC.to_vec());
        raw.doc(&rawdoc! {
            "concurrent_collections": concurrent_collections,
            "version": "0.1",
            "server_version": server_version,
            "tool_version": "test",
        });
        raw
    }

    pub fn doc(&mut self, doc: &RawDocumentBuf) -> &mut Raw {
        self.0.extend_from_slice(doc.as_bytes());
        self
    }

    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Raw {
        self.0.extend_from_slice(bytes);
        self
    }

    pub fn term(&mut self) -> &mut Raw {
        self.bytes(&TERMINATOR)
    }

    pub fn meta(&mut self, db: &str, collection: &str, metadata: &str) -> &mut Raw {
        self.doc(&rawdoc! {
            "db": db, "collection": collection, "metadata": metadata, "size": 0_i32, "type": "collection",
        })
    }

    pub fn ns(&mut self, db: &str, collection: &str, eof: bool, crc: u64) -> &mut Raw {
        self.doc(&rawdoc! { "db": db, "collection": collection, "EOF": eof, "CRC": crc as i64 })
    }

    /// A whole namespace: one segment with `docs`, then its EOF block.
    pub fn namespace(&mut self, db: &str, collection: &str, docs: &[Vec<u8>]) -> &mut Raw {
        self.ns(db, collection, false, 0);
        let mut all = Vec::new();
        for doc in docs {
            self.bytes(doc);
            all.extend_from_slice(doc);
        }
        self.term();
        self.ns(db, collection, true, mongobak_archive::crc64(&all));
        self.term()
    }
}

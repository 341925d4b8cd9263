//! Test helpers: the test vectors of `testdata/mongodump`, archives read
//! back or built by hand, and what a server holds.

use std::path::Path;

use mongobak_archive::{
    metadata_json, ArchiveHeader, ArchiveWriter, GzipWriter, NamespaceKind, NamespaceMeta,
    DEFAULT_LEVEL,
};
use mongobak_restore::{restore_archive, Progress, RestoreError, RestoreOptions, RestoreReport};
use mongodb::bson::{doc, Bson, Document};
use mongodb::Client;

/// Bytes of a file under `testdata/mongodump/` at the top of the repository.
pub fn testdata(path: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/mongodump")
        .join(path);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub use mongobak_testkit::snapshot::archive_documents;

/// Restores `bytes` into `client`.
pub async fn restore(
    bytes: Vec<u8>,
    client: &Client,
    options: &RestoreOptions,
) -> Result<RestoreReport, RestoreError> {
    restore_archive(
        std::io::Cursor::new(bytes),
        client,
        options,
        &Progress::default(),
    )
    .await
}

/// Every document of `db.coll`, raw bytes, sorted.
pub async fn documents(client: &Client, db: &str, coll: &str) -> Vec<Vec<u8>> {
    mongobak_testkit::snapshot::documents(client, db, coll)
        .await
        .unwrap()
}

/// One document by `_id`.
pub async fn find_one(
    client: &Client,
    db: &str,
    coll: &str,
    id: impl Into<Bson>,
) -> Option<Document> {
    client
        .database(db)
        .collection::<Document>(coll)
        .find_one(doc! {"_id": id.into()})
        .await
        .unwrap()
}

/// The collection names of `db`, sorted.
pub async fn collection_names(client: &Client, db: &str) -> Vec<String> {
    let mut names = client.database(db).list_collection_names().await.unwrap();
    names.sort();
    names
}

/// A namespace of a hand-built archive.
pub struct Ns {
    pub db: &'static str,
    pub coll: &'static str,
    pub options: serde_json::Value,
    pub indexes: Vec<serde_json::Value>,
    pub docs: Vec<Document>,
}

impl Ns {
    pub fn new(db: &'static str, coll: &'static str, docs: Vec<Document>) -> Ns {
        Ns {
            db,
            coll,
            options: serde_json::json!({}),
            indexes: vec![
                serde_json::json!({"v": {"$numberInt": "2"}, "key": {"_id": {"$numberInt": "1"}}, "name": "_id_"}),
            ],
            docs,
        }
    }
}

/// Canonical extended JSON of a document.
pub fn json(document: Document) -> serde_json::Value {
    Bson::Document(document).into_canonical_extjson()
}

/// An archive (gzipped when `gzip`) of `namespaces` from a source of
/// `server_version`, with an oplog namespace when `oplog` is given.
pub fn build_archive(
    server_version: &str,
    namespaces: &[Ns],
    oplog: Option<&[Document]>,
    gzip: bool,
) -> Vec<u8> {
    let header = ArchiveHeader {
        concurrent_collections: 1,
        server_version: server_version.into(),
        tool_version: "restore-tests".into(),
    };
    let mut archive = ArchiveWriter::new(Vec::new(), header).unwrap();
    let mut metas = Vec::new();
    for ns in namespaces {
        let kind = if ns.options.get("viewOn").is_some() {
            NamespaceKind::View
        } else if ns.options.get("timeseries").is_some() {
            NamespaceKind::Timeseries
        } else {
            NamespaceKind::Collection
        };
        let indexes = if kind == NamespaceKind::View {
            Vec::new()
        } else {
            ns.indexes.clone()
        };
        let meta = NamespaceMeta {
            db: ns.db.into(),
            collection: ns.coll.into(),
            metadata_json: metadata_json(ns.coll, kind, &ns.options, &indexes, None).unwrap(),
            kind,
        };
        archive.add_namespace(meta.clone()).unwrap();
        metas.push(meta);
    }
    if oplog.is_some() {
        archive.add_namespace(NamespaceMeta::oplog()).unwrap();
    }
    for (ns, meta) in namespaces.iter().zip(&metas) {
        let data = archive.data_namespace(meta);
        archive.begin_namespace(&data.db, &data.collection).unwrap();
        for d in &ns.docs {
            archive
                .write_document(&mongodb::bson::to_vec(d).unwrap())
                .unwrap();
        }
        archive.end_namespace().unwrap();
    }
    if let Some(entries) = oplog {
        archive.begin_namespace("", "oplog").unwrap();
        for e in entries {
            archive
                .write_document(&mongodb::bson::to_vec(e).unwrap())
                .unwrap();
        }
        archive.end_namespace().unwrap();
    }
    let bytes = archive.finish().unwrap();
    if gzip {
        let mut gz = GzipWriter::new(Vec::new(), DEFAULT_LEVEL);
        std::io::Write::write_all(&mut gz, &bytes).unwrap();
        gz.finish().unwrap()
    } else {
        bytes
    }
}

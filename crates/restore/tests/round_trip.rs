//! A seeded SecantusDB backed up with `mongobak_dump::run_backup`, packed
//! into a gzipped archive the way download tasks pack it, and restored into
//! a second server: both states must be equal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::TryStreamExt;
use mongobak_archive::{
    metadata_json, ArchiveHeader, ArchiveWriter, GzipWriter, NamespaceKind, NamespaceMeta,
    DEFAULT_LEVEL,
};
use mongobak_blob::BlobStore;
use mongobak_dump::format::{CollectionEntry, CollectionKind, ReplicaSetManifest};
use mongobak_dump::{read_manifests, run_backup, BackupSource, DumpOptions, SegmentReader};
use mongobak_restore::{
    replay_oplog, restore_archive, OplogMethod, Progress, RestoreOptions, RestoreReport,
};
use mongobak_testkit::snapshot::snapshot;
use mongobak_testkit::{seed, MongoServer};
use mongodb::bson::{doc, Document};

use crate::util::documents;

fn store(dir: &tempfile::TempDir) -> BlobStore {
    BlobStore::open(&format!("file://{}/blobs", dir.path().display())).unwrap()
}

/// Backs `server` up and returns the replica set's manifest.
async fn backup(server: &MongoServer, store: &BlobStore, prefix: &str) -> ReplicaSetManifest {
    let source = BackupSource {
        instance_id: "cmgo-rt000001".into(),
        sharded: false,
        replica_sets: vec![("cmgo-rt000001_0".into(), server.uri())],
    };
    let options = DumpOptions {
        segment_bytes: 256 * 1024,
        collection_concurrency: 2,
        ..DumpOptions::default()
    };
    run_backup(
        &source,
        store,
        prefix,
        &options,
        &mongobak_dump::Progress::default(),
    )
    .await
    .unwrap();
    let (_, mut sets) = read_manifests(store, prefix).await.unwrap();
    sets.remove(0)
}

fn is_auth(c: &CollectionEntry) -> bool {
    c.db == "admin"
        && matches!(
            c.name.as_str(),
            "system.users" | "system.roles" | "system.version"
        )
}

/// The gzipped archive of a backed up replica set, in the order the
/// download packaging writes it: users, roles and version first, then the
/// rest, the oplog last.
async fn archive_of(store: &BlobStore, manifest: &ReplicaSetManifest) -> Vec<u8> {
    let header = ArchiveHeader {
        concurrent_collections: 1,
        server_version: manifest.server_version.clone(),
        tool_version: "mongobak-tests".into(),
    };
    let mut archive =
        ArchiveWriter::new(GzipWriter::new(Vec::new(), DEFAULT_LEVEL), header).unwrap();
    let mut ordered: Vec<&CollectionEntry> =
        manifest.collections.iter().filter(|c| is_auth(c)).collect();
    ordered.extend(manifest.collections.iter().filter(|c| !is_auth(c)));
    let mut metas = Vec::new();
    for c in &ordered {
        let kind = match c.kind {
            CollectionKind::Collection => NamespaceKind::Collection,
            CollectionKind::View => NamespaceKind::View,
            CollectionKind::Timeseries => NamespaceKind::Timeseries,
        };
        let meta = NamespaceMeta {
            db: c.db.clone(),
            collection: c.name.clone(),
            metadata_json: metadata_json(&c.name, kind, &c.options, &c.indexes, c.uuid.as_deref())
                .unwrap(),
            kind,
        };
        archive.add_namespace(meta.clone()).unwrap();
        metas.push(meta);
    }
    archive.add_namespace(NamespaceMeta::oplog()).unwrap();
    for (c, meta) in ordered.iter().zip(&metas) {
        let data = archive.data_namespace(meta);
        archive.begin_namespace(&data.db, &data.collection).unwrap();
        let mut reader = SegmentReader::new(store.clone(), &c.data);
        while let Some(document) = reader.next_document().await.unwrap() {
            archive.write_document(&document).unwrap();
        }
        archive.end_namespace().unwrap();
    }
    archive.begin_namespace("", "oplog").unwrap();
    let mut reader = SegmentReader::new(store.clone(), &manifest.oplog);
    while let Some(document) = reader.next_document().await.unwrap() {
        archive.write_document(&document).unwrap();
    }
    archive.end_namespace().unwrap();
    archive.finish().unwrap().finish().unwrap()
}

async fn restore_bytes(
    bytes: Vec<u8>,
    target: &MongoServer,
    options: &RestoreOptions,
) -> RestoreReport {
    let progress = Progress::default();
    let len = bytes.len() as u64;
    let report = restore_archive(
        std::io::Cursor::new(bytes),
        &target.client(),
        options,
        &progress,
    )
    .await
    .unwrap();
    assert_eq!(progress.input_bytes(), len, "the whole file was read");
    report
}

fn bytes_of(document: &Document) -> Vec<u8> {
    mongodb::bson::to_vec(document).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_server_restores_to_the_same_state() {
    let source = MongoServer::start().await;
    seed::seed(&source.client()).await.unwrap();
    let expected = snapshot(&source.client()).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let manifest = backup(&source, &store, "b").await;
    let bytes = archive_of(&store, &manifest).await;

    let target = MongoServer::start().await;
    let options = RestoreOptions {
        oplog_replay: true,
        batch_documents: 700,
        ..RestoreOptions::default()
    };
    let report = restore_bytes(bytes, &target, &options).await;
    let actual = snapshot(&target.client()).await.unwrap();

    // Users are the one thing SecantusDB cannot take back: their SCRAM keys
    // go in only through createUser, which wants the password.
    assert_eq!(
        report.users.skipped,
        vec!["backup-tester@admin".to_string()]
    );
    let mut expected_names: Vec<&String> = expected.keys().collect();
    expected_names.retain(|n| n.as_str() != "admin.system.users");
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected_names,
        "the same namespaces"
    );
    for (ns, got) in &actual {
        let want = &expected[ns];
        assert_eq!(got.kind, want.kind, "{ns}: kind");
        assert_eq!(
            bytes_of(&got.options),
            bytes_of(&want.options),
            "{ns}: options {:?} vs {:?}",
            got.options,
            want.options
        );
        let got_indexes: Vec<Vec<u8>> = got.indexes.iter().map(bytes_of).collect();
        let want_indexes: Vec<Vec<u8>> = want.indexes.iter().map(bytes_of).collect();
        assert_eq!(
            got_indexes, want_indexes,
            "{ns}: indexes {:?} vs {:?}",
            got.indexes, want.indexes
        );
        assert!(got.documents == want.documents, "{ns}: documents differ");
    }
    assert_eq!(actual["shop.capped"].documents.len(), 50);
    assert!(actual["shop.big"].documents[0].len() > seed::BIG_STRING);
    assert_eq!(
        report.namespace("crm.contacts").unwrap().inserted,
        seed::CONTACTS as u64
    );
    assert_eq!(report.namespace("shop.items").unwrap().indexes, 5);
    assert_eq!(
        report.namespace("shop.cheap").unwrap().kind,
        mongobak_restore::NamespaceKind::View
    );
    assert!(report.oplog.replayed);

    // Restoring again without drop: every document is a duplicate and the
    // state does not change, but for the time series: SecantusDB keeps
    // measurements as plain documents without a unique _id (as MongoDB
    // keeps measurements: only buckets have one), so they come in twice.
    let bytes = archive_of(&store, &manifest).await;
    let again = restore_bytes(bytes, &target, &RestoreOptions::default()).await;
    let inserted: Vec<(&str, u64)> = again
        .namespaces
        .iter()
        .filter(|n| n.inserted > 0)
        .map(|n| (n.namespace.as_str(), n.inserted))
        .collect();
    assert_eq!(
        inserted,
        vec![("shop.metrics", 1)],
        "{:#?}",
        again.namespaces
    );
    assert!(again.duplicates() >= seed::CONTACTS as u64);
    assert!(again.namespace("crm.contacts").unwrap().existed);
    let mut after = snapshot(&target.client()).await.unwrap();
    let metrics = after.remove("shop.metrics").unwrap();
    assert_eq!(metrics.documents.len(), 2);
    let mut before = actual.clone();
    before.remove("shop.metrics");
    assert!(
        after == before,
        "a second restore without drop changes nothing"
    );

    // With drop, the state is the source's again.
    let bytes = archive_of(&store, &manifest).await;
    let dropped = restore_bytes(
        bytes,
        &target,
        &RestoreOptions {
            drop: true,
            ..RestoreOptions::default()
        },
    )
    .await;
    assert_eq!(dropped.duplicates(), 0);
    assert!(snapshot(&target.client()).await.unwrap() == actual);
}

/// Inserts, `$set`/`$unset`, array pushes and pops, replacements and
/// deletes while `run` runs.
async fn while_writing<F: std::future::Future>(
    coll: mongodb::Collection<Document>,
    run: F,
) -> (F::Output, i64) {
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let id = i % 1000;
                match i % 6 {
                    0 => coll
                        .insert_one(doc! {"_id": 10_000 + i, "n": i, "arr": [i]})
                        .await
                        .map(drop),
                    1 => coll
                        .update_one(
                            doc! {"_id": id},
                            doc! {"$set": {"n": -i, "sub.x": i}, "$unset": {"s": ""}},
                        )
                        .await
                        .map(drop),
                    2 => coll
                        .update_one(doc! {"_id": id + 1}, doc! {"$push": {"arr": i}})
                        .await
                        .map(drop),
                    3 => coll
                        .update_one(doc! {"_id": id + 2}, doc! {"$pop": {"arr": 1}})
                        .await
                        .map(drop),
                    4 => coll
                        .replace_one(doc! {"_id": id + 3}, doc! {"n": i, "r": true})
                        .await
                        .map(drop),
                    _ => coll.delete_one(doc! {"_id": id + 4}).await.map(drop),
                }
                .unwrap();
                i += 1;
            }
            i
        })
    };
    let output = run.await;
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.unwrap();
    (output, writes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_during_a_backup_replay_to_the_source_state() {
    let source = MongoServer::start().await;
    let client = source.client();
    let coll = client.database("live").collection::<Document>("orders");
    coll.insert_many(
        (0..1000i64).map(
            |i| doc! {"_id": i, "n": i, "s": "x".repeat(300), "arr": [1, 2, 3], "sub": {"y": 1}},
        ),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let (manifest, writes) = while_writing(coll.clone(), backup(&source, &store, "live")).await;
    assert!(writes > 0);
    let slice_len = manifest.oplog.documents;
    assert!(slice_len > 0, "the writer ran during the backup");

    let target = MongoServer::start().await;
    let options = RestoreOptions {
        oplog_replay: true,
        ..RestoreOptions::default()
    };
    let report = restore_bytes(archive_of(&store, &manifest).await, &target, &options).await;
    assert_eq!(report.oplog.method, Some(OplogMethod::Translated));
    assert_eq!(report.oplog.entries, slice_len);

    // The slice brings the restore to the backup's end time; what the source
    // logged after it brings it to the source's present.
    let end: mongodb::bson::Timestamp = manifest.oplog_end.into();
    let tail: Vec<Document> = client
        .database("local")
        .collection::<Document>("oplog.rs")
        .find(doc! {"ts": {"$gt": end}})
        .sort(doc! {"$natural": 1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    replay_oplog(tail, &target.client(), &RestoreOptions::default())
        .await
        .unwrap();
    let want = documents(&client, "live", "orders").await;
    let got = documents(&target.client(), "live", "orders").await;
    assert_eq!(got.len(), want.len(), "{slice_len} slice entries");
    assert!(
        got == want,
        "the restored documents equal the source's ({slice_len} slice entries)"
    );
}

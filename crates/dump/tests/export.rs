//! The stored format exports itself: the backup of a seeded server, taken
//! by the dump engine, exported as a mongodump archive (gzipped and not)
//! and read back with the archive reader; and an export given up at its
//! stop signal leaves nothing behind.

use std::io::Read;

use mongobak_archive::{gunzip, ArchiveReader, Event};
use mongobak_blob::BlobStore;
use mongobak_dump::format::ReplicaSetManifest;
use mongobak_dump::stored::{export_archive, ExportError, ExportOptions, ExportProgress};
use mongobak_dump::{read_manifests, run_backup, BackupSource, DumpOptions, Progress};
use mongobak_testkit::{seed, MongoServer};
use mongodb::bson::{doc, Document};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

/// Backs `server` up into `store` and returns its replica set's manifest.
async fn backed_up(server: &MongoServer, store: &BlobStore) -> ReplicaSetManifest {
    let source = BackupSource {
        instance_id: "cmgo-expt0001".into(),
        sharded: false,
        replica_sets: vec![("cmgo-expt0001_0".into(), server.uri())],
    };
    run_backup(
        &source,
        store,
        "backups/b1",
        &DumpOptions::default(),
        &Progress::default(),
    )
    .await
    .unwrap();
    let (_, mut sets) = read_manifests(store, "backups/b1").await.unwrap();
    sets.remove(0)
}

/// `(namespace, documents)` of every namespace of an archive, in order.
fn namespaces(bytes: &[u8]) -> Vec<(String, u64)> {
    let input: Box<dyn Read + '_> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(gunzip(bytes))
    } else {
        Box::new(bytes)
    };
    let mut reader = ArchiveReader::new(input).unwrap();
    let mut out = Vec::new();
    while let Some(event) = reader.next_event().unwrap() {
        if let Event::NamespaceEnd {
            namespace,
            documents,
            ..
        } = event
        {
            let name = if namespace.is_oplog() {
                "oplog".to_string()
            } else if namespace.is_auth() {
                format!("auth {}.{}", namespace.db, namespace.collection)
            } else {
                format!("{}.{}", namespace.db, namespace.collection)
            };
            out.push((name, documents));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_sets_backup_exports_as_an_archive_auth_first_and_oplog_last() {
    let server = MongoServer::start().await;
    seed::seed(&server.client()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(&format!("file://{}/blobs", dir.path().display())).unwrap();
    let manifest = backed_up(&server, &store).await;
    let stored_documents = manifest
        .collections
        .iter()
        .map(|c| c.data.documents)
        .sum::<u64>()
        + manifest.oplog.documents;

    for (path, gzip_level) in [("out/b1.archive.gz", Some(1)), ("out/b1.archive", None)] {
        let progress = ExportProgress::default();
        let exported = export_archive(
            &store,
            manifest.clone(),
            store.writer(path).await.unwrap(),
            &ExportOptions {
                gzip_level,
                gzip_threads: 2,
            },
            &progress,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        let bytes = store.get(path).await.unwrap();
        assert_eq!(exported.bytes, bytes.len() as u64, "{path}");
        assert_eq!(exported.sha256, hex::encode(Sha256::digest(&bytes)));
        assert_eq!(bytes.starts_with(&[0x1f, 0x8b]), gzip_level.is_some());
        assert_eq!(progress.percent(), 99);

        let order = namespaces(&bytes);
        let auth = order.iter().filter(|(n, _)| n.starts_with("auth ")).count();
        assert!(auth > 0, "the seeded user is backed up: {order:?}");
        assert!(
            order[..auth].iter().all(|(n, _)| n.starts_with("auth ")),
            "auth namespaces first: {order:?}"
        );
        assert_eq!(order.last().unwrap().0, "oplog", "{order:?}");
        assert_eq!(order.len(), manifest.collections.len() + 1);
        let exported_documents: u64 = order.iter().map(|(_, d)| d).sum();
        assert_eq!(exported_documents, stored_documents);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_export_leaves_no_file() {
    let server = MongoServer::start().await;
    // More than one chunk of archive bytes, so the export writes to
    // storage (and sees the stop) before its end.
    let blobs: Vec<Document> = (0..48)
        .map(|n| doc! {"_id": n, "blob": "x".repeat(128 << 10)})
        .collect();
    server
        .client()
        .database("bulk")
        .collection::<Document>("blobs")
        .insert_many(blobs)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(&format!("file://{}/blobs", dir.path().display())).unwrap();
    let manifest = backed_up(&server, &store).await;

    let stop = CancellationToken::new();
    stop.cancel();
    let path = "out/stopped.archive";
    let failed = export_archive(
        &store,
        manifest,
        store.writer(path).await.unwrap(),
        &ExportOptions {
            gzip_level: None,
            gzip_threads: 1,
        },
        &ExportProgress::default(),
        &stop,
    )
    .await
    .unwrap_err();
    assert!(matches!(failed, ExportError::Stopped), "{failed}");
    assert!(!failed.is_transient());
    assert_eq!(store.size(path).await.unwrap(), None);
    assert!(store.list("out/").await.unwrap().is_empty());
}

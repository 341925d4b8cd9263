//! Backups of real SecantusDB servers, read back and compared with the
//! source.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::TryStreamExt;
use mongobak_blob::BlobStore;
use mongobak_dump::format::{CollectionKind, OplogTime, ReplicaSetManifest, SegmentSet};
use mongobak_dump::{
    read_manifests, run_backup, run_backup_until, BackupSource, Compression, DumpError,
    DumpOptions, Progress, SegmentReader,
};
use mongobak_testkit::snapshot::{snapshot, NamespaceState};
use mongobak_testkit::wait::eventually_every;
use mongobak_testkit::{seed, MongoServer};
use mongodb::bson::{doc, Bson, Document, RawDocumentBuf};
use tokio_util::sync::CancellationToken;

fn store(dir: &tempfile::TempDir) -> BlobStore {
    BlobStore::open(&format!("file://{}/blobs", dir.path().display())).unwrap()
}

fn source(servers: &[&MongoServer], sharded: bool) -> BackupSource {
    BackupSource {
        instance_id: "cmgo-test0001".into(),
        sharded,
        replica_sets: servers
            .iter()
            .enumerate()
            .map(|(n, s)| (format!("cmgo-test0001_{n}"), s.uri()))
            .collect(),
    }
}

fn small_segments() -> DumpOptions {
    DumpOptions {
        segment_bytes: 64 * 1024,
        ..DumpOptions::default()
    }
}

async fn read_all(store: &BlobStore, set: &SegmentSet) -> Vec<Vec<u8>> {
    let mut reader = SegmentReader::new(store.clone(), set);
    let mut out = Vec::new();
    while let Some(doc) = reader.next_document().await.unwrap() {
        out.push(doc);
    }
    out
}

fn bytes_of(document: &Document) -> Vec<u8> {
    mongodb::bson::to_vec(document).unwrap()
}

fn document_of(json: &serde_json::Value) -> Document {
    match Bson::try_from(json.clone()).unwrap() {
        Bson::Document(d) => d,
        other => panic!("not a document: {other:?}"),
    }
}

/// The namespaces of a replica set's backup, in the shape of a snapshot.
async fn restored_view(
    store: &BlobStore,
    manifest: &ReplicaSetManifest,
) -> BTreeMap<String, NamespaceState> {
    let mut out = BTreeMap::new();
    for c in &manifest.collections {
        let mut documents = read_all(store, &c.data).await;
        documents.sort();
        let mut indexes: Vec<Document> = c.indexes.iter().map(document_of).collect();
        indexes.sort_by(|a, b| {
            a.get_str("name")
                .unwrap_or("")
                .cmp(b.get_str("name").unwrap_or(""))
        });
        let kind = match c.kind {
            CollectionKind::Collection => "collection",
            CollectionKind::View => "view",
            CollectionKind::Timeseries => "timeseries",
        };
        out.insert(
            c.namespace(),
            NamespaceState {
                kind: kind.into(),
                options: document_of(&c.options),
                indexes: if c.db == "admin" && c.name.starts_with("system.") {
                    Vec::new()
                } else {
                    indexes
                },
                documents,
            },
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_reads_back_exactly_the_source() {
    let server = MongoServer::start().await;
    let client = server.client();
    seed::seed(&client).await.unwrap();
    let expected = snapshot(&client).await.unwrap();

    // Once zstd-compressed (the default) and once stored as it is.
    for (prefix, compression) in [
        ("backups/b1", Compression::Zstd(1)),
        ("backups/b2", Compression::None),
    ] {
        let options = DumpOptions {
            compression,
            ..small_segments()
        };
        backup_reads_back_as(&server, &expected, prefix, &options).await;
    }
}

/// Backs `server` up under `prefix` with `options` and checks that the
/// stored data reads back as `expected`.
async fn backup_reads_back_as(
    server: &MongoServer,
    expected: &BTreeMap<String, NamespaceState>,
    prefix: &str,
    options: &DumpOptions,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let progress = Progress::default();
    let manifest = run_backup(
        &source(&[server], false),
        &store,
        prefix,
        options,
        &progress,
    )
    .await
    .unwrap();
    assert_eq!(manifest.replica_sets.len(), 1);
    assert!(progress.documents() >= seed::CONTACTS as u64);
    // Nothing writes during this backup, so the estimates, asked for beside
    // the dump (and dropped should it end first), add up to at most what
    // was dumped, and the figure stops at 99 until the request is done.
    assert!(progress.expected_documents() <= progress.documents());
    assert_eq!(progress.percent(), 99);

    let (top, sets) = read_manifests(&store, prefix).await.unwrap();
    assert_eq!(top, manifest);
    let rs = &sets[0];
    assert_eq!(rs.set_name, "secantus");
    assert!(!rs.server_version.is_empty());
    assert!(rs.oplog_start <= rs.oplog_end);
    let actual = restored_view(&store, rs).await;
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the same namespaces"
    );
    for (ns, want) in expected {
        let got = &actual[ns];
        assert_eq!(got.kind, want.kind, "{ns}: kind");
        // Byte comparisons: key order matters (compound index keys).
        assert_eq!(
            bytes_of(&got.options),
            bytes_of(&want.options),
            "{ns}: options"
        );
        let got_indexes: Vec<Vec<u8>> = got.indexes.iter().map(bytes_of).collect();
        let want_indexes: Vec<Vec<u8>> = want.indexes.iter().map(bytes_of).collect();
        assert_eq!(got_indexes, want_indexes, "{ns}: indexes");
        assert!(got.documents == want.documents, "{ns}: documents differ");
    }
    // Spot checks of what the data set is for.
    assert_eq!(actual["shop.items"].indexes.len(), 6);
    assert_eq!(actual["shop.capped"].documents.len(), 50);
    assert!(actual["shop.big"].documents[0].len() > seed::BIG_STRING);
    assert!(actual["shop.empty"].documents.is_empty());
    assert!(actual.contains_key("shop.café.menü"));
    assert!(actual.contains_key("admin.system.users"));
    assert_eq!(actual["shop.cheap"].kind, "view");
    let contacts = rs
        .collections
        .iter()
        .find(|c| c.namespace() == "crm.contacts")
        .unwrap();
    assert!(
        contacts.data.segments.len() > 1,
        "large collections span several segments"
    );
    assert!(contacts.uuid.as_ref().is_some_and(|u| u.len() == 32));
    // Nothing but the backup's own files under its prefix.
    let extension = match options.compression {
        Compression::Zstd(_) => ".bson.zst",
        Compression::None => ".bson",
    };
    assert!(contacts.data.segments[0].path.ends_with(extension));
    let listed = store.list(&format!("{prefix}/")).await.unwrap();
    let referenced: usize = rs
        .collections
        .iter()
        .map(|c| c.data.segments.len())
        .sum::<usize>()
        + rs.oplog.segments.len()
        + 2;
    assert_eq!(listed.len(), referenced);
}

/// Applies oplog entries of the shapes the test writer produces (insert,
/// `$v: 2` diffs of top-level fields, replacement, delete) to documents
/// keyed by `_id`.
fn apply(state: &mut BTreeMap<String, BTreeMap<i64, Document>>, entry: &Document) {
    let ns = entry.get_str("ns").unwrap().to_string();
    if !ns.starts_with("live.") {
        return;
    }
    let o = entry.get_document("o").unwrap();
    let docs = state.entry(ns).or_default();
    match entry.get_str("op").unwrap() {
        "i" => {
            docs.insert(o.get_i64("_id").unwrap(), o.clone());
        }
        "d" => {
            docs.remove(&o.get_i64("_id").unwrap());
        }
        "u" => {
            let id = entry.get_document("o2").unwrap().get_i64("_id").unwrap();
            if let Ok(diff) = o.get_document("diff") {
                let doc = docs.get_mut(&id).expect("an update of a present document");
                for (k, v) in diff.get_document("updatedFields").unwrap() {
                    doc.insert(k, v.clone());
                }
                for k in diff.get_array("removedFields").unwrap() {
                    doc.remove(k.as_str().unwrap());
                }
            } else {
                docs.insert(id, o.clone());
            }
        }
        "n" | "c" => {}
        other => panic!("unexpected op {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_during_a_backup_replay_to_the_same_state() {
    let server = MongoServer::start().await;
    let client = server.client();
    let coll = client.database("live").collection::<Document>("orders");
    coll.insert_many((0..2000i64).map(|i| doc! {"_id": i, "n": i, "s": "x".repeat(200)}))
        .await
        .unwrap();

    // A writer inserting, updating, replacing and deleting while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let coll = coll.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let id = i % 2000;
                match i % 4 {
                    0 => coll
                        .insert_one(doc! {"_id": 10_000 + i, "n": i})
                        .await
                        .map(drop),
                    1 => coll
                        .update_one(
                            doc! {"_id": id},
                            doc! {"$set": {"n": -i}, "$unset": {"s": ""}},
                        )
                        .await
                        .map(drop),
                    2 => coll
                        .replace_one(doc! {"_id": id + 1}, doc! {"n": i, "r": true})
                        .await
                        .map(drop),
                    _ => coll.delete_one(doc! {"_id": id + 2}).await.map(drop),
                }
                .unwrap();
                i += 1;
            }
            i
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let options = DumpOptions {
        collection_concurrency: 1,
        ..small_segments()
    };
    run_backup(
        &source(&[&server], false),
        &store,
        "b",
        &options,
        &Progress::default(),
    )
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.unwrap();
    assert!(writes > 0);

    let (_, sets) = read_manifests(&store, "b").await.unwrap();
    let rs = &sets[0];
    // Dumped documents + the slice + what came after the slice = the end state.
    let mut state: BTreeMap<String, BTreeMap<i64, Document>> = BTreeMap::new();
    for c in rs.collections.iter().filter(|c| c.db == "live") {
        let docs = state.entry(c.namespace()).or_default();
        for bytes in read_all(&store, &c.data).await {
            let d: Document = RawDocumentBuf::from_bytes(bytes)
                .unwrap()
                .to_document()
                .unwrap();
            docs.insert(d.get_i64("_id").unwrap(), d);
        }
    }
    let slice = read_all(&store, &rs.oplog).await;
    assert!(!slice.is_empty(), "the writer ran during the backup");
    for bytes in &slice {
        apply(
            &mut state,
            &RawDocumentBuf::from_bytes(bytes.clone())
                .unwrap()
                .to_document()
                .unwrap(),
        );
    }
    let end: mongodb::bson::Timestamp = rs.oplog_end.into();
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
    for entry in &tail {
        apply(&mut state, entry);
    }
    let mut source: BTreeMap<i64, Document> = BTreeMap::new();
    let mut cursor = coll.find(doc! {}).await.unwrap();
    while let Some(d) = cursor.try_next().await.unwrap() {
        source.insert(d.get_i64("_id").unwrap(), d);
    }
    assert_eq!(
        state["live.orders"],
        source,
        "{} slice entries, {} after",
        slice.len(),
        tail.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_backup_cuts_every_shard_at_one_time() {
    let shard0 = MongoServer::start().await;
    let shard1 = MongoServer::start().await;
    for (n, shard) in [&shard0, &shard1].iter().enumerate() {
        shard
            .client()
            .database("app")
            .collection::<Document>("part")
            .insert_many((0..100i64).map(|i| doc! {"_id": i, "shard": n as i64}))
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let manifest = run_backup(
        &source(&[&shard0, &shard1], true),
        &store,
        "s",
        &small_segments(),
        &Progress::default(),
    )
    .await
    .unwrap();
    assert!(manifest.sharded);
    let (_, sets) = read_manifests(&store, "s").await.unwrap();
    assert_eq!(sets.len(), 2);
    assert_eq!(sets[0].oplog_end, sets[1].oplog_end, "one common end time");
    assert!(sets[0].oplog_end > OplogTime::ZERO);
    for (n, rs) in sets.iter().enumerate() {
        assert_eq!(rs.replica_set_id, format!("cmgo-test0001_{n}"));
        let part = rs
            .collections
            .iter()
            .find(|c| c.namespace() == "app.part")
            .unwrap();
        assert_eq!(part.data.documents, 100);
    }
}

/// 20,000 documents of about 500 bytes in `big.rows`.
async fn load_rows(client: &mongodb::Client) {
    let coll = client.database("big").collection::<Document>("rows");
    for chunk in 0..20i64 {
        coll.insert_many(
            (0..1000i64).map(|i| doc! {"_id": chunk * 1000 + i, "pad": "p".repeat(500)}),
        )
        .await
        .unwrap();
    }
}

/// Waits until the backup has read 1000 documents (or ended).
async fn wait_for_documents(progress: &Progress, backup: &tokio::task::JoinHandle<impl Sized>) {
    // Looked at often: the backup is to be caught in the middle.
    eventually_every(
        std::time::Duration::from_secs(60),
        std::time::Duration::from_millis(5),
        "the backup reading",
        async || (progress.documents() >= 1000 || backup.is_finished()).then_some(()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_backup_leaves_nothing() {
    let server = MongoServer::start().await;
    load_rows(&server.client()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let progress = Arc::new(Progress::default());
    let stop = CancellationToken::new();
    let backup = {
        let (store, source) = (store.clone(), source(&[&server], false));
        let (progress, stop) = (progress.clone(), stop.clone());
        tokio::spawn(async move {
            // Small segments: writers are often closing one when it stops.
            let options = DumpOptions {
                segment_bytes: 32 * 1024,
                ..DumpOptions::default()
            };
            run_backup_until(&source, &store, "s", &options, &progress, &stop).await
        })
    };
    wait_for_documents(&progress, &backup).await;
    assert!(
        !store.list("s/").await.unwrap().is_empty(),
        "segments were written before the stop"
    );
    stop.cancel();
    let error = backup.await.unwrap().expect_err("a stopped backup fails");
    assert!(matches!(error, DumpError::Stopped), "{error}");
    assert!(
        store.list("s/").await.unwrap().is_empty(),
        "partial data is deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_backup_fails_it_and_leaves_nothing() {
    let mut server = MongoServer::start().await;
    let client = server.client();
    load_rows(&client).await;
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let progress = Arc::new(Progress::default());
    let backup = {
        let store = store.clone();
        let source = source(&[&server], false);
        let progress = progress.clone();
        tokio::spawn(async move {
            let options = DumpOptions {
                segment_bytes: 32 * 1024,
                ..DumpOptions::default()
            };
            run_backup(&source, &store, "k", &options, &progress).await
        })
    };
    // Kill the server once the backup is reading documents.
    wait_for_documents(&progress, &backup).await;
    server.kill();
    let result = backup.await.unwrap();
    let error = result.expect_err("a backup of a dead server fails");
    assert!(
        matches!(error, DumpError::Mongo { .. } | DumpError::Connect { .. }),
        "{error}"
    );
    assert!(
        store.list("k/").await.unwrap().is_empty(),
        "partial data is deleted"
    );
}

#[tokio::test]
async fn unreachable_and_standalone_servers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let port = mongobak_testkit::free_port();
    let unreachable = BackupSource {
        instance_id: "cmgo-x".into(),
        sharded: false,
        replica_sets: vec![(
            "cmgo-x_0".into(),
            format!(
                "mongodb://127.0.0.1:{port}/?directConnection=true&serverSelectionTimeoutMS=500"
            ),
        )],
    };
    let error = run_backup(
        &unreachable,
        &store,
        "u",
        &DumpOptions::default(),
        &Progress::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, DumpError::Connect { .. }), "{error}");
    assert!(error.to_string().contains("cmgo-x_0"));
}

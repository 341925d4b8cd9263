//! The test vectors of `testdata/mongodump` (mongodump's archives and the
//! synthetic ones built to the same rules) restored into fresh SecantusDB
//! servers.

use mongobak_restore::{NamespaceKind, OplogMethod, Progress, RestoreError, RestoreOptions};
use mongobak_testkit::MongoServer;
use mongodb::bson::{doc, Bson, Document, RawDocumentBuf};

use crate::util::{archive_documents, collection_names, documents, restore, testdata};

fn sorted(mut docs: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    docs.sort();
    docs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_bar_archive_of_mongodb_3_4() {
    let server = MongoServer::start().await;
    let client = server.client();
    let bytes = testdata("mongo-tools/test.bar.archive");
    let expected = archive_documents(&bytes);
    let report = restore(bytes, &client, &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(report.source_server_version, "3.4.3");
    assert_eq!(
        documents(&client, "test", "bar").await,
        sorted(expected["test.bar"].clone())
    );
    let bar = report.namespace("test.bar").unwrap();
    assert_eq!((bar.inserted, bar.duplicates, bar.indexes), (1, 0, 0));
    let version = report.namespace("admin.system.version").unwrap();
    assert_eq!(version.kind, NamespaceKind::Skipped);
    assert!(version.skipped.is_some());
    assert!(!report.oplog.present);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_with_oplog_replays_its_oplog() {
    let bytes = testdata("mongo-tools/dump-w-oplog.archive");
    let expected = archive_documents(&bytes);
    assert_eq!(expected["test.foo"].len(), 25);
    assert_eq!(expected[".oplog"].len(), 18);

    // Without replay: the dumped documents only.
    let plain = MongoServer::start().await;
    let report = restore(bytes.clone(), &plain.client(), &RestoreOptions::default())
        .await
        .unwrap();
    assert!(report.oplog.present && !report.oplog.replayed);
    assert_eq!(report.oplog.skipped, 18);
    assert_eq!(
        documents(&plain.client(), "test", "foo").await,
        sorted(expected["test.foo"].clone())
    );

    // With replay: the 16 inserts on test.foo are applied again (the dump
    // already holds them: upserts leave the same documents), the two on
    // config.system.sessions are skipped.
    let server = MongoServer::start().await;
    let client = server.client();
    let options = RestoreOptions {
        oplog_replay: true,
        ..RestoreOptions::default()
    };
    let progress = Progress::default();
    let report = mongobak_restore::restore_archive(
        std::io::Cursor::new(bytes.clone()),
        &client,
        &options,
        &progress,
    )
    .await
    .unwrap();
    assert!(report.oplog.replayed);
    assert_eq!(report.oplog.entries, 18);
    assert_eq!(report.oplog.applied, 16);
    assert_eq!(report.oplog.skipped, 2);
    assert_eq!(report.oplog.method, Some(OplogMethod::Translated));
    assert_eq!(progress.oplog_entries(), 18);
    assert_eq!(progress.input_bytes(), bytes.len() as u64);
    assert_eq!(
        documents(&client, "test", "foo").await,
        sorted(expected["test.foo"].clone())
    );
    assert!(!collection_names(&client, "config")
        .await
        .contains(&"system.sessions".to_string()));

    // Replaying onto a state without the dumped documents shows the oplog
    // itself is applied: the 16 inserted documents come back.
    let fresh = MongoServer::start().await;
    let oplog: Vec<Document> = expected[".oplog"]
        .iter()
        .map(|b| {
            RawDocumentBuf::from_bytes(b.clone())
                .unwrap()
                .to_document()
                .unwrap()
        })
        .collect();
    let (report, warnings) =
        mongobak_restore::replay_oplog(oplog.clone(), &fresh.client(), &RestoreOptions::default())
            .await
            .unwrap();
    assert_eq!((report.applied, report.skipped), (16, 2));
    assert!(warnings.is_empty(), "{warnings:?}");
    let inserted: Vec<Vec<u8>> = oplog
        .iter()
        .filter(|e| e.get_str("ns") == Ok("test.foo"))
        .map(|e| mongodb::bson::to_vec(e.get_document("o").unwrap()).unwrap())
        .collect();
    assert_eq!(
        documents(&fresh.client(), "test", "foo").await,
        sorted(inserted)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeseries_buckets_become_measurements() {
    let server = MongoServer::start().await;
    let client = server.client();
    let bytes = testdata("mongo-tools/timeseries-dump.archive");
    let expected = archive_documents(&bytes);
    let buckets = &expected["timeseries_test.system.buckets.foo_ts"];
    assert_eq!(buckets.len(), 10);

    let report = restore(bytes, &client, &RestoreOptions::default())
        .await
        .unwrap();
    let ts = report.namespace("timeseries_test.foo_ts").unwrap();
    assert_eq!(ts.kind, NamespaceKind::Timeseries);
    assert_eq!(ts.documents, 10, "ten buckets read");
    assert_eq!(ts.indexes, 2);
    // admin.system.views is internal: views come from their own namespaces.
    assert_eq!(
        report.namespace("admin.system.views").unwrap().kind,
        NamespaceKind::Skipped
    );

    // Every bucket's measurements, rebuilt independently: column i of each
    // field, the bucket's meta under the metaField.
    let mut want: Vec<Document> = Vec::new();
    for bytes in buckets {
        let bucket = RawDocumentBuf::from_bytes(bytes.clone())
            .unwrap()
            .to_document()
            .unwrap();
        let data = bucket.get_document("data").unwrap();
        let n = data.get_document("ts").unwrap().len();
        for i in 0..n {
            let key = i.to_string();
            let mut m = Document::new();
            m.insert(
                "_id",
                data.get_document("_id").unwrap().get(&key).unwrap().clone(),
            );
            m.insert(
                "ts",
                data.get_document("ts").unwrap().get(&key).unwrap().clone(),
            );
            m.insert("meta", bucket.get("meta").unwrap().clone());
            m.insert(
                "measurement",
                data.get_document("measurement")
                    .unwrap()
                    .get(&key)
                    .unwrap()
                    .clone(),
            );
            want.push(m);
        }
    }
    assert_eq!(want.len(), 1000);
    assert_eq!(ts.inserted, 1000);
    let want: Vec<Vec<u8>> = sorted(
        want.iter()
            .map(|d| mongodb::bson::to_vec(d).unwrap())
            .collect(),
    );
    assert_eq!(documents(&client, "timeseries_test", "foo_ts").await, want);

    // The collection keeps its time series options, and gets its indexes.
    let specs: Vec<Document> = {
        use futures::TryStreamExt;
        client
            .database("timeseries_test")
            .run_cursor_command(doc! {"listCollections": 1, "filter": {"name": "foo_ts"}})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    };
    let timeseries = specs[0]
        .get_document("options")
        .unwrap()
        .get_document("timeseries")
        .unwrap();
    assert_eq!(timeseries.get_str("timeField"), Ok("ts"));
    assert_eq!(timeseries.get_str("metaField"), Ok("meta"));
    let names: Vec<String> = client
        .database("timeseries_test")
        .collection::<Document>("foo_ts")
        .list_index_names()
        .await
        .unwrap();
    assert!(
        names.contains(&"ts_1_meta.device_1".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"meta.device_1".to_string()), "{names:?}");
    assert!(!collection_names(&client, "timeseries_test")
        .await
        .iter()
        .any(|n| n.starts_with("system.buckets.")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modern_dump_with_users_and_roles() {
    let server = MongoServer::start().await;
    let client = server.client();
    let bytes = testdata("synthetic/users-and-roles.archive");
    let expected = archive_documents(&bytes);
    let report = restore(bytes, &client, &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(
        documents(&client, "testDB", "testColl").await,
        sorted(expected["testDB.testColl"].clone())
    );
    assert_eq!(report.namespace("testDB.testColl").unwrap().inserted, 1500);

    // SecantusDB has no _mergeAuthzCollections and takes users only with a
    // password: the four users are reported, each with a warning.
    assert_eq!(report.users.restored, 0);
    assert_eq!(report.users.skipped.len(), 4);
    assert!(report
        .users
        .skipped
        .contains(&"sourceAdmin@admin".to_string()));
    assert!(report
        .warnings
        .iter()
        .any(|w| w.contains("sourceAdmin@admin") && w.contains("createUser")));
    // Roles go through createRole, privileges and inherited roles as the
    // archive has them.
    assert_eq!(report.roles.restored, 4, "{:?}", report.warnings);
    let roles = client
        .database("admin")
        .run_command(doc! {"rolesInfo": 1, "showPrivileges": true})
        .await
        .unwrap();
    let listed = roles.get_array("roles").unwrap();
    assert_eq!(listed.len() as u64, report.roles.restored, "{roles}");
    let archived: Vec<Document> = expected["admin.system.roles"]
        .iter()
        .map(|b| {
            RawDocumentBuf::from_bytes(b.clone())
                .unwrap()
                .to_document()
                .unwrap()
        })
        .collect();
    for role in listed {
        let Bson::Document(role) = role else { panic!() };
        let name = role.get_str("role").unwrap();
        let source = archived
            .iter()
            .find(|r| r.get_str("role") == Ok(name))
            .unwrap();
        assert_eq!(role.get("privileges"), source.get("privileges"), "{name}");
        assert_eq!(role.get("roles"), source.get("roles"), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzipped_archive() {
    let server = MongoServer::start().await;
    let client = server.client();
    let bytes = testdata("synthetic/whole-stream-gzip.agz");
    let expected = archive_documents(&bytes);
    let options = RestoreOptions {
        batch_documents: 500,
        ..RestoreOptions::default()
    };
    let report = restore(bytes, &client, &options).await.unwrap();
    let restored = documents(&client, "shop", "payments").await;
    assert_eq!(restored.len(), 20_000);
    assert_eq!(restored, sorted(expected["shop.payments"].clone()));
    assert_eq!(report.inserted(), 20_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_format_archive_fails_cleanly() {
    let server = MongoServer::start().await;
    let client = server.client();
    let bytes = testdata("mongo-tools/bad-format.archive");
    let error = restore(bytes, &client, &RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, RestoreError::Read(_)), "{error}");
    let message = error.to_string();
    assert!(message.contains("metadata"), "{message}");
    assert!(collection_names(&client, "test").await.is_empty());

    // A truncated archive fails too, naming what is missing.
    let mut cut = testdata("mongo-tools/dump-w-oplog.archive");
    cut.truncate(cut.len() - 100);
    let other = MongoServer::start().await;
    let error = restore(cut, &other.client(), &RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, RestoreError::Read(_)), "{error}");
    // Something that is no archive at all.
    let error = restore(
        b"hello world".to_vec(),
        &other.client(),
        &RestoreOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        error.to_string().contains("not a mongodump archive"),
        "{error}"
    );
}

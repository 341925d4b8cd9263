//! The restore options: namespace filters, drop or not, errors that are
//! continued through or not, and the refusals.

use mongobak_restore::{NamespaceKind, RestoreError, RestoreOptions};
use mongobak_testkit::MongoServer;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{doc, Binary, DateTime, Document};

use crate::util::{build_archive, collection_names, documents, find_one, json, restore, Ns};

fn sample() -> Vec<Ns> {
    vec![
        Ns::new(
            "a",
            "c1",
            vec![doc! {"_id": 1, "v": "new"}, doc! {"_id": 2}],
        ),
        Ns::new("a", "c2", vec![doc! {"_id": 1}]),
        Ns::new("b", "c3", vec![doc! {"_id": 1}]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_filters() {
    let server = MongoServer::start().await;
    let client = server.client();
    let options = RestoreOptions {
        ns_include: vec!["a.*".into()],
        ns_exclude: vec!["a.c2".into()],
        ..RestoreOptions::default()
    };
    let report = restore(
        build_archive("7.0.14", &sample(), None, true),
        &client,
        &options,
    )
    .await
    .unwrap();
    assert_eq!(collection_names(&client, "a").await, vec!["c1".to_string()]);
    assert!(collection_names(&client, "b").await.is_empty());
    assert_eq!(report.namespace("a.c1").unwrap().inserted, 2);
    for skipped in ["a.c2", "b.c3"] {
        let entry = report.namespace(skipped).unwrap();
        assert_eq!(entry.kind, NamespaceKind::Skipped);
        assert_eq!(entry.inserted, 0);
        assert_eq!(entry.documents, 1, "read and passed over");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_drop_duplicates_are_counted_with_drop_replaced() {
    let server = MongoServer::start().await;
    let client = server.client();
    let existing = client.database("a").collection::<Document>("c1");
    existing
        .insert_many([doc! {"_id": 1, "v": "old"}, doc! {"_id": 99}])
        .await
        .unwrap();

    let archive = || build_archive("7.0.14", &sample(), None, false);
    let report = restore(archive(), &client, &RestoreOptions::default())
        .await
        .unwrap();
    let c1 = report.namespace("a.c1").unwrap();
    assert!(c1.existed);
    assert_eq!((c1.inserted, c1.duplicates), (1, 1));
    assert_eq!(
        find_one(&client, "a", "c1", 1).await.unwrap(),
        doc! {"_id": 1, "v": "old"},
        "kept"
    );
    assert!(find_one(&client, "a", "c1", 99).await.is_some());
    assert!(find_one(&client, "a", "c1", 2).await.is_some());

    // Stopping on the first error instead. Namespaces are inserted side by
    // side and every one of them now holds a duplicate, so any may be first.
    let error = restore(
        archive(),
        &client,
        &RestoreOptions {
            stop_on_error: true,
            ..RestoreOptions::default()
        },
    )
    .await
    .unwrap_err();
    match &error {
        RestoreError::Insert { namespace, source } => {
            assert!(["a.c1", "a.c2", "b.c3"].contains(&namespace.as_str()));
            assert!(source.to_string().contains("E11000"), "{error}");
        }
        other => panic!("expected a duplicate key error, got {other}"),
    }

    let report = restore(
        archive(),
        &client,
        &RestoreOptions {
            drop: true,
            ..RestoreOptions::default()
        },
    )
    .await
    .unwrap();
    let c1 = report.namespace("a.c1").unwrap();
    assert!(!c1.existed);
    assert_eq!((c1.inserted, c1.duplicates), (2, 0));
    assert_eq!(
        find_one(&client, "a", "c1", 1).await.unwrap(),
        doc! {"_id": 1, "v": "new"}
    );
    assert!(find_one(&client, "a", "c1", 99).await.is_none(), "dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_failures_capped_order_and_batches() {
    let server = MongoServer::start().await;
    let client = server.client();
    let mut valid = Ns::new(
        "v",
        "valid",
        vec![
            doc! {"_id": 1, "qty": 1},
            doc! {"_id": 2, "qty": "x"},
            doc! {"_id": 3, "qty": 3},
        ],
    );
    valid.options = json(
        doc! {"validator": {"qty": {"$type": "int"}}, "validationLevel": "strict", "validationAction": "error"},
    );
    let mut capped = Ns::new(
        "v",
        "capped",
        (0..25).map(|i| doc! {"_id": i, "n": i}).collect(),
    );
    capped.options = json(doc! {"capped": true, "size": 1i64 << 20, "max": 10i64});
    let mut unique = Ns::new(
        "v",
        "unique",
        (0..2500).map(|i| doc! {"_id": i, "k": i}).collect(),
    );
    unique.indexes.push(json(
        doc! {"v": 2, "key": {"k": 1}, "name": "k_unique", "unique": true},
    ));
    let bytes = build_archive("7.0.14", &[valid, capped, unique], None, false);

    let options = RestoreOptions {
        batch_documents: 7,
        parallelism: 3,
        ..RestoreOptions::default()
    };
    let report = restore(bytes.clone(), &client, &options).await.unwrap();
    let valid = report.namespace("v.valid").unwrap();
    assert_eq!((valid.inserted, valid.validation_failures), (2, 1));
    // Capped: inserted in order, so the last ten remain.
    let capped: Vec<Document> = documents(&client, "v", "capped")
        .await
        .into_iter()
        .map(|b| {
            mongodb::bson::RawDocumentBuf::from_bytes(b)
                .unwrap()
                .to_document()
                .unwrap()
        })
        .collect();
    let mut ids: Vec<i32> = capped.iter().map(|d| d.get_i32("_id").unwrap()).collect();
    ids.sort();
    assert_eq!(ids, (15..25).collect::<Vec<_>>());
    assert_eq!(report.namespace("v.unique").unwrap().inserted, 2500);
    assert_eq!(report.namespace("v.unique").unwrap().indexes, 1);

    // Bypassing validation lets the invalid document in.
    let other = MongoServer::start().await;
    let report = restore(
        bytes,
        &other.client(),
        &RestoreOptions {
            bypass_document_validation: true,
            restore_indexes: false,
            ..RestoreOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.namespace("v.valid").unwrap().inserted, 3);
    assert_eq!(report.namespace("v.unique").unwrap().indexes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals() {
    let server = MongoServer::start().await;
    let client = server.client();

    // Oplog replay of an archive without an oplog.
    let error = restore(
        build_archive("7.0.14", &sample(), None, false),
        &client,
        &RestoreOptions {
            oplog_replay: true,
            ..RestoreOptions::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(error, RestoreError::NoOplog), "{error}");
    assert!(
        collection_names(&client, "a").await.is_empty(),
        "nothing restored"
    );

    // Compressed time series buckets, for a target without buckets.
    let mut ts = Ns::new(
        "t",
        "m",
        vec![doc! {
            "_id": 1,
            "control": {"version": 2, "min": {"t": DateTime::from_millis(0)}, "max": {"t": DateTime::from_millis(1)}, "count": 2},
            "meta": "cpu",
            "data": {"t": Binary {subtype: BinarySubtype::Column, bytes: vec![0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0]}},
        }],
    );
    ts.options =
        json(doc! {"timeseries": {"timeField": "t", "metaField": "m", "granularity": "seconds"}});
    ts.indexes = Vec::new();
    let error = restore(
        build_archive("7.0.14", &[ts], None, false),
        &client,
        &RestoreOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, RestoreError::CompressedBuckets { ref namespace } if namespace == "t.m"),
        "{error}"
    );
    assert!(error.to_string().contains("ns_exclude"));

    // An index the server cannot build names the namespace and the index.
    let mut bad = Ns::new(
        "x",
        "bad",
        vec![doc! {"_id": 1, "k": 1}, doc! {"_id": 2, "k": 1}],
    );
    bad.indexes.push(json(
        doc! {"v": 2, "key": {"k": 1}, "name": "k_1", "unique": true},
    ));
    let error = restore(
        build_archive("7.0.14", &[bad], None, false),
        &client,
        &RestoreOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, RestoreError::Index { .. }), "{error}");
    assert!(
        error.to_string().contains("x.bad") && error.to_string().contains("k_1"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_and_timeseries_measurements() {
    let server = MongoServer::start().await;
    let client = server.client();
    let items = Ns::new(
        "s",
        "items",
        vec![doc! {"_id": 1, "p": 1}, doc! {"_id": 2, "p": 9}],
    );
    let mut view = Ns::new("s", "cheap", vec![]);
    view.options = json(doc! {"viewOn": "items", "pipeline": [{"$match": {"p": {"$lt": 5}}}]});
    // mongobak's archives of a SecantusDB source: plain measurements under
    // system.buckets.<name> (source before 8.3).
    let mut ts = Ns::new(
        "s",
        "metrics",
        vec![doc! {"_id": 1, "t": DateTime::from_millis(5), "m": "cpu", "v": 0.5}],
    );
    ts.options =
        json(doc! {"timeseries": {"timeField": "t", "metaField": "m", "granularity": "seconds"}});
    let bytes = build_archive("8.2.11", &[items, view, ts], None, false);
    let report = restore(bytes.clone(), &client, &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(
        report.namespace("s.cheap").unwrap().kind,
        NamespaceKind::View
    );
    let cheap: Vec<Document> = {
        use futures::TryStreamExt;
        client
            .database("s")
            .collection::<Document>("cheap")
            .find(doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    };
    assert_eq!(cheap, vec![doc! {"_id": 1, "p": 1}]);
    assert_eq!(
        find_one(&client, "s", "metrics", 1).await.unwrap(),
        doc! {"_id": 1, "t": DateTime::from_millis(5), "m": "cpu", "v": 0.5}
    );
    assert_eq!(report.namespace("s.metrics").unwrap().inserted, 1);

    // Again with drop: the view is dropped and made again.
    let report = restore(
        bytes,
        &client,
        &RestoreOptions {
            drop: true,
            ..RestoreOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.duplicates(), 0);
    assert_eq!(
        collection_names(&client, "s").await,
        vec![
            "cheap".to_string(),
            "items".to_string(),
            "metrics".to_string()
        ]
    );
}

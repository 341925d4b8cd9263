//! Oplog entries of every shape, built by hand as MongoDB and SecantusDB
//! log them, replayed into a real SecantusDB and read back.

use futures::TryStreamExt;
use mongobak_restore::{replay_oplog, OplogMethod, RestoreOptions};
use mongobak_testkit::MongoServer;
use mongodb::bson::{doc, Bson, Document, Timestamp};
use mongodb::Client;

use crate::util::{collection_names, find_one};

fn entry(op: &str, ns: &str, o: Document, o2: Option<Document>) -> Document {
    let mut e = doc! {"ts": Timestamp {time: 1_700_000_000, increment: 1}, "t": 1i64, "v": 2, "op": op, "ns": ns, "o": o};
    if let Some(o2) = o2 {
        e.insert("o2", o2);
    }
    e
}

fn update(id: i32, o: Document) -> Document {
    entry("u", "ops.docs", o, Some(doc! {"_id": id}))
}

async fn replay(
    client: &Client,
    entries: Vec<Document>,
) -> (mongobak_restore::OplogReport, Vec<String>) {
    replay_oplog(entries, client, &RestoreOptions::default())
        .await
        .unwrap()
}

/// Inserts `start`, replays `update`, and returns the document.
async fn after_update(client: &Client, id: i32, start: Document, o: Document) -> Document {
    let mut start = start;
    start.insert("_id", id);
    replay(
        client,
        vec![entry("i", "ops.docs", start, None), update(id, o)],
    )
    .await;
    find_one(client, "ops", "docs", id).await.unwrap()
}

/// Byte equality: field order counts.
fn same(got: &Document, want: &Document) -> bool {
    mongodb::bson::to_vec(got).unwrap() == mongodb::bson::to_vec(want).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_shapes_apply_on_a_real_server() {
    let server = MongoServer::start().await;
    let client = server.client();

    // A replacement (no $ keys).
    let got = after_update(
        &client,
        1,
        doc! {"a": 1, "b": 2},
        doc! {"_id": 1, "z": [1, 2]},
    )
    .await;
    assert!(same(&got, &doc! {"_id": 1, "z": [1, 2]}), "{got}");

    // $v: 1 modifier document.
    let got = after_update(
        &client,
        2,
        doc! {"a": {"b": 1, "c": 1}, "x": 1},
        doc! {"$v": 1, "$set": {"a.b": 2}, "$unset": {"x": true}},
    )
    .await;
    assert!(same(&got, &doc! {"_id": 2, "a": {"b": 2, "c": 1}}), "{got}");

    // MongoDB's $v: 2 diff: updates, inserts (appended in the diff's
    // order, not by name), deletes, nested documents, arrays grown,
    // shrunk, and with sub-diffs of their elements.
    let got = after_update(
        &client,
        3,
        doc! {"a": 1, "gone": 1, "sub": {"k": 1, "j": 2}, "arr": [1, 2, 3], "grow": [1], "objs": [{"x": 1}, {"x": 2}]},
        doc! {"$v": 2, "diff": {
            "u": {"a": 5},
            "i": {"zeta": 1, "alpha": 2},
            "d": {"gone": false},
            "ssub": {"u": {"k": 2}, "i": {"n2": [1]}},
            "sarr": {"a": true, "l": 2, "u1": "x"},
            "sgrow": {"a": true, "u1": 2, "u2": 3},
            "sobjs": {"a": true, "s1": {"u": {"x": 20}, "i": {"y": 1}}},
        }},
    )
    .await;
    let want = doc! {
        "_id": 3, "a": 5, "sub": {"k": 2, "j": 2, "n2": [1]}, "arr": [1, "x"], "grow": [1, 2, 3],
        "objs": [{"x": 1}, {"x": 20, "y": 1}], "zeta": 1, "alpha": 2,
    };
    assert!(same(&got, &want), "{got}");

    // An insert of an existing field moves it to the end, as mongod's diff
    // applier does when the field order changed.
    let got = after_update(
        &client,
        4,
        doc! {"p": 1, "q": 2},
        doc! {"$v": 2, "diff": {"i": {"p": 3}}},
    )
    .await;
    assert!(same(&got, &doc! {"_id": 4, "q": 2, "p": 3}), "{got}");

    // Nested array inside arrays, and a truncation to empty.
    let got = after_update(
        &client,
        5,
        doc! {"m": [[1, 2, 3], [4]], "e": [1, 2]},
        doc! {"$v": 2, "diff": {"sm": {"a": true, "s0": {"a": true, "l": 1}, "u1": [5, 6]}, "se": {"a": true, "l": 0}}},
    )
    .await;
    assert!(
        same(&got, &doc! {"_id": 5, "m": [[1], [5, 6]], "e": []}),
        "{got}"
    );

    // SecantusDB's $v: 2 update description.
    let got = after_update(
        &client,
        6,
        doc! {"a": {"b": 1, "c": [1, 2, 3]}, "x": 1, "t": [1, 2, 3, 4]},
        doc! {"$v": 2, "diff": {
            "updatedFields": {"a.b": 2, "a.c.2": 9, "y": 5},
            "removedFields": ["x"],
            "truncatedArrays": [{"field": "t", "newSize": 2}],
        }},
    )
    .await;
    assert!(
        same(
            &got,
            &doc! {"_id": 6, "a": {"b": 2, "c": [1, 2, 9]}, "t": [1, 2], "y": 5}
        ),
        "{got}"
    );

    // An update of a missing document does nothing (no upsert of a diff).
    replay(
        &client,
        vec![update(99, doc! {"$v": 2, "diff": {"u": {"a": 1}}})],
    )
    .await;
    assert!(find_one(&client, "ops", "docs", 99).await.is_none());

    // Deletes, and inserts replayed twice.
    let twice = entry("i", "ops.docs", doc! {"_id": 7, "v": 1}, None);
    let (report, warnings) = replay(
        &client,
        vec![
            twice.clone(),
            twice,
            entry("d", "ops.docs", doc! {"_id": 1}, None),
            entry("d", "ops.docs", doc! {"_id": 1000}, None),
        ],
    )
    .await;
    assert_eq!((report.applied, report.skipped), (4, 0));
    assert_eq!(report.method, Some(OplogMethod::Translated));
    assert!(warnings.is_empty());
    assert!(find_one(&client, "ops", "docs", 1).await.is_none());
    assert!(same(
        &find_one(&client, "ops", "docs", 7).await.unwrap(),
        &doc! {"_id": 7, "v": 1}
    ));
}

/// SecantusDB's own oplog of a series of writes replays to the same state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_own_oplog_replays_to_its_state() {
    let source = MongoServer::start().await;
    let client = source.client();
    let start = last_ts(&client).await;
    let db = client.database("o");
    let c = db.collection::<Document>("c");
    c.insert_one(doc! {"_id": 1, "a": {"b": 1, "c": [1, 2, 3]}, "x": 1})
        .await
        .unwrap();
    c.update_one(
        doc! {"_id": 1},
        doc! {"$set": {"a.b": 2, "y": 5, "b": 0}, "$unset": {"x": ""}},
    )
    .await
    .unwrap();
    c.update_one(doc! {"_id": 1}, doc! {"$pop": {"a.c": 1}})
        .await
        .unwrap();
    c.update_one(doc! {"_id": 1}, doc! {"$push": {"a.c": 9}})
        .await
        .unwrap();
    c.update_one(
        doc! {"_id": 1},
        vec![doc! {"$set": {"a.c": {"$slice": ["$a.c", 1]}, "new": "n"}}],
    )
    .await
    .unwrap();
    c.insert_one(doc! {"_id": 2, "v": 1}).await.unwrap();
    c.replace_one(doc! {"_id": 2}, doc! {"w": 2}).await.unwrap();
    c.update_one(doc! {"_id": 3}, doc! {"$set": {"q": 1}})
        .upsert(true)
        .await
        .unwrap();
    c.create_index(mongodb::IndexModel::builder().keys(doc! {"w": 1}).build())
        .await
        .unwrap();
    c.create_index(mongodb::IndexModel::builder().keys(doc! {"q": -1}).build())
        .await
        .unwrap();
    db.run_command(doc! {"dropIndexes": "c", "index": "q_-1"})
        .await
        .unwrap();
    db.run_command(doc! {"collMod": "c", "validator": {"_id": {"$exists": true}}})
        .await
        .unwrap();
    db.run_command(doc! {"create": "capd", "capped": true, "size": 4096})
        .await
        .unwrap();
    db.run_command(doc! {"create": "v", "viewOn": "c", "pipeline": [{"$match": {"v": 1}}]})
        .await
        .unwrap();
    db.collection::<Document>("gone")
        .insert_one(doc! {"_id": 1})
        .await
        .unwrap();
    db.collection::<Document>("gone").drop().await.unwrap();
    db.collection::<Document>("old")
        .insert_one(doc! {"_id": 1})
        .await
        .unwrap();
    client
        .database("admin")
        .run_command(doc! {"renameCollection": "o.old", "to": "o.new"})
        .await
        .unwrap();
    c.delete_one(doc! {"_id": 2}).await.unwrap();
    let entries: Vec<Document> = client
        .database("local")
        .collection::<Document>("oplog.rs")
        .find(doc! {"ts": {"$gt": start}})
        .sort(doc! {"$natural": 1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();

    let target = MongoServer::start().await;
    let (report, warnings) = replay(&target.client(), entries).await;
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(report.skipped, 0);
    let want = mongobak_testkit::snapshot::snapshot(&client).await.unwrap();
    let got = mongobak_testkit::snapshot::snapshot(&target.client())
        .await
        .unwrap();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (ns, w) in &want {
        let g = &got[ns];
        assert_eq!(g.kind, w.kind, "{ns}");
        assert_eq!(g.options, w.options, "{ns}");
        assert_eq!(g.indexes, w.indexes, "{ns}");
        assert!(g.documents == w.documents, "{ns}: documents differ");
    }
}

async fn last_ts(client: &Client) -> Timestamp {
    let last = client
        .database("local")
        .collection::<Document>("oplog.rs")
        .find_one(doc! {})
        .sort(doc! {"$natural": -1})
        .await
        .unwrap();
    match last.and_then(|d| d.get("ts").cloned()) {
        Some(Bson::Timestamp(ts)) => ts,
        _ => Timestamp {
            time: 0,
            increment: 0,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_and_transactions() {
    let server = MongoServer::start().await;
    let client = server.client();
    let cmd = |o: Document| entry("c", "shop.$cmd", o, None);
    let entries = vec![
        // mongod's create, then its one-index createIndexes form.
        cmd(doc! {"create": "items", "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"}}),
        cmd(
            doc! {"createIndexes": "items", "v": 2, "key": {"sku": 1}, "name": "sku_1", "unique": true},
        ),
        cmd(doc! {"create": "items"}),
        // A transaction: applyOps with the operations inside.
        entry(
            "c",
            "admin.$cmd",
            doc! {"applyOps": [
                {"op": "i", "ns": "shop.items", "o": {"_id": 1, "sku": "a"}},
                {"op": "i", "ns": "shop.items", "o": {"_id": 2, "sku": "b"}},
                {"op": "i", "ns": "config.transactions", "o": {"_id": 1}},
            ]},
            None,
        ),
        entry("c", "admin.$cmd", doc! {"commitTransaction": 1}, None),
        cmd(doc! {"dropIndexes": "items", "index": "missing_1"}),
        cmd(doc! {"drop": "never_created"}),
        cmd(doc! {"create": "tmp"}),
        cmd(doc! {"dropDatabase": 1}),
        cmd(doc! {"create": "after"}),
        entry("n", "", doc! {"msg": "periodic noop"}, None),
        entry("i", "local.x", doc! {"_id": 1}, None),
        entry("i", "admin.system.version", doc! {"_id": "x"}, None),
    ];
    let (report, warnings) = replay(&client, entries).await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("commitTransaction"));
    // 13 entries, the applyOps one holding 3 operations.
    assert_eq!(report.entries, 15);
    assert_eq!(report.skipped, 5);
    assert_eq!(report.applied, 10);
    // dropDatabase took items and tmp with it.
    assert_eq!(
        collection_names(&client, "shop").await,
        vec!["after".to_string()]
    );
    assert!(collection_names(&client, "local")
        .await
        .iter()
        .all(|n| n != "x"));

    // The filters apply to the oplog too.
    let options = RestoreOptions {
        ns_exclude: vec!["shop.secret".into()],
        ..RestoreOptions::default()
    };
    let (report, _) = replay_oplog(
        vec![
            entry("i", "shop.secret", doc! {"_id": 1}, None),
            entry("i", "shop.open", doc! {"_id": 1}, None),
            cmd(doc! {"dropDatabase": 1}),
        ],
        &client,
        &options,
    )
    .await
    .unwrap();
    assert_eq!((report.applied, report.skipped), (1, 2));
    assert_eq!(
        collection_names(&client, "shop").await,
        vec!["after".to_string(), "open".to_string()]
    );

    // An entry that cannot be applied names itself.
    let error = replay_oplog(
        vec![update(1, doc! {"$v": 2, "diff": {"bogus": 1}})],
        &client,
        &RestoreOptions::default(),
    )
    .await
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("ts (1700000000, 1)") && message.contains("ops.docs"),
        "{message}"
    );
}

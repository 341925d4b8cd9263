//! DescribeDBInstanceNamespace over HTTP against real SecantusDB servers:
//! the databases and collections of a replica set, of a sharded cluster
//! read shard by shard and through its mongos, every refused parameter and
//! caller, and a deployment that does not answer.

mod common;

use std::time::{Duration, Instant};

use common::*;
use jiff::Timestamp;
use mongobak_catalog::{ClusterType, Instance, InstanceId, InstanceSource};
use mongobak_testkit::MongoServer;
use mongodb::bson::{doc, Document};
use mongodb::Client;
use serde_json::{json, Value};

const ACTION: &str = "DescribeDBInstanceNamespace";
/// The time limit of a listing (`mongobak_dump::probe::LISTING_TIMEOUT`),
/// and how far past it an answer may come.
const LIMIT: Duration = Duration::from_secs(10);
const SLACK: Duration = Duration::from_secs(5);

/// Registers an instance of the root account in ap-guangzhou.
async fn register(server: &TestServer, id: &str, replica_sets: &[String], mongos: Option<String>) {
    let instance = Instance {
        id: InstanceId::parse(id).expect("an instance ID"),
        name: id.into(),
        region: "ap-guangzhou".into(),
        owner_uin: ROOT_UIN.into(),
        cluster_type: if replica_sets.len() > 1 || mongos.is_some() {
            ClusterType::Sharded
        } else {
            ClusterType::ReplicaSet
        },
        replica_set_uris: replica_sets.to_vec(),
        mongos_uri: mongos,
        source: InstanceSource::Cli,
        created_at: Timestamp::now(),
        server_version: String::new(),
    };
    server.catalog.instances().add(&instance).await.unwrap();
}

/// A URI of a port nothing listens on.
fn closed_port_uri() -> String {
    format!(
        "mongodb://127.0.0.1:{}/?directConnection=true",
        mongobak_testkit::free_port()
    )
}

async fn insert(client: &Client, db: &str, collection: &str, n: i64) {
    client
        .database(db)
        .collection::<Document>(collection)
        .insert_many((0..n).map(|i| doc! {"_id": i, "n": i}))
        .await
        .unwrap();
}

/// `(Databases, Collections)` of a successful answer.
fn lists(answer: &Value) -> (Vec<&str>, Vec<&str>) {
    assert_eq!(code_of(answer), None, "{answer}");
    let names = |field: &str| -> Vec<&str> {
        answer[field]
            .as_array()
            .unwrap_or_else(|| panic!("no list {field}: {answer}"))
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect()
    };
    (names("Databases"), names("Collections"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_then_the_collections_of_one() {
    let mongo = MongoServer::start().await;
    let client = mongo.client();
    insert(&client, "shop", "orders", 20).await;
    insert(&client, "shop", "customers", 5).await;
    insert(&client, "inventory", "items", 3).await;
    // A view, which the server records in shop.system.views, and stored
    // JavaScript, in shop.system.js: both system collections.
    client
        .database("shop")
        .create_collection("big_orders")
        .view_on("orders".to_string())
        .pipeline(vec![doc! {"$match": {"n": {"$gte": 10}}}])
        .await
        .unwrap();
    insert(&client, "shop", "system.js", 1).await;
    insert(&client, "admin", "settings", 1).await;
    let raw = client
        .database("shop")
        .list_collection_names()
        .await
        .unwrap();
    assert!(
        raw.iter().any(|name| name.starts_with("system.")),
        "the server lists no system collection to leave out: {raw:?}"
    );

    let server = TestServer::start().await;
    let id = "cmgo-live0001";
    register(&server, id, &[mongo.uri()], None).await;

    // The databases, without admin, local and config.
    let answer = server.call(ACTION, json!({"InstanceId": id})).await;
    assert_eq!(lists(&answer), (vec!["inventory", "shop"], vec![]));
    assert!(answer["RequestId"].is_string(), "{answer}");
    // An empty DbName is none.
    let answer = server
        .call(ACTION, json!({"InstanceId": id, "DbName": ""}))
        .await;
    assert_eq!(lists(&answer), (vec!["inventory", "shop"], vec![]));

    // One database's collections, views included, system.* left out.
    let answer = server
        .call(ACTION, json!({"InstanceId": id, "DbName": "shop"}))
        .await;
    assert_eq!(
        lists(&answer),
        (vec!["shop"], vec!["big_orders", "customers", "orders"])
    );
    // Asked for by name, admin shows its own collections but system.*.
    let answer = server
        .call(ACTION, json!({"InstanceId": id, "DbName": "admin"}))
        .await;
    let (databases, collections) = lists(&answer);
    assert_eq!(databases, ["admin"]);
    assert!(collections.contains(&"settings"), "{answer}");
    assert!(
        collections.iter().all(|c| !c.starts_with("system.")),
        "{answer}"
    );
    // A database that does not exist has no collections, as MongoDB shows.
    let answer = server
        .call(ACTION, json!({"InstanceId": id, "DbName": "nothere"}))
        .await;
    assert_eq!(lists(&answer), (vec!["nothere"], vec![]));

    // What is listed is the live deployment, not a backup.
    insert(&client, "later", "events", 1).await;
    let answer = server.call(ACTION, json!({"InstanceId": id})).await;
    assert_eq!(lists(&answer), (vec!["inventory", "later", "shop"], vec![]));

    // Flattened in a GET query, as the SDKs send with reqMethod GET.
    let mut get = Tc3::get(&server, &format!("InstanceId={id}&DbName=inventory"));
    get.action = ACTION.into();
    let reply = get.send(&server).await;
    assert_eq!(reply.error_code(), None, "{}", reply.json());
    assert_eq!(
        lists(&reply.json()["Response"]),
        (vec!["inventory"], vec!["items"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_cluster_is_read_through_its_mongos_or_else_shard_by_shard() {
    let (shard0, shard1) = tokio::join!(MongoServer::start(), MongoServer::start());
    let (c0, c1) = (shard0.client(), shard1.client());
    insert(&c0, "shop", "orders", 3).await;
    insert(&c0, "east", "stock", 1).await;
    insert(&c1, "shop", "orders", 2).await;
    insert(&c1, "shop", "customers", 2).await;
    insert(&c1, "west", "stock", 1).await;
    let server = TestServer::start().await;

    // Without a mongos: every shard's listing, merged.
    let sharded = "cmgo-shard001";
    register(&server, sharded, &[shard0.uri(), shard1.uri()], None).await;
    let answer = server.call(ACTION, json!({"InstanceId": sharded})).await;
    assert_eq!(lists(&answer), (vec!["east", "shop", "west"], vec![]));
    let answer = server
        .call(ACTION, json!({"InstanceId": sharded, "DbName": "shop"}))
        .await;
    assert_eq!(lists(&answer), (vec!["shop"], vec!["customers", "orders"]));
    let answer = server
        .call(ACTION, json!({"InstanceId": sharded, "DbName": "west"}))
        .await;
    assert_eq!(lists(&answer), (vec!["west"], vec!["stock"]));

    // One shard down fails the whole listing, naming that shard; a
    // shorter wait in its URI is kept.
    let half = "cmgo-half0001";
    let down = format!("{}&serverSelectionTimeoutMS=500", closed_port_uri());
    register(&server, half, &[shard0.uri(), down], None).await;
    let started = Instant::now();
    let answer = server.call(ACTION, json!({"InstanceId": half})).await;
    assert_unreadable(
        &answer,
        half,
        &["mongodb://", "127.0.0.1"],
        started.elapsed(),
    );
    let message = answer["Error"]["Message"].as_str().unwrap();
    assert!(message.contains(&format!("{half}_1 ")), "{message}");
    assert!(!message.contains(&format!("{half}_0")), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // With a mongos, it alone is asked: shards nothing listens on are not
    // tried (SecantusDB stands in for the mongos, which answers for the
    // whole cluster).
    let routed = "cmgo-mongos01";
    register(
        &server,
        routed,
        &[closed_port_uri(), closed_port_uri()],
        Some(shard1.uri()),
    )
    .await;
    let started = Instant::now();
    let answer = server.call(ACTION, json!({"InstanceId": routed})).await;
    assert_eq!(lists(&answer), (vec!["shop", "west"], vec![]));
    let answer = server
        .call(ACTION, json!({"InstanceId": routed, "DbName": "shop"}))
        .await;
    assert_eq!(lists(&answer), (vec!["shop"], vec!["customers", "orders"]));
    assert!(started.elapsed() < LIMIT, "{:?}", started.elapsed());
}

/// Checks the answer of a deployment that could not be read.
fn assert_unreadable(answer: &Value, id: &str, hidden: &[&str], elapsed: Duration) {
    assert_eq!(code_of(answer), Some("FailedOperation"), "{answer}");
    let message = answer["Error"]["Message"].as_str().unwrap();
    assert!(message.contains(id), "{message}");
    for secret in hidden {
        assert!(!message.contains(secret), "{secret} in {message}");
    }
    assert!(elapsed < LIMIT + SLACK, "answered after {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_that_does_not_answer_fails_within_the_time_limit() {
    let mut mongo = MongoServer::start().await;
    insert(&mongo.client(), "shop", "orders", 1).await;
    let server = TestServer::start().await;
    let port = mongo.port.to_string();
    // With credentials in the URI, which no answer may show.
    let uri = format!(
        "mongodb://backup:hunter2@127.0.0.1:{port}/?directConnection=true&authSource=admin"
    );
    let stopped = "cmgo-stop0001";
    register(&server, stopped, &[mongo.uri()], None).await;
    let answer = server.call(ACTION, json!({"InstanceId": stopped})).await;
    assert_eq!(lists(&answer), (vec!["shop"], vec![]));

    // A listener that accepts connections and never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port().to_string();
    let accepting = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let mute = "cmgo-mute0001";
    register(
        &server,
        mute,
        &[format!(
            "mongodb://backup:hunter2@127.0.0.1:{silent_port}/?directConnection=true"
        )],
        None,
    )
    .await;
    let refused = "cmgo-dead0001";
    register(&server, refused, &[uri], None).await;

    // The server stopped (by its process id): the same instance fails.
    mongo.kill();
    let call = |id: &'static str, db: Option<&'static str>| {
        let server = &server;
        async move {
            let started = Instant::now();
            let body = match db {
                Some(db) => json!({"InstanceId": id, "DbName": db}),
                None => json!({"InstanceId": id}),
            };
            let answer = server.call(ACTION, body).await;
            (answer, started.elapsed())
        }
    };
    let (a, b, c, d) = tokio::join!(
        call(stopped, None),
        call(stopped, Some("shop")),
        call(mute, None),
        call(refused, Some("shop")),
    );
    let hidden = ["hunter2", "backup:", "mongodb://", "127.0.0.1"];
    assert_unreadable(&a.0, stopped, &hidden, a.1);
    assert_unreadable(&b.0, stopped, &hidden, b.1);
    assert_unreadable(&c.0, mute, &hidden, c.1);
    assert!(
        c.0["Error"]["Message"].as_str().unwrap().contains("10 s")
            || c.0["Error"]["Message"]
                .as_str()
                .unwrap()
                .contains("could not be reached"),
        "{}",
        c.0
    );
    assert_unreadable(&d.0, refused, &hidden, d.1);
    accepting.abort();
}

#[tokio::test]
async fn refused_parameters_instances_and_callers() {
    // Every refusal comes before any connection: INSTANCE's URI leads
    // nowhere.
    let server = TestServer::start().await;
    let root = (ROOT_ID, ROOT_KEY);
    let mut cases: Vec<(String, (&str, &str), Value, &str)> = Vec::new();
    for bad in [
        "a/b".to_string(),
        "a\\b".into(),
        "a.b".into(),
        "a b".into(),
        "a\"b".into(),
        "$a".into(),
        "a\0b".into(),
        "x".repeat(64),
        "订".repeat(22),
    ] {
        cases.push((
            format!("DbName {bad:?}"),
            root,
            json!({"InstanceId": INSTANCE, "DbName": bad}),
            "InvalidParameterValue",
        ));
    }
    let more: Vec<(&str, (&str, &str), Value, &str)> = vec![
        (
            "no instance",
            root,
            json!({"DbName": "shop"}),
            "MissingParameter",
        ),
        (
            "DbName of the wrong type",
            root,
            json!({"InstanceId": INSTANCE, "DbName": ["shop"]}),
            "InvalidParameter",
        ),
        (
            "unknown parameter",
            root,
            json!({"InstanceId": INSTANCE, "CollectionName": "orders"}),
            "UnknownParameter",
        ),
        (
            "unknown instance",
            root,
            json!({"InstanceId": "cmgo-nothere1"}),
            "InvalidParameterValue.NotFoundInstance",
        ),
        (
            "another account's instance",
            root,
            json!({"InstanceId": OTHER_INSTANCE, "DbName": "shop"}),
            "InvalidParameterValue.NotFoundInstance",
        ),
        (
            "another region's instance",
            root,
            json!({"InstanceId": SHANGHAI_INSTANCE}),
            "InvalidParameterValue.NotFoundInstance",
        ),
        (
            "sub-account outside the action policy",
            (SUB_ID, SUB_KEY),
            json!({"InstanceId": INSTANCE}),
            "InvalidParameter.PermissionDenied",
        ),
        (
            "sub-account outside the resource policy",
            (NARROW_ID, NARROW_KEY),
            json!({"InstanceId": INSTANCE, "DbName": "shop"}),
            "InvalidParameter.PermissionDenied",
        ),
    ];
    cases.extend(
        more.into_iter()
            .map(|(what, key, body, code)| (what.to_string(), key, body, code)),
    );
    for (what, key, body, code) in cases {
        let answer = server.call_as(key, "ap-guangzhou", ACTION, body).await;
        assert_eq!(code_of(&answer), Some(code), "{what}: {answer}");
        let message = answer["Error"]["Message"].as_str().unwrap();
        assert!(!message.contains('\0'), "{what}: {message}");
        if code == "InvalidParameterValue" {
            assert!(message.contains("`DbName`"), "{what}: {message}");
        }
    }
    // The sub-account allowed every action on the Shanghai instance gets
    // past the policy to the deployment (which does not answer here).
    let answer = server
        .call_as(
            (NARROW_ID, NARROW_KEY),
            "ap-shanghai",
            ACTION,
            json!({"InstanceId": SHANGHAI_INSTANCE, "DbName": "a.b"}),
        )
        .await;
    assert_eq!(code_of(&answer), Some("InvalidParameterValue"), "{answer}");
}

//! Point-in-time recovery in a running `mongobak serve`: the tailer starts
//! by itself for a configured instance, its lag shows on the admin
//! listener's metrics, a backup taken after it began opens the restorable
//! window that DescribeBackupRules and `mongobak backup window` show, and
//! RestoreDBInstance rebuilds a collection exactly as it was at a second
//! between bursts of writes (documents byte for byte, indexes as of then),
//! on every shard of a sharded instance, after a restore cut by kill -9,
//! and after the node that tailed the oplog was killed mid-burst in a
//! two-node cluster on PostgreSQL; and refuses before any work what it
//! cannot do. A write is restorable within seconds (the RPO, printed), and
//! times in a gap left by a node down while a small source oplog moved on
//! are refused. FlashBackDBInstance brings back the documents of given
//! keys as they were at a second, into the same instance or another.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use jiff::civil::DateTime;
use jiff::Timestamp;
use mongobak_testkit::snapshot::snapshot;
use mongobak_testkit::MongoServer;
use mongodb::bson::{doc, Document};
use mongodb::Client;
use serde_json::{json, Value};

use common::*;

const INSTANCE: &str = "cmgo-pitrcli1";

/// `mongobak_oplog_lag_seconds` of the instance's first replica set, once
/// the admin listener shows it.
async fn lag(http: &Http, admin: SocketAddr) -> Option<f64> {
    let metrics = http.get(&format!("http://{admin}/metrics")).await.ok()?;
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    let prefix = format!("mongobak_oplog_lag_seconds{{replica_set=\"{INSTANCE}_0\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|value| value.parse().ok())
}

/// A `mongobak serve` with an admin listener, for `mongo`'s instance.
fn serve_with_admin(mongo: &MongoServer, dir: &Path) -> Mongobak {
    serve_with_admin_and(mongo, dir, "")
}

/// [`serve_with_admin`] with `extra` configuration (sections of its own).
fn serve_with_admin_and(mongo: &MongoServer, dir: &Path, extra: &str) -> Mongobak {
    let config_path = dir.join("mongobak.toml");
    let admin_port = mongobak_testkit::free_port();
    let config = config(&dir.join("data"), INSTANCE, &mongo.uri(), extra).replacen(
        "[server]\n",
        &format!("[server]\nadmin_listen = \"127.0.0.1:{admin_port}\"\n"),
        1,
    );
    std::fs::write(&config_path, config).unwrap();
    Mongobak::start(&config_path, &dir.join("serve.log"))
}

/// Waits until the instance's tailer has begun (its lag is that of the
/// source's heartbeat).
async fn tailer_began(http: &Http, server: &Mongobak) {
    let admin = server.admin.expect("an admin listener");
    eventually(
        Duration::from_secs(60),
        "the tailer's lag on /metrics",
        async || lag(http, admin).await.filter(|lag| *lag < 10.0),
    )
    .await;
}

fn parse_time(text: &str) -> DateTime {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} is not YYYY-MM-DD hh:mm:ss: {e}"))
}

/// The instance's restorable window, once its last span ends at or after
/// `at` (API time) and lasts at least `seconds`.
async fn window_reaching(http: &Http, addr: SocketAddr, at: DateTime, seconds: i64) -> Vec<Value> {
    eventually(Duration::from_secs(60), "a restorable window", async || {
        let rules = http
            .call(addr, "DescribeBackupRules", json!({"InstanceId": INSTANCE}))
            .await;
        let spans = rules["RestoreWindow"].as_array()?.clone();
        let last = spans.last()?;
        let from = parse_time(last["StartTime"].as_str()?);
        let to = parse_time(last["EndTime"].as_str()?);
        (to >= at && to.since(from).ok()?.get_seconds() >= seconds).then_some(spans)
    })
    .await
}

/// `mongobak <args>` as a client of `addr`.
async fn client_command(addr: SocketAddr, home: &Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_mongobak"))
        .args(args)
        .env("MONGOBAK_ENDPOINT", format!("http://{addr}"))
        .env("TENCENTCLOUD_SECRET_ID", SECRET_ID)
        .env("TENCENTCLOUD_SECRET_KEY", SECRET_KEY)
        .env("TENCENTCLOUD_REGION", REGION)
        .env("HOME", home)
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_after_the_tailer_began_opens_the_restore_window() {
    let mongo = MongoServer::start_with(&["--noop-heartbeat-seconds", "1"]).await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve_with_admin(&mongo, dir.path());
    let http = root_http();
    tailer_began(&http, &server).await;
    let rules = http
        .call(
            server.addr,
            "DescribeBackupRules",
            json!({"InstanceId": INSTANCE}),
        )
        .await;
    assert_eq!(rules["RestoreWindow"], json!([]), "no base yet: {rules}");

    mongo
        .client()
        .database("app")
        .collection::<Document>("orders")
        .insert_one(doc! {"_id": 1})
        .await
        .unwrap();
    take_backup(&http, server.addr, INSTANCE).await;
    let window = window_reaching(&http, server.addr, DateTime::MIN, 2).await;
    assert_eq!(window.len(), 1, "one stretch: {window:?}");

    // The CLI shows the same window.
    let output = client_command(
        server.addr,
        dir.path(),
        &[
            "backup",
            "window",
            "--instance",
            INSTANCE,
            "--output",
            "json",
        ],
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    let shown: Value = serde_json::from_slice(&output.stdout).unwrap();
    let shown = shown.as_array().expect("a list of spans").clone();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0]["StartTime"], window[0]["StartTime"]);
    let table = client_command(
        server.addr,
        dir.path(),
        &["backup", "window", "--instance", INSTANCE],
    )
    .await;
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(table.starts_with("FROM"), "{table}");
    assert!(
        table.contains(window[0]["StartTime"].as_str().unwrap()),
        "{table}"
    );

    // `mongobak restore --instance` restores through the API and waits.
    let at = window[0]["EndTime"].as_str().unwrap();
    let restored = client_command(
        server.addr,
        dir.path(),
        &[
            "restore",
            "--instance",
            INSTANCE,
            "--at",
            at,
            "--collection",
            "app.orders=orders_cli",
            "--quiet",
            "--output",
            "json",
        ],
    )
    .await;
    assert!(restored.status.success(), "{restored:?}");
    let shown: Value = serde_json::from_slice(&restored.stdout).unwrap();
    assert!(shown["FlowId"].as_i64().unwrap() >= 100_000_000, "{shown}");
    assert_eq!(shown["RestoreTime"], at, "{shown}");
    let copied = mongo
        .client()
        .database("app")
        .collection::<Document>("orders_cli")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(copied, 1);
    // The same target again is refused, with the API's message.
    let again = client_command(
        server.addr,
        dir.path(),
        &[
            "restore",
            "--instance",
            INSTANCE,
            "--at",
            at,
            "--collection",
            "app.orders=orders_cli",
        ],
    )
    .await;
    assert!(!again.status.success(), "{again:?}");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("NewCollection"), "{stderr}");
}

/// One burst of every kind of write on `shop.orders`, keyed from `from`.
async fn burst(client: &Client, from: i64) {
    let orders = client.database("shop").collection::<Document>("orders");
    for n in from..from + 60 {
        orders
            .insert_one(doc! {"_id": n, "qty": n % 7, "note": "new", "tags": ["a"]})
            .await
            .unwrap();
    }
    for n in from..from + 60 {
        match n % 6 {
            0 => orders
                .update_one(
                    doc! {"_id": n},
                    doc! {"$set": {"note": "set", "extra.deep": n}},
                )
                .await
                .map(drop),
            1 => orders
                .update_one(doc! {"_id": n}, doc! {"$unset": {"note": ""}})
                .await
                .map(drop),
            2 => orders
                .update_one(doc! {"_id": n}, doc! {"$inc": {"qty": 10}})
                .await
                .map(drop),
            3 => orders
                .update_one(doc! {"_id": n}, doc! {"$push": {"tags": "b"}})
                .await
                .map(drop),
            4 => orders
                .replace_one(doc! {"_id": n}, doc! {"replaced": true, "qty": -1})
                .await
                .map(drop),
            _ => orders.delete_one(doc! {"_id": n}).await.map(drop),
        }
        .unwrap();
    }
    // Older documents change too, those of the base among them.
    orders
        .update_many(doc! {"_id": {"$lt": 20}}, doc! {"$inc": {"qty": 1}})
        .await
        .unwrap();
}

/// Waits for the start of the next second, then returns it: a second in
/// which nothing is written (the caller writes again only after it).
async fn quiet_second() -> Timestamp {
    let now = Timestamp::now();
    let next = Timestamp::from_second(now.as_second() + 1).unwrap();
    tokio::time::sleep((next - now).try_into().unwrap()).await;
    next
}

/// Waits until second `second` is over.
async fn after(second: Timestamp) {
    let end = Timestamp::from_second(second.as_second() + 1).unwrap();
    let now = Timestamp::now();
    if end > now {
        tokio::time::sleep((end - now).try_into().unwrap()).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn api_time(at: Timestamp) -> String {
    at.to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

async fn wait_flow(http: &Http, server: &Mongobak, flow_id: &Value) -> Value {
    let id = flow_id.as_i64().expect("FlowId is a number").to_string();
    let mut last = Value::Null;
    let done = mongobak_testkit::wait::within(Duration::from_secs(180), async || {
        let info = http
            .call(
                server.addr,
                "DescribeAsyncRequestInfo",
                json!({"AsyncRequestId": id}),
            )
            .await;
        last = info.clone();
        match info["Status"].as_str() {
            Some("initial" | "running") => None,
            _ => Some(info),
        }
    })
    .await;
    done.unwrap_or_else(|| {
        panic!(
            "the restore did not end within 180 s: {last}\n{}",
            server.log_tail()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_is_restored_as_it_was_at_each_quiet_second() {
    let mongo = MongoServer::start_with(&["--noop-heartbeat-seconds", "1"]).await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve_with_admin(&mongo, dir.path());
    let http = root_http();
    let client = mongo.client();
    let orders = client.database("shop").collection::<Document>("orders");
    orders
        .insert_many((0..200i64).map(|n| doc! {"_id": n - 1_000, "qty": n, "tags": []}))
        .await
        .unwrap();
    tailer_began(&http, &server).await;
    take_backup(&http, server.addr, INSTANCE).await;

    // Burst, quiet second, index, burst, quiet second.
    burst(&client, 0).await;
    let first = quiet_second().await;
    let at_first = snapshot(&client).await.unwrap()["shop.orders"].clone();
    after(first).await;
    orders
        .create_index(mongodb::IndexModel::builder().keys(doc! {"qty": 1}).build())
        .await
        .unwrap();
    burst(&client, 1_000).await;
    let second = quiet_second().await;
    let at_second = snapshot(&client).await.unwrap()["shop.orders"].clone();
    after(second).await;
    burst(&client, 2_000).await;
    let live = snapshot(&client).await.unwrap()["shop.orders"].clone();
    assert!(
        at_first.indexes.len() < at_second.indexes.len(),
        "the index came between the two times"
    );

    window_reaching(&http, server.addr, parse_time(&api_time(second)), 0).await;
    for (at, expected, name) in [
        (first, &at_first, "orders_first"),
        (second, &at_second, "orders_second"),
    ] {
        let asked = ask_restore(&http, &server, &api_time(at), name).await;
        let info = wait_flow(&http, &server, &asked["FlowId"]).await;
        assert_eq!(info["Status"], "success", "{info}");
        assert_eq!(info["Progress"], 100, "{info}");
        let restored = snapshot(&client).await.unwrap()[&format!("shop.{name}")].clone();
        assert_eq!(
            restored.documents.len(),
            expected.documents.len(),
            "documents of {name}"
        );
        assert!(
            restored.documents == expected.documents,
            "{name} differs byte for byte"
        );
        assert_eq!(restored.indexes, expected.indexes, "indexes of {name}");
    }
    // The source was never touched, and no staging collection is left.
    assert!(
        snapshot(&client).await.unwrap()["shop.orders"] == live,
        "the source collection changed"
    );
    no_staging_left(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_that_cannot_be_done_is_refused_before_any_work() {
    let mongo = MongoServer::start_with(&["--noop-heartbeat-seconds", "1"]).await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve_with_admin(&mongo, dir.path());
    let http = root_http();
    let client = mongo.client();
    let shop = client.database("shop");
    shop.collection::<Document>("orders")
        .insert_one(doc! {"_id": 1})
        .await
        .unwrap();
    shop.collection::<Document>("taken")
        .insert_one(doc! {"_id": 1})
        .await
        .unwrap();
    tailer_began(&http, &server).await;
    let restore = |time: &str, db: &str, old: &str, new: &str| {
        json!({
            "InstanceId": INSTANCE,
            "RestoreTime": time,
            "Databases": [{"Db": db, "Collections": [{"OldCollection": old, "NewCollection": new}]}],
        })
    };
    let refused = async |body: Value, code: &str, needle: &str| {
        let answer = http.call(server.addr, "RestoreDBInstance", body).await;
        assert_eq!(code_of(&answer), Some(code), "{answer}");
        let message = answer["Error"]["Message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{needle:?} in {answer}");
    };
    let now = api_time(Timestamp::now());
    // No base yet: no window.
    refused(
        restore(&now, "shop", "orders", "o2"),
        "InvalidParameterValue.QueryTimeOutOfRange",
        "no restorable window",
    )
    .await;
    take_backup(&http, server.addr, INSTANCE).await;
    let window = window_reaching(&http, server.addr, DateTime::MIN, 1).await;
    let start = window[0]["StartTime"].as_str().unwrap().to_string();
    let inside = window[0]["EndTime"].as_str().unwrap().to_string();
    refused(
        restore("2020-01-01 00:00:00", "shop", "orders", "o2"),
        "InvalidParameterValue.QueryTimeOutOfRange",
        &start,
    )
    .await;
    refused(
        restore("2099-01-01 00:00:00", "shop", "orders", "o2"),
        "InvalidParameterValue.QueryTimeOutOfRange",
        "later than the oplog saved",
    )
    .await;
    for bad in ["2026-13-01 00:00:00", "yesterday", "2026-12-06T10:00:00"] {
        refused(
            restore(bad, "shop", "orders", "o2"),
            "InvalidParameterValue.TimeFormatErr",
            "RestoreTime",
        )
        .await;
    }
    refused(
        restore(&inside, "shop", "orders", "taken"),
        "InvalidParameterValue",
        "exists",
    )
    .await;
    refused(
        restore(&inside, "shop", "nothing", "n2"),
        "InvalidParameterValue",
        "no collection shop.nothing",
    )
    .await;
    for (db, old, new, needle) in [
        ("sh.op", "orders", "o2", "Databases.0.Db"),
        ("shop", "a$b", "o2", "OldCollection"),
        ("shop", "orders", "system.x", "NewCollection"),
        ("shop", "orders", "", "NewCollection"),
    ] {
        refused(
            restore(&inside, db, old, new),
            "InvalidParameterValue",
            needle,
        )
        .await;
    }
    refused(
        json!({"InstanceId": INSTANCE, "RestoreTime": inside}),
        "MissingParameter",
        "Databases",
    )
    .await;
    refused(
        json!({"InstanceId": INSTANCE, "RestoreTime": inside, "Databases": []}),
        "InvalidParameterValue",
        "Databases",
    )
    .await;
    refused(
        restore(&inside, "shop", "orders", "o2")
            .as_object()
            .map(|o| {
                let mut o = o.clone();
                o.insert("InstanceId".into(), json!("cmgo-zzzzzzzz"));
                Value::Object(o)
            })
            .unwrap(),
        "InvalidParameterValue.NotFoundInstance",
        "cmgo-zzzzzzzz",
    )
    .await;
    // Nothing was queued, nothing written.
    let names = shop.list_collection_names().await.unwrap();
    assert!(!names.iter().any(|n| n == "o2" || n == "n2"), "{names:?}");
    let unknown = http
        .call(
            server.addr,
            "DescribeAsyncRequestInfo",
            json!({"AsyncRequestId": "100000001"}),
        )
        .await;
    assert_eq!(
        code_of(&unknown),
        Some("InvalidParameterValue"),
        "{unknown}"
    );
}

/// A `mongobak serve` with an admin listener for a sharded instance of
/// `INSTANCE` whose shards are `shards`.
fn serve_sharded(shards: &[&MongoServer], dir: &Path) -> Mongobak {
    let config_path = dir.join("mongobak.toml");
    let admin_port = mongobak_testkit::free_port();
    let uris: Vec<String> = shards.iter().map(|s| format!("{:?}", s.uri())).collect();
    let config = format!(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:{admin_port}"
data_dir = "{data_dir}"

[[accounts]]
app_id = 1250000001
uin = "{UIN}"
secret_id = "{SECRET_ID}"
secret_key = "{SECRET_KEY}"

[[instances]]
id = "{INSTANCE}"
name = "{INSTANCE}"
region = "{REGION}"
owner_uin = "{UIN}"
sharded = true
replica_sets = [{uris}]
"#,
        data_dir = dir.join("data").display(),
        uris = uris.join(", "),
    );
    std::fs::write(&config_path, config).unwrap();
    Mongobak::start(&config_path, &dir.join("serve.log"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shard_is_restored_to_the_same_second() {
    let shards = [
        MongoServer::start_with(&["--noop-heartbeat-seconds", "1"]).await,
        MongoServer::start_with(&["--noop-heartbeat-seconds", "1"]).await,
    ];
    let dir = tempfile::tempdir().unwrap();
    let server = serve_sharded(&[&shards[0], &shards[1]], dir.path());
    let http = root_http();
    let clients: Vec<Client> = shards.iter().map(MongoServer::client).collect();
    for (n, client) in clients.iter().enumerate() {
        let base = 10_000 * (n as i64 + 1);
        client
            .database("shop")
            .collection::<Document>("orders")
            .insert_many((0..100i64).map(|k| doc! {"_id": base + k, "qty": k}))
            .await
            .unwrap();
    }
    take_backup(&http, server.addr, INSTANCE).await;
    for (n, client) in clients.iter().enumerate() {
        burst(client, 100_000 * (n as i64 + 1)).await;
    }
    let at = quiet_second().await;
    let mut expected = Vec::new();
    for client in &clients {
        expected.push(snapshot(client).await.unwrap()["shop.orders"].clone());
    }
    after(at).await;
    for (n, client) in clients.iter().enumerate() {
        burst(client, 100_000 * (n as i64 + 1) + 50_000).await;
    }
    window_reaching(&http, server.addr, parse_time(&api_time(at)), 0).await;
    let asked = ask_restore(&http, &server, &api_time(at), "orders_then").await;
    let info = wait_flow(&http, &server, &asked["FlowId"]).await;
    assert_eq!(info["Status"], "success", "{info}");
    for (n, client) in clients.iter().enumerate() {
        let restored = snapshot(client).await.unwrap()["shop.orders_then"].clone();
        assert!(
            restored.documents == expected[n].documents,
            "shard {n}: {} documents restored, {} expected",
            restored.documents.len(),
            expected[n].documents.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_cut_by_kill_9_is_redone_and_never_shows_half_a_collection() {
    let mongo = MongoServer::start_with(&["--noop-heartbeat-seconds", "1"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve_with_admin(&mongo, dir.path());
    let http = root_http();
    let client = mongo.client();
    let orders = client.database("shop").collection::<Document>("orders");
    // Enough to take the restore a few seconds: a base to insert and an
    // oplog to replay (the base's documents are out of the bursts' way).
    orders
        .insert_many(
            (0..30_000i64).map(|n| doc! {"_id": 1_000_000 + n, "qty": n, "pad": "x".repeat(200)}),
        )
        .await
        .unwrap();
    tailer_began(&http, &server).await;
    take_backup(&http, server.addr, INSTANCE).await;
    for round in 0..8 {
        burst(&client, round * 1_000).await;
    }
    let at = quiet_second().await;
    let expected = snapshot(&client).await.unwrap()["shop.orders"].clone();
    after(at).await;
    window_reaching(&http, server.addr, parse_time(&api_time(at)), 0).await;
    let asked = ask_restore(&http, &server, &api_time(at), "orders_then").await;
    let flow = asked["FlowId"].as_i64().expect("a FlowId").to_string();
    // Killed in the middle of it: once the staging collection is being
    // filled.
    let staging = client
        .database("shop")
        .collection::<Document>(&format!("mongobak_restore_{flow}_0"));
    mongobak_testkit::wait::eventually_every(
        Duration::from_secs(60),
        Duration::from_millis(10),
        "the restore under way",
        async || (staging.estimated_document_count().await.ok()? > 0).then_some(()),
    )
    .await;
    server.kill();
    let names = client
        .database("shop")
        .list_collection_names()
        .await
        .unwrap();
    assert!(
        !names.iter().any(|n| n == "orders_then"),
        "a half-written target is visible: {names:?}"
    );

    // The same data folder again: the task is redone once its lease lapsed.
    let server = Mongobak::start(
        &dir.path().join("mongobak.toml"),
        &dir.path().join("serve2.log"),
    );
    let info = wait_flow(&http, &server, &json!(flow.parse::<i64>().unwrap())).await;
    assert_eq!(info["Status"], "success", "{info}");
    let restored = snapshot(&client).await.unwrap()["shop.orders_then"].clone();
    assert!(
        restored.documents == expected.documents,
        "the redone restore differs"
    );
    assert_eq!(restored.indexes, expected.indexes);
    no_staging_left(&client).await;
}

/// How many times `node` opened a tail of the instance's oplog.
fn tails_opened(node: &Mongobak) -> usize {
    node.log_lines()
        .iter()
        .filter(|line| message(line) == "oplog tail opened")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tailing_node_killed_mid_burst_is_replaced_without_a_gap() {
    let mongo = MongoServer::start_with(&["--noop-heartbeat-seconds", "1"]).await;
    let database = mongobak_testkit::postgres::TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("mongobak.toml");
    let extra = format!("[metadata]\nurl = \"{}\"\n", database.url);
    std::fs::write(
        &config_path,
        config(&dir.path().join("data"), INSTANCE, &mongo.uri(), &extra),
    )
    .unwrap();
    let mut nodes: Vec<Mongobak> = (0..2)
        .map(|n| Mongobak::start(&config_path, &dir.path().join(format!("node{n}.log"))))
        .collect();
    let http = root_http();
    let client = mongo.client();
    client
        .database("shop")
        .collection::<Document>("orders")
        .insert_many((0..100i64).map(|n| doc! {"_id": -n - 1, "qty": n}))
        .await
        .unwrap();
    let holder = eventually(Duration::from_secs(60), "a node tailing", async || {
        nodes.iter().position(|node| tails_opened(node) > 0)
    })
    .await;
    let other = 1 - holder;
    take_backup(&http, nodes[other].addr, INSTANCE).await;

    // The tailing node dies in the middle of a burst of writes: once two
    // of its ten rounds are written.
    let rounds = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let writer = tokio::spawn({
        let client = client.clone();
        let rounds = rounds.clone();
        async move {
            for round in 0..10 {
                burst(&client, round * 1_000).await;
                rounds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    eventually(Duration::from_secs(60), "two rounds written", async || {
        (rounds.load(std::sync::atomic::Ordering::SeqCst) >= 2).then_some(())
    })
    .await;
    nodes[holder].kill();
    assert!(!writer.is_finished(), "the burst ended before the kill");
    writer.await.unwrap();
    let at = quiet_second().await;
    let expected = snapshot(&client).await.unwrap()["shop.orders"].clone();
    after(at).await;

    // The other node takes the tailer over and saves everything.
    let survivor = &nodes[other];
    let window = window_reaching(&http, survivor.addr, parse_time(&api_time(at)), 0).await;
    assert!(tails_opened(survivor) > 0, "the survivor never tailed");
    assert_eq!(window.len(), 1, "a gap appeared: {window:?}");
    let asked = ask_restore(&http, survivor, &api_time(at), "orders_then").await;
    let info = wait_flow(&http, survivor, &asked["FlowId"]).await;
    assert_eq!(info["Status"], "success", "{info}");
    let restored = snapshot(&client).await.unwrap()["shop.orders_then"].clone();
    assert!(
        restored.documents == expected.documents,
        "{} documents restored, {} expected",
        restored.documents.len(),
        expected.documents.len()
    );
}

/// The documents of `collection` whose `_id` is one of `ids`, as the
/// server stores them, in `_id` order.
async fn documents_with_ids(
    client: &Client,
    collection: &str,
    ids: &[mongodb::bson::Bson],
) -> Vec<Vec<u8>> {
    use futures::TryStreamExt;
    let found: Vec<mongodb::bson::RawDocumentBuf> = client
        .database("shop")
        .collection::<mongodb::bson::RawDocumentBuf>(collection)
        .find(doc! {"_id": {"$in": ids}})
        .sort(doc! {"_id": 1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    found.into_iter().map(|d| d.into_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flashback_brings_back_the_documents_of_given_keys_as_they_were() {
    use mongodb::bson::{oid::ObjectId, Bson};
    let mongo = MongoServer::start_with(&["--noop-heartbeat-seconds", "1"]).await;
    let other = MongoServer::start_with(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve_with_admin_and(
        &mongo,
        dir.path(),
        &format!(
            "[[instances]]\nid = \"cmgo-fbtarget\"\nregion = \"{REGION}\"\nreplica_sets = [{:?}]\n\n\
             [[instances]]\nid = \"cmgo-notmine1\"\nregion = \"{REGION}\"\nowner_uin = \"100000000009\"\n\
             replica_sets = [{:?}]\n",
            other.uri(),
            other.uri()
        ),
    );
    let http = root_http();
    let client = mongo.client();
    let orders = client.database("shop").collection::<Document>("orders");
    let oid = ObjectId::new();
    orders
        .insert_many(
            (1..=50i64)
                .map(|n| doc! {"_id": n, "sku": format!("s{n}"), "qty": n})
                .chain([
                    doc! {"_id": oid, "sku": "oid"},
                    doc! {"_id": "k7", "sku": "str"},
                ]),
        )
        .await
        .unwrap();
    tailer_began(&http, &server).await;
    take_backup(&http, server.addr, INSTANCE).await;

    // Before the time: 2 updated, 3 deleted, 100 inserted, 4 moved to
    // another sku, and writes of keys not asked for.
    orders
        .update_one(
            doc! {"_id": 2},
            doc! {"$set": {"qty": 200}, "$push": {"log": "a"}},
        )
        .await
        .unwrap();
    orders.delete_one(doc! {"_id": 3}).await.unwrap();
    orders
        .insert_one(doc! {"_id": 100, "sku": "s100", "qty": 100})
        .await
        .unwrap();
    orders
        .update_one(doc! {"_id": 4}, doc! {"$set": {"sku": "moved"}})
        .await
        .unwrap();
    orders
        .update_many(
            doc! {"_id": {"$gt": 10, "$lt": 40}},
            doc! {"$inc": {"qty": 1}},
        )
        .await
        .unwrap();
    let at = quiet_second().await;
    let asked: Vec<Bson> = [
        Bson::Int64(2),
        Bson::Int64(3),
        Bson::Int64(100),
        Bson::Int64(101),
        Bson::ObjectId(oid),
        Bson::String("k7".into()),
    ]
    .into();
    let expected_by_id = documents_with_ids(&client, "orders", &asked).await;
    assert_eq!(expected_by_id.len(), 4, "2, 100, the ObjectId and k7");
    let all: Vec<Bson> = (1..=200i64).map(Bson::Int64).collect();
    let expected_by_sku: Vec<Vec<u8>> = documents_with_ids(&client, "orders", &all)
        .await
        .into_iter()
        .filter(|d| {
            let sku = mongodb::bson::RawDocument::from_bytes(d)
                .unwrap()
                .get_str("sku")
                .unwrap()
                .to_string();
            sku == "moved" || sku == "s5"
        })
        .collect();
    assert_eq!(expected_by_sku.len(), 2, "4 and 5");
    after(at).await;
    // After the time: none of these is in the result.
    orders
        .update_one(doc! {"_id": 2}, doc! {"$set": {"qty": 999}})
        .await
        .unwrap();
    orders
        .insert_many([doc! {"_id": 101}, doc! {"_id": 3, "back": true}])
        .await
        .unwrap();
    orders.delete_one(doc! {"_id": 100}).await.unwrap();
    orders
        .update_one(doc! {"_id": 6}, doc! {"$set": {"sku": "moved"}})
        .await
        .unwrap();
    window_reaching(&http, server.addr, parse_time(&api_time(at)), 0).await;

    let flashback = |target_instance: Option<&str>, collection: Value| {
        let mut body = json!({
            "InstanceId": INSTANCE,
            "TargetFlashbackTime": api_time(at),
            "TargetDatabases": [{"DBName": "shop", "Collections": [collection]}],
        });
        if let Some(target) = target_instance {
            body["TargetInstanceId"] = json!(target);
        }
        body
    };
    // By `_id` (the default key), into the same instance; values are
    // strings, matching the number or ObjectId they spell.
    let key_values: Vec<Value> = ["2", "3", "100", "101", "999", "k7"]
        .iter()
        .map(|v| json!({"Key": "_id", "Value": v}))
        .chain([json!({"Value": oid.to_hex()})])
        .collect();
    let by_id = http
        .call(
            server.addr,
            "FlashBackDBInstance",
            flashback(
                None,
                json!({
                    "CollectionName": "orders",
                    "TargetResultCollectionName": "orders_fb",
                    "KeyValues": key_values,
                }),
            ),
        )
        .await;
    let info = wait_flow(&http, &server, &by_id["FlowId"]).await;
    assert_eq!(info["Status"], "success", "{info}");
    assert_eq!(
        documents_with_ids(&client, "orders_fb", &asked).await,
        expected_by_id,
        "the keys' documents as they were, byte for byte"
    );
    let result_count = client
        .database("shop")
        .collection::<Document>("orders_fb")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(result_count, 4, "just the keys that existed then");
    // The fast path: of the base's 52 documents only the keys' were
    // rebuilt (2, 3, the ObjectId and k7), and of the writes since only
    // theirs (100's insert, 2's update, 3's delete).
    let flow_id = by_id["FlowId"].as_i64().unwrap();
    let rebuilt = server
        .log_lines()
        .into_iter()
        .find(|line| message(line) == "replica set rebuilt" && line["fields"]["flow_id"] == flow_id)
        .expect("the rebuild's log line");
    assert_eq!(rebuilt["fields"]["inserted"], 4, "{rebuilt}");
    assert_eq!(rebuilt["fields"]["replayed"], 3, "{rebuilt}");

    // By another field, into another instance of the same account.
    let by_sku = http
        .call(
            server.addr,
            "FlashBackDBInstance",
            flashback(
                Some("cmgo-fbtarget"),
                json!({
                    "CollectionName": "orders",
                    "TargetResultCollectionName": "by_sku",
                    "FilterKey": "sku",
                    "KeyValues": [{"Key": "sku", "Value": "moved"}, {"Value": "s5"}],
                }),
            ),
        )
        .await;
    let info = wait_flow(&http, &server, &by_sku["FlowId"]).await;
    assert_eq!(info["Status"], "success", "{info}");
    assert_eq!(
        documents_with_ids(&other.client(), "by_sku", &all).await,
        expected_by_sku
    );
    // No staging collection is left on either instance.
    no_staging_left(&client).await;
    no_staging_left(&other.client()).await;

    // Refused before any work.
    let refused = async |body: Value, code: &str, needle: &str| {
        let answer = http.call(server.addr, "FlashBackDBInstance", body).await;
        assert_eq!(code_of(&answer), Some(code), "{answer}");
        let message = answer["Error"]["Message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{needle:?} in {answer}");
    };
    let keyed = |name: &str, result: &str| {
        json!({"CollectionName": name, "TargetResultCollectionName": result,
               "KeyValues": [{"Value": "1"}]})
    };
    refused(
        flashback(None, keyed("orders", "orders_fb")),
        "InvalidParameterValue",
        "TargetResultCollectionName",
    )
    .await;
    refused(
        flashback(None, keyed("nothing", "n2")),
        "InvalidParameterValue",
        "no collection shop.nothing",
    )
    .await;
    refused(
        flashback(Some("cmgo-notmine1"), keyed("orders", "n2")),
        "InvalidParameterValue.NotFoundInstance",
        "cmgo-notmine1",
    )
    .await;
    refused(
        flashback(
            None,
            json!({"CollectionName": "orders", "TargetResultCollectionName": "n2", "KeyValues": []}),
        ),
        "InvalidParameterValue",
        "KeyValues",
    )
    .await;
    refused(
        flashback(
            None,
            json!({"CollectionName": "orders", "TargetResultCollectionName": "n2",
                   "FilterKey": "sku", "KeyValues": [{"Key": "qty", "Value": "1"}]}),
        ),
        "InvalidParameterValue",
        "KeyValues.0.Key",
    )
    .await;
    refused(
        flashback(
            None,
            json!({"CollectionName": "orders", "TargetResultCollectionName": "n2",
                   "FilterKey": "$where", "KeyValues": [{"Value": "1"}]}),
        ),
        "InvalidParameterValue",
        "FilterKey",
    )
    .await;
    let mut early = flashback(None, keyed("orders", "n2"));
    early["TargetFlashbackTime"] = json!("2020-01-01 00:00:00");
    refused(
        early,
        "InvalidParameterValue.QueryTimeOutOfRange",
        "TargetFlashbackTime",
    )
    .await;
    let mut no_collections = flashback(None, keyed("orders", "n2"));
    no_collections["TargetDatabases"][0]["Collections"] = json!([]);
    refused(no_collections, "InvalidParameterValue", "Collections").await;
    refused(
        json!({"InstanceId": INSTANCE, "TargetFlashbackTime": api_time(at)}),
        "MissingParameter",
        "TargetDatabases",
    )
    .await;
    let names = client
        .database("shop")
        .list_collection_names()
        .await
        .unwrap();
    assert!(!names.iter().any(|n| n == "n2"), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flashback_is_refused_without_continuous_oplog_backup() {
    let mongo = MongoServer::start_with(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve_with_admin_and(&mongo, dir.path(), "[pitr]\nenabled = false\n");
    let http = root_http();
    let answer = http
        .call(
            server.addr,
            "FlashBackDBInstance",
            json!({
                "InstanceId": INSTANCE,
                "TargetFlashbackTime": api_time(Timestamp::now()),
                "TargetDatabases": [{"DBName": "shop", "Collections": [
                    {"CollectionName": "orders", "KeyValues": [{"Value": "1"}]}
                ]}],
            }),
        )
        .await;
    assert_eq!(
        code_of(&answer),
        Some("FailedOperation.FlashbackByKeyNotOpen"),
        "{answer}"
    );
    assert!(
        answer["Error"]["Message"]
            .as_str()
            .unwrap_or_default()
            .contains("[pitr] enabled = false"),
        "{answer}"
    );
}

/// Asserts that `shop` holds no staging collection of a restore or a
/// flashback.
async fn no_staging_left(client: &Client) {
    let names = client
        .database("shop")
        .list_collection_names()
        .await
        .unwrap();
    assert!(
        names.iter().all(|n| !n.starts_with("mongobak_")),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_restorable_within_seconds_and_times_in_a_gap_are_refused() {
    let mongo = MongoServer::start_with(&[
        "--noop-heartbeat-seconds",
        "1",
        "--oplog-max-entries",
        "500",
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve_with_admin(&mongo, dir.path());
    let http = root_http();
    let client = mongo.client();
    let orders = client.database("shop").collection::<Document>("orders");
    orders.insert_one(doc! {"_id": 0}).await.unwrap();
    tailer_began(&http, &server).await;
    take_backup(&http, server.addr, INSTANCE).await;
    window_reaching(&http, server.addr, DateTime::MIN, 0).await;

    // RPO: from a write to a window that holds its second.
    orders.insert_one(doc! {"_id": 1}).await.unwrap();
    let written = std::time::Instant::now();
    let second = parse_time(&api_time(Timestamp::now()));
    window_reaching(&http, server.addr, second, 0).await;
    let rpo = written.elapsed();
    eprintln!("a write was restorable {:.1} s after it", rpo.as_secs_f64());
    assert!(rpo < Duration::from_secs(10), "restorable after {rpo:?}");
    let asked = ask_restore(
        &http,
        &server,
        &second.to_string().replace('T', " "),
        "orders_rpo",
    )
    .await;
    let info = wait_flow(&http, &server, &asked["FlowId"]).await;
    assert_eq!(info["Status"], "success", "{info}");
    let restored = client
        .database("shop")
        .collection::<Document>("orders_rpo")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(restored, 2, "the write of that second is restored");

    // The node is down while the source's small oplog moves past where
    // the tail stood: a gap, then a new base backup, then a second span.
    server.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let many: Vec<Document> = (10..1_010i64).map(|n| doc! {"_id": n}).collect();
    for chunk in many.chunks(100) {
        orders.insert_many(chunk.to_vec()).await.unwrap();
    }
    client
        .database("admin")
        .run_command(doc! {"secantusAdmin.pruneOplog": 1})
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let server = Mongobak::start(
        &dir.path().join("mongobak.toml"),
        &dir.path().join("serve2.log"),
    );
    let spans = eventually(Duration::from_secs(90), "a second span", async || {
        let rules = http
            .call(
                server.addr,
                "DescribeBackupRules",
                json!({"InstanceId": INSTANCE}),
            )
            .await;
        let spans = rules["RestoreWindow"].as_array()?.clone();
        (spans.len() == 2).then_some(spans)
    })
    .await;
    let gap_from = parse_time(spans[0]["EndTime"].as_str().unwrap());
    let gap_to = parse_time(spans[1]["StartTime"].as_str().unwrap());
    assert!(
        gap_to.since(gap_from).unwrap().get_seconds() >= 2,
        "the gap spans the time the node was down: {spans:?}"
    );
    let inside_gap = gap_from + jiff::Span::new().seconds(1);
    let refused = ask_restore(
        &http,
        &server,
        &inside_gap.to_string().replace('T', " "),
        "orders_gap",
    )
    .await;
    assert_eq!(
        code_of(&refused),
        Some("InvalidParameterValue.QueryTimeOutOfRange"),
        "{refused}"
    );
    let message = refused["Error"]["Message"].as_str().unwrap_or_default();
    assert!(
        message.contains("outside the restorable window")
            && message.contains(spans[1]["StartTime"].as_str().unwrap()),
        "{message}"
    );
}

/// Asks RestoreDBInstance for `shop.orders` as it was at `at` (API time)
/// into `shop.<new>`; the answer.
async fn ask_restore(http: &Http, server: &Mongobak, at: &str, new: &str) -> Value {
    http.call(
        server.addr,
        "RestoreDBInstance",
        json!({
            "InstanceId": INSTANCE,
            "RestoreTime": at,
            "Databases": [{"Db": "shop", "Collections": [
                {"OldCollection": "orders", "NewCollection": new}
            ]}],
        }),
    )
    .await
}

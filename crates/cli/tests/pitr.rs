//! Continuous oplog backup in a running `mongobak serve`: the tailer starts
//! by itself for a configured instance, its lag shows on the admin
//! listener's metrics, and a backup taken after it began opens the
//! restorable window that DescribeBackupRules and `mongobak backup window`
//! show.

mod common;

use std::time::Duration;

use jiff::civil::DateTime;
use mongobak_testkit::MongoServer;
use mongodb::bson::{doc, Document};
use serde_json::{json, Value};

use common::*;

const INSTANCE: &str = "cmgo-pitrcli1";

/// `mongobak_oplog_lag_seconds` of the instance's first replica set, once
/// the admin listener shows it.
async fn lag(http: &Http, admin: std::net::SocketAddr) -> Option<f64> {
    let metrics = http.get(&format!("http://{admin}/metrics")).await.ok()?;
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    let prefix = format!("mongobak_oplog_lag_seconds{{replica_set=\"{INSTANCE}_0\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|value| value.parse().ok())
}

fn parse_time(text: &str) -> DateTime {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} is not YYYY-MM-DD hh:mm:ss: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_after_the_tailer_began_opens_the_restore_window() {
    let mongo = MongoServer::start_with(&["--noop-heartbeat-seconds", "1"]).await;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("mongobak.toml");
    let admin_port = mongobak_testkit::free_port();
    let mut config = config(&dir.path().join("data"), INSTANCE, &mongo.uri(), "");
    config = config.replacen(
        "[server]\n",
        &format!("[server]\nadmin_listen = \"127.0.0.1:{admin_port}\"\n"),
        1,
    );
    std::fs::write(&config_path, config).unwrap();
    let server = Mongobak::start(&config_path, &dir.path().join("serve.log"));
    let admin = server.admin.expect("an admin listener");
    let http = root_http();

    // The tailer begins by itself; its lag is that of the heartbeat.
    eventually(
        Duration::from_secs(60),
        "the tailer's lag on /metrics",
        async || lag(&http, admin).await.filter(|lag| *lag < 10.0),
    )
    .await;
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
    let window = eventually(Duration::from_secs(60), "a restorable window", async || {
        let rules = http
            .call(
                server.addr,
                "DescribeBackupRules",
                json!({"InstanceId": INSTANCE}),
            )
            .await;
        let spans = rules["RestoreWindow"].as_array()?.clone();
        // Wait until the window reaches a few seconds past the backup.
        let span = spans.first()?;
        let from = parse_time(span["StartTime"].as_str()?);
        let to = parse_time(span["EndTime"].as_str()?);
        (to.since(from).ok()?.get_seconds() >= 2).then_some(spans)
    })
    .await;
    assert_eq!(window.len(), 1, "one stretch: {window:?}");

    // The CLI shows the same window.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_mongobak"))
        .args([
            "backup",
            "window",
            "--instance",
            INSTANCE,
            "--output",
            "json",
        ])
        .env("MONGOBAK_ENDPOINT", format!("http://{}", server.addr))
        .env("TENCENTCLOUD_SECRET_ID", SECRET_ID)
        .env("TENCENTCLOUD_SECRET_KEY", SECRET_KEY)
        .env("TENCENTCLOUD_REGION", REGION)
        .env("HOME", dir.path())
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let shown: Value = serde_json::from_slice(&output.stdout).unwrap();
    let shown = shown.as_array().expect("a list of spans").clone();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0]["StartTime"], window[0]["StartTime"]);
    let table = tokio::process::Command::new(env!("CARGO_BIN_EXE_mongobak"))
        .args(["backup", "window", "--instance", INSTANCE])
        .env("MONGOBAK_ENDPOINT", format!("http://{}", server.addr))
        .env("TENCENTCLOUD_SECRET_ID", SECRET_ID)
        .env("TENCENTCLOUD_SECRET_KEY", SECRET_KEY)
        .env("TENCENTCLOUD_REGION", REGION)
        .env("HOME", dir.path())
        .output()
        .await
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(table.starts_with("FROM"), "{table}");
    assert!(
        table.contains(window[0]["StartTime"].as_str().unwrap()),
        "{table}"
    );
}

//! `mongobak instance add|list|remove` against real SecantusDB servers:
//! what is accepted, what is refused and how, and that passwords in URIs
//! never reach the output.

use std::path::Path;
use std::process::{Command, Output};

use mongobak_testkit::{free_port, MongoServer};
use mongodb::bson::doc;

fn mongobak(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mongobak"))
        .args(args)
        .env("MONGOBAK_SERVER_DATA_DIR", dir)
        .env_remove("MONGOBAK_CONFIG")
        .output()
        .expect("mongobak runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_set_is_checked_then_recorded() {
    let mongo = MongoServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let added = mongobak(
        dir.path(),
        &[
            "instance",
            "add",
            "--id",
            "cmgo-live0001",
            "--name",
            "orders",
            "--replica-set",
            &mongo.uri(),
        ],
    );
    assert!(added.status.success(), "{}", text(&added));
    assert_eq!(
        String::from_utf8_lossy(&added.stdout).trim(),
        "cmgo-live0001"
    );
    assert!(
        String::from_utf8_lossy(&added.stderr).contains("secantus"),
        "{}",
        text(&added)
    );

    let listed = mongobak(dir.path(), &["instance", "list", "--output", "json"]);
    assert!(listed.status.success(), "{}", text(&listed));
    let rows: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(rows[0]["InstanceId"], "cmgo-live0001");
    assert_eq!(
        rows[0]["ReplicaSets"],
        serde_json::json!(["cmgo-live0001_0"])
    );
    assert_eq!(rows[0]["ClusterType"], 0);
    // The version the check saw, which DescribeDBInstances shows.
    let build_info = mongo
        .client()
        .database("admin")
        .run_command(doc! {"buildInfo": 1})
        .await
        .unwrap();
    assert_eq!(
        rows[0]["MongoVersion"],
        build_info.get_str("version").unwrap(),
        "{rows}"
    );

    let again = mongobak(
        dir.path(),
        &[
            "instance",
            "add",
            "--id",
            "cmgo-live0001",
            "--replica-set",
            &mongo.uri(),
        ],
    );
    assert!(!again.status.success());
    assert!(
        text(&again).contains("already registered"),
        "{}",
        text(&again)
    );

    let removed = mongobak(dir.path(), &["instance", "remove", "cmgo-live0001"]);
    assert!(removed.status.success(), "{}", text(&removed));
    let gone = mongobak(dir.path(), &["instance", "remove", "cmgo-live0001"]);
    assert!(!gone.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_standalone_and_bad_credentials_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let unreachable = format!(
        "mongodb://backup:s3cret-pw@127.0.0.1:{port}/?directConnection=true&serverSelectionTimeoutMS=500"
    );
    let out = mongobak(
        dir.path(),
        &[
            "instance",
            "add",
            "--id",
            "cmgo-gone0001",
            "--replica-set",
            &unreachable,
        ],
    );
    assert!(!out.status.success());
    let message = text(&out);
    assert!(
        message.contains("cannot connect to replica set cmgo-gone0001_0"),
        "{message}"
    );
    assert!(
        !message.contains("s3cret-pw"),
        "the password leaked: {message}"
    );

    let standalone = MongoServer::start_with(&["--standalone"]).await;
    let out = mongobak(
        dir.path(),
        &[
            "instance",
            "add",
            "--id",
            "cmgo-solo0001",
            "--replica-set",
            &standalone.uri(),
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not a replica set member"),
        "{}",
        text(&out)
    );

    // Commits reach the disk at once, so the user survives the restart.
    let mut secured = MongoServer::start_with(&["--sync-on-commit"]).await;
    secured
        .client()
        .database("admin")
        .run_command(doc! {"createUser": "backup", "pwd": "right-password", "roles": ["root"]})
        .await
        .unwrap();
    secured.restart_with(&["--sync-on-commit", "--auth"]).await;
    let wrong = format!(
        "mongodb://backup:wrong-password@127.0.0.1:{}/?directConnection=true&authSource=admin",
        secured.port
    );
    let out = mongobak(
        dir.path(),
        &[
            "instance",
            "add",
            "--id",
            "cmgo-auth0001",
            "--replica-set",
            &wrong,
        ],
    );
    assert!(!out.status.success());
    let message = text(&out);
    assert!(
        message.contains("authentication to replica set cmgo-auth0001_0 failed"),
        "{message}"
    );
    assert!(
        !message.contains("wrong-password"),
        "the password leaked: {message}"
    );
    let right = wrong.replace("wrong-password", "right-password");
    let out = mongobak(
        dir.path(),
        &[
            "instance",
            "add",
            "--id",
            "cmgo-auth0001",
            "--replica-set",
            &right,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));

    // Nothing refused was recorded.
    let listed = mongobak(dir.path(), &["instance", "list", "--output", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let ids: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["InstanceId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["cmgo-auth0001"]);
}

#[test]
fn flags_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let none = mongobak(dir.path(), &["instance", "add", "--id", "cmgo-none0001"]);
    assert!(!none.status.success());
    let bad_id = mongobak(
        dir.path(),
        &[
            "instance",
            "add",
            "--id",
            "CMGO-1",
            "--no-check",
            "--replica-set",
            "mongodb://127.0.0.1:1",
        ],
    );
    assert!(!bad_id.status.success());
    assert!(text(&bad_id).contains("cmgo-"), "{}", text(&bad_id));
    let bad_region = mongobak(
        dir.path(),
        &[
            "instance",
            "add",
            "--region",
            "mars-1",
            "--no-check",
            "--replica-set",
            "mongodb://127.0.0.1:1",
        ],
    );
    assert!(!bad_region.status.success());
    let bad_scheme = mongobak(
        dir.path(),
        &["instance", "add", "--no-check", "--replica-set", "http://x"],
    );
    assert!(!bad_scheme.status.success());
    assert!(
        text(&bad_scheme).contains("mongodb://"),
        "{}",
        text(&bad_scheme)
    );
    let unchecked = mongobak(
        dir.path(),
        &[
            "instance",
            "add",
            "--id",
            "cmgo-offl0001",
            "--no-check",
            "--replica-set",
            "mongodb://127.0.0.1:1",
        ],
    );
    assert!(unchecked.status.success(), "{}", text(&unchecked));
}

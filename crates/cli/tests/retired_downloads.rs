//! A backup that goes takes its downloads with it. After DeleteDBBackups,
//! or once the backup expires (here through ModifyBackupExpireTime, which
//! ends it as retention does), the URLs of its download files answer 404
//! or 410 at once, those handed out before included, and
//! DescribeBackupDownloadTask shows no URL for them; the files are deleted
//! from the storage (a folder, or S3 in the suite's second pass). Another
//! backup's downloads are untouched.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use mongobak_testkit::MongoServer;
use serde_json::{json, Value};

const INSTANCE: &str = "cmgo-gone0001";

/// A finished download of `backup`: its task ID and URL.
async fn downloaded(http: &Http, addr: SocketAddr, backup: &str) -> (u64, String) {
    create_task(http, addr, INSTANCE, backup).await;
    let task = eventually(Duration::from_secs(120), "the download file", || async {
        tasks(http, addr, INSTANCE)
            .await
            .into_iter()
            .find(|t| t["BackupName"] == backup && t["Status"] == 2)
    })
    .await;
    let url = task["Url"].as_str().unwrap().to_string();
    let id = url.split("/download/").nth(1).unwrap().split('/').next();
    (id.unwrap().parse().unwrap(), url)
}

/// The task `id` as DescribeBackupDownloadTask lists it.
async fn task(http: &Http, addr: SocketAddr, backup: &str) -> Value {
    tasks(http, addr, INSTANCE)
        .await
        .into_iter()
        .find(|t| t["BackupName"] == backup)
        .unwrap_or_else(|| panic!("no task of {backup}"))
}

async fn backup_id(http: &Http, addr: SocketAddr, name: &str) -> i64 {
    let listed = http
        .call(addr, "DescribeDBBackups", json!({"InstanceId": INSTANCE}))
        .await;
    listed["BackupList"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["BackupName"] == name)
        .and_then(|b| b["BackId"].as_i64())
        .unwrap_or_else(|| panic!("{name} is not listed: {listed}"))
}

async fn assert_gone(http: &Http, url: &str) {
    let answer = http.get(url).await.unwrap();
    assert!(
        matches!(answer.status, 404 | 410),
        "{url}: HTTP {}",
        answer.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_and_expired_backups_retire_their_downloads() {
    let mongo = MongoServer::start().await;
    insert_random(&mongo.client(), "shop", "orders", 40, 2000).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config_path = dir.path().join("mongobak.toml");
    std::fs::write(&config_path, config(&data, INSTANCE, &mongo.uri(), "")).unwrap();
    let store = store_of(dir.path(), &data);
    let mut server = Mongobak::start(&config_path, &dir.path().join("serve.log"));
    let http = root_http();
    let addr = server.addr;

    let deleted = take_backup(&http, addr, INSTANCE).await;
    let expiring = take_backup(&http, addr, INSTANCE).await;
    let kept = take_backup(&http, addr, INSTANCE).await;
    let mut downloads = Vec::new();
    for backup in [&deleted, &expiring, &kept] {
        let (id, url) = downloaded(&http, addr, backup).await;
        assert_eq!(http.get(&url).await.unwrap().status, 200);
        assert!(!objects_under(&store, &format!("downloads/{id}/"))
            .await
            .is_empty());
        downloads.push((id, url));
    }
    let [(deleted_task, deleted_url), (expiring_task, expiring_url), (_, kept_url)] =
        <[_; 3]>::try_from(downloads).unwrap();

    // Deleted: at once, the URL handed out before answers no more, no URL
    // is shown, and the file is gone from the storage.
    let id = backup_id(&http, addr, &deleted).await;
    let answer = http
        .call(
            addr,
            "DeleteDBBackups",
            json!({"InstanceId": INSTANCE, "BackupIds": [id]}),
        )
        .await;
    assert_eq!(code_of(&answer), None, "{answer}");
    assert_gone(&http, &deleted_url).await;
    assert_gone(&http, &deleted_url.replacen('?', ".sha256?", 1)).await;
    let listed = task(&http, addr, &deleted).await;
    assert_eq!(listed["Url"], "", "{listed}");
    assert_eq!(
        objects_under(&store, &format!("downloads/{deleted_task}/")).await,
        Vec::<String>::new()
    );

    // Expired: the moment the backup's new expiry passes, its file's URL
    // answers no more, before any cleaning has run.
    let expire_at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3);
    let expire_text = expire_at
        .to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string();
    let id = backup_id(&http, addr, &expiring).await;
    let answer = http
        .call(
            addr,
            "ModifyBackupExpireTime",
            json!({"InstanceId": INSTANCE, "BackupIds": [id], "ExpireTime": expire_text}),
        )
        .await;
    assert_eq!(code_of(&answer), None, "{answer}");
    assert_eq!(answer["FailedBackups"], json!([]), "{answer}");
    // Waiting out the clock is the point: the URL must fail the moment the
    // expiry passes, not whenever something cleans up.
    let wait = expire_at.duration_since(jiff::Timestamp::now());
    tokio::time::sleep(Duration::try_from(wait).unwrap_or_default() + Duration::from_secs(1)).await;
    assert_gone(&http, &expiring_url).await;
    let listed = task(&http, addr, &expiring).await;
    assert_eq!(listed["Url"], "", "{listed}");

    // The scheduler's first round after a restart retires the expired
    // backup and deletes its download file from the storage.
    server.terminate();
    let server = Mongobak::start(&config_path, &dir.path().join("again.log"));
    let addr = server.addr;
    let prefix = format!("downloads/{expiring_task}/");
    eventually(
        Duration::from_secs(60),
        "the expired file deleted",
        || async {
            objects_under(&store, &prefix)
                .await
                .is_empty()
                .then_some(())
        },
    )
    .await;
    assert_gone(&http, &on_server(&expiring_url, addr)).await;

    // The other backup's download is untouched.
    let kept_url = on_server(&kept_url, addr);
    assert_eq!(http.get(&kept_url).await.unwrap().status, 200);
    let listed = task(&http, addr, &kept).await;
    assert_ne!(listed["Url"], "", "{listed}");
}

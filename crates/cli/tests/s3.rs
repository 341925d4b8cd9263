//! `mongobak serve` on S3-compatible storage (moto's S3 server on
//! loopback): backups and download files live in a bucket, and when the S3
//! server stops answering for 20 s in the middle of packaging, the task
//! waits to be retried (Status 4) and then completes; no half-written
//! object is ever visible in the bucket. `/readyz` says whether the node
//! reaches its storage and its PostgreSQL metadata store.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mongobak_testkit::moto::{http, Moto};
use mongobak_testkit::postgres::TestDatabase;
use mongobak_testkit::snapshot::snapshot;
use mongobak_testkit::MongoServer;

const INSTANCE: &str = "cmgo-s3st0001";
const BUCKET: &str = "mongobak-test";
const PREFIX: &str = "cluster-a";

/// Every object key of the bucket under `prefix`.
async fn keys(moto: &Moto, prefix: &str) -> Vec<String> {
    let body = http()
        .get(format!(
            "{}/{BUCKET}?list-type=2&prefix={prefix}",
            moto.endpoint()
        ))
        .send()
        .await
        .expect("list the bucket")
        .text()
        .await
        .expect("the listing");
    assert!(body.contains("ListBucketResult"), "{body}");
    body.split("<Key>")
        .skip(1)
        .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_outage_of_twenty_seconds_during_packaging_is_retried() {
    let moto = Moto::start().await;
    moto.create_bucket(BUCKET).await;
    let mongo = MongoServer::start().await;
    // 6 MB of incompressible documents: packaging takes a few seconds.
    insert_random(&mongo.client(), "store", "docs", 60, 100_000).await;
    let expected = snapshot(&mongo.client()).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[storage]\nurl = \"s3://{BUCKET}/{PREFIX}?endpoint={}&region=us-east-1\"\n\
         access_key_id = \"testing\"\nsecret_access_key = \"testing\"\n\
         timeout_secs = 2\nmax_retries = 1\n\n\
         [downloads]\nworkers = 1\nmax_attempts = 10\n",
        moto.endpoint()
    );
    let config_path = dir.path().join("mongobak.toml");
    std::fs::write(
        &config_path,
        config(&dir.path().join("data"), INSTANCE, &mongo.uri(), &extra),
    )
    .unwrap();
    let server = Mongobak::start(&config_path, &dir.path().join("serve.log"));
    let http_client = root_http();

    // The backup goes to the bucket.
    let backup = take_backup(&http_client, server.addr, INSTANCE).await;
    let stored = keys(&moto, &format!("{PREFIX}/backups/{INSTANCE}/")).await;
    assert!(
        stored.iter().any(|k| k.ends_with("manifest.json")),
        "{stored:?}"
    );

    // The S3 server stops answering while the task is being packaged.
    create_task(&http_client, server.addr, INSTANCE, &backup).await;
    eventually(Duration::from_secs(60), "packaging to start", || async {
        let tasks = tasks(&http_client, server.addr, INSTANCE).await;
        (tasks[0]["Status"] == 1).then_some(())
    })
    .await;
    moto.pause();
    let paused = Instant::now();
    let mut statuses = Vec::new();
    while paused.elapsed() < Duration::from_secs(20) {
        let task = tasks(&http_client, server.addr, INSTANCE).await.remove(0);
        let status = task["Status"].as_i64().unwrap();
        if statuses.last() != Some(&status) {
            statuses.push(status);
        }
        assert_ne!(status, 3, "failed for good during the outage: {task}");
        assert_ne!(status, 2, "done while the storage was down: {task}");
        // A look every 200 ms through the whole outage.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    moto.resume();
    assert!(
        statuses.contains(&4),
        "the task never waited for a retry during the outage: {statuses:?}\n{}",
        server.log_tail()
    );

    // Then it completes, and its file is whole.
    let task = eventually(Duration::from_secs(180), "the task to end", || async {
        let task = tasks(&http_client, server.addr, INSTANCE).await.remove(0);
        match task["Status"].as_i64() {
            Some(2) => Some(task),
            Some(3) => panic!("the task failed: {task}"),
            _ => None,
        }
    })
    .await;
    let file = http_client
        .get(task["Url"].as_str().unwrap())
        .await
        .expect("the download answers");
    assert_eq!(file.status, 200);
    assert_eq!(task["SHA256"], sha256(&file.body), "{task}");
    if let Err(problem) = check_archive(&file.body, &expected) {
        panic!("the downloaded file is wrong: {problem}");
    }

    // Only the published attempt's objects are in the bucket: attempts cut
    // short by the outage left nothing visible.
    let downloads = keys(&moto, &format!("{PREFIX}/downloads/")).await;
    let url = task["Url"].as_str().unwrap();
    let task_id = url
        .split("/download/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("a task id in the URL");
    assert!(!downloads.is_empty());
    let published: Vec<&String> = downloads
        .iter()
        .filter(|k| k.starts_with(&format!("{PREFIX}/downloads/{task_id}/")))
        .collect();
    assert_eq!(published.len(), downloads.len(), "{downloads:?}");
    let folders: std::collections::BTreeSet<&str> = published
        .iter()
        .filter_map(|k| k.rsplit_once('/').map(|(folder, _)| folder))
        .collect();
    assert_eq!(folders.len(), 1, "one attempt's folder: {downloads:?}");
    assert!(
        published.iter().any(|k| k.ends_with(".archive.gz")),
        "{downloads:?}"
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_urls_lead_to_the_store_itself() {
    let moto = Moto::start().await;
    moto.create_bucket(BUCKET).await;
    let mongo = MongoServer::start().await;
    insert_random(&mongo.client(), "store", "docs", 10, 10_000).await;
    let expected = snapshot(&mongo.client()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[storage]\nurl = \"s3://{BUCKET}/{PREFIX}?endpoint={}&region=us-east-1\"\n\
         access_key_id = \"testing\"\nsecret_access_key = \"testing\"\n\n\
         [downloads]\npresigned_urls = true\n",
        moto.endpoint()
    );
    let config_path = dir.path().join("mongobak.toml");
    std::fs::write(
        &config_path,
        config(&dir.path().join("data"), INSTANCE, &mongo.uri(), &extra),
    )
    .unwrap();
    let server = Mongobak::start(&config_path, &dir.path().join("serve.log"));
    let http_client = root_http();
    let backup = take_backup(&http_client, server.addr, INSTANCE).await;
    create_task(&http_client, server.addr, INSTANCE, &backup).await;
    let task = eventually(Duration::from_secs(120), "the task to end", || async {
        let task = tasks(&http_client, server.addr, INSTANCE).await.remove(0);
        (task["Status"] == 2).then_some(task)
    })
    .await;
    let url = task["Url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/{BUCKET}/{PREFIX}/downloads/", moto.endpoint())),
        "a URL of the store: {url}"
    );
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let body = http()
        .get(url)
        .send()
        .await
        .expect("the store answers")
        .bytes()
        .await
        .expect("the file");
    assert_eq!(task["SHA256"], sha256(&body), "{task}");
    if let Err(problem) = check_archive(&body, &expected) {
        panic!("the file is wrong: {problem}");
    }
    drop(server);
}

/// `/readyz`: its status and text, once it is `status` (within 30 s).
async fn readiness(http: &Http, server: &Mongobak, status: u16) -> String {
    let url = format!("http://{}/readyz", server.addr);
    eventually(Duration::from_secs(30), "/readyz", || async {
        let got = http.get(&url).await.ok()?;
        (got.status == status).then(|| String::from_utf8_lossy(&got.body).into_owned())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_storage_and_the_metadata_store() {
    let moto = Moto::start().await;
    moto.create_bucket(BUCKET).await;
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[metadata]\nurl = \"{}\"\n\n\
         [storage]\nurl = \"s3://{BUCKET}/{PREFIX}?endpoint={}&region=us-east-1\"\n\
         access_key_id = \"testing\"\nsecret_access_key = \"testing\"\nmax_retries = 0\n",
        database.url,
        moto.endpoint()
    );
    let config_path = dir.path().join("mongobak.toml");
    std::fs::write(
        &config_path,
        config(
            &dir.path().join("data"),
            INSTANCE,
            "mongodb://127.0.0.1:1/",
            &extra,
        ),
    )
    .unwrap();
    let server = Mongobak::start(&config_path, &dir.path().join("serve.log"));
    let http = root_http();
    assert_eq!(readiness(&http, &server, 200).await, "ready\n");

    // The storage hangs: not ready, and ready again once it answers.
    moto.pause();
    let started = Instant::now();
    let text = readiness(&http, &server, 503).await;
    assert!(text.contains("storage"), "{text}");
    assert!(!text.contains("metadata"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    moto.resume();
    assert_eq!(readiness(&http, &server, 200).await, "ready\n");

    // The metadata store gone (its database dropped under the node).
    drop(database);
    let text = readiness(&http, &server, 503).await;
    assert!(text.contains("metadata store"), "{text}");
    assert!(!text.contains("storage"), "{text}");
    drop(server);
}

//! The backup runner against a real SecantusDB server: queued backups are
//! taken, failures that may pass are tried again, failures are recorded
//! with their reason, and a backup left running by a stopped process is
//! failed and its partial data deleted.

use std::time::{Duration, Instant};

use bytes::Bytes;
use jiff::Timestamp;
use mongobak_blob::BlobStore;
use mongobak_catalog::{
    BackupStatus, BackupType, Catalog, ClusterType, Instance, InstanceId, InstanceSource, NewBackup,
};
use mongobak_testkit::wait::{eventually, eventually_every};
use mongobak_testkit::MongoServer;
use mongobak_worker::{BackupRunner, BackupRunnerConfig};
use mongodb::bson::{doc, Document};
use tokio_util::sync::CancellationToken;

struct Fixture {
    catalog: Catalog,
    store: BlobStore,
    _dir: tempfile::TempDir,
}

async fn fixture(uri: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(&format!("sqlite://{}/m.db", dir.path().display()))
        .await
        .unwrap();
    catalog
        .instances()
        .add(&Instance {
            id: InstanceId::parse("cmgo-runr0001").unwrap(),
            name: "runner".into(),
            region: "ap-guangzhou".into(),
            owner_uin: "1".into(),
            cluster_type: ClusterType::ReplicaSet,
            replica_set_uris: vec![uri.into()],
            mongos_uri: None,
            source: InstanceSource::Cli,
            created_at: Timestamp::now(),
            server_version: String::new(),
        })
        .await
        .unwrap();
    let store = BlobStore::open(&format!("file://{}/blobs", dir.path().display())).unwrap();
    Fixture {
        catalog,
        store,
        _dir: dir,
    }
}

fn new_backup(name: &str) -> NewBackup {
    NewBackup {
        instance_id: "cmgo-runr0001".into(),
        method: 0,
        backup_type: BackupType::Manual,
        remark: String::new(),
        retention_days: 3,
        name: name.into(),
        long_term: false,
    }
}

/// A server holding 300 small documents in `app.things`.
async fn server_with_things() -> MongoServer {
    let mongo = MongoServer::start().await;
    mongo
        .client()
        .database("app")
        .collection::<Document>("things")
        .insert_many((0..300i64).map(|i| doc! {"_id": i}))
        .await
        .unwrap();
    mongo
}

/// A quick runner whose backups fail at their first error (the retry
/// tests set their own attempts).
fn config() -> BackupRunnerConfig {
    BackupRunnerConfig {
        poll_interval: Duration::from_millis(50),
        progress_interval: Duration::from_millis(50),
        attempts: 1,
        ..BackupRunnerConfig::default()
    }
}

/// A runner over the fixture, running until [`RunningRunner::stop`].
struct RunningRunner {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RunningRunner {
    fn start(f: &Fixture, config: BackupRunnerConfig) -> Self {
        let shutdown = CancellationToken::new();
        let runner = BackupRunner::new(f.catalog.clone(), f.store.clone(), config);
        let task = tokio::spawn(runner.run(shutdown.clone()));
        RunningRunner { shutdown, task }
    }

    /// Stops it and waits at most `limit` for it to end.
    async fn stop(self, limit: Duration) {
        self.shutdown.cancel();
        tokio::time::timeout(limit, self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

async fn wait_until_done(catalog: &Catalog, id: i64) -> mongobak_catalog::Backup {
    let what = format!("backup {id} finished");
    eventually(Duration::from_secs(60), &what, async || {
        let backup = catalog.backups().get(id).await.unwrap().unwrap();
        matches!(
            backup.status,
            BackupStatus::Succeeded | BackupStatus::Failed
        )
        .then_some(backup)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_backups_are_taken_and_recorded() {
    let mongo = server_with_things().await;
    let f = fixture(&mongo.uri()).await;
    let runner = RunningRunner::start(&f, config());

    let queued = f
        .catalog
        .backups()
        .create(&new_backup("b1"), Timestamp::now())
        .await
        .unwrap();
    let done = wait_until_done(&f.catalog, queued.id).await;
    assert_eq!(done.status, BackupStatus::Succeeded, "{:?}", done.failure);
    assert!(done.raw_bytes > 0 && done.stored_bytes > 0);
    assert_eq!(done.percent, 100);
    let expires = done.expires_at.unwrap();
    let kept = expires.as_second() - done.finished_at.unwrap().as_second();
    assert_eq!(kept, 3 * 86_400, "the requested retention");
    let manifest = f
        .store
        .get(&format!("{}/manifest.json", done.storage_prefix))
        .await
        .unwrap();
    assert!(!manifest.is_empty());

    runner.stop(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_back_before_the_next_attempt_gets_its_backup() {
    let mut mongo = server_with_things().await;
    mongo.kill();
    let uri = format!("{}&serverSelectionTimeoutMS=300", mongo.uri());
    let f = fixture(&uri).await;
    let retry_delay = Duration::from_secs(4);
    let config = BackupRunnerConfig {
        attempts: 3,
        retry_delay,
        ..config()
    };
    let runner = RunningRunner::start(&f, config);
    let started = Instant::now();
    let queued = f
        .catalog
        .backups()
        .create(&new_backup("retried"), Timestamp::now())
        .await
        .unwrap();
    // The first attempt fails within 0.3 s; the server is back well
    // before the second, 4 s later. Nothing tells the first failure from
    // the run before it, so the pause is the point.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let still = f.catalog.backups().get(queued.id).await.unwrap().unwrap();
    assert_eq!(still.status, BackupStatus::Running, "waiting to try again");
    mongo.restart_with(&[]).await;
    let done = wait_until_done(&f.catalog, queued.id).await;
    assert_eq!(done.status, BackupStatus::Succeeded, "{:?}", done.failure);
    assert!(started.elapsed() >= retry_delay, "it waited for the retry");
    assert!(done.raw_bytes > 0);

    runner.stop(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_fails_after_its_last_attempt() {
    let port = mongobak_testkit::free_port();
    let f = fixture(&format!(
        "mongodb://127.0.0.1:{port}/?directConnection=true&serverSelectionTimeoutMS=200"
    ))
    .await;
    let config = BackupRunnerConfig {
        attempts: 3,
        retry_delay: Duration::from_millis(200),
        ..config()
    };
    let runner = RunningRunner::start(&f, config);
    let started = Instant::now();
    let queued = f
        .catalog
        .backups()
        .create(&new_backup("doomed"), Timestamp::now())
        .await
        .unwrap();
    let done = wait_until_done(&f.catalog, queued.id).await;
    assert_eq!(done.status, BackupStatus::Failed);
    let reason = done.failure.unwrap();
    assert!(reason.contains("cannot connect"), "{reason}");
    assert!(reason.contains("after 3 attempts"), "{reason}");
    // Waits of 0.2 s and then 0.4 s between the attempts.
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert!(f
        .store
        .list(&format!("{}/", done.storage_prefix))
        .await
        .unwrap()
        .is_empty());

    runner.stop(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_left_running_by_a_stop_is_failed_and_cleaned_up() {
    let f = fixture("mongodb://127.0.0.1:1/?directConnection=true").await;
    // A previous process claimed the backup and wrote part of it, then died.
    let backup = f
        .catalog
        .backups()
        .create(&new_backup("b1"), Timestamp::now())
        .await
        .unwrap();
    f.catalog
        .backups()
        .claim_queued(Timestamp::now())
        .await
        .unwrap()
        .unwrap();
    let partial = format!(
        "{}/cmgo-runr0001_0/c0000/s00000.bson.zst",
        backup.storage_prefix
    );
    f.store
        .put(&partial, Bytes::from_static(b"partial"))
        .await
        .unwrap();
    let other = "backups/cmgo-runr0001/unrelated/keep.bin";
    f.store
        .put(other, Bytes::from_static(b"keep"))
        .await
        .unwrap();

    let runner = BackupRunner::new(f.catalog.clone(), f.store.clone(), config());
    assert_eq!(runner.recover().await.unwrap(), 1);
    let failed = f.catalog.backups().get(backup.id).await.unwrap().unwrap();
    assert_eq!(failed.status, BackupStatus::Failed);
    assert!(failed.failure.unwrap().contains("interrupted"));
    assert_eq!(
        f.store.size(&partial).await.unwrap(),
        None,
        "partial data deleted"
    );
    assert_eq!(
        f.store.size(other).await.unwrap(),
        Some(4),
        "nothing else touched"
    );
    assert_eq!(runner.recover().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_a_backup_fails_it_and_leaves_nothing() {
    let mongo = MongoServer::start().await;
    let coll = mongo
        .client()
        .database("app")
        .collection::<Document>("rows");
    for chunk in 0..10i64 {
        coll.insert_many(
            (0..1000i64).map(|i| doc! {"_id": chunk * 1000 + i, "pad": "p".repeat(300)}),
        )
        .await
        .unwrap();
    }
    let f = fixture(&mongo.uri()).await;
    let mut slow = config();
    slow.dump.segment_bytes = 16 * 1024;
    slow.dump.collection_concurrency = 1;
    let runner = RunningRunner::start(&f, slow);
    let backup = f
        .catalog
        .backups()
        .create(&new_backup("b1"), Timestamp::now())
        .await
        .unwrap();
    // Stop as soon as the backup has written something (looked at often:
    // the backup is to be caught in the middle).
    let prefix = format!("{}/", backup.storage_prefix);
    eventually_every(
        Duration::from_secs(60),
        Duration::from_millis(5),
        "the backup writing",
        async || (!f.store.list(&prefix).await.unwrap().is_empty()).then_some(()),
    )
    .await;
    runner.stop(Duration::from_secs(30)).await;
    let stopped = f.catalog.backups().get(backup.id).await.unwrap().unwrap();
    assert_eq!(stopped.status, BackupStatus::Failed);
    assert!(stopped.failure.unwrap().contains("shut down"));
    assert!(f
        .store
        .list(&format!("{}/", backup.storage_prefix))
        .await
        .unwrap()
        .is_empty());
}

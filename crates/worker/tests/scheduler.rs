//! The scheduler, expiry and garbage collection on an injected clock, over
//! a real catalog (each test on SQLite and on PostgreSQL) and a real blob
//! folder; and failure notifications posted to a real HTTP server.
//!
//! Backups are "taken" by claiming and completing them in the catalog (the
//! dump engine has its own tests): what is under test is which backups the
//! schedule asks for, when, and which ones expiry removes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use mongobak_blob::BlobStore;
use mongobak_catalog::{
    Backup, BackupRule, BackupSizes, BackupStatus, BackupType, Catalog, ClusterType, Instance,
    InstanceId, InstanceSource, LongTermInterval, NewBackup, PublishedFile,
};
use mongobak_testkit::postgres::TestDatabase;
use mongobak_testkit::wait::eventually;
use mongobak_worker::gc::{collect_garbage, find_garbage};
use mongobak_worker::{
    BackupRunner, BackupRunnerConfig, Notifier, Scheduler, SchedulerConfig, TickReport,
};
use tokio_util::sync::CancellationToken;

const INSTANCE: &str = "cmgo-sched001";

fn shanghai() -> TimeZone {
    TimeZone::get("Asia/Shanghai").unwrap()
}

/// A Shanghai wall time.
fn at(text: &str) -> Timestamp {
    DateTime::strptime("%Y-%m-%d %H:%M", text)
        .unwrap()
        .to_zoned(shanghai())
        .unwrap()
        .timestamp()
}

fn local(t: Timestamp) -> String {
    t.to_zoned(shanghai())
        .strftime("%a %Y-%m-%d %H:%M")
        .to_string()
}

/// The metadata engines every scheduling test runs on.
#[derive(Clone, Copy)]
enum On {
    Sqlite,
    Postgres,
}

struct Fixture {
    dir: tempfile::TempDir,
    catalog: Catalog,
    store: BlobStore,
    metadata_url: String,
    _database: Option<TestDatabase>,
}

impl Fixture {
    async fn new(on: On, uri: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (metadata_url, database) = match on {
            On::Sqlite => (format!("sqlite://{}/m.db", dir.path().display()), None),
            On::Postgres => {
                let database = TestDatabase::create().await;
                (database.url.clone(), Some(database))
            }
        };
        let catalog = Catalog::open(&metadata_url).await.unwrap();
        catalog
            .instances()
            .add(&Instance {
                id: InstanceId::parse(INSTANCE).unwrap(),
                name: "scheduled".into(),
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
            dir,
            catalog,
            store,
            metadata_url,
            _database: database,
        }
    }

    /// The catalog of a restarted process: the same database, opened anew.
    async fn restart(&mut self) {
        self.catalog = Catalog::open(&self.metadata_url).await.unwrap();
    }

    fn scheduler(&self, automatic: bool) -> Scheduler {
        Scheduler::new(
            self.catalog.clone(),
            self.store.clone(),
            SchedulerConfig {
                timezone: shanghai(),
                default_retention_days: 7,
                automatic,
                ..SchedulerConfig::default()
            },
        )
    }

    /// Plays the backup runner at `now`: every queued backup is claimed,
    /// gets a stored file and succeeds.
    async fn take_queued_backups(&self, now: Timestamp) {
        while let Some(backup) = self.catalog.backups().claim_queued(now).await.unwrap() {
            self.store
                .put(&format!("{}/manifest.json", backup.storage_prefix), "{}")
                .await
                .unwrap();
            let sizes = BackupSizes {
                raw_bytes: 100,
                stored_bytes: 40,
                oplog_bytes: 4,
            };
            self.catalog
                .backups()
                .complete(backup.id, now, sizes, &[], 7)
                .await
                .unwrap();
        }
    }

    async fn backups(&self) -> Vec<Backup> {
        let mut all = self.catalog.backups().of_instance(INSTANCE).await.unwrap();
        all.reverse();
        all
    }

    async fn has_data(&self, backup: &Backup) -> bool {
        !self
            .store
            .list(&format!("{}/", backup.storage_prefix))
            .await
            .unwrap()
            .is_empty()
    }
}

/// Declares `name` as a module with a test per metadata engine, each
/// running `async fn name(On)`.
macro_rules! on_each_engine {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::On::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::On::Postgres).await
            }
        }
    )*};
}

on_each_engine!(
    a_week_of_a_twelve_hour_rule_and_its_expiry,
    a_restart_across_a_scheduled_time_runs_the_missed_backup_once,
    a_slot_waits_while_another_backup_of_the_instance_runs,
    garbage_collection_removes_old_orphans_and_nothing_else,
);

fn rule(hour: u8, frequency: u8, weekdays: &[u8]) -> BackupRule {
    BackupRule {
        backup_hour: hour,
        frequency_hours: frequency,
        active_weekdays: weekdays.to_vec(),
        explicit: true,
        ..BackupRule::defaults(INSTANCE, 7)
    }
}

/// Ticks every `step` from `from` (exclusive) to `to` (inclusive), taking
/// queued backups after each tick; returns every tick's report.
async fn run_clock(
    f: &Fixture,
    scheduler: &Scheduler,
    from: Timestamp,
    to: Timestamp,
    step: SignedDuration,
) -> Vec<TickReport> {
    let mut reports = Vec::new();
    let mut now = from + step;
    while now <= to {
        reports.push(scheduler.tick(now).await.unwrap());
        f.take_queued_backups(now).await;
        now += step;
    }
    reports
}

async fn a_week_of_a_twelve_hour_rule_and_its_expiry(on: On) {
    let f = Fixture::new(on, "mongodb://127.0.0.1:1/").await;
    let tz = shanghai();
    // Set on Sunday 2026-11-29 at midnight: 03:00 and 15:00 on Monday,
    // Wednesday and Friday; Wednesday's first backup is long-term.
    let start = at("2026-11-29 00:00");
    let mut weekly = rule(3, 12, &[1, 3, 5]);
    weekly.long_term_interval = LongTermInterval::Weekly;
    weekly.long_term_active_days = vec![3];
    weekly.long_term_expired_days = 90;
    f.catalog.rules().set(&weekly, start).await.unwrap();

    let scheduler = f.scheduler(true);
    let week_end = at("2026-12-06 00:00");
    run_clock(
        &f,
        &scheduler,
        start,
        week_end,
        SignedDuration::from_mins(10),
    )
    .await;

    let backups = f.backups().await;
    let taken: Vec<(String, bool, Option<Timestamp>)> = backups
        .iter()
        .map(|b| (local(b.created_at), b.long_term, b.expires_at))
        .collect();
    let expected_times = [
        "Mon 2026-11-30 03:00",
        "Mon 2026-11-30 15:00",
        "Wed 2026-12-02 03:00",
        "Wed 2026-12-02 15:00",
        "Fri 2026-12-04 03:00",
        "Fri 2026-12-04 15:00",
    ];
    assert_eq!(
        taken.iter().map(|t| t.0.as_str()).collect::<Vec<_>>(),
        expected_times,
        "{taken:?}"
    );
    for backup in &backups {
        assert_eq!(backup.backup_type, BackupType::Automatic);
        assert_eq!(backup.status, BackupStatus::Succeeded);
        assert_eq!(
            backup.name,
            format!(
                "{INSTANCE}_{}",
                backup
                    .created_at
                    .to_zoned(tz.clone())
                    .strftime("%Y-%m-%d %H:%M")
            )
        );
        let days = if backup.long_term { 90 } else { 7 };
        assert_eq!(
            backup.expires_at,
            Some(backup.created_at + SignedDuration::from_hours(24 * days)),
            "{}",
            backup.name
        );
    }
    assert_eq!(
        backups.iter().filter(|b| b.long_term).count(),
        1,
        "only Wednesday's first backup is long-term"
    );
    assert!(backups[2].long_term);

    // Monday 15:00's backup is being downloaded when it expires.
    let downloaded = &backups[1];
    let tasks = f
        .catalog
        .downloads()
        .ensure_tasks(
            downloaded.id,
            INSTANCE,
            &[format!("{INSTANCE}_0")],
            at("2026-12-07 14:00"),
        )
        .await
        .unwrap();

    // Expiry alone from now on (no more automatic backups).
    let expiry = f.scheduler(false);
    // Friday 15:00's backup expires on 12-11 15:00; the long-term one in
    // March.
    let report = expiry.tick(at("2026-12-11 15:00")).await.unwrap();
    let mut deleted = report.deleted.clone();
    deleted.sort_unstable();
    let expected: Vec<i64> = backups
        .iter()
        .filter(|b| !b.long_term && b.id != downloaded.id)
        .map(|b| b.id)
        .collect();
    assert_eq!(deleted, expected);
    assert_eq!(report.deferred, vec![downloaded.id]);
    for backup in &backups {
        let row = f.catalog.backups().get(backup.id).await.unwrap().unwrap();
        let gone = expected.contains(&backup.id);
        assert_eq!(row.status == BackupStatus::Deleted, gone, "{}", backup.name);
        assert_eq!(f.has_data(backup).await, !gone, "{}", backup.name);
    }

    // The download finishes: the next tick deletes the backup.
    let task = f
        .catalog
        .downloads()
        .claim("w", at("2026-12-11 15:01"), at("2026-12-11 16:00"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(task.id, tasks[0].id);
    let file = PublishedFile {
        path: format!("downloads/{}/1/f.archive.gz", task.id),
        size: 1,
        sha256: "00".repeat(32),
        expires_at: at("2026-12-18 15:00"),
    };
    assert!(f
        .catalog
        .downloads()
        .complete(task.id, "w", at("2026-12-11 15:02"), &file)
        .await
        .unwrap());
    let report = expiry.tick(at("2026-12-11 15:02")).await.unwrap();
    assert_eq!(report.deleted, vec![downloaded.id]);
    assert!(report.deferred.is_empty());
    assert!(!f.has_data(downloaded).await);

    // The long-term backup is kept until its 90 days are over.
    let long_term = &backups[2];
    let report = expiry.tick(at("2027-03-02 02:59")).await.unwrap();
    assert!(report.deleted.is_empty());
    assert!(f.has_data(long_term).await);
    let report = expiry.tick(at("2027-03-02 03:00")).await.unwrap();
    assert_eq!(report.deleted, vec![long_term.id]);
}

async fn a_restart_across_a_scheduled_time_runs_the_missed_backup_once(on: On) {
    let mut f = Fixture::new(on, "mongodb://127.0.0.1:1/").await;
    let daily = rule(3, 24, &[0, 1, 2, 3, 4, 5, 6]);
    f.catalog
        .rules()
        .set(&daily, at("2026-11-29 00:00"))
        .await
        .unwrap();
    let report = f
        .scheduler(true)
        .tick(at("2026-11-29 02:00"))
        .await
        .unwrap();
    assert!(report.started.is_empty());

    // The service is down from Sunday 02:00 to Tuesday 10:00: three slots
    // pass. A new process on the same metadata runs one backup.
    f.restart().await;
    let scheduler = f.scheduler(true);
    let report = scheduler.tick(at("2026-12-01 10:00")).await.unwrap();
    assert_eq!(report.started.len(), 1, "{report:?}");
    // Not again while it runs, nor after.
    assert!(scheduler
        .tick(at("2026-12-01 10:01"))
        .await
        .unwrap()
        .started
        .is_empty());
    f.take_queued_backups(at("2026-12-01 10:05")).await;
    assert!(scheduler
        .tick(at("2026-12-01 10:30"))
        .await
        .unwrap()
        .started
        .is_empty());
    // The next slot runs as usual.
    assert_eq!(
        scheduler
            .tick(at("2026-12-02 03:00"))
            .await
            .unwrap()
            .started
            .len(),
        1
    );
    let backups = f.backups().await;
    assert_eq!(
        backups
            .iter()
            .map(|b| local(b.created_at))
            .collect::<Vec<_>>(),
        ["Tue 2026-12-01 10:00", "Wed 2026-12-02 03:00"]
    );
}

async fn a_slot_waits_while_another_backup_of_the_instance_runs(on: On) {
    let f = Fixture::new(on, "mongodb://127.0.0.1:1/").await;
    f.catalog
        .rules()
        .set(&rule(3, 24, &[0, 1, 2, 3, 4, 5, 6]), at("2026-11-29 00:00"))
        .await
        .unwrap();
    // A manual backup is running at 03:00.
    let manual = f
        .catalog
        .backups()
        .create(
            &NewBackup {
                instance_id: INSTANCE.into(),
                method: 0,
                backup_type: BackupType::Manual,
                remark: String::new(),
                retention_days: 0,
                name: "manual".into(),
                long_term: false,
            },
            at("2026-11-29 02:55"),
        )
        .await
        .unwrap();
    f.catalog
        .backups()
        .claim_queued(at("2026-11-29 02:55"))
        .await
        .unwrap();
    let scheduler = f.scheduler(true);
    assert!(scheduler
        .tick(at("2026-11-29 03:00"))
        .await
        .unwrap()
        .started
        .is_empty());
    f.catalog
        .backups()
        .complete(
            manual.id,
            at("2026-11-29 03:20"),
            BackupSizes::default(),
            &[],
            7,
        )
        .await
        .unwrap();
    // Once it ended, the slot runs: one automatic backup.
    let report = scheduler.tick(at("2026-11-29 03:30")).await.unwrap();
    assert_eq!(report.started.len(), 1);
    let automatic = f
        .catalog
        .backups()
        .get(report.started[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(automatic.backup_type, BackupType::Automatic);
    // The manual backup took the rule's retention.
    let manual = f.catalog.backups().get(manual.id).await.unwrap().unwrap();
    assert_eq!(
        manual.expires_at,
        Some(at("2026-11-29 03:20") + SignedDuration::from_hours(24 * 7))
    );
}

/// Sets a file's modification time `age` before now.
fn age_file(root: &std::path::Path, path: &str, age: Duration) {
    let file = std::fs::File::options()
        .write(true)
        .open(root.join(path))
        .unwrap();
    file.set_modified(std::time::SystemTime::now() - age)
        .unwrap();
}

async fn garbage_collection_removes_old_orphans_and_nothing_else(on: On) {
    let f = Fixture::new(on, "mongodb://127.0.0.1:1/").await;
    let now = Timestamp::now();
    let new = |name: &str| NewBackup {
        instance_id: INSTANCE.into(),
        method: 0,
        backup_type: BackupType::Manual,
        remark: String::new(),
        retention_days: 0,
        name: name.into(),
        long_term: false,
    };
    // A live backup, a failed one and a deleted one.
    let live = f.catalog.backups().create(&new("live"), now).await.unwrap();
    f.take_queued_backups(now).await;
    let failed = f
        .catalog
        .backups()
        .create(&new("failed"), now)
        .await
        .unwrap();
    f.catalog.backups().claim_queued(now).await.unwrap();
    f.catalog
        .backups()
        .fail(failed.id, now, "boom")
        .await
        .unwrap();
    let deleted = f
        .catalog
        .backups()
        .create(&new("deleted"), now)
        .await
        .unwrap();
    f.take_queued_backups(now).await;
    f.catalog
        .backups()
        .mark_deleted(deleted.id, now)
        .await
        .unwrap();
    // A download task with a published file (attempt 2) and a dead
    // attempt 1, and a task being packaged right now (attempt 1).
    let published = f
        .catalog
        .downloads()
        .ensure_tasks(live.id, INSTANCE, &[format!("{INSTANCE}_0")], now)
        .await
        .unwrap()[0]
        .clone();
    let claimed = f
        .catalog
        .downloads()
        .claim("w", now, now + SignedDuration::from_hours(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, published.id);
    f.catalog
        .downloads()
        .fail_attempt(
            published.id,
            "w",
            now,
            "storage down",
            true,
            &mongobak_catalog::RetryPolicy {
                max_attempts: 5,
                first_backoff: SignedDuration::from_secs(1),
                max_backoff: SignedDuration::from_secs(1),
            },
        )
        .await
        .unwrap();
    let claimed = f
        .catalog
        .downloads()
        .claim(
            "w",
            now + SignedDuration::from_hours(2),
            now + SignedDuration::from_hours(3),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.attempts, 2);
    let file_path = format!("downloads/{}/2/f.archive.gz", published.id);
    f.catalog
        .downloads()
        .complete(
            published.id,
            "w",
            now,
            &PublishedFile {
                path: file_path.clone(),
                size: 1,
                sha256: "00".repeat(32),
                expires_at: now + SignedDuration::from_hours(24 * 7),
            },
        )
        .await
        .unwrap();

    let plant = [
        (format!("{}/manifest.json", live.storage_prefix), true),
        (format!("{}/rs0/s0.bson.zst", failed.storage_prefix), true),
        (format!("{}/manifest.json", deleted.storage_prefix), true),
        (format!("backups/{INSTANCE}/999/manifest.json"), true),
        (format!("backups/{INSTANCE}/998/manifest.json"), false),
        (file_path.clone(), true),
        (format!("{file_path}.sha256"), true),
        (format!("downloads/{}/1/f.archive.gz", published.id), true),
        ("downloads/777/1/f.archive.gz".to_string(), true),
        ("notes/readme.txt".to_string(), true),
        (format!("backups/{INSTANCE}/not-a-number/x"), true),
    ];
    let root = f.dir.path().join("blobs");
    for (path, old) in &plant {
        f.store.put(path, "data").await.unwrap();
        if *old {
            age_file(&root, path, Duration::from_secs(48 * 3600));
        }
    }
    let grace = SignedDuration::from_hours(24);
    let expected = [
        format!("backups/{INSTANCE}/{}/", failed.id),
        format!("backups/{INSTANCE}/{}/", deleted.id),
        format!("backups/{INSTANCE}/999/"),
        format!("downloads/{}/1/", published.id),
        "downloads/777/1/".to_string(),
    ];
    let mut expected = expected.to_vec();
    expected.sort();

    let dry = find_garbage(&f.catalog, &f.store, Timestamp::now(), grace)
        .await
        .unwrap();
    let listed: Vec<String> = dry.iter().map(|g| g.prefix.clone()).collect();
    assert_eq!(listed, expected, "{dry:#?}");
    assert!(dry.iter().all(|g| g.bytes == 4 && g.objects == 1));
    // The dry run deleted nothing.
    assert_eq!(f.store.list("").await.unwrap().len(), plant.len());

    let collected = collect_garbage(&f.catalog, &f.store, Timestamp::now(), grace)
        .await
        .unwrap();
    assert_eq!(collected, dry);
    let left: Vec<String> = f
        .store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.path)
        .collect();
    let mut kept: Vec<String> = plant
        .iter()
        .map(|(p, _)| p.clone())
        .filter(|p| !expected.iter().any(|e| p.starts_with(e.as_str())))
        .collect();
    kept.sort();
    assert_eq!(left, kept);
    // Nothing more to collect.
    assert!(find_garbage(&f.catalog, &f.store, Timestamp::now(), grace)
        .await
        .unwrap()
        .is_empty());
}

/// An HTTP server that answers 500 to the first `failures` posts and 200
/// after, and keeps every body.
async fn webhook(failures: usize) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let seen = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let seen = seen.clone();
            async move {
                let mut seen = seen.lock().unwrap();
                seen.push(body);
                if seen.len() <= failures {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

async fn wait_for_failure(catalog: &Catalog, id: i64) -> Backup {
    let what = format!("backup {id} failed");
    eventually(Duration::from_secs(60), &what, async || {
        let backup = catalog.backups().get(id).await.unwrap().unwrap();
        (backup.status == BackupStatus::Failed).then_some(backup)
    })
    .await
}

#[tokio::test]
async fn failed_automatic_backups_are_posted_to_the_webhook() {
    // Nothing listens on this port: every backup fails fast.
    let port = mongobak_testkit::free_port();
    let f = Fixture::new(
        On::Sqlite,
        &format!(
            "mongodb://127.0.0.1:{port}/?directConnection=true&serverSelectionTimeoutMS=300&connectTimeoutMS=300"
        ),
    )
    .await;
    let (url, received) = webhook(1).await;
    let runner = BackupRunner::new(
        f.catalog.clone(),
        f.store.clone(),
        BackupRunnerConfig {
            poll_interval: Duration::from_millis(50),
            notifier: Notifier::new(Some(url)).with_retries(4, Duration::from_millis(50)),
            // The failure is the subject: no second attempt.
            attempts: 1,
            ..BackupRunnerConfig::default()
        },
    );
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(runner.run(shutdown.clone()));
    let backup = |backup_type, name: &str| NewBackup {
        instance_id: INSTANCE.into(),
        method: 0,
        backup_type,
        remark: String::new(),
        retention_days: 0,
        name: name.into(),
        long_term: false,
    };

    // An automatic backup fails: posted, once the hook accepts (2nd try).
    let auto = f
        .catalog
        .backups()
        .create(&backup(BackupType::Automatic, "auto"), Timestamp::now())
        .await
        .unwrap();
    let failed = wait_for_failure(&f.catalog, auto.id).await;
    let bodies = eventually(Duration::from_secs(10), "two posts", async || {
        let bodies = received.lock().unwrap().clone();
        (bodies.len() >= 2).then_some(bodies)
    })
    .await;
    assert_eq!(bodies[0], bodies[1], "a retry posts the same event");
    assert_eq!(bodies[1]["event"], "backup.failed");
    assert_eq!(bodies[1]["instance_id"], INSTANCE);
    assert_eq!(bodies[1]["backup_id"], auto.id);
    assert_eq!(bodies[1]["backup_name"], "auto");
    assert_eq!(bodies[1]["reason"], failed.failure.clone().unwrap());

    // A manual backup's failure, and an automatic one with Notify off, are
    // logged only.
    let manual = f
        .catalog
        .backups()
        .create(&backup(BackupType::Manual, "manual"), Timestamp::now())
        .await
        .unwrap();
    wait_for_failure(&f.catalog, manual.id).await;
    let mut quiet = BackupRule::defaults(INSTANCE, 7);
    quiet.notify = false;
    f.catalog
        .rules()
        .set(&quiet, Timestamp::now())
        .await
        .unwrap();
    let muted = f
        .catalog
        .backups()
        .create(&backup(BackupType::Automatic, "muted"), Timestamp::now())
        .await
        .unwrap();
    wait_for_failure(&f.catalog, muted.id).await;
    // Nothing to wait for: the pause gives a post that should not come
    // the time to come.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(received.lock().unwrap().len(), 2);

    shutdown.cancel();
    running.await.unwrap();
}

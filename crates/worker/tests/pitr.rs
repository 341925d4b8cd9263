//! Continuous oplog backup against a real SecantusDB server: every write is
//! sealed into slices exactly once and in order, an idle source moves the
//! saved position without storing objects, a node that dies without a word
//! is replaced by another that resumes where the first stopped, and a
//! position the source's oplog no longer reaches becomes a recorded gap
//! and a queued base backup, and the janitor deletes the slices no restore
//! inside the window needs.

use std::time::Duration;

use jiff::Timestamp;
use mongobak_blob::BlobStore;
use mongobak_catalog::{
    Backup, BackupSizes, BackupStatus, BackupType, Catalog, ClusterType, Instance, InstanceId,
    InstanceSource, NewBackup, OplogTs, ReplicaSetId,
};
use mongobak_dump::stored::slice::{read_slice, WrittenSlice};
use mongobak_testkit::wait::eventually;
use mongobak_testkit::MongoServer;
use mongobak_worker::{Janitor, JanitorConfig, OplogBackup, OplogBackupConfig, Runner};
use mongodb::bson::{doc, Document, RawDocumentBuf, Timestamp as BsonTimestamp};
use mongodb::Client;
use tokio_util::sync::CancellationToken;

const INSTANCE: &str = "cmgo-pitr0001";

struct Fixture {
    catalog: Catalog,
    store: BlobStore,
    replica_set: ReplicaSetId,
    _dir: tempfile::TempDir,
}

async fn fixture(uri: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(&format!("sqlite://{}/m.db", dir.path().display()))
        .await
        .unwrap();
    let id = InstanceId::parse(INSTANCE).unwrap();
    catalog
        .instances()
        .add(&Instance {
            id: id.clone(),
            name: "pitr".into(),
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
        replica_set: id.replica_set(0),
        _dir: dir,
    }
}

fn config(node: &str) -> OplogBackupConfig {
    OplogBackupConfig {
        node: node.into(),
        seal_interval: Duration::from_secs(1),
        await_time: Duration::from_millis(300),
        lease_interval: Duration::from_secs(1),
        truncation_check: Duration::from_secs(2),
        discovery_interval: Duration::from_millis(200),
        ..OplogBackupConfig::default()
    }
}

/// Capture on a runtime of its own, as one node: `stop` ends it cleanly,
/// dropping the returned runtime ends it the way kill -9 does (no lease
/// given up, nothing finished).
fn node(fixture: &Fixture, name: &str, stop: CancellationToken) -> tokio::runtime::Runtime {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let capture = OplogBackup::new(fixture.catalog.clone(), fixture.store.clone(), config(name));
    runtime.spawn(Runner::run_until(stop, move |runner| capture.start(runner)));
    runtime
}

/// The newest entry of the source's oplog.
async fn newest_position(client: &Client) -> OplogTs {
    let newest = client
        .database("local")
        .collection::<Document>("oplog.rs")
        .find_one(doc! {})
        .sort(doc! {"ts": -1})
        .await
        .unwrap()
        .expect("an oplog entry");
    let ts = newest.get_timestamp("ts").unwrap();
    OplogTs {
        seconds: ts.time,
        increment: ts.increment,
    }
}

/// The source's entries after `after` up to `upto`, no-ops left out.
async fn source_entries(client: &Client, after: OplogTs, upto: OplogTs) -> Vec<RawDocumentBuf> {
    use futures::TryStreamExt;
    let bson = |ts: OplogTs| BsonTimestamp {
        time: ts.seconds,
        increment: ts.increment,
    };
    client
        .database("local")
        .collection::<RawDocumentBuf>("oplog.rs")
        .find(doc! {"ts": {"$gt": bson(after), "$lte": bson(upto)}, "op": {"$ne": "n"}})
        .sort(doc! {"$natural": 1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// Every entry in the sealed slices from `after` on, checking that each
/// slice starts where the one before it ended; and the number of objects.
async fn sealed_entries(fixture: &Fixture, after: OplogTs) -> (Vec<RawDocumentBuf>, usize) {
    let slices = fixture
        .catalog
        .oplog()
        .slices(
            &fixture.replica_set,
            after,
            OplogTs::end_of_second(i32::MAX as u32),
        )
        .await
        .unwrap();
    let mut entries = Vec::new();
    let mut reached = after;
    for slice in &slices {
        assert!(
            slice.after >= reached,
            "slice {}-{} overlaps the one before (ending at {reached})",
            slice.after,
            slice.last
        );
        reached = slice.last;
        let written = WrittenSlice {
            entries: slice.object.entries,
            raw_bytes: slice.object.raw_bytes,
            stored_bytes: slice.object.stored_bytes,
            sha256: slice.object.sha256.clone(),
        };
        let mut reader = read_slice(fixture.store.clone(), &slice.object.path, &written);
        while let Some(bytes) = reader.next_document().await.unwrap() {
            entries.push(RawDocumentBuf::from_bytes(bytes).unwrap());
        }
    }
    (entries, slices.len())
}

async fn sealed_at_least(fixture: &Fixture, target: OplogTs, limit: Duration) -> OplogTs {
    eventually(
        limit,
        "the saved position reaches the last write",
        async || {
            let position = fixture
                .catalog
                .oplog()
                .position(&fixture.replica_set)
                .await
                .unwrap()?;
            (position.sealed >= target).then_some(position.sealed)
        },
    )
    .await
}

async fn begun(fixture: &Fixture) -> OplogTs {
    eventually(
        Duration::from_secs(60),
        "the tailer saves its first position",
        async || {
            let position = fixture
                .catalog
                .oplog()
                .position(&fixture.replica_set)
                .await
                .unwrap()?;
            Some(position.sealed)
        },
    )
    .await
}

/// Inserts, updates and deletes in `app.orders`, keyed from `from`.
async fn burst(client: &Client, from: i64, count: i64) {
    let orders = client.database("app").collection::<Document>("orders");
    for n in from..from + count {
        orders
            .insert_one(doc! {"_id": n, "qty": 1, "tags": []})
            .await
            .unwrap();
        if n % 3 == 0 {
            orders
                .update_one(
                    doc! {"_id": n},
                    doc! {"$inc": {"qty": 2}, "$push": {"tags": "x"}},
                )
                .await
                .unwrap();
        }
        if n % 7 == 0 {
            orders.delete_one(doc! {"_id": n}).await.unwrap();
        }
    }
}

/// Records a succeeded manual backup `name` whose replica set ends at
/// `end` in its oplog: a base for point-in-time restore.
async fn record_backup(fixture: &Fixture, name: &str, end: OplogTs) -> Backup {
    let backups = fixture.catalog.backups();
    let backup = backups
        .create(
            &NewBackup {
                instance_id: INSTANCE.into(),
                method: 0,
                backup_type: BackupType::Manual,
                remark: String::new(),
                retention_days: 30,
                name: name.into(),
                long_term: false,
            },
            Timestamp::now(),
        )
        .await
        .unwrap();
    backups
        .claim_queued(Timestamp::now())
        .await
        .unwrap()
        .unwrap();
    backups
        .record_oplog_ends(backup.id, &[(fixture.replica_set.clone(), end)])
        .await
        .unwrap();
    backups
        .complete(
            backup.id,
            Timestamp::now(),
            BackupSizes::default(),
            std::slice::from_ref(&fixture.replica_set),
            7,
        )
        .await
        .unwrap();
    backup
}

#[test]
fn every_write_is_sealed_once_in_order_and_an_idle_source_stores_no_objects() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(MongoServer::start_with(&["--noop-heartbeat-seconds", "1"]));
    let fixture = runtime.block_on(fixture(&server.uri()));
    let stop = CancellationToken::new();
    let capture = node(&fixture, "a", stop.clone());
    runtime.block_on(async {
        let client = server.client();
        let start = begun(&fixture).await;
        burst(&client, 0, 400).await;
        let last_write = newest_position(&client).await;
        let sealed = sealed_at_least(&fixture, last_write, Duration::from_secs(30)).await;
        let (saved, objects) = sealed_entries(&fixture, start).await;
        let expected = source_entries(&client, start, sealed).await;
        assert!(
            expected.len() > 400,
            "the workload logged {} entries",
            expected.len()
        );
        assert_eq!(
            saved.len(),
            expected.len(),
            "entries saved against entries written"
        );
        assert!(
            saved == expected,
            "the saved entries differ from the source's"
        );
        assert!(
            objects < expected.len() / 20,
            "{objects} objects for {} entries: slices must gather writes",
            expected.len()
        );

        // Idle: the heartbeat's no-ops move the position, and store nothing.
        let idle_from = sealed;
        let moved = eventually(
            Duration::from_secs(20),
            "the position moves while the source is idle",
            async || {
                let position = fixture
                    .catalog
                    .oplog()
                    .position(&fixture.replica_set)
                    .await
                    .unwrap()?;
                (position.sealed.seconds >= idle_from.seconds + 3).then_some(position.sealed)
            },
        )
        .await;
        let (_, objects_after_idle) = sealed_entries(&fixture, start).await;
        assert_eq!(
            objects_after_idle, objects,
            "an idle stretch up to {moved} stored objects"
        );
    });
    stop.cancel();
    capture.shutdown_timeout(Duration::from_secs(10));
}

#[test]
fn a_node_that_dies_is_replaced_with_no_entry_lost_or_saved_twice() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(MongoServer::start_with(&["--noop-heartbeat-seconds", "1"]));
    let fixture = runtime.block_on(fixture(&server.uri()));
    let first = node(&fixture, "a", CancellationToken::new());
    let start = runtime.block_on(begun(&fixture));
    let client = runtime.block_on(async { server.client() });
    let writer = runtime.spawn({
        let client = client.clone();
        async move { burst(&client, 0, 600).await }
    });
    // The first node dies in the middle of the burst, holding the lease.
    runtime.block_on(async {
        eventually(
            Duration::from_secs(30),
            "a first slice is sealed",
            async || {
                let position = fixture
                    .catalog
                    .oplog()
                    .position(&fixture.replica_set)
                    .await
                    .unwrap()?;
                (position.sealed > start).then_some(())
            },
        )
        .await
    });
    first.shutdown_background();
    let second_stop = CancellationToken::new();
    let second = node(&fixture, "b", second_stop.clone());
    runtime.block_on(async {
        writer.await.unwrap();
        let last_write = newest_position(&client).await;
        let taken_over = std::time::Instant::now();
        let sealed = sealed_at_least(&fixture, last_write, Duration::from_secs(60)).await;
        assert!(
            taken_over.elapsed() < Duration::from_secs(30),
            "the second node resumed after {:?}",
            taken_over.elapsed()
        );
        let (saved, _) = sealed_entries(&fixture, start).await;
        let expected = source_entries(&client, start, sealed).await;
        assert_eq!(
            saved.len(),
            expected.len(),
            "entries saved against entries written"
        );
        assert!(
            saved == expected,
            "the saved entries differ from the source's"
        );
        let gaps = fixture
            .catalog
            .oplog()
            .gaps(&fixture.replica_set)
            .await
            .unwrap();
        assert!(gaps.is_empty(), "a takeover left gaps: {gaps:?}");
    });
    second_stop.cancel();
    second.shutdown_timeout(Duration::from_secs(10));
}

#[test]
fn a_position_the_source_no_longer_has_is_a_gap_and_starts_a_base_backup() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(MongoServer::start_with(&["--oplog-max-entries", "500"]));
    let fixture = runtime.block_on(fixture(&server.uri()));
    let client = runtime.block_on(async { server.client() });
    let stop = CancellationToken::new();
    let capture = node(&fixture, "a", stop.clone());
    let saved = runtime.block_on(async {
        begun(&fixture).await;
        burst(&client, 0, 20).await;
        let last_write = newest_position(&client).await;
        sealed_at_least(&fixture, last_write, Duration::from_secs(30)).await
    });
    stop.cancel();
    capture.shutdown_timeout(Duration::from_secs(10));

    // While nobody tails, the source's small oplog moves past the position.
    runtime.block_on(async {
        burst(&client, 1_000, 1_500).await;
        client
            .database("admin")
            .run_command(doc! {"secantusAdmin.pruneOplog": 1})
            .await
            .unwrap();
    });
    let stop = CancellationToken::new();
    let capture = node(&fixture, "a", stop.clone());
    runtime.block_on(async {
        let gap = eventually(Duration::from_secs(60), "the gap is recorded", async || {
            let gaps = fixture
                .catalog
                .oplog()
                .gaps(&fixture.replica_set)
                .await
                .unwrap();
            gaps.into_iter().next()
        })
        .await;
        assert_eq!(gap.from, saved, "the gap starts at the saved position");
        assert!(gap.to > saved);
        let backups = fixture
            .catalog
            .backups()
            .of_instance(INSTANCE)
            .await
            .unwrap();
        assert_eq!(backups.len(), 1, "one base backup is queued: {backups:?}");
        assert_eq!(backups[0].backup_type, BackupType::Automatic);
        assert_eq!(backups[0].status, BackupStatus::Queued);

        // Tailing goes on after the gap.
        burst(&client, 5_000, 10).await;
        let last_write = newest_position(&client).await;
        sealed_at_least(&fixture, last_write, Duration::from_secs(30)).await;
        let (saved_after, _) = sealed_entries(&fixture, gap.to).await;
        let expected = source_entries(&client, gap.to, last_write).await;
        assert!(saved_after == expected, "entries after the gap differ");
    });
    stop.cancel();
    capture.shutdown_timeout(Duration::from_secs(10));
}

#[test]
fn the_janitor_deletes_the_slices_no_restore_in_the_window_needs() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(MongoServer::start_with(&["--noop-heartbeat-seconds", "1"]));
    let fixture = runtime.block_on(fixture(&server.uri()));
    let client = runtime.block_on(async { server.client() });
    let stop = CancellationToken::new();
    let capture = node(&fixture, "a", stop.clone());
    let (start, base_end) = runtime.block_on(async {
        let start = begun(&fixture).await;
        burst(&client, 0, 100).await;
        let base_end = sealed_at_least(
            &fixture,
            newest_position(&client).await,
            Duration::from_secs(30),
        )
        .await;
        burst(&client, 1_000, 100).await;
        sealed_at_least(
            &fixture,
            newest_position(&client).await,
            Duration::from_secs(30),
        )
        .await;
        (start, base_end)
    });
    stop.cancel();
    capture.shutdown_timeout(Duration::from_secs(10));

    runtime.block_on(async {
        // A backup whose replica set ends where the first burst was sealed.
        record_backup(&fixture, "base", base_end).await;
        let all = fixture
            .catalog
            .oplog()
            .slices(
                &fixture.replica_set,
                start,
                OplogTs::end_of_second(i32::MAX as u32),
            )
            .await
            .unwrap();
        let (before, after): (Vec<_>, Vec<_>) = all.iter().partition(|s| s.last <= base_end);
        assert!(
            !before.is_empty() && !after.is_empty(),
            "slices on both sides of the base"
        );

        // Eight days on, past the default 7 days of oplog.
        let later = Timestamp::now() + jiff::SignedDuration::from_hours(24 * 8);
        let janitor = Janitor::new(
            fixture.catalog.clone(),
            fixture.store.clone(),
            JanitorConfig::default(),
        );
        let report = janitor.round(later).await.unwrap();
        assert_eq!(report.slices_deleted, before.len(), "{report:?}");
        for slice in &before {
            assert_eq!(fixture.store.size(&slice.object.path).await.unwrap(), None);
        }
        for slice in &after {
            assert!(fixture
                .store
                .size(&slice.object.path)
                .await
                .unwrap()
                .is_some());
        }
        let window = fixture
            .catalog
            .oplog()
            .window(&fixture.replica_set)
            .await
            .unwrap();
        assert_eq!(window.position.as_ref().unwrap().kept_from, base_end);
        assert_eq!(
            window.spans.first().map(|s| s.from.as_second()),
            Some(i64::from(base_end.seconds)),
            "the window still starts at the base: {window:?}"
        );
        // Nothing more to delete.
        assert_eq!(janitor.round(later).await.unwrap().slices_deleted, 0);
    });
}

#[test]
fn a_first_start_picks_up_where_the_latest_backup_ended() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(MongoServer::start_with(&["--noop-heartbeat-seconds", "1"]));
    let fixture = runtime.block_on(fixture(&server.uri()));
    let client = runtime.block_on(async { server.client() });
    // A backup ended here, before continuous backup ever ran; writes follow.
    let backup_end = runtime.block_on(async {
        burst(&client, 0, 20).await;
        let end = newest_position(&client).await;
        record_backup(&fixture, "before", end).await;
        burst(&client, 1_000, 20).await;
        end
    });
    let stop = CancellationToken::new();
    let capture = node(&fixture, "a", stop.clone());
    runtime.block_on(async {
        begun(&fixture).await;
        let position = fixture
            .catalog
            .oplog()
            .position(&fixture.replica_set)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            position.kept_from, backup_end,
            "the tailer began at the backup's end"
        );
        let last_write = newest_position(&client).await;
        let sealed = sealed_at_least(&fixture, last_write, Duration::from_secs(30)).await;
        let (saved, _) = sealed_entries(&fixture, backup_end).await;
        let expected = source_entries(&client, backup_end, sealed).await;
        assert!(saved == expected, "the writes after the backup are saved");
        // Once a later second is sealed (the heartbeat sees to it), the
        // window opens at the backup.
        let window = eventually(Duration::from_secs(30), "a window", async || {
            let window = fixture
                .catalog
                .oplog()
                .window(&fixture.replica_set)
                .await
                .unwrap();
            (!window.spans.is_empty()).then_some(window)
        })
        .await;
        assert_eq!(
            window.spans[0].from.as_second(),
            i64::from(backup_end.seconds),
            "the backup is a base at once: {window:?}"
        );
    });
    stop.cancel();
    capture.shutdown_timeout(Duration::from_secs(10));
}

//! The restore workers: point-in-time restores (`RestoreDBInstance`) and
//! flashbacks by key (`FlashBackDBInstance`) run as durable leased tasks.
//!
//! A worker claims a task with a lease and, for each replica set of the
//! instance (every shard of a sharded one, all to the same time):
//! 1. picks the base: the latest backup ending in or before the restore
//!    time with saved oplog from its end to the time (`catalog::window`);
//! 2. rebuilds each collection in a staging collection of the same
//!    database (`restore::point_in_time`): the base's documents, the
//!    base's own oplog slice, the base's indexes, then the continuous
//!    oplog slices up to the end of the restore second;
//! 3. once every replica set is rebuilt, renames each staging collection
//!    to its target name, and only then marks the task done.
//!
//! A flashback rebuilds the same way, only the keys asked for when they
//! are `_id`s (`restore::keys`), then copies the matching documents of
//! every replica set's staging collection into a staging collection of
//! the target instance (its mongos, or its first replica set), renames
//! that to the result name, and drops the rebuilt ones.
//!
//! The lease is renewed as the work goes; a worker that loses it stops.
//! A worker that dies leaves its lease to lapse, and the next claim redoes
//! the task from the start, discarding the staging collections first. So
//! a target collection only ever appears complete; a redo leaves alone the
//! targets an earlier attempt already renamed into place (the API refused
//! targets that existed when the task was asked for). A collection is
//! rebuilt on the replica sets where it existed at the time (an unsharded
//! collection lives on one shard), and the task fails only when it existed
//! on none.

use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use mongobak_blob::BlobStore;
use mongobak_catalog::{
    Base, Catalog, Instance, OplogTs, ReplicaSetId, RestoreKind, RestoreTarget, RestoreTask,
    RESTORE_LEASE,
};
use mongobak_dump::format::{CollectionEntry, ReplicaSetManifest};
use mongobak_dump::stored::slice::{read_slice, WrittenSlice};
use mongobak_dump::{read_manifests, SegmentReader};
use mongobak_restore::keys::KeyMatcher;
use mongobak_restore::point_in_time::CollectionAtTime;
use mongodb::bson::{doc, RawDocumentBuf};
use mongodb::options::ClientOptions;
use mongodb::Client;
use tokio_util::sync::CancellationToken;

use crate::runner::{Runner, Step, WorkError, Worker};

/// Documents per insert of a base's documents.
const INSERT_BATCH: usize = 1000;

/// Settings of the restore workers.
#[derive(Debug, Clone)]
pub struct RestoreRunnerConfig {
    /// Name of this node's workers in leases (unique per process).
    pub node: String,
    /// Restores run at once on this node.
    pub workers: usize,
    /// How often to look for queued restores when not woken.
    pub poll_interval: Duration,
    /// How often the lease is renewed and the percentage saved.
    pub heartbeat: Duration,
    /// Claims of one task before it fails (each a crash or lost lease).
    pub max_attempts: i64,
}

impl Default for RestoreRunnerConfig {
    fn default() -> Self {
        RestoreRunnerConfig {
            node: "local".into(),
            workers: 1,
            poll_interval: Duration::from_secs(1),
            heartbeat: Duration::from_secs(5),
            max_attempts: 3,
        }
    }
}

/// Runs queued restores.
#[derive(Debug, Clone)]
pub struct RestoreRunner {
    catalog: Catalog,
    store: BlobStore,
    config: RestoreRunnerConfig,
}

/// Why a restore stopped.
#[derive(Debug)]
enum Stop {
    /// The task cannot be done: it fails with this reason.
    Failed(String),
    /// Another worker holds the task now, or the node is stopping: leave
    /// it as it is.
    Abandoned,
}

impl<E: std::fmt::Display> From<E> for Stop
where
    E: Into<WorkError>,
{
    fn from(e: E) -> Self {
        Stop::Failed(e.to_string())
    }
}

impl RestoreRunner {
    /// Restore workers over `catalog`, reading backups and slices from
    /// `store`.
    pub fn new(catalog: Catalog, store: BlobStore, config: RestoreRunnerConfig) -> Self {
        RestoreRunner {
            catalog,
            store,
            config,
        }
    }

    /// Runs `workers` restore workers on `runner`.
    pub fn start(self, runner: &Runner) {
        for n in 0..self.config.workers.max(1) {
            runner.spawn(RestoreWorker {
                name: format!("{}/restore-{n}", self.config.node),
                restores: self.clone(),
            });
        }
    }

    async fn run(&self, worker: &str, task: RestoreTask, stop: &CancellationToken) {
        let started = Instant::now();
        tracing::info!(flow_id = task.flow_id, instance = %task.instance_id, attempt = task.attempts, "restore started");
        let mut lease = Lease {
            catalog: &self.catalog,
            worker,
            task: task.id,
            every: self.config.heartbeat,
            last: Instant::now(),
            stop,
        };
        // A source that does not answer can hold a step up for long: a
        // stop does not wait for it (the task is redone after a restart).
        let outcome = tokio::select! {
            outcome = self.restore(&task, &mut lease) => outcome,
            () = stop.cancelled() => Err(Stop::Abandoned),
        };
        let now = Timestamp::now();
        let restores = self.catalog.restores();
        match outcome {
            Ok(()) => match restores.complete(task.id, worker, now).await {
                Ok(true) => {
                    metrics::counter!("mongobak_restores_total", "outcome" => "succeeded")
                        .increment(1);
                    tracing::info!(
                        flow_id = task.flow_id,
                        seconds = started.elapsed().as_secs_f64(),
                        "restore succeeded"
                    );
                }
                Ok(false) => tracing::warn!(
                    flow_id = task.flow_id,
                    "the restore finished after its lease was lost"
                ),
                Err(e) => {
                    tracing::error!(flow_id = task.flow_id, error = %e, "cannot record the finished restore; it will be redone")
                }
            },
            Err(Stop::Failed(reason)) => {
                metrics::counter!("mongobak_restores_total", "outcome" => "failed").increment(1);
                tracing::error!(flow_id = task.flow_id, reason = %reason, "restore failed");
                if let Err(e) = restores.fail(task.id, worker, now, &reason).await {
                    tracing::error!(flow_id = task.flow_id, error = %e, "cannot record the failed restore");
                }
            }
            Err(Stop::Abandoned) => {
                tracing::warn!(
                    flow_id = task.flow_id,
                    "restore abandoned (lease lost or stopping)"
                )
            }
        }
    }

    async fn restore(&self, task: &RestoreTask, lease: &mut Lease<'_>) -> Result<(), Stop> {
        let instance = self.instance(&task.instance_id).await?;
        let end = OplogTs::end_of_second(
            u32::try_from(task.restore_time.as_second())
                .map_err(|_| Stop::Failed("the restore time is out of range".into()))?,
        );
        match task.kind {
            RestoreKind::Restore => self.restore_collections(task, &instance, end, lease).await,
            RestoreKind::Flashback => self.flashback(task, &instance, end, lease).await,
        }
    }

    async fn instance(&self, id: &str) -> Result<Instance, Stop> {
        self.catalog
            .instances()
            .get(id)
            .await?
            .ok_or_else(|| Stop::Failed(format!("instance {id} is no longer registered")))
    }

    /// RestoreDBInstance: each collection rebuilt on every replica set
    /// where it existed at the time, then renamed to its target there.
    async fn restore_collections(
        &self,
        task: &RestoreTask,
        instance: &Instance,
        end: OplogTs,
        lease: &mut Lease<'_>,
    ) -> Result<(), Stop> {
        let targets = &task.plan.collections;
        let rebuilt = self
            .rebuild_everywhere(task, instance, Pending::UnpublishedHere, end, lease)
            .await?;
        // Every replica set is rebuilt: the targets appear, each whole.
        for (client, here) in &rebuilt {
            for &k in here {
                let target = &targets[k];
                CollectionAtTime::new(client, &target.db, &target.source, &staging_name(task, k))
                    .publish(&target.target)
                    .await?;
            }
        }
        Ok(())
    }

    /// FlashBackDBInstance: each collection rebuilt (just the keys asked
    /// for, when by `_id`) on every replica set, then the matching
    /// documents copied into a staging collection of the target instance,
    /// renamed to the result name once complete.
    async fn flashback(
        &self,
        task: &RestoreTask,
        instance: &Instance,
        end: OplogTs,
        lease: &mut Lease<'_>,
    ) -> Result<(), Stop> {
        let targets = &task.plan.collections;
        let target_instance = self.instance(&task.target_instance_id).await?;
        let writer = connect_writer(&target_instance).await?;
        // A redo leaves alone the results an earlier attempt renamed into
        // place (the API refused results that existed).
        let mut pending = Vec::new();
        for (k, target) in targets.iter().enumerate() {
            if task.attempts == 1 || !exists(&writer, &target.db, &target.target).await? {
                pending.push(k);
            }
        }
        let rebuilt = self
            .rebuild_everywhere(task, instance, Pending::Only(&pending), end, lease)
            .await?;
        for &k in &pending {
            let target = &targets[k];
            let keys = key_matcher(target)?;
            let mut result = CollectionAtTime::new(
                &writer,
                &target.db,
                &target.target,
                &result_staging_name(task, k),
            );
            result.discard().await?;
            result.create(&serde_json::json!({}), &[]).await?;
            let mut documents = 0;
            for (client, here) in &rebuilt {
                if here.contains(&k) {
                    let staging = staging_name(task, k);
                    documents +=
                        copy_matches(client, &target.db, &staging, &keys, &mut result, lease)
                            .await?;
                }
            }
            result.publish(&target.target).await?;
            tracing::info!(flow_id = task.flow_id, collection = %target.source, result = %target.target, documents, "flashback result written");
        }
        for (client, here) in &rebuilt {
            for &k in here {
                let target = &targets[k];
                CollectionAtTime::new(client, &target.db, &target.source, &staging_name(task, k))
                    .discard()
                    .await?;
            }
        }
        Ok(())
    }

    /// Rebuilds targets of `task` on every replica set of `instance`, in
    /// staging collections; answers each replica set's client with the
    /// targets rebuilt there (those that existed there at the time). Fails
    /// when a target existed on no replica set (and was not renamed into
    /// place by an earlier attempt).
    async fn rebuild_everywhere(
        &self,
        task: &RestoreTask,
        instance: &Instance,
        pending: Pending<'_>,
        end: OplogTs,
        lease: &mut Lease<'_>,
    ) -> Result<Vec<(Client, Vec<usize>)>, Stop> {
        let targets = &task.plan.collections;
        let sets = instance.replica_set_ids();
        let mut rebuilt = Vec::new();
        let mut existed = vec![false; targets.len()];
        if let Pending::Only(only) = pending {
            for k in (0..targets.len()).filter(|k| !only.contains(k)) {
                existed[k] = true;
            }
        }
        for (n, replica_set_id) in sets.iter().enumerate() {
            let client = connect(&instance.replica_set_uris[n], replica_set_id).await?;
            let here = match pending {
                Pending::Only(only) => only.to_vec(),
                Pending::UnpublishedHere => {
                    let mut here = Vec::new();
                    for (k, target) in targets.iter().enumerate() {
                        if task.attempts > 1 && exists(&client, &target.db, &target.target).await? {
                            existed[k] = true;
                        } else {
                            here.push(k);
                        }
                    }
                    here
                }
            };
            let found = self
                .rebuild(
                    task,
                    replica_set_id,
                    &client,
                    &here,
                    end,
                    lease,
                    (n, sets.len()),
                )
                .await?;
            let here: Vec<usize> = here
                .into_iter()
                .zip(found)
                .filter_map(|(k, found)| found.then_some(k))
                .collect();
            for &k in &here {
                existed[k] = true;
            }
            rebuilt.push((client, here));
        }
        if let Some(k) = existed.iter().position(|e| !e) {
            let target = &targets[k];
            return Err(Stop::Failed(format!(
                "{}.{} did not exist at that time",
                target.db, target.source
            )));
        }
        Ok(rebuilt)
    }

    /// Rebuilds the targets of `task` numbered in `pending` on one replica
    /// set, each in its staging collection; answers, for each, whether it
    /// existed there at the time (when not, it has no staging collection).
    #[allow(clippy::too_many_arguments)]
    async fn rebuild(
        &self,
        task: &RestoreTask,
        replica_set_id: &ReplicaSetId,
        client: &Client,
        pending: &[usize],
        end: OplogTs,
        lease: &mut Lease<'_>,
        (n, of): (usize, usize),
    ) -> Result<Vec<bool>, Stop> {
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let window = self.catalog.oplog().window(replica_set_id).await?;
        let Some(base) = window.base_for(task.restore_time) else {
            return Err(Stop::Failed(format!(
                "{replica_set_id} cannot be restored to that time: no backup before it with saved oplog up to it"
            )));
        };
        let manifest = self.base_manifest(base, replica_set_id).await?;
        let targets = &task.plan.collections;
        let mut collections: Vec<(
            CollectionAtTime<'_>,
            Option<&CollectionEntry>,
            &RestoreTarget,
        )> = Vec::new();
        for &k in pending {
            let target = &targets[k];
            let staging = staging_name(task, k);
            let mut collection =
                CollectionAtTime::new(client, &target.db, &target.source, &staging);
            if target.keys.is_some() {
                collection = collection.with_keys(&key_matcher(target)?);
            }
            collection.discard().await?;
            let entry = manifest
                .collections
                .iter()
                .find(|c| c.db == target.db && c.name == target.source);
            collections.push((collection, entry, target));
        }
        // The base's documents.
        let documents: u64 = collections
            .iter()
            .filter_map(|(_, entry, _)| entry.map(|e| e.data.documents))
            .sum();
        let slices = self
            .catalog
            .oplog()
            .slices(replica_set_id, base.end, end)
            .await?;
        let oplog_entries: u64 =
            manifest.oplog.documents + slices.iter().map(|s| s.object.entries).sum::<u64>();
        let total = (documents + oplog_entries).max(1);
        let mut done = 0u64;
        let percent = |done: u64| ((n as u64 * 100 + done * 100 / total) / of as u64) as i64;
        for (collection, entry, _) in collections.iter_mut() {
            let Some(entry) = entry else { continue };
            collection.create(&entry.options, &entry.indexes).await?;
            let mut reader = SegmentReader::new(self.store.clone(), &entry.data);
            let mut batch = Vec::with_capacity(INSERT_BATCH);
            while let Some(document) = reader.next_document().await? {
                batch.push(RawDocumentBuf::from_bytes(document).map_err(|e| {
                    Stop::Failed(format!("a document of the base is not BSON: {e}"))
                })?);
                if batch.len() == INSERT_BATCH {
                    collection.insert(&batch).await?;
                    done += batch.len() as u64;
                    batch.clear();
                    lease.renew(percent(done)).await?;
                }
            }
            collection.insert(&batch).await?;
            done += batch.len() as u64;
        }
        // The base's own oplog slice makes its documents consistent at its
        // end; its indexes come then.
        let mut reader = SegmentReader::new(self.store.clone(), &manifest.oplog);
        while let Some(raw) = reader.next_document().await? {
            let entry = RawDocumentBuf::from_bytes(raw).map_err(|e| {
                Stop::Failed(format!("an oplog entry of the base is not BSON: {e}"))
            })?;
            for (collection, _, _) in collections.iter_mut() {
                collection.replay(&entry).await?;
            }
            done += 1;
            if done.is_multiple_of(256) {
                lease.renew(percent(done)).await?;
            }
        }
        for (collection, entry, _) in collections.iter_mut() {
            if let Some(entry) = entry {
                collection
                    .create_indexes(&entry.options, &entry.indexes)
                    .await?;
            }
        }
        // The continuous oplog from the base's end to the restore second.
        // The catalog moved the position only by contiguous stretches, and
        // the window has no gap between the base and the time: the slices
        // hold every entry (stretches of no-ops have no slice).
        for slice in &slices {
            let written = WrittenSlice {
                entries: slice.object.entries,
                raw_bytes: slice.object.raw_bytes,
                stored_bytes: slice.object.stored_bytes,
                sha256: slice.object.sha256.clone(),
            };
            let mut reader = read_slice(self.store.clone(), &slice.object.path, &written);
            while let Some(raw) = reader.next_document().await? {
                let entry = RawDocumentBuf::from_bytes(raw)
                    .map_err(|e| Stop::Failed(format!("a saved oplog entry is not BSON: {e}")))?;
                let ts = entry
                    .get_timestamp("ts")
                    .map_err(|e| Stop::Failed(format!("a saved oplog entry has no ts: {e}")))?;
                let ts = OplogTs {
                    seconds: ts.time,
                    increment: ts.increment,
                };
                done += 1;
                if ts <= base.end || ts > end {
                    continue;
                }
                for (collection, _, _) in collections.iter_mut() {
                    collection.replay(&entry).await?;
                }
                if done.is_multiple_of(256) {
                    lease.renew(percent(done)).await?;
                }
            }
        }
        let mut existed = Vec::with_capacity(collections.len());
        for (collection, _, _) in collections.iter_mut() {
            existed.push(collection.exists().await?);
        }
        lease.renew(percent(total)).await?;
        let inserted: u64 = collections.iter().map(|(c, _, _)| c.inserted()).sum();
        let replayed: u64 = collections.iter().map(|(c, _, _)| c.replayed()).sum();
        tracing::info!(flow_id = task.flow_id, replica_set = %replica_set_id, base = base.backup_id, slices = slices.len(), inserted, replayed, "replica set rebuilt");
        Ok(existed)
    }

    async fn base_manifest(
        &self,
        base: Base,
        replica_set_id: &ReplicaSetId,
    ) -> Result<ReplicaSetManifest, Stop> {
        let backup = self
            .catalog
            .backups()
            .get(base.backup_id)
            .await?
            .ok_or_else(|| Stop::Failed(format!("backup {} is gone", base.backup_id)))?;
        let (_, sets) = read_manifests(&self.store, &backup.storage_prefix).await?;
        sets.into_iter()
            .find(|set| set.replica_set_id == replica_set_id.as_str())
            .ok_or_else(|| {
                Stop::Failed(format!(
                    "backup {} holds no {replica_set_id}",
                    base.backup_id
                ))
            })
    }
}

/// Which targets a replica set rebuilds.
#[derive(Debug, Clone, Copy)]
enum Pending<'a> {
    /// Those not yet renamed into place on that replica set by an earlier
    /// attempt (a restore publishes on each replica set).
    UnpublishedHere,
    /// These (a flashback publishes on the target instance).
    Only(&'a [usize]),
}

/// The staging collection of the `k`-th target of `task`.
fn staging_name(task: &RestoreTask, k: usize) -> String {
    format!("mongobak_restore_{}_{k}", task.flow_id)
}

/// The staging collection of a flashback's `k`-th result, on the target
/// instance.
fn result_staging_name(task: &RestoreTask, k: usize) -> String {
    format!("mongobak_flashback_{}_{k}", task.flow_id)
}

/// The keys of a flashback's target.
fn key_matcher(target: &RestoreTarget) -> Result<KeyMatcher, Stop> {
    let keys = target
        .keys
        .as_ref()
        .ok_or_else(|| Stop::Failed(format!("no keys are given for {}", target.source)))?;
    Ok(KeyMatcher::new(&keys.field, &keys.values))
}

/// A client of one replica set (`name` in errors). Writes are sent once,
/// not retried by the driver: a restore's writes are redone whole when
/// they fail, and retryable writes cost some servers several times more.
async fn connect(uri: &str, name: &(dyn std::fmt::Display + Sync)) -> Result<Client, Stop> {
    let refused = || {
        Stop::Failed(format!(
            "cannot connect to {name}: its connection URI is refused"
        ))
    };
    let mut options = ClientOptions::parse(uri).await.map_err(|_| refused())?;
    options.retry_writes = Some(false);
    Client::with_options(options).map_err(|_| refused())
}

/// Where a flashback writes its results: the target instance's mongos
/// when it has one, else its first replica set.
async fn connect_writer(instance: &Instance) -> Result<Client, Stop> {
    match &instance.mongos_uri {
        Some(uri) => connect(uri, &format!("the mongos of {}", instance.id)).await,
        None => connect(&instance.replica_set_uris[0], &instance.id.replica_set(0)).await,
    }
}

async fn exists(client: &Client, db: &str, name: &str) -> Result<bool, Stop> {
    let names = client
        .database(db)
        .list_collection_names()
        .filter(doc! {"name": name})
        .await
        .map_err(|e| Stop::Failed(format!("cannot list the collections of {db}: {e}")))?;
    Ok(!names.is_empty())
}

/// Copies the documents of `db.staging` that `keys` matches into
/// `result`; answers how many.
async fn copy_matches(
    client: &Client,
    db: &str,
    staging: &str,
    keys: &KeyMatcher,
    result: &mut CollectionAtTime<'_>,
    lease: &mut Lease<'_>,
) -> Result<u64, Stop> {
    let mut cursor = client
        .database(db)
        .collection::<RawDocumentBuf>(staging)
        .find(doc! {})
        .await
        .map_err(|e| Stop::Failed(format!("cannot read {db}.{staging}: {e}")))?;
    let mut batch = Vec::with_capacity(INSERT_BATCH);
    let mut copied = 0;
    while let Some(document) = cursor.next().await {
        let document =
            document.map_err(|e| Stop::Failed(format!("cannot read {db}.{staging}: {e}")))?;
        if !keys.matches(&document) {
            continue;
        }
        batch.push(document);
        if batch.len() == INSERT_BATCH {
            result.insert(&batch).await?;
            copied += batch.len() as u64;
            batch.clear();
            lease.renew(100).await?;
        }
    }
    result.insert(&batch).await?;
    Ok(copied + batch.len() as u64)
}

/// A task's lease, renewed as the work goes.
struct Lease<'a> {
    catalog: &'a Catalog,
    worker: &'a str,
    task: i64,
    every: Duration,
    last: Instant,
    stop: &'a CancellationToken,
}

impl Lease<'_> {
    /// Renews the lease and saves `percent` when a heartbeat is due;
    /// abandons the work when the lease is lost or the node stops.
    async fn renew(&mut self, percent: i64) -> Result<(), Stop> {
        if self.stop.is_cancelled() {
            return Err(Stop::Abandoned);
        }
        if self.last.elapsed() < self.every {
            return Ok(());
        }
        self.last = Instant::now();
        let held = self
            .catalog
            .restores()
            .heartbeat(
                self.task,
                self.worker,
                percent,
                Timestamp::now() + RESTORE_LEASE,
            )
            .await
            .unwrap_or(true);
        if held {
            Ok(())
        } else {
            Err(Stop::Abandoned)
        }
    }
}

/// One restore worker: claims a task, runs it, claims the next.
struct RestoreWorker {
    name: String,
    restores: RestoreRunner,
}

impl Worker for RestoreWorker {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn work(&mut self, stop: &CancellationToken) -> Result<Step, WorkError> {
        let runner = &self.restores;
        let now = Timestamp::now();
        let claimed = runner
            .catalog
            .restores()
            .claim(
                &self.name,
                now,
                now + RESTORE_LEASE,
                runner.config.max_attempts,
            )
            .await
            .map_err(|e| format!("cannot read the restore queue: {e}"))?;
        match claimed {
            Some(task) => {
                runner.run(&self.name, task, stop).await;
                Ok(Step::Busy)
            }
            None => Ok(Step::Idle(runner.config.poll_interval)),
        }
    }

    async fn wake(&self) {
        self.restores.catalog.wakeups().wait_for_restores().await;
    }

    fn retry_after(&self, _failures: u32) -> Duration {
        self.restores.config.poll_interval
    }
}

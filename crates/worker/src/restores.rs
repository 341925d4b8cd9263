//! The restore workers: point-in-time restores (`RestoreDBInstance`) run as
//! durable leased tasks.
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
//! The lease is renewed as the work goes; a worker that loses it stops.
//! A worker that dies leaves its lease to lapse, and the next claim redoes
//! the task from the start, discarding the staging collections first. So
//! a target collection only ever appears complete; a task interrupted
//! while renaming finds the targets it already renamed and counts them
//! done (the API refused targets that existed when the task was asked
//! for).

use std::time::{Duration, Instant};

use jiff::Timestamp;
use mongobak_blob::BlobStore;
use mongobak_catalog::{
    Base, Catalog, Instance, OplogTs, ReplicaSetId, RestoreTarget, RestoreTask, RESTORE_LEASE,
};
use mongobak_dump::format::{CollectionEntry, ReplicaSetManifest};
use mongobak_dump::stored::slice::{read_slice, WrittenSlice};
use mongobak_dump::{read_manifests, SegmentReader};
use mongobak_restore::point_in_time::CollectionAtTime;
use mongodb::bson::RawDocumentBuf;
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
        let instance = self
            .catalog
            .instances()
            .get(&task.instance_id)
            .await?
            .ok_or_else(|| Stop::Failed("the instance is no longer registered".into()))?;
        let targets = &task.plan.collections;
        let end = OplogTs::end_of_second(
            u32::try_from(task.restore_time.as_second())
                .map_err(|_| Stop::Failed("the restore time is out of range".into()))?,
        );
        let sets = instance.replica_set_ids();
        let mut clients = Vec::new();
        for (n, replica_set_id) in sets.iter().enumerate() {
            let client = connect(&instance, n).await?;
            self.rebuild(task, replica_set_id, &client, end, lease, (n, sets.len()))
                .await?;
            clients.push(client);
        }
        // Every replica set is rebuilt: the targets appear, each whole.
        for client in &clients {
            for (k, target) in targets.iter().enumerate() {
                let staging = staging_name(task, k);
                let mut collection =
                    CollectionAtTime::new(client, &target.db, &target.source, &staging);
                if !collection.exists().await?
                    && task.attempts > 1
                    && exists(client, target).await?
                {
                    // Renamed by an attempt that stopped while renaming.
                    continue;
                }
                collection.publish(&target.target).await?;
            }
        }
        Ok(())
    }

    /// Rebuilds every target of `task` on one replica set, in its staging
    /// collections.
    async fn rebuild(
        &self,
        task: &RestoreTask,
        replica_set_id: &ReplicaSetId,
        client: &Client,
        end: OplogTs,
        lease: &mut Lease<'_>,
        (n, of): (usize, usize),
    ) -> Result<(), Stop> {
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
        for (k, target) in targets.iter().enumerate() {
            let staging = staging_name(task, k);
            let collection = CollectionAtTime::new(client, &target.db, &target.source, &staging);
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
        for (collection, entry, _) in &collections {
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
        for (collection, _, target) in collections.iter_mut() {
            if !collection.exists().await? {
                return Err(Stop::Failed(format!(
                    "{}.{} did not exist at that time on {replica_set_id}",
                    target.db, target.source
                )));
            }
        }
        lease.renew(percent(total)).await?;
        tracing::info!(flow_id = task.flow_id, replica_set = %replica_set_id, base = base.backup_id, slices = slices.len(), "replica set rebuilt");
        Ok(())
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

/// The staging collection of the `k`-th target of `task`.
fn staging_name(task: &RestoreTask, k: usize) -> String {
    format!("mongobak_restore_{}_{k}", task.flow_id)
}

async fn connect(instance: &Instance, n: usize) -> Result<Client, Stop> {
    let uri = &instance.replica_set_uris[n];
    let client = Client::with_uri_str(uri).await.map_err(|_| {
        Stop::Failed(format!(
            "cannot connect to {}: its connection URI is refused",
            instance.id.replica_set(n)
        ))
    })?;
    Ok(client)
}

async fn exists(client: &Client, target: &RestoreTarget) -> Result<bool, Stop> {
    let names = client
        .database(&target.db)
        .list_collection_names()
        .await
        .map_err(|e| Stop::Failed(format!("cannot list the collections of {}: {e}", target.db)))?;
    Ok(names.contains(&target.target))
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

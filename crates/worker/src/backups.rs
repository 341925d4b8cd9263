//! The backup runner: takes queued backups from the catalog, runs the dump
//! engine for each, records progress, success (with sizes and expiry) or
//! failure (with the reason), and cleans up after backups that a stopped
//! process left running.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use mongobak_blob::BlobStore;
use mongobak_catalog::{
    Backup, BackupSizes, BackupType, Catalog, ClusterType, OplogTs, ReplicaSetId,
};
use mongobak_dump::format::BackupManifest;
use mongobak_dump::{run_backup_until, BackupSource, DumpError, DumpOptions, Progress};
use tokio_util::sync::CancellationToken;

use crate::notify::Notifier;
use crate::runner::{Runner, Step, WorkError, Worker};

/// How long a stop waits for a failure notification still being delivered.
const NOTIFY_GRACE: Duration = Duration::from_secs(10);

/// Settings of the backup runner.
#[derive(Debug, Clone)]
pub struct BackupRunnerConfig {
    /// Backups taken at once (of different instances).
    pub concurrency: usize,
    /// How often to look for queued backups when not woken.
    pub poll_interval: Duration,
    /// How often a running backup's percentage is saved.
    pub progress_interval: Duration,
    /// Retention of backups that ask for the rule's when the instance has
    /// no rule.
    pub default_retention_days: i64,
    /// Reports failed automatic backups.
    pub notifier: Notifier,
    /// Tuning of the dump engine.
    pub dump: DumpOptions,
    /// Tries of a backup whose failure may pass (at least 1).
    pub attempts: u32,
    /// Wait before the second try; it doubles before each next one.
    pub retry_delay: Duration,
}

impl Default for BackupRunnerConfig {
    fn default() -> Self {
        BackupRunnerConfig {
            concurrency: 2,
            poll_interval: Duration::from_secs(1),
            progress_interval: Duration::from_secs(2),
            default_retention_days: 7,
            notifier: Notifier::default(),
            dump: DumpOptions::default(),
            attempts: 3,
            retry_delay: Duration::from_secs(30),
        }
    }
}

/// Runs queued backups.
#[derive(Debug, Clone)]
pub struct BackupRunner {
    catalog: Catalog,
    store: BlobStore,
    config: BackupRunnerConfig,
}

impl BackupRunner {
    /// A runner over `catalog` writing into `store`.
    pub fn new(catalog: Catalog, store: BlobStore, config: BackupRunnerConfig) -> Self {
        BackupRunner {
            catalog,
            store,
            config,
        }
    }

    /// Fails the backups a stopped process left running and deletes their
    /// partial data. Call once at start, before [`run`](Self::run).
    pub async fn recover(&self) -> Result<usize, mongobak_catalog::CatalogError> {
        let interrupted = self
            .catalog
            .backups()
            .fail_interrupted(Timestamp::now())
            .await?;
        for backup in &interrupted {
            tracing::warn!(backup_id = backup.id, instance = %backup.instance_id, "backup interrupted by a stop; marked failed");
            self.delete_data(backup).await;
        }
        Ok(interrupted.len())
    }

    /// Takes and runs queued backups until `shutdown`; backups still
    /// running then are stopped, marked failed and cleaned up.
    pub async fn run(self, shutdown: CancellationToken) {
        Runner::run_until(shutdown, |runner| self.start(runner)).await;
    }

    /// Runs [`run`](Self::run)'s work on `runner`: `concurrency` workers,
    /// each taking queued backups one at a time.
    pub fn start(self, runner: &Runner) {
        for n in 0..self.config.concurrency.max(1) {
            runner.spawn(BackupWorker {
                n,
                backups: self.clone(),
                runner: runner.clone(),
            });
        }
    }

    async fn run_one(&self, backup: Backup, shutdown: &CancellationToken, runner: &Runner) {
        let started = Instant::now();
        let instance = match self.catalog.instances().get(&backup.instance_id).await {
            Ok(Some(instance)) => instance,
            Ok(None) => {
                self.fail(&backup, "the instance is no longer registered", runner)
                    .await;
                return;
            }
            Err(e) => {
                self.fail(&backup, &format!("cannot read the instance: {e}"), runner)
                    .await;
                return;
            }
        };
        let source = BackupSource {
            instance_id: instance.id.to_string(),
            sharded: instance.cluster_type == ClusterType::Sharded,
            replica_sets: instance
                .replica_set_ids()
                .into_iter()
                .map(String::from)
                .zip(instance.replica_set_uris.clone())
                .collect(),
        };
        tracing::info!(backup_id = backup.id, name = %backup.name, instance = %instance.id, "backup started");
        // A failure that may pass (the server unreachable for a while, a
        // storage outage) is tried again, after a wait that doubles each
        // time; a failed attempt leaves nothing stored behind it.
        let mut attempt = 1;
        let (outcome, progress) = loop {
            let progress = Progress::default();
            let outcome = self.attempt(&backup, &source, &progress, shutdown).await;
            match outcome {
                Err(e) if e.is_transient() && attempt < self.config.attempts => {
                    let wait = self.config.retry_delay * 2u32.saturating_pow(attempt - 1);
                    tracing::warn!(
                        backup_id = backup.id,
                        attempt,
                        error = %e,
                        retry_in_secs = wait.as_secs_f64(),
                        "backup attempt failed; trying again"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.cancelled() => break (Err(DumpError::Stopped), progress),
                    }
                    attempt += 1;
                }
                outcome => break (outcome, progress),
            }
        };
        let outcome = outcome.map_err(|e| match attempt {
            1 => e.to_string(),
            n => format!("{e} (after {n} attempts)"),
        });
        let seconds = started.elapsed().as_secs_f64();
        metrics::histogram!("mongobak_backup_duration_seconds").record(seconds);
        match outcome {
            Ok(manifest) => {
                let raw: u64 = manifest.replica_sets.iter().map(|r| r.raw_bytes).sum();
                let stored = manifest.stored_bytes();
                let sizes = BackupSizes {
                    raw_bytes: raw,
                    stored_bytes: stored,
                    oplog_bytes: manifest.oplog_stored_bytes(),
                };
                // The sets the manifest holds, as the instance named them.
                let replica_set_ids: Vec<ReplicaSetId> = instance
                    .replica_set_ids()
                    .into_iter()
                    .filter(|id| {
                        manifest
                            .replica_sets
                            .iter()
                            .any(|rs| rs.replica_set_id == *id)
                    })
                    .collect();
                // Where each replica set ends in its oplog: a base for
                // point-in-time restore once the backup is marked done.
                let oplog_ends: Vec<(ReplicaSetId, OplogTs)> = replica_set_ids
                    .iter()
                    .filter_map(|id| {
                        let entry = manifest
                            .replica_sets
                            .iter()
                            .find(|rs| rs.replica_set_id == *id)?;
                        let end = entry.oplog_end?;
                        Some((
                            id.clone(),
                            OplogTs {
                                seconds: end.t,
                                increment: end.i,
                            },
                        ))
                    })
                    .collect();
                let backups = self.catalog.backups();
                let saved = match backups.record_oplog_ends(backup.id, &oplog_ends).await {
                    Ok(()) => {
                        backups
                            .complete(
                                backup.id,
                                Timestamp::now(),
                                sizes,
                                &replica_set_ids,
                                self.config.default_retention_days,
                            )
                            .await
                    }
                    Err(e) => Err(e),
                };
                match saved {
                    Ok(()) => {
                        // DescribeDBInstances shows the version a backup
                        // last saw; shards of a cluster run one version.
                        if let Some(first) = manifest
                            .replica_sets
                            .first()
                            .filter(|rs| !rs.server_version.is_empty())
                        {
                            let recorded = self
                                .catalog
                                .instances()
                                .set_server_version(&backup.instance_id, &first.server_version)
                                .await;
                            if let Err(e) = recorded {
                                tracing::warn!(error = %e, "cannot record the server version");
                            }
                        }
                        metrics::counter!("mongobak_backups_total", "outcome" => "succeeded")
                            .increment(1);
                        tracing::info!(
                            backup_id = backup.id,
                            name = %backup.name,
                            documents = progress.documents(),
                            raw_bytes = raw,
                            stored_bytes = stored,
                            seconds,
                            "backup succeeded"
                        );
                    }
                    Err(e) => {
                        self.delete_data(&backup).await;
                        let reason = format!("cannot record the finished backup: {e}");
                        self.fail(&backup, &reason, runner).await;
                    }
                }
            }
            Err(reason) => self.fail(&backup, &reason, runner).await,
        }
    }

    /// One try at a backup, saving its percentage as it goes. On shutdown
    /// the dump gives up by itself and deletes what it wrote once its
    /// writers have ended.
    async fn attempt(
        &self,
        backup: &Backup,
        source: &BackupSource,
        progress: &Progress,
        shutdown: &CancellationToken,
    ) -> Result<BackupManifest, DumpError> {
        let dump = run_backup_until(
            source,
            &self.store,
            &backup.storage_prefix,
            &self.config.dump,
            progress,
            shutdown,
        );
        tokio::pin!(dump);
        let mut ticker = tokio::time::interval(self.config.progress_interval);
        loop {
            tokio::select! {
                result = &mut dump => return result,
                _ = ticker.tick() => {
                    if let Err(e) = self.catalog.backups().set_percent(backup.id, progress.percent() as i64).await {
                        tracing::warn!(backup_id = backup.id, error = %e, "cannot save backup progress");
                    }
                }
            }
        }
    }

    /// Records the failure and reports it; a notification is an errand on
    /// `runner`.
    async fn fail(&self, backup: &Backup, reason: &str, runner: &Runner) {
        metrics::counter!("mongobak_backups_total", "outcome" => "failed").increment(1);
        tracing::error!(backup_id = backup.id, name = %backup.name, reason, "backup failed");
        if let Err(e) = self
            .catalog
            .backups()
            .fail(backup.id, Timestamp::now(), reason)
            .await
        {
            tracing::error!(backup_id = backup.id, error = %e, "cannot record the backup failure");
        }
        if backup.backup_type == BackupType::Automatic {
            let notify = match self.catalog.rules().get(&backup.instance_id).await {
                Ok(rule) => rule.is_none_or(|r| r.notify),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the backup rule; notifying");
                    true
                }
            };
            let notifier = self.config.notifier.clone();
            let backup = backup.clone();
            let reason = reason.to_string();
            // Retries take a while; the worker moves on, and a stop waits
            // for them a little.
            runner.spawn_errand("failure notification", NOTIFY_GRACE, async move {
                notifier
                    .automatic_backup_failed(&backup, &reason, notify)
                    .await;
            });
        }
    }

    async fn delete_data(&self, backup: &Backup) {
        if let Err(e) = self
            .store
            .delete_prefix(&format!("{}/", backup.storage_prefix))
            .await
        {
            tracing::error!(backup_id = backup.id, error = %e, "cannot delete the data of a failed backup");
        }
    }
}

/// One of the runner's workers: takes a queued backup and runs it.
struct BackupWorker {
    n: usize,
    backups: BackupRunner,
    runner: Runner,
}

impl Worker for BackupWorker {
    fn name(&self) -> String {
        format!("backups/{}", self.n)
    }

    async fn work(&mut self, stop: &CancellationToken) -> Result<Step, WorkError> {
        let claimed = self
            .backups
            .catalog
            .backups()
            .claim_queued(Timestamp::now())
            .await
            .map_err(|e| format!("cannot read the backup queue: {e}"))?;
        match claimed {
            Some(backup) => {
                self.backups.run_one(backup, stop, &self.runner).await;
                Ok(Step::Busy)
            }
            None => Ok(Step::Idle(self.backups.config.poll_interval)),
        }
    }

    async fn wake(&self) {
        self.backups.catalog.wakeups().wait_for_backup().await;
    }

    fn retry_after(&self, _failures: u32) -> Duration {
        self.backups.config.poll_interval
    }
}

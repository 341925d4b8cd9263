//! The download workers: package one replica set of a stored backup into
//! the file a user downloads, a gzipped mongodump archive.
//!
//! Each worker claims a task with a lease, reads the backup's manifests and
//! exports the replica set's backup into a blob writer
//! (`mongobak_dump::stored::export_archive`: the archive, gzipped, its
//! SHA-256 taken on the way). The object only appears when the writer
//! closes (atomic publish), under a path of its own per attempt, and the
//! task is marked done with the size and SHA-256 only after that. A
//! heartbeat renews the lease and saves the percentage every 2 s; a worker
//! that loses its lease abandons its attempt.
//!
//! Failures of storage are transient (the task waits, then retries with
//! backoff: status 4); a backup that is gone or damaged fails the task at
//! once (status 3).

use std::convert::Infallible;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use mongobak_blob::BlobStore;
use mongobak_catalog::{
    Backup, Catalog, DownloadFolder, DownloadTask, PublishedFile, RetryPolicy, TaskStatus,
};
use mongobak_dump::stored::{
    export_archive, ExportError, ExportOptions, ExportProgress, DEFAULT_GZIP_LEVEL,
};
use mongobak_dump::{read_manifests, DumpError};
use tokio_util::sync::CancellationToken;

use crate::runner::{Runner, Step, WorkError, Worker};

/// Claims a task may take, as a multiple of its tries, before repeated
/// interruptions (crashes, lost leases) fail it.
const INTERRUPTION_ALLOWANCE: i64 = 4;

/// Settings of the download workers.
#[derive(Debug, Clone)]
pub struct DownloadRunnerConfig {
    /// Name of this node's workers in leases (unique per process).
    pub node: String,
    /// Tasks packaged at once.
    pub workers: usize,
    /// How long a claim lasts without a heartbeat.
    pub lease: Duration,
    /// How often a worker saves its percentage and renews its lease.
    pub heartbeat: Duration,
    /// How often idle workers look for tasks queued elsewhere.
    pub poll_interval: Duration,
    /// Tries and backoff.
    pub retry: RetryPolicy,
    /// How long a packaged file is kept.
    pub file_retention: SignedDuration,
    /// gzip level (mongodump's is 6).
    pub gzip_level: u32,
    /// gzip threads (0: one per core).
    pub gzip_threads: usize,
}

impl Default for DownloadRunnerConfig {
    fn default() -> Self {
        DownloadRunnerConfig {
            node: format!("node-{}", std::process::id()),
            workers: 2,
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(2),
            poll_interval: Duration::from_millis(500),
            retry: RetryPolicy {
                max_attempts: 5,
                first_backoff: SignedDuration::from_secs(5),
                max_backoff: SignedDuration::from_mins(5),
            },
            file_retention: SignedDuration::from_hours(24 * 7),
            gzip_level: DEFAULT_GZIP_LEVEL,
            gzip_threads: 0,
        }
    }
}

/// Why an attempt failed, and whether trying again may help.
#[derive(Debug)]
enum Failure {
    /// Storage or another passing fault: retry after a backoff.
    Transient(String),
    /// The backup is gone or damaged: retrying cannot help.
    Permanent(String),
    /// Our lease was lost or the service is stopping: leave the task alone.
    Abandoned,
}

impl From<DumpError> for Failure {
    fn from(e: DumpError) -> Self {
        if e.is_transient() {
            Failure::Transient(e.to_string())
        } else {
            Failure::Permanent(e.to_string())
        }
    }
}

impl From<mongobak_blob::BlobError> for Failure {
    fn from(e: mongobak_blob::BlobError) -> Self {
        // Any storage failure may pass (a full disk gets space, a store
        // comes back): retry within the policy. Users see the root cause
        // ("No space left on device"), not the store's paths; the log has
        // the whole error.
        tracing::warn!(error = %e, "storage failure while packaging");
        let mut cause: &dyn std::error::Error = &e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        Failure::Transient(format!("storage failure: {cause}"))
    }
}

impl From<ExportError> for Failure {
    fn from(e: ExportError) -> Self {
        match e {
            ExportError::Stopped => Failure::Abandoned,
            ExportError::Read(e) => Failure::from(e),
            ExportError::Storage(e) => Failure::from(e),
            e if e.is_transient() => Failure::Transient(e.to_string()),
            e => Failure::Permanent(e.to_string()),
        }
    }
}

/// Runs download tasks.
#[derive(Debug, Clone)]
pub struct DownloadRunner {
    catalog: Catalog,
    store: BlobStore,
    config: DownloadRunnerConfig,
}

impl DownloadRunner {
    /// Workers over `catalog` reading backups from and writing files to `store`.
    pub fn new(catalog: Catalog, store: BlobStore, config: DownloadRunnerConfig) -> Self {
        DownloadRunner {
            catalog,
            store,
            config,
        }
    }

    /// Runs the workers until `shutdown`. A task being packaged then is
    /// released as a transient failure, so it is retried soon.
    pub async fn run(self, shutdown: CancellationToken) {
        Runner::run_until(shutdown, |runner| self.start(runner)).await;
    }

    /// Runs [`run`](Self::run)'s workers on `runner`.
    pub fn start(self, runner: &Runner) {
        for n in 0..self.config.workers.max(1) {
            runner.spawn(DownloadWorker {
                name: format!("{}/{n}", self.config.node),
                downloads: self.clone(),
            });
        }
    }

    async fn work(&self, worker: &str, task: DownloadTask, shutdown: &CancellationToken) {
        // Every claim counts as a try, those cut off by a crash included.
        // Crashes get more room than failures (a node may restart many
        // times while a task waits), but a task that keeps killing its
        // worker must not loop forever.
        let limit = self.config.retry.max_attempts * INTERRUPTION_ALLOWANCE;
        if task.attempts > limit {
            let reason = format!(
                "packaging was interrupted {} times (a worker stopped or crashed each time)",
                task.attempts - 1
            );
            self.record_failure(worker, &task, &reason, false).await;
            return;
        }
        tracing::info!(task_id = task.id, replica_set = %task.replica_set_id, attempt = task.attempts, "packaging started");
        let progress = ExportProgress::default();
        // Cancelled by the shutdown, or by the heartbeat when the lease is
        // lost: either way the packager stops.
        let attempt = shutdown.child_token();
        let started = std::time::Instant::now();
        let outcome = tokio::select! {
            outcome = self.package(&task, &progress, &attempt) => outcome,
            never = self.heartbeat(worker, task.id, &progress, &attempt) => match never {},
        };
        let now = Timestamp::now();
        match outcome {
            Ok(file) => match self
                .catalog
                .downloads()
                .complete(task.id, worker, now, &file)
                .await
            {
                Ok(true) => {
                    metrics::counter!("mongobak_download_tasks_total", "outcome" => "done")
                        .increment(1);
                    metrics::histogram!("mongobak_download_packaging_seconds")
                        .record(started.elapsed().as_secs_f64());
                    tracing::info!(
                        task_id = task.id,
                        bytes = file.size,
                        sha256 = %file.sha256,
                        seconds = started.elapsed().as_secs_f64(),
                        "packaging done"
                    );
                }
                Ok(false) => {
                    tracing::warn!(
                        task_id = task.id,
                        "lease lost before publishing; the file is dropped"
                    );
                    self.discard(&file.path).await;
                }
                Err(e) => {
                    tracing::error!(task_id = task.id, error = %e, "cannot record the finished task");
                    self.discard(&file.path).await;
                }
            },
            Err(Failure::Abandoned) if shutdown.is_cancelled() => {
                self.record_failure(
                    worker,
                    &task,
                    "stopped: the service shut down during packaging",
                    true,
                )
                .await;
            }
            Err(Failure::Abandoned) => {}
            Err(Failure::Transient(reason)) => {
                self.record_failure(worker, &task, &reason, true).await
            }
            Err(Failure::Permanent(reason)) => {
                self.record_failure(worker, &task, &reason, false).await
            }
        }
    }

    /// How long a claim or a renewal lasts.
    fn lease(&self) -> SignedDuration {
        SignedDuration::try_from(self.config.lease).unwrap_or(SignedDuration::from_secs(30))
    }

    /// Renews the lease of task `id` and saves its percentage every beat
    /// until `attempt` is cancelled; cancels it when the lease is lost.
    async fn heartbeat(
        &self,
        worker: &str,
        id: i64,
        progress: &ExportProgress,
        attempt: &CancellationToken,
    ) -> Infallible {
        let lease = self.lease();
        let mut ticker = tokio::time::interval(self.config.heartbeat);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = attempt.cancelled() => break,
            }
            let percent = progress.percent() as i64;
            match self
                .catalog
                .downloads()
                .heartbeat(id, worker, percent, Timestamp::now() + lease)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(
                        task_id = id,
                        "lease lost; another worker took the task over"
                    );
                    attempt.cancel();
                    break;
                }
                // A passing store fault: keep working, the lease still
                // runs; the next beat tries again.
                Err(e) => tracing::warn!(task_id = id, error = %e, "heartbeat failed"),
            }
        }
        std::future::pending().await
    }

    async fn record_failure(
        &self,
        worker: &str,
        task: &DownloadTask,
        reason: &str,
        transient: bool,
    ) {
        let status = self
            .catalog
            .downloads()
            .fail_attempt(
                task.id,
                worker,
                Timestamp::now(),
                reason,
                transient,
                &self.config.retry,
            )
            .await;
        match status {
            Ok(Some(TaskStatus::Failed)) => {
                metrics::counter!("mongobak_download_tasks_total", "outcome" => "failed")
                    .increment(1);
                tracing::error!(task_id = task.id, reason, "packaging failed for good");
            }
            Ok(Some(_)) => {
                metrics::counter!("mongobak_download_tasks_total", "outcome" => "retry")
                    .increment(1);
                tracing::warn!(
                    task_id = task.id,
                    reason,
                    attempt = task.attempts,
                    "packaging failed; will retry"
                );
            }
            Ok(None) => tracing::warn!(
                task_id = task.id,
                "lease lost before the failure was recorded"
            ),
            Err(e) => {
                tracing::error!(task_id = task.id, error = %e, "cannot record the packaging failure")
            }
        }
    }

    async fn discard(&self, path: &str) {
        if let Err(e) = self.store.delete(path).await {
            tracing::warn!(path, error = %e, "cannot delete an abandoned download file");
        }
    }

    /// One attempt: the published file, or why there is none.
    async fn package(
        &self,
        task: &DownloadTask,
        progress: &ExportProgress,
        stop: &CancellationToken,
    ) -> Result<PublishedFile, Failure> {
        let backup = match self.catalog.backups().get(task.backup_id).await {
            Ok(Some(b)) if b.is_available(Timestamp::now()) => b,
            Ok(_) => {
                return Err(Failure::Permanent(
                    "the backup was deleted or has expired".into(),
                ))
            }
            Err(e) => return Err(Failure::Transient(format!("metadata store: {e}"))),
        };
        let (_, sets) = read_manifests(&self.store, &backup.storage_prefix).await?;
        let manifest = sets
            .into_iter()
            .find(|s| s.replica_set_id == task.replica_set_id)
            .ok_or_else(|| {
                Failure::Permanent(format!(
                    "the backup has no replica set {}",
                    task.replica_set_id
                ))
            })?;
        let name = file_name(&backup, &task.replica_set_id);
        let path = DownloadFolder::new(task.id, task.attempts).file(&name);
        let writer = self.store.writer(&path).await?;
        let options = ExportOptions {
            gzip_level: Some(self.config.gzip_level),
            gzip_threads: self.config.gzip_threads,
        };
        let written =
            export_archive(&self.store, manifest, writer, &options, progress, stop).await?;
        let stored = self.store.size(&path).await?;
        if stored != Some(written.bytes) {
            return Err(Failure::Transient(format!(
                "the stored file has {stored:?} bytes, {} were written",
                written.bytes
            )));
        }
        Ok(PublishedFile {
            path,
            size: written.bytes,
            sha256: written.sha256,
            expires_at: Timestamp::now() + self.config.file_retention,
        })
    }
}

/// One of the runner's workers: claims a download task with a lease and
/// packages it.
struct DownloadWorker {
    /// The lease holder's name: `<node>/<n>`.
    name: String,
    downloads: DownloadRunner,
}

impl Worker for DownloadWorker {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn work(&mut self, stop: &CancellationToken) -> Result<Step, WorkError> {
        let runner = &self.downloads;
        let now = Timestamp::now();
        let lease_until = now + runner.lease();
        let claimed = runner
            .catalog
            .downloads()
            .claim(&self.name, now, lease_until)
            .await
            .map_err(|e| format!("cannot read the download queue: {e}"))?;
        match claimed {
            Some(task) => {
                runner.work(&self.name, task, stop).await;
                Ok(Step::Busy)
            }
            None => Ok(Step::Idle(runner.config.poll_interval)),
        }
    }

    async fn wake(&self) {
        self.downloads.catalog.wakeups().wait_for_downloads().await;
    }

    fn retry_after(&self, _failures: u32) -> Duration {
        self.downloads.config.poll_interval
    }
}

/// `<instance>_<backup time>_<replica set>.archive.gz`, with no spaces or
/// colons: the backup name `cmgo-x_2026-11-28 10:44` gives
/// `cmgo-x_2026-11-28_1044_cmgo-x_0.archive.gz`.
pub(crate) fn file_name(backup: &Backup, replica_set_id: &str) -> String {
    let stem: String = backup
        .name
        .chars()
        .filter(|c| *c != ':')
        .map(|c| {
            if c.is_whitespace() || c == '/' {
                '_'
            } else {
                c
            }
        })
        .collect();
    format!("{stem}_{replica_set_id}.archive.gz")
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongobak_catalog::{BackupStatus, BackupType};

    #[test]
    fn file_names_have_no_spaces_or_colons() {
        let backup = Backup {
            id: 1,
            instance_id: "cmgo-abcd1234".into(),
            name: "cmgo-abcd1234_2026-11-28 10:44-2".into(),
            method: 0,
            backup_type: BackupType::Manual,
            status: BackupStatus::Succeeded,
            remark: String::new(),
            async_request_id: "1".into(),
            storage_prefix: "p".into(),
            created_at: Timestamp::UNIX_EPOCH,
            started_at: None,
            finished_at: None,
            expires_at: None,
            retention_days: 0,
            percent: 100,
            raw_bytes: 0,
            stored_bytes: 0,
            oplog_bytes: 0,
            long_term: false,
            failure: None,
            replica_set_ids: None,
        };
        assert_eq!(
            file_name(&backup, "cmgo-abcd1234_0"),
            "cmgo-abcd1234_2026-11-28_1044-2_cmgo-abcd1234_0.archive.gz"
        );
    }
}

//! Backup download tasks and the durable queue the packaging workers use.
//!
//! A task is created `Waiting`; a worker claims it with a lease
//! (`Running`), renews the lease with each progress heartbeat, and ends it
//! `Done` (with the published file) or, on a transient failure,
//! `RetryWaiting` until its backoff passes, or `Failed` after the last try.
//! A worker that dies stops renewing; once its lease expires any worker may
//! claim the task again. Every change a worker makes is conditional on
//! still holding the lease, so a worker that lost it cannot overwrite the
//! work of the one that took over.
//!
//! Every function takes the current time from its caller.

use jiff::{SignedDuration, Timestamp};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::store::{time_column, CatalogError, DownloadStore, LeasedTasks};

/// The download tasks' leases.
const LEASED: LeasedTasks = LeasedTasks {
    table: "download_tasks",
    running: TaskStatus::Running as i64,
};

/// The API's `BackupDownloadTask.Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    /// 0: waiting for a worker.
    Waiting = 0,
    /// 1: being packaged.
    Running = 1,
    /// 2: the file is ready.
    Done = 2,
    /// 3: failed after the last try; the reason is kept.
    Failed = 3,
    /// 4: failed, waiting to be retried.
    RetryWaiting = 4,
}

impl TaskStatus {
    /// The API number, also the one stored in the `status` column.
    pub fn code(self) -> i64 {
        self as i64
    }

    /// The status with API number `code`.
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => TaskStatus::Waiting,
            1 => TaskStatus::Running,
            2 => TaskStatus::Done,
            3 => TaskStatus::Failed,
            4 => TaskStatus::RetryWaiting,
            _ => return None,
        })
    }
}

/// A download task's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadTask {
    /// Row id.
    pub id: i64,
    /// The backup packaged.
    pub backup_id: i64,
    /// Its instance.
    pub instance_id: String,
    /// `<instance>_<n>`.
    pub replica_set_id: String,
    /// Where it is.
    pub status: TaskStatus,
    /// Progress, 0-100.
    pub percent: i64,
    /// Tries so far.
    pub attempts: i64,
    /// When it may next be claimed.
    pub next_attempt_at: Timestamp,
    /// When it was created.
    pub created_at: Timestamp,
    /// When a worker first started it.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
    /// The published file.
    pub file: Option<PublishedFile>,
    /// Why it failed (last failure, for a task waiting to retry).
    pub failure: Option<String>,
}

/// A packaged file behind a download URL.
///
/// Its path is `downloads/<task>/<attempt>/<file name>` (made by
/// [`DownloadFolder::file`]); the file name is the last part of the path
/// and of the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedFile {
    /// Path in blob storage.
    pub path: String,
    /// Exact size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// When it is deleted.
    pub expires_at: Timestamp,
}

impl PublishedFile {
    /// The file's name: the last part of its path and of its URL.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// Whether it may still be served at `now`.
    pub fn is_valid_at(&self, now: Timestamp) -> bool {
        self.expires_at > now
    }
}

/// The folder one attempt of a download task writes its file into:
/// `downloads/<task id>/<attempt>/`. Everything under it belongs to that
/// attempt, so deleting a published file deletes its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DownloadFolder {
    /// The task.
    pub task_id: i64,
    /// Its attempt (1 for the first).
    pub attempt: i64,
}

impl DownloadFolder {
    /// The folder under which every download file lives.
    pub const ROOT: &'static str = "downloads/";

    /// The folder of `attempt` of task `task_id`.
    pub fn new(task_id: i64, attempt: i64) -> Self {
        DownloadFolder { task_id, attempt }
    }

    /// The folder's prefix in blob storage, ending in `/`.
    pub fn prefix(&self) -> String {
        format!("{}{}/{}/", Self::ROOT, self.task_id, self.attempt)
    }

    /// The path of the file `name` in this folder.
    pub fn file(&self, name: &str) -> String {
        format!("{}{name}", self.prefix())
    }

    /// The folder a prefix or path under `downloads/<task>/<attempt>/`
    /// names; `None` for anything of another shape.
    pub fn parse(path: &str) -> Option<Self> {
        let mut parts = path.strip_prefix(Self::ROOT)?.split('/');
        let task_id = parts.next()?.parse().ok()?;
        let attempt = parts.next()?.parse().ok()?;
        Some(DownloadFolder { task_id, attempt })
    }
}

/// Why [`DownloadStore::delete_retired_files`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum RetiredFileError<E> {
    /// Deleting a folder from storage failed.
    #[error("cannot delete a download file: {0}")]
    Storage(E),
    /// Recording the deletion failed.
    #[error(transparent)]
    Catalog(CatalogError),
}

/// `(task id, path)` rows as retired files.
pub(crate) fn retired(rows: Vec<(i64, String)>) -> Vec<RetiredFile> {
    rows.into_iter()
        .map(|(task_id, path)| RetiredFile { task_id, path })
        .collect()
}

/// A download file that may no longer be served and is still stored: the
/// caller deletes its folder, then tells the catalog
/// ([`DownloadStore::delete_retired_files`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiredFile {
    /// The task that published it.
    pub task_id: i64,
    /// Its path in blob storage.
    pub path: String,
}

impl RetiredFile {
    /// The prefix of the folder to delete with it, ending in `/`.
    pub fn folder_prefix(&self) -> String {
        match self.path.rsplit_once('/') {
            Some((folder, _)) => format!("{folder}/"),
            None => format!("{}/", self.path),
        }
    }
}

impl DownloadTask {
    /// Whether the task stands for its (backup, replica set) at `now`: in
    /// the queue, being worked on, or done with a file still valid. A
    /// failed task or one whose file expired does not, and a new request
    /// starts afresh.
    pub fn is_current(&self, now: Timestamp) -> bool {
        match self.status {
            TaskStatus::Waiting | TaskStatus::Running | TaskStatus::RetryWaiting => true,
            TaskStatus::Done => self.servable_file(now).is_some(),
            TaskStatus::Failed => false,
        }
    }

    /// Its file, if the task is done and the file may be served at `now`.
    pub fn servable_file(&self, now: Timestamp) -> Option<&PublishedFile> {
        self.file
            .as_ref()
            .filter(|f| self.status == TaskStatus::Done && f.is_valid_at(now))
    }

    /// Seconds spent packaging (start to end, or to `now` while running).
    pub fn seconds_spent(&self, now: Timestamp) -> i64 {
        match self.started_at {
            Some(start) => (self.finished_at.unwrap_or(now).as_second() - start.as_second()).max(0),
            None => 0,
        }
    }
}

/// Filters of [`DownloadStore::list`].
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Only tasks of backups with these IDs (`None`: all).
    pub backup_ids: Option<Vec<i64>>,
    /// Created at or after.
    pub created_from: Option<Timestamp>,
    /// Created at or before.
    pub created_to: Option<Timestamp>,
    /// Only these statuses (empty: all).
    pub statuses: Vec<TaskStatus>,
}

/// Order of [`DownloadStore::list`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskOrder {
    /// By creation time.
    CreateTime,
    /// By end time (tasks not finished last).
    FinishTime,
}

/// Retry policy of failed tries.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub max_attempts: i64,
    /// Backoff after the first failure; doubled after each further one.
    pub first_backoff: SignedDuration,
    /// Longest backoff.
    pub max_backoff: SignedDuration,
}

impl RetryPolicy {
    /// The wait after `attempts` failed tries.
    pub fn backoff(&self, attempts: i64) -> SignedDuration {
        let doublings = (attempts - 1).clamp(0, 20) as u32;
        let secs = self.first_backoff.as_secs_f64() * f64::from(2u32.pow(doublings));
        SignedDuration::from_secs_f64(secs.min(self.max_backoff.as_secs_f64()))
    }
}

const SELECT_TASK: &str = "SELECT id, backup_id, instance_id, replica_set_id, status, percent, attempts, \
     next_attempt_at, created_at, started_at, finished_at, file_path, file_size, file_sha256, file_expires_at, \
     failure FROM download_tasks";

impl DownloadStore<'_> {
    /// The current task of each requested replica set of a backup, creating
    /// waiting tasks where there is none (see [`DownloadTask::is_current`]).
    /// Runs in one transaction, so concurrent requests never create two.
    pub async fn ensure_tasks(
        &self,
        backup_id: i64,
        instance_id: &str,
        replica_set_ids: &[String],
        now: Timestamp,
    ) -> Result<Vec<DownloadTask>, CatalogError> {
        let mut tx = self.catalog.begin_write().await?;
        let mut tasks = Vec::with_capacity(replica_set_ids.len());
        let mut created = false;
        for rs in replica_set_ids {
            let rows = sqlx::query(&format!(
                "{SELECT_TASK} WHERE backup_id = $1 AND replica_set_id = $2 ORDER BY id DESC"
            ))
            .bind(backup_id)
            .bind(rs)
            .fetch_all(&mut *tx)
            .await?;
            let current = rows
                .iter()
                .map(decode_task)
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .find(|t| t.is_current(now));
            let task = match current {
                Some(task) => task,
                None => {
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO download_tasks (backup_id, instance_id, replica_set_id, status, \
                         next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
                    )
                    .bind(backup_id)
                    .bind(instance_id)
                    .bind(rs)
                    .bind(TaskStatus::Waiting.code())
                    .bind(now.as_second())
                    .fetch_one(&mut *tx)
                    .await?;
                    created = true;
                    let row = sqlx::query(&format!("{SELECT_TASK} WHERE id = $1"))
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await?;
                    decode_task(&row)?
                }
            };
            tasks.push(task);
        }
        tx.commit().await?;
        if created {
            self.catalog.wakeups().downloads_queued();
        }
        Ok(tasks)
    }

    /// One task by id.
    pub async fn get(&self, id: i64) -> Result<Option<DownloadTask>, CatalogError> {
        self.catalog
            .fetch_optional(sqlx::query(&format!("{SELECT_TASK} WHERE id = $1")).bind(id))
            .await
    }

    /// An instance's tasks matching `filter`, in `order`, with the total
    /// count before paging.
    pub async fn list(
        &self,
        instance_id: &str,
        filter: &TaskFilter,
        order: TaskOrder,
        descending: bool,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<DownloadTask>, u64), CatalogError> {
        // The filters, order and page go to the store: an instance gathers
        // tasks for as long as it is backed up.
        let mut conditions = vec!["instance_id = $1".to_string()];
        let mut numbers: Vec<i64> = Vec::new();
        let mut placeholders = |values: &[i64]| {
            let first = numbers.len() + 2;
            numbers.extend_from_slice(values);
            (first..first + values.len())
                .map(|n| format!("${n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(ids) = &filter.backup_ids {
            match ids.is_empty() {
                true => conditions.push("1 = 0".into()),
                false => conditions.push(format!("backup_id IN ({})", placeholders(ids))),
            }
        }
        if let Some(from) = filter.created_from {
            conditions.push(format!(
                "created_at >= {}",
                placeholders(&[from.as_second()])
            ));
        }
        if let Some(to) = filter.created_to {
            conditions.push(format!("created_at <= {}", placeholders(&[to.as_second()])));
        }
        if !filter.statuses.is_empty() {
            let codes: Vec<i64> = filter.statuses.iter().map(|s| s.code()).collect();
            conditions.push(format!("status IN ({})", placeholders(&codes)));
        }
        let conditions = conditions.join(" AND ");
        let direction = if descending { "DESC" } else { "ASC" };
        let order = match order {
            TaskOrder::CreateTime => format!("created_at {direction}, id {direction}"),
            TaskOrder::FinishTime => format!(
                "CASE WHEN finished_at IS NULL THEN 1 ELSE 0 END {direction}, \
                 finished_at {direction}, id {direction}"
            ),
        };
        let count_sql = format!("SELECT COUNT(*) FROM download_tasks WHERE {conditions}");
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql).bind(instance_id);
        for n in &numbers {
            count = count.bind(*n);
        }
        let total = count.fetch_one(self.catalog.pool()).await?;
        let paging = format!(
            "LIMIT {} OFFSET {}",
            limit.min(i64::MAX as u64),
            offset.min(i64::MAX as u64)
        );
        let page_sql = format!("{SELECT_TASK} WHERE {conditions} ORDER BY {order} {paging}");
        let mut page = sqlx::query(&page_sql).bind(instance_id);
        for n in &numbers {
            page = page.bind(*n);
        }
        let rows = page.fetch_all(self.catalog.pool()).await?;
        let tasks = rows
            .iter()
            .map(decode_task)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((tasks, total as u64))
    }

    /// Whether a task of the backup is waiting, running or retrying.
    pub async fn backup_has_active(&self, backup_id: i64) -> Result<bool, CatalogError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM download_tasks WHERE backup_id = $1 AND status IN ($2, $3, $4)",
        )
        .bind(backup_id)
        .bind(TaskStatus::Waiting.code())
        .bind(TaskStatus::Running.code())
        .bind(TaskStatus::RetryWaiting.code())
        .fetch_one(self.catalog.pool())
        .await?;
        Ok(n > 0)
    }

    /// For every task row: its status, its attempts so far and its
    /// published file's path (for garbage collection).
    pub async fn files(
        &self,
    ) -> Result<std::collections::HashMap<i64, (TaskStatus, i64, Option<String>)>, CatalogError>
    {
        let rows: Vec<(i64, i64, i64, Option<String>)> =
            sqlx::query_as("SELECT id, status, attempts, file_path FROM download_tasks")
                .fetch_all(self.catalog.pool())
                .await?;
        rows.into_iter()
            .map(|(id, code, attempts, path)| {
                let status = TaskStatus::from_code(code).ok_or_else(|| CatalogError::Corrupt {
                    what: format!("download task {id}"),
                    detail: "unknown status".into(),
                })?;
                Ok((id, (status, attempts, path)))
            })
            .collect()
    }

    /// Claims the oldest task that is due (waiting, retry-waiting past its
    /// backoff, or running with an expired lease) for `worker`, until
    /// `lease_until`.
    pub async fn claim(
        &self,
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<DownloadTask>, CatalogError> {
        let id: Option<i64> = sqlx::query_scalar(&format!(
            "UPDATE download_tasks SET status = $4, lease_owner = $1, lease_expires_at = $3, \
             attempts = attempts + 1, started_at = COALESCE(started_at, $2), percent = 0 \
             WHERE id = (SELECT id FROM download_tasks \
                 WHERE (status IN ($5, $6) AND next_attempt_at <= $2) OR (status = $4 AND lease_expires_at < $2) \
                 ORDER BY id LIMIT 1{}) \
             AND ((status IN ($5, $6) AND next_attempt_at <= $2) OR (status = $4 AND lease_expires_at < $2)) \
             RETURNING id",
            self.catalog.skip_locked()
        ))
        .bind(worker)
        .bind(now.as_second())
        .bind(lease_until.as_second())
        .bind(TaskStatus::Running.code())
        .bind(TaskStatus::Waiting.code())
        .bind(TaskStatus::RetryWaiting.code())
        .fetch_optional(self.catalog.pool())
        .await?;
        match id {
            Some(id) => self.get(id).await,
            None => Ok(None),
        }
    }

    /// Renews `worker`'s lease and records progress. False when the lease
    /// was lost (another worker took the task over): stop working on it.
    pub async fn heartbeat(
        &self,
        id: i64,
        worker: &str,
        percent: i64,
        lease_until: Timestamp,
    ) -> Result<bool, CatalogError> {
        LEASED
            .heartbeat(self.catalog, id, worker, percent, lease_until)
            .await
    }

    /// Marks the task done with its published file, if `worker` still
    /// holds it. False when the lease was lost. The file never outlives its
    /// backup: it ends at the backup's expiry if that comes first.
    pub async fn complete(
        &self,
        id: i64,
        worker: &str,
        now: Timestamp,
        file: &PublishedFile,
    ) -> Result<bool, CatalogError> {
        let file = file.clone();
        LEASED
            .update_while_leased(
                self.catalog,
                id,
                worker,
                "status = $8, percent = 100, finished_at = $3, lease_owner = NULL, \
             lease_expires_at = NULL, file_path = $4, file_size = $5, file_sha256 = $6, \
             file_expires_at = COALESCE((SELECT CASE WHEN b.expires_at < $7 THEN b.expires_at END \
             FROM backups b WHERE b.id = download_tasks.backup_id), $7), failure = NULL",
                |q| {
                    q.bind(now.as_second())
                        .bind(file.path)
                        .bind(file.size as i64)
                        .bind(file.sha256)
                        .bind(file.expires_at.as_second())
                        .bind(TaskStatus::Done.code())
                },
            )
            .await
    }

    /// Records a failed try: waiting to retry after the policy's backoff
    /// when `transient` and tries remain, failed otherwise. Returns the new
    /// status, or `None` when `worker` no longer held the task.
    pub async fn fail_attempt(
        &self,
        id: i64,
        worker: &str,
        now: Timestamp,
        reason: &str,
        transient: bool,
        policy: &RetryPolicy,
    ) -> Result<Option<TaskStatus>, CatalogError> {
        let attempts: Option<i64> = sqlx::query_scalar(
            "SELECT attempts FROM download_tasks WHERE id = $1 AND status = $3 AND lease_owner = $2",
        )
        .bind(id)
        .bind(worker)
        .bind(TaskStatus::Running.code())
        .fetch_optional(self.catalog.pool())
        .await?;
        let Some(attempts) = attempts else {
            return Ok(None);
        };
        let status = if transient && attempts < policy.max_attempts {
            TaskStatus::RetryWaiting
        } else {
            TaskStatus::Failed
        };
        let next = now + policy.backoff(attempts);
        let finished = (status == TaskStatus::Failed).then_some(now.as_second());
        let reason = reason.to_string();
        let done = LEASED
            .update_while_leased(
                self.catalog,
                id,
                worker,
                "status = $3, next_attempt_at = $4, failure = $5, finished_at = $6, \
                 lease_owner = NULL, lease_expires_at = NULL",
                |q| {
                    q.bind(status.code())
                        .bind(next.as_second())
                        .bind(reason)
                        .bind(finished)
                },
            )
            .await?;
        Ok(done.then_some(status))
    }

    /// Finished tasks whose file expired at `now` and is still stored.
    pub async fn expired_files(&self, now: Timestamp) -> Result<Vec<RetiredFile>, CatalogError> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, file_path FROM download_tasks \
             WHERE status = $2 AND file_path IS NOT NULL AND file_expires_at <= $1",
        )
        .bind(now.as_second())
        .bind(TaskStatus::Done.code())
        .fetch_all(self.catalog.pool())
        .await?;
        Ok(retired(rows))
    }

    /// Deletes retired download files: for each, `delete_folder` removes
    /// its folder from storage, then the catalog forgets the file. Stops at
    /// the first folder that cannot be deleted (storage down); the files
    /// left stay expired and the janitor deletes them later. Returns how
    /// many were deleted.
    pub async fn delete_retired_files<F, Fut, E>(
        &self,
        files: &[RetiredFile],
        delete_folder: F,
    ) -> Result<usize, RetiredFileError<E>>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<(), E>>,
    {
        for file in files {
            delete_folder(file.folder_prefix())
                .await
                .map_err(RetiredFileError::Storage)?;
            self.forget_file(file.task_id)
                .await
                .map_err(RetiredFileError::Catalog)?;
            tracing::info!(task_id = file.task_id, path = %file.path, "download file deleted");
        }
        Ok(files.len())
    }

    /// Records that a task's file was deleted: it shows no URL any more, and
    /// a new request for its (backup, replica set) starts afresh.
    pub async fn forget_file(&self, id: i64) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE download_tasks SET file_path = NULL, file_size = NULL, file_sha256 = NULL, \
             file_expires_at = NULL WHERE id = $1",
        )
        .bind(id)
        .execute(self.catalog.pool())
        .await?;
        Ok(())
    }

    /// Deletes finished tasks created before `before` (tasks stay listed for
    /// a while after their file is gone). Returns how many went.
    pub async fn purge_old(&self, before: Timestamp) -> Result<u64, CatalogError> {
        let done = sqlx::query(
            "DELETE FROM download_tasks WHERE created_at < $1 AND status IN ($2, $3) AND file_path IS NULL",
        )
        .bind(before.as_second())
        .bind(TaskStatus::Done.code())
        .bind(TaskStatus::Failed.code())
        .execute(self.catalog.pool())
        .await?;
        Ok(done.rows_affected())
    }
}

impl crate::store::FromRow for DownloadTask {
    fn from_row(row: &AnyRow) -> Result<Self, CatalogError> {
        decode_task(row)
    }
}

fn decode_task(row: &AnyRow) -> Result<DownloadTask, CatalogError> {
    let id: i64 = row.try_get("id")?;
    let what = format!("download task {id}");
    let corrupt = |detail: &str| CatalogError::Corrupt {
        what: what.clone(),
        detail: detail.to_string(),
    };
    let time = |column: &str| time_column(row, column, &what);
    let status =
        TaskStatus::from_code(row.try_get("status")?).ok_or_else(|| corrupt("unknown status"))?;
    let file = match (
        row.try_get::<Option<String>, _>("file_path")?,
        row.try_get::<Option<i64>, _>("file_size")?,
        row.try_get::<Option<String>, _>("file_sha256")?,
        time("file_expires_at")?,
    ) {
        (Some(path), Some(size), Some(sha256), Some(expires_at)) => Some(PublishedFile {
            path,
            size: size as u64,
            sha256,
            expires_at,
        }),
        _ => None,
    };
    Ok(DownloadTask {
        backup_id: row.try_get("backup_id")?,
        instance_id: row.try_get("instance_id")?,
        replica_set_id: row.try_get("replica_set_id")?,
        status,
        percent: row.try_get("percent")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: time("next_attempt_at")?.ok_or_else(|| corrupt("no next attempt time"))?,
        created_at: time("created_at")?.ok_or_else(|| corrupt("no creation time"))?,
        started_at: time("started_at")?,
        finished_at: time("finished_at")?,
        file,
        failure: row.try_get("failure")?,
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_paths_are_made_and_read_in_one_place() {
        let folder = DownloadFolder::new(12, 3);
        assert_eq!(folder.prefix(), "downloads/12/3/");
        let path = folder.file("b_cmgo-x_0.archive.gz");
        assert_eq!(path, "downloads/12/3/b_cmgo-x_0.archive.gz");
        assert_eq!(DownloadFolder::parse(&path), Some(folder));
        assert_eq!(DownloadFolder::parse(&folder.prefix()), Some(folder));
        for other in [
            "downloads/x/3/",
            "downloads/12/",
            "backups/12/3/f",
            "downloads/12/3",
        ] {
            let expected = (other == "downloads/12/3").then_some(folder);
            assert_eq!(DownloadFolder::parse(other), expected, "{other}");
        }
        let file = PublishedFile {
            path: path.clone(),
            size: 1,
            sha256: String::new(),
            expires_at: Timestamp::from_second(100).unwrap(),
        };
        assert_eq!(file.name(), "b_cmgo-x_0.archive.gz");
        assert!(file.is_valid_at(Timestamp::from_second(99).unwrap()));
        assert!(!file.is_valid_at(Timestamp::from_second(100).unwrap()));
        let retired = RetiredFile { task_id: 12, path };
        assert_eq!(retired.folder_prefix(), folder.prefix());
    }
    use crate::backup::{BackupType, NewBackup};
    use crate::testing::TestCatalog;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 3,
        first_backoff: SignedDuration::from_secs(10),
        max_backoff: SignedDuration::from_secs(60),
    };

    crate::testing::on_each_engine!(
        expired_files_are_found_forgotten_and_purged,
        requests_are_idempotent_until_the_file_expires,
        leases_retries_and_take_over,
        permanent_failures_do_not_retry_and_listing_filters,
        files_never_outlive_their_backup,
    );

    async fn setup(c: &crate::Catalog) -> i64 {
        let b = c
            .backups()
            .create(
                &NewBackup {
                    instance_id: "cmgo-aaaaaaaa".into(),
                    method: 0,
                    backup_type: BackupType::Manual,
                    remark: String::new(),
                    retention_days: 0,
                    name: "n".into(),
                    long_term: false,
                },
                t(100),
            )
            .await
            .unwrap();
        b.id
    }

    /// A backup with one download task, of replica set `cmgo-aaaaaaaa_0`,
    /// asked for at second 1000.
    async fn one_task(c: &crate::Catalog) -> (i64, DownloadTask) {
        let backup = setup(c).await;
        let sets = vec!["cmgo-aaaaaaaa_0".to_string()];
        let downloads = c.downloads();
        let tasks = downloads.ensure_tasks(backup, "cmgo-aaaaaaaa", &sets, t(1_000));
        (backup, tasks.await.unwrap()[0].clone())
    }

    /// Claims the next task for `worker` at second `at`, with a 30 s lease.
    async fn claim(downloads: &DownloadStore<'_>, worker: &str, at: i64) -> Option<DownloadTask> {
        downloads.claim(worker, t(at), t(at + 30)).await.unwrap()
    }

    fn file(expires: i64) -> PublishedFile {
        PublishedFile {
            path: "downloads/1/f.archive.gz".into(),
            size: 10,
            sha256: "ab".repeat(32),
            expires_at: t(expires),
        }
    }

    /// A download file ends no later than its backup: capped when it is
    /// published, brought forward when the backup's expiry is, ended when
    /// the backup is deleted or retired (and handed back for deletion).
    async fn files_never_outlive_their_backup(c: TestCatalog) {
        let downloads = c.downloads();
        let backup = setup(&c).await;
        c.backups().claim_queued(t(100)).await.unwrap().unwrap();
        let sizes = crate::BackupSizes {
            raw_bytes: 1,
            stored_bytes: 1,
            oplog_bytes: 0,
        };
        c.backups()
            .complete(backup, t(200), sizes, &[], 7)
            .await
            .unwrap();
        c.backups()
            .set_expiry(backup, Some(t(1_500)))
            .await
            .unwrap();
        let sets = vec!["cmgo-aaaaaaaa_0".to_string(), "cmgo-aaaaaaaa_1".to_string()];
        let tasks = downloads
            .ensure_tasks(backup, "cmgo-aaaaaaaa", &sets, t(1_000))
            .await
            .unwrap();
        let claimed = claim(&downloads, "w", 1_000).await.unwrap();
        assert!(downloads
            .complete(claimed.id, "w", t(1_010), &file(2_000))
            .await
            .unwrap());
        let expiry = |task: DownloadTask| task.file.map(|f| f.expires_at);
        let published = downloads.get(claimed.id).await.unwrap().unwrap();
        assert_eq!(expiry(published), Some(t(1_500)), "capped at the backup's");

        c.backups()
            .set_expiry(backup, Some(t(1_200)))
            .await
            .unwrap();
        let earlier = downloads.get(claimed.id).await.unwrap().unwrap();
        assert_eq!(expiry(earlier), Some(t(1_200)));
        c.backups()
            .set_expiry(backup, Some(t(5_000)))
            .await
            .unwrap();
        let kept = downloads.get(claimed.id).await.unwrap().unwrap();
        assert_eq!(expiry(kept), Some(t(1_200)), "never extended");

        // The other replica set's task is still waiting: retiring waits.
        assert_eq!(c.backups().retire(backup, t(1_100)).await.unwrap(), None);
        let other = tasks.iter().find(|task| task.id != claimed.id).unwrap();
        claim(&downloads, "w", 1_050).await.unwrap();
        downloads
            .fail_attempt(other.id, "w", t(1_060), "boom", false, &POLICY)
            .await
            .unwrap();
        let files = c.backups().retire(backup, t(1_100)).await.unwrap().unwrap();
        assert_eq!(
            files,
            vec![RetiredFile {
                task_id: claimed.id,
                path: "downloads/1/f.archive.gz".to_string()
            }]
        );
        let ended = downloads.get(claimed.id).await.unwrap().unwrap();
        assert_eq!(expiry(ended), Some(t(1_100)));
        assert_eq!(downloads.expired_files(t(1_100)).await.unwrap(), files);
        // Deleting it again hands back the same file, still not deleted.
        assert_eq!(
            c.backups().mark_deleted(backup, t(1_101)).await.unwrap(),
            files
        );
    }

    async fn expired_files_are_found_forgotten_and_purged(c: TestCatalog) {
        let downloads = c.downloads();
        let (_, task) = one_task(&c).await;
        claim(&downloads, "w", 1_000).await.unwrap();
        assert!(downloads
            .complete(task.id, "w", t(1_010), &file(2_000))
            .await
            .unwrap());
        assert!(downloads.expired_files(t(1_999)).await.unwrap().is_empty());
        let expired = downloads.expired_files(t(2_000)).await.unwrap();
        assert_eq!(
            expired,
            vec![RetiredFile {
                task_id: task.id,
                path: "downloads/1/f.archive.gz".to_string()
            }]
        );
        assert_eq!(
            downloads.purge_old(t(9_999)).await.unwrap(),
            0,
            "its file is still stored"
        );
        downloads.forget_file(task.id).await.unwrap();
        let gone = downloads.get(task.id).await.unwrap().unwrap();
        assert_eq!((gone.status, gone.file.clone()), (TaskStatus::Done, None));
        assert!(!gone.is_current(t(2_001)));
        assert_eq!(
            downloads.purge_old(t(1_000)).await.unwrap(),
            0,
            "created at 1000, not before"
        );
        assert_eq!(downloads.purge_old(t(1_001)).await.unwrap(), 1);
        assert!(downloads.get(task.id).await.unwrap().is_none());
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        assert_eq!(POLICY.backoff(1).as_secs(), 10);
        assert_eq!(POLICY.backoff(2).as_secs(), 20);
        assert_eq!(POLICY.backoff(3).as_secs(), 40);
        assert_eq!(POLICY.backoff(4).as_secs(), 60);
        assert_eq!(POLICY.backoff(40).as_secs(), 60);
    }

    async fn requests_are_idempotent_until_the_file_expires(c: TestCatalog) {
        let downloads = c.downloads();
        let backup = setup(&c).await;
        let sets = vec!["cmgo-aaaaaaaa_0".to_string(), "cmgo-aaaaaaaa_1".to_string()];
        let first = downloads
            .ensure_tasks(backup, "cmgo-aaaaaaaa", &sets, t(1_000))
            .await
            .unwrap();
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|t| t.status == TaskStatus::Waiting));
        let again = downloads
            .ensure_tasks(backup, "cmgo-aaaaaaaa", &sets[..1], t(1_001))
            .await
            .unwrap();
        assert_eq!(again[0].id, first[0].id);

        let claimed = claim(&downloads, "w1", 1_002).await.unwrap();
        assert_eq!(claimed.id, first[0].id);
        assert!(downloads
            .complete(claimed.id, "w1", t(1_010), &file(5_000))
            .await
            .unwrap());
        let done = downloads
            .ensure_tasks(backup, "cmgo-aaaaaaaa", &sets[..1], t(2_000))
            .await
            .unwrap();
        assert_eq!(
            (done[0].id, done[0].status),
            (first[0].id, TaskStatus::Done)
        );
        assert_eq!(done[0].seconds_spent(t(9_999)), 8);
        // Once the file expired, a new request starts afresh.
        let fresh = downloads
            .ensure_tasks(backup, "cmgo-aaaaaaaa", &sets[..1], t(5_000))
            .await
            .unwrap();
        assert_ne!(fresh[0].id, first[0].id);
        assert_eq!(fresh[0].status, TaskStatus::Waiting);
    }

    async fn leases_retries_and_take_over(c: TestCatalog) {
        let downloads = c.downloads();
        let (backup, task) = one_task(&c).await;
        assert!(downloads.backup_has_active(backup).await.unwrap());

        // w1 claims, then dies: the lease expires and w2 takes over.
        let claimed = claim(&downloads, "w1", 1_000).await.unwrap();
        assert_eq!(claimed.attempts, 1);
        assert!(claim(&downloads, "w2", 1_010).await.is_none());
        assert!(downloads
            .heartbeat(task.id, "w1", 50, t(1_040))
            .await
            .unwrap());
        assert!(claim(&downloads, "w2", 1_035).await.is_none());
        let taken = claim(&downloads, "w2", 1_041).await.unwrap();
        assert_eq!((taken.id, taken.attempts), (task.id, 2));
        // The old worker can no longer change it.
        assert!(!downloads
            .heartbeat(task.id, "w1", 60, t(1_080))
            .await
            .unwrap());
        assert!(!downloads
            .complete(task.id, "w1", t(1_050), &file(9_000))
            .await
            .unwrap());
        assert_eq!(
            downloads
                .fail_attempt(task.id, "w1", t(1_050), "x", true, &POLICY)
                .await
                .unwrap(),
            None
        );

        // w2 fails transiently: retry after the backoff (second failure: 20 s).
        let status = downloads
            .fail_attempt(task.id, "w2", t(1_050), "storage down", true, &POLICY)
            .await;
        assert_eq!(status.unwrap(), Some(TaskStatus::RetryWaiting));
        let waiting = downloads.get(task.id).await.unwrap().unwrap();
        assert_eq!(waiting.next_attempt_at, t(1_070));
        assert_eq!(waiting.failure.as_deref(), Some("storage down"));
        assert!(claim(&downloads, "w1", 1_069).await.is_none());
        let third = claim(&downloads, "w1", 1_070).await.unwrap();
        assert_eq!(third.attempts, 3);
        // The last try fails: failed for good, with the reason.
        let status = downloads
            .fail_attempt(task.id, "w1", t(1_080), "still down", true, &POLICY)
            .await;
        assert_eq!(status.unwrap(), Some(TaskStatus::Failed));
        let failed = downloads.get(task.id).await.unwrap().unwrap();
        assert_eq!(failed.failure.as_deref(), Some("still down"));
        assert!(!failed.is_current(t(1_081)));
        assert!(!downloads.backup_has_active(backup).await.unwrap());
    }

    async fn permanent_failures_do_not_retry_and_listing_filters(c: TestCatalog) {
        let downloads = c.downloads();
        let backup = setup(&c).await;
        let sets = vec!["cmgo-aaaaaaaa_0".to_string(), "cmgo-aaaaaaaa_1".to_string()];
        let tasks = downloads
            .ensure_tasks(backup, "cmgo-aaaaaaaa", &sets, t(1_000))
            .await
            .unwrap();
        claim(&downloads, "w", 1_001).await.unwrap();
        let status = downloads
            .fail_attempt(tasks[0].id, "w", t(1_002), "corrupt", false, &POLICY)
            .await;
        assert_eq!(status.unwrap(), Some(TaskStatus::Failed));

        let all = TaskFilter::default();
        let (page, total) = downloads
            .list("cmgo-aaaaaaaa", &all, TaskOrder::CreateTime, true, 0, 20)
            .await
            .unwrap();
        assert_eq!(total, 2);
        assert_eq!(page[0].id, tasks[1].id, "newest first");
        let failed_only = TaskFilter {
            statuses: vec![TaskStatus::Failed],
            ..TaskFilter::default()
        };
        let (page, total) = downloads
            .list(
                "cmgo-aaaaaaaa",
                &failed_only,
                TaskOrder::FinishTime,
                false,
                0,
                20,
            )
            .await
            .unwrap();
        assert_eq!((total, page[0].id), (1, tasks[0].id));
        let window = TaskFilter {
            created_from: Some(t(1_001)),
            ..TaskFilter::default()
        };
        assert_eq!(
            downloads
                .list("cmgo-aaaaaaaa", &window, TaskOrder::CreateTime, true, 0, 20)
                .await
                .unwrap()
                .1,
            0
        );
        // Finished tasks first by finish time, unfinished ones last; a page
        // counts every match.
        let ids = |page: Vec<DownloadTask>| page.iter().map(|t| t.id).collect::<Vec<_>>();
        let (page, total) = downloads
            .list("cmgo-aaaaaaaa", &all, TaskOrder::FinishTime, false, 0, 20)
            .await
            .unwrap();
        assert_eq!((total, ids(page)), (2, vec![tasks[0].id, tasks[1].id]));
        let (page, total) = downloads
            .list("cmgo-aaaaaaaa", &all, TaskOrder::FinishTime, true, 1, 1)
            .await
            .unwrap();
        assert_eq!((total, ids(page)), (2, vec![tasks[0].id]));
        for (backup_ids, expected) in [
            (vec![], 0),
            (vec![-5], 0),
            (vec![tasks[0].backup_id, -5], 2),
        ] {
            let by_backup = TaskFilter {
                backup_ids: Some(backup_ids),
                ..TaskFilter::default()
            };
            let (_, total) = downloads
                .list(
                    "cmgo-aaaaaaaa",
                    &by_backup,
                    TaskOrder::CreateTime,
                    false,
                    0,
                    20,
                )
                .await
                .unwrap();
            assert_eq!(total, expected);
        }
        assert_eq!(
            downloads
                .list("cmgo-other000", &all, TaskOrder::CreateTime, false, 0, 20)
                .await
                .unwrap()
                .1,
            0,
            "another instance's tasks are not counted"
        );
    }
}

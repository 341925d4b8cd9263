//! Backups: their life cycle and the queue the backup runner works from.
//!
//! A backup is created `Queued` by the API (or the scheduler), claimed by a
//! runner (`Running`, with a percentage), and ends `Succeeded` (with sizes
//! and an expiry) or `Failed` (with a reason). Deleting one keeps its row as
//! `Deleted` so that its asynchronous request stays answerable.
//!
//! Every function takes the current time from its caller, so tests can run
//! the life cycle on an injected clock.

use jiff::{SignedDuration, Timestamp};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::download::{RetiredFile, TaskStatus};
use crate::instance::ReplicaSetId;
use crate::store::{time_column, BackupStore, CatalogError};

/// Where a backup is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupStatus {
    /// Waiting for a runner.
    Queued = 0,
    /// Being taken.
    Running = 1,
    /// Complete: its manifest is written.
    Succeeded = 2,
    /// Ended without a usable backup; the reason is kept.
    Failed = 3,
    /// Deleted by a user or by expiry; its data is gone.
    Deleted = 4,
}

impl BackupStatus {
    /// The number stored in the `status` column.
    pub fn code(self) -> i64 {
        self as i64
    }

    /// The status stored as `code`.
    fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => BackupStatus::Queued,
            1 => BackupStatus::Running,
            2 => BackupStatus::Succeeded,
            3 => BackupStatus::Failed,
            4 => BackupStatus::Deleted,
            _ => return None,
        })
    }
}

/// Who started a backup; the numbers are the API's `BackupType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupType {
    /// Started by the schedule.
    Automatic = 0,
    /// Started by CreateBackupDBInstance.
    Manual = 1,
}

/// A backup's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// `BackId`.
    pub id: i64,
    /// The instance backed up.
    pub instance_id: String,
    /// `<instance>_YYYY-MM-DD HH:MM`, unique per instance.
    pub name: String,
    /// 0: logical.
    pub method: i64,
    /// Automatic or manual.
    pub backup_type: BackupType,
    /// Where it is in its life.
    pub status: BackupStatus,
    /// The user's remark (`BackupDesc`).
    pub remark: String,
    /// The `AsyncRequestId` that follows it.
    pub async_request_id: String,
    /// Where its data lives in blob storage.
    pub storage_prefix: String,
    /// When it was requested.
    pub created_at: Timestamp,
    /// When a runner started it.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
    /// When it expires; `None` keeps it until deleted.
    pub expires_at: Option<Timestamp>,
    /// Retention asked for: -2 forever, -1 or 0 the instance's rule, else days.
    pub retention_days: i64,
    /// Progress while running, 0-100.
    pub percent: i64,
    /// Uncompressed BSON bytes.
    pub raw_bytes: u64,
    /// Stored bytes.
    pub stored_bytes: u64,
    /// Stored bytes of its oplog slices (part of `stored_bytes`).
    pub oplog_bytes: u64,
    /// Kept under the long-term rule.
    pub long_term: bool,
    /// Why it failed.
    pub failure: Option<String>,
    /// The replica sets it holds (`<instance>_<n>`), once it succeeded;
    /// `None` for a backup that finished before they were recorded.
    pub replica_set_ids: Option<Vec<ReplicaSetId>>,
}

impl Backup {
    /// Whether it is usable now: succeeded and not expired at `now`.
    pub fn is_available(&self, now: Timestamp) -> bool {
        self.status == BackupStatus::Succeeded && self.expires_at.is_none_or(|t| t > now)
    }
}

/// What [`BackupStore::create`] needs.
#[derive(Debug, Clone)]
pub struct NewBackup {
    /// The instance to back up.
    pub instance_id: String,
    /// 0: logical.
    pub method: i64,
    /// Automatic or manual.
    pub backup_type: BackupType,
    /// `BackupDesc`.
    pub remark: String,
    /// -2 forever, -1 or 0 the rule's, 1.. days.
    pub retention_days: i64,
    /// `<instance>_YYYY-MM-DD HH:MM` in the API's time zone (see
    /// [`backup_name`]); a suffix is added when the name is taken.
    pub name: String,
    /// Kept under the long-term rule (an automatic backup of a long-term
    /// day).
    pub long_term: bool,
}

/// The name of a backup of `instance_id` started at `now`:
/// `<instance>_YYYY-MM-DD HH:MM` in `tz`, as TencentDB names them.
pub fn backup_name(instance_id: &str, now: Timestamp, tz: &jiff::tz::TimeZone) -> String {
    format!(
        "{instance_id}_{}",
        now.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M")
    )
}

/// What a finished backup adds up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackupSizes {
    /// Uncompressed BSON bytes.
    pub raw_bytes: u64,
    /// Stored bytes of every segment.
    pub stored_bytes: u64,
    /// Stored bytes of the oplog slices.
    pub oplog_bytes: u64,
}

const SELECT_BACKUP: &str = "SELECT id, instance_id, name, method, backup_type, status, remark, async_request_id, \
     storage_prefix, created_at, started_at, finished_at, expires_at, retention_days, percent, raw_bytes, \
     stored_bytes, oplog_bytes, long_term, failure, replica_set_ids FROM backups";

impl BackupStore<'_> {
    /// Queues a backup; refuses while another backup of the instance is
    /// queued or running.
    pub async fn create(&self, new: &NewBackup, now: Timestamp) -> Result<Backup, CatalogError> {
        let mut tx = self.catalog.begin_write().await?;
        let id = BackupStore::insert_backup(&mut tx, new, now).await?;
        tx.commit().await?;
        self.catalog.wakeups().backup_queued();
        self.get(id).await?.ok_or_else(|| CatalogError::Corrupt {
            what: format!("backup {id}"),
            detail: "vanished after insert".into(),
        })
    }

    /// Inserts a queued backup inside `tx` and returns its ID; refuses
    /// while another backup of the instance is queued or running.
    pub(crate) async fn insert_backup(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        new: &NewBackup,
        now: Timestamp,
    ) -> Result<i64, CatalogError> {
        let busy: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM backups WHERE instance_id = $1 AND status IN ($2, $3)",
        )
        .bind(&new.instance_id)
        .bind(BackupStatus::Queued.code())
        .bind(BackupStatus::Running.code())
        .fetch_one(&mut **tx)
        .await?;
        if busy > 0 {
            return Err(CatalogError::BackupInProgress {
                instance_id: new.instance_id.clone(),
            });
        }
        let mut name = new.name.clone();
        for n in 2.. {
            let taken: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM backups WHERE instance_id = $1 AND name = $2",
            )
            .bind(&new.instance_id)
            .bind(&name)
            .fetch_one(&mut **tx)
            .await?;
            if taken == 0 {
                break;
            }
            name = format!("{}-{n}", new.name);
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO backups (instance_id, name, method, backup_type, status, remark, async_request_id, \
             storage_prefix, created_at, retention_days, long_term) VALUES ($1, $2, $3, $4, $5, $6, $7, '', $8, $9, $10) \
             RETURNING id",
        )
        .bind(&new.instance_id)
        .bind(&name)
        .bind(new.method)
        .bind(new.backup_type as i64)
        .bind(BackupStatus::Queued.code())
        .bind(&new.remark)
        .bind(format!("pending-{}-{}", new.instance_id, now.as_nanosecond()))
        .bind(now.as_second())
        .bind(new.retention_days)
        .bind(i64::from(new.long_term))
        .fetch_one(&mut **tx)
        .await?;
        // Shaped like TencentDB's: milliseconds then three digits.
        let async_request_id = format!("{}{:03}", now.as_millisecond(), id % 1000);
        let prefix = format!("backups/{}/{id}", new.instance_id);
        sqlx::query("UPDATE backups SET async_request_id = $2, storage_prefix = $3 WHERE id = $1")
            .bind(id)
            .bind(&async_request_id)
            .bind(&prefix)
            .execute(&mut **tx)
            .await?;
        Ok(id)
    }

    /// One backup by `BackId`.
    pub async fn get(&self, id: i64) -> Result<Option<Backup>, CatalogError> {
        self.catalog
            .fetch_optional(sqlx::query(&format!("{SELECT_BACKUP} WHERE id = $1")).bind(id))
            .await
    }

    /// One backup by instance and name.
    pub async fn by_name(
        &self,
        instance_id: &str,
        name: &str,
    ) -> Result<Option<Backup>, CatalogError> {
        self.catalog
            .fetch_optional(
                sqlx::query(&format!(
                    "{SELECT_BACKUP} WHERE instance_id = $1 AND name = $2"
                ))
                .bind(instance_id)
                .bind(name),
            )
            .await
    }

    /// The backup an `AsyncRequestId` follows.
    pub async fn by_async_request(
        &self,
        async_request_id: &str,
    ) -> Result<Option<Backup>, CatalogError> {
        self.catalog
            .fetch_optional(
                sqlx::query(&format!("{SELECT_BACKUP} WHERE async_request_id = $1"))
                    .bind(async_request_id),
            )
            .await
    }

    /// Every backup of an instance, newest first.
    pub async fn of_instance(&self, instance_id: &str) -> Result<Vec<Backup>, CatalogError> {
        self.catalog
            .fetch_all(
                sqlx::query(&format!(
                    "{SELECT_BACKUP} WHERE instance_id = $1 ORDER BY id DESC"
                ))
                .bind(instance_id),
            )
            .await
    }

    /// Takes the oldest queued backup for a runner, marking it running.
    pub async fn claim_queued(&self, now: Timestamp) -> Result<Option<Backup>, CatalogError> {
        let id: Option<i64> = sqlx::query_scalar(&format!(
            "UPDATE backups SET status = $2, started_at = $1, percent = 0 \
             WHERE id = (SELECT id FROM backups WHERE status = $3 ORDER BY id LIMIT 1{}) AND status = $3 RETURNING id",
            self.catalog.skip_locked()
        ))
        .bind(now.as_second())
        .bind(BackupStatus::Running.code())
        .bind(BackupStatus::Queued.code())
        .fetch_optional(self.catalog.pool())
        .await?;
        match id {
            Some(id) => self.get(id).await,
            None => Ok(None),
        }
    }

    /// Records a running backup's progress.
    pub async fn set_percent(&self, id: i64, percent: i64) -> Result<(), CatalogError> {
        sqlx::query("UPDATE backups SET percent = $2 WHERE id = $1 AND status = $3")
            .bind(id)
            .bind(percent.clamp(0, 100))
            .bind(BackupStatus::Running.code())
            .execute(self.catalog.pool())
            .await?;
        Ok(())
    }

    /// Marks a running backup succeeded and sets its expiry. A backup
    /// that asked for the instance's rule (0) is kept the rule's retention
    /// days, one that asked for the long-term rule (-1) its long-term days
    /// (both `default_retention_days` when the instance has no rule). It
    /// records the replica sets the backup holds.
    pub async fn complete(
        &self,
        id: i64,
        now: Timestamp,
        sizes: BackupSizes,
        replica_set_ids: &[ReplicaSetId],
        default_retention_days: i64,
    ) -> Result<(), CatalogError> {
        let row = sqlx::query(
            "SELECT b.retention_days, r.retention_days AS rule_days, \
             CASE WHEN r.long_term_interval = '' THEN r.retention_days ELSE r.long_term_expired_days END AS long_term_days \
             FROM backups b LEFT JOIN backup_rules r ON r.instance_id = b.instance_id WHERE b.id = $1",
        )
        .bind(id)
        .fetch_one(self.catalog.pool())
        .await?;
        let rule_days: Option<i64> = row.try_get("rule_days")?;
        let long_term_days: Option<i64> = row.try_get("long_term_days")?;
        let days = match row.try_get::<i64, _>("retention_days")? {
            -2 => None,
            -1 => Some(long_term_days.unwrap_or(default_retention_days)),
            0 => Some(rule_days.unwrap_or(default_retention_days)),
            days => Some(days),
        };
        let expires_at = days.map(|d| (now + SignedDuration::from_hours(24 * d)).as_second());
        sqlx::query(
            "UPDATE backups SET status = $7, finished_at = $2, percent = 100, raw_bytes = $3, stored_bytes = $4, \
             oplog_bytes = $5, expires_at = $6, replica_set_ids = $9 WHERE id = $1 AND status = $8",
        )
        .bind(id)
        .bind(now.as_second())
        .bind(sizes.raw_bytes as i64)
        .bind(sizes.stored_bytes as i64)
        .bind(sizes.oplog_bytes as i64)
        .bind(expires_at)
        .bind(BackupStatus::Succeeded.code())
        .bind(BackupStatus::Running.code())
        .bind(serde_json::to_string(replica_set_ids).expect("a list of strings serializes"))
        .execute(self.catalog.pool())
        .await?;
        Ok(())
    }

    /// Marks a queued or running backup failed with `reason`.
    pub async fn fail(&self, id: i64, now: Timestamp, reason: &str) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE backups SET status = $4, finished_at = $2, failure = $3 WHERE id = $1 AND status IN ($5, $6)",
        )
        .bind(id)
        .bind(now.as_second())
        .bind(reason)
        .bind(BackupStatus::Failed.code())
        .bind(BackupStatus::Queued.code())
        .bind(BackupStatus::Running.code())
            .execute(self.catalog.pool())
            .await?;
        Ok(())
    }

    /// Fails every backup left running by a process that stopped, and
    /// returns them so their partial data can be deleted.
    pub async fn fail_interrupted(&self, now: Timestamp) -> Result<Vec<Backup>, CatalogError> {
        let interrupted: Vec<Backup> = self
            .catalog
            .fetch_all(
                sqlx::query(&format!("{SELECT_BACKUP} WHERE status = $1"))
                    .bind(BackupStatus::Running.code()),
            )
            .await?;
        for backup in &interrupted {
            self.fail(
                backup.id,
                now,
                "interrupted: the service stopped while the backup ran",
            )
            .await?;
        }
        Ok(interrupted)
    }

    /// Marks a backup deleted (its data must be deleted by the caller), and
    /// ends its download files at `now` in the same transaction: their URLs
    /// answer no more, even those handed out before. Returns those files
    /// for the caller to delete now; if it cannot, the
    /// janitor deletes them as expired files.
    pub async fn mark_deleted(
        &self,
        id: i64,
        now: Timestamp,
    ) -> Result<Vec<RetiredFile>, CatalogError> {
        let mut tx = self.catalog.begin_write().await?;
        sqlx::query("UPDATE backups SET status = $2 WHERE id = $1")
            .bind(id)
            .bind(BackupStatus::Deleted.code())
            .execute(&mut *tx)
            .await?;
        let files = end_download_files(&mut tx, id, now).await?;
        tx.commit().await?;
        Ok(files)
    }

    /// Succeeded backups whose expiry is at or before `now`, oldest
    /// expiry first.
    pub async fn expired(&self, now: Timestamp) -> Result<Vec<Backup>, CatalogError> {
        self.catalog
            .fetch_all(
                sqlx::query(&format!(
                "{SELECT_BACKUP} WHERE status = $2 AND expires_at <= $1 ORDER BY expires_at, id"
            ))
                .bind(now.as_second())
                .bind(BackupStatus::Succeeded.code()),
            )
            .await
    }

    /// Marks a succeeded backup deleted unless a download task of it is
    /// waiting, running or retrying (checked in the same statement, so no
    /// task can start packaging a backup whose data is about to go), and
    /// ends its download files at `now` as [`mark_deleted`] does.
    /// `None` when it was kept; otherwise its data must be deleted by the
    /// caller, and the returned download files too.
    ///
    /// [`mark_deleted`]: Self::mark_deleted
    pub async fn retire(
        &self,
        id: i64,
        now: Timestamp,
    ) -> Result<Option<Vec<RetiredFile>>, CatalogError> {
        let mut tx = self.catalog.begin_write().await?;
        let done = sqlx::query(
            "UPDATE backups SET status = $2 WHERE id = $1 AND status = $3 AND NOT EXISTS \
             (SELECT 1 FROM download_tasks WHERE backup_id = $1 AND status IN ($4, $5, $6))",
        )
        .bind(id)
        .bind(BackupStatus::Deleted.code())
        .bind(BackupStatus::Succeeded.code())
        .bind(TaskStatus::Waiting.code())
        .bind(TaskStatus::Running.code())
        .bind(TaskStatus::RetryWaiting.code())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let files = end_download_files(&mut tx, id, now).await?;
        tx.commit().await?;
        Ok(Some(files))
    }

    /// Stored bytes of the succeeded backups of each instance that has
    /// any: `(instance, all bytes, oplog bytes)`.
    pub async fn stored_bytes_per_instance(&self) -> Result<Vec<(String, u64, u64)>, CatalogError> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT instance_id, CAST(SUM(stored_bytes) AS BIGINT), CAST(SUM(oplog_bytes) AS BIGINT) FROM backups \
             WHERE status = $1 GROUP BY instance_id ORDER BY instance_id",
        )
        .bind(BackupStatus::Succeeded.code())
        .fetch_all(self.catalog.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, all, oplog)| (id, all as u64, oplog as u64))
            .collect())
    }

    /// The status of every backup row by ID (for garbage collection).
    pub async fn statuses(
        &self,
    ) -> Result<std::collections::HashMap<i64, BackupStatus>, CatalogError> {
        let rows: Vec<(i64, i64)> = sqlx::query_as("SELECT id, status FROM backups")
            .fetch_all(self.catalog.pool())
            .await?;
        rows.into_iter()
            .map(|(id, code)| {
                let status =
                    BackupStatus::from_code(code).ok_or_else(|| CatalogError::Corrupt {
                        what: format!("backup {id}"),
                        detail: "unknown status".into(),
                    })?;
                Ok((id, status))
            })
            .collect()
    }

    /// Sets when a backup expires. Its download files never outlive it:
    /// those valid past `expires_at` end then.
    pub async fn set_expiry(
        &self,
        id: i64,
        expires_at: Option<Timestamp>,
    ) -> Result<(), CatalogError> {
        let mut tx = self.catalog.begin_write().await?;
        sqlx::query("UPDATE backups SET expires_at = $2 WHERE id = $1")
            .bind(id)
            .bind(expires_at.map(|t| t.as_second()))
            .execute(&mut *tx)
            .await?;
        if let Some(expires_at) = expires_at {
            end_download_files(&mut tx, id, expires_at).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Brings the end of the backup's published download files forward to `at`
/// (those ending later); returns them.
async fn end_download_files(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    backup_id: i64,
    at: Timestamp,
) -> Result<Vec<RetiredFile>, CatalogError> {
    sqlx::query(
        "UPDATE download_tasks SET file_expires_at = $2 \
         WHERE backup_id = $1 AND file_path IS NOT NULL AND file_expires_at > $2",
    )
    .bind(backup_id)
    .bind(at.as_second())
    .execute(&mut **tx)
    .await?;
    let files: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, file_path FROM download_tasks WHERE backup_id = $1 AND file_path IS NOT NULL \
         AND file_expires_at <= $2 ORDER BY id",
    )
    .bind(backup_id)
    .bind(at.as_second())
    .fetch_all(&mut **tx)
    .await?;
    Ok(crate::download::retired(files))
}

impl crate::store::FromRow for Backup {
    fn from_row(row: &AnyRow) -> Result<Self, CatalogError> {
        decode_backup(row)
    }
}

fn decode_backup(row: &AnyRow) -> Result<Backup, CatalogError> {
    let id: i64 = row.try_get("id")?;
    let what = format!("backup {id}");
    let corrupt = |detail: &str| CatalogError::Corrupt {
        what: what.clone(),
        detail: detail.to_string(),
    };
    let time = |column: &str| time_column(row, column, &what);
    let backup_type = match row.try_get::<i64, _>("backup_type")? {
        0 => BackupType::Automatic,
        1 => BackupType::Manual,
        _ => return Err(corrupt("unknown backup type")),
    };
    let status =
        BackupStatus::from_code(row.try_get("status")?).ok_or_else(|| corrupt("unknown status"))?;
    Ok(Backup {
        instance_id: row.try_get("instance_id")?,
        name: row.try_get("name")?,
        method: row.try_get("method")?,
        backup_type,
        status,
        remark: row.try_get("remark")?,
        async_request_id: row.try_get("async_request_id")?,
        storage_prefix: row.try_get("storage_prefix")?,
        created_at: time("created_at")?.ok_or_else(|| corrupt("no creation time"))?,
        started_at: time("started_at")?,
        finished_at: time("finished_at")?,
        expires_at: time("expires_at")?,
        retention_days: row.try_get("retention_days")?,
        percent: row.try_get("percent")?,
        raw_bytes: row.try_get::<i64, _>("raw_bytes")? as u64,
        stored_bytes: row.try_get::<i64, _>("stored_bytes")? as u64,
        oplog_bytes: row.try_get::<i64, _>("oplog_bytes")? as u64,
        long_term: row.try_get::<i64, _>("long_term")? != 0,
        failure: row.try_get("failure")?,
        replica_set_ids: match row.try_get::<Option<String>, _>("replica_set_ids")? {
            Some(ids) => {
                let ids: Vec<String> =
                    serde_json::from_str(&ids).map_err(|e| corrupt(&e.to_string()))?;
                let parsed = ids.iter().map(|id| ReplicaSetId::parse(id));
                Some(
                    parsed
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| corrupt("malformed replica set ID"))?,
                )
            }
            None => None,
        },
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestCatalog;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn new(name: &str) -> NewBackup {
        NewBackup {
            instance_id: "cmgo-aaaaaaaa".into(),
            method: 0,
            backup_type: BackupType::Manual,
            remark: "before upgrade".into(),
            retention_days: 0,
            name: name.into(),
            long_term: false,
        }
    }

    crate::testing::on_each_engine!(life_cycle, concurrent_requests_wait_for_the_lock);

    async fn life_cycle(c: TestCatalog) {
        let backups = c.backups();
        let b = backups
            .create(&new("cmgo-aaaaaaaa_2026-11-28 10:44"), t(1_000))
            .await
            .unwrap();
        assert_eq!(b.status, BackupStatus::Queued);
        assert_eq!(b.async_request_id, format!("1000000{:03}", b.id % 1000));
        assert_eq!(b.storage_prefix, format!("backups/cmgo-aaaaaaaa/{}", b.id));
        assert!(matches!(
            backups.create(&new("x"), t(1_001)).await,
            Err(CatalogError::BackupInProgress { .. })
        ));
        let claimed = backups.claim_queued(t(1_002)).await.unwrap().unwrap();
        assert_eq!((claimed.id, claimed.status), (b.id, BackupStatus::Running));
        assert!(backups.claim_queued(t(1_002)).await.unwrap().is_none());
        backups.set_percent(b.id, 40).await.unwrap();
        let sizes = BackupSizes {
            raw_bytes: 10,
            stored_bytes: 5,
            oplog_bytes: 1,
        };
        let sets = [ReplicaSetId::parse("cmgo-aaaaaaaa_0").unwrap()];
        backups
            .complete(b.id, t(2_000), sizes, &sets, 7)
            .await
            .unwrap();
        let done = backups.get(b.id).await.unwrap().unwrap();
        assert_eq!(done.status, BackupStatus::Succeeded);
        assert_eq!(done.replica_set_ids.as_deref(), Some(&sets[..]));
        assert_eq!(done.expires_at, Some(t(2_000 + 7 * 86_400)));
        assert!(done.is_available(t(2_001)));
        assert!(!done.is_available(t(2_000 + 7 * 86_400)));
        assert_eq!(
            backups
                .by_async_request(&b.async_request_id)
                .await
                .unwrap()
                .unwrap()
                .id,
            b.id
        );

        // The same minute again: a unique name.
        let second = backups
            .create(&new("cmgo-aaaaaaaa_2026-11-28 10:44"), t(2_010))
            .await
            .unwrap();
        assert_eq!(second.name, "cmgo-aaaaaaaa_2026-11-28 10:44-2");
        assert_eq!(
            backups
                .by_name("cmgo-aaaaaaaa", "cmgo-aaaaaaaa_2026-11-28 10:44-2")
                .await
                .unwrap()
                .unwrap()
                .id,
            second.id
        );
        backups.claim_queued(t(2_011)).await.unwrap().unwrap();
        let interrupted = backups.fail_interrupted(t(2_012)).await.unwrap();
        assert_eq!(interrupted.len(), 1);
        let failed = backups.get(second.id).await.unwrap().unwrap();
        assert_eq!(failed.status, BackupStatus::Failed);
        assert!(failed.failure.unwrap().contains("interrupted"));

        backups.mark_deleted(b.id, t(3_000)).await.unwrap();
        assert_eq!(
            backups.get(b.id).await.unwrap().unwrap().status,
            BackupStatus::Deleted
        );
        let listed = backups.of_instance("cmgo-aaaaaaaa").await.unwrap();
        assert_eq!(
            listed.iter().map(|b| b.id).collect::<Vec<_>>(),
            vec![second.id, b.id]
        );
    }

    async fn concurrent_requests_wait_for_the_lock(c: TestCatalog) {
        let requests = (0..24).map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                let mut request = new("n");
                // Two requests for each of 12 instances.
                request.instance_id = format!("cmgo-conc{:04}", i % 12);
                c.backups().create(&request, t(1_000)).await
            })
        });
        let results: Vec<_> = futures_join(requests).await;
        let accepted = results.iter().filter(|r| r.is_ok()).count();
        let busy = results
            .iter()
            .filter(|r| matches!(r, Err(CatalogError::BackupInProgress { .. })))
            .count();
        assert_eq!((accepted, busy), (12, 12), "{results:?}");
    }

    async fn futures_join<T>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
        let mut out = Vec::new();
        for handle in handles.collect::<Vec<_>>() {
            out.push(handle.await.unwrap());
        }
        out
    }
}

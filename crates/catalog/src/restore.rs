//! Point-in-time restores and flashbacks by key: durable leased tasks.
//!
//! `RestoreDBInstance` and `FlashBackDBInstance` queue a [`RestoreTask`]
//! and answer its `FlowId`. A worker claims it with a lease, renews the
//! lease as it goes, and marks it done or failed; a worker that dies
//! leaves a lease that lapses, and the next claim redoes the task from the
//! start. After `max_attempts` claims the task fails with the reason.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::store::{time_column, CatalogError, FromRow, LeasedTasks, RestoreStore};

/// The restore tasks' leases.
const LEASED: LeasedTasks = LeasedTasks {
    table: "restore_tasks",
    running: RestoreStatus::Running as i64,
};

/// The FlowId of task `id`: nine digits or more, never one of the
/// sixteen-digit IDs of backups' asynchronous requests.
const FLOW_ID_BASE: i64 = 100_000_000;

/// Restore or flashback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreKind {
    /// Whole collections as of a time (`RestoreDBInstance`).
    Restore,
    /// The documents of given keys as of a time (`FlashBackDBInstance`).
    Flashback,
}

impl RestoreKind {
    fn code(self) -> &'static str {
        match self {
            RestoreKind::Restore => "restore",
            RestoreKind::Flashback => "flashback",
        }
    }
}

/// Where a restore task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreStatus {
    /// Waiting for a worker.
    Queued = 0,
    /// A worker holds it (or held it, and its lease has not lapsed yet).
    Running = 1,
    /// Every target collection is complete.
    Succeeded = 2,
    /// Given up, with a reason.
    Failed = 3,
}

impl RestoreStatus {
    fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => RestoreStatus::Queued,
            1 => RestoreStatus::Running,
            2 => RestoreStatus::Succeeded,
            3 => RestoreStatus::Failed,
            _ => return None,
        })
    }
}

/// What a task restores.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePlan {
    /// The collections, each into a target of its own.
    pub collections: Vec<RestoreTarget>,
}

/// One collection to restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreTarget {
    /// Its database.
    pub db: String,
    /// Its name at the restore time.
    pub source: String,
    /// The collection written (in the same database).
    pub target: String,
    /// For a flashback: only the documents whose key has one of these
    /// values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<KeyFilter>,
}

/// The documents a flashback restores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFilter {
    /// The field (`_id` by default).
    pub field: String,
    /// The values asked for, as given.
    pub values: Vec<String>,
}

/// A restore to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRestore {
    /// Restore or flashback.
    pub kind: RestoreKind,
    /// The instance read.
    pub instance_id: String,
    /// The instance written (the same one for a restore).
    pub target_instance_id: String,
    /// Every write in or before this second, none after.
    pub restore_time: Timestamp,
    /// What to restore.
    pub plan: RestorePlan,
}

/// A queued, running or finished restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreTask {
    /// Row ID.
    pub id: i64,
    /// The API's `FlowId`.
    pub flow_id: i64,
    /// Restore or flashback.
    pub kind: RestoreKind,
    /// The instance read.
    pub instance_id: String,
    /// The instance written.
    pub target_instance_id: String,
    /// Every write in or before this second, none after.
    pub restore_time: Timestamp,
    /// What to restore.
    pub plan: RestorePlan,
    /// Where it stands.
    pub status: RestoreStatus,
    /// 0-100.
    pub percent: i64,
    /// Why it failed (empty otherwise).
    pub failure: String,
    /// Claims so far.
    pub attempts: i64,
    /// When it was queued.
    pub created_at: Timestamp,
    /// When it was first claimed.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
}

const SELECT_TASK: &str = "SELECT id, flow_id, kind, instance_id, target_instance_id, \
     restore_time, plan, status, percent, failure, attempts, created_at, started_at, finished_at \
     FROM restore_tasks";

impl RestoreStore<'_> {
    /// Queues a restore and returns it with its FlowId.
    pub async fn create(
        &self,
        new: &NewRestore,
        now: Timestamp,
    ) -> Result<RestoreTask, CatalogError> {
        let plan = serde_json::to_string(&new.plan).expect("a plan serializes");
        let mut tx = self.catalog.begin_write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO restore_tasks (kind, instance_id, target_instance_id, restore_time, plan, \
             status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(new.kind.code())
        .bind(&new.instance_id)
        .bind(&new.target_instance_id)
        .bind(new.restore_time.as_second())
        .bind(plan)
        .bind(RestoreStatus::Queued as i64)
        .bind(now.as_second())
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("UPDATE restore_tasks SET flow_id = $2 WHERE id = $1")
            .bind(id)
            .bind(FLOW_ID_BASE + id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.catalog.wakeups().restore_queued();
        self.get(id).await?.ok_or_else(|| CatalogError::Corrupt {
            what: format!("restore task {id}"),
            detail: "vanished after insert".into(),
        })
    }

    /// Task `id`.
    pub async fn get(&self, id: i64) -> Result<Option<RestoreTask>, CatalogError> {
        self.catalog
            .fetch_optional(sqlx::query(&format!("{SELECT_TASK} WHERE id = $1")).bind(id))
            .await
    }

    /// The task answered as `flow_id`.
    pub async fn by_flow(&self, flow_id: i64) -> Result<Option<RestoreTask>, CatalogError> {
        self.catalog
            .fetch_optional(sqlx::query(&format!("{SELECT_TASK} WHERE flow_id = $1")).bind(flow_id))
            .await
    }

    /// The queued and running tasks writing into `instance_id`.
    pub async fn active_into(&self, instance_id: &str) -> Result<Vec<RestoreTask>, CatalogError> {
        self.catalog
            .fetch_all(
                sqlx::query(&format!(
                    "{SELECT_TASK} WHERE target_instance_id = $1 AND status IN ($2, $3) ORDER BY id"
                ))
                .bind(instance_id)
                .bind(RestoreStatus::Queued as i64)
                .bind(RestoreStatus::Running as i64),
            )
            .await
    }

    /// Claims the oldest queued task, or a running one whose lease lapsed
    /// (its worker died: the task is redone), for `worker` until
    /// `lease_until`. A task claimed `max_attempts` times already fails
    /// instead, with the reason, and the next one is looked at.
    pub async fn claim(
        &self,
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
        max_attempts: i64,
    ) -> Result<Option<RestoreTask>, CatalogError> {
        loop {
            let id: Option<i64> = sqlx::query_scalar(&format!(
                "UPDATE restore_tasks SET status = $4, lease_owner = $1, lease_expires_at = $3, \
                 attempts = attempts + 1, started_at = COALESCE(started_at, $2), percent = 0 \
                 WHERE id = (SELECT id FROM restore_tasks \
                     WHERE status = $5 OR (status = $4 AND lease_expires_at < $2) \
                     ORDER BY id LIMIT 1{}) \
                 AND (status = $5 OR (status = $4 AND lease_expires_at < $2)) \
                 RETURNING id",
                self.catalog.skip_locked()
            ))
            .bind(worker)
            .bind(now.as_second())
            .bind(lease_until.as_second())
            .bind(RestoreStatus::Running as i64)
            .bind(RestoreStatus::Queued as i64)
            .fetch_optional(self.catalog.pool())
            .await?;
            let Some(id) = id else {
                return Ok(None);
            };
            let Some(task) = self.get(id).await? else {
                continue;
            };
            if task.attempts > max_attempts {
                let reason = format!(
                    "given up after {max_attempts} attempts, each stopped without finishing \
                     (the process running it ended or lost the task's lease)"
                );
                self.fail(id, worker, now, &reason).await?;
                continue;
            }
            return Ok(Some(task));
        }
    }

    /// Renews `worker`'s lease and records progress. False when the lease
    /// was lost: stop working on the task.
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

    /// Marks the task succeeded, if `worker` still holds it.
    pub async fn complete(
        &self,
        id: i64,
        worker: &str,
        now: Timestamp,
    ) -> Result<bool, CatalogError> {
        LEASED
            .update_while_leased(
                self.catalog,
                id,
                worker,
                "status = $4, percent = 100, finished_at = $3, lease_owner = NULL",
                |q| {
                    q.bind(now.as_second())
                        .bind(RestoreStatus::Succeeded as i64)
                },
            )
            .await
    }

    /// Marks the task failed with `reason`, if `worker` still holds it.
    pub async fn fail(
        &self,
        id: i64,
        worker: &str,
        now: Timestamp,
        reason: &str,
    ) -> Result<bool, CatalogError> {
        LEASED
            .update_while_leased(
                self.catalog,
                id,
                worker,
                "status = $4, finished_at = $3, failure = $5, lease_owner = NULL",
                |q| {
                    q.bind(now.as_second())
                        .bind(RestoreStatus::Failed as i64)
                        .bind(reason.to_string())
                },
            )
            .await
    }
}

impl FromRow for RestoreTask {
    fn from_row(row: &AnyRow) -> Result<Self, CatalogError> {
        let id: i64 = row.try_get("id")?;
        let what = format!("restore task {id}");
        let corrupt = |detail: String| CatalogError::Corrupt {
            what: what.clone(),
            detail,
        };
        let kind: String = row.try_get("kind")?;
        let kind = match kind.as_str() {
            "restore" => RestoreKind::Restore,
            "flashback" => RestoreKind::Flashback,
            other => return Err(corrupt(format!("unknown kind {other:?}"))),
        };
        let status: i64 = row.try_get("status")?;
        let status = RestoreStatus::from_code(status)
            .ok_or_else(|| corrupt(format!("unknown status {status}")))?;
        let plan: String = row.try_get("plan")?;
        let plan = serde_json::from_str(&plan).map_err(|e| corrupt(format!("its plan: {e}")))?;
        let restore_time = Timestamp::from_second(row.try_get("restore_time")?)
            .map_err(|e| corrupt(format!("its restore time: {e}")))?;
        Ok(RestoreTask {
            id,
            flow_id: row
                .try_get::<Option<i64>, _>("flow_id")?
                .unwrap_or(FLOW_ID_BASE + id),
            kind,
            instance_id: row.try_get("instance_id")?,
            target_instance_id: row.try_get("target_instance_id")?,
            restore_time,
            plan,
            status,
            percent: row.try_get("percent")?,
            failure: row.try_get("failure")?,
            attempts: row.try_get("attempts")?,
            created_at: time_column(row, "created_at", &what)?
                .ok_or_else(|| corrupt("created_at is missing".into()))?,
            started_at: time_column(row, "started_at", &what)?,
            finished_at: time_column(row, "finished_at", &what)?,
        })
    }
}

/// How long a restore worker's lease lasts unless renewed.
pub const RESTORE_LEASE: SignedDuration = SignedDuration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestCatalog;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn new_restore() -> NewRestore {
        NewRestore {
            kind: RestoreKind::Restore,
            instance_id: "cmgo-aaaaaaaa".into(),
            target_instance_id: "cmgo-aaaaaaaa".into(),
            restore_time: t(1_000),
            plan: RestorePlan {
                collections: vec![RestoreTarget {
                    db: "shop".into(),
                    source: "orders".into(),
                    target: "orders_bak".into(),
                    keys: None,
                }],
            },
        }
    }

    async fn a_task_is_claimed_leased_and_redone_when_its_worker_dies(c: TestCatalog) {
        let restores = c.restores();
        let task = restores.create(&new_restore(), t(1_001)).await.unwrap();
        assert_eq!(task.flow_id, FLOW_ID_BASE + task.id);
        assert_eq!(task.status, RestoreStatus::Queued);
        assert_eq!(task.plan, new_restore().plan);
        assert_eq!(
            restores.by_flow(task.flow_id).await.unwrap().unwrap().id,
            task.id
        );
        assert_eq!(
            restores.active_into("cmgo-aaaaaaaa").await.unwrap().len(),
            1
        );

        let claimed = restores
            .claim("w1", t(1_002), t(1_032), 3)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((claimed.id, claimed.attempts), (task.id, 1));
        // Held: nobody else gets it.
        assert!(restores
            .claim("w2", t(1_010), t(1_040), 3)
            .await
            .unwrap()
            .is_none());
        assert!(restores
            .heartbeat(task.id, "w1", 40, t(1_050))
            .await
            .unwrap());
        // w1 dies; once its lease lapsed, w2 redoes the task.
        let again = restores
            .claim("w2", t(1_051), t(1_081), 3)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((again.id, again.attempts, again.percent), (task.id, 2, 0));
        assert!(!restores
            .heartbeat(task.id, "w1", 50, t(1_090))
            .await
            .unwrap());
        assert!(!restores.complete(task.id, "w1", t(1_060)).await.unwrap());
        assert!(restores.complete(task.id, "w2", t(1_060)).await.unwrap());
        let done = restores.get(task.id).await.unwrap().unwrap();
        assert_eq!((done.status, done.percent), (RestoreStatus::Succeeded, 100));
        assert!(restores
            .active_into("cmgo-aaaaaaaa")
            .await
            .unwrap()
            .is_empty());
    }

    async fn a_task_that_keeps_losing_its_worker_fails_with_the_reason(c: TestCatalog) {
        let restores = c.restores();
        let task = restores.create(&new_restore(), t(1_000)).await.unwrap();
        for n in 0..2 {
            let at = 1_000 + n * 100;
            assert!(restores
                .claim("w", t(at), t(at + 30), 2)
                .await
                .unwrap()
                .is_some());
        }
        assert!(restores
            .claim("w", t(1_300), t(1_330), 2)
            .await
            .unwrap()
            .is_none());
        let failed = restores.get(task.id).await.unwrap().unwrap();
        assert_eq!(failed.status, RestoreStatus::Failed);
        assert!(failed.failure.contains("2 attempts"), "{}", failed.failure);
    }

    crate::testing::on_each_engine!(
        a_task_is_claimed_leased_and_redone_when_its_worker_dies,
        a_task_that_keeps_losing_its_worker_fails_with_the_reason,
    );
}

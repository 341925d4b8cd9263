//! The scheduler: starts automatic backups by each instance's rule and
//! deletes backups whose retention is over.
//!
//! Every tick (30 s by default) it asks each rule for its latest time slot
//! at or before now; a slot later than the last one handled queues one
//! automatic backup and marks the slot handled in the same transaction. So
//! a slot missed while the service was down runs once at the next start,
//! and two nodes or two ticks never start it twice. While another backup of
//! the instance is queued or running the slot stays pending and starts
//! when that one ends: never two backups of one instance at once.
//!
//! Expired backups are deleted with their stored data, except while a
//! download task of them is waiting or running; those are deleted at the
//! first tick after the task ends.
//!
//! [`Scheduler::tick`] takes the time as an argument, so tests drive a week
//! of schedule on an injected clock.

use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use mongobak_blob::BlobStore;
use mongobak_catalog::{backup_name, BackupRule, BackupType, Catalog, CatalogError, NewBackup};

use crate::runner::{Duty, Runner};

/// The name of the duty in the catalog.
const DUTY: &str = "scheduler";

/// Settings of the scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Zone of the rules' hours and weekdays and of backup names.
    pub timezone: TimeZone,
    /// Retention of the default rule (an instance nobody configured).
    pub default_retention_days: i64,
    /// Whether automatic backups are started at all (expiry runs either
    /// way).
    pub automatic: bool,
    /// Time between ticks.
    pub interval: Duration,
    /// This node's name: one node of a cluster holds the scheduling duty.
    pub node: String,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            timezone: TimeZone::get("Asia/Shanghai").unwrap_or(TimeZone::UTC),
            default_retention_days: 7,
            automatic: true,
            interval: Duration::from_secs(30),
            node: "local".into(),
        }
    }
}

/// Starts automatic backups and deletes expired ones.
#[derive(Debug, Clone)]
pub struct Scheduler {
    catalog: Catalog,
    store: BlobStore,
    config: SchedulerConfig,
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// IDs of the automatic backups queued.
    pub started: Vec<i64>,
    /// IDs of the expired backups deleted.
    pub deleted: Vec<i64>,
    /// IDs of expired backups kept for now: a download task of them runs.
    pub deferred: Vec<i64>,
}

impl Scheduler {
    /// A scheduler over `catalog`, deleting from `store`.
    pub fn new(catalog: Catalog, store: BlobStore, config: SchedulerConfig) -> Self {
        Scheduler {
            catalog,
            store,
            config,
        }
    }

    /// The rule an instance without a stored one follows.
    pub fn default_rule(&self, instance_id: &str) -> BackupRule {
        BackupRule::defaults(instance_id, self.config.default_retention_days)
    }

    /// Ticks every interval on `runner`, while this node holds the
    /// scheduling duty (one node of a cluster does; another takes over
    /// within three intervals when it dies). The first tick is at once, so
    /// a slot missed while the service was down runs at start.
    pub fn start(self, runner: &Runner) {
        let config = &self.config;
        let duty = Duty::every(self.catalog.clone(), DUTY, &config.node, config.interval);
        runner.spawn_rounds(duty, self, |scheduler, now| async move {
            scheduler.tick(now).await
        });
    }

    /// One tick at `now`.
    pub async fn tick(&self, now: Timestamp) -> Result<TickReport, CatalogError> {
        let mut report = TickReport::default();
        if self.config.automatic {
            self.start_due_backups(now, &mut report).await?;
        }
        self.delete_expired(now, &mut report).await?;
        Ok(report)
    }

    async fn start_due_backups(
        &self,
        now: Timestamp,
        report: &mut TickReport,
    ) -> Result<(), CatalogError> {
        let tz = &self.config.timezone;
        let rules = self
            .catalog
            .rules()
            .scheduled(now, |id| self.default_rule(id))
            .await?;
        for (rule, handled_until) in rules {
            let Some(slot) = rule.latest_slot(now, tz) else {
                continue;
            };
            if slot <= handled_until {
                continue;
            }
            let long_term = rule.is_long_term_slot(slot, tz);
            let new = NewBackup {
                instance_id: rule.instance_id.clone(),
                method: rule.backup_method,
                backup_type: BackupType::Automatic,
                remark: String::new(),
                retention_days: rule.retention_for_slot(slot, tz),
                name: backup_name(&rule.instance_id, now, tz),
                long_term,
            };
            match self
                .catalog
                .rules()
                .create_scheduled_backup(&new, slot, now)
                .await
            {
                Ok(Some(backup)) => {
                    tracing::info!(
                        backup_id = backup.id,
                        instance = %rule.instance_id,
                        name = %backup.name,
                        slot = %slot,
                        long_term,
                        "automatic backup queued"
                    );
                    report.started.push(backup.id);
                }
                Ok(None) => {}
                Err(CatalogError::BackupInProgress { .. }) => {
                    tracing::debug!(instance = %rule.instance_id, "automatic backup waits: another backup runs");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn delete_expired(
        &self,
        now: Timestamp,
        report: &mut TickReport,
    ) -> Result<(), CatalogError> {
        for backup in self.catalog.backups().expired(now).await? {
            let Some(download_files) = self.catalog.backups().retire(backup.id, now).await? else {
                tracing::debug!(
                    backup_id = backup.id,
                    "expired backup kept while it is being downloaded"
                );
                report.deferred.push(backup.id);
                continue;
            };
            // Its download files go with it; any left (storage down) are
            // expired files the janitor deletes.
            if let Err(e) =
                crate::janitor::delete_download_files(&self.catalog, &self.store, &download_files)
                    .await
            {
                tracing::warn!(backup_id = backup.id, error = %e, "cannot delete an expired backup's download files; the janitor will");
            }
            // Marked deleted first: if deleting the data fails now, the
            // garbage collector finds it later.
            if let Err(e) = self
                .store
                .delete_prefix(&format!("{}/", backup.storage_prefix))
                .await
            {
                tracing::warn!(backup_id = backup.id, error = %e, "cannot delete an expired backup's data; garbage collection will");
            }
            tracing::info!(backup_id = backup.id, instance = %backup.instance_id, name = %backup.name, "expired backup deleted");
            report.deleted.push(backup.id);
        }
        Ok(())
    }
}

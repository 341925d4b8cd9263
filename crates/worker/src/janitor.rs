//! The janitor: deletes download files whose time is up, forgets finished
//! download tasks once they have been listed long enough, removes the
//! partial objects that writers killed mid-write left behind, deletes the
//! oplog slices of continuous backup that have expired, and collects
//! garbage (stored data no catalog entry accounts for, see [`crate::gc`]).
//!
//! A file is deleted before its task forgets it, so a crash in between
//! only leaves a task that points at nothing (the next round forgets it);
//! the download endpoint already refuses expired files by their expiry.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use mongobak_blob::{BlobError, BlobStore};
use mongobak_catalog::{Catalog, RetiredFile, RetiredFileError};

use crate::runner::{Duty, Runner};

/// The name of the duty in the catalog.
const DUTY: &str = "janitor";

/// Settings of the janitor.
#[derive(Debug, Clone)]
pub struct JanitorConfig {
    /// Time between rounds.
    pub interval: Duration,
    /// How long finished tasks stay listed.
    pub task_retention: SignedDuration,
    /// Age after which an object never closed (its writer died) is removed.
    pub temporary_grace: Duration,
    /// Age after which stored data no catalog entry accounts for is
    /// deleted.
    pub garbage_grace: SignedDuration,
    /// This node's name: one node of a cluster holds the janitor's duty.
    pub node: String,
}

impl Default for JanitorConfig {
    fn default() -> Self {
        JanitorConfig {
            interval: Duration::from_secs(600),
            task_retention: SignedDuration::from_hours(24 * 30),
            temporary_grace: Duration::from_secs(3600),
            garbage_grace: SignedDuration::from_hours(24),
            node: "local".into(),
        }
    }
}

/// Deletes expired download files and old tasks.
#[derive(Debug, Clone)]
pub struct Janitor {
    catalog: Catalog,
    store: BlobStore,
    config: JanitorConfig,
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JanitorReport {
    /// Download files deleted.
    pub files_deleted: usize,
    /// Tasks no longer listed.
    pub tasks_purged: u64,
    /// Abandoned partial objects removed.
    pub temporary_removed: usize,
    /// Folders of garbage deleted.
    pub garbage_deleted: usize,
    /// Oplog slices deleted: older than their instance's
    /// `OplogExpiredDays` and needed by no restore inside the window.
    pub slices_deleted: usize,
}

impl Janitor {
    /// A janitor over `catalog` and `store`.
    pub fn new(catalog: Catalog, store: BlobStore, config: JanitorConfig) -> Self {
        Janitor {
            catalog,
            store,
            config,
        }
    }

    /// Runs a round every interval on `runner`, while this node holds the
    /// janitor's duty (one node of a cluster does; another takes over
    /// within three intervals when it dies). The first round is at once.
    pub fn start(self, runner: &Runner) {
        let config = &self.config;
        let duty = Duty::every(self.catalog.clone(), DUTY, &config.node, config.interval);
        runner.spawn_rounds(duty, self, |janitor, now| async move {
            janitor.round(now).await
        });
    }

    /// One round at `now`.
    pub async fn round(
        &self,
        now: Timestamp,
    ) -> Result<JanitorReport, Box<dyn std::error::Error + Send + Sync>> {
        let mut report = JanitorReport::default();
        let expired = self.catalog.downloads().expired_files(now).await?;
        report.files_deleted = delete_download_files(&self.catalog, &self.store, &expired).await?;
        report.temporary_removed = self
            .store
            .remove_stale_temporary(self.config.temporary_grace)?;
        report.tasks_purged = self
            .catalog
            .downloads()
            .purge_old(now - self.config.task_retention)
            .await?;
        report.slices_deleted = crate::pitr::expire_slices(&self.catalog, &self.store, now).await?;
        report.garbage_deleted =
            crate::gc::collect_garbage(&self.catalog, &self.store, now, self.config.garbage_grace)
                .await?
                .len();
        Ok(report)
    }
}

/// Deletes retired download files, each with its attempt's folder, and
/// records that each is gone. Returns how many were deleted.
pub(crate) async fn delete_download_files(
    catalog: &Catalog,
    store: &BlobStore,
    files: &[RetiredFile],
) -> Result<usize, RetiredFileError<BlobError>> {
    catalog
        .downloads()
        .delete_retired_files(
            files,
            |folder| async move { store.delete_prefix(&folder).await },
        )
        .await
}

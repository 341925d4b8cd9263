//! In-process wake-ups: the catalog tells this process's background
//! workers that it queued work, so they start at once instead of at their
//! next poll. Workers still poll, for work queued by other nodes.

use std::sync::Arc;

use tokio::sync::Notify;

/// The wake-ups of one process's workers; clones share them.
#[derive(Debug, Clone, Default)]
pub struct Wakeups {
    backups_queued: Arc<Notify>,
    downloads_queued: Arc<Notify>,
    restores_queued: Arc<Notify>,
}

impl Wakeups {
    /// Tells the backup runner that a backup was queued.
    pub(crate) fn backup_queued(&self) {
        self.backups_queued.notify_one();
    }

    /// Resolves when a backup was queued in this process since the last
    /// call (or at once if one was queued before anyone waited).
    pub async fn wait_for_backup(&self) {
        self.backups_queued.notified().await;
    }

    /// Tells every waiting download worker that tasks were queued.
    pub(crate) fn downloads_queued(&self) {
        self.downloads_queued.notify_waiters();
    }

    /// Resolves when download tasks are queued in this process while
    /// waiting.
    pub async fn wait_for_downloads(&self) {
        self.downloads_queued.notified().await;
    }

    /// Tells the restore workers that a restore was queued.
    pub(crate) fn restore_queued(&self) {
        self.restores_queued.notify_waiters();
    }

    /// Resolves when a restore is queued in this process while waiting.
    pub async fn wait_for_restores(&self) {
        self.restores_queued.notified().await;
    }
}

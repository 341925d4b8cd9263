//! Notifications of failed automatic backups and of lost stretches of
//! oplog: always an error-level log line, and, when `[server]
//! notify_webhook` is set and the instance's rule has `Notify` on, a JSON
//! POST to the webhook, retried with backoff until it answers 2xx.

use std::time::Duration;

use jiff::Timestamp;
use mongobak_catalog::{Backup, ReplicaSetId};
use serde::Serialize;

/// Where failures are reported.
#[derive(Debug, Clone)]
pub struct Notifier {
    webhook: Option<String>,
    client: reqwest::Client,
    attempts: u32,
    first_backoff: Duration,
}

/// The JSON body POSTed to the webhook.
#[derive(Debug, Serialize)]
pub struct BackupFailedEvent<'a> {
    /// Always `backup.failed`.
    pub event: &'static str,
    /// The instance.
    pub instance_id: &'a str,
    /// `BackId`.
    pub backup_id: i64,
    /// `BackupName`.
    pub backup_name: &'a str,
    /// 0: automatic.
    pub backup_type: i64,
    /// Why it failed.
    pub reason: &'a str,
    /// When it failed, RFC 3339.
    pub time: String,
}

/// The JSON body POSTed to the webhook when a replica set's saved oplog
/// position has left the source's oplog.
#[derive(Debug, Serialize)]
pub struct OplogGapEvent<'a> {
    /// Always `oplog.gap`.
    pub event: &'static str,
    /// The instance.
    pub instance_id: &'a str,
    /// The replica set.
    pub replica_set_id: &'a str,
    /// `BackId` of the base backup queued to start the window again, if
    /// one could be queued.
    pub backup_id: Option<i64>,
    /// What was lost.
    pub reason: &'a str,
    /// When the loss was found, RFC 3339.
    pub time: String,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier::new(None)
    }
}

impl Notifier {
    /// A notifier posting to `webhook` (none: log only).
    pub fn new(webhook: Option<String>) -> Self {
        // TLS through rustls with ring, as the rest of mongobak; the
        // provider is process-wide, and one installed earlier is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Notifier {
            webhook,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            attempts: 5,
            first_backoff: Duration::from_secs(1),
        }
    }

    /// Sets the number of tries and the first wait between them (doubling).
    pub fn with_retries(mut self, attempts: u32, first_backoff: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.first_backoff = first_backoff;
        self
    }

    /// Reports the failure of automatic backup `backup`: logs it, and
    /// posts it to the webhook when `post` (the rule's `Notify`) is set.
    /// Returns whether the webhook accepted it.
    pub async fn automatic_backup_failed(&self, backup: &Backup, reason: &str, post: bool) -> bool {
        tracing::error!(
            backup_id = backup.id,
            instance = %backup.instance_id,
            name = %backup.name,
            reason,
            "automatic backup failed"
        );
        let event = BackupFailedEvent {
            event: "backup.failed",
            instance_id: &backup.instance_id,
            backup_id: backup.id,
            backup_name: &backup.name,
            backup_type: backup.backup_type as i64,
            reason,
            time: Timestamp::now().to_string(),
        };
        self.post(&event, post).await
    }

    /// Reports that the oplog of `replica_set_id` was lost for a while
    /// (`backup`: the base backup queued since): logs it, and posts it to
    /// the webhook when `post` (the rule's `Notify`) is set. Returns
    /// whether the webhook accepted it.
    pub async fn oplog_gap(
        &self,
        replica_set_id: &ReplicaSetId,
        backup: Option<&Backup>,
        reason: &str,
        post: bool,
    ) -> bool {
        tracing::error!(
            replica_set = %replica_set_id,
            backup_id = backup.map(|b| b.id),
            reason,
            "oplog lost: continuous backup has a gap"
        );
        let instance_id = replica_set_id.instance_id();
        let event = OplogGapEvent {
            event: "oplog.gap",
            instance_id: &instance_id,
            replica_set_id,
            backup_id: backup.map(|b| b.id),
            reason,
            time: Timestamp::now().to_string(),
        };
        self.post(&event, post).await
    }

    /// Posts `event` to the webhook, if there is one and `post`, trying
    /// again with backoff until it answers 2xx.
    async fn post<E: Serialize>(&self, event: &E, post: bool) -> bool {
        let Some(url) = self.webhook.as_deref().filter(|_| post) else {
            return false;
        };
        let mut backoff = self.first_backoff;
        for attempt in 1..=self.attempts {
            match self.client.post(url).json(event).send().await {
                Ok(response) if response.status().is_success() => {
                    tracing::info!(attempt, "notification delivered");
                    return true;
                }
                Ok(response) => {
                    tracing::warn!(attempt, status = %response.status(), "notification webhook refused");
                }
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "notification webhook unreachable");
                }
            }
            if attempt < self.attempts {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        tracing::error!("notification not delivered; giving up");
        false
    }
}

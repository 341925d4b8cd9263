//! Continuous oplog backup, the capture half of point-in-time recovery:
//! one tailer per replica set of every registered instance follows the
//! source's oplog and seals what it read into slices in the blob store.
//!
//! * Every node runs [`OplogBackup`]'s discovery, which starts a tailer
//!   worker per replica set it has not started yet; each tailer is a
//!   singleton [`Duty`] (`oplog:<replica set>`), so one node in the whole
//!   cluster tails a replica set, and another takes over within a few
//!   lease periods when that node dies.
//! * A tailer opens the oplog after the replica set's saved position
//!   (`catalog.oplog()`), buffers what it reads, and seals the buffer
//!   every `seal_interval` while entries arrive, at once when the source
//!   goes quiet, and whenever the buffer reaches `max_slice_bytes` (so
//!   memory stays bounded whatever the write rate). The object is stored
//!   first, then the position moves, under the lease and only from where
//!   it stood: a node that lost its lease cannot move it, and an entry is
//!   never saved twice nor skipped.
//! * Entries sharing one timestamp (the writes of one transaction) are
//!   sealed together: the buffer's newest timestamp is held back until a
//!   later entry or a quiet poll shows it is complete.
//! * A stretch of no-op entries only moves the position (no object).
//! * When the saved position has left the source's oplog, the loss is
//!   recorded as a gap, a base backup of the instance is queued at once,
//!   and the loss is notified like a failed automatic backup.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::tz::TimeZone;
use jiff::Timestamp;
use mongobak_blob::BlobStore;
use mongobak_catalog::{
    backup_name, expiry_cutoff, BackupType, Catalog, CatalogError, InstanceId, NewBackup, NewSlice,
    OplogPosition, OplogTs, ReplicaSetId, SliceObject, TailerLease,
};
use mongobak_dump::format::OplogTime;
use mongobak_dump::stored::slice::{slice_path, write_slice};
use mongobak_dump::tail::{OplogEntry, OplogTail, TailStart};
use tokio_util::sync::CancellationToken;

use crate::notify::Notifier;
use crate::runner::{Duty, Runner, Step, WorkError, Worker};

/// How long a stop waits for a gap notification still being delivered.
const NOTIFY_GRACE: Duration = Duration::from_secs(10);

/// Entries asked of the tail at a time.
const BATCH: usize = 1000;

/// Settings of continuous oplog backup (`[pitr]`).
#[derive(Debug, Clone)]
pub struct OplogBackupConfig {
    /// This node's name in the tailers' leases.
    pub node: String,
    /// How long a sealed slice may wait while entries keep arriving.
    pub seal_interval: Duration,
    /// Uncompressed bytes at which the buffer is sealed at once.
    pub max_slice_bytes: usize,
    /// How long one read of the oplog waits for new entries.
    pub await_time: Duration,
    /// How often a tailer renews its lease's term (the lease lasts three);
    /// another node takes over within about four after a holder dies.
    pub lease_interval: Duration,
    /// How often a tailer checks that the source still has the entries
    /// after its position (each check scans the oplog on some servers).
    pub truncation_check: Duration,
    /// How often each node looks for replica sets to tail.
    pub discovery_interval: Duration,
    /// The API's time zone, for the names of the base backups a gap
    /// starts.
    pub timezone: TimeZone,
    /// Reports lost stretches of oplog.
    pub notifier: Notifier,
}

impl Default for OplogBackupConfig {
    fn default() -> Self {
        OplogBackupConfig {
            node: "local".into(),
            seal_interval: Duration::from_secs(2),
            max_slice_bytes: 16 << 20,
            await_time: Duration::from_secs(1),
            lease_interval: Duration::from_secs(5),
            truncation_check: Duration::from_secs(30),
            discovery_interval: Duration::from_secs(2),
            timezone: TimeZone::get("Asia/Shanghai").unwrap_or(TimeZone::UTC),
            notifier: Notifier::default(),
        }
    }
}

/// Continuous oplog backup of every registered instance.
#[derive(Debug, Clone)]
pub struct OplogBackup {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    catalog: Catalog,
    store: BlobStore,
    config: OplogBackupConfig,
    /// Replica sets this node runs a tailer worker for (holding its duty
    /// or waiting for it).
    started: Mutex<HashSet<String>>,
}

impl OplogBackup {
    /// Capture over `catalog`, storing slices in `store`.
    pub fn new(catalog: Catalog, store: BlobStore, config: OplogBackupConfig) -> Self {
        OplogBackup {
            shared: Arc::new(Shared {
                catalog,
                store,
                config,
                started: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// Runs discovery on `runner`; it starts the tailers.
    pub fn start(self, runner: &Runner) {
        runner.spawn(Discovery {
            shared: self.shared,
            runner: runner.clone(),
        });
    }
}

/// Starts a tailer worker for each replica set without one on this node.
struct Discovery {
    shared: Arc<Shared>,
    runner: Runner,
}

impl Worker for Discovery {
    fn name(&self) -> String {
        "oplog-discovery".into()
    }

    async fn work(&mut self, _stop: &CancellationToken) -> Result<Step, WorkError> {
        let instances = self.shared.catalog.instances().all().await?;
        for instance in instances {
            for (replica_set_id, uri) in instance
                .replica_set_ids()
                .into_iter()
                .zip(instance.replica_set_uris.iter())
            {
                let fresh = self
                    .shared
                    .started
                    .lock()
                    .expect("not poisoned")
                    .insert(replica_set_id.to_string());
                if !fresh {
                    continue;
                }
                let config = &self.shared.config;
                let duty = Duty::every(
                    self.shared.catalog.clone(),
                    &format!("oplog:{replica_set_id}"),
                    &config.node,
                    config.lease_interval,
                );
                tracing::debug!(replica_set = %replica_set_id, "oplog tailer started");
                self.runner.spawn_duty(
                    duty,
                    Tailer {
                        target: Target {
                            shared: self.shared.clone(),
                            runner: self.runner.clone(),
                            instance_id: instance.id.clone(),
                            uri: uri.clone(),
                            duty: format!("oplog:{replica_set_id}"),
                            replica_set_id,
                        },
                        following: None,
                        instance_checked: Instant::now(),
                    },
                );
            }
        }
        Ok(Step::Idle(self.shared.config.discovery_interval))
    }
}

/// Tails one replica set while this node holds its duty.
struct Tailer {
    target: Target,
    /// The open tail and what it read; `None` until opened, and again
    /// after anything that makes it doubtful.
    following: Option<Following>,
    instance_checked: Instant,
}

/// What a tailer follows, and where it reports.
struct Target {
    shared: Arc<Shared>,
    /// Where reports of lost oplog run, beside the tailing.
    runner: Runner,
    instance_id: InstanceId,
    replica_set_id: ReplicaSetId,
    /// The connection URI it was started with (may hold credentials).
    uri: String,
    duty: String,
}

/// An open tail and the entries read but not sealed yet.
struct Following {
    tail: OplogTail,
    /// The saved position: the buffer holds the entries after it.
    after: OplogTs,
    buffer: Vec<OplogEntry>,
    buffer_bytes: usize,
    /// When the oldest buffered entry was read.
    oldest_buffered: Option<Instant>,
    truncation_checked: Instant,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Ok(mut started) = self.shared.started.lock() {
            started.remove(self.replica_set_id.as_str());
        }
    }
}

impl Worker for Tailer {
    fn name(&self) -> String {
        self.target.duty.clone()
    }

    async fn work(&mut self, stop: &CancellationToken) -> Result<Step, WorkError> {
        let target = &self.target;
        if self.instance_checked.elapsed() >= target.shared.config.discovery_interval {
            self.instance_checked = Instant::now();
            if !target.still_registered().await? {
                tracing::info!(replica_set = %target.replica_set_id, "the instance or its replica set is gone; oplog tailer stops");
                return Ok(Step::Done);
            }
        }
        if self.following.is_none() {
            // Connecting may wait long for a source that does not answer.
            self.following = tokio::select! {
                opened = target.open() => opened?,
                () = stop.cancelled() => return Ok(Step::Done),
            };
            if self.following.is_none() {
                return Ok(Step::Idle(target.shared.config.lease_interval));
            }
        }
        let result = tokio::select! {
            result = self.step() => result,
            () = stop.cancelled() => return Ok(Step::Done),
        };
        if result.is_err() {
            // Whatever was read and not sealed is read again from the
            // saved position.
            self.following = None;
        }
        result
    }

    fn retry_after(&self, failures: u32) -> Duration {
        Duration::from_secs_f64(1.5f64.powi(failures.saturating_sub(1).min(8) as i32))
    }
}

impl Target {
    fn lease(&self) -> TailerLease<'_> {
        TailerLease {
            duty: &self.duty,
            node: &self.shared.config.node,
        }
    }

    /// Whether the instance still has this replica set, at the same URI.
    async fn still_registered(&self) -> Result<bool, CatalogError> {
        let instance = self
            .shared
            .catalog
            .instances()
            .get(&self.instance_id)
            .await?;
        Ok(instance.is_some_and(|instance| {
            instance
                .replica_set_uris
                .get(self.replica_set_id.index())
                .is_some_and(|uri| *uri == self.uri)
        }))
    }

    /// Opens the tail after the saved position (for a first start, the
    /// end of the latest backup, or the newest entry), recording a gap when
    /// a saved position is lost. `None`
    /// when the catalog refused the move (another node holds the duty).
    async fn open(&self) -> Result<Option<Following>, WorkError> {
        let catalog = &self.shared.catalog;
        let saved = catalog.oplog().position(&self.replica_set_id).await?;
        let after = match &saved {
            Some(position) => to_time(position.sealed),
            // A first start picks up where the latest backup ended, if the
            // source still has the oplog from there: that backup is a base
            // at once. Otherwise it starts at the newest entry.
            None => catalog
                .oplog()
                .bases(&self.replica_set_id)
                .await?
                .last()
                .map_or(OplogTime::ZERO, |base| to_time(base.end)),
        };
        let (tail, start) = OplogTail::open(
            &self.replica_set_id,
            &self.uri,
            after,
            self.shared.config.await_time,
        )
        .await?;
        let now = Timestamp::now();
        let (position, start) = match saved {
            None => {
                let start = to_ts(tail.started_after());
                let position = catalog
                    .oplog()
                    .begin(&self.instance_id, &self.replica_set_id, start, now, now)
                    .await?;
                if position.sealed != start {
                    // Another node began first; start over from its position.
                    return Ok(None);
                }
                tracing::info!(replica_set = %self.replica_set_id, position = %start, "continuous oplog backup begins");
                // Nothing was saved before: nothing can have been lost.
                (position, TailStart::Continues)
            }
            Some(position) => (position, start),
        };
        let after = match start {
            TailStart::Continues => position.sealed,
            TailStart::Lost {
                oldest,
                oldest_wall_millis,
            } => {
                let resume = to_ts(oldest);
                let resume_wall = Timestamp::from_millisecond(oldest_wall_millis).unwrap_or(now);
                let recorded = catalog
                    .oplog()
                    .record_gap(
                        &position,
                        &self.instance_id,
                        resume,
                        resume_wall,
                        self.lease(),
                        now,
                    )
                    .await?;
                if !recorded {
                    return Ok(None);
                }
                self.after_gap(&position, resume).await;
                resume
            }
        };
        Ok(Some(Following {
            tail,
            after,
            buffer: Vec::new(),
            buffer_bytes: 0,
            oldest_buffered: None,
            truncation_checked: Instant::now(),
        }))
    }

    /// After a gap: queues a base backup of the instance, so the window
    /// starts again, and reports the loss.
    async fn after_gap(&self, position: &OplogPosition, resume: OplogTs) {
        let catalog = &self.shared.catalog;
        let config = &self.shared.config;
        let now = Timestamp::now();
        let reason = format!(
            "the oplog of {} was lost from {} to {} (the source's oplog no longer reaches the saved position); \
             times in between cannot be restored, a new base backup starts now",
            self.replica_set_id, position.sealed, resume
        );
        let new = NewBackup {
            instance_id: self.instance_id.to_string(),
            method: 0,
            backup_type: BackupType::Automatic,
            remark: "base for point-in-time recovery after an oplog gap".into(),
            retention_days: 0,
            name: backup_name(&self.instance_id, now, &config.timezone),
            long_term: false,
        };
        let backup = match catalog.backups().create(&new, now).await {
            Ok(backup) => Some(backup),
            Err(CatalogError::BackupInProgress { .. }) => None,
            Err(e) => {
                tracing::error!(instance = %self.instance_id, error = %e, "cannot queue a base backup after an oplog gap");
                None
            }
        };
        let notify = catalog
            .rules()
            .get(&self.instance_id)
            .await
            .ok()
            .flatten()
            .is_none_or(|rule| rule.notify);
        let notifier = config.notifier.clone();
        let replica_set_id = self.replica_set_id.clone();
        self.runner
            .spawn_errand("oplog gap notification", NOTIFY_GRACE, async move {
                notifier
                    .oplog_gap(&replica_set_id, backup.as_ref(), &reason, notify)
                    .await;
            });
    }
}

impl Tailer {
    /// Reads one batch and seals what is due.
    async fn step(&mut self) -> Result<Step, WorkError> {
        let config = &self.target.shared.config;
        let following = self.following.as_mut().expect("opened");
        let batch = following.tail.next_batch(BATCH).await?;
        let quiet = batch.is_empty();
        if !batch.is_empty() {
            following.oldest_buffered.get_or_insert_with(Instant::now);
            metrics::counter!("mongobak_oplog_entries_total").increment(batch.len() as u64);
        }
        for entry in batch {
            following.buffer_bytes += entry.raw.as_bytes().len();
            following.buffer.push(entry);
        }
        if following.truncation_checked.elapsed() >= config.truncation_check {
            following.truncation_checked = Instant::now();
            let newest_read = following
                .buffer
                .last()
                .map_or(following.after, |e| to_ts(e.ts));
            if let Some(oldest) = following.tail.oldest().await? {
                if to_ts(oldest) > newest_read {
                    tracing::warn!(replica_set = %self.target.replica_set_id, oldest = %to_ts(oldest), newest_read = %newest_read, "the source's oplog was truncated past what was read; reopening");
                    self.following = None;
                    return Ok(Step::Busy);
                }
            }
        }
        let full = following.buffer_bytes >= config.max_slice_bytes;
        let due = following
            .oldest_buffered
            .is_some_and(|since| since.elapsed() >= config.seal_interval);
        if !following.buffer.is_empty() && (quiet || full || due) {
            // Entries of the newest timestamp may be the first part of a
            // transaction: they wait, unless a quiet read showed there is
            // nothing more.
            let cut = if quiet {
                following.buffer.len()
            } else {
                let newest = following.buffer.last().expect("not empty").ts;
                following.buffer.partition_point(|e| e.ts < newest)
            };
            if cut > 0 && !self.seal(cut).await? {
                self.following = None;
                return Ok(Step::Busy);
            }
        }
        Ok(Step::Busy)
    }

    /// Stores the first `cut` buffered entries as a slice and moves the
    /// position past them. False when the catalog refused the move.
    async fn seal(&mut self, cut: usize) -> Result<bool, WorkError> {
        let store = &self.target.shared.store;
        let following = self.following.as_mut().expect("opened");
        let sealed = &following.buffer[..cut];
        let last = sealed.last().expect("cut > 0");
        let last_ts = to_ts(last.ts);
        let last_wall =
            Timestamp::from_millisecond(last.wall_millis).unwrap_or_else(|_| Timestamp::now());
        let object = if sealed.iter().all(|e| e.is_noop) {
            None
        } else {
            let path = slice_path(
                &self.target.instance_id,
                &self.target.replica_set_id,
                to_time(following.after),
                last.ts,
            );
            let written = write_slice(store, &path, sealed.iter().filter(|e| !e.is_noop)).await?;
            Some(SliceObject {
                path,
                entries: written.entries,
                raw_bytes: written.raw_bytes,
                stored_bytes: written.stored_bytes,
                sha256: written.sha256,
            })
        };
        let slice = NewSlice {
            instance_id: self.target.instance_id.to_string(),
            replica_set_id: self.target.replica_set_id.clone(),
            after: following.after,
            last: last_ts,
            last_wall,
            object,
        };
        let lease = TailerLease {
            duty: &self.target.duty,
            node: &self.target.shared.config.node,
        };
        let moved = self
            .target
            .shared
            .catalog
            .oplog()
            .seal(&slice, lease, Timestamp::now())
            .await?;
        if !moved {
            tracing::warn!(replica_set = %self.target.replica_set_id, "the saved position moved elsewhere (the duty changed hands); reopening");
            if let Some(object) = &slice.object {
                if let Err(e) = store.delete(&object.path).await {
                    tracing::warn!(path = %object.path, error = %e, "cannot delete an unsealed slice");
                }
            }
            return Ok(false);
        }
        let bytes: usize = sealed.iter().map(|e| e.raw.as_bytes().len()).sum();
        following.buffer.drain(..cut);
        following.buffer_bytes -= bytes;
        following.after = last_ts;
        following.oldest_buffered = (!following.buffer.is_empty()).then(Instant::now);
        tracing::debug!(replica_set = %self.target.replica_set_id, position = %last_ts, entries = cut, "oplog slice sealed");
        Ok(true)
    }
}

/// Deletes the slices no restore inside any replica set's kept window
/// needs (see `mongobak_catalog::expiry_cutoff`), by each instance's
/// `OplogExpiredDays` (7 without a rule): first the window's start moves
/// past them, then their objects go, then their rows. A crash in between
/// leaves rows the next round deletes. Returns how many were deleted.
pub(crate) async fn expire_slices(
    catalog: &Catalog,
    store: &BlobStore,
    now: Timestamp,
) -> Result<usize, WorkError> {
    let oplog = catalog.oplog();
    let mut deleted = 0;
    for position in oplog.positions().await? {
        let replica_set_id = &position.replica_set_id;
        let days = catalog
            .rules()
            .get(&replica_set_id.instance_id())
            .await?
            .map_or(7, |rule| rule.oplog_expired_days);
        let horizon = now - jiff::SignedDuration::from_hours(24 * days.max(1));
        let cutoff = expiry_cutoff(&oplog.bases(replica_set_id).await?, horizon);
        let expired = oplog.slices_ending_by(replica_set_id, cutoff).await?;
        if expired.is_empty() {
            continue;
        }
        oplog.keep_from(replica_set_id, cutoff).await?;
        for slice in expired {
            store.delete(&slice.object.path).await?;
            oplog.forget_slice(slice.id).await?;
            deleted += 1;
        }
        tracing::info!(replica_set = %replica_set_id, kept_from = %cutoff, deleted, "expired oplog slices deleted");
    }
    Ok(deleted)
}

fn to_ts(time: OplogTime) -> OplogTs {
    OplogTs {
        seconds: time.t,
        increment: time.i,
    }
}

fn to_time(ts: OplogTs) -> OplogTime {
    OplogTime {
        t: ts.seconds,
        i: ts.increment,
    }
}

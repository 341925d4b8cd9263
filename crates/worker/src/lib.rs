//! Background work of a mongobak node.
//!
//! * [`BackupRunner`] (`backups`): takes queued backups from the catalog,
//!   runs the dump engine for each, records progress, success or failure,
//!   and cleans up after backups that a stopped process left running.
//! * [`DownloadRunner`] (`downloads`): a pool of workers that claim
//!   download tasks with a lease, package the stored backup of one replica
//!   set into a gzipped mongodump archive, publish it atomically with its
//!   SHA-256, and retry transient failures with backoff.
//! * [`Janitor`] (`janitor`): deletes expired download files, forgets
//!   old tasks and collects garbage.
//! * [`Scheduler`] (`scheduler`): starts automatic backups by each
//!   instance's rule and deletes expired backups.
//! * [`OplogBackup`] (`pitr`): continuous oplog backup, one leased tailer
//!   per replica set sealing the source's oplog into slices.
//! * [`RestoreRunner`] (`restores`): point-in-time restores, leased
//!   tasks that rebuild collections as of a time from a base backup and
//!   the saved oplog, renamed into place only when complete.
//! * [`gc`]: finds and deletes stored data no catalog entry accounts for.
//! * [`Notifier`] (`notify`): reports failed automatic backups to a
//!   webhook.
//! * [`runner`]: how all of them run: [`Worker`]s stepped on the node's
//!   task tracker until the shutdown, singleton [`Duty`] leases, errands
//!   such as notifications that a stop waits for.
//!
//! Workers know no HTTP; they meet the API only through the catalog.

mod backups;
mod downloads;
pub mod gc;
mod janitor;
mod notify;
mod pitr;
mod restores;
pub mod runner;
mod scheduler;

pub use backups::{BackupRunner, BackupRunnerConfig};
pub use downloads::{DownloadRunner, DownloadRunnerConfig};
pub use janitor::{Janitor, JanitorConfig, JanitorReport};
pub use notify::{BackupFailedEvent, Notifier, OplogGapEvent};
pub use pitr::{OplogBackup, OplogBackupConfig};
pub use restores::{RestoreRunner, RestoreRunnerConfig};
pub use runner::{Duty, Runner, Step, WorkError, Worker};
pub use scheduler::{Scheduler, SchedulerConfig, TickReport};

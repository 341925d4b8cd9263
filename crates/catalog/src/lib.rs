//! The domain model of mongobak and the metadata store that keeps it.
//!
//! Layout:
//! * [`instance`]: registered MongoDB deployments (replica sets and sharded
//!   clusters) and their `<id>_<n>` replica set IDs.
//! * [`backup`]: backups, their life cycle and queue.
//! * [`ratelimit`]: cluster-wide rate limits on PostgreSQL.
//! * [`signatures`]: the cluster-wide memory of used request signatures
//!   on PostgreSQL.
//! * [`rule`]: automatic backup rules and the schedule they define.
//! * [`duty`]: singleton duties, held by one node of a cluster at a time.
//! * [`download`]: backup download tasks and their leased, retrying queue.
//! * [`oplog`]: continuous oplog backup: how far each replica set's oplog
//!   is saved, its slices and its gaps.
//! * [`restore`]: point-in-time restores and flashbacks, durable leased
//!   tasks answered by their FlowId.
//! * [`window`]: what point-in-time recovery can restore: bases, stretches
//!   of saved oplog between gaps, restorable seconds per replica set and
//!   per instance.
//! * [`store`]: [`Catalog`], the metadata store on SQLite or PostgreSQL
//!   through sqlx, with embedded migrations, and the helpers every query
//!   shares (fetch and decode).
//!
//! Each module above owns its part of the domain and a store for it: a
//! borrowed view over the catalog's one connection pool, handed out by the
//! catalog (`catalog.backups().claim_queued(now)`,
//! `catalog.downloads().heartbeat(..)`), so that no type holds every
//! query of the service.
//! * [`wake`]: the in-process wake-ups of background workers.
//!
//! This crate knows nothing of HTTP or of the Tencent Cloud protocol: the
//! `api` crate maps its errors onto wire codes.

pub mod backup;
pub mod download;
pub mod duty;
pub mod instance;
pub mod oplog;
pub mod ratelimit;
pub mod restore;
pub mod rule;
pub mod signatures;
pub mod store;
#[cfg(test)]
mod testing;
pub mod wake;
pub mod window;

pub use backup::{backup_name, Backup, BackupSizes, BackupStatus, BackupType, NewBackup};
pub use download::{
    DownloadFolder, DownloadTask, PublishedFile, RetiredFile, RetiredFileError, RetryPolicy,
    TaskFilter, TaskOrder, TaskStatus,
};
pub use instance::{ClusterType, Instance, InstanceId, InstanceSource, ReplicaSetId};
pub use oplog::{NewSlice, OplogGap, OplogPosition, OplogSlice, OplogTs, SliceObject, TailerLease};
pub use restore::{
    KeyFilter, NewRestore, RestoreKind, RestorePlan, RestoreStatus, RestoreTarget, RestoreTask,
    RESTORE_LEASE,
};
pub use rule::{days_csv, BackupRule, LongTermInterval};
pub use signatures::SignatureUse;
pub use store::{
    BackupStore, Catalog, CatalogError, DownloadStore, DutyStore, Engine, InstanceStore,
    OplogStore, RateLimitStore, RestoreStore, RuleStore, SignatureStore,
};
pub use wake::Wakeups;
pub use window::{common_spans, expiry_cutoff, Base, ReplicaSetWindow, RestorableSpan};

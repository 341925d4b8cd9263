//! Restores a mongodump archive (`mongodump --archive [--gzip]`, the file a
//! mongobak download hands out) into a MongoDB deployment through the
//! official driver: what `mongorestore --archive [--gzip] [--drop]
//! [--oplogReplay] [--nsInclude/--nsExclude]` does, with the same rules
//! (`docs/archive-format.md` §1.5 and §3).
//!
//! # What it does
//! [`restore_archive`] reads the archive once, verifying it as it goes
//! (framing and CRCs by `mongobak_archive::ArchiveReader`; gzip is detected
//! by its magic bytes), and for each namespace:
//! - creates the collection with its options from the metadata (capped,
//!   validator, collation, clustered, time series, `idIndex`), or the view
//!   when its namespace comes; with [`RestoreOptions::drop`] an existing
//!   collection is dropped first, without it kept and added to: duplicate
//!   keys and validation failures are counted, not fatal (mongorestore's
//!   rule, unless [`RestoreOptions::stop_on_error`]);
//! - inserts the documents, raw, in unordered batches (by count and bytes)
//!   with several batches in flight ([`RestoreOptions::parallelism`]);
//!   capped collections in order, one batch at a time;
//! - builds the indexes after all the data (`_id` comes with the
//!   collection), then restores users and roles (see below),
//!   then replays the oplog if asked ([`RestoreOptions::oplog_replay`]).
//!
//! Memory stays bounded: the archive is read on a blocking thread that
//! hands batches to the async side through a small channel.
//!
//! # Time series
//! A time series `X` from a source before 8.3 arrives as `system.buckets.X`.
//! `X` is created with its `timeseries` options; if the target then has a
//! `system.buckets.X` (MongoDB), buckets go there as they are. Otherwise
//! (SecantusDB keeps time series as plain documents in `X`), uncompressed
//! buckets are unpacked into measurements, compressed ones (BinData
//! subtype 7) stop the restore with [`RestoreError::CompressedBuckets`],
//! and documents that are not buckets (mongobak's archives of a SecantusDB
//! source) go into `X` as they are.
//!
//! # Users and roles
//! Through `_mergeAuthzCollections` where the server has it, as
//! mongorestore. Without it (SecantusDB), roles are recreated with
//! `createRole`; users cannot be (their passwords are not in the archive,
//! only SCRAM keys) and are reported as skipped with a warning.
//! `admin.system.version` is never written: the target keeps its own.
//!
//! # Oplog
//! See [`replay_oplog`]: `applyOps` where the server has it, translated
//! writes otherwise (SecantusDB), understanding the three update shapes.
//!
//! # Layout
//! - `input`: the reading thread; `restore`: the orchestration;
//! - `metadata`: options and indexes; `timeseries`: buckets;
//! - `auth`: users and roles; `oplog`: replay; `filter`: namespaces;
//! - [`point_in_time`]: one collection as it was at a time, from a base
//!   backup's documents and the oplog after them (point-in-time restore);
//! - [`keys`]: which documents and writes a flashback by key concerns;
//! - `error`: [`RestoreError`].

mod auth;
mod error;
mod filter;
mod input;
pub mod keys;
mod metadata;
mod oplog;
pub mod point_in_time;
mod restore;
mod timeseries;

use std::sync::atomic::{AtomicU64, Ordering};

pub use error::RestoreError;
pub use oplog::{OplogMethod, OplogReport};
pub use restore::{replay_oplog, restore_archive};

/// How to restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Drop each collection (and view) before restoring it, as
    /// `mongorestore --drop`. System collections are never dropped.
    pub drop: bool,
    /// Replay the archive's oplog after the data (`--oplogReplay`). An
    /// archive without an oplog is then an error.
    pub oplog_replay: bool,
    /// Restore only namespaces matching one of these `db.collection`
    /// patterns (`*` wildcards); empty means all (`--nsInclude`).
    pub ns_include: Vec<String>,
    /// Leave out namespaces matching one of these patterns (`--nsExclude`).
    pub ns_exclude: Vec<String>,
    /// Insert batches in flight at once (at least 1).
    pub parallelism: usize,
    /// Documents per insert batch (at least 1).
    pub batch_documents: usize,
    /// Bytes of documents per insert batch; a larger single document is
    /// sent alone.
    pub batch_bytes: usize,
    /// Stop at the first insert error, duplicate keys and validation
    /// failures included (`--stopOnError`).
    pub stop_on_error: bool,
    /// Insert without document validation (`--bypassDocumentValidation`).
    pub bypass_document_validation: bool,
    /// Build the indexes (`false`: `--noIndexRestore`).
    pub restore_indexes: bool,
    /// Restore `admin.system.users` and `admin.system.roles`.
    pub restore_users_and_roles: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            drop: false,
            oplog_replay: false,
            ns_include: Vec::new(),
            ns_exclude: Vec::new(),
            parallelism: 4,
            batch_documents: 1000,
            batch_bytes: 16 * 1024 * 1024,
            stop_on_error: false,
            bypass_document_validation: false,
            restore_indexes: true,
            restore_users_and_roles: true,
        }
    }
}

/// Progress of a running restore, readable from other tasks (for a
/// progress bar: [`input_bytes`](Self::input_bytes) against the file size
/// is known from the start; documents against
/// [`expected_documents`](Self::expected_documents) when the caller knows
/// the total, as archives do not record it).
#[derive(Debug, Default)]
pub struct Progress {
    input_bytes: AtomicU64,
    documents: AtomicU64,
    expected_documents: AtomicU64,
    oplog_entries: AtomicU64,
}

impl Progress {
    /// Bytes of the input read so far (compressed bytes for a gzipped
    /// archive).
    pub fn input_bytes(&self) -> u64 {
        self.input_bytes.load(Ordering::Relaxed)
    }

    /// Documents handled so far: inserted, found already there, refused
    /// by a validator, or passed over by the filters.
    pub fn documents(&self) -> u64 {
        self.documents.load(Ordering::Relaxed)
    }

    /// Oplog entries handled so far.
    pub fn oplog_entries(&self) -> u64 {
        self.oplog_entries.load(Ordering::Relaxed)
    }

    /// The expected number of documents, when set.
    pub fn expected_documents(&self) -> Option<u64> {
        match self.expected_documents.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }

    /// Sets the expected number of documents (from a backup's manifest).
    pub fn set_expected_documents(&self, documents: u64) {
        self.expected_documents.store(documents, Ordering::Relaxed);
    }

    pub(crate) fn set_input_bytes(&self, bytes: u64) {
        self.input_bytes.store(bytes, Ordering::Relaxed);
    }

    pub(crate) fn add_documents(&self, documents: u64) {
        self.documents.fetch_add(documents, Ordering::Relaxed);
    }

    pub(crate) fn add_oplog_entries(&self, entries: u64) {
        self.oplog_entries.fetch_add(entries, Ordering::Relaxed);
    }
}

/// What a namespace of the archive became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceKind {
    /// A collection.
    Collection,
    /// A view (no documents).
    View,
    /// A time series collection.
    Timeseries,
    /// `admin.system.users` or `admin.system.roles` (see
    /// [`RestoreReport::users`] and [`RestoreReport::roles`]).
    Auth,
    /// Not restored; see [`NamespaceReport::skipped`].
    Skipped,
}

/// What happened to one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceReport {
    /// `db.collection` as the prelude names it.
    pub namespace: String,
    /// What it is.
    pub kind: NamespaceKind,
    /// Why it was not restored, for [`NamespaceKind::Skipped`].
    pub skipped: Option<String>,
    /// Whether the collection was there already (and kept, without drop).
    pub existed: bool,
    /// Documents read from the archive.
    pub documents: u64,
    /// Documents inserted (time series: measurements).
    pub inserted: u64,
    /// Documents refused as duplicate keys.
    pub duplicates: u64,
    /// Documents refused by the collection's validator.
    pub validation_failures: u64,
    /// Indexes built (besides `_id`).
    pub indexes: u64,
}

/// Users or roles restored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthReport {
    /// Restored.
    pub restored: u64,
    /// Already there (kept, without drop).
    pub duplicates: u64,
    /// Not restored (`name@db`), each with a warning saying why.
    pub skipped: Vec<String>,
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// The archive header's source server version.
    pub source_server_version: String,
    /// Every namespace of the archive's prelude (the oplog aside), in
    /// prelude order.
    pub namespaces: Vec<NamespaceReport>,
    /// Users.
    pub users: AuthReport,
    /// Roles.
    pub roles: AuthReport,
    /// The oplog.
    pub oplog: OplogReport,
    /// Things not restored, and why.
    pub warnings: Vec<String>,
}

impl RestoreReport {
    /// The report of `db.collection`.
    pub fn namespace(&self, namespace: &str) -> Option<&NamespaceReport> {
        self.namespaces.iter().find(|n| n.namespace == namespace)
    }

    /// Documents inserted in all namespaces.
    pub fn inserted(&self) -> u64 {
        self.namespaces.iter().map(|n| n.inserted).sum()
    }

    /// Duplicate keys in all namespaces.
    pub fn duplicates(&self) -> u64 {
        self.namespaces.iter().map(|n| n.duplicates).sum()
    }
}

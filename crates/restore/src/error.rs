//! [`RestoreError`]: why a restore stopped. Every variant names the
//! namespace (or oplog entry) involved and says what to do about it.
//! Driver errors are kept as sources; they carry server messages, never the
//! connection string, so no credentials end up in a message.

use mongobak_archive::ReadError;

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The archive is damaged, truncated, or not a mongodump archive.
    #[error("the archive cannot be read: {0}; check that the file is complete (compare its SHA-256) and is a mongodump archive")]
    Read(#[source] Box<ReadError>),
    /// A namespace's metadata cannot be turned into collection options.
    #[error("{namespace}: its metadata cannot be used: {reason}")]
    Metadata {
        /// `db.collection`.
        namespace: String,
        /// What is wrong.
        reason: String,
    },
    /// `oplog_replay` was asked for, but the archive holds no oplog.
    #[error("no oplog to replay: the archive has no oplog namespace; take the backup with an oplog slice or restore without oplog replay")]
    NoOplog,
    /// Dropping an existing collection failed.
    #[error("{namespace}: dropping the existing collection failed: {source}")]
    Drop {
        /// `db.collection`.
        namespace: String,
        /// The driver's error.
        #[source]
        source: Box<mongodb::error::Error>,
    },
    /// Creating a collection or view failed.
    #[error("{namespace}: creating the collection failed: {source}; if it exists with other options, restore with drop to replace it")]
    Create {
        /// `db.collection`.
        namespace: String,
        /// The driver's error.
        #[source]
        source: Box<mongodb::error::Error>,
    },
    /// Inserting documents failed with an error that cannot be continued
    /// through (anything but duplicate keys and validation failures, or
    /// any error with `stop_on_error`).
    #[error("{namespace}: inserting documents failed: {source}")]
    Insert {
        /// `db.collection`.
        namespace: String,
        /// The driver's error.
        #[source]
        source: Box<mongodb::error::Error>,
    },
    /// Building the indexes failed.
    #[error("{namespace}: building indexes {indexes} failed: {source}; restore with indexes disabled and build them by hand if the target cannot build this kind")]
    Index {
        /// `db.collection`.
        namespace: String,
        /// Names of the indexes, comma separated.
        indexes: String,
        /// The driver's error.
        #[source]
        source: Box<mongodb::error::Error>,
    },
    /// Time series buckets in a form this restore cannot turn into
    /// measurements for a target without a buckets collection.
    #[error("{namespace}: the archive holds compressed time series buckets (BinData subtype 7, MongoDB 5.2 and later), which cannot be decompressed here and the target has no buckets collection to take them as they are; restore into MongoDB, or leave the namespace out with ns_exclude")]
    CompressedBuckets {
        /// `db.collection` of the time series collection.
        namespace: String,
    },
    /// Restoring users or roles failed.
    #[error("restoring {what} failed: {source}; restore without users and roles and recreate them by hand")]
    Auth {
        /// `users` or `roles`.
        what: &'static str,
        /// The driver's error.
        #[source]
        source: Box<mongodb::error::Error>,
    },
    /// An oplog entry could not be applied.
    #[error("oplog entry {position} ({op} on {namespace}) could not be applied: {reason}")]
    Oplog {
        /// The entry's `ts` as `(seconds, increment)`, or its position.
        position: String,
        /// Its `op`.
        op: String,
        /// Its `ns`.
        namespace: String,
        /// What went wrong.
        reason: String,
    },
    /// A command on the target failed (listing collections, ...).
    #[error("{action} failed: {source}")]
    Server {
        /// What was being done.
        action: String,
        /// The driver's error.
        #[source]
        source: Box<mongodb::error::Error>,
    },
    /// The archive reading thread stopped unexpectedly.
    #[error("the archive reading thread failed: {0}")]
    Reader(String),
}

impl From<ReadError> for RestoreError {
    fn from(e: ReadError) -> Self {
        RestoreError::Read(Box::new(e))
    }
}

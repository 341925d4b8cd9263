//! [`BlobError`]: what went wrong, and whether trying again may help.
//!
//! Messages never carry credentials: a storage URL is shown without its
//! query and user part, and keys are never part of a URL in the first place.

use opendal::ErrorKind;

/// Failures of the blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The storage URL cannot be opened: wrong scheme, missing bucket,
    /// unknown query key, and so on. `reason` says what to change.
    #[error("storage URL `{url}` cannot be used: {reason}")]
    UnsupportedUrl {
        /// The URL as given, without its query and user part.
        url: String,
        /// What is wrong, and the form expected.
        reason: String,
    },
    /// The object does not exist.
    #[error("no object at {path}")]
    NotFound {
        /// Its path.
        path: String,
    },
    /// The bucket the storage URL names does not exist at its endpoint.
    #[error("the bucket `{bucket}` does not exist (create it, or fix [storage] url)")]
    NoBucket {
        /// The bucket's name.
        bucket: String,
    },
    /// The storage failed.
    #[error("storage error at {path}: {source}")]
    Storage {
        /// The path operated on.
        path: String,
        /// The cause.
        source: opendal::Error,
    },
}

impl BlobError {
    pub(crate) fn at(path: &str, source: opendal::Error) -> Self {
        if source.kind() == ErrorKind::NotFound {
            BlobError::NotFound {
                path: path.to_string(),
            }
        } else {
            BlobError::Storage {
                path: path.to_string(),
                source,
            }
        }
    }

    pub(crate) fn url(url: &str, reason: impl Into<String>) -> Self {
        BlobError::UnsupportedUrl {
            url: crate::location::redact(url),
            reason: reason.into(),
        }
    }

    /// Whether retrying the operation may succeed (storage down, timeouts,
    /// throttling), as opposed to a permanent failure (no such object or
    /// bucket, access denied, a bad configuration).
    ///
    /// The store already retried a temporary failure a few times with
    /// backoff before reporting it; for the caller, who retries on a longer
    /// schedule, it is still transient. OpenDAL's retry layer marks every
    /// error it lets through *persistent*, whatever its cause, so the kind
    /// decides: a failure OpenDAL cannot classify (connection refused or
    /// reset, timeouts, HTTP 5xx) or throttling is transient. A permanent
    /// failure misjudged so costs the caller a few retries, while the other
    /// way round would fail a task for a brief outage.
    pub fn is_transient(&self) -> bool {
        match self {
            BlobError::Storage { source, .. } => {
                source.is_temporary()
                    || matches!(
                        source.kind(),
                        ErrorKind::Unexpected | ErrorKind::RateLimited
                    )
            }
            BlobError::UnsupportedUrl { .. }
            | BlobError::NotFound { .. }
            | BlobError::NoBucket { .. } => false,
        }
    }
}

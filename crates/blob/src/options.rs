//! [`StorageOptions`]: what the caller decides beside the URL: keys,
//! retries, timeouts and the multipart upload shape.
//!
//! Keys never travel in the URL: they come from here or, when absent, from
//! the environment and files the official SDKs read (see the crate docs).
//! Their `Debug` output shows the key ID only.

use std::fmt;
use std::time::Duration;

/// Keys for an object store: an S3 access key, or a Tencent Cloud
/// SecretId/SecretKey for COS.
#[derive(Clone, PartialEq, Eq)]
pub struct StorageCredentials {
    /// The access key ID (S3) or SecretId (COS).
    pub access_key_id: String,
    /// The secret access key (S3) or SecretKey (COS).
    pub secret_access_key: String,
    /// A temporary session token (S3) or security token (COS), if any.
    pub session_token: Option<String>,
}

impl fmt::Debug for StorageCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// How a store is opened beyond its URL.
///
/// Retries cover a brief outage: a failure OpenDAL marks temporary
/// (connection refused or reset, timeouts, HTTP 429/5xx) is retried
/// `max_retries` times with exponential backoff and jitter; a longer outage
/// then surfaces as an error whose [`is_transient`](crate::BlobError::is_transient)
/// is true, for the caller's own, slower retries. Timeouts make sure no
/// call waits forever on a storage server that stopped answering.
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// Keys for S3 or COS; `None` takes them from the environment.
    pub credentials: Option<StorageCredentials>,
    /// Retries of a temporary failure before it is reported.
    pub max_retries: usize,
    /// The first retry's delay; each next one doubles, up to `retry_max_delay`.
    pub retry_min_delay: Duration,
    /// The longest delay between two retries.
    pub retry_max_delay: Duration,
    /// The longest one attempt of an operation (stat, delete, the start of
    /// a list or a write) may take.
    pub operation_timeout: Duration,
    /// The longest one read or write call may take: a multipart upload's
    /// part, a page of a listing, a chunk of a download.
    pub io_timeout: Duration,
    /// The longest a TCP (and TLS) connection to the storage may take.
    pub connect_timeout: Duration,
    /// Object stores: writers upload in parts of this many bytes
    /// (multipart upload; S3 needs at least 5 MiB). Smaller objects go up in
    /// one request when closed.
    pub upload_chunk: usize,
    /// Object stores: parts of one writer uploaded at once.
    pub upload_concurrency: usize,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            credentials: None,
            max_retries: 4,
            retry_min_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(8),
            operation_timeout: Duration::from_secs(60),
            io_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            upload_chunk: 8 << 20,
            upload_concurrency: 2,
        }
    }
}

impl StorageOptions {
    /// The defaults, with these keys.
    pub fn with_credentials(credentials: StorageCredentials) -> Self {
        StorageOptions {
            credentials: Some(credentials),
            ..StorageOptions::default()
        }
    }
}

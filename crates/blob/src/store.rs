//! [`BlobStore`]: one OpenDAL operator per storage URL, with the layers
//! every store gets (timeouts inside retries) and the calls mongobak makes.
//!
//! The file system store writes into a sibling temporary folder and renames
//! on close; the object stores (S3, COS) upload in parts (multipart upload)
//! and complete the upload on close. Either way an object is visible only
//! whole.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use opendal::layers::{RetryEvent, RetryLayer, TimeoutLayer};
use opendal::{ErrorKind, HttpTransporter, OperationContext, Operator};

use crate::local::LocalFile;
use crate::location::{self, CosLocation, Location, S3Location};
use crate::{BlobError, BlobWriter, StorageCredentials, StorageOptions};

/// An object listed under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedBlob {
    /// Path relative to the store's root.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, as Unix seconds, when the store knows it.
    pub modified_unix: Option<i64>,
}

/// What kind of store is behind the operator.
#[derive(Debug, Clone)]
enum Backend {
    /// A folder; objects being written wait in `temporary` for their close.
    Fs { root: PathBuf, temporary: PathBuf },
    /// An S3-compatible or COS bucket.
    Object { bucket: String },
}

/// A blob store.
#[derive(Clone)]
pub struct BlobStore {
    op: Operator,
    backend: Backend,
    /// The URL without query or user part, for `Debug`.
    shown: String,
    upload_chunk: usize,
    upload_concurrency: usize,
}

impl fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobStore")
            .field("url", &self.shown)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl BlobStore {
    /// Opens the store at `url` with the default [`StorageOptions`]: keys of
    /// an object store come from the environment. See the crate docs for
    /// the URL forms.
    ///
    /// On a file system the folder is created, and objects are written into
    /// a sibling folder `PATH.tmp` and renamed into place on close, so a
    /// reader never sees a half-written object, even after a crash.
    ///
    /// Nothing is contacted yet: [`check`](Self::check) does that.
    pub fn open(url: &str) -> Result<Self, BlobError> {
        Self::open_with(url, &StorageOptions::default())
    }

    /// Opens the store at `url` with `options` (keys, retries, timeouts,
    /// upload part size).
    pub fn open_with(url: &str, options: &StorageOptions) -> Result<Self, BlobError> {
        let shown = location::redact(url);
        let (op, backend) = match location::parse(url)? {
            Location::Fs { root } => {
                let tmp = format!("{root}.tmp");
                let builder = opendal::services::Fs::default()
                    .root(&root)
                    .atomic_write_dir(&tmp);
                let op = Operator::new(builder).map_err(|e| BlobError::at(&root, e))?;
                let backend = Backend::Fs {
                    root: PathBuf::from(&root),
                    temporary: PathBuf::from(tmp),
                };
                (op, backend)
            }
            Location::S3(s3) => {
                let bucket = s3.bucket.clone();
                let op = s3_operator(url, s3, options.credentials.as_ref())?;
                (with_http(op, options)?, Backend::Object { bucket })
            }
            Location::Cos(cos) => {
                let bucket = cos.bucket.clone();
                let op = cos_operator(url, cos, options.credentials.as_ref())?;
                (with_http(op, options)?, Backend::Object { bucket })
            }
        };
        // Timeouts inside retries: each attempt has its own deadline, and
        // one that runs out is retried like any other temporary failure.
        let op = op
            .layer(
                TimeoutLayer::new()
                    .with_timeout(options.operation_timeout)
                    .with_io_timeout(options.io_timeout),
            )
            .layer(
                RetryLayer::new()
                    .with_max_times(options.max_retries)
                    .with_min_delay(options.retry_min_delay)
                    .with_max_delay(options.retry_max_delay)
                    .with_factor(2.0)
                    .with_jitter()
                    .with_notify(log_retry),
            );
        Ok(BlobStore {
            op,
            backend,
            shown,
            upload_chunk: options.upload_chunk.max(1),
            upload_concurrency: options.upload_concurrency.max(1),
        })
    }

    /// Removes objects whose writing began and never ended (a process killed
    /// mid-write leaves them in the temporary folder) when they were last
    /// written more than `older_than` ago. Returns how many went.
    ///
    /// File systems only: on an object store an unfinished object is a
    /// multipart upload, aborted when its writer is dropped; one left by a
    /// killed process goes with the bucket's lifecycle rule
    /// (`AbortIncompleteMultipartUpload`).
    pub fn remove_stale_temporary(&self, older_than: Duration) -> std::io::Result<usize> {
        let Backend::Fs { temporary: dir, .. } = &self.backend else {
            return Ok(0);
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            let meta = entry.metadata()?;
            let stale = meta.modified()?.elapsed().is_ok_and(|age| age > older_than);
            if meta.is_file() && stale {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Checks that the store answers (for readiness): the folder is there,
    /// or the bucket exists and can be listed with the keys given.
    pub async fn check(&self) -> Result<(), BlobError> {
        let Backend::Object { bucket } = &self.backend else {
            return self.op.check().await.map_err(|e| BlobError::at("/", e));
        };
        let listed = async {
            let mut lister = self.op.lister_with("/").limit(1).await?;
            lister.try_next().await
        };
        match listed.await {
            Ok(_) => Ok(()),
            // Listing a prefix that holds nothing is no error, so a 404
            // here is the bucket missing: COS says NotFound, S3 says
            // NoSuchBucket, which OpenDAL reports as ConfigInvalid (signing
            // failures are Unexpected).
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConfigInvalid) => {
                Err(BlobError::NoBucket {
                    bucket: bucket.clone(),
                })
            }
            Err(e) => Err(BlobError::at("/", e)),
        }
    }

    /// A streaming writer for `path`; the object appears only when
    /// [`BlobWriter::close`] succeeds.
    pub async fn writer(&self, path: &str) -> Result<BlobWriter, BlobError> {
        match &self.backend {
            Backend::Fs { root, temporary } => {
                let target = root.join(path.trim_start_matches('/'));
                let file = LocalFile::create(temporary, target)
                    .await
                    .map_err(|e| BlobError::at(path, opendal::raw::new_std_io_error(e)))?;
                Ok(BlobWriter::to_file(file, path))
            }
            Backend::Object { .. } => {
                let inner = self
                    .op
                    .writer_with(path)
                    .chunk(self.upload_chunk)
                    .concurrent(self.upload_concurrency)
                    .await
                    .map_err(|e| BlobError::at(path, e))?;
                Ok(BlobWriter::to_store(inner, path))
            }
        }
    }

    /// Writes a whole object at once.
    pub async fn put(&self, path: &str, bytes: impl Into<Bytes>) -> Result<(), BlobError> {
        self.op
            .write(path, bytes.into())
            .await
            .map(drop)
            .map_err(|e| BlobError::at(path, e))
    }

    /// Reads a whole object.
    pub async fn get(&self, path: &str) -> Result<Bytes, BlobError> {
        self.op
            .read(path)
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| BlobError::at(path, e))
    }

    /// Reads `len` bytes of an object from `offset`; the range must lie
    /// within the object.
    pub async fn get_range(&self, path: &str, offset: u64, len: u64) -> Result<Bytes, BlobError> {
        self.op
            .read_with(path)
            .range(offset..offset + len)
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| BlobError::at(path, e))
    }

    /// The size of an object, or `None` when it does not exist.
    pub async fn size(&self, path: &str) -> Result<Option<u64>, BlobError> {
        match self.op.stat(path).await {
            Ok(meta) => Ok(Some(meta.content_length())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BlobError::at(path, e)),
        }
    }

    /// Every object under `prefix` (a folder path ending in `/`), sorted by
    /// path.
    ///
    /// Sizes and times come with the listing itself (S3 `ListObjectsV2`, a
    /// folder's entries); an object is looked up on its own only when the
    /// listing lacks its time.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ListedBlob>, BlobError> {
        let mut lister = self
            .op
            .lister_with(prefix)
            .recursive(true)
            .await
            .map_err(|e| BlobError::at(prefix, e))?;
        let mut out = Vec::new();
        while let Some(entry) = lister
            .try_next()
            .await
            .map_err(|e| BlobError::at(prefix, e))?
        {
            let (path, listed) = entry.into_parts();
            if !listed.is_file() {
                continue;
            }
            let meta = if listed.last_modified().is_some() {
                listed
            } else {
                match self.op.stat(&path).await {
                    Ok(meta) => meta,
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(BlobError::at(&path, e)),
                }
            };
            out.push(ListedBlob {
                size: meta.content_length(),
                modified_unix: meta.last_modified().map(|t| t.into_inner().as_second()),
                path,
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Deletes one object; deleting a missing object succeeds.
    pub async fn delete(&self, path: &str) -> Result<(), BlobError> {
        self.op
            .delete(path)
            .await
            .map_err(|e| BlobError::at(path, e))
    }

    /// Deletes everything under `prefix` (a folder path ending in `/`).
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), BlobError> {
        self.op
            .delete_with(prefix)
            .recursive(true)
            .await
            .map_err(|e| BlobError::at(prefix, e))
    }

    /// A URL that lets anyone holding it `GET` the object at `path` (with
    /// `Range`) for `ttl`, signed by the object store without contacting
    /// it; `None` on a file system, which has no such URL.
    ///
    /// The URL carries a signature: hand it to the one who asked, and do
    /// not log it.
    pub async fn presign_read(
        &self,
        path: &str,
        ttl: Duration,
    ) -> Result<Option<String>, BlobError> {
        if matches!(self.backend, Backend::Fs { .. }) {
            return Ok(None);
        }
        let signed = self
            .op
            .presign_read(path, ttl)
            .await
            .map_err(|e| BlobError::at(path, e))?;
        Ok(Some(signed.uri().to_string()))
    }
}

fn s3_operator(
    url: &str,
    s3: S3Location,
    credentials: Option<&StorageCredentials>,
) -> Result<Operator, BlobError> {
    let no_region = s3.region.is_none();
    let mut builder = opendal::services::S3::default()
        .bucket(&s3.bucket)
        .root(&s3.root);
    if let Some(endpoint) = &s3.endpoint {
        builder = builder.endpoint(endpoint);
    }
    if let Some(region) = &s3.region {
        builder = builder.region(region);
    }
    if s3.virtual_host_style {
        builder = builder.enable_virtual_host_style();
    }
    if let Some(keys) = credentials {
        builder = builder
            .access_key_id(&keys.access_key_id)
            .secret_access_key(&keys.secret_access_key);
        if let Some(token) = &keys.session_token {
            builder = builder.session_token(token);
        }
    }
    Operator::new(builder).map_err(|e| {
        if e.kind() == ErrorKind::ConfigInvalid && no_region {
            BlobError::url(
                url,
                "no region: add region=REGION to the URL (us-east-1 for most \
                 S3-compatible servers) or set AWS_REGION",
            )
        } else {
            BlobError::url(url, e.message().to_string())
        }
    })
}

fn cos_operator(
    url: &str,
    cos: CosLocation,
    credentials: Option<&StorageCredentials>,
) -> Result<Operator, BlobError> {
    let mut builder = opendal::services::Cos::default()
        .bucket(&cos.bucket)
        .root(&cos.root)
        .endpoint(&cos.endpoint);
    if let Some(keys) = credentials {
        builder = builder
            .secret_id(&keys.access_key_id)
            .secret_key(&keys.secret_access_key);
        if let Some(token) = &keys.session_token {
            builder = builder.security_token(token);
        }
    }
    Operator::new(builder).map_err(|e| BlobError::url(url, e.message().to_string()))
}

/// Gives an object store's operator its own HTTP client, with a connect
/// timeout, instead of a process-wide default.
fn with_http(op: Operator, options: &StorageOptions) -> Result<Operator, BlobError> {
    // TLS through rustls with ring, as the rest of mongobak; the provider
    // is process-wide, and one installed earlier is kept.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .connect_timeout(options.connect_timeout)
        .build()
        .map_err(|e| BlobError::Storage {
            path: "/".into(),
            source: opendal::Error::new(ErrorKind::Unexpected, "cannot build the HTTP client")
                .set_source(e),
        })?;
    let transport = opendal_http_transport_reqwest::ReqwestTransport::new(client);
    let context = OperationContext::new().with_http_transport(HttpTransporter::new(transport));
    Ok(op.with_context(context))
}

fn log_retry(event: RetryEvent<'_>) {
    tracing::warn!(
        operation = %event.op,
        attempt = event.attempt,
        retry_in_ms = event.retry_after.as_millis() as u64,
        error = %event.err,
        "storage operation failed; retrying",
    );
}

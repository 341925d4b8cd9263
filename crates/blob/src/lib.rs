//! Blob storage for backups and download files, through Apache OpenDAL.
//!
//! [`BlobStore`] opens a storage URL and offers what the rest of mongobak
//! needs: streaming writers whose object only becomes visible, whole, when
//! the writer is closed; reads of a whole object or a range; listing and
//! recursive deletion under a prefix; a readiness check; presigned read
//! URLs on object stores. It decides nothing about what is stored where:
//! `dump` and the download tasks own their layouts. Paths are `/`-separated
//! and relative to the store's root.
//!
//! # Storage URLs
//!
//! - `file://PATH`: a folder (relative or absolute), created when opened.
//!   Objects are written into `PATH.tmp` and renamed into place on close.
//! - `s3://BUCKET[/PREFIX][?endpoint=URL&region=REGION&virtual_host_style=BOOL]`:
//!   any S3-compatible store (AWS S3, MinIO, Ceph RGW, ...). `endpoint` is
//!   `http(s)://HOST[:PORT]`; without it the store is AWS (or
//!   `AWS_ENDPOINT_URL`). `region` is the signing region; without it,
//!   `AWS_REGION` or `AWS_DEFAULT_REGION` (S3-compatible servers mostly
//!   take `us-east-1`). `virtual_host_style=true` addresses the bucket as
//!   `BUCKET.HOST`, `false` as `HOST/BUCKET` (path style); the default is
//!   `true` without `endpoint` and `false` with one, which is what AWS and
//!   the self-hosted servers expect.
//! - `cos://BUCKET-APPID[/PREFIX]?endpoint=URL` or `?region=REGION`: Tencent
//!   COS, such as `cos://backups-1250000000/mongobak?region=ap-guangzhou`
//!   (the endpoint is then `https://cos.REGION.myqcloud.com`).
//!
//! An unknown query key is an error that names it. Keys never go in the URL
//! (it is logged); [`StorageOptions::credentials`] carries them, and when it
//! is `None` they come from where the official SDKs look: for S3,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`,
//! then the `~/.aws` profile (`AWS_PROFILE`), web identity, ECS and EC2
//! instance roles; for COS, `TENCENTCLOUD_SECRET_ID`,
//! `TENCENTCLOUD_SECRET_KEY` and `TENCENTCLOUD_TOKEN` (or `TKE_SECRET_ID`,
//! `TKE_SECRET_KEY`), then TKE web identity. Errors and `Debug` output
//! show a URL without its query and user part, and keys never.
//!
//! # Failures
//!
//! Every store retries temporary failures a few times with backoff and
//! puts timeouts on every call ([`StorageOptions`]); what still fails is a
//! [`BlobError`] whose [`is_transient`](BlobError::is_transient) tells a
//! storage outage (retry later) from a permanent failure.
//!
//! # Layout
//!
//! - `location`: parsing and checking storage URLs.
//! - `options`: [`StorageOptions`] and [`StorageCredentials`].
//! - `store`: [`BlobStore`] and [`ListedBlob`].
//! - `writer`: [`BlobWriter`].
//! - `local`: how a writer writes into a folder: streamed to disk as it
//!   goes, renamed into place on close.
//! - `error`: [`BlobError`].

mod error;
mod local;
mod location;
mod options;
mod store;
mod writer;

pub use error::BlobError;
pub use options::{StorageCredentials, StorageOptions};
pub use store::{BlobStore, ListedBlob};
pub use writer::BlobWriter;

//! The blob store against real storage: a temporary folder, and moto's S3
//! server on loopback.
//!
//! Layout:
//! - `behaviour`: one set of behaviours run on every kind of store.
//! - `multipart`: large objects on S3, abandoned and completed.
//! - `opening`: URLs, missing buckets, keys kept out of sight.
//! - `outage`: the S3 server killed, restarted and frozen.
//! - `presign`: presigned read URLs fetched over HTTP.

mod behaviour;
mod multipart;
mod opening;
mod outage;
mod presign;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use mongobak_blob::{BlobStore, StorageCredentials, StorageOptions};

use mongobak_testkit::moto::Moto;

/// A store to test, with what keeps its storage alive.
pub struct TestStore {
    /// The store.
    pub store: BlobStore,
    /// The S3 server and bucket, for S3 stores.
    pub s3: Option<(Arc<Moto>, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestStore {
    /// A store in a temporary folder.
    pub fn fs() -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&format!("file://{}/blobs", dir.path().display())).unwrap();
        TestStore {
            store,
            s3: None,
            _dir: Some(dir),
        }
    }

    /// A store under a prefix of a new bucket on the shared moto server.
    pub async fn s3() -> TestStore {
        let moto = Moto::shared().await;
        let bucket = new_bucket_name();
        moto.create_bucket(&bucket).await;
        let store = BlobStore::open_with(&s3_url(&moto, &bucket), &s3_options()).unwrap();
        TestStore {
            store,
            s3: Some((moto, bucket)),
            _dir: None,
        }
    }
}

/// `s3://BUCKET/some/prefix?endpoint=...&region=us-east-1`.
pub fn s3_url(moto: &Moto, bucket: &str) -> String {
    format!(
        "s3://{bucket}/some/prefix?endpoint={}&region=us-east-1",
        moto.endpoint()
    )
}

/// Options with keys (moto takes any), as the configuration passes them.
pub fn s3_options() -> StorageOptions {
    StorageOptions::with_credentials(StorageCredentials {
        access_key_id: "AKIDTESTING".into(),
        secret_access_key: "testing-secret-key".into(),
        session_token: None,
    })
}

/// A bucket name no other test uses.
pub fn new_bucket_name() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "blob-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `len` bytes that differ from one offset to the next, so that a part
/// out of place shows.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

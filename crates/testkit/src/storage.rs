//! Where the `mongobak serve` suites keep a server's backups and download
//! files: the data folder's `blobs/` by default, or, with
//! `MONGOBAK_TEST_STORAGE=s3`, a prefix of its own in the bucket
//! `MONGOBAK_TEST_S3_BUCKET` (default `mongobak-test`) on the S3 server at
//! `MONGOBAK_TEST_S3_ENDPOINT`. `scripts/test` starts that server (moto)
//! and creates the bucket for its second pass, so that every suite also
//! runs on object storage.

/// The S3 access key ID the suites give the servers and use themselves
/// (moto takes any).
pub const ACCESS_KEY_ID: &str = "mongobak-test";
/// The secret of [`ACCESS_KEY_ID`].
pub const SECRET_ACCESS_KEY: &str = "mongobak-test-secret";

/// When `MONGOBAK_TEST_STORAGE=s3`, the storage URL kept for `key` (a
/// server's folder: a restarted server finds its data again), a prefix
/// named `keyed_<FNV-1a of key>`; otherwise `None` (the data folder).
pub fn keyed_storage(key: &str) -> Option<String> {
    if std::env::var("MONGOBAK_TEST_STORAGE").as_deref() != Ok("s3") {
        return None;
    }
    let endpoint = std::env::var("MONGOBAK_TEST_S3_ENDPOINT").unwrap_or_else(|_| {
        panic!("MONGOBAK_TEST_STORAGE=s3 needs MONGOBAK_TEST_S3_ENDPOINT=http://HOST:PORT")
    });
    let bucket =
        std::env::var("MONGOBAK_TEST_S3_BUCKET").unwrap_or_else(|_| "mongobak-test".into());
    Some(format!(
        "s3://{bucket}/keyed_{:016x}?endpoint={endpoint}&region=us-east-1",
        crate::postgres::fnv1a(key.as_bytes())
    ))
}

/// The environment that points a `mongobak serve` at [`keyed_storage`]
/// for `key`, empty for the data folder.
pub fn keyed_storage_env(key: &str) -> Vec<(&'static str, String)> {
    match keyed_storage(key) {
        None => Vec::new(),
        Some(url) => vec![
            ("MONGOBAK_STORAGE_URL", url),
            ("MONGOBAK_STORAGE_ACCESS_KEY_ID", ACCESS_KEY_ID.into()),
            (
                "MONGOBAK_STORAGE_SECRET_ACCESS_KEY",
                SECRET_ACCESS_KEY.into(),
            ),
        ],
    }
}

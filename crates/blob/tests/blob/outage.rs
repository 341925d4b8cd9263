//! The S3 server goes away: retries absorb nothing that lasts, the error
//! says "try again later" within seconds, and the store works again once
//! the server is back.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mongobak_blob::{BlobError, BlobStore, StorageOptions};

use mongobak_testkit::moto::Moto;

/// Short retries and timeouts, so the test takes seconds.
fn impatient() -> StorageOptions {
    StorageOptions {
        max_retries: 2,
        retry_min_delay: Duration::from_millis(50),
        retry_max_delay: Duration::from_millis(200),
        operation_timeout: Duration::from_secs(1),
        io_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        ..crate::s3_options()
    }
}

/// The failure is transient and came within `bound`.
fn assert_transient<T: std::fmt::Debug>(
    what: &str,
    started: Instant,
    bound: Duration,
    result: Result<T, BlobError>,
) {
    let elapsed = started.elapsed();
    match result {
        Err(e) => assert!(e.is_transient(), "{what}: not transient: {e}"),
        Ok(v) => panic!("{what}: succeeded while the server is down: {v:?}"),
    }
    assert!(elapsed < bound, "{what}: failed only after {elapsed:?}");
}

async fn open(moto: &Moto) -> (BlobStore, String) {
    let bucket = crate::new_bucket_name();
    moto.create_bucket(&bucket).await;
    let store = BlobStore::open_with(&crate::s3_url(moto, &bucket), &impatient()).unwrap();
    (store, bucket)
}

#[tokio::test]
async fn a_stopped_server_is_a_transient_failure_until_it_is_back() {
    let mut moto = Moto::start().await;
    let (store, bucket) = open(&moto).await;
    store.put("a", Bytes::from_static(b"1")).await.unwrap();
    let mut w = store.writer("w").await.unwrap();
    w.write(Bytes::from_static(b"half")).await.unwrap();

    moto.kill();
    let bound = Duration::from_secs(10);
    let t = Instant::now();
    assert_transient("get", t, bound, store.get("a").await);
    let t = Instant::now();
    assert_transient(
        "put",
        t,
        bound,
        store.put("b", Bytes::from_static(b"2")).await,
    );
    let t = Instant::now();
    assert_transient("size", t, bound, store.size("a").await);
    let t = Instant::now();
    assert_transient("list", t, bound, store.list("").await);
    let t = Instant::now();
    assert_transient("check", t, bound, store.check().await);
    let t = Instant::now();
    assert_transient("close", t, bound, w.close().await);

    moto.restart().await;
    // moto forgets its buckets when it stops.
    assert!(matches!(
        store.check().await,
        Err(BlobError::NoBucket { bucket: b }) if b == bucket
    ));
    moto.create_bucket(&bucket).await;
    store.check().await.unwrap();
    store.put("a", Bytes::from_static(b"again")).await.unwrap();
    assert_eq!(store.get("a").await.unwrap(), &b"again"[..]);
}

#[tokio::test]
async fn a_brief_outage_is_absorbed() {
    let moto = Moto::start().await;
    let (store, _bucket) = open(&moto).await;
    store.put("a", Bytes::from_static(b"1")).await.unwrap();

    // Longer than one attempt may take, shorter than the retries.
    moto.pause();
    let resumed = moto.resume_after(Duration::from_millis(1500));
    let t = Instant::now();
    assert_eq!(store.get("a").await.unwrap(), &b"1"[..]);
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    store.put("b", Bytes::from_static(b"2")).await.unwrap();
    resumed.join().unwrap();
}

#[tokio::test]
async fn a_hung_server_times_out() {
    let moto = Moto::start().await;
    let (store, _bucket) = open(&moto).await;
    store.put("a", Bytes::from_static(b"1")).await.unwrap();

    moto.pause();
    // Three attempts of at most a second each, and the delays between.
    let bound = Duration::from_secs(10);
    let t = Instant::now();
    assert_transient("check", t, bound, store.check().await);
    let t = Instant::now();
    assert_transient("get", t, bound, store.get("a").await);

    moto.resume();
    store.check().await.unwrap();
    assert_eq!(store.get("a").await.unwrap(), &b"1"[..]);
}

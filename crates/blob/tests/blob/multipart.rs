//! Large objects on S3 go up as multipart uploads: nothing is visible
//! until the writer closes, and an abandoned upload is aborted.

use std::time::Duration;

use bytes::Bytes;
use mongobak_blob::{BlobStore, BlobWriter};

use crate::TestStore;
use mongobak_testkit::moto::http;
use mongobak_testkit::wait::eventually;

const MIB: usize = 1 << 20;
const WRITE: usize = 64 * 1024;

/// Writes `data` in small pieces, as the download workers do.
async fn write_all(w: &mut BlobWriter, data: &[u8]) {
    for piece in data.chunks(WRITE) {
        w.write(Bytes::copy_from_slice(piece)).await.unwrap();
    }
}

/// The object's ETag (a multipart upload's ends in `-PARTS`), read with a
/// presigned request (moto refuses some unsigned reads).
async fn etag(store: &BlobStore, path: &str) -> String {
    let url = store
        .presign_read(path, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let resp = http().get(url).send().await.unwrap();
    assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
    resp.headers()["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .to_string()
}

async fn wait_for_no_open_upload(t: &TestStore) {
    let (moto, bucket) = t.s3.as_ref().unwrap();
    eventually(
        Duration::from_secs(20),
        "no open multipart upload",
        async || (moto.open_uploads(bucket).await == 0).then_some(()),
    )
    .await;
}

#[tokio::test]
async fn a_large_object_appears_whole_on_close() {
    let t = TestStore::s3().await;
    let (moto, bucket) = t.s3.as_ref().unwrap();
    let s = &t.store;
    let data = crate::pattern(40 * MIB + 12_345);

    // Abandoned half-way by a drop: no object, and the upload goes.
    let mut w = s.writer("big/file.bin").await.unwrap();
    write_all(&mut w, &data[..20 * MIB]).await;
    assert!(
        moto.open_uploads(bucket).await > 0,
        "not a multipart upload"
    );
    drop(w);
    assert!(s.list("big/").await.unwrap().is_empty());
    wait_for_no_open_upload(&t).await;
    assert_eq!(s.size("big/file.bin").await.unwrap(), None);

    // Abandoned by an abort: the upload is gone when it returns.
    let mut w = s.writer("big/file.bin").await.unwrap();
    write_all(&mut w, &data[..20 * MIB]).await;
    w.abort().await.unwrap();
    assert_eq!(moto.open_uploads(bucket).await, 0);
    assert!(s.list("big/").await.unwrap().is_empty());

    // Completed: exact size and content.
    let mut w = s.writer("big/file.bin").await.unwrap();
    write_all(&mut w, &data).await;
    assert!(
        s.list("big/").await.unwrap().is_empty(),
        "visible before close"
    );
    assert_eq!(w.close().await.unwrap(), data.len() as u64);
    assert_eq!(moto.open_uploads(bucket).await, 0);
    let listed = s.list("big/").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].path, "big/file.bin");
    assert_eq!(listed[0].size, data.len() as u64);
    let got = s.get("big/file.bin").await.unwrap();
    assert!(got == data[..], "the content differs");
    let boundary = 8 * MIB as u64;
    assert_eq!(
        s.get_range("big/file.bin", boundary - 10, 20)
            .await
            .unwrap(),
        &data[boundary as usize - 10..boundary as usize + 10]
    );
    let etag = etag(s, "big/file.bin").await;
    assert!(
        etag.ends_with("-6"),
        "6 parts of 8 MiB expected, ETag {etag}"
    );
}

#[tokio::test]
async fn a_small_object_goes_up_in_one_request() {
    let t = TestStore::s3().await;
    let (moto, bucket) = t.s3.as_ref().unwrap();
    let mut w = t.store.writer("small.bin").await.unwrap();
    write_all(&mut w, &crate::pattern(MIB)).await;
    assert_eq!(moto.open_uploads(bucket).await, 0);
    w.close().await.unwrap();
    let etag = etag(&t.store, "small.bin").await;
    assert!(!etag.contains('-'), "a single PUT expected, ETag {etag}");
}

//! Presigned read URLs: signed locally, fetched by any HTTP client.

use std::time::Duration;

use bytes::Bytes;

use crate::TestStore;
use mongobak_testkit::moto::http;

#[tokio::test]
async fn a_presigned_url_reads_the_object() {
    let t = TestStore::s3().await;
    let data = crate::pattern(10_000);
    t.store.put("d/file.gz", data.clone()).await.unwrap();
    let url = t
        .store
        .presign_read("d/file.gz", Duration::from_secs(600))
        .await
        .unwrap()
        .expect("S3 presigns");
    assert!(url.contains("/some/prefix/d/file.gz?"), "{url}");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    assert!(!url.contains("testing-secret-key"), "{url}");

    let whole = http().get(&url).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.bytes().await.unwrap(), Bytes::from(data.clone()));

    let part = http()
        .get(&url)
        .header("Range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap(), &data[100..200]);
}

#[tokio::test]
async fn file_systems_have_no_presigned_urls() {
    let t = TestStore::fs();
    t.store.put("f", Bytes::from_static(b"x")).await.unwrap();
    let url = t.store.presign_read("f", Duration::from_secs(60)).await;
    assert_eq!(url.unwrap(), None);
}

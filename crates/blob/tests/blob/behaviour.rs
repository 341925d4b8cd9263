//! What every store does alike, run on a folder and on S3.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use mongobak_blob::BlobError;

use crate::TestStore;

macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod fs {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::TestStore::fs()).await
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::TestStore::s3().await).await
                }
            )*
        }
    };
}

on_every_store!(
    objects_appear_only_when_closed,
    an_aborted_object_leaves_nothing,
    a_dropped_writer_leaves_nothing,
    ranges,
    empty_objects,
    list_gives_sizes_and_times,
    delete_prefix_and_delete,
    missing_objects,
    check_reaches_the_store,
);

async fn objects_appear_only_when_closed(t: TestStore) {
    let s = &t.store;
    let mut w = s.writer("a/b/one.bin").await.unwrap();
    w.write(Bytes::from_static(b"hello ")).await.unwrap();
    w.write(Bytes::from_static(b"world")).await.unwrap();
    assert_eq!(w.written(), 11);
    assert_eq!(
        s.size("a/b/one.bin").await.unwrap(),
        None,
        "visible before close"
    );
    assert!(
        s.list("a/").await.unwrap().is_empty(),
        "listed before close"
    );
    assert_eq!(w.close().await.unwrap(), 11);
    assert_eq!(s.size("a/b/one.bin").await.unwrap(), Some(11));
    assert_eq!(s.get("a/b/one.bin").await.unwrap(), &b"hello world"[..]);
}

async fn an_aborted_object_leaves_nothing(t: TestStore) {
    let s = &t.store;
    let mut w = s.writer("a/two.bin").await.unwrap();
    w.write(Bytes::from_static(b"partial")).await.unwrap();
    w.abort().await.unwrap();
    w.abort().await.unwrap();
    assert_eq!(s.size("a/two.bin").await.unwrap(), None);
    assert!(matches!(
        s.get("a/two.bin").await,
        Err(BlobError::NotFound { .. })
    ));
    assert!(s.list("a/").await.unwrap().is_empty());
    assert!(
        w.write(Bytes::from_static(b"more")).await.is_err(),
        "written after abort"
    );
}

async fn a_dropped_writer_leaves_nothing(t: TestStore) {
    let s = &t.store;
    let mut w = s.writer("a/dropped.bin").await.unwrap();
    w.write(Bytes::from(vec![7u8; 100_000])).await.unwrap();
    drop(w);
    assert_eq!(s.size("a/dropped.bin").await.unwrap(), None);
    assert!(s.list("a/").await.unwrap().is_empty());
    // Nor is anything left waiting in a folder store's temporary folder:
    // the pause makes any file left there older than the 1 ms asked for.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let left = s
        .remove_stale_temporary(std::time::Duration::from_millis(1))
        .unwrap();
    assert_eq!(left, 0, "a temporary file outlived its dropped writer");
}

async fn ranges(t: TestStore) {
    let s = &t.store;
    let data = crate::pattern(100_000);
    s.put("r/data", data.clone()).await.unwrap();
    assert_eq!(s.get_range("r/data", 0, 10).await.unwrap(), &data[..10]);
    assert_eq!(
        s.get_range("r/data", 12_345, 50_000).await.unwrap(),
        &data[12_345..62_345]
    );
    assert_eq!(
        s.get_range("r/data", 99_990, 10).await.unwrap(),
        &data[99_990..]
    );
    assert_eq!(s.get("r/data").await.unwrap(), &data[..]);
}

async fn empty_objects(t: TestStore) {
    let s = &t.store;
    s.put("e/put", Bytes::new()).await.unwrap();
    let mut w = s.writer("e/writer").await.unwrap();
    assert_eq!(w.close().await.unwrap(), 0);
    for path in ["e/put", "e/writer"] {
        assert_eq!(s.size(path).await.unwrap(), Some(0), "{path}");
        assert!(s.get(path).await.unwrap().is_empty(), "{path}");
    }
}

async fn list_gives_sizes_and_times(t: TestStore) {
    let s = &t.store;
    s.put("x/y/2", Bytes::from_static(b"22")).await.unwrap();
    s.put("x/1", Bytes::from_static(b"1")).await.unwrap();
    s.put("x/y/z/3", Bytes::from_static(b"333")).await.unwrap();
    s.put("xx/4", Bytes::from_static(b"4444")).await.unwrap();
    let listed = s.list("x/").await.unwrap();
    let paths: Vec<_> = listed.iter().map(|b| (b.path.as_str(), b.size)).collect();
    assert_eq!(paths, vec![("x/1", 1), ("x/y/2", 2), ("x/y/z/3", 3)]);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for blob in &listed {
        let modified = blob.modified_unix.expect("a modification time");
        assert!(
            (modified - now).abs() < 300,
            "{} modified at {modified}",
            blob.path
        );
    }
    assert_eq!(s.list("").await.unwrap().len(), 4);
    assert!(s.list("nothing/").await.unwrap().is_empty());
}

async fn delete_prefix_and_delete(t: TestStore) {
    let s = &t.store;
    for path in ["x/1", "x/y/2", "x/y/z/3", "z/3"] {
        s.put(path, Bytes::from_static(b"data")).await.unwrap();
    }
    s.delete_prefix("x/").await.unwrap();
    assert!(s.list("x/").await.unwrap().is_empty());
    assert_eq!(s.size("x/y/2").await.unwrap(), None);
    assert_eq!(s.size("z/3").await.unwrap(), Some(4));
    s.delete("z/3").await.unwrap();
    s.delete("z/3").await.unwrap();
    assert_eq!(s.size("z/3").await.unwrap(), None);
    s.delete_prefix("never/").await.unwrap();
}

async fn missing_objects(t: TestStore) {
    let s = &t.store;
    assert_eq!(s.size("no/such").await.unwrap(), None);
    for result in [s.get("no/such").await, s.get_range("no/such", 0, 1).await] {
        match result {
            Err(e @ BlobError::NotFound { .. }) => {
                assert!(!e.is_transient());
                assert_eq!(e.to_string(), "no object at no/such");
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
}

async fn check_reaches_the_store(t: TestStore) {
    t.store.check().await.unwrap();
    t.store.put("c/1", Bytes::from_static(b"1")).await.unwrap();
    t.store.check().await.unwrap();
}

#[tokio::test]
async fn stale_temporary_objects_are_removed_on_file_systems() {
    let t = TestStore::fs();
    let s = &t.store;
    let mut w = s.writer("a/partial.bin").await.unwrap();
    w.write(Bytes::from(vec![7u8; 1 << 20])).await.unwrap();
    // The process dies mid-write: no close, no abort, no destructor.
    std::mem::forget(w);
    let hour = std::time::Duration::from_secs(3600);
    assert_eq!(s.remove_stale_temporary(hour).unwrap(), 0, "still fresh");
    // The pause ages the file past the 10 ms asked for below.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let removed = s
        .remove_stale_temporary(std::time::Duration::from_millis(10))
        .unwrap();
    assert!(removed >= 1, "the abandoned temporary file is removed");
    assert!(s.list("a/").await.unwrap().is_empty());
}

#[tokio::test]
async fn object_stores_have_no_temporary_folder() {
    let t = TestStore::s3().await;
    assert_eq!(
        t.store
            .remove_stale_temporary(std::time::Duration::ZERO)
            .unwrap(),
        0
    );
}

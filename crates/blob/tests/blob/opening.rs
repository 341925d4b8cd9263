//! Opening stores: bad URLs, missing buckets, and keys kept out of sight.

use std::time::Duration;

use mongobak_blob::{BlobError, BlobStore, StorageCredentials, StorageOptions};

use mongobak_testkit::moto::Moto;

#[test]
fn bad_urls_are_refused_with_the_reason() {
    for (url, expected) in [
        ("s3://", "no bucket"),
        (
            "s3://b?endpoint=http://127.0.0.1:9&region=r&acl=private",
            "`acl`",
        ),
        ("ftp://x", "unknown scheme `ftp`"),
        ("cos://b-1", "needs endpoint"),
        ("file://", "no folder"),
    ] {
        match BlobStore::open(url) {
            Err(BlobError::UnsupportedUrl { reason, .. }) => {
                assert!(reason.contains(expected), "{url}: {reason}")
            }
            other => panic!("{url}: {other:?}"),
        }
    }
}

#[test]
fn an_s3_store_needs_a_region() {
    let in_env = ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    let opened = BlobStore::open("s3://b/p?endpoint=http://127.0.0.1:9");
    if in_env {
        assert!(opened.is_ok(), "{opened:?}");
    } else {
        match opened {
            Err(BlobError::UnsupportedUrl { reason, .. }) => {
                assert!(reason.contains("add region=REGION"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn cos_urls_open() {
    let store = BlobStore::open("cos://backups-1250000000/mongobak?region=ap-guangzhou").unwrap();
    let shown = format!("{store:?}");
    assert!(
        shown.contains("cos://backups-1250000000/mongobak"),
        "{shown}"
    );
}

#[test]
fn keys_never_show() {
    let secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";
    let keys = StorageCredentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: secret.into(),
        session_token: Some(format!("{secret}-token")),
    };
    let options = StorageOptions::with_credentials(keys);
    assert!(!format!("{options:?}").contains(secret));
    let store = BlobStore::open_with(
        "s3://b/p?endpoint=http://127.0.0.1:9&region=us-east-1",
        &options,
    )
    .unwrap();
    assert!(!format!("{store:?}").contains(secret));
    let err =
        BlobStore::open_with(&format!("s3://AKIDEXAMPLE:{secret}@b/p"), &options).unwrap_err();
    assert!(!err.to_string().contains(secret), "{err}");
    assert!(!format!("{err:?}").contains(secret), "{err:?}");
}

#[tokio::test]
async fn a_failed_request_shows_no_key() {
    let moto = Moto::shared().await;
    let secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";
    let options = StorageOptions {
        max_retries: 0,
        ..StorageOptions::with_credentials(StorageCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: secret.into(),
            session_token: None,
        })
    };
    let url = format!(
        "s3://no-such-bucket/p?endpoint={}&region=us-east-1",
        moto.endpoint()
    );
    let store = BlobStore::open_with(&url, &options).unwrap();
    let err = store.get("x").await.unwrap_err();
    assert!(!format!("{err} {err:?}").contains(secret), "{err:?}");
    assert!(!err.is_transient(), "a missing bucket is no outage: {err}");
    match store.check().await {
        Err(e @ BlobError::NoBucket { .. }) => {
            assert!(!e.is_transient());
            assert!(
                e.to_string().contains("`no-such-bucket` does not exist"),
                "{e}"
            );
        }
        other => panic!("expected NoBucket, got {other:?}"),
    }
    let url = store
        .presign_read("x", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert!(!url.contains(secret), "{url}");
}

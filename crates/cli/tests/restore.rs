//! `mongobak verify` and `mongobak restore` on the real mongodump archives
//! of the test data, and into real SecantusDB servers.

use std::path::PathBuf;
use std::process::{Command, Output};

use mongobak_testkit::snapshot::{archive_documents, documents};
use mongobak_testkit::MongoServer;
use mongodb::bson::{doc, Document, RawDocumentBuf};

fn testdata(name: &str) -> PathBuf {
    let shared = std::env::var_os("MONGOBAK_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let path = shared.join("testdata/mongodump/archives").join(name);
    assert!(
        path.exists(),
        "test data not found at {}; set MONGOBAK_SHARED",
        path.display()
    );
    path
}

fn mongobak(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mongobak"))
        .args(args)
        .output()
        .expect("mongobak runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn verify_counts_the_real_archives() {
    for (name, expected) in [
        ("mongodump-parser/test.dump", "1500 documents"),
        ("payment-company/transaction.agz", "21850 documents"),
        ("mongo-tools/dump-w-oplog.archive", "25 documents"),
    ] {
        let path = testdata(name);
        let out = mongobak(&["verify", "--file", path.to_str().unwrap()]);
        assert!(out.status.success(), "{name}: {}", text(&out));
        assert!(text(&out).contains(expected), "{name}: {}", text(&out));
    }
    let bad = testdata("mongo-tools/bad-format.archive");
    let out = mongobak(&["verify", "--file", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not a valid mongodump archive"),
        "{}",
        text(&out)
    );
}

#[test]
fn verify_checks_the_sha256_beside_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bar.archive");
    std::fs::copy(testdata("mongo-tools/test.bar.archive"), &file).unwrap();
    let sidecar = dir.path().join("bar.archive.sha256");
    std::fs::write(&sidecar, format!("{}  bar.archive\n", "0".repeat(64))).unwrap();
    let out = mongobak(&["verify", "--file", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("checksum mismatch"), "{}", text(&out));
    let real = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(&file).unwrap()))
    };
    std::fs::write(&sidecar, format!("{real}  bar.archive\n")).unwrap();
    let out = mongobak(&["verify", "--file", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("matches"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_puts_the_documents_back() {
    let target = MongoServer::start().await;
    let archive = testdata("mongodump-parser/test.dump");
    let out = mongobak(&[
        "restore",
        "--file",
        archive.to_str().unwrap(),
        "--uri",
        &target.uri(),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let coll = target
        .client()
        .database("testDB")
        .collection::<Document>("testColl");
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 1500);

    // Filters and --drop.
    let gz = testdata("payment-company/transaction.agz");
    let out = mongobak(&[
        "restore",
        "--file",
        gz.to_str().unwrap(),
        "--uri",
        &target.uri(),
        "--ns-exclude",
        "zibal_db.*",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!target
        .client()
        .list_database_names()
        .await
        .unwrap()
        .contains(&"zibal_db".to_string()));
    let out = mongobak(&[
        "restore",
        "--file",
        archive.to_str().unwrap(),
        "--uri",
        &target.uri(),
        "--drop",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("1500 documents"), "{}", text(&out));
    assert_eq!(
        coll.count_documents(doc! {}).await.unwrap(),
        1500,
        "dropped, then restored once"
    );

    // The oplog slice replays.
    let oplog = testdata("mongo-tools/dump-w-oplog.archive");
    let out = mongobak(&[
        "restore",
        "--file",
        oplog.to_str().unwrap(),
        "--uri",
        &target.uri(),
        "--oplog-replay",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("oplog: 16 entries applied"),
        "{}",
        text(&out)
    );
    let foo = target
        .client()
        .database("test")
        .collection::<Document>("foo");
    assert!(foo.count_documents(doc! {}).await.unwrap() >= 25);

    // A server that is not there: a one-line error, non-zero exit.
    let port = mongobak_testkit::free_port();
    let nowhere =
        format!("mongodb://127.0.0.1:{port}/?directConnection=true&serverSelectionTimeoutMS=300");
    let out = mongobak(&[
        "restore",
        "--file",
        archive.to_str().unwrap(),
        "--uri",
        &nowhere,
        "--quiet",
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("restore of"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_real_archive_restores_to_the_documents_it_holds() {
    let target = MongoServer::start().await;
    let client = target.client();
    for name in [
        "mongo-tools/test.bar.archive",
        "mongo-tools/dump-w-oplog.archive",
        "mongo-tools/timeseries-dump.archive",
        "mongodump-parser/test.dump",
        "payment-company/transaction.agz",
    ] {
        let path = testdata(name);
        let bytes = std::fs::read(&path).unwrap();
        let out = mongobak(&[
            "restore",
            "--file",
            path.to_str().unwrap(),
            "--uri",
            &target.uri(),
        ]);
        assert!(out.status.success(), "{name}: {}", text(&out));
        // Not on a terminal: plain progress lines, the last one at the
        // file's end.
        let file = path.file_name().unwrap().to_str().unwrap();
        let size = bytes.len();
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains(&format!("restoring {file}: {size}/{size} bytes (100%), ")),
            "{name}: {}",
            text(&out)
        );
        let mut checked = 0;
        for (ns, mut archived) in archive_documents(&bytes) {
            if ns.starts_with("admin.") || ns.starts_with('.') {
                continue; // users, roles, versions and the oplog
            }
            if let Some((db, buckets)) = ns.split_once(".system.buckets.") {
                // A time series comes back as its measurements: as many as
                // the buckets' columns hold.
                let measurements: usize = archived
                    .iter()
                    .map(|b| {
                        let bucket = RawDocumentBuf::from_bytes(b.clone()).unwrap();
                        let bucket = bucket.to_document().unwrap();
                        bucket
                            .get_document("data")
                            .unwrap()
                            .get_document("ts")
                            .unwrap()
                            .len()
                    })
                    .sum();
                let restored = documents(&client, db, buckets).await.unwrap();
                assert_eq!(restored.len(), measurements, "{name}: {ns}");
                checked += 1;
                continue;
            }
            archived.sort();
            let (db, coll) = ns.split_once('.').unwrap();
            assert!(
                documents(&client, db, coll).await.unwrap() == archived,
                "{name}: {ns} differs from the archive"
            );
            checked += 1;
        }
        assert!(checked > 0, "{name}: no data namespace");
    }
}

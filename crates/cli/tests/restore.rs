//! `mongobak verify` and `mongobak restore` on the mongodump archives of
//! `testdata/mongodump`, and into real SecantusDB servers.

use std::path::PathBuf;
use std::process::{Command, Output};

use mongobak_testkit::snapshot::{archive_documents, documents};
use mongobak_testkit::MongoServer;
use mongodb::bson::{doc, Document, RawDocumentBuf};

/// A file under `testdata/mongodump/` at the top of the repository.
fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/mongodump")
        .join(name)
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
        ("synthetic/users-and-roles.archive", "1500 documents"),
        ("synthetic/whole-stream-gzip.agz", "20000 documents"),
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
    let archive = testdata("synthetic/users-and-roles.archive");
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
    let gz = testdata("synthetic/whole-stream-gzip.agz");
    let out = mongobak(&[
        "restore",
        "--file",
        gz.to_str().unwrap(),
        "--uri",
        &target.uri(),
        "--ns-exclude",
        "shop.*",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!target
        .client()
        .list_database_names()
        .await
        .unwrap()
        .contains(&"shop".to_string()));
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
        "synthetic/users-and-roles.archive",
        "synthetic/whole-stream-gzip.agz",
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

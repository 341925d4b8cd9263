//! `mongobak gc`: the dry run lists exactly what the real run deletes, and
//! data younger than the grace period or outside mongobak's folders stays.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

fn mongobak(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mongobak"))
        .args(args)
        .env("MONGOBAK_SERVER_DATA_DIR", dir)
        .env_remove("MONGOBAK_CONFIG")
        .output()
        .expect("mongobak runs")
}

/// Writes `path` under the blob folder, `age` old.
fn plant(dir: &Path, path: &str, age: Duration) {
    let file = dir.join("blobs").join(path);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, b"orphan data").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

#[test]
fn dry_run_lists_what_gc_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let day = Duration::from_secs(24 * 3600);
    plant(
        dir.path(),
        "backups/cmgo-gone0001/41/manifest.json",
        2 * day,
    );
    plant(
        dir.path(),
        "backups/cmgo-gone0001/41/rs0/s0.bson.zst",
        3 * day,
    );
    plant(dir.path(), "downloads/9/1/x.archive.gz", 2 * day);
    plant(
        dir.path(),
        "backups/cmgo-gone0001/42/manifest.json",
        Duration::from_secs(60),
    );
    plant(dir.path(), "elsewhere/keep.txt", 9 * day);

    let dry = mongobak(dir.path(), &["gc", "--dry-run"]);
    assert!(dry.status.success(), "{dry:?}");
    let listing = String::from_utf8(dry.stdout).unwrap();
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 4, "{listing}");
    assert!(lines[0].starts_with("PREFIX"), "{listing}");
    assert!(
        lines[1].starts_with("backups/cmgo-gone0001/41/ "),
        "{listing}"
    );
    assert!(lines[1].contains("no backup has this ID"), "{listing}");
    assert!(lines[1].contains(" 2 "), "two objects: {listing}");
    assert!(lines[2].starts_with("downloads/9/1/ "), "{listing}");
    assert_eq!(lines[3], "would delete 2 folder(s), 33 bytes");
    assert!(dir
        .path()
        .join("blobs/backups/cmgo-gone0001/41/manifest.json")
        .exists());

    let real = mongobak(dir.path(), &["gc"]);
    assert!(real.status.success(), "{real:?}");
    let deleted = String::from_utf8(real.stdout).unwrap();
    assert_eq!(
        deleted.replace("deleted 2", "would delete 2"),
        listing,
        "the same set"
    );
    let blobs = dir.path().join("blobs");
    assert!(!blobs.join("backups/cmgo-gone0001/41").exists());
    assert!(!blobs.join("downloads/9/1").exists());
    assert!(blobs
        .join("backups/cmgo-gone0001/42/manifest.json")
        .exists());
    assert!(blobs.join("elsewhere/keep.txt").exists());

    // No grace at all could race a writer: refused.
    let young = mongobak(dir.path(), &["gc", "--dry-run", "--grace-hours", "0"]);
    assert!(!young.status.success(), "0 hours is refused: {young:?}");
    let again = mongobak(dir.path(), &["gc", "--dry-run"]);
    assert!(String::from_utf8(again.stdout)
        .unwrap()
        .starts_with("would delete 0 folder(s), 0 bytes"));
}

//! Download tasks when the blob store fails under the packaging worker of a
//! real `mongobak serve`: the store's temporary folder (`<blobs>.tmp`,
//! where objects are written before they are renamed into place) replaced
//! by a regular file, which stops writes even for root; and a file system
//! that is really full (a small tmpfs).
//!
//! A failed attempt waits to be retried (Status 4, its reason in
//! DescribeBackupDownloadTask's extra field FailureReason), succeeds once
//! the storage works again, and fails for good (Status 3) after its last
//! attempt. Nothing of a failed attempt is ever published.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use mongobak_testkit::snapshot::{snapshot, NamespaceState};
use mongobak_testkit::MongoServer;
use serde_json::Value;

/// Documents of 100 KB of random bytes: a file of 6 MB, packaged in about
/// 2 s in a debug build, long enough to break the storage meanwhile.
const DOCUMENTS: usize = 60;
const DOCUMENT_BYTES: usize = 100_000;
/// Limit of each wait for a task's status; retries back off 5 s first.
const WAIT: Duration = Duration::from_secs(60);

/// A SecantusDB server with data, a snapshot of it, and a `mongobak serve`
/// backing it up.
struct Setup {
    instance: &'static str,
    // Dropped in this order: the server, then the database it reads.
    server: Mongobak,
    _mongo: MongoServer,
    expected: BTreeMap<String, NamespaceState>,
    http: Http,
    data: PathBuf,
}

impl Setup {
    /// `documents` of 100 KB; `extra` TOML tables of the configuration.
    async fn start(dir: &Path, instance: &'static str, documents: usize, extra: &str) -> Setup {
        let mongo = MongoServer::start().await;
        insert_random(&mongo.client(), "store", "docs", documents, DOCUMENT_BYTES).await;
        let expected = snapshot(&mongo.client()).await.unwrap();
        let data = dir.join("data");
        // These failures are a file system's: the storage is a folder in
        // every pass of the suite.
        let extra = match extra.contains("[storage]") {
            true => extra.to_string(),
            false => format!(
                "[storage]\nurl = \"file://{}\"\n{extra}",
                data.join("blobs").display()
            ),
        };
        let config_path = dir.join("mongobak.toml");
        std::fs::write(&config_path, config(&data, instance, &mongo.uri(), &extra)).unwrap();
        let server = Mongobak::start(&config_path, &dir.join("serve.log"));
        Setup {
            instance,
            server,
            _mongo: mongo,
            expected,
            http: root_http(),
            data,
        }
    }

    /// Takes a backup and asks for its download; returns the backup's name.
    async fn backup_and_download(&self) -> String {
        let backup = take_backup(&self.http, self.server.addr, self.instance).await;
        create_task(&self.http, self.server.addr, self.instance, &backup).await;
        backup
    }

    /// The tasks of one backup, newest first.
    async fn tasks_of(&self, backup: &str) -> Vec<Value> {
        tasks(&self.http, self.server.addr, self.instance)
            .await
            .into_iter()
            .filter(|t| t["BackupName"] == backup)
            .collect()
    }

    /// Waits until the backup's newest task has `status`; returns it.
    async fn wait_status(&self, backup: &str, status: i64) -> Value {
        let what = format!("a task of {backup} at Status {status}");
        eventually(WAIT, &what, || async {
            let task = self.tasks_of(backup).await.first()?.clone();
            assert_ne!(
                (task["Status"].as_i64(), status),
                (Some(3), 4),
                "failed for good: {task}"
            );
            (task["Status"] == status).then_some(task)
        })
        .await
    }

    /// Downloads a done task's file and checks it against the source.
    async fn check_done(&self, task: &Value) {
        let url = task["Url"].as_str().unwrap();
        let file = self.http.get(url).await.expect("the download answers");
        assert_eq!(file.status, 200, "{url}");
        assert_eq!(task["SHA256"], sha256(&file.body), "{task}");
        assert_eq!(task["BackupSize"], file.body.len() as u64, "{task}");
        assert_eq!(task["FailureReason"], "", "{task}");
        if let Err(problem) = check_archive(&file.body, &self.expected) {
            panic!("the file of {task} is wrong: {problem}");
        }
    }
}

/// The store's temporary folder swapped for a regular file, until removed.
///
/// The server creates the folder whenever it starts writing an object, so
/// the swap never asks whether the folder exists first: it creates the file
/// with `O_EXCL`, and whatever stands at that path (a folder the server just
/// made) is moved aside and the creation tried again. The server can make
/// the folder again at any moment; the loop ends only once the file is the
/// one in place.
struct Obstacle {
    tmp: PathBuf,
    moved: Vec<PathBuf>,
}

impl Obstacle {
    fn place(data: &Path) -> Obstacle {
        let tmp = data.join("blobs.tmp");
        let mut moved = Vec::new();
        loop {
            let created = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp);
            match created {
                Ok(mut file) => {
                    file.write_all(b"not a folder\n").unwrap();
                    return Obstacle { tmp, moved };
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let aside = data.join(format!("blobs.tmp.moved{}", moved.len()));
                    match std::fs::rename(&tmp, &aside) {
                        Ok(()) => moved.push(aside),
                        // Gone again between the two calls: try once more.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => panic!("cannot move {} aside: {e}", tmp.display()),
                    }
                }
                Err(e) => panic!("cannot create {}: {e}", tmp.display()),
            }
        }
    }
}

impl Drop for Obstacle {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
        for folder in &self.moved {
            let _ = std::fs::remove_dir_all(folder);
        }
    }
}

/// Asserts a task waiting after a failure or failed for good: its reason
/// shown, no URL, no file.
fn assert_failed(task: &Value, status: i64) {
    assert_eq!(task["Status"], status, "{task}");
    let reason = task["FailureReason"].as_str().unwrap();
    eprintln!("Status {status}: {reason}");
    assert!(
        reason.starts_with("storage") || reason.starts_with("writing the file"),
        "the reason names the storage: {task}"
    );
    assert_eq!(task["Url"], "", "{task}");
    assert_eq!(task["BackupSize"], 0, "{task}");
    assert_eq!(task["SHA256"], "", "{task}");
}

/// The files under the store's `downloads/` folder (`blobs` is the
/// store's root), as `<task>/<attempt>/<name>`.
fn downloads(blobs: &Path) -> Vec<String> {
    let root = blobs.join("downloads");
    files_under(&root)
        .iter()
        .map(|f| f.strip_prefix(&root).unwrap().display().to_string())
        .collect()
}

/// Where a done task's file is stored, as `downloads` lists it: its URL
/// names the task and the file; the attempt that made it is given.
fn stored_as(task: &Value, attempt: u32) -> String {
    let url = task["Url"].as_str().unwrap();
    let path = url.split("/download/").nth(1).unwrap();
    let (id, name) = path.split('?').next().unwrap().split_once('/').unwrap();
    format!("{id}/{attempt}/{name}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_failure_while_packaging_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::start(dir.path(), "cmgo-stor0001", DOCUMENTS, "").await;
    let blobs = setup.data.join("blobs");
    let backup = setup.backup_and_download().await;
    setup.wait_status(&backup, 1).await;
    let obstacle = Obstacle::place(&setup.data);

    let waiting = setup.wait_status(&backup, 4).await;
    assert_failed(&waiting, 4);
    assert_eq!(downloads(&blobs), Vec::<String>::new(), "nothing published");

    // The storage works again: the retry, after its backoff, succeeds.
    drop(obstacle);
    let done = setup.wait_status(&backup, 2).await;
    setup.check_done(&done).await;
    assert_eq!(setup.tasks_of(&backup).await.len(), 1, "the same task");
    // The only file stored is the second attempt's.
    assert_eq!(downloads(&blobs), vec![stored_as(&done, 2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_fails_for_good_after_its_last_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::start(
        dir.path(),
        "cmgo-stor0002",
        DOCUMENTS,
        "[downloads]\nmax_attempts = 2\n",
    )
    .await;
    let blobs = setup.data.join("blobs");
    let backup = setup.backup_and_download().await;
    setup.wait_status(&backup, 1).await;
    let obstacle = Obstacle::place(&setup.data);

    assert_failed(&setup.wait_status(&backup, 4).await, 4);
    // The obstacle stays: the second attempt is the last.
    let failed = setup.wait_status(&backup, 3).await;
    assert_failed(&failed, 3);
    let log = setup.server.log_lines();
    let attempts = log
        .iter()
        .filter(|l| message(l) == "packaging started")
        .count();
    assert_eq!(attempts, 2, "{}", setup.server.log_tail());
    assert!(
        log.iter()
            .any(|l| message(l) == "packaging failed for good"),
        "{}",
        setup.server.log_tail()
    );
    // Nothing was published, and nothing is left for the janitor either
    // (it deletes only the files of done tasks).
    assert_eq!(downloads(&blobs), Vec::<String>::new());

    // A failed task does not hold up a new request, which starts afresh
    // once the storage works.
    drop(obstacle);
    create_task(&setup.http, setup.server.addr, setup.instance, &backup).await;
    let done = setup.wait_status(&backup, 2).await;
    setup.check_done(&done).await;
    let tasks = setup.tasks_of(&backup).await;
    let statuses: Vec<i64> = tasks
        .iter()
        .map(|t| t["Status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, vec![2, 3], "{tasks:?}");
    assert_failed(&tasks[1], 3);
    assert_eq!(downloads(&blobs), vec![stored_as(&done, 1)]);
}

/// A tmpfs of `size` mounted at a folder, unmounted when dropped.
struct Tmpfs {
    at: PathBuf,
}

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs {
            at: at.to_path_buf(),
        })
    }

    fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let done = Command::new("umount").arg(&self.at).status();
        if !matches!(done, Ok(s) if s.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_attempt_until_space_is_freed() {
    // The blob store on a 2 MiB tmpfs; a backup of 1.2 MB of random bytes
    // fits, its download file of as much does not.
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let tmpfs = match Tmpfs::mount(&store, "2m") {
        Ok(tmpfs) => tmpfs,
        Err(reason) => {
            eprintln!(
                "SKIPPED a_full_disk_fails_the_attempt_until_space_is_freed: cannot mount a tmpfs \
                 here ({reason}); the disk-full case is not tested"
            );
            return;
        }
    };
    let blobs = store.join("blobs");
    let extra = format!("[storage]\nurl = \"file://{}\"\n", blobs.display());
    let setup = Setup::start(dir.path(), "cmgo-full0001", 12, &extra).await;
    let backup = setup.backup_and_download().await;

    let waiting = setup.wait_status(&backup, 4).await;
    assert_failed(&waiting, 4);
    let reason = waiting["FailureReason"].as_str().unwrap();
    assert!(reason.contains("No space left on device"), "{waiting}");
    assert_eq!(downloads(&blobs), Vec::<String>::new(), "nothing published");
    // What the failed attempt left in the store's temporary folder.
    let left: Vec<(PathBuf, u64)> = files_under(&store.join("blobs.tmp"))
        .into_iter()
        .map(|f| {
            let size = std::fs::metadata(&f).map_or(0, |m| m.len());
            (f, size)
        })
        .collect();

    // More space: the retry succeeds.
    tmpfs.resize("16m");
    let done = setup.wait_status(&backup, 2).await;
    setup.check_done(&done).await;
    assert_eq!(downloads(&blobs), vec![stored_as(&done, 2)]);
    // A failed attempt must not keep its partial file: on a full disk it
    // holds the very space the next attempt needs.
    assert!(
        left.is_empty(),
        "the failed attempt left its partial file in the store's temporary folder: {left:?}"
    );
}

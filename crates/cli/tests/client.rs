//! The client commands (`backup`, `download`, `restore`) as a user runs
//! them, against a real `mongobak serve` and real SecantusDB servers: a
//! seeded server's round trip, a download cut off half-way and resumed, a
//! file damaged on the server, tccli profiles, and every error's exit
//! status and one-line message.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use mongobak_testkit::snapshot::{differences, snapshot};
use mongobak_testkit::{free_port, seed, MongoServer};
use serde_json::Value;
use tokio::process::Command;

use common::*;

const INSTANCE: &str = "cmgo-client01";

/// What a finished command left.
#[derive(Debug)]
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// The stdout, parsed.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Checks a failure: `code`, nothing on stdout, one line on stderr
    /// holding `needle`.
    fn assert_failed(&self, code: i32, needle: &str) {
        assert_eq!(self.code, code, "{self:?}");
        assert_eq!(self.stdout, "", "{self:?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {self:?}");
        assert!(lines[0].starts_with("mongobak: "), "{self:?}");
        assert!(lines[0].contains(needle), "{needle:?} in {self:?}");
    }
}

/// `mongobak <args>` as a client of `addr` with the test account's keys in
/// the environment and `home` as HOME (no tccli profile unless a test
/// writes one); nothing from this process's environment leaks in.
fn mongobak(addr: Option<SocketAddr>, home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mongobak"));
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if ["MONGOBAK_", "TENCENTCLOUD_", "TCCLI_"]
            .iter()
            .any(|p| name_text.starts_with(p))
        {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .env("HOME", home)
        .env("TENCENTCLOUD_SECRET_ID", SECRET_ID)
        .env("TENCENTCLOUD_SECRET_KEY", SECRET_KEY)
        .env("TENCENTCLOUD_REGION", REGION)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(addr) = addr {
        command.env("MONGOBAK_ENDPOINT", format!("http://{addr}"));
    }
    command
}

/// `mongobak download` of `backup` of `instance` into `out`, plus `extra`.
fn download(
    addr: Option<SocketAddr>,
    home: &Path,
    (instance, backup): (&str, &str),
    out: &Path,
    extra: &[&str],
) -> Command {
    let out = out.to_str().unwrap();
    let mut args = vec![
        "download",
        "--instance",
        instance,
        "--backup",
        backup,
        "--out",
        out,
    ];
    args.extend_from_slice(extra);
    mongobak(addr, home, &args)
}

async fn run(mut command: Command) -> Ran {
    let out = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("the command ends within 5 minutes")
        .expect("mongobak runs");
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Checks that every stderr line of a command run without a terminal is
/// one of the plain progress shapes (`progress.rs`) or a known note.
fn assert_plain_progress(stderr: &str) {
    for line in stderr.lines() {
        // "resuming X from byte N of M"
        if let Some(rest) = line.strip_prefix("resuming ") {
            let words: Vec<&str> = rest.split(' ').collect();
            assert!(
                matches!(words.as_slice(), [_, "from", "byte", n, "of", m]
                    if n.parse::<u64>().is_ok() && m.parse::<u64>().is_ok()),
                "not a progress line: {line:?}"
            );
            continue;
        }
        let (head, rest) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("not a progress line: {line:?}"));
        let mut words = head.split(' ');
        let verb = words.next().unwrap_or_default();
        let item_given = words.next().is_some();
        let figures = rest.split(", ").collect::<Vec<_>>();
        let ok = match verb {
            "backing" | "packaging" if item_given => {
                // "backing up X: 40%" / "packaging X: 40%[, note]"
                let percent = figures[0].strip_suffix('%').unwrap_or("x");
                percent.parse::<u64>().is_ok_and(|p| p <= 100)
            }
            "downloading" | "restoring" if item_given => {
                // "<verb> X: done/total bytes (p%), rate/s, eta Ns[, note]"
                let counts = figures[0].split(' ').next().unwrap_or_default();
                let parsed: Vec<Option<u64>> = counts.split('/').map(|n| n.parse().ok()).collect();
                matches!(parsed.as_slice(), [Some(done), Some(total)] if done <= total)
                    && figures[0].ends_with("%)")
                    && figures.get(1).is_some_and(|r| r.ends_with("/s"))
                    && figures.get(2).is_some_and(|e| e.starts_with("eta "))
            }
            "verified" => rest.starts_with("sha256 ") && rest.len() == 7 + 64,
            "found" | "restarting" => true,
            _ => false,
        };
        assert!(ok, "not a progress line: {line:?}");
    }
}

/// A `mongobak serve` for `mongo_uri`, with its folder.
fn serve(mongo_uri: &str) -> (Mongobak, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("mongobak.toml");
    std::fs::write(
        &config_path,
        config(&dir.path().join("data"), INSTANCE, mongo_uri, ""),
    )
    .unwrap();
    let server = Mongobak::start(&config_path, &dir.path().join("serve.log"));
    (server, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_server_round_trips_through_backup_download_and_restore() {
    let source = MongoServer::start().await;
    seed::seed(&source.client()).await.unwrap();
    let expected = snapshot(&source.client()).await.unwrap();
    let (server, dir) = serve(&source.uri());
    let home = dir.path();
    let addr = Some(server.addr);

    let created = run(mongobak(
        addr,
        home,
        &[
            "backup",
            "create",
            "--instance",
            INSTANCE,
            "--remark",
            "round trip",
            "--wait",
            "--output",
            "json",
        ],
    ))
    .await;
    assert_eq!(created.code, 0, "{created:?}");
    let backup = created.json();
    let name = backup["BackupName"].as_str().unwrap().to_string();
    assert_eq!(backup["Status"], 2, "{backup}");
    assert_eq!(backup["BackupDesc"], "round trip");
    assert!(backup["AsyncRequestId"].is_string());
    assert!(
        created.stderr.contains("backing up cmgo-client01: 100%"),
        "{created:?}"
    );
    assert_plain_progress(&created.stderr);

    let listed = run(mongobak(
        addr,
        home,
        &["backup", "list", "--instance", INSTANCE],
    ))
    .await;
    assert_eq!(listed.code, 0, "{listed:?}");
    let lines: Vec<&str> = listed.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME "), "{listed:?}");
    assert!(
        lines[1].starts_with(&format!("{name}  done ")),
        "{listed:?}"
    );
    assert!(lines[1].ends_with("round trip"), "{listed:?}");

    // Every replica set by default; a table naming the file.
    let out_dir = dir.path().join("files");
    let downloaded = run(download(addr, home, (INSTANCE, &name), &out_dir, &[])).await;
    assert_eq!(downloaded.code, 0, "{downloaded:?}");
    assert_plain_progress(&downloaded.stderr);
    let rows: Vec<&str> = downloaded.stdout.lines().collect();
    assert_eq!(rows.len(), 2, "{downloaded:?}");
    let path = PathBuf::from(rows[1].rsplit("  ").next().unwrap());
    assert!(rows[1].starts_with("cmgo-client01_0 "), "{downloaded:?}");
    assert_eq!(path.parent(), Some(out_dir.as_path()));
    let bytes = std::fs::read(&path).unwrap();
    let sidecar = std::fs::read_to_string(format!("{}.sha256", path.display())).unwrap();
    let file_name = path.file_name().unwrap().to_str().unwrap();
    assert_eq!(sidecar, format!("{}  {file_name}\n", sha256(&bytes)));
    assert!(
        files_under(&out_dir)
            .iter()
            .all(|f| !f.to_string_lossy().ends_with(".part")),
        "no partial file left"
    );
    assert!(downloaded.stderr.contains(&format!(
        "verified cmgo-client01_0: sha256 {}",
        sha256(&bytes)
    )));

    // A second run finds the file and fetches nothing; JSON this time.
    let again = run(download(
        addr,
        home,
        (INSTANCE, "latest"),
        &out_dir,
        &["--output", "json", "--quiet"],
    ))
    .await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.stderr, "", "--quiet");
    let files = again.json();
    assert_eq!(files["BackupName"], name.as_str());
    assert_eq!(files["Files"][0]["Path"], path.to_str().unwrap());
    assert_eq!(files["Files"][0]["SHA256"], sha256(&bytes));
    assert_eq!(files["Files"][0]["Size"], bytes.len());

    let verified = run(mongobak(
        None,
        home,
        &["verify", "--file", path.to_str().unwrap()],
    ))
    .await;
    assert_eq!(verified.code, 0, "{verified:?}");
    assert!(verified.stdout.contains("matches"), "{verified:?}");

    let target = MongoServer::start().await;
    let restored = run(mongobak(
        None,
        home,
        &[
            "restore",
            "--file",
            path.to_str().unwrap(),
            "--uri",
            &target.uri(),
            "--oplog-replay",
        ],
    ))
    .await;
    assert_eq!(restored.code, 0, "{restored:?}");
    let progress: String = restored
        .stderr
        .lines()
        .filter(|l| l.starts_with("restoring "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_plain_progress(&progress);
    let total = bytes.len();
    assert!(
        progress.contains(&format!(": {total}/{total} bytes (100%)")),
        "{restored:?}"
    );
    let actual = snapshot(&target.client()).await.unwrap();
    // SecantusDB takes users back only through createUser, with a password.
    let diff = differences(&expected, &actual, &["admin.system.users"]);
    assert!(diff.is_empty(), "{diff:#?}");
}

/// The value of a counter in the server's /metrics.
async fn counter(http: &Http, addr: SocketAddr, name: &str) -> u64 {
    let metrics = http.get(&format!("http://{addr}/metrics")).await.unwrap();
    String::from_utf8_lossy(&metrics.body)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_download_resumes_and_a_damaged_file_is_kept_aside() {
    let mongo = MongoServer::start().await;
    // About 3 MiB that gzip cannot shrink.
    insert_random(&mongo.client(), "big", "docs", 3000, 1024).await;
    let expected = snapshot(&mongo.client()).await.unwrap();
    let (server, dir) = serve(&mongo.uri());
    let http = root_http();
    let backup = take_backup(&http, server.addr, INSTANCE).await;
    let home = dir.path();
    let addr = Some(server.addr);
    let out_dir = dir.path().join("files");
    let fetch = |extra: &[&str]| download(addr, home, (INSTANCE, &backup), &out_dir, extra);

    // A first run, slowed down, killed (by its pid) with part of the file on disk.
    let mut first = fetch(&["--limit-rate", "1M"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let part = eventually(Duration::from_secs(120), "a partial file", || async {
        files_under(&out_dir).into_iter().find(|f| {
            f.to_string_lossy().ends_with(".part")
                && std::fs::metadata(f).is_ok_and(|m| m.len() >= 256 * 1024)
        })
    })
    .await;
    first.kill().await.unwrap();
    let kept = std::fs::metadata(&part).unwrap().len();
    let task = &tasks(&http, server.addr, INSTANCE).await[0];
    let size = task["BackupSize"].as_u64().unwrap();
    assert!(kept < size, "killed half-way: {kept} of {size}");
    let file = PathBuf::from(part.to_string_lossy().strip_suffix(".part").unwrap());
    assert!(!file.exists(), "no file before it is whole");

    // The second run asks for the rest only.
    let served = counter(&http, server.addr, "mongobak_download_bytes_total").await;
    let second = run(fetch(&["--output", "json"])).await;
    assert_eq!(second.code, 0, "{second:?}");
    assert!(
        second.stderr.contains(&format!(
            "resuming cmgo-client01_0 from byte {kept} of {size}"
        )),
        "{second:?}"
    );
    assert_plain_progress(&second.stderr);
    let served_now = counter(&http, server.addr, "mongobak_download_bytes_total").await;
    assert_eq!(
        served_now - served,
        size - kept,
        "only the missing bytes are sent"
    );
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(bytes.len() as u64, size);
    assert_eq!(sha256(&bytes), task["SHA256"].as_str().unwrap());
    assert_eq!(second.json()["Files"][0]["SHA256"], sha256(&bytes));
    assert!(!part.exists());
    check_archive(&bytes, &expected).unwrap();

    // The server's copy damaged: the bytes are kept aside as .bad, status 6,
    // and no file is reported.
    let store = store_of(dir.path(), &dir.path().join("data"));
    let name = file.file_name().unwrap().to_str().unwrap();
    let stored = objects_under(&store, "downloads/")
        .await
        .into_iter()
        .find(|path| path.ends_with(&format!("/{name}")))
        .expect("the packaged file in the blob store");
    let mut damaged = store.get(&stored).await.unwrap().to_vec();
    damaged[(size / 2) as usize] ^= 0xff;
    store.put(&stored, damaged.clone()).await.unwrap();
    let elsewhere = dir.path().join("elsewhere");
    let third = run(download(
        addr,
        home,
        (INSTANCE, "latest"),
        &elsewhere,
        &["--quiet"],
    ))
    .await;
    third.assert_failed(6, "checksum mismatch");
    assert!(third.stderr.contains(&format!("{name}.bad")), "{third:?}");
    assert_eq!(
        std::fs::read(elsewhere.join(format!("{name}.bad"))).unwrap(),
        damaged
    );
    assert_eq!(
        files_under(&elsewhere),
        vec![elsewhere.join(format!("{name}.bad"))],
        "nothing else: no file, no .part, no .sha256"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_has_its_exit_status_and_one_line() {
    // The instance's server is not there: a backup of it fails fast.
    let nowhere = format!(
        "mongodb://127.0.0.1:{}/?directConnection=true&serverSelectionTimeoutMS=300&connectTimeoutMS=300",
        free_port()
    );
    let (server, dir) = serve(&nowhere);
    let home = dir.path();
    let addr = Some(server.addr);
    let list = ["backup", "list", "--instance", INSTANCE];

    // Server unreachable.
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut command = mongobak(None, home, &list);
    command.env("MONGOBAK_ENDPOINT", &endpoint);
    run(command)
        .await
        .assert_failed(3, &format!("cannot reach mongobak at {endpoint}"));

    // Authentication: a wrong secret, an unknown SecretId, no keys at all.
    let mut command = mongobak(addr, home, &list);
    command.env("TENCENTCLOUD_SECRET_KEY", "not-the-key");
    let ran = run(command).await;
    ran.assert_failed(4, "authentication failed: AuthFailure.SignatureFailure: ");
    assert!(ran.stderr.contains("(RequestId "), "{ran:?}");
    let mut command = mongobak(addr, home, &list);
    command.env(
        "TENCENTCLOUD_SECRET_ID",
        "AKIDunknown0000000000000000000000000",
    );
    run(command)
        .await
        .assert_failed(4, "AuthFailure.SecretIdNotFound");
    let mut command = mongobak(addr, home, &list);
    command.env_remove("TENCENTCLOUD_SECRET_ID");
    run(command).await.assert_failed(4, "no credentials");

    // No such instance, backup or replica set.
    let unknown = ["backup", "list", "--instance", "cmgo-nothere1"];
    run(mongobak(addr, home, &unknown))
        .await
        .assert_failed(5, "InvalidParameterValue.NotFoundInstance");
    for backup in ["cmgo-nothere1_2026-01-01 00:00", "latest"] {
        run(download(addr, home, ("cmgo-nothere1", backup), home, &[]))
            .await
            .assert_failed(5, "cmgo-nothere1");
    }
    let fetch =
        |backup: &str, extra: &[&str]| download(addr, home, (INSTANCE, backup), home, extra);
    run(fetch("cmgo-client01_2026-01-01 00:00", &[]))
        .await
        .assert_failed(5, "InvalidParameterValue.BackupFileNotFound");
    run(fetch("latest", &[]))
        .await
        .assert_failed(5, "instance cmgo-client01 has no finished backup");
    run(fetch(
        "cmgo-client01_2026-01-01 00:00",
        &["--replica-set", "cmgo-client01_7"],
    ))
    .await
    .assert_failed(5, "InvalidParameterValue.ReplicaNotFound");

    // A backup that fails on the server.
    let ran = run(mongobak(
        addr,
        home,
        &[
            "backup",
            "create",
            "--instance",
            INSTANCE,
            "--wait",
            "--quiet",
        ],
    ))
    .await;
    ran.assert_failed(7, "the backup of cmgo-client01 failed (failed): ");

    // The usage itself.
    assert_eq!(run(mongobak(addr, home, &["download"])).await.code, 2);

    // tccli profiles: keys, region and endpoint from ~/.tccli.
    let profiles = home.join(".tccli");
    std::fs::create_dir_all(&profiles).unwrap();
    let profile = |name: &str, key: &str| {
        std::fs::write(
            profiles.join(format!("{name}.credential")),
            format!(r#"{{"secretId": "{SECRET_ID}", "secretKey": "{key}"}}"#),
        )
        .unwrap();
        std::fs::write(
            profiles.join(format!("{name}.configure")),
            format!(
                r#"{{"_sys_param": {{"region": "{REGION}", "output": "json"}},
                    "mongodb": {{"endpoint": "http://{}", "version": "2019-07-25"}}}}"#,
                server.addr
            ),
        )
        .unwrap();
    };
    profile("good", SECRET_KEY);
    profile("bad", "not-the-key");
    let with_profile = |name: &str| {
        let mut command = mongobak(
            None,
            home,
            &[
                "backup",
                "list",
                "--instance",
                INSTANCE,
                "--profile",
                name,
                "--output",
                "json",
            ],
        );
        for var in [
            "TENCENTCLOUD_SECRET_ID",
            "TENCENTCLOUD_SECRET_KEY",
            "TENCENTCLOUD_REGION",
        ] {
            command.env_remove(var);
        }
        command
    };
    let ran = run(with_profile("good")).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(ran.json()["TotalCount"], 0, "{ran:?}");
    run(with_profile("bad"))
        .await
        .assert_failed(4, "AuthFailure.SignatureFailure");
    run(with_profile("absent"))
        .await
        .assert_failed(4, "no credentials");
    // The default profile when the environment has no keys.
    std::fs::copy(
        profiles.join("good.credential"),
        profiles.join("default.credential"),
    )
    .unwrap();
    std::fs::copy(
        profiles.join("good.configure"),
        profiles.join("default.configure"),
    )
    .unwrap();
    let mut command = mongobak(None, home, &list);
    command.env_remove("TENCENTCLOUD_SECRET_ID");
    let ran = run(command).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(ran.stdout.starts_with("NAME "), "{ran:?}");
}

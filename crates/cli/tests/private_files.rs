//! A real `mongobak serve`, started with a umask that lets everyone read
//! everything, keeps every file it writes to its owner: the data folder
//! `0700`; the metadata database with its WAL and SHM files, the generated
//! keys, backup segments and manifests, download files and temporaries
//! `0600`. An install whose files others could read is tightened at start,
//! and a configuration file with secrets that others may read is named in
//! a warning.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use mongobak_testkit::MongoServer;
use serde_json::json;

/// Starts `mongobak serve` with the process umask `mask`.
fn start_with_umask(config: &Path, log: &Path, mask: libc::mode_t) -> Mongobak {
    Mongobak::start_with(config, log, |command| {
        // SAFETY: umask is async-signal-safe and touches no memory.
        unsafe {
            command.pre_exec(move || {
                libc::umask(mask);
                Ok(())
            });
        }
    })
}

/// Every file and folder under `root` (itself included) with its mode.
fn modes_under(root: &Path) -> Vec<(PathBuf, u32)> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|entry| {
            let entry = entry.unwrap();
            let mode = entry.metadata().unwrap().permissions().mode() & 0o7777;
            (entry.path().to_path_buf(), mode)
        })
        .collect()
}

/// Asserts that nothing under `root` is open to the group or others.
fn assert_private(root: &Path) {
    let open: Vec<String> = modes_under(root)
        .into_iter()
        .filter(|(_, mode)| mode & 0o077 != 0)
        .map(|(path, mode)| format!("{} {mode:o}", path.display()))
        .collect();
    assert!(open.is_empty(), "readable by others: {open:#?}");
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Whether the suite runs this server's metadata on SQLite in its folder
/// and its storage in a folder (not PostgreSQL, not S3).
fn local_metadata() -> bool {
    std::env::var("MONGOBAK_TEST_METADATA").as_deref() != Ok("postgres")
}
fn local_storage() -> bool {
    std::env::var("MONGOBAK_TEST_STORAGE").as_deref() != Ok("s3")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_the_server_writes_is_its_owners_whatever_the_umask() {
    let mongo = MongoServer::start().await;
    insert_random(&mongo.client(), "shop", "orders", 50, 2000).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config_path = dir.path().join("mongobak.toml");
    std::fs::write(
        &config_path,
        config(&data, "cmgo-priv0001", &mongo.uri(), ""),
    )
    .unwrap();
    std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o600)).unwrap();

    let server = start_with_umask(&config_path, &dir.path().join("serve.log"), 0o000);
    let http = root_http();
    let backup = take_backup(&http, server.addr, "cmgo-priv0001").await;
    create_task(&http, server.addr, "cmgo-priv0001", &backup).await;
    let task = eventually(Duration::from_secs(120), "the download file", || async {
        tasks(&http, server.addr, "cmgo-priv0001")
            .await
            .into_iter()
            .find(|t| t["Status"] == 2)
    })
    .await;
    let url = task["Url"].as_str().unwrap();
    assert_eq!(http.get(url).await.unwrap().status, 200);

    assert_eq!(mode_of(&data), 0o700);
    assert_eq!(mode_of(&data.join("url-signing.key")), 0o600);
    if local_metadata() {
        for file in ["meta.db", "meta.db-wal", "meta.db-shm"] {
            assert_eq!(mode_of(&data.join(file)), 0o600, "{file}");
        }
    }
    if local_storage() {
        let files: Vec<PathBuf> = modes_under(&data.join("blobs"))
            .into_iter()
            .map(|(path, _)| path)
            .filter(|path| path.is_file())
            .collect();
        for part in ["/backups/", "/downloads/"] {
            assert!(
                files.iter().any(|f| f.display().to_string().contains(part)),
                "no file under {part}: {files:?}"
            );
        }
        assert!(data.join("blobs.tmp").is_dir(), "the temporary folder");
    }
    assert_private(&data);
    drop(server);

    // An older install, readable by all, and a configuration file holding
    // a secret key that others may read.
    let opened = modes_under(&data);
    for (path, mode) in &opened {
        let open = if path.is_dir() { 0o755 } else { 0o644 };
        assert_eq!(mode & 0o077, 0);
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(open)).unwrap();
    }
    std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let log = dir.path().join("again.log");
    let server = start_with_umask(&config_path, &log, 0o022);
    let listed = http
        .call(
            server.addr,
            "DescribeDBBackups",
            json!({"InstanceId": "cmgo-priv0001"}),
        )
        .await;
    assert_eq!(listed["TotalCount"], 1, "{listed}");
    assert_private(&data);
    let lines = server.log_lines();
    let tightened: Vec<_> = lines
        .iter()
        .filter(|l| message(l).contains("restricted to their owner"))
        .collect();
    assert_eq!(tightened.len(), 1, "{}", server.log_tail());
    // Every one opened above (with PostgreSQL and S3, the data folder
    // holds only the URL signing key).
    assert_eq!(
        tightened[0]["fields"]["tightened"].as_u64(),
        Some(opened.len() as u64),
        "{:?}",
        tightened[0]
    );
    let warned = lines
        .iter()
        .find(|l| message(l).contains("the configuration file holds secrets"))
        .unwrap_or_else(|| panic!("no warning: {}", server.log_tail()));
    assert_eq!(
        warned["fields"]["path"],
        config_path.display().to_string(),
        "{warned}"
    );
    assert!(
        warned["fields"]["secrets"]
            .as_str()
            .unwrap()
            .contains("accounts.secret_key"),
        "{warned}"
    );
    drop(server);

    // Private again: no warning, nothing to tighten.
    std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let server = start_with_umask(&config_path, &dir.path().join("third.log"), 0o022);
    let quiet = server.log_lines().iter().all(|l| {
        !message(l).contains("the configuration file holds secrets")
            && !message(l).contains("restricted to their owner")
    });
    assert!(quiet, "{}", server.log_tail());
}

/// The generated root account's keys and their folder, made by
/// `mongobak credentials` on a fresh install.
#[test]
fn generated_keys_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh/data");
    let config_path = dir.path().join("mongobak.toml");
    std::fs::write(
        &config_path,
        format!("[server]\ndata_dir = \"{}\"\n", data.display()),
    )
    .unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mongobak"));
    command.arg("credentials").arg("--config").arg(&config_path);
    // SAFETY: umask is async-signal-safe and touches no memory.
    unsafe {
        command.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("TENCENTCLOUD_SECRET_ID"));
    assert_eq!(mode_of(&data), 0o700);
    assert_eq!(mode_of(&data.join("credentials.toml")), 0o600);
    assert_private(&dir.path().join("fresh"));
}

//! Shared by the tests that run the real `mongobak serve` binary: its
//! configuration and root account, the child process (stopped by its pid,
//! also on panic), and checks of a downloaded archive against the source
//! server. API calls, GETs and waits come from `mongobak_testkit`.

// Each test binary uses a part of this module and of its re-exports.
#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mongobak_archive::{gunzip, ArchiveReader, Event};
use mongobak_blob::{BlobStore, StorageCredentials, StorageOptions};
use mongobak_testkit::snapshot::NamespaceState;
use mongobak_testkit::storage::{self, keyed_storage, keyed_storage_env};
use mongobak_testkit::wait::POLL;
use mongodb::bson::{doc, Binary, Document};
use rand::RngCore;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use mongobak_testkit::api::{
    code_of, create_task, take_backup, tasks, Fetched, Http, SignedCall,
};
pub use mongobak_testkit::wait::{eventually, Deadline};

/// The root account of every test configuration.
pub const UIN: &str = "100000000001";
pub const SECRET_ID: &str = "AKIDcliTest0000000000000000000000001";
pub const SECRET_KEY: &str = "cliTestSecretKey000000000000001";
pub const REGION: &str = "ap-guangzhou";

/// How long a server may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A configuration: one root account, one replica set instance `instance`
/// on `uri`, data in `data_dir`, and the `extra` TOML tables.
pub fn config(data_dir: &Path, instance: &str, uri: &str, extra: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
data_dir = "{data_dir}"

{extra}

[[accounts]]
app_id = 1250000001
uin = "{UIN}"
secret_id = "{SECRET_ID}"
secret_key = "{SECRET_KEY}"

[[instances]]
id = "{instance}"
name = "{instance}"
region = "{REGION}"
owner_uin = "{UIN}"
replica_sets = ["{uri}"]
"#,
        data_dir = data_dir.display()
    )
}

/// A running `mongobak serve`, killed (SIGKILL, by pid) when dropped.
pub struct Mongobak {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where its admin listener listens, when `[server] admin_listen` is set.
    pub admin: Option<SocketAddr>,
    /// Its log (JSON lines on stderr).
    pub log: PathBuf,
}

impl Mongobak {
    /// Starts `mongobak serve --config <config>` with its log in `log`, and
    /// waits for its listening line.
    pub fn start(config: &Path, log: &Path) -> Mongobak {
        Self::start_with(config, log, |_| {})
    }

    /// As [`start`](Self::start), with `prepare` run on the command
    /// before it is spawned.
    pub fn start_with(config: &Path, log: &Path, prepare: impl FnOnce(&mut Command)) -> Mongobak {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mongobak"));
        command
            .args(["serve", "--log-format", "json", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("a log file"));
        // MONGOBAK_* variables would override the file.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("MONGOBAK_") {
                command.env_remove(name);
            }
        }
        // Automatic backups would start at the default rule's hour in the
        // middle of a test; the scheduler has tests of its own.
        command.env("MONGOBAK_BACKUPS_AUTOMATIC", "false");
        // A backup fails at its first error, as the tests of failures
        // expect; the runner's retries have tests of their own.
        command.env("MONGOBAK_BACKUPS_ATTEMPTS", "1");
        // The suite's PostgreSQL configuration: the metadata of this data
        // folder in a database of its own; and its storage: a prefix of the
        // suite's S3 bucket. A test that chose either keeps its choice.
        let data_dir = config.parent().unwrap_or(Path::new("."));
        let text = std::fs::read_to_string(config).unwrap_or_default();
        if !text.contains("[metadata]") {
            if let Some(url) =
                mongobak_testkit::postgres::keyed_database(&data_dir.display().to_string())
            {
                command.env("MONGOBAK_METADATA_URL", url);
            }
        }
        if !text.contains("[storage]") {
            for (name, value) in keyed_storage_env(&data_dir.display().to_string()) {
                command.env(name, value);
            }
        }
        prepare(&mut command);
        let mut child = command.spawn().expect("mongobak starts");
        let stdout = child.stdout.take().expect("a stdout pipe");
        let (lines, listening) = mpsc::channel();
        std::thread::spawn(move || {
            // The admin listener's line, when there is one, comes first.
            let mut admin = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(url) = line.strip_prefix("mongobak admin listening on http://") {
                    admin = Some(url.trim().to_string());
                } else if let Some(url) = line.strip_prefix("mongobak listening on http://") {
                    let _ = lines.send((url.trim().to_string(), admin.take()));
                }
            }
        });
        let mut server = Mongobak {
            child: Some(child),
            addr: "127.0.0.1:1".parse().unwrap(),
            admin: None,
            log: log.to_path_buf(),
        };
        match listening.recv_timeout(START_TIMEOUT) {
            Ok((addr, admin)) => {
                server.addr = addr.parse().expect("an address");
                server.admin = admin.map(|a| a.parse().expect("an admin address"));
            }
            Err(_) => panic!(
                "mongobak did not print its address within {START_TIMEOUT:?}:\n{}",
                server.log_tail()
            ),
        }
        server
    }

    /// Stops the process as an operator would (SIGTERM, by pid) and waits
    /// for it to exit, at most `START_TIMEOUT`.
    pub fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill only sends a signal to the child's pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(POLL);
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("mongobak did not stop within {START_TIMEOUT:?} of SIGTERM");
    }

    /// Kills the process at once (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its log lines, parsed.
    pub fn log_lines(&self) -> Vec<Value> {
        log_lines(&self.log)
    }

    /// The end of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(6000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].to_string()
    }
}

impl Drop for Mongobak {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The JSON lines of a log file.
pub fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The `fields.message` of a JSON log line.
pub fn message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or_default()
}

/// Signed calls as the root account of every test configuration, in its
/// region.
pub fn root_http() -> Http {
    Http::new(SECRET_ID, SECRET_KEY, REGION)
}

/// `url` with its host and port replaced by `addr`'s (a URL handed out by
/// an earlier process of the same data folder).
pub fn on_server(url: &str, addr: SocketAddr) -> String {
    let rest = url
        .strip_prefix("http://")
        .and_then(|r| r.split_once('/'))
        .map(|(_, path)| path)
        .unwrap_or_else(|| panic!("not an http URL: {url}"));
    format!("http://{addr}/{rest}")
}

/// The hex SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Inserts `count` documents `{_id, n, pad}` into `db.coll`, `pad` being
/// `pad_bytes` random bytes (incompressible) in batches.
pub async fn insert_random(
    client: &mongodb::Client,
    db: &str,
    coll: &str,
    count: usize,
    pad_bytes: usize,
) {
    let collection = client.database(db).collection::<Document>(coll);
    let mut next = 0;
    while next < count {
        let batch: Vec<Document> = (next..count.min(next + 2000))
            .map(|i| {
                let mut pad = vec![0u8; pad_bytes];
                rand::rng().fill_bytes(&mut pad);
                doc! {"_id": i as i64, "n": i as i64, "pad": Binary {
                    subtype: mongodb::bson::spec::BinarySubtype::Generic,
                    bytes: pad,
                }}
            })
            .collect();
        next += batch.len();
        collection.insert_many(batch).await.expect("inserted");
    }
}

/// Checks a downloaded file: a gzipped mongodump archive whose every
/// namespace holds exactly the documents of `expected` (a snapshot of the
/// source), with the oplog last. Returns a description of the first
/// problem.
pub fn check_archive(
    file: &[u8],
    expected: &BTreeMap<String, NamespaceState>,
) -> Result<(), String> {
    let mut reader = ArchiveReader::new(gunzip(file)).map_err(|e| e.to_string())?;
    let mut documents: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    let mut finished = Vec::new();
    let mut current = String::new();
    while let Some(event) = reader.next_event().map_err(|e| e.to_string())? {
        match event {
            Event::SegmentStart { namespace } => current = namespace.to_string(),
            Event::Document(bytes) => documents.entry(current.clone()).or_default().push(bytes),
            Event::NamespaceEnd { namespace, .. } => finished.push(namespace.to_string()),
        }
    }
    if finished.last().map(String::as_str) != Some(".oplog") {
        return Err(format!("the oplog is not last: {finished:?}"));
    }
    for (ns, state) in expected {
        let mut got = documents.remove(ns).unwrap_or_default();
        got.sort();
        if got != state.documents {
            return Err(format!(
                "{ns}: {} documents in the file, {} in the source",
                got.len(),
                state.documents.len()
            ));
        }
        if !finished.contains(ns) {
            return Err(format!("{ns} never reached EOF"));
        }
    }
    documents.remove(".oplog");
    if !documents.is_empty() {
        return Err(format!(
            "namespaces not in the source: {:?}",
            documents.keys()
        ));
    }
    Ok(())
}

/// Every regular file under `dir`, recursively (none when it is missing).
/// The storage of the servers started with the configuration in
/// `config_dir` and data in `data_dir`: `data_dir/blobs`, or in the S3 pass
/// the same bucket prefix [`Mongobak::start`] gave them.
pub fn store_of(config_dir: &Path, data_dir: &Path) -> BlobStore {
    match keyed_storage(&config_dir.display().to_string()) {
        Some(url) => {
            let options = StorageOptions {
                credentials: Some(StorageCredentials {
                    access_key_id: storage::ACCESS_KEY_ID.into(),
                    secret_access_key: storage::SECRET_ACCESS_KEY.into(),
                    session_token: None,
                }),
                ..StorageOptions::default()
            };
            BlobStore::open_with(&url, &options).expect("the suite's S3 storage")
        }
        None => BlobStore::open(&format!("file://{}", data_dir.join("blobs").display()))
            .expect("the data folder's storage"),
    }
}

/// The paths of every object under `prefix` in `store`, sorted.
pub async fn objects_under(store: &BlobStore, prefix: &str) -> Vec<String> {
    let mut paths: Vec<String> = store
        .list(prefix)
        .await
        .expect("the store lists")
        .into_iter()
        .map(|b| b.path)
        .collect();
    paths.sort();
    paths
}

pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() => out.push(path),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

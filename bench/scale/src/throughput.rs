//! Download-task throughput of a cluster of `mongobak serve` nodes that
//! share one PostgreSQL catalog and one storage folder.
//!
//! A download task packages one replica set of one backup, and a backup
//! has one task per replica set at a time (a second request returns the
//! first task), so the instance is registered with `--tasks` replica sets,
//! every one of them the same source server: one backup then yields
//! `--tasks` independent tasks of the same size. Per phase: a fresh
//! database and folder, the nodes started one after another, one backup
//! (not timed), then the tasks created through the nodes in turn and timed
//! from the first `CreateBackupDownloadTask` until every task lists Status
//! 2 (done). Afterwards every file is fetched through its URL and checked
//! against its SHA-256.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::api::{Api, APP_ID, REGION, SECRET_ID, SECRET_KEY, UIN};
use crate::postgres::Database;
use crate::process::{log_tail, machine_busy, process_cpu, Node};

/// The instance the nodes back up.
pub const INSTANCE: &str = "cmgo-scale001";
/// Shared by the nodes, so any node's URL is valid on every node.
const SIGNING_KEY: &str = "bench-scale-url-signing-key-00000000000000";
/// Pause between two listings of the tasks.
const POLL: Duration = Duration::from_millis(50);
/// Pause between two looks at the backup.
const BACKUP_POLL: Duration = Duration::from_millis(200);

/// What every phase shares.
pub struct Settings {
    /// The `mongobak` binary.
    pub mongobak: PathBuf,
    /// The source's URI, one replica set per task.
    pub source_uri: String,
    /// Tasks per phase.
    pub tasks: usize,
    /// Download workers per node.
    pub workers: usize,
    /// The PostgreSQL server's admin URL.
    pub postgres: String,
    /// Limit of the backup, and of the tasks, per phase.
    pub timeout: Duration,
    /// The run's folder (phase folders go inside).
    pub dir: PathBuf,
    /// Where the nodes' logs go.
    pub log_dir: PathBuf,
}

/// The figures of one phase.
pub struct Phase {
    /// Nodes that ran.
    pub nodes: usize,
    /// Seconds the backup took (queue to success, as polled).
    pub backup_seconds: f64,
    /// The backup's stored size, KB (`DescribeDBBackups`).
    pub backup_kb: u64,
    /// Seconds creating the tasks took.
    pub create_seconds: f64,
    /// Seconds from the first create until every task was done.
    pub seconds: f64,
    /// Bytes of all the packaged files.
    pub file_bytes: u64,
    /// Files published per node (from their logs).
    pub per_node: Vec<usize>,
    /// Packaging attempts started, all nodes (from their logs).
    pub attempts: usize,
    /// CPU time of the nodes over the timed part.
    pub node_cpu: Duration,
    /// CPU time of the harness over the timed part.
    pub harness_cpu: Duration,
    /// CPU time of the whole machine over the timed part.
    pub machine_cpu: Duration,
    /// Replica sets whose task was seen waiting to retry.
    pub retried: usize,
}

impl Phase {
    /// Tasks done per second.
    pub fn tasks_per_second(&self, tasks: usize) -> f64 {
        tasks as f64 / self.seconds
    }
}

/// Runs one phase on `nodes` nodes.
pub async fn run_phase(s: &Settings, api: &Api, nodes: usize) -> anyhow::Result<Phase> {
    let database = Database::create(&s.postgres, &format!("{nodes}node")).await?;
    let dir = s.dir.join(format!("phase-{nodes}node"));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("mongobak.toml");
    std::fs::write(&config, config_text(s, &dir, &database.url)?)?;
    eprintln!(
        "{nodes} node(s): database {}, storage {}",
        database.name(),
        dir.join("storage").display()
    );
    let mut cluster = Vec::with_capacity(nodes);
    for n in 0..nodes {
        let log = s.log_dir.join(format!("phase-{nodes}node-node{n}.log"));
        let node = Node::start(&s.mongobak, &config, &log, &format!("node {n}"))?;
        cluster.push(node);
    }
    let result = measure(s, api, &mut cluster).await;
    if result.is_err() {
        for (n, node) in cluster.iter().enumerate() {
            eprintln!(
                "--- node {n} (pid {}), last lines of {}:\n{}",
                node.proc.pid(),
                node.log.display(),
                log_tail(&node.log, 15)
            );
        }
    }
    // The nodes stop before their database goes.
    drop(cluster);
    drop(database);
    result
}

async fn measure(s: &Settings, api: &Api, cluster: &mut [Node]) -> anyhow::Result<Phase> {
    let addrs: Vec<SocketAddr> = cluster.iter().map(|n| n.addr).collect();
    let (backup_name, backup_seconds, backup_kb) = take_backup(s, api, cluster).await?;
    eprintln!(
        "{} node(s): backup {backup_name:?} of {} replica sets in {backup_seconds:.1} s ({:.1} MB stored)",
        cluster.len(),
        s.tasks,
        backup_kb as f64 * 1024.0 / 1e6
    );

    // Every node answers once before the clock starts (connections,
    // caches).
    for addr in &addrs {
        list_tasks(api, *addr, &backup_name).await?;
    }
    let pids: Vec<u32> = cluster.iter().map(|n| n.proc.pid()).collect();
    let node_cpu_before: Duration = pids.iter().map(|p| process_cpu(*p)).sum();
    let harness_before = process_cpu(std::process::id());
    let machine_before = machine_busy();
    let started = Instant::now();
    for i in 0..s.tasks {
        let created = api
            .call(
                addrs[i % addrs.len()],
                "CreateBackupDownloadTask",
                json!({
                    "InstanceId": INSTANCE,
                    "BackupName": backup_name,
                    "BackupSets": [{"ReplicaSetId": replica_set(i)}],
                }),
            )
            .await?;
        let status = created["Tasks"][0]["Status"].as_i64();
        if !matches!(status, Some(0..=2)) {
            bail!("CreateBackupDownloadTask for {}: {created}", replica_set(i));
        }
    }
    let create_seconds = started.elapsed().as_secs_f64();
    let mut retried = BTreeSet::new();
    let mut polls = 0;
    let tasks = loop {
        let tasks = list_tasks(api, addrs[polls % addrs.len()], &backup_name).await?;
        polls += 1;
        if let Some(failed) = tasks.iter().find(|t| t["Status"] == 3) {
            bail!(
                "the task of {} failed: {}",
                failed["ReplicaSetId"],
                failed["FailureReason"]
            );
        }
        for t in tasks.iter().filter(|t| t["Status"] == 4) {
            retried.insert(t["ReplicaSetId"].to_string());
        }
        let done = tasks.iter().filter(|t| t["Status"] == 2).count();
        if tasks.len() == s.tasks && done == s.tasks {
            break tasks;
        }
        for node in cluster.iter_mut() {
            node.proc.check_alive()?;
        }
        if started.elapsed() > s.timeout {
            bail!(
                "{done} of {} tasks done after {:?} (--timeout-secs)",
                s.tasks,
                s.timeout
            );
        }
        tokio::time::sleep(POLL).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    let node_cpu = pids
        .iter()
        .map(|p| process_cpu(*p))
        .sum::<Duration>()
        .saturating_sub(node_cpu_before);
    let harness_cpu = process_cpu(std::process::id()).saturating_sub(harness_before);
    let machine_cpu = machine_busy().saturating_sub(machine_before);

    let file_bytes = check_files(api, &tasks, s.tasks).await?;
    // Stopped first, so that their logs are complete.
    for node in cluster.iter_mut() {
        node.proc.kill();
    }
    let counts: Vec<(usize, usize)> = cluster.iter().map(Node::packaging).collect();
    let per_node = counts.iter().map(|(_, done)| *done).collect();
    let attempts = counts.iter().map(|(started, _)| started).sum();
    Ok(Phase {
        nodes: cluster.len(),
        backup_seconds,
        backup_kb,
        create_seconds,
        seconds,
        file_bytes,
        per_node,
        attempts,
        node_cpu,
        harness_cpu,
        machine_cpu,
        retried: retried.len(),
    })
}

/// `<instance>_<n>`.
fn replica_set(n: usize) -> String {
    format!("{INSTANCE}_{n}")
}

/// Takes one backup through the first node and waits for it; returns its
/// name, the seconds it took and its stored KB.
async fn take_backup(
    s: &Settings,
    api: &Api,
    cluster: &mut [Node],
) -> anyhow::Result<(String, f64, u64)> {
    let addr = cluster[0].addr;
    let started = Instant::now();
    let created = api
        .call(
            addr,
            "CreateBackupDBInstance",
            json!({"InstanceId": INSTANCE, "BackupMethod": 0, "BackupRemark": "bench-scale"}),
        )
        .await?;
    let request = created["AsyncRequestId"]
        .as_str()
        .with_context(|| format!("no AsyncRequestId: {created}"))?
        .to_string();
    let name = loop {
        let info = api
            .call(
                addr,
                "DescribeAsyncRequestInfo",
                json!({"AsyncRequestId": request}),
            )
            .await?;
        match info["Status"].as_str() {
            Some("success") => {
                break info["BackupName"]
                    .as_str()
                    .with_context(|| format!("no BackupName: {info}"))?
                    .to_string()
            }
            Some("initial" | "running") => {}
            _ => bail!("the backup failed: {info}"),
        }
        for node in cluster.iter_mut() {
            node.proc.check_alive()?;
        }
        if started.elapsed() > s.timeout {
            bail!(
                "the backup was not done after {:?} (--timeout-secs)",
                s.timeout
            );
        }
        tokio::time::sleep(BACKUP_POLL).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    let listed = api
        .call(
            addr,
            "DescribeDBBackups",
            json!({"InstanceId": INSTANCE, "BackupMethod": 0, "Limit": 100}),
        )
        .await?;
    let backup = listed["BackupList"]
        .as_array()
        .and_then(|list| list.iter().find(|b| b["BackupName"] == name.as_str()))
        .with_context(|| format!("DescribeDBBackups does not list {name:?}: {listed}"))?;
    let kb = backup["BackupSize"].as_u64().unwrap_or(0);
    Ok((name, seconds, kb))
}

/// Every download task of the backup, page by page.
async fn list_tasks(api: &Api, addr: SocketAddr, backup: &str) -> anyhow::Result<Vec<Value>> {
    let mut tasks = Vec::new();
    loop {
        let page = api
            .call(
                addr,
                "DescribeBackupDownloadTask",
                json!({
                    "InstanceId": INSTANCE,
                    "BackupName": backup,
                    "Limit": 100,
                    "Offset": tasks.len(),
                }),
            )
            .await?;
        let listed = page["Tasks"].as_array().cloned().unwrap_or_default();
        let total = page["TotalCount"].as_u64().unwrap_or(0) as usize;
        let empty = listed.is_empty();
        tasks.extend(listed);
        if empty || tasks.len() >= total {
            return Ok(tasks);
        }
    }
}

/// Fetches every task's file through its URL and checks its length and
/// SHA-256 against the task's; returns the bytes in all.
async fn check_files(api: &Api, tasks: &[Value], expected: usize) -> anyhow::Result<u64> {
    let sets: BTreeSet<&str> = tasks
        .iter()
        .filter_map(|t| t["ReplicaSetId"].as_str())
        .collect();
    if sets.len() != expected {
        bail!(
            "{} distinct replica sets among the done tasks, expected {expected}",
            sets.len()
        );
    }
    let mut bytes = 0;
    for task in tasks {
        let url = task["Url"].as_str().unwrap_or_default();
        let size = task["BackupSize"].as_u64().unwrap_or(0);
        let sha256 = task["SHA256"].as_str().unwrap_or_default();
        if url.is_empty() || size == 0 || sha256.len() != 64 {
            bail!("a done task without a file: {task}");
        }
        let (got, digest) = api.fetch_sha256(url).await?;
        if got != size || digest != sha256 {
            bail!(
                "the file of {} has {got} bytes, SHA-256 {digest}; the task says {size}, {sha256}",
                task["ReplicaSetId"]
            );
        }
        bytes += size;
    }
    Ok(bytes)
}

/// The nodes' configuration: one root account, the instance with one
/// replica set per task, the phase's database and storage folder, no
/// automatic backups, rate limits out of the way.
fn config_text(s: &Settings, dir: &Path, database_url: &str) -> anyhow::Result<String> {
    let quote = |text: &str| toml::Value::String(text.to_string()).to_string();
    let path = |p: &Path| -> anyhow::Result<String> {
        Ok(quote(p.to_str().context("the folder's path is not UTF-8")?))
    };
    let replica_sets = vec![quote(&s.source_uri); s.tasks].join(", ");
    let storage = format!(
        "file://{}",
        dir.join("storage")
            .to_str()
            .context("the folder's path is not UTF-8")?
    );
    Ok(format!(
        r#"[server]
listen = "127.0.0.1:0"
data_dir = {data_dir}

[metadata]
url = {metadata}

[storage]
url = {storage}

# The harness polls and creates tasks far faster than the default 20
# requests per second per account.
[rate_limits]
default = 1000000

[backups]
automatic = false
# One collection at a time per replica set: the backup dumps every replica
# set at once, all from the same source.
collection_concurrency = 1

[downloads]
workers = {workers}
url_signing_key = "{SIGNING_KEY}"

[[accounts]]
app_id = {APP_ID}
uin = "{UIN}"
secret_id = "{SECRET_ID}"
secret_key = "{SECRET_KEY}"

[[instances]]
id = "{INSTANCE}"
name = "bench-scale"
region = "{REGION}"
owner_uin = "{UIN}"
sharded = true
replica_sets = [{replica_sets}]
"#,
        data_dir = path(&dir.join("data"))?,
        metadata = quote(database_url),
        storage = quote(&storage),
        workers = s.workers,
    ))
}

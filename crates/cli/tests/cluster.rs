//! Several `mongobak serve` nodes sharing one PostgreSQL metadata store and
//! one storage: any node answers for the others' data, a node killed with
//! SIGKILL loses nothing, and the per-account rate limit and the memory of
//! used signatures hold across all of them together.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use futures::future::join_all;
use mongobak_testkit::postgres::TestDatabase;
use mongobak_testkit::snapshot::snapshot;
use mongobak_testkit::MongoServer;
use serde_json::{json, Value};

const INSTANCE: &str = "cmgo-clus0001";
const NODES: usize = 3;

/// `NODES` nodes on one PostgreSQL database and one data folder.
struct Cluster {
    nodes: Vec<Mongobak>,
    dir: tempfile::TempDir,
    _database: TestDatabase,
}

impl Cluster {
    /// Nodes for `INSTANCE` on `uri`, with `extra` TOML (tables after
    /// `[metadata]`).
    async fn start(uri: &str, extra: &str) -> Cluster {
        let database = TestDatabase::create().await;
        let dir = tempfile::tempdir().unwrap();
        let extra = format!("[metadata]\nurl = \"{}\"\n\n{extra}", database.url);
        let config = dir.path().join("mongobak.toml");
        std::fs::write(&config, common::config(dir.path(), INSTANCE, uri, &extra)).unwrap();
        let nodes = (0..NODES)
            .map(|n| Mongobak::start(&config, &dir.path().join(format!("node{n}.log"))))
            .collect();
        Cluster {
            nodes,
            dir,
            _database: database,
        }
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.addr).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_requests_over_three_nodes_within_a_second_accept_twenty() {
    let cluster = Cluster::start("mongodb://127.0.0.1:1/", "").await;
    let addrs = cluster.addrs();
    let http = root_http();
    // Warm the connections' first use out of the timed second.
    for addr in &addrs {
        let listed = http.call(*addr, "DescribeDBInstances", json!({})).await;
        assert_eq!(listed["TotalCount"], 1, "{listed}");
    }
    let started = std::time::Instant::now();
    let answers = join_all((0..60).map(|i| {
        let http = &http;
        let addr = addrs[i % NODES];
        async move {
            http.call(
                addr,
                "CreateBackupDownloadTask",
                json!({
                    "InstanceId": INSTANCE,
                    "BackupName": "no such backup",
                    "BackupSets": [{"ReplicaSetId": format!("{INSTANCE}_0")}],
                }),
            )
            .await
        }
    }))
    .await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(1),
        "the 60 requests took {elapsed:?}: not within one second"
    );
    let limited = answers
        .iter()
        .filter(|a| code_of(a) == Some("RequestLimitExceeded"))
        .count();
    // The others got past the limiter (and were refused for the backup).
    let passed: Vec<_> = answers
        .iter()
        .filter(|a| code_of(a) != Some("RequestLimitExceeded"))
        .collect();
    assert!(
        passed
            .iter()
            .all(|a| code_of(a) == Some("InvalidParameterValue.BackupFileNotFound")),
        "{passed:?}"
    );
    assert_eq!((passed.len(), limited), (20, 40), "{answers:?}");
    // Each node got 20 of the requests: a limiter per node would have let
    // all 60 through.
}

/// A request captured on its way to one node cannot be replayed, nor
/// re-aimed at another action, through any other node; identical read-only
/// polls still pass everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_used_on_one_node_is_refused_by_the_others() {
    let cluster = Cluster::start("mongodb://127.0.0.1:1/", "").await;
    let addrs = cluster.addrs();
    let http = root_http();

    let poll = http.sign_as_sdk(addrs[0], json!({"InstanceId": INSTANCE, "BackupMethod": 0}));
    for addr in &addrs {
        let listed = http.send_call(*addr, "DescribeDBBackups", &poll).await;
        assert_eq!(code_of(&listed), None, "{listed}");
    }
    for addr in &addrs[1..] {
        let re_aimed = http.send_call(*addr, "CreateBackupDBInstance", &poll).await;
        assert_eq!(
            code_of(&re_aimed),
            Some("AuthFailure.SignatureFailure"),
            "{re_aimed}"
        );
        assert!(re_aimed["Error"]["Message"]
            .to_string()
            .contains("replayed"));
    }

    let create = http.sign_as_sdk(
        addrs[0],
        json!({"InstanceId": INSTANCE, "BackupMethod": 0, "BackupRemark": "once"}),
    );
    let first = http
        .send_call(addrs[1], "CreateBackupDBInstance", &create)
        .await;
    assert_eq!(code_of(&first), None, "{first}");
    for addr in [addrs[2], addrs[0], addrs[1]] {
        let again = http
            .send_call(addr, "CreateBackupDBInstance", &create)
            .await;
        assert_eq!(
            code_of(&again),
            Some("AuthFailure.SignatureFailure"),
            "{again}"
        );
    }
}

/// Instances registered on the same server beside `INSTANCE`, so that
/// several backups run at once (one at a time per instance).
const MORE_INSTANCES: [&str; 4] = [
    "cmgo-clus0002",
    "cmgo-clus0003",
    "cmgo-clus0004",
    "cmgo-clus0005",
];
const TASKS: usize = 30;

fn more_instances_toml(uri: &str) -> String {
    MORE_INSTANCES
        .iter()
        .map(|id| {
            format!(
                "[[instances]]\nid = \"{id}\"\nname = \"{id}\"\nregion = \"{REGION}\"\n\
                 owner_uin = \"{UIN}\"\nreplica_sets = [\"{uri}\"]\n\n"
            )
        })
        .collect()
}

/// A task `node` has started packaging and not finished, per its log.
fn packaging_now(node: &Mongobak) -> Option<u64> {
    let mut open = std::collections::BTreeSet::new();
    for line in node.log_lines() {
        let id = line["fields"]["task_id"].as_u64();
        match (message(&line), id) {
            ("packaging started", Some(id)) => {
                open.insert(id);
            }
            (_, Some(id)) => {
                open.remove(&id);
            }
            _ => {}
        }
    }
    open.into_iter().next()
}

/// The download tasks of every instance, as one node lists them.
async fn all_tasks(http: &Http, addr: SocketAddr) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for instance in std::iter::once(INSTANCE).chain(MORE_INSTANCES) {
        for task in tasks(http, addr, instance).await {
            out.push((instance.to_string(), task));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_tasks_over_three_nodes_survive_a_node_killed_half_way() {
    let mongo = MongoServer::start().await;
    // About 2.5 MB of incompressible data: packaging one file takes a
    // noticeable fraction of a second, so the kill falls among them.
    insert_random(&mongo.client(), "shop", "orders", 50, 50_000).await;
    let expected = snapshot(&mongo.client()).await.unwrap();
    let uri = mongo.uri();
    let extra = format!(
        "[downloads]\nworkers = 2\nlease_secs = 5\n\n[rate_limits]\ndefault = 10000\n\n{}",
        more_instances_toml(&uri)
    );
    let mut cluster = Cluster::start(&uri, &extra).await;
    let addrs = cluster.addrs();
    let http = root_http();

    // 30 backups, 6 of each instance, asked of the nodes in turn; the
    // instances' backups run at once on whichever nodes claim them.
    let instances: Vec<&str> = std::iter::once(INSTANCE).chain(MORE_INSTANCES).collect();
    let mut backups = Vec::new();
    for round in 0..TASKS / instances.len() {
        let names = join_all(instances.iter().enumerate().map(|(i, instance)| {
            let http = &http;
            let addr = addrs[(round + i) % NODES];
            async move { take_backup(http, addr, instance).await }
        }))
        .await;
        backups.extend(instances.iter().map(|i| i.to_string()).zip(names));
    }
    assert_eq!(backups.len(), TASKS);

    // 30 download tasks, created through the nodes in turn.
    for (n, (instance, backup)) in backups.iter().enumerate() {
        create_task(&http, addrs[n % NODES], instance, backup).await;
    }
    // Node 0 is killed (SIGKILL) once a third of the tasks are done, in
    // the middle of packaging one.
    let deadline = Deadline::after(
        "a third of the tasks done, node 0 packaging",
        Duration::from_secs(120),
    );
    let cut_short = loop {
        let done = all_tasks(&http, addrs[1])
            .await
            .iter()
            .filter(|(_, t)| t["Status"] == 2)
            .count();
        if done >= TASKS / 3 {
            if let Some(task) = packaging_now(&cluster.nodes[0]) {
                cluster.nodes[0].kill();
                break task;
            }
        }
        deadline.tick().await;
    };
    let survivors = &addrs[1..];

    // Every task ends done, once, with a whole file, answered by any node.
    let deadline = Deadline::after("every task done", Duration::from_secs(180));
    let tasks = loop {
        let tasks = all_tasks(&http, survivors[0]).await;
        if tasks.len() == TASKS && tasks.iter().all(|(_, t)| t["Status"] == 2) {
            break tasks;
        }
        assert!(
            tasks.iter().all(|(_, t)| t["Status"] != 3),
            "a task failed: {tasks:?}"
        );
        deadline.tick().await;
    };
    let mut checked = BTreeMap::new();
    for (n, (_, task)) in tasks.iter().enumerate() {
        let url = on_server(
            task["Url"].as_str().unwrap(),
            survivors[n % survivors.len()],
        );
        let file = http.get(&url).await.expect("the download answers");
        assert_eq!(file.status, 200, "{url}");
        let sha = sha256(&file.body);
        assert_eq!(task["SHA256"], sha, "{task}");
        assert_eq!(task["BackupSize"], file.body.len() as u64, "{task}");
        if let Err(problem) = check_archive(&file.body, &expected) {
            panic!("the file of {task} is wrong: {problem}");
        }
        checked.insert(url, sha);
    }
    assert_eq!(checked.len(), TASKS);

    // Exactly once: each task was published by one node, one time.
    let mut published: BTreeMap<u64, usize> = BTreeMap::new();
    for node in &cluster.nodes {
        for line in node.log_lines() {
            if message(&line) == "packaging done" {
                let id = line["fields"]["task_id"].as_u64().unwrap();
                *published.entry(id).or_default() += 1;
            }
        }
    }
    assert_eq!(published.len(), TASKS, "{published:?}");
    assert!(
        published.contains_key(&cut_short),
        "task {cut_short}, cut short by the kill, was finished by another node"
    );
    assert!(published.values().all(|n| *n == 1), "{published:?}");
    // And one file per task is stored (attempts cut short by the kill are
    // not published, and are garbage for the janitor).
    let store = store_of(cluster.dir.path(), cluster.dir.path());
    let stored = objects_under(&store, "downloads/")
        .await
        .into_iter()
        .filter(|p| p.ends_with(".gz"))
        .count();
    assert!(stored >= TASKS, "{stored} files stored");
}

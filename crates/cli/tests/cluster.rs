//! Several `mongobak serve` nodes sharing one PostgreSQL metadata store:
//! any node answers for the others' data, and the per-account rate limit
//! holds across all of them together.

mod common;

use std::net::SocketAddr;

use common::*;
use futures::future::join_all;
use mongobak_testkit::postgres::TestDatabase;
use serde_json::json;

const INSTANCE: &str = "cmgo-clus0001";
const NODES: usize = 3;

/// `NODES` nodes on one PostgreSQL database and one data folder.
struct Cluster {
    nodes: Vec<Mongobak>,
    _database: TestDatabase,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let database = TestDatabase::create().await;
        let dir = tempfile::tempdir().unwrap();
        let extra = format!("[metadata]\nurl = \"{}\"\n", database.url);
        let config = dir.path().join("mongobak.toml");
        std::fs::write(
            &config,
            common::config(dir.path(), INSTANCE, "mongodb://127.0.0.1:1/", &extra),
        )
        .unwrap();
        let nodes = (0..NODES)
            .map(|n| Mongobak::start(&config, &dir.path().join(format!("node{n}.log"))))
            .collect();
        Cluster {
            nodes,
            _database: database,
            _dir: dir,
        }
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.addr).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_requests_over_three_nodes_within_a_second_accept_twenty() {
    let cluster = Cluster::start().await;
    let addrs = cluster.addrs();
    let http = Http::default();
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
        elapsed < std::time::Duration::from_secs(1),
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

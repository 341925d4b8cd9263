//! The listener of the real `mongobak serve` against slow, idle and too
//! many clients, its readiness with a free-space floor, and which
//! `/metrics` names instances: twenty clients trickling header bytes are
//! closed within the header read timeout while API calls and a download
//! go on as usual; a kept-alive connection left idle is closed after the
//! idle timeout; connections past the cap wait until one ends; `/readyz`
//! names a data folder short of free space; the API listener's `/metrics`
//! names no instance or account, the admin listener's does.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mongobak_testkit::{seed, MongoServer};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::*;

const INSTANCE: &str = "cmgo-listen01";
/// `[server]` keys of the test servers: short timeouts, so the test stays
/// fast.
const HEADER_SECS: u64 = 3;
const IDLE_SECS: u64 = 2;

fn serve(mongo_uri: &str, server_keys: &str) -> (Mongobak, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("mongobak.toml");
    std::fs::write(
        &config_path,
        config(&dir.path().join("data"), INSTANCE, mongo_uri, server_keys),
    )
    .unwrap();
    let server = Mongobak::start(&config_path, &dir.path().join("serve.log"));
    (server, dir)
}

/// Reads until the server closes the connection (or resets it); the time
/// that took, from `since`.
async fn closed_after(read: &mut (impl AsyncReadExt + Unpin), since: Instant) -> Duration {
    let mut buf = [0u8; 4096];
    loop {
        match read.read(&mut buf).await {
            Ok(0) | Err(_) => return since.elapsed(),
            Ok(_) => {}
        }
    }
}

/// A client that sends a request head one byte a second and never ends
/// it; how long the server kept its connection open.
async fn trickle(addr: SocketAddr) -> Duration {
    let stream = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let head = format!(
            "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nX-Slow: {}",
            "a".repeat(100)
        );
        for byte in head.bytes() {
            if write.write_all(&[byte]).await.is_err() {
                return;
            }
            // The pause is the point: a trickling client.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let open = closed_after(&mut read, started).await;
    writer.abort();
    open
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_closed_while_others_are_served() {
    let mongo = MongoServer::start().await;
    seed::seed(&mongo.client()).await.unwrap();
    let (server, _dir) = serve(
        &mongo.uri(),
        &format!(
            "header_read_timeout_secs = {HEADER_SECS}\nidle_timeout_secs = {IDLE_SECS}\n\
             max_connections = 64\nadmin_listen = \"127.0.0.1:0\""
        ),
    );
    let addr = server.addr;
    let http = root_http();
    let backup = take_backup(&http, addr, INSTANCE).await;
    create_task(&http, addr, INSTANCE, &backup).await;
    let url = eventually(Duration::from_secs(120), "the packaged file", || async {
        let task = tasks(&http, addr, INSTANCE).await.pop()?;
        assert_ne!(task["Status"], 3, "packaging failed: {task}");
        (task["Status"] == 2).then(|| task["Url"].as_str().unwrap().to_string())
    })
    .await;
    let file = http.get(&url).await.unwrap();
    assert_eq!(file.status, 200);

    // Twenty clients trickle header bytes; meanwhile API calls and the
    // download keep being answered.
    let tricklers: Vec<_> = (0..20).map(|_| tokio::spawn(trickle(addr))).collect();
    let busy_until = Instant::now() + Duration::from_secs(HEADER_SECS + 1);
    let mut served = 0;
    while Instant::now() < busy_until {
        let listed = http.call(addr, "DescribeDBInstances", json!({})).await;
        assert_eq!(code_of(&listed), None, "{listed}");
        let again = http.get(&url).await.unwrap();
        assert_eq!(again.status, 200);
        assert_eq!(again.body, file.body);
        served += 1;
        // A round every 200 ms for as long as the tricklers hold on.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(served >= 3, "only {served} rounds served");
    let limit = Duration::from_secs(HEADER_SECS + 2);
    for trickler in tricklers {
        let open = tokio::time::timeout(limit + Duration::from_secs(5), trickler)
            .await
            .expect("a trickling client closed")
            .unwrap();
        assert!(
            open >= Duration::from_secs(HEADER_SECS) - Duration::from_millis(500) && open <= limit,
            "a trickling client was closed after {open:?}, not about {HEADER_SECS} s"
        );
    }

    // A kept-alive connection left idle is closed after the idle timeout.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(b"ok\n") {
        let n = idle.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    let open = closed_after(&mut idle, Instant::now()).await;
    assert!(
        open >= Duration::from_secs(IDLE_SECS) - Duration::from_millis(500)
            && open <= Duration::from_secs(IDLE_SECS + 2),
        "an idle connection was closed after {open:?}, not about {IDLE_SECS} s"
    );

    // The API listener's /metrics names no instance and no account; the
    // admin listener's has the per-instance storage.
    let public = http.get(&format!("http://{addr}/metrics")).await.unwrap();
    let public = String::from_utf8_lossy(&public.body).to_string();
    assert!(public.contains("mongobak_api_requests_total"), "{public}");
    assert!(
        !public.contains(INSTANCE) && !public.contains("cmgo-") && !public.contains(UIN),
        "{public}"
    );
    let admin = server.admin.expect("an admin listener");
    let private = http.get(&format!("http://{admin}/metrics")).await.unwrap();
    let private = String::from_utf8_lossy(&private.body).to_string();
    let stored: u64 = private
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "mongobak_backup_stored_bytes{{instance=\"{INSTANCE}\"}} "
            ))
        })
        .unwrap_or_else(|| panic!("no stored bytes of {INSTANCE}: {private}"))
        .parse()
        .unwrap();
    assert!(stored > 0, "{private}");
    assert!(private.contains(&format!(
        "mongobak_backup_oplog_bytes{{instance=\"{INSTANCE}\"}}"
    )));
    assert!(private.contains("mongobak_api_requests_total"), "{private}");
    assert_eq!(
        http.get(&format!("http://{admin}/")).await.unwrap().status,
        404,
        "the admin listener serves /metrics only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_and_readiness_names_a_full_disk() {
    let unused = "mongodb://127.0.0.1:9/?directConnection=true";
    let (server, dir) = serve(
        unused,
        "header_read_timeout_secs = 10\nidle_timeout_secs = 10\nmax_connections = 4",
    );
    let addr = server.addr;
    let http = root_http();
    let health = format!("http://{addr}/healthz");
    assert_eq!(http.get(&health).await.unwrap().status, 200);
    assert_eq!(
        http.get(&format!("http://{addr}/readyz"))
            .await
            .unwrap()
            .status,
        200,
        "the default floor of 1024 MiB is met"
    );

    // Four silent connections take every slot; a fifth request waits.
    let mut holders = Vec::new();
    for _ in 0..4 {
        holders.push(TcpStream::connect(addr).await.unwrap());
    }
    // The listener gives no sign of having taken them, so there is nothing
    // to poll: leave it time to.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = tokio::spawn({
        let http = http.clone();
        let health = health.clone();
        async move { (http.get(&health).await, Instant::now()) }
    });
    // The pause is the point: the fifth is still waiting after it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !waiting.is_finished(),
        "a connection past the cap was served"
    );
    let freed = Instant::now();
    holders.pop();
    let (answer, at) = waiting.await.unwrap();
    assert_eq!(answer.unwrap().status, 200);
    assert!(at.duration_since(freed) < Duration::from_secs(2));
    drop(holders);
    drop(server);

    // The same data folder with a floor no disk meets.
    let config_path = dir.path().join("mongobak.toml");
    std::fs::write(
        &config_path,
        config(
            &dir.path().join("data"),
            INSTANCE,
            unused,
            "min_free_disk_mib = 1000000000",
        ),
    )
    .unwrap();
    let server = Mongobak::start(&config_path, &dir.path().join("serve2.log"));
    let ready = http
        .get(&format!("http://{}/readyz", server.addr))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&ready.body).to_string();
    assert_eq!(ready.status, 503, "{text}");
    let data = dir.path().join("data");
    assert!(
        text.contains(&format!("data folder {}", data.display()))
            && text.contains("below the floor of 1000000000 MiB"),
        "{text}"
    );
}

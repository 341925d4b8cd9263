//! The listener's timeouts on an in-process server with short ones: a
//! request body that stops arriving is refused after the idle timeout,
//! and on a kept-alive connection the next request's head must arrive
//! within the header read timeout however steadily its bytes trickle.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mongobak_server::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn short_timeouts() -> ServerConfig {
    ServerConfig {
        header_read_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(1),
        ..ServerConfig::default()
    }
}

#[tokio::test]
async fn a_stalled_request_body_is_refused_after_the_idle_timeout() {
    let server = TestServer::start_with(short_timeouts()).await;
    let req = Tc3::post_json(&server, r#"{"Limit": 10}"#);
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        req.head(&req.authorization()),
        req.body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&req.body[..3]).await.unwrap();
    let started = Instant::now();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let waited = started.elapsed();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("InvalidParameter") && text.contains("stopped arriving"),
        "{text}"
    );
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "answered after {waited:?}"
    );
}

#[tokio::test]
async fn the_next_head_on_a_kept_alive_connection_has_the_header_timeout() {
    let server = TestServer::start_with(short_timeouts()).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let host = server.host();
    stream
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(b"ok\n") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
    }
    // The next head, a byte every 300 ms: bytes keep moving, so only the
    // header read timeout (2 s) ends it. The pauses are the point: a
    // trickling client.
    let started = Instant::now();
    let (mut read, mut write) = stream.into_split();
    let next = format!(
        "GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Slow: {}",
        "a".repeat(60)
    );
    let writer = tokio::spawn(async move {
        for byte in next.bytes() {
            if write.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let mut rest = Vec::new();
    let _ = read.read_to_end(&mut rest).await;
    let open = started.elapsed();
    writer.abort();
    assert!(
        open >= Duration::from_millis(1500) && open < Duration::from_secs(4),
        "closed after {open:?}"
    );
    assert!(
        !String::from_utf8_lossy(&rest).contains("ok\n"),
        "the slow head was not served"
    );
}

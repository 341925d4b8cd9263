//! Log lines and error messages cut the long values a client sends.
//!
//! Alone in its test binary: a subscriber set for one thread misses events
//! while tests on other threads, without one, share the callsites.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::json;

/// Log lines written while it is the thread's subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn log_lines_cut_long_request_values() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The test runtime has one thread: the server's tasks log here.
    let _guard = tracing::subscriber::set_default(subscriber);
    let server = TestServer::start().await;
    let long = "x".repeat(20_000);
    let answers = [
        server.call(&format!("Describe{long}"), json!({})).await,
        server
            .call("DescribeDBInstances", json!({"OrderBy": long}))
            .await,
        server
            .call("DescribeDBInstances", json!({ long.clone(): 1 }))
            .await,
        server
            .call(
                "DescribeBackupDownloadTask",
                json!({"InstanceId": INSTANCE, "BackupName": long}),
            )
            .await,
        server
            .call("DescribeAsyncRequestInfo", json!({"AsyncRequestId": long}))
            .await,
        server
            .call(
                "SetBackupRules",
                json!({"InstanceId": INSTANCE, "ActiveWeekdays": long}),
            )
            .await,
    ];
    for answer in &answers {
        let message = answer["Error"]["Message"].as_str().expect("an error");
        assert!(message.len() < 1_000, "{} bytes", message.len());
        assert!(message.contains("more characters]"), "{message}");
    }
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let requests = text.lines().filter(|l| l.contains("api request")).count();
    assert!(requests >= answers.len(), "{text}");
    for line in text.lines() {
        assert!(line.len() < 2_000, "a log line of {} bytes", line.len());
    }
    assert!(text.contains("more characters]"), "{text}");
}

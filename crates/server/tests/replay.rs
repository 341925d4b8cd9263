//! Signatures the server must not accept although they verify: a TC3
//! request that leaves Host or Content-Type unsigned, and a captured request
//! sent again (replayed) or sent with another `X-TC-Action` (re-aimed)
//! within the clock window. Identical read-only requests still pass.

mod common;

use common::*;
use jiff::Timestamp;
use mongobak_api::signature::{sha256_hex, Tc3Request};

/// The request's Authorization over `signed` (lowercase names) only.
fn signed_over(request: &Tc3, signed: &[&str]) -> String {
    let all = [
        ("content-type", request.content_type.as_str()),
        ("host", request.host.as_str()),
        ("x-tc-action", request.action.as_str()),
    ];
    let headers: Vec<(&str, &str)> = all
        .iter()
        .copied()
        .filter(|(name, _)| signed.contains(name))
        .collect();
    let date = Timestamp::from_second(request.timestamp)
        .unwrap()
        .strftime("%Y-%m-%d")
        .to_string();
    Tc3Request {
        method: request.method,
        query: &request.query,
        headers: &headers,
        payload_hash: &sha256_hex(&request.body),
        timestamp: request.timestamp,
        date: &date,
        service: &request.service,
    }
    .authorization(&request.secret_id, &request.secret_key)
}

#[tokio::test]
async fn host_and_content_type_must_be_signed() {
    let server = TestServer::start().await;
    let request = Tc3::post_json(&server, "{}");
    for signed in [
        &["host"][..],
        &["content-type"][..],
        &["content-type", "x-tc-action"][..],
    ] {
        let authorization = signed_over(&request, signed);
        let reply = send_raw(server.addr, &request.head(&authorization), &request.body).await;
        assert_eq!(
            reply.error_code().as_deref(),
            Some("AuthFailure.SignatureFailure"),
            "signed {signed:?}: {}",
            reply.json()
        );
        let message = reply.json()["Response"]["Error"]["Message"].to_string();
        assert!(message.contains("content-type and host"), "{message}");
    }
    // Both, and more besides, verify.
    for signed in [
        &["content-type", "host"][..],
        &["content-type", "host", "x-tc-action"][..],
    ] {
        let authorization = signed_over(&request, signed);
        let reply = send_raw(server.addr, &request.head(&authorization), &request.body).await;
        assert_eq!(
            reply.error_code(),
            None,
            "signed {signed:?}: {}",
            reply.json()
        );
    }
}

/// The message of a refused reply, which must say it was replayed.
fn assert_replayed(reply: &RawResponse, what: &str) {
    assert_eq!(
        reply.error_code().as_deref(),
        Some("AuthFailure.SignatureFailure"),
        "{what}: {}",
        reply.json()
    );
    let message = reply.json()["Response"]["Error"]["Message"].to_string();
    assert!(message.contains("replayed"), "{what}: {message}");
}

#[tokio::test]
async fn an_identical_read_only_request_passes_twice() {
    let server = TestServer::start().await;
    let request = Tc3::post_json(&server, r#"{"InstanceIds": ["cmgo-test0001"]}"#);
    let authorization = request.authorization();
    for attempt in 0..3 {
        let reply = send_raw(server.addr, &request.head(&authorization), &request.body).await;
        assert_eq!(reply.error_code(), None, "poll {attempt}: {}", reply.json());
        assert_eq!(reply.json()["Response"]["TotalCount"], 1);
    }
}

#[tokio::test]
async fn a_captured_request_re_aimed_at_another_action_is_refused() {
    let server = TestServer::start().await;
    // A DescribeDBBackups whose body also suits CreateBackupDBInstance.
    let mut request = Tc3::post_json(
        &server,
        r#"{"InstanceId": "cmgo-test0001", "BackupMethod": 0}"#,
    );
    request.action = "DescribeDBBackups".into();
    let authorization = request.authorization();
    let reply = send_raw(server.addr, &request.head(&authorization), &request.body).await;
    assert_eq!(reply.error_code(), None, "{}", reply.json());

    // The same signature and body, aimed at an action that changes state,
    // and at another read-only one.
    for action in ["CreateBackupDBInstance", "DescribeDBInstances"] {
        let mut re_aimed = Tc3::post_json(&server, "");
        re_aimed.body = request.body.clone();
        re_aimed.timestamp = request.timestamp;
        re_aimed.action = action.into();
        let reply = send_raw(server.addr, &re_aimed.head(&authorization), &re_aimed.body).await;
        assert_replayed(&reply, action);
    }
    assert_eq!(
        server
            .catalog
            .backups()
            .of_instance(INSTANCE)
            .await
            .unwrap()
            .len(),
        0,
        "no backup was started"
    );
    // The first use still passes again: it is the same read-only call.
    let reply = send_raw(server.addr, &request.head(&authorization), &request.body).await;
    assert_eq!(reply.error_code(), None, "{}", reply.json());
}

#[tokio::test]
async fn a_state_changing_request_passes_once() {
    let server = TestServer::start().await;
    let mut request = Tc3::post_json(
        &server,
        r#"{"InstanceId": "cmgo-test0001", "BackupMethod": 0, "BackupRemark": "once"}"#,
    );
    request.action = "CreateBackupDBInstance".into();
    let authorization = request.authorization();
    let reply = send_raw(server.addr, &request.head(&authorization), &request.body).await;
    assert_eq!(reply.error_code(), None, "{}", reply.json());
    let reply = send_raw(server.addr, &request.head(&authorization), &request.body).await;
    assert_replayed(&reply, "the same CreateBackupDBInstance");
    assert_eq!(
        server
            .catalog
            .backups()
            .of_instance(INSTANCE)
            .await
            .unwrap()
            .len(),
        1
    );

    // Signed anew (another trace ID signed with it), the same call is no
    // replay.
    let again = server
        .call(
            "SetBackupRules",
            serde_json::json!({"InstanceId": INSTANCE, "BackupMethod": 0, "BackupTime": 3}),
        )
        .await;
    assert_eq!(code_of(&again), None, "{again}");
    let again = server
        .call(
            "SetBackupRules",
            serde_json::json!({"InstanceId": INSTANCE, "BackupMethod": 0, "BackupTime": 3}),
        )
        .await;
    assert_eq!(code_of(&again), None, "{again}");
}

#[tokio::test]
async fn v1_requests_are_remembered_too() {
    let server = TestServer::start().await;
    let host = server.host();
    let get = |query: &str| format!("GET /?{query} HTTP/1.1\r\nHost: {host}");

    let describe = v1_params(
        "GET",
        &host,
        &[("Limit", "10")],
        Some("HmacSHA256"),
        ROOT_KEY,
    );
    for attempt in 0..2 {
        let reply = send_raw(server.addr, &get(&describe), b"").await;
        assert_eq!(reply.error_code(), None, "poll {attempt}: {}", reply.json());
    }

    let set_rules = v1_params(
        "GET",
        &host,
        &[
            ("Action", "SetBackupRules"),
            ("InstanceId", INSTANCE),
            ("BackupMethod", "0"),
            ("BackupTime", "4"),
        ],
        Some("HmacSHA1"),
        ROOT_KEY,
    );
    let reply = send_raw(server.addr, &get(&set_rules), b"").await;
    assert_eq!(reply.error_code(), None, "{}", reply.json());
    let reply = send_raw(server.addr, &get(&set_rules), b"").await;
    assert_replayed(&reply, "the same v1 SetBackupRules");
}

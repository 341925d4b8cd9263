//! The API front door over real HTTP: every request style, every common
//! error code, the size limit, the envelope, health and metrics, and
//! graceful shutdown. The official SDKs check the same door independently
//! in tests/sdk.

mod common;

use std::time::Duration;

use common::*;
use jiff::Timestamp;
use mongobak_server::ServerConfig;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn post_json_lists_the_instance_in_the_exact_envelope() {
    let server = TestServer::start().await;
    let reply = Tc3::post_json(&server, r#"{"InstanceIds": ["cmgo-test0001"]}"#)
        .send(&server)
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.error_code(), None, "{}", reply.json());
    let json = reply.json();
    let response = &json["Response"];
    assert_eq!(response["TotalCount"], 1);
    let detail = &response["InstanceDetails"][0];
    assert_eq!(detail["InstanceId"], INSTANCE);
    assert_eq!(detail["ReplicaSets"][0]["ReplicaSetId"], "cmgo-test0001_0");
    assert_eq!(detail["Vip"], "127.0.0.1");
    assert_eq!(detail["Vport"], 27017);
    let request_id = response["RequestId"].as_str().unwrap();
    assert_eq!(request_id.len(), 36);
    assert_eq!(request_id, request_id.to_lowercase());
    assert!(
        !String::from_utf8_lossy(&reply.body).contains("secret"),
        "credentials leaked"
    );
}

#[tokio::test]
async fn get_and_form_bodies_are_flattened_parameters() {
    let server = TestServer::start().await;
    let reply = Tc3::get(&server, "InstanceIds.0=cmgo-test0001&Limit=5")
        .send(&server)
        .await;
    assert_eq!(reply.error_code(), None, "{}", reply.json());
    assert_eq!(reply.json()["Response"]["TotalCount"], 1);

    let mut form = Tc3::post_json(&server, "InstanceIds.0=cmgo-nothere&Limit=5");
    form.content_type = "application/x-www-form-urlencoded".into();
    let reply = form.send(&server).await;
    assert_eq!(reply.error_code(), None, "{}", reply.json());
    assert_eq!(reply.json()["Response"]["TotalCount"], 0);
}

#[tokio::test]
async fn unsigned_payload_is_accepted() {
    let server = TestServer::start().await;
    let mut req = Tc3::post_json(&server, "{}");
    req.extra_headers
        .push(("X-TC-Content-SHA256".into(), "UNSIGNED-PAYLOAD".into()));
    // Sign over the literal UNSIGNED-PAYLOAD instead of the body.
    let body = std::mem::replace(&mut req.body, b"UNSIGNED-PAYLOAD".to_vec());
    let authorization = req.authorization();
    let reply = send_raw(server.addr, &req.head(&authorization), &body).await;
    assert_eq!(reply.error_code(), None, "{}", reply.json());
}

#[tokio::test]
async fn node_and_tccli_hosts_verify() {
    let server = TestServer::start().await;
    // Node.js signs the hostname without port and a service taken from the endpoint.
    let mut node = Tc3::post_json(&server, "{}");
    node.signed_host = Some("127.0.0.1".into());
    node.service = "127".into();
    assert_eq!(node.send(&server).await.error_code(), None);
    // tccli sends and signs the endpoint URL as the Host.
    let mut tccli = Tc3::post_json(&server, "{}");
    tccli.host = format!("http://{}", server.host());
    assert_eq!(tccli.send(&server).await.error_code(), None);
}

#[tokio::test]
async fn v1_signatures_in_query_and_form() {
    let server = TestServer::start().await;
    let host = server.host();
    for method in [None, Some("HmacSHA1"), Some("HmacSHA256")] {
        let query = v1_params("GET", &host, &[("Limit", "10")], method, ROOT_KEY);
        let reply = send_raw(
            server.addr,
            &format!("GET /?{query} HTTP/1.1\r\nHost: {host}"),
            b"",
        )
        .await;
        assert_eq!(reply.error_code(), None, "GET {method:?}: {}", reply.json());
        assert_eq!(reply.json()["Response"]["TotalCount"], 1);

        let body = v1_params(
            "POST",
            &host,
            &[("InstanceIds.0", "cmgo-test0001")],
            method,
            ROOT_KEY,
        );
        let head = format!(
            "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded"
        );
        let reply = send_raw(server.addr, &head, body.as_bytes()).await;
        assert_eq!(
            reply.error_code(),
            None,
            "POST {method:?}: {}",
            reply.json()
        );
    }
    // Python signs `_` in key names as `.`: the signature verifies, and the
    // parameter itself is then refused as unknown.
    let query = v1_params(
        "GET",
        &host,
        &[("Some.Key", "1")],
        Some("HmacSHA256"),
        ROOT_KEY,
    )
    .replace("Some.Key", "Some_Key");
    let reply = send_raw(
        server.addr,
        &format!("GET /?{query} HTTP/1.1\r\nHost: {host}"),
        b"",
    )
    .await;
    assert_eq!(reply.error_code().as_deref(), Some("UnknownParameter"));
    // A wrong key fails.
    let query = v1_params("GET", &host, &[], Some("HmacSHA256"), "wrong");
    let reply = send_raw(
        server.addr,
        &format!("GET /?{query} HTTP/1.1\r\nHost: {host}"),
        b"",
    )
    .await;
    assert_eq!(
        reply.error_code().as_deref(),
        Some("AuthFailure.SignatureFailure")
    );
}

/// One row per error path of the common protocol: a change to a good
/// request and the code it must produce.
#[tokio::test]
async fn every_common_error_code() {
    let server = TestServer::start().await;
    type Mutate = fn(&mut Tc3);
    let cases: Vec<(&str, Mutate, &str)> = vec![
        ("missing action", |r| r.action.clear(), "MissingParameter"),
        ("missing version", |r| r.version.clear(), "MissingParameter"),
        ("missing region", |r| r.region = None, "MissingParameter"),
        (
            "wrong version",
            |r| r.version = "2018-04-08".into(),
            "NoSuchVersion",
        ),
        (
            "unknown action",
            |r| r.action = "DescribeEverything".into(),
            "InvalidAction",
        ),
        (
            "unprovided action",
            |r| r.action = "CreateDBInstance".into(),
            "UnsupportedOperation",
        ),
        (
            "unknown region",
            |r| r.region = Some("mars-north-1".into()),
            "UnsupportedRegion",
        ),
        (
            "old timestamp",
            |r| r.timestamp -= 301,
            "AuthFailure.SignatureExpire",
        ),
        (
            "future timestamp",
            |r| r.timestamp += 301,
            "AuthFailure.SignatureExpire",
        ),
        (
            "unknown key",
            |r| r.secret_id = "AKIDunknown".into(),
            "AuthFailure.SecretIdNotFound",
        ),
        (
            "wrong secret",
            |r| r.secret_key = "wrong".into(),
            "AuthFailure.SignatureFailure",
        ),
        (
            "other host",
            |r| r.signed_host = Some("example.com".into()),
            "AuthFailure.SignatureFailure",
        ),
        (
            "sub-account outside policy",
            |r| {
                r.secret_id = SUB_ID.into();
                r.secret_key = SUB_KEY.into();
            },
            "InvalidParameter.PermissionDenied",
        ),
        (
            "token",
            |r| r.extra_headers.push(("X-TC-Token".into(), "t".into())),
            "AuthFailure.TokenFailure",
        ),
        (
            "bad json",
            |r| r.body = b"{\"Limit\": ".to_vec(),
            "InvalidParameter",
        ),
        (
            "json array",
            |r| r.body = b"[1]".to_vec(),
            "InvalidParameter",
        ),
        (
            "wrong type",
            |r| r.body = br#"{"Limit": "many"}"#.to_vec(),
            "InvalidParameter",
        ),
        (
            "unknown parameter",
            |r| r.body = br#"{"Bogus": 1}"#.to_vec(),
            "UnknownParameter",
        ),
        (
            "limit out of range",
            |r| r.body = br#"{"Limit": 101}"#.to_vec(),
            "InvalidParameterValue.LimitParaOutOfRange",
        ),
        (
            "offset out of range",
            |r| r.body = br#"{"Offset": -1}"#.to_vec(),
            "InvalidParameterValue.OffsetParaOutOfRange",
        ),
        (
            "cluster type",
            |r| r.body = br#"{"ClusterType": 2}"#.to_vec(),
            "InvalidParameterValue.ClusterTypeError",
        ),
        (
            "content type",
            |r| r.content_type = "text/xml".into(),
            "InvalidParameter",
        ),
    ];
    for (name, mutate, expected) in cases {
        let mut request = Tc3::post_json(&server, "{}");
        mutate(&mut request);
        let reply = request.send(&server).await;
        assert_eq!(reply.status, 200, "{name}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/json"),
            "{name}"
        );
        let json = reply.json();
        assert_eq!(
            reply.error_code().as_deref(),
            Some(expected),
            "{name}: {json}"
        );
        assert!(
            !json["Response"]["Error"]["Message"]
                .as_str()
                .unwrap()
                .is_empty(),
            "{name}: empty message"
        );
    }
}

#[tokio::test]
async fn malformed_authorization_headers() {
    let server = TestServer::start().await;
    for authorization in [
        "SKIP",
        "TC3-HMAC-SHA256 Credential=x",
        "TC3-HMAC-SHA256 Credential=AKID/2026-01-01/mongodb/tc3_request, SignedHeaders=host, Signature=zz",
        "HMAC-SHA256 whatever",
    ] {
        let req = Tc3::post_json(&server, "{}");
        let reply = send_raw(server.addr, &req.head(authorization), &req.body).await;
        assert_eq!(
            reply.error_code().as_deref(),
            Some("AuthFailure.InvalidAuthorization"),
            "{authorization}"
        );
    }
    // A credential date that is not the timestamp's UTC date.
    let req = Tc3::post_json(&server, "{}");
    let good = req.authorization();
    let today = Timestamp::from_second(req.timestamp)
        .unwrap()
        .strftime("%Y-%m-%d")
        .to_string();
    let shifted = good.replace(&today, "2001-01-01");
    let reply = send_raw(server.addr, &req.head(&shifted), &req.body).await;
    assert_eq!(
        reply.error_code().as_deref(),
        Some("AuthFailure.SignatureFailure")
    );
}

#[tokio::test]
async fn v1_common_parameter_errors() {
    let server = TestServer::start().await;
    let host = server.host();
    let send = |query: String| {
        let head = format!("GET /?{query} HTTP/1.1\r\nHost: {host}");
        async move { send_raw(server.addr, &head, b"").await }
    };
    let unsigned = v1_params("GET", &host, &[], None, ROOT_KEY);
    let without_signature: String = unsigned
        .split('&')
        .filter(|p| !p.starts_with("Signature="))
        .collect::<Vec<_>>()
        .join("&");
    assert_eq!(
        send(without_signature).await.error_code().as_deref(),
        Some("MissingParameter")
    );
    let bad_method = v1_params("GET", &host, &[], Some("HmacMD5"), ROOT_KEY);
    assert_eq!(
        send(bad_method).await.error_code().as_deref(),
        Some("InvalidParameterValue")
    );
    let bad_nonce = v1_params("GET", &host, &[], None, ROOT_KEY).replace("Nonce=0", "Nonce=x");
    assert_eq!(
        send(bad_nonce).await.error_code().as_deref(),
        Some("InvalidParameter")
    );
    assert_eq!(
        send(String::new()).await.error_code().as_deref(),
        Some("MissingParameter")
    );
}

#[tokio::test]
async fn unsupported_methods_answer_in_the_envelope() {
    let server = TestServer::start().await;
    let reply = send_raw(
        server.addr,
        &format!("PUT / HTTP/1.1\r\nHost: {}", server.host()),
        b"{}",
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.error_code().as_deref(), Some("UnsupportedProtocol"));
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused() {
    let server = TestServer::start_with(ServerConfig {
        max_body_bytes: 1024,
        ..ServerConfig::default()
    })
    .await;
    let big = format!(r#"{{"SearchKey": "{}"}}"#, "x".repeat(2000));
    let reply = Tc3::post_json(&server, &big).send(&server).await;
    assert_eq!(
        reply.error_code().as_deref(),
        Some("RequestSizeLimitExceeded")
    );
    // Without a Content-Length (chunked), the limit holds while reading.
    let req = Tc3::post_json(&server, &big);
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut bytes = format!(
        "{}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n",
        req.head(&req.authorization()),
        big.len()
    )
    .into_bytes();
    bytes.extend_from_slice(big.as_bytes());
    bytes.extend_from_slice(b"\r\n0\r\n\r\n");
    stream.write_all(&bytes).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("RequestSizeLimitExceeded"), "{text}");
    // Just under the limit is fine.
    let fits = format!(r#"{{"SearchKey": "{}"}}"#, "x".repeat(900));
    assert_eq!(
        Tc3::post_json(&server, &fits)
            .send(&server)
            .await
            .error_code(),
        None
    );
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let server = TestServer::start().await;
    let host = server.host();
    let get = |path: &str| {
        let head = format!("GET {path} HTTP/1.1\r\nHost: {host}");
        async move { send_raw(server.addr, &head, b"").await }
    };
    assert_eq!(get("/healthz").await.status, 200);
    assert_eq!(get("/readyz").await.status, 200);
    Tc3::post_json(&server, "{}").send(&server).await;
    let mut bad = Tc3::post_json(&server, "{}");
    bad.secret_key = "wrong".into();
    bad.send(&server).await;
    let metrics = get("/metrics").await;
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(
        text.contains(r#"mongobak_api_requests_total{action="DescribeDBInstances",code="OK"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"code="AuthFailure.SignatureFailure""#),
        "{text}"
    );
    assert!(
        text.contains("mongobak_api_request_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let mut server = TestServer::start().await;
    let req = Tc3::post_json(&server, "{}");
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // Send the head and half the body, then ask the server to stop.
    let head = format!(
        "{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        req.head(&req.authorization()),
        req.body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&req.body[..1]).await.unwrap();
    // The server gives no signal that it has read the head, so there is
    // nothing to poll: leave it time to.
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.shutdown.cancel();
    let task = server.task.take().unwrap();
    stream.write_all(&req.body[1..]).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("TotalCount"), "{text}");
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the server stops after its last request")
        .unwrap();
}

#[tokio::test]
async fn instance_details_hold_every_model_field_with_honest_values() {
    let server = TestServer::start().await;
    let listed = server
        .call("DescribeDBInstances", json!({"InstanceIds": [INSTANCE]}))
        .await;
    let detail = &listed["InstanceDetails"][0];
    for field in [
        "MongosNodeNum",
        "MongosMemory",
        "MongosCpuNum",
        "ConfigServerNodeNum",
        "ConfigServerMemory",
        "ConfigServerVolume",
        "ConfigServerCpuNum",
        "ReadonlyNodeNum",
    ] {
        assert_eq!(detail[field], 0, "{field}: {detail}");
    }
    assert_eq!(detail["ZoneList"], json!([detail["Zone"]]));
    // A real date-time, far in the future: a self-hosted instance does
    // not expire.
    assert_eq!(detail["DeadLine"], "2099-12-31 23:59:59");
    // Never probed (registered without a connection): unknown.
    assert_eq!(detail["MongoVersion"], "");
    server
        .catalog
        .instances()
        .set_server_version(INSTANCE, "7.0.14")
        .await
        .unwrap();
    let listed = server
        .call("DescribeDBInstances", json!({"InstanceIds": [INSTANCE]}))
        .await;
    assert_eq!(listed["InstanceDetails"][0]["MongoVersion"], "7.0.14");
}

#[tokio::test]
async fn pay_mode_minus_one_lists_every_instance() {
    let server = TestServer::start().await;
    for (mode, count) in [(-1, 1), (0, 1), (1, 0)] {
        let listed = server
            .call(
                "DescribeDBInstances",
                json!({"PayMode": mode, "InstanceIds": [INSTANCE]}),
            )
            .await;
        assert_eq!(listed["TotalCount"], count, "PayMode {mode}: {listed}");
    }
    let refused = server
        .call("DescribeDBInstances", json!({"PayMode": 2}))
        .await;
    assert_eq!(
        code_of(&refused),
        Some("InvalidParameterValue"),
        "{refused}"
    );
    assert!(refused["Error"]["Message"]
        .as_str()
        .unwrap()
        .contains("`PayMode`"));
}

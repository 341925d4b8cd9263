//! The backup catalog actions over HTTP: a backup of a real SecantusDB
//! server from request to deletion, and every parameter's bad values.

mod common;

use common::*;
use mongobak_testkit::api::WORK_LIMIT;
use mongobak_testkit::wait::eventually;
use mongobak_testkit::MongoServer;
use mongodb::bson::{doc, Document};
use serde_json::{json, Value};

/// Polls DescribeAsyncRequestInfo until the request ends.
async fn wait_for(server: &TestServer, async_request_id: &str) -> Value {
    eventually(WORK_LIMIT, "the backup to end", async || {
        let info = server
            .call(
                "DescribeAsyncRequestInfo",
                json!({"AsyncRequestId": async_request_id}),
            )
            .await;
        assert_eq!(code_of(&info), None, "{info}");
        match info["Status"].as_str().unwrap() {
            "initial" | "running" => None,
            _ => Some(info),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_from_request_to_deletion() {
    let mongo = MongoServer::start().await;
    mongo
        .client()
        .database("shop")
        .collection::<Document>("orders")
        .insert_many((0..500i64).map(|i| doc! {"_id": i, "item": format!("item {i}")}))
        .await
        .unwrap();
    let server = TestServer::start_with_mongo(&mongo.uri()).await;

    let created = server
        .call(
            "CreateBackupDBInstance",
            json!({"InstanceId": INSTANCE, "BackupMethod": 0, "BackupRemark": "before the upgrade"}),
        )
        .await;
    assert_eq!(code_of(&created), None, "{created}");
    let async_id = created["AsyncRequestId"].as_str().unwrap().to_string();
    assert!(
        async_id.len() >= 13 && async_id.bytes().all(|b| b.is_ascii_digit()),
        "{async_id}"
    );

    // While it is queued or running, a second one is refused.
    let again = server
        .call(
            "CreateBackupDBInstance",
            json!({"InstanceId": INSTANCE, "BackupMethod": 0}),
        )
        .await;
    let info = wait_for(&server, &async_id).await;
    assert_eq!(info["Status"], "success", "{info}");
    assert!(!info["StartTime"].as_str().unwrap().is_empty());
    assert!(!info["EndTime"].as_str().unwrap().is_empty());
    assert_eq!(info["Progress"], 100);

    // The instance shows the server version the backup saw.
    let build_info = mongo
        .client()
        .database("admin")
        .run_command(doc! {"buildInfo": 1})
        .await
        .unwrap();
    let described = server
        .call("DescribeDBInstances", json!({"InstanceIds": [INSTANCE]}))
        .await;
    assert_eq!(
        described["InstanceDetails"][0]["MongoVersion"],
        build_info.get_str("version").unwrap(),
        "{described}"
    );
    if code_of(&again).is_some() {
        assert_eq!(
            code_of(&again),
            Some("InvalidParameterValue.StatusAbnormal"),
            "{again}"
        );
    } else {
        // The first one had already finished; let the second finish too.
        wait_for(&server, again["AsyncRequestId"].as_str().unwrap()).await;
    }

    let listed = server
        .call("DescribeDBBackups", json!({"InstanceId": INSTANCE}))
        .await;
    assert_eq!(code_of(&listed), None, "{listed}");
    let backups = listed["BackupList"].as_array().unwrap();
    assert_eq!(
        listed["TotalCount"].as_u64().unwrap() as usize,
        backups.len()
    );
    let backup = backups
        .iter()
        .find(|b| b["BackupDesc"] == "before the upgrade")
        .expect("the backup is listed");
    let name = backup["BackupName"].as_str().unwrap();
    assert!(name.starts_with(&format!("{INSTANCE}_")), "{name}");
    assert_eq!(
        name.len(),
        INSTANCE.len() + 1 + "2026-11-28 10:44".len(),
        "{name}"
    );
    assert_eq!(backup["Status"], 2);
    assert_eq!(backup["BackupType"], 1);
    assert_eq!(backup["BackupMethod"], 0);
    assert!(backup["BackupSize"].as_u64().unwrap() > 0);
    assert!(!backup["DeleteTime"].as_str().unwrap().is_empty());
    let back_id = backup["BackId"].as_i64().unwrap();
    let stored = server
        .catalog
        .backups()
        .get(back_id)
        .await
        .unwrap()
        .unwrap();
    assert!(!server
        .store
        .list(&format!("{}/", stored.storage_prefix))
        .await
        .unwrap()
        .is_empty());

    // Paging.
    let page = server
        .call(
            "DescribeDBBackups",
            json!({"InstanceId": INSTANCE, "Limit": 1, "Offset": 0, "BackupMethod": 0}),
        )
        .await;
    assert_eq!(page["BackupList"].as_array().unwrap().len(), 1);
    let physical = server
        .call(
            "DescribeDBBackups",
            json!({"InstanceId": INSTANCE, "BackupMethod": 1}),
        )
        .await;
    assert_eq!(physical["TotalCount"], 0);

    // A new expiry.
    let modified = server
        .call(
            "ModifyBackupExpireTime",
            json!({"InstanceId": INSTANCE, "ExpireTime": "2099-01-01 00:00:00", "BackupIds": [back_id, 999_999]}),
        )
        .await;
    assert_eq!(code_of(&modified), None, "{modified}");
    assert_eq!(modified["FailedBackups"], json!([999_999]));
    let listed = server
        .call("DescribeDBBackups", json!({"InstanceId": INSTANCE}))
        .await;
    let backup = listed["BackupList"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["BackId"] == back_id)
        .unwrap();
    assert_eq!(backup["DeleteTime"], "2099-01-01 00:00:00");

    // Deletion removes the data and the listing.
    let deleted = server
        .call(
            "DeleteDBBackups",
            json!({"InstanceId": INSTANCE, "BackupIds": [back_id]}),
        )
        .await;
    assert_eq!(code_of(&deleted), None, "{deleted}");
    assert!(server
        .store
        .list(&format!("{}/", stored.storage_prefix))
        .await
        .unwrap()
        .is_empty());
    let listed = server
        .call("DescribeDBBackups", json!({"InstanceId": INSTANCE}))
        .await;
    assert!(listed["BackupList"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["BackId"] != back_id));
    let twice = server
        .call(
            "DeleteDBBackups",
            json!({"InstanceId": INSTANCE, "BackupIds": [back_id]}),
        )
        .await;
    assert_eq!(code_of(&twice), Some("InvalidParameterValue"), "{twice}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_an_unreachable_server_fails_with_a_reason() {
    let port = mongobak_testkit::free_port();
    let server = TestServer::start_with_mongo(&format!(
        "mongodb://127.0.0.1:{port}/?directConnection=true&serverSelectionTimeoutMS=300"
    ))
    .await;
    let created = server
        .call(
            "CreateBackupDBInstance",
            json!({"InstanceId": INSTANCE, "BackupMethod": 0}),
        )
        .await;
    let info = wait_for(&server, created["AsyncRequestId"].as_str().unwrap()).await;
    assert_eq!(info["Status"], "failed", "{info}");
    let reason = info["FailureReason"].as_str().unwrap();
    assert!(reason.contains("cannot connect"), "{reason}");
    let listed = server
        .call("DescribeDBBackups", json!({"InstanceId": INSTANCE}))
        .await;
    assert_eq!(
        listed["TotalCount"], 0,
        "a failed backup is not listed: {listed}"
    );
}

/// A table row: case name, signing key, action, parameters, expected code.
type Case = (
    &'static str,
    (&'static str, &'static str),
    &'static str,
    Value,
    &'static str,
);

/// Every documented bad value of every backup action.
#[tokio::test]
async fn bad_parameters_get_the_right_codes() {
    let server = TestServer::start().await;
    let root = (ROOT_ID, ROOT_KEY);
    let cases: Vec<Case> = vec![
        // CreateBackupDBInstance
        (
            "no instance",
            root,
            "CreateBackupDBInstance",
            json!({"BackupMethod": 0}),
            "MissingParameter",
        ),
        (
            "no method",
            root,
            "CreateBackupDBInstance",
            json!({"InstanceId": INSTANCE}),
            "MissingParameter",
        ),
        (
            "physical",
            root,
            "CreateBackupDBInstance",
            json!({"InstanceId": INSTANCE, "BackupMethod": 1}),
            "InvalidParameterValue",
        ),
        (
            "snapshot",
            root,
            "CreateBackupDBInstance",
            json!({"InstanceId": INSTANCE, "BackupMethod": 3}),
            "InvalidParameterValue",
        ),
        (
            "unknown method",
            root,
            "CreateBackupDBInstance",
            json!({"InstanceId": INSTANCE, "BackupMethod": 7}),
            "InvalidParameterValue",
        ),
        (
            "method type",
            root,
            "CreateBackupDBInstance",
            json!({"InstanceId": INSTANCE, "BackupMethod": "zero"}),
            "InvalidParameter",
        ),
        (
            "unknown instance",
            root,
            "CreateBackupDBInstance",
            json!({"InstanceId": "cmgo-nothere1", "BackupMethod": 0}),
            "InvalidParameterValue.NotFoundInstance",
        ),
        (
            "another account's instance",
            root,
            "CreateBackupDBInstance",
            json!({"InstanceId": OTHER_INSTANCE, "BackupMethod": 0}),
            "InvalidParameterValue.NotFoundInstance",
        ),
        (
            "another region's instance",
            root,
            "CreateBackupDBInstance",
            json!({"InstanceId": SHANGHAI_INSTANCE, "BackupMethod": 0}),
            "InvalidParameterValue.NotFoundInstance",
        ),
        (
            "retention too long",
            root,
            "CreateBackupDBInstance",
            json!({"InstanceId": INSTANCE, "BackupMethod": 0, "BackupRetentionDays": 7301}),
            "InvalidParameterValue",
        ),
        (
            "retention below -2",
            root,
            "CreateBackupDBInstance",
            json!({"InstanceId": INSTANCE, "BackupMethod": 0, "BackupRetentionDays": -3}),
            "InvalidParameterValue",
        ),
        (
            "remark too long",
            root,
            "CreateBackupDBInstance",
            json!({"InstanceId": INSTANCE, "BackupMethod": 0, "BackupRemark": "r".repeat(257)}),
            "InvalidParameterValue",
        ),
        (
            "unknown parameter",
            root,
            "CreateBackupDBInstance",
            json!({"InstanceId": INSTANCE, "BackupMethod": 0, "Speed": 1}),
            "UnknownParameter",
        ),
        (
            "sub-account outside the action policy",
            (SUB_ID, SUB_KEY),
            "CreateBackupDBInstance",
            json!({"InstanceId": INSTANCE, "BackupMethod": 0}),
            "InvalidParameter.PermissionDenied",
        ),
        (
            "sub-account outside the resource policy",
            (NARROW_ID, NARROW_KEY),
            "CreateBackupDBInstance",
            json!({"InstanceId": INSTANCE, "BackupMethod": 0}),
            "InvalidParameter.PermissionDenied",
        ),
        // DescribeAsyncRequestInfo
        (
            "no request id",
            root,
            "DescribeAsyncRequestInfo",
            json!({}),
            "MissingParameter",
        ),
        (
            "unknown request id",
            root,
            "DescribeAsyncRequestInfo",
            json!({"AsyncRequestId": "123"}),
            "InvalidParameterValue",
        ),
        (
            "request id type",
            root,
            "DescribeAsyncRequestInfo",
            json!({"AsyncRequestId": [1]}),
            "InvalidParameter",
        ),
        // DescribeDBBackups
        (
            "no instance id",
            root,
            "DescribeDBBackups",
            json!({}),
            "MissingParameter",
        ),
        (
            "unknown instance id",
            root,
            "DescribeDBBackups",
            json!({"InstanceId": "cmgo-nothere1"}),
            "InvalidParameterValue.NotFoundInstance",
        ),
        (
            "backup method",
            root,
            "DescribeDBBackups",
            json!({"InstanceId": INSTANCE, "BackupMethod": 5}),
            "InvalidParameterValue",
        ),
        (
            "limit zero",
            root,
            "DescribeDBBackups",
            json!({"InstanceId": INSTANCE, "Limit": 0}),
            "InvalidParameterValue.LimitParaOutOfRange",
        ),
        (
            "limit 101",
            root,
            "DescribeDBBackups",
            json!({"InstanceId": INSTANCE, "Limit": 101}),
            "InvalidParameterValue.LimitParaOutOfRange",
        ),
        (
            "offset",
            root,
            "DescribeDBBackups",
            json!({"InstanceId": INSTANCE, "Offset": 10_001}),
            "InvalidParameterValue.OffsetParaOutOfRange",
        ),
        // DeleteDBBackups
        (
            "no ids",
            root,
            "DeleteDBBackups",
            json!({"InstanceId": INSTANCE}),
            "MissingParameter",
        ),
        (
            "empty ids",
            root,
            "DeleteDBBackups",
            json!({"InstanceId": INSTANCE, "BackupIds": []}),
            "InvalidParameterValue",
        ),
        (
            "id type",
            root,
            "DeleteDBBackups",
            json!({"InstanceId": INSTANCE, "BackupIds": ["one"]}),
            "InvalidParameter",
        ),
        (
            "unknown id",
            root,
            "DeleteDBBackups",
            json!({"InstanceId": INSTANCE, "BackupIds": [424242]}),
            "InvalidParameterValue",
        ),
        (
            "foreign instance",
            root,
            "DeleteDBBackups",
            json!({"InstanceId": OTHER_INSTANCE, "BackupIds": [1]}),
            "InvalidParameterValue.NotFoundInstance",
        ),
        // ModifyBackupExpireTime
        (
            "no expire time",
            root,
            "ModifyBackupExpireTime",
            json!({"InstanceId": INSTANCE, "BackupIds": [1]}),
            "MissingParameter",
        ),
        (
            "expire time format",
            root,
            "ModifyBackupExpireTime",
            json!({"InstanceId": INSTANCE, "ExpireTime": "2099-01-01", "BackupIds": [1]}),
            "InvalidParameterValue.TimeFormatErr",
        ),
        (
            "expire time past",
            root,
            "ModifyBackupExpireTime",
            json!({"InstanceId": INSTANCE, "ExpireTime": "2001-01-01 00:00:00", "BackupIds": [1]}),
            "InvalidParameterValue",
        ),
        (
            "expire no ids",
            root,
            "ModifyBackupExpireTime",
            json!({"InstanceId": INSTANCE, "ExpireTime": "2099-01-01 00:00:00"}),
            "MissingParameter",
        ),
        (
            "expire foreign instance",
            root,
            "ModifyBackupExpireTime",
            json!({"InstanceId": OTHER_INSTANCE, "ExpireTime": "2099-01-01 00:00:00", "BackupIds": [1]}),
            "InvalidParameterValue.NotFoundInstance",
        ),
    ];
    for (name, key, action, body, expected) in cases {
        let response = server.call_as(key, "ap-guangzhou", action, body).await;
        assert_eq!(code_of(&response), Some(expected), "{name}: {response}");
        let message = response["Error"]["Message"].as_str().unwrap();
        assert!(!message.is_empty(), "{name}");
    }
    // The request of another account's backup is not found.
    let backup = server
        .catalog
        .backups()
        .create(
            &mongobak_catalog::NewBackup {
                instance_id: OTHER_INSTANCE.into(),
                method: 0,
                backup_type: mongobak_catalog::BackupType::Manual,
                remark: String::new(),
                retention_days: 0,
                name: "n".into(),
                long_term: false,
            },
            jiff::Timestamp::now(),
        )
        .await
        .unwrap();
    let info = server
        .call(
            "DescribeAsyncRequestInfo",
            json!({"AsyncRequestId": backup.async_request_id}),
        )
        .await;
    assert_eq!(code_of(&info), Some("InvalidParameterValue"), "{info}");
    let theirs = server
        .call_as(
            (OTHER_ID, OTHER_KEY),
            "ap-guangzhou",
            "DescribeAsyncRequestInfo",
            json!({"AsyncRequestId": backup.async_request_id}),
        )
        .await;
    assert_eq!(theirs["Status"], "initial", "{theirs}");
    // Deleting a queued backup is refused as still running.
    let running = server
        .call_as(
            (OTHER_ID, OTHER_KEY),
            "ap-guangzhou",
            "DeleteDBBackups",
            json!({"InstanceId": OTHER_INSTANCE, "BackupIds": [backup.id]}),
        )
        .await;
    assert_eq!(
        code_of(&running),
        Some("InvalidParameterValue.StatusAbnormal"),
        "{running}"
    );
}

//! Bounds on what a request can make the server do: every list parameter
//! at its cap (answered) and one over it (`InvalidParameterValue` naming
//! it), over real HTTP against a real catalog.

mod common;

use common::*;
use jiff::Timestamp;
use mongobak_api::{Action, ListCap, LIST_CAPS};
use mongobak_catalog::{backup_name, Backup, BackupSizes, BackupType, NewBackup};
use serde_json::{json, Value};

/// A succeeded backup of `INSTANCE` with nothing stored, made through the
/// catalog as the backup runner would record one.
async fn succeeded_backup(server: &TestServer) -> Backup {
    let now = Timestamp::now();
    let tz = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
    let queued = server
        .catalog
        .backups()
        .create(
            &NewBackup {
                instance_id: INSTANCE.into(),
                method: 0,
                backup_type: BackupType::Manual,
                remark: String::new(),
                retention_days: 0,
                name: backup_name(INSTANCE, now, &tz),
                long_term: false,
            },
            now,
        )
        .await
        .unwrap();
    let claimed = server.catalog.backups().claim_queued(now).await.unwrap();
    assert_eq!(claimed.map(|b| b.id), Some(queued.id));
    server
        .catalog
        .backups()
        .complete(
            queued.id,
            now,
            BackupSizes::default(),
            &[mongobak_catalog::ReplicaSetId::parse(&format!("{INSTANCE}_0")).unwrap()],
            7,
        )
        .await
        .unwrap();
    server
        .catalog
        .backups()
        .get(queued.id)
        .await
        .unwrap()
        .unwrap()
}

/// A request of `cap.action` whose list `cap.parameter` has `n` entries,
/// each one that the action answers when the list is short enough.
fn request(cap: &ListCap, n: usize, backup: &Backup) -> Value {
    let list = |entry: Value| Value::Array(vec![entry; n]);
    match (cap.action, cap.parameter) {
        (Action::DescribeDBInstances, "InstanceIds") => {
            json!({"InstanceIds": list(json!(INSTANCE))})
        }
        (Action::DescribeDBInstances, "Status") => json!({"Status": list(json!(2))}),
        (Action::DescribeDBInstances, "ProjectIds") => json!({"ProjectIds": list(json!(0))}),
        (Action::DescribeDBInstances, "Tags") => {
            json!({"Tags": list(json!({"TagKey": "team", "TagValue": "orders"}))})
        }
        (Action::DeleteDBBackups, "BackupIds") => {
            json!({"InstanceId": INSTANCE, "BackupIds": list(json!(backup.id))})
        }
        (Action::ModifyBackupExpireTime, "BackupIds") => json!({
            "InstanceId": INSTANCE,
            "ExpireTime": "2099-12-31 23:59:59",
            "BackupIds": list(json!(backup.id)),
        }),
        (Action::CreateBackupDownloadTask, "BackupSets") => json!({
            "InstanceId": INSTANCE,
            "BackupName": backup.name,
            "BackupSets": list(json!({"ReplicaSetId": format!("{INSTANCE}_0")})),
        }),
        (Action::DescribeBackupDownloadTask, "Status") => {
            json!({"InstanceId": INSTANCE, "Status": list(json!(0))})
        }
        // No restorable window here: a list within its cap gets as far as
        // the time, which is refused.
        (Action::RestoreDBInstance, "Databases") => json!({
            "InstanceId": INSTANCE,
            "RestoreTime": "2026-01-01 00:00:00",
            "Databases": list(json!({"Db": "shop", "Collections": [
                {"OldCollection": "orders", "NewCollection": "orders_then"}
            ]})),
        }),
        (Action::RestoreDBInstance, "Databases.N.Collections") => json!({
            "InstanceId": INSTANCE,
            "RestoreTime": "2026-01-01 00:00:00",
            "Databases": [{"Db": "shop", "Collections":
                list(json!({"OldCollection": "orders", "NewCollection": "orders_then"}))}],
        }),
        (Action::FlashBackDBInstance, "TargetDatabases") => json!({
            "InstanceId": INSTANCE,
            "TargetFlashbackTime": "2026-01-01 00:00:00",
            "TargetDatabases": list(json!({"DBName": "shop", "Collections": [
                {"CollectionName": "orders", "KeyValues": [{"Value": "1"}]}
            ]})),
        }),
        (Action::FlashBackDBInstance, "TargetDatabases.N.Collections") => json!({
            "InstanceId": INSTANCE,
            "TargetFlashbackTime": "2026-01-01 00:00:00",
            "TargetDatabases": [{"DBName": "shop", "Collections":
                list(json!({"CollectionName": "orders", "KeyValues": [{"Value": "1"}]}))}],
        }),
        (Action::FlashBackDBInstance, "TargetDatabases.N.Collections.N.KeyValues") => json!({
            "InstanceId": INSTANCE,
            "TargetFlashbackTime": "2026-01-01 00:00:00",
            "TargetDatabases": [{"DBName": "shop", "Collections": [
                {"CollectionName": "orders", "KeyValues": list(json!({"Value": "1"}))}
            ]}],
        }),
        (action, parameter) => panic!("no request for {}.{parameter}: add one here", action.name()),
    }
}

#[tokio::test]
async fn every_list_parameter_is_answered_at_its_cap_and_refused_over_it() {
    let server = TestServer::start().await;
    for cap in LIST_CAPS {
        let action = cap.action.name();
        let backup = succeeded_backup(&server).await;
        let at_cap = server.call(action, request(cap, cap.max, &backup)).await;
        // Answered, or refused for something else than the list (a
        // restore time outside the window).
        let expected = match cap.action {
            Action::RestoreDBInstance | Action::FlashBackDBInstance => {
                Some("InvalidParameterValue.QueryTimeOutOfRange")
            }
            _ => None,
        };
        assert_eq!(
            code_of(&at_cap),
            expected,
            "{action}.{} with {} entries: {at_cap}",
            cap.parameter,
            cap.max
        );
        let over = server
            .call(action, request(cap, cap.max + 1, &backup))
            .await;
        assert_eq!(
            code_of(&over),
            Some("InvalidParameterValue"),
            "{action}.{}: {over}",
            cap.parameter
        );
        let message = over["Error"]["Message"].as_str().unwrap();
        assert!(
            message.contains(&format!("`{}`", cap.parameter.replace(".N.", ".0.")))
                && message.contains(&format!("at most {} entries", cap.max)),
            "{message}"
        );
    }
}

#[tokio::test]
async fn flattened_lists_are_capped_too() {
    let server = TestServer::start().await;
    let query = |n: usize| {
        (0..n)
            .map(|i| format!("InstanceIds.{i}={INSTANCE}"))
            .collect::<Vec<_>>()
            .join("&")
    };
    let cap = mongobak_api::caps::INSTANCE_IDS;
    let reply = Tc3::get(&server, &query(cap + 1)).send(&server).await;
    assert_eq!(
        reply.error_code().as_deref(),
        Some("InvalidParameterValue"),
        "{}",
        reply.json()
    );
    let reply = Tc3::get(&server, &query(cap)).send(&server).await;
    assert_eq!(reply.error_code(), None, "{}", reply.json());
}

#[tokio::test]
async fn a_huge_status_list_is_a_parameter_error_not_an_internal_one() {
    let server = TestServer::start().await;
    let statuses = vec![0; 100_000];
    for action in ["DescribeBackupDownloadTask", "DescribeDBInstances"] {
        let reply = server
            .call(action, json!({"InstanceId": INSTANCE, "Status": statuses}))
            .await;
        assert_eq!(code_of(&reply), Some("InvalidParameterValue"), "{action}");
        let message = reply["Error"]["Message"].as_str().unwrap();
        assert!(message.contains("`Status`"), "{message}");
    }
}

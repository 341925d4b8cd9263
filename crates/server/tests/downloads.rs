//! Backup download tasks over HTTP, end to end: a backup of a real
//! SecantusDB server, packaged into a gzipped mongodump archive, downloaded
//! whole and resumed with Range behind a signed URL, and read back: every
//! namespace and document of the source. Plus every parameter's bad values.

mod common;

use std::collections::BTreeMap;

use common::*;
use mongobak_archive::{gunzip, ArchiveReader, Event};
use mongobak_catalog::{InstanceId, ReplicaSetId};
use mongobak_testkit::snapshot::snapshot;
use mongobak_testkit::{seed, MongoServer};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_downloads_as_an_archive_of_the_source() {
    let mongo = MongoServer::start().await;
    let client = mongo.client();
    seed::seed(&client).await.unwrap();
    let expected = snapshot(&client).await.unwrap();
    let server = TestServer::start_with_mongo(&mongo.uri()).await;
    let backup = server.take_backup().await;

    let set = format!("{INSTANCE}_0");
    let recorded = server
        .catalog
        .backups()
        .by_name(INSTANCE, &backup)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        recorded.replica_set_ids.as_deref(),
        Some(&[ReplicaSetId::parse(&set).unwrap()][..]),
        "the backup records the replica sets it holds"
    );
    let created = server
        .call(
            "CreateBackupDownloadTask",
            json!({"InstanceId": INSTANCE, "BackupName": backup, "BackupSets": [{"ReplicaSetId": set}, {"ReplicaSetId": set}]}),
        )
        .await;
    assert_eq!(code_of(&created), None, "{created}");
    assert_eq!(
        created["Tasks"].as_array().unwrap().len(),
        2,
        "one entry per requested set"
    );
    assert_eq!(created["Tasks"][0]["ReplicaSetId"], set);
    let task = server.wait_download(&backup).await;
    // Asking again returns the finished task instead of packaging twice.
    let again = server
        .call("CreateBackupDownloadTask", json!({"InstanceId": INSTANCE, "BackupName": backup, "BackupSets": [{"ReplicaSetId": set}]}))
        .await;
    assert_eq!(again["Tasks"], json!([{"ReplicaSetId": set, "Status": 2}]));
    let listed = server
        .call(
            "DescribeBackupDownloadTask",
            json!({"InstanceId": INSTANCE}),
        )
        .await;
    assert_eq!(listed["TotalCount"], 1, "{listed}");

    assert_eq!(task["Percent"], 100);
    assert_eq!(task["BackupName"], backup);
    assert_eq!(task["Region"], "ap-guangzhou");
    assert_eq!(task["BackupMethod"], 0);
    let size = task["BackupSize"].as_u64().unwrap();
    let url = task["Url"].as_str().unwrap().to_string();
    assert!(
        url.starts_with(&format!("http://{}/download/", server.host())),
        "{url}"
    );
    assert!(
        url.contains(".archive.gz?") && !url.contains(' ') && !url.contains("%3A"),
        "{url}"
    );

    // The whole file.
    let whole = server.get(&url, &[]).await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body.len() as u64, size);
    let sha = hex::encode(Sha256::digest(&whole.body));
    assert_eq!(task["SHA256"], sha);
    assert_eq!(whole.header("etag"), Some(format!("\"{sha}\"").as_str()));
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert!(whole
        .header("content-disposition")
        .unwrap()
        .contains(".archive.gz"));

    // Resumed from the middle, under If-Range.
    let half = size / 2;
    let rest = server
        .get(
            &url,
            &[
                ("range", &format!("bytes={half}-")),
                ("if-range", &format!("\"{sha}\"")),
            ],
        )
        .await;
    assert_eq!(rest.status, 206);
    assert_eq!(
        rest.header("content-range"),
        Some(format!("bytes {half}-{}/{size}", size - 1).as_str())
    );
    assert_eq!(&rest.body[..], &whole.body[half as usize..]);
    let outside = server
        .get(&url, &[("range", &format!("bytes={size}-"))])
        .await;
    assert_eq!(outside.status, 416);

    // The checksum alongside.
    let (path, query) = url.split_once('?').unwrap();
    let checksum = server.get(&format!("{path}.sha256?{query}"), &[]).await;
    assert_eq!(
        String::from_utf8(checksum.body.to_vec())
            .unwrap()
            .split_whitespace()
            .next(),
        Some(sha.as_str())
    );

    // Tampered and expired links are refused before anything is read.
    let tampered = url.replace("signature=", "signature=0");
    assert_eq!(server.get(&tampered, &[]).await.status, 403);
    let expired = {
        let (base, query) = url.split_once('?').unwrap();
        let expires: i64 = query
            .split('&')
            .find_map(|p| p.strip_prefix("expires="))
            .unwrap()
            .parse()
            .unwrap();
        format!(
            "{base}?{}",
            query.replace(
                &format!("expires={expires}"),
                &format!("expires={}", expires - 86_400 * 2)
            )
        )
    };
    assert_eq!(server.get(&expired, &[]).await.status, 403);
    let other_task = url.replacen("/download/", "/download/9", 1);
    assert_eq!(server.get(&other_task, &[]).await.status, 403);

    // The archive holds exactly the source.
    let mut reader = ArchiveReader::new(gunzip(&whole.body[..])).unwrap();
    assert_eq!(reader.header().concurrent_collections, 1);
    let prelude: Vec<String> = reader
        .prelude()
        .iter()
        .map(|m| format!("{}.{}", m.db, m.collection))
        .collect();
    assert_eq!(
        prelude.last().map(String::as_str),
        Some(".oplog"),
        "the oplog is declared last"
    );
    assert!(
        prelude[0].starts_with("admin.system."),
        "auth namespaces come first: {prelude:?}"
    );
    let mut documents: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    let mut current = String::new();
    let mut order = Vec::new();
    while let Some(event) = reader.next_event().unwrap() {
        match event {
            Event::SegmentStart { namespace } => current = namespace.to_string(),
            Event::Document(bytes) => documents.entry(current.clone()).or_default().push(bytes),
            Event::NamespaceEnd { namespace, .. } => order.push(namespace.to_string()),
        }
    }
    assert_eq!(order.last().map(String::as_str), Some(".oplog"));
    for (ns, state) in &expected {
        // Time series documents travel under system.buckets.<name> for
        // sources before 8.3, where restore looks for them.
        let data_ns = match state.options.contains_key("timeseries") {
            true => {
                let (db, name) = ns.split_once('.').unwrap();
                format!("{db}.system.buckets.{name}")
            }
            false => ns.clone(),
        };
        let mut got = documents.remove(&data_ns).unwrap_or_default();
        got.sort();
        assert!(got == state.documents, "{ns}: documents differ");
        assert!(order.contains(&data_ns), "{data_ns} reached EOF");
    }
    assert!(
        documents.keys().all(|k| k == ".oplog"),
        "no other namespaces: {:?}",
        documents.keys()
    );
    let items = reader
        .prelude()
        .iter()
        .find(|m| m.db == "shop" && m.collection == "items")
        .unwrap();
    assert!(
        items.metadata_json.contains("\"sku_unique\""),
        "{}",
        items.metadata_json
    );
    assert!(items.metadata_json.contains("\"collectionName\":\"items\""));
}

#[tokio::test]
async fn bad_parameters_get_the_right_codes() {
    let server = TestServer::start().await;
    // A finished backup to name, without taking one.
    let backup = queue_backup(&server, INSTANCE, jiff::Timestamp::now()).await;
    let set = format!("{INSTANCE}_0");
    let create = |body: Value| ("CreateBackupDownloadTask", body);
    let describe = |body: Value| ("DescribeBackupDownloadTask", body);
    let cases = vec![
        (
            create(json!({"BackupName": backup.name, "BackupSets": [{"ReplicaSetId": set}]})),
            "MissingParameter",
        ),
        (
            create(json!({"InstanceId": INSTANCE, "BackupSets": [{"ReplicaSetId": set}]})),
            "MissingParameter",
        ),
        (
            create(json!({"InstanceId": INSTANCE, "BackupName": backup.name})),
            "MissingParameter",
        ),
        (
            create(json!({"InstanceId": INSTANCE, "BackupName": backup.name, "BackupSets": []})),
            "InvalidParameterValue",
        ),
        (
            create(json!({"InstanceId": INSTANCE, "BackupName": backup.name, "BackupSets": [{}]})),
            "MissingParameter",
        ),
        (
            create(json!({"InstanceId": INSTANCE, "BackupName": backup.name, "BackupSets": [7]})),
            "InvalidParameter",
        ),
        (
            create(
                json!({"InstanceId": INSTANCE, "BackupName": backup.name, "BackupSets": [{"ReplicaSetId": format!("{INSTANCE}_1")}]}),
            ),
            "InvalidParameterValue.ReplicaNotFound",
        ),
        (
            create(
                json!({"InstanceId": INSTANCE, "BackupName": backup.name, "BackupSets": [{"ReplicaSetId": format!("{OTHER_INSTANCE}_0")}]}),
            ),
            "InvalidParameterValue.ReplicaNotFound",
        ),
        (
            create(
                json!({"InstanceId": INSTANCE, "BackupName": "cmgo-test0001_2001-01-01 00:00", "BackupSets": [{"ReplicaSetId": set}]}),
            ),
            "InvalidParameterValue.BackupFileNotFound",
        ),
        // Still queued: not downloadable yet.
        (
            create(
                json!({"InstanceId": INSTANCE, "BackupName": backup.name, "BackupSets": [{"ReplicaSetId": set}]}),
            ),
            "InvalidParameterValue.BackupFileNotFound",
        ),
        (
            create(
                json!({"InstanceId": OTHER_INSTANCE, "BackupName": backup.name, "BackupSets": [{"ReplicaSetId": set}]}),
            ),
            "InvalidParameterValue.NotFoundInstance",
        ),
        (
            create(
                json!({"InstanceId": INSTANCE, "BackupName": backup.name, "BackupSets": [{"ReplicaSetId": set}], "Extra": 1}),
            ),
            "UnknownParameter",
        ),
        (describe(json!({})), "MissingParameter"),
        (
            describe(json!({"InstanceId": "cmgo-nothere1"})),
            "InvalidParameterValue.NotFoundInstance",
        ),
        (
            describe(json!({"InstanceId": INSTANCE, "Limit": 0})),
            "InvalidParameterValue.LimitParaOutOfRange",
        ),
        (
            describe(json!({"InstanceId": INSTANCE, "Limit": 101})),
            "InvalidParameterValue.LimitParaOutOfRange",
        ),
        (
            describe(json!({"InstanceId": INSTANCE, "Offset": -1})),
            "InvalidParameterValue.OffsetParaOutOfRange",
        ),
        (
            describe(json!({"InstanceId": INSTANCE, "OrderBy": "size"})),
            "InvalidParameterValue",
        ),
        (
            describe(json!({"InstanceId": INSTANCE, "OrderByType": "up"})),
            "InvalidParameterValue",
        ),
        (
            describe(json!({"InstanceId": INSTANCE, "Status": [9]})),
            "InvalidParameterValue",
        ),
        (
            describe(json!({"InstanceId": INSTANCE, "Status": ["x"]})),
            "InvalidParameter",
        ),
        (
            describe(json!({"InstanceId": INSTANCE, "StartTime": "yesterday"})),
            "InvalidParameterValue.TimeFormatErr",
        ),
        (
            describe(
                json!({"InstanceId": INSTANCE, "StartTime": "2026-11-28 10:00:00", "EndTime": "2026-11-27 10:00:00"}),
            ),
            "InvalidParameterValue.StartTimeNotBeforeThanEndTime",
        ),
        (
            describe(json!({"InstanceId": INSTANCE, "BackupName": "nope"})),
            "InvalidParameterValue.BackupFileNotFound",
        ),
    ];
    for ((action, body), expected) in cases {
        let response = server.call(action, body.clone()).await;
        assert_eq!(
            code_of(&response),
            Some(expected),
            "{action} {body}: {response}"
        );
    }
    // A sub-account whose policy does not cover the instance.
    let denied = server
        .call_as(
            (NARROW_ID, NARROW_KEY),
            "ap-guangzhou",
            "CreateBackupDownloadTask",
            json!({"InstanceId": INSTANCE, "BackupName": backup.name, "BackupSets": [{"ReplicaSetId": set}]}),
        )
        .await;
    assert_eq!(
        code_of(&denied),
        Some("InvalidParameter.PermissionDenied"),
        "{denied}"
    );
    // A finished backup with a waiting download task cannot be deleted.
    let now = jiff::Timestamp::now();
    let finished = queue_backup(&server, SHANGHAI_INSTANCE, now).await;
    let claimed = server
        .catalog
        .backups()
        .claim_queued(now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        claimed.id, backup.id,
        "the older queued backup is claimed first"
    );
    let claimed = server
        .catalog
        .backups()
        .claim_queued(now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, finished.id);
    server
        .catalog
        .backups()
        .complete(
            finished.id,
            now,
            mongobak_catalog::BackupSizes {
                raw_bytes: 10,
                stored_bytes: 10,
                oplog_bytes: 0,
            },
            &[ReplicaSetId::parse(&format!("{SHANGHAI_INSTANCE}_0")).unwrap()],
            7,
        )
        .await
        .unwrap();
    let queued = server
        .call_as(
            (ROOT_ID, ROOT_KEY),
            "ap-shanghai",
            "CreateBackupDownloadTask",
            json!({"InstanceId": SHANGHAI_INSTANCE, "BackupName": finished.name, "BackupSets": ["cmgo-shang001_0"]}),
        )
        .await;
    assert_eq!(
        queued["Tasks"],
        json!([{"ReplicaSetId": "cmgo-shang001_0", "Status": 0}]),
        "{queued}"
    );
    let refused = server
        .call_as(
            (ROOT_ID, ROOT_KEY),
            "ap-shanghai",
            "DeleteDBBackups",
            json!({"InstanceId": SHANGHAI_INSTANCE, "BackupIds": [finished.id]}),
        )
        .await;
    assert_eq!(
        code_of(&refused),
        Some("InvalidParameterValue.StatusAbnormal"),
        "{refused}"
    );
    // Status given as strings, as an official example does, is accepted.
    let listed = server
        .call("DescribeBackupDownloadTask", json!({"InstanceId": INSTANCE, "Status": ["2"], "OrderBy": "finishTime", "OrderByType": "asc"}))
        .await;
    assert_eq!(code_of(&listed), None, "{listed}");
    assert_eq!(listed["TotalCount"], 0);
}

/// A download request names the replica sets the backup holds, whatever
/// the instance has now: a set the instance no longer has is still
/// downloadable from an older backup, and a set the backup does not hold is
/// refused with the sets it does hold.
#[tokio::test]
async fn requests_are_checked_against_the_sets_the_backup_holds() {
    let server = TestServer::start().await;
    let now = jiff::Timestamp::now();
    let backup = queue_backup(&server, INSTANCE, now).await;
    let claimed = server.catalog.backups().claim_queued(now).await.unwrap();
    assert_eq!(claimed.map(|b| b.id), Some(backup.id));
    // Taken when the instance had two replica sets; it has one now.
    let instance = InstanceId::parse(INSTANCE).unwrap();
    let held = [instance.replica_set(0), instance.replica_set(1)];
    server
        .catalog
        .backups()
        .complete(
            backup.id,
            now,
            mongobak_catalog::BackupSizes::default(),
            &held,
            7,
        )
        .await
        .unwrap();
    let queued = server
        .call(
            "CreateBackupDownloadTask",
            json!({"InstanceId": INSTANCE, "BackupName": backup.name, "BackupSets": [{"ReplicaSetId": held[1]}]}),
        )
        .await;
    assert_eq!(
        queued["Tasks"],
        json!([{"ReplicaSetId": held[1], "Status": 0}]),
        "{queued}"
    );
    let refused = server
        .call(
            "CreateBackupDownloadTask",
            json!({"InstanceId": INSTANCE, "BackupName": backup.name, "BackupSets": [{"ReplicaSetId": format!("{INSTANCE}_2")}]}),
        )
        .await;
    assert_eq!(
        code_of(&refused),
        Some("InvalidParameterValue.ReplicaNotFound"),
        "{refused}"
    );
    let message = refused["Error"]["Message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{INSTANCE}_2")) && message.contains(&held.join(", ")),
        "{message}"
    );
}

/// A manual backup of `instance` named `<instance>_2026-11-28 10:44`,
/// queued at `now` (nothing is taken).
async fn queue_backup(
    server: &TestServer,
    instance: &str,
    now: jiff::Timestamp,
) -> mongobak_catalog::Backup {
    server
        .catalog
        .backups()
        .create(
            &mongobak_catalog::NewBackup {
                instance_id: instance.into(),
                method: 0,
                backup_type: mongobak_catalog::BackupType::Manual,
                remark: String::new(),
                retention_days: 0,
                name: format!("{instance}_2026-11-28 10:44"),
                long_term: false,
            },
            now,
        )
        .await
        .unwrap()
}

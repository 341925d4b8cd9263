//! `mongobak restore --instance ID --at TIME --collection DB.COLL[=NEW]`:
//! point-in-time restore through the API of a running mongobak
//! (`RestoreDBInstance`), waiting for its FlowId with a progress meter
//! (`DescribeAsyncRequestInfo`).
//!
//! `--collection` takes `db.collection=new` (restored as `new` in the same
//! database), `db.collection` (restored as `collection_bak<MMDDhhmmss>` of
//! the time, as TencentDB names them), or `db` alone (every collection the
//! database had). A failed restore is exit status 7 with the server's
//! reason.

use std::time::Duration;

use anyhow::bail;
use clap::Args;
use serde::Serialize;

use mongobak_api::model::{
    AsyncRequestStatus, DescribeAsyncRequestInfoRequest, RestoreCollection,
    RestoreDBInstanceRequest, RestoreDatabases,
};

use crate::client::{ApiClient, ClientArgs};
use crate::failure::Failure;
use crate::output::{print_json, print_table, Output};
use crate::progress::Progress;

/// Pause between two looks at a running restore.
const POLL: Duration = Duration::from_millis(500);

/// What `mongobak restore` needs for a point-in-time restore.
#[derive(Debug, Args)]
pub struct PointInTimeArgs {
    /// Restore collections of this instance (cmgo-...) to a point in time,
    /// through the API of a running mongobak, instead of an archive.
    #[arg(long, value_name = "ID", requires_all = ["at", "collection"])]
    pub instance: Option<String>,
    /// The time: "YYYY-MM-DD hh:mm:ss" in the server's time zone; every
    /// write in or before that second, none after.
    #[arg(long, value_name = "TIME", requires = "instance")]
    pub at: Option<String>,
    /// `db.collection=new`, `db.collection` (as `collection_bak<MMDDhhmmss>`)
    /// or `db` (every collection); repeatable.
    #[arg(long, value_name = "DB.COLL[=NEW]", requires = "instance")]
    pub collection: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Runs a point-in-time restore and waits for it.
pub async fn run(args: PointInTimeArgs, instance: String, quiet: bool) -> anyhow::Result<()> {
    let at = args.at.clone().unwrap_or_default();
    let databases = databases(&args.collection, &at)?;
    let client = ApiClient::from_args(&args.client)?;
    let asked = client
        .call(&RestoreDBInstanceRequest {
            instance_id: instance.clone(),
            restore_time: at.clone(),
            databases: databases.clone(),
        })
        .await?;
    let flow_id = asked.flow_id.to_string();
    let meter = Progress::new(quiet).percent("restoring", &instance);
    loop {
        let info = client
            .call(&DescribeAsyncRequestInfoRequest {
                async_request_id: flow_id.clone(),
            })
            .await?;
        meter.set_position(info.progress.clamp(0, 100) as u64);
        match info.status {
            AsyncRequestStatus::Success => break,
            AsyncRequestStatus::Initial | AsyncRequestStatus::Running => {
                tokio::time::sleep(POLL).await
            }
            AsyncRequestStatus::Failed => {
                meter.finish();
                let reason = info.failure_reason.as_str();
                return Err(Failure::ServerSide(format!(
                    "the restore of {instance} to {at} (FlowId {flow_id}) failed: {}",
                    if reason.is_empty() {
                        "no reason given"
                    } else {
                        reason
                    }
                ))
                .into());
            }
        }
    }
    meter.set_position(100);
    meter.finish();
    let restored = Restored {
        flow_id: asked.flow_id,
        instance_id: &instance,
        restore_time: &at,
        databases: &databases,
    };
    match args.client.output {
        Output::Json => print_json(&restored),
        Output::Table => {
            print_table(
                &["FLOW ID", "TIME", "DATABASE", "FROM", "TO"],
                databases.iter().flat_map(|db| {
                    let every = (db.collections.is_empty()).then(|| {
                        vec![
                            flow_id.clone(),
                            at.clone(),
                            db.db.clone(),
                            "*".into(),
                            "*_bak<MMDDhhmmss>".into(),
                        ]
                    });
                    every.into_iter().chain(db.collections.iter().map(|c| {
                        vec![
                            flow_id.clone(),
                            at.clone(),
                            db.db.clone(),
                            c.old_collection.clone(),
                            c.new_collection.clone(),
                        ]
                    }))
                }),
            );
            Ok(())
        }
    }
}

/// What `--output json` prints once the restore succeeded.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Restored<'a> {
    flow_id: i64,
    instance_id: &'a str,
    restore_time: &'a str,
    databases: &'a [RestoreDatabases],
}

/// The `Databases` of the request from `--collection` values, grouped by
/// database in the order given.
fn databases(specs: &[String], at: &str) -> anyhow::Result<Vec<RestoreDatabases>> {
    let suffix: String = at
        .chars()
        .filter(char::is_ascii_digit)
        .skip(4)
        .collect::<String>();
    if suffix.len() != 10 {
        bail!("--at {at:?}: expected \"YYYY-MM-DD hh:mm:ss\"");
    }
    let mut databases: Vec<RestoreDatabases> = Vec::new();
    for spec in specs {
        let (name, new) = match spec.split_once('=') {
            Some((name, new)) => (name, Some(new)),
            None => (spec.as_str(), None),
        };
        let (db, collection) = match name.split_once('.') {
            Some((db, collection)) => (db, Some(collection)),
            None => (name, None),
        };
        if db.is_empty() || collection.is_some_and(str::is_empty) {
            bail!("--collection {spec:?}: expected db.collection[=new] or db");
        }
        let index = match databases.iter().position(|d| d.db == db) {
            Some(index) => index,
            None => {
                databases.push(RestoreDatabases {
                    db: db.to_string(),
                    collections: Vec::new(),
                });
                databases.len() - 1
            }
        };
        match (collection, new) {
            (Some(collection), new) => databases[index].collections.push(RestoreCollection {
                old_collection: collection.to_string(),
                new_collection: new
                    .map_or_else(|| format!("{collection}_bak{suffix}"), str::to_string),
            }),
            (None, None) => {}
            (None, Some(_)) => {
                bail!("--collection {spec:?}: a whole database is restored under new names of its own; name a collection to choose one")
            }
        }
    }
    let whole: Vec<&str> = specs
        .iter()
        .filter(|s| !s.contains('.'))
        .map(String::as_str)
        .collect();
    if let Some(db) = databases
        .iter()
        .find(|d| !d.collections.is_empty() && whole.contains(&d.db.as_str()))
    {
        bail!(
            "--collection: database {} is given both whole and by collection",
            db.db
        );
    }
    Ok(databases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collections_are_read_as_the_api_takes_them() {
        let at = "2026-12-06 14:02:59";
        let parsed = databases(
            &[
                "shop.orders=orders_back".into(),
                "shop.items".into(),
                "crm".into(),
            ],
            at,
        )
        .unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].db, "shop");
        assert_eq!(parsed[0].collections[0].new_collection, "orders_back");
        assert_eq!(
            parsed[0].collections[1].new_collection,
            "items_bak1206140259"
        );
        assert_eq!(parsed[1].db, "crm");
        assert!(parsed[1].collections.is_empty());
        for bad in ["shop.", ".orders", "shop=x"] {
            assert!(databases(&[bad.into()], at).is_err(), "{bad}");
        }
        assert!(databases(&["shop".into(), "shop.orders".into()], at).is_err());
        assert!(databases(&["shop.orders".into()], "yesterday").is_err());
    }
}

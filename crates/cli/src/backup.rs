//! `mongobak backup create` and `mongobak backup list`: the backup actions
//! of the API (`CreateBackupDBInstance`, `DescribeAsyncRequestInfo`,
//! `DescribeDBBackups`) from the command line.
//!
//! `create --wait` polls the asynchronous request with a progress meter
//! until the backup succeeds or fails; a failed backup is exit status 7
//! with the server's reason.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::client::{ApiClient, ClientArgs};
use crate::failure::Failure;
use crate::output::{human_bytes, print_json, print_table, Output};
use crate::progress::Progress;

/// Pause between two looks at a running backup.
const POLL: Duration = Duration::from_millis(500);

/// `mongobak backup ...`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(subcommand)]
    command: BackupCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Take a logical backup of an instance now.
    Create(CreateArgs),
    /// List an instance's backups, running and finished.
    List(ListArgs),
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// The instance (cmgo-...).
    #[arg(long, value_name = "ID")]
    instance: String,
    /// A note kept with the backup.
    #[arg(long, value_name = "TEXT")]
    remark: Option<String>,
    /// Wait until the backup has finished, showing its progress.
    #[arg(long)]
    wait: bool,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// The instance (cmgo-...).
    #[arg(long, value_name = "ID")]
    instance: String,
}

/// Runs a `backup` command.
pub async fn run(args: BackupArgs) -> anyhow::Result<()> {
    let client = ApiClient::from_args(&args.client)?;
    let output = args.client.output;
    match args.command {
        BackupCommand::Create(create) => self::create(&client, output, create).await,
        BackupCommand::List(list) => {
            let backups = backups_of(&client, &list.instance).await?;
            match output {
                Output::Json => print_json(&backups),
                Output::Table => {
                    print_backups(backups["BackupList"].as_array().map_or(&[], Vec::as_slice));
                    Ok(())
                }
            }
        }
    }
}

async fn create(client: &ApiClient, output: Output, args: CreateArgs) -> anyhow::Result<()> {
    let mut params = json!({"InstanceId": args.instance, "BackupMethod": 0});
    if let Some(remark) = &args.remark {
        params["BackupRemark"] = json!(remark);
    }
    let created = client.call("CreateBackupDBInstance", params).await?;
    let request_id = created["AsyncRequestId"].as_str().unwrap_or_default();
    if !args.wait {
        return match output {
            Output::Json => print_json(&json!({"AsyncRequestId": request_id})),
            Output::Table => {
                print_table(&["ASYNC REQUEST ID"], [vec![request_id.to_string()]]);
                Ok(())
            }
        };
    }
    let progress = Progress::new(args.quiet);
    let meter = progress.percent("backing up", &args.instance);
    let info = loop {
        let info = client
            .call(
                "DescribeAsyncRequestInfo",
                json!({"AsyncRequestId": request_id}),
            )
            .await?;
        meter.set_position(info["Progress"].as_u64().unwrap_or(0).min(100));
        match info["Status"].as_str() {
            Some("success") => break info,
            Some("initial" | "running") => tokio::time::sleep(POLL).await,
            other => {
                meter.finish();
                let reason = info["FailureReason"].as_str().unwrap_or_default();
                return Err(Failure::ServerSide(format!(
                    "the backup of {} failed ({}): {}",
                    args.instance,
                    other.unwrap_or("no status"),
                    if reason.is_empty() {
                        "no reason given"
                    } else {
                        reason
                    }
                ))
                .into());
            }
        }
    };
    meter.set_position(100);
    meter.finish();
    let name = info["BackupName"].as_str().unwrap_or_default();
    let listed = backups_of(client, &args.instance).await?;
    let backup = listed["BackupList"]
        .as_array()
        .and_then(|list| list.iter().find(|b| b["BackupName"] == name))
        .cloned()
        .unwrap_or_else(|| json!({"BackupName": name}));
    match output {
        Output::Json => {
            let mut out = backup;
            out["AsyncRequestId"] = json!(request_id);
            print_json(&out)
        }
        Output::Table => {
            print_backups(std::slice::from_ref(&backup));
            Ok(())
        }
    }
}

/// `DescribeDBBackups` of an instance.
pub async fn backups_of(client: &ApiClient, instance: &str) -> anyhow::Result<Value> {
    let mut listed = client
        .call("DescribeDBBackups", json!({"InstanceId": instance}))
        .await?;
    if let Some(fields) = listed.as_object_mut() {
        fields.remove("RequestId");
    }
    Ok(listed)
}

/// The columns of `BackupInfo` rows.
fn print_backups(backups: &[Value]) {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    print_table(
        &[
            "NAME", "STATUS", "SIZE", "START", "END", "EXPIRES", "REMARK",
        ],
        backups.iter().map(|b| {
            vec![
                text(&b["BackupName"]),
                match b["Status"].as_i64() {
                    Some(2) => "done".to_string(),
                    Some(1) => "running".to_string(),
                    _ => String::new(),
                },
                b["BackupSize"]
                    .as_u64()
                    .map(|kb| human_bytes(kb * 1024))
                    .unwrap_or_default(),
                text(&b["StartTime"]),
                text(&b["EndTime"]),
                text(&b["DeleteTime"]),
                text(&b["BackupDesc"]),
            ]
        }),
    );
}

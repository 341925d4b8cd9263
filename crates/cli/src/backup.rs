//! `mongobak backup create`, `mongobak backup list` and `mongobak backup
//! window`: the backup actions of the API (`CreateBackupDBInstance`,
//! `DescribeAsyncRequestInfo`, `DescribeDBBackups`, and the restorable
//! window `DescribeBackupRules` answers) from the command line.
//!
//! `create --wait` polls the asynchronous request with a progress meter
//! until the backup succeeds or fails; a failed backup is exit status 7
//! with the server's reason.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Serialize;

use mongobak_api::model::{
    backup_method, AsyncRequestStatus, BackupInfo, BackupState, CreateBackupDBInstanceRequest,
    DescribeAsyncRequestInfoRequest, DescribeBackupRulesRequest, DescribeDBBackupsRequest,
    DescribeDBBackupsResponse,
};

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
    /// Show the times an instance can be restored to (point-in-time
    /// recovery): from its oldest base backup to its newest saved oplog,
    /// less any gap.
    Window(ListArgs),
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
                    print_backups(backups.backup_list.iter().map(Listed::Info));
                    Ok(())
                }
            }
        }
        BackupCommand::Window(window) => {
            let rules = client
                .call(&DescribeBackupRulesRequest {
                    instance_id: window.instance,
                })
                .await?;
            match output {
                Output::Json => print_json(&rules.restore_window),
                Output::Table => {
                    print_table(
                        &["FROM", "TO"],
                        rules
                            .restore_window
                            .iter()
                            .map(|span| vec![span.start_time.clone(), span.end_time.clone()]),
                    );
                    Ok(())
                }
            }
        }
    }
}

async fn create(client: &ApiClient, output: Output, args: CreateArgs) -> anyhow::Result<()> {
    let created = client
        .call(&CreateBackupDBInstanceRequest {
            instance_id: args.instance.clone(),
            backup_method: backup_method::LOGICAL,
            backup_remark: args.remark.clone(),
            backup_retention_days: None,
        })
        .await?;
    let request_id = created.async_request_id.as_str();
    if !args.wait {
        return match output {
            Output::Json => print_json(&created),
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
            .call(&DescribeAsyncRequestInfoRequest {
                async_request_id: request_id.to_string(),
            })
            .await?;
        meter.set_position(info.progress.clamp(0, 100) as u64);
        match info.status {
            AsyncRequestStatus::Success => break info,
            AsyncRequestStatus::Initial | AsyncRequestStatus::Running => {
                tokio::time::sleep(POLL).await
            }
            AsyncRequestStatus::Failed => {
                meter.finish();
                let reason = info.failure_reason.as_str();
                return Err(Failure::ServerSide(format!(
                    "the backup of {} failed (failed): {}",
                    args.instance,
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
    let name = info.backup_name.as_str();
    let listed = backups_of(client, &args.instance).await?;
    let backup = listed
        .backup_list
        .iter()
        .find(|b| b.backup_name == name)
        .map_or(Listed::Name { backup_name: name }, Listed::Info);
    match output {
        Output::Json => print_json(&Created {
            backup,
            async_request_id: request_id,
        }),
        Output::Table => {
            print_backups([backup]);
            Ok(())
        }
    }
}

/// A backup just taken, as `backup create --wait --output json` prints it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Created<'a> {
    #[serde(flatten)]
    backup: Listed<'a>,
    async_request_id: &'a str,
}

/// A backup as DescribeDBBackups lists it, or only its name when the list
/// no longer shows it.
#[derive(Clone, Copy, Serialize)]
#[serde(untagged)]
enum Listed<'a> {
    Info(&'a BackupInfo),
    #[serde(rename_all = "PascalCase")]
    Name {
        backup_name: &'a str,
    },
}

/// `DescribeDBBackups` of an instance.
pub async fn backups_of(
    client: &ApiClient,
    instance: &str,
) -> anyhow::Result<DescribeDBBackupsResponse> {
    client
        .call(&DescribeDBBackupsRequest {
            instance_id: instance.to_string(),
            ..Default::default()
        })
        .await
}

/// The columns of `BackupInfo` rows.
fn print_backups<'a>(backups: impl IntoIterator<Item = Listed<'a>>) {
    print_table(
        &[
            "NAME", "STATUS", "SIZE", "START", "END", "EXPIRES", "REMARK",
        ],
        backups.into_iter().map(|listed| match listed {
            Listed::Info(b) => vec![
                b.backup_name.clone(),
                match b.status {
                    BackupState::Succeeded => "done",
                    BackupState::Running => "running",
                }
                .to_string(),
                human_bytes(b.backup_size * 1024),
                b.start_time.clone(),
                b.end_time.clone(),
                b.delete_time.clone(),
                b.backup_desc.clone(),
            ],
            Listed::Name { backup_name } => {
                let mut row = vec![String::new(); 7];
                row[0] = backup_name.to_string();
                row
            }
        }),
    );
}

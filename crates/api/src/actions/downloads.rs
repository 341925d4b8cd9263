//! Backup download tasks: CreateBackupDownloadTask and
//! DescribeBackupDownloadTask (their fields: `docs/api.md`; their
//! behaviour: the README's "Downloading a backup").
//!
//! Creating only queues tasks (one per replica set, reusing a task that is
//! waiting, running, retrying or done with a valid file); the packaging
//! workers do the rest. Describing signs a fresh URL for every finished
//! task.

use std::collections::HashMap;

use jiff::Timestamp;

use mongobak_catalog::{Backup, DownloadTask, TaskFilter, TaskOrder, TaskStatus};

use super::{authorize_instance, caps, to_fields, CallContext, Fields};
use crate::error::{clip, ApiError, ErrorKind};
use crate::model::{
    BackupDownloadTask as TaskOut, BackupDownloadTaskStatus, CreateBackupDownloadTaskResponse,
    DescribeBackupDownloadTaskResponse, DownloadTaskStatus,
};
use crate::params::Params;

// ---------------------------------------------------------------- Create

pub(super) async fn create_backup_download_task(
    ctx: &CallContext<'_>,
    mut p: Params,
) -> Result<Fields, ApiError> {
    let instance_id = p.string("InstanceId")?;
    let backup_name = p.string("BackupName")?;
    let sets = p
        .opt_object_list(
            "BackupSets",
            caps::BACKUP_SETS,
            Some("ReplicaSetId"),
            |set| set.string("ReplicaSetId"),
        )?
        .ok_or_else(|| ApiError::missing("BackupSets"))?;
    p.finish()?;
    if sets.is_empty() {
        return Err(ApiError::invalid_value(
            "BackupSets",
            "name at least one replica set, such as <InstanceId>_0",
        ));
    }
    let instance = authorize_instance(ctx, &instance_id).await?;
    let now = Timestamp::now();
    let backup = ctx
        .catalog()
        .backups()
        .by_name(&instance.id, &backup_name)
        .await
        .map_err(crate::catalog_error)?;
    // The replica sets the backup holds, whatever the instance has now;
    // the instance's for a backup from before they were recorded, or
    // none by that name.
    let held = backup
        .as_ref()
        .and_then(|b| b.replica_set_ids.clone())
        .unwrap_or_else(|| instance.replica_set_ids());
    if let Some(unknown) = sets.iter().find(|s| !held.iter().any(|h| h == *s)) {
        return Err(ApiError::bad_value(
            ErrorKind::ReplicaNotFound,
            "BackupSets.ReplicaSetId",
            format_args!(
                "backup {} of instance {} holds no replica set {unknown}; it holds {}",
                clip(&backup_name),
                instance.id,
                held.join(", "),
                unknown = clip(unknown),
            ),
        ));
    }
    let backup = available(backup, &instance.id, &backup_name, now)?;
    // Duplicates count once; the answer still lists every entry.
    let mut unique: Vec<String> = Vec::with_capacity(sets.len());
    for set in &sets {
        if !unique.contains(set) {
            unique.push(set.clone());
        }
    }
    let tasks = ctx
        .catalog()
        .downloads()
        .ensure_tasks(backup.id, &instance.id, &unique, now)
        .await
        .map_err(crate::catalog_error)?;
    let status_of: HashMap<&str, DownloadTaskStatus> = tasks
        .iter()
        .map(|t| (t.replica_set_id.as_str(), wire_status(t.status)))
        .collect();
    let tasks = sets
        .iter()
        .map(|set| BackupDownloadTaskStatus {
            replica_set_id: set.clone(),
            status: status_of[set.as_str()],
        })
        .collect();
    to_fields(CreateBackupDownloadTaskResponse { tasks })
}

/// The backup named `name` of the instance, if it can be downloaded now:
/// succeeded, not deleted, not expired. Anything else is
/// `BackupFileNotFound`.
fn available(
    backup: Option<Backup>,
    instance_id: &str,
    name: &str,
    now: Timestamp,
) -> Result<Backup, ApiError> {
    match backup {
        Some(b) if b.is_available(now) => Ok(b),
        _ => Err(ApiError::new(
            ErrorKind::BackupFileNotFound,
            format!(
                "No finished, unexpired backup named `{}` was found for instance {instance_id}; \
                 DescribeDBBackups lists the available ones.",
                clip(name)
            ),
        )),
    }
}

/// A task's status as the API shows it.
fn wire_status(status: TaskStatus) -> DownloadTaskStatus {
    match status {
        TaskStatus::Waiting => DownloadTaskStatus::Waiting,
        TaskStatus::Running => DownloadTaskStatus::Running,
        TaskStatus::Done => DownloadTaskStatus::Done,
        TaskStatus::Failed => DownloadTaskStatus::Failed,
        TaskStatus::RetryWaiting => DownloadTaskStatus::Retrying,
    }
}

// ---------------------------------------------------------------- Describe

pub(super) async fn describe_backup_download_task(
    ctx: &CallContext<'_>,
    mut p: Params,
) -> Result<Fields, ApiError> {
    let instance_id = p.string("InstanceId")?;
    let backup_name = p.opt_string("BackupName")?;
    let start = p.opt_string("StartTime")?;
    let end = p.opt_string("EndTime")?;
    let limit = p.opt_limit()?.unwrap_or(20);
    let offset = p.offset()?;
    let order_by = p.opt_string("OrderBy")?;
    let order_type = p.opt_string("OrderByType")?;
    let statuses = p.opt_i64_list("Status", caps::STATUS)?.unwrap_or_default();
    p.finish()?;
    let order = match order_by.as_deref() {
        None | Some("createTime") => TaskOrder::CreateTime,
        Some("finishTime") => TaskOrder::FinishTime,
        Some(other) => {
            return Err(ApiError::invalid_value(
                "OrderBy",
                format_args!("`{}` is not createTime or finishTime", clip(other)),
            ))
        }
    };
    let descending = match order_type.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            return Err(ApiError::invalid_value(
                "OrderByType",
                format_args!("`{}` is not asc or desc", clip(other)),
            ))
        }
    };
    let statuses = statuses
        .into_iter()
        .map(|code| {
            TaskStatus::from_code(code).ok_or_else(|| {
                ApiError::invalid_value("Status",
                    format_args!("{code} is not 0 (waiting), 1 (running), 2 (done), 3 (failed) or 4 (retrying)"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let created_from = start
        .as_deref()
        .map(|s| ctx.api.parse_time("StartTime", s))
        .transpose()?;
    let created_to = end
        .as_deref()
        .map(|s| ctx.api.parse_time("EndTime", s))
        .transpose()?;
    if let (Some(from), Some(to)) = (created_from, created_to) {
        if from > to {
            return Err(ApiError::new(
                ErrorKind::StartAfterEnd,
                "The StartTime is after the EndTime.",
            ));
        }
    }
    let instance = authorize_instance(ctx, &instance_id).await?;
    let backups: HashMap<i64, Backup> = ctx
        .catalog()
        .backups()
        .of_instance(&instance.id)
        .await
        .map_err(crate::catalog_error)?
        .into_iter()
        .map(|b| (b.id, b))
        .collect();
    let backup_ids = match &backup_name {
        None => None,
        Some(name) => match backups.values().find(|b| &b.name == name) {
            Some(b) => Some(vec![b.id]),
            None => {
                return Err(ApiError::new(
                    ErrorKind::BackupFileNotFound,
                    format!(
                        "No backup named `{}` was found for instance {}.",
                        clip(name),
                        instance.id
                    ),
                ))
            }
        },
    };
    let filter = TaskFilter {
        backup_ids,
        created_from,
        created_to,
        statuses,
    };
    let (tasks, total_count) = ctx
        .catalog()
        .downloads()
        .list(
            &instance.id,
            &filter,
            order,
            descending,
            offset as u64,
            limit as u64,
        )
        .await
        .map_err(crate::catalog_error)?;
    let now = Timestamp::now();
    let mut described = Vec::with_capacity(tasks.len());
    for task in tasks {
        let url = download_url(ctx, &task, now).await?;
        described.push(describe(
            ctx,
            &instance.region,
            backups.get(&task.backup_id),
            task,
            url,
            now,
        ));
    }
    to_fields(DescribeBackupDownloadTaskResponse {
        total_count,
        tasks: described,
    })
}

/// The URL of `task`'s file while it may be served, `""` otherwise:
/// presigned by the object store when so configured and the store makes
/// such URLs, else the node's own signed `/download/...` URL. Either is valid for the configured time,
/// and never past the file's end.
async fn download_url(
    ctx: &CallContext<'_>,
    task: &DownloadTask,
    now: Timestamp,
) -> Result<String, ApiError> {
    let settings = &ctx.api.config.downloads;
    let Some(file) = task.servable_file(now) else {
        return Ok(String::new());
    };
    if settings.presigned {
        let ttl = settings
            .url_ttl
            .min(file.expires_at.duration_since(now))
            .unsigned_abs();
        let presigned = ctx
            .api
            .store
            .presign_read(&file.path, ttl)
            .await
            .map_err(|e| {
                tracing::error!(task_id = task.id, error = %e, "cannot presign a download URL");
                ApiError::internal()
            })?;
        if let Some(url) = presigned {
            return Ok(url);
        }
    }
    let expires = (now + settings.url_ttl).min(file.expires_at).as_second();
    Ok(settings
        .signer
        .url(&settings.public_url, task.id, file.name(), expires))
}

fn describe(
    ctx: &CallContext<'_>,
    region: &str,
    backup: Option<&Backup>,
    task: DownloadTask,
    url: String,
    now: Timestamp,
) -> TaskOut {
    let settings = &ctx.api.config.downloads;
    let (backup_size, sha256) = task
        .servable_file(now)
        .map_or((0, String::new()), |f| (f.size, f.sha256.clone()));
    TaskOut {
        create_time: ctx.api.format_time(task.created_at),
        backup_name: backup.map(|b| b.name.clone()).unwrap_or_default(),
        replica_set_id: task.replica_set_id.clone(),
        backup_size,
        status: wire_status(task.status),
        percent: task.percent,
        time_spend: task.seconds_spent(now),
        url,
        backup_method: backup.map_or(0, |b| b.method),
        backup_desc: backup.map(|b| b.remark.clone()).unwrap_or_default(),
        region: region.to_string(),
        bucket: settings.bucket.clone(),
        failure_reason: match task.status {
            TaskStatus::Failed | TaskStatus::RetryWaiting => task.failure.unwrap_or_default(),
            _ => String::new(),
        },
        sha256,
    }
}

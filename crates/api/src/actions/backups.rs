//! The backup catalog: CreateBackupDBInstance, DescribeAsyncRequestInfo
//! (of a backup, or of a restore by its FlowId), DescribeDBBackups,
//! DeleteDBBackups and ModifyBackupExpireTime
//! (fields per the SDK's models, parameters per the README's API
//! reference, codes per `docs/protocol.md` §4 and `crate::error`).
//!
//! Backups are taken asynchronously by the backup runner; these handlers
//! only queue, read and change catalog rows, and delete stored data.

use jiff::civil::DateTime;
use jiff::Timestamp;

use mongobak_catalog::{
    backup_name, Backup, BackupStatus, BackupType, Instance, NewBackup, RetiredFileError,
};

use super::{authorize_instance, caps, to_fields, CallContext, Fields};
use crate::error::{clip, ApiError, ErrorKind};
use crate::model::{
    backup_method, AsyncRequestStatus, BackupInfo, BackupState, CreateBackupDBInstanceResponse,
    DeleteDBBackupsResponse, DescribeAsyncRequestInfoResponse, DescribeDBBackupsResponse,
    ModifyBackupExpireTimeResponse,
};
use crate::params::Params;

/// Longest `BackupRemark` accepted, in characters.
const MAX_REMARK_CHARS: usize = 256;

// ---------------------------------------------------------------- Create

pub(super) async fn create_backup_db_instance(
    ctx: &CallContext<'_>,
    mut p: Params,
) -> Result<Fields, ApiError> {
    let instance_id = p.string("InstanceId")?;
    let method = p
        .opt_i64("BackupMethod")?
        .ok_or_else(|| ApiError::missing("BackupMethod"))?;
    let remark = p.opt_string("BackupRemark")?.unwrap_or_default();
    let retention_days = p.opt_i64("BackupRetentionDays")?.unwrap_or(0);
    p.finish()?;
    check_backup_method(method)?;
    if remark.chars().count() > MAX_REMARK_CHARS {
        return Err(ApiError::invalid_value(
            "BackupRemark",
            format_args!("at most {MAX_REMARK_CHARS} characters"),
        ));
    }
    if !(retention_days == -2 || retention_days == -1 || (0..=7300).contains(&retention_days)) {
        return Err(ApiError::invalid_value(
            "BackupRetentionDays",
            "expected -2 (forever), -1 (long-term rule), 0 (the instance's rule) or 1 to 7300 days",
        ));
    }
    let instance = authorize_instance(ctx, &instance_id).await?;
    let now = Timestamp::now();
    let name = backup_name(&instance.id, now, &ctx.api.config.timezone);
    let backup = ctx
        .catalog()
        .backups()
        .create(
            &NewBackup {
                instance_id: instance.id.to_string(),
                method,
                backup_type: BackupType::Manual,
                remark,
                retention_days,
                name,
                long_term: false,
            },
            now,
        )
        .await
        .map_err(crate::catalog_error)?;
    to_fields(CreateBackupDBInstanceResponse {
        async_request_id: backup.async_request_id,
    })
}

/// Refuses every backup method but logical (0), saying why.
pub(super) fn check_backup_method(method: i64) -> Result<(), ApiError> {
    match method {
        backup_method::LOGICAL => Ok(()),
        backup_method::PHYSICAL | backup_method::SNAPSHOT => Err(ApiError::invalid_value("BackupMethod",
            format_args!(
                "{method} ({}) needs access to the database server's files; mongobak takes logical backups (0)",
                if method == backup_method::PHYSICAL {
                    "physical"
                } else {
                    "snapshot"
                }
            ),
        )),
        other => Err(ApiError::invalid_value("BackupMethod",
            format_args!("{other} is not 0 (logical), 1 (physical) or 3 (snapshot)"),
        )),
    }
}

// ---------------------------------------------------------------- Async request

pub(super) async fn describe_async_request_info(
    ctx: &CallContext<'_>,
    mut p: Params,
) -> Result<Fields, ApiError> {
    let id = p.string("AsyncRequestId")?;
    p.finish()?;
    let not_found = || {
        ApiError::invalid_value(
            "AsyncRequestId",
            format_args!("no asynchronous request {} was found", clip(&id)),
        )
    };
    let backup = ctx
        .catalog()
        .backups()
        .by_async_request(&id)
        .await
        .map_err(crate::catalog_error)?;
    let Some(backup) = backup else {
        // A restore's FlowId, if it is one.
        let task = match id.parse::<i64>() {
            Ok(flow_id) => ctx
                .catalog()
                .restores()
                .by_flow(flow_id)
                .await
                .map_err(crate::catalog_error)?,
            Err(_) => None,
        };
        let task = task.ok_or_else(not_found)?;
        authorize_instance(ctx, &task.instance_id)
            .await
            .map_err(|e| match e.kind() {
                ErrorKind::NotFoundInstance => not_found(),
                _ => e,
            })?;
        return super::restores::describe_restore(ctx, task);
    };
    // Requests of other accounts' instances are not found either.
    authorize_instance(ctx, &backup.instance_id)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::NotFoundInstance => not_found(),
            _ => e,
        })?;
    let status = match backup.status {
        BackupStatus::Queued => AsyncRequestStatus::Initial,
        BackupStatus::Running => AsyncRequestStatus::Running,
        BackupStatus::Succeeded | BackupStatus::Deleted => AsyncRequestStatus::Success,
        BackupStatus::Failed => AsyncRequestStatus::Failed,
    };
    to_fields(DescribeAsyncRequestInfoResponse {
        status,
        start_time: ctx.api.format_optional_time(backup.started_at),
        end_time: ctx.api.format_optional_time(backup.finished_at),
        progress: if backup.status == BackupStatus::Succeeded {
            100
        } else {
            backup.percent
        },
        failure_reason: backup.failure.unwrap_or_default(),
        backup_name: backup.name,
    })
}

// ---------------------------------------------------------------- Describe

pub(super) async fn describe_db_backups(
    ctx: &CallContext<'_>,
    mut p: Params,
) -> Result<Fields, ApiError> {
    let instance_id = p.string("InstanceId")?;
    let method = p.opt_i64("BackupMethod")?;
    let limit = p.opt_limit()?;
    let offset = p.offset()?;
    p.finish()?;
    if method.is_some_and(|m| !(backup_method::LOGICAL..=backup_method::SNAPSHOT).contains(&m)) {
        return Err(ApiError::invalid_value(
            "BackupMethod",
            "expected 0 (logical), 1 (physical), 2 (all) or 3 (snapshot)",
        ));
    }
    let instance = authorize_instance(ctx, &instance_id).await?;
    let now = Timestamp::now();
    let listed: Vec<Backup> = ctx
        .catalog()
        .backups()
        .of_instance(&instance.id)
        .await
        .map_err(crate::catalog_error)?
        .into_iter()
        .filter(|b| {
            matches!(b.status, BackupStatus::Queued | BackupStatus::Running) || b.is_available(now)
        })
        .filter(|b| match method {
            None | Some(backup_method::ALL) => true,
            Some(m) => b.method == m,
        })
        .collect();
    let total_count = listed.len();
    let backup_list = listed
        .into_iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .map(|b| BackupInfo {
            instance_id: b.instance_id.clone(),
            backup_type: b.backup_type as i64,
            backup_name: b.name.clone(),
            backup_desc: b.remark.clone(),
            backup_size: b.stored_bytes.div_ceil(1024),
            start_time: ctx
                .api
                .format_optional_time(b.started_at.or(Some(b.created_at))),
            end_time: ctx.api.format_optional_time(b.finished_at),
            status: if b.status == BackupStatus::Succeeded {
                BackupState::Succeeded
            } else {
                BackupState::Running
            },
            backup_method: b.method,
            back_id: b.id,
            delete_time: ctx.api.format_optional_time(b.expires_at),
            backup_region: String::new(),
            restore_time: String::new(),
        })
        .collect();
    to_fields(DescribeDBBackupsResponse {
        backup_list,
        total_count: total_count as u64,
    })
}

// ---------------------------------------------------------------- Delete

/// The backup `id` if it is one of `instance`'s.
async fn backup_of(
    ctx: &CallContext<'_>,
    instance: &Instance,
    id: i64,
) -> Result<Option<Backup>, ApiError> {
    let backup = ctx.catalog().backups().get(id).await;
    let backup = backup.map_err(crate::catalog_error)?;
    Ok(backup.filter(|b| b.instance_id == instance.id))
}

pub(super) async fn delete_db_backups(
    ctx: &CallContext<'_>,
    mut p: Params,
) -> Result<Fields, ApiError> {
    let instance_id = p.string("InstanceId")?;
    let ids = required_ids(&mut p)?;
    p.finish()?;
    let instance = authorize_instance(ctx, &instance_id).await?;
    let now = Timestamp::now();
    // Check every ID before deleting anything.
    let mut targets = Vec::with_capacity(ids.len());
    for id in ids {
        match backup_of(ctx, &instance, id).await? {
            Some(b) if matches!(b.status, BackupStatus::Queued | BackupStatus::Running) => {
                return Err(ApiError::bad_value(
                    ErrorKind::StatusAbnormal,
                    "BackupIds",
                    format_args!("backup {id} is still running; delete it once it has finished"),
                ))
            }
            Some(b) if b.is_available(now) => {
                let downloading = ctx
                    .catalog()
                    .downloads()
                    .backup_has_active(b.id)
                    .await
                    .map_err(crate::catalog_error)?;
                if downloading {
                    return Err(ApiError::bad_value(
                        ErrorKind::StatusAbnormal,
                        "BackupIds",
                        format_args!("backup {id} is being packaged for download; delete it once the task has finished"),
                    ));
                }
                targets.push(b)
            }
            _ => {
                return Err(ApiError::invalid_value(
                    "BackupIds",
                    format_args!("backup {id} of instance {} was not found", instance.id),
                ))
            }
        }
    }
    for backup in targets {
        ctx.api
            .store
            .delete_prefix(&format!("{}/", backup.storage_prefix))
            .await
            .map_err(|e| {
                tracing::error!(backup_id = backup.id, error = %e, "cannot delete backup data");
                ApiError::internal()
            })?;
        let download_files = ctx
            .catalog()
            .backups()
            .mark_deleted(backup.id, now)
            .await
            .map_err(crate::catalog_error)?;
        // Its download files go with it, so that no URL, not even one
        // presigned by the store, leads to them. Any left (storage down)
        // are expired files the janitor deletes.
        let store = &ctx.api.store;
        match ctx
            .catalog()
            .downloads()
            .delete_retired_files(&download_files, |folder| async move {
                store.delete_prefix(&folder).await
            })
            .await
        {
            Ok(_) => {}
            Err(RetiredFileError::Catalog(e)) => return Err(crate::catalog_error(e)),
            Err(e @ RetiredFileError::Storage(_)) => {
                tracing::warn!(backup_id = backup.id, error = %e, "cannot delete a deleted backup's download files; the janitor will")
            }
        }
        tracing::info!(backup_id = backup.id, name = %backup.name, "backup deleted");
    }
    to_fields(DeleteDBBackupsResponse {})
}

fn required_ids(p: &mut Params) -> Result<Vec<i64>, ApiError> {
    let ids = p
        .opt_i64_list("BackupIds", caps::BACKUP_IDS)?
        .ok_or_else(|| ApiError::missing("BackupIds"))?;
    if ids.is_empty() {
        return Err(ApiError::invalid_value(
            "BackupIds",
            "name at least one backup",
        ));
    }
    // An ID given twice counts once.
    let mut unique = Vec::with_capacity(ids.len());
    for id in ids {
        if !unique.contains(&id) {
            unique.push(id);
        }
    }
    Ok(unique)
}

// ---------------------------------------------------------------- Expiry

pub(super) async fn modify_backup_expire_time(
    ctx: &CallContext<'_>,
    mut p: Params,
) -> Result<Fields, ApiError> {
    let instance_id = p.string("InstanceId")?;
    let expire_text = p.string("ExpireTime")?;
    let ids = required_ids(&mut p)?;
    p.finish()?;
    let expire_at = ctx.api.parse_time("ExpireTime", &expire_text)?;
    let now = Timestamp::now();
    if expire_at <= now {
        return Err(ApiError::invalid_value(
            "ExpireTime",
            format_args!("{} is not in the future", clip(&expire_text)),
        ));
    }
    let instance = authorize_instance(ctx, &instance_id).await?;
    let mut failed_backups = Vec::new();
    for id in ids {
        match backup_of(ctx, &instance, id).await? {
            Some(b) if b.is_available(now) => {
                ctx.catalog()
                    .backups()
                    .set_expiry(b.id, Some(expire_at))
                    .await
                    .map_err(crate::catalog_error)?;
            }
            _ => failed_backups.push(id),
        }
    }
    to_fields(ModifyBackupExpireTimeResponse { failed_backups })
}

/// Parses `YYYY-MM-DD hh:mm:ss` in the API's time zone.
pub(crate) fn parse_api_time(
    tz: &jiff::tz::TimeZone,
    name: &str,
    text: &str,
) -> Result<Timestamp, ApiError> {
    let bad = || {
        ApiError::bad_value(
            ErrorKind::TimeFormatErr,
            name,
            format_args!(
                "`{}` is not a time of the form YYYY-MM-DD hh:mm:ss",
                clip(text)
            ),
        )
    };
    if text.len() != 19 {
        return Err(bad());
    }
    let civil = DateTime::strptime("%Y-%m-%d %H:%M:%S", text).map_err(|_| bad())?;
    civil
        .to_zoned(tz.clone())
        .map(|z| z.timestamp())
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_times() {
        let tz = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
        let t = parse_api_time(&tz, "ExpireTime", "2026-11-28 18:00:00").unwrap();
        assert_eq!(t.to_string(), "2026-11-28T10:00:00Z");
        for bad in [
            "2026-11-28",
            "2026-11-28T18:00:00",
            "2026-13-01 00:00:00",
            "2026-11-28 18:00:00 ",
            "x",
        ] {
            let e = parse_api_time(&tz, "ExpireTime", bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::TimeFormatErr, "{bad}");
        }
    }
}

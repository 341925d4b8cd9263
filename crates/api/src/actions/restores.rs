//! Point-in-time recovery: RestoreDBInstance (fields per the SDK's models,
//! rules per docs/api.md), and the answer DescribeAsyncRequestInfo gives
//! for a restore's FlowId.
//!
//! A restore is refused before any work when anything about it is wrong:
//! a malformed time, a time outside the restorable window (naming the
//! window) or later than what is saved, a collection that did not exist
//! then, a target collection that exists or that another restore is
//! writing. Otherwise it is queued as a leased task (`catalog::restore`)
//! that the restore workers run, and its FlowId is answered.

use std::collections::HashSet;

use jiff::Timestamp;
use mongobak_catalog::{
    Instance, NewRestore, RestoreKind, RestorePlan, RestoreStatus, RestoreTarget, RestoreTask,
};
use mongobak_dump::format::{CollectionKind, ReplicaSetManifest};
use mongobak_dump::probe;

use super::namespaces::{check_db_name, deployment, unreadable};
use super::{authorize_instance, caps, to_fields, CallContext, Fields};
use crate::error::{clip, ApiError, ErrorKind};
use crate::model::{
    AsyncRequestStatus, DescribeAsyncRequestInfoResponse, RestoreDBInstanceResponse,
};
use crate::params::Params;

/// Longest `db.collection` MongoDB accepts, in bytes.
const MAX_NAMESPACE_BYTES: usize = 255;

/// One database of the request, as given.
struct Database {
    db: String,
    collections: Vec<(String, String)>,
}

pub(super) async fn restore_db_instance(
    ctx: &CallContext<'_>,
    mut p: Params,
) -> Result<Fields, ApiError> {
    let instance_id = p.string("InstanceId")?;
    let time_text = p.string("RestoreTime")?;
    let databases = p
        .opt_object_list("Databases", caps::RESTORE_DATABASES, None, |db| {
            Ok(Database {
                db: db.string("Db")?,
                collections: db
                    .opt_object_list("Collections", caps::RESTORE_COLLECTIONS, None, |c| {
                        Ok((c.string("OldCollection")?, c.string("NewCollection")?))
                    })?
                    .unwrap_or_default(),
            })
        })?
        .ok_or_else(|| ApiError::missing("Databases"))?;
    p.finish()?;
    let restore_time = ctx.api.parse_time("RestoreTime", &time_text)?;
    if databases.is_empty() {
        return Err(ApiError::invalid_value(
            "Databases",
            "name at least one database to restore",
        ));
    }
    let named: usize = databases.iter().map(|d| d.collections.len()).sum();
    if named > caps::RESTORE_COLLECTIONS {
        return Err(ApiError::invalid_value(
            "Databases",
            format_args!(
                "at most {} collections in one restore, not {named}",
                caps::RESTORE_COLLECTIONS
            ),
        ));
    }
    for (i, database) in databases.iter().enumerate() {
        check_db_name(&format!("Databases.{i}.Db"), &database.db)?;
        for (j, (old, new)) in database.collections.iter().enumerate() {
            let at = format!("Databases.{i}.Collections.{j}");
            check_collection_name(&format!("{at}.OldCollection"), &database.db, old)?;
            check_collection_name(&format!("{at}.NewCollection"), &database.db, new)?;
        }
    }
    let instance = authorize_instance(ctx, &instance_id).await?;
    check_window(ctx, &instance, restore_time, "RestoreTime").await?;
    let base = base_manifest(ctx, &instance, restore_time, "RestoreTime").await?;
    let plan = plan(ctx, &instance, &databases, &base, restore_time).await?;
    let task = ctx
        .catalog()
        .restores()
        .create(
            &NewRestore {
                kind: RestoreKind::Restore,
                instance_id: instance.id.to_string(),
                target_instance_id: instance.id.to_string(),
                restore_time,
                plan,
            },
            Timestamp::now(),
        )
        .await
        .map_err(crate::catalog_error)?;
    to_fields(RestoreDBInstanceResponse {
        flow_id: task.flow_id,
    })
}

/// Refuses a collection name MongoDB would refuse, or a `system.` one.
pub(super) fn check_collection_name(param: &str, db: &str, name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(ApiError::invalid_value(
            param,
            "a collection name is not empty",
        ));
    }
    if name.contains('$') || name.contains('\0') {
        return Err(ApiError::invalid_value(
            param,
            "a collection name holds neither `$` nor NUL",
        ));
    }
    if name.starts_with("system.") {
        return Err(ApiError::invalid_value(
            param,
            "system collections are not restored",
        ));
    }
    if db.len() + 1 + name.len() > MAX_NAMESPACE_BYTES {
        return Err(ApiError::invalid_value(
            param,
            format_args!("`{db}.<collection>` has at most {MAX_NAMESPACE_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Refuses a time (of parameter `param`) the instance cannot be restored
/// to, naming what can.
pub(super) async fn check_window(
    ctx: &CallContext<'_>,
    instance: &Instance,
    at: Timestamp,
    param: &str,
) -> Result<(), ApiError> {
    let spans = ctx
        .catalog()
        .oplog()
        .instance_spans(instance)
        .await
        .map_err(crate::catalog_error)?;
    if spans.iter().any(|span| span.contains(at)) {
        return Ok(());
    }
    let out_of_range = |detail: String| {
        Err(ApiError::bad_value(
            ErrorKind::QueryTimeOutOfRange,
            param,
            detail,
        ))
    };
    let shown = ctx.api.format_time(at);
    let Some(last) = spans.last() else {
        return out_of_range(format!(
            "{shown} cannot be restored: instance {} has no restorable window yet (it opens with \
             the first backup taken once continuous oplog backup runs)",
            instance.id
        ));
    };
    let window = spans
        .iter()
        .map(|span| {
            format!(
                "{} to {}",
                ctx.api.format_time(span.from),
                ctx.api.format_time(span.to)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    if at > last.to {
        return out_of_range(format!(
            "{shown} is later than the oplog saved so far: instance {} can be restored to {window}",
            instance.id
        ));
    }
    out_of_range(format!(
        "{shown} is outside the restorable window of instance {}: {window}",
        instance.id
    ))
}

/// The manifest of the first replica set's base for `at` (the time of
/// parameter `param`): what collections existed then, as far as the base
/// tells.
pub(super) async fn base_manifest(
    ctx: &CallContext<'_>,
    instance: &Instance,
    at: Timestamp,
    param: &str,
) -> Result<ReplicaSetManifest, ApiError> {
    let replica_set_id = instance.id.replica_set(0);
    let window = ctx
        .catalog()
        .oplog()
        .window(&replica_set_id)
        .await
        .map_err(crate::catalog_error)?;
    let base = window.base_for(at).ok_or_else(|| {
        ApiError::bad_value(
            ErrorKind::QueryTimeOutOfRange,
            param,
            format_args!("{replica_set_id} has no base backup for that time"),
        )
    })?;
    let backup = ctx
        .catalog()
        .backups()
        .get(base.backup_id)
        .await
        .map_err(crate::catalog_error)?
        .ok_or_else(ApiError::internal)?;
    let (_, sets) = mongobak_dump::read_manifests(ctx.api.store(), &backup.storage_prefix)
        .await
        .map_err(|e| {
            tracing::error!(backup = backup.id, error = %e, "cannot read a base backup's manifests");
            ApiError::new(
                ErrorKind::FailedOperation,
                format!(
                    "The base backup {} of that time cannot be read; the server log has the details.",
                    backup.name
                ),
            )
        })?;
    sets.into_iter()
        .find(|set| set.replica_set_id == replica_set_id.as_str())
        .ok_or_else(ApiError::internal)
}

/// The collections to restore: those named, or every collection a
/// database had in the base; each checked to have existed and its target
/// to be free.
async fn plan(
    ctx: &CallContext<'_>,
    instance: &Instance,
    databases: &[Database],
    base: &ReplicaSetManifest,
    at: Timestamp,
) -> Result<RestorePlan, ApiError> {
    let suffix = ctx.api.format_zoned(at, "%m%d%H%M%S");
    let live = deployment(instance);
    let busy = busy_targets(ctx, instance).await?;
    let mut collections = Vec::new();
    let mut targets: HashSet<(String, String)> = HashSet::new();
    for (i, database) in databases.iter().enumerate() {
        let existing = probe::list_collections(&live, &database.db)
            .await
            .map_err(|e| unreadable(instance, e))?;
        let in_base = |name: &str| {
            base.collections.iter().any(|c| {
                c.db == database.db && c.name == name && c.kind == CollectionKind::Collection
            })
        };
        let pairs: Vec<(String, String)> = if database.collections.is_empty() {
            let all: Vec<(String, String)> = base
                .collections
                .iter()
                .filter(|c| {
                    c.db == database.db
                        && c.kind == CollectionKind::Collection
                        && !c.name.starts_with("system.")
                })
                .map(|c| (c.name.clone(), format!("{}_bak{suffix}", c.name)))
                .collect();
            if all.is_empty() {
                return Err(ApiError::invalid_value(
                    &format!("Databases.{i}.Db"),
                    format_args!(
                        "database {} had no collections at that time",
                        clip(&database.db)
                    ),
                ));
            }
            all
        } else {
            database.collections.clone()
        };
        for (j, (old, new)) in pairs.into_iter().enumerate() {
            let at = format!("Databases.{i}.Collections.{j}");
            if !in_base(&old) && !existing.contains(&old) {
                return Err(ApiError::invalid_value(
                    &format!("{at}.OldCollection"),
                    format_args!(
                        "no collection {}.{} existed at that time",
                        clip(&database.db),
                        clip(&old)
                    ),
                ));
            }
            let target = (database.db.clone(), new.clone());
            if existing.contains(&new) || busy.contains(&target) || !targets.insert(target) {
                return Err(ApiError::invalid_value(
                    &format!("{at}.NewCollection"),
                    format_args!(
                        "{}.{} exists or is being restored into: name a collection that does not exist",
                        clip(&database.db),
                        clip(&new)
                    ),
                ));
            }
            collections.push(RestoreTarget {
                db: database.db.clone(),
                source: old,
                target: new,
                keys: None,
            });
        }
    }
    Ok(RestorePlan { collections })
}

/// The `(database, collection)` that queued and running restores and
/// flashbacks are writing into on `instance`.
pub(super) async fn busy_targets(
    ctx: &CallContext<'_>,
    instance: &Instance,
) -> Result<HashSet<(String, String)>, ApiError> {
    let mut busy = HashSet::new();
    for task in ctx
        .catalog()
        .restores()
        .active_into(&instance.id)
        .await
        .map_err(crate::catalog_error)?
    {
        for target in task.plan.collections {
            busy.insert((target.db, target.target));
        }
    }
    Ok(busy)
}

/// DescribeAsyncRequestInfo of a restore.
pub(super) fn describe_restore(
    ctx: &CallContext<'_>,
    task: RestoreTask,
) -> Result<Fields, ApiError> {
    let status = match task.status {
        RestoreStatus::Queued => AsyncRequestStatus::Initial,
        RestoreStatus::Running => AsyncRequestStatus::Running,
        RestoreStatus::Succeeded => AsyncRequestStatus::Success,
        RestoreStatus::Failed => AsyncRequestStatus::Failed,
    };
    to_fields(DescribeAsyncRequestInfoResponse {
        status,
        start_time: ctx.api.format_optional_time(task.started_at),
        end_time: ctx.api.format_optional_time(task.finished_at),
        progress: task.percent,
        failure_reason: task.failure,
        backup_name: String::new(),
    })
}

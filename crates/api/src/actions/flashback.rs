//! FlashBackDBInstance (fields per the SDK's models, rules per
//! docs/api.md): the documents of given keys as they were at a point in
//! time, each collection's written to a result collection of the same
//! database, in the same instance or another of the same account.
//!
//! Refused before any work, as RestoreDBInstance is, when anything is
//! wrong; refused as a whole (`FailedOperation.FlashbackByKeyNotOpen`)
//! when continuous oplog backup is off. Otherwise queued as a leased
//! restore task of kind flashback (`catalog::restore`), run by the restore
//! workers.

use std::collections::HashSet;

use jiff::Timestamp;
use mongobak_catalog::{KeyFilter, NewRestore, RestoreKind, RestorePlan, RestoreTarget};
use mongobak_dump::format::CollectionKind;
use mongobak_dump::probe;

use super::namespaces::{check_db_name, deployment, unreadable};
use super::restores::{base_manifest, busy_targets, check_collection_name, check_window};
use super::{authorize_instance, caps, to_fields, CallContext, Fields};
use crate::error::{clip, ApiError, ErrorKind};
use crate::model::FlashBackDBInstanceResponse;
use crate::params::Params;

/// The field matched when a collection names no `FilterKey`.
const DEFAULT_FILTER_KEY: &str = "_id";

/// One database of the request, as given.
struct Database {
    db: String,
    collections: Vec<Collection>,
}

/// One collection of the request, as given.
struct Collection {
    name: String,
    result: Option<String>,
    filter_key: Option<String>,
    /// `(Key, Value)` of each entry of `KeyValues`.
    keys: Vec<(Option<String>, String)>,
}

pub(super) async fn flash_back_db_instance(
    ctx: &CallContext<'_>,
    mut p: Params,
) -> Result<Fields, ApiError> {
    let instance_id = p.string("InstanceId")?;
    let time_text = p.string("TargetFlashbackTime")?;
    let databases = p
        .opt_object_list("TargetDatabases", caps::FLASHBACK_DATABASES, None, |db| {
            Ok(Database {
                db: db.string("DBName")?,
                collections: db
                    .opt_object_list("Collections", caps::FLASHBACK_COLLECTIONS, None, |c| {
                        Ok(Collection {
                            name: c.string("CollectionName")?,
                            result: c.opt_string("TargetResultCollectionName")?,
                            filter_key: c.opt_string("FilterKey")?,
                            keys: c
                                .opt_object_list("KeyValues", caps::FLASHBACK_KEYS, None, |kv| {
                                    Ok((kv.opt_string("Key")?, kv.string("Value")?))
                                })?
                                .unwrap_or_default(),
                        })
                    })?
                    .unwrap_or_default(),
            })
        })?
        .ok_or_else(|| ApiError::missing("TargetDatabases"))?;
    let target_instance_id = p.opt_string("TargetInstanceId")?;
    p.finish()?;
    if !ctx.api.config.point_in_time {
        return Err(ApiError::new(
            ErrorKind::FlashbackByKeyNotOpen,
            "Flashback by key needs continuous oplog backup, which is off on this server \
             ([pitr] enabled = false).",
        ));
    }
    let at = ctx.api.parse_time("TargetFlashbackTime", &time_text)?;
    check_request(&databases)?;
    let instance = authorize_instance(ctx, &instance_id).await?;
    let target_instance = match target_instance_id.as_deref() {
        None | Some("") => instance.clone(),
        Some(id) => authorize_instance(ctx, id).await?,
    };
    check_window(ctx, &instance, at, "TargetFlashbackTime").await?;
    let base = base_manifest(ctx, &instance, at, "TargetFlashbackTime").await?;
    let suffix = ctx.api.format_zoned(at, "%m%d%H%M%S");
    let busy = busy_targets(ctx, &target_instance).await?;
    let mut targets: HashSet<(String, String)> = HashSet::new();
    let mut collections = Vec::new();
    for (i, database) in databases.iter().enumerate() {
        let existing = probe::list_collections(&deployment(&instance), &database.db)
            .await
            .map_err(|e| unreadable(&instance, e))?;
        let existing_at_target = if target_instance.id == instance.id {
            existing.clone()
        } else {
            probe::list_collections(&deployment(&target_instance), &database.db)
                .await
                .map_err(|e| unreadable(&target_instance, e))?
        };
        for (j, collection) in database.collections.iter().enumerate() {
            let at = format!("TargetDatabases.{i}.Collections.{j}");
            let in_base = base.collections.iter().any(|c| {
                c.db == database.db
                    && c.name == collection.name
                    && c.kind == CollectionKind::Collection
            });
            if !in_base && !existing.contains(&collection.name) {
                return Err(ApiError::invalid_value(
                    &format!("{at}.CollectionName"),
                    format_args!(
                        "no collection {}.{} existed at that time",
                        clip(&database.db),
                        clip(&collection.name)
                    ),
                ));
            }
            let result = match &collection.result {
                Some(name) if !name.is_empty() => name.clone(),
                _ => format!("{}_bak{suffix}", collection.name),
            };
            let target = (database.db.clone(), result.clone());
            if existing_at_target.contains(&result)
                || busy.contains(&target)
                || !targets.insert(target)
            {
                return Err(ApiError::invalid_value(
                    &format!("{at}.TargetResultCollectionName"),
                    format_args!(
                        "{}.{} exists in {} or is being restored into: name a collection that does not exist",
                        clip(&database.db),
                        clip(&result),
                        target_instance.id
                    ),
                ));
            }
            collections.push(RestoreTarget {
                db: database.db.clone(),
                source: collection.name.clone(),
                target: result,
                keys: Some(KeyFilter {
                    field: filter_key(collection).to_string(),
                    values: collection.keys.iter().map(|(_, v)| v.clone()).collect(),
                }),
            });
        }
    }
    let task = ctx
        .catalog()
        .restores()
        .create(
            &NewRestore {
                kind: RestoreKind::Flashback,
                instance_id: instance.id.to_string(),
                target_instance_id: target_instance.id.to_string(),
                restore_time: at,
                plan: RestorePlan { collections },
            },
            Timestamp::now(),
        )
        .await
        .map_err(crate::catalog_error)?;
    to_fields(FlashBackDBInstanceResponse {
        flow_id: task.flow_id,
    })
}

fn filter_key(collection: &Collection) -> &str {
    match collection.filter_key.as_deref() {
        None | Some("") => DEFAULT_FILTER_KEY,
        Some(key) => key,
    }
}

/// What can be refused from the request alone: names, keys and totals.
fn check_request(databases: &[Database]) -> Result<(), ApiError> {
    if databases.is_empty() {
        return Err(ApiError::invalid_value(
            "TargetDatabases",
            "name at least one database",
        ));
    }
    let collections: usize = databases.iter().map(|d| d.collections.len()).sum();
    if collections > caps::FLASHBACK_COLLECTIONS {
        return Err(ApiError::invalid_value(
            "TargetDatabases",
            format_args!(
                "at most {} collections in one flashback, not {collections}",
                caps::FLASHBACK_COLLECTIONS
            ),
        ));
    }
    let keys: usize = databases
        .iter()
        .flat_map(|d| &d.collections)
        .map(|c| c.keys.len())
        .sum();
    if keys > caps::FLASHBACK_KEYS {
        return Err(ApiError::invalid_value(
            "TargetDatabases",
            format_args!(
                "at most {} keys in one flashback, not {keys}",
                caps::FLASHBACK_KEYS
            ),
        ));
    }
    for (i, database) in databases.iter().enumerate() {
        let at = format!("TargetDatabases.{i}");
        check_db_name(&format!("{at}.DBName"), &database.db)?;
        if database.collections.is_empty() {
            return Err(ApiError::invalid_value(
                &format!("{at}.Collections"),
                "name at least one collection and its keys",
            ));
        }
        for (j, collection) in database.collections.iter().enumerate() {
            let at = format!("{at}.Collections.{j}");
            check_collection_name(
                &format!("{at}.CollectionName"),
                &database.db,
                &collection.name,
            )?;
            if let Some(result) = collection.result.as_deref().filter(|r| !r.is_empty()) {
                check_collection_name(
                    &format!("{at}.TargetResultCollectionName"),
                    &database.db,
                    result,
                )?;
            }
            let field = filter_key(collection);
            check_field(&format!("{at}.FilterKey"), field)?;
            if collection.keys.is_empty() {
                return Err(ApiError::invalid_value(
                    &format!("{at}.KeyValues"),
                    "name at least one key value",
                ));
            }
            for (k, (key, _)) in collection.keys.iter().enumerate() {
                if let Some(key) = key.as_deref().filter(|k| !k.is_empty() && *k != field) {
                    return Err(ApiError::invalid_value(
                        &format!("{at}.KeyValues.{k}.Key"),
                        format_args!(
                            "each key is a value of the collection's FilterKey ({}), not of {}",
                            clip(field),
                            clip(key)
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Refuses a field name no document can hold: empty, an empty part of a
/// dotted name, a leading `$` or a NUL.
fn check_field(param: &str, field: &str) -> Result<(), ApiError> {
    if field.contains('\0') || field.split('.').any(|part| part.is_empty()) {
        return Err(ApiError::invalid_value(
            param,
            "a field name, dotted for an embedded field, with no empty part and no NUL",
        ));
    }
    if field.starts_with('$') {
        return Err(ApiError::invalid_value(
            param,
            "a field name does not start with `$`",
        ));
    }
    Ok(())
}

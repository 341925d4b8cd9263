//! The mongodb actions: which exist, which mongobak provides, and dispatch.
//!
//! Each provided action is one request type and one response type in
//! [`crate::model`], the types the `mongobak` client sends and reads, and
//! a handler in a module of its area here. The handler reads its
//! parameters from [`Params`] (which names the parameter in every error
//! and caps every list) and answers with the response type, serialized
//! once into [`Fields`]. An action that exists in the TencentDB for
//! MongoDB API but that mongobak does not provide (creating instances,
//! billing, ...) answers `UnsupportedOperation`; a name that is no mongodb
//! action at all answers `InvalidAction`.

mod backups;
mod downloads;
mod flashback;
mod instances;
mod namespaces;
mod restores;

pub(crate) use instances::RenderedInstances;
mod rules;

use mongobak_catalog::Instance;

use crate::access::{instance_resource, Caller};
use crate::error::{ApiError, ErrorKind};
use crate::params::Params;
use crate::Api;

/// The actions mongobak provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// List registered instances.
    DescribeDBInstances,
    /// List an instance's databases, or a database's collections, live.
    DescribeDBInstanceNamespace,
    /// Start a manual logical backup.
    CreateBackupDBInstance,
    /// Follow an asynchronous request (a backup).
    DescribeAsyncRequestInfo,
    /// List an instance's backups.
    DescribeDBBackups,
    /// Delete backups and their data.
    DeleteDBBackups,
    /// Change when backups expire.
    ModifyBackupExpireTime,
    /// Queue the packaging of a backup's replica sets into download files.
    CreateBackupDownloadTask,
    /// List download tasks, with signed URLs of finished files.
    DescribeBackupDownloadTask,
    /// Read an instance's automatic backup rule.
    DescribeBackupRules,
    /// Change an instance's automatic backup rule.
    SetBackupRules,
    /// Restore collections as they were at a point in time.
    RestoreDBInstance,
    /// Restore the documents of given keys as they were at a point in time.
    FlashBackDBInstance,
}

impl Action {
    /// Every provided action.
    pub const ALL: &'static [Action] = &[
        Action::DescribeDBInstances,
        Action::DescribeDBInstanceNamespace,
        Action::CreateBackupDBInstance,
        Action::DescribeAsyncRequestInfo,
        Action::DescribeDBBackups,
        Action::DeleteDBBackups,
        Action::ModifyBackupExpireTime,
        Action::CreateBackupDownloadTask,
        Action::DescribeBackupDownloadTask,
        Action::DescribeBackupRules,
        Action::SetBackupRules,
        Action::RestoreDBInstance,
        Action::FlashBackDBInstance,
    ];

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Action::DescribeDBInstances => "DescribeDBInstances",
            Action::DescribeDBInstanceNamespace => "DescribeDBInstanceNamespace",
            Action::CreateBackupDBInstance => "CreateBackupDBInstance",
            Action::DescribeAsyncRequestInfo => "DescribeAsyncRequestInfo",
            Action::DescribeDBBackups => "DescribeDBBackups",
            Action::DeleteDBBackups => "DeleteDBBackups",
            Action::ModifyBackupExpireTime => "ModifyBackupExpireTime",
            Action::CreateBackupDownloadTask => "CreateBackupDownloadTask",
            Action::DescribeBackupDownloadTask => "DescribeBackupDownloadTask",
            Action::DescribeBackupRules => "DescribeBackupRules",
            Action::SetBackupRules => "SetBackupRules",
            Action::RestoreDBInstance => "RestoreDBInstance",
            Action::FlashBackDBInstance => "FlashBackDBInstance",
        }
    }

    /// Whether the action changes anything (creates, deletes, modifies or
    /// sets). A replayed signature is refused for these even when the
    /// action is the same (see [`crate::replay`]).
    pub fn changes_state(self) -> bool {
        match self {
            Action::DescribeDBInstances
            | Action::DescribeDBInstanceNamespace
            | Action::DescribeAsyncRequestInfo
            | Action::DescribeDBBackups
            | Action::DescribeBackupDownloadTask
            | Action::DescribeBackupRules => false,
            Action::CreateBackupDBInstance
            | Action::DeleteDBBackups
            | Action::ModifyBackupExpireTime
            | Action::CreateBackupDownloadTask
            | Action::SetBackupRules
            | Action::RestoreDBInstance
            | Action::FlashBackDBInstance => true,
        }
    }

    /// Resolves an `Action` parameter: a provided action, or the error for
    /// an unprovided or unknown one.
    pub fn resolve(name: &str) -> Result<Action, ApiError> {
        let shown = crate::error::clip(name);
        if let Some(action) = Action::ALL.iter().find(|a| a.name() == name) {
            return Ok(*action);
        }
        if MONGODB_ACTIONS.contains(&name) {
            return Err(ApiError::new(
                ErrorKind::UnsupportedOperation,
                format!(
                    "The action {shown} exists in TencentDB for MongoDB but mongobak does not provide it: \
                     mongobak backs up deployments you run yourself and does not manage their servers."
                ),
            ));
        }
        Err(ApiError::new(
            ErrorKind::InvalidAction,
            format!("The action {shown} does not exist in the mongodb API, version 2019-07-25."),
        ))
    }
}

/// The most entries each list parameter takes: every list parameter of
/// every action, read through [`Params`] with its cap from here, and listed
/// in the README's API reference. A longer list is
/// `InvalidParameterValue` naming the parameter. The caps are far above
/// what a client needs (a status filter has five values to choose from)
/// and keep every list that becomes SQL parameters far under SQLite's
/// smallest limit on them (999).
pub mod caps {
    /// `DescribeDBInstances.InstanceIds` (TencentDB's own cap).
    pub const INSTANCE_IDS: usize = 100;
    /// `DescribeDBInstances.Status` and `DescribeBackupDownloadTask.Status`:
    /// five values exist; each may be given twice.
    pub const STATUS: usize = 10;
    /// `DescribeDBInstances.ProjectIds`.
    pub const PROJECT_IDS: usize = 100;
    /// `DescribeDBInstances.Tags` (a resource holds at most 50 tags).
    pub const TAGS: usize = 50;
    /// `DeleteDBBackups.BackupIds` and `ModifyBackupExpireTime.BackupIds`.
    pub const BACKUP_IDS: usize = 100;
    /// `CreateBackupDownloadTask.BackupSets`: one per replica set or shard.
    pub const BACKUP_SETS: usize = 100;
    /// `RestoreDBInstance.Databases`.
    pub const RESTORE_DATABASES: usize = 100;
    /// `RestoreDBInstance.Databases.N.Collections`; all of a restore's
    /// collections together may be at most TencentDB's 2000 as well.
    pub const RESTORE_COLLECTIONS: usize = 2000;
    /// `FlashBackDBInstance.TargetDatabases`.
    pub const FLASHBACK_DATABASES: usize = 100;
    /// `FlashBackDBInstance.TargetDatabases.N.Collections`; all of a
    /// flashback's collections together may be at most this many as well.
    pub const FLASHBACK_COLLECTIONS: usize = 100;
    /// `FlashBackDBInstance.TargetDatabases.N.Collections.N.KeyValues`
    /// (TencentDB's cap); all of a flashback's keys together may be at
    /// most this many as well.
    pub const FLASHBACK_KEYS: usize = 50_000;
}

/// One capped list parameter: the action, the parameter, its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListCap {
    /// The action.
    pub action: Action,
    /// The list parameter.
    pub parameter: &'static str,
    /// Most entries.
    pub max: usize,
}

/// Every list parameter of every action with its cap, for the API
/// reference and the tests that send each one at and over its cap.
pub const LIST_CAPS: &[ListCap] = &[
    ListCap {
        action: Action::DescribeDBInstances,
        parameter: "InstanceIds",
        max: caps::INSTANCE_IDS,
    },
    ListCap {
        action: Action::DescribeDBInstances,
        parameter: "Status",
        max: caps::STATUS,
    },
    ListCap {
        action: Action::DescribeDBInstances,
        parameter: "ProjectIds",
        max: caps::PROJECT_IDS,
    },
    ListCap {
        action: Action::DescribeDBInstances,
        parameter: "Tags",
        max: caps::TAGS,
    },
    ListCap {
        action: Action::DeleteDBBackups,
        parameter: "BackupIds",
        max: caps::BACKUP_IDS,
    },
    ListCap {
        action: Action::ModifyBackupExpireTime,
        parameter: "BackupIds",
        max: caps::BACKUP_IDS,
    },
    ListCap {
        action: Action::CreateBackupDownloadTask,
        parameter: "BackupSets",
        max: caps::BACKUP_SETS,
    },
    ListCap {
        action: Action::DescribeBackupDownloadTask,
        parameter: "Status",
        max: caps::STATUS,
    },
    ListCap {
        action: Action::RestoreDBInstance,
        parameter: "Databases",
        max: caps::RESTORE_DATABASES,
    },
    ListCap {
        action: Action::RestoreDBInstance,
        parameter: "Databases.N.Collections",
        max: caps::RESTORE_COLLECTIONS,
    },
    ListCap {
        action: Action::FlashBackDBInstance,
        parameter: "TargetDatabases",
        max: caps::FLASHBACK_DATABASES,
    },
    ListCap {
        action: Action::FlashBackDBInstance,
        parameter: "TargetDatabases.N.Collections",
        max: caps::FLASHBACK_COLLECTIONS,
    },
    ListCap {
        action: Action::FlashBackDBInstance,
        parameter: "TargetDatabases.N.Collections.N.KeyValues",
        max: caps::FLASHBACK_KEYS,
    },
];

/// Everything a handler needs about the call besides its parameters.
pub(crate) struct CallContext<'a> {
    pub api: &'a Api,
    pub caller: &'a Caller,
    pub region: &'a str,
}

impl CallContext<'_> {
    /// The catalog the action runs against.
    pub fn catalog(&self) -> &mongobak_catalog::Catalog {
        &self.api.catalog
    }
}

/// Runs `action` and returns the fields of its `Response` object.
pub(crate) async fn dispatch(
    ctx: &CallContext<'_>,
    action: Action,
    params: Params,
) -> Result<Fields, ApiError> {
    match action {
        Action::DescribeDBInstances => instances::describe_db_instances(ctx, params).await,
        Action::DescribeDBInstanceNamespace => {
            namespaces::describe_db_instance_namespace(ctx, params).await
        }
        Action::CreateBackupDBInstance => backups::create_backup_db_instance(ctx, params).await,
        Action::DescribeAsyncRequestInfo => backups::describe_async_request_info(ctx, params).await,
        Action::DescribeDBBackups => backups::describe_db_backups(ctx, params).await,
        Action::DeleteDBBackups => backups::delete_db_backups(ctx, params).await,
        Action::ModifyBackupExpireTime => backups::modify_backup_expire_time(ctx, params).await,
        Action::CreateBackupDownloadTask => {
            downloads::create_backup_download_task(ctx, params).await
        }
        Action::DescribeBackupDownloadTask => {
            downloads::describe_backup_download_task(ctx, params).await
        }
        Action::DescribeBackupRules => rules::describe_backup_rules(ctx, params).await,
        Action::SetBackupRules => rules::set_backup_rules(ctx, params).await,
        Action::RestoreDBInstance => restores::restore_db_instance(ctx, params).await,
        Action::FlashBackDBInstance => flashback::flash_back_db_instance(ctx, params).await,
    }
}

/// The instance `id` if the caller may act on it: it exists, belongs to the
/// caller's root account and lives in the request's region (otherwise "not
/// found", so existence never leaks), and a sub-account's policy covers it
/// (otherwise `PermissionDenied`).
pub(crate) async fn authorize_instance(
    ctx: &CallContext<'_>,
    id: &str,
) -> Result<Instance, ApiError> {
    let instance = ctx
        .catalog()
        .instances()
        .get(id)
        .await
        .map_err(crate::catalog_error)?
        .filter(|i| ctx.caller.owns(&i.owner_uin) && i.region == ctx.region)
        .ok_or_else(|| ApiError::instance_not_found(id))?;
    ctx.caller.authorize_resource(&instance_resource(
        &instance.region,
        &instance.owner_uin,
        &instance.id,
    ))?;
    Ok(instance)
}

pub(crate) use backups::parse_api_time;

/// The fields of a `Response` object, serialized: a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields(pub(crate) Vec<u8>);

impl Fields {
    /// The JSON object.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Serializes a response struct into the fields of `Response`, once: the
/// envelope splices the RequestId in without parsing it again.
pub(crate) fn to_fields(response: impl serde::Serialize) -> Result<Fields, ApiError> {
    match serde_json::to_vec(&response) {
        Ok(bytes) if bytes.first() == Some(&b'{') && bytes.last() == Some(&b'}') => {
            Ok(Fields(bytes))
        }
        Ok(_) => {
            tracing::error!("a response is not a JSON object");
            Err(ApiError::internal())
        }
        Err(e) => {
            tracing::error!(error = %e, "response does not serialize");
            Err(ApiError::internal())
        }
    }
}

/// Every action of the mongodb API, version 2019-07-25 (from the official
/// SDK's client).
pub(crate) const MONGODB_ACTIONS: &[&str] = &[
    "AssignProject",
    "CheckDBInstanceElasticCpuScalable",
    "CloseAuditService",
    "CreateAccountUser",
    "CreateAuditLogFile",
    "CreateBackupDBInstance",
    "CreateBackupDownloadTask",
    "CreateDBInstance",
    "CreateDBInstanceHour",
    "CreateDBInstanceParamTpl",
    "CreateInstanceRole",
    "CreateInstanceUser",
    "CreateLogDownloadTask",
    "CreateSlowLogPatternDownloadTask",
    "DeleteAccountUser",
    "DeleteAuditLogFile",
    "DeleteDBBackups",
    "DeleteInstanceRole",
    "DeleteInstanceUser",
    "DeleteLogDownloadTask",
    "DescribeAccountUsers",
    "DescribeAsyncRequestInfo",
    "DescribeAuditConfig",
    "DescribeAuditInstanceList",
    "DescribeAuditLogFiles",
    "DescribeAuditLogs",
    "DescribeBackupDownloadTask",
    "DescribeBackupRules",
    "DescribeClientConnections",
    "DescribeCurrentOp",
    "DescribeDBBackups",
    "DescribeDBInstanceDeal",
    "DescribeDBInstanceLogToCLS",
    "DescribeDBInstanceNamespace",
    "DescribeDBInstanceNodeProperty",
    "DescribeDBInstanceParamTpl",
    "DescribeDBInstanceParamTplDetail",
    "DescribeDBInstanceURL",
    "DescribeDBInstances",
    "DescribeDetailedSlowLogs",
    "DescribeInstanceParams",
    "DescribeInstanceRoles",
    "DescribeInstanceSSL",
    "DescribeInstanceUsers",
    "DescribeLogDownloadTasks",
    "DescribeMongodbLogs",
    "DescribePasswordRotation",
    "DescribeSRVConnectionDomain",
    "DescribeSecurityGroup",
    "DescribeSlowLogPatterns",
    "DescribeSlowLogs",
    "DescribeSpecInfo",
    "DescribeTransparentDataEncryptionStatus",
    "DisableSRVConnectionUrl",
    "DropDBInstanceParamTpl",
    "EnablePasswordRotation",
    "EnableSRVConnectionUrl",
    "EnableTransparentDataEncryption",
    "EnableWanService",
    "FlashBackDBInstance",
    "FlushInstanceRouterConfig",
    "IncreaseDBInstanceConnectionLimit",
    "InquirePriceCreateDBInstances",
    "InquirePriceModifyDBInstanceSpec",
    "InquirePriceRenewDBInstances",
    "InstanceEnableSSL",
    "IsolateDBInstance",
    "KillOps",
    "ModifyAuditService",
    "ModifyBackupExpireTime",
    "ModifyDBInstanceLogToCLS",
    "ModifyDBInstanceNetworkAddress",
    "ModifyDBInstanceParamTpl",
    "ModifyDBInstanceSecurityGroup",
    "ModifyDBInstanceSpec",
    "ModifyInstanceAz",
    "ModifyInstanceParams",
    "ModifySRVConnectionUrl",
    "OfflineIsolatedDBInstance",
    "OpenAuditService",
    "PromoteDBInstanceToActive",
    "RenameInstance",
    "RenewDBInstances",
    "ResetDBInstancePassword",
    "RestartNodes",
    "RestoreDBInstance",
    "ScaleDownDBInstanceCpu",
    "ScaleUpDBInstanceCpu",
    "SetAccountUserPrivilege",
    "SetBackupRules",
    "SetDBInstanceDeletionProtection",
    "SetInstanceMaintenance",
    "TerminateDBInstances",
    "UpdateInstanceRole",
    "UpdateInstanceUser",
    "UpgradeDBInstanceKernelVersion",
    "UpgradeDbInstanceVersion",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's API reference shows each cap in its action's row.
    #[test]
    fn the_readme_lists_every_cap() {
        let readme = include_str!("../../../../README.md");
        for cap in LIST_CAPS {
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", cap.action.name())))
                .unwrap_or_else(|| panic!("no README row for {}", cap.action.name()));
            let shown = format!("`{}` {}", cap.parameter, cap.max);
            assert!(
                row.ends_with(" |") && row.contains(&shown),
                "{shown} not in {row}"
            );
        }
        for action in Action::ALL {
            assert!(
                readme.contains(&format!("| `{}` |", action.name())),
                "no README row for {}",
                action.name()
            );
        }
    }
}

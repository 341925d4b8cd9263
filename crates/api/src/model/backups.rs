//! The backup actions: CreateBackupDBInstance, DescribeAsyncRequestInfo,
//! DescribeDBBackups, DeleteDBBackups and ModifyBackupExpireTime.

use serde::{Deserialize, Serialize};

use super::numeric_status;

/// The values of `BackupMethod`.
pub mod backup_method {
    /// Logical (mongodump-like), the only method mongobak takes.
    pub const LOGICAL: i64 = 0;
    /// Physical: refused, it needs the server's files.
    pub const PHYSICAL: i64 = 1;
    /// Every method (a DescribeDBBackups filter only).
    pub const ALL: i64 = 2;
    /// Snapshot: refused, it needs the server's files.
    pub const SNAPSHOT: i64 = 3;
}

/// CreateBackupDBInstance: take a backup now.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateBackupDBInstanceRequest {
    /// The instance.
    pub instance_id: String,
    /// See [`backup_method`]: logical.
    pub backup_method: i64,
    /// A note kept with the backup (`BackupDesc`).
    pub backup_remark: Option<String>,
    /// -2 forever, -1 the long-term rule, 0 the instance's rule (the
    /// default), else days.
    pub backup_retention_days: Option<i64>,
}

/// CreateBackupDBInstance's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateBackupDBInstanceResponse {
    /// Follows the backup (DescribeAsyncRequestInfo).
    pub async_request_id: String,
}

/// DescribeAsyncRequestInfo: how a backup is going.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeAsyncRequestInfoRequest {
    /// What CreateBackupDBInstance answered.
    pub async_request_id: String,
}

/// `Status` of an asynchronous request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AsyncRequestStatus {
    /// Queued.
    Initial,
    /// Running.
    Running,
    /// Succeeded (the backup may have been deleted since).
    Success,
    /// Failed; `FailureReason` says why.
    Failed,
}

/// DescribeAsyncRequestInfo's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeAsyncRequestInfoResponse {
    /// Where the request is.
    pub status: AsyncRequestStatus,
    /// When the backup started (empty before).
    pub start_time: String,
    /// When it ended (empty before).
    pub end_time: String,
    /// Extra field (the SDK models ignore it): percent done.
    #[serde(default)]
    pub progress: i64,
    /// Extra field: why a failed request failed.
    #[serde(default)]
    pub failure_reason: String,
    /// Extra field: the backup the request made.
    #[serde(default)]
    pub backup_name: String,
}

/// DescribeDBBackups: an instance's backups, running and available.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDBBackupsRequest {
    /// The instance.
    pub instance_id: String,
    /// Only backups of this method (see [`backup_method`]; `ALL`, the
    /// default, for every one).
    pub backup_method: Option<i64>,
    /// Page size (default: all).
    pub limit: Option<u64>,
    /// Entries to skip.
    pub offset: Option<u64>,
}

/// DescribeDBBackups' answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDBBackupsResponse {
    /// The page, newest first.
    pub backup_list: Vec<BackupInfo>,
    /// Backups listed, before paging.
    pub total_count: u64,
}

numeric_status! {
    /// `BackupInfo.Status`.
    pub enum BackupState {
        /// 1: queued or being taken.
        Running = 1,
        /// 2: succeeded, available.
        Succeeded = 2,
    }
}

/// `BackupInfo`; BackupSize in KB as documented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BackupInfo {
    /// The instance.
    pub instance_id: String,
    /// 0 automatic, 1 manual.
    pub backup_type: i64,
    /// `<InstanceId>_YYYY-MM-DD HH:MM`, the name download tasks take.
    pub backup_name: String,
    /// The remark.
    pub backup_desc: String,
    /// Stored size, KB rounded up.
    pub backup_size: u64,
    /// When it started (or was queued).
    pub start_time: String,
    /// When it ended (empty before).
    pub end_time: String,
    /// Running or succeeded.
    pub status: BackupState,
    /// See [`backup_method`].
    pub backup_method: i64,
    /// Its ID, as DeleteDBBackups and ModifyBackupExpireTime take it.
    pub back_id: i64,
    /// When it expires (empty: kept until deleted).
    pub delete_time: String,
    /// Empty: kept where the server stores.
    pub backup_region: String,
    /// Empty.
    pub restore_time: String,
}

/// DeleteDBBackups: delete finished backups and their data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteDBBackupsRequest {
    /// The instance.
    pub instance_id: String,
    /// `BackId`s of the backups.
    pub backup_ids: Vec<i64>,
}

/// DeleteDBBackups' answer: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteDBBackupsResponse {}

/// ModifyBackupExpireTime: change when backups expire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModifyBackupExpireTimeRequest {
    /// The instance.
    pub instance_id: String,
    /// `BackId`s of the backups.
    pub backup_ids: Vec<i64>,
    /// `YYYY-MM-DD hh:mm:ss` in the server's time zone, in the future.
    pub expire_time: String,
}

/// ModifyBackupExpireTime's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModifyBackupExpireTimeResponse {
    /// The IDs of backups not found or not available, left unchanged.
    pub failed_backups: Vec<i64>,
}

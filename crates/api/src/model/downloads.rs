//! Backup download tasks: CreateBackupDownloadTask and
//! DescribeBackupDownloadTask.

use serde::{Deserialize, Serialize};

use super::numeric_status;

numeric_status! {
    /// `BackupDownloadTask.Status`, and the values of the `Status` filter.
    pub enum DownloadTaskStatus {
        /// 0: waiting for a worker.
        Waiting = 0,
        /// 1: being packaged.
        Running = 1,
        /// 2: the file is ready at `Url`.
        Done = 2,
        /// 3: failed after the last try; `FailureReason` says why.
        Failed = 3,
        /// 4: failed, waiting to be tried again.
        Retrying = 4,
    }
}

/// CreateBackupDownloadTask: package replica sets of a backup into files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateBackupDownloadTaskRequest {
    /// The instance.
    pub instance_id: String,
    /// The backup, as DescribeDBBackups names it.
    pub backup_name: String,
    /// The replica sets (or shards) to package.
    pub backup_sets: Vec<ReplicaSetInfo>,
}

/// `ReplicaSetInfo`: one replica set of a download request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReplicaSetInfo {
    /// `<InstanceId>_<n>`.
    pub replica_set_id: String,
}

/// CreateBackupDownloadTask's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateBackupDownloadTaskResponse {
    /// One per requested replica set, in the request's order.
    pub tasks: Vec<BackupDownloadTaskStatus>,
}

/// `BackupDownloadTaskStatus`: the task of one replica set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BackupDownloadTaskStatus {
    /// The replica set.
    pub replica_set_id: String,
    /// Where its task is.
    pub status: DownloadTaskStatus,
}

/// DescribeBackupDownloadTask: an instance's download tasks, with a
/// signed URL for every finished file.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeBackupDownloadTaskRequest {
    /// The instance.
    pub instance_id: String,
    /// Only tasks of this backup.
    pub backup_name: Option<String>,
    /// Only tasks created at or after (`YYYY-MM-DD hh:mm:ss`).
    pub start_time: Option<String>,
    /// Only tasks created at or before.
    pub end_time: Option<String>,
    /// Page size (default 20).
    pub limit: Option<u64>,
    /// Entries to skip.
    pub offset: Option<u64>,
    /// `createTime` (the default) or `finishTime`.
    pub order_by: Option<String>,
    /// `asc` or `desc` (the default).
    pub order_by_type: Option<String>,
    /// Only tasks in these states.
    pub status: Option<Vec<DownloadTaskStatus>>,
}

/// DescribeBackupDownloadTask's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeBackupDownloadTaskResponse {
    /// Tasks matching, before paging.
    pub total_count: u64,
    /// The page.
    pub tasks: Vec<BackupDownloadTask>,
}

/// `BackupDownloadTask`; BackupSize is the file's exact size in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BackupDownloadTask {
    /// When the task was created.
    pub create_time: String,
    /// The backup packaged.
    pub backup_name: String,
    /// The replica set packaged.
    pub replica_set_id: String,
    /// The file's size in bytes (0 until it is ready).
    pub backup_size: u64,
    /// Where the task is.
    pub status: DownloadTaskStatus,
    /// Packaging progress, 0-100.
    pub percent: i64,
    /// Seconds spent packaging.
    pub time_spend: i64,
    /// A signed URL of the file, while it is ready and valid.
    pub url: String,
    /// The backup's method.
    pub backup_method: i64,
    /// The backup's remark.
    pub backup_desc: String,
    /// The instance's region.
    pub region: String,
    /// The configured bucket name.
    pub bucket: String,
    /// Extra field (SDK models ignore it): why the task failed or is retrying.
    #[serde(default)]
    pub failure_reason: String,
    /// Extra field: SHA-256 of the file, hex.
    #[serde(rename = "SHA256", default)]
    pub sha256: String,
}

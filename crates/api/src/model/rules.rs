//! Automatic backup rules: DescribeBackupRules and SetBackupRules.

use serde::{Deserialize, Serialize};

/// DescribeBackupRules: an instance's automatic backup rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeBackupRulesRequest {
    /// The instance.
    pub instance_id: String,
}

/// DescribeBackupRules' answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeBackupRulesResponse {
    /// Days an automatic backup is kept.
    pub backup_save_time: i64,
    /// Hour of the day (0-23) backups start at.
    pub backup_time: i64,
    /// The method of automatic backups: logical.
    pub backup_method: i64,
    /// Hours between two backups of a day: 12 or 24.
    pub backup_frequency: i64,
    /// Weekdays with backups, `0,1,...` (0 is Sunday).
    pub active_weekdays: String,
    /// `weekly`, `monthly`, or empty when long-term backups are off.
    pub long_term_interval: String,
    /// Days of the week or month whose backup is kept long-term.
    pub long_term_active_days: String,
    /// Days a long-term backup is kept.
    pub long_term_expired_days: i64,
    /// Days oplog slices are kept.
    pub oplog_expired_days: i64,
    /// 0 legacy, 1 advanced.
    pub backup_version: i64,
    /// Storage alert threshold, percent.
    pub alert_threshold: i64,
    /// What the instance's backups take up.
    pub backup_total_size: BackupTotalSize,
    /// Extra field (the SDK models ignore it): whether failures are
    /// reported.
    #[serde(default)]
    pub notify: bool,
    /// Extra field: the times point-in-time recovery can restore the
    /// instance to, oldest first (every shard of a sharded instance).
    #[serde(default)]
    pub restore_window: Vec<RestoreWindowSpan>,
}

/// A stretch of restorable seconds, both ends included, in the API's time
/// zone (`YYYY-MM-DD hh:mm:ss`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestoreWindowSpan {
    /// The first restorable second.
    pub start_time: String,
    /// The last restorable second.
    pub end_time: String,
}

/// `BackupTotalSize`, bytes. A self-hosted install has no free quota.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BackupTotalSize {
    /// Stored bytes of the data, oplog excluded.
    pub snapshot_size: u64,
    /// Stored bytes of the oplog slices.
    pub oplog_size: u64,
    /// Always 0.
    pub free_quota: u64,
}

/// SetBackupRules: change the parameters given; the others keep their
/// value.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SetBackupRulesRequest {
    /// The instance.
    pub instance_id: String,
    /// Logical (see [`super::backup_method`]).
    pub backup_method: Option<i64>,
    /// Hour of the day (0-23).
    pub backup_time: Option<i64>,
    /// 12 (twice a day) or 24 (once a day).
    pub backup_frequency: Option<i64>,
    /// Whether failures are reported.
    pub notify: Option<bool>,
    /// Days an automatic backup is kept, 7-365.
    pub backup_retention_period: Option<i64>,
    /// Weekdays with backups, `0,1,...` (0 is Sunday).
    pub active_weekdays: Option<String>,
    /// `weekly`, `monthly`, or empty to turn long-term backups off.
    pub long_term_interval: Option<String>,
    /// The deprecated name of `LongTermInterval`.
    pub long_term_unit: Option<String>,
    /// Days of the week (0-6) or month (1-31) whose backup is kept
    /// long-term.
    pub long_term_active_days: Option<String>,
    /// Days a long-term backup is kept, 30-1075.
    pub long_term_expired_days: Option<i64>,
    /// Days oplog slices are kept, 7-365.
    pub oplog_expired_days: Option<i64>,
    /// 0 legacy, 1 advanced.
    pub backup_version: Option<i64>,
    /// Storage alert threshold, percent, 50-300.
    pub alert_threshold: Option<i64>,
    /// The deprecated name of `AlertThreshold`.
    pub alarm_water_level: Option<i64>,
}

/// SetBackupRules' answer: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetBackupRulesResponse {}

//! RestoreDBInstance and FlashBackDBInstance: collections, or the
//! documents of some keys, as they were at a point in time.

use serde::{Deserialize, Serialize};

/// RestoreDBInstance: restore collections of an instance as they were at
/// `RestoreTime`, each into a new collection of the same database.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestoreDBInstanceRequest {
    /// The instance.
    pub instance_id: String,
    /// `YYYY-MM-DD hh:mm:ss` in the server's time zone: every write in or
    /// before that second, none after.
    pub restore_time: String,
    /// The databases and their collections.
    pub databases: Vec<RestoreDatabases>,
}

/// One database of a restore.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestoreDatabases {
    /// The database.
    pub db: String,
    /// Its collections; empty: every collection it had at that time, each
    /// as `<name>_bak<MMDDhhmmss>` of the restore time.
    pub collections: Vec<RestoreCollection>,
}

/// One collection of a restore.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestoreCollection {
    /// Its name at that time.
    pub old_collection: String,
    /// The collection written; must not exist.
    pub new_collection: String,
}

/// RestoreDBInstance's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestoreDBInstanceResponse {
    /// The restore, for DescribeAsyncRequestInfo (as `AsyncRequestId`).
    pub flow_id: i64,
}

/// FlashBackDBInstance: the documents of given keys as they were at
/// `TargetFlashbackTime`, each collection's into a result collection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FlashBackDBInstanceRequest {
    /// The instance read.
    pub instance_id: String,
    /// `YYYY-MM-DD hh:mm:ss` in the server's time zone: every write in or
    /// before that second, none after.
    pub target_flashback_time: String,
    /// The databases and their collections.
    pub target_databases: Vec<FlashbackDatabase>,
    /// The instance the results are written to (of the same account);
    /// absent: the instance read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_instance_id: Option<String>,
}

/// One database of a flashback.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FlashbackDatabase {
    /// The database.
    #[serde(rename = "DBName")]
    pub db_name: String,
    /// Its collections (at least one).
    pub collections: Vec<FlashbackCollection>,
}

/// One collection of a flashback.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FlashbackCollection {
    /// Its name at that time.
    pub collection_name: String,
    /// The collection written in the target instance (same database);
    /// must not exist. Absent: `<name>_bak<MMDDhhmmss>` of the time.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target_result_collection_name: String,
    /// The field the keys are values of; absent: `_id`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter_key: String,
    /// The keys (at most 50000).
    pub key_values: Vec<FBKeyValue>,
}

/// One key of a flashback.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FBKeyValue {
    /// The field; absent or equal to the collection's `FilterKey`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// The value: a string, matching a string equal to it and the
    /// ObjectId or number it spells.
    pub value: String,
}

/// FlashBackDBInstance's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FlashBackDBInstanceResponse {
    /// The flashback, for DescribeAsyncRequestInfo (as `AsyncRequestId`).
    pub flow_id: i64,
}

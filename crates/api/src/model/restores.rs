//! RestoreDBInstance: collections as they were at a point in time.

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

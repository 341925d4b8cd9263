//! DescribeDBInstanceNamespace: what a deployment holds now.

use serde::{Deserialize, Serialize};

/// DescribeDBInstanceNamespace: an instance's databases, or one database's
/// collections.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDBInstanceNamespaceRequest {
    /// The instance.
    pub instance_id: String,
    /// The database whose collections to list; absent or empty: list the
    /// databases.
    pub db_name: Option<String>,
}

/// DescribeDBInstanceNamespace's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDBInstanceNamespaceResponse {
    /// Without `DbName`: the instance's databases, sorted, without
    /// `admin`, `local` and `config`. With it: that name alone.
    pub databases: Vec<String>,
    /// With `DbName`: that database's collections, sorted, without
    /// `system.*` (none for a database that does not exist). Without it:
    /// empty.
    pub collections: Vec<String>,
}

//! DescribeDBInstances: the filters a client may send, and
//! `InstanceDetail` as the SDK models it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::numeric_status;

numeric_status! {
    /// `InstanceDetail.Status`, and the values of the `Status` filter.
    pub enum InstanceStatus {
        /// 0: waiting to be initialized.
        Initializing = 0,
        /// 1: a flow is running on it.
        Processing = 1,
        /// 2: running; every registered instance.
        Running = 2,
        /// -2: isolated (monthly subscription).
        IsolatedPrepaid = -2,
        /// -3: isolated (pay as you go).
        IsolatedPostpaid = -3,
    }
}

/// DescribeDBInstances: the instances of the region, filtered and paged.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDBInstancesRequest {
    /// Only these instances.
    pub instance_ids: Option<Vec<String>>,
    /// -1 or 0 all, 1 formal, 2 temporary, 3 read-only.
    pub instance_type: Option<i64>,
    /// -1 all, 0 replica sets, 1 sharded clusters.
    pub cluster_type: Option<i64>,
    /// Only instances in these states.
    pub status: Option<Vec<InstanceStatus>>,
    /// Only instances in this VPC.
    pub vpc_id: Option<String>,
    /// Only instances in this subnet.
    pub subnet_id: Option<String>,
    /// -1 all, 0 pay as you go, 1 monthly.
    pub pay_mode: Option<i64>,
    /// Page size (default 20).
    pub limit: Option<u64>,
    /// Entries to skip.
    pub offset: Option<u64>,
    /// `ProjectId`, `InstanceName` or `CreateTime` (the default).
    pub order_by: Option<String>,
    /// `ASC` or `DESC` (the default).
    pub order_by_type: Option<String>,
    /// Only instances of these projects.
    pub project_ids: Option<Vec<i64>>,
    /// Part of an ID or name, or an address.
    pub search_key: Option<String>,
    /// Only instances with these tags.
    pub tags: Option<Vec<TagInfo>>,
}

/// `TagInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagInfo {
    /// The key.
    pub tag_key: String,
    /// The value.
    pub tag_value: String,
}

/// DescribeDBInstances' answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDBInstancesResponse {
    /// Instances matching, before paging.
    pub total_count: u64,
    /// The page.
    pub instance_details: Vec<InstanceDetail>,
}

/// `InstanceDetail`; field names are the SDK model's. mongobak does not
/// manage servers: fields about billing, sizing and networks carry the
/// values TencentDB uses for "none".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceDetail {
    /// The instance (`cmgo-...`).
    pub instance_id: String,
    /// Its name.
    pub instance_name: String,
    /// 0: pay as you go (nothing to pay).
    pub pay_mode: i64,
    /// 0: the default project.
    pub project_id: i64,
    /// 0 replica set, 1 sharded cluster.
    pub cluster_type: i64,
    /// Its region.
    pub region: String,
    /// `<region>-1`.
    pub zone: String,
    /// 1: a VPC network.
    pub net_type: i64,
    /// Empty: no VPC.
    pub vpc_id: String,
    /// Empty: no subnet.
    pub subnet_id: String,
    /// Always running.
    pub status: InstanceStatus,
    /// Host of the first server of its first connection string.
    pub vip: String,
    /// Its port.
    pub vport: u64,
    /// When it was registered.
    pub create_time: String,
    /// Never: the latest date the form shows.
    pub dead_line: String,
    /// The server version a connection saw.
    pub mongo_version: String,
    /// 0: not managed.
    pub memory: u64,
    /// 0: not managed.
    pub volume: u64,
    /// 0: not managed.
    pub cpu_num: u64,
    /// Empty: not managed.
    pub machine_type: String,
    /// 0: not managed.
    pub secondary_num: u64,
    /// How many replica sets (or shards) it has.
    pub replication_set_num: u64,
    /// 0: nothing to renew.
    pub auto_renew_flag: i64,
    /// 0: not managed.
    pub used_volume: u64,
    /// `00:00:00`: no maintenance window.
    pub maintenance_start: String,
    /// `00:00:00`: no maintenance window.
    pub maintenance_end: String,
    /// The replica sets, or the shards of a cluster.
    pub replica_sets: Vec<ShardInfo>,
    /// Empty.
    pub readonly_instances: Vec<Value>,
    /// Empty.
    pub standby_instances: Vec<Value>,
    /// Empty.
    pub clone_instances: Vec<Value>,
    /// Empty.
    pub related_instance: RelatedInstanceInfo,
    /// Empty.
    pub tags: Vec<TagInfo>,
    /// 0: not managed.
    pub instance_ver: u64,
    /// 0: not managed.
    pub cluster_ver: u64,
    /// 1: the MongoDB protocol.
    pub protocol: i64,
    /// 1: a formal instance.
    pub instance_type: i64,
    /// Empty.
    pub instance_status_desc: String,
    /// The instance ID again.
    pub real_instance_id: String,
    /// Its one zone.
    pub zone_list: Vec<String>,
    /// How many mongos hosts were given.
    pub mongos_node_num: u64,
    /// 0: not managed.
    pub mongos_memory: u64,
    /// 0: not managed.
    pub mongos_cpu_num: u64,
    /// 0: not managed.
    pub config_server_node_num: u64,
    /// 0: not managed.
    pub config_server_memory: u64,
    /// 0: not managed.
    pub config_server_volume: u64,
    /// 0: not managed.
    pub config_server_cpu_num: u64,
    /// 0: not managed.
    pub readonly_node_num: u64,
}

/// `ShardInfo`: one replica set / shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ShardInfo {
    /// 0: not managed.
    pub used_volume: f64,
    /// `<InstanceId>_<n>`, the ID download tasks name.
    pub replica_set_id: String,
    /// The ID again.
    pub replica_set_name: String,
    /// 0: not managed.
    pub memory: u64,
    /// 0: not managed.
    pub volume: u64,
    /// 0: not managed.
    pub oplog_size: u64,
    /// 0: not managed.
    pub secondary_num: u64,
    /// The ID again.
    pub real_replica_set_id: String,
}

/// `DBInstanceInfo` of `RelatedInstance`: empty, as no instance is
/// related.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RelatedInstanceInfo {
    /// The related instance.
    pub instance_id: String,
    /// Its region.
    pub region: String,
}

//! DescribeDBInstances: the registered deployments, as TencentDB lists them.
//!
//! Fields and filters follow the SDK's `InstanceDetail` model and the
//! README's API reference. mongobak does not manage servers, so fields
//! about billing, sizing and networks carry the neutral values TencentDB
//! uses for "none" (0, "", empty lists); what is
//! known (ID, name, region, cluster type, replica sets, address, creation
//! time, the server version a connection saw, the mongos hosts given) is
//! real. docs/api.md says what each field holds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mongobak_catalog::Instance;

use super::{caps, CallContext, Fields};
use crate::error::{clip, ApiError, ErrorKind};
use crate::model::{InstanceDetail, InstanceStatus, RelatedInstanceInfo, ShardInfo};
use crate::params::Params;

/// InstanceType of a registered instance: 1, a formal instance.
const INSTANCE_TYPE_FORMAL: i64 = 1;
/// `DeadLine` of every instance: a self-hosted deployment is not rented and
/// never expires, so the latest date the API's form usually shows. A real
/// date-time, unlike TencentDB's `0000-00-00 00:00:00`, which strict
/// parsers refuse.
const NO_DEADLINE: &str = "2099-12-31 23:59:59";

#[derive(Debug, PartialEq, Eq)]
enum OrderBy {
    ProjectId,
    InstanceName,
    CreateTime,
}

#[derive(Debug)]
struct Request {
    instance_ids: Option<Vec<String>>,
    instance_type: Option<i64>,
    cluster_type: Option<i64>,
    status: Option<Vec<i64>>,
    vpc_id: Option<String>,
    subnet_id: Option<String>,
    pay_mode: Option<i64>,
    project_ids: Option<Vec<i64>>,
    search_key: Option<String>,
    has_tags: bool,
    limit: usize,
    offset: usize,
    order_by: OrderBy,
    descending: bool,
}

impl Request {
    fn parse(mut p: Params) -> Result<Self, ApiError> {
        let instance_type = p.opt_i64("InstanceType")?;
        if instance_type.is_some_and(|t| !(-1..=3).contains(&t)) {
            return Err(ApiError::invalid_value(
                "InstanceType",
                "expected -1, 0, 1, 2 or 3",
            ));
        }
        let cluster_type = p.opt_i64("ClusterType")?;
        if cluster_type.is_some_and(|t| !(-1..=1).contains(&t)) {
            return Err(ApiError::bad_value(
                ErrorKind::ClusterTypeError,
                "ClusterType",
                "expected -1 (all), 0 (replica set) or 1 (sharded cluster)",
            ));
        }
        let status = p.opt_i64_list("Status", caps::STATUS)?;
        if let Some(bad) = status
            .iter()
            .flatten()
            .find(|s| InstanceStatus::from_code(**s).is_none())
        {
            return Err(ApiError::bad_value(
                ErrorKind::IllegalInstanceStatus,
                "Status",
                format_args!("{bad} is not one of 0, 1, 2, -2, -3"),
            ));
        }
        let pay_mode = p.opt_i64("PayMode")?;
        if pay_mode.is_some_and(|m| !(-1..=1).contains(&m)) {
            return Err(ApiError::invalid_value(
                "PayMode",
                "expected -1 (all), 0 (pay as you go) or 1 (monthly)",
            ));
        }
        let tags = p.opt_object_list("Tags", caps::TAGS, None, |tag| {
            tag.string("TagKey")?;
            tag.opt_string("TagValue")?;
            Ok(())
        })?;
        let limit = p.opt_limit()?.unwrap_or(20);
        let offset = p.offset()?;
        let order_by = match p.opt_string("OrderBy")?.as_deref() {
            None | Some("CreateTime") => OrderBy::CreateTime,
            Some("ProjectId") => OrderBy::ProjectId,
            Some("InstanceName") => OrderBy::InstanceName,
            Some(other) => {
                return Err(ApiError::invalid_value(
                    "OrderBy",
                    format_args!(
                        "`{}` is not ProjectId, InstanceName or CreateTime",
                        clip(other)
                    ),
                ))
            }
        };
        let descending = match p.opt_string("OrderByType")?.as_deref() {
            None => true,
            Some(t) if t.eq_ignore_ascii_case("DESC") => true,
            Some(t) if t.eq_ignore_ascii_case("ASC") => false,
            Some(other) => {
                return Err(ApiError::invalid_value(
                    "OrderByType",
                    format_args!("`{}` is not ASC or DESC", clip(other)),
                ))
            }
        };
        let request = Request {
            instance_ids: p.opt_string_list("InstanceIds", caps::INSTANCE_IDS)?,
            instance_type,
            cluster_type,
            status,
            vpc_id: p.opt_string("VpcId")?,
            subnet_id: p.opt_string("SubnetId")?,
            pay_mode,
            project_ids: p.opt_i64_list("ProjectIds", caps::PROJECT_IDS)?,
            search_key: p.opt_string("SearchKey")?,
            has_tags: tags.is_some_and(|t| !t.is_empty()),
            limit,
            offset,
            order_by,
            descending,
        };
        p.finish()?;
        Ok(request)
    }

    fn matches(&self, instance: &Instance, address: &Address) -> bool {
        listed(&self.instance_ids, &instance.id.to_string())
            && self
                .instance_type
                .is_none_or(|t| [0, -1, INSTANCE_TYPE_FORMAL].contains(&t))
            && self
                .cluster_type
                .is_none_or(|t| t == -1 || t == instance.cluster_type.code())
            && listed(&self.status, &InstanceStatus::Running.code())
            && self.vpc_id.as_deref().is_none_or(str::is_empty)
            && self.subnet_id.as_deref().is_none_or(str::is_empty)
            && self.pay_mode.is_none_or(|m| m == -1 || m == 0)
            && listed(&self.project_ids, &0)
            && self.search_key.as_deref().is_none_or(|key| {
                instance.id.contains(key) || instance.name.contains(key) || address.host == key
            })
            && !self.has_tags
    }
}

/// A list filter: absent or empty lets everything through.
fn listed<T: PartialEq>(filter: &Option<Vec<T>>, value: &T) -> bool {
    filter
        .as_ref()
        .is_none_or(|list| list.is_empty() || list.contains(value))
}

/// Host and port of the first server of a connection URI, without the
/// credentials.
#[derive(Debug, Default, PartialEq, Eq)]
struct Address {
    host: String,
    port: u64,
}

fn address_of(uri: &str) -> Address {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Address::default();
    };
    let hosts = rest.split(['/', '?']).next().unwrap_or("");
    let hosts = hosts.rsplit_once('@').map_or(hosts, |(_, h)| h);
    let first = hosts.split(',').next().unwrap_or("");
    let default_port = if scheme == "mongodb+srv" { 0 } else { 27017 };
    match first.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') => Address {
            host: host.to_string(),
            port: port.parse().unwrap_or(default_port),
        },
        _ => Address {
            host: first.to_string(),
            port: default_port,
        },
    }
}

/// How many servers a connection URI lists (0 for none, 1 for an SRV
/// name, which stands for however many its DNS gives).
fn host_count(uri: &str) -> usize {
    let Some((_, rest)) = uri.split_once("://") else {
        return 0;
    };
    let hosts = rest.split(['/', '?']).next().unwrap_or("");
    let hosts = hosts.rsplit_once('@').map_or(hosts, |(_, h)| h);
    hosts.split(',').filter(|h| !h.is_empty()).count()
}

pub(super) async fn describe_db_instances(
    ctx: &CallContext<'_>,
    params: Params,
) -> Result<Fields, ApiError> {
    let request = Request::parse(params)?;
    let registry = ctx
        .catalog()
        .instances()
        .registry()
        .await
        .map_err(crate::catalog_error)?;
    let owner = &ctx.caller.owner_uin;
    let mut selected: Vec<Arc<Rendered>> = registry
        .iter()
        .filter(|i| &i.owner_uin == owner && i.region == ctx.region)
        .filter(|i| {
            ctx.caller
                .may_access_instance(&i.region, &i.owner_uin, &i.id)
        })
        .map(|i| ctx.api.rendered_instances.get(ctx.api, i))
        .filter(|r| request.matches(&r.instance, &r.address))
        .collect();
    match request.order_by {
        // Every registered instance is in project 0: keep creation order.
        OrderBy::ProjectId | OrderBy::CreateTime => selected.sort_by(|a, b| {
            let (a, b) = (&a.instance, &b.instance);
            (a.created_at, &a.id).cmp(&(b.created_at, &b.id))
        }),
        OrderBy::InstanceName => selected.sort_by(|a, b| {
            let (a, b) = (&a.instance, &b.instance);
            (&a.name, &a.id).cmp(&(&b.name, &b.id))
        }),
    }
    if request.descending {
        selected.reverse();
    }
    let page = selected.iter().skip(request.offset).take(request.limit);
    Ok(instance_list(selected.len(), page.map(|r| &*r.json)))
}

/// A `DescribeDBInstancesResponse` from its total and its page of
/// serialized details, spliced as serde writes it: serializing every
/// detail again was most of the action's time.
fn instance_list<'a>(total_count: usize, details: impl Iterator<Item = &'a [u8]>) -> Fields {
    let mut out = format!("{{\"TotalCount\":{total_count},\"InstanceDetails\":[").into_bytes();
    for (n, json) in details.enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(json);
    }
    out.extend_from_slice(b"]}");
    Fields(out)
}

/// An instance with what DescribeDBInstances shows of it: its address and
/// its `InstanceDetail` as JSON, made once per version of the instance.
#[derive(Debug)]
pub(crate) struct Rendered {
    instance: Instance,
    address: Address,
    json: Box<[u8]>,
}

/// The [`Rendered`] instances, by ID. An entry serves while the registry
/// holds an equal instance; a changed one is rendered again. Building and
/// serializing a detail was most of the action's time, for answers that
/// change only when an operator changes the registry.
#[derive(Debug, Default)]
pub(crate) struct RenderedInstances {
    by_id: Mutex<HashMap<String, Arc<Rendered>>>,
}

/// More entries than this (instances removed over time) and the cache
/// starts again empty.
const RENDERED_PRUNE_AT: usize = 4096;

impl RenderedInstances {
    fn get(&self, api: &crate::Api, instance: &Instance) -> Arc<Rendered> {
        if let Some(hit) = self
            .by_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(instance.id.as_str())
            .filter(|r| r.instance == *instance)
        {
            return hit.clone();
        }
        let address = instance
            .replica_set_uris
            .first()
            .map(|u| address_of(u))
            .unwrap_or_default();
        let detail = detail(api, instance, &address);
        let json = serde_json::to_vec(&detail)
            .expect("an InstanceDetail serializes")
            .into_boxed_slice();
        let rendered = Arc::new(Rendered {
            instance: instance.clone(),
            address,
            json,
        });
        let mut by_id = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        if by_id.len() >= RENDERED_PRUNE_AT {
            by_id.clear();
        }
        by_id.insert(instance.id.to_string(), rendered.clone());
        rendered
    }
}

fn detail(api: &crate::Api, instance: &Instance, address: &Address) -> InstanceDetail {
    let replica_sets = instance
        .replica_set_ids()
        .into_iter()
        .map(|id| ShardInfo {
            used_volume: 0.0,
            replica_set_name: id.to_string(),
            real_replica_set_id: id.to_string(),
            replica_set_id: id.into(),
            memory: 0,
            volume: 0,
            oplog_size: 0,
            secondary_num: 0,
        })
        .collect();
    let zone = format!("{}-1", instance.region);
    InstanceDetail {
        pay_mode: 0,
        project_id: 0,
        cluster_type: instance.cluster_type.code(),
        zone: zone.clone(),
        net_type: 1,
        vpc_id: String::new(),
        subnet_id: String::new(),
        status: InstanceStatus::Running,
        vip: address.host.clone(),
        vport: address.port,
        create_time: api.format_time(instance.created_at),
        dead_line: NO_DEADLINE.into(),
        mongo_version: instance.server_version.clone(),
        memory: 0,
        volume: 0,
        cpu_num: 0,
        machine_type: String::new(),
        secondary_num: 0,
        replication_set_num: instance.replica_set_uris.len() as u64,
        auto_renew_flag: 0,
        used_volume: 0,
        maintenance_start: "00:00:00".into(),
        maintenance_end: "00:00:00".into(),
        replica_sets,
        readonly_instances: Vec::new(),
        standby_instances: Vec::new(),
        clone_instances: Vec::new(),
        related_instance: RelatedInstanceInfo::default(),
        tags: Vec::new(),
        instance_ver: 0,
        cluster_ver: 0,
        protocol: 1,
        instance_type: INSTANCE_TYPE_FORMAL,
        instance_status_desc: String::new(),
        real_instance_id: instance.id.to_string(),
        zone_list: vec![zone],
        mongos_node_num: instance
            .mongos_uri
            .as_deref()
            .map_or(0, |uri| host_count(uri) as u64),
        mongos_memory: 0,
        mongos_cpu_num: 0,
        config_server_node_num: 0,
        config_server_memory: 0,
        config_server_volume: 0,
        config_server_cpu_num: 0,
        readonly_node_num: 0,
        instance_name: instance.name.clone(),
        region: instance.region.clone(),
        instance_id: instance.id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_leave_credentials_out() {
        assert_eq!(
            address_of("mongodb://user:p%40ss@db1.example:27018,db2:27017/admin?replicaSet=rs0"),
            Address {
                host: "db1.example".into(),
                port: 27018
            }
        );
        assert_eq!(
            address_of("mongodb://127.0.0.1/?directConnection=true"),
            Address {
                host: "127.0.0.1".into(),
                port: 27017
            }
        );
        assert_eq!(address_of("mongodb+srv://u:p@cluster.example/").port, 0);
        assert_eq!(address_of("garbage"), Address::default());
        assert_eq!(host_count("mongodb://u:p@m1:27017,m2,m3:27019/?x=1"), 3);
        assert_eq!(host_count("mongodb+srv://cluster.example/"), 1);
        assert_eq!(host_count("garbage"), 0);
    }

    #[test]
    fn the_spliced_list_is_the_response_serialized() {
        let shard = |n: u32| ShardInfo {
            used_volume: 0.0,
            replica_set_id: format!("cmgo-a_{n}"),
            replica_set_name: format!("cmgo-a_{n}"),
            memory: 0,
            volume: 0,
            oplog_size: 0,
            secondary_num: 0,
            real_replica_set_id: format!("cmgo-a_{n}"),
        };
        let mut detail: InstanceDetail = serde_json::from_str(
            r#"{
            "InstanceId": "cmgo-a", "InstanceName": "a", "PayMode": 0, "ProjectId": 0,
            "ClusterType": 1, "Region": "ap-guangzhou", "Zone": "ap-guangzhou-1", "NetType": 1,
            "VpcId": "", "SubnetId": "", "Status": 2, "Vip": "db", "Vport": 27017,
            "CreateTime": "2026-01-01 00:00:00", "DeadLine": "2099-12-31 23:59:59",
            "MongoVersion": "8.0.0", "Memory": 0, "Volume": 0, "CpuNum": 0, "MachineType": "",
            "SecondaryNum": 0, "ReplicationSetNum": 2, "AutoRenewFlag": 0, "UsedVolume": 0,
            "MaintenanceStart": "00:00:00", "MaintenanceEnd": "00:00:00", "ReplicaSets": [],
            "ReadonlyInstances": [], "StandbyInstances": [], "CloneInstances": [],
            "RelatedInstance": {"InstanceId": "", "Region": ""}, "Tags": [], "InstanceVer": 0,
            "ClusterVer": 0, "Protocol": 1, "InstanceType": 1, "InstanceStatusDesc": "",
            "RealInstanceId": "cmgo-a", "ZoneList": ["ap-guangzhou-1"], "MongosNodeNum": 2,
            "MongosMemory": 0, "MongosCpuNum": 0, "ConfigServerNodeNum": 0,
            "ConfigServerMemory": 0, "ConfigServerVolume": 0, "ConfigServerCpuNum": 0,
            "ReadonlyNodeNum": 0
            }"#,
        )
        .unwrap();
        detail.replica_sets = vec![shard(0), shard(1)];
        let details = vec![detail.clone(), detail];
        let rendered: Vec<Vec<u8>> = details
            .iter()
            .map(|d| serde_json::to_vec(d).unwrap())
            .collect();
        let spliced = instance_list(7, rendered.iter().map(Vec::as_slice));
        let typed = crate::model::DescribeDBInstancesResponse {
            total_count: 7,
            instance_details: details,
        };
        assert_eq!(spliced.as_bytes(), serde_json::to_vec(&typed).unwrap());
        let empty = instance_list(0, std::iter::empty());
        assert_eq!(
            empty.as_bytes(),
            br#"{"TotalCount":0,"InstanceDetails":[]}"#
        );
    }

    #[test]
    fn pay_mode_minus_one_means_all() {
        for mode in [-1, 0, 1] {
            let p = Params::new(serde_json::json!({"PayMode": mode})).unwrap();
            assert_eq!(Request::parse(p).unwrap().pay_mode, Some(mode));
        }
        let p = Params::new(serde_json::json!({"PayMode": -2})).unwrap();
        let e = Request::parse(p).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidParameterValue);
        assert!(e.message().contains("`PayMode`"), "{e}");
    }

    #[test]
    fn cluster_type_is_checked() {
        let p = Params::new(serde_json::json!({"ClusterType": 5})).unwrap();
        assert_eq!(
            Request::parse(p).unwrap_err().kind(),
            ErrorKind::ClusterTypeError
        );
        let p = Params::new(serde_json::json!({"Limit": 0})).unwrap();
        assert_eq!(
            Request::parse(p).unwrap_err().kind(),
            ErrorKind::LimitOutOfRange
        );
        let p = Params::new(serde_json::json!({"Offset": 10001})).unwrap();
        assert_eq!(
            Request::parse(p).unwrap_err().kind(),
            ErrorKind::OffsetOutOfRange
        );
        let p =
            Params::new(serde_json::json!({"ClusterType": 1, "Limit": "7", "OrderByType": "asc"}))
                .unwrap();
        let r = Request::parse(p).unwrap();
        assert_eq!((r.cluster_type, r.limit, r.descending), (Some(1), 7, false));
    }
}

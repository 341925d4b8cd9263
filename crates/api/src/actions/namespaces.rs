//! DescribeDBInstanceNamespace: the databases of an instance, or the
//! collections of one of its databases (fields per the SDK's model, the
//! answer per docs/api.md).
//!
//! Unlike every other action, this one reads the deployment itself, live,
//! not the catalog or a backup: through `mongobak_dump::probe`, from the
//! instance's mongos when it has one, else from each replica set / shard,
//! merged. A deployment that cannot be read within the probe's time limit
//! (10 s) answers `FailedOperation` naming the instance, never its URI
//! (which may hold a password); the log has the driver's error.

use mongobak_catalog::Instance;
use mongobak_dump::probe::{self, Deployment};
use mongobak_dump::DumpError;

use super::{authorize_instance, to_fields, CallContext, Fields};
use crate::error::{ApiError, ErrorKind};
use crate::model::DescribeDBInstanceNamespaceResponse;
use crate::params::Params;

/// Longest database name MongoDB accepts, in bytes.
const MAX_DB_NAME_BYTES: usize = 63;

/// Characters MongoDB refuses in a database name (on every platform).
const FORBIDDEN_IN_DB_NAME: &[char] = &['/', '\\', '.', ' ', '"', '$', '\0'];

pub(super) async fn describe_db_instance_namespace(
    ctx: &CallContext<'_>,
    mut p: Params,
) -> Result<Fields, ApiError> {
    let instance_id = p.string("InstanceId")?;
    // Empty is absent: the SDK documents an empty DbName as "list the
    // databases".
    let db_name = p.opt_string("DbName")?.filter(|name| !name.is_empty());
    p.finish()?;
    if let Some(name) = &db_name {
        check_db_name("DbName", name)?;
    }
    let instance = authorize_instance(ctx, &instance_id).await?;
    let deployment = deployment(&instance);
    let response = match db_name {
        None => DescribeDBInstanceNamespaceResponse {
            databases: probe::list_databases(&deployment)
                .await
                .map_err(|e| unreadable(&instance, e))?,
            collections: Vec::new(),
        },
        Some(name) => DescribeDBInstanceNamespaceResponse {
            collections: probe::list_collections(&deployment, &name)
                .await
                .map_err(|e| unreadable(&instance, e))?,
            databases: vec![name],
        },
    };
    to_fields(response)
}

/// Refuses a name MongoDB would refuse for a database: longer than 63
/// bytes, or holding one of `/\. "$` or NUL.
pub(super) fn check_db_name(param: &str, name: &str) -> Result<(), ApiError> {
    if name.len() > MAX_DB_NAME_BYTES {
        return Err(ApiError::invalid_value(
            param,
            format_args!(
                "a database name has at most {MAX_DB_NAME_BYTES} bytes, this one {}",
                name.len()
            ),
        ));
    }
    if let Some(c) = name.chars().find(|c| FORBIDDEN_IN_DB_NAME.contains(c)) {
        let shown = match c {
            '\0' => "NUL".to_string(),
            ' ' => "a space".to_string(),
            c => format!("`{c}`"),
        };
        return Err(ApiError::invalid_value(
            param,
            format_args!(
                "it holds {shown}; a database name holds none of `/`, `\\`, `.`, `\"`, `$`, a space or NUL"
            ),
        ));
    }
    Ok(())
}

/// What the probe needs of an instance: its mongos and its replica sets.
pub(super) fn deployment(instance: &Instance) -> Deployment {
    Deployment {
        mongos_uri: instance.mongos_uri.clone(),
        replica_sets: instance
            .replica_set_ids()
            .into_iter()
            .map(String::from)
            .zip(instance.replica_set_uris.clone())
            .collect(),
    }
}

/// `FailedOperation` for a deployment that could not be read, naming the
/// instance and the replica set (or mongos) at fault; the driver's error,
/// which may name hosts, goes to the log only.
pub(super) fn unreadable(instance: &Instance, error: DumpError) -> ApiError {
    tracing::warn!(instance = %instance.id, error = %error, "cannot list the instance's namespaces");
    let cause = match &error {
        DumpError::Connect { replica_set, .. } => format!("{replica_set} could not be reached"),
        DumpError::AuthenticationFailed { replica_set } => {
            format!("{replica_set} refused the credentials of its URI")
        }
        DumpError::TimedOut {
            replica_set,
            waited_secs,
            ..
        } => format!("{replica_set} gave no answer within {waited_secs} s"),
        DumpError::Mongo {
            replica_set,
            action,
            ..
        } => format!("{action} failed on {replica_set}"),
        DumpError::NotReplicaSet { .. }
        | DumpError::OplogRolledOver { .. }
        | DumpError::ClusterTimeNotReached { .. }
        | DumpError::Storage(_)
        | DumpError::Compression(_)
        | DumpError::TaskFailed { .. }
        | DumpError::WriterFailed { .. }
        | DumpError::Stopped
        | DumpError::Corrupt { .. } => "the listing failed".to_string(),
    };
    ApiError::new(
        ErrorKind::FailedOperation,
        format!(
            "The instance {} could not be read: {cause}; the server log has the details.",
            instance.id
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_follow_mongodb() {
        for good in [
            "shop",
            "a",
            "订单",
            "with-dash_and_underscore",
            &"x".repeat(63),
        ] {
            assert!(check_db_name("DbName", good).is_ok(), "{good}");
        }
        for bad in [
            "a/b",
            "a\\b",
            "a.b",
            "a b",
            "a\"b",
            "a$b",
            "a\0b",
            &"x".repeat(64),
            // 64 bytes in 22 characters.
            &"订".repeat(22),
        ] {
            let e = check_db_name("DbName", bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidParameterValue, "{bad:?}");
            assert!(e.message().contains("`DbName`"), "{e}");
        }
        let e = check_db_name("DbName", "a\0b").unwrap_err();
        assert!(
            e.message().contains("NUL") && !e.message().contains('\0'),
            "{e}"
        );
    }

    #[test]
    fn failures_name_the_instance_and_never_a_uri() {
        let instance = Instance {
            id: mongobak_catalog::InstanceId::parse("cmgo-abcd1234").unwrap(),
            name: "n".into(),
            region: "ap-guangzhou".into(),
            owner_uin: "1".into(),
            cluster_type: mongobak_catalog::ClusterType::Sharded,
            replica_set_uris: vec!["mongodb://u:pw@h0".into(), "mongodb://u:pw@h1".into()],
            mongos_uri: None,
            source: mongobak_catalog::InstanceSource::Cli,
            created_at: jiff::Timestamp::UNIX_EPOCH,
            server_version: String::new(),
        };
        let d = deployment(&instance);
        assert_eq!(d.replica_sets[1].0, "cmgo-abcd1234_1");
        let e = unreadable(
            &instance,
            DumpError::TimedOut {
                replica_set: "cmgo-abcd1234_1".into(),
                action: "listDatabases".into(),
                waited_secs: 10,
            },
        );
        assert_eq!(e.code(), "FailedOperation");
        assert!(
            e.message().contains("cmgo-abcd1234")
                && e.message().contains("within 10 s")
                && !e.message().contains("pw"),
            "{e}"
        );
    }
}

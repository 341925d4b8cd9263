//! The wire types of the mongodb actions, shared by the server and the
//! `mongobak` client: for every provided action (see [`Action::ALL`]) a
//! request type, what a client sends, and a response type, the fields of
//! the `Response` object without its `RequestId`.
//!
//! Field names are the API's (PascalCase, `SHA256` as it is); optional
//! request parameters are left out when absent. Status codes are enums
//! that travel as the numbers or strings of the API. Fields mongobak adds
//! to TencentDB's models (`FailureReason`, `SHA256`, ...) read as empty
//! when a server leaves them out.
//!
//! The server builds its answers from the response types. It reads
//! requests through [`crate::params::Params`], which names the parameter
//! in every error and caps every list, not through the request types.

mod backups;
mod downloads;
mod instances;
mod namespaces;
mod restores;
mod rules;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::Action;

pub use backups::{
    backup_method, AsyncRequestStatus, BackupInfo, BackupState, CreateBackupDBInstanceRequest,
    CreateBackupDBInstanceResponse, DeleteDBBackupsRequest, DeleteDBBackupsResponse,
    DescribeAsyncRequestInfoRequest, DescribeAsyncRequestInfoResponse, DescribeDBBackupsRequest,
    DescribeDBBackupsResponse, ModifyBackupExpireTimeRequest, ModifyBackupExpireTimeResponse,
};
pub use downloads::{
    BackupDownloadTask, BackupDownloadTaskStatus, CreateBackupDownloadTaskRequest,
    CreateBackupDownloadTaskResponse, DescribeBackupDownloadTaskRequest,
    DescribeBackupDownloadTaskResponse, DownloadTaskStatus, ReplicaSetInfo,
};
pub use instances::{
    DescribeDBInstancesRequest, DescribeDBInstancesResponse, InstanceDetail, InstanceStatus,
    RelatedInstanceInfo, ShardInfo, TagInfo,
};
pub use namespaces::{DescribeDBInstanceNamespaceRequest, DescribeDBInstanceNamespaceResponse};
pub use restores::{
    FBKeyValue, FlashBackDBInstanceRequest, FlashBackDBInstanceResponse, FlashbackCollection,
    FlashbackDatabase, RestoreCollection, RestoreDBInstanceRequest, RestoreDBInstanceResponse,
    RestoreDatabases,
};
pub use rules::{
    BackupTotalSize, DescribeBackupRulesRequest, DescribeBackupRulesResponse, RestoreWindowSpan,
    SetBackupRulesRequest, SetBackupRulesResponse,
};

/// The request of one action: the action it names and the type of its
/// answer.
pub trait ActionRequest: Serialize + DeserializeOwned {
    /// The action called.
    const ACTION: Action;
    /// The fields of its `Response` object.
    type Response: Serialize + DeserializeOwned;
}

/// Pairs each action with its request and response types, and lists the
/// actions so paired.
macro_rules! actions {
    ($($action:ident: $request:ident => $response:ident,)+) => {
        $(
            impl ActionRequest for $request {
                const ACTION: Action = Action::$action;
                type Response = $response;
            }
        )+

        /// The actions that have request and response types here.
        #[cfg(test)]
        const TYPED: &[Action] = &[$(Action::$action),+];
    };
}

actions! {
    DescribeDBInstances: DescribeDBInstancesRequest => DescribeDBInstancesResponse,
    DescribeDBInstanceNamespace: DescribeDBInstanceNamespaceRequest => DescribeDBInstanceNamespaceResponse,
    CreateBackupDBInstance: CreateBackupDBInstanceRequest => CreateBackupDBInstanceResponse,
    DescribeAsyncRequestInfo: DescribeAsyncRequestInfoRequest => DescribeAsyncRequestInfoResponse,
    DescribeDBBackups: DescribeDBBackupsRequest => DescribeDBBackupsResponse,
    DeleteDBBackups: DeleteDBBackupsRequest => DeleteDBBackupsResponse,
    ModifyBackupExpireTime: ModifyBackupExpireTimeRequest => ModifyBackupExpireTimeResponse,
    CreateBackupDownloadTask: CreateBackupDownloadTaskRequest => CreateBackupDownloadTaskResponse,
    DescribeBackupDownloadTask: DescribeBackupDownloadTaskRequest => DescribeBackupDownloadTaskResponse,
    DescribeBackupRules: DescribeBackupRulesRequest => DescribeBackupRulesResponse,
    SetBackupRules: SetBackupRulesRequest => SetBackupRulesResponse,
    RestoreDBInstance: RestoreDBInstanceRequest => RestoreDBInstanceResponse,
    FlashBackDBInstance: FlashBackDBInstanceRequest => FlashBackDBInstanceResponse,
}

/// A number that names no value of a status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} is not a known {what}")]
pub struct UnknownCode {
    /// The status type.
    pub what: &'static str,
    /// The number.
    pub code: i64,
}

/// A status that travels as a number: the enum, its `code`, and its
/// serde form (the bare number; another number does not read).
macro_rules! numeric_status {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident = $code:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(into = "i64", try_from = "i64")]
        pub enum $name {
            $($(#[$variant_meta])* $variant = $code,)+
        }

        impl $name {
            /// The number on the wire.
            pub fn code(self) -> i64 {
                self as i64
            }

            /// The status with number `code`.
            pub fn from_code(code: i64) -> Option<Self> {
                match code {
                    $($code => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl From<$name> for i64 {
            fn from(status: $name) -> i64 {
                status.code()
            }
        }

        impl TryFrom<i64> for $name {
            type Error = $crate::model::UnknownCode;

            fn try_from(code: i64) -> Result<Self, Self::Error> {
                Self::from_code(code).ok_or($crate::model::UnknownCode {
                    what: stringify!($name),
                    code,
                })
            }
        }
    };
}
use numeric_status;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_action_has_its_types() {
        assert_eq!(TYPED, Action::ALL);
        assert_eq!(
            <SetBackupRulesRequest as ActionRequest>::ACTION.name(),
            "SetBackupRules"
        );
    }

    /// `value` serializes as `expected` and reads back as itself.
    fn round_trip<T>(value: &T, expected: serde_json::Value)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let text = serde_json::to_string(value).unwrap();
        assert_eq!(text, expected.to_string());
        assert_eq!(&serde_json::from_str::<T>(&text).unwrap(), value);
    }

    #[test]
    fn statuses_travel_as_their_numbers_and_strings() {
        round_trip(&DownloadTaskStatus::Retrying, json!(4));
        round_trip(&InstanceStatus::IsolatedPostpaid, json!(-3));
        round_trip(&BackupState::Succeeded, json!(2));
        round_trip(&AsyncRequestStatus::Initial, json!("initial"));
        let e = serde_json::from_str::<DownloadTaskStatus>("7").unwrap_err();
        assert!(
            e.to_string()
                .contains("7 is not a known DownloadTaskStatus"),
            "{e}"
        );
        assert!(serde_json::from_str::<AsyncRequestStatus>("\"done\"").is_err());
    }

    #[test]
    fn requests_leave_absent_parameters_out() {
        round_trip(
            &DescribeBackupDownloadTaskRequest {
                instance_id: "cmgo-a".into(),
                backup_name: Some("b".into()),
                limit: Some(100),
                status: Some(vec![DownloadTaskStatus::Done, DownloadTaskStatus::Failed]),
                ..Default::default()
            },
            json!({"InstanceId": "cmgo-a", "BackupName": "b", "Limit": 100, "Status": [2, 3]}),
        );
        round_trip(
            &CreateBackupDBInstanceRequest {
                instance_id: "cmgo-a".into(),
                backup_method: backup_method::LOGICAL,
                ..Default::default()
            },
            json!({"InstanceId": "cmgo-a", "BackupMethod": 0}),
        );
        round_trip(
            &DescribeDBInstanceNamespaceRequest {
                instance_id: "cmgo-a".into(),
                db_name: None,
            },
            json!({"InstanceId": "cmgo-a"}),
        );
        round_trip(&DeleteDBBackupsResponse {}, json!({}));
        round_trip(&SetBackupRulesResponse {}, json!({}));
    }

    #[test]
    fn fields_of_mongobak_alone_may_be_absent() {
        let task: BackupDownloadTask = serde_json::from_value(json!({
            "CreateTime": "", "BackupName": "", "ReplicaSetId": "cmgo-a_0", "BackupSize": 0,
            "Status": 1, "Percent": 5, "TimeSpend": 0, "Url": "", "BackupMethod": 0,
            "BackupDesc": "", "Region": "", "Bucket": ""
        }))
        .unwrap();
        assert_eq!(
            (task.status, task.sha256.as_str()),
            (DownloadTaskStatus::Running, "")
        );
        let info: DescribeAsyncRequestInfoResponse =
            serde_json::from_value(json!({"Status": "running", "StartTime": "", "EndTime": ""}))
                .unwrap();
        assert_eq!((info.progress, info.failure_reason.as_str()), (0, ""));
    }
}

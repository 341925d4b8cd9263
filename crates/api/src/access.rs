//! Who may call what: accounts, their keys and sub-account policies.
//!
//! A root account (AppId, Uin, SecretId, SecretKey) owns instances and may do
//! everything with them. A sub-account signs with its own key and acts for
//! its root account within a policy: the actions it may call (`mongodb:*`,
//! `mongodb:Describe*`, ...) and the resources it may touch, as six-part
//! `qcs::mongodb:<region>:uin/<owner uin>:instance/<id>` names with `*`
//! wildcards. Instances of other root accounts are invisible: handlers answer
//! "not found" for them, so existence never leaks.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{ApiError, ErrorKind};

/// A root account and its sub-accounts, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootAccount {
    /// The AppId; an account without one cannot be verified and every call
    /// it signs is refused with `InternalError.CheckAppIdFailed`.
    pub app_id: Option<u64>,
    /// The account's Uin, owner of its instances.
    pub uin: String,
    /// The API key id.
    pub secret_id: String,
    /// The API key secret.
    pub secret_key: String,
    /// A disabled root account's sub-accounts fail the AppId check; its own
    /// key is unknown.
    pub disabled: bool,
    /// Sub-accounts acting for this account.
    pub sub_accounts: Vec<SubAccount>,
}

/// A sub-account with its own key and a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAccount {
    /// The sub-account's own Uin.
    pub uin: String,
    /// The API key id.
    pub secret_id: String,
    /// The API key secret.
    pub secret_key: String,
    /// A disabled sub-account's key is unknown.
    pub disabled: bool,
    /// What it may do.
    pub policy: Policy,
}

/// Allowed actions and resources of a sub-account.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// Action patterns: `mongodb:DescribeDBInstances`, `mongodb:Describe*`, `*`.
    pub allow: Vec<String>,
    /// Resource patterns: `qcs::mongodb:ap-guangzhou:uin/1:instance/cmgo-*`, `*`.
    pub resources: Vec<String>,
}

impl Policy {
    /// Whether the policy allows calling `action` (a mongodb action name).
    pub fn allows_action(&self, action: &str) -> bool {
        let qualified = format!("mongodb:{action}");
        self.allow.iter().any(|p| wildcard_match(p, &qualified))
    }

    /// Whether the policy allows touching the resource named `resource`.
    pub fn allows_resource(&self, resource: &str) -> bool {
        self.resources.iter().any(|p| wildcard_match(p, resource))
    }
}

/// The six-part resource name of an instance.
pub fn instance_resource(region: &str, owner_uin: &str, instance_id: &str) -> String {
    format!("qcs::mongodb:{region}:uin/{owner_uin}:instance/{instance_id}")
}

/// `*` matches any run of characters (including none); everything else
/// matches itself.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Position of the last `*` in the pattern and of the text it resumes at.
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            backtrack = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((star, resume)) = backtrack {
            pi = star + 1;
            ti = resume + 1;
            backtrack = Some((star, resume + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// The verified identity behind a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The Uin that signed: the root's, or the sub-account's.
    pub uin: String,
    /// The root account the caller acts for; it owns the instances.
    pub owner_uin: String,
    app_id: Option<u64>,
    root_disabled: bool,
    /// `None` for a root account (no restrictions).
    policy: Option<Arc<Policy>>,
}

impl Caller {
    /// Refuses callers whose AppId cannot be verified: no AppId configured
    /// for the root account, or the root account is disabled.
    pub fn check_app_id(&self) -> Result<u64, ApiError> {
        match self.app_id {
            Some(app_id) if !self.root_disabled => Ok(app_id),
            _ => Err(ApiError::new(
                ErrorKind::CheckAppIdFailed,
                "The AppId of the calling account could not be verified.",
            )),
        }
    }

    /// Refuses a sub-account whose policy does not allow `action`.
    pub fn authorize_action(&self, action: &str) -> Result<(), ApiError> {
        match &self.policy {
            Some(policy) if !policy.allows_action(action) => Err(ApiError::new(
                ErrorKind::PermissionDenied,
                format!(
                    "The sub-account {} has no permission for mongodb:{action}.",
                    self.uin
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Whether the caller may see the instance at all: it belongs to the
    /// caller's root account. Others are reported as not found.
    pub fn owns(&self, owner_uin: &str) -> bool {
        self.owner_uin == owner_uin
    }

    /// Whether the caller's policy covers `resource` (always, for a root).
    pub fn may_access(&self, resource: &str) -> bool {
        self.policy
            .as_ref()
            .is_none_or(|p| p.allows_resource(resource))
    }

    /// Whether this caller may see the instance `instance_id` of
    /// `owner_uin` in `region`; a root account may, without a resource
    /// name being built.
    pub fn may_access_instance(&self, region: &str, owner_uin: &str, instance_id: &str) -> bool {
        self.policy
            .as_ref()
            .is_none_or(|p| p.allows_resource(&instance_resource(region, owner_uin, instance_id)))
    }

    /// Refuses a sub-account whose policy does not cover `resource`.
    pub fn authorize_resource(&self, resource: &str) -> Result<(), ApiError> {
        if self.may_access(resource) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorKind::PermissionDenied,
                format!(
                    "The sub-account {} has no permission for {resource}.",
                    self.uin
                ),
            ))
        }
    }
}

/// The keys mongobak knows, by SecretId.
#[derive(Debug, Default)]
pub struct Directory {
    keys: HashMap<String, (String, Caller)>,
}

impl Directory {
    /// Indexes the keys of `accounts`. Disabled keys are left out, so they
    /// answer `AuthFailure.SecretIdNotFound`.
    pub fn new(accounts: &[RootAccount]) -> Self {
        let mut keys = HashMap::new();
        for root in accounts {
            if !root.disabled {
                let caller = Caller {
                    uin: root.uin.clone(),
                    owner_uin: root.uin.clone(),
                    app_id: root.app_id,
                    root_disabled: false,
                    policy: None,
                };
                keys.insert(root.secret_id.clone(), (root.secret_key.clone(), caller));
            }
            for sub in root.sub_accounts.iter().filter(|s| !s.disabled) {
                let caller = Caller {
                    uin: sub.uin.clone(),
                    owner_uin: root.uin.clone(),
                    app_id: root.app_id,
                    root_disabled: root.disabled,
                    policy: Some(Arc::new(sub.policy.clone())),
                };
                keys.insert(sub.secret_id.clone(), (sub.secret_key.clone(), caller));
            }
        }
        Directory { keys }
    }

    /// The secret key and identity of `secret_id`.
    pub fn lookup(&self, secret_id: &str) -> Option<(&str, &Caller)> {
        self.keys.get(secret_id).map(|(k, c)| (k.as_str(), c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match(
            "mongodb:Describe*",
            "mongodb:DescribeDBInstances"
        ));
        assert!(!wildcard_match(
            "mongodb:Describe*",
            "mongodb:CreateBackupDownloadTask"
        ));
        assert!(wildcard_match(
            "mongodb:*Backup*",
            "mongodb:CreateBackupDownloadTask"
        ));
        assert!(wildcard_match("a*b*c", "aXXbYYbc"));
        assert!(!wildcard_match("a*b*c", "aXXbYYb"));
        assert!(!wildcard_match("abc", "abcd"));
    }

    fn directory() -> Directory {
        Directory::new(&[
            RootAccount {
                app_id: Some(1250000000),
                uin: "100".into(),
                secret_id: "ROOT".into(),
                secret_key: "rk".into(),
                disabled: false,
                sub_accounts: vec![SubAccount {
                    uin: "101".into(),
                    secret_id: "SUB".into(),
                    secret_key: "sk".into(),
                    disabled: false,
                    policy: Policy {
                        allow: vec!["mongodb:Describe*".into()],
                        resources: vec!["qcs::mongodb:ap-guangzhou:uin/100:instance/cmgo-a*".into()],
                    },
                }],
            },
            RootAccount {
                app_id: Some(1250000001),
                uin: "200".into(),
                secret_id: "OFF".into(),
                secret_key: "ok".into(),
                disabled: true,
                sub_accounts: vec![SubAccount {
                    uin: "201".into(),
                    secret_id: "ORPHAN".into(),
                    secret_key: "x".into(),
                    disabled: false,
                    policy: Policy::default(),
                }],
            },
        ])
    }

    #[test]
    fn sub_account_policy() {
        let d = directory();
        let (key, sub) = d.lookup("SUB").unwrap();
        assert_eq!(key, "sk");
        assert_eq!(sub.owner_uin, "100");
        assert!(sub.authorize_action("DescribeDBInstances").is_ok());
        let denied = sub
            .authorize_action("CreateBackupDownloadTask")
            .unwrap_err();
        assert_eq!(denied.kind(), ErrorKind::PermissionDenied);
        assert!(sub.may_access(&instance_resource("ap-guangzhou", "100", "cmgo-abc")));
        assert!(!sub.may_access(&instance_resource("ap-guangzhou", "100", "cmgo-xyz")));
        assert!(!sub.may_access(&instance_resource("ap-shanghai", "100", "cmgo-abc")));
    }

    #[test]
    fn disabled_keys_and_unverifiable_app_ids() {
        let d = directory();
        assert!(d.lookup("OFF").is_none());
        let (_, orphan) = d.lookup("ORPHAN").unwrap();
        assert_eq!(
            orphan.check_app_id().unwrap_err().kind(),
            ErrorKind::CheckAppIdFailed
        );
        let (_, root) = d.lookup("ROOT").unwrap();
        assert_eq!(root.check_app_id().unwrap(), 1250000000);
        assert!(root.authorize_action("Anything").is_ok());
    }
}

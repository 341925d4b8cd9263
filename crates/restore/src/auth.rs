//! Users and roles (`admin.system.users`, `admin.system.roles`), restored
//! after the data as mongorestore does.
//!
//! MongoDB refuses direct writes to those collections; mongorestore loads
//! the documents into `admin.tempusers` / `admin.temproles` and merges them
//! with the internal `_mergeAuthzCollections` command (replacing the
//! existing ones with `drop`). That is done here when the server has the
//! command, found by a probe without arguments.
//!
//! Otherwise (SecantusDB keeps users and roles behind the user management
//! commands: `admin.system.users` is a read-only view there):
//! - roles are recreated with `createRole` (privileges, inherited roles,
//!   authentication restrictions), in rounds so that a role inheriting
//!   another custom role waits for it; an existing role is replaced with
//!   `updateRole` under `drop`, else counted as a duplicate;
//! - users cannot be: `createUser` wants a password and the archive holds
//!   only SCRAM keys derived from it. Each user is skipped with a warning
//!   saying to create it again.
//!
//! `admin.system.version` is not restored: the server keeps its own
//! feature compatibility version and auth schema (mongorestore reads it
//! only to check the auth schema).

use mongodb::bson::{doc, Bson, Document, RawDocumentBuf};
use mongodb::Client;

use crate::error::RestoreError;
use crate::oplog::code;
use crate::AuthReport;

const COMMAND_NOT_FOUND: i32 = 59;
const NAMESPACE_NOT_FOUND: i32 = 26;
const ROLE_NOT_FOUND: i32 = 31;
const ROLE_EXISTS: i32 = 51002;
const USER_EXISTS: i32 = 51003;

/// Restores the buffered users and roles; returns the users' and roles'
/// reports and adds warnings.
pub(crate) async fn restore(
    client: &Client,
    users: &[RawDocumentBuf],
    roles: &[RawDocumentBuf],
    drop: bool,
    warnings: &mut Vec<String>,
) -> Result<(AuthReport, AuthReport), RestoreError> {
    if users.is_empty() && roles.is_empty() {
        return Ok(Default::default());
    }
    let admin = client.database("admin");
    let probe = admin
        .run_command(doc! {"_mergeAuthzCollections": 1, "db": "", "drop": false})
        .await;
    let mergeable = !matches!(&probe, Err(e) if code(e) == Some(COMMAND_NOT_FOUND));
    if mergeable {
        return merge(client, users, roles, drop).await;
    }
    let roles_report = create_roles(client, roles, drop, warnings).await?;
    let mut users_report = AuthReport::default();
    for user in users {
        let name = identity(user, "user");
        let warning = format!(
            "user {name} was not restored: the target takes users only through createUser, which needs the password, \
             and the archive holds only its SCRAM keys; create the user again with createUser"
        );
        tracing::warn!("{warning}");
        warnings.push(warning);
        users_report.skipped.push(name);
    }
    Ok((users_report, roles_report))
}

/// `user@db` or `role@db` of a document.
fn identity(doc: &RawDocumentBuf, field: &str) -> String {
    let name = doc.get_str(field).unwrap_or("?");
    let db = doc.get_str("db").unwrap_or("?");
    format!("{name}@{db}")
}

async fn merge(
    client: &Client,
    users: &[RawDocumentBuf],
    roles: &[RawDocumentBuf],
    drop: bool,
) -> Result<(AuthReport, AuthReport), RestoreError> {
    let admin = client.database("admin");
    let mut command = doc! {"_mergeAuthzCollections": 1};
    let mut temps = Vec::new();
    for (docs, temp, field, what) in [
        (users, "tempusers", "tempUsersCollection", "users"),
        (roles, "temproles", "tempRolesCollection", "roles"),
    ] {
        if docs.is_empty() {
            continue;
        }
        let failed = |e: mongodb::error::Error| RestoreError::Auth {
            what,
            source: Box::new(e),
        };
        let collection = admin.collection::<RawDocumentBuf>(temp);
        if let Err(e) = collection.drop().await {
            if code(&e) != Some(NAMESPACE_NOT_FOUND) {
                return Err(failed(e));
            }
        }
        temps.push(temp);
        let inserted = collection.insert_many(docs).await;
        if let Err(e) = inserted {
            drop_temps(client, &temps).await;
            return Err(failed(e));
        }
        command.insert(field, format!("admin.{temp}"));
    }
    command.insert("drop", drop);
    command.insert("db", "");
    let merged = admin.run_command(command).await;
    drop_temps(client, &temps).await;
    merged.map_err(|e| RestoreError::Auth {
        what: "users and roles",
        source: Box::new(e),
    })?;
    let restored = |docs: &[RawDocumentBuf]| AuthReport {
        restored: docs.len() as u64,
        ..AuthReport::default()
    };
    Ok((restored(users), restored(roles)))
}

async fn drop_temps(client: &Client, temps: &[&str]) {
    for temp in temps {
        if let Err(e) = client
            .database("admin")
            .collection::<Document>(temp)
            .drop()
            .await
        {
            tracing::warn!(collection = temp, error = %e, "cannot drop a temporary collection");
        }
    }
}

async fn create_roles(
    client: &Client,
    roles: &[RawDocumentBuf],
    drop: bool,
    warnings: &mut Vec<String>,
) -> Result<AuthReport, RestoreError> {
    let mut report = AuthReport::default();
    let mut pending: Vec<(String, String, Document)> = Vec::new();
    for raw in roles {
        let name = identity(raw, "role");
        let parsed = raw.to_document().ok();
        let fields = parsed.as_ref().and_then(|d| {
            Some((
                d.get_str("role").ok()?.to_string(),
                d.get_str("db").ok()?.to_string(),
                d,
            ))
        });
        let Some((role, db, d)) = fields else {
            let warning = format!("role {name} was not restored: its document has no role or db");
            warnings.push(warning);
            report.skipped.push(name);
            continue;
        };
        let mut command = doc! {
            "createRole": &role,
            "privileges": d.get("privileges").cloned().unwrap_or(Bson::Array(vec![])),
            "roles": d.get("roles").cloned().unwrap_or(Bson::Array(vec![])),
        };
        if let Some(restrictions) = d.get("authenticationRestrictions") {
            command.insert("authenticationRestrictions", restrictions.clone());
        }
        pending.push((name, db, command));
    }
    // Rounds: a role whose inherited role is not there yet waits a round.
    loop {
        let mut waiting = Vec::new();
        let before = pending.len();
        for (name, db, command) in pending {
            let database = client.database(&db);
            match database.run_command(command.clone()).await {
                Ok(_) => report.restored += 1,
                Err(e) if code(&e) == Some(ROLE_EXISTS) || code(&e) == Some(USER_EXISTS) => {
                    if drop {
                        let mut update = command.clone();
                        let role = update.remove("createRole").unwrap_or(Bson::Null);
                        let mut replacement = doc! {"updateRole": role};
                        replacement.extend(update);
                        match database.run_command(replacement).await {
                            Ok(_) => report.restored += 1,
                            Err(e) => {
                                warnings.push(format!("role {name} was not replaced: {e}"));
                                report.skipped.push(name);
                            }
                        }
                    } else {
                        report.duplicates += 1;
                    }
                }
                Err(e) if code(&e) == Some(ROLE_NOT_FOUND) => waiting.push((name, db, command, e)),
                Err(e) => {
                    let warning =
                        format!("role {name} was not restored: the server refused it: {e}");
                    tracing::warn!("{warning}");
                    warnings.push(warning);
                    report.skipped.push(name);
                }
            }
        }
        if waiting.is_empty() {
            break;
        }
        if waiting.len() == before {
            for (name, _, _, e) in waiting {
                let warning = format!("role {name} was not restored: {e}");
                tracing::warn!("{warning}");
                warnings.push(warning);
                report.skipped.push(name);
            }
            break;
        }
        pending = waiting
            .into_iter()
            .map(|(name, db, command, _)| (name, db, command))
            .collect();
    }
    Ok(report)
}

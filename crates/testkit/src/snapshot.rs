//! The state of a server, namespace by namespace, for comparisons.
//!
//! This reads the server independently of the backup code, so a test that
//! compares a backup with a snapshot checks one against the other.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mongodb::bson::{doc, Document, RawDocumentBuf};
use mongodb::Client;

/// One namespace's state.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceState {
    /// `collection`, `view` or `timeseries`.
    pub kind: String,
    /// `listCollections` options.
    pub options: Document,
    /// `listIndexes` specifications, sorted by name.
    pub indexes: Vec<Document>,
    /// Every document's bytes, sorted (order-free comparison).
    pub documents: Vec<Vec<u8>>,
}

/// Every user namespace of the server: all databases but `local` and
/// `config`, no `system.*` collections except `admin.system.users`,
/// `.roles` and `.version`.
pub async fn snapshot(client: &Client) -> mongodb::error::Result<BTreeMap<String, NamespaceState>> {
    let mut out = BTreeMap::new();
    let mut databases = client.list_database_names().await?;
    if !databases.iter().any(|d| d == "admin") {
        databases.push("admin".into());
    }
    for db_name in databases {
        if db_name == "local" || db_name == "config" {
            continue;
        }
        let db = client.database(&db_name);
        let specs: Vec<Document> = db
            .run_cursor_command(doc! {"listCollections": 1})
            .await?
            .try_collect()
            .await?;
        for spec in specs {
            let name = spec.get_str("name").unwrap_or_default().to_string();
            if name.starts_with("system.") {
                continue;
            }
            let kind = spec.get_str("type").unwrap_or("collection").to_string();
            let options = spec.get_document("options").cloned().unwrap_or_default();
            let (indexes, documents) = if kind == "view" {
                (Vec::new(), Vec::new())
            } else {
                (
                    indexes(client, &db_name, &name).await?,
                    documents(client, &db_name, &name).await?,
                )
            };
            out.insert(
                format!("{db_name}.{name}"),
                NamespaceState {
                    kind,
                    options,
                    indexes,
                    documents,
                },
            );
        }
        if db_name == "admin" {
            for name in ["system.users", "system.roles", "system.version"] {
                let documents = documents(client, "admin", name).await?;
                if !documents.is_empty() {
                    out.insert(
                        format!("admin.{name}"),
                        NamespaceState {
                            kind: "collection".into(),
                            options: Document::new(),
                            indexes: Vec::new(),
                            documents,
                        },
                    );
                }
            }
        }
    }
    Ok(out)
}

async fn indexes(client: &Client, db: &str, name: &str) -> mongodb::error::Result<Vec<Document>> {
    let mut specs: Vec<Document> = client
        .database(db)
        .run_cursor_command(doc! {"listIndexes": name})
        .await?
        .try_collect()
        .await?;
    specs.sort_by(|a, b| {
        a.get_str("name")
            .unwrap_or("")
            .cmp(b.get_str("name").unwrap_or(""))
    });
    Ok(specs)
}

async fn documents(client: &Client, db: &str, name: &str) -> mongodb::error::Result<Vec<Vec<u8>>> {
    let mut docs: Vec<Vec<u8>> = client
        .database(db)
        .collection::<RawDocumentBuf>(name)
        .find(doc! {})
        .await?
        .map_ok(RawDocumentBuf::into_bytes)
        .try_collect()
        .await?;
    docs.sort();
    Ok(docs)
}

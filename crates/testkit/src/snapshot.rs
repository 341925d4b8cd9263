//! The state of a server, namespace by namespace, for comparisons.
//!
//! This reads the server independently of the backup code, so a test that
//! compares a backup with a snapshot checks one against the other; and
//! what an archive holds, through the archive reader alone.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mongobak_archive::{gunzip, ArchiveReader, Event};
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

/// Every namespace's documents in a mongodump archive (plain or gzipped),
/// as the archive reader reads them, in archive order; the oplog is
/// `.oplog`. Panics on a damaged archive.
pub fn archive_documents(bytes: &[u8]) -> BTreeMap<String, Vec<Vec<u8>>> {
    let input: Box<dyn std::io::Read + '_> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(gunzip(bytes))
    } else {
        Box::new(bytes)
    };
    let mut reader = ArchiveReader::new(input).expect("an archive");
    let mut out: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    let mut current = String::new();
    while let Some(event) = reader.next_event().expect("a whole archive") {
        match event {
            Event::SegmentStart { namespace } => {
                current = format!("{}.{}", namespace.db, namespace.collection);
                out.entry(current.clone()).or_default();
            }
            Event::Document(bytes) => out.entry(current.clone()).or_default().push(bytes),
            Event::NamespaceEnd { .. } => {}
        }
    }
    out
}

/// How `actual` differs from `expected`, one line per difference, leaving
/// out the namespaces named in `except` (empty when they agree): which
/// namespaces exist, then each one's kind, options, indexes (byte for
/// byte) and documents.
pub fn differences(
    expected: &BTreeMap<String, NamespaceState>,
    actual: &BTreeMap<String, NamespaceState>,
    except: &[&str],
) -> Vec<String> {
    let wanted = |name: &&String| !except.contains(&name.as_str());
    let expected_names: Vec<&String> = expected.keys().filter(wanted).collect();
    let actual_names: Vec<&String> = actual.keys().filter(wanted).collect();
    let mut out = Vec::new();
    if expected_names != actual_names {
        out.push(format!(
            "namespaces: expected {expected_names:?}, got {actual_names:?}"
        ));
    }
    let bytes = |d: &Document| mongodb::bson::to_vec(d).unwrap_or_default();
    for name in expected_names {
        let (Some(want), Some(got)) = (expected.get(name), actual.get(name)) else {
            continue;
        };
        if want.kind != got.kind {
            out.push(format!(
                "{name}: kind {} instead of {}",
                got.kind, want.kind
            ));
        }
        if bytes(&want.options) != bytes(&got.options) {
            out.push(format!(
                "{name}: options {:?} instead of {:?}",
                got.options, want.options
            ));
        }
        if want
            .indexes
            .iter()
            .map(bytes)
            .ne(got.indexes.iter().map(bytes))
        {
            out.push(format!(
                "{name}: indexes {:?} instead of {:?}",
                got.indexes, want.indexes
            ));
        }
        if want.documents != got.documents {
            out.push(format!(
                "{name}: {} documents differ from the {} expected",
                got.documents.len(),
                want.documents.len()
            ));
        }
    }
    out
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

/// Every document of `db.name`, raw bytes, sorted.
pub async fn documents(
    client: &Client,
    db: &str,
    name: &str,
) -> mongodb::error::Result<Vec<Vec<u8>>> {
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

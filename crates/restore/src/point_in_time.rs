//! One collection as it was at a point in time, rebuilt under another name
//! in the same database: the base backup's documents, then the oplog after
//! them up to the time, applied to a staging collection that is renamed to
//! its final name only when complete.
//!
//! [`CollectionAtTime`] is the whole life of one such collection:
//! [`create`](CollectionAtTime::create) it with the base's options,
//! [`insert`](CollectionAtTime::insert) the base's documents,
//! [`replay`](CollectionAtTime::replay) every oplog entry in order (those
//! that do not concern the source collection are passed over),
//! [`create_indexes`](CollectionAtTime::create_indexes) of the base once
//! its own oplog is applied, and [`publish`](CollectionAtTime::publish)
//! under the final name. The source collection is only ever read from the
//! backup, never touched.
//!
//! Entries are redirected from the source to the staging collection
//! ([`redirect`]) and applied by the same replay as an archive's oplog
//! (`applyOps` where the server has it, translated writes otherwise, every
//! update shape understood). Its DDL follows the source's life: an index
//! created after the base exists at a later time and not at an earlier
//! one, a drop empties the staging collection and a later create starts
//! it again, and a rename of the source away means it did not exist under
//! its name after that. A collection renamed *into* the source's name is
//! refused: its history is another collection's.
//!
//! A flashback by key ([`CollectionAtTime::with_keys`]) rebuilds just the
//! documents of some keys when the key is `_id`: the base's other
//! documents and the writes of other `_id`s are left out as they come.

use std::sync::LazyLock;

use mongodb::bson::{doc, Bson, Document, RawDocumentBuf};
use mongodb::error::{ErrorKind, InsertManyError};
use mongodb::Client;

use crate::error::RestoreError;
use crate::filter::NsFilter;
use crate::keys::KeyMatcher;
use crate::metadata::{CollectionSpec, Shape};
use crate::oplog::{code, Applier};

/// Every namespace: the entries replayed are already the staging
/// collection's alone.
static EVERY_NAMESPACE: LazyLock<NsFilter> = LazyLock::new(NsFilter::default);

const DUPLICATE_KEY: i32 = 11000;
const NAMESPACE_NOT_FOUND: i32 = 26;

/// Commands on one collection, named by their first field.
const COLLECTION_COMMANDS: &[&str] = &[
    "create",
    "drop",
    "createIndexes",
    "commitIndexBuild",
    "startIndexBuild",
    "abortIndexBuild",
    "dropIndexes",
    "deleteIndexes",
    "collMod",
];

/// One collection being rebuilt as of a time; see the module docs.
pub struct CollectionAtTime<'a> {
    client: &'a Client,
    db: String,
    source: String,
    staging: String,
    applier: Applier<'a>,
    replayed: u64,
    inserted: u64,
    /// For a flashback by `_id`: the only keys rebuilt.
    ids: Option<KeyMatcher>,
}

impl<'a> CollectionAtTime<'a> {
    /// Rebuilds `db.source` as `db.staging` on `client`.
    pub fn new(client: &'a Client, db: &str, source: &str, staging: &str) -> Self {
        CollectionAtTime {
            client,
            db: db.to_string(),
            source: source.to_string(),
            staging: staging.to_string(),
            applier: Applier::new(client, &EVERY_NAMESPACE),
            replayed: 0,
            inserted: 0,
            ids: None,
        }
    }

    /// Rebuilds only the documents `keys` matches, when it matches by
    /// `_id`: other documents of the base and writes of other `_id`s are
    /// passed over. Keys of any other field change with the writes, so
    /// such a rebuild keeps every document (pick the matches at the end).
    pub fn with_keys(mut self, keys: &KeyMatcher) -> Self {
        self.ids = keys.by_id().then(|| keys.clone());
        self
    }

    /// `db.source`.
    pub fn source_namespace(&self) -> String {
        format!("{}.{}", self.db, self.source)
    }

    fn staging_namespace(&self) -> String {
        format!("{}.{}", self.db, self.staging)
    }

    /// Oplog entries applied so far.
    pub fn replayed(&self) -> u64 {
        self.replayed
    }

    /// Documents of the base inserted so far (for a flashback by `_id`,
    /// just those of its keys).
    pub fn inserted(&self) -> u64 {
        self.inserted
    }

    /// Drops the staging collection, left by an earlier attempt or no
    /// longer wanted.
    pub async fn discard(&self) -> Result<(), RestoreError> {
        match self
            .client
            .database(&self.db)
            .run_command(doc! {"drop": &self.staging})
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some(NAMESPACE_NOT_FOUND) => Ok(()),
            Err(e) => Err(RestoreError::Drop {
                namespace: self.staging_namespace(),
                source: Box::new(e),
            }),
        }
    }

    /// Creates the staging collection with the base's `listCollections`
    /// options (canonical Extended JSON) and its `_id` index options.
    /// Views and time series are refused: they have no documents of their
    /// own to rebuild this way.
    pub async fn create(
        &self,
        options: &serde_json::Value,
        indexes: &[serde_json::Value],
    ) -> Result<(), RestoreError> {
        let spec = self.spec(options, indexes)?;
        if spec.shape != Shape::Collection {
            return Err(RestoreError::Metadata {
                namespace: self.source_namespace(),
                reason: "it is a view or a time series collection; only collections can be restored to a point in time".into(),
            });
        }
        self.client
            .database(&self.db)
            .run_command(spec.create_command(&self.staging))
            .await
            .map(drop)
            .map_err(|e| RestoreError::Create {
                namespace: self.staging_namespace(),
                source: Box::new(e),
            })
    }

    /// Inserts documents of the base (unordered; a document already there
    /// is kept, as the oplog replay that follows settles it).
    pub async fn insert(&mut self, documents: &[RawDocumentBuf]) -> Result<(), RestoreError> {
        let kept: Vec<&RawDocumentBuf> = match &self.ids {
            Some(ids) => documents.iter().filter(|d| ids.matches(d)).collect(),
            None => documents.iter().collect(),
        };
        if kept.is_empty() {
            return Ok(());
        }
        self.inserted += kept.len() as u64;
        let inserted = self
            .client
            .database(&self.db)
            .collection::<RawDocumentBuf>(&self.staging)
            .insert_many(kept)
            .ordered(false)
            .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(e) => match &*e.kind {
                ErrorKind::InsertMany(InsertManyError {
                    write_errors: Some(errors),
                    write_concern_error: None,
                    ..
                }) if errors.iter().all(|w| w.code == DUPLICATE_KEY) => Ok(()),
                _ => Err(RestoreError::Insert {
                    namespace: self.staging_namespace(),
                    source: Box::new(e),
                }),
            },
        }
    }

    /// Builds the base's secondary indexes (specifications as canonical
    /// Extended JSON), after the entries replayed so far.
    pub async fn create_indexes(
        &mut self,
        options: &serde_json::Value,
        indexes: &[serde_json::Value],
    ) -> Result<(), RestoreError> {
        self.applier.flush().await?;
        let specs = self.spec(options, indexes)?.secondary_indexes();
        if specs.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = specs
            .iter()
            .filter_map(|s| s.get_str("name").ok().map(str::to_owned))
            .collect();
        self.client
            .database(&self.db)
            .run_command(doc! {"createIndexes": &self.staging, "indexes": specs})
            .await
            .map(drop)
            .map_err(|e| RestoreError::Index {
                namespace: self.staging_namespace(),
                indexes: names.join(", "),
                source: Box::new(e),
            })
    }

    /// Applies `entry` if it concerns the source collection; returns
    /// whether it did. Writes are sent in batches: [`exists`](Self::exists)
    /// and [`create_indexes`](Self::create_indexes) send what waits.
    pub async fn replay(&mut self, entry: &RawDocumentBuf) -> Result<bool, RestoreError> {
        // Most entries are of other collections: look before decoding.
        let ns = entry.get_str("ns").unwrap_or("");
        let source = self.source_namespace();
        if ns != source && !ns.ends_with(".$cmd") {
            return Ok(false);
        }
        let entry: Document = entry.to_document().map_err(|e| RestoreError::Oplog {
            position: "?".into(),
            op: "?".into(),
            namespace: ns.to_string(),
            reason: format!("it is not a readable document: {e}"),
        })?;
        let redirected =
            redirect(&entry, &self.db, &self.source, &self.staging).map_err(|reason| {
                RestoreError::Oplog {
                    position: match entry.get_timestamp("ts") {
                        Ok(ts) => format!("ts ({}, {})", ts.time, ts.increment),
                        Err(_) => "?".into(),
                    },
                    op: entry.get_str("op").unwrap_or("?").to_string(),
                    namespace: ns.to_string(),
                    reason,
                }
            })?;
        let Some(mut redirected) = redirected else {
            return Ok(false);
        };
        if let Some(ids) = &self.ids {
            if !keep_keys(&mut redirected, ids) {
                return Ok(false);
            }
        }
        self.applier.apply(&redirected, self.replayed).await?;
        self.replayed += 1;
        Ok(true)
    }

    /// Whether the staging collection exists, once every entry replayed
    /// so far is applied: false when the source did not exist at the time
    /// (never created, or dropped or renamed away).
    pub async fn exists(&mut self) -> Result<bool, RestoreError> {
        self.applier.flush().await?;
        let names = self
            .client
            .database(&self.db)
            .list_collection_names()
            .filter(doc! {"name": &self.staging})
            .await
            .map_err(|e| RestoreError::Server {
                action: format!("listing the collections of {}", self.db),
                source: Box::new(e),
            })?;
        Ok(!names.is_empty())
    }

    /// Renames the complete staging collection to `db.target`; refused
    /// (nothing changed) when `db.target` exists.
    pub async fn publish(&self, target: &str) -> Result<(), RestoreError> {
        self.client
            .database("admin")
            .run_command(doc! {
                "renameCollection": self.staging_namespace(),
                "to": format!("{}.{target}", self.db),
                "dropTarget": false,
            })
            .await
            .map(drop)
            .map_err(|e| RestoreError::Server {
                action: format!(
                    "renaming {} to {}.{target}",
                    self.staging_namespace(),
                    self.db
                ),
                source: Box::new(e),
            })
    }

    fn spec(
        &self,
        options: &serde_json::Value,
        indexes: &[serde_json::Value],
    ) -> Result<CollectionSpec, RestoreError> {
        CollectionSpec::from_json(Some(options), indexes).map_err(|reason| RestoreError::Metadata {
            namespace: self.source_namespace(),
            reason,
        })
    }
}

/// Leaves out of `entry` the writes `ids` does not concern (of a
/// transaction, its operations of other keys); false when nothing is left.
fn keep_keys(entry: &mut Document, ids: &KeyMatcher) -> bool {
    if entry.get_str("op") != Ok("c") {
        return ids.concerns(entry);
    }
    let Ok(o) = entry.get_document_mut("o") else {
        return true;
    };
    let Ok(ops) = o.get_array_mut("applyOps") else {
        return true;
    };
    ops.retain(|op| op.as_document().is_none_or(|op| ids.concerns(op)));
    !ops.is_empty()
}

/// `entry` turned onto collection `db.to` if it concerns `db.from`, or
/// `None` when it does not. A rename of `db.from` away becomes a drop of
/// `db.to`, as does a drop of the whole database; a rename into `db.from`
/// is refused.
pub fn redirect(
    entry: &Document,
    db: &str,
    from: &str,
    to: &str,
) -> Result<Option<Document>, String> {
    let op = entry.get_str("op").map_err(|_| "no op field".to_string())?;
    let ns = entry.get_str("ns").unwrap_or("");
    let source = format!("{db}.{from}");
    let with = |ns: String, o: Option<Document>| {
        let mut out = entry.clone();
        out.insert("ns", ns);
        out.remove("ui");
        if let Some(o) = o {
            out.insert("o", o);
        }
        out
    };
    match op {
        "i" | "u" | "d" if ns == source => Ok(Some(with(format!("{db}.{to}"), None))),
        "c" => {
            let o = entry
                .get_document("o")
                .map_err(|_| "a command entry without o".to_string())?;
            let Some((name, value)) = o.iter().next() else {
                return Ok(None);
            };
            if name == "applyOps" {
                let Bson::Array(inner) = value else {
                    return Err("applyOps is not a list".into());
                };
                let mut kept = Vec::new();
                for op in inner {
                    let Bson::Document(op) = op else {
                        return Err("an applyOps operation is not a document".into());
                    };
                    if let Some(op) = redirect(op, db, from, to)? {
                        kept.push(Bson::Document(op));
                    }
                }
                if kept.is_empty() {
                    return Ok(None);
                }
                let mut o = o.clone();
                o.insert("applyOps", kept);
                return Ok(Some(with(ns.to_string(), Some(o))));
            }
            if name == "renameCollection" {
                let target = o.get_str("to").unwrap_or("");
                if value.as_str() == Some(source.as_str()) {
                    // Gone from its name: from then on it does not exist.
                    return Ok(Some(with(format!("{db}.$cmd"), Some(doc! {"drop": to}))));
                }
                if target == source {
                    return Err(format!(
                        "{source} took its name from {value} by renameCollection; \
                         restoring a collection through a rename into its name is not supported"
                    ));
                }
                return Ok(None);
            }
            if ns != format!("{db}.$cmd") {
                return Ok(None);
            }
            if name == "dropDatabase" {
                return Ok(Some(with(ns.to_string(), Some(doc! {"drop": to}))));
            }
            if COLLECTION_COMMANDS.contains(&name.as_str()) && value.as_str() == Some(from) {
                let mut o = o.clone();
                o.insert(name.clone(), to);
                return Ok(Some(with(ns.to_string(), Some(o))));
            }
            Ok(None)
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::Timestamp;

    use super::*;

    fn entry(op: &str, ns: &str, o: Document) -> Document {
        doc! {"ts": Timestamp {time: 1, increment: 1}, "op": op, "ns": ns, "ui": 1, "o": o}
    }

    #[test]
    fn writes_and_commands_of_the_source_are_turned_onto_the_staging_collection() {
        let insert = redirect(
            &entry("i", "shop.orders", doc! {"_id": 1}),
            "shop",
            "orders",
            "st",
        )
        .unwrap()
        .unwrap();
        assert_eq!(insert.get_str("ns"), Ok("shop.st"));
        assert!(!insert.contains_key("ui"));
        assert_eq!(
            redirect(
                &entry("i", "shop.other", doc! {"_id": 1}),
                "shop",
                "orders",
                "st"
            )
            .unwrap(),
            None
        );
        let index = redirect(
            &entry(
                "c",
                "shop.$cmd",
                doc! {"createIndexes": "orders", "indexes": [{"key": {"a": 1}, "name": "a_1"}]},
            ),
            "shop",
            "orders",
            "st",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            index.get_document("o").unwrap().get_str("createIndexes"),
            Ok("st")
        );
        assert_eq!(
            redirect(
                &entry("c", "shop.$cmd", doc! {"drop": "other"}),
                "shop",
                "orders",
                "st"
            )
            .unwrap(),
            None
        );
        let gone = redirect(
            &entry("c", "shop.$cmd", doc! {"dropDatabase": 1}),
            "shop",
            "orders",
            "st",
        )
        .unwrap()
        .unwrap();
        assert_eq!(gone.get_document("o").unwrap(), &doc! {"drop": "st"});
    }

    #[test]
    fn renames_end_the_source_or_are_refused() {
        let away = redirect(
            &entry(
                "c",
                "admin.$cmd",
                doc! {"renameCollection": "shop.orders", "to": "shop.old"},
            ),
            "shop",
            "orders",
            "st",
        )
        .unwrap()
        .unwrap();
        assert_eq!(away.get_str("ns"), Ok("shop.$cmd"));
        assert_eq!(away.get_document("o").unwrap(), &doc! {"drop": "st"});
        let into = redirect(
            &entry(
                "c",
                "admin.$cmd",
                doc! {"renameCollection": "shop.new", "to": "shop.orders"},
            ),
            "shop",
            "orders",
            "st",
        );
        assert!(into.unwrap_err().contains("renameCollection"));
    }

    #[test]
    fn transactions_keep_only_the_source_operations() {
        let tx = entry(
            "c",
            "admin.$cmd",
            doc! {"applyOps": [
                {"op": "i", "ns": "shop.orders", "o": {"_id": 1}},
                {"op": "i", "ns": "shop.other", "o": {"_id": 2}},
            ]},
        );
        let kept = redirect(&tx, "shop", "orders", "st").unwrap().unwrap();
        let ops = kept
            .get_document("o")
            .unwrap()
            .get_array("applyOps")
            .unwrap();
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].as_document().unwrap().get_str("ns"), Ok("shop.st"));
    }

    #[test]
    fn a_flashback_by_id_keeps_only_the_writes_of_its_keys() {
        let ids = KeyMatcher::new("_id", &["1".into()]);
        let mut tx = entry(
            "c",
            "admin.$cmd",
            doc! {"applyOps": [
                {"op": "i", "ns": "shop.st", "o": {"_id": 1}},
                {"op": "u", "ns": "shop.st", "o": {"$set": {"a": 1}}, "o2": {"_id": 2}},
            ]},
        );
        assert!(keep_keys(&mut tx, &ids));
        let ops = tx.get_document("o").unwrap().get_array("applyOps").unwrap();
        assert_eq!(ops.len(), 1);
        let mut others = entry(
            "c",
            "admin.$cmd",
            doc! {"applyOps": [{"op": "d", "ns": "shop.st", "o": {"_id": 2}}]},
        );
        assert!(!keep_keys(&mut others, &ids));
        assert!(!keep_keys(
            &mut entry("d", "shop.st", doc! {"_id": 3}),
            &ids
        ));
        assert!(keep_keys(
            &mut entry("c", "shop.$cmd", doc! {"drop": "st"}),
            &ids
        ));
    }
}

//! Oplog replay (`docs/archive-format.md` §2): the `"".oplog` entries of an
//! archive applied in order after the data and indexes.
//!
//! Where the server has `applyOps` each insert, update and delete goes
//! through it, as mongorestore does (without `ui`: the restored collections
//! have new UUIDs). The first attempt tells: a server without it
//! (SecantusDB answers `CommandNotFound`) or one that refuses it
//! (`Unauthorized`) gets them translated into ordinary writes instead.
//! Commands always run as the commands they log (so the two-phase index
//! builds of MongoDB 4.4+, which `applyOps` does not take, become
//! `createIndexes`). The translation:
//!
//! - `i`: replace by `_id` with upsert, so applying an insert twice (the
//!   dump may already hold the document) gives the same document;
//! - `d`: delete by `o._id`;
//! - `u`: by `o2._id`, in one of three shapes:
//!   a replacement document (no `$` keys), a modifier document (`$v: 1` or
//!   older: `$set`/`$unset`, sent as it is), or a `$v: 2` diff, either
//!   MongoDB's `document_diff_serialization` (`u`, `i`, `d`, `s<field>`,
//!   arrays `a: true` with `u<index>`, `s<index>`, `l`) or SecantusDB's
//!   `{updatedFields, removedFields, truncatedArrays}`;
//! - `c`: create, drop, createIndexes (and commitIndexBuild), dropIndexes,
//!   collMod, renameCollection, dropDatabase, and the operations inside
//!   applyOps (transactions, applied as they come: a transaction logged
//!   in several parts or prepared is not held back until its commit);
//!   other commands are skipped with a warning;
//! - `n` no-ops, and entries on `admin.system.version`, `config.*` and
//!   `local.*` are skipped, as are writes to users and roles (restored from
//!   their own namespaces) and to time series buckets.
//!
//! A diff becomes a short list of update documents with dotted paths
//! ([`diff_updates`]), applied in order: `$set`/`$unset` first; then each
//! array truncation as `$push: {path: {$each: [], $slice: n}}`; then the
//! diff's inserted fields, one `$set` per field of a parent, after their
//! `$unset` in the first step, so that they land at the end of their
//! document in the diff's order, exactly as the server that logged them
//! placed them (a `$set` of several new fields orders them by name).
//! Field names holding dots or starting with `$` cannot be written through
//! dotted paths; such diffs are refused with an error naming the entry.

use std::collections::HashMap;

use mongodb::bson::{doc, Bson, Document};
use mongodb::Client;

use crate::error::RestoreError;
use crate::filter::NsFilter;

/// How the oplog was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OplogMethod {
    /// Through the server's `applyOps`.
    ApplyOps,
    /// Translated into ordinary writes and commands.
    Translated,
}

/// What an oplog replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OplogReport {
    /// Whether the archive holds an oplog.
    pub present: bool,
    /// Whether it was replayed (`oplog_replay`).
    pub replayed: bool,
    /// Entries read (operations inside `applyOps` entries count one each).
    pub entries: u64,
    /// Operations applied.
    pub applied: u64,
    /// Operations skipped (no-ops, system namespaces, filtered out,
    /// unsupported commands: the latter with a warning).
    pub skipped: u64,
    /// How they were applied (`None` when nothing was applied).
    pub method: Option<OplogMethod>,
}

/// One operation of an entry, translated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Write {
    /// Replace by `_id` with upsert.
    Upsert {
        db: String,
        coll: String,
        id: Bson,
        doc: Document,
    },
    /// Delete by `_id`.
    Delete { db: String, coll: String, id: Bson },
    /// Updates applied in order to the document with this `_id`.
    Update {
        db: String,
        coll: String,
        id: Bson,
        updates: Vec<Document>,
    },
    /// Replacement of the document with this `_id`.
    Replace {
        db: String,
        coll: String,
        id: Bson,
        doc: Document,
    },
    /// A command on database `db`; the codes in `tolerated` mean the
    /// target is already in the state the command leads to.
    Command {
        db: String,
        command: Document,
        tolerated: &'static [i32],
    },
}

/// One leaf operation (an entry, or an operation inside `applyOps`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Leaf {
    /// The operation as logged (for `applyOps`).
    pub(crate) op: Document,
    /// The namespaces it touches, for the filter.
    pub(crate) namespaces: Vec<String>,
    /// What to do.
    pub(crate) action: Action,
}

// One per operation and short-lived: the size of a write does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Routine skip, no warning (no-op, internal namespace).
    Ignore,
    /// Skip with this warning.
    Warn(String),
    /// Apply.
    Apply(Write),
}

const NAMESPACE_NOT_FOUND: i32 = 26;
const INDEX_NOT_FOUND: i32 = 27;
const NAMESPACE_EXISTS: i32 = 48;
const COMMAND_NOT_FOUND: i32 = 59;
const UNAUTHORIZED: i32 = 13;

/// Splits an entry into its leaf operations, translated.
pub(crate) fn translate(entry: &Document) -> Result<Vec<Leaf>, String> {
    let mut out = Vec::new();
    translate_into(entry, &mut out, 0)?;
    Ok(out)
}

fn translate_into(entry: &Document, out: &mut Vec<Leaf>, depth: usize) -> Result<(), String> {
    let op = entry.get_str("op").map_err(|_| "no op field".to_string())?;
    let ns = entry.get_str("ns").unwrap_or("");
    let leaf = |namespaces: Vec<String>, action: Action| Leaf {
        op: entry.clone(),
        namespaces,
        action,
    };
    if op == "n" {
        out.push(leaf(vec![], Action::Ignore));
        return Ok(());
    }
    let (db, coll) = ns.split_once('.').unwrap_or((ns, ""));
    if is_internal_db(db) || ns == "admin.system.version" {
        out.push(leaf(vec![ns.to_string()], Action::Ignore));
        return Ok(());
    }
    let o = entry
        .get_document("o")
        .map_err(|_| "no o document".to_string())?;
    if op != "c" {
        if ns == "admin.system.users" || ns == "admin.system.roles" {
            out.push(leaf(
                vec![ns.to_string()],
                Action::Warn(format!(
                    "a write to {ns} is not replayed: users and roles come from their own namespaces"
                )),
            ));
            return Ok(());
        }
        if coll.starts_with("system.buckets.") {
            out.push(leaf(
                vec![ns.to_string()],
                Action::Warn(format!(
                    "a write to the time series buckets {ns} is not replayed"
                )),
            ));
            return Ok(());
        }
    }
    let (db, coll) = (db.to_string(), coll.to_string());
    let write = match op {
        "i" => {
            let id = o.get("_id").cloned().ok_or("insert without _id")?;
            Write::Upsert {
                db,
                coll,
                id,
                doc: o.clone(),
            }
        }
        "d" => {
            let id = o.get("_id").cloned().ok_or("delete without _id")?;
            Write::Delete { db, coll, id }
        }
        "u" => {
            let id = entry
                .get_document("o2")
                .ok()
                .and_then(|o2| o2.get("_id"))
                .cloned()
                .ok_or("update without o2._id")?;
            match update_shape(o)? {
                UpdateShape::Replacement => Write::Replace {
                    db,
                    coll,
                    id,
                    doc: o.clone(),
                },
                UpdateShape::Updates(updates) => Write::Update {
                    db,
                    coll,
                    id,
                    updates,
                },
            }
        }
        "c" => {
            if let Ok(inner) = o.get_array("applyOps") {
                if depth > 4 {
                    return Err("applyOps nested too deeply".into());
                }
                for op in inner {
                    let Bson::Document(op) = op else {
                        return Err("an applyOps operation is not a document".into());
                    };
                    translate_into(op, out, depth + 1)?;
                }
                return Ok(());
            }
            let (namespaces, action) = command(&db, o)?;
            out.push(leaf(namespaces, action));
            return Ok(());
        }
        other => {
            out.push(leaf(
                vec![ns.to_string()],
                Action::Warn(format!("an oplog entry with op {other:?} is not replayed")),
            ));
            return Ok(());
        }
    };
    out.push(leaf(vec![ns.to_string()], Action::Apply(write)));
    Ok(())
}

fn is_internal_db(db: &str) -> bool {
    db == "local" || db == "config"
}

enum UpdateShape {
    Replacement,
    Updates(Vec<Document>),
}

fn update_shape(o: &Document) -> Result<UpdateShape, String> {
    let version = match o.get("$v") {
        Some(Bson::Int32(v)) => Some(i64::from(*v)),
        Some(Bson::Int64(v)) => Some(*v),
        Some(Bson::Double(v)) => Some(*v as i64),
        _ => None,
    };
    if version == Some(2) {
        let diff = o
            .get_document("diff")
            .map_err(|_| "a $v: 2 update without a diff document".to_string())?;
        let secantus = ["updatedFields", "removedFields", "truncatedArrays"]
            .iter()
            .any(|k| diff.contains_key(*k));
        let updates = if secantus {
            description_updates(diff)?
        } else {
            diff_updates(diff)?
        };
        return Ok(UpdateShape::Updates(updates));
    }
    if o.keys().any(|k| k.starts_with('$')) {
        let modifiers: Document = o
            .iter()
            .filter(|(k, _)| k.as_str() != "$v")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        return Ok(UpdateShape::Updates(if modifiers.is_empty() {
            Vec::new()
        } else {
            vec![modifiers]
        }));
    }
    Ok(UpdateShape::Replacement)
}

/// What a diff changes, as dotted paths.
#[derive(Default)]
struct Changes {
    sets: Document,
    unsets: Document,
    inserts: Vec<(String, String, Bson)>,
    truncations: Vec<(String, i64)>,
}

fn join(prefix: &str, field: &str) -> Result<String, String> {
    if field.contains('.') || field.starts_with('$') || field.is_empty() {
        return Err(format!(
            "the field name {field:?} cannot be written through a dotted path"
        ));
    }
    Ok(if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}.{field}")
    })
}

/// MongoDB's `$v: 2` diff (`document_diff_serialization`) as update
/// documents applied in order; see the module docs.
pub(crate) fn diff_updates(diff: &Document) -> Result<Vec<Document>, String> {
    let mut changes = Changes::default();
    walk_object(diff, "", &mut changes)?;
    Ok(changes.into_updates())
}

fn sub_document<'a>(value: &'a Bson, what: &str) -> Result<&'a Document, String> {
    match value {
        Bson::Document(d) => Ok(d),
        other => Err(format!("{what} is not a document: {other}")),
    }
}

fn walk_object(diff: &Document, prefix: &str, changes: &mut Changes) -> Result<(), String> {
    for (key, value) in diff {
        match key.as_str() {
            "u" => {
                for (field, v) in sub_document(value, "a diff's u section")? {
                    changes.sets.insert(join(prefix, field)?, v.clone());
                }
            }
            "i" => {
                for (field, v) in sub_document(value, "a diff's i section")? {
                    changes
                        .inserts
                        .push((prefix.to_string(), join(prefix, field)?, v.clone()));
                }
            }
            "d" => {
                for (field, _) in sub_document(value, "a diff's d section")? {
                    changes.unsets.insert(join(prefix, field)?, "");
                }
            }
            k if k.len() > 1 && k.starts_with('s') => {
                let path = join(prefix, &k[1..])?;
                walk_sub(sub_document(value, "a sub-diff")?, &path, changes)?;
            }
            other => return Err(format!("unknown diff section {other:?}")),
        }
    }
    Ok(())
}

fn walk_sub(sub: &Document, path: &str, changes: &mut Changes) -> Result<(), String> {
    if matches!(sub.get("a"), Some(Bson::Boolean(true))) {
        walk_array(sub, path, changes)
    } else {
        walk_object(sub, path, changes)
    }
}

fn walk_array(diff: &Document, prefix: &str, changes: &mut Changes) -> Result<(), String> {
    for (key, value) in diff {
        let index = |k: &str| -> Result<String, String> {
            let digits = &k[1..];
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("unknown array diff section {k:?}"));
            }
            Ok(format!("{prefix}.{digits}"))
        };
        match key.as_str() {
            "a" => {}
            "l" => {
                let length = match value {
                    Bson::Int32(n) => i64::from(*n),
                    Bson::Int64(n) => *n,
                    Bson::Double(n) => *n as i64,
                    other => return Err(format!("an array diff's new length is {other}")),
                };
                changes.truncations.push((prefix.to_string(), length));
            }
            k if k.starts_with('u') => {
                changes.sets.insert(index(k)?, value.clone());
            }
            k if k.starts_with('s') => {
                let path = index(k)?;
                walk_sub(sub_document(value, "an array sub-diff")?, &path, changes)?;
            }
            other => return Err(format!("unknown array diff section {other:?}")),
        }
    }
    Ok(())
}

impl Changes {
    fn into_updates(self) -> Vec<Document> {
        let mut updates = Vec::new();
        let mut first = Document::new();
        let mut unsets = self.unsets;
        for (_, path, _) in &self.inserts {
            unsets.insert(path.clone(), "");
        }
        if !self.sets.is_empty() {
            first.insert("$set", self.sets);
        }
        if !unsets.is_empty() {
            first.insert("$unset", unsets);
        }
        if !first.is_empty() {
            updates.push(first);
        }
        for (path, length) in self.truncations {
            updates.push(doc! {"$push": {path: {"$each": [], "$slice": length}}});
        }
        // The k-th inserted field of every parent goes in round k: fields of
        // one parent are appended one by one, in the diff's order.
        let mut rounds: Vec<Document> = Vec::new();
        let mut per_parent: HashMap<String, usize> = HashMap::new();
        for (parent, path, value) in self.inserts {
            let round = per_parent.entry(parent).or_default();
            if rounds.len() <= *round {
                rounds.push(Document::new());
            }
            rounds[*round].insert(path, value);
            *round += 1;
        }
        updates.extend(rounds.into_iter().map(|sets| doc! {"$set": sets}));
        updates
    }
}

/// SecantusDB's `$v: 2` update description as update documents: the set
/// and removed paths, then each truncation (the order SecantusDB applies
/// them in).
pub(crate) fn description_updates(diff: &Document) -> Result<Vec<Document>, String> {
    let mut updates = Vec::new();
    let mut first = Document::new();
    match diff.get("updatedFields") {
        None | Some(Bson::Null) => {}
        Some(Bson::Document(fields)) if fields.is_empty() => {}
        Some(Bson::Document(fields)) => {
            first.insert("$set", fields.clone());
        }
        Some(other) => return Err(format!("updatedFields is {other}")),
    }
    match diff.get("removedFields") {
        None | Some(Bson::Null) => {}
        Some(Bson::Array(fields)) => {
            let mut unsets = Document::new();
            for field in fields {
                let Bson::String(path) = field else {
                    return Err(format!("a removed field is {field}"));
                };
                unsets.insert(path.clone(), "");
            }
            if !unsets.is_empty() {
                first.insert("$unset", unsets);
            }
        }
        Some(other) => return Err(format!("removedFields is {other}")),
    }
    if !first.is_empty() {
        updates.push(first);
    }
    match diff.get("truncatedArrays") {
        None | Some(Bson::Null) => {}
        Some(Bson::Array(items)) => {
            for item in items {
                let Bson::Document(t) = item else {
                    return Err(format!("a truncated array is {item}"));
                };
                let field = t
                    .get_str("field")
                    .map_err(|_| "a truncation without field")?;
                let size = match t.get("newSize") {
                    Some(Bson::Int32(n)) => i64::from(*n),
                    Some(Bson::Int64(n)) => *n,
                    Some(Bson::Double(n)) => *n as i64,
                    _ => return Err("a truncation without newSize".into()),
                };
                updates.push(doc! {"$push": {field: {"$each": [], "$slice": size}}});
            }
        }
        Some(other) => return Err(format!("truncatedArrays is {other}")),
    }
    Ok(updates)
}

/// A `c` entry's command, on database `db`.
fn command(db: &str, o: &Document) -> Result<(Vec<String>, Action), String> {
    let Some((name, target)) = o.iter().next() else {
        return Err("an empty command".into());
    };
    let coll = || match target {
        Bson::String(s) => Ok(s.clone()),
        other => Err(format!("{name} names {other}, not a collection")),
    };
    let apply = |ns: Vec<String>, command: Document, tolerated: &'static [i32]| {
        Ok((
            ns,
            Action::Apply(Write::Command {
                db: db.to_string(),
                command,
                tolerated,
            }),
        ))
    };
    match name.as_str() {
        "create" => {
            let coll = coll()?;
            let mut command = Document::new();
            for (k, v) in o {
                match k.as_str() {
                    // SecantusDB logs a view's pipeline as viewPipeline.
                    "viewPipeline" => {
                        command.insert("pipeline", v.clone());
                    }
                    // mongod logs a clustered collection as `clusteredIndex:
                    // true`; create wants the specification.
                    "clusteredIndex" if matches!(v, Bson::Boolean(true)) => {
                        command.insert("clusteredIndex", doc! {"key": {"_id": 1}, "unique": true});
                    }
                    _ => {
                        command.insert(k.clone(), v.clone());
                    }
                }
            }
            apply(vec![format!("{db}.{coll}")], command, &[NAMESPACE_EXISTS])
        }
        "drop" => {
            let coll = coll()?;
            apply(
                vec![format!("{db}.{coll}")],
                doc! {"drop": &coll},
                &[NAMESPACE_NOT_FOUND],
            )
        }
        // MongoDB 4.4+ logs an index build on a non-empty collection as
        // start + commit; the commit carries the specifications.
        "startIndexBuild" | "abortIndexBuild" => Ok((vec![], Action::Ignore)),
        "createIndexes" | "commitIndexBuild" => {
            let coll = coll()?;
            let specs: Vec<Bson> = match o.get_array("indexes") {
                Ok(list) => list
                    .iter()
                    .map(|s| match s {
                        Bson::Document(d) => Ok(Bson::Document(crate::metadata::clean_index(d))),
                        other => Err(format!("an index specification is {other}")),
                    })
                    .collect::<Result<_, _>>()?,
                // mongod logs one index per entry, its fields beside the
                // collection name.
                Err(_) => {
                    let spec: Document = o
                        .iter()
                        .filter(|(k, _)| k.as_str() != name.as_str())
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    vec![Bson::Document(crate::metadata::clean_index(&spec))]
                }
            };
            apply(
                vec![format!("{db}.{coll}")],
                doc! {"createIndexes": &coll, "indexes": specs},
                &[],
            )
        }
        "dropIndexes" | "deleteIndexes" => {
            let coll = coll()?;
            let index = o.get("index").cloned().unwrap_or(Bson::String("*".into()));
            apply(
                vec![format!("{db}.{coll}")],
                doc! {"dropIndexes": &coll, "index": index},
                &[INDEX_NOT_FOUND, NAMESPACE_NOT_FOUND],
            )
        }
        "collMod" => {
            let coll = coll()?;
            apply(vec![format!("{db}.{coll}")], o.clone(), &[])
        }
        "renameCollection" => {
            let from = coll()?;
            let to = o
                .get_str("to")
                .map_err(|_| "renameCollection without to")?
                .to_string();
            let drop_target = match o.get("dropTarget") {
                None | Some(Bson::Null) => false,
                Some(Bson::Boolean(b)) => *b,
                // Newer servers log the dropped target's UUID.
                Some(_) => true,
            };
            Ok((
                vec![from.clone(), to.clone()],
                Action::Apply(Write::Command {
                    db: "admin".into(),
                    command: doc! {"renameCollection": from, "to": to, "dropTarget": drop_target},
                    tolerated: &[],
                }),
            ))
        }
        "dropDatabase" => apply(vec![format!("{db}.*")], doc! {"dropDatabase": 1}, &[]),
        other => Ok((
            vec![format!("{db}.*")],
            Action::Warn(format!(
                "the command {other:?} in the oplog is not replayed"
            )),
        )),
    }
}

/// Applies oplog entries in order; see the module docs.
///
/// Translated writes go to the server in batches, so that a replay costs a
/// round trip per batch rather than per entry: consecutive writes of any
/// kind and collection as one ordered `bulkWrite` command where the server
/// has it (MongoDB 8.0 and later, SecantusDB); elsewhere consecutive
/// inserts, updates and replacements of one collection as one ordered
/// `update` command and consecutive deletes as one ordered `delete`. A
/// command, a full batch, and [`flush`](Self::flush) (and, without
/// `bulkWrite`, a write of another collection or kind) send what waits
/// first, so the order of the oplog is kept. An error names the entry it
/// came from.
pub(crate) struct Applier<'a> {
    client: &'a Client,
    filter: &'a NsFilter,
    pub(crate) report: OplogReport,
    pub(crate) warnings: Vec<String>,
    pending: Option<Batch>,
    /// Whether the server has `bulkWrite`: unknown until the first batch.
    bulk_write: Option<bool>,
}

/// Statements in one batch at most.
const BATCH_STATEMENTS: usize = 1000;
/// Bytes of statements in one batch at most (one larger statement goes
/// alone), under the server's 16 MiB message limit.
const BATCH_BYTES: usize = 8 << 20;

/// Translated writes waiting to be sent together: of one collection and
/// kind, unless the server is known to have `bulkWrite`.
struct Batch {
    /// The namespace of each statement.
    namespaces: Vec<(String, String)>,
    /// `update` or `delete` of each statement: the command, and the kind
    /// of its `bulkWrite` operation.
    kinds: Vec<&'static str>,
    statements: Vec<Document>,
    /// The entry of each statement, for errors.
    origins: Vec<Origin>,
    bytes: usize,
}

impl Batch {
    /// Whether a statement of `kind` on `db.coll` is of the same
    /// collection and kind as the batch's.
    fn same(&self, db: &str, coll: &str, kind: &str) -> bool {
        self.kinds.first().is_none_or(|k| *k == kind)
            && self
                .namespaces
                .first()
                .is_none_or(|(d, c)| d == db && c == coll)
    }

    /// The batch as one ordered `bulkWrite` command (only the errors
    /// answered).
    fn bulk_write(&self) -> Document {
        let mut namespaces: Vec<String> = Vec::new();
        let mut ops = Vec::with_capacity(self.statements.len());
        for ((db, coll), (kind, statement)) in self
            .namespaces
            .iter()
            .zip(self.kinds.iter().zip(&self.statements))
        {
            let ns = format!("{db}.{coll}");
            let index = match namespaces.iter().position(|n| *n == ns) {
                Some(index) => index,
                None => {
                    namespaces.push(ns);
                    namespaces.len() - 1
                }
            } as i32;
            let filter = statement
                .get("q")
                .cloned()
                .unwrap_or(Bson::Document(doc! {}));
            ops.push(match *kind {
                "update" => doc! {
                    "update": index,
                    "filter": filter,
                    "updateMods": statement.get("u").cloned().unwrap_or(Bson::Document(doc! {})),
                    "upsert": statement.get_bool("upsert").unwrap_or(false),
                    "multi": false,
                },
                _ => doc! {"delete": index, "filter": filter, "multi": false},
            });
        }
        let ns_info: Vec<Document> = namespaces.into_iter().map(|ns| doc! {"ns": ns}).collect();
        doc! {"bulkWrite": 1, "ops": ops, "nsInfo": ns_info, "ordered": true, "errorsOnly": true}
    }
}

/// Where a statement came from.
#[derive(Clone)]
struct Origin {
    position: String,
    op: String,
    namespace: String,
}

impl Origin {
    fn failure(&self, reason: String) -> RestoreError {
        RestoreError::Oplog {
            position: self.position.clone(),
            op: self.op.clone(),
            namespace: self.namespace.clone(),
            reason,
        }
    }
}

impl<'a> Applier<'a> {
    pub(crate) fn new(client: &'a Client, filter: &'a NsFilter) -> Self {
        Applier {
            client,
            filter,
            report: OplogReport {
                present: true,
                replayed: true,
                ..OplogReport::default()
            },
            warnings: Vec::new(),
            pending: None,
            bulk_write: None,
        }
    }

    /// Applies one entry; `position` is its place in the slice (for errors).
    pub(crate) async fn apply(
        &mut self,
        entry: &Document,
        position: u64,
    ) -> Result<(), RestoreError> {
        let origin = Origin {
            position: match entry.get_timestamp("ts") {
                Ok(ts) => format!("ts ({}, {})", ts.time, ts.increment),
                Err(_) => format!("#{position}"),
            },
            op: entry.get_str("op").unwrap_or("?").to_string(),
            namespace: entry.get_str("ns").unwrap_or("?").to_string(),
        };
        let failure = |reason: String| origin.failure(reason);
        let leaves = translate(entry).map_err(failure)?;
        for leaf in leaves {
            self.report.entries += 1;
            let write = match leaf.action {
                Action::Ignore => {
                    self.report.skipped += 1;
                    continue;
                }
                Action::Warn(warning) => {
                    self.report.skipped += 1;
                    tracing::warn!("{warning}");
                    self.warnings.push(warning);
                    continue;
                }
                Action::Apply(write) => write,
            };
            if !leaf.namespaces.iter().all(|ns| self.allowed(ns)) {
                self.report.skipped += 1;
                continue;
            }
            // Commands run as they are translated (which also turns the
            // index builds of MongoDB 4.4+ into createIndexes); CRUD goes
            // through applyOps where the server has it.
            let crud = !matches!(write, Write::Command { .. });
            if crud && self.report.method != Some(OplogMethod::Translated) {
                match self.apply_ops(&leaf.op).await {
                    Ok(()) => {
                        self.report.method = Some(OplogMethod::ApplyOps);
                        self.report.applied += 1;
                        continue;
                    }
                    Err(e)
                        if self.report.method.is_none()
                            && matches!(code(&e), Some(COMMAND_NOT_FOUND | UNAUTHORIZED)) =>
                    {
                        tracing::info!(error = %e, "no applyOps on the target: oplog entries are translated into writes");
                        self.report.method = Some(OplogMethod::Translated);
                    }
                    Err(e) => return Err(failure(e.to_string())),
                }
            }
            match write {
                Write::Command {
                    db,
                    command,
                    tolerated,
                } => {
                    self.flush().await?;
                    self.command(&db, command, tolerated)
                        .await
                        .map_err(failure)?;
                }
                write => {
                    self.report.method = Some(OplogMethod::Translated);
                    self.queue(write, &origin).await?;
                }
            }
            self.report.applied += 1;
        }
        Ok(())
    }

    /// Adds a translated write to the waiting batch, sending the batch
    /// first when the write cannot join it, and after when it is full.
    async fn queue(&mut self, write: Write, origin: &Origin) -> Result<(), RestoreError> {
        let (db, coll, command, statements) = match write {
            Write::Upsert { db, coll, id, doc } => (
                db,
                coll,
                "update",
                vec![doc! {"q": {"_id": id}, "u": doc, "upsert": true}],
            ),
            Write::Replace { db, coll, id, doc } => {
                (db, coll, "update", vec![doc! {"q": {"_id": id}, "u": doc}])
            }
            Write::Update {
                db,
                coll,
                id,
                updates,
            } => (
                db,
                coll,
                "update",
                updates
                    .into_iter()
                    .map(|u| doc! {"q": {"_id": id.clone()}, "u": u})
                    .collect(),
            ),
            Write::Delete { db, coll, id } => (
                db,
                coll,
                "delete",
                vec![doc! {"q": {"_id": id}, "limit": 1}],
            ),
            Write::Command { .. } => unreachable!("commands are not batched"),
        };
        let joins = self
            .pending
            .as_ref()
            .is_some_and(|b| self.bulk_write == Some(true) || b.same(&db, &coll, command));
        if !joins {
            self.flush().await?;
        }
        let batch = self.pending.get_or_insert_with(|| Batch {
            namespaces: Vec::new(),
            kinds: Vec::new(),
            statements: Vec::new(),
            origins: Vec::new(),
            bytes: 0,
        });
        for statement in statements {
            batch.bytes += statement_size(&statement);
            batch.namespaces.push((db.clone(), coll.clone()));
            batch.kinds.push(command);
            batch.statements.push(statement);
            batch.origins.push(origin.clone());
        }
        if batch.statements.len() >= BATCH_STATEMENTS || batch.bytes >= BATCH_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends the waiting batch, if any. Call once after the last entry.
    pub(crate) async fn flush(&mut self) -> Result<(), RestoreError> {
        let Some(batch) = self.pending.take() else {
            return Ok(());
        };
        if self.bulk_write != Some(false) {
            match self
                .client
                .database("admin")
                .run_command(batch.bulk_write())
                .await
            {
                Ok(reply) => {
                    self.bulk_write = Some(true);
                    return bulk_write_result(&batch, &reply);
                }
                // Before MongoDB 8.0: one command per collection and kind
                // (a batch is of one collection and kind until bulkWrite
                // is known to work).
                Err(e) if self.bulk_write.is_none() && code(&e) == Some(COMMAND_NOT_FOUND) => {
                    tracing::info!(
                        "no bulkWrite on the target: oplog writes go in batches of one collection"
                    );
                    self.bulk_write = Some(false);
                }
                Err(e) => return Err(batch_failure(&batch, 0, e.to_string())),
            }
        }
        let (db, coll) = batch.namespaces[0].clone();
        let command = batch.kinds[0];
        let field = match command {
            "update" => "updates",
            _ => "deletes",
        };
        let reply = self
            .client
            .database(&db)
            .run_command(doc! {
                command: &coll,
                field: &batch.statements,
                "ordered": true,
            })
            .await
            .map_err(|e| batch_failure(&batch, 0, e.to_string()))?;
        if let Ok(errors) = reply.get_array("writeErrors") {
            if let Some(Bson::Document(error)) = errors.first() {
                let reason = error.get_str("errmsg").unwrap_or("a write failed");
                return Err(batch_failure(
                    &batch,
                    index_of(error.get("index")),
                    reason.into(),
                ));
            }
        }
        Ok(())
    }

    fn allowed(&self, namespace: &str) -> bool {
        match namespace.strip_suffix(".*") {
            // A whole-database command: allowed if anything of it may be.
            Some(db) => self.filter.allows_db(db),
            None => self.filter.allows(namespace),
        }
    }

    async fn apply_ops(&self, op: &Document) -> Result<(), mongodb::error::Error> {
        let mut op = op.clone();
        op.remove("ui");
        self.client
            .database("admin")
            .run_command(doc! {"applyOps": [op]})
            .await
            .map(drop)
    }

    /// Runs a command of the oplog; the codes in `tolerated` mean the
    /// target is already in the state the command leads to.
    async fn command(&self, db: &str, command: Document, tolerated: &[i32]) -> Result<(), String> {
        match self.client.database(db).run_command(command).await {
            Ok(_) => Ok(()),
            Err(e) if code(&e).is_some_and(|c| tolerated.contains(&c)) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The outcome of a batch's `bulkWrite`: its first error (it is ordered, so
/// nothing after it was applied), named by the statement's entry.
fn bulk_write_result(batch: &Batch, reply: &Document) -> Result<(), RestoreError> {
    let errors = match reply.get("nErrors") {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        _ => 0,
    };
    if let Ok(concern) = reply.get_document("writeConcernError") {
        let reason = concern.get_str("errmsg").unwrap_or("write concern failed");
        return Err(batch_failure(batch, 0, reason.into()));
    }
    if errors == 0 {
        return Ok(());
    }
    let first = reply
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .ok()
        .and_then(|results| {
            results.iter().filter_map(Bson::as_document).find(|r| {
                let ok = match r.get("ok") {
                    Some(Bson::Double(ok)) => *ok,
                    Some(Bson::Int32(ok)) => f64::from(*ok),
                    Some(Bson::Int64(ok)) => *ok as f64,
                    _ => 0.0,
                };
                ok != 1.0
            })
        });
    let (index, reason) = match first {
        Some(result) => (
            index_of(result.get("idx")),
            result
                .get_str("errmsg")
                .unwrap_or("a write failed")
                .to_string(),
        ),
        None => (0, "a write failed".to_string()),
    };
    Err(batch_failure(batch, index, reason))
}

/// A batch's failure at statement `index`, named by its entry.
fn batch_failure(batch: &Batch, index: usize, reason: String) -> RestoreError {
    match batch.origins.get(index).or(batch.origins.first()) {
        Some(origin) => origin.failure(reason),
        None => RestoreError::Oplog {
            position: "?".into(),
            op: "?".into(),
            namespace: "?".into(),
            reason,
        },
    }
}

fn index_of(value: Option<&Bson>) -> usize {
    match value {
        Some(Bson::Int32(n)) => usize::try_from(*n).unwrap_or(0),
        Some(Bson::Int64(n)) => usize::try_from(*n).unwrap_or(0),
        Some(Bson::Double(n)) => *n as usize,
        _ => 0,
    }
}

/// The BSON size of a statement, roughly (for batch limits).
fn statement_size(statement: &Document) -> usize {
    mongodb::bson::to_vec(statement).map_or(0, |bytes| bytes.len())
}

/// The server's error code of a command or write error.
pub(crate) fn code(error: &mongodb::error::Error) -> Option<i32> {
    use mongodb::error::{ErrorKind, WriteFailure};
    match &*error.kind {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{doc, Timestamp};

    use super::*;

    fn entry(op: &str, ns: &str, o: Document, o2: Option<Document>) -> Document {
        let mut e = doc! {"ts": Timestamp {time: 1, increment: 1}, "op": op, "ns": ns, "o": o};
        if let Some(o2) = o2 {
            e.insert("o2", o2);
        }
        e
    }

    fn single(e: &Document) -> Action {
        let leaves = translate(e).unwrap();
        assert_eq!(leaves.len(), 1);
        leaves.into_iter().next().unwrap().action
    }

    #[test]
    fn inserts_deletes_and_skips() {
        let i = entry("i", "shop.items", doc! {"_id": 1, "a": 2}, None);
        assert_eq!(
            single(&i),
            Action::Apply(Write::Upsert {
                db: "shop".into(),
                coll: "items".into(),
                id: Bson::Int32(1),
                doc: doc! {"_id": 1, "a": 2}
            })
        );
        let d = entry("d", "shop.café.menü", doc! {"_id": "x"}, None);
        assert_eq!(
            single(&d),
            Action::Apply(Write::Delete {
                db: "shop".into(),
                coll: "café.menü".into(),
                id: Bson::String("x".into())
            })
        );
        for skipped in [
            entry("n", "", doc! {"msg": "periodic noop"}, None),
            entry("i", "config.system.sessions", doc! {"_id": 1}, None),
            entry("i", "local.foo", doc! {"_id": 1}, None),
            entry(
                "u",
                "admin.system.version",
                doc! {"_id": 1},
                Some(doc! {"_id": 1}),
            ),
        ] {
            assert_eq!(single(&skipped), Action::Ignore);
        }
        assert!(matches!(
            single(&entry("i", "admin.system.users", doc! {"_id": "a.b"}, None)),
            Action::Warn(_)
        ));
        assert!(translate(&entry("i", "a.b", doc! {"x": 1}, None)).is_err());
    }

    fn updates_of(o: Document) -> Vec<Document> {
        match single(&entry("u", "d.c", o, Some(doc! {"_id": 1}))) {
            Action::Apply(Write::Update { updates, .. }) => updates,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn update_shapes() {
        // A replacement.
        match single(&entry(
            "u",
            "d.c",
            doc! {"_id": 1, "z": 1},
            Some(doc! {"_id": 1}),
        )) {
            Action::Apply(Write::Replace { doc, .. }) => assert_eq!(doc, doc! {"_id": 1, "z": 1}),
            other => panic!("{other:?}"),
        }
        // $v: 1 and pre-3.6 modifier documents.
        assert_eq!(
            updates_of(doc! {"$v": 1, "$set": {"a.b": 2}, "$unset": {"x": true}}),
            vec![doc! {"$set": {"a.b": 2}, "$unset": {"x": true}}]
        );
        assert_eq!(
            updates_of(doc! {"$set": {"a": 1}}),
            vec![doc! {"$set": {"a": 1}}]
        );
        // SecantusDB's update description.
        assert_eq!(
            updates_of(doc! {"$v": 2, "diff": {
                "updatedFields": {"a.b": 2, "a.c.2": 9},
                "removedFields": ["x"],
                "truncatedArrays": [{"field": "arr", "newSize": 1}],
            }}),
            vec![
                doc! {"$set": {"a.b": 2, "a.c.2": 9}, "$unset": {"x": ""}},
                doc! {"$push": {"arr": {"$each": [], "$slice": 1i64}}},
            ]
        );
        assert_eq!(
            updates_of(
                doc! {"$v": 2, "diff": {"updatedFields": {}, "removedFields": [], "truncatedArrays": []}}
            ),
            Vec::<Document>::new()
        );
    }

    #[test]
    fn mongodb_diffs() {
        // Top-level updates, inserts and deletes.
        assert_eq!(
            diff_updates(&doc! {"u": {"a": 1}, "i": {"new1": 2, "new2": 3}, "d": {"gone": false}})
                .unwrap(),
            vec![
                doc! {"$set": {"a": 1}, "$unset": {"gone": "", "new1": "", "new2": ""}},
                doc! {"$set": {"new1": 2}},
                doc! {"$set": {"new2": 3}},
            ]
        );
        // Nested documents and arrays.
        assert_eq!(
            diff_updates(&doc! {
                "sa": {"u": {"b": 2}, "sc": {"a": true, "l": 2, "u1": 7, "s0": {"u": {"k": 1}}}},
                "sarr": {"a": true, "u3": "appended"},
                "i": {"z": 1},
                "sdoc": {"i": {"q": 1}},
            })
            .unwrap(),
            vec![
                doc! {"$set": {"a.b": 2, "a.c.1": 7, "a.c.0.k": 1, "arr.3": "appended"}, "$unset": {"z": "", "doc.q": ""}},
                doc! {"$push": {"a.c": {"$each": [], "$slice": 2i64}}},
                doc! {"$set": {"z": 1, "doc.q": 1}},
            ]
        );
        assert_eq!(diff_updates(&doc! {}).unwrap(), Vec::<Document>::new());
        assert!(diff_updates(&doc! {"x": 1}).is_err());
        assert!(diff_updates(&doc! {"sa": {"a": true, "ux": 1}}).is_err());
        assert!(diff_updates(&doc! {"u": {"a.b": 1}}).is_err());
    }

    #[test]
    fn commands() {
        let c = |o: Document| single(&entry("c", "shop.$cmd", o, None));
        assert_eq!(
            c(
                doc! {"create": "v", "viewOn": "items", "viewPipeline": [], "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"}}
            ),
            Action::Apply(Write::Command {
                db: "shop".into(),
                command: doc! {"create": "v", "viewOn": "items", "pipeline": [], "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"}},
                tolerated: &[NAMESPACE_EXISTS],
            })
        );
        // SecantusDB's form and mongod's one-index form.
        for o in [
            doc! {"createIndexes": "c", "indexes": [{"v": 2, "key": {"z": 1}, "name": "z1", "entryFormat": 4}]},
            doc! {"createIndexes": "c", "v": 2, "key": {"z": 1}, "name": "z1"},
        ] {
            assert_eq!(
                c(o),
                Action::Apply(Write::Command {
                    db: "shop".into(),
                    command: doc! {"createIndexes": "c", "indexes": [{"key": {"z": 1}, "name": "z1"}]},
                    tolerated: &[],
                })
            );
        }
        assert_eq!(
            c(doc! {"dropIndexes": "c", "index": "z1", "key": {"z": 1}}),
            Action::Apply(Write::Command {
                db: "shop".into(),
                command: doc! {"dropIndexes": "c", "index": "z1"},
                tolerated: &[INDEX_NOT_FOUND, NAMESPACE_NOT_FOUND],
            })
        );
        let leaves = translate(&entry(
            "c",
            "shop.$cmd",
            doc! {"renameCollection": "shop.a", "to": "shop.b", "dropTarget": false},
            None,
        ))
        .unwrap();
        assert_eq!(leaves[0].namespaces, vec!["shop.a", "shop.b"]);
        // MongoDB 4.4+ two-phase index builds.
        assert_eq!(
            c(
                doc! {"startIndexBuild": "c", "indexBuildUUID": 1, "indexes": [{"v": 2, "key": {"z": 1}, "name": "z1"}]}
            ),
            Action::Ignore
        );
        assert_eq!(
            c(
                doc! {"commitIndexBuild": "c", "indexBuildUUID": 1, "indexes": [{"v": 2, "key": {"z": 1}, "name": "z1"}]}
            ),
            Action::Apply(Write::Command {
                db: "shop".into(),
                command: doc! {"createIndexes": "c", "indexes": [{"key": {"z": 1}, "name": "z1"}]},
                tolerated: &[],
            })
        );
        assert_eq!(
            c(
                doc! {"create": "k", "clusteredIndex": true, "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"}}
            ),
            Action::Apply(Write::Command {
                db: "shop".into(),
                command: doc! {"create": "k", "clusteredIndex": {"key": {"_id": 1}, "unique": true}, "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"}},
                tolerated: &[NAMESPACE_EXISTS],
            })
        );
        assert!(matches!(c(doc! {"commitTransaction": 1}), Action::Warn(_)));
        assert!(matches!(c(doc! {"emptycapped": "c"}), Action::Warn(_)));
    }

    #[test]
    fn apply_ops_entries_are_unwound() {
        let e = entry(
            "c",
            "admin.$cmd",
            doc! {"applyOps": [
                {"op": "i", "ns": "a.b", "o": {"_id": 1}},
                {"op": "d", "ns": "a.b", "o": {"_id": 2}},
                {"op": "i", "ns": "config.x", "o": {"_id": 1}},
            ]},
            None,
        );
        let leaves = translate(&e).unwrap();
        assert_eq!(leaves.len(), 3);
        assert!(matches!(
            leaves[0].action,
            Action::Apply(Write::Upsert { .. })
        ));
        assert!(matches!(
            leaves[1].action,
            Action::Apply(Write::Delete { .. })
        ));
        assert_eq!(leaves[2].action, Action::Ignore);
        assert_eq!(leaves[1].op, doc! {"op": "d", "ns": "a.b", "o": {"_id": 2}});
    }

    #[test]
    fn a_batch_becomes_one_ordered_bulk_write_across_collections() {
        let origin = Origin {
            position: "ts (1, 1)".into(),
            op: "u".into(),
            namespace: "shop.orders".into(),
        };
        let batch = Batch {
            namespaces: vec![
                ("shop".into(), "orders".into()),
                ("shop".into(), "items".into()),
                ("shop".into(), "orders".into()),
            ],
            kinds: vec!["update", "delete", "update"],
            statements: vec![
                doc! {"q": {"_id": 1}, "u": {"a": 1}, "upsert": true},
                doc! {"q": {"_id": 2}, "limit": 1},
                doc! {"q": {"_id": 3}, "u": {"$set": {"b": 2}}},
            ],
            origins: vec![origin.clone(), origin.clone(), origin],
            bytes: 0,
        };
        let command = batch.bulk_write();
        assert_eq!(
            command.get_array("nsInfo").unwrap(),
            &vec![
                Bson::Document(doc! {"ns": "shop.orders"}),
                Bson::Document(doc! {"ns": "shop.items"})
            ]
        );
        let ops = command.get_array("ops").unwrap();
        assert_eq!(
            ops[0].as_document().unwrap(),
            &doc! {"update": 0, "filter": {"_id": 1}, "updateMods": {"a": 1}, "upsert": true, "multi": false}
        );
        assert_eq!(
            ops[1].as_document().unwrap(),
            &doc! {"delete": 1, "filter": {"_id": 2}, "multi": false}
        );
        assert_eq!(ops[2].as_document().unwrap().get_i32("update"), Ok(0));
        assert_eq!(command.get_bool("ordered"), Ok(true));
        // The first error names its statement's entry.
        let reply = doc! {"ok": 1, "nErrors": 1, "cursor": {"firstBatch": [
            {"ok": 0, "idx": 1, "code": 2, "errmsg": "bad"}
        ]}};
        let error = bulk_write_result(&batch, &reply).unwrap_err().to_string();
        assert!(
            error.contains("bad") && error.contains("ts (1, 1)"),
            "{error}"
        );
        assert!(bulk_write_result(&batch, &doc! {"ok": 1, "nErrors": 0}).is_ok());
    }
}

//! From a namespace's metadata JSON (`docs/archive-format.md` §3) to
//! the commands that recreate it: the `create` command with its options and
//! `idIndex`, and the `createIndexes` specifications.
//!
//! The metadata is canonical Extended JSON; `Bson::try_from` reads it (and
//! the relaxed numbers of old dumps) into BSON with its types. As
//! mongorestore does, a view is recognised by `viewOn` and a time series
//! by `timeseries`, whatever `type` says.

use mongobak_archive::{check_metadata_json, NamespaceMeta};
use mongodb::bson::{Bson, Document};

/// What a namespace is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Collection,
    View,
    Timeseries,
}

/// A namespace's options and indexes.
#[derive(Debug, Clone)]
pub(crate) struct CollectionSpec {
    pub(crate) shape: Shape,
    /// `listCollections` options.
    pub(crate) options: Document,
    /// `listIndexes` specifications.
    pub(crate) indexes: Vec<Document>,
}

/// Options the target decides for itself, never sent back.
const DROPPED_OPTIONS: &[&str] = &["autoIndexId", "recordIdsReplicated", "uuid"];
/// Fields of an index specification the target sets itself: the index
/// version (the target's default, as mongorestore without
/// `--keepIndexVersion`), the old namespace field, and the storage format
/// some servers echo.
const DROPPED_INDEX_FIELDS: &[&str] = &["v", "ns", "entryFormat"];

impl CollectionSpec {
    /// Parses the prelude entry's metadata.
    pub(crate) fn parse(meta: &NamespaceMeta) -> Result<CollectionSpec, String> {
        let parsed = check_metadata_json(&meta.metadata_json).map_err(|e| e.to_string())?;
        let Some(map) = parsed else {
            return Ok(CollectionSpec {
                shape: Shape::Collection,
                options: Document::new(),
                indexes: Vec::new(),
            });
        };
        let indexes = match map.get("indexes") {
            None => &[][..],
            Some(serde_json::Value::Array(items)) => &items[..],
            Some(_) => return Err("indexes is not an array".into()),
        };
        Self::from_json(map.get("options"), indexes)
    }

    /// A collection's `listCollections` options and `listIndexes`
    /// specifications, as canonical Extended JSON.
    pub(crate) fn from_json(
        options: Option<&serde_json::Value>,
        indexes: &[serde_json::Value],
    ) -> Result<CollectionSpec, String> {
        let options = match options {
            None | Some(serde_json::Value::Null) => Document::new(),
            Some(value) => match Bson::try_from(value.clone()) {
                Ok(Bson::Document(d)) => d,
                Ok(other) => return Err(format!("options is not a document: {other}")),
                Err(e) => return Err(format!("options: {e}")),
            },
        };
        let mut parsed = Vec::new();
        for (n, item) in indexes.iter().enumerate() {
            match Bson::try_from(item.clone()) {
                Ok(Bson::Document(d)) => parsed.push(d),
                Ok(other) => return Err(format!("index #{n} is not a document: {other}")),
                Err(e) => return Err(format!("index #{n}: {e}")),
            }
        }
        let shape = if options.contains_key("viewOn") {
            Shape::View
        } else if options.contains_key("timeseries") {
            Shape::Timeseries
        } else {
            Shape::Collection
        };
        Ok(CollectionSpec {
            shape,
            options,
            indexes: parsed,
        })
    }

    /// Whether the collection is capped (its insertion order matters).
    pub(crate) fn capped(&self) -> bool {
        match self.options.get("capped") {
            Some(Bson::Boolean(b)) => *b,
            Some(Bson::Int32(n)) => *n != 0,
            Some(Bson::Int64(n)) => *n != 0,
            Some(Bson::Double(n)) => *n != 0.0,
            _ => false,
        }
    }

    /// The time series `metaField`, if any.
    pub(crate) fn meta_field(&self) -> Option<String> {
        self.options
            .get_document("timeseries")
            .ok()?
            .get_str("metaField")
            .ok()
            .map(str::to_owned)
    }

    /// The time series `timeField`, if any.
    pub(crate) fn time_field(&self) -> Option<String> {
        self.options
            .get_document("timeseries")
            .ok()?
            .get_str("timeField")
            .ok()
            .map(str::to_owned)
    }

    /// The `create` command for `collection`: every option, and the `_id`
    /// index as `idIndex` (its options can only be set at creation), as
    /// mongorestore sends it. Clustered collections, views and time series
    /// have no separate `_id` index to give.
    pub(crate) fn create_command(&self, collection: &str) -> Document {
        let mut command = Document::new();
        command.insert("create", collection);
        for (key, value) in &self.options {
            if DROPPED_OPTIONS.contains(&key.as_str()) {
                continue;
            }
            command.insert(key.clone(), value.clone());
        }
        let clustered = self.options.contains_key("clusteredIndex");
        if self.shape == Shape::Collection && !clustered {
            if let Some(id_index) = self.indexes.iter().find(|i| is_id_index(i)) {
                command.insert("idIndex", clean_index(id_index));
            }
        }
        command
    }

    /// The specifications for `createIndexes`: all but the `_id` index,
    /// without the fields the target sets itself.
    pub(crate) fn secondary_indexes(&self) -> Vec<Document> {
        self.indexes
            .iter()
            .filter(|i| !is_id_index(i))
            .map(clean_index)
            .collect()
    }
}

fn is_id_index(spec: &Document) -> bool {
    spec.get_str("name") == Ok("_id_")
}

/// An index specification without the fields the target sets itself.
pub(crate) fn clean_index(spec: &Document) -> Document {
    spec.iter()
        .filter(|(k, _)| !DROPPED_INDEX_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use mongobak_archive::NamespaceKind;
    use mongodb::bson::doc;

    use super::*;

    fn meta(json: &str) -> NamespaceMeta {
        NamespaceMeta {
            db: "d".into(),
            collection: "c".into(),
            metadata_json: json.into(),
            kind: NamespaceKind::Unspecified,
        }
    }

    #[test]
    fn canonical_metadata() {
        let spec = CollectionSpec::parse(&meta(
            r#"{"options":{"capped":true,"size":{"$numberLong":"4096"}},"indexes":[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"},{"v":{"$numberInt":"2"},"key":{"z":{"$numberInt":"1"},"a":{"$numberInt":"-1"}},"name":"z_a","unique":true}],"uuid":"ffa7054f30dc422696fa9607e150cb53","collectionName":"c","type":"collection"}"#,
        ))
        .unwrap();
        assert_eq!(spec.shape, Shape::Collection);
        assert!(spec.capped());
        assert_eq!(
            spec.create_command("c"),
            doc! {"create": "c", "capped": true, "size": 4096i64, "idIndex": {"key": {"_id": 1}, "name": "_id_"}}
        );
        assert_eq!(
            spec.secondary_indexes(),
            vec![doc! {"key": {"z": 1, "a": -1}, "name": "z_a", "unique": true}]
        );
    }

    #[test]
    fn legacy_metadata_and_shapes() {
        // mongodump 3.x: relaxed numbers and `ns` in index specifications.
        let spec = CollectionSpec::parse(&meta(
            r#"{"options":{},"indexes":[{"v":2,"key":{"_id":1},"name":"_id_","ns":"test.foo"}]}"#,
        ))
        .unwrap();
        assert_eq!(
            spec.create_command("foo"),
            doc! {"create": "foo", "idIndex": {"key": {"_id": 1}, "name": "_id_"}}
        );
        assert!(spec.secondary_indexes().is_empty());

        let view = CollectionSpec::parse(&meta(
            r#"{"options":{"viewOn":"orders","pipeline":[{"$match":{"x":{"$numberInt":"1"}}}]},"indexes":[],"collectionName":"v1","type":"view"}"#,
        ))
        .unwrap();
        assert_eq!(view.shape, Shape::View);
        assert_eq!(
            view.create_command("v1"),
            doc! {"create": "v1", "viewOn": "orders", "pipeline": [{"$match": {"x": 1}}]}
        );

        let ts = CollectionSpec::parse(&meta(
            r#"{"options":{"timeseries":{"timeField":"ts","metaField":"meta","granularity":"seconds"}},"indexes":[],"collectionName":"foo_ts","type":"collection"}"#,
        ))
        .unwrap();
        assert_eq!(ts.shape, Shape::Timeseries);
        assert_eq!(ts.meta_field().as_deref(), Some("meta"));
        assert_eq!(ts.time_field().as_deref(), Some("ts"));

        let clustered = CollectionSpec::parse(&meta(
            r#"{"options":{"clusteredIndex":{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_","unique":true}},"indexes":[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_","unique":true,"clustered":true}]}"#,
        ))
        .unwrap();
        assert!(!clustered.create_command("c").contains_key("idIndex"));

        let empty = CollectionSpec::parse(&meta("")).unwrap();
        assert_eq!(empty.create_command("c"), doc! {"create": "c"});
    }

    #[test]
    fn unusable_metadata() {
        assert!(CollectionSpec::parse(&meta(r#"{"options":[]}"#)).is_err());
        assert!(CollectionSpec::parse(&meta(r#"{"indexes":{}}"#)).is_err());
        assert!(CollectionSpec::parse(&meta(r#"{"options":{"a":{"$oid":"nope"}}}"#)).is_err());
    }
}

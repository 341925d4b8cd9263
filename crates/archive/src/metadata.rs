//! The `.metadata.json` text of a namespace (`docs/archive-format.md` §3),
//! as mongodump writes it and mongorestore parses it.

use serde_json::{Map, Value};

use crate::format::NamespaceKind;

/// Why metadata JSON cannot be built, or would not be accepted by restore.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// `options` is neither an object nor null.
    #[error("collection options must be a JSON object, found {found}")]
    OptionsNotObject {
        /// The JSON type found.
        found: &'static str,
    },
    /// An index specification is not an object.
    #[error("index specification #{index} must be a JSON object, found {found}")]
    IndexNotObject {
        /// Position in the list.
        index: usize,
        /// The JSON type found.
        found: &'static str,
    },
    /// A view with index specifications: restore would try to build them.
    #[error("a view has no indexes, but {count} index specifications were given")]
    ViewWithIndexes {
        /// How many were given.
        count: usize,
    },
    /// The UUID is not 32 hex digits (dashes are accepted and dropped).
    #[error("collection UUID {value:?} is not 32 hex digits")]
    InvalidUuid {
        /// The rejected text.
        value: String,
    },
    /// A `$date` in relaxed form: restore parses canonical mode and needs
    /// `{"$date":{"$numberLong":"..."}}`.
    #[error(
        "{path}: $date must be canonical {{\"$date\":{{\"$numberLong\":\"<ms>\"}}}}, found {found}"
    )]
    RelaxedDate {
        /// JSON path of the offending value, e.g. `options.validator.$and[0]`.
        path: String,
        /// The value found, as JSON.
        found: String,
    },
    /// The text is not JSON.
    #[error("metadata is not valid JSON: {reason}")]
    InvalidJson {
        /// The parser's message.
        reason: String,
    },
    /// The text is JSON but not an object.
    #[error("metadata must be a JSON object, found {found}")]
    NotAnObject {
        /// The JSON type found.
        found: &'static str,
    },
}

/// Builds the `.metadata.json` text / prelude `metadata` string (3):
/// canonical Extended JSON v2, compact, keys in the order `options`
/// (omitted when empty), `indexes` (always), `uuid` (omitted for views,
/// timeseries and when absent), `collectionName`, `type` (omitted for
/// [`NamespaceKind::Unspecified`]).
///
/// `options` and `indexes` are the `listCollections` options and the
/// `listIndexes` specifications in canonical Extended JSON, as stored by
/// the dump; their key order is kept. `uuid` is 32 hex digits (dashes are
/// dropped, letters lowercased).
pub fn metadata_json(
    collection: &str,
    kind: NamespaceKind,
    options: &Value,
    indexes: &[Value],
    uuid: Option<&str>,
) -> Result<String, MetadataError> {
    let mut root = Map::new();
    match options {
        Value::Null => {}
        Value::Object(map) if map.is_empty() => {}
        Value::Object(_) => {
            root.insert("options".to_owned(), options.clone());
        }
        other => {
            return Err(MetadataError::OptionsNotObject {
                found: json_type(other),
            })
        }
    }
    for (index, spec) in indexes.iter().enumerate() {
        if !spec.is_object() {
            return Err(MetadataError::IndexNotObject {
                index,
                found: json_type(spec),
            });
        }
    }
    if kind == NamespaceKind::View && !indexes.is_empty() {
        return Err(MetadataError::ViewWithIndexes {
            count: indexes.len(),
        });
    }
    root.insert("indexes".to_owned(), Value::Array(indexes.to_vec()));
    if let Some(uuid) = uuid {
        let normalised = normalise_uuid(uuid)?;
        if !matches!(kind, NamespaceKind::View | NamespaceKind::Timeseries) {
            root.insert("uuid".to_owned(), Value::String(normalised));
        }
    }
    root.insert(
        "collectionName".to_owned(),
        Value::String(collection.to_owned()),
    );
    if kind != NamespaceKind::Unspecified {
        root.insert("type".to_owned(), Value::String(kind.as_str().to_owned()));
    }
    let root = Value::Object(root);
    check_canonical_dates(&root, &mut String::new())?;
    serde_json::to_string(&root).map_err(|e| MetadataError::InvalidJson {
        reason: e.to_string(),
    })
}

/// Checks metadata text the way restore reads it: empty means no metadata;
/// otherwise a JSON object whose `$date` values are canonical. Returns the
/// parsed object (`None` when empty).
pub fn check_metadata_json(text: &str) -> Result<Option<Map<String, Value>>, MetadataError> {
    if text.is_empty() {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(text).map_err(|e| MetadataError::InvalidJson {
        reason: e.to_string(),
    })?;
    check_canonical_dates(&value, &mut String::new())?;
    match value {
        Value::Object(map) => Ok(Some(map)),
        other => Err(MetadataError::NotAnObject {
            found: json_type(&other),
        }),
    }
}

/// Whether parsed metadata describes a timeseries collection: restore goes
/// by `options.timeseries`, not by `type` (3).
pub(crate) fn has_timeseries_options(metadata: &Map<String, Value>) -> bool {
    metadata
        .get("options")
        .and_then(|o| o.get("timeseries"))
        .is_some()
}

fn normalise_uuid(uuid: &str) -> Result<String, MetadataError> {
    let hex: String = uuid.chars().filter(|c| *c != '-').collect();
    if hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex.to_ascii_lowercase())
    } else {
        Err(MetadataError::InvalidUuid {
            value: uuid.to_owned(),
        })
    }
}

fn check_canonical_dates(value: &Value, path: &mut String) -> Result<(), MetadataError> {
    match value {
        Value::Object(map) => {
            if let Some(date) = map.get("$date") {
                let canonical = date
                    .as_object()
                    .filter(|o| o.len() == 1)
                    .and_then(|o| o.get("$numberLong"))
                    .is_some_and(Value::is_string);
                if !canonical {
                    return Err(MetadataError::RelaxedDate {
                        path: if path.is_empty() {
                            "(root)".to_owned()
                        } else {
                            path.clone()
                        },
                        found: value.to_string(),
                    });
                }
                return Ok(());
            }
            for (key, child) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                check_canonical_dates(child, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_canonical_dates(child, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn id_index() -> Value {
        serde_json::from_str(
            r#"{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"}"#,
        )
        .unwrap()
    }

    #[test]
    fn spec_examples() {
        // The three examples of section 3.
        let coll = metadata_json(
            "coll1",
            NamespaceKind::Collection,
            &json!({}),
            &[id_index()],
            Some("FFA7054F-30DC-4226-96FA-9607E150CB53"),
        )
        .unwrap();
        assert_eq!(
            coll,
            r#"{"indexes":[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"}],"uuid":"ffa7054f30dc422696fa9607e150cb53","collectionName":"coll1","type":"collection"}"#
        );

        let options: Value = serde_json::from_str(
            r#"{"viewOn":"orders","pipeline":[{"$match":{"x":{"$numberInt":"1"}}}]}"#,
        )
        .unwrap();
        let view = metadata_json(
            "v1",
            NamespaceKind::View,
            &options,
            &[],
            Some("ffa7054f30dc422696fa9607e150cb53"),
        )
        .unwrap();
        assert_eq!(
            view,
            r#"{"options":{"viewOn":"orders","pipeline":[{"$match":{"x":{"$numberInt":"1"}}}]},"indexes":[],"collectionName":"v1","type":"view"}"#
        );

        let options: Value = serde_json::from_str(
            r#"{"timeseries":{"timeField":"ts","metaField":"meta","granularity":"seconds","bucketMaxSpanSeconds":{"$numberInt":"3600"}}}"#,
        )
        .unwrap();
        let ts = metadata_json("foo_ts", NamespaceKind::Timeseries, &options, &[], None).unwrap();
        assert_eq!(
            ts,
            r#"{"options":{"timeseries":{"timeField":"ts","metaField":"meta","granularity":"seconds","bucketMaxSpanSeconds":{"$numberInt":"3600"}}},"indexes":[],"collectionName":"foo_ts","type":"timeseries"}"#
        );
    }

    #[test]
    fn key_order_of_compound_index_is_kept() {
        let spec: Value = serde_json::from_str(
            r#"{"v":{"$numberInt":"2"},"key":{"z":{"$numberInt":"1"},"a":{"$numberInt":"-1"}},"name":"z_1_a_-1"}"#,
        )
        .unwrap();
        let text =
            metadata_json("c", NamespaceKind::Collection, &Value::Null, &[spec], None).unwrap();
        assert!(text.contains(r#""key":{"z":{"$numberInt":"1"},"a":{"$numberInt":"-1"}}"#));
    }

    #[test]
    fn refusals() {
        let e = |r: Result<String, MetadataError>| r.unwrap_err();
        assert!(matches!(
            e(metadata_json(
                "c",
                NamespaceKind::Collection,
                &json!([]),
                &[],
                None
            )),
            MetadataError::OptionsNotObject { .. }
        ));
        assert!(matches!(
            e(metadata_json(
                "c",
                NamespaceKind::Collection,
                &json!({}),
                &[json!(1)],
                None
            )),
            MetadataError::IndexNotObject { index: 0, .. }
        ));
        assert!(matches!(
            e(metadata_json(
                "v",
                NamespaceKind::View,
                &json!({}),
                &[id_index()],
                None
            )),
            MetadataError::ViewWithIndexes { count: 1 }
        ));
        assert!(matches!(
            e(metadata_json(
                "c",
                NamespaceKind::Collection,
                &json!({}),
                &[],
                Some("xyz")
            )),
            MetadataError::InvalidUuid { .. }
        ));
        let relaxed =
            json!({"validator": {"$and": [{"d": {"$gt": {"$date": "2020-01-01T00:00:00Z"}}}]}});
        match e(metadata_json(
            "c",
            NamespaceKind::Collection,
            &relaxed,
            &[],
            None,
        )) {
            MetadataError::RelaxedDate { path, .. } => {
                assert_eq!(path, "options.validator.$and[0].d.$gt")
            }
            other => panic!("{other:?}"),
        }
        let canonical = json!({"validator": {"d": {"$date": {"$numberLong": "1577836800000"}}}});
        assert!(metadata_json("c", NamespaceKind::Collection, &canonical, &[], None).is_ok());
    }

    #[test]
    fn checking_text() {
        assert_eq!(check_metadata_json(""), Ok(None));
        assert!(check_metadata_json(r#"{"indexes":[]}"#).unwrap().is_some());
        assert!(matches!(
            check_metadata_json(r#"{"key":{"{"a":"b"}":1}}"#),
            Err(MetadataError::InvalidJson { .. })
        ));
        assert!(matches!(
            check_metadata_json("[]"),
            Err(MetadataError::NotAnObject { .. })
        ));
    }
}

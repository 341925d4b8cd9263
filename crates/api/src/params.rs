//! Business parameters of a request, whatever style they came in.
//!
//! JSON bodies arrive as a tree; GET queries and form bodies arrive
//! flattened with 0-based dotted paths (`BackupSets.0.ReplicaSetId=x`,
//! `docs/protocol.md` §1.3). [`unflatten`] turns the flat form into the same
//! tree, and [`Params`] reads typed values out of it for an action's request
//! struct, naming the parameter in every error and refusing parameters the
//! action does not define (`UnknownParameter`).
//!
//! Coercion follows the clients: flattened values are always strings, so a
//! string holding an integer or a boolean (`True`/`true`) is accepted where
//! the schema says integer or boolean; an official example sends
//! `"Status": ["2"]` in JSON too.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::error::ApiError;

/// Most levels of nesting a flattened key may have; no action goes deeper
/// than three, and the limit keeps hostile keys cheap.
const MAX_DEPTH: usize = 8;

/// Builds the parameter tree from flattened `key=value` pairs.
///
/// `a.0.b=x` becomes `{"a": {"0": {"b": "x"}}}`: objects whose keys are all
/// indexes are read as lists by [`Params`]. A key given twice, or used both as
/// a value and as a prefix, is refused with `InvalidParameter`.
pub fn unflatten<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Value, ApiError> {
    let mut root = Map::new();
    for (key, value) in pairs {
        let segments: Vec<&str> = key.split('.').collect();
        if segments.len() > MAX_DEPTH || segments.iter().any(|s| s.is_empty()) {
            return Err(ApiError::invalid(
                key,
                "a parameter name of dotted segments",
            ));
        }
        let (last, parents) = segments.split_last().expect("split yields one segment");
        let mut node = &mut root;
        for segment in parents {
            let child = node
                .entry(segment.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            node = match child {
                Value::Object(map) => map,
                _ => return Err(conflict(key)),
            };
        }
        if node.contains_key(*last) {
            return Err(conflict(key));
        }
        node.insert(last.to_string(), Value::String(value.to_string()));
    }
    Ok(Value::Object(root))
}

fn conflict(key: &str) -> ApiError {
    ApiError::invalid(
        key,
        "each parameter given once, either as a value or as a list/object",
    )
}

/// Typed, tracked access to one level of the parameter tree.
///
/// Each getter removes the parameter it reads; [`Params::finish`] then
/// refuses whatever is left, so a misspelt optional parameter is reported
/// instead of silently ignored.
#[derive(Debug)]
pub struct Params {
    map: Map<String, Value>,
    /// Dotted path of this level, for messages (`BackupSets.0`).
    path: String,
}

impl Params {
    /// Wraps the top level of a request's parameters. Anything but an object
    /// is `InvalidParameter`.
    pub fn new(value: Value) -> Result<Self, ApiError> {
        Self::at(value, String::new())
    }

    fn at(value: Value, path: String) -> Result<Self, ApiError> {
        match value {
            Value::Object(map) => Ok(Params { map, path }),
            _ if path.is_empty() => Err(ApiError::new(
                crate::error::ErrorKind::InvalidParameter,
                "The request parameters must be a JSON object.",
            )),
            _ => Err(ApiError::invalid(&path, "an object")),
        }
    }

    fn name(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Takes a parameter out; JSON `null` counts as absent (the SDKs drop
    /// nulls when flattening, so both forms mean the same).
    fn take(&mut self, key: &str) -> Option<Value> {
        match self.map.remove(key) {
            Some(Value::Null) | None => None,
            Some(v) => Some(v),
        }
    }

    /// A required string.
    pub fn string(&mut self, key: &str) -> Result<String, ApiError> {
        self.opt_string(key)?
            .ok_or_else(|| ApiError::missing(&self.name(key)))
    }

    /// An optional string.
    pub fn opt_string(&mut self, key: &str) -> Result<Option<String>, ApiError> {
        let name = self.name(key);
        self.take(key).map(|v| as_string(v, &name)).transpose()
    }

    /// An optional integer (a JSON number or a string holding one).
    pub fn opt_i64(&mut self, key: &str) -> Result<Option<i64>, ApiError> {
        let name = self.name(key);
        self.take(key).map(|v| as_i64(v, &name)).transpose()
    }

    /// An optional boolean (JSON bool, or `true`/`True`/`false`/`False`).
    pub fn opt_bool(&mut self, key: &str) -> Result<Option<bool>, ApiError> {
        let name = self.name(key);
        self.take(key).map(|v| as_bool(v, &name)).transpose()
    }

    /// An optional list of strings of at most `max` entries.
    pub fn opt_string_list(
        &mut self,
        key: &str,
        max: usize,
    ) -> Result<Option<Vec<String>>, ApiError> {
        self.opt_list(key, max, as_string)
    }

    /// An optional list of integers of at most `max` entries.
    pub fn opt_i64_list(&mut self, key: &str, max: usize) -> Result<Option<Vec<i64>>, ApiError> {
        self.opt_list(key, max, as_i64)
    }

    /// An optional list of at most `max` objects, each parsed by `parse`
    /// from its own [`Params`] (which must be finished by `parse`).
    ///
    /// `shorthand` names the field that a bare string element stands for:
    /// the seed documents `BackupSets.0=<id>` meaning
    /// `BackupSets.0.ReplicaSetId=<id>`.
    pub fn opt_object_list<T>(
        &mut self,
        key: &str,
        max: usize,
        shorthand: Option<&str>,
        mut parse: impl FnMut(&mut Params) -> Result<T, ApiError>,
    ) -> Result<Option<Vec<T>>, ApiError> {
        self.opt_list(key, max, |value, name| {
            let value = match (value, shorthand) {
                (Value::String(s), Some(field)) => {
                    let mut map = Map::new();
                    map.insert(field.to_string(), Value::String(s));
                    Value::Object(map)
                }
                (value, _) => value,
            };
            let mut item = Params::at(value, name.to_string())?;
            let parsed = parse(&mut item)?;
            item.finish()?;
            Ok(parsed)
        })
    }

    /// Every list parameter goes through here, so none escapes its cap:
    /// a longer list is refused before any element is read, which keeps
    /// the SQL and the log lines a list can reach bounded.
    fn opt_list<T>(
        &mut self,
        key: &str,
        max: usize,
        mut each: impl FnMut(Value, &str) -> Result<T, ApiError>,
    ) -> Result<Option<Vec<T>>, ApiError> {
        let name = self.name(key);
        let Some(value) = self.take(key) else {
            return Ok(None);
        };
        let entries = match &value {
            Value::Array(items) => items.len(),
            Value::Object(map) => map.len(),
            _ => 0,
        };
        if entries > max {
            return Err(ApiError::bad_value(
                crate::error::ErrorKind::InvalidParameterValue,
                &name,
                format_args!("at most {max} entries, not {entries}"),
            ));
        }
        let items = list_items(value, &name)?;
        items
            .into_iter()
            .enumerate()
            .map(|(i, v)| each(v, &format!("{name}.{i}")))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// The paging parameter `Limit`: 1 to 100 where given
    /// (`InvalidParameterValue.LimitParaOutOfRange` otherwise).
    pub fn opt_limit(&mut self) -> Result<Option<usize>, ApiError> {
        match self.opt_i64("Limit")? {
            Some(limit) if !(1..=100).contains(&limit) => Err(ApiError::bad_value(
                crate::error::ErrorKind::LimitOutOfRange,
                "Limit",
                "expected 1 to 100",
            )),
            limit => Ok(limit.map(|l| l as usize)),
        }
    }

    /// The paging parameter `Offset`, a row offset: 0 to 10000, default 0
    /// (`InvalidParameterValue.OffsetParaOutOfRange` otherwise).
    pub fn offset(&mut self) -> Result<usize, ApiError> {
        match self.opt_i64("Offset")?.unwrap_or(0) {
            offset @ 0..=10_000 => Ok(offset as usize),
            _ => Err(ApiError::bad_value(
                crate::error::ErrorKind::OffsetOutOfRange,
                "Offset",
                "expected 0 to 10000",
            )),
        }
    }

    /// Refuses every parameter no getter took.
    pub fn finish(self) -> Result<(), ApiError> {
        let unknown: BTreeSet<String> = self.map.keys().map(|k| self.name(k)).collect();
        match unknown.into_iter().next() {
            None => Ok(()),
            Some(first) => Err(ApiError::new(
                crate::error::ErrorKind::UnknownParameter,
                format!(
                    "The parameter `{}` is not defined for this action.",
                    crate::error::clip(&first)
                ),
            )),
        }
    }
}

/// The elements of a list parameter: a JSON array, or the object that
/// [`unflatten`] makes of `Key.0`, `Key.1`, ... (indexes from 0, no gaps).
fn list_items(value: Value, name: &str) -> Result<Vec<Value>, ApiError> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Object(map) => {
            let mut indexed = Vec::with_capacity(map.len());
            for (k, v) in map {
                let i = k
                    .parse::<usize>()
                    .ok()
                    .filter(|i: &usize| k == i.to_string())
                    .ok_or_else(|| {
                        ApiError::invalid(&format!("{name}.{k}"), "a 0-based list index")
                    })?;
                indexed.push((i, v));
            }
            indexed.sort_by_key(|(i, _)| *i);
            if indexed.iter().enumerate().any(|(pos, (i, _))| pos != *i) {
                return Err(ApiError::invalid(
                    name,
                    "list indexes 0, 1, 2, ... without gaps",
                ));
            }
            Ok(indexed.into_iter().map(|(_, v)| v).collect())
        }
        _ => Err(ApiError::invalid(name, "a list")),
    }
}

fn as_string(value: Value, name: &str) -> Result<String, ApiError> {
    match value {
        Value::String(s) => Ok(s),
        _ => Err(ApiError::invalid(name, "a string")),
    }
}

fn as_i64(value: Value, name: &str) -> Result<i64, ApiError> {
    match &value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| ApiError::invalid(name, "an integer"))
}

fn as_bool(value: Value, name: &str) -> Result<bool, ApiError> {
    match &value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.as_str() {
            "true" | "True" => Some(true),
            "false" | "False" => Some(false),
            _ => None,
        },
        _ => None,
    }
    .ok_or_else(|| ApiError::invalid(name, "a boolean (true or false)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use serde_json::json;

    #[test]
    fn unflatten_builds_nested_lists() {
        let tree = unflatten([
            ("InstanceId", "cmgo-1"),
            ("BackupSets.0.ReplicaSetId", "a"),
            ("BackupSets.1.ReplicaSetId", "b"),
        ])
        .unwrap();
        let mut p = Params::new(tree).unwrap();
        assert_eq!(p.string("InstanceId").unwrap(), "cmgo-1");
        let sets = p
            .opt_object_list("BackupSets", 10, Some("ReplicaSetId"), |s| {
                s.string("ReplicaSetId")
            })
            .unwrap()
            .unwrap();
        assert_eq!(sets, vec!["a", "b"]);
        p.finish().unwrap();
    }

    #[test]
    fn shorthand_element_means_its_field() {
        let tree = unflatten([
            ("BackupSets.0", "x_0"),
            ("BackupSets.1.ReplicaSetId", "x_1"),
        ])
        .unwrap();
        let mut p = Params::new(tree).unwrap();
        let sets = p
            .opt_object_list("BackupSets", 10, Some("ReplicaSetId"), |s| {
                s.string("ReplicaSetId")
            })
            .unwrap()
            .unwrap();
        assert_eq!(sets, vec!["x_0", "x_1"]);
    }

    #[test]
    fn list_with_gap_is_invalid() {
        let tree = unflatten([("Ids.0", "a"), ("Ids.2", "b")]).unwrap();
        let err = Params::new(tree)
            .unwrap()
            .opt_string_list("Ids", 10)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidParameter);
        assert!(err.message().contains("Ids"));
    }

    #[test]
    fn conflicting_keys_are_invalid() {
        assert_eq!(
            unflatten([("A", "1"), ("A.0", "2")]).unwrap_err().kind(),
            ErrorKind::InvalidParameter
        );
        assert_eq!(
            unflatten([("A", "1"), ("A", "2")]).unwrap_err().kind(),
            ErrorKind::InvalidParameter
        );
        assert_eq!(
            unflatten([("A..b", "1")]).unwrap_err().kind(),
            ErrorKind::InvalidParameter
        );
    }

    #[test]
    fn lenient_integers_and_booleans() {
        let mut p = Params::new(json!({"Status": ["2", 3], "Limit": "5", "Flag": "True"})).unwrap();
        assert_eq!(p.opt_i64_list("Status", 10).unwrap(), Some(vec![2, 3]));
        assert_eq!(p.opt_i64("Limit").unwrap(), Some(5));
        assert_eq!(p.opt_bool("Flag").unwrap(), Some(true));
        p.finish().unwrap();
    }

    #[test]
    fn wrong_types_name_the_parameter() {
        let mut p = Params::new(json!({"Limit": "five", "Name": 3, "Items": [{"Id": 1}]})).unwrap();
        let e = p.opt_i64("Limit").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidParameter);
        assert!(e.message().contains("`Limit`"));
        let e = p.opt_string("Name").unwrap_err();
        assert!(e.message().contains("`Name`"));
        let e = p
            .opt_object_list("Items", 10, None, |i| i.string("Id"))
            .unwrap_err();
        assert!(e.message().contains("`Items.0.Id`"), "{e}");
    }

    #[test]
    fn unknown_parameters_are_refused_and_nulls_are_absent() {
        let mut p = Params::new(json!({"InstanceId": "x", "Bogus": 1, "Nothing": null})).unwrap();
        p.string("InstanceId").unwrap();
        assert_eq!(p.opt_string("Nothing").unwrap(), None);
        let e = p.finish().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnknownParameter);
        assert!(e.message().contains("Bogus"));
    }

    #[test]
    fn missing_required_is_missing_parameter() {
        let mut p = Params::new(json!({"Sets": [{}]})).unwrap();
        let e = p
            .opt_object_list("Sets", 10, None, |s| s.string("ReplicaSetId"))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MissingParameter);
        assert!(e.message().contains("Sets.0.ReplicaSetId"));
    }

    #[test]
    fn lists_over_their_cap_are_refused_naming_them() {
        let at_cap = json!({"Ids": ["a", "b", "c"], "Sets": [{"Id": "x"}]});
        let mut p = Params::new(at_cap).unwrap();
        assert_eq!(p.opt_string_list("Ids", 3).unwrap().unwrap().len(), 3);
        p.opt_object_list("Sets", 1, None, |s| s.string("Id"))
            .unwrap();
        p.finish().unwrap();
        let flat = unflatten([("Ids.0", "1"), ("Ids.1", "2"), ("Ids.2", "3")]).unwrap();
        let over = [json!({"Ids": [1, 2, 3]}), flat];
        for tree in over {
            let e = Params::new(tree)
                .unwrap()
                .opt_i64_list("Ids", 2)
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidParameterValue);
            assert!(e.message().contains("`Ids`"), "{e}");
            assert!(e.message().contains("at most 2 entries, not 3"), "{e}");
        }
        let e = Params::new(json!({"Sets": [{"Id": "x"}, {"Id": "y"}]}))
            .unwrap()
            .opt_object_list("Sets", 1, None, |s| s.string("Id"))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidParameterValue);
        assert!(e.message().contains("`Sets`"), "{e}");
    }

    #[test]
    fn top_level_must_be_an_object() {
        assert_eq!(
            Params::new(json!([1])).unwrap_err().kind(),
            ErrorKind::InvalidParameter
        );
    }
}

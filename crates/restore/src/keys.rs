//! Flashback by key: which documents, and which oplog entries, concern the
//! key values a flashback asks for.
//!
//! Values arrive as strings. A string matches a string equal to it, and
//! also the ObjectId or the number it spells, if it spells one: `"5"`
//! matches `"5"`, `5`, `NumberLong(5)` and `5.0`; a 24-digit hex string
//! matches that ObjectId too. Numbers compare by value, whatever their
//! BSON type, as MongoDB's equality does. A field holding an array matches
//! when one of its elements does, and a dotted field name follows embedded
//! documents.
//!
//! Only `_id` never changes in a document's life, so only a flashback by
//! `_id` can leave out, from the start, every document and write of other
//! keys ([`KeyMatcher::by_id`], [`KeyMatcher::concerns`]); by any other
//! field the whole collection is rebuilt and the matches picked at the end.

use std::collections::HashSet;

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, Document, RawBsonRef, RawDocument};

/// One comparable key value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum KeyValue {
    String(String),
    ObjectId([u8; 12]),
    /// A whole number (an integral double included).
    Integer(i64),
    /// Any other finite double, by its bits.
    Float(u64),
}

impl KeyValue {
    fn of_f64(value: f64) -> Option<KeyValue> {
        if !value.is_finite() {
            return None;
        }
        // 2^63 is the first double outside i64.
        if value.fract() == 0.0 && value.abs() < 9.223_372_036_854_776e18 {
            return Some(KeyValue::Integer(value as i64));
        }
        Some(KeyValue::Float(value.to_bits()))
    }

    fn of_raw(value: RawBsonRef<'_>) -> Option<KeyValue> {
        match value {
            RawBsonRef::String(s) => Some(KeyValue::String(s.to_string())),
            RawBsonRef::ObjectId(oid) => Some(KeyValue::ObjectId(oid.bytes())),
            RawBsonRef::Int32(n) => Some(KeyValue::Integer(i64::from(n))),
            RawBsonRef::Int64(n) => Some(KeyValue::Integer(n)),
            RawBsonRef::Double(d) => KeyValue::of_f64(d),
            _ => None,
        }
    }

    fn of_bson(value: &Bson) -> Option<KeyValue> {
        match value {
            Bson::String(s) => Some(KeyValue::String(s.clone())),
            Bson::ObjectId(oid) => Some(KeyValue::ObjectId(oid.bytes())),
            Bson::Int32(n) => Some(KeyValue::Integer(i64::from(*n))),
            Bson::Int64(n) => Some(KeyValue::Integer(*n)),
            Bson::Double(d) => KeyValue::of_f64(*d),
            _ => None,
        }
    }
}

/// The key values of one collection's flashback.
#[derive(Debug, Clone)]
pub struct KeyMatcher {
    field: String,
    path: Vec<String>,
    values: HashSet<KeyValue>,
}

impl KeyMatcher {
    /// Matches documents whose `field` (dotted for an embedded one) equals
    /// one of `values`, each taken as the string it is and as the
    /// ObjectId or number it spells.
    pub fn new(field: &str, values: &[String]) -> Self {
        let mut set = HashSet::with_capacity(values.len() * 2);
        for value in values {
            set.insert(KeyValue::String(value.clone()));
            if value.len() == 24 {
                if let Ok(oid) = ObjectId::parse_str(value) {
                    set.insert(KeyValue::ObjectId(oid.bytes()));
                }
            }
            let trimmed = value.trim();
            if let Ok(n) = trimmed.parse::<i64>() {
                set.insert(KeyValue::Integer(n));
            } else if trimmed
                .bytes()
                .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
            {
                if let Some(number) = trimmed.parse::<f64>().ok().and_then(KeyValue::of_f64) {
                    set.insert(number);
                }
            }
        }
        KeyMatcher {
            field: field.to_string(),
            path: field.split('.').map(str::to_owned).collect(),
            values: set,
        }
    }

    /// The field matched.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// Whether the field is `_id`, which no write changes: documents and
    /// writes of other keys can be left out from the start.
    pub fn by_id(&self) -> bool {
        self.field == "_id"
    }

    /// Whether `document` matches.
    pub fn matches(&self, document: &RawDocument) -> bool {
        self.matches_at(document, &self.path)
    }

    fn matches_at(&self, document: &RawDocument, path: &[String]) -> bool {
        let Some((first, rest)) = path.split_first() else {
            return false;
        };
        let Ok(Some(value)) = document.get(first) else {
            return false;
        };
        self.matches_value(value, rest)
    }

    fn matches_value(&self, value: RawBsonRef<'_>, rest: &[String]) -> bool {
        match value {
            RawBsonRef::Array(array) => array
                .into_iter()
                .flatten()
                .any(|element| self.matches_value(element, rest)),
            RawBsonRef::Document(inner) if !rest.is_empty() => self.matches_at(inner, rest),
            value if rest.is_empty() => {
                KeyValue::of_raw(value).is_some_and(|key| self.values.contains(&key))
            }
            _ => false,
        }
    }

    /// For a flashback by `_id`: whether an oplog write (`i`, `u` or `d`,
    /// as decoded) is of one of the keys; commands and anything without
    /// an `_id` are kept.
    pub fn concerns(&self, entry: &Document) -> bool {
        let id = match entry.get_str("op") {
            Ok("i" | "d") => entry.get_document("o").ok().and_then(|o| o.get("_id")),
            Ok("u") => entry.get_document("o2").ok().and_then(|o| o.get("_id")),
            _ => return true,
        };
        match id {
            Some(id) => KeyValue::of_bson(id).is_some_and(|key| self.values.contains(&key)),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{doc, rawdoc};

    use super::*;

    #[test]
    fn a_string_matches_itself_and_the_number_or_object_id_it_spells() {
        let oid = ObjectId::new();
        let keys = KeyMatcher::new(
            "_id",
            &["5".into(), oid.to_hex(), "2.5".into(), "abc".into()],
        );
        assert!(keys.matches(&rawdoc! {"_id": "5"}));
        assert!(keys.matches(&rawdoc! {"_id": 5}));
        assert!(keys.matches(&rawdoc! {"_id": 5_i64}));
        assert!(keys.matches(&rawdoc! {"_id": 5.0}));
        assert!(keys.matches(&rawdoc! {"_id": 2.5}));
        assert!(keys.matches(&rawdoc! {"_id": oid}));
        assert!(keys.matches(&rawdoc! {"_id": oid.to_hex()}));
        assert!(keys.matches(&rawdoc! {"_id": "abc"}));
        assert!(!keys.matches(&rawdoc! {"_id": 6}));
        assert!(!keys.matches(&rawdoc! {"_id": "ABC"}));
        assert!(!keys.matches(&rawdoc! {"_id": ObjectId::new()}));
        assert!(!keys.matches(&rawdoc! {"other": 5}));
        // Words that parse as floats are not numbers of a key.
        let words = KeyMatcher::new("_id", &["inf".into(), "NaN".into()]);
        assert!(!words.matches(&rawdoc! {"_id": f64::INFINITY}));
        assert!(words.matches(&rawdoc! {"_id": "inf"}));
    }

    #[test]
    fn dotted_fields_and_arrays() {
        let keys = KeyMatcher::new("customer.email", &["a@x".into()]);
        assert!(keys.matches(&rawdoc! {"customer": {"email": "a@x"}}));
        assert!(keys.matches(&rawdoc! {"customer": [{"email": "b@x"}, {"email": "a@x"}]}));
        assert!(!keys.matches(&rawdoc! {"customer": {"email": "b@x"}}));
        let tags = KeyMatcher::new("tags", &["7".into()]);
        assert!(tags.matches(&rawdoc! {"tags": [1, 7]}));
        assert!(!tags.by_id());
    }

    #[test]
    fn writes_of_other_ids_are_left_out_and_commands_kept() {
        let keys = KeyMatcher::new("_id", &["1".into()]);
        assert!(keys.by_id());
        assert!(keys.concerns(&doc! {"op": "i", "o": {"_id": 1, "a": 2}}));
        assert!(!keys.concerns(&doc! {"op": "i", "o": {"_id": 2}}));
        assert!(keys.concerns(&doc! {"op": "u", "o": {"$set": {"a": 1}}, "o2": {"_id": 1_i64}}));
        assert!(!keys.concerns(&doc! {"op": "u", "o": {"$set": {"a": 1}}, "o2": {"_id": 3}}));
        assert!(keys.concerns(&doc! {"op": "d", "o": {"_id": 1.0}}));
        assert!(keys.concerns(&doc! {"op": "c", "o": {"drop": "x"}}));
    }
}

//! Time series documents: buckets back to measurements.
//!
//! A MongoDB time series collection `X` (source before 8.3) keeps its data
//! in `system.buckets.X` (`docs/archive-format.md` §1.5), one bucket per
//! group of measurements: `{_id, control: {version, min, max}, meta, data:
//! {<field>: {"0": v, "1": v, ...}}}`. A target that has a buckets
//! collection takes the buckets as they are. A target without one
//! (SecantusDB stores a time series as plain measurement documents in `X`)
//! needs the measurements back: measurement `i` is every column's entry
//! `"i"`, plus the bucket's `meta` under the `metaField`. Fields come out
//! as `_id`, the time field, the meta field, then the other columns in
//! bucket order.
//!
//! Buckets of `control.version` 2 and later hold BSON column-compressed
//! data (BinData subtype 7); they are reported, not decoded.
//!
//! mongobak's own archives of a SecantusDB source carry plain measurement
//! documents under `system.buckets.X`; those are told apart by their shape
//! and inserted as they are.

use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{RawBsonRef, RawDocument, RawDocumentBuf};

/// What a document of a time series data namespace is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeseriesDoc {
    /// A plain measurement.
    Measurement,
    /// An uncompressed bucket (`control.version` 1).
    Bucket,
    /// A compressed bucket (`control.version` 2 or later, or a column in
    /// BinData subtype 7).
    CompressedBucket,
}

/// Tells a bucket from a measurement: a bucket has a `control` document
/// with a `version` and a `data` document.
pub(crate) fn classify(doc: &RawDocument) -> TimeseriesDoc {
    let Ok(control) = doc.get_document("control") else {
        return TimeseriesDoc::Measurement;
    };
    let Ok(data) = doc.get_document("data") else {
        return TimeseriesDoc::Measurement;
    };
    let version = match control.get("version") {
        Ok(Some(RawBsonRef::Int32(v))) => i64::from(v),
        Ok(Some(RawBsonRef::Int64(v))) => v,
        Ok(Some(RawBsonRef::Double(v))) => v as i64,
        _ => return TimeseriesDoc::Measurement,
    };
    let compressed_column = data.iter().any(|entry| {
        matches!(entry, Ok((_, RawBsonRef::Binary(b))) if b.subtype == BinarySubtype::Column)
    });
    if version >= 2 || compressed_column {
        TimeseriesDoc::CompressedBucket
    } else {
        TimeseriesDoc::Bucket
    }
}

/// The measurements of an uncompressed bucket, in index order.
pub(crate) fn unpack(
    bucket: &RawDocument,
    time_field: Option<&str>,
    meta_field: Option<&str>,
) -> Result<Vec<RawDocumentBuf>, String> {
    let data = bucket
        .get_document("data")
        .map_err(|e| format!("bucket data: {e}"))?;
    let meta = match meta_field {
        Some(_) => bucket
            .get("meta")
            .map_err(|e| format!("bucket meta: {e}"))?,
        None => None,
    };
    // measurements[i] = (column, value) in column order.
    let mut measurements: Vec<Vec<(&str, RawBsonRef<'_>)>> = Vec::new();
    for column in data.iter() {
        let (name, value) = column.map_err(|e| format!("bucket data: {e}"))?;
        let RawBsonRef::Document(entries) = value else {
            return Err(format!("bucket column {name:?} is not a document"));
        };
        for entry in entries.iter() {
            let (key, value) = entry.map_err(|e| format!("bucket column {name:?}: {e}"))?;
            let index: usize = key.parse().map_err(|_| {
                format!("bucket column {name:?} has a key {key:?} that is not an index")
            })?;
            if index >= measurements.len() {
                measurements.resize_with(index + 1, Vec::new);
            }
            measurements[index].push((name, value));
        }
    }
    let mut out = Vec::with_capacity(measurements.len());
    for fields in measurements.into_iter().filter(|f| !f.is_empty()) {
        let mut doc = RawDocumentBuf::new();
        let first = |name: &str| fields.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        if let Some(id) = first("_id") {
            doc.append_ref("_id", id);
        }
        if let Some(time) = time_field.and_then(first) {
            doc.append_ref(time_field.unwrap_or_default(), time);
        }
        if let (Some(name), Some(value)) = (meta_field, meta) {
            doc.append_ref(name, value);
        }
        for (name, value) in &fields {
            if *name == "_id" || Some(*name) == time_field {
                continue;
            }
            doc.append_ref(*name, *value);
        }
        out.push(doc);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{doc, rawdoc, spec::BinarySubtype, Binary, DateTime};

    use super::*;

    #[test]
    fn buckets_and_measurements() {
        let t = |ms| DateTime::from_millis(ms);
        let bucket = rawdoc! {
            "_id": 1,
            "control": {"version": 1, "min": {"ts": t(0)}, "max": {"ts": t(2)}},
            "meta": {"device": 7},
            "data": {
                "ts": {"0": t(0), "1": t(1), "2": t(2)},
                "v": {"0": 10, "2": 30},
                "_id": {"0": "a", "1": "b", "2": "c"},
            },
        };
        assert_eq!(classify(&bucket), TimeseriesDoc::Bucket);
        let out = unpack(&bucket, Some("ts"), Some("m")).unwrap();
        let docs: Vec<_> = out.iter().map(|d| d.to_document().unwrap()).collect();
        assert_eq!(
            docs,
            vec![
                doc! {"_id": "a", "ts": t(0), "m": {"device": 7}, "v": 10},
                doc! {"_id": "b", "ts": t(1), "m": {"device": 7}},
                doc! {"_id": "c", "ts": t(2), "m": {"device": 7}, "v": 30},
            ]
        );
        // Without a metaField the bucket's meta is not a measurement field.
        let out = unpack(&bucket, Some("ts"), None).unwrap();
        assert!(out[0].get("m").unwrap().is_none());

        assert_eq!(
            classify(&rawdoc! {"_id": 1, "t": t(5), "m": "cpu"}),
            TimeseriesDoc::Measurement
        );
        // A measurement may have fields called control and data.
        assert_eq!(
            classify(&rawdoc! {"control": 1, "data": {"x": 1}}),
            TimeseriesDoc::Measurement
        );
    }

    #[test]
    fn compressed_buckets_are_recognised() {
        let column = Binary {
            subtype: BinarySubtype::Column,
            bytes: vec![0x09, 0, 0],
        };
        let v2 = rawdoc! {"control": {"version": 2, "count": 3}, "data": {"ts": column.clone()}};
        assert_eq!(classify(&v2), TimeseriesDoc::CompressedBucket);
        let v1_with_column = rawdoc! {"control": {"version": 1}, "data": {"ts": column}};
        assert_eq!(classify(&v1_with_column), TimeseriesDoc::CompressedBucket);
    }

    #[test]
    fn malformed_buckets_are_errors() {
        let bad = rawdoc! {"control": {"version": 1}, "data": {"ts": {"x": 1}}};
        assert!(unpack(&bad, Some("ts"), None).is_err());
        let bad = rawdoc! {"control": {"version": 1}, "data": {"ts": 5}};
        assert!(unpack(&bad, Some("ts"), None).is_err());
    }
}

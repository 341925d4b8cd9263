//! Archives written by ArchiveWriter read back with the same documents.

use std::collections::BTreeMap;
use std::io::Write;

use mongobak_archive::{
    crc64, gunzip, metadata_json, ArchiveReader, ArchiveWriter, Event, GzipWriter, HashingWriter,
    Namespace, NamespaceKind, NamespaceMeta, ReadErrorKind, DEFAULT_LEVEL,
};
use mongodb::bson::{rawdoc, spec::BinarySubtype, Binary};
use sha2::{Digest, Sha256};

use crate::util::{header, id_doc};

/// One namespace to write: prelude entry, body name, documents.
struct Plan {
    meta: NamespaceMeta,
    data: Namespace,
    docs: Vec<Vec<u8>>,
}

fn blob_doc(i: i32, len: usize) -> Vec<u8> {
    rawdoc! {
        "_id": i,
        "payload": Binary { subtype: BinarySubtype::Generic, bytes: vec![(i % 251) as u8; len] },
    }
    .into_bytes()
}

fn plans(server_version: &str) -> Vec<Plan> {
    let buckets = server_version.starts_with('7');
    let ts_options =
        serde_json::json!({"timeseries": {"timeField": "ts", "granularity": "seconds"}});
    let view_options = serde_json::json!({"viewOn": "orders", "pipeline": []});
    let mut plans = vec![];
    let mut add = |db: &str, coll: &str, kind, data: &str, docs: Vec<Vec<u8>>| {
        let options = match kind {
            NamespaceKind::Timeseries => ts_options.clone(),
            NamespaceKind::View => view_options.clone(),
            _ => serde_json::json!({}),
        };
        let metadata = metadata_json(coll, kind, &options, &[], None).unwrap();
        plans.push(Plan {
            meta: NamespaceMeta {
                db: db.into(),
                collection: coll.into(),
                metadata_json: metadata,
                kind,
            },
            data: Namespace::new(db, data),
            docs,
        });
    };
    add(
        "admin",
        "system.users",
        NamespaceKind::Collection,
        "system.users",
        vec![id_doc(1)],
    );
    add(
        "admin",
        "system.version",
        NamespaceKind::Collection,
        "system.version",
        vec![id_doc(2)],
    );
    add(
        "shop",
        "orders",
        NamespaceKind::Collection,
        "orders",
        (0..500).map(id_doc).collect(),
    );
    add("shop", "empty", NamespaceKind::Collection, "empty", vec![]);
    add("shop", "by_day", NamespaceKind::View, "by_day", vec![]);
    add(
        "shop",
        "metrics",
        NamespaceKind::Timeseries,
        if buckets {
            "system.buckets.metrics"
        } else {
            "metrics"
        },
        (0..20).map(|i| blob_doc(i, 3000)).collect(),
    );
    add(
        "café",
        "naïve коллекция 日本 $x.y",
        NamespaceKind::Collection,
        "naïve коллекция 日本 $x.y",
        vec![id_doc(7)],
    );
    add(
        "big",
        "blobs",
        NamespaceKind::Collection,
        "blobs",
        (0..40).map(|i| blob_doc(i, 10_000)).collect(),
    );
    plans.push(Plan {
        meta: NamespaceMeta::oplog(),
        data: Namespace::oplog(),
        docs: (0..30).map(id_doc).collect(),
    });
    plans
}

fn write_plans<W: Write>(sink: W, server_version: &str, plans: &[Plan], segment_limit: usize) -> W {
    let mut w = ArchiveWriter::new(sink, header(server_version)).unwrap();
    w.set_segment_limit(segment_limit);
    // Prelude in reverse order: its order is free.
    for plan in plans.iter().rev() {
        w.add_namespace(plan.meta.clone()).unwrap();
    }
    for plan in plans {
        assert_eq!(w.data_namespace(&plan.meta), plan.data);
        w.begin_namespace(&plan.data.db, &plan.data.collection)
            .unwrap();
        for doc in &plan.docs {
            w.write_document(doc).unwrap();
        }
        let stats = w.end_namespace().unwrap();
        assert_eq!(stats.documents, plan.docs.len() as u64);
        assert_eq!(stats.crc, crc64(&plan.docs.concat()));
    }
    w.finish().unwrap()
}

/// Documents per data namespace.
type Docs = BTreeMap<Namespace, Vec<Vec<u8>>>;

/// Documents per data namespace, and segments seen, from reading.
fn read_back(bytes: impl std::io::Read) -> (Docs, BTreeMap<Namespace, u64>) {
    let mut reader = ArchiveReader::new(bytes).unwrap();
    let mut docs = Docs::new();
    let mut segments = BTreeMap::new();
    let mut current = None;
    while let Some(event) = reader.next_event().unwrap() {
        match event {
            Event::SegmentStart { namespace } => {
                docs.entry(namespace.clone()).or_default();
                current = Some(namespace);
            }
            Event::Document(doc) => docs.get_mut(current.as_ref().unwrap()).unwrap().push(doc),
            Event::NamespaceEnd {
                namespace,
                segments: n,
                crc,
                ..
            } => {
                assert_eq!(crc, crc64(&docs[&namespace].concat()));
                segments.insert(namespace, n);
            }
        }
    }
    (docs, segments)
}

#[test]
fn many_namespaces_round_trip() {
    for server in ["7.0.14", "8.3.0"] {
        let plans = plans(server);
        let bytes = write_plans(Vec::new(), server, &plans, 16 * 1024 * 1024);
        let (docs, segments) = read_back(&bytes[..]);
        assert_eq!(docs.len(), plans.len());
        for plan in &plans {
            assert_eq!(docs[&plan.data], plan.docs, "{server} {}", plan.data);
            assert_eq!(segments[&plan.data], 1);
        }
    }
}

#[test]
fn long_namespaces_are_split_into_bounded_segments() {
    let plans = plans("7.0.14");
    let bytes = write_plans(Vec::new(), "7.0.14", &plans, 50_000);
    let (docs, segments) = read_back(&bytes[..]);
    let blobs = Namespace::new("big", "blobs");
    // 40 docs of ~10 KB in segments of at most 50 000 bytes: 4 per segment.
    assert_eq!(segments[&blobs], 10);
    assert_eq!(docs[&blobs].len(), 40);
    for plan in &plans {
        assert_eq!(docs[&plan.data], plan.docs);
    }
}

#[test]
fn through_gzip_and_hashing() {
    let plans = plans("7.0.14");
    for threads in [None, Some(1), Some(2)] {
        let sink = HashingWriter::new(Vec::new());
        let gz = match threads {
            None => GzipWriter::new(sink, DEFAULT_LEVEL),
            Some(t) => GzipWriter::members(sink, DEFAULT_LEVEL, t, 64 * 1024),
        };
        let gz = write_plans(gz, "7.0.14", &plans, 100_000);
        let (file, checksum) = gz.finish().unwrap().finish();
        assert_eq!(checksum.bytes, file.len() as u64);
        assert_eq!(checksum.sha256, <[u8; 32]>::from(Sha256::digest(&file)));
        let (docs, _) = read_back(gunzip(&file[..]));
        for plan in &plans {
            assert_eq!(docs[&plan.data], plan.docs, "{threads:?}");
        }
    }
}

#[test]
fn timeseries_data_namespace_is_checked_on_read() {
    // The same body under a >= 8.3 header: system.buckets.X is undeclared.
    let plans = plans("7.0.14");
    let mut bytes = write_plans(Vec::new(), "7.0.14", &plans, 16 << 20);
    let old = b"7.0.14\0";
    let at = bytes.windows(old.len()).position(|w| w == old).unwrap();
    bytes[at..at + old.len()].copy_from_slice(b"8.3.00\0");
    let err = ArchiveReader::verify(&bytes[..]).unwrap_err();
    assert!(
        matches!(err.kind, ReadErrorKind::UndeclaredNamespace),
        "{err}"
    );
    assert_eq!(
        err.namespace,
        Some(Namespace::new("shop", "system.buckets.metrics"))
    );
}

#[test]
fn prelude_only_archive() {
    let w = ArchiveWriter::new(Vec::new(), header("6.0.0")).unwrap();
    let bytes = w.finish().unwrap();
    let summary = ArchiveReader::verify(&bytes[..]).unwrap();
    assert!(summary.prelude.is_empty());
    assert!(summary.namespaces.is_empty());
}

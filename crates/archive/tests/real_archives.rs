//! The test vectors of `testdata/mongodump`: the archives mongodump wrote
//! (from mongo-tools) and the synthetic ones built to the same rules
//! (expectations from its README).

use mongobak_archive::{
    gunzip, ArchiveReader, ArchiveSummary, ArchiveWriter, Event, NamespaceKind, ReadErrorKind,
};

use crate::util::testdata;

fn verify(path: &str) -> ArchiveSummary {
    let bytes = testdata(path);
    ArchiveReader::verify(&bytes[..]).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `(namespace, documents, CRC as the int64 stored)` in body order.
fn body(summary: &ArchiveSummary) -> Vec<(String, u64, i64)> {
    summary
        .namespaces
        .iter()
        .map(|n| (n.namespace.to_string(), n.documents, n.crc as i64))
        .collect()
}

fn prelude(summary: &ArchiveSummary) -> Vec<(String, NamespaceKind)> {
    summary
        .prelude
        .iter()
        .map(|m| (m.namespace().to_string(), m.kind))
        .collect()
}

#[test]
fn test_bar_archive() {
    let s = verify("mongo-tools/test.bar.archive");
    assert_eq!(s.archive_bytes, 896);
    assert_eq!(s.header.tool_version, "r3.4.3");
    assert_eq!(s.header.server_version, "3.4.3");
    assert_eq!(s.header.concurrent_collections, 4);
    assert_eq!(
        prelude(&s),
        [
            ("test.bar".into(), NamespaceKind::Unspecified),
            ("admin.system.version".into(), NamespaceKind::Unspecified)
        ]
    );
    assert!(s.prelude[1].metadata_json.contains("$numberDecimal"));
    assert_eq!(
        body(&s),
        [
            ("admin.system.version".into(), 1, -682_997_726_120_892_866),
            ("test.bar".into(), 1, -7_824_457_949_569_593_127),
        ]
    );
}

#[test]
fn dump_with_oplog() {
    let s = verify("mongo-tools/dump-w-oplog.archive");
    assert_eq!(s.archive_bytes, 4506);
    assert_eq!(s.header.server_version, "4.0.2");
    assert_eq!(s.header.tool_version, "r4.1.3-4-gd9eefb54");
    let oplog = &s.prelude[1];
    assert_eq!(
        (oplog.db.as_str(), oplog.collection.as_str()),
        ("", "oplog")
    );
    assert_eq!(oplog.metadata_json, "");
    assert_eq!(
        body(&s),
        [
            ("admin.system.version".into(), 1, 914_493_570_479_648_269),
            ("test.foo".into(), 25, -7_149_850_455_237_104_254),
            (".oplog".into(), 18, -9_206_534_501_618_249_364),
        ]
    );
}

#[test]
fn bad_format_fails_on_its_metadata_json() {
    let bytes = testdata("mongo-tools/bad-format.archive");
    assert_eq!(bytes.len(), 571);
    let err = ArchiveReader::new(&bytes[..]).err().expect("must fail");
    assert!(
        matches!(err.kind, ReadErrorKind::InvalidMetadata(_)),
        "{err}"
    );
    assert_eq!(err.offset, 0x6a, "{err}");
    assert_eq!(
        err.namespace.as_ref().map(ToString::to_string).as_deref(),
        Some("test.ixtest")
    );
    // The framing itself is valid: an empty segment and EOF with CRC 0.
    assert_eq!(&bytes[0x1b7..0x1bb], &[0xff; 4]);
}

#[test]
fn timeseries_dump() {
    let s = verify("mongo-tools/timeseries-dump.archive");
    assert_eq!(s.archive_bytes, 39_725);
    assert_eq!(s.header.server_version, "5.0.0-rc0");
    assert_eq!(
        prelude(&s),
        [
            ("admin.system.views".into(), NamespaceKind::Collection),
            ("timeseries_test.foo_ts".into(), NamespaceKind::Timeseries),
            ("admin.system.version".into(), NamespaceKind::Collection),
        ]
    );
    assert!(!s.prelude[1].metadata_json.contains("uuid"));
    let body = body(&s);
    assert_eq!(body[0].0, "admin.system.version");
    assert_eq!(body[0].1, 1);
    assert_eq!(body[1], ("admin.system.views".into(), 0, 0));
    assert_eq!(
        body[2],
        (
            "timeseries_test.system.buckets.foo_ts".into(),
            10,
            4_620_499_534_075_225_423
        )
    );
}

/// The form current mongodump writes: prelude entries with `type`, users,
/// roles and system.version before the data.
#[test]
fn users_and_roles_archive() {
    let s = verify("synthetic/users-and-roles.archive");
    assert_eq!(s.archive_bytes, 48_879);
    assert_eq!(s.header.tool_version, "generate.py");
    assert_eq!(s.header.server_version, "8.0.4");
    assert!(s
        .prelude
        .iter()
        .all(|m| m.kind == NamespaceKind::Collection));
    let body = body(&s);
    let names: Vec<&str> = body.iter().map(|b| b.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "admin.system.users",
            "admin.system.roles",
            "admin.system.version",
            "testDB.testColl"
        ]
    );
    let counts: Vec<u64> = body.iter().map(|b| b.1).collect();
    assert_eq!(counts, [4, 4, 2, 1500]);
    // Three of the four CRCs are negative as the int64 the EOF header stores.
    assert_eq!(body[0].2, 1_143_733_726_269_728_682);
    assert_eq!(body[1].2, -3_334_346_040_425_581_838);
    assert_eq!(body[2].2, -3_666_772_444_020_471_117);
    assert_eq!(body[3].2, -4_782_047_450_342_995_613);
}

/// `--archive --gzip`: one gzip member over the whole stream, with the
/// header Go's compress/gzip writes, around an archive of an older tool
/// (no `type` in the prelude) whose one namespace is a single segment of
/// 1.5 MB.
#[test]
fn whole_stream_gzip_archive() {
    let gz = testdata("synthetic/whole-stream-gzip.agz");
    assert_eq!(&gz[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);

    // Read as is, it is not an archive, and the error says why.
    let err = ArchiveReader::new(&gz[..])
        .err()
        .expect("gzip is not an archive");
    assert!(
        matches!(err.kind, ReadErrorKind::NotAnArchive { gzipped: true, .. }),
        "{err}"
    );

    let s = ArchiveReader::verify(gunzip(&gz[..])).unwrap();
    assert_eq!(s.archive_bytes, 1_540_476);
    assert_eq!(s.header.tool_version, "generate.py");
    assert_eq!(s.header.server_version, "4.2.25");
    assert_eq!(
        prelude(&s),
        [("shop.payments".into(), NamespaceKind::Unspecified)]
    );
    assert_eq!(s.namespaces.len(), 1);
    let ns = &s.namespaces[0];
    assert_eq!(ns.namespace.to_string(), "shop.payments");
    assert_eq!(ns.documents, 20_000);
    assert_eq!(ns.segments, 1);
    assert_eq!(ns.crc, 5_612_915_214_740_835_578);
}

/// mongo-tools cuts test.bar.archive at 10% steps to check that restore
/// fails on a short archive; here every cut of the small archives fails.
#[test]
fn every_truncation_fails() {
    for path in [
        "mongo-tools/test.bar.archive",
        "mongo-tools/dump-w-oplog.archive",
        "synthetic/worked-example.archive",
    ] {
        let bytes = testdata(path);
        for len in 0..bytes.len() {
            assert!(
                ArchiveReader::verify(&bytes[..len]).is_err(),
                "{path} cut at {len} was accepted"
            );
        }
    }
}

#[test]
fn trailing_bytes_and_padding_fail() {
    let bytes = testdata("mongo-tools/test.bar.archive");
    for extra in [
        &[0_u8][..],
        &[0, 0],
        &[0, 0, 0],
        &[0, 0, 0, 0],
        &[0xff; 4],
        &[0; 512],
    ] {
        let mut padded = bytes.clone();
        padded.extend_from_slice(extra);
        assert!(
            ArchiveReader::verify(&padded[..]).is_err(),
            "{} extra bytes accepted",
            extra.len()
        );
    }
}

/// Reading a modern archive and writing it again gives the same bytes:
/// same header, prelude (with `type`), one segment per namespace.
#[test]
fn rewriting_modern_archives_is_byte_identical() {
    for path in [
        "synthetic/users-and-roles.archive",
        "mongo-tools/timeseries-dump.archive",
    ] {
        let original = testdata(path);
        assert_eq!(rewrite(&original), original, "{path}");
    }
}

fn rewrite(original: &[u8]) -> Vec<u8> {
    let mut reader = ArchiveReader::new(original).unwrap();
    let mut writer = ArchiveWriter::new(Vec::new(), reader.header().clone()).unwrap();
    for meta in reader.prelude().to_vec() {
        writer.add_namespace(meta).unwrap();
    }
    let mut open = false;
    while let Some(event) = reader.next_event().unwrap() {
        match event {
            Event::SegmentStart { namespace } => {
                if !open {
                    writer
                        .begin_namespace(&namespace.db, &namespace.collection)
                        .unwrap();
                    open = true;
                }
            }
            Event::Document(doc) => writer.write_document(&doc).unwrap(),
            Event::NamespaceEnd { crc, .. } => {
                assert_eq!(writer.end_namespace().unwrap().crc, crc);
                open = false;
            }
        }
    }
    writer.finish().unwrap()
}

#[test]
fn reading_events_yields_every_document() {
    let bytes = testdata("mongo-tools/dump-w-oplog.archive");
    let mut documents = 0;
    let mut bytes_seen = 0;
    for event in ArchiveReader::new(&bytes[..]).unwrap() {
        if let Event::Document(doc) = event.unwrap() {
            let parsed = mongodb::bson::RawDocument::from_bytes(&doc).unwrap();
            assert!(parsed.iter().all(|e| e.is_ok()));
            documents += 1;
            bytes_seen += doc.len();
        }
    }
    assert_eq!(documents, 1 + 25 + 18);
    assert!(bytes_seen > 0);
}

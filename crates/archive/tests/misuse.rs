//! Every misuse of the writer is refused, before anything is written.

use mongobak_archive::{
    ArchiveHeader, ArchiveWriter, DocumentProblem, MetadataError, NameProblem, Namespace,
    NamespaceKind, NamespaceMeta, WriteError,
};

use crate::util::{header, id_doc, meta};

type Writer = ArchiveWriter<Vec<u8>>;

fn writer(namespaces: &[NamespaceMeta]) -> Writer {
    let mut w = ArchiveWriter::new(Vec::new(), header("7.0.14")).unwrap();
    for m in namespaces {
        w.add_namespace(m.clone()).unwrap();
    }
    w
}

fn coll(db: &str, name: &str) -> NamespaceMeta {
    meta(db, name, NamespaceKind::Collection)
}

/// Runs `f` and checks the error; a refused call must leave the bytes
/// written unchanged.
fn refused(w: &mut Writer, f: impl FnOnce(&mut Writer) -> Result<(), WriteError>) -> WriteError {
    let before = w.bytes_written();
    let err = f(w).expect_err("the call should be refused");
    assert_eq!(
        w.bytes_written(),
        before,
        "a refused call wrote bytes: {err}"
    );
    err
}

#[test]
fn bad_headers() {
    for version in ["unknown", "", "8.0", "v7.0.1", "7.0.x-1"] {
        let err = ArchiveWriter::new(Vec::new(), header(version))
            .err()
            .unwrap();
        assert!(matches!(err, WriteError::InvalidServerVersion(_)), "{err}");
        assert!(err.to_string().contains(version));
    }
    let err = ArchiveWriter::new(
        Vec::new(),
        ArchiveHeader {
            concurrent_collections: 0,
            ..header("7.0.1")
        },
    )
    .err()
    .unwrap();
    assert!(matches!(err, WriteError::InvalidConcurrency { value: 0 }));
}

#[test]
fn bad_prelude_entries() {
    let mut w = writer(&[coll("d", "c")]);
    for db in ["a.b", "a b", "a$b", "a/b", "a\\b", "a\"b", "a\0b"] {
        let err = refused(&mut w, |w| w.add_namespace(coll(db, "c")));
        assert!(
            matches!(
                err,
                WriteError::InvalidDbName {
                    problem: NameProblem::ForbiddenChar(_),
                    ..
                }
            ),
            "{db:?}: {err}"
        );
    }
    let err = refused(&mut w, |w| w.add_namespace(coll(&"x".repeat(64), "c")));
    assert!(matches!(
        err,
        WriteError::InvalidDbName {
            problem: NameProblem::TooLong,
            ..
        }
    ));
    let err = refused(&mut w, |w| w.add_namespace(coll("d", "")));
    assert!(matches!(err, WriteError::InvalidCollectionName { .. }));
    let err = refused(&mut w, |w| w.add_namespace(coll("", "c")));
    assert!(matches!(err, WriteError::InvalidOplogEntry));
    let mut bad_oplog = NamespaceMeta::oplog();
    bad_oplog.kind = NamespaceKind::Collection;
    let err = refused(&mut w, |w| w.add_namespace(bad_oplog));
    assert!(matches!(err, WriteError::InvalidOplogEntry));
    let err = refused(&mut w, |w| w.add_namespace(coll("d", "c")));
    assert!(matches!(err, WriteError::DuplicateNamespace { .. }));

    let mut invalid_json = coll("d", "j");
    invalid_json.metadata_json = r#"{"indexes":[{"key":{"{"a":"b"}":1}}]}"#.into();
    let err = refused(&mut w, |w| w.add_namespace(invalid_json));
    assert!(matches!(
        err,
        WriteError::InvalidMetadata {
            source: MetadataError::InvalidJson { .. },
            ..
        }
    ));
    let mut relaxed_date = coll("d", "r");
    relaxed_date.metadata_json =
        r#"{"options":{"validator":{"d":{"$date":"2020-01-01T00:00:00Z"}}}}"#.into();
    let err = refused(&mut w, |w| w.add_namespace(relaxed_date));
    assert!(matches!(
        err,
        WriteError::InvalidMetadata {
            source: MetadataError::RelaxedDate { .. },
            ..
        }
    ));
    let mut huge = coll("d", "h");
    huge.metadata_json = format!(r#"{{"options":{{"x":"{}"}}}}"#, "a".repeat(16 << 20));
    let err = refused(&mut w, |w| w.add_namespace(huge));
    assert!(matches!(err, WriteError::MetadataTooLarge { .. }));

    // A timeseries X and a collection system.buckets.X share a data namespace.
    let mut w = writer(&[meta("d", "ts", NamespaceKind::Timeseries)]);
    let err = refused(&mut w, |w| w.add_namespace(coll("d", "system.buckets.ts")));
    assert!(matches!(err, WriteError::DuplicateNamespace { .. }));
}

#[test]
fn prelude_closes_at_first_namespace() {
    let mut w = writer(&[coll("d", "a")]);
    w.begin_namespace("d", "a").unwrap();
    w.end_namespace().unwrap();
    let err = refused(&mut w, |w| w.add_namespace(coll("d", "b")));
    assert!(matches!(err, WriteError::PreludeClosed { .. }));
}

#[test]
fn body_order_and_state() {
    let mut w = writer(&[
        coll("d", "a"),
        coll("d", "b"),
        meta("d", "v", NamespaceKind::View),
    ]);
    let err = refused(&mut w, |w| w.write_document(&id_doc(1)));
    assert!(matches!(err, WriteError::NoOpenNamespace));
    let err = refused(&mut w, |w| w.end_namespace().map(|_| ()));
    assert!(matches!(err, WriteError::NoOpenNamespace));
    let err = refused(&mut w, |w| w.begin_namespace("d", "zzz"));
    assert!(matches!(err, WriteError::NotDeclared { hint: None, .. }));

    w.begin_namespace("d", "a").unwrap();
    let err = refused(&mut w, |w| w.begin_namespace("d", "b"));
    assert!(matches!(err, WriteError::NamespaceStillOpen { .. }));
    w.end_namespace().unwrap();
    let err = refused(&mut w, |w| w.begin_namespace("d", "a"));
    assert!(matches!(err, WriteError::AlreadyWritten { .. }));

    w.begin_namespace("d", "v").unwrap();
    let err = refused(&mut w, |w| w.write_document(&id_doc(1)));
    assert!(matches!(err, WriteError::ViewHasDocuments { .. }));
    w.end_namespace().unwrap();

    w.begin_namespace("d", "b").unwrap();
    let err = w.finish().err().unwrap();
    assert!(matches!(err, WriteError::FinishWithOpenNamespace { .. }));

    let w = writer(&[coll("d", "a"), coll("d", "b")]);
    let err = w.finish().err().unwrap();
    match err {
        WriteError::Unwritten { missing } => assert_eq!(missing.len(), 2),
        other => panic!("{other}"),
    }
}

#[test]
fn bad_documents() {
    let mut w = writer(&[coll("d", "a")]);
    w.begin_namespace("d", "a").unwrap();
    let mut too_big = vec![0_u8; (16 << 20) + 1];
    too_big[..4].copy_from_slice(&((16_u32 << 20) + 1).to_le_bytes());
    let mut no_nul = id_doc(1);
    *no_nul.last_mut().unwrap() = 1;
    let mut wrong_length = id_doc(1);
    wrong_length.push(0);
    let cases: Vec<(Vec<u8>, DocumentProblem)> = vec![
        (vec![], DocumentProblem::BadSize(0)),
        (vec![4, 0, 0, 0], DocumentProblem::BadSize(4)),
        (too_big, DocumentProblem::BadSize((16 << 20) + 1)),
        (no_nul, DocumentProblem::NoTrailingNul),
        (
            wrong_length,
            DocumentProblem::LengthMismatch {
                declared: 14,
                actual: 15,
            },
        ),
    ];
    for (doc, expected) in cases {
        let err = refused(&mut w, |w| w.write_document(&doc));
        match err {
            WriteError::InvalidDocument {
                problem, index: 0, ..
            } => assert_eq!(problem, expected),
            other => panic!("{other}"),
        }
    }
    // The largest legal document is accepted.
    let mut max = vec![0_u8; 16 << 20];
    max[..4].copy_from_slice(&(16_u32 << 20).to_le_bytes());
    w.write_document(&max).unwrap();
}

#[test]
fn oplog_comes_last() {
    let mut w = writer(&[NamespaceMeta::oplog(), coll("d", "a"), coll("d", "b")]);
    w.begin_namespace("d", "a").unwrap();
    w.end_namespace().unwrap();
    let err = refused(&mut w, |w| w.begin_namespace("", "oplog"));
    match err {
        WriteError::OplogNotLast { pending } => assert_eq!(pending, [Namespace::new("d", "b")]),
        other => panic!("{other}"),
    }
    w.begin_namespace("d", "b").unwrap();
    w.end_namespace().unwrap();
    w.begin_namespace("", "oplog").unwrap();
    w.write_document(&id_doc(1)).unwrap();
    w.end_namespace().unwrap();
    w.finish().unwrap();

    // Undeclared oplog gets a hint.
    let mut w = writer(&[]);
    let err = refused(&mut w, |w| w.begin_namespace("", "oplog"));
    assert!(matches!(err, WriteError::NotDeclared { hint: Some(_), .. }));
}

#[test]
fn auth_collections_first() {
    let mut w = writer(&[
        coll("admin", "system.version"),
        coll("d", "a"),
        coll("admin", "system.users"),
    ]);
    w.begin_namespace("admin", "system.version").unwrap();
    w.end_namespace().unwrap();
    w.begin_namespace("d", "a").unwrap();
    w.end_namespace().unwrap();
    let err = refused(&mut w, |w| w.begin_namespace("admin", "system.users"));
    assert!(matches!(err, WriteError::AuthNotFirst { .. }));
}

#[test]
fn timeseries_names_get_hints() {
    let mut w = writer(&[meta("d", "ts", NamespaceKind::Timeseries)]);
    let err = refused(&mut w, |w| w.begin_namespace("d", "ts"));
    match &err {
        WriteError::NotDeclared {
            hint: Some(hint), ..
        } => {
            assert!(hint.contains("d.system.buckets.ts"), "{hint}")
        }
        other => panic!("{other}"),
    }
    w.begin_namespace("d", "system.buckets.ts").unwrap();
    w.end_namespace().unwrap();
    w.finish().unwrap();

    let mut w = ArchiveWriter::new(Vec::new(), header("8.3.1")).unwrap();
    w.add_namespace(meta("d", "ts", NamespaceKind::Timeseries))
        .unwrap();
    let err = refused(&mut w, |w| w.begin_namespace("d", "system.buckets.ts"));
    assert!(
        matches!(err, WriteError::NotDeclared { hint: Some(_), .. }),
        "{err}"
    );
    w.begin_namespace("d", "ts").unwrap();
    w.end_namespace().unwrap();
    w.finish().unwrap();

    // Options decide, as in restore: a "collection" with timeseries options.
    let mut w = writer(&[]);
    let mut m = coll("d", "t2");
    m.metadata_json = r#"{"options":{"timeseries":{"timeField":"t"}},"indexes":[]}"#.into();
    w.add_namespace(m.clone()).unwrap();
    assert_eq!(
        w.data_namespace(&m),
        Namespace::new("d", "system.buckets.t2")
    );
    let err = refused(&mut w, |w| w.begin_namespace("d", "t2"));
    assert!(err.to_string().contains("system.buckets.t2"), "{err}");
}

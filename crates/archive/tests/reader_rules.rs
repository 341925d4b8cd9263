//! Each reader rule of `docs/archive-format.md` §1, on hand-built archives.

use mongobak_archive::{ArchiveReader, Namespace, ReadError, ReadErrorKind, MAGIC, TERMINATOR};
use mongodb::bson::rawdoc;

use crate::util::{id_doc, Raw};

fn read(raw: &Raw) -> Result<mongobak_archive::ArchiveSummary, ReadError> {
    ArchiveReader::verify(&raw.0[..])
}

fn fails(raw: &Raw) -> ReadError {
    read(raw).expect_err("the archive should be refused")
}

/// A valid archive with `d.a` (two docs) and its prelude, to break.
fn base() -> Raw {
    let mut raw = Raw::new(1, "7.0.14");
    raw.meta("d", "a", "").term();
    raw
}

#[test]
fn valid_base() {
    let mut raw = base();
    raw.namespace("d", "a", &[id_doc(1), id_doc(2)]);
    let s = read(&raw).unwrap();
    assert_eq!(s.namespaces[0].documents, 2);
}

#[test]
fn not_an_archive() {
    let err = ArchiveReader::new(&b"hello world"[..]).err().unwrap();
    assert!(matches!(
        err.kind,
        ReadErrorKind::NotAnArchive { gzipped: false, .. }
    ));
    let err = ArchiveReader::new(&[0x1f, 0x8b, 8, 0][..]).err().unwrap();
    assert!(err.to_string().contains("gunzip"), "{err}");
    let err = ArchiveReader::new(&[][..]).err().unwrap();
    assert!(matches!(err.kind, ReadErrorKind::Truncated { .. }));
}

#[test]
fn header_rules() {
    // TERM right after MAGIC: the prelude has no header.
    let mut raw = Raw(MAGIC.to_vec());
    raw.term();
    assert!(matches!(fails(&raw).kind, ReadErrorKind::HeaderlessBlock));

    for version in ["unknown", "8.0", ""] {
        let mut raw = Raw::new(1, version);
        raw.term();
        let err = fails(&raw);
        assert!(
            matches!(err.kind, ReadErrorKind::InvalidServerVersion(_)),
            "{err}"
        );
        assert_eq!(err.offset, 4);
    }

    let mut raw = Raw(MAGIC.to_vec());
    raw.doc(&rawdoc! { "concurrent_collections": 1_i64, "server_version": "7.0.0" })
        .term();
    assert!(matches!(
        fails(&raw).kind,
        ReadErrorKind::InvalidHeader { .. }
    ));
}

#[test]
fn prelude_rules() {
    let mut raw = Raw::new(1, "7.0.14");
    raw.meta("a.b", "c", "").term();
    let err = fails(&raw);
    assert!(
        matches!(err.kind, ReadErrorKind::InvalidDbName { .. }),
        "{err}"
    );
    assert_eq!(err.namespace, Some(Namespace::new("a.b", "c")));

    let mut raw = Raw::new(1, "7.0.14");
    raw.meta("d", "", "").term();
    assert!(matches!(
        fails(&raw).kind,
        ReadErrorKind::InvalidCollectionName { .. }
    ));

    let mut raw = Raw::new(1, "7.0.14");
    raw.meta("d", "a", "").meta("d", "a", "").term();
    assert!(matches!(
        fails(&raw).kind,
        ReadErrorKind::DuplicateNamespace
    ));

    let mut raw = Raw::new(1, "7.0.14");
    raw.meta("d", "a", "{not json").term();
    assert!(matches!(
        fails(&raw).kind,
        ReadErrorKind::InvalidMetadata(_)
    ));

    let mut raw = Raw::new(1, "7.0.14");
    raw.doc(&rawdoc! { "db": "d", "collection": 5_i32 }).term();
    assert!(matches!(
        fails(&raw).kind,
        ReadErrorKind::InvalidPreludeEntry { .. }
    ));

    let mut raw = Raw::new(1, "7.0.14");
    raw.doc(
        &rawdoc! { "db": "d", "collection": "c", "metadata": "", "size": 0_i32, "type": "table" },
    )
    .term();
    assert!(matches!(
        fails(&raw).kind,
        ReadErrorKind::InvalidPreludeEntry { .. }
    ));

    // The prelude never ends.
    let mut raw = Raw::new(1, "7.0.14");
    raw.meta("d", "a", "");
    assert!(matches!(fails(&raw).kind, ReadErrorKind::Truncated { .. }));
}

#[test]
fn framing_rules() {
    // Consecutive terminators.
    let mut raw = base();
    raw.term();
    assert!(matches!(fails(&raw).kind, ReadErrorKind::HeaderlessBlock));

    // Lengths outside 5..=16 MiB, zero padding included.
    for length in [0_u32, 4, (16 << 20) + 1, 0xffff_fffe] {
        let mut raw = base();
        raw.ns("d", "a", false, 0)
            .bytes(&length.to_le_bytes())
            .bytes(&[0; 16]);
        let err = fails(&raw);
        assert!(
            matches!(err.kind, ReadErrorKind::BadDocumentLength { length: l } if l == length),
            "{err}"
        );
        assert_eq!(err.namespace, Some(Namespace::new("d", "a")));
    }

    // A document whose last byte is not 0.
    let mut bad = id_doc(1);
    *bad.last_mut().unwrap() = 7;
    let mut raw = base();
    raw.ns("d", "a", false, 0).bytes(&bad).term();
    assert!(matches!(
        fails(&raw).kind,
        ReadErrorKind::MissingDocumentNul
    ));

    // Trailing bytes after the last block.
    let mut raw = base();
    raw.namespace("d", "a", &[]).bytes(&[1, 2]);
    assert!(matches!(
        fails(&raw).kind,
        ReadErrorKind::TrailingBytes { count: 2 }
    ));
}

#[test]
fn namespace_header_rules() {
    let mut raw = base();
    raw.doc(&rawdoc! { "db": "d", "collection": "a", "EOF": false, "CRC": 0_i32 })
        .term();
    let err = fails(&raw);
    assert!(
        matches!(err.kind, ReadErrorKind::InvalidNamespaceHeader { .. }),
        "{err}"
    );

    let mut raw = base();
    raw.doc(&rawdoc! { "db": "d", "collection": "a", "EOF": 0_i32, "CRC": 0_i64 })
        .term();
    assert!(matches!(
        fails(&raw).kind,
        ReadErrorKind::InvalidNamespaceHeader { .. }
    ));

    let mut raw = base();
    raw.doc(&rawdoc! { "db": "d", "collection": "a", "EOF": false, "CRC": 0_i64, "x": 1_i32 })
        .term();
    assert!(matches!(
        fails(&raw).kind,
        ReadErrorKind::InvalidNamespaceHeader { .. }
    ));

    let mut raw = base();
    raw.doc(&rawdoc! { "collection": "a", "db": "d", "EOF": false, "CRC": 0_i64 })
        .term();
    assert!(matches!(
        fails(&raw).kind,
        ReadErrorKind::InvalidNamespaceHeader { .. }
    ));
}

#[test]
fn namespace_rules() {
    // Undeclared namespace.
    let mut raw = base();
    raw.namespace("d", "zzz", &[]);
    let err = fails(&raw);
    assert!(matches!(err.kind, ReadErrorKind::UndeclaredNamespace));
    assert_eq!(err.namespace, Some(Namespace::new("d", "zzz")));

    // A header after EOF.
    let mut raw = base();
    raw.namespace("d", "a", &[]).namespace("d", "a", &[]);
    assert!(matches!(fails(&raw).kind, ReadErrorKind::AfterEof));

    // EOF with no segment.
    let mut raw = base();
    raw.ns("d", "a", true, 0).term();
    assert!(matches!(fails(&raw).kind, ReadErrorKind::EofWithoutSegment));

    // EOF header followed by a document.
    let mut raw = base();
    raw.ns("d", "a", false, 0)
        .term()
        .ns("d", "a", true, 0)
        .bytes(&id_doc(1))
        .term();
    assert!(matches!(fails(&raw).kind, ReadErrorKind::EofNotTerminated));

    // Wrong CRC.
    let mut raw = base();
    raw.ns("d", "a", false, 0)
        .bytes(&id_doc(1))
        .term()
        .ns("d", "a", true, 12345)
        .term();
    let err = fails(&raw);
    assert!(
        matches!(err.kind, ReadErrorKind::CrcMismatch { stored: 12345, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("d.a"));

    // A prelude namespace that never reaches EOF.
    let mut raw = base();
    raw.ns("d", "a", false, 0).bytes(&id_doc(1)).term();
    assert!(matches!(fails(&raw).kind, ReadErrorKind::Unfinished { .. }));
    let raw = base();
    match fails(&raw).kind {
        ReadErrorKind::Unfinished { missing } => assert_eq!(missing, [Namespace::new("d", "a")]),
        other => panic!("{other}"),
    }

    // Truncated inside a segment.
    let mut raw = base();
    raw.ns("d", "a", false, 0).bytes(&id_doc(1)[..7]);
    assert!(matches!(fails(&raw).kind, ReadErrorKind::Truncated { .. }));
}

#[test]
fn interleaving_is_bounded_by_concurrent_collections() {
    let interleaved = |cc: i32| {
        let mut raw = Raw::new(cc, "7.0.14");
        raw.meta("d", "a", "").meta("d", "b", "").term();
        let (a, b) = (id_doc(1), id_doc(2));
        raw.ns("d", "a", false, 0).bytes(&a).term();
        raw.ns("d", "b", false, 0).bytes(&b).term();
        raw.ns("d", "a", false, 0).bytes(&a).term();
        let aa = [a.clone(), a].concat();
        raw.ns("d", "a", true, mongobak_archive::crc64(&aa)).term();
        raw.ns("d", "b", true, mongobak_archive::crc64(&b)).term();
        raw
    };
    let s = read(&interleaved(2)).unwrap();
    assert_eq!(s.namespaces[0].segments, 2);
    assert_eq!(s.namespaces[0].documents, 2);
    let err = fails(&interleaved(1));
    assert!(
        matches!(err.kind, ReadErrorKind::TooManyOpen { open: 2, limit: 1 }),
        "{err}"
    );
}

#[test]
fn oplog_and_auth_order() {
    let mut raw = Raw::new(1, "7.0.14");
    raw.meta("d", "a", "").meta("", "oplog", "").term();
    raw.namespace("", "oplog", &[]).namespace("d", "a", &[]);
    let err = fails(&raw);
    assert!(
        matches!(err.kind, ReadErrorKind::OplogNotLast { .. }),
        "{err}"
    );

    let mut raw = Raw::new(1, "7.0.14");
    raw.meta("d", "a", "")
        .meta("admin", "system.roles", "")
        .term();
    raw.namespace("d", "a", &[])
        .namespace("admin", "system.roles", &[]);
    assert!(matches!(fails(&raw).kind, ReadErrorKind::AuthNotFirst));

    let mut raw = Raw::new(1, "7.0.14");
    raw.meta("d", "a", "")
        .meta("admin", "system.roles", "")
        .meta("", "oplog", "")
        .term();
    raw.namespace("admin", "system.roles", &[])
        .namespace("d", "a", &[])
        .namespace("", "oplog", &[id_doc(1)]);
    read(&raw).unwrap();
}

#[test]
fn errors_after_the_first_end_the_iteration() {
    let mut raw = base();
    raw.term();
    let mut reader = ArchiveReader::new(&raw.0[..]).unwrap();
    assert!(reader.next().unwrap().is_err());
    assert!(reader.next().is_none());
    assert_eq!(&raw.0[raw.0.len() - 4..], &TERMINATOR);
}

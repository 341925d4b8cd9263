//! The worked example of `docs/archive-format.md` §5, byte for byte.

use mongobak_archive::{
    metadata_json, ArchiveHeader, ArchiveReader, ArchiveWriter, NamespaceKind, NamespaceMeta,
};

use crate::util::{id_doc, testdata};

fn write_worked_example() -> Vec<u8> {
    let header = ArchiveHeader {
        concurrent_collections: 1,
        server_version: "7.0.14".into(),
        tool_version: "demo-1.0".into(),
    };
    let id_index: serde_json::Value = serde_json::from_str(
        r#"{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"}"#,
    )
    .unwrap();
    let metadata = metadata_json(
        "foo",
        NamespaceKind::Collection,
        &serde_json::json!({}),
        &[id_index],
        None,
    )
    .unwrap();
    let mut w = ArchiveWriter::new(Vec::new(), header).unwrap();
    w.add_namespace(NamespaceMeta {
        db: "test".into(),
        collection: "foo".into(),
        metadata_json: metadata,
        kind: NamespaceKind::Collection,
    })
    .unwrap();
    w.begin_namespace("test", "foo").unwrap();
    w.write_document(&id_doc(1)).unwrap();
    w.write_document(&id_doc(2)).unwrap();
    let stats = w.end_namespace().unwrap();
    assert_eq!(stats.crc, 0x0F51_DD24_9EE4_2E7D);
    assert_eq!(stats.documents, 2);
    assert_eq!(w.bytes_written(), 474);
    w.finish().unwrap()
}

#[test]
fn writer_reproduces_the_worked_example() {
    let expected = testdata("synthetic/worked-example.archive");
    let written = write_worked_example();
    if written != expected {
        let at = written
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(written.len().min(expected.len()));
        panic!(
            "first difference at byte {at:#x} (written {} bytes, expected {})",
            written.len(),
            expected.len()
        );
    }
}

#[test]
fn reader_reads_the_worked_example() {
    let summary = ArchiveReader::verify(&testdata("synthetic/worked-example.archive")[..]).unwrap();
    assert_eq!(summary.archive_bytes, 474);
    assert_eq!(summary.header.tool_version, "demo-1.0");
    assert_eq!(summary.format_version, "0.1");
    assert_eq!(summary.namespaces.len(), 1);
    assert_eq!(summary.namespaces[0].crc, 0x0F51_DD24_9EE4_2E7D);
    assert_eq!(summary.namespaces[0].document_bytes, 28);
}

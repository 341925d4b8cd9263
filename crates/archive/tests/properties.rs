//! Property tests: the reader never panics, whatever the bytes, and
//! written archives read back unchanged.

use mongobak_archive::{
    crc64, ArchiveReader, ArchiveWriter, Event, Namespace, NamespaceKind, NamespaceMeta,
};
use mongodb::bson::rawdoc;
use proptest::prelude::*;

use crate::util::{header, testdata};

/// Reads everything; returns whether the archive was accepted.
fn read_all(bytes: &[u8]) -> bool {
    match ArchiveReader::new(bytes) {
        Ok(reader) => reader.into_iter().all(|e| e.is_ok()),
        Err(_) => false,
    }
}

fn seeds() -> Vec<Vec<u8>> {
    vec![
        testdata("synthetic/worked-example.archive"),
        testdata("mongo-tools/dump-w-oplog.archive"),
        testdata("mongo-tools/timeseries-dump.archive"),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, xor: u8 },
    Truncate { len: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255_u8).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1..16_usize).prop_map(|(at, len)| Mutation::Remove { at, len }),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let n = bytes.len();
    match m {
        Mutation::Flip { at, xor } => bytes[at % n] ^= xor,
        Mutation::Truncate { len } => bytes.truncate(len % n),
        Mutation::Insert { at, bytes: extra } => {
            let at = at % (n + 1);
            bytes.splice(at..at, extra.iter().copied());
        }
        Mutation::Remove { at, len } => {
            let at = at % n;
            bytes.drain(at..(at + len).min(n));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..512), magic in any::<bool>()) {
        if magic {
            bytes.splice(0..0, mongobak_archive::MAGIC);
        }
        read_all(&bytes);
    }

    #[test]
    fn mutated_archives_never_panic(seed in 0..3_usize, mutations in proptest::collection::vec(mutation(), 1..4)) {
        let mut bytes = seeds().swap_remove(seed);
        for m in &mutations {
            if bytes.is_empty() { break; }
            apply(&mut bytes, m);
        }
        read_all(&bytes);
    }

    #[test]
    fn strict_prefixes_are_refused(seed in 0..3_usize, cut in any::<usize>()) {
        let bytes = seeds().swap_remove(seed);
        let len = cut % bytes.len();
        prop_assert!(!read_all(&bytes[..len]));
    }

    #[test]
    fn documents_inside_a_segment_are_crc_checked(at in any::<usize>(), xor in 1..=255_u8) {
        // Flip a byte after the length prefix of one of the worked
        // example's two documents (at 0x17d and 0x18b, 14 bytes each): the
        // NUL or the CRC check must catch it. (A changed length prefix can
        // legally reframe the same bytes, which restore's parser accepts too.)
        let mut bytes = testdata("synthetic/worked-example.archive");
        let doc = [0x17d, 0x18b][at % 2];
        bytes[doc + 4 + (at / 2) % 10] ^= xor;
        prop_assert!(!read_all(&bytes));
    }

    #[test]
    fn written_archives_read_back(
        namespaces in proptest::collection::vec(
            (("[a-z]{1,8}", "[a-zA-Z0-9_.é ]{1,12}"), proptest::collection::vec(any::<i64>(), 0..40)),
            0..6,
        ),
        segment_limit in 20_usize..400,
    ) {
        let mut unique = std::collections::BTreeMap::new();
        for ((db, coll), values) in namespaces {
            unique.insert(Namespace::new(db, coll), values);
        }
        let mut w = ArchiveWriter::new(Vec::new(), header("6.0.3")).unwrap();
        w.set_segment_limit(segment_limit);
        for ns in unique.keys() {
            w.add_namespace(NamespaceMeta {
                db: ns.db.clone(),
                collection: ns.collection.clone(),
                metadata_json: String::new(),
                kind: NamespaceKind::Collection,
            }).unwrap();
        }
        let mut expected = Vec::new();
        for (ns, values) in &unique {
            w.begin_namespace(&ns.db, &ns.collection).unwrap();
            let docs: Vec<Vec<u8>> = values.iter().map(|v| rawdoc! { "v": *v }.into_bytes()).collect();
            for doc in &docs {
                w.write_document(doc).unwrap();
            }
            let stats = w.end_namespace().unwrap();
            prop_assert_eq!(stats.crc, crc64(&docs.concat()));
            expected.push((ns.clone(), docs));
        }
        let bytes = w.finish().unwrap();

        let mut got: Vec<(Namespace, Vec<Vec<u8>>)> = Vec::new();
        for event in ArchiveReader::new(&bytes[..]).unwrap() {
            match event.unwrap() {
                Event::SegmentStart { namespace } => {
                    if got.last().map(|g| &g.0) != Some(&namespace) {
                        got.push((namespace, Vec::new()));
                    }
                }
                Event::Document(doc) => got.last_mut().unwrap().1.push(doc),
                Event::NamespaceEnd { .. } => {}
            }
        }
        prop_assert_eq!(got, expected);
    }
}

//! Writing and reading segments: runs of BSON documents, zstd-compressed or
//! stored as they are ([`Compression`]).
//!
//! `SegmentSink` takes documents one at a time and streams them into blob
//! storage, starting a new segment when one reaches the configured
//! uncompressed size. Documents are gathered into blocks of `BLOCK_BYTES`,
//! and each block is written whole, by a task beside the reading one:
//! compressed into a zstd frame of its own (a segment is then a run of
//! frames, which is a zstd stream like any other), or as it is. One call per
//! contiguous block keeps zstd on its fastest path (fed document by
//! document, a streaming compressor spends about twice the CPU on the same
//! data, matching across its wrapped window); memory is a few blocks and
//! their compressed forms.
//! [`SegmentReader`] streams the documents of a segment back, fetching the
//! object in ranges and verifying its BLAKE3 at the end, so a reader never
//! trusts a damaged segment. The reader tells a segment's encoding by its
//! name (`.bson.zst` or `.bson`), so backups of either kind read the same.

use bytes::Bytes;
use mongobak_blob::{BlobStore, BlobWriter};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use zstd::stream::raw::{InBuffer, Operation, OutBuffer};

use super::format::{SegmentInfo, SegmentSet};
use crate::DumpError;

/// Uncompressed bytes of documents compressed together into one frame.
pub(crate) const BLOCK_BYTES: usize = 2 << 20;
/// Room for a block and the document that completes it, most of the time.
const BLOCK_CAPACITY: usize = BLOCK_BYTES + (16 << 10);
/// Stored bytes fetched per read when streaming a segment back.
const READ_CHUNK: u64 = 4 << 20;

/// How the documents of a segment are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// zstd at a level: 1 to 19, or one of zstd's fast levels, -1 to -7
    /// (less CPU, larger segments).
    Zstd(i32),
    /// BSON as the server returned it: no compression CPU at all, for a
    /// backup host whose cores are the limit and whose storage is not.
    None,
}

impl Compression {
    /// zstd levels a backup may use.
    pub const ZSTD_LEVELS: std::ops::RangeInclusive<i32> = -7..=19;

    /// The file name extension of a segment so stored.
    fn extension(self) -> &'static str {
        match self {
            Compression::Zstd(_) => ZSTD_EXTENSION,
            Compression::None => PLAIN_EXTENSION,
        }
    }
}

const ZSTD_EXTENSION: &str = ".bson.zst";
const PLAIN_EXTENSION: &str = ".bson";

/// Blocks waiting for a sink's writer task; with the block being filled and
/// the one being stored, a sink holds at most four blocks at once.
const QUEUED_BLOCKS: usize = 2;

/// Streams documents into numbered segments under a folder.
///
/// The documents are gathered into blocks here, in the task that reads them
/// from the server, and a writer task of the sink's own compresses, hashes
/// and stores each block. So the reading task asks the server for the next
/// batch while the last block is being stored, as a bare cursor drain would,
/// and the two halves of the work run on two cores when there are two.
/// Dropping the sink closes the writer's queue: the writer stores what is
/// queued, abandons the open segment and ends. Writers are spawned on a
/// [`TaskTracker`], so a failed backup can wait for every one of them to
/// end before it deletes what they wrote.
pub(crate) struct SegmentSink {
    /// Where the segments go, for errors.
    folder: String,
    max_raw_bytes: u64,
    blocks: mpsc::Sender<Block>,
    writer: JoinHandle<Result<SegmentSet, DumpError>>,
    /// Documents not handed to the writer yet (less than a block).
    block: Vec<u8>,
    /// Documents and BSON bytes of the open segment.
    documents: u64,
    raw_bytes: u64,
}

/// What a sink hands its writer task.
enum Block {
    /// Whole documents of the open segment (opened by the first of them).
    Documents(Vec<u8>),
    /// The open segment ends here, holding so many documents and bytes.
    EndOfSegment { documents: u64, raw_bytes: u64 },
}

impl SegmentSink {
    /// A sink writing `<folder>/s00000.bson.zst`, ... (`.bson` when
    /// uncompressed) with segments of at most `max_raw_bytes` of BSON each
    /// (one document may exceed it), its writer spawned on `writers`. Must
    /// be called within a Tokio runtime.
    pub(crate) fn new(
        store: BlobStore,
        folder: String,
        max_raw_bytes: u64,
        compression: Compression,
        writers: &TaskTracker,
    ) -> Result<Self, DumpError> {
        let compressor = match compression {
            Compression::Zstd(level) => {
                Some(zstd::bulk::Compressor::new(level).map_err(DumpError::Compression)?)
            }
            Compression::None => None,
        };
        let (blocks, queue) = mpsc::channel(QUEUED_BLOCKS);
        let writer = SegmentWriter {
            store,
            folder: folder.clone(),
            extension: compression.extension(),
            compressor,
            set: SegmentSet::default(),
        };
        Ok(SegmentSink {
            folder,
            max_raw_bytes,
            blocks,
            writer: writers.spawn(writer.run(queue)),
            block: Vec::with_capacity(BLOCK_CAPACITY),
            documents: 0,
            raw_bytes: 0,
        })
    }

    /// Appends one BSON document.
    pub(crate) async fn push(&mut self, document: &[u8]) -> Result<(), DumpError> {
        self.block.extend_from_slice(document);
        self.documents += 1;
        self.raw_bytes += document.len() as u64;
        if self.raw_bytes >= self.max_raw_bytes {
            self.end_segment().await?;
        } else if self.block.len() >= BLOCK_BYTES {
            self.hand_over_block().await?;
        }
        Ok(())
    }

    async fn hand_over_block(&mut self) -> Result<(), DumpError> {
        if self.block.is_empty() {
            return Ok(());
        }
        let block = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK_CAPACITY));
        self.send(Block::Documents(block)).await
    }

    async fn end_segment(&mut self) -> Result<(), DumpError> {
        if self.documents == 0 {
            return Ok(());
        }
        self.hand_over_block().await?;
        let end = Block::EndOfSegment {
            documents: std::mem::take(&mut self.documents),
            raw_bytes: std::mem::take(&mut self.raw_bytes),
        };
        self.send(end).await
    }

    async fn send(&mut self, block: Block) -> Result<(), DumpError> {
        if self.blocks.send(block).await.is_ok() {
            return Ok(());
        }
        // The writer stopped on an error, which says why.
        match (&mut self.writer).await {
            Ok(Err(e)) => Err(e),
            Ok(Ok(_)) => unreachable!("the writer runs until the sink closes its queue"),
            Err(e) => Err(self.writer_ended(e)),
        }
    }

    /// Closes the last segment and describes what was written.
    pub(crate) async fn finish(mut self) -> Result<SegmentSet, DumpError> {
        self.end_segment().await?;
        let SegmentSink {
            blocks,
            writer,
            folder,
            ..
        } = self;
        drop(blocks);
        writer.await.map_err(|e| DumpError::WriterFailed {
            folder,
            detail: e.to_string(),
        })?
    }

    fn writer_ended(&self, e: tokio::task::JoinError) -> DumpError {
        DumpError::WriterFailed {
            folder: self.folder.clone(),
            detail: e.to_string(),
        }
    }
}

/// The half of a sink that stores blocks, in a task of its own.
struct SegmentWriter {
    store: BlobStore,
    folder: String,
    extension: &'static str,
    /// `None` when segments are stored uncompressed.
    compressor: Option<zstd::bulk::Compressor<'static>>,
    set: SegmentSet,
}

/// The segment a writer is storing.
struct OpenSegment {
    path: String,
    writer: BlobWriter,
    hasher: blake3::Hasher,
}

impl SegmentWriter {
    async fn run(mut self, mut queue: mpsc::Receiver<Block>) -> Result<SegmentSet, DumpError> {
        let mut open: Option<OpenSegment> = None;
        while let Some(block) = queue.recv().await {
            match block {
                Block::Documents(documents) => {
                    let segment = match &mut open {
                        Some(segment) => segment,
                        None => open.insert(self.open_segment().await?),
                    };
                    let stored = match &mut self.compressor {
                        Some(compressor) => compressor
                            .compress(&documents)
                            .map_err(DumpError::Compression)?,
                        None => documents,
                    };
                    segment.hasher.update(&stored);
                    segment.writer.write(stored).await?;
                }
                Block::EndOfSegment {
                    documents,
                    raw_bytes,
                } => {
                    let mut segment = open.take().expect("a segment ends after its documents");
                    let stored_bytes = segment.writer.close().await?;
                    self.set.documents += documents;
                    self.set.raw_bytes += raw_bytes;
                    self.set.stored_bytes += stored_bytes;
                    self.set.segments.push(SegmentInfo {
                        path: segment.path,
                        documents,
                        raw_bytes,
                        stored_bytes,
                        blake3: Some(segment.hasher.finalize().to_hex().to_string()),
                        sha256: None,
                    });
                }
            }
        }
        Ok(self.set)
    }

    async fn open_segment(&self) -> Result<OpenSegment, DumpError> {
        let path = format!(
            "{}/s{:05}{}",
            self.folder,
            self.set.segments.len(),
            self.extension
        );
        Ok(OpenSegment {
            writer: self.store.writer(&path).await?,
            path,
            hasher: blake3::Hasher::new(),
        })
    }
}

/// Streams the BSON documents of a [`SegmentSet`] back out of storage.
pub struct SegmentReader {
    store: BlobStore,
    segments: std::vec::IntoIter<SegmentInfo>,
    current: Option<OpenRead>,
    /// Decompressed bytes; those from `taken` on are not yet returned as
    /// documents. Documents are taken by moving `taken` forward, and the
    /// buffer is compacted only when it is refilled: splitting each one off
    /// the front would move the rest of the buffer once per document.
    pending: Vec<u8>,
    taken: usize,
}

struct OpenRead {
    info: SegmentInfo,
    offset: u64,
    digest: SegmentDigest,
    /// `None` for an uncompressed segment.
    decoder: Option<zstd::stream::raw::Decoder<'static>>,
    documents: u64,
}

impl SegmentReader {
    /// A reader of every document of `set`, in order.
    pub fn new(store: BlobStore, set: &SegmentSet) -> Self {
        SegmentReader {
            store,
            segments: set.segments.clone().into_iter(),
            current: None,
            pending: Vec::new(),
            taken: 0,
        }
    }

    /// The next document, or `None` after the last one.
    pub async fn next_document(&mut self) -> Result<Option<Vec<u8>>, DumpError> {
        loop {
            if let Some(document) = self.take_document()? {
                return Ok(Some(document));
            }
            if self.current.is_none() {
                let Some(info) = self.segments.next() else {
                    return Ok(None);
                };
                let decoder = if info.path.ends_with(ZSTD_EXTENSION) {
                    Some(zstd::stream::raw::Decoder::new().map_err(DumpError::Compression)?)
                } else if info.path.ends_with(PLAIN_EXTENSION) {
                    None
                } else {
                    return Err(DumpError::Corrupt {
                        path: info.path,
                        detail: format!(
                            "its name ends in neither {ZSTD_EXTENSION} nor {PLAIN_EXTENSION}"
                        ),
                    });
                };
                let Some(digest) = SegmentDigest::for_segment(&info) else {
                    return Err(DumpError::Corrupt {
                        path: info.path,
                        detail: "the manifest gives no digest of it".into(),
                    });
                };
                self.current = Some(OpenRead {
                    info,
                    offset: 0,
                    digest,
                    decoder,
                    documents: 0,
                });
            }
            self.fill().await?;
        }
    }

    /// Takes one whole document off the front of the unread bytes.
    fn take_document(&mut self) -> Result<Option<Vec<u8>>, DumpError> {
        let unread = &self.pending[self.taken..];
        if unread.len() < 4 {
            return Ok(None);
        }
        let len = i32::from_le_bytes(unread[..4].try_into().expect("4 bytes")) as usize;
        if len < 5 {
            let path = self
                .current
                .as_ref()
                .map_or_else(String::new, |c| c.info.path.clone());
            return Err(DumpError::Corrupt {
                path,
                detail: format!("a document claims a length of {len} bytes"),
            });
        }
        if unread.len() < len {
            return Ok(None);
        }
        let document = unread[..len].to_vec();
        self.taken += len;
        if let Some(current) = &mut self.current {
            current.documents += 1;
        }
        Ok(Some(document))
    }

    /// Reads and decompresses the next chunk of the open segment, closing it
    /// (and checking its digest and count) at its end.
    async fn fill(&mut self) -> Result<(), DumpError> {
        let current = self.current.as_mut().expect("a segment is open");
        let remaining = current.info.stored_bytes - current.offset;
        if remaining == 0 {
            let current = self.current.take().expect("a segment is open");
            if let Err(algorithm) = current.digest.check(&current.info) {
                return Err(DumpError::Corrupt {
                    path: current.info.path,
                    detail: format!("its {algorithm} does not match the manifest"),
                });
            }
            // Segments hold whole documents: nothing may be left over.
            if self.pending.len() > self.taken {
                return Err(DumpError::Corrupt {
                    path: current.info.path,
                    detail: "it ends inside a document".into(),
                });
            }
            if current.documents != current.info.documents {
                return Err(DumpError::Corrupt {
                    path: current.info.path,
                    detail: format!(
                        "it holds {} documents, the manifest says {}",
                        current.documents, current.info.documents
                    ),
                });
            }
            return Ok(());
        }
        // What was taken goes; the unread rest moves to the front once.
        self.pending.drain(..self.taken);
        self.taken = 0;
        let len = remaining.min(READ_CHUNK);
        let chunk: Bytes = self
            .store
            .get_range(&current.info.path, current.offset, len)
            .await?;
        current.offset += chunk.len() as u64;
        current.digest.update(&chunk);
        let Some(decoder) = current.decoder.as_mut() else {
            self.pending.extend_from_slice(&chunk);
            return Ok(());
        };
        let mut input = InBuffer::around(&chunk);
        let mut out = vec![0u8; 1 << 17];
        while input.pos < chunk.len() {
            let mut output = OutBuffer::around(&mut out[..]);
            decoder
                .run(&mut input, &mut output)
                .map_err(DumpError::Compression)?;
            let produced = output.pos();
            self.pending.extend_from_slice(&out[..produced]);
        }
        // Drain what the decoder still holds for this input.
        loop {
            let mut output = OutBuffer::around(&mut out[..]);
            let mut empty = InBuffer::around(&[]);
            decoder
                .run(&mut empty, &mut output)
                .map_err(DumpError::Compression)?;
            let produced = output.pos();
            if produced == 0 {
                break;
            }
            self.pending.extend_from_slice(&out[..produced]);
        }
        Ok(())
    }
}

/// The digest a reader checks a segment against: BLAKE3, or SHA-256 for
/// segments written before BLAKE3.
enum SegmentDigest {
    Blake3(Box<blake3::Hasher>),
    Sha256(Sha256),
}

impl SegmentDigest {
    fn for_segment(info: &SegmentInfo) -> Option<Self> {
        if info.blake3.is_some() {
            Some(SegmentDigest::Blake3(Box::default()))
        } else if info.sha256.is_some() {
            Some(SegmentDigest::Sha256(Sha256::new()))
        } else {
            None
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            SegmentDigest::Blake3(hasher) => {
                hasher.update(bytes);
            }
            SegmentDigest::Sha256(hasher) => hasher.update(bytes),
        }
    }

    /// Compares with the manifest; the error names the algorithm.
    fn check(self, info: &SegmentInfo) -> Result<(), &'static str> {
        let (algorithm, actual, expected) = match self {
            SegmentDigest::Blake3(hasher) => (
                "BLAKE3",
                hasher.finalize().to_hex().to_string(),
                &info.blake3,
            ),
            SegmentDigest::Sha256(hasher) => {
                ("SHA-256", hex::encode(hasher.finalize()), &info.sha256)
            }
        };
        if expected.as_deref() == Some(actual.as_str()) {
            Ok(())
        } else {
            Err(algorithm)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{doc, RawDocumentBuf};

    fn store(dir: &tempfile::TempDir) -> BlobStore {
        BlobStore::open(&format!("file://{}/b", dir.path().display())).unwrap()
    }

    fn document(i: u64, pad: usize) -> Vec<u8> {
        RawDocumentBuf::from_document(&doc! {"_id": i as i64, "pad": "x".repeat(pad)})
            .unwrap()
            .into_bytes()
    }

    /// Reads every document of `set` until the first error.
    async fn read_all(store: BlobStore, set: &SegmentSet) -> Result<Vec<Vec<u8>>, DumpError> {
        let mut reader = SegmentReader::new(store, set);
        let mut back = Vec::new();
        while let Some(d) = reader.next_document().await? {
            back.push(d);
        }
        Ok(back)
    }

    /// A segment larger than a block is a run of zstd frames; read back
    /// whole, by the reader and by a plain zstd decoder alike.
    #[tokio::test]
    async fn a_segment_of_several_frames() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let mut sink = SegmentSink::new(
            s.clone(),
            "f".into(),
            64 << 20,
            Compression::Zstd(1),
            &TaskTracker::new(),
        )
        .unwrap();
        let docs: Vec<Vec<u8>> = (0..700).map(|i| document(i, 10_000)).collect();
        for d in &docs {
            sink.push(d).await.unwrap();
        }
        let set = sink.finish().await.unwrap();
        assert_eq!(set.segments.len(), 1);
        let raw: Vec<u8> = docs.concat();
        assert!(raw.len() > 3 * BLOCK_BYTES);
        let stored = s.get(&set.segments[0].path).await.unwrap();
        assert_eq!(zstd::decode_all(&stored[..]).unwrap(), raw);
        assert_eq!(read_all(s, &set).await.unwrap(), docs);
    }

    /// Every encoding a sink writes.
    const ENCODINGS: [Compression; 3] = [
        Compression::Zstd(3),
        Compression::Zstd(-5),
        Compression::None,
    ];

    #[tokio::test]
    async fn round_trip_across_segments() {
        for compression in ENCODINGS {
            let dir = tempfile::tempdir().unwrap();
            let s = store(&dir);
            let mut sink = SegmentSink::new(
                s.clone(),
                "bk/rs/c0000".into(),
                300_000,
                compression,
                &TaskTracker::new(),
            )
            .unwrap();
            let docs: Vec<Vec<u8>> = (0..3000).map(|i| document(i, (i % 500) as usize)).collect();
            for d in &docs {
                sink.push(d).await.unwrap();
            }
            let set = sink.finish().await.unwrap();
            assert!(set.segments.len() > 1, "rolls over: {set:?}");
            assert_eq!(set.documents, 3000);
            let raw_bytes = docs.iter().map(|d| d.len() as u64).sum::<u64>();
            assert_eq!(set.raw_bytes, raw_bytes);
            match compression {
                Compression::None => {
                    assert!(set.segments[0].path.ends_with("/s00000.bson"), "{set:?}");
                    assert_eq!(set.stored_bytes, raw_bytes);
                    let stored = s.get(&set.segments[0].path).await.unwrap();
                    assert_eq!(stored, docs.concat()[..stored.len()]);
                }
                Compression::Zstd(_) => {
                    assert!(
                        set.segments[0].path.ends_with("/s00000.bson.zst"),
                        "{set:?}"
                    );
                    assert!(set.stored_bytes < raw_bytes / 2, "{set:?}");
                }
            }
            assert_eq!(read_all(s, &set).await.unwrap(), docs, "{compression:?}");
        }
    }

    #[tokio::test]
    async fn empty_set_has_no_segments() {
        let dir = tempfile::tempdir().unwrap();
        let set = SegmentSink::new(
            store(&dir),
            "x".into(),
            1 << 20,
            Compression::Zstd(3),
            &TaskTracker::new(),
        )
        .unwrap()
        .finish()
        .await
        .unwrap();
        assert_eq!(set, SegmentSet::default());
        let mut reader = SegmentReader::new(store(&dir), &set);
        assert_eq!(reader.next_document().await.unwrap(), None);
    }

    #[tokio::test]
    async fn damaged_segments_are_refused() {
        for compression in ENCODINGS {
            let dir = tempfile::tempdir().unwrap();
            let s = store(&dir);
            let mut sink = SegmentSink::new(
                s.clone(),
                "d".into(),
                1 << 20,
                compression,
                &TaskTracker::new(),
            )
            .unwrap();
            for i in 0..10 {
                sink.push(&document(i, 10)).await.unwrap();
            }
            let set = sink.finish().await.unwrap();
            assert_eq!(read_all(s.clone(), &set).await.unwrap().len(), 10);

            let mut wrong_digest = set.clone();
            wrong_digest.segments[0].blake3 = Some("0".repeat(64));
            let mut wrong_count = set.clone();
            wrong_count.segments[0].documents = 11;
            let mut unknown_encoding = set.clone();
            unknown_encoding.segments[0].path.push_str(".gz");
            let mut no_digest = set.clone();
            no_digest.segments[0].blake3 = None;
            // Segments of backups taken before BLAKE3 carry a SHA-256.
            let stored = s.get(&set.segments[0].path).await.unwrap();
            let mut sha256_era = set.clone();
            sha256_era.segments[0].blake3 = None;
            sha256_era.segments[0].sha256 = Some(hex::encode(Sha256::digest(&stored)));
            assert_eq!(read_all(s.clone(), &sha256_era).await.unwrap().len(), 10);
            let mut wrong_sha256 = sha256_era.clone();
            wrong_sha256.segments[0].sha256 = Some("0".repeat(64));
            for damaged in [
                wrong_digest,
                wrong_count,
                unknown_encoding,
                no_digest,
                wrong_sha256,
            ] {
                let outcome = read_all(s.clone(), &damaged).await;
                assert!(
                    matches!(outcome, Err(DumpError::Corrupt { .. })),
                    "{compression:?}: {outcome:?}"
                );
            }
        }
    }
}

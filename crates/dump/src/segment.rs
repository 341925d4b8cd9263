//! Writing and reading segments: zstd-compressed runs of BSON documents.
//!
//! [`SegmentSink`] takes documents one at a time and streams them, compressed,
//! into blob storage, starting a new segment when one reaches the configured
//! uncompressed size. Documents are gathered into blocks of [`BLOCK_BYTES`],
//! and each block is compressed whole into a zstd frame of its own: a
//! segment is a run of frames, which is a zstd stream like any other. One
//! call per contiguous block keeps zstd on its fastest path (fed document
//! by document, a streaming compressor spends about twice the CPU on the
//! same data, matching across its wrapped window); memory is about one
//! block and its compressed form.
//! [`SegmentReader`] streams the documents of a segment back, fetching the
//! object in ranges and verifying its SHA-256 at the end, so a reader never
//! trusts a damaged segment.

use bytes::Bytes;
use mongobak_blob::{BlobStore, BlobWriter};
use sha2::{Digest, Sha256};
use zstd::stream::raw::{InBuffer, Operation, OutBuffer};

use crate::format::{SegmentInfo, SegmentSet};
use crate::DumpError;

/// Uncompressed bytes of documents compressed together into one frame.
pub(crate) const BLOCK_BYTES: usize = 2 << 20;
/// Compressed bytes fetched per read when streaming a segment back.
const READ_CHUNK: u64 = 4 << 20;

/// Streams documents into numbered segments under a folder.
pub(crate) struct SegmentSink {
    store: BlobStore,
    folder: String,
    max_raw_bytes: u64,
    compressor: zstd::bulk::Compressor<'static>,
    open: Option<OpenSegment>,
    set: SegmentSet,
}

struct OpenSegment {
    path: String,
    writer: BlobWriter,
    /// Documents not compressed yet (less than a block).
    block: Vec<u8>,
    hasher: Sha256,
    documents: u64,
    raw_bytes: u64,
}

impl SegmentSink {
    /// A sink writing `<folder>/s00000.bson.zst`, ... with segments of at
    /// most `max_raw_bytes` of BSON each (one document may exceed it).
    pub(crate) fn new(
        store: BlobStore,
        folder: String,
        max_raw_bytes: u64,
        level: i32,
    ) -> Result<Self, DumpError> {
        Ok(SegmentSink {
            store,
            folder,
            max_raw_bytes,
            compressor: zstd::bulk::Compressor::new(level).map_err(DumpError::Compression)?,
            open: None,
            set: SegmentSet::default(),
        })
    }

    /// Compresses the open segment's block into a frame and writes it.
    async fn flush_block(&mut self) -> Result<(), DumpError> {
        let Some(segment) = self.open.as_mut() else {
            return Ok(());
        };
        if segment.block.is_empty() {
            return Ok(());
        }
        let frame = self
            .compressor
            .compress(&segment.block)
            .map_err(DumpError::Compression)?;
        segment.block.clear();
        segment.hasher.update(&frame);
        segment.writer.write(frame).await?;
        Ok(())
    }

    /// Appends one BSON document.
    pub(crate) async fn push(&mut self, document: &[u8]) -> Result<(), DumpError> {
        if self.open.is_none() {
            let path = format!("{}/s{:05}.bson.zst", self.folder, self.set.segments.len());
            let writer = self.store.writer(&path).await?;
            self.open = Some(OpenSegment {
                path,
                writer,
                block: Vec::with_capacity(BLOCK_BYTES + (16 << 10)),
                hasher: Sha256::new(),
                documents: 0,
                raw_bytes: 0,
            });
        }
        let segment = self.open.as_mut().expect("opened above");
        segment.block.extend_from_slice(document);
        segment.documents += 1;
        segment.raw_bytes += document.len() as u64;
        let (block_full, segment_full) = (
            segment.block.len() >= BLOCK_BYTES,
            segment.raw_bytes >= self.max_raw_bytes,
        );
        if segment_full {
            self.close_segment().await?;
        } else if block_full {
            self.flush_block().await?;
        }
        Ok(())
    }

    async fn close_segment(&mut self) -> Result<(), DumpError> {
        self.flush_block().await?;
        let Some(mut segment) = self.open.take() else {
            return Ok(());
        };
        let stored_bytes = segment.writer.close().await?;
        self.set.documents += segment.documents;
        self.set.raw_bytes += segment.raw_bytes;
        self.set.stored_bytes += stored_bytes;
        self.set.segments.push(SegmentInfo {
            path: segment.path,
            documents: segment.documents,
            raw_bytes: segment.raw_bytes,
            stored_bytes,
            sha256: hex::encode(segment.hasher.finalize()),
        });
        Ok(())
    }

    /// Closes the last segment and describes what was written.
    pub(crate) async fn finish(mut self) -> Result<SegmentSet, DumpError> {
        self.close_segment().await?;
        Ok(self.set)
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
    hasher: Sha256,
    decoder: zstd::stream::raw::Decoder<'static>,
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
                self.current = Some(OpenRead {
                    info,
                    offset: 0,
                    hasher: Sha256::new(),
                    decoder: zstd::stream::raw::Decoder::new().map_err(DumpError::Compression)?,
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
            let digest = hex::encode(current.hasher.finalize());
            if digest != current.info.sha256 {
                return Err(DumpError::Corrupt {
                    path: current.info.path,
                    detail: "its SHA-256 does not match the manifest".into(),
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
        current.hasher.update(&chunk);
        let mut input = InBuffer::around(&chunk);
        let mut out = vec![0u8; 1 << 17];
        while input.pos < chunk.len() {
            let mut output = OutBuffer::around(&mut out[..]);
            current
                .decoder
                .run(&mut input, &mut output)
                .map_err(DumpError::Compression)?;
            let produced = output.pos();
            self.pending.extend_from_slice(&out[..produced]);
        }
        // Drain what the decoder still holds for this input.
        loop {
            let mut output = OutBuffer::around(&mut out[..]);
            let mut empty = InBuffer::around(&[]);
            current
                .decoder
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

    /// A segment larger than a block is a run of zstd frames; read back
    /// whole, by the reader and by a plain zstd decoder alike.
    #[tokio::test]
    async fn a_segment_of_several_frames() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let mut sink = SegmentSink::new(s.clone(), "f".into(), 64 << 20, 1).unwrap();
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
        let mut reader = SegmentReader::new(s, &set);
        let mut back = Vec::new();
        while let Some(d) = reader.next_document().await.unwrap() {
            back.push(d);
        }
        assert_eq!(back, docs);
    }

    #[tokio::test]
    async fn round_trip_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let mut sink = SegmentSink::new(s.clone(), "bk/rs/c0000".into(), 300_000, 3).unwrap();
        let docs: Vec<Vec<u8>> = (0..3000).map(|i| document(i, (i % 500) as usize)).collect();
        for d in &docs {
            sink.push(d).await.unwrap();
        }
        let set = sink.finish().await.unwrap();
        assert!(
            set.segments.len() > 1,
            "rolls over: {:?}",
            set.segments.len()
        );
        assert_eq!(set.documents, 3000);
        assert_eq!(
            set.raw_bytes,
            docs.iter().map(|d| d.len() as u64).sum::<u64>()
        );
        let mut reader = SegmentReader::new(s, &set);
        let mut back = Vec::new();
        while let Some(d) = reader.next_document().await.unwrap() {
            back.push(d);
        }
        assert_eq!(back, docs);
    }

    #[tokio::test]
    async fn empty_set_has_no_segments() {
        let dir = tempfile::tempdir().unwrap();
        let set = SegmentSink::new(store(&dir), "x".into(), 1 << 20, 3)
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
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let mut sink = SegmentSink::new(s.clone(), "d".into(), 1 << 20, 3).unwrap();
        for i in 0..10 {
            sink.push(&document(i, 10)).await.unwrap();
        }
        let mut set = sink.finish().await.unwrap();
        let mut wrong_digest = set.clone();
        wrong_digest.segments[0].sha256 = "0".repeat(64);
        let mut reader = SegmentReader::new(s.clone(), &wrong_digest);
        let mut outcome = Ok(Some(Vec::new()));
        while let Ok(Some(_)) = outcome {
            outcome = reader.next_document().await;
        }
        assert!(
            matches!(outcome, Err(DumpError::Corrupt { .. })),
            "{outcome:?}"
        );
        set.segments[0].documents = 11;
        let mut reader = SegmentReader::new(s, &set);
        let mut outcome = Ok(Some(Vec::new()));
        while let Ok(Some(_)) = outcome {
            outcome = reader.next_document().await;
        }
        assert!(
            matches!(outcome, Err(DumpError::Corrupt { .. })),
            "{outcome:?}"
        );
    }
}

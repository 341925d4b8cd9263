//! The reading side of a restore, run on a blocking thread: detects gzip,
//! reads and verifies the archive with [`ArchiveReader`] (framing, CRCs,
//! namespace order), and hands batches of documents to the async side
//! through a bounded channel, so at most a few batches are in memory.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use mongobak_archive::{
    gunzip, ArchiveHeader, ArchiveReader, Event, Namespace, NamespaceMeta, ReadError,
};
use mongodb::bson::RawDocumentBuf;
use tokio::sync::mpsc;

/// What the reader tells the restore, in archive order.
#[derive(Debug)]
pub(crate) enum Msg {
    /// The header and the prelude, each entry with its data namespace.
    Prelude {
        header: ArchiveHeader,
        namespaces: Vec<(NamespaceMeta, Namespace)>,
    },
    /// The first segment of a data namespace starts.
    Begin(Namespace),
    /// Documents of a data namespace.
    Batch {
        namespace: Namespace,
        documents: Vec<RawDocumentBuf>,
    },
    /// A data namespace reached its EOF block (CRC checked).
    End(Namespace),
    /// The archive ended where it may.
    Done,
}

/// Why the reader stopped early.
#[derive(Debug)]
pub(crate) enum ReaderStop {
    /// The archive is invalid.
    Read(ReadError),
    /// The restore stopped listening.
    Cancelled,
    /// A document the driver cannot hold.
    Document(String),
}

/// Batch limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) documents: usize,
    pub(crate) bytes: usize,
}

/// Counts the bytes read from the input (the file as given: compressed
/// for a gzipped archive), for progress against the file size.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Reads the whole archive into `tx`.
pub(crate) fn read_archive<R: Read>(
    input: R,
    count: Arc<AtomicU64>,
    tx: mpsc::Sender<Msg>,
    limits: Limits,
) -> Result<(), ReaderStop> {
    let mut buffered = BufReader::with_capacity(
        256 * 1024,
        Counting {
            inner: input,
            count,
        },
    );
    let gzipped = {
        let head = buffered
            .fill_buf()
            .map_err(|e| ReaderStop::Read(io_error(e)))?;
        head.starts_with(&[0x1f, 0x8b])
    };
    let source: Box<dyn Read> = if gzipped {
        Box::new(gunzip(buffered))
    } else {
        Box::new(buffered)
    };
    let mut reader = ArchiveReader::new(source).map_err(ReaderStop::Read)?;
    let namespaces = reader
        .prelude()
        .iter()
        .cloned()
        .zip(reader.data_namespaces().cloned())
        .collect();
    let send = |msg: Msg| tx.blocking_send(msg).map_err(|_| ReaderStop::Cancelled);
    send(Msg::Prelude {
        header: reader.header().clone(),
        namespaces,
    })?;

    let mut pending: HashMap<Namespace, (Vec<RawDocumentBuf>, usize)> = HashMap::new();
    let mut current: Option<Namespace> = None;
    let flush = |namespace: &Namespace,
                 batch: &mut (Vec<RawDocumentBuf>, usize)|
     -> Result<(), ReaderStop> {
        if batch.0.is_empty() {
            return Ok(());
        }
        let documents = std::mem::take(&mut batch.0);
        batch.1 = 0;
        send(Msg::Batch {
            namespace: namespace.clone(),
            documents,
        })
    };
    while let Some(event) = reader.next_event().map_err(ReaderStop::Read)? {
        match event {
            Event::SegmentStart { namespace } => {
                if !pending.contains_key(&namespace) {
                    pending.insert(namespace.clone(), (Vec::new(), 0));
                    send(Msg::Begin(namespace.clone()))?;
                }
                current = Some(namespace);
            }
            Event::Document(bytes) => {
                let Some(namespace) = &current else {
                    return Err(ReaderStop::Document("a document outside a segment".into()));
                };
                let size = bytes.len();
                let document = RawDocumentBuf::from_bytes(bytes)
                    .map_err(|e| ReaderStop::Document(format!("{namespace}: {e}")))?;
                let batch = pending.get_mut(namespace).expect("opened by its segment");
                if !batch.0.is_empty()
                    && (batch.0.len() >= limits.documents || batch.1 + size > limits.bytes)
                {
                    flush(namespace, batch)?;
                }
                batch.0.push(document);
                batch.1 += size;
            }
            Event::NamespaceEnd { namespace, .. } => {
                if let Some(mut batch) = pending.remove(&namespace) {
                    flush(&namespace, &mut batch)?;
                }
                // Keep a marker so a namespace is announced only once.
                pending.insert(namespace.clone(), (Vec::new(), 0));
                current = None;
                send(Msg::End(namespace))?;
            }
        }
    }
    send(Msg::Done)
}

fn io_error(e: io::Error) -> ReadError {
    ReadError {
        offset: 0,
        namespace: None,
        kind: mongobak_archive::ReadErrorKind::Io(e),
    }
}

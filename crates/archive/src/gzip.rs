//! gzip for `--archive --gzip` (1.6): the whole archive stream, MAGIC
//! included, goes through one gzip writer; restore reads it with Go's
//! `compress/gzip`, which accepts concatenated members.
//!
//! [`GzipWriter`] has two modes:
//! - [`GzipWriter::new`]: one member on the calling thread, as mongodump
//!   writes it (flate2 on zlib-rs).
//! - [`GzipWriter::parallel`]: the stream is cut into members of
//!   [`DEFAULT_MEMBER_SIZE`] input bytes, compressed independently on
//!   worker threads and written in order by the calling thread. The bytes
//!   depend on the level and member size only, not on the thread count.
//!   Each member restarts the 32 KiB deflate window, which costs little at
//!   1 MiB per member.
//!
//! Both keep memory bounded: the parallel mode holds at most
//! `2 * threads + 1` members in flight.

use std::collections::VecDeque;
use std::io::{self, BufWriter, Read, Write};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::write::GzEncoder;
use flate2::Compression;

/// Input bytes per member in the parallel mode.
pub const DEFAULT_MEMBER_SIZE: usize = 1024 * 1024;

/// Input batched before deflate in the single-member mode.
const SINGLE_INPUT_BUFFER: usize = 256 * 1024;

/// Default compression level, the one mongodump uses (Go's default, 6).
pub const DEFAULT_LEVEL: u32 = 6;

/// A gzip-compressing [`Write`] adapter; see the module docs.
///
/// Call [`finish`](Self::finish): it writes the last member's trailer and
/// returns the sink. Dropping the writer without it leaves the output
/// incomplete.
pub struct GzipWriter<W: Write> {
    inner: Inner<W>,
}

enum Inner<W: Write> {
    // The archive writer issues one write per document; batching them
    // before deflate is much faster than feeding deflate small pieces.
    Single(BufWriter<GzEncoder<W>>),
    Members(Members<W>),
}

impl<W: Write> GzipWriter<W> {
    /// One gzip member over the whole stream, compressed on the calling
    /// thread. `level` is 0..=9 (higher values are taken as 9). The header
    /// is Go's: `1f 8b 08 00 00000000 00 ff` at the default level.
    pub fn new(sink: W, level: u32) -> Self {
        GzipWriter {
            inner: Inner::Single(BufWriter::with_capacity(
                SINGLE_INPUT_BUFFER,
                GzEncoder::new(sink, compression(level)),
            )),
        }
    }

    /// Independent members of [`DEFAULT_MEMBER_SIZE`] input bytes,
    /// compressed on `threads` worker threads (`0`: one per available
    /// core; `1`: on the calling thread, same bytes).
    pub fn parallel(sink: W, level: u32, threads: usize) -> Self {
        Self::members(sink, level, threads, DEFAULT_MEMBER_SIZE)
    }

    /// [`parallel`](Self::parallel) with a chosen member size (at least 1).
    pub fn members(sink: W, level: u32, threads: usize, member_size: usize) -> Self {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        GzipWriter {
            inner: Inner::Members(Members::new(
                sink,
                compression(level),
                threads,
                member_size.max(1),
            )),
        }
    }

    /// The sink.
    pub fn get_ref(&self) -> &W {
        match &self.inner {
            Inner::Single(encoder) => encoder.get_ref().get_ref(),
            Inner::Members(members) => &members.sink,
        }
    }

    /// Compresses what is buffered, writes the trailer, flushes and
    /// returns the sink.
    pub fn finish(self) -> io::Result<W> {
        match self.inner {
            Inner::Single(buffered) => {
                let encoder = buffered.into_inner().map_err(|e| e.into_error())?;
                let mut sink = encoder.finish()?;
                sink.flush()?;
                Ok(sink)
            }
            Inner::Members(members) => members.finish(),
        }
    }
}

impl<W: Write> Write for GzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Single(encoder) => encoder.write(buf),
            Inner::Members(members) => members.write(buf),
        }
    }

    /// In the parallel mode, a flush ends the current member.
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Single(encoder) => encoder.flush(),
            Inner::Members(members) => members.flush(),
        }
    }
}

/// Decompresses a gzip stream of one or more members (what Go's
/// `compress/gzip` reads; trailing garbage is an error there and here).
pub fn gunzip<R: Read>(input: R) -> flate2::read::MultiGzDecoder<R> {
    flate2::read::MultiGzDecoder::new(input)
}

fn compression(level: u32) -> Compression {
    Compression::new(level.min(9))
}

fn compress_member(data: &[u8], level: Compression) -> io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(data.len() / 2 + 64), level);
    encoder.write_all(data)?;
    encoder.finish()
}

/// A compressed member, and the input buffer handed back for reuse.
type Reply = io::Result<(Vec<u8>, Vec<u8>)>;

struct Job {
    data: Vec<u8>,
    reply: SyncSender<Reply>,
}

/// Worker threads sharing one job queue. Dropping it closes the queue and
/// joins the workers (each finishes the member it holds).
struct Pool {
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(threads: usize, level: Compression) -> Pool {
        let (jobs, queue) = mpsc::sync_channel::<Job>(threads);
        let queue = Arc::new(Mutex::new(queue));
        let workers = (0..threads)
            .map(|_| {
                let queue = Arc::clone(&queue);
                std::thread::spawn(move || loop {
                    // The lock is held only while waiting for a job.
                    let job = match queue.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let result = compress_member(&job.data, level).map(|c| (c, job.data));
                    // The writer may be gone; then the result is not wanted.
                    let _ = job.reply.send(result);
                })
            })
            .collect();
        Pool {
            jobs: Some(jobs),
            workers,
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        drop(self.jobs.take());
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

struct Members<W: Write> {
    sink: W,
    level: Compression,
    member_size: usize,
    buf: Vec<u8>,
    spare: Vec<Vec<u8>>,
    submitted: u64,
    pool: Option<Pool>,
    pending: VecDeque<Receiver<Reply>>,
    max_pending: usize,
}

impl<W: Write> Members<W> {
    fn new(sink: W, level: Compression, threads: usize, member_size: usize) -> Self {
        Members {
            sink,
            level,
            member_size,
            buf: Vec::with_capacity(member_size),
            spare: Vec::new(),
            submitted: 0,
            pool: (threads > 1).then(|| Pool::new(threads, level)),
            pending: VecDeque::new(),
            max_pending: 2 * threads,
        }
    }

    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            let take = (self.member_size - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buf.len() == self.member_size {
                self.submit()?;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.submit()?;
        }
        while !self.pending.is_empty() {
            self.write_front()?;
        }
        self.sink.flush()
    }

    fn finish(mut self) -> io::Result<W> {
        // An empty stream still needs one (empty) member to be gzip.
        if !self.buf.is_empty() || self.submitted == 0 {
            self.submit()?;
        }
        self.flush()?;
        drop(self.pool.take());
        Ok(self.sink)
    }

    fn submit(&mut self) -> io::Result<()> {
        let next = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.member_size));
        let data = std::mem::replace(&mut self.buf, next);
        self.submitted += 1;
        if self.pool.is_none() {
            let compressed = compress_member(&data, self.level)?;
            self.sink.write_all(&compressed)?;
            self.recycle(data);
            return Ok(());
        }
        while self.pending.len() >= self.max_pending {
            self.write_front()?;
        }
        let (reply, result) = mpsc::sync_channel(1);
        let jobs = self
            .pool
            .as_ref()
            .and_then(|pool| pool.jobs.as_ref())
            .ok_or_else(worker_gone)?;
        jobs.send(Job { data, reply }).map_err(|_| worker_gone())?;
        self.pending.push_back(result);
        // Write whatever is already compressed, in order.
        while let Some(front) = self.pending.front() {
            match front.try_recv() {
                Ok(reply) => {
                    self.pending.pop_front();
                    self.write_reply(reply)?;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(worker_gone()),
            }
        }
        Ok(())
    }

    fn write_front(&mut self) -> io::Result<()> {
        let Some(front) = self.pending.pop_front() else {
            return Ok(());
        };
        let reply = front.recv().map_err(|_| worker_gone())?;
        self.write_reply(reply)
    }

    fn write_reply(&mut self, reply: Reply) -> io::Result<()> {
        let (compressed, data) = reply?;
        self.sink.write_all(&compressed)?;
        self.recycle(data);
        Ok(())
    }

    fn recycle(&mut self, mut data: Vec<u8>) {
        if self.spare.len() < 2 {
            data.clear();
            self.spare.push(data);
        }
    }
}

fn worker_gone() -> io::Error {
    io::Error::other("a gzip worker thread stopped")
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[i % 3] % 17)
            .collect()
    }

    fn gunzip_all(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        gunzip(bytes).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn single_member_round_trip_and_go_header() {
        let data = sample(300_000);
        let mut w = GzipWriter::new(Vec::new(), DEFAULT_LEVEL);
        w.write_all(&data).unwrap();
        let gz = w.finish().unwrap();
        assert_eq!(&gz[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
        assert_eq!(gunzip_all(&gz), data);
    }

    #[test]
    fn members_same_bytes_for_any_thread_count() {
        let data = sample(1_000_003);
        let outputs: Vec<Vec<u8>> = [1, 2, 3]
            .into_iter()
            .map(|threads| {
                let mut w = GzipWriter::members(Vec::new(), DEFAULT_LEVEL, threads, 64 * 1024);
                for chunk in data.chunks(7_777) {
                    w.write_all(chunk).unwrap();
                }
                w.finish().unwrap()
            })
            .collect();
        assert_eq!(outputs[0], outputs[1]);
        assert_eq!(outputs[0], outputs[2]);
        assert_eq!(gunzip_all(&outputs[0]), data);
    }

    #[test]
    fn empty_input_gives_one_empty_member() {
        for w in [
            GzipWriter::new(Vec::new(), 6),
            GzipWriter::parallel(Vec::new(), 6, 2),
        ] {
            let gz = w.finish().unwrap();
            assert!(!gz.is_empty());
            assert!(gunzip_all(&gz).is_empty());
        }
    }

    #[test]
    fn trailing_garbage_is_an_error() {
        let mut w = GzipWriter::new(Vec::new(), 6);
        w.write_all(b"hello").unwrap();
        let mut gz = w.finish().unwrap();
        gz.extend_from_slice(b"garbage!garbage!");
        let mut out = Vec::new();
        assert!(gunzip(&gz[..]).read_to_end(&mut out).is_err());
    }

    #[test]
    fn sink_errors_surface() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = GzipWriter::members(Full, 6, 2, 1024);
        let data = sample(100_000);
        let result = w.write_all(&data).and_then(|()| w.finish().map(|_| ()));
        assert!(result.is_err());
    }
}

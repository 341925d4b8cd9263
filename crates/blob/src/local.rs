//! [`LocalFile`]: how a [`BlobWriter`](crate::BlobWriter) writes an object
//! into a folder store.
//!
//! OpenDAL's file-system writer leaves every byte in the page cache until
//! its close calls `fsync`, so closing a 256 MiB segment waited for all of
//! it to reach the disk while the backup behind it stood still, copying
//! into the page cache cost the kernel more CPU than anything else the
//! writer did, and the dirty pages pushed the host's own cache out. This
//! writer goes around the page cache where the file system allows it
//! (`O_DIRECT`): it gathers [`CHUNK`]s in an aligned buffer and writes each
//! straight to the disk, so a backup costs no page-cache copy and evicts
//! nothing. Where `O_DIRECT` is refused, it writes through the page cache
//! and streams as the kernel developers advise for large sequential writes:
//! every chunk it starts the disk write of what it just wrote
//! (`sync_file_range`), waits for the chunk before that one and drops it
//! from the cache (`posix_fadvise(DONTNEED)`). Either way the disk works
//! while the data is still being produced, and `close` has only the tail to
//! flush.
//!
//! The object is written into the store's temporary folder and renamed into
//! place on close, after an `fsync` of the file and followed by one of the
//! folder it lands in, so a reader never sees half an object and a closed
//! object survives a crash. Systems other than Linux get the page-cache
//! write, the rename and the `fsync`s, without the early write-back.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;

/// How much is written at once with `O_DIRECT`, and between two write-back
/// steps without it.
const CHUNK: usize = 8 << 20;

/// Alignment of buffers, offsets and lengths for `O_DIRECT`: 4 KiB covers
/// the logical block size of every common disk and file system.
const DIRECT_ALIGN: usize = 4096;

/// An object being written into a folder store.
pub(crate) struct LocalFile {
    /// `None` while a blocking call holds it, and after close or abort.
    open: Option<Open>,
    temporary: PathBuf,
    target: PathBuf,
}

/// The open file and how it is being written.
struct Open {
    file: File,
    mode: Mode,
    /// Bytes in the file so far (not counting a direct write's staging).
    in_file: u64,
}

enum Mode {
    /// `O_DIRECT`: whole aligned chunks go from `staging` to the disk.
    Direct(Staging),
    /// Through the page cache, handed to the disk chunk by chunk: the chunk
    /// whose write-back was started last begins at `started_at`, the next
    /// one at `next_chunk_at`.
    Buffered { started_at: u64, next_chunk_at: u64 },
}

impl LocalFile {
    /// Creates a new temporary file in `temporary_dir` for the object at
    /// `target`.
    pub(crate) async fn create(temporary_dir: &Path, target: PathBuf) -> std::io::Result<Self> {
        Self::create_with(temporary_dir, target, true).await
    }

    /// As [`create`](Self::create); `try_direct: false` writes through the
    /// page cache even where `O_DIRECT` would do.
    async fn create_with(
        temporary_dir: &Path,
        target: PathBuf,
        try_direct: bool,
    ) -> std::io::Result<Self> {
        let temporary = temporary_dir.join(uuid::Uuid::new_v4().to_string());
        let dir = temporary_dir.to_path_buf();
        let path = temporary.clone();
        let open = blocking(move || {
            std::fs::create_dir_all(&dir)?;
            Open::create(&path, try_direct)
        })
        .await?;
        Ok(LocalFile {
            open: Some(open),
            temporary,
            target,
        })
    }

    /// Appends `bytes`. After a failed write the file is gone: how much of
    /// `bytes` reached it is unknown, so it can never be closed into place.
    pub(crate) async fn write(&mut self, bytes: Bytes) -> std::io::Result<()> {
        let mut open = self.take_open()?;
        match blocking(move || open.write(&bytes).map(|()| open)).await {
            Ok(open) => {
                self.open = Some(open);
                Ok(())
            }
            Err(e) => {
                remove_quietly(&self.temporary);
                Err(e)
            }
        }
    }

    /// Writes what is left, flushes the file to disk, renames it into
    /// place and flushes the folder that now holds it.
    pub(crate) async fn close(&mut self) -> std::io::Result<()> {
        let open = self.take_open()?;
        let (temporary, target) = (self.temporary.clone(), self.target.clone());
        let result = blocking(move || {
            let file = open.finish()?;
            file.sync_all()?;
            drop(file);
            let folder = target.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(folder)?;
            std::fs::rename(&temporary, &target)?;
            File::open(folder)?.sync_all()
        })
        .await;
        if result.is_err() {
            remove_quietly(&self.temporary);
        }
        result
    }

    /// Removes what was written.
    pub(crate) async fn abort(&mut self) -> std::io::Result<()> {
        self.open = None;
        let temporary = self.temporary.clone();
        blocking(move || match std::fs::remove_file(&temporary) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await
    }

    fn take_open(&mut self) -> std::io::Result<Open> {
        self.open
            .take()
            .ok_or_else(|| std::io::Error::other("the writer is already closed, aborted or failed"))
    }
}

impl Drop for LocalFile {
    /// A writer dropped before its close leaves nothing behind.
    fn drop(&mut self) {
        if self.open.take().is_some() {
            remove_quietly(&self.temporary);
        }
    }
}

impl Open {
    /// Creates `path`, with `O_DIRECT` where the file system takes it.
    fn create(path: &Path, try_direct: bool) -> std::io::Result<Open> {
        // The name is fresh, so no `create_new`: a file system that refuses
        // `O_DIRECT` may have created the file before refusing.
        let mut options = File::options();
        options.write(true).create(true);
        if try_direct {
            if let Some(file) = open_direct(&options, path) {
                return Ok(Open {
                    file,
                    mode: Mode::Direct(Staging::new()),
                    in_file: 0,
                });
            }
        }
        Ok(Open {
            file: options.open(path)?,
            mode: Mode::Buffered {
                started_at: 0,
                next_chunk_at: 0,
            },
            in_file: 0,
        })
    }

    fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            match &mut self.mode {
                Mode::Direct(staging) => {
                    let taken = staging.fill(bytes);
                    bytes = &bytes[taken..];
                    if staging.is_full() {
                        self.write_staged()?;
                    }
                }
                Mode::Buffered { .. } => {
                    self.file.write_all(bytes)?;
                    self.in_file += bytes.len() as u64;
                    return self.write_back_step();
                }
            }
        }
        Ok(())
    }

    /// Writes the staged bytes (a whole number of aligned blocks, except at
    /// the end) with `O_DIRECT`. Should the file system refuse a direct
    /// write after all, the file goes on through the page cache.
    fn write_staged(&mut self) -> std::io::Result<()> {
        let Mode::Direct(staging) = &mut self.mode else {
            return Ok(());
        };
        let staged = staging.bytes();
        let mut done = 0;
        let refused = loop {
            if done == staged.len() {
                break None;
            }
            match self.file.write(&staged[done..]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    break Some(staged[done..].to_vec());
                }
                Err(e) => return Err(e),
            }
        };
        self.in_file += done as u64;
        staging.clear();
        if let Some(rest) = refused {
            stop_direct(&self.file)?;
            self.file.write_all(&rest)?;
            self.mode = Mode::Buffered {
                started_at: self.in_file,
                next_chunk_at: self.in_file,
            };
            self.in_file += rest.len() as u64;
        }
        Ok(())
    }

    /// Without `O_DIRECT`: after each chunk, starts its write-back and
    /// waits for the one before.
    fn write_back_step(&mut self) -> std::io::Result<()> {
        let Mode::Buffered {
            started_at,
            next_chunk_at,
        } = &mut self.mode
        else {
            return Ok(());
        };
        if self.in_file - *next_chunk_at < CHUNK as u64 {
            return Ok(());
        }
        write_back(&self.file, *started_at, *next_chunk_at, self.in_file)?;
        *started_at = *next_chunk_at;
        *next_chunk_at = self.in_file;
        Ok(())
    }

    /// Writes what is still staged: its aligned part directly, the tail
    /// through the page cache (a direct write must be whole blocks).
    fn finish(mut self) -> std::io::Result<File> {
        if let Mode::Direct(staging) = &mut self.mode {
            let tail = staging.split_unaligned_tail();
            self.write_staged()?;
            if !tail.is_empty() {
                stop_direct(&self.file)?;
                self.file.write_all(&tail)?;
            }
        }
        Ok(self.file)
    }
}

/// A [`CHUNK`] of memory aligned for `O_DIRECT`, and how much of it is
/// filled.
struct Staging {
    /// One alignment more than a chunk, so an aligned chunk lies within.
    memory: Vec<u8>,
    start: usize,
    len: usize,
}

impl Staging {
    fn new() -> Self {
        let memory = vec![0u8; CHUNK + DIRECT_ALIGN];
        let start = memory.as_ptr().align_offset(DIRECT_ALIGN);
        Staging {
            memory,
            start,
            len: 0,
        }
    }

    /// Copies as much of `bytes` as fits; returns how much.
    fn fill(&mut self, bytes: &[u8]) -> usize {
        let taken = bytes.len().min(CHUNK - self.len);
        let at = self.start + self.len;
        self.memory[at..at + taken].copy_from_slice(&bytes[..taken]);
        self.len += taken;
        taken
    }

    fn is_full(&self) -> bool {
        self.len == CHUNK
    }

    fn bytes(&self) -> &[u8] {
        &self.memory[self.start..self.start + self.len]
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    /// Keeps the whole aligned blocks and returns the bytes after them.
    fn split_unaligned_tail(&mut self) -> Vec<u8> {
        let aligned = self.len - self.len % DIRECT_ALIGN;
        let tail = self.memory[self.start + aligned..self.start + self.len].to_vec();
        self.len = aligned;
        tail
    }
}

/// Opens `path` with `O_DIRECT`, or `None` where that fails for any
/// reason: the caller opens it without, and reports the error if that
/// fails too.
#[cfg(target_os = "linux")]
fn open_direct(options: &std::fs::OpenOptions, path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    options.clone().custom_flags(libc::O_DIRECT).open(path).ok()
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_options: &std::fs::OpenOptions, _path: &Path) -> Option<File> {
    None
}

/// Switches the file to writing through the page cache.
#[cfg(target_os = "linux")]
fn stop_direct(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on an open descriptor.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags == -1 || libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) == -1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn stop_direct(_file: &File) -> std::io::Result<()> {
    Ok(())
}

fn remove_quietly(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::debug!(path = %path.display(), error = %e, "cannot remove a temporary file");
        }
    }
}

/// Runs blocking file work on Tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)?
}

/// Starts the disk write of `start..end`, then waits for `previous..start`
/// (started by the step before) and drops it from the page cache.
#[cfg(target_os = "linux")]
fn write_back(file: &File, previous: u64, start: u64, end: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let check = |status: libc::c_int| {
        if status == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: plain system calls on an open descriptor; offsets and lengths
    // lie within what was written.
    unsafe {
        check(libc::sync_file_range(
            fd,
            start as libc::off64_t,
            (end - start) as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        ))?;
        if start > previous {
            check(libc::sync_file_range(
                fd,
                previous as libc::off64_t,
                (start - previous) as libc::off64_t,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            ))?;
            // Advice only: its failure costs nothing but cache.
            libc::posix_fadvise(
                fd,
                previous as libc::off64_t,
                (start - previous) as libc::off64_t,
                libc::POSIX_FADV_DONTNEED,
            );
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn write_back(_file: &File, _previous: u64, _start: u64, _end: u64) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `pieces` through a `LocalFile` and checks the object that
    /// appears on close.
    async fn round_trip(direct: bool, pieces: &[usize]) {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("root/a/b/object");
        let temporary = dir.path().join("root.tmp");
        let mut file = LocalFile::create_with(&temporary, target.clone(), direct)
            .await
            .unwrap();
        if direct {
            let mode = &file.open.as_ref().unwrap().mode;
            assert!(matches!(mode, Mode::Direct(_)), "O_DIRECT refused here");
        }
        let mut expected = Vec::new();
        for (n, &len) in pieces.iter().enumerate() {
            let piece: Vec<u8> = (0..len).map(|i| ((i + n) % 251) as u8).collect();
            file.write(Bytes::from(piece.clone())).await.unwrap();
            expected.extend_from_slice(&piece);
            assert!(!target.exists(), "nothing at the target before close");
        }
        file.close().await.unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), expected, "{pieces:?}");
        assert_eq!(std::fs::read_dir(&temporary).unwrap().count(), 0);
    }

    /// Uneven pieces across several chunks, a tail of whole blocks plus a
    /// few bytes, exactly whole chunks, one byte, nothing.
    const CASES: &[&[usize]] = &[
        &[
            3_000_001, 3_000_001, 3_000_001, 3_000_001, 3_000_001, 3_000_001, 3_000_001,
        ],
        &[CHUNK, CHUNK],
        &[CHUNK + DIRECT_ALIGN],
        &[DIRECT_ALIGN * 3 + 17],
        &[1],
        &[],
    ];

    #[tokio::test]
    async fn an_object_appears_whole_on_close_written_directly() {
        for pieces in CASES {
            round_trip(true, pieces).await;
        }
    }

    #[tokio::test]
    async fn an_object_appears_whole_on_close_through_the_page_cache() {
        for pieces in CASES {
            round_trip(false, pieces).await;
        }
    }

    #[tokio::test]
    async fn a_failed_write_cannot_be_closed_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let temporary = dir.path().join("root.tmp");
        let target = dir.path().join("root/x");
        let mut file = LocalFile::create(&temporary, target.clone()).await.unwrap();
        file.write(Bytes::from_static(b"abc")).await.unwrap();
        // Make the next write fail: a descriptor not open for writing.
        let read_only = File::open(dir.path()).unwrap();
        file.open.as_mut().unwrap().file = read_only;
        assert!(file.write(Bytes::from(vec![1u8; CHUNK])).await.is_err());
        assert!(file.close().await.is_err(), "closed after a failed write");
        assert!(!target.exists());
        assert_eq!(std::fs::read_dir(&temporary).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn abort_and_drop_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let temporary = dir.path().join("root.tmp");
        let mut aborted = LocalFile::create(&temporary, dir.path().join("root/x"))
            .await
            .unwrap();
        aborted.write(Bytes::from_static(b"abc")).await.unwrap();
        aborted.abort().await.unwrap();
        assert!(aborted.write(Bytes::from_static(b"d")).await.is_err());
        let mut dropped = LocalFile::create(&temporary, dir.path().join("root/y"))
            .await
            .unwrap();
        dropped.write(Bytes::from_static(b"abc")).await.unwrap();
        drop(dropped);
        assert_eq!(std::fs::read_dir(&temporary).unwrap().count(), 0);
        assert!(!dir.path().join("root").exists());
    }
}

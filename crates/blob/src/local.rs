//! [`LocalFile`]: how a [`BlobWriter`](crate::BlobWriter) writes an object
//! into a folder store.
//!
//! OpenDAL's file-system writer leaves every byte in the page cache until
//! its close calls `fsync`, so closing a 256 MiB segment waited for all of
//! it to reach the disk, while the backup behind it stood still, and the
//! dirty pages pushed the host's own cache out. This writer streams
//! instead, the way the kernel developers advise for large sequential
//! writes: every [`WRITEBACK_CHUNK`] it starts the disk write of what it
//! just wrote (`sync_file_range`), waits for the chunk before that one, and
//! drops that chunk from the page cache (`posix_fadvise(DONTNEED)`). The
//! disk then works while the data is still being produced, at most two
//! chunks per file are in flight, and `close` has only the tail to flush.
//!
//! The object is written into the store's temporary folder and renamed into
//! place on close, after an `fsync` of the file and followed by one of the
//! folder it lands in, so a reader never sees half an object and a closed
//! object survives a crash. Other systems than Linux get the same write,
//! rename and `fsync`s without the early write-back.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;

/// How much is written between two write-back steps.
const WRITEBACK_CHUNK: u64 = 8 << 20;

/// An object being written into a folder store.
pub(crate) struct LocalFile {
    /// `None` while a blocking call holds it, and after close or abort.
    file: Option<File>,
    temporary: PathBuf,
    target: PathBuf,
    written: u64,
    /// Where the chunk whose write-back was started last begins, and where
    /// the next one begins.
    started_at: u64,
    next_chunk_at: u64,
}

impl LocalFile {
    /// Creates a new temporary file in `temporary_dir` for the object at
    /// `target`.
    pub(crate) async fn create(temporary_dir: &Path, target: PathBuf) -> std::io::Result<Self> {
        let temporary = temporary_dir.join(uuid::Uuid::new_v4().to_string());
        let dir = temporary_dir.to_path_buf();
        let path = temporary.clone();
        let file = blocking(move || {
            std::fs::create_dir_all(&dir)?;
            File::options().write(true).create_new(true).open(&path)
        })
        .await?;
        Ok(LocalFile {
            file: Some(file),
            temporary,
            target,
            written: 0,
            started_at: 0,
            next_chunk_at: 0,
        })
    }

    /// Appends `bytes`, and hands the disk what has piled up since the last
    /// write-back step.
    pub(crate) async fn write(&mut self, bytes: Bytes) -> std::io::Result<()> {
        let mut file = self.take_file()?;
        let end = self.written + bytes.len() as u64;
        let step = (end - self.next_chunk_at >= WRITEBACK_CHUNK).then_some((
            self.started_at,
            self.next_chunk_at,
            end,
        ));
        let (file, result) = blocking(move || {
            let result = file.write_all(&bytes).and_then(|()| match step {
                Some((previous, start, end)) => write_back(&file, previous, start, end),
                None => Ok(()),
            });
            Ok((file, result))
        })
        .await?;
        self.file = Some(file);
        result?;
        self.written = end;
        if let Some((_, start, end)) = step {
            self.started_at = start;
            self.next_chunk_at = end;
        }
        Ok(())
    }

    /// Flushes the file to disk, renames it into place and flushes the
    /// folder that now holds it.
    pub(crate) async fn close(&mut self) -> std::io::Result<()> {
        let file = self.take_file()?;
        let (temporary, target) = (self.temporary.clone(), self.target.clone());
        let result = blocking(move || {
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
        self.file = None;
        let temporary = self.temporary.clone();
        blocking(move || match std::fs::remove_file(&temporary) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await
    }

    fn take_file(&mut self) -> std::io::Result<File> {
        self.file
            .take()
            .ok_or_else(|| std::io::Error::other("the writer is already closed, aborted or failed"))
    }
}

impl Drop for LocalFile {
    /// A writer dropped before its close leaves nothing behind.
    fn drop(&mut self) {
        if self.file.take().is_some() {
            remove_quietly(&self.temporary);
        }
    }
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

    #[tokio::test]
    async fn an_object_appears_whole_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("root/a/b/object");
        let temporary = dir.path().join("root.tmp");
        let mut file = LocalFile::create(&temporary, target.clone()).await.unwrap();
        // Enough to cross several write-back steps, in uneven pieces.
        let piece: Vec<u8> = (0..3_000_001u32).map(|i| (i % 251) as u8).collect();
        let mut expected = Vec::new();
        for _ in 0..7 {
            file.write(Bytes::from(piece.clone())).await.unwrap();
            expected.extend_from_slice(&piece);
            assert!(!target.exists(), "nothing at the target before close");
        }
        file.close().await.unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), expected);
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

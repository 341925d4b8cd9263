//! Blob storage for backups and download files, through Apache OpenDAL.
//!
//! [`BlobStore`] opens a storage URL (`file://PATH` today) and offers what
//! the rest of mongobak needs: streaming writers whose object only becomes
//! visible, whole, when the writer is closed; reads of a whole object or a
//! range; listing and recursive deletion under a prefix.
//!
//! Paths are `/`-separated and relative to the store's root. This crate
//! decides nothing about what is stored where; `dump` and the download
//! tasks own their layouts.

#![deny(missing_docs)]

use bytes::Bytes;
use futures::TryStreamExt;
use opendal::{ErrorKind, Operator};

/// Failures of the blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The storage URL is not one this build can open.
    #[error("unsupported storage URL `{url}`: expected file://PATH")]
    UnsupportedUrl {
        /// The URL as given.
        url: String,
    },
    /// The object does not exist.
    #[error("no object at {path}")]
    NotFound {
        /// Its path.
        path: String,
    },
    /// The storage failed.
    #[error("storage error at {path}: {source}")]
    Storage {
        /// The path operated on.
        path: String,
        /// The cause.
        source: opendal::Error,
    },
}

impl BlobError {
    fn at(path: &str, source: opendal::Error) -> Self {
        if source.kind() == ErrorKind::NotFound {
            BlobError::NotFound {
                path: path.to_string(),
            }
        } else {
            BlobError::Storage {
                path: path.to_string(),
                source,
            }
        }
    }

    /// Whether retrying the operation may succeed (storage down, timeouts,
    /// throttling), as opposed to a permanent failure.
    pub fn is_transient(&self) -> bool {
        match self {
            BlobError::Storage { source, .. } => source.is_temporary(),
            BlobError::UnsupportedUrl { .. } | BlobError::NotFound { .. } => false,
        }
    }
}

/// An object listed under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedBlob {
    /// Path relative to the store's root.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, as Unix seconds, when the store knows it.
    pub modified_unix: Option<i64>,
}

/// A blob store.
#[derive(Debug, Clone)]
pub struct BlobStore {
    op: Operator,
    /// Where objects being written wait for their close (file systems).
    temporary: Option<std::path::PathBuf>,
}

impl BlobStore {
    /// Opens the store at `url` (`file://PATH`), creating the folder.
    ///
    /// On a file system, objects are written into a sibling folder
    /// `PATH.tmp` and renamed into place on close, so a reader never sees a
    /// half-written object, even after a crash.
    pub fn open(url: &str) -> Result<Self, BlobError> {
        let root = url
            .strip_prefix("file://")
            .filter(|p| !p.is_empty())
            .ok_or_else(|| BlobError::UnsupportedUrl {
                url: url.to_string(),
            })?;
        let root = root.trim_end_matches('/');
        let tmp = format!("{root}.tmp");
        let builder = opendal::services::Fs::default()
            .root(root)
            .atomic_write_dir(&tmp);
        let op = Operator::new(builder).map_err(|e| BlobError::at(root, e))?;
        Ok(BlobStore {
            op,
            temporary: Some(std::path::PathBuf::from(tmp)),
        })
    }

    /// Removes objects whose writing began and never ended (a process killed
    /// mid-write leaves them in the temporary folder) when they were last
    /// written more than `older_than` ago. Returns how many went.
    pub fn remove_stale_temporary(
        &self,
        older_than: std::time::Duration,
    ) -> std::io::Result<usize> {
        let Some(dir) = &self.temporary else {
            return Ok(0);
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            let meta = entry.metadata()?;
            let stale = meta.modified()?.elapsed().is_ok_and(|age| age > older_than);
            if meta.is_file() && stale {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Checks that the store answers (for readiness).
    pub async fn check(&self) -> Result<(), BlobError> {
        self.op.check().await.map_err(|e| BlobError::at("/", e))
    }

    /// A streaming writer for `path`; the object appears only when
    /// [`BlobWriter::close`] succeeds.
    pub async fn writer(&self, path: &str) -> Result<BlobWriter, BlobError> {
        let inner = self
            .op
            .writer(path)
            .await
            .map_err(|e| BlobError::at(path, e))?;
        Ok(BlobWriter {
            inner,
            path: path.to_string(),
            written: 0,
        })
    }

    /// Writes a whole object at once.
    pub async fn put(&self, path: &str, bytes: impl Into<Bytes>) -> Result<(), BlobError> {
        self.op
            .write(path, bytes.into())
            .await
            .map(drop)
            .map_err(|e| BlobError::at(path, e))
    }

    /// Reads a whole object.
    pub async fn get(&self, path: &str) -> Result<Bytes, BlobError> {
        self.op
            .read(path)
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| BlobError::at(path, e))
    }

    /// Reads `len` bytes of an object from `offset`; the range must lie
    /// within the object.
    pub async fn get_range(&self, path: &str, offset: u64, len: u64) -> Result<Bytes, BlobError> {
        self.op
            .read_with(path)
            .range(offset..offset + len)
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| BlobError::at(path, e))
    }

    /// The size of an object, or `None` when it does not exist.
    pub async fn size(&self, path: &str) -> Result<Option<u64>, BlobError> {
        match self.op.stat(path).await {
            Ok(meta) => Ok(Some(meta.content_length())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BlobError::at(path, e)),
        }
    }

    /// Every object under `prefix` (a folder path ending in `/`).
    pub async fn list(&self, prefix: &str) -> Result<Vec<ListedBlob>, BlobError> {
        let mut lister = self
            .op
            .lister_with(prefix)
            .recursive(true)
            .await
            .map_err(|e| BlobError::at(prefix, e))?;
        let mut out = Vec::new();
        while let Some(entry) = lister
            .try_next()
            .await
            .map_err(|e| BlobError::at(prefix, e))?
        {
            if !entry.metadata().is_file() {
                continue;
            }
            let path = entry.path().to_string();
            let meta = match self.op.stat(&path).await {
                Ok(meta) => meta,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(BlobError::at(&path, e)),
            };
            out.push(ListedBlob {
                size: meta.content_length(),
                modified_unix: meta.last_modified().map(|t| t.into_inner().as_second()),
                path,
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Deletes one object; deleting a missing object succeeds.
    pub async fn delete(&self, path: &str) -> Result<(), BlobError> {
        self.op
            .delete(path)
            .await
            .map_err(|e| BlobError::at(path, e))
    }

    /// Deletes everything under `prefix` (a folder path ending in `/`).
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), BlobError> {
        self.op
            .delete_with(prefix)
            .recursive(true)
            .await
            .map_err(|e| BlobError::at(prefix, e))
    }
}

/// A streaming object writer. Dropping it without [`close`](Self::close)
/// abandons the object: nothing appears at its path.
pub struct BlobWriter {
    inner: opendal::Writer,
    path: String,
    written: u64,
}

impl BlobWriter {
    /// Appends `bytes`.
    pub async fn write(&mut self, bytes: impl Into<Bytes>) -> Result<(), BlobError> {
        let bytes = bytes.into();
        self.written += bytes.len() as u64;
        self.inner
            .write(bytes)
            .await
            .map_err(|e| BlobError::at(&self.path, e))
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Finishes the object and makes it visible at its path. After a
    /// failed close, call [`abort`](Self::abort) to drop what was written.
    pub async fn close(&mut self) -> Result<u64, BlobError> {
        self.inner
            .close()
            .await
            .map_err(|e| BlobError::at(&self.path, e))?;
        Ok(self.written)
    }

    /// Abandons the object and removes what was written of it.
    pub async fn abort(&mut self) -> Result<(), BlobError> {
        self.inner
            .abort()
            .await
            .map_err(|e| BlobError::at(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &tempfile::TempDir) -> BlobStore {
        BlobStore::open(&format!("file://{}/blobs", dir.path().display())).unwrap()
    }

    #[tokio::test]
    async fn objects_appear_only_when_closed() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        s.check().await.unwrap();
        let mut w = s.writer("a/b/one.bin").await.unwrap();
        w.write(Bytes::from_static(b"hello ")).await.unwrap();
        w.write(Bytes::from_static(b"world")).await.unwrap();
        assert_eq!(
            s.size("a/b/one.bin").await.unwrap(),
            None,
            "visible before close"
        );
        assert_eq!(w.close().await.unwrap(), 11);
        assert_eq!(
            s.get("a/b/one.bin").await.unwrap(),
            Bytes::from_static(b"hello world")
        );
        assert_eq!(
            s.get_range("a/b/one.bin", 6, 5).await.unwrap(),
            Bytes::from_static(b"world")
        );

        let mut abandoned = s.writer("a/b/two.bin").await.unwrap();
        abandoned
            .write(Bytes::from_static(b"partial"))
            .await
            .unwrap();
        abandoned.abort().await.unwrap();
        assert_eq!(s.size("a/b/two.bin").await.unwrap(), None);
        assert!(matches!(
            s.get("a/b/two.bin").await,
            Err(BlobError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn list_and_delete_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        s.put("x/1", Bytes::from_static(b"1")).await.unwrap();
        s.put("x/y/2", Bytes::from_static(b"22")).await.unwrap();
        s.put("z/3", Bytes::from_static(b"333")).await.unwrap();
        let listed = s.list("x/").await.unwrap();
        let paths: Vec<_> = listed.iter().map(|b| (b.path.as_str(), b.size)).collect();
        assert_eq!(paths, vec![("x/1", 1), ("x/y/2", 2)]);
        assert!(listed[0].modified_unix.is_some());
        s.delete_prefix("x/").await.unwrap();
        assert!(s.list("x/").await.unwrap().is_empty());
        assert_eq!(s.size("z/3").await.unwrap(), Some(3));
        s.delete("z/3").await.unwrap();
        s.delete("z/3").await.unwrap();
    }

    #[tokio::test]
    async fn stale_temporary_objects_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let mut w = s.writer("a/partial.bin").await.unwrap();
        w.write(Bytes::from(vec![7u8; 1 << 20])).await.unwrap();
        // The writer is dropped without close or abort, as in a crash.
        drop(w);
        assert_eq!(
            s.remove_stale_temporary(std::time::Duration::from_secs(3600))
                .unwrap(),
            0,
            "still fresh"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        let removed = s
            .remove_stale_temporary(std::time::Duration::from_millis(10))
            .unwrap();
        assert!(removed >= 1, "the abandoned temporary file is removed");
        assert!(s.list("a/").await.unwrap().is_empty());
    }

    #[test]
    fn only_file_urls() {
        assert!(matches!(
            BlobStore::open("s3://b"),
            Err(BlobError::UnsupportedUrl { .. })
        ));
        assert!(matches!(
            BlobStore::open("file://"),
            Err(BlobError::UnsupportedUrl { .. })
        ));
    }
}

//! [`BlobWriter`]: a streaming writer whose object appears, whole, only
//! when it is closed.

use bytes::Bytes;

use opendal::raw::new_std_io_error;

use crate::local::LocalFile;
use crate::BlobError;

/// A streaming object writer. Dropping it without [`close`](Self::close)
/// abandons the object: nothing appears at its path.
///
/// On an object store, a dropped writer's multipart upload is aborted in the
/// background (its parts would otherwise be kept, and billed, until the
/// bucket's lifecycle rule removes them); call [`abort`](Self::abort) to
/// wait for that. In a folder, a dropped writer's temporary file is removed
/// at once.
pub struct BlobWriter {
    /// `None` once closed or aborted.
    inner: Option<Inner>,
    path: String,
    written: u64,
}

/// Where the bytes go.
enum Inner {
    /// An object store, through OpenDAL.
    Store(opendal::Writer),
    /// A file in a folder store (see [`LocalFile`]).
    File(LocalFile),
}

impl BlobWriter {
    pub(crate) fn to_store(inner: opendal::Writer, path: &str) -> Self {
        Self::new(Inner::Store(inner), path)
    }

    pub(crate) fn to_file(file: LocalFile, path: &str) -> Self {
        Self::new(Inner::File(file), path)
    }

    fn new(inner: Inner, path: &str) -> Self {
        BlobWriter {
            inner: Some(inner),
            path: path.to_string(),
            written: 0,
        }
    }

    fn inner(&mut self) -> Result<&mut Inner, BlobError> {
        self.inner.as_mut().ok_or_else(|| BlobError::Storage {
            path: self.path.clone(),
            source: opendal::Error::new(
                opendal::ErrorKind::Unexpected,
                "the writer is already closed or aborted",
            ),
        })
    }

    /// Appends `bytes`.
    pub async fn write(&mut self, bytes: impl Into<Bytes>) -> Result<(), BlobError> {
        let bytes = bytes.into();
        let len = bytes.len() as u64;
        let path = self.path.clone();
        match self.inner()? {
            Inner::Store(writer) => writer.write(bytes).await,
            Inner::File(file) => file.write(bytes).await.map_err(new_std_io_error),
        }
        .map_err(|e| BlobError::at(&path, e))?;
        self.written += len;
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Finishes the object and makes it visible at its path. After a
    /// failed close, call [`abort`](Self::abort) to drop what was written.
    pub async fn close(&mut self) -> Result<u64, BlobError> {
        let path = self.path.clone();
        match self.inner()? {
            Inner::Store(writer) => writer.close().await.map(drop),
            Inner::File(file) => file.close().await.map_err(new_std_io_error),
        }
        .map_err(|e| BlobError::at(&path, e))?;
        self.inner = None;
        Ok(self.written)
    }

    /// Abandons the object and removes what was written of it. Aborting a
    /// writer that is already closed or aborted does nothing.
    pub async fn abort(&mut self) -> Result<(), BlobError> {
        let Some(inner) = self.inner.take() else {
            return Ok(());
        };
        match inner {
            Inner::Store(mut writer) => writer.abort().await,
            Inner::File(mut file) => file.abort().await.map_err(new_std_io_error),
        }
        .map_err(|e| BlobError::at(&self.path, e))
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // A file removes itself when dropped.
        let Some(Inner::Store(mut inner)) = self.inner.take() else {
            return;
        };
        // Drop cannot wait, so the abort runs as its own task; it is
        // bounded by the store's timeouts and retries, and losing it (the
        // runtime shutting down) only leaves what a crash would.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let path = std::mem::take(&mut self.path);
        runtime.spawn(async move {
            if let Err(e) = inner.abort().await {
                tracing::debug!(%path, error = %e, "cannot abort an abandoned upload");
            }
        });
    }
}

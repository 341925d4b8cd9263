//! Opening a signed download URL: `GET /download/<task id>/<name>`.
//!
//! [`Api::open_download`] decides everything about such a request except
//! HTTP: the signature and expiry first (nothing is looked up for a bad
//! link), then the task, then its published file. The server maps each
//! [`Refusal`] onto a status code and streams the [`Opened`] file.

use jiff::Timestamp;
use mongobak_catalog::{PublishedFile, TaskStatus};

use crate::Api;

/// What a download URL asks for: the parts of its path and query.
#[derive(Debug, Clone)]
pub struct DownloadRequest<'a> {
    /// The task ID of the path.
    pub task_id: i64,
    /// The last part of the path: the file name, or the file name and
    /// `.sha256` for its checksum.
    pub name: &'a str,
    /// The `expires` query parameter (Unix seconds).
    pub expires: Option<i64>,
    /// The `signature` query parameter (hex).
    pub signature: Option<&'a str>,
}

/// A download URL that may be served.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The file the URL leads to.
    pub file: PublishedFile,
    /// Whether the URL asks for the file's checksum line rather than the
    /// file (`<name>.sha256`).
    pub checksum_only: bool,
}

impl Opened {
    /// The checksum line `sha256sum -c` reads: `<hex>  <file name>\n`.
    pub fn checksum_line(&self) -> String {
        format!("{}  {}\n", self.file.sha256, self.file.name())
    }
}

/// Why a download URL is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The signature does not match, or the link's own expiry passed.
    BadLink,
    /// No finished task publishes a file of that name.
    NotFound,
    /// The file existed but may no longer be served (expired, or its
    /// backup was deleted).
    Gone,
    /// The metadata store cannot be read now.
    Unavailable,
}

impl Api {
    /// Opens the download URL `request` at `now`: the file to serve, or
    /// why not.
    pub async fn open_download(
        &self,
        request: &DownloadRequest<'_>,
        now: Timestamp,
    ) -> Result<Opened, Refusal> {
        let (file_name, checksum_only) = match request.name.strip_suffix(".sha256") {
            Some(base) => (base, true),
            None => (request.name, false),
        };
        let signer = &self.download_settings().signer;
        let valid = match (request.expires, request.signature) {
            (Some(expires), Some(signature)) => {
                expires >= now.as_second()
                    && signer.verify(request.task_id, file_name, expires, signature)
            }
            _ => false,
        };
        if !valid {
            return Err(Refusal::BadLink);
        }
        let task = match self.catalog.downloads().get(request.task_id).await {
            Ok(Some(task)) => task,
            Ok(None) => return Err(Refusal::NotFound),
            Err(e) => {
                tracing::error!(task_id = request.task_id, error = %e, "cannot read a download task");
                return Err(Refusal::Unavailable);
            }
        };
        let Some(file) = task
            .file
            .filter(|f| task.status == TaskStatus::Done && f.name() == file_name)
        else {
            return Err(Refusal::NotFound);
        };
        if !file.is_valid_at(now) {
            return Err(Refusal::Gone);
        }
        Ok(Opened {
            file,
            checksum_only,
        })
    }
}

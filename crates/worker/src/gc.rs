//! Garbage collection: finds stored data that no catalog entry accounts
//! for and deletes it once it is older than a grace period.
//!
//! Backups live under `backups/<instance>/<backup id>/` and download files
//! under `downloads/<task id>/<attempt>/`. A backup folder is garbage when
//! its backup has no row, failed or was deleted (a crash between marking a
//! backup deleted and deleting its data leaves such a folder). A download
//! folder is garbage when its task has no row, or the folder is neither the
//! task's published file nor the attempt a running task is writing. Paths
//! of any other shape are never touched. The grace period (measured from
//! the newest object of a folder) keeps data that a writer on another node
//! is still producing.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use mongobak_blob::{BlobError, BlobStore, ListedBlob};
use mongobak_catalog::{BackupStatus, Catalog, CatalogError, DownloadFolder, TaskStatus};

/// A folder of stored data that nothing refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Garbage {
    /// The folder, ending in `/`.
    pub prefix: String,
    /// Bytes in it.
    pub bytes: u64,
    /// Objects in it.
    pub objects: usize,
    /// Why nothing refers to it.
    pub reason: String,
}

/// Failures of garbage collection.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// Reading the catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Listing or deleting stored data failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
}

/// Objects grouped by folder, with the newest modification time.
#[derive(Default)]
struct Folder {
    bytes: u64,
    objects: usize,
    newest: Option<i64>,
}

fn group(listed: Vec<ListedBlob>, depth: usize) -> BTreeMap<String, Folder> {
    let mut folders: BTreeMap<String, Folder> = BTreeMap::new();
    for blob in listed {
        let parts: Vec<&str> = blob.path.split('/').collect();
        // `<root>/<a>/<b>/<file...>`: the folder is the first `depth` parts.
        if parts.len() <= depth {
            continue;
        }
        let prefix = format!("{}/", parts[..depth].join("/"));
        let folder = folders.entry(prefix).or_default();
        folder.bytes += blob.size;
        folder.objects += 1;
        folder.newest = folder.newest.max(blob.modified_unix);
    }
    folders
}

/// The garbage in `store` at `now`, given `grace`.
pub async fn find_garbage(
    catalog: &Catalog,
    store: &BlobStore,
    now: Timestamp,
    grace: SignedDuration,
) -> Result<Vec<Garbage>, GcError> {
    let cutoff = (now - grace).as_second();
    // Read the store before the catalog: a folder written after the
    // listing is not considered, and a row created after the catalog read
    // belongs to a folder younger than the grace period.
    let backup_folders = group(store.list("backups/").await?, 3);
    let download_folders = group(store.list(DownloadFolder::ROOT).await?, 3);
    let backups = catalog.backups().statuses().await?;
    let tasks = catalog.downloads().files().await?;

    let old_enough = |folder: &Folder| folder.newest.is_none_or(|t| t < cutoff);
    let mut garbage = Vec::new();
    let mut found = |prefix: String, folder: &Folder, reason: String| {
        garbage.push(Garbage {
            prefix,
            bytes: folder.bytes,
            objects: folder.objects,
            reason,
        })
    };

    for (prefix, folder) in &backup_folders {
        let Some(id) = prefix
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .and_then(|s| s.parse::<i64>().ok())
        else {
            continue;
        };
        let reason = match backups.get(&id) {
            None => "no backup has this ID".to_string(),
            Some(BackupStatus::Failed) => format!("backup {id} failed"),
            Some(BackupStatus::Deleted) => format!("backup {id} was deleted"),
            Some(_) => continue,
        };
        if old_enough(folder) {
            found(prefix.clone(), folder, reason);
        }
    }

    for (prefix, folder) in &download_folders {
        let Some(found_folder) = DownloadFolder::parse(prefix) else {
            continue;
        };
        let DownloadFolder { task_id, attempt } = found_folder;
        let reason = match tasks.get(&task_id) {
            None => "no download task has this ID".to_string(),
            Some((_, _, Some(path))) if DownloadFolder::parse(path) == Some(found_folder) => {
                continue
            }
            Some((TaskStatus::Running, attempts, _)) if *attempts == attempt => continue,
            Some(_) => {
                format!("attempt {attempt} of download task {task_id} is not its published file")
            }
        };
        if old_enough(folder) {
            found(prefix.clone(), folder, reason);
        }
    }
    Ok(garbage)
}

/// Deletes what [`find_garbage`] found; returns it.
pub async fn collect_garbage(
    catalog: &Catalog,
    store: &BlobStore,
    now: Timestamp,
    grace: SignedDuration,
) -> Result<Vec<Garbage>, GcError> {
    let garbage = find_garbage(catalog, store, now, grace).await?;
    for item in &garbage {
        store.delete_prefix(&item.prefix).await?;
        tracing::info!(prefix = %item.prefix, bytes = item.bytes, reason = %item.reason, "garbage deleted");
    }
    Ok(garbage)
}

//! `mongobak download`: a backup's files on the local disk, verified.
//!
//! 1. The replica sets: those named, or every one of the instance
//!    (`DescribeDBInstances`). `--backup latest` is the newest finished
//!    backup (`DescribeDBBackups`).
//! 2. `CreateBackupDownloadTask` for them (the server reuses a task that
//!    is running or done), then `DescribeBackupDownloadTask` every
//!    [`POLL`], one packaging meter per replica set fed by `Percent`.
//! 3. Each finished task's file is fetched from its signed `Url` into
//!    `<name>.part`, with `<name>.sha256` (the published SHA-256, in
//!    `sha256sum` format) written beside it first. A later run finding both
//!    resumes with `Range: bytes=<part length>-` and `If-Range: "<sha256>"`
//!    (the server's ETag), so a changed file is fetched whole again.
//! 4. The whole file's SHA-256 must match: then `.part` becomes the file
//!    and `.sha256` stays beside it for `mongobak verify`. Otherwise the
//!    bytes are renamed `<name>.bad`, the command fails with exit status 6,
//!    and the file is never reported as downloaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use reqwest::header::{CONTENT_RANGE, IF_RANGE, RANGE};
use reqwest::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};

use mongobak_api::model::{
    BackupDownloadTask, BackupState, CreateBackupDownloadTaskRequest,
    DescribeBackupDownloadTaskRequest, DescribeDBInstancesRequest, DownloadTaskStatus,
    ReplicaSetInfo,
};

use crate::client::{cause, ApiClient, ClientArgs};
use crate::failure::Failure;
use crate::output::{human_bytes, print_json, print_table, Output};
use crate::progress::{Meter, Progress};

/// Pause between two looks at the packaging tasks.
const POLL: Duration = Duration::from_millis(500);
/// Write buffer of a file being downloaded.
const WRITE_BUFFER: usize = 64 * 1024;

/// `mongobak download`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The instance (cmgo-...).
    #[arg(long, value_name = "ID")]
    instance: String,
    /// The backup, as `mongobak backup list` names it, or `latest`.
    #[arg(long, value_name = "NAME")]
    backup: String,
    /// A replica set or shard to download (the instance ID and _0, _1, ...);
    /// repeatable
    /// [default: all of them].
    #[arg(long = "replica-set", value_name = "ID")]
    replica_sets: Vec<String>,
    /// Folder for the files.
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,
    /// Download at most this many bytes a second (suffixes K, M, G: 500K).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    limit_rate: Option<u64>,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
}

/// A file downloaded and verified.
struct Downloaded {
    replica_set: String,
    path: PathBuf,
    size: u64,
    sha256: String,
}

/// Runs `mongobak download`.
pub async fn run(args: DownloadArgs) -> anyhow::Result<()> {
    let client = ApiClient::from_args(&args.client)?;
    let backup = backup_name(&client, &args.instance, &args.backup).await?;
    let sets = if args.replica_sets.is_empty() {
        replica_sets_of(&client, &args.instance).await?
    } else {
        let mut sets: Vec<String> = Vec::with_capacity(args.replica_sets.len());
        for set in &args.replica_sets {
            if !sets.contains(set) {
                sets.push(set.clone());
            }
        }
        sets
    };
    tokio::fs::create_dir_all(&args.out)
        .await
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    client
        .call(&CreateBackupDownloadTaskRequest {
            instance_id: args.instance.clone(),
            backup_name: backup.clone(),
            backup_sets: sets
                .iter()
                .map(|s| ReplicaSetInfo {
                    replica_set_id: s.clone(),
                })
                .collect(),
        })
        .await?;

    let progress = Progress::new(args.quiet);
    let packaging: BTreeMap<&str, Meter> = sets
        .iter()
        .map(|s| (s.as_str(), progress.percent("packaging", s)))
        .collect();
    let mut pending: Vec<&str> = sets.iter().map(String::as_str).collect();
    let mut done = Vec::with_capacity(sets.len());
    while !pending.is_empty() {
        let listed = client
            .call(&DescribeBackupDownloadTaskRequest {
                instance_id: args.instance.clone(),
                backup_name: Some(backup.clone()),
                limit: Some(100),
                ..Default::default()
            })
            .await?;
        for set in pending.clone() {
            // Newest first: the current task of each replica set comes first.
            let task = listed
                .tasks
                .iter()
                .find(|t| t.replica_set_id == set)
                .with_context(|| format!("the server lists no download task for {set}"))?;
            let meter = &packaging[set];
            meter.set_position(task.percent.clamp(0, 100) as u64);
            let reason = task.failure_reason.as_str();
            match task.status {
                DownloadTaskStatus::Done => {
                    meter.set_message(String::new());
                    meter.set_position(100);
                    meter.finish();
                    let file = Fetch {
                        client: &client,
                        progress: &progress,
                        replica_set: set,
                        out: &args.out,
                        limit_rate: args.limit_rate,
                    }
                    .run(task)
                    .await?;
                    done.push(file);
                    pending.retain(|s| *s != set);
                }
                DownloadTaskStatus::Failed => {
                    meter.finish();
                    return Err(Failure::ServerSide(format!(
                        "packaging {set} of backup {backup:?} failed: {}",
                        if reason.is_empty() {
                            "no reason given"
                        } else {
                            reason
                        }
                    ))
                    .into());
                }
                DownloadTaskStatus::Retrying => meter.set_message(format!("retrying: {reason}")),
                DownloadTaskStatus::Waiting | DownloadTaskStatus::Running => {}
            }
        }
        if !pending.is_empty() {
            tokio::time::sleep(POLL).await;
        }
    }

    match args.client.output {
        Output::Json => print_json(&json!({
            "InstanceId": args.instance,
            "BackupName": backup,
            "Files": done.iter().map(|d| json!({
                "ReplicaSetId": d.replica_set,
                "Path": d.path,
                "Size": d.size,
                "SHA256": d.sha256,
            })).collect::<Vec<_>>(),
        })),
        Output::Table => {
            print_table(
                &["REPLICA SET", "SIZE", "FILE"],
                done.iter().map(|d| {
                    vec![
                        d.replica_set.clone(),
                        human_bytes(d.size),
                        d.path.display().to_string(),
                    ]
                }),
            );
            Ok(())
        }
    }
}

/// The backup's name: `name` itself, or for `latest` the newest finished
/// backup of the instance.
async fn backup_name(client: &ApiClient, instance: &str, name: &str) -> anyhow::Result<String> {
    if name != "latest" {
        return Ok(name.to_string());
    }
    let listed = crate::backup::backups_of(client, instance).await?;
    listed
        .backup_list
        .into_iter()
        .filter(|b| b.status == BackupState::Succeeded)
        .max_by_key(|b| b.back_id)
        .map(|b| b.backup_name)
        .ok_or_else(|| {
            Failure::Missing(format!(
                "instance {instance} has no finished backup; take one with `mongobak backup create --instance {instance} --wait`"
            ))
            .into()
        })
}

/// Every replica set (or shard) of the instance.
async fn replica_sets_of(client: &ApiClient, instance: &str) -> anyhow::Result<Vec<String>> {
    let listed = client
        .call(&DescribeDBInstancesRequest {
            instance_ids: Some(vec![instance.to_string()]),
            ..Default::default()
        })
        .await?;
    let detail = listed
        .instance_details
        .into_iter()
        .find(|i| i.instance_id == instance)
        .ok_or_else(|| {
            Failure::Missing(format!(
                "no instance {instance} was found in region {} for these credentials \
                 (DescribeDBInstances lists none by that ID)",
                client.region()
            ))
        })?;
    let sets: Vec<String> = detail
        .replica_sets
        .into_iter()
        .map(|s| s.replica_set_id)
        .collect();
    if sets.is_empty() {
        bail!("instance {instance} lists no replica sets");
    }
    Ok(sets)
}

/// One finished task's file, fetched and verified.
struct Fetch<'a> {
    client: &'a ApiClient,
    progress: &'a Progress,
    replica_set: &'a str,
    out: &'a Path,
    limit_rate: Option<u64>,
}

impl Fetch<'_> {
    async fn run(&self, task: &BackupDownloadTask) -> anyhow::Result<Downloaded> {
        let set = self.replica_set;
        let url = task.url.as_str();
        if url.is_empty() {
            bail!("the finished task of {set} has no download URL");
        }
        let url = reqwest::Url::parse(url)
            .with_context(|| format!("the download URL of {set} is not a URL: {url:?}"))?;
        let name = file_name(&url)
            .with_context(|| format!("the download URL of {set} names no file: {url}"))?;
        let size = task.backup_size;
        if size == 0 {
            bail!("the finished task of {set} gives no file size");
        }
        let expected = match task.sha256.len() {
            64 => task.sha256.to_ascii_lowercase(),
            _ => self.published_sha256(&url).await?,
        };
        let file = self.out.join(&name);
        let part = self.out.join(format!("{name}.part"));
        let sidecar = self.out.join(format!("{name}.sha256"));
        let sidecar_text = format!("{expected}  {name}\n");

        if file_sha256(&file, u64::MAX).await.ok().as_deref() == Some(expected.as_str()) {
            tokio::fs::write(&sidecar, &sidecar_text).await?;
            self.progress.note(&format!(
                "found {set}: {} is already here and intact",
                file.display()
            ));
            return Ok(Downloaded {
                replica_set: set.to_string(),
                path: file,
                size,
                sha256: expected,
            });
        }
        // A part of the same file (the same SHA-256 published) resumes.
        let same_file = tokio::fs::read_to_string(&sidecar).await.ok().as_deref()
            == Some(sidecar_text.as_str());
        let offset = match tokio::fs::metadata(&part).await {
            Ok(meta) if same_file && meta.len() <= size => meta.len(),
            _ => 0,
        };
        tokio::fs::write(&sidecar, &sidecar_text)
            .await
            .with_context(|| format!("cannot write {}", sidecar.display()))?;

        let meter = self.progress.bytes("downloading", set, size);
        let mut partial = Partial {
            path: &part,
            expected: &expected,
            size,
            offset,
            hasher: Sha256::new(),
        };
        if offset > 0 {
            partial.offset = file_bytes_hashed(&part, offset, &mut partial.hasher).await?;
            self.progress.note(&format!(
                "resuming {set} from byte {} of {size}",
                partial.offset
            ));
            meter.set_position(partial.offset);
            meter.reset_eta();
        }
        if partial.offset < size {
            self.receive(&url, &mut partial, &meter).await?;
        }
        let received = partial.offset;
        let actual = hex::encode(partial.hasher.finalize());
        meter.finish();
        if actual != expected || received != size {
            let kept = self.out.join(format!("{name}.bad"));
            tokio::fs::rename(&part, &kept).await.with_context(|| {
                format!("cannot rename {} to {}", part.display(), kept.display())
            })?;
            let _ = tokio::fs::remove_file(&sidecar).await;
            return Err(Failure::ChecksumMismatch {
                name,
                actual,
                expected,
                kept,
            }
            .into());
        }
        tokio::fs::rename(&part, &file)
            .await
            .with_context(|| format!("cannot rename {} to {}", part.display(), file.display()))?;
        self.progress
            .note(&format!("verified {set}: sha256 {actual}"));
        Ok(Downloaded {
            replica_set: set.to_string(),
            path: file,
            size,
            sha256: actual,
        })
    }

    /// Fetches the rest of the file into `partial`, hashing what arrives.
    async fn receive(
        &self,
        url: &reqwest::Url,
        partial: &mut Partial<'_>,
        meter: &Meter,
    ) -> anyhow::Result<()> {
        let set = self.replica_set;
        let (part, expected, size) = (partial.path, partial.expected, partial.size);
        let mut offset = partial.offset;
        let endpoint = url.origin().ascii_serialization();
        let mut request = self.client.http().get(url.clone());
        if offset > 0 {
            request = request
                .header(RANGE, format!("bytes={offset}-"))
                .header(IF_RANGE, format!("\"{expected}\""));
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| crate::client::unreachable(&endpoint, &e))?;
        match response.status() {
            StatusCode::PARTIAL_CONTENT => {
                let from = response
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.parse::<u64>().ok());
                if from != Some(offset) {
                    bail!("the server answered a resume of {set} from byte {offset} with another range");
                }
            }
            StatusCode::OK => {
                if offset > 0 {
                    self.progress.note(&format!(
                        "restarting {set}: the server sent the whole file again"
                    ));
                    partial.hasher = Sha256::new();
                    offset = 0;
                    meter.set_position(0);
                    meter.reset_eta();
                }
            }
            status => {
                let body = response.text().await.unwrap_or_default();
                bail!(
                    "the download of {set} was refused: HTTP {status}: {}",
                    body.trim()
                );
            }
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(offset > 0)
            .truncate(offset == 0)
            .open(part)
            .await
            .with_context(|| format!("cannot write {}", part.display()))?;
        let mut writer = BufWriter::with_capacity(WRITE_BUFFER, file);
        let started = Instant::now();
        let mut received = 0u64;
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    writer.flush().await?;
                    return Err(Failure::Interrupted {
                        item: set.to_string(),
                        at: offset + received,
                        size,
                        reason: cause(&e),
                    }
                    .into());
                }
            };
            writer
                .write_all(&chunk)
                .await
                .with_context(|| format!("cannot write {}", part.display()))?;
            partial.hasher.update(&chunk);
            received += chunk.len() as u64;
            meter.set_position(offset + received);
            if let Some(rate) = self.limit_rate {
                let due = Duration::from_secs_f64(received as f64 / rate as f64);
                if let Some(ahead) = due.checked_sub(started.elapsed()) {
                    writer.flush().await?;
                    tokio::time::sleep(ahead).await;
                }
            }
        }
        writer.flush().await?;
        writer.get_ref().sync_all().await?;
        partial.offset = offset + received;
        Ok(())
    }

    /// The SHA-256 at `<url path>.sha256` (same signature), for a server
    /// that does not put it in the task.
    async fn published_sha256(&self, url: &reqwest::Url) -> anyhow::Result<String> {
        let mut sidecar = url.clone();
        sidecar.set_path(&format!("{}.sha256", url.path()));
        let endpoint = url.origin().ascii_serialization();
        let response = self
            .client
            .http()
            .get(sidecar)
            .send()
            .await
            .map_err(|e| crate::client::unreachable(&endpoint, &e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| crate::client::unreachable(&endpoint, &e))?;
        let sha = text.split_whitespace().next().unwrap_or_default();
        if !status.is_success() || sha.len() != 64 {
            bail!(
                "no SHA-256 is published for {}: HTTP {status}",
                self.replica_set
            );
        }
        Ok(sha.to_ascii_lowercase())
    }
}

/// A file being received: where it goes, what it must hash to, and how
/// much of it is there (hashed) so far.
struct Partial<'a> {
    path: &'a Path,
    expected: &'a str,
    size: u64,
    offset: u64,
    hasher: Sha256,
}

/// The last segment of a download URL's path: the file's name.
fn file_name(url: &reqwest::Url) -> Option<String> {
    let name = url.path_segments()?.next_back()?;
    let name = percent_encoding::percent_decode_str(name)
        .decode_utf8()
        .ok()?
        .into_owned();
    let safe = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']);
    safe.then_some(name)
}

/// Hashes the first `limit` bytes of `path` into `hasher`; returns how
/// many there were.
async fn file_bytes_hashed(path: &Path, limit: u64, hasher: &mut Sha256) -> anyhow::Result<u64> {
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut reader = file.take(limit);
    let mut buffer = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buffer).await?;
        if n == 0 {
            return Ok(total);
        }
        hasher.update(&buffer[..n]);
        total += n as u64;
    }
}

/// The hex SHA-256 of the first `limit` bytes of `path`.
async fn file_sha256(path: &Path, limit: u64) -> anyhow::Result<String> {
    let mut hasher = Sha256::new();
    file_bytes_hashed(path, limit, &mut hasher).await?;
    Ok(hex::encode(hasher.finalize()))
}

/// `--limit-rate`: bytes, or K, M, G (powers of 1024) of them.
fn parse_rate(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let scale: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => {
            return Err(format!(
                "{text:?} is not a rate such as 500K, 2M or 1048576"
            ))
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?} is not a rate such as 500K, 2M or 1048576"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("1048576"), Ok(1 << 20));
        assert_eq!(parse_rate("500K"), Ok(500 << 10));
        assert_eq!(parse_rate("2m"), Ok(2 << 20));
        assert_eq!(parse_rate("1GiB"), Ok(1 << 30));
        for bad in ["", "0", "K", "1.5M", "10X", "-1"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn file_names_from_urls() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        assert_eq!(
            file_name(&url("http://h/download/7/cmgo-a_2026-11-28_1044_cmgo-a_0.archive.gz?expires=1&signature=x")),
            Some("cmgo-a_2026-11-28_1044_cmgo-a_0.archive.gz".to_string())
        );
        assert_eq!(
            file_name(&url("http://h/download/7/a%20b.gz")),
            Some("a b.gz".to_string())
        );
        assert_eq!(file_name(&url("http://h/download/7/a%2Fb")), None);
        assert_eq!(file_name(&url("http://h/")), None);
    }

    #[tokio::test]
    async fn prefix_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello world").unwrap();
        assert_eq!(
            file_sha256(&path, 5).await.unwrap(),
            hex::encode(Sha256::digest(b"hello"))
        );
        assert_eq!(
            file_sha256(&path, u64::MAX).await.unwrap(),
            hex::encode(Sha256::digest(b"hello world"))
        );
    }
}

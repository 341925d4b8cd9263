//! `mongobak verify` and `mongobak restore`: what a user does with a
//! downloaded file, offline and into a MongoDB server. (`mongobak restore
//! --instance` restores to a point in time through the API instead: see
//! [`crate::point_in_time`].)
//!
//! Both read plain or gzipped mongodump archives (mongobak's downloads, or
//! files made by the real mongodump). `verify` checks the checksum when a
//! `<file>.sha256` lies beside the file, then parses the whole archive and
//! prints the counts per namespace. `restore` recreates collections with
//! their options and indexes, inserts documents in parallel batches and
//! replays the oplog slice, showing its progress (see [`crate::progress`]).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use sha2::{Digest, Sha256};

use mongobak_archive::{gunzip, ArchiveReader};
use mongobak_restore::{restore_archive, Progress, RestoreOptions};

/// `mongobak verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The archive (`.archive`, `.archive.gz`, `.agz`).
    #[arg(long, value_name = "FILE")]
    file: PathBuf,
}

/// `mongobak restore`: an archive into a MongoDB, or, with `--instance`,
/// collections of a registered instance to a point in time through the
/// API.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The archive to restore (plain or gzipped).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "instance",
        conflicts_with = "instance"
    )]
    file: Option<PathBuf>,
    #[command(flatten)]
    point_in_time: crate::point_in_time::PointInTimeArgs,
    /// The MongoDB to restore into.
    #[arg(
        long,
        value_name = "URI",
        default_value = "mongodb://127.0.0.1:27017/?directConnection=true"
    )]
    uri: String,
    /// Drop each collection before restoring it.
    #[arg(long)]
    drop: bool,
    /// Replay the oplog slice after the data (the state at the backup's end time).
    #[arg(long)]
    oplog_replay: bool,
    /// Restore only namespaces matching this `db.collection` pattern (`*` wildcards); repeatable.
    #[arg(long, value_name = "PATTERN")]
    ns_include: Vec<String>,
    /// Leave out namespaces matching this pattern; repeatable.
    #[arg(long, value_name = "PATTERN")]
    ns_exclude: Vec<String>,
    /// Insert batches in flight at once.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
}

/// Opens `path` as an archive stream, gunzipping when it starts with the
/// gzip magic.
fn open_archive(path: &Path) -> anyhow::Result<Box<dyn Read + Send>> {
    let mut file = BufReader::new(
        File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
    );
    let mut magic = [0u8; 2];
    let gzipped = {
        use std::io::BufRead;
        let head = file.fill_buf()?;
        if head.len() >= 2 {
            magic.copy_from_slice(&head[..2]);
        }
        magic == [0x1f, 0x8b]
    };
    Ok(if gzipped {
        Box::new(gunzip(file))
    } else {
        Box::new(file)
    })
}

/// Runs `mongobak verify`.
pub fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let sidecar = PathBuf::from(format!("{}.sha256", args.file.display()));
    if sidecar.exists() {
        let text = std::fs::read_to_string(&sidecar)
            .with_context(|| format!("cannot read {}", sidecar.display()))?;
        let expected = text
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let mut hasher = Sha256::new();
        let mut file = File::open(&args.file)
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        std::io::copy(&mut file, &mut hasher)?;
        let actual = hex::encode(hasher.finalize());
        if actual != expected {
            bail!(
                "checksum mismatch: {} has SHA-256 {actual}, {} says {expected}",
                args.file.display(),
                sidecar.display()
            );
        }
        println!("sha256 {actual} matches {}", sidecar.display());
    }
    let summary = ArchiveReader::verify(open_archive(&args.file)?).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a valid mongodump archive: {e}",
            args.file.display()
        )
    })?;
    println!(
        "archive {} from server {} ({} bytes), {} namespaces",
        args.file.display(),
        summary.header.server_version,
        summary.archive_bytes,
        summary.namespaces.len()
    );
    for ns in &summary.namespaces {
        println!(
            "{:>12} documents  {:>14} bytes  {}",
            ns.documents, ns.document_bytes, ns.namespace
        );
    }
    Ok(())
}

/// Runs `mongobak restore`.
pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let file = match (args.file.clone(), args.point_in_time.instance.clone()) {
        (_, Some(instance)) => {
            return crate::point_in_time::run(args.point_in_time, instance, args.quiet).await
        }
        (Some(file), None) => file,
        (None, None) => {
            anyhow::bail!("name an archive with --file, or an instance with --instance")
        }
    };
    restore_file(args, file).await
}

async fn restore_file(args: RestoreArgs, file: PathBuf) -> anyhow::Result<()> {
    let size = std::fs::metadata(&file)
        .with_context(|| format!("cannot open {}", file.display()))?
        .len();
    // The restore detects gzip itself and counts the file's own bytes, so
    // progress runs against the file size.
    let input = File::open(&file).with_context(|| format!("cannot open {}", file.display()))?;
    let client = mongodb::Client::with_uri_str(&args.uri)
        .await
        .context("the --uri is not a valid MongoDB connection string")?;
    let options = RestoreOptions {
        drop: args.drop,
        oplog_replay: args.oplog_replay,
        ns_include: args.ns_include,
        ns_exclude: args.ns_exclude,
        parallelism: args.parallel.max(1),
        ..RestoreOptions::default()
    };
    let progress = Arc::new(Progress::default());
    let name = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let meter = crate::progress::Progress::new(args.quiet).bytes("restoring", &name, size);
    let ticker = {
        let progress = progress.clone();
        let meter = meter.clone();
        tokio::spawn(async move {
            loop {
                meter.set_message(format!("{} documents", progress.documents()));
                meter.set_position(progress.input_bytes());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let result = restore_archive(input, &client, &options, &progress).await;
    ticker.abort();
    meter.set_message(format!("{} documents", progress.documents()));
    meter.set_position(progress.input_bytes());
    meter.finish();
    let report =
        result.map_err(|e| anyhow::anyhow!("restore of {} failed: {e}", file.display()))?;
    if !args.quiet {
        for ns in &report.namespaces {
            match &ns.skipped {
                Some(reason) => println!("skipped  {}: {reason}", ns.namespace),
                None => println!(
                    "{:>12} documents  {:>4} indexes  {}{}",
                    ns.inserted,
                    ns.indexes,
                    ns.namespace,
                    if ns.duplicates > 0 {
                        format!("  ({} duplicates kept out)", ns.duplicates)
                    } else {
                        String::new()
                    }
                ),
            }
        }
        if args.oplog_replay {
            println!(
                "oplog: {} entries applied, {} skipped",
                report.oplog.applied, report.oplog.skipped
            );
        }
        for warning in &report.warnings {
            eprintln!("warning: {warning}");
        }
    }
    Ok(())
}

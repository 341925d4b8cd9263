//! `mongobak gc`: find stored data no catalog entry accounts for (left by
//! crashed backups or packaging) and delete it, or with `--dry-run` only
//! list it. The server's janitor does the same every round; this command
//! is for an operator who wants to see or act now.

use anyhow::Context;
use clap::Args;
use jiff::{SignedDuration, Timestamp};

use mongobak_catalog::Catalog;
use mongobak_worker::gc::{collect_garbage, find_garbage, Garbage};

use crate::config::Config;
use crate::ConfigArg;

/// `mongobak gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// List what would be deleted; delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Leave data younger than this many hours alone (default: the
    /// configuration's `[backups] gc_grace_hours`, 24).
    #[arg(long, value_name = "HOURS", value_parser = clap::value_parser!(u32).range(1..))]
    grace_hours: Option<u32>,
}

/// Runs `mongobak gc`.
pub async fn run(args: GcArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.config.as_deref())?;
    let catalog = Catalog::open(&config.metadata_url)
        .await
        .context("cannot open the metadata store")?;
    let store = crate::config::open_store(&config).context("cannot open the blob storage")?;
    let grace = args
        .grace_hours
        .map_or(config.gc_grace, |h| SignedDuration::from_hours(h.into()));
    let now = Timestamp::now();
    let garbage = if args.dry_run {
        find_garbage(&catalog, &store, now, grace).await?
    } else {
        collect_garbage(&catalog, &store, now, grace).await?
    };
    print!("{}", report(&garbage, args.dry_run));
    Ok(())
}

/// The table of `garbage` and a total line.
fn report(garbage: &[Garbage], dry_run: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if !garbage.is_empty() {
        let width = garbage.iter().map(|g| g.prefix.len()).max().unwrap_or(0);
        let _ = writeln!(
            out,
            "{:width$}  {:>7}  {:>12}  REASON",
            "PREFIX", "OBJECTS", "BYTES"
        );
        for g in garbage {
            let _ = writeln!(
                out,
                "{:width$}  {:>7}  {:>12}  {}",
                g.prefix, g.objects, g.bytes, g.reason
            );
        }
    }
    let bytes: u64 = garbage.iter().map(|g| g.bytes).sum();
    let verb = if dry_run { "would delete" } else { "deleted" };
    let _ = writeln!(out, "{verb} {} folder(s), {bytes} bytes", garbage.len());
    out
}

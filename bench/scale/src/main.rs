//! `bench-scale`: two measurements of how mongobak scales, side by side in
//! one run.
//!
//! 1. Download-task throughput of one `mongobak serve` node against
//!    `--nodes` nodes (default 3) sharing one PostgreSQL catalog and one
//!    storage folder: `--tasks` tasks of one backup, created through the
//!    nodes in turn and timed until all are done ([`throughput`](mod@throughput)).
//! 2. Latency of the catalog operations a task goes through, on SQLite
//!    against PostgreSQL, through `mongobak-catalog` directly
//!    ([`metadata`](mod@metadata)).
//!
//! No goal ratio is set: exit status 0 when every task completed and both
//! measurements ran, 3 when the harness failed (a task failed, a process
//! died, a time limit passed), 130 when interrupted. Every process the
//! harness starts is killed by its pid and every database it creates is
//! dropped, on every path. See README.md.

mod api;
mod metadata;
mod postgres;
mod process;
mod seed;
mod throughput;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};

use crate::postgres::Database;
use crate::process::{load_average, Source};
use crate::throughput::{Phase, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "bench-scale",
    about = "Download-task throughput of 1 vs 3 mongobak serve nodes on one PostgreSQL catalog, \
             and catalog operation latency on SQLite vs PostgreSQL"
)]
struct Args {
    /// Download tasks per phase: the instance gets this many replica sets
    /// (all the same source server) and one backup yields one task each.
    #[arg(long, default_value_t = 30)]
    tasks: usize,
    /// Nodes of the second phase (the first has one).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// MB (10^6 bytes) of BSON in the source's data set; every replica set
    /// is a full copy, so each task packages this much.
    #[arg(long, default_value_t = 8.0)]
    mb: f64,
    /// Collections the data set is split over.
    #[arg(long, default_value_t = 3)]
    collections: usize,
    /// Download workers per node (`[downloads] workers`).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Measured iterations of each catalog operation, per engine.
    #[arg(long, default_value_t = 1000)]
    ops: usize,
    /// Unmeasured iterations per engine before them.
    #[arg(long, default_value_t = 50)]
    warmup_ops: usize,
    /// Run one of the two measurements only.
    #[arg(long, value_enum)]
    only: Option<Part>,
    /// The mongobak binary [default: `mongobak` beside this binary, i.e.
    /// target/release/mongobak].
    #[arg(long, value_name = "FILE")]
    mongobak: Option<PathBuf>,
    /// The SecantusDB launcher [default: $SECANTUSD, else the workspace's
    /// .venv/bin/secantusd-py, which scripts/test installs].
    #[arg(long, value_name = "FILE")]
    secantusd: Option<PathBuf>,
    /// The PostgreSQL server, as the URL of a database to connect to while
    /// creating and dropping the harness's own.
    #[arg(
        long,
        value_name = "URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres: String,
    /// Time limit of each backup and of each phase's tasks, in seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Where the temporary files go [default: the system's temp folder].
    #[arg(long, value_name = "DIR")]
    tmp_dir: Option<PathBuf>,
    /// Keep the nodes' and the source's logs in this folder [default: in
    /// the temporary folder, deleted at the end; their last lines are
    /// printed when the run fails].
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    /// Download-task throughput only.
    Throughput,
    /// Catalog latency only.
    Metadata,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench-scale: cannot start a runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let outcome = runtime.block_on(async {
        // On SIGINT or SIGTERM the run is dropped: its guards kill the
        // children and drop the databases.
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = run(&args) => result.map(Some),
            _ = tokio::signal::ctrl_c() => Ok(None),
            _ = terminate.recv() => Ok(None),
        }
    });
    match outcome {
        Ok(Some(())) => ExitCode::SUCCESS,
        Ok(None) => {
            eprintln!("bench-scale: interrupted");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("bench-scale: {e:#}");
            ExitCode::from(3)
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<()> {
    if args.tasks == 0 || args.nodes == 0 || args.collections == 0 || args.workers == 0 {
        bail!("--tasks, --nodes, --collections and --workers must be at least 1");
    }
    if args.mb <= 0.0 {
        bail!("--mb must be more than 0");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dir = match &args.tmp_dir {
        Some(d) => tempfile::Builder::new()
            .prefix("bench-scale-")
            .tempdir_in(d)?,
        None => tempfile::Builder::new().prefix("bench-scale-").tempdir()?,
    };
    let log_dir = match &args.log_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => dir.path().join("logs"),
    };
    std::fs::create_dir_all(&log_dir)?;
    let part = |p: Part| args.only.is_none_or(|only| only == p);
    let mut parts = Vec::new();
    if part(Part::Throughput) {
        parts.push(format!(
            "download tasks on 1 node and {} nodes (one PostgreSQL catalog, one storage folder)",
            args.nodes
        ));
    }
    if part(Part::Metadata) {
        parts.push("catalog operations on SQLite and PostgreSQL".to_string());
    }
    println!("bench-scale: {}", parts.join("; "));
    println!(
        "machine: {cores} cores shared by everything below; load average before the run: {}",
        load_average()
    );

    let phases = if part(Part::Throughput) {
        Some(throughput(args, dir.path(), &log_dir).await?)
    } else {
        None
    };
    let engines = if part(Part::Metadata) {
        Some(metadata(args, dir.path()).await?)
    } else {
        None
    };

    println!();
    if let Some((first, second)) = &phases {
        report_throughput(args, first, second);
    }
    if let Some(engines) = &engines {
        if phases.is_some() {
            println!();
        }
        report_metadata(args, engines);
    }
    Ok(())
}

/// The workspace's `.venv` launcher, unless given or in `$SECANTUSD`.
fn find_secantusd(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match (given, std::env::var_os("SECANTUSD")) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(p)) => PathBuf::from(p),
        (None, None) => {
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            workspace
                .canonicalize()
                .unwrap_or(workspace)
                .join(".venv/bin/secantusd-py")
        }
    };
    if !path.exists() {
        bail!(
            "SecantusDB is not at {}: run scripts/test once (it installs tests/requirements.txt \
             into .venv), or pass --secantusd FILE",
            path.display()
        );
    }
    Ok(path)
}

fn find_mongobak(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .context("the binary has a folder")?
            .join("mongobak"),
    };
    if !path.exists() {
        bail!(
            "{} is missing: cargo build --release -p mongobak",
            path.display()
        );
    }
    Ok(path)
}

async fn throughput(args: &Args, dir: &Path, log_dir: &Path) -> anyhow::Result<(Phase, Phase)> {
    let mongobak = find_mongobak(args.mongobak.as_deref())?;
    let secantusd = find_secantusd(args.secantusd.as_deref())?;
    let source_dir = dir.join("source");
    std::fs::create_dir_all(&source_dir)?;
    let source = Source::start(&secantusd, &source_dir, &log_dir.join("secantusd.log")).await?;
    let loaded = seed::load(&source.client()?, args.mb, args.collections).await;
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "--- SecantusDB log:\n{}",
                process::log_tail(&source.log, 15)
            );
            return Err(e);
        }
    };
    println!(
        "source: {} (pid {}), {:.1} MB of BSON in {} documents over {} collections, loaded in {:.1} s",
        secantusd.display(),
        source.proc.pid(),
        loaded.bytes as f64 / 1e6,
        loaded.documents,
        args.collections,
        loaded.seconds
    );
    println!(
        "instance {}: {} replica sets, each the source; one backup per phase; {} download workers per node; \
         mongobak {}",
        throughput::INSTANCE,
        args.tasks,
        args.workers,
        mongobak.display()
    );
    let settings = Settings {
        mongobak,
        source_uri: source.uri(),
        tasks: args.tasks,
        workers: args.workers,
        postgres: args.postgres.clone(),
        timeout: Duration::from_secs(args.timeout_secs),
        dir: dir.to_path_buf(),
        log_dir: log_dir.to_path_buf(),
    };
    let api = api::Api::new()?;
    let mut phases = Vec::new();
    for nodes in [1, args.nodes] {
        let phase = throughput::run_phase(&settings, &api, nodes).await?;
        eprintln!(
            "{nodes} node(s): {} tasks in {:.2} s, {:.2} tasks/s",
            args.tasks,
            phase.seconds,
            phase.tasks_per_second(args.tasks)
        );
        phases.push(phase);
    }
    drop(source);
    let second = phases.pop().context("two phases ran")?;
    let first = phases.pop().context("two phases ran")?;
    Ok((first, second))
}

async fn metadata(args: &Args, dir: &Path) -> anyhow::Result<[metadata::Engine; 2]> {
    let database = Database::create(&args.postgres, "meta").await?;
    let sqlite = format!("sqlite://{}", dir.join("meta/meta.db").display());
    let mut engines = [
        metadata::Engine::open("SQLite", &sqlite).await?,
        metadata::Engine::open("PostgreSQL", &database.url).await?,
    ];
    eprintln!(
        "catalog: {} + {} iterations per engine, SQLite at {sqlite}, PostgreSQL database {}",
        args.warmup_ops,
        args.ops,
        database.name()
    );
    let started = Instant::now();
    metadata::run(&mut engines, args.warmup_ops, args.ops).await?;
    eprintln!("catalog: done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(engines)
}

fn report_throughput(args: &Args, first: &Phase, second: &Phase) {
    println!(
        "download tasks: {} per phase, one per replica set of one backup, created through the nodes in turn, \
         timed from the first CreateBackupDownloadTask until all list Status 2",
        args.tasks
    );
    println!(
        "{:<6} {:>9} {:>9} {:>9} {:>9} {:>8} {:>10} {:>10} {:>11} {:>10} {:>10}  tasks per node",
        "nodes",
        "backup s",
        "stored MB",
        "create s",
        "seconds",
        "tasks/s",
        "file MB/s",
        "node CPU s",
        "CPU s/task",
        "other CPU",
        "cores busy"
    );
    for p in [first, second] {
        let other = p
            .machine_cpu
            .saturating_sub(p.node_cpu)
            .saturating_sub(p.harness_cpu);
        println!(
            "{:<6} {:>9.1} {:>9.1} {:>9.2} {:>9.2} {:>8.2} {:>10.1} {:>10.1} {:>11.2} {:>10.1} {:>10.2}  {}",
            p.nodes,
            p.backup_seconds,
            p.backup_kb as f64 * 1024.0 / 1e6,
            p.create_seconds,
            p.seconds,
            p.tasks_per_second(args.tasks),
            p.file_bytes as f64 / 1e6 / p.seconds,
            p.node_cpu.as_secs_f64(),
            p.node_cpu.as_secs_f64() / args.tasks as f64,
            other.as_secs_f64(),
            p.machine_cpu.as_secs_f64() / p.seconds,
            p.per_node
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join("/")
        );
    }
    println!(
        "(file MB/s: packaged bytes per second; node CPU: all nodes' user + system CPU over the timed part; \
         other CPU: the rest of the machine's busy time, PostgreSQL included, harness excluded)"
    );
    for p in [first, second] {
        let published: usize = p.per_node.iter().sum();
        if published != args.tasks || p.attempts != args.tasks {
            println!(
                "NOTE {} node(s): {} packaging attempts and {published} files published for {} tasks \
                 (a lease ran out, or a failure was retried)",
                p.nodes, p.attempts, args.tasks
            );
        }
        if p.retried > 0 {
            println!(
                "NOTE {} node(s): {} tasks were seen waiting to retry after a failure",
                p.nodes, p.retried
            );
        }
    }
    println!(
        "check: every task done (Status 2), every file fetched through its URL with the task's size and SHA-256"
    );
    println!(
        "ratio {}-node/1-node: {:.2}x tasks/s",
        second.nodes,
        second.tasks_per_second(args.tasks) / first.tasks_per_second(args.tasks)
    );
}

fn report_metadata(args: &Args, engines: &[metadata::Engine; 2]) {
    println!(
        "catalog operations: microseconds per call, {} measured iterations per engine after {} unmeasured, \
         engines taking turns",
        args.ops, args.warmup_ops
    );
    println!(
        "{:<10} {:>11} {:>11} {:>15} {:>15} {:>10} {:>10}",
        "operation",
        "SQLite p50",
        "SQLite p99",
        "PostgreSQL p50",
        "PostgreSQL p99",
        "ratio p50",
        "ratio p99"
    );
    for (i, op) in metadata::OPERATIONS.iter().enumerate() {
        let q = |e: usize, q: f64| metadata::quantile_us(&engines[e].samples[i], q);
        let (s50, s99, p50, p99) = (q(0, 0.5), q(0, 0.99), q(1, 0.5), q(1, 0.99));
        println!(
            "{op:<10} {s50:>11.0} {s99:>11.0} {p50:>15.0} {p99:>15.0} {:>9.2}x {:>9.2}x",
            p50 / s50,
            p99 / s99
        );
    }
    println!(
        "(ratio: PostgreSQL/SQLite; `list 20` pages the instance's tasks, {} to {} during the run, in the store)",
        args.warmup_ops + 1,
        args.warmup_ops + args.ops
    );
}

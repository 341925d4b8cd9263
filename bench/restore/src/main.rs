//! `bench-restore`: mongobak's restore throughput into SecantusDB against a
//! plain batched `insert_many` of the same documents with the same driver,
//! in the same run.
//!
//! Goal (from the issue): the restore reaches at least 0.9x the plain
//! insert's throughput.
//!
//! The harness writes about `--gb` GB of generated documents (four
//! collections of mixed shapes, with secondary indexes) once as a gzipped
//! mongodump archive with `mongobak_archive`, as a download task packages a
//! backup; starts the Rust SecantusDB server (`secantusd-rs`, see
//! README.md) on a free port; then, in `--rounds` rounds (the order of the
//! operations rotating from round to round), each in a child process and
//! into a freshly dropped database:
//!
//! * **restore**: `mongobak_restore::restore_archive` of the file with the
//!   options `mongobak restore` uses by default (and of the plain archive
//!   with `--plain-archive`);
//! * **baseline**: the same documents, decoded from the archive into memory
//!   before the clock starts, inserted with `insert_many` in the same
//!   batches with the same number in flight, then the same indexes.
//!
//! With `--streamed-baseline`, the baseline also runs reading its batches
//! from the archive while inserting, as the restore does, which separates
//! the cost of the reading work from that of the restore's orchestration.
//! The restore's reading side alone (gunzip, parse, batch) is measured
//! once at the end, without a server.
//!
//! # Layout
//! - `data`: the archive of the generated data set;
//! - `child`: the measured operations, one per child process;
//! - `harness`: running a child and collecting its usage;
//! - the server, the children's life cycle, the `/proc` readings and the
//!   data generator come from `bench_support`.

mod child;
mod data;
mod harness;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use mongobak_restore::RestoreOptions;

use crate::data::ArchiveInfo;
use crate::harness::{Harness, Kind, Measured, IDLE_CORES};
use bench_support::process::{
    clean_up_on_signal, find_secantusd, load_average, Server, SERVER_PID,
};

const GOAL_RATIO: f64 = 0.9;
const MB: f64 = 1e6;

/// What a child process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Op {
    /// Generate the data and write the gzipped archive.
    WriteArchive,
    /// `restore_archive` of the archive.
    Restore,
    /// The plain batched insert of the archive's documents.
    Baseline,
    /// The same, reading the archive while inserting.
    BaselineStreamed,
    /// The restore's reading side alone.
    Read,
}

#[derive(Debug, Parser)]
#[command(
    name = "bench-restore",
    about = "mongobak restore vs a plain batched insert_many of the same documents into SecantusDB: MB/s"
)]
struct Args {
    /// BSON to generate, in GB (10^9 bytes), split evenly over four
    /// collections.
    #[arg(long, default_value_t = 1.0)]
    gb: f64,
    /// Measured rounds; each runs one restore and one baseline (and the
    /// variants asked for), the order rotating from round to round
    /// (R B, B R, R B with two).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Insert batches in flight, for the restore (`RestoreOptions::parallelism`,
    /// `mongobak restore --parallel`) and the baseline alike.
    #[arg(long, default_value_t = RestoreOptions::default().parallelism)]
    parallel: usize,
    /// Also restore a plain (not gzipped) copy of the archive each round, to
    /// tell what decompression costs.
    #[arg(long)]
    plain_archive: bool,
    /// Also run, each round, the baseline reading its batches from the
    /// archive while inserting them, as the restore does (see README.md).
    #[arg(long)]
    streamed_baseline: bool,
    /// Keep the archive in this folder and reuse it on the next run when it
    /// holds the same --gb of the same generated data.
    #[arg(long, value_name = "DIR")]
    keep_archive: Option<PathBuf>,
    /// Skip the reading-side-only rows at the end.
    #[arg(long)]
    no_read: bool,
    /// The SecantusDB Rust server [default: `secantusd-rs` on PATH, then
    /// ~/.cargo/bin/secantusd-rs].
    #[arg(long, value_name = "FILE")]
    secantusd: Option<PathBuf>,
    /// Extra argument for secantusd-rs (repeatable), e.g.
    /// `--server-arg=--cache-size=2G`.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    server_arg: Vec<String>,
    /// Where the server's stderr goes.
    #[arg(long, value_name = "FILE", default_value = "/dev/null")]
    server_log: PathBuf,
    /// Where the children's stderr (the restore's info log) goes [default:
    /// a file in the run's temporary folder, shown on failure].
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Folder for the run's temporary files: the server's data and, without
    /// --keep-archive, the archive [default: the system's temporary folder].
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Before each measured operation, wait up to this many seconds for a
    /// second in which other processes, and the server itself, each use
    /// under 0.1 cores (0: don't wait).
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    idle_wait_secs: u64,
    /// Longest a single child may run, in seconds.
    #[arg(long, default_value_t = 3600)]
    timeout_secs: u64,
    /// Run one operation and print its report (the harness runs itself so).
    #[arg(long, hide = true, value_enum)]
    child: Option<Op>,
    /// Connection URI of the server (child only).
    #[arg(long, hide = true)]
    uri: Option<String>,
    /// The archive file (child only).
    #[arg(long, hide = true)]
    archive: Option<PathBuf>,
    /// The server's process id, for the CPU columns (child only).
    #[arg(long, hide = true)]
    server_pid: Option<u32>,
}

impl Args {
    /// What `mongobak restore` passes by default, with `--parallel`.
    fn restore_options(&self) -> RestoreOptions {
        RestoreOptions {
            parallelism: self.parallel.max(1),
            ..RestoreOptions::default()
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(op) = args.child {
        let result = args
            .archive
            .as_deref()
            .context("--archive is required")
            .and_then(|archive| {
                child::main(
                    op,
                    args.uri.as_deref(),
                    args.server_pid,
                    archive,
                    args.gb,
                    &args.restore_options(),
                )
            });
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench-restore --child {op:?}: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bench-restore: {e:#}");
            ExitCode::from(3)
        }
    }
}

/// The archive to measure with, written by a child unless a kept one
/// matches.
fn prepare_archive(
    args: &Args,
    harness: &Harness,
    dir: &Path,
) -> anyhow::Result<(PathBuf, ArchiveInfo)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let gz = data::gz_path(dir, args.gb);
    if let Some(info) = data::existing(&gz, args.gb) {
        println!("archive: reusing {}", gz.display());
        return Ok((gz, info));
    }
    let _ = std::fs::remove_file(data::plain_path(&gz));
    println!("archive: writing {}", gz.display());
    let written = harness.run_child(Op::WriteArchive, &gz, Kind::Archive, "archive", true)?;
    let info = data::existing(&gz, args.gb).context("the archive's record is missing")?;
    println!(
        "archive: written in {:.1} s ({:.1} MB/s of BSON)",
        written.report.seconds,
        written.mb_per_s()
    );
    Ok((gz, info))
}

fn run(args: &Args) -> anyhow::Result<bool> {
    if args.gb.is_nan() || args.gb <= 0.0 || args.rounds == 0 || args.parallel == 0 {
        bail!("--gb, --rounds and --parallel must be positive");
    }
    let secantusd = find_secantusd(args.secantusd.as_deref())?;
    let this = std::env::current_exe().context("cannot find this binary")?;
    let mut builder = tempfile::Builder::new();
    builder.prefix("bench-restore-");
    let tmp = match &args.work_dir {
        Some(dir) => builder.tempdir_in(dir),
        None => builder.tempdir(),
    }
    .context("cannot create a temporary folder")?;
    clean_up_on_signal(tmp.path().to_path_buf(), "bench-restore");
    let log = args
        .log
        .clone()
        .unwrap_or_else(|| tmp.path().join("children.log"));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let options = args.restore_options();
    let version = Command::new(&secantusd)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown version".into());

    println!(
        "bench-restore: mongobak restore vs a plain batched insert_many of the same documents"
    );
    println!(
        "machine: {cores} cores, shared by the server and the client under test; \
         load average before the run: {}",
        load_average()
    );
    let mut harness = Harness {
        this,
        server: None,
        log: log.clone(),
        gb: args.gb,
        parallel: options.parallelism,
        idle_wait: Duration::from_secs(args.idle_wait_secs),
        timeout: Duration::from_secs(args.timeout_secs),
        // SAFETY: sysconf has no preconditions.
        ticks_per_sec: unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64,
    };
    let archive_dir = args
        .keep_archive
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let (gz, info) = prepare_archive(args, &harness, &archive_dir)?;
    let plain = if args.plain_archive {
        Some(data::write_plain(&gz)?)
    } else {
        None
    };
    println!(
        "archive: {:.0} MB gzipped ({:.2}x), {:.0} MB of BSON in {} documents, \
         {} collections, {} secondary indexes",
        info.gz_bytes as f64 / MB,
        info.bytes as f64 / info.gz_bytes as f64,
        info.bytes as f64 / MB,
        info.documents,
        info.collections,
        info.indexes
    );

    let data_dir = tmp.path().join("data");
    println!(
        "target: {} ({version}), data in {}",
        secantusd.display(),
        data_dir.display()
    );
    println!(
        "restore: restore_archive of the file, RestoreOptions::default() with parallelism {} \
         (batches of {} documents / {} MiB, {} in flight, indexes after the data)",
        options.parallelism,
        options.batch_documents,
        options.batch_bytes >> 20,
        options.parallelism
    );
    println!(
        "baseline: the same batches decoded into memory before the clock starts, \
         insert_many(ordered: false) with {} in flight, then the same createIndexes",
        options.parallelism
    );
    if args.streamed_baseline {
        println!(
            "baseline streamed: the same, the batches read from the gzipped archive while \
             inserting, by a blocking thread through a channel of {} batches",
            options.parallelism
        );
    }
    println!("children's log: {}", log.display());
    println!();

    let server = Server::start(
        &secantusd,
        &data_dir,
        tmp.path(),
        &args.server_log,
        |command| {
            command.args(&args.server_arg);
        },
    )?;
    SERVER_PID.store(server.pid(), Ordering::SeqCst);
    harness.server = Some((server.uri(), server.pid()));
    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // A client of its own for each drop: between two drops this runtime
    // is not running, so a kept client's monitor would time out.
    let uri = server.uri();
    let drop_target = || {
        control
            .block_on(async {
                let client = mongodb::Client::with_uri_str(&uri).await?;
                client.database(data::DB).drop().await?;
                client.shutdown().await;
                Ok::<_, mongodb::error::Error>(())
            })
            .context("cannot drop the target database")
    };

    let row = |m: &Measured| {
        let opt = |v: Option<f64>, precision: usize| {
            v.map_or_else(|| "-".into(), |v| format!("{v:.precision$}"))
        };
        println!(
            "{:<26} {:>7.1} {:>8.2} {:>8.0} {:>8} {:>7} {:>7} {:>7.1} {:>7} {:>7} {:>8.0} {:>9.0}",
            m.label,
            m.mb_per_s(),
            m.report.seconds,
            m.report.bytes as f64 / MB,
            m.report.documents,
            opt(m.report.data_seconds, 2),
            opt(m.report.index_seconds, 2),
            m.child_cpu,
            opt(m.server_cpu, 1),
            opt(m.other_cpu, 1),
            m.report.vm_hwm_kb as f64 * 1024.0 / MB,
            m.maxrss_kb as f64 * 1024.0 / MB,
        );
    };
    println!(
        "{:<26} {:>7} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8} {:>9}",
        "operation",
        "MB/s",
        "seconds",
        "BSON MB",
        "docs",
        "data s",
        "index s",
        "cli CPU",
        "srv CPU",
        "oth CPU",
        "VmHWM MB",
        "maxrss MB"
    );
    let mut order = vec![(Op::Restore, Kind::RestoreGz, gz.as_path())];
    if let Some(plain) = &plain {
        order.push((Op::Restore, Kind::RestorePlain, plain.as_path()));
    }
    order.push((Op::Baseline, Kind::Baseline, gz.as_path()));
    if args.streamed_baseline {
        order.push((Op::BaselineStreamed, Kind::BaselineStreamed, gz.as_path()));
    }
    let mut runs: Vec<Measured> = Vec::new();
    for round in 1..=args.rounds {
        for &(op, kind, archive) in &order {
            drop_target()?;
            harness.wait_for_idle();
            let mut m = harness.run_child(
                op,
                archive,
                kind,
                &format!("{round}: {}", kind.name()),
                false,
            )?;
            check(&mut m, &info)?;
            m.round = round;
            row(&m);
            runs.push(m);
        }
        // Each kind takes every position in turn (with two: R B, B R, ...).
        order.rotate_left(1);
    }
    drop_target()?;
    if !args.no_read {
        let mut reads = vec![(Kind::ReadGz, gz.as_path())];
        if let Some(plain) = &plain {
            reads.push((Kind::ReadPlain, plain.as_path()));
        }
        for (kind, archive) in reads {
            harness.wait_for_idle();
            let m = harness.run_child(Op::Read, archive, kind, kind.name(), false)?;
            if m.report.documents != info.documents || m.report.bytes != info.bytes {
                bail!("{}: read {} documents", m.label, m.report.documents);
            }
            row(&m);
            runs.push(m);
        }
    }
    drop(control);
    server.stop()?;
    println!();
    Ok(report(&runs, cores))
}

/// Checks that a child restored or inserted every document and index of
/// the archive; a restore row gets its BSON bytes from the archive's record.
fn check(m: &mut Measured, info: &ArchiveInfo) -> anyhow::Result<()> {
    if !matches!(m.kind, Kind::Baseline | Kind::BaselineStreamed) {
        m.report.bytes = info.bytes;
    }
    let r = &m.report;
    if r.documents != info.documents
        || r.bytes != info.bytes
        || r.duplicates != 0
        || r.indexes != info.indexes
    {
        bail!(
            "{}: {} documents ({} duplicates), {} bytes and {} indexes; the archive holds \
             {} documents, {} bytes and {} indexes",
            m.label,
            r.documents,
            r.duplicates,
            r.bytes,
            r.indexes,
            info.documents,
            info.bytes,
            info.indexes
        );
    }
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Prints the summary and the verdict; true when the goal is met.
fn report(runs: &[Measured], cores: usize) -> bool {
    let of = |kind: Kind| runs.iter().filter(|m| m.kind == kind).collect::<Vec<_>>();
    let rates = |ms: &[&Measured]| ms.iter().map(|m| m.mb_per_s()).collect::<Vec<_>>();
    let best = |ms: &[&Measured]| rates(ms).into_iter().fold(0.0, f64::max);
    println!(
        "{:<26} {:>12} {:>10} {:>13} {:>13} {:>12}",
        "summary", "median MB/s", "best MB/s", "client cores", "server cores", "peak RSS MB"
    );
    let kinds = [
        Kind::RestoreGz,
        Kind::RestorePlain,
        Kind::Baseline,
        Kind::BaselineStreamed,
        Kind::ReadGz,
        Kind::ReadPlain,
    ];
    for kind in kinds {
        let ms = of(kind);
        if ms.is_empty() {
            continue;
        }
        let wall: f64 = ms.iter().map(|m| m.report.seconds).sum();
        let client: f64 = ms.iter().map(|m| m.child_cpu).sum();
        let server: f64 = ms.iter().filter_map(|m| m.server_cpu).sum();
        let peak = ms.iter().map(|m| m.report.vm_hwm_kb).max().unwrap_or(0);
        println!(
            "{:<26} {:>12.1} {:>10.1} {:>13.2} {:>13.2} {:>12.0}",
            kind.name(),
            median(rates(&ms)),
            best(&ms),
            client / wall,
            server / wall,
            peak as f64 * 1024.0 / MB
        );
    }
    println!("(client/server cores: CPU seconds per wall second; {cores} cores in all)");
    let wall: f64 = runs.iter().map(|m| m.report.seconds).sum();
    let other: f64 = runs.iter().filter_map(|m| m.other_cpu).sum();
    if other / wall > IDLE_CORES {
        println!(
            "WARNING: other processes used {:.2} cores on average during the measurements; \
             the figures are skewed, rerun on an idle machine",
            other / wall
        );
    }
    let phases = |ms: &[&Measured]| {
        (
            median(ms.iter().filter_map(|m| m.report.data_seconds).collect()),
            median(ms.iter().filter_map(|m| m.report.index_seconds).collect()),
        )
    };
    for kind in [
        Kind::RestoreGz,
        Kind::RestorePlain,
        Kind::Baseline,
        Kind::BaselineStreamed,
    ] {
        let ms = of(kind);
        if !ms.is_empty() {
            let (data, index) = phases(&ms);
            println!(
                "{} phases (median s): data {data:.2}, indexes {index:.2}",
                kind.name()
            );
        }
    }
    println!();

    // Best against best: on a shared machine other work only ever slows a
    // run down, so the best run of each is the least disturbed one.
    let baseline = of(Kind::Baseline);
    let ratio_of = |kind: Kind| {
        let ms = of(kind);
        (
            best(&ms) / best(&baseline),
            median(rates(&ms)) / median(rates(&baseline)),
        )
    };
    for kind in [Kind::RestorePlain, Kind::BaselineStreamed] {
        if !of(kind).is_empty() {
            let (ratio, median_ratio) = ratio_of(kind);
            println!(
                "ratio {}/baseline: {ratio:.2}x best to best \
                 ({median_ratio:.2}x median to median) (for reference)",
                kind.name()
            );
        }
    }
    // Each round's restore against the same round's baseline, minutes
    // apart: a slow drift of the machine over the run cancels out.
    let paired: Vec<f64> = of(Kind::RestoreGz)
        .iter()
        .filter_map(|r| {
            let b = baseline.iter().find(|b| b.round == r.round)?;
            Some(r.mb_per_s() / b.mb_per_s())
        })
        .collect();
    println!(
        "ratio restore/baseline round by round: {} (median {:.2}x) (for reference)",
        paired
            .iter()
            .map(|r| format!("{r:.2}x"))
            .collect::<Vec<_>>()
            .join(" "),
        median(paired.clone())
    );
    let (ratio, median_ratio) = ratio_of(Kind::RestoreGz);
    let pass = ratio >= GOAL_RATIO;
    println!(
        "ratio restore/baseline: {ratio:.2}x best to best ({median_ratio:.2}x median to median) \
         (goal >= {GOAL_RATIO}x): {}",
        if pass { "PASS" } else { "MISS" }
    );
    pass
}

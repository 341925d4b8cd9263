//! `bench-pitr`: point-in-time recovery's two halves against SecantusDB,
//! each figure printed as a ratio against a named baseline measured in the
//! same run.
//!
//! * **Capture**: a writer (inserts, updates, replacements and deletes, as
//!   fast as the source takes them) runs for `--seconds` while the real
//!   `mongobak serve` tails the source's oplog with continuous oplog backup
//!   on. Printed: the writer's entries/s and the entries/s sealed into
//!   oplog slices (read from the metadata database), their ratio; the lag
//!   on `/metrics` sampled every 250 ms; `mongobak serve`'s peak RSS; and
//!   its peak RSS when it starts `--behind` entries behind (with
//!   `--compare-mongobak`, also that of another build, side by side).
//! * **Replay**: `--changes` real oplog entries of the writer applied to a
//!   fresh collection by the oplog applier of a restore to a time
//!   (`CollectionAtTime::replay`), against the same changes sent as ordered
//!   bulk writes of 1000 with the same driver; with and without retryable
//!   writes; `--rounds` rounds, the order alternating.
//!
//! # Layout
//! - `servers`: the source (`secantusd-py`), `mongobak serve`, its
//!   `/metrics` and metadata database, `/proc` memory readings;
//! - `writer`: the write load;
//! - `capture`: the load and the start far behind;
//! - `replay`: the changes, the applier and the baseline.

mod capture;
mod replay;
mod servers;
mod writer;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use bench_support::process::{clean_up_on_signal, load_average, Server};
use clap::Parser;
use mongodb::Client;

use crate::capture::{Alone, Behind, Load};
use crate::replay::{Kind, Run};
use crate::servers::{Catalog, Mongobak};

/// Captured entries/s over written entries/s at least: 1.00x but for the
/// last seal after the writer stops (about a second of a minute's load).
const GOAL_CAPTURE: f64 = 0.98;
/// The lag's 99th percentile below this, seconds.
const GOAL_LAG_P99: f64 = 5.0;
/// `mongobak serve`'s peak RSS below this, MB.
const GOAL_RSS_MB: f64 = 150.0;
/// The replay's throughput against the bulk write's, at least.
const GOAL_REPLAY_RATIO: f64 = 0.8;
/// The replay's throughput, entries/s, at least.
const GOAL_REPLAY_RATE: f64 = 20_000.0;
const MB: f64 = 1e6;

#[derive(Debug, Parser)]
#[command(
    name = "bench-pitr",
    about = "Continuous oplog backup under load (capture rate, lag, memory) and the oplog replay of a restore to a time against an ordered bulk write, on SecantusDB"
)]
struct Args {
    /// Seconds the writer runs while mongobak serve tails the oplog.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Writer tasks at once (each one write at a time).
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Entries written while mongobak serve is stopped, before it starts
    /// again.
    #[arg(long, default_value_t = 30_000)]
    behind: u64,
    /// Oplog entries replayed per run.
    #[arg(long, default_value_t = 30_000)]
    changes: u64,
    /// Replay rounds; each runs the replay and the bulk write once (the
    /// order alternating from round to round).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Rounds (the first ones) that also run both with retryable writes.
    #[arg(long, default_value_t = 3)]
    retry_writes_rounds: usize,
    /// The SecantusDB server [default: $SECANTUSD, `secantusd-py` on PATH,
    /// then the workspace's .venv/bin/secantusd-py].
    #[arg(long, value_name = "FILE")]
    secantusd: Option<PathBuf>,
    /// `mongobak` to run [default: target/release/mongobak beside this
    /// binary].
    #[arg(long, value_name = "FILE")]
    mongobak: Option<PathBuf>,
    /// Another `mongobak` (say, a build before a change) also started
    /// `--behind` entries behind, for its peak RSS side by side.
    #[arg(long, value_name = "FILE")]
    compare_mongobak: Option<PathBuf>,
    /// Skip the capture half.
    #[arg(long)]
    skip_capture: bool,
    /// Skip the replay half.
    #[arg(long)]
    skip_replay: bool,
    /// Folder for the run's temporary folder (servers' data and logs)
    /// [default: the system's temporary folder].
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Keep the logs of secantusd-py and mongobak serve in this folder
    /// (they are deleted with the temporary folder otherwise).
    #[arg(long, value_name = "DIR")]
    keep_logs: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bench-pitr: {e}");
            return ExitCode::from(3);
        }
    };
    // The main thread drives the run, so every child (which dies with the
    // thread that started it) lives until the end.
    match runtime.block_on(run(&args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bench-pitr: {e:#}");
            ExitCode::from(3)
        }
    }
}

/// What the capture half measured.
struct CaptureFigures {
    alone: Alone,
    load: Load,
    stop_maxrss_kib: u64,
    behind: Vec<Behind>,
    backlog_seconds: Vec<f64>,
}

async fn run(args: &Args) -> anyhow::Result<bool> {
    let secantusd = servers::find_secantusd_py(args.secantusd.as_deref())?;
    let mongobak = servers::find_mongobak(args.mongobak.as_deref())?;
    let compare = args
        .compare_mongobak
        .as_deref()
        .map(|p| servers::find_mongobak(Some(p)))
        .transpose()?;
    let mut builder = tempfile::Builder::new();
    builder.prefix("bench-pitr-");
    let tmp = match &args.work_dir {
        Some(dir) => builder.tempdir_in(dir),
        None => builder.tempdir(),
    }
    .context("cannot create the temporary folder")?;
    clean_up_on_signal(tmp.path().to_path_buf(), "bench-pitr");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "bench-pitr: continuous oplog backup and the replay of a restore to a time, on SecantusDB"
    );
    println!(
        "machine: {cores} cores, shared by the source, mongobak and the harness; load average before the run: {}",
        load_average()
    );
    println!(
        "source: {} (single-node replica sets, a no-op every second; a fresh server for each phase), data in {}",
        secantusd.display(),
        tmp.path().display()
    );
    let result = phases(args, &secantusd, &mongobak, compare.as_deref(), tmp.path()).await;
    if let Some(dir) = &args.keep_logs {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(tmp.path())?.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let _ = std::fs::copy(&path, dir.join(entry.file_name()));
            }
        }
    }
    result
}

async fn phases(
    args: &Args,
    secantusd: &Path,
    mongobak: &Path,
    compare: Option<&Path>,
    tmp: &Path,
) -> anyhow::Result<bool> {
    let mut met = true;
    if !args.skip_capture {
        println!("mongobak: {}", mongobak.display());
        let figures = capture(args, secantusd, mongobak, compare, tmp).await?;
        met &= report_capture(args, &figures);
    }
    if !args.skip_replay {
        met &= replay(args, secantusd, tmp).await?;
    }
    Ok(met)
}

async fn capture(
    args: &Args,
    secantusd: &Path,
    mongobak: &Path,
    compare: Option<&Path>,
    tmp: &Path,
) -> anyhow::Result<CaptureFigures> {
    // The writer alone, on a server of its own: what the source sustains.
    let server = servers::start_server(secantusd, tmp, "alone", servers::OPLOG_KEEP_ALL)?;
    eprintln!(
        "bench-pitr: the writer alone for {} s with {} writers",
        args.seconds, args.writers
    );
    let client = Client::with_uri_str(server.uri()).await?;
    let alone = capture::alone(&client, server.pid(), args.seconds, args.writers).await?;
    drop(client);
    servers::stop_server(server)?;

    let server = servers::start_server(secantusd, tmp, "source", servers::OPLOG_KEEP_ALL)?;
    let client = Client::with_uri_str(server.uri()).await?;
    let data_dir = tmp.join("mongobak-data");
    let config = servers::write_config(tmp, &data_dir, &server.uri())?;
    let log = tmp.join("mongobak.log");
    let mut serve = Mongobak::start(mongobak, &config, &log)?;
    let catalog = Catalog::open(&data_dir).await?;
    capture::tailer_began(&mut serve, &catalog).await?;
    eprintln!(
        "bench-pitr: the tailer began; writing for {} s with {} writers",
        args.seconds, args.writers
    );
    let load = capture::load(
        &client,
        &mut serve,
        &catalog,
        server.pid(),
        args.seconds,
        args.writers,
    )
    .await?;
    let stop_maxrss_kib = serve.stop()?;
    let mut behind = Vec::new();
    let mut backlog_seconds = Vec::new();
    let mut builds = vec![("this mongobak".to_string(), mongobak)];
    if let Some(compare) = compare {
        builds.push(("--compare-mongobak".to_string(), compare));
    }
    for (n, (label, binary)) in builds.into_iter().enumerate() {
        eprintln!(
            "bench-pitr: {label} stopped; writing {} entries",
            args.behind
        );
        let (target, seconds) = capture::write_backlog(&client, args.behind, 10 + n as u64).await?;
        backlog_seconds.push(seconds);
        let mut serve = Mongobak::start(binary, &config, &log)?;
        let (catch_up, sampled, hwm) = capture::catch_up(&mut serve, &catalog, target).await?;
        serve.stop()?;
        eprintln!(
            "bench-pitr: {label} caught up in {catch_up:.1} s, peak RSS {:.0} MB",
            hwm.max(sampled) as f64 * 1024.0 / MB
        );
        behind.push(Behind {
            label,
            entries: args.behind,
            catch_up,
            rss_sampled_kib: sampled,
            rss_hwm_kib: hwm,
        });
    }
    catalog.close().await;
    drop(client);
    servers::stop_server(server)?;
    Ok(CaptureFigures {
        alone,
        load,
        stop_maxrss_kib,
        behind,
        backlog_seconds,
    })
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report_capture(args: &Args, figures: &CaptureFigures) -> bool {
    let load = &figures.load;
    let mut met = true;
    println!();
    println!(
        "capture: {} writers for {} s against the source while mongobak serve tails it ([pitr] defaults: seal every 2 s, 16 MiB slices)",
        args.writers, args.seconds
    );
    println!(
        "  written                      {} entries in {:.1} s ({}); the source's oplog holds {}",
        load.written, load.seconds, load.mix, load.in_oplog
    );
    let alone = &figures.alone;
    let alone_rate = alone.written as f64 / alone.seconds;
    println!(
        "  written alone (no tailer)    {alone_rate:.0} entries/s ({} in {:.1} s on a fresh server; steady state {:.0}/s; source {:.2} ms of CPU per write)",
        alone.written,
        alone.seconds,
        alone.rate,
        alone.server_cpu / alone.written.max(1) as f64 * 1e3
    );
    println!(
        "  written with the tailer      {:.0} entries/s, {:.2}x the rate alone (steady state {:.0}/s, least-squares slope from {:.1} s to {:.1} s, {:.2}x)",
        load.written as f64 / load.seconds,
        load.written as f64 / load.seconds / alone_rate,
        load.written_rate,
        load.window.0,
        load.window.1,
        load.written_rate / alone.rate
    );
    let captured_rate = load.captured as f64 / (load.seconds + load.catch_up);
    println!(
        "  captured entries/s           {captured_rate:.0} (entries sealed into slices / seconds from the writer's start to the last one sealed); steady state {:.0} (slope, same window as written)",
        load.captured_rate
    );
    let exact = load.captured == load.written && load.in_oplog == load.written;
    println!(
        "  sealed in all                {} of {} entries, the last {:.1} s after the writer stopped{}",
        load.captured,
        load.written,
        load.catch_up,
        if exact { "" } else { ": NOT ALL" }
    );
    let written_rate = load.written as f64 / load.seconds;
    let ratio = captured_rate / written_rate;
    let pass = ratio >= GOAL_CAPTURE && exact;
    met &= pass;
    println!(
        "  ratio captured/written       {ratio:.2}x against {written_rate:.0} written/s over the whole load (goal 1.00x: >= {GOAL_CAPTURE:.2}, every entry sealed): {}; steady state {:.2}x",
        verdict(pass),
        load.captured_rate / load.written_rate
    );
    let mut lags = load.lags.clone();
    lags.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&lags, 0.5), percentile(&lags, 0.99));
    let max = lags.last().copied().unwrap_or(f64::NAN);
    let pass = p99 < GOAL_LAG_P99;
    met &= pass;
    println!(
        "  lag p50 / p99 / max          {p50:.2} / {p99:.2} / {max:.2} s of {} samples every 250 ms; p99 {:.2}x the goal of < {GOAL_LAG_P99} s: {}",
        lags.len(),
        p99 / GOAL_LAG_P99,
        verdict(pass)
    );
    let rss = load.rss_hwm_kib.max(load.rss_sampled_kib) as f64 * 1024.0 / MB;
    let pass = rss < GOAL_RSS_MB;
    met &= pass;
    println!(
        "  serve peak RSS under load    {rss:.0} MB (VmHWM {:.0} MB, highest sampled {:.0} MB, ru_maxrss at exit {:.0} MB); {:.2}x the goal of < {GOAL_RSS_MB} MB: {}",
        load.rss_hwm_kib as f64 * 1024.0 / MB,
        load.rss_sampled_kib as f64 * 1024.0 / MB,
        figures.stop_maxrss_kib as f64 * 1024.0 / MB,
        rss / GOAL_RSS_MB,
        verdict(pass)
    );
    println!(
        "  CPU over the load            mongobak serve {:.1} s ({:.2} cores, {:.0} us per entry), source {:.1} s ({:.2} cores, {:.2} ms per write)",
        load.serve_cpu,
        load.serve_cpu / load.seconds,
        load.serve_cpu / load.written.max(1) as f64 * 1e6,
        load.server_cpu,
        load.server_cpu / load.seconds,
        load.server_cpu / load.written.max(1) as f64 * 1e3
    );
    println!(
        "started behind: mongobak serve stopped (SIGTERM), {} entries written with insert_many (~1 KB documents), then started again",
        args.behind
    );
    for (behind, written) in figures.behind.iter().zip(&figures.backlog_seconds) {
        let rss = behind.rss_hwm_kib.max(behind.rss_sampled_kib) as f64 * 1024.0 / MB;
        let pass = rss < GOAL_RSS_MB;
        if behind.label == "this mongobak" {
            met &= pass;
        }
        println!(
            "  {:<28} peak RSS {rss:.0} MB (VmHWM; highest sampled {:.0} MB), {:.2}x the goal of < {GOAL_RSS_MB} MB: {}; caught up in {:.1} s ({:.0} entries/s; written in {written:.1} s)",
            behind.label,
            behind.rss_sampled_kib as f64 * 1024.0 / MB,
            rss / GOAL_RSS_MB,
            verdict(pass),
            behind.catch_up,
            behind.entries as f64 / behind.catch_up,
        );
    }
    if let [this, other] = figures.behind.as_slice() {
        let peak = |b: &Behind| b.rss_hwm_kib.max(b.rss_sampled_kib) as f64;
        println!(
            "  ratio peak RSS this/compared {:.2}x; catch-up time {:.2}x",
            peak(this) / peak(other),
            this.catch_up / other.catch_up
        );
    }
    met
}

/// The target server's oplog cap: the cost of a single write on
/// secantusd-py grows with its oplog's length, so it is kept short for
/// every run to start alike.
const TARGET_OPLOG: &str = "1000";

async fn replay(args: &Args, secantusd: &Path, tmp: &Path) -> anyhow::Result<bool> {
    eprintln!(
        "bench-pitr: making {} changes with {} writers",
        args.changes, args.writers
    );
    let server = servers::start_server(secantusd, tmp, "changes", servers::OPLOG_KEEP_ALL)?;
    let client = Client::with_uri_str(server.uri()).await?;
    let changes = replay::generate(&client, args.changes, args.writers).await?;
    drop(client);
    servers::stop_server(server)?;
    let models = replay::models(&changes)?;
    let server = servers::start_server(secantusd, tmp, "target", TARGET_OPLOG)?;
    let runs = replay_rounds(args, &server, &changes, &models).await;
    servers::stop_server(server)?;
    Ok(report_replay(&runs?))
}

async fn replay_rounds(
    args: &Args,
    server: &Server,
    changes: &replay::Changes,
    models: &[mongodb::options::WriteModel],
) -> anyhow::Result<Vec<Run>> {
    println!();
    println!(
        "replay: {} oplog entries of the writer ({}; made in {:.1} s), applied to a fresh collection each run",
        changes.entries.len(),
        changes.mix,
        changes.seconds
    );
    println!("  replay: CollectionAtTime::replay of every entry, then exists() (the last batch sent), as a restore to a time does");
    println!("  bulk write: the same changes as ordered InsertOne/UpdateOne($set/$unset)/ReplaceOne/DeleteOne models, client.bulk_write of 1000 at a time, made before the clock starts");
    println!("  every run's result is checked against the source collection, byte for byte");
    println!("  target: a fresh server, its oplog capped at {TARGET_OPLOG} entries");
    println!();
    println!(
        "{:<3} {:<34} {:>9} {:>8} {:>8} {:>8} {:>8} {:>11}",
        "rnd", "operation", "entries/s", "seconds", "cli CPU", "srv CPU", "oth CPU", "srv ms/entry"
    );
    let mut runs: Vec<Run> = Vec::new();
    for round in 0..args.rounds.max(1) {
        let mut order = vec![(Kind::Replay, false), (Kind::Baseline, false)];
        if round < args.retry_writes_rounds {
            order.extend([(Kind::Replay, true), (Kind::Baseline, true)]);
        }
        if round % 2 == 1 {
            order.reverse();
        }
        for (kind, retry_writes) in order {
            let run = replay::run(
                &server.uri(),
                kind,
                retry_writes,
                round + 1,
                changes,
                models,
                server.pid(),
            )
            .await?;
            println!(
                "{:<3} {:<34} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>11.3}",
                run.round,
                kind.name(retry_writes),
                run.rate(),
                run.seconds,
                run.client_cpu,
                run.server_cpu,
                run.other_cpu,
                run.server_cpu / run.entries as f64 * 1e3
            );
            runs.push(run);
        }
    }
    Ok(runs)
}

/// Median and best entries/s of the runs of one kind.
fn rates(runs: &[Run], kind: Kind, retry_writes: bool) -> Option<(f64, f64, f64)> {
    let mine: Vec<&Run> = runs
        .iter()
        .filter(|r| r.kind == kind && r.retry_writes == retry_writes)
        .collect();
    if mine.is_empty() {
        return None;
    }
    let mut rates: Vec<f64> = mine.iter().map(|r| r.rate()).collect();
    rates.sort_by(f64::total_cmp);
    let server_ms = mine
        .iter()
        .map(|r| r.server_cpu / r.entries as f64 * 1e3)
        .sum::<f64>()
        / mine.len() as f64;
    Some((
        percentile(&rates, 0.5),
        *rates.last().expect("not empty"),
        server_ms,
    ))
}

fn report_replay(runs: &[Run]) -> bool {
    println!();
    println!(
        "{:<36} {:>11} {:>11} {:>13}",
        "summary", "median e/s", "best e/s", "srv ms/entry"
    );
    for (kind, retry_writes) in [
        (Kind::Replay, false),
        (Kind::Baseline, false),
        (Kind::Replay, true),
        (Kind::Baseline, true),
    ] {
        if let Some((median, best, server_ms)) = rates(runs, kind, retry_writes) {
            println!(
                "{:<36} {median:>11.0} {best:>11.0} {server_ms:>13.3}",
                kind.name(retry_writes)
            );
        }
    }
    let mut met = true;
    let replay = rates(runs, Kind::Replay, false);
    let baseline = rates(runs, Kind::Baseline, false);
    if let (Some(replay), Some(baseline)) = (replay, baseline) {
        let best = replay.1 / baseline.1;
        let median = replay.0 / baseline.0;
        let round_by_round: Vec<String> = runs
            .iter()
            .filter(|r| r.kind == Kind::Replay && !r.retry_writes)
            .filter_map(|r| {
                runs.iter()
                    .find(|b| b.kind == Kind::Baseline && !b.retry_writes && b.round == r.round)
                    .map(|b| format!("{:.2}x", r.rate() / b.rate()))
            })
            .collect();
        println!(
            "ratio replay/bulk write (retryWrites=false) round by round: {}",
            round_by_round.join(" ")
        );
        let pass = best >= GOAL_REPLAY_RATIO;
        met &= pass;
        println!(
            "ratio replay/bulk write (retryWrites=false): {best:.2}x best to best ({median:.2}x median to median) (goal >= {GOAL_REPLAY_RATIO}x): {}",
            verdict(pass)
        );
        let pass = replay.1 >= GOAL_REPLAY_RATE;
        met &= pass;
        println!(
            "replay throughput: {:.0} entries/s best, {:.2}x the goal of >= {GOAL_REPLAY_RATE:.0}/s: {} (the source spends {:.2} ms of CPU per entry replayed: at most {:.0}/s on one core)",
            replay.1,
            replay.1 / GOAL_REPLAY_RATE,
            verdict(pass),
            replay.2,
            1e3 / replay.2
        );
    }
    for kind in [Kind::Replay, Kind::Baseline] {
        if let (Some(with), Some(without)) = (rates(runs, kind, true), rates(runs, kind, false)) {
            println!(
                "ratio {} / {}: {:.2}x (medians; source CPU per entry {:.3} against {:.3} ms)",
                kind.name(true),
                kind.name(false),
                with.0 / without.0,
                with.2,
                without.2
            );
        }
    }
    met
}

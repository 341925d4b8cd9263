//! `bench-dump`: mongobak's backup throughput and peak memory against a raw
//! drain of the same collections with the same driver, in the same run.
//!
//! Goal (from the issue): the backup reaches at least 0.9x the raw drain's
//! throughput, and its peak memory stays under 300 MB.
//!
//! The source is the Rust SecantusDB server (`secantusd-rs`, installed with
//! `cargo install secantus-mdb`, see README.md), started by this binary on
//! 127.0.0.1 and loaded with about `--gb` GB of BSON in four collections of
//! mixed document sizes (about 1, 2, 3 and 4 KB) through the `mongodb`
//! driver. Then, alternating, on the same server and collections:
//!
//! * **drain**: `find({})` over every collection with `advance` and `current`,
//!   counting bytes and nothing else, `--concurrency` collections at a time
//!   (the engine's default, 4), in the engine's namespace order;
//! * **backup**: `mongobak_dump::run_backup` into a `file://` `BlobStore` in
//!   a temporary folder, deleted afterwards;
//! * with `--model`, a model of the engine's document path (read, zstd,
//!   SHA-256, write), driven the engine's way and with one task per
//!   collection, to show what the engine's task structure costs.
//!
//! The server's oplog is capped (`--oplog-max-entries`, 1000): SecantusDB
//! scans the whole oplog for the backup's oplog reads, which MongoDB does
//! not, and that cost of the source is kept out of the figures.
//!
//! Every measured operation (and the load) runs in a child process: this
//! binary re-run with the hidden `--child OP`. The child times its own work,
//! reads its peak RSS (`VmHWM` of `/proc/self/status`, the kernel's
//! high-water mark, so nothing is missed between samples) when the work is
//! done and prints one JSON line. The parent reaps it with `wait4`,
//! whose `ru_maxrss` and CPU times belong to that child alone, and samples
//! the server's CPU time around it. Every child, the server included, is
//! stopped by its process id on every path, and dies with the parent
//! (`PR_SET_PDEATHSIG`) if the parent is killed. See README.md.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench_support::documents::{generate, Rng};
use bench_support::process::{
    clean_up_on_signal, clock_ticks_per_sec, die_with_parent, find_secantusd, load_average,
    machine_cpu, process_cpu, tail, ChildGuard, Server, SERVER_PID,
};
use clap::{Parser, ValueEnum};
use futures::stream::{self, StreamExt, TryStreamExt};
use mongobak_blob::BlobStore;
use mongobak_dump::{run_backup, BackupSource, Compression, DumpOptions, Progress};
use mongodb::bson::{doc, Document, RawDocumentBuf};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, IndexModel};
use serde::{Deserialize, Serialize};

/// The allocator of the `mongobak` binary (crates/cli/src/main.rs), so the
/// engine runs here as it runs in the service; the drain uses it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const GOAL_RATIO: f64 = 0.9;
const GOAL_RSS_MB: f64 = 300.0;
/// Cores used by other processes, on average, above which a run is flagged.
const OTHER_LOAD_WARNING: f64 = 0.1;
/// Decimal units throughout: MB = 10^6 bytes, GB = 10^9 bytes.
const MB: f64 = 1e6;
const GB: f64 = 1e9;

/// The database holding the benchmark's collections.
const DB: &str = "benchdump";
/// Where the load records what it loaded; sorts after [`DB`], so it never
/// holds one of the first concurrency slots of a drain or backup.
const META_DB: &str = "benchdump_meta";
const META_COLLECTION: &str = "load";
/// Bumped whenever the generated data changes, so `--keep-data` reloads.
const DATA_VERSION: i32 = 1;

/// Same rules as the engine's namespace listing (crates/dump/src/replica_set.rs).
const SKIPPED_DATABASES: &[&str] = &["local", "config"];
const ADMIN_SYSTEM_COLLECTIONS: &[&str] = &["system.users", "system.roles", "system.version"];
const KEPT_SYSTEM_COLLECTIONS: &[&str] = &["system.js"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Op {
    Load,
    Drain,
    Backup,
    /// The engine's per-collection work, modelled, driven as the engine
    /// drives it (`buffered` futures inside one task).
    ModelBuffered,
    /// The same model with one tokio task per collection.
    ModelSpawned,
}

#[derive(Debug, Parser)]
#[command(
    name = "bench-dump",
    about = "mongobak backup vs a raw cursor drain of the same SecantusDB collections: MB/s and peak RSS"
)]
struct Args {
    /// BSON to load, in GB (10^9 bytes), split evenly over four collections.
    #[arg(long, default_value_t = 1.0)]
    gb: f64,
    /// The SecantusDB Rust server [default: `secantusd-rs` on PATH, then
    /// ~/.cargo/bin/secantusd-rs].
    #[arg(long, value_name = "FILE")]
    secantusd: Option<PathBuf>,
    /// Keep the server's data folder here and reuse it on the next run when
    /// it holds the same --gb of the same generated data (skips the load).
    #[arg(long, value_name = "DIR")]
    keep_data: Option<PathBuf>,
    /// Measured rounds; each runs one drain and one backup, the order
    /// alternating from round to round (D B, B D, D B, ...).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Collections read at once, by the drain and by the backup.
    #[arg(long, default_value_t = DumpOptions::default().collection_concurrency)]
    concurrency: usize,
    /// How the backup stores its segments (`[backups] compression`).
    #[arg(long, value_enum, default_value_t = CompressionArg::Zstd)]
    compression: CompressionArg,
    /// The backup's zstd level; negative levels are zstd's fast ones
    /// [default: DumpOptions::default()].
    #[arg(long, allow_negative_numbers = true)]
    zstd_level: Option<i32>,
    /// The backup's segment size in MB of BSON [default: DumpOptions::default()].
    #[arg(long, value_name = "MB")]
    segment_mb: Option<u64>,
    /// Also run, once per round, a model of the engine's document path in
    /// the engine's task structure and with one task per collection (see
    /// README.md, "The model").
    #[arg(long)]
    model: bool,
    /// Skip the single-stream drain (one collection at a time) at the end.
    #[arg(long)]
    no_single_stream: bool,
    /// Give the server the first half of this process's CPUs and every
    /// drain and backup the other half, as if the source ran on a host of
    /// its own (see README.md, "Separate cores").
    #[arg(long)]
    separate_cores: bool,
    /// Skip the unmeasured warm-up drain before the first round.
    #[arg(long)]
    no_warmup: bool,
    /// The server's oplog entry cap (`--oplog-max-entries`; it prunes every
    /// 1000 writes). SecantusDB answers the backup's oplog reads by scanning
    /// the whole oplog, which MongoDB does not; a small oplog keeps that cost
    /// of the source out of the figures. 100000 is the server's default.
    /// Part of the data set: a kept data folder loaded with another cap is
    /// reloaded.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    oplog_max_entries: u64,
    /// Extra argument for secantusd-rs (repeatable), e.g.
    /// `--server-arg=--cache-size=2G`.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    server_arg: Vec<String>,
    /// Environment of the server, `KEY=VALUE`, repeatable; given once, it
    /// replaces the default. The default keeps the server's allocator
    /// (mimalloc) from handing freed memory back to the kernel 10 ms after
    /// it is freed: otherwise every reply to a reader that comes back later
    /// than that costs the server fresh, zeroed pages, so the source spends
    /// more CPU per GB on a slower reader (see README.md, "The source's
    /// allocator"). `--server-env MIMALLOC_PURGE_DELAY=10` restores it.
    #[arg(
        long,
        value_name = "KEY=VALUE",
        default_values_t = ["MIMALLOC_PURGE_DELAY=-1".to_string()],
        value_parser = parse_env_pair
    )]
    server_env: Vec<String>,
    /// Where the server's stderr goes.
    #[arg(long, value_name = "FILE", default_value = "/dev/null")]
    server_log: PathBuf,
    /// Where the children's stderr (the engine's info log) goes [default:
    /// a file in the run's temporary folder, shown on failure].
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Folder for the run's temporary files and backup output [default:
    /// the system's temporary folder].
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Before each measured operation, wait up to this many seconds for a
    /// second in which other processes use under 0.1 cores (0: don't wait).
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    idle_wait_secs: u64,
    /// Longest a single child (load, drain or backup) may run, in seconds.
    #[arg(long, default_value_t = 3600)]
    timeout_secs: u64,
    /// Run one operation and print its report (the harness runs itself so).
    #[arg(long, hide = true, value_enum)]
    child: Option<Op>,
    /// Connection URI of the source (child only).
    #[arg(long, hide = true)]
    uri: Option<String>,
    /// Output folder of a backup (child only).
    #[arg(long, hide = true)]
    out: Option<PathBuf>,
}

/// `--compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CompressionArg {
    Zstd,
    None,
}

impl Args {
    fn dump_options(&self) -> DumpOptions {
        let mut options = DumpOptions {
            collection_concurrency: self.concurrency,
            ..DumpOptions::default()
        };
        match (self.compression, self.zstd_level) {
            (CompressionArg::None, _) => options.compression = Compression::None,
            (CompressionArg::Zstd, Some(level)) => options.compression = Compression::Zstd(level),
            (CompressionArg::Zstd, None) => {}
        }
        if let Some(mb) = self.segment_mb {
            options.segment_bytes = mb * 1_000_000;
        }

        options
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(op) = args.child {
        return match child_main(op, &args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench-dump --child {op:?}: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bench-dump: {e:#}");
            ExitCode::from(3)
        }
    }
}

// ---------------------------------------------------------------------------
// Child side: one operation, one JSON line on stdout.

/// What a child reports.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ChildReport {
    /// BSON bytes of the documents read (load: written).
    bytes: u64,
    documents: u64,
    namespaces: u64,
    /// Wall time of the operation itself: from connecting to the last byte
    /// (backup: the whole `run_backup`, manifests included).
    seconds: f64,
    /// Compressed bytes written (backup only).
    stored_bytes: u64,
    /// Peak resident set of the child, from `VmHWM`, in kB.
    vm_hwm_kb: u64,
    /// Backup only: where its time went, from the engine's log events.
    phases: Option<Phases>,
}

/// Seconds of each part of a backup, split at the engine's info events:
/// `connected`, the last `collection dumped`, `oplog slice captured`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Phases {
    /// Connecting, `hello`, `buildInfo`, the oplog start position.
    connect: f64,
    /// Listing namespaces, counts, indexes, and every collection's documents.
    documents: f64,
    /// Finding the end position and copying the oplog slice.
    oplog: f64,
    /// Writing the manifests.
    manifests: f64,
}

/// Records when the engine's info events happen.
#[derive(Clone, Default)]
struct EventClock(Arc<std::sync::Mutex<Vec<(Instant, String)>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for EventClock {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        if let Ok(mut events) = self.0.lock() {
            events.push((Instant::now(), message.0));
        }
    }
}

impl EventClock {
    /// The phases of a backup that ran from `started` to `finished`.
    fn phases(&self, started: Instant, finished: Instant) -> Option<Phases> {
        let events = self.0.lock().ok()?;
        let last = |name: &str| {
            events
                .iter()
                .rev()
                .find(|(_, m)| m == name)
                .map(|(at, _)| *at)
        };
        let connected = last("connected")?;
        let dumped = last("collection dumped")?;
        let captured = last("oplog slice captured")?;
        let secs = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64();
        Some(Phases {
            connect: secs(started, connected),
            documents: secs(connected, dumped),
            oplog: secs(dumped, captured),
            manifests: secs(captured, finished),
        })
    }
}

fn child_main(op: Op, args: &Args) -> anyhow::Result<()> {
    let uri = args.uri.as_deref().context("--uri is required")?;
    // The engine logs one line per collection; it goes to the parent's log,
    // and the clock notes when each of its info events happens.
    let clock = EventClock::default();
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        use tracing_subscriber::Layer;
        let log_filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "warn,mongobak_dump=info".into());
        let clock_filter = tracing_subscriber::filter::Targets::new()
            .with_target("mongobak_dump", tracing::Level::INFO);
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(false)
                    .with_filter(log_filter),
            )
            .with(clock.clone().with_filter(clock_filter))
            .init();
    }
    // The kind of runtime `mongobak serve` runs backups on.
    let runtime = tokio::runtime::Runtime::new()?;
    let uri = uri.to_string();
    let out = args.out.clone();
    let (gb, oplog_max_entries, concurrency) = (args.gb, args.oplog_max_entries, args.concurrency);
    let options = args.dump_options();
    // Spawned, as the worker runs each backup: one task on a worker thread.
    let work = runtime.spawn(async move {
        let out = || out.as_deref().context("--out is required");
        match op {
            Op::Load => load(&uri, gb, oplog_max_entries).await,
            Op::Drain => drain(&uri, concurrency).await,
            Op::Backup => backup(&uri, out()?, &options, &clock).await,
            Op::ModelBuffered | Op::ModelSpawned => {
                model(&uri, out()?, &options, op == Op::ModelSpawned).await
            }
        }
    });
    let mut report = runtime.block_on(work)??;
    drop(runtime);
    report.vm_hwm_kb = vm_hwm_kb().context("cannot read VmHWM from /proc/self/status")?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Peak resident set size of this process since exec, in kB.
fn vm_hwm_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn client(uri: &str, app_name: &str) -> anyhow::Result<Client> {
    let mut options = ClientOptions::parse(uri).await?;
    options.app_name = Some(app_name.into());
    options
        .server_selection_timeout
        .get_or_insert(Duration::from_secs(15));
    Ok(Client::with_options(options)?)
}

/// The collections the engine would read documents from, in its order:
/// every database but `local` and `config`, no internal `system.*`
/// collections but the admin ones holding users, roles and the auth version.
async fn namespaces(client: &Client) -> anyhow::Result<Vec<(String, String)>> {
    let mut databases = client.list_database_names().await?;
    if !databases.iter().any(|d| d == "admin") {
        databases.push("admin".into());
    }
    databases.retain(|d| !SKIPPED_DATABASES.contains(&d.as_str()));
    let mut out = Vec::new();
    for db in databases {
        for spec in client
            .database(&db)
            .list_collections()
            .await?
            .try_collect::<Vec<_>>()
            .await?
        {
            let name = spec.name;
            let kept = !name.starts_with("system.")
                || KEPT_SYSTEM_COLLECTIONS.contains(&name.as_str())
                || (db == "admin" && ADMIN_SYSTEM_COLLECTIONS.contains(&name.as_str()));
            // Views have no documents of their own; the load makes none.
            if kept && spec.collection_type == mongodb::results::CollectionType::Collection {
                out.push((db.clone(), name));
            }
        }
        if db == "admin" {
            for name in ADMIN_SYSTEM_COLLECTIONS {
                let listed = out.iter().any(|(d, n)| d == "admin" && n == name);
                let has_documents = client
                    .database("admin")
                    .collection::<Document>(name)
                    .find_one(doc! {})
                    .await?
                    .is_some();
                if !listed && has_documents {
                    out.push(("admin".into(), name.to_string()));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads every document of every collection as raw BSON and counts bytes,
/// `concurrency` collections at a time, with the engine's combinator
/// (`buffered`, in namespace order).
async fn drain(uri: &str, concurrency: usize) -> anyhow::Result<ChildReport> {
    let started = Instant::now();
    let client = client(uri, "bench-dump-drain").await?;
    let namespaces = namespaces(&client).await?;
    let count = namespaces.len() as u64;
    let client = &client;
    let (bytes, documents) = stream::iter(namespaces)
        .map(|(db, name)| async move {
            let mut cursor = client
                .database(&db)
                .collection::<RawDocumentBuf>(&name)
                .find(doc! {})
                .await
                .with_context(|| format!("reading {db}.{name}"))?;
            let (mut bytes, mut documents) = (0u64, 0u64);
            // The cheapest read the driver has: each document lent out of
            // the server's reply, as the engine reads them.
            while cursor
                .advance()
                .await
                .with_context(|| format!("reading {db}.{name}"))?
            {
                bytes += cursor.current().as_bytes().len() as u64;
                documents += 1;
            }
            Ok::<_, anyhow::Error>((bytes, documents))
        })
        .buffered(concurrency.max(1))
        .try_fold((0u64, 0u64), |(b, d), (nb, nd)| async move {
            Ok((b + nb, d + nd))
        })
        .await?;
    Ok(ChildReport {
        bytes,
        documents,
        namespaces: count,
        seconds: started.elapsed().as_secs_f64(),
        ..ChildReport::default()
    })
}

/// Compressed bytes gathered before they go to the store, as in the engine
/// (crates/dump/src/segment.rs, `FLUSH_BYTES`).
const MODEL_FLUSH_BYTES: usize = 1 << 20;

/// A model of the engine's document path, to tell what its task structure
/// costs: every collection read as `RawDocumentBuf`, each document written
/// into a streaming zstd encoder, every 1 MiB of output hashed (SHA-256) and
/// written to a `BlobStore` object, as `SegmentSink` does (one segment per
/// collection; no manifests, no oplog). `spawned` runs each collection as
/// its own tokio task (at most `collection_concurrency` at once) instead of
/// the engine's `buffered` futures, which all share one task and so one
/// thread at a time.
async fn model(
    uri: &str,
    out: &Path,
    options: &DumpOptions,
    spawned: bool,
) -> anyhow::Result<ChildReport> {
    let root = out.join("store");
    let root = root
        .to_str()
        .context("the output folder's path is not UTF-8")?;
    let store = BlobStore::open(&format!("file://{root}"))?;
    let started = Instant::now();
    let client = client(uri, "bench-dump-model").await?;
    let namespaces = namespaces(&client).await?;
    let count = namespaces.len() as u64;
    let Compression::Zstd(level) = options.compression else {
        bail!("the model compresses with zstd: run it without --compression none");
    };
    let one = |n: usize, (db, name): (String, String)| {
        let client = client.clone();
        let store = store.clone();
        async move { model_collection(&client, &store, &db, &name, n, level).await }
    };
    let totals: Vec<(u64, u64, u64)> = if spawned {
        let slots = Arc::new(tokio::sync::Semaphore::new(
            options.collection_concurrency.max(1),
        ));
        let mut tasks = Vec::new();
        for (n, ns) in namespaces.into_iter().enumerate() {
            let slot = Arc::clone(&slots).acquire_owned().await?;
            let work = one(n, ns);
            tasks.push(tokio::spawn(async move {
                let result = work.await;
                drop(slot);
                result
            }));
        }
        let mut totals = Vec::new();
        for task in tasks {
            totals.push(task.await??);
        }
        totals
    } else {
        stream::iter(namespaces.into_iter().enumerate())
            .map(|(n, ns)| one(n, ns))
            .buffered(options.collection_concurrency.max(1))
            .try_collect()
            .await?
    };
    Ok(ChildReport {
        bytes: totals.iter().map(|t| t.0).sum(),
        documents: totals.iter().map(|t| t.1).sum(),
        namespaces: count,
        seconds: started.elapsed().as_secs_f64(),
        stored_bytes: totals.iter().map(|t| t.2).sum(),
        ..ChildReport::default()
    })
}

/// One collection of [`model`]: `(BSON bytes, documents, stored bytes)`.
async fn model_collection(
    client: &Client,
    store: &BlobStore,
    db: &str,
    name: &str,
    n: usize,
    level: i32,
) -> anyhow::Result<(u64, u64, u64)> {
    use sha2::Digest;
    use std::io::Write;
    let mut cursor = client
        .database(db)
        .collection::<RawDocumentBuf>(name)
        .find(doc! {})
        .await?;
    let mut writer = store
        .writer(&format!("model/c{n:04}/s00000.bson.zst"))
        .await?;
    let mut encoder =
        zstd::stream::write::Encoder::new(Vec::with_capacity(MODEL_FLUSH_BYTES), level)?;
    let mut hasher = sha2::Sha256::new();
    let (mut bytes, mut documents) = (0u64, 0u64);
    while let Some(document) = cursor.try_next().await? {
        encoder.write_all(document.as_bytes())?;
        bytes += document.as_bytes().len() as u64;
        documents += 1;
        if encoder.get_ref().len() >= MODEL_FLUSH_BYTES {
            let chunk = std::mem::replace(encoder.get_mut(), Vec::with_capacity(MODEL_FLUSH_BYTES));
            hasher.update(&chunk);
            writer.write(chunk).await?;
        }
    }
    let tail = encoder.finish()?;
    hasher.update(&tail);
    writer.write(tail).await?;
    let stored = writer.close().await?;
    std::hint::black_box(hasher.finalize());
    Ok((bytes, documents, stored))
}

/// One full `run_backup` into a file:// store under `out`.
async fn backup(
    uri: &str,
    out: &Path,
    options: &DumpOptions,
    clock: &EventClock,
) -> anyhow::Result<ChildReport> {
    let root = out.join("store");
    let root = root
        .to_str()
        .context("the output folder's path is not UTF-8")?;
    let store = BlobStore::open(&format!("file://{root}"))?;
    let source = BackupSource {
        instance_id: "cmgo-benchdmp".into(),
        sharded: false,
        replica_sets: vec![("cmgo-benchdmp_0".into(), uri.to_string())],
    };
    let progress = Progress::default();
    let started = Instant::now();
    let manifest = run_backup(&source, &store, "bench-backup", options, &progress).await?;
    let finished = Instant::now();
    let seconds = finished.duration_since(started).as_secs_f64();
    let (_, sets) = mongobak_dump::read_manifests(&store, "bench-backup").await?;
    Ok(ChildReport {
        bytes: progress.bytes(),
        documents: progress.documents(),
        namespaces: sets.iter().map(|s| s.collections.len() as u64).sum(),
        seconds,
        stored_bytes: manifest.stored_bytes(),
        vm_hwm_kb: 0,
        phases: clock.phases(started, finished),
    })
}

// ---------------------------------------------------------------------------
// The data set.

/// The four collections: name, mean document size the generator aims at.
const COLLECTIONS: &[(&str, usize)] = &[
    ("orders", 1000),
    ("events", 2000),
    ("profiles", 3000),
    ("logs", 4000),
];

/// Documents per `insert_many` call: about 2 MB of BSON.
const BATCH_BYTES: usize = 2 << 20;

/// Drops the benchmark's databases and loads about `gb` GB of BSON, the four
/// collections at once, then records what was loaded.
async fn load(uri: &str, gb: f64, oplog_max_entries: u64) -> anyhow::Result<ChildReport> {
    let started = Instant::now();
    let client = client(uri, "bench-dump-load").await?;
    client.database(DB).drop().await?;
    client.database(META_DB).drop().await?;
    let db = client.database(DB);
    db.collection::<Document>("orders")
        .create_index(IndexModel::builder().keys(doc! {"customer.id": 1}).build())
        .await?;
    db.collection::<Document>("events")
        .create_index(IndexModel::builder().keys(doc! {"ts": 1}).build())
        .await?;
    db.collection::<Document>("profiles")
        .create_index(
            IndexModel::builder()
                .keys(doc! {"username": 1})
                .options(IndexOptions::builder().unique(true).build())
                .build(),
        )
        .await?;

    let per_collection = (gb * GB / COLLECTIONS.len() as f64) as u64;
    let loaded = Arc::new(AtomicU64::new(0));
    let reporter = {
        let loaded = Arc::clone(&loaded);
        let total = per_collection * COLLECTIONS.len() as u64;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let done = loaded.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                eprintln!(
                    "load: {:.0} / {:.0} MB in {secs:.0} s ({:.1} MB/s)",
                    done as f64 / MB,
                    total as f64 / MB,
                    done as f64 / MB / secs
                );
            }
        })
    };
    let tasks: Vec<_> = COLLECTIONS
        .iter()
        .enumerate()
        .map(|(i, &(name, mean))| {
            let collection = db.collection::<RawDocumentBuf>(name);
            let loaded = Arc::clone(&loaded);
            tokio::spawn(async move {
                let mut rng = Rng(0x5eed_0000 + i as u64);
                let (mut bytes, mut n) = (0u64, 0u64);
                while bytes < per_collection {
                    let mut batch = Vec::with_capacity(BATCH_BYTES / mean + 1);
                    let mut batch_bytes = 0;
                    while batch_bytes < BATCH_BYTES && bytes + (batch_bytes as u64) < per_collection
                    {
                        let document = RawDocumentBuf::from_document(&generate(name, n, &mut rng))?;
                        batch_bytes += document.as_bytes().len();
                        batch.push(document);
                        n += 1;
                    }
                    collection.insert_many(batch).await?;
                    bytes += batch_bytes as u64;
                    loaded.fetch_add(batch_bytes as u64, Ordering::Relaxed);
                }
                Ok::<_, anyhow::Error>((bytes, n))
            })
        })
        .collect();
    let (mut bytes, mut documents) = (0, 0);
    for task in tasks {
        let (b, d) = task.await??;
        bytes += b;
        documents += d;
    }
    reporter.abort();
    client
        .database(META_DB)
        .collection::<Document>(META_COLLECTION)
        .insert_one(doc! {
            "_id": "load",
            "version": DATA_VERSION,
            "gb": gb,
            "oplog_max_entries": oplog_max_entries as i64,
            "bytes": bytes as i64,
            "documents": documents as i64,
        })
        .await?;
    Ok(ChildReport {
        bytes,
        documents,
        namespaces: COLLECTIONS.len() as u64,
        seconds: started.elapsed().as_secs_f64(),
        ..ChildReport::default()
    })
}

/// What an earlier load left, if it matches `gb`, the oplog cap and
/// [`DATA_VERSION`]: `(bytes, documents)`.
async fn loaded_data(
    uri: &str,
    gb: f64,
    oplog_max_entries: u64,
) -> anyhow::Result<Option<(u64, u64)>> {
    let client = client(uri, "bench-dump").await?;
    let meta = client
        .database(META_DB)
        .collection::<Document>(META_COLLECTION)
        .find_one(doc! {"_id": "load"})
        .await?;
    Ok(meta.and_then(|m| {
        let same = m.get_i32("version").ok() == Some(DATA_VERSION)
            && m.get_f64("gb").ok() == Some(gb)
            && m.get_i64("oplog_max_entries").ok() == Some(oplog_max_entries as i64);
        let bytes = m.get_i64("bytes").ok()? as u64;
        let documents = m.get_i64("documents").ok()? as u64;
        same.then_some((bytes, documents))
    }))
}

/// The source's own cost of the backup's two kinds of oplog read, with
/// nothing to copy: the newest entry (read at the start and at the end), and
/// the entries after it (the slice query).
struct OplogProbe {
    entries: u64,
    newest: Duration,
    slice: Duration,
    /// `sort({$natural: -1})` gave the same entry as `{$natural: 1}`.
    reverse_ignored: bool,
}

/// Waits (up to half a minute) until the server's pruner has brought the
/// oplog within its cap; with no writes during the run, no entry is pruned
/// under a backup afterwards.
async fn probe_oplog(uri: &str, cap: u64) -> anyhow::Result<OplogProbe> {
    let client = client(uri, "bench-dump").await?;
    let oplog = client.database("local").collection::<Document>("oplog.rs");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut entries = oplog.estimated_document_count().await?;
    while entries > cap && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        entries = oplog.estimated_document_count().await?;
    }
    let oldest = oplog
        .find_one(doc! {})
        .sort(doc! {"$natural": 1})
        .await?
        .and_then(|entry| entry.get_timestamp("ts").ok());
    let started = Instant::now();
    let newest = oplog
        .find_one(doc! {})
        .sort(doc! {"$natural": -1})
        .await?
        .and_then(|entry| entry.get_timestamp("ts").ok());
    let newest_took = started.elapsed();
    let started = Instant::now();
    if let Some(ts) = newest {
        let mut cursor = oplog
            .find(doc! {"ts": {"$gt": ts}})
            .sort(doc! {"$natural": 1})
            .await?;
        while cursor.try_next().await?.is_some() {}
    }
    Ok(OplogProbe {
        entries,
        newest: newest_took,
        slice: started.elapsed(),
        reverse_ignored: entries > 1 && newest == oldest,
    })
}

// ---------------------------------------------------------------------------
// Child processes.

/// Checks a `--server-env` value.
fn parse_env_pair(pair: &str) -> Result<String, String> {
    match pair.split_once('=') {
        Some((key, _)) if !key.is_empty() => Ok(pair.to_string()),
        _ => Err(format!("`{pair}` is not KEY=VALUE")),
    }
}

/// Which CPUs the server and the measured children may run on, with
/// `--separate-cores`: the first half of this process's CPUs (at least
/// one) for the server, the rest for the client.
#[derive(Debug, Clone)]
struct CoreSplit {
    server: Vec<usize>,
    client: Vec<usize>,
}

impl CoreSplit {
    /// Splits this process's CPUs; `None` with fewer than two.
    fn of_this_process() -> anyhow::Result<Option<CoreSplit>> {
        // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let size = size_of::<libc::cpu_set_t>();
        if unsafe { libc::sched_getaffinity(0, size, &mut set) } != 0 {
            return Err(std::io::Error::last_os_error()).context("sched_getaffinity");
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
            .collect();
        if cpus.len() < 2 {
            return Ok(None);
        }
        let (server, client) = cpus.split_at(cpus.len() / 2);
        Ok(Some(CoreSplit {
            server: server.to_vec(),
            client: client.to_vec(),
        }))
    }
}

/// Makes the child run only on `cpus`.
fn pin_to(command: &mut Command, cpus: &[usize]) {
    // SAFETY: cpu_set_t is plain data, filled here before the fork.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: sched_setaffinity is a plain system call, safe between fork
    // and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// One child run, as the parent saw it.
struct Measured {
    label: String,
    report: ChildReport,
    /// `ru_maxrss` from `wait4`, in kB.
    maxrss_kb: u64,
    /// The child's user + system CPU time.
    child_cpu: f64,
    /// The server's user + system CPU time over the child's life.
    server_cpu: Option<f64>,
    /// CPU time of every other process on the machine over the child's
    /// life: other work competing for the cores.
    other_cpu: Option<f64>,
}

impl Measured {
    fn mb_per_s(&self) -> f64 {
        self.report.bytes as f64 / MB / self.report.seconds
    }
}

/// Everything the parent needs to run children.
struct Harness<'a> {
    args: &'a Args,
    this: PathBuf,
    uri: String,
    server_pid: u32,
    /// With `--separate-cores`, the CPUs of every measured child.
    client_cpus: Option<Vec<usize>>,
    log: PathBuf,
    work: PathBuf,
    ticks_per_sec: f64,
}

impl Harness<'_> {
    /// Waits up to `--idle-wait-secs` for a second in which processes other
    /// than the server use under [`OTHER_LOAD_WARNING`] cores.
    fn wait_for_idle(&self) {
        let deadline = Instant::now() + Duration::from_secs(self.args.idle_wait_secs);
        while Instant::now() < deadline {
            let before = machine_cpu(self.ticks_per_sec)
                .zip(process_cpu(self.server_pid, self.ticks_per_sec));
            std::thread::sleep(Duration::from_secs(1));
            let after = machine_cpu(self.ticks_per_sec)
                .zip(process_cpu(self.server_pid, self.ticks_per_sec));
            match before.zip(after) {
                Some(((m0, s0), (m1, s1))) if (m1 - m0) - (s1 - s0) < OTHER_LOAD_WARNING => return,
                Some(_) => {}
                None => return,
            }
        }
    }

    /// Runs `--child op` to completion and collects its report and usage.
    fn run_child(&self, op: Op, concurrency: usize, label: &str) -> anyhow::Result<Measured> {
        if op != Op::Load {
            self.wait_for_idle();
        }
        let out = self.work.join("backup");
        let mut command = Command::new(&self.this);
        command
            .arg("--child")
            .arg(
                op.to_possible_value()
                    .expect("no skipped variants")
                    .get_name(),
            )
            .args(["--uri", &self.uri])
            .args(["--concurrency", &concurrency.to_string()])
            .args(["--gb", &self.args.gb.to_string()])
            .args([
                "--oplog-max-entries",
                &self.args.oplog_max_entries.to_string(),
            ]);
        let compression = self.args.compression.to_possible_value();
        let compression = compression.expect("no skipped variants");
        command.args(["--compression", compression.get_name()]);
        if let Some(level) = self.args.zstd_level {
            command.arg(format!("--zstd-level={level}"));
        }
        if let Some(mb) = self.args.segment_mb {
            command.args(["--segment-mb", &mb.to_string()]);
        }

        let writes = matches!(op, Op::Backup | Op::ModelBuffered | Op::ModelSpawned);
        if writes {
            let _ = std::fs::remove_dir_all(&out);
            std::fs::create_dir_all(&out)?;
            command.arg("--out").arg(&out);
        }
        let stderr: Stdio = if op == Op::Load {
            Stdio::inherit()
        } else {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .with_context(|| format!("cannot open {}", self.log.display()))?
                .into()
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        die_with_parent(&mut command);
        if let Some(cpus) = &self.client_cpus {
            pin_to(&mut command, cpus);
        }

        let server_before = process_cpu(self.server_pid, self.ticks_per_sec);
        let machine_before = machine_cpu(self.ticks_per_sec);
        let mut child = ChildGuard(Some(
            command.spawn().context("cannot start a child process")?,
        ));
        let mut stdout = child
            .0
            .as_mut()
            .and_then(|c| c.stdout.take())
            .context("stdout is piped")?;
        let (tx, rx) = std_mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = tx.send(stdout.read_to_string(&mut text).map(|_| text));
        });
        let timeout = Duration::from_secs(self.args.timeout_secs);
        let text = match rx.recv_timeout(timeout) {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => bail!("{label}: cannot read the child's stdout: {e}"),
            Err(_) => bail!("{label}: still running after {} s", timeout.as_secs()),
        };
        let (status, usage) = child.wait_rusage()?;
        let server_after = process_cpu(self.server_pid, self.ticks_per_sec);
        let machine_after = machine_cpu(self.ticks_per_sec);
        if writes {
            std::fs::remove_dir_all(&out)
                .with_context(|| format!("cannot delete {}", out.display()))?;
        }
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            bail!(
                "{label}: the child failed (wait status {status:#x}); its log:\n{}",
                tail(&self.log, 30)
            );
        }
        let line = text.lines().last().unwrap_or_default();
        let report: ChildReport = serde_json::from_str(line)
            .with_context(|| format!("{label}: the child printed {line:?}"))?;
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        let child_cpu = seconds(usage.ru_utime) + seconds(usage.ru_stime);
        let server_cpu = server_before
            .zip(server_after)
            .map(|(before, after)| after - before);
        let other_cpu = machine_before
            .zip(machine_after)
            .zip(server_cpu)
            .map(|((before, after), server)| (after - before - child_cpu - server).max(0.0));
        Ok(Measured {
            label: label.to_string(),
            report,
            maxrss_kb: usage.ru_maxrss as u64,
            child_cpu,
            server_cpu,
            other_cpu,
        })
    }
}

// ---------------------------------------------------------------------------
// The run.

fn run(args: &Args) -> anyhow::Result<bool> {
    if args.gb.is_nan() || args.gb <= 0.0 || args.rounds == 0 || args.concurrency == 0 {
        bail!("--gb, --rounds and --concurrency must be positive");
    }
    let secantusd = find_secantusd(args.secantusd.as_deref())?;
    let this = std::env::current_exe().context("cannot find this binary")?;
    let mut builder = tempfile::Builder::new();
    builder.prefix("bench-dump-");
    let tmp = match &args.work_dir {
        Some(dir) => builder.tempdir_in(dir),
        None => builder.tempdir(),
    }
    .context("cannot create a temporary folder")?;
    clean_up_on_signal(tmp.path().to_path_buf(), "bench-dump");
    let data = match &args.keep_data {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            dir.canonicalize()?
        }
        None => tmp.path().join("data"),
    };
    let log = args
        .log
        .clone()
        .unwrap_or_else(|| tmp.path().join("children.log"));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let options = args.dump_options();
    let version = Command::new(&secantusd)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown version".into());

    let split = if args.separate_cores {
        Some(CoreSplit::of_this_process()?.context("--separate-cores needs at least two CPUs")?)
    } else {
        None
    };

    println!("bench-dump: mongobak backup vs a raw cursor drain of the same collections");
    match &split {
        None => println!(
            "machine: {cores} cores, shared by the server and the client under test; \
             load average before the run: {}",
            load_average()
        ),
        Some(split) => println!(
            "machine: {cores} cores, separate: the server on CPUs {:?}, the client under test \
             on CPUs {:?}; load average before the run: {}",
            split.server,
            split.client,
            load_average()
        ),
    }
    println!(
        "source: {} ({version}), data in {}, environment {:?}",
        secantusd.display(),
        data.display(),
        args.server_env
    );
    println!(
        "backup: run_backup to file:// in {}, collection_concurrency {}, compression {:?}, \
         segments of {:.0} MB; drain: find({{}}) read with advance/current, counting bytes, \
         {} collections at a time",
        tmp.path().display(),
        options.collection_concurrency,
        options.compression,
        options.segment_bytes as f64 / MB,
        args.concurrency
    );
    println!("children's log: {}", log.display());
    println!();

    let server_cpus = split.as_ref().map(|s| s.server.as_slice());
    let server = Server::start(&secantusd, &data, tmp.path(), &args.server_log, |command| {
        command
            .arg("--oplog-max-entries")
            .arg(args.oplog_max_entries.to_string())
            // Only the cap prunes: no entry ages out in the middle of a run.
            .args(["--oplog-retention-seconds", "1000000000"])
            .args(&args.server_arg)
            .envs(
                args.server_env
                    .iter()
                    .filter_map(|pair| pair.split_once('=')),
            );
        if let Some(cpus) = server_cpus {
            pin_to(command, cpus);
        }
    })?;
    SERVER_PID.store(server.pid(), Ordering::SeqCst);
    let harness = Harness {
        args,
        this,
        uri: server.uri(),
        server_pid: server.pid(),
        client_cpus: split.map(|s| s.client),
        log,
        work: tmp.path().to_path_buf(),
        ticks_per_sec: clock_ticks_per_sec(),
    };
    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match control.block_on(loaded_data(&harness.uri, args.gb, args.oplog_max_entries))? {
        Some((bytes, documents)) => println!(
            "data: reusing {:.0} MB of BSON in {documents} documents from an earlier load",
            bytes as f64 / MB
        ),
        None => {
            println!(
                "data: loading {} GB of BSON (4 collections, insert_many)",
                args.gb
            );
            let load = harness.run_child(Op::Load, args.concurrency, "load")?;
            println!(
                "data: loaded {:.0} MB in {} documents in {:.1} s ({:.1} MB/s)",
                load.report.bytes as f64 / MB,
                load.report.documents,
                load.report.seconds,
                load.mb_per_s()
            );
        }
    }
    let probe = control.block_on(probe_oplog(&harness.uri, args.oplog_max_entries))?;
    println!(
        "oplog: {} entries (cap {}); the source takes {:.3} s to find the newest entry \
         and {:.3} s for an empty ts-range read (a backup does two and one)",
        probe.entries,
        args.oplog_max_entries,
        probe.newest.as_secs_f64(),
        probe.slice.as_secs_f64()
    );
    if probe.reverse_ignored {
        println!(
            "oplog: NOTE this server answers find().sort({{$natural: -1}}) on the oplog with \
             its oldest entry, so a backup records the oldest entry as its start and copies \
             an empty slice (a bug of the source, not of the engine)"
        );
    }
    drop(control);
    println!();

    let row = |m: &Measured| {
        println!(
            "{:<22} {:>8.1} {:>8.2} {:>8.0} {:>9} {:>9} {:>7.1} {:>7} {:>7} {:>9.0} {:>9.0}",
            m.label,
            m.mb_per_s(),
            m.report.seconds,
            m.report.bytes as f64 / MB,
            m.report.documents,
            if m.report.stored_bytes > 0 {
                format!("{:.0}", m.report.stored_bytes as f64 / MB)
            } else {
                "-".into()
            },
            m.child_cpu,
            m.server_cpu
                .map_or_else(|| "?".into(), |c| format!("{c:.1}")),
            m.other_cpu
                .map_or_else(|| "?".into(), |c| format!("{c:.1}")),
            m.report.vm_hwm_kb as f64 * 1024.0 / MB,
            m.maxrss_kb as f64 * 1024.0 / MB,
        );
    };
    println!(
        "{:<22} {:>8} {:>8} {:>8} {:>9} {:>9} {:>7} {:>7} {:>7} {:>9} {:>9}",
        "operation",
        "MB/s",
        "seconds",
        "BSON MB",
        "docs",
        "stored MB",
        "cli CPU",
        "srv CPU",
        "oth CPU",
        "VmHWM MB",
        "maxrss MB"
    );
    let c = args.concurrency;
    if !args.no_warmup {
        let warm = harness.run_child(Op::Drain, c, &format!("warm-up drain x{c}"))?;
        row(&warm);
    }
    let mut drains = Vec::new();
    let mut backups = Vec::new();
    let (mut buffered_models, mut spawned_models) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        let order = if round % 2 == 1 {
            [Op::Drain, Op::Backup]
        } else {
            [Op::Backup, Op::Drain]
        };
        for op in order {
            let m = match op {
                Op::Drain => harness.run_child(op, c, &format!("{round}: drain x{c}"))?,
                _ => harness.run_child(op, c, &format!("{round}: backup x{c}"))?,
            };
            row(&m);
            if op == Op::Drain {
                drains.push(m);
            } else {
                backups.push(m);
            }
        }
        if args.model {
            for (op, name, runs) in [
                (Op::ModelBuffered, "model buffered", &mut buffered_models),
                (Op::ModelSpawned, "model spawned", &mut spawned_models),
            ] {
                let m = harness.run_child(op, c, &format!("{round}: {name} x{c}"))?;
                row(&m);
                runs.push(m);
            }
        }
    }
    let single = if args.no_single_stream || c == 1 {
        None
    } else {
        let m = harness.run_child(Op::Drain, 1, "drain x1 (single)")?;
        row(&m);
        Some(m)
    };
    server.stop()?;
    println!();
    Ok(report(
        &drains,
        &backups,
        single.as_ref(),
        &[
            ("model buffered", &buffered_models),
            ("model spawned", &spawned_models),
        ],
        cores,
    ))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Prints the summary and the verdicts; true when both goals are met.
fn report(
    drains: &[Measured],
    backups: &[Measured],
    single: Option<&Measured>,
    models: &[(&str, &Vec<Measured>)],
    cores: usize,
) -> bool {
    let rates = |ms: &[Measured]| ms.iter().map(Measured::mb_per_s).collect::<Vec<_>>();
    let best = |ms: &[Measured]| rates(ms).into_iter().fold(0.0, f64::max);
    let mb = |kb: u64| kb as f64 * 1024.0 / MB;
    let peak = |ms: &[Measured]| mb(ms.iter().map(|m| m.report.vm_hwm_kb).max().unwrap_or(0));
    let cores_used = |ms: &[Measured]| {
        let wall: f64 = ms.iter().map(|m| m.report.seconds).sum();
        let client: f64 = ms.iter().map(|m| m.child_cpu).sum();
        let server: f64 = ms.iter().filter_map(|m| m.server_cpu).sum();
        (client / wall, server / wall)
    };
    println!(
        "{:<22} {:>12} {:>10} {:>13} {:>13} {:>12}",
        "summary", "median MB/s", "best MB/s", "client cores", "server cores", "peak RSS MB"
    );
    let mut lines: Vec<(&str, &[Measured])> = vec![("drain", drains), ("backup", backups)];
    lines.extend(single.map(|m| ("drain x1 (single)", std::slice::from_ref(m))));
    lines.extend(
        models
            .iter()
            .filter(|(_, ms)| !ms.is_empty())
            .map(|(name, ms)| (*name, ms.as_slice())),
    );
    for (name, ms) in lines {
        let (client, server) = cores_used(ms);
        println!(
            "{name:<22} {:>12.1} {:>10.1} {client:>13.2} {server:>13.2} {:>12.0}",
            median(rates(ms)),
            best(ms),
            peak(ms)
        );
    }
    println!("(client/server cores: CPU seconds per wall second; {cores} cores in all)");
    let all: Vec<&Measured> = drains
        .iter()
        .chain(backups)
        .chain(single)
        .chain(models.iter().flat_map(|(_, ms)| ms.iter()))
        .collect();
    let wall: f64 = all.iter().map(|m| m.report.seconds).sum();
    let other: f64 = all.iter().filter_map(|m| m.other_cpu).sum();
    if other / wall > OTHER_LOAD_WARNING {
        println!(
            "WARNING: other processes used {:.2} cores on average during the measurements; \
             the figures are skewed, rerun on an idle machine",
            other / wall
        );
    }
    let phases: Vec<Phases> = backups.iter().filter_map(|m| m.report.phases).collect();
    if !phases.is_empty() {
        let of = |f: fn(&Phases) -> f64| median(phases.iter().map(f).collect());
        let bytes = median(backups.iter().map(|m| m.report.bytes as f64).collect());
        let documents = of(|p| p.documents);
        println!(
            "backup phases (median s): connect {:.2}, documents {documents:.2} ({:.1} MB/s), \
             oplog slice {:.2}, manifests {:.2}",
            of(|p| p.connect),
            bytes / MB / documents,
            of(|p| p.oplog),
            of(|p| p.manifests)
        );
    }
    println!();

    // Best against best: on a shared machine other work only ever slows a
    // run down, so the best run of each is the least disturbed one.
    let verdict = |pass: bool| if pass { "PASS" } else { "FAIL" };
    let median_ratio = median(rates(backups)) / median(rates(drains));
    let ratio = best(backups) / best(drains);
    let ratio_ok = ratio >= GOAL_RATIO;
    let peak_mb = peak(backups);
    let rss_ok = peak_mb < GOAL_RSS_MB;
    println!(
        "ratio backup/drain: {ratio:.2}x best to best ({median_ratio:.2}x median to median) \
         (goal >= {GOAL_RATIO}x): {}",
        verdict(ratio_ok)
    );
    println!(
        "backup peak RSS: {peak_mb:.0} MB (goal < {GOAL_RSS_MB:.0} MB): {}",
        verdict(rss_ok)
    );
    ratio_ok && rss_ok
}

//! `bench-package`: how fast mongobak packages a download file (mongodump
//! archive → parallel gzip → SHA-256 → file), next to `pigz -p 2` at the
//! same level on the same uncompressed archive bytes, in the same run, and
//! how much memory packaging takes.
//!
//! Goals (from the issue): mongobak's throughput is at least 1.0x pigz's,
//! and its peak memory while packaging 1 GB is under 256 MB.
//!
//! The archive is written once to a temporary file from deterministic
//! BSON-like documents. Then, in rounds, each side runs as a child process
//! timed from spawn to reap, with its CPU time and peak RSS from `wait4`:
//!
//! * mongobak: this binary re-run with the hidden `--package-child` flag,
//!   which generates the same documents again and writes them through
//!   `ArchiveWriter` → `GzipWriter::parallel(level, 0)` → `HashingWriter` →
//!   file, as the download worker does;
//! * pigz: `pigz -p 2 -<level> -c < archive > out.gz`.
//!
//! mongobak's output is gunzipped and compared (SHA-256) with the archive
//! file, so both sides compress exactly the same bytes. See README.md.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench_support::process::{die_with_parent, ChildGuard};
use clap::Parser;
use mongobak_archive::{
    gunzip, ArchiveHeader, ArchiveWriter, GzipWriter, HashingWriter, NamespaceKind, NamespaceMeta,
};

const GOAL_RATIO: f64 = 1.0;
const GOAL_PEAK_MIB: f64 = 256.0;

#[derive(Debug, Parser)]
#[command(
    name = "bench-package",
    about = "mongobak packaging (archive + parallel gzip + SHA-256) vs pigz -p 2: throughput and peak memory"
)]
struct Args {
    /// MiB of BSON documents in the archive.
    #[arg(long, default_value_t = 1024)]
    mb: u64,
    /// gzip level of both sides.
    #[arg(long, default_value_t = 6)]
    level: u32,
    /// Rounds; each runs mongobak and pigz once, in alternating order.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// The pigz binary.
    #[arg(long, default_value = "pigz")]
    pigz: PathBuf,
    /// Where the temporary files go [default: the system's temp folder].
    #[arg(long, value_name = "DIR")]
    tmp_dir: Option<PathBuf>,
    /// Package into FILE and print `<bytes> <sha256>` (the harness runs
    /// itself with this flag).
    #[arg(long, hide = true, value_name = "FILE")]
    package_child: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(out) = &args.package_child {
        return match package(out, args.mb << 20, args.level) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench-package --package-child: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bench-package: {e:#}");
            ExitCode::from(3)
        }
    }
}

// ---------------------------------------------------------------------------
// Documents and the archive.

const WORDS: [&str; 32] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "payment", "refund", "order",
    "customer", "invoice", "shipping",
];

/// Deterministic documents shaped like `gzip_bench`'s (an application's
/// payments), encoded straight to BSON into one reused buffer so that the
/// input side costs little next to compression.
struct Documents {
    rng: u64,
    i: i64,
    buf: Vec<u8>,
}

impl Documents {
    fn new() -> Self {
        Documents {
            rng: 0x9E37_79B9_7F4A_7C15,
            i: 0,
            buf: Vec::with_capacity(512),
        }
    }

    fn rand(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn next(&mut self) -> &[u8] {
        let r = self.rand();
        let i = self.i;
        self.i += 1;
        let mut oid = [0_u8; 12];
        oid[..4].copy_from_slice(&((1_700_000_000 + i / 50) as u32).to_be_bytes());
        oid[4..].copy_from_slice(&self.rand().to_le_bytes());
        let merchant = format!("m-{:05}", self.rand() % 5000);
        let words = 4 + (r % 12) as usize;
        let picks: Vec<&str> = (0..words)
            .map(|_| WORDS[(self.rand() % WORDS.len() as u64) as usize])
            .collect();

        let b = &mut self.buf;
        b.clear();
        b.extend_from_slice(&[0; 4]);
        field(b, 0x07, "_id");
        b.extend_from_slice(&oid);
        field(b, 0x12, "amount");
        b.extend_from_slice(&((r % 1_000_000) as i64).to_le_bytes());
        string(
            b,
            "currency",
            &[if r.is_multiple_of(7) { "EUR" } else { "USD" }],
        );
        field(b, 0x09, "createdAt");
        let created = 1_700_000_000_000_i64 + i * 37 + (r % 1000) as i64;
        b.extend_from_slice(&created.to_le_bytes());
        string(b, "merchantId", &[&merchant]);
        let status = ["paid", "pending", "failed", "refunded"][(r >> 20) as usize % 4];
        string(b, "status", &[status]);
        string(b, "note", &picks);
        field(b, 0x10, "items");
        b.extend_from_slice(&((r >> 32) as i32 % 9).to_le_bytes());
        b.push(0);
        let len = b.len() as i32;
        b[..4].copy_from_slice(&len.to_le_bytes());
        b
    }
}

fn field(b: &mut Vec<u8>, kind: u8, name: &str) {
    b.push(kind);
    b.extend_from_slice(name.as_bytes());
    b.push(0);
}

/// A BSON string field: `parts` joined with spaces.
fn string(b: &mut Vec<u8>, name: &str, parts: &[&str]) {
    field(b, 0x02, name);
    let len: usize = parts.iter().map(|p| p.len()).sum::<usize>() + parts.len();
    b.extend_from_slice(&(len as i32).to_le_bytes());
    for (n, part) in parts.iter().enumerate() {
        if n > 0 {
            b.push(b' ');
        }
        b.extend_from_slice(part.as_bytes());
    }
    b.push(0);
}

/// Writes one namespace of `raw_bytes` (at least) of documents as a
/// mongodump archive; returns the sink and the document bytes written.
fn write_archive<W: Write>(sink: W, raw_bytes: u64) -> anyhow::Result<(W, u64)> {
    let header = ArchiveHeader {
        concurrent_collections: 1,
        server_version: "7.0.14".into(),
        tool_version: "bench-package".into(),
    };
    let mut w = ArchiveWriter::new(sink, header)?;
    w.add_namespace(NamespaceMeta {
        db: "bench".into(),
        collection: "payments".into(),
        metadata_json: String::new(),
        kind: NamespaceKind::Collection,
    })?;
    w.begin_namespace("bench", "payments")?;
    let mut docs = Documents::new();
    let mut written = 0;
    while written < raw_bytes {
        let doc = docs.next();
        written += doc.len() as u64;
        w.write_document(doc)?;
    }
    w.end_namespace()?;
    Ok((w.finish()?, written))
}

/// The child: mongobak's packaging path into `out`.
fn package(out: &Path, raw_bytes: u64, level: u32) -> anyhow::Result<()> {
    let file = File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let gz = GzipWriter::parallel(HashingWriter::new(file), level, 0);
    let (gz, _) = write_archive(gz, raw_bytes)?;
    let (file, checksum) = gz.finish()?.finish();
    file.sync_data().ok();
    println!("{} {}", checksum.bytes, checksum.sha256_hex());
    Ok(())
}

// ---------------------------------------------------------------------------
// Child processes.

/// How a child process ran, from `wait4`.
struct Run {
    wall: Duration,
    cpu: Duration,
    peak_rss_kib: u64,
}

/// Spawns `command`, waits for it with `wait4` and fails unless it exits
/// with 0. The child gets SIGKILL if this process dies first, so nothing
/// outlives the harness.
fn run_child(mut command: Command, what: &str) -> anyhow::Result<Run> {
    die_with_parent(&mut command);
    let start = Instant::now();
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {what}: {command:?}"))?;
    // Killed and reaped if waiting fails.
    let (status, usage) = ChildGuard(Some(child))
        .wait_rusage()
        .with_context(|| format!("cannot wait for {what}"))?;
    let wall = start.elapsed();
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{what} failed (wait status {status:#x})");
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(Run {
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        peak_rss_kib: usage.ru_maxrss as u64,
    })
}

// ---------------------------------------------------------------------------
// The run.

struct Sample {
    name: &'static str,
    round: usize,
    run: Run,
    out_bytes: u64,
}

fn run(args: &Args) -> anyhow::Result<bool> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pigz_version = Command::new(&args.pigz)
        .arg("--version")
        .output()
        .with_context(|| {
            format!(
                "cannot run {} (install it: apt-get install -y pigz)",
                args.pigz.display()
            )
        })?;
    let pigz_version = String::from_utf8_lossy(&pigz_version.stdout)
        .trim()
        .to_string()
        + String::from_utf8_lossy(&pigz_version.stderr).trim();
    let dir = match &args.tmp_dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    println!(
        "bench-package: mongobak packaging vs pigz -p 2, gzip level {}",
        args.level
    );
    println!(
        "{cores} cores (shared by both sides and everything else on the box), load average {}, {pigz_version}",
        load_average()
    );

    // The uncompressed archive, once.
    let archive = dir.path().join("archive");
    let t = Instant::now();
    let file = File::create(&archive)?;
    let (sink, raw) = write_archive(HashingWriter::new(BufWriter::new(file)), args.mb << 20)?;
    let (file, archive_sum) = sink.finish();
    file.into_inner().map_err(|e| e.into_error())?.sync_data()?;
    let archive_bytes = archive_sum.bytes;
    println!(
        "archive: {:.1} MB ({:.1} MB of documents), written in {:.2?} \
         (generation + ArchiveWriter + file: {:.0} MB/s, the input side of the mongobak child)",
        mb(archive_bytes),
        mb(raw),
        t.elapsed(),
        mb(archive_bytes) / t.elapsed().as_secs_f64()
    );
    println!();

    let self_exe = std::env::current_exe()?;
    let mut samples = Vec::new();
    let mut verified = false;
    for round in 1..=args.rounds {
        let order: [&'static str; 2] = if round % 2 == 1 {
            ["mongobak", "pigz"]
        } else {
            ["pigz", "mongobak"]
        };
        for name in order {
            let out = dir.path().join(format!("{name}.gz"));
            let run = if name == "mongobak" {
                let report = dir.path().join("child.out");
                let mut c = Command::new(&self_exe);
                c.arg("--package-child")
                    .arg(&out)
                    .arg("--mb")
                    .arg(args.mb.to_string())
                    .arg("--level")
                    .arg(args.level.to_string())
                    .stdin(Stdio::null())
                    .stdout(File::create(&report)?);
                let run = run_child(c, "the mongobak packaging child")?;
                let text = std::fs::read_to_string(&report)?;
                let bytes: u64 = text
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .context("the child printed no size")?;
                if bytes != std::fs::metadata(&out)?.len() {
                    bail!("the mongobak child reported {bytes} bytes, the file differs");
                }
                if !verified {
                    verify(&out, &archive_sum.sha256, archive_bytes)?;
                    verified = true;
                }
                run
            } else {
                let mut c = Command::new(&args.pigz);
                c.args(["-p", "2", &format!("-{}", args.level), "-c"])
                    .stdin(File::open(&archive)?)
                    .stdout(File::create(&out)?);
                run_child(c, "pigz")?
            };
            let out_bytes = std::fs::metadata(&out)?.len();
            std::fs::remove_file(&out)?;
            eprintln!(
                "round {round} {name:<8} {:>7.1} MB/s  wall {:>6.2?}",
                mb(archive_bytes) / run.wall.as_secs_f64(),
                run.wall
            );
            samples.push(Sample {
                name,
                round,
                run,
                out_bytes,
            });
        }
    }
    Ok(report(&samples, archive_bytes, cores))
}

/// Gunzips `out` and checks it is exactly the archive.
fn verify(out: &Path, sha256: &[u8; 32], bytes: u64) -> anyhow::Result<()> {
    let mut hashed = HashingWriter::new(io::sink());
    io::copy(
        &mut gunzip(io::BufReader::new(File::open(out)?)),
        &mut hashed,
    )?;
    let (_, sum) = hashed.finish();
    if sum.bytes != bytes || &sum.sha256 != sha256 {
        bail!(
            "mongobak's output gunzips to {} bytes with SHA-256 {}, not the archive ({bytes} bytes, {})",
            sum.bytes,
            sum.sha256_hex(),
            hex::encode(sha256)
        );
    }
    println!(
        "check: mongobak's output gunzips to the archive bytes exactly ({bytes} bytes, SHA-256 {}...)",
        &hex::encode(sha256)[..16]
    );
    Ok(())
}

fn report(samples: &[Sample], archive_bytes: u64, cores: usize) -> bool {
    println!(
        "{:<6} {:<9} {:>9} {:>9} {:>8} {:>6} {:>10} {:>9}",
        "round", "side", "MB/s", "wall s", "CPU s", "CPU%", "peak RSS", "out MB"
    );
    for s in samples {
        println!(
            "{:<6} {:<9} {:>9.1} {:>9.2} {:>8.2} {:>5.0}% {:>6.1} MiB {:>9.1}",
            s.round,
            s.name,
            mb(archive_bytes) / s.run.wall.as_secs_f64(),
            s.run.wall.as_secs_f64(),
            s.run.cpu.as_secs_f64(),
            100.0 * s.run.cpu.as_secs_f64() / s.run.wall.as_secs_f64(),
            s.run.peak_rss_kib as f64 / 1024.0,
            mb(s.out_bytes)
        );
    }
    let rates = |name: &str| -> Vec<f64> {
        samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| mb(archive_bytes) / s.run.wall.as_secs_f64())
            .collect()
    };
    let (ours, pigz) = (rates("mongobak"), rates("pigz"));
    let best = |v: &[f64]| v.iter().cloned().fold(f64::MIN, f64::max);
    let worst = |v: &[f64]| v.iter().cloned().fold(f64::MAX, f64::min);
    println!();
    println!(
        "mongobak {:.1} MB/s best ({:.1}-{:.1}), pigz -p 2 {:.1} MB/s best ({:.1}-{:.1}); input MB/s, {cores} cores",
        best(&ours),
        worst(&ours),
        best(&ours),
        best(&pigz),
        worst(&pigz),
        best(&pigz)
    );
    let per_round: Vec<String> = samples
        .chunks(2)
        .filter_map(|pair| {
            let m = pair.iter().find(|s| s.name == "mongobak")?;
            let p = pair.iter().find(|s| s.name == "pigz")?;
            Some(format!(
                "{:.2}",
                p.run.wall.as_secs_f64() / m.run.wall.as_secs_f64()
            ))
        })
        .collect();
    let ratio = best(&ours) / best(&pigz);
    let ratio_ok = ratio >= GOAL_RATIO;
    println!(
        "ratio mongobak/pigz (best/best): {ratio:.2}x (per round: {}) (goal >= {GOAL_RATIO:.1}x): {}",
        per_round.join(", "),
        verdict(ratio_ok)
    );
    let peak = samples
        .iter()
        .filter(|s| s.name == "mongobak")
        .map(|s| s.run.peak_rss_kib)
        .max()
        .unwrap_or(0) as f64
        / 1024.0;
    let peak_ok = peak < GOAL_PEAK_MIB;
    println!(
        "mongobak peak RSS: {peak:.1} MiB (goal < {GOAL_PEAK_MIB:.0} MiB): {}",
        verdict(peak_ok)
    );
    ratio_ok && peak_ok
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

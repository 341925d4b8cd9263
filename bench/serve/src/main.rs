//! `bench-serve`: download throughput of a large packaged file through the
//! real `mongobak serve` (`GET /download/<task>/<name>?expires&signature`),
//! next to nginx serving the same file with sendfile, on loopback, in the
//! same run, with the same client; and the mongobak server's peak memory.
//!
//! Goal (from the issue): mongobak's throughput is at least 0.9x nginx's.
//!
//! The file is registered the way the download worker publishes one: a
//! succeeded backup, a download task claimed and completed with a
//! `PublishedFile` in the SQLite catalog at `<data_dir>/meta.db`, the bytes
//! at `<data_dir>/blobs/<path>`. nginx's root is that same folder, so both
//! servers read the same inode from the page cache.
//!
//! Both servers run as child processes, started once and killed by pid at
//! the end (also on errors, and by the kernel if this process dies). The
//! load alternates between them: sequential full downloads, then several
//! concurrent ones. See README.md.

use std::io::{self, Read, Seek, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench_support::process::first_line;
use bytes::Bytes;
use clap::Parser;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

use mongobak_api::UrlSigner;
use mongobak_catalog::{BackupType, Catalog, NewBackup, PublishedFile};

const GOAL_RATIO: f64 = 0.9;
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
const SIGNING_KEY: &str = "bench-serve-url-signing-key-0000000000";
const INSTANCE: &str = "cmgo-bench001";
const FILE_NAME: &str = "bench.archive.gz";

#[derive(Debug, Parser)]
#[command(
    name = "bench-serve",
    about = "Download throughput of mongobak serve vs nginx (sendfile) on loopback, and mongobak's peak RSS"
)]
struct Args {
    /// MiB in the served file.
    #[arg(long, default_value_t = 1024)]
    mb: u64,
    /// Full downloads one after another, per phase.
    #[arg(long, default_value_t = 3)]
    sequential: usize,
    /// Concurrent full downloads, per phase.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Rounds; each runs both phases on both servers, alternating.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// The mongobak binary [default: `mongobak` beside this binary, i.e.
    /// target/release/mongobak].
    #[arg(long, value_name = "FILE")]
    mongobak: Option<PathBuf>,
    /// The nginx binary.
    #[arg(long, value_name = "FILE", default_value = "/usr/sbin/nginx")]
    nginx: PathBuf,
    /// Where the temporary files go [default: the system's temp folder].
    #[arg(long, value_name = "DIR")]
    tmp_dir: Option<PathBuf>,
    /// Where the mongobak server's log (stderr) goes.
    #[arg(long, value_name = "FILE", default_value = "/dev/null")]
    server_log: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bench-serve: {e:#}");
            ExitCode::from(3)
        }
    }
}

// ---------------------------------------------------------------------------
// Servers.

/// A server child process, killed by pid and reaped when dropped.
struct Server {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the server has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the {} server exited during the run: {status}", self.name);
        }
        Ok(())
    }
}

/// Spawns `command`, which dies with this process.
fn spawn(mut command: Command, what: &str) -> anyhow::Result<Child> {
    // SAFETY: prctl is async-signal-safe; nothing else runs in the child
    // between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc_prctl_pdeathsig() != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {what}: {command:?}"))
}

/// `prctl(PR_SET_PDEATHSIG, SIGKILL)`.
fn libc_prctl_pdeathsig() -> i32 {
    // SAFETY: a plain system call with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) }
}

/// `mongobak serve` with `config`; waits for its `listening on` line.
fn start_mongobak(binary: &Path, config: &Path, log: &Path) -> anyhow::Result<Server> {
    let mut command = Command::new(binary);
    command.arg("serve").arg("--config").arg(config);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MONGOBAK_") {
            command.env_remove(key);
        }
    }
    let log = std::fs::File::create(log)?;
    command
        .env("MONGOBAK_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log);
    let child = spawn(command, "mongobak")?;
    let mut server = Server {
        name: "mongobak",
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let stdout = server.child.stdout.take().context("stdout is piped")?;
    let line = match first_line(stdout, STARTUP_TIMEOUT) {
        Ok(Some(line)) => line,
        _ => bail!("mongobak printed no `listening on` line (its log: --server-log FILE)"),
    };
    server.addr = line
        .trim()
        .rsplit_once("listening on http://")
        .and_then(|(_, addr)| addr.parse().ok())
        .with_context(|| format!("unexpected first line from mongobak: {line:?}"))?;
    Ok(server)
}

/// nginx in the foreground, one process, its files in `dir`, serving
/// `root` on a free loopback port.
fn start_nginx(binary: &Path, dir: &Path, root: &Path) -> anyhow::Result<Server> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let d = dir.display();
    let config = format!(
        "daemon off;\n\
         master_process off;\n\
         worker_processes 1;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
           access_log off;\n\
           sendfile on;\n\
           tcp_nopush on;\n\
           default_type application/octet-stream;\n\
           client_body_temp_path {d}/client_body;\n\
           proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n\
           uwsgi_temp_path {d}/uwsgi;\n\
           scgi_temp_path {d}/scgi;\n\
           server {{\n\
             listen 127.0.0.1:{port};\n\
             root {};\n\
           }}\n\
         }}\n",
        root.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, config)?;
    let mut command = Command::new(binary);
    command
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = spawn(
        command,
        "nginx (install it: apt-get install -y nginx-light)",
    )?;
    let mut server = Server {
        name: "nginx",
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    let start = Instant::now();
    while std::net::TcpStream::connect(server.addr).is_err() {
        if let Some(status) = server.child.try_wait()? {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            bail!("nginx exited at startup ({status}): {log}");
        }
        if start.elapsed() > STARTUP_TIMEOUT {
            bail!("nginx does not accept connections on {}", server.addr);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(server)
}

// ---------------------------------------------------------------------------
// The file and the catalog.

/// Writes `bytes` of incompressible data to `path`; returns its SHA-256.
fn write_file(path: &Path, bytes: u64) -> anyhow::Result<String> {
    std::fs::create_dir_all(path.parent().context("the path has a parent")?)?;
    let mut file = io::BufWriter::new(std::fs::File::create(path)?);
    let mut hasher = Sha256::new();
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
    let mut chunk = vec![0_u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            rng ^= rng >> 12;
            rng ^= rng << 25;
            rng ^= rng >> 27;
            word.copy_from_slice(&rng.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let n = left.min(chunk.len() as u64) as usize;
        hasher.update(&chunk[..n]);
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    file.into_inner().map_err(|e| e.into_error())?.sync_data()?;
    Ok(hex::encode(hasher.finalize()))
}

/// Records a finished download task the way the worker does; returns the
/// task id and the file's path in blob storage.
async fn register(
    data_dir: &Path,
    size_and_hash: impl FnOnce(&str) -> anyhow::Result<(u64, String)>,
) -> anyhow::Result<(i64, String)> {
    let db = data_dir.join("meta.db");
    let catalog = Catalog::open(&format!("sqlite://{}", db.display())).await?;
    let now = Timestamp::now();
    let backup = catalog
        .backups()
        .create(
            &NewBackup {
                instance_id: INSTANCE.into(),
                method: 0,
                backup_type: BackupType::Manual,
                remark: "bench-serve".into(),
                retention_days: -2,
                name: format!("{INSTANCE}_2026-01-01 00:00"),
                long_term: false,
            },
            now,
        )
        .await?;
    let claimed = catalog
        .backups()
        .claim_queued(now)
        .await?
        .context("the backup was not claimed")?;
    if claimed.id != backup.id {
        bail!("claimed backup {} instead of {}", claimed.id, backup.id);
    }
    catalog
        .backups()
        .complete(
            backup.id,
            now,
            mongobak_catalog::BackupSizes::default(),
            &[],
            7,
        )
        .await?;
    let tasks = catalog
        .downloads()
        .ensure_tasks(backup.id, INSTANCE, &[format!("{INSTANCE}_0")], now)
        .await?;
    let task = catalog
        .downloads()
        .claim("bench-serve", now, now + SignedDuration::from_hours(1))
        .await?
        .context("the download task was not claimed")?;
    if task.id != tasks[0].id {
        bail!("claimed task {} instead of {}", task.id, tasks[0].id);
    }
    let path = format!("downloads/{}/{}/{FILE_NAME}", task.id, task.attempts);
    let (size, sha256) = size_and_hash(&path)?;
    let file = PublishedFile {
        path: path.clone(),
        size,
        sha256,
        expires_at: now + SignedDuration::from_hours(24),
    };
    if !catalog
        .downloads()
        .complete(task.id, "bench-serve", now, &file)
        .await?
    {
        bail!("the download task could not be completed");
    }
    Ok((task.id, path))
}

fn write_config(dir: &Path, data_dir: &Path) -> anyhow::Result<PathBuf> {
    let quoted = toml::Value::String(data_dir.to_str().context("path is not UTF-8")?.into());
    let text = format!(
        "[server]\n\
         listen = \"127.0.0.1:0\"\n\
         data_dir = {quoted}\n\
         \n\
         [downloads]\n\
         url_signing_key = \"{SIGNING_KEY}\"\n\
         \n\
         [[instances]]\n\
         id = \"{INSTANCE}\"\n\
         replica_sets = [\"mongodb://127.0.0.1:27017\"]\n"
    );
    let path = dir.join("mongobak.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

// ---------------------------------------------------------------------------
// The client.

/// Downloads `target` (path and query) over a new connection, reading and
/// discarding the body; with `range`, only those bytes, which are returned.
async fn download(
    addr: SocketAddr,
    target: &str,
    range: Option<&str>,
) -> anyhow::Result<(u64, Vec<u8>)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut request = Request::get(target)
        .header(header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())?;
    if let Some(range) = range {
        request.headers_mut().insert(header::RANGE, range.parse()?);
    }
    let response = sender.send_request(request).await?;
    let expected = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    if response.status() != expected {
        bail!("GET {target}: HTTP {}", response.status());
    }
    let mut body = response.into_body();
    let mut n = 0;
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            n += data.len() as u64;
            if range.is_some() {
                kept.extend_from_slice(&data);
            }
        }
    }
    Ok((n, kept))
}

/// `count` full downloads at once (1: one at a time, `rounds` times).
async fn phase(
    addr: SocketAddr,
    target: &str,
    size: u64,
    count: usize,
    concurrent: bool,
) -> anyhow::Result<u64> {
    let mut total = 0;
    if concurrent {
        let handles: Vec<_> = (0..count)
            .map(|_| {
                let target = target.to_string();
                tokio::spawn(async move { download(addr, &target, None).await })
            })
            .collect();
        for h in handles {
            let (n, _) = h.await??;
            check_size(n, size)?;
            total += n;
        }
    } else {
        for _ in 0..count {
            let (n, _) = download(addr, target, None).await?;
            check_size(n, size)?;
            total += n;
        }
    }
    Ok(total)
}

fn check_size(n: u64, size: u64) -> anyhow::Result<()> {
    if n != size {
        bail!("a download returned {n} bytes, the file has {size}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Measurements.

struct Sample {
    server: &'static str,
    phase: &'static str,
    round: usize,
    bytes: u64,
    wall: Duration,
    server_cpu: Duration,
    client_cpu: Duration,
}

/// User + system CPU time of `pid` (`self` for this process).
fn cpu(pid: &str) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// VmHWM (peak RSS) of `pid`, KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn run(args: &Args) -> anyhow::Result<bool> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mongobak = match &args.mongobak {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the binary has a folder")?
            .join("mongobak"),
    };
    if !mongobak.exists() {
        bail!(
            "{} is missing: cargo build --release -p mongobak",
            mongobak.display()
        );
    }
    let dir = match &args.tmp_dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let data_dir = dir.path().join("data");
    let blobs = data_dir.join("blobs");
    let size = args.mb << 20;
    println!("bench-serve: GET of a {:.1} MB download file, mongobak serve vs nginx (sendfile), loopback", size as f64 / 1e6);
    println!(
        "{cores} cores shared by the server under test, the client (this process, tokio + hyper 1) \
         and everything else; load average {}",
        load_average()
    );

    let runtime = tokio::runtime::Runtime::new()?;
    let t = Instant::now();
    let (task_id, path) = runtime.block_on(register(&data_dir, |path| {
        let sha256 = write_file(&blobs.join(path), size)?;
        Ok((size, sha256))
    }))?;
    let file_path = blobs.join(&path);
    let root = file_path.parent().context("the path has a parent")?;
    println!(
        "file {} ({:.2?} to write and register as finished download task {task_id})",
        file_path.display(),
        t.elapsed()
    );
    let expires = Timestamp::now().as_second() + 6 * 3600;
    let mongobak_target = UrlSigner::new(SIGNING_KEY).url("", task_id, FILE_NAME, expires);
    let nginx_target = format!("/{FILE_NAME}");

    let config = write_config(dir.path(), &data_dir)?;
    let nginx_dir = dir.path().join("nginx");
    std::fs::create_dir_all(&nginx_dir)?;
    let mut servers = [
        start_mongobak(&mongobak, &config, &args.server_log)?,
        start_nginx(&args.nginx, &nginx_dir, root)?,
    ];
    let targets = [mongobak_target.as_str(), nginx_target.as_str()];
    println!(
        "mongobak pid {} on {}, nginx pid {} on {}",
        servers[0].pid(),
        servers[0].addr,
        servers[1].pid(),
        servers[1].addr
    );

    // Both answer a Range with the file's bytes.
    let (offset, len) = (size / 3, 4096_u64);
    let mut expected = vec![0_u8; len as usize];
    let mut f = std::fs::File::open(&file_path)?;
    f.seek(io::SeekFrom::Start(offset))?;
    f.read_exact(&mut expected)?;
    for (server, target) in servers.iter().zip(targets) {
        let range = format!("bytes={offset}-{}", offset + len - 1);
        let (_, got) = runtime.block_on(download(server.addr, target, Some(&range)))?;
        if got != expected {
            bail!("{} answered other bytes for {range}", server.name);
        }
    }
    println!("check: both answer the file's bytes for a Range request; every download's length is checked");
    println!();

    let mut samples = Vec::new();
    for round in 1..=args.rounds {
        for (phase_name, count, concurrent) in [
            ("sequential", args.sequential, false),
            ("parallel", args.parallel, true),
        ] {
            // Alternate which server goes first.
            let order: [usize; 2] = if round % 2 == 1 { [0, 1] } else { [1, 0] };
            for i in order {
                let server = &mut servers[i];
                let (server_cpu, client_cpu) = (cpu(&server.pid().to_string()), cpu("self"));
                let start = Instant::now();
                let bytes = runtime
                    .block_on(phase(server.addr, targets[i], size, count, concurrent))
                    .with_context(|| format!("{} {phase_name}", server.name))?;
                let wall = start.elapsed();
                server.check_alive()?;
                let sample = Sample {
                    server: server.name,
                    phase: phase_name,
                    round,
                    bytes,
                    wall,
                    server_cpu: cpu(&server.pid().to_string()).saturating_sub(server_cpu),
                    client_cpu: cpu("self").saturating_sub(client_cpu),
                };
                eprintln!(
                    "round {round} {phase_name:<10} {:<8} {:>7.1} MB/s",
                    sample.server,
                    mbps(&sample)
                );
                samples.push(sample);
            }
        }
    }
    let peaks: Vec<Option<u64>> = servers.iter().map(|s| peak_rss_kib(s.pid())).collect();
    for server in &mut servers {
        server.check_alive()?;
    }
    drop(servers);
    Ok(report(&samples, &peaks, args))
}

fn mbps(s: &Sample) -> f64 {
    s.bytes as f64 / 1e6 / s.wall.as_secs_f64()
}

fn report(samples: &[Sample], peaks: &[Option<u64>], args: &Args) -> bool {
    println!(
        "{:<6} {:<22} {:<9} {:>9} {:>8} {:>15} {:>15}",
        "round", "phase", "server", "MB/s", "wall s", "server CPU s/GB", "client CPU s/GB"
    );
    for s in samples {
        let gb = s.bytes as f64 / 1e9;
        let phase = if s.phase == "parallel" {
            format!("{} x{} concurrent", s.phase, args.parallel)
        } else {
            format!("{} x{}", s.phase, args.sequential)
        };
        println!(
            "{:<6} {:<22} {:<9} {:>9.1} {:>8.2} {:>15.2} {:>15.2}",
            s.round,
            phase,
            s.server,
            mbps(s),
            s.wall.as_secs_f64(),
            s.server_cpu.as_secs_f64() / gb,
            s.client_cpu.as_secs_f64() / gb
        );
    }
    println!();
    let mut ok = true;
    for phase in ["sequential", "parallel"] {
        let rates = |server: &str| -> Vec<f64> {
            samples
                .iter()
                .filter(|s| s.server == server && s.phase == phase)
                .map(mbps)
                .collect()
        };
        let (ours, nginx) = (rates("mongobak"), rates("nginx"));
        let best = |v: &[f64]| v.iter().cloned().fold(f64::MIN, f64::max);
        let worst = |v: &[f64]| v.iter().cloned().fold(f64::MAX, f64::min);
        let ratio = best(&ours) / best(&nginx);
        let pass = ratio >= GOAL_RATIO;
        ok &= pass;
        println!(
            "{phase:<10}: mongobak {:.0} MB/s best ({:.0}-{:.0}), nginx {:.0} MB/s best ({:.0}-{:.0}); \
             ratio {ratio:.2}x (goal >= {GOAL_RATIO}x): {}",
            best(&ours),
            worst(&ours),
            best(&ours),
            best(&nginx),
            worst(&nginx),
            best(&nginx),
            if pass { "PASS" } else { "FAIL" }
        );
    }
    let show = |p: Option<u64>| p.map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    println!(
        "peak RSS: mongobak serve {}, nginx {}",
        show(peaks[0]),
        show(peaks[1])
    );
    ok
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

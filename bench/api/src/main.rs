//! `bench-api`: how many signed DescribeDBInstances requests per second the
//! real `mongobak serve` answers on this machine, next to a bare axum
//! handler that returns a constant JSON, measured in the same run by the
//! same load generator.
//!
//! Goal (from the issue): mongobak's peak is at least 0.5x the bare
//! handler's, and its p99 latency at 80% of its own peak is under 20 ms.
//!
//! Each target is a child process started and stopped by this binary: the
//! bare handler is this binary re-run with the hidden `--bare-server` flag,
//! mongobak is `target/release/mongobak serve` (built beforehand). For each
//! target, in turn, over the same keep-alive HTTP/1.1 connections:
//!
//! 1. closed loop: every connection sends its next request as soon as the
//!    previous answer is in; after a warm-up, successful answers per second
//!    are the peak;
//! 2. open loop at 80% of that target's peak: requests are due on a fixed
//!    schedule and latency runs from the due time, not from the actual send,
//!    so a stalled server is charged for the requests it held up
//!    (no coordinated omission).
//!
//! Only HTTP 200 answers without an `"Error"` are counted as successes;
//! any error answer makes the run invalid. See README.md.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench_support::process::{
    clock_ticks_per_sec, die_with_parent, first_line, load_average, process_cpu, ChildGuard,
};
use bench_support::speed::{HostSpeed, Speed};
use bytes::Bytes;
use clap::Parser;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use mongobak_api::signature::{sha256_hex, Tc3Request};

/// Credentials of the benchmark's root account.
const APP_ID: u64 = 1_250_000_000;
const UIN: &str = "100000000001";
const SECRET_ID: &str = "AKIDbenchapi0000000000000000000000000";
const SECRET_KEY: &str = "benchapisecretkey0000000000000000";
/// Instances registered in the benchmark's configuration; every
/// DescribeDBInstances answer lists all of them.
const INSTANCES: u64 = 3;
/// Body of every request.
const REQUEST_BODY: &str = r#"{"Limit": 20}"#;
/// What the bare handler answers.
const BARE_REPLY: &str = r#"{"Response":{"TotalCount":0,"InstanceDetails":[],"RequestId":"00000000-0000-4000-8000-000000000000"}}"#;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Share of the peak offered in the latency phase.
const LOAD_SHARE: f64 = 0.8;
const GOAL_RATIO: f64 = 0.5;
const GOAL_P99_MS: f64 = 20.0;
/// Below this share of the fastest phase's median speed, a phase ran on a
/// host slow enough to be noted (10% of its samples, or more).
const HOST_SPEED_EVEN: f64 = 0.85;

#[derive(Debug, Parser)]
#[command(
    name = "bench-api",
    about = "Signed DescribeDBInstances on mongobak vs a bare axum handler: peak req/s and latency at 80% of peak"
)]
struct Args {
    /// Seconds of each measured phase (the peak, then the 80% load).
    #[arg(long, default_value_t = 5)]
    duration_secs: u64,
    /// Keep-alive HTTP/1.1 connections of the load generator.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds of load before the peak is measured.
    #[arg(long, default_value_t = 1)]
    warmup_secs: u64,
    /// The mongobak binary [default: `mongobak` beside this binary, i.e.
    /// target/release/mongobak].
    #[arg(long, value_name = "FILE")]
    mongobak: Option<PathBuf>,
    /// MONGOBAK_LOG of the mongobak server (`info` logs every request).
    #[arg(long, default_value = "info")]
    server_log_level: String,
    /// Where the mongobak server's log (stderr) goes.
    #[arg(long, value_name = "FILE", default_value = "/dev/null")]
    server_log: PathBuf,
    /// Serve the bare baseline handler instead (the harness runs itself
    /// with this flag).
    #[arg(long, hide = true)]
    bare_server: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.bare_server {
        return match bare_server() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench-api --bare-server: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match run(&args) {
        Ok(Verdict::Pass) => ExitCode::SUCCESS,
        Ok(Verdict::Fail) => ExitCode::from(1),
        Ok(Verdict::Invalid) => ExitCode::from(2),
        Err(e) => {
            eprintln!("bench-api: {e:#}");
            ExitCode::from(3)
        }
    }
}

// ---------------------------------------------------------------------------
// The baseline server.

/// A minimal axum 0.8 app on 127.0.0.1:0, on the same kind of runtime as
/// `mongobak serve` (tokio's default multi-threaded one).
fn bare_server() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("bare listening on http://{}", listener.local_addr()?);
        let app = axum::Router::new().route("/", axum::routing::post(bare_handler));
        axum::serve(listener, app).await?;
        Ok(())
    })
}

/// Reads the body, as mongobak does, and answers the constant JSON.
async fn bare_handler(_body: Bytes) -> ([(HeaderName, HeaderValue); 1], &'static str) {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        BARE_REPLY,
    )
}

// ---------------------------------------------------------------------------
// Child processes.

/// A target server running as a child process.
struct Server {
    name: &'static str,
    child: ChildGuard,
    addr: SocketAddr,
}

impl Server {
    /// Spawns `command` and waits for its `... listening on http://ADDR`
    /// line on stdout.
    fn start(name: &'static str, mut command: Command, hint: &str) -> anyhow::Result<Server> {
        command.stdin(Stdio::null()).stdout(Stdio::piped());
        die_with_parent(&mut command);
        let mut child =
            ChildGuard(Some(command.spawn().with_context(|| {
                format!("cannot start the {name} server {command:?}")
            })?));
        let stdout = child
            .0
            .as_mut()
            .and_then(|c| c.stdout.take())
            .context("stdout is piped")?;
        let line = match first_line(stdout, STARTUP_TIMEOUT) {
            Ok(Some(line)) => line,
            Err(e) => bail!("cannot read the {name} server's stdout: {e}"),
            Ok(None) => bail!(
                "the {name} server printed no line within {} s{hint}",
                STARTUP_TIMEOUT.as_secs()
            ),
        };
        let addr = line
            .trim()
            .rsplit_once("listening on http://")
            .and_then(|(_, addr)| addr.parse::<SocketAddr>().ok());
        match addr {
            Some(addr) => Ok(Server { name, child, addr }),
            None => {
                let status = child.0.as_mut().and_then(|c| c.try_wait().ok().flatten());
                let state = status.map_or_else(|| "still running".to_string(), |s| s.to_string());
                bail!("the {name} server did not start (first stdout line {line:?}, {state}){hint}")
            }
        }
    }

    /// Kills the server and says whether it had died on its own before.
    fn stop(mut self) -> anyhow::Result<()> {
        let died = match self.child.0.as_mut() {
            Some(child) => child.try_wait()?,
            None => None,
        };
        drop(self.child);
        if let Some(status) = died {
            bail!("the {} server exited during the run: {status}", self.name);
        }
        Ok(())
    }
}

/// The mongobak configuration of the benchmark, written in `dir`.
fn write_config(dir: &Path) -> anyhow::Result<PathBuf> {
    let data_dir = dir.join("data");
    let quoted = toml::Value::String(
        data_dir
            .to_str()
            .context("the temporary folder's path is not UTF-8")?
            .to_string(),
    );
    let mut text = format!(
        "[server]\n\
         listen = \"127.0.0.1:0\"\n\
         data_dir = {quoted}\n\
         \n\
         [rate_limits]\n\
         # Far above any rate reachable here, so the limiter never refuses.\n\
         actions = {{ DescribeDBInstances = 100000000 }}\n\
         \n\
         [[accounts]]\n\
         app_id = {APP_ID}\n\
         uin = \"{UIN}\"\n\
         secret_id = \"{SECRET_ID}\"\n\
         secret_key = \"{SECRET_KEY}\"\n"
    );
    // IDs are cmgo- plus 8 of [a-z0-9].
    for n in 1..=INSTANCES {
        text.push_str(&format!(
            "\n[[instances]]\nid = \"cmgo-bench{n:03}\"\nreplica_sets = [\"mongodb://127.0.0.1:27017\"]\n"
        ));
    }
    let path = dir.join("bench.toml");
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

// ---------------------------------------------------------------------------
// The request.

/// One signed DescribeDBInstances request, replayed as is.
///
/// A TC3 signature stays valid for 300 s (the server's clock-skew window)
/// and the server keeps no nonce, so the harness signs once per phase, far
/// shorter than that, and sends the same bytes over and over. Signing cost
/// thus stays out of the load generator; verifying it is the server's
/// cost and is measured.
struct Signed {
    headers: HeaderMap,
    body: Bytes,
}

impl Signed {
    fn new(addr: SocketAddr) -> anyhow::Result<Signed> {
        let host = addr.to_string();
        let now = jiff::Timestamp::now();
        let date = now.strftime("%Y-%m-%d").to_string();
        let payload_hash = sha256_hex(REQUEST_BODY.as_bytes());
        let signed_headers = [
            ("content-type", "application/json"),
            ("host", host.as_str()),
        ];
        let authorization = Tc3Request {
            method: "POST",
            query: "",
            headers: &signed_headers,
            payload_hash: &payload_hash,
            timestamp: now.as_second(),
            date: &date,
            service: "mongodb",
        }
        .authorization(SECRET_ID, SECRET_KEY);
        let timestamp = now.as_second().to_string();
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("content-type", "application/json"),
            ("host", host.as_str()),
            ("x-tc-action", "DescribeDBInstances"),
            ("x-tc-version", "2019-07-25"),
            ("x-tc-region", "ap-guangzhou"),
            ("x-tc-timestamp", timestamp.as_str()),
            ("authorization", authorization.as_str()),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).context("header values are ASCII")?,
            );
        }
        Ok(Signed {
            headers,
            body: Bytes::from_static(REQUEST_BODY.as_bytes()),
        })
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = Uri::from_static("/");
        *request.headers_mut() = self.headers.clone();
        request
    }
}

// ---------------------------------------------------------------------------
// The load generator.

type Sender = SendRequest<Full<Bytes>>;

/// Opens `n` keep-alive HTTP/1.1 connections.
async fn connect(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<Sender>> {
    let mut senders = Vec::with_capacity(n);
    for _ in 0..n {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake failed")?;
        // Connection errors surface on the sender.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        senders.push(sender);
    }
    Ok(senders)
}

/// Sends one request and reads the whole answer.
async fn exchange(sender: &mut Sender, signed: &Signed) -> anyhow::Result<(StatusCode, Bytes)> {
    let round_trip = async {
        sender.ready().await?;
        let response = sender.send_request(signed.request()).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>((status, body))
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, round_trip).await {
        Ok(result) => result.context("request failed"),
        Err(_) => bail!("no answer within {} s", REQUEST_TIMEOUT.as_secs_f64()),
    }
}

/// HTTP 200 and no `"Error"` anywhere in the body.
fn succeeded(status: StatusCode, body: &[u8]) -> bool {
    const ERROR: &[u8] = b"\"Error\"";
    status == StatusCode::OK && !body.windows(ERROR.len()).any(|w| w == ERROR)
}

fn describe_failure(status: StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text: String = text.chars().take(300).collect();
    format!("HTTP {status}: {text}")
}

/// Checks one answer in full: HTTP 200, JSON, no `Response.Error`, and
/// `Response.TotalCount` as expected. Returns the body size.
async fn probe(sender: &mut Sender, signed: &Signed, total_count: u64) -> anyhow::Result<usize> {
    let (status, body) = exchange(sender, signed).await?;
    if status != StatusCode::OK {
        bail!("the probe request got {}", describe_failure(status, &body));
    }
    let json: serde_json::Value = serde_json::from_slice(&body).with_context(|| {
        format!(
            "the answer is not JSON: {}",
            describe_failure(status, &body)
        )
    })?;
    let response = &json["Response"];
    if let Some(error) = response.get("Error") {
        bail!("the probe request got an error answer: {error}");
    }
    if response["TotalCount"].as_u64() != Some(total_count) {
        bail!(
            "the probe request expected TotalCount {total_count}, got {}",
            describe_failure(status, &body)
        );
    }
    if !succeeded(status, &body) {
        bail!("a successful answer contains \"Error\"; the success check would miscount");
    }
    Ok(body.len())
}

/// Outcome of the closed-loop phase.
struct Peak {
    /// Successful answers per second over the measured window.
    rate: f64,
    /// Error answers, warm-up included.
    errors: u64,
    first_error: Option<String>,
    /// CPU time per successful answer over the measured window: the
    /// server's, and this process's (the load generator's).
    server_cpu: Option<Duration>,
    generator_cpu: Option<Duration>,
    /// The measured window.
    window: (Instant, Instant),
}

/// Every connection sends back to back for `warmup + duration`; successes
/// completed after the warm-up count toward the rate.
async fn closed_loop(
    senders: Vec<Sender>,
    signed: Arc<Signed>,
    server_pid: u32,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<(Vec<Sender>, Peak)> {
    let from = Instant::now() + warmup;
    let until = from + duration;
    let cpu_sampler = tokio::spawn(cpu_between(server_pid, from, until));
    let mut tasks = Vec::with_capacity(senders.len());
    for mut sender in senders {
        let signed = Arc::clone(&signed);
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None);
            loop {
                let (status, body) = exchange(&mut sender, &signed).await?;
                let done = Instant::now();
                if !succeeded(status, &body) {
                    errors += 1;
                    first_error.get_or_insert_with(|| describe_failure(status, &body));
                } else if done >= from && done < until {
                    ok += 1;
                }
                if done >= until {
                    break;
                }
            }
            Ok::<_, anyhow::Error>((sender, ok, errors, first_error))
        }));
    }
    let mut senders = Vec::with_capacity(tasks.len());
    let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None);
    for task in tasks {
        let (sender, o, e, f) = task.await??;
        senders.push(sender);
        ok += o;
        errors += e;
        first_error = first_error.or(f);
    }
    let (server_cpu, generator_cpu) = cpu_sampler.await?;
    let peak = Peak {
        rate: ok as f64 / duration.as_secs_f64(),
        errors,
        first_error,
        server_cpu: per_answer(server_cpu, ok),
        generator_cpu: per_answer(generator_cpu, ok),
        window: (from, until),
    };
    Ok((senders, peak))
}

/// CPU time spent from `from` to `until` by the server and by this
/// process (the load generator).
async fn cpu_between(
    server_pid: u32,
    from: Instant,
    until: Instant,
) -> (Option<Duration>, Option<Duration>) {
    let own_pid = std::process::id();
    tokio::time::sleep_until(from.into()).await;
    let cpu = |pid| process_cpu(pid, clock_ticks_per_sec()).map(Duration::from_secs_f64);
    let before = (cpu(server_pid), cpu(own_pid));
    tokio::time::sleep_until(until.into()).await;
    let after = (cpu(server_pid), cpu(own_pid));
    let spent = |a: Option<Duration>, b: Option<Duration>| Some(b?.saturating_sub(a?));
    (spent(before.0, after.0), spent(before.1, after.1))
}

/// CPU time per successful answer.
fn per_answer(cpu: Option<Duration>, answers: u64) -> Option<Duration> {
    cpu.filter(|_| answers > 0)
        .map(|c| Duration::from_secs_f64(c.as_secs_f64() / answers as f64))
}

/// Outcome of the open-loop phase.
struct Paced {
    /// Successes per second, from the first due time to the last answer.
    achieved: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    errors: u64,
    first_error: Option<String>,
    /// CPU time per successful answer over the paced window, as in [`Peak`].
    server_cpu: Option<Duration>,
    generator_cpu: Option<Duration>,
    /// The paced window.
    window: (Instant, Instant),
}

/// Offers `rate` requests per second for `duration`: request `i` is due at
/// `start + i / rate` on connection `i mod n` (as wrk2 does). Each
/// connection keeps its own schedule, so pacing costs no cross-thread
/// hand-off per request; it waits on tokio's timer (1 ms ticks), and a
/// request sent after its due time, whether the timer woke late or the
/// connection was still busy, is charged that wait in its latency.
async fn open_loop(
    senders: Vec<Sender>,
    signed: Arc<Signed>,
    server_pid: u32,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<(Vec<Sender>, Paced)> {
    let start = Instant::now() + Duration::from_millis(20);
    let end = start + duration;
    let cpu_sampler = tokio::spawn(cpu_between(server_pid, start, end));
    let connections = senders.len() as u64;
    let mut tasks = Vec::with_capacity(senders.len());
    for (index, mut sender) in senders.into_iter().enumerate() {
        let signed = Arc::clone(&signed);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut errors, mut first_error) = (0u64, None);
            let mut last_done = None;
            for nth in (index as u64..).step_by(connections as usize) {
                let due = start + Duration::from_secs_f64(nth as f64 / rate);
                if due >= end {
                    break;
                }
                if due > Instant::now() {
                    tokio::time::sleep_until(due.into()).await;
                }
                let (status, body) = exchange(&mut sender, &signed).await?;
                let done = Instant::now();
                if succeeded(status, &body) {
                    latencies.push(done.saturating_duration_since(due));
                } else {
                    errors += 1;
                    first_error.get_or_insert_with(|| describe_failure(status, &body));
                }
                last_done = Some(done);
            }
            Ok::<_, anyhow::Error>((sender, latencies, errors, first_error, last_done))
        }));
    }
    let mut senders = Vec::with_capacity(tasks.len());
    let mut latencies = Vec::new();
    let (mut errors, mut first_error, mut last_done) = (0u64, None, start);
    for task in tasks {
        let (sender, l, e, f, d) = task.await??;
        senders.push(sender);
        latencies.extend(l);
        errors += e;
        first_error = first_error.or(f);
        last_done = last_done.max(d.unwrap_or(start));
    }
    let (server_cpu, generator_cpu) = cpu_sampler.await?;
    latencies.sort_unstable();
    let span = last_done.saturating_duration_since(start).as_secs_f64();
    let paced = Paced {
        achieved: if span > 0.0 {
            latencies.len() as f64 / span
        } else {
            0.0
        },
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or_default(),
        errors,
        first_error,
        server_cpu: per_answer(server_cpu, latencies.len() as u64),
        generator_cpu: per_answer(generator_cpu, latencies.len() as u64),
        window: (start, end),
    };
    Ok((senders, paced))
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Everything measured on one target.
struct Measurement {
    name: &'static str,
    reply_bytes: usize,
    peak: Peak,
    paced: Paced,
}

impl Measurement {
    fn errors(&self) -> u64 {
        self.peak.errors + self.paced.errors
    }
}

async fn measure(server: &Server, total_count: u64, args: &Args) -> anyhow::Result<Measurement> {
    let name = server.name;
    let warmup = Duration::from_secs(args.warmup_secs);
    let duration = Duration::from_secs(args.duration_secs);
    let mut senders = connect(server.addr, args.connections).await?;

    let signed = Arc::new(Signed::new(server.addr)?);
    let reply_bytes = probe(&mut senders[0], &signed, total_count)
        .await
        .with_context(|| format!("{name}: probe"))?;
    eprintln!(
        "{name}: closed loop, {} s warm-up + {} s",
        args.warmup_secs, args.duration_secs
    );
    let (senders, peak) = closed_loop(senders, signed, server.child.pid(), warmup, duration)
        .await
        .with_context(|| format!("{name}: closed loop"))?;

    let rate = peak.rate * LOAD_SHARE;
    if rate < 1.0 {
        bail!("{name}: peak of {:.1} req/s is too low to pace", peak.rate);
    }
    eprintln!(
        "{name}: open loop at {rate:.0} req/s for {} s",
        args.duration_secs
    );
    // A fresh signature for the second phase.
    let signed = Arc::new(Signed::new(server.addr)?);
    let (_senders, paced) = open_loop(senders, signed, server.child.pid(), rate, duration)
        .await
        .with_context(|| format!("{name}: open loop"))?;
    Ok(Measurement {
        name,
        reply_bytes,
        peak,
        paced,
    })
}

// ---------------------------------------------------------------------------
// The run.

/// How a run ends: exit status 0, 1 and 2.
enum Verdict {
    /// Both goals met.
    Pass,
    /// A goal missed.
    Fail,
    /// Error answers were counted: the numbers mean nothing.
    Invalid,
}

fn run(args: &Args) -> anyhow::Result<Verdict> {
    if args.connections == 0 || args.duration_secs == 0 {
        bail!("--connections and --duration-secs must be at least 1");
    }
    let this = std::env::current_exe().context("cannot find this binary")?;
    let mongobak = match &args.mongobak {
        Some(path) => path.clone(),
        None => this.with_file_name("mongobak"),
    };
    if !mongobak.is_file() {
        bail!(
            "{} not found: build it first (`cargo build --release -p mongobak`) or pass --mongobak",
            mongobak.display()
        );
    }
    let tmp = tempfile::Builder::new()
        .prefix("bench-api-")
        .tempdir()
        .context("cannot create a temporary folder")?;
    let config = write_config(tmp.path())?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let runtime = tokio::runtime::Runtime::new()?;

    println!("bench-api: signed DescribeDBInstances on mongobak vs a bare axum handler");
    println!(
        "machine: {cores} cores, shared by the load generator and the server under test; \
         load average before the run: {}",
        load_average()
    );
    println!(
        "load: {} keep-alive HTTP/1.1 connections; peak = closed loop ({} s warm-up, {} s measured); \
         then open loop at {:.0}% of each target's own peak for {} s, latency from the scheduled send time",
        args.connections,
        args.warmup_secs,
        args.duration_secs,
        LOAD_SHARE * 100.0,
        args.duration_secs
    );
    println!(
        "mongobak: {} serve, MONGOBAK_LOG={}, log to {}, {INSTANCES} instances, body {REQUEST_BODY}",
        mongobak.display(),
        args.server_log_level,
        args.server_log.display()
    );
    println!();

    let host = HostSpeed::start();
    let bare = {
        let mut command = Command::new(&this);
        command.arg("--bare-server").stderr(Stdio::inherit());
        let server = Server::start("bare", command, "")?;
        let measured = runtime.block_on(measure(&server, 0, args))?;
        server.stop()?;
        measured
    };

    let real = {
        let log = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&args.server_log)
            .with_context(|| format!("cannot open {}", args.server_log.display()))?;
        let mut command = Command::new(&mongobak);
        command.arg("serve").arg("--config").arg(&config);
        // Only the file configures it.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("MONGOBAK_") {
                command.env_remove(key);
            }
        }
        command
            .env("MONGOBAK_LOG", &args.server_log_level)
            .stderr(log);
        let hint = if args.server_log == Path::new("/dev/null") {
            "; rerun with --server-log FILE to see its log".to_string()
        } else {
            format!("; see {}", args.server_log.display())
        };
        let server = Server::start("mongobak", command, &hint)?;
        let measured = runtime.block_on(measure(&server, INSTANCES, args))?;
        server.stop()?;
        measured
    };
    drop(runtime);
    drop(tmp);

    Ok(report(&bare, &real, &host))
}

/// Prints the table and the verdicts.
fn report(bare: &Measurement, real: &Measurement, host: &HostSpeed) -> Verdict {
    // The host's speed in each phase, relative to the fastest phase's
    // median: (bare peak, bare paced, mongobak peak, mongobak paced).
    let speeds: Vec<Option<Speed>> = [bare, real]
        .iter()
        .flat_map(|m| [m.peak.window, m.paced.window])
        .map(|(from, until)| host.between(from, until))
        .collect();
    let fastest = speeds
        .iter()
        .flatten()
        .map(|s| s.median)
        .fold(0.0, f64::max);
    let relative = |speed: Option<Speed>| match speed {
        Some(s) if fastest > 0.0 => format!(
            "{:.2} ({:.2}-{:.2})",
            s.median / fastest,
            s.low / fastest,
            s.high / fastest
        ),
        _ => "?".to_string(),
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let us = |d: Option<Duration>| {
        d.map_or_else(
            || "?".to_string(),
            |d| format!("{:.1}", d.as_secs_f64() * 1e6),
        )
    };
    println!(
        "{:<24} {:>9} {:>10} {:>14} {:>12} {:>7} {:>17}",
        "peak (closed loop)",
        "req/s",
        "reply B",
        "server CPU/req",
        "gen. CPU/req",
        "errors",
        "host speed"
    );
    for (m, speed) in [bare, real].into_iter().zip([speeds[0], speeds[2]]) {
        println!(
            "{:<24} {:>9.0} {:>10} {:>11} us {:>9} us {:>7} {:>17}",
            m.name,
            m.peak.rate,
            m.reply_bytes,
            us(m.peak.server_cpu),
            us(m.peak.generator_cpu),
            m.peak.errors,
            relative(speed)
        );
    }
    println!();
    println!(
        "{:<24} {:>9} {:>10} {:>9} {:>9} {:>9} {:>14} {:>12} {:>7} {:>17}",
        format!("{:.0}% of peak (open loop)", LOAD_SHARE * 100.0),
        "offered",
        "achieved",
        "p50 ms",
        "p99 ms",
        "max ms",
        "server CPU/req",
        "gen. CPU/req",
        "errors",
        "host speed"
    );
    for (m, speed) in [bare, real].into_iter().zip([speeds[1], speeds[3]]) {
        println!(
            "{:<24} {:>9.0} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>11} us {:>9} us {:>7} {:>17}",
            m.name,
            m.peak.rate * LOAD_SHARE,
            m.paced.achieved,
            ms(m.paced.p50),
            ms(m.paced.p99),
            ms(m.paced.max),
            us(m.paced.server_cpu),
            us(m.paced.generator_cpu),
            m.paced.errors,
            relative(speed)
        );
    }
    println!();

    let mut valid = true;
    for m in [bare, real] {
        if m.errors() > 0 {
            valid = false;
            let first = m
                .peak
                .first_error
                .as_deref()
                .or(m.paced.first_error.as_deref())
                .unwrap_or("");
            println!(
                "INVALID: {} answered {} errors; first: {first}",
                m.name,
                m.errors()
            );
        }
    }
    let verdict = |pass: bool| if pass { "PASS" } else { "FAIL" };
    let ratio = real.peak.rate / bare.peak.rate;
    let ratio_ok = ratio >= GOAL_RATIO;
    let p99 = ms(real.paced.p99);
    let p99_ok = p99 < GOAL_P99_MS;
    println!(
        "ratio mongobak/bare: {ratio:.2}x (goal >= {GOAL_RATIO}x): {}",
        verdict(ratio_ok)
    );
    println!(
        "p99 at 80% of peak: {p99:.2} ms (goal < {GOAL_P99_MS} ms): {}",
        verdict(p99_ok)
    );
    // How busy the machine was in mongobak's open loop: if it was close to
    // all of its cores, 80% of the peak was in fact about 100% of what the
    // machine could do in that phase (it ran slower per request than in
    // the peak phase), and the latency shows a saturated machine.
    if let (Some(server), Some(generator)) = (real.paced.server_cpu, real.paced.generator_cpu) {
        let busy = (server + generator).as_secs_f64() * real.paced.achieved;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!("mongobak's open loop kept {busy:.2} of {cores} cores busy (server + generator)");
        if busy > 0.9 * cores as f64 {
            println!(
                "NOTE: the machine was saturated in the open loop: it needed {:.1} us per answer \
                 against {} us in the peak phase; rerun",
                (server + generator).as_secs_f64() * 1e6,
                match (real.peak.server_cpu, real.peak.generator_cpu) {
                    (Some(s), Some(g)) => format!("{:.1}", (s + g).as_secs_f64() * 1e6),
                    _ => "?".to_string(),
                }
            );
        }
    }
    let slowest = speeds
        .iter()
        .flatten()
        .map(|s| s.low)
        .fold(f64::INFINITY, f64::min);
    if fastest > 0.0 && slowest < HOST_SPEED_EVEN * fastest {
        println!(
            "NOTE: the host ran this machine's cores unevenly: a fixed loop went as slow as {:.2} of \
             the fastest phase's median (host speed column: median, p10-p90); the ratio and the \
             latencies measure the host too: rerun",
            slowest / fastest
        );
    }
    match (valid, ratio_ok && p99_ok) {
        (false, _) => Verdict::Invalid,
        (true, true) => Verdict::Pass,
        (true, false) => Verdict::Fail,
    }
}

//! Capture: `mongobak serve` tailing the source's oplog while the writer
//! runs as fast as it can, and again when it starts far behind.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench_support::process::{clock_ticks_per_sec, process_cpu};
use mongodb::bson::{doc, Document, Timestamp};
use mongodb::Client;

use crate::servers::{lag, status_kib, Catalog, Mongobak};
use crate::writer::{self, Done, Until};

/// Database and collection the load writes.
pub const LOAD_DB: &str = "benchpitr";
/// Collection the load writes.
pub const LOAD_COLL: &str = "orders";
/// How often the figures are sampled during the load.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// Longest wait for the saved position to reach the end of the writes.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(600);

/// An oplog timestamp as the catalog stores it: seconds << 32 | increment.
pub fn ts_key(ts: Timestamp) -> i64 {
    (i64::from(ts.time) << 32) | i64::from(ts.increment)
}

/// The newest entry of the source's oplog; with `non_noop`, the newest
/// that is not a no-op.
pub async fn newest(client: &Client, non_noop: bool) -> anyhow::Result<i64> {
    let filter = if non_noop {
        doc! {"op": {"$ne": "n"}}
    } else {
        doc! {}
    };
    let entry = client
        .database("local")
        .collection::<Document>("oplog.rs")
        .find_one(filter)
        .sort(doc! {"$natural": -1})
        .await?
        .context("the source's oplog is empty")?;
    Ok(ts_key(entry.get_timestamp("ts")?))
}

/// Oplog entries other than no-ops on `ns` after position `after`.
pub async fn entries_after(client: &Client, ns: &str, after: i64) -> anyhow::Result<u64> {
    let ts = Timestamp {
        time: (after >> 32) as u32,
        increment: after as u32,
    };
    Ok(client
        .database("local")
        .collection::<Document>("oplog.rs")
        .count_documents(doc! {"ts": {"$gt": ts}, "ns": ns, "op": {"$ne": "n"}})
        .await?)
}

/// One sample taken during the load.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Seconds since the load started.
    at: f64,
    /// Writes done so far.
    written: u64,
    /// Entries sealed into slices so far (since the load started).
    captured: u64,
    /// The lag on `/metrics`.
    lag: Option<f64>,
    /// `mongobak serve`'s RSS, KiB.
    rss_kib: Option<u64>,
}

/// What the load measured.
#[derive(Debug)]
pub struct Load {
    /// Seconds the writer ran.
    pub seconds: f64,
    /// Writes done (each one oplog entry), and the mix.
    pub written: u64,
    /// The kinds of writes.
    pub mix: String,
    /// Entries on the source's oplog for the load, counted there.
    pub in_oplog: u64,
    /// Entries sealed into slices once the tailer caught up.
    pub captured: u64,
    /// Writes per second over the measured window (least-squares slope).
    pub written_rate: f64,
    /// Entries sealed per second over the same window.
    pub captured_rate: f64,
    /// The window, seconds after the start.
    pub window: (f64, f64),
    /// Seconds from the writer's end to the saved position reaching its
    /// last entry.
    pub catch_up: f64,
    /// Lag samples from `/metrics`.
    pub lags: Vec<f64>,
    /// `mongobak serve`'s peak RSS: the highest sampled, and `VmHWM` at
    /// the end of the load (since its start), KiB.
    pub rss_sampled_kib: u64,
    /// `VmHWM` at the end of the load.
    pub rss_hwm_kib: u64,
    /// CPU seconds over the load of `mongobak serve` and of the server.
    pub serve_cpu: f64,
    /// CPU seconds of the server.
    pub server_cpu: f64,
}

/// Waits until the tailer has begun: a saved position and a lag on
/// `/metrics`.
pub async fn tailer_began(mongobak: &mut Mongobak, catalog: &Catalog) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        mongobak.check_alive()?;
        if catalog.sealed().await?.is_some() && lag(mongobak.admin).await.is_some() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the tailer did not begin within two minutes (see the mongobak log)");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the saved position reaches `target`, sampling
/// `mongobak serve`'s RSS meanwhile; the seconds it took and the highest
/// RSS sampled (KiB).
pub async fn wait_sealed(
    mongobak: &mut Mongobak,
    catalog: &Catalog,
    target: i64,
    every: Duration,
) -> anyhow::Result<(f64, u64)> {
    let start = Instant::now();
    let mut peak = 0;
    loop {
        mongobak.check_alive()?;
        peak = peak.max(status_kib(mongobak.pid(), "VmRSS").unwrap_or(0));
        if catalog
            .sealed()
            .await?
            .is_some_and(|sealed| sealed >= target)
        {
            return Ok((start.elapsed().as_secs_f64(), peak));
        }
        if start.elapsed() >= CATCH_UP_TIMEOUT {
            bail!(
                "the saved position did not reach the last write within {} s",
                CATCH_UP_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(every).await;
    }
}

/// Runs the writer (`tasks` at once) for `seconds` while `mongobak serve`
/// tails the source, sampling every 250 ms.
pub async fn load(
    client: &Client,
    mongobak: &mut Mongobak,
    catalog: &Catalog,
    server_pid: u32,
    seconds: u64,
    tasks: usize,
) -> anyhow::Result<Load> {
    let ticks = clock_ticks_per_sec();
    let coll = client.database(LOAD_DB).collection::<Document>(LOAD_COLL);
    let before = newest(client, false).await?;
    let captured_before = catalog.captured(before).await?;
    let done = Arc::new(Done::default());
    let serve_cpu = process_cpu(mongobak.pid(), ticks).unwrap_or(0.0);
    let server_cpu = process_cpu(server_pid, ticks).unwrap_or(0.0);
    let start = Instant::now();
    let writers = tokio::spawn(writer::run(
        coll,
        tasks,
        1,
        Until::Deadline(start + Duration::from_secs(seconds)),
        done.clone(),
    ));
    let mut samples = Vec::new();
    while !writers.is_finished() {
        mongobak.check_alive()?;
        let at = start.elapsed().as_secs_f64();
        let written = done.total.load(Ordering::Relaxed);
        let captured = catalog.captured(before).await? - captured_before;
        let lag = lag(mongobak.admin).await;
        let rss_kib = status_kib(mongobak.pid(), "VmRSS");
        samples.push(Sample {
            at,
            written,
            captured,
            lag,
            rss_kib,
        });
        let next = start + SAMPLE_EVERY.mul_f64((at / SAMPLE_EVERY.as_secs_f64()).floor() + 1.0);
        tokio::time::sleep_until(next.into()).await;
    }
    writers.await.context("the writer panicked")??;
    let seconds = start.elapsed().as_secs_f64();
    let rss_hwm_kib = status_kib(mongobak.pid(), "VmHWM").unwrap_or(0);
    let serve_cpu = process_cpu(mongobak.pid(), ticks).unwrap_or(0.0) - serve_cpu;
    let server_cpu = process_cpu(server_pid, ticks).unwrap_or(0.0) - server_cpu;
    let last = newest(client, true).await?;
    let (catch_up, rss_after) =
        wait_sealed(mongobak, catalog, last, Duration::from_millis(50)).await?;
    let written = done.total.load(Ordering::Relaxed);
    let in_oplog = entries_after(client, &format!("{LOAD_DB}.{LOAD_COLL}"), before).await?;
    let captured = catalog.captured(before).await? - captured_before;
    // The steady state: from a tenth of the load on (the first seal comes
    // after the seal interval) to its end.
    let window = (seconds * 0.1, seconds);
    let in_window: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= window.0 && s.at <= window.1)
        .collect();
    let written_rate = slope(in_window.iter().map(|s| (s.at, s.written as f64)));
    let captured_rate = slope(in_window.iter().map(|s| (s.at, s.captured as f64)));
    let rss_sampled_kib = samples
        .iter()
        .filter_map(|s| s.rss_kib)
        .max()
        .unwrap_or(0)
        .max(rss_after);
    Ok(Load {
        seconds,
        written,
        mix: done.mix(),
        in_oplog,
        captured,
        written_rate,
        captured_rate,
        window,
        catch_up,
        lags: samples.iter().filter_map(|s| s.lag).collect(),
        rss_sampled_kib,
        rss_hwm_kib,
        serve_cpu,
        server_cpu,
    })
}

/// The writer alone (no tailer) on a fresh server.
#[derive(Debug)]
pub struct Alone {
    /// Seconds it ran.
    pub seconds: f64,
    /// Writes done.
    pub written: u64,
    /// Writes per second over the same window as the load's.
    pub rate: f64,
    /// CPU seconds of the server.
    pub server_cpu: f64,
}

/// Runs the writer (`tasks` at once) for `seconds` with nothing tailing
/// the server: the rate the source sustains alone.
pub async fn alone(
    client: &Client,
    server_pid: u32,
    seconds: u64,
    tasks: usize,
) -> anyhow::Result<Alone> {
    let ticks = clock_ticks_per_sec();
    let coll = client.database(LOAD_DB).collection::<Document>(LOAD_COLL);
    let done = Arc::new(Done::default());
    let server_cpu = process_cpu(server_pid, ticks).unwrap_or(0.0);
    let start = Instant::now();
    let writers = tokio::spawn(writer::run(
        coll,
        tasks,
        1,
        Until::Deadline(start + Duration::from_secs(seconds)),
        done.clone(),
    ));
    let mut samples = Vec::new();
    while !writers.is_finished() {
        let at = start.elapsed().as_secs_f64();
        samples.push((at, done.total.load(Ordering::Relaxed) as f64));
        let next = start + SAMPLE_EVERY.mul_f64((at / SAMPLE_EVERY.as_secs_f64()).floor() + 1.0);
        tokio::time::sleep_until(next.into()).await;
    }
    writers.await.context("the writer panicked")??;
    let seconds = start.elapsed().as_secs_f64();
    let server_cpu = process_cpu(server_pid, ticks).unwrap_or(0.0) - server_cpu;
    let window = (seconds * 0.1, seconds);
    let rate = slope(
        samples
            .into_iter()
            .filter(|(at, _)| *at >= window.0 && *at <= window.1),
    );
    Ok(Alone {
        seconds,
        written: done.total.load(Ordering::Relaxed),
        rate,
        server_cpu,
    })
}

/// Least-squares slope of `points` (0 with fewer than two).
fn slope(points: impl Iterator<Item = (f64, f64)>) -> f64 {
    let points: Vec<(f64, f64)> = points.collect();
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let covariance: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let variance: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if variance == 0.0 {
        0.0
    } else {
        covariance / variance
    }
}

/// What a start far behind measured.
#[derive(Debug)]
pub struct Behind {
    /// Which `mongobak` ran.
    pub label: String,
    /// Entries behind at start.
    pub entries: u64,
    /// Seconds from the start of `mongobak serve` to the saved position
    /// reaching the last entry.
    pub catch_up: f64,
    /// Highest RSS sampled meanwhile, KiB.
    pub rss_sampled_kib: u64,
    /// `VmHWM` once caught up (its peak since it started), KiB.
    pub rss_hwm_kib: u64,
}

/// With `mongobak serve` stopped, writes `count` entries with
/// `insert_many`; returns the newest position and the seconds it took.
pub async fn write_backlog(client: &Client, count: u64, seed: u64) -> anyhow::Result<(i64, f64)> {
    let coll = client.database(LOAD_DB).collection::<Document>("backlog");
    let start = Instant::now();
    writer::backlog(&coll, count, seed).await?;
    Ok((newest(client, true).await?, start.elapsed().as_secs_f64()))
}

/// Started far behind: samples `mongobak serve`'s RSS every 50 ms until
/// its saved position reaches `target`.
pub async fn catch_up(
    mongobak: &mut Mongobak,
    catalog: &Catalog,
    target: i64,
) -> anyhow::Result<(f64, u64, u64)> {
    let (seconds, sampled) =
        wait_sealed(mongobak, catalog, target, Duration::from_millis(50)).await?;
    let hwm = status_kib(mongobak.pid(), "VmHWM").unwrap_or(0);
    Ok((seconds, sampled, hwm))
}

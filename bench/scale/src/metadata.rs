//! Latency of the catalog operations a download task goes through, on
//! SQLite (a file in WAL mode) and on PostgreSQL, through
//! `mongobak-catalog` exactly as the API handlers and the download workers
//! call it.
//!
//! Each iteration takes one task through its life: created
//! (`downloads().ensure_tasks`), claimed with a lease (`downloads().claim`),
//! its lease renewed (`downloads().heartbeat`), finished with a published
//! file (`downloads().complete`), then looked up (`downloads().get`) and
//! listed with the instance's others, newest 20
//! (`downloads().list`, as `DescribeBackupDownloadTask` does); then the
//! API's rate limiter takes a token, as every request does. Each task
//! is of a replica set of its own, so every create inserts. The engines
//! take turns iteration by iteration, so a disturbance of the machine
//! touches both alike; the first iterations are not measured (connections
//! open, statements are prepared).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use jiff::{SignedDuration, Timestamp};
use mongobak_api::ratelimit::{RateLimiter, RateLimits};
use mongobak_catalog::{
    BackupSizes, BackupType, Catalog, NewBackup, PublishedFile, TaskFilter, TaskOrder, TaskStatus,
};

/// The operations, in the order of a task's life.
pub const OPERATIONS: [&str; 7] = [
    "create",
    "claim",
    "heartbeat",
    "finish",
    "describe",
    "list 20",
    "rate token",
];

const INSTANCE: &str = "cmgo-meta0001";
const WORKER: &str = "bench-scale/0";

/// One engine's catalog and its samples.
pub struct Engine {
    /// `SQLite` or `PostgreSQL`.
    pub name: &'static str,
    catalog: Catalog,
    backup_id: i64,
    /// The API's rate limiter, as every request takes a token of it: in
    /// the process on SQLite, shared through the catalog on PostgreSQL.
    limiter: RateLimiter,
    /// Per operation, every measured duration.
    pub samples: [Vec<Duration>; 7],
}

impl Engine {
    /// Opens the catalog at `url` (migrations included) and records a
    /// finished backup for the tasks to belong to.
    pub async fn open(name: &'static str, url: &str) -> anyhow::Result<Engine> {
        let catalog = Catalog::open(url)
            .await
            .with_context(|| format!("opening the {name} catalog"))?;
        let now = Timestamp::now();
        let backup = catalog
            .backups()
            .create(
                &NewBackup {
                    instance_id: INSTANCE.into(),
                    method: 0,
                    backup_type: BackupType::Manual,
                    remark: "bench-scale".into(),
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
            .complete(backup.id, now, BackupSizes::default(), &[], 7)
            .await?;
        Ok(Engine {
            name,
            catalog,
            backup_id: backup.id,
            limiter: RateLimiter::new(RateLimits::default()),
            samples: Default::default(),
        })
    }

    /// Takes task number `n` through its life; keeps the durations when
    /// `measured`.
    pub async fn iteration(&mut self, n: usize, measured: bool) -> anyhow::Result<()> {
        let c = &self.catalog;
        let now = Timestamp::now();
        let lease = now + SignedDuration::from_secs(30);
        let sets = [format!("{INSTANCE}_{n}")];
        let mut times = [Duration::ZERO; 7];

        let t = Instant::now();
        let created = c
            .downloads()
            .ensure_tasks(self.backup_id, INSTANCE, &sets, now)
            .await?;
        times[0] = t.elapsed();
        let task = created.first().context("no task created")?;
        if task.status != TaskStatus::Waiting {
            bail!("task {} of a new replica set is not waiting", task.id);
        }

        let t = Instant::now();
        let claimed = c.downloads().claim(WORKER, now, lease).await?;
        times[1] = t.elapsed();
        let claimed = claimed.context("nothing to claim")?;
        if claimed.id != task.id {
            bail!("claimed task {} instead of {}", claimed.id, task.id);
        }

        let t = Instant::now();
        let held = c.downloads().heartbeat(task.id, WORKER, 50, lease).await?;
        times[2] = t.elapsed();
        if !held {
            bail!("the heartbeat of task {} lost its lease", task.id);
        }

        let file = PublishedFile {
            path: format!("downloads/{}/1/{INSTANCE}_{n}.archive.gz", task.id),
            size: 1 << 20,
            sha256: "ab".repeat(32),
            expires_at: now + SignedDuration::from_hours(24),
        };
        let t = Instant::now();
        let finished = c.downloads().complete(task.id, WORKER, now, &file).await?;
        times[3] = t.elapsed();
        if !finished {
            bail!("task {} could not be finished", task.id);
        }

        let t = Instant::now();
        let described = c.downloads().get(task.id).await?;
        times[4] = t.elapsed();
        if described.map(|d| d.status) != Some(TaskStatus::Done) {
            bail!("task {} is not done after finishing", task.id);
        }

        let t = Instant::now();
        let (page, total) = c
            .downloads()
            .list(
                INSTANCE,
                &TaskFilter::default(),
                TaskOrder::CreateTime,
                true,
                0,
                20,
            )
            .await?;
        times[5] = t.elapsed();
        if page.is_empty() || total as usize != n + 1 {
            bail!(
                "the listing shows {} of {total} tasks, expected {}",
                page.len(),
                n + 1
            );
        }

        // Taken or refused (the default 20 per second), a token costs the
        // same: the key's log is read and, when there is room, written.
        let t = Instant::now();
        self.limiter
            .acquire(c, "100000000001", "DescribeBackupDownloadTask")
            .await;
        times[6] = t.elapsed();

        if measured {
            for (samples, time) in self.samples.iter_mut().zip(times) {
                samples.push(time);
            }
        }
        Ok(())
    }
}

/// Runs `warmup` unmeasured then `iterations` measured iterations on each
/// engine, the engines taking turns (and turns about who goes first).
pub async fn run(
    engines: &mut [Engine; 2],
    warmup: usize,
    iterations: usize,
) -> anyhow::Result<()> {
    for n in 0..warmup + iterations {
        let order = if n % 2 == 0 { [0, 1] } else { [1, 0] };
        for e in order {
            let engine = &mut engines[e];
            engine
                .iteration(n, n >= warmup)
                .await
                .with_context(|| format!("{}: iteration {n}", engine.name))?;
        }
    }
    Ok(())
}

/// The `q` quantile (0-1) of `samples` in microseconds, nearest rank.
pub fn quantile_us(samples: &[Duration], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted: Vec<Duration> = samples.to_vec();
    sorted.sort();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e6
}

//! One way to run background duties: a [`Worker`] says what one step of
//! its work is; the [`Runner`] repeats the steps on the node's shared
//! `TaskTracker`, sleeps between them, stops at the shutdown token, logs
//! failures and waits before trying again, and, for a singleton [`Duty`],
//! takes its lease in the catalog before every step and gives it up at
//! the end.
//!
//! The shape is Garage's background workers (`name`, a `work` step that
//! answers busy, idle or done); the janitor, the scheduler, the backup
//! runner and the download workers all run this way, each worker one task
//! on the tracker, so a shutdown waits for every one of them. Many workers
//! of one kind are many workers with names of their own, each holding a
//! duty keyed by its name if only one node may run it.

use std::future::Future;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use mongobak_catalog::Catalog;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why a step failed: logged by the runner, which then waits
/// [`Worker::retry_after`] before the next step.
pub type WorkError = Box<dyn std::error::Error + Send + Sync>;

/// What a worker's step leaves to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// There may be more work at once: step again without waiting.
    Busy,
    /// Nothing to do for now: step again after this long, or sooner when
    /// [`Worker::wake`] resolves.
    Idle(Duration),
    /// The worker is finished and ends.
    Done,
}

/// A background worker, stepped by a [`Runner`].
pub trait Worker: Send + 'static {
    /// The worker's name in logs (unique among the node's workers).
    fn name(&self) -> String;

    /// Does one step of work. `stop` is cancelled when the node shuts
    /// down; a long step watches it and gives up, a short one may finish.
    fn work(
        &mut self,
        stop: &CancellationToken,
    ) -> impl Future<Output = Result<Step, WorkError>> + Send;

    /// Resolves when work may have arrived while the worker is
    /// [idle](Step::Idle) (a queue's wake-up); never, by default.
    fn wake(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }

    /// The wait after the `failures`-th failed step in a row (1 for the
    /// first): by default 1 s, growing by half each time up to about a
    /// minute.
    fn retry_after(&self, failures: u32) -> Duration {
        Duration::from_secs_f64(1.5f64.powi(failures.saturating_sub(1).min(10) as i32))
    }
}

/// A singleton duty: work that one node of a cluster does at a time,
/// held as a lease in the catalog (see `mongobak_catalog`'s duties).
#[derive(Debug, Clone)]
pub struct Duty {
    /// Where the lease is kept.
    pub catalog: Catalog,
    /// The duty's key in the catalog, shared by every node.
    pub name: String,
    /// This node's name in the lease.
    pub node: String,
    /// How long a lease lasts unless renewed (it is renewed before every
    /// step), so how soon another node takes over when the holder dies.
    pub lease: SignedDuration,
    /// How often a node that does not hold the duty asks for it again.
    pub retry: Duration,
}

impl Duty {
    /// `name` for `node`, stepped every `interval`: the lease lasts three
    /// intervals (another node takes over within three when the holder
    /// dies), and a node without it asks again every interval.
    pub fn every(catalog: Catalog, name: &str, node: &str, interval: Duration) -> Duty {
        Duty {
            catalog,
            name: name.into(),
            node: node.into(),
            lease: SignedDuration::try_from(interval * 3).unwrap_or(SignedDuration::from_hours(1)),
            retry: interval,
        }
    }

    /// Takes or renews the lease: whether this node holds the duty.
    async fn hold(&self) -> bool {
        let held = self
            .catalog
            .duties()
            .hold(&self.name, &self.node, Timestamp::now(), self.lease)
            .await;
        match held {
            Ok(true) => true,
            Ok(false) => {
                tracing::debug!(duty = %self.name, "another node holds the duty");
                false
            }
            Err(e) => {
                tracing::warn!(duty = %self.name, error = %e, "cannot take the duty");
                false
            }
        }
    }

    /// Gives the lease up, so another node need not wait for it to lapse.
    async fn release(&self) {
        if let Err(e) = self.catalog.duties().release(&self.name, &self.node).await {
            tracing::debug!(duty = %self.name, error = %e, "cannot release the duty; it lapses");
        }
    }
}

/// Runs workers and errands on a shared tracker until a shared token is
/// cancelled. Clones run on the same tracker.
#[derive(Debug, Clone)]
pub struct Runner {
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Runner {
    /// A runner spawning onto `tracker` (whose owner closes and waits for
    /// it) and stopping everything at `shutdown`.
    pub fn new(tracker: TaskTracker, shutdown: CancellationToken) -> Self {
        Runner { tracker, shutdown }
    }

    /// Runs what `start` spawns on a tracker of its own until `shutdown`,
    /// and returns once all of it has ended.
    pub async fn run_until(shutdown: CancellationToken, start: impl FnOnce(&Runner)) {
        let runner = Runner::new(TaskTracker::new(), shutdown);
        start(&runner);
        runner.tracker.close();
        runner.tracker.wait().await;
    }

    /// The token whose cancellation stops every worker.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Steps `worker` until it is done or the shutdown.
    pub fn spawn<W: Worker>(&self, worker: W) {
        self.tracker
            .spawn(drive(worker, None, self.shutdown.clone()));
    }

    /// Steps `worker` while this node holds `duty`, until it is done or
    /// the shutdown; then gives the duty up.
    pub fn spawn_duty<W: Worker>(&self, duty: Duty, worker: W) {
        self.tracker
            .spawn(drive(worker, Some(duty), self.shutdown.clone()));
    }

    /// Runs `round` on a clone of `state` every [`Duty::retry`] while this
    /// node holds `duty`, until the shutdown: the shape of the janitor and
    /// the scheduler. A failed round is logged and tried again at the next.
    pub fn spawn_rounds<S, F, Fut, T, E>(&self, duty: Duty, state: S, mut round: F)
    where
        S: Clone + Send + 'static,
        F: FnMut(S, Timestamp) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send,
        E: Into<WorkError>,
    {
        let worker = Rounds {
            name: duty.name.clone(),
            interval: duty.retry,
            round: move || {
                let round = round(state.clone(), Timestamp::now());
                async move { round.await.map(drop).map_err(Into::into) }
            },
        };
        self.spawn_duty(duty, worker);
    }

    /// Runs `errand`, a one-off job such as a notification, to its end; once
    /// the shutdown begins it has `grace` more, then it is dropped, so it
    /// holds a stop up that long at most.
    pub fn spawn_errand<F>(&self, what: &'static str, grace: Duration, errand: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(async move {
            let deadline = async {
                shutdown.cancelled().await;
                tokio::time::sleep(grace).await;
            };
            tokio::select! {
                () = errand => {}
                () = deadline => {
                    tracing::warn!(errand = what, grace_secs = grace.as_secs_f64(), "unfinished at shutdown; given up");
                }
            }
        });
    }
}

/// What [`Runner::spawn_rounds`] runs.
struct Rounds<F> {
    name: String,
    interval: Duration,
    round: F,
}

impl<F, Fut> Worker for Rounds<F>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), WorkError>> + Send,
{
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn work(&mut self, _stop: &CancellationToken) -> Result<Step, WorkError> {
        (self.round)().await?;
        Ok(Step::Idle(self.interval))
    }

    fn retry_after(&self, _failures: u32) -> Duration {
        self.interval
    }
}

/// The loop of one worker.
async fn drive<W: Worker>(mut worker: W, duty: Option<Duty>, stop: CancellationToken) {
    let name = worker.name();
    let mut failures = 0u32;
    while !stop.is_cancelled() {
        if let Some(duty) = &duty {
            if !duty.hold().await {
                tokio::select! {
                    _ = tokio::time::sleep(duty.retry) => continue,
                    _ = stop.cancelled() => break,
                }
            }
        }
        match worker.work(&stop).await {
            Ok(Step::Busy) => failures = 0,
            Ok(Step::Idle(wait)) => {
                failures = 0;
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = worker.wake() => {}
                    _ = stop.cancelled() => break,
                }
            }
            Ok(Step::Done) => break,
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = worker.retry_after(failures);
                tracing::error!(
                    worker = %name,
                    error = %e,
                    failures,
                    retry_in_secs = wait.as_secs_f64(),
                    "background work failed; trying again"
                );
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => break,
                }
            }
        }
    }
    if let Some(duty) = &duty {
        duty.release().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use super::*;

    /// Counts its steps: failing on the ones in `failing`, busy up to
    /// `busy`, idle after, done at `done`.
    struct Counter {
        steps: Arc<AtomicU32>,
        busy: u32,
        failing: Vec<u32>,
        done: u32,
    }

    impl Counter {
        fn idle(steps: &Arc<AtomicU32>) -> Self {
            Counter {
                steps: steps.clone(),
                busy: 0,
                failing: vec![],
                done: u32::MAX,
            }
        }
    }

    impl Worker for Counter {
        fn name(&self) -> String {
            "counter".into()
        }

        async fn work(&mut self, _stop: &CancellationToken) -> Result<Step, WorkError> {
            let n = self.steps.fetch_add(1, Ordering::SeqCst) + 1;
            if self.failing.contains(&n) {
                return Err("failing on purpose".into());
            }
            Ok(if n >= self.done {
                Step::Done
            } else if n <= self.busy {
                Step::Busy
            } else {
                Step::Idle(Duration::from_millis(5))
            })
        }

        fn retry_after(&self, _failures: u32) -> Duration {
            Duration::from_millis(5)
        }
    }

    #[tokio::test]
    async fn steps_until_done_through_busy_idle_and_failed_steps() {
        let steps = Arc::new(AtomicU32::new(0));
        let worker = Counter {
            steps: steps.clone(),
            busy: 3,
            failing: vec![4, 6],
            done: 8,
        };
        Runner::run_until(CancellationToken::new(), |runner| runner.spawn(worker)).await;
        assert_eq!(steps.load(Ordering::SeqCst), 8);
    }

    #[tokio::test]
    async fn a_shutdown_ends_an_idle_worker_and_bounds_its_errands() {
        let shutdown = CancellationToken::new();
        let steps = Arc::new(AtomicU32::new(0));
        let worker = Counter::idle(&steps);
        let running = tokio::spawn(Runner::run_until(shutdown.clone(), move |runner| {
            runner.spawn(worker);
            runner.spawn_errand("forever", Duration::from_millis(50), std::future::pending());
        }));
        tokio::time::sleep(Duration::from_millis(30)).await;
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .expect("the runner ends within the errand's grace")
            .unwrap();
        assert!(steps.load(Ordering::SeqCst) > 1);
    }

    #[tokio::test]
    async fn a_duty_runs_on_the_node_holding_it_and_is_given_up_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&format!("sqlite://{}/m.db", dir.path().display()))
            .await
            .unwrap();
        let duty = Duty {
            catalog: catalog.clone(),
            name: "counting".into(),
            node: "here".into(),
            lease: SignedDuration::from_secs(60),
            retry: Duration::from_millis(5),
        };
        let lease = SignedDuration::from_secs(60);
        assert!(catalog
            .duties()
            .hold("counting", "elsewhere", Timestamp::now(), lease)
            .await
            .unwrap());
        let shutdown = CancellationToken::new();
        let steps = Arc::new(AtomicU32::new(0));
        let worker = Counter::idle(&steps);
        let running = tokio::spawn(Runner::run_until(shutdown.clone(), move |runner| {
            runner.spawn_duty(duty, worker)
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(steps.load(Ordering::SeqCst), 0, "another node holds it");
        catalog
            .duties()
            .release("counting", "elsewhere")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(steps.load(Ordering::SeqCst) > 0, "taken over once free");
        assert!(!catalog
            .duties()
            .hold("counting", "elsewhere", Timestamp::now(), lease)
            .await
            .unwrap());
        shutdown.cancel();
        running.await.unwrap();
        assert!(
            catalog
                .duties()
                .hold("counting", "elsewhere", Timestamp::now(), lease)
                .await
                .unwrap(),
            "released at the end"
        );
    }

    /// A worker with the default backoff.
    struct Plain;

    impl Worker for Plain {
        fn name(&self) -> String {
            "plain".into()
        }

        async fn work(&mut self, _stop: &CancellationToken) -> Result<Step, WorkError> {
            Ok(Step::Done)
        }
    }

    #[test]
    fn the_default_backoff_grows_to_about_a_minute() {
        let waits: Vec<f64> = [1, 2, 3, 11, 50]
            .iter()
            .map(|n| Plain.retry_after(*n).as_secs_f64())
            .collect();
        assert_eq!(waits[..3], [1.0, 1.5, 2.25]);
        assert!((57.0..58.0).contains(&waits[3]), "{waits:?}");
        assert_eq!(waits[3], waits[4]);
    }
}

//! How fast this machine's cores run, sampled through a run.
//!
//! On a shared host (a virtual machine beside busy neighbours) the same
//! instructions can take twice as long from one second to the next. A
//! benchmark that compares two phases run one after the other then
//! measures the host as much as the code. [`HostSpeed`] runs a fixed,
//! cache-resident loop on a thread of its own every 100 ms and times it in
//! that thread's CPU time, so waiting for a core does not count, only how
//! fast the core went. Harnesses print the speed of each phase beside its
//! figures, and a note when it varied.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Rounds of the probe loop per sample: about a millisecond on a
/// 2020s x86 core, so sampling costs about 1% of one core.
const ROUNDS: u64 = 1_000_000;

/// Time between samples.
const INTERVAL: Duration = Duration::from_millis(100);

/// Samples of the probe loop, taken by a background thread until dropped.
pub struct HostSpeed {
    samples: Arc<Mutex<Vec<(Instant, f64)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The probe's speed over a window: loop rounds per CPU microsecond.
#[derive(Debug, Clone, Copy)]
pub struct Speed {
    /// The 10th percentile of the samples.
    pub low: f64,
    /// The median of the samples.
    pub median: f64,
    /// The 90th percentile of the samples.
    pub high: f64,
}

impl HostSpeed {
    /// Starts sampling.
    pub fn start() -> HostSpeed {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (samples, stop) = (Arc::clone(&samples), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(speed) = sample() {
                        samples.lock().unwrap().push((Instant::now(), speed));
                    }
                    std::thread::sleep(INTERVAL);
                }
            })
        };
        HostSpeed {
            samples,
            stop,
            thread: Some(thread),
        }
    }

    /// The speed of the samples taken from `from` to `until`, or `None`
    /// if there were fewer than three.
    pub fn between(&self, from: Instant, until: Instant) -> Option<Speed> {
        let mut speeds: Vec<f64> = self
            .samples
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, _)| *at >= from && *at < until)
            .map(|&(_, speed)| speed)
            .collect();
        if speeds.len() < 3 {
            return None;
        }
        speeds.sort_by(f64::total_cmp);
        let at = |p: f64| speeds[((speeds.len() - 1) as f64 * p).round() as usize];
        Some(Speed {
            low: at(0.1),
            median: at(0.5),
            high: at(0.9),
        })
    }
}

impl Drop for HostSpeed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs the probe loop once: rounds per CPU microsecond of this thread.
fn sample() -> Option<f64> {
    let before = thread_cpu()?;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..ROUNDS {
        // xorshift64: a dependent chain the compiler cannot fold away.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = std::hint::black_box(x);
    }
    let spent = thread_cpu()?.checked_sub(before)?;
    (!spent.is_zero()).then(|| ROUNDS as f64 / (spent.as_secs_f64() * 1e6))
}

/// CPU time of the calling thread so far.
fn thread_cpu() -> Option<Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    (r == 0).then(|| Duration::new(now.tv_sec as u64, now.tv_nsec as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_a_window() {
        let probe = HostSpeed::start();
        let from = Instant::now();
        std::thread::sleep(INTERVAL * 6);
        let speed = probe.between(from, Instant::now()).expect("samples");
        assert!(speed.low > 0.0 && speed.low <= speed.median && speed.median <= speed.high);
        assert!(probe.between(from, from).is_none(), "an empty window");
    }
}

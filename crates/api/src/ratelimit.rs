//! Per (account, action) request rate limits.
//!
//! The documented limit of CreateBackupDownloadTask is "20 requests per
//! second". A token bucket with a full burst lets nearly twice that through
//! in one second (a full bucket, then a second's refill), so this is a
//! sliding log instead: each key keeps the instants of its last `limit`
//! accepted requests, and a request is accepted only when fewer than `limit`
//! of them lie within the last second. No window of one second, wherever it
//! starts, ever holds more than `limit` accepted requests, and a burst of
//! `limit` at once is still accepted. Memory is `limit` instants per key that
//! was active in the last second; idle keys are swept.
//!
//! On SQLite (one node) the log lives in this process. When the metadata
//! store is PostgreSQL, several nodes may serve one account, so the log is
//! kept in the database and shared by all of them (one round trip per
//! request, see `mongobak_catalog::ratelimit`); if the database cannot be
//! asked, this node's own log decides rather than refusing every call.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mongobak_catalog::Catalog;

/// The window the limits are counted over.
const WINDOW: Duration = Duration::from_secs(1);

/// Sweep idle keys once the map has grown past this many entries.
const SWEEP_THRESHOLD: usize = 4096;

/// Limits per action and the default for the rest.
#[derive(Debug, Clone)]
pub struct RateLimits {
    /// Requests per second for actions without their own limit.
    pub default_per_second: u32,
    /// Requests per second for named actions.
    pub per_action: HashMap<String, u32>,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            default_per_second: 20,
            per_action: HashMap::new(),
        }
    }
}

impl RateLimits {
    fn limit_for(&self, action: &str) -> u32 {
        self.per_action
            .get(action)
            .copied()
            .unwrap_or(self.default_per_second)
    }
}

/// A sliding-log limiter keyed by (owner uin, action).
#[derive(Debug)]
pub struct RateLimiter {
    limits: RateLimits,
    // A std mutex: the critical section is a few deque operations and never
    // awaits, so it is cheaper than an async lock.
    logs: Mutex<HashMap<(String, String), VecDeque<Instant>>>,
}

impl RateLimiter {
    /// A limiter with `limits`.
    pub fn new(limits: RateLimits) -> Self {
        RateLimiter {
            limits,
            logs: Mutex::new(HashMap::new()),
        }
    }

    /// Records a request of `uin` for `action` and says whether it is within
    /// the limit: in the cluster-wide log when `catalog` keeps one, else in
    /// this process's. Refused requests are not recorded.
    pub async fn acquire(&self, catalog: &Catalog, uin: &str, action: &str) -> bool {
        let limit = self.limits.limit_for(action);
        if limit == 0 {
            return false;
        }
        match catalog
            .rate_limits()
            .take_token(&format!("{uin}/{action}"), limit, WINDOW)
            .await
        {
            Ok(Some(taken)) => taken,
            Ok(None) => self.try_acquire(uin, action, Instant::now()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the shared rate limits; this node's own limit applies");
                self.try_acquire(uin, action, Instant::now())
            }
        }
    }

    /// Records a request of `uin` for `action` at `now` in this process's
    /// log and says whether it is within the limit. Refused requests are
    /// not recorded.
    pub fn try_acquire(&self, uin: &str, action: &str, now: Instant) -> bool {
        let limit = self.limits.limit_for(action) as usize;
        if limit == 0 {
            return false;
        }
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        if logs.len() > SWEEP_THRESHOLD {
            logs.retain(|_, log| {
                log.back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < WINDOW)
            });
        }
        let log = logs
            .entry((uin.to_string(), action.to_string()))
            .or_default();
        while log
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
        {
            log.pop_front();
        }
        if log.len() >= limit {
            return false;
        }
        log.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_full_burst_then_nothing_until_the_window_moves() {
        let limiter = RateLimiter::new(RateLimits::default());
        let t0 = Instant::now();
        let accepted = (0..60)
            .filter(|_| limiter.try_acquire("1", "A", t0))
            .count();
        assert_eq!(accepted, 20);
        assert!(!limiter.try_acquire("1", "A", t0 + Duration::from_millis(999)));
        assert!(limiter.try_acquire("1", "A", t0 + WINDOW));
        // Other accounts and actions have their own budget.
        assert!(limiter.try_acquire("2", "A", t0));
        assert!(limiter.try_acquire("1", "B", t0));
    }

    #[test]
    fn per_action_limits() {
        let mut limits = RateLimits::default();
        limits.per_action.insert("DescribeDBBackups".into(), 150);
        limits.per_action.insert("Off".into(), 0);
        let limiter = RateLimiter::new(limits);
        let t0 = Instant::now();
        assert_eq!(
            (0..200)
                .filter(|_| limiter.try_acquire("1", "DescribeDBBackups", t0))
                .count(),
            150
        );
        assert!(!limiter.try_acquire("1", "Off", t0));
    }

    proptest! {
        /// Whatever the arrival pattern, no one-second window holds more
        /// accepted requests than the limit.
        #[test]
        fn no_window_exceeds_the_limit(gaps in proptest::collection::vec(0u64..120, 1..400)) {
            let limiter = RateLimiter::new(RateLimits::default());
            let t0 = Instant::now();
            let mut now = t0;
            let mut accepted = Vec::new();
            for gap in gaps {
                now += Duration::from_millis(gap);
                if limiter.try_acquire("1", "A", now) {
                    accepted.push(now);
                }
            }
            for (i, start) in accepted.iter().enumerate() {
                let in_window = accepted[i..].iter().take_while(|t| t.duration_since(*start) < WINDOW).count();
                prop_assert!(in_window <= 20, "{in_window} accepted in one window");
            }
        }
    }
}

//! Waiting for something to happen: a condition looked at again and again
//! until it holds or a deadline passes, never a fixed pause that hopes it
//! is long enough.

use std::time::{Duration, Instant};

/// Pause between two looks at a condition: at most ten a second, half the
/// API's default limit of 20 requests per second per action, so a look
/// that asks the server is never refused, even when a loaded machine
/// bunches the requests up.
pub const POLL: Duration = Duration::from_millis(100);

/// Looks at `probe` every [`POLL`] until it gives a value, and returns it;
/// panics, naming `what`, when `limit` passes first.
pub async fn eventually<T>(
    limit: Duration,
    what: &str,
    probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    eventually_every(limit, POLL, what, probe).await
}

/// As [`eventually`], looking every `pause`: for a condition that holds
/// only a short while, such as work caught in the middle.
pub async fn eventually_every<T>(
    limit: Duration,
    pause: Duration,
    what: &str,
    probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    match poll(limit, pause, probe).await {
        Some(value) => value,
        None => panic!("{what}: not within {limit:?}"),
    }
}

/// Looks at `probe` every [`POLL`] until it gives a value; `None` when
/// `limit` passes first.
pub async fn within<T>(limit: Duration, probe: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    poll(limit, POLL, probe).await
}

async fn poll<T>(
    limit: Duration,
    pause: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(pause).await;
    }
}

/// A time limit for a loop that waits on a condition while it does other
/// things between its looks.
pub struct Deadline {
    what: String,
    limit: Duration,
    at: Instant,
}

impl Deadline {
    /// `limit` from now, for waiting on `what`.
    pub fn after(what: &str, limit: Duration) -> Self {
        Deadline {
            what: what.to_string(),
            limit,
            at: Instant::now() + limit,
        }
    }

    /// Panics once the limit has passed; otherwise pauses before the next
    /// look.
    pub async fn tick(&self) {
        assert!(
            Instant::now() < self.at,
            "{}: not within {:?}",
            self.what,
            self.limit
        );
        tokio::time::sleep(POLL).await;
    }
}

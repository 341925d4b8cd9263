//! Cluster-wide rate limits on PostgreSQL: every node of a cluster shares
//! one sliding log per (account, action) key, kept in an unlogged table and
//! taken in one round trip by the `mongobak_take_rate_token` function (see
//! the PostgreSQL migration `0005_rate_limits.sql`).
//!
//! On SQLite (one node) there is nothing to share: the API's in-process
//! limiter is used and [`RateLimitStore::take_token`] answers `None`.

use std::time::Duration;

use crate::store::{CatalogError, Engine, RateLimitStore};

impl RateLimitStore<'_> {
    /// Takes a token of `key` if fewer than `limit` were taken in the last
    /// `window`, across every node sharing this database. `None` when the
    /// engine keeps no shared limits (SQLite).
    pub async fn take_token(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<Option<bool>, CatalogError> {
        if self.catalog.engine() != Engine::Postgres {
            return Ok(None);
        }
        let taken: bool = sqlx::query_scalar("SELECT mongobak_take_rate_token($1, $2, $3)")
            .bind(key)
            .bind(i64::from(limit))
            .bind(window.as_micros() as i64)
            .fetch_one(self.catalog.pool())
            .await?;
        Ok(Some(taken))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestCatalog;

    /// Two nodes (two pools on one database) and 60 requests at once: 20
    /// accepted in all, and the window moves on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_limit_holds_across_nodes() {
        let first = TestCatalog::new(Engine::Postgres).await;
        let second = first.reopen().await;
        let window = Duration::from_secs(2);
        let requests = (0..60).map(|i| {
            let node = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            tokio::spawn(async move {
                node.rate_limits()
                    .take_token("100/CreateBackupDownloadTask", 20, window)
                    .await
            })
        });
        let mut accepted = 0;
        for request in requests.collect::<Vec<_>>() {
            if request.await.unwrap().unwrap() == Some(true) {
                accepted += 1;
            }
        }
        assert_eq!(accepted, 20);
        // Another key has its own budget.
        assert_eq!(
            first
                .rate_limits()
                .take_token("100/DescribeDBBackups", 20, window)
                .await
                .unwrap(),
            Some(true)
        );
        tokio::time::sleep(window).await;
        assert_eq!(
            second
                .rate_limits()
                .take_token("100/CreateBackupDownloadTask", 20, window)
                .await
                .unwrap(),
            Some(true)
        );
    }

    #[tokio::test]
    async fn sqlite_keeps_no_shared_limits() {
        let c = TestCatalog::new(Engine::Sqlite).await;
        assert_eq!(
            c.rate_limits()
                .take_token("k", 1, Duration::from_secs(1))
                .await
                .unwrap(),
            None
        );
    }
}

//! The cluster-wide memory of used request signatures, on PostgreSQL:
//! every node of a cluster refuses a signature another node already
//! accepted (kept in an unlogged table and taken in one round trip by the
//! `mongobak_remember_signature` function, see the PostgreSQL migration
//! `0008_seen_signatures.sql`).
//!
//! On SQLite (one node) there is nothing to share: the API keeps the memory
//! in its process and [`SignatureStore::remember`] answers `None`.

use crate::store::{CatalogError, Engine, SignatureStore};

/// What the memory knew of a signature when a use of it was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureUse {
    /// Not seen before (or its earlier entry had expired).
    First,
    /// Seen before, first used for this action.
    SeenWith(String),
}

impl SignatureStore<'_> {
    /// Records a use of the signature `fingerprint` for `action` at `now`
    /// (unix seconds), remembered until `expires_at`, across every node
    /// sharing this database. `None` when the engine keeps no shared memory
    /// (SQLite).
    pub async fn remember(
        &self,
        fingerprint: &[u8],
        action: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<Option<SignatureUse>, CatalogError> {
        if self.catalog.engine() != Engine::Postgres {
            return Ok(None);
        }
        let first: Option<String> =
            sqlx::query_scalar("SELECT mongobak_remember_signature($1, $2, $3, $4)")
                .bind(fingerprint)
                .bind(action)
                .bind(expires_at)
                .bind(now)
                .fetch_one(self.catalog.pool())
                .await?;
        Ok(Some(
            first.map_or(SignatureUse::First, SignatureUse::SeenWith),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestCatalog;

    /// Two nodes (two pools on one database) and the same signature used
    /// at once from both: exactly one first use; the entry expires.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_first_use_across_nodes() {
        let first = TestCatalog::new(Engine::Postgres).await;
        let second = first.reopen().await;
        let fingerprint = b"a signature".to_vec();
        let uses = (0..20).map(|i| {
            let node = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            let fingerprint = fingerprint.clone();
            tokio::spawn(async move {
                node.signatures()
                    .remember(&fingerprint, "DescribeDBBackups", 1301, 1000)
                    .await
                    .unwrap()
                    .unwrap()
            })
        });
        let mut firsts = 0;
        for answer in uses.collect::<Vec<_>>() {
            match answer.await.unwrap() {
                SignatureUse::First => firsts += 1,
                SignatureUse::SeenWith(action) => assert_eq!(action, "DescribeDBBackups"),
            }
        }
        assert_eq!(firsts, 1);
        // Re-aimed: the memory answers the first action.
        assert_eq!(
            second
                .signatures()
                .remember(&fingerprint, "CreateBackupDBInstance", 1301, 1300)
                .await
                .unwrap(),
            Some(SignatureUse::SeenWith("DescribeDBBackups".into()))
        );
        // Once expired, a use is a first use again.
        assert_eq!(
            first
                .signatures()
                .remember(&fingerprint, "CreateBackupDBInstance", 1602, 1301)
                .await
                .unwrap(),
            Some(SignatureUse::First)
        );
    }

    /// Expired entries are forgotten by later calls, a few at a time.
    #[tokio::test]
    async fn expired_entries_are_forgotten() {
        let catalog = TestCatalog::new(Engine::Postgres).await;
        for i in 0..40u32 {
            catalog
                .signatures()
                .remember(&i.to_le_bytes(), "DescribeDBBackups", 100, 0)
                .await
                .unwrap();
        }
        for i in 0..3u32 {
            catalog
                .signatures()
                .remember(&(1000 + i).to_le_bytes(), "DescribeDBBackups", 500, 200)
                .await
                .unwrap();
        }
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM seen_signatures")
            .fetch_one(catalog.pool())
            .await
            .unwrap();
        // 40 expired, 3 calls forgot 16 each (all 40), 3 live.
        assert_eq!(left, 3);
    }

    #[tokio::test]
    async fn sqlite_keeps_no_shared_memory() {
        let c = TestCatalog::new(Engine::Sqlite).await;
        assert_eq!(
            c.signatures()
                .remember(b"x", "DescribeDBBackups", 1, 0)
                .await
                .unwrap(),
            None
        );
    }
}

//! Singleton duties: work that exactly one node of a cluster does at a
//! time (starting scheduled backups, the janitor's rounds). A duty is a
//! lease in the metadata store: the holder renews it on every round; once
//! it lapses (the holder died or lost the database), the next node to ask
//! takes it over. On SQLite there is one node, which always holds it.

use jiff::{SignedDuration, Timestamp};

use crate::store::{CatalogError, DutyStore};

impl DutyStore<'_> {
    /// Takes or renews `duty` for `node` until `now + ttl`. True when `node`
    /// holds it: it was free, its lease had expired, or `node` held it.
    pub async fn hold(
        &self,
        duty: &str,
        node: &str,
        now: Timestamp,
        ttl: SignedDuration,
    ) -> Result<bool, CatalogError> {
        let holder: Option<String> = sqlx::query_scalar(
            "INSERT INTO duty_leases (duty, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (duty) DO UPDATE SET holder = $2, expires_at = $3 \
             WHERE duty_leases.holder = $2 OR duty_leases.expires_at < $4 \
             RETURNING holder",
        )
        .bind(duty)
        .bind(node)
        .bind((now + ttl).as_second())
        .bind(now.as_second())
        .fetch_optional(self.catalog.pool())
        .await?;
        Ok(holder.is_some())
    }

    /// Gives `duty` up if `node` holds it (at a clean stop), so another
    /// node need not wait for the lease to lapse.
    pub async fn release(&self, duty: &str, node: &str) -> Result<(), CatalogError> {
        sqlx::query("DELETE FROM duty_leases WHERE duty = $1 AND holder = $2")
            .bind(duty)
            .bind(node)
            .execute(self.catalog.pool())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestCatalog;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    crate::testing::on_each_engine!(one_holder_at_a_time_and_take_over_after_expiry);

    async fn one_holder_at_a_time_and_take_over_after_expiry(c: TestCatalog) {
        let other = c.reopen().await;
        let ttl = SignedDuration::from_secs(60);
        assert!(c
            .duties()
            .hold("scheduler", "a", t(1_000), ttl)
            .await
            .unwrap());
        assert!(!other
            .duties()
            .hold("scheduler", "b", t(1_010), ttl)
            .await
            .unwrap());
        // The holder renews.
        assert!(c
            .duties()
            .hold("scheduler", "a", t(1_050), ttl)
            .await
            .unwrap());
        assert!(!other
            .duties()
            .hold("scheduler", "b", t(1_100), ttl)
            .await
            .unwrap());
        // Another duty is free.
        assert!(other
            .duties()
            .hold("janitor", "b", t(1_100), ttl)
            .await
            .unwrap());
        // "a" stops renewing: "b" takes over once the lease lapsed.
        assert!(other
            .duties()
            .hold("scheduler", "b", t(1_111), ttl)
            .await
            .unwrap());
        assert!(!c
            .duties()
            .hold("scheduler", "a", t(1_112), ttl)
            .await
            .unwrap());
        // A clean stop gives the duty up at once.
        other.duties().release("scheduler", "b").await.unwrap();
        assert!(c
            .duties()
            .hold("scheduler", "a", t(1_113), ttl)
            .await
            .unwrap());
        other.duties().release("scheduler", "b").await.unwrap();
        assert!(!other
            .duties()
            .hold("scheduler", "b", t(1_114), ttl)
            .await
            .unwrap());
    }
}

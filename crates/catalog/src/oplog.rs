//! Continuous oplog backup: how far each replica set's oplog is saved, the
//! slices that hold it, and the gaps where it was lost.
//!
//! A tailer (one per replica set in the whole cluster, a leased duty) reads
//! the source's oplog and seals what it read into slices in the blob store.
//! The catalog keeps the rules that make the saved oplog trustworthy:
//! * the position of a replica set only moves by [`OplogStore::seal`], after
//!   the slice that reaches it is durable, and only for the node that holds
//!   the tailer's duty;
//! * a slice starts exactly where the position stood (`after`), so slices
//!   never overlap (no entry is kept twice) and never leave a hole;
//! * a stretch that was lost is recorded as a gap, never papered over.

use jiff::Timestamp;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::instance::ReplicaSetId;
use crate::store::{time_column, CatalogError, FromRow, OplogStore};

/// A position in an oplog: a BSON timestamp, seconds and an increment
/// within that second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct OplogTs {
    /// Unix seconds.
    pub seconds: u32,
    /// Order within the second.
    pub increment: u32,
}

impl OplogTs {
    /// As stored: seconds << 32 | increment, which orders as the
    /// timestamps do.
    pub fn to_i64(self) -> i64 {
        (i64::from(self.seconds) << 32) | i64::from(self.increment)
    }

    /// The position stored as `value`.
    pub fn from_i64(value: i64) -> Self {
        OplogTs {
            seconds: (value >> 32) as u32,
            increment: value as u32,
        }
    }

    /// The last position of second `seconds`: every entry in or before it.
    pub fn end_of_second(seconds: u32) -> Self {
        OplogTs {
            seconds,
            increment: u32::MAX,
        }
    }
}

impl std::fmt::Display for OplogTs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.seconds, self.increment)
    }
}

/// How far a replica set's oplog is saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OplogPosition {
    /// The replica set.
    pub replica_set_id: ReplicaSetId,
    /// Every entry up to here is in a slice (or was a no-op).
    pub sealed: OplogTs,
    /// When the entry at `sealed` was written on the source.
    pub sealed_wall: Timestamp,
    /// When the position last moved.
    pub updated_at: Timestamp,
    /// Where the kept chain of slices begins: the position the first
    /// tailer began at, raised when old slices are deleted.
    pub kept_from: OplogTs,
}

/// What a tailer hands over to move a position: a slice it stored, or a
/// stretch of no-op entries only, which needs no slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSlice {
    /// The instance.
    pub instance_id: String,
    /// The replica set.
    pub replica_set_id: ReplicaSetId,
    /// Where the position stood: the slice holds entries after it.
    pub after: OplogTs,
    /// Its last entry.
    pub last: OplogTs,
    /// When `last` was written on the source.
    pub last_wall: Timestamp,
    /// The object, or `None` when the stretch held no-op entries only.
    pub object: Option<SliceObject>,
}

/// The stored object of a slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceObject {
    /// Path in the blob store.
    pub path: String,
    /// Entries in it.
    pub entries: u64,
    /// Their BSON size.
    pub raw_bytes: u64,
    /// The object's size.
    pub stored_bytes: u64,
    /// SHA-256 of the object, hex.
    pub sha256: String,
}

/// A sealed slice: the entries with `after < ts <= last` of a replica set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OplogSlice {
    /// Row ID.
    pub id: i64,
    /// The instance.
    pub instance_id: String,
    /// The replica set.
    pub replica_set_id: ReplicaSetId,
    /// Entries after this position.
    pub after: OplogTs,
    /// Up to and including this one.
    pub last: OplogTs,
    /// When `last` was written on the source.
    pub last_wall: Timestamp,
    /// The object.
    pub object: SliceObject,
    /// When it was sealed.
    pub created_at: Timestamp,
}

/// A stretch of a replica set's oplog that was lost: no time strictly
/// between `from` and `to` can be restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OplogGap {
    /// The replica set.
    pub replica_set_id: ReplicaSetId,
    /// The last saved position before the loss.
    pub from: OplogTs,
    /// Where saving started again.
    pub to: OplogTs,
    /// When the loss was found.
    pub detected_at: Timestamp,
}

/// The lease a tailer holds: its duty's name and its node.
#[derive(Debug, Clone, Copy)]
pub struct TailerLease<'a> {
    /// The duty (one per replica set).
    pub duty: &'a str,
    /// The node holding it.
    pub node: &'a str,
}

impl OplogStore<'_> {
    /// How far the replica set's oplog is saved; `None` before its first
    /// tailer started.
    pub async fn position(
        &self,
        replica_set_id: &ReplicaSetId,
    ) -> Result<Option<OplogPosition>, CatalogError> {
        self.catalog
            .fetch_optional(
                sqlx::query(
                    "SELECT replica_set_id, sealed_ts, sealed_wall, updated_at, \
                     COALESCE(kept_from_ts, sealed_ts) AS kept_from_ts \
                     FROM oplog_positions WHERE replica_set_id = $1",
                )
                .bind(replica_set_id.as_str()),
            )
            .await
    }

    /// The positions of every replica set with continuous oplog backup,
    /// by replica set.
    pub async fn positions(&self) -> Result<Vec<OplogPosition>, CatalogError> {
        self.catalog
            .fetch_all(sqlx::query(
                "SELECT replica_set_id, sealed_ts, sealed_wall, updated_at, \
                 COALESCE(kept_from_ts, sealed_ts) AS kept_from_ts \
                 FROM oplog_positions ORDER BY replica_set_id",
            ))
            .await
    }

    /// The position of the replica set, set to `start` (written at
    /// `start_wall` on the source) if it had none: where its first tailer
    /// begins.
    pub async fn begin(
        &self,
        instance_id: &str,
        replica_set_id: &ReplicaSetId,
        start: OplogTs,
        start_wall: Timestamp,
        now: Timestamp,
    ) -> Result<OplogPosition, CatalogError> {
        sqlx::query(
            "INSERT INTO oplog_positions (replica_set_id, instance_id, sealed_ts, sealed_wall, \
             updated_at, kept_from_ts) VALUES ($1, $2, $3, $4, $5, $3) \
             ON CONFLICT (replica_set_id) DO NOTHING",
        )
        .bind(replica_set_id.as_str())
        .bind(instance_id)
        .bind(start.to_i64())
        .bind(start_wall.as_second())
        .bind(now.as_second())
        .execute(self.catalog.pool())
        .await?;
        self.position(replica_set_id)
            .await?
            .ok_or_else(|| CatalogError::Corrupt {
                what: format!("oplog position of {replica_set_id}"),
                detail: "missing right after it was written".into(),
            })
    }

    /// Moves the position from `slice.after` to `slice.last` and records the
    /// slice's object, in one transaction. False, with nothing changed, when
    /// `lease` is no longer held at `now` or the position is no longer at
    /// `slice.after` (another tailer moved it): the caller stops tailing.
    pub async fn seal(
        &self,
        slice: &NewSlice,
        lease: TailerLease<'_>,
        now: Timestamp,
    ) -> Result<bool, CatalogError> {
        if slice.last <= slice.after {
            return Ok(false);
        }
        let mut tx = self.catalog.begin_write().await?;
        let moved = move_position(
            &mut tx,
            lease,
            &slice.replica_set_id,
            slice.after,
            (slice.last, slice.last_wall),
            now,
        )
        .await?;
        if !moved {
            return Ok(false);
        }
        if let Some(object) = &slice.object {
            sqlx::query(
                "INSERT INTO oplog_slices (instance_id, replica_set_id, after_ts, last_ts, \
                 last_wall, entries, raw_bytes, stored_bytes, path, sha256, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&slice.instance_id)
            .bind(slice.replica_set_id.as_str())
            .bind(slice.after.to_i64())
            .bind(slice.last.to_i64())
            .bind(slice.last_wall.as_second())
            .bind(object.entries as i64)
            .bind(object.raw_bytes as i64)
            .bind(object.stored_bytes as i64)
            .bind(&object.path)
            .bind(&object.sha256)
            .bind(now.as_second())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Records that the oplog after `position` was lost, and moves the
    /// position on to `resume` (written at `resume_wall`), where saving
    /// starts again. False when `lease` is not held or the position moved.
    pub async fn record_gap(
        &self,
        position: &OplogPosition,
        instance_id: &str,
        resume: OplogTs,
        resume_wall: Timestamp,
        lease: TailerLease<'_>,
        now: Timestamp,
    ) -> Result<bool, CatalogError> {
        let mut tx = self.catalog.begin_write().await?;
        let moved = move_position(
            &mut tx,
            lease,
            &position.replica_set_id,
            position.sealed,
            (resume, resume_wall),
            now,
        )
        .await?;
        if !moved {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO oplog_gaps (instance_id, replica_set_id, from_ts, to_ts, detected_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(instance_id)
        .bind(position.replica_set_id.as_str())
        .bind(position.sealed.to_i64())
        .bind(resume.to_i64())
        .bind(now.as_second())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The slices of the replica set holding entries after `after` up to
    /// and including `upto`, in order.
    pub async fn slices(
        &self,
        replica_set_id: &ReplicaSetId,
        after: OplogTs,
        upto: OplogTs,
    ) -> Result<Vec<OplogSlice>, CatalogError> {
        self.catalog
            .fetch_all(
                sqlx::query(
                    "SELECT id, instance_id, replica_set_id, after_ts, last_ts, last_wall, \
                     entries, raw_bytes, stored_bytes, path, sha256, created_at \
                     FROM oplog_slices WHERE replica_set_id = $1 AND last_ts > $2 \
                     AND after_ts < $3 ORDER BY after_ts",
                )
                .bind(replica_set_id.as_str())
                .bind(after.to_i64())
                .bind(upto.to_i64()),
            )
            .await
    }

    /// The gaps of the replica set, oldest first.
    pub async fn gaps(&self, replica_set_id: &ReplicaSetId) -> Result<Vec<OplogGap>, CatalogError> {
        self.catalog
            .fetch_all(
                sqlx::query(
                    "SELECT replica_set_id, from_ts, to_ts, detected_at FROM oplog_gaps \
                     WHERE replica_set_id = $1 ORDER BY from_ts",
                )
                .bind(replica_set_id.as_str()),
            )
            .await
    }
}

/// Within `tx`, moves the replica set's position from `from` to `to` (an
/// oplog position and when it was written) if `lease` is held at `now` and
/// the position still stands at `from`; false, with nothing changed,
/// otherwise.
async fn move_position(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    lease: TailerLease<'_>,
    replica_set_id: &ReplicaSetId,
    from: OplogTs,
    to: (OplogTs, Timestamp),
    now: Timestamp,
) -> Result<bool, CatalogError> {
    let held: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM duty_leases WHERE duty = $1 AND holder = $2 AND expires_at >= $3",
    )
    .bind(lease.duty)
    .bind(lease.node)
    .bind(now.as_second())
    .fetch_optional(&mut **tx)
    .await?;
    if held.is_none() {
        return Ok(false);
    }
    let moved = sqlx::query(
        "UPDATE oplog_positions SET sealed_ts = $3, sealed_wall = $4, updated_at = $5 \
         WHERE replica_set_id = $1 AND sealed_ts = $2",
    )
    .bind(replica_set_id.as_str())
    .bind(from.to_i64())
    .bind(to.0.to_i64())
    .bind(to.1.as_second())
    .bind(now.as_second())
    .execute(&mut **tx)
    .await?;
    Ok(moved.rows_affected() == 1)
}

fn replica_set_column(row: &AnyRow, what: &str) -> Result<ReplicaSetId, CatalogError> {
    let text: String = row.try_get("replica_set_id")?;
    ReplicaSetId::parse(&text).ok_or_else(|| CatalogError::Corrupt {
        what: what.to_string(),
        detail: format!("malformed replica set ID {text:?}"),
    })
}

fn required_time(row: &AnyRow, column: &str, what: &str) -> Result<Timestamp, CatalogError> {
    time_column(row, column, what)?.ok_or_else(|| CatalogError::Corrupt {
        what: what.to_string(),
        detail: format!("{column} is missing"),
    })
}

impl FromRow for OplogPosition {
    fn from_row(row: &AnyRow) -> Result<Self, CatalogError> {
        let what = "an oplog position";
        Ok(OplogPosition {
            replica_set_id: replica_set_column(row, what)?,
            sealed: OplogTs::from_i64(row.try_get("sealed_ts")?),
            sealed_wall: required_time(row, "sealed_wall", what)?,
            updated_at: required_time(row, "updated_at", what)?,
            kept_from: OplogTs::from_i64(row.try_get("kept_from_ts")?),
        })
    }
}

impl FromRow for OplogSlice {
    fn from_row(row: &AnyRow) -> Result<Self, CatalogError> {
        let id: i64 = row.try_get("id")?;
        let what = format!("oplog slice {id}");
        Ok(OplogSlice {
            id,
            instance_id: row.try_get("instance_id")?,
            replica_set_id: replica_set_column(row, &what)?,
            after: OplogTs::from_i64(row.try_get("after_ts")?),
            last: OplogTs::from_i64(row.try_get("last_ts")?),
            last_wall: required_time(row, "last_wall", &what)?,
            object: SliceObject {
                path: row.try_get("path")?,
                entries: row.try_get::<i64, _>("entries")? as u64,
                raw_bytes: row.try_get::<i64, _>("raw_bytes")? as u64,
                stored_bytes: row.try_get::<i64, _>("stored_bytes")? as u64,
                sha256: row.try_get("sha256")?,
            },
            created_at: required_time(row, "created_at", &what)?,
        })
    }
}

impl FromRow for OplogGap {
    fn from_row(row: &AnyRow) -> Result<Self, CatalogError> {
        let what = "an oplog gap";
        Ok(OplogGap {
            replica_set_id: replica_set_column(row, what)?,
            from: OplogTs::from_i64(row.try_get("from_ts")?),
            to: OplogTs::from_i64(row.try_get("to_ts")?),
            detected_at: required_time(row, "detected_at", what)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::*;
    use crate::testing::TestCatalog;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn ts(seconds: u32, increment: u32) -> OplogTs {
        OplogTs { seconds, increment }
    }

    fn set() -> ReplicaSetId {
        ReplicaSetId::parse("cmgo-aaaaaaaa_0").unwrap()
    }

    fn slice(after: OplogTs, last: OplogTs, object: bool) -> NewSlice {
        NewSlice {
            instance_id: "cmgo-aaaaaaaa".into(),
            replica_set_id: set(),
            after,
            last,
            last_wall: t(i64::from(last.seconds)),
            object: object.then(|| SliceObject {
                path: format!("oplog/cmgo-aaaaaaaa/cmgo-aaaaaaaa_0/{after}-{last}"),
                entries: 3,
                raw_bytes: 300,
                stored_bytes: 100,
                sha256: "00".repeat(32),
            }),
        }
    }

    const DUTY: &str = "oplog:cmgo-aaaaaaaa_0";

    #[test]
    fn timestamps_order_as_stored() {
        let a = ts(1_700_000_000, 5);
        let b = ts(1_700_000_000, 6);
        let c = ts(1_700_000_001, 1);
        assert!(a.to_i64() < b.to_i64() && b.to_i64() < c.to_i64());
        assert_eq!(OplogTs::from_i64(c.to_i64()), c);
        assert!(OplogTs::end_of_second(1_700_000_000) < c);
    }

    crate::testing::on_each_engine!(
        positions_move_only_by_contiguous_slices_under_the_lease,
        gaps_are_recorded_and_move_the_position
    );

    async fn positions_move_only_by_contiguous_slices_under_the_lease(c: TestCatalog) {
        let oplog = c.oplog();
        assert_eq!(oplog.position(&set()).await.unwrap(), None);
        let start = ts(1_000, 1);
        let begun = oplog
            .begin("cmgo-aaaaaaaa", &set(), start, t(1_000), t(1_000))
            .await
            .unwrap();
        assert_eq!(begun.sealed, start);
        // Beginning again keeps the saved position.
        let again = oplog
            .begin("cmgo-aaaaaaaa", &set(), ts(2_000, 1), t(2_000), t(2_000))
            .await
            .unwrap();
        assert_eq!(again.sealed, start);

        let lease = TailerLease {
            duty: DUTY,
            node: "n1",
        };
        // Without the lease nothing moves.
        assert!(!oplog
            .seal(&slice(start, ts(1_001, 3), true), lease, t(1_002))
            .await
            .unwrap());
        let ttl = SignedDuration::from_secs(15);
        assert!(c.duties().hold(DUTY, "n1", t(1_002), ttl).await.unwrap());
        assert!(oplog
            .seal(&slice(start, ts(1_001, 3), true), lease, t(1_002))
            .await
            .unwrap());
        // A slice that does not start where the position stands is refused:
        // sealing the same stretch twice keeps its entries once.
        assert!(!oplog
            .seal(&slice(start, ts(1_001, 3), true), lease, t(1_003))
            .await
            .unwrap());
        // A stretch of no-ops moves the position without an object.
        assert!(oplog
            .seal(&slice(ts(1_001, 3), ts(1_011, 1), false), lease, t(1_012))
            .await
            .unwrap());
        assert!(oplog
            .seal(&slice(ts(1_011, 1), ts(1_012, 9), true), lease, t(1_013))
            .await
            .unwrap());
        let position = oplog.position(&set()).await.unwrap().unwrap();
        assert_eq!(position.sealed, ts(1_012, 9));
        assert_eq!(position.sealed_wall, t(1_012));

        let slices = oplog
            .slices(&set(), OplogTs::default(), ts(2_000, 0))
            .await
            .unwrap();
        let ranges: Vec<_> = slices.iter().map(|s| (s.after, s.last)).collect();
        assert_eq!(
            ranges,
            vec![(start, ts(1_001, 3)), (ts(1_011, 1), ts(1_012, 9))]
        );
        assert_eq!(slices[0].object.entries, 3);
        // Only the slices that hold entries of the range asked for.
        let later = oplog
            .slices(&set(), ts(1_005, 0), ts(2_000, 0))
            .await
            .unwrap();
        assert_eq!(later.len(), 1);

        // Another node takes the duty over once the lease lapsed; the old
        // holder can no longer seal.
        assert!(c.duties().hold(DUTY, "n2", t(1_030), ttl).await.unwrap());
        assert!(!oplog
            .seal(&slice(ts(1_012, 9), ts(1_020, 1), true), lease, t(1_030))
            .await
            .unwrap());
        let taken = TailerLease {
            duty: DUTY,
            node: "n2",
        };
        assert!(oplog
            .seal(&slice(ts(1_012, 9), ts(1_020, 1), true), taken, t(1_030))
            .await
            .unwrap());
    }

    async fn gaps_are_recorded_and_move_the_position(c: TestCatalog) {
        let oplog = c.oplog();
        let ttl = SignedDuration::from_secs(15);
        assert!(c.duties().hold(DUTY, "n1", t(1_000), ttl).await.unwrap());
        let lease = TailerLease {
            duty: DUTY,
            node: "n1",
        };
        let position = oplog
            .begin("cmgo-aaaaaaaa", &set(), ts(1_000, 1), t(1_000), t(1_000))
            .await
            .unwrap();
        assert!(oplog
            .record_gap(
                &position,
                "cmgo-aaaaaaaa",
                ts(1_500, 1),
                t(1_500),
                lease,
                t(1_001)
            )
            .await
            .unwrap());
        // Recorded once: the position has moved on.
        assert!(!oplog
            .record_gap(
                &position,
                "cmgo-aaaaaaaa",
                ts(1_500, 1),
                t(1_500),
                lease,
                t(1_001)
            )
            .await
            .unwrap());
        let gaps = oplog.gaps(&set()).await.unwrap();
        assert_eq!(gaps.len(), 1);
        assert_eq!((gaps[0].from, gaps[0].to), (ts(1_000, 1), ts(1_500, 1)));
        assert_eq!(
            oplog.position(&set()).await.unwrap().unwrap().sealed,
            ts(1_500, 1)
        );
    }
}

//! The restorable window of point-in-time recovery: which seconds of a
//! replica set, or of a whole instance, can be restored.
//!
//! Restoring second `T` means the state holding every write whose oplog
//! timestamp falls in or before `T` and none after. That takes a base (a
//! succeeded backup whose replica set ends at `E` with `E` in or before
//! `T`) and slices from `E` to the end of `T` with no gap between. So a
//! replica set's saved oplog splits into stretches at its gaps; within a
//! stretch, the window runs from the first base in it to the last second
//! the stretch covers whole. The newest second is restorable only once an
//! entry of a later second is sealed, since more writes of it may come.
//! For a sharded instance, a second is restorable when it is on every
//! shard.

use jiff::Timestamp;

use crate::instance::ReplicaSetId;
use crate::oplog::{OplogGap, OplogPosition, OplogSlice, OplogTs};
use crate::store::{BackupStore, CatalogError, OplogStore};

/// Restorable seconds, `from` to `to` inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestorableSpan {
    /// The first restorable second.
    pub from: Timestamp,
    /// The last restorable second.
    pub to: Timestamp,
}

impl RestorableSpan {
    /// Whether second `at` is in the span.
    pub fn contains(&self, at: Timestamp) -> bool {
        self.from <= at && at <= self.to
    }
}

/// A base for point-in-time restore: a backup and where one of its
/// replica sets ends in the oplog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Base {
    /// The backup (`BackId`).
    pub backup_id: i64,
    /// Its replica set holds every write up to here.
    pub end: OplogTs,
}

/// What can be restored of one replica set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSetWindow {
    /// The replica set.
    pub replica_set_id: ReplicaSetId,
    /// How far its oplog is saved; `None` before its first tailer began.
    pub position: Option<OplogPosition>,
    /// Its gaps, oldest first.
    pub gaps: Vec<OplogGap>,
    /// The backups that can serve as bases, by end.
    pub bases: Vec<Base>,
    /// The restorable seconds, oldest first.
    pub spans: Vec<RestorableSpan>,
}

impl ReplicaSetWindow {
    /// The base to restore second `at` from: the latest one in the same
    /// stretch of saved oplog that ends in or before `at`. `None` when
    /// `at` is outside the window.
    pub fn base_for(&self, at: Timestamp) -> Option<Base> {
        let position = self.position.as_ref()?;
        let target = end_of(at)?;
        let (from, to) = stretches(position.kept_from, position.sealed, &self.gaps)
            .into_iter()
            .find(|(from, to)| *from <= target && target <= *to)?;
        self.bases
            .iter()
            .filter(|base| from <= base.end && base.end <= target && base.end <= to)
            .max_by_key(|base| base.end)
            .copied()
    }
}

/// The last position of second `at`.
fn end_of(at: Timestamp) -> Option<OplogTs> {
    u32::try_from(at.as_second())
        .ok()
        .map(OplogTs::end_of_second)
}

/// The stretches of saved oplog from `kept_from` to `sealed`, cut at the
/// gaps: each `(from, to)` is covered by slices with no hole.
fn stretches(kept_from: OplogTs, sealed: OplogTs, gaps: &[OplogGap]) -> Vec<(OplogTs, OplogTs)> {
    let mut stretches = Vec::new();
    let mut from = kept_from;
    for gap in gaps {
        if gap.to <= from {
            continue;
        }
        if gap.from >= from {
            stretches.push((from, gap.from));
        }
        from = gap.to;
    }
    if sealed >= from {
        stretches.push((from, sealed));
    }
    stretches
}

/// The restorable seconds given the saved oplog and the bases' ends.
fn spans(
    kept_from: OplogTs,
    sealed: OplogTs,
    gaps: &[OplogGap],
    bases: &[Base],
) -> Vec<RestorableSpan> {
    let mut spans = Vec::new();
    for (from, to) in stretches(kept_from, sealed, gaps) {
        let Some(first) = bases
            .iter()
            .filter(|base| from <= base.end && base.end <= to)
            .map(|base| base.end)
            .min()
        else {
            continue;
        };
        // The last second whose every entry is covered.
        let last = if to.increment == u32::MAX {
            i64::from(to.seconds)
        } else {
            i64::from(to.seconds) - 1
        };
        let first = i64::from(first.seconds);
        if first <= last {
            if let (Ok(from), Ok(to)) =
                (Timestamp::from_second(first), Timestamp::from_second(last))
            {
                spans.push(RestorableSpan { from, to });
            }
        }
    }
    spans
}

/// The seconds restorable on every one of `windows` (every shard of an
/// instance), oldest first.
pub fn common_spans(windows: &[ReplicaSetWindow]) -> Vec<RestorableSpan> {
    let Some((first, rest)) = windows.split_first() else {
        return Vec::new();
    };
    rest.iter().fold(first.spans.clone(), |common, window| {
        let mut both = Vec::new();
        for a in &common {
            for b in &window.spans {
                let from = a.from.max(b.from);
                let to = a.to.min(b.to);
                if from <= to {
                    both.push(RestorableSpan { from, to });
                }
            }
        }
        both
    })
}

impl OplogStore<'_> {
    /// What can be restored of the replica set.
    pub async fn window(
        &self,
        replica_set_id: &ReplicaSetId,
    ) -> Result<ReplicaSetWindow, CatalogError> {
        let position = self.position(replica_set_id).await?;
        let gaps = self.gaps(replica_set_id).await?;
        let bases = self.bases(replica_set_id).await?;
        let spans = position.as_ref().map_or_else(Vec::new, |position| {
            spans(position.kept_from, position.sealed, &gaps, &bases)
        });
        Ok(ReplicaSetWindow {
            replica_set_id: replica_set_id.clone(),
            position,
            gaps,
            bases,
            spans,
        })
    }

    /// The seconds every replica set of `instance` can be restored to.
    pub async fn instance_spans(
        &self,
        instance: &crate::Instance,
    ) -> Result<Vec<RestorableSpan>, CatalogError> {
        let mut windows = Vec::new();
        for replica_set_id in instance.replica_set_ids() {
            windows.push(self.window(&replica_set_id).await?);
        }
        Ok(common_spans(&windows))
    }

    /// Stored bytes of the instance's oplog slices.
    pub async fn stored_bytes(&self, instance_id: &str) -> Result<u64, CatalogError> {
        let bytes: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(SUM(stored_bytes) AS BIGINT) FROM oplog_slices WHERE instance_id = $1",
        )
        .bind(instance_id)
        .fetch_one(self.catalog.pool())
        .await?;
        Ok(bytes.unwrap_or(0).max(0) as u64)
    }

    /// The succeeded, kept backups holding the replica set, by end.
    pub async fn bases(&self, replica_set_id: &ReplicaSetId) -> Result<Vec<Base>, CatalogError> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT e.backup_id, e.end_ts FROM backup_oplog_ends e \
             JOIN backups b ON b.id = e.backup_id \
             WHERE e.replica_set_id = $1 AND b.status = $2 ORDER BY e.end_ts",
        )
        .bind(replica_set_id.as_str())
        .bind(crate::BackupStatus::Succeeded.code())
        .fetch_all(self.catalog.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(backup_id, end)| Base {
                backup_id,
                end: OplogTs::from_i64(end),
            })
            .collect())
    }
}

/// Where the slices of a replica set that no restore inside the kept
/// window needs end: slices ending at or before it may go. `horizon` is
/// the oldest second the rule's `OplogExpiredDays` keeps.
///
/// A restore to a second at or after the horizon starts from the latest
/// base at or before that second, so at the earliest from the latest base
/// at or before the horizon: the slices before that base are never read
/// again. Without such a base, no restore reaches back before the horizon
/// at all.
pub fn expiry_cutoff(bases: &[Base], horizon: Timestamp) -> OplogTs {
    let horizon = end_of(horizon).unwrap_or_default();
    bases
        .iter()
        .map(|base| base.end)
        .filter(|end| *end <= horizon)
        .max()
        .unwrap_or(horizon)
}

impl OplogStore<'_> {
    /// Raises where the kept chain of the replica set's slices begins to
    /// `from` (never lowers it): the window no longer offers times before
    /// it. Done before the slices before it are deleted.
    pub async fn keep_from(
        &self,
        replica_set_id: &ReplicaSetId,
        from: OplogTs,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE oplog_positions SET kept_from_ts = $2 \
             WHERE replica_set_id = $1 AND COALESCE(kept_from_ts, sealed_ts) < $2",
        )
        .bind(replica_set_id.as_str())
        .bind(from.to_i64())
        .execute(self.catalog.pool())
        .await?;
        Ok(())
    }

    /// The replica set's slices that end at or before `cutoff`.
    pub async fn slices_ending_by(
        &self,
        replica_set_id: &ReplicaSetId,
        cutoff: OplogTs,
    ) -> Result<Vec<OplogSlice>, CatalogError> {
        self.catalog
            .fetch_all(
                sqlx::query(
                    "SELECT id, instance_id, replica_set_id, after_ts, last_ts, last_wall, \
                     entries, raw_bytes, stored_bytes, path, sha256, created_at \
                     FROM oplog_slices WHERE replica_set_id = $1 AND last_ts <= $2 \
                     ORDER BY after_ts",
                )
                .bind(replica_set_id.as_str())
                .bind(cutoff.to_i64()),
            )
            .await
    }

    /// Forgets slice `id`, whose object is deleted.
    pub async fn forget_slice(&self, id: i64) -> Result<(), CatalogError> {
        sqlx::query("DELETE FROM oplog_slices WHERE id = $1")
            .bind(id)
            .execute(self.catalog.pool())
            .await?;
        Ok(())
    }
}

impl BackupStore<'_> {
    /// Records where each replica set of backup `id` ends in its oplog:
    /// what makes it a base for point-in-time restore. Called before the
    /// backup is marked succeeded.
    pub async fn record_oplog_ends(
        &self,
        id: i64,
        ends: &[(ReplicaSetId, OplogTs)],
    ) -> Result<(), CatalogError> {
        let mut tx = self.catalog.begin_write().await?;
        for (replica_set_id, end) in ends {
            sqlx::query(
                "INSERT INTO backup_oplog_ends (backup_id, replica_set_id, end_ts) \
                 VALUES ($1, $2, $3) ON CONFLICT (backup_id, replica_set_id) DO UPDATE SET end_ts = $3",
            )
            .bind(id)
            .bind(replica_set_id.as_str())
            .bind(end.to_i64())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::*;
    use crate::backup::{BackupSizes, BackupType, NewBackup};
    use crate::oplog::{NewSlice, TailerLease};
    use crate::testing::TestCatalog;

    fn ts(seconds: u32, increment: u32) -> OplogTs {
        OplogTs { seconds, increment }
    }

    fn second(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn span(from: i64, to: i64) -> RestorableSpan {
        RestorableSpan {
            from: second(from),
            to: second(to),
        }
    }

    fn base(backup_id: i64, end: OplogTs) -> Base {
        Base { backup_id, end }
    }

    fn gap(from: OplogTs, to: OplogTs) -> OplogGap {
        OplogGap {
            replica_set_id: ReplicaSetId::parse("cmgo-abcd1234_0").unwrap(),
            from,
            to,
            detected_at: second(0),
        }
    }

    #[test]
    fn the_window_runs_from_the_first_base_to_the_last_whole_second() {
        // No base: nothing to restore from.
        assert_eq!(spans(ts(100, 1), ts(200, 5), &[], &[]), vec![]);
        // A base before the tailer began is no base.
        assert_eq!(
            spans(ts(100, 1), ts(200, 5), &[], &[base(1, ts(90, 1))]),
            vec![]
        );
        // Second 200 may still get writes: 199 is the last.
        assert_eq!(
            spans(
                ts(100, 1),
                ts(200, 5),
                &[],
                &[base(1, ts(120, 3)), base(2, ts(150, 1))]
            ),
            vec![span(120, 199)]
        );
        // A base that ends after the sealed position is not usable yet.
        assert_eq!(
            spans(ts(100, 1), ts(200, 5), &[], &[base(1, ts(201, 1))]),
            vec![]
        );
    }

    #[test]
    fn a_gap_cuts_the_window_and_needs_a_base_after_it() {
        let gaps = [gap(ts(150, 2), ts(170, 4))];
        // Before the gap from the first base; after it, only from the base
        // taken after it.
        assert_eq!(
            spans(
                ts(100, 1),
                ts(300, 1),
                &gaps,
                &[base(1, ts(110, 1)), base(2, ts(180, 9))]
            ),
            vec![span(110, 149), span(180, 299)]
        );
        // Without a base after the gap, times after it cannot be restored.
        assert_eq!(
            spans(ts(100, 1), ts(300, 1), &gaps, &[base(1, ts(110, 1))]),
            vec![span(110, 149)]
        );
        let window = ReplicaSetWindow {
            replica_set_id: ReplicaSetId::parse("cmgo-abcd1234_0").unwrap(),
            position: Some(OplogPosition {
                replica_set_id: ReplicaSetId::parse("cmgo-abcd1234_0").unwrap(),
                sealed: ts(300, 1),
                sealed_wall: second(300),
                updated_at: second(300),
                kept_from: ts(100, 1),
            }),
            gaps: gaps.to_vec(),
            bases: vec![
                base(1, ts(110, 1)),
                base(2, ts(130, 1)),
                base(3, ts(180, 9)),
            ],
            spans: vec![],
        };
        assert_eq!(window.base_for(second(140)), Some(base(2, ts(130, 1))));
        assert_eq!(window.base_for(second(129)), Some(base(1, ts(110, 1))));
        assert_eq!(window.base_for(second(160)), None, "inside the gap");
        assert_eq!(window.base_for(second(250)), Some(base(3, ts(180, 9))));
        assert_eq!(window.base_for(second(300)), None, "not sealed whole");
        assert_eq!(window.base_for(second(105)), None, "before every base");
    }

    #[test]
    fn slices_before_the_last_base_before_the_horizon_expire() {
        let bases = [
            base(1, ts(100, 1)),
            base(2, ts(200, 1)),
            base(3, ts(300, 1)),
        ];
        assert_eq!(expiry_cutoff(&bases, second(250)), ts(200, 1));
        assert_eq!(expiry_cutoff(&bases, second(200)), ts(200, 1));
        // No base before the horizon: what is older than it goes.
        assert_eq!(
            expiry_cutoff(&bases, second(50)),
            OplogTs::end_of_second(50)
        );
        assert_eq!(expiry_cutoff(&[], second(50)), OplogTs::end_of_second(50));
    }

    #[test]
    fn an_instance_can_restore_the_seconds_every_shard_can() {
        let window = |spans: Vec<RestorableSpan>| ReplicaSetWindow {
            replica_set_id: ReplicaSetId::parse("cmgo-abcd1234_0").unwrap(),
            position: None,
            gaps: vec![],
            bases: vec![],
            spans,
        };
        assert_eq!(
            common_spans(&[
                window(vec![span(100, 200), span(300, 400)]),
                window(vec![span(150, 350)]),
            ]),
            vec![span(150, 200), span(300, 350)]
        );
        assert_eq!(
            common_spans(&[window(vec![span(1, 2)]), window(vec![])]),
            vec![]
        );
        assert_eq!(common_spans(&[]), vec![]);
    }

    /// A backup of the instance, run and finished with its replica set
    /// ending at `end`; failed instead when `fails`.
    async fn backup(c: &TestCatalog, end: OplogTs, fails: bool) -> i64 {
        let backups = c.backups();
        let at = second(i64::from(end.seconds));
        let backup = backups
            .create(
                &NewBackup {
                    instance_id: "cmgo-aaaaaaaa".into(),
                    method: 0,
                    backup_type: BackupType::Manual,
                    remark: String::new(),
                    retention_days: 3,
                    name: format!("b{end}"),
                    long_term: false,
                },
                at,
            )
            .await
            .unwrap();
        assert_eq!(
            backups.claim_queued(at).await.unwrap().unwrap().id,
            backup.id
        );
        let set = ReplicaSetId::parse("cmgo-aaaaaaaa_0").unwrap();
        backups
            .record_oplog_ends(backup.id, &[(set.clone(), end)])
            .await
            .unwrap();
        if fails {
            backups.fail(backup.id, at, "on purpose").await.unwrap();
        } else {
            backups
                .complete(backup.id, at, BackupSizes::default(), &[set], 7)
                .await
                .unwrap();
        }
        backup.id
    }

    async fn the_window_comes_from_the_catalog(c: TestCatalog) {
        let set = ReplicaSetId::parse("cmgo-aaaaaaaa_0").unwrap();
        let oplog = c.oplog();
        let empty = oplog.window(&set).await.unwrap();
        assert!(empty.position.is_none() && empty.spans.is_empty());

        let lease = TailerLease {
            duty: "oplog:cmgo-aaaaaaaa_0",
            node: "n1",
        };
        let ttl = SignedDuration::from_secs(60);
        assert!(c
            .duties()
            .hold(lease.duty, lease.node, second(1_000), ttl)
            .await
            .unwrap());
        oplog
            .begin(
                "cmgo-aaaaaaaa",
                &set,
                ts(1_000, 1),
                second(1_000),
                second(1_000),
            )
            .await
            .unwrap();
        // A backup before the tailer began is no base.
        backup(&c, ts(990, 1), false).await;
        let first = backup(&c, ts(1_010, 2), false).await;
        backup(&c, ts(1_020, 2), true).await;
        let slice = NewSlice {
            instance_id: "cmgo-aaaaaaaa".into(),
            replica_set_id: set.clone(),
            after: ts(1_000, 1),
            last: ts(1_030, 4),
            last_wall: second(1_030),
            object: None,
        };
        assert!(oplog.seal(&slice, lease, second(1_031)).await.unwrap());
        let window = oplog.window(&set).await.unwrap();
        assert_eq!(window.spans, vec![span(1_010, 1_029)]);
        assert_eq!(
            window.bases.len(),
            2,
            "the succeeded backups, not the failed one: {:?}",
            window.bases
        );
        assert_eq!(
            window.base_for(second(1_020)).map(|b| b.backup_id),
            Some(first)
        );
    }

    crate::testing::on_each_engine!(the_window_comes_from_the_catalog);
}

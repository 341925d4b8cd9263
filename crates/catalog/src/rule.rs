//! Automatic backup rules (DescribeBackupRules / SetBackupRules) and the
//! schedule they define.
//!
//! A rule says at which hour (in the server's time zone), how often (every
//! 24 or 12 hours) and on which weekdays an instance is backed up, how long
//! those backups are kept, and which of them are kept longer under the
//! long-term rule. The scheduler remembers per rule the last time slot it
//! handled (`last_slot_at`), so a slot is run once: a restart after a missed
//! slot runs that slot once, never every slot it slept through.
//!
//! The schedule arithmetic is pure ([`BackupRule::latest_slot`]) so it can
//! be tested on any clock.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::backup::{Backup, NewBackup};
use crate::store::{BackupStore, CatalogError, RuleStore};

/// Which automatic backups are kept under the long-term rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongTermInterval {
    /// No long-term retention.
    Off,
    /// The first automatic backup of each listed weekday (0 = Sunday).
    Weekly,
    /// The first automatic backup of each listed day of the month (1-31).
    Monthly,
}

impl LongTermInterval {
    /// The API's spelling: "", "weekly" or "monthly".
    pub fn as_str(self) -> &'static str {
        match self {
            LongTermInterval::Off => "",
            LongTermInterval::Weekly => "weekly",
            LongTermInterval::Monthly => "monthly",
        }
    }

    /// Parses the API's spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "" => Some(LongTermInterval::Off),
            "weekly" => Some(LongTermInterval::Weekly),
            "monthly" => Some(LongTermInterval::Monthly),
            _ => None,
        }
    }
}

/// An instance's automatic backup rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRule {
    /// The instance it governs.
    pub instance_id: String,
    /// `BackupMethod`: 0, logical.
    pub backup_method: i64,
    /// `BackupTime`: the hour (0-23) backups start, in the server's zone.
    pub backup_hour: u8,
    /// `BackupFrequency`: 24 (once a day) or 12 (at the hour and 12 hours
    /// later).
    pub frequency_hours: u8,
    /// `ActiveWeekdays`: days backups run on, 0 = Sunday, sorted.
    pub active_weekdays: Vec<u8>,
    /// `BackupRetentionPeriod`: days an automatic backup is kept.
    pub retention_days: i64,
    /// `Notify`: report failed automatic backups.
    pub notify: bool,
    /// `LongTermInterval`.
    pub long_term_interval: LongTermInterval,
    /// `LongTermActiveDays`: weekdays (weekly) or days of the month
    /// (monthly), sorted.
    pub long_term_active_days: Vec<u8>,
    /// `LongTermExpiredDays`: days a long-term backup is kept.
    pub long_term_expired_days: i64,
    /// `OplogExpiredDays`.
    pub oplog_expired_days: i64,
    /// `BackupVersion`.
    pub backup_version: i64,
    /// `AlertThreshold`, percent.
    pub alert_threshold: i64,
    /// Whether it was set through the API (otherwise: the defaults).
    pub explicit: bool,
}

impl BackupRule {
    /// The rule of an instance nobody configured: every day, once, kept
    /// `retention_days`. The hour is spread over 0-5 by the instance ID,
    /// so a fleet's backups do not all start at once.
    pub fn defaults(instance_id: &str, retention_days: i64) -> Self {
        let spread = instance_id
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        BackupRule {
            instance_id: instance_id.to_string(),
            backup_method: 0,
            backup_hour: (spread % 6) as u8,
            frequency_hours: 24,
            active_weekdays: (0..=6).collect(),
            retention_days,
            notify: true,
            long_term_interval: LongTermInterval::Off,
            long_term_active_days: Vec::new(),
            long_term_expired_days: 180,
            oplog_expired_days: 7,
            backup_version: 1,
            alert_threshold: 100,
            explicit: false,
        }
    }

    /// The start times of `day`'s backups (none when the weekday is not
    /// active), in order.
    fn slots_on(&self, day: Date, tz: &TimeZone) -> Vec<Timestamp> {
        let weekday = day.weekday().to_sunday_zero_offset() as u8;
        if !self.active_weekdays.contains(&weekday) {
            return Vec::new();
        }
        let mut hours = vec![self.backup_hour];
        if self.frequency_hours == 12 {
            hours.push((self.backup_hour + 12) % 24);
            hours.sort_unstable();
        }
        hours
            .into_iter()
            .filter_map(|hour| {
                let time = Time::new(hour as i8, 0, 0, 0).ok()?;
                // A wall time skipped by a DST change resolves forward.
                day.to_datetime(time).to_zoned(tz.clone()).ok()
            })
            .map(|zoned| zoned.timestamp())
            .collect()
    }

    /// The most recent slot at or before `now`, looking back at most eight
    /// days (a rule has at least one active weekday a week).
    pub fn latest_slot(&self, now: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let today = now.to_zoned(tz.clone()).date();
        (0..=8)
            .filter_map(|back| {
                today
                    .checked_sub(SignedDuration::from_hours(24 * back))
                    .ok()
            })
            .flat_map(|day| self.slots_on(day, tz).into_iter().rev())
            .find(|slot| *slot <= now)
    }

    /// Whether the automatic backup of `slot` is kept under the long-term
    /// rule: the slot's day is a long-term day and the slot is that day's
    /// first.
    pub fn is_long_term_slot(&self, slot: Timestamp, tz: &TimeZone) -> bool {
        let zoned: Zoned = slot.to_zoned(tz.clone());
        let day = zoned.date();
        let listed = match self.long_term_interval {
            LongTermInterval::Off => return false,
            LongTermInterval::Weekly => day.weekday().to_sunday_zero_offset() as u8,
            LongTermInterval::Monthly => day.day() as u8,
        };
        self.long_term_active_days.contains(&listed)
            && self.slots_on(day, tz).first() == Some(&slot)
    }

    /// Days the backup of `slot` is kept.
    pub fn retention_for_slot(&self, slot: Timestamp, tz: &TimeZone) -> i64 {
        if self.is_long_term_slot(slot, tz) {
            self.long_term_expired_days
        } else {
            self.retention_days
        }
    }
}

/// Formats days as the API's CSV (`"1,3,5"`).
pub fn days_csv(days: &[u8]) -> String {
    days.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
}

/// Parses the API's CSV of days; `None` when an item is not a number in
/// `range`. Duplicates collapse; the result is sorted.
pub fn parse_days_csv(text: &str, range: std::ops::RangeInclusive<u8>) -> Option<Vec<u8>> {
    let mut days = Vec::new();
    for item in text.split(',') {
        let day: u8 = item.trim().parse().ok()?;
        if !range.contains(&day) {
            return None;
        }
        days.push(day);
    }
    days.sort_unstable();
    days.dedup();
    Some(days)
}

const RULE_COLUMNS: &str =
    "instance_id, backup_method, backup_hour, frequency_hours, active_weekdays, \
     retention_days, notify, long_term_interval, long_term_active_days, long_term_expired_days, \
     oplog_expired_days, backup_version, alert_threshold, explicit";

impl RuleStore<'_> {
    /// An instance's stored rule, if any.
    pub async fn get(&self, instance_id: &str) -> Result<Option<BackupRule>, CatalogError> {
        self.catalog
            .fetch_optional(
                sqlx::query(&format!(
                    "SELECT {RULE_COLUMNS} FROM backup_rules WHERE instance_id = $1"
                ))
                .bind(instance_id),
            )
            .await
    }

    /// Stores `rule` (set through the API). Slots up to `now` count as
    /// handled, so a new hour that already passed today does not start a
    /// backup at once.
    pub async fn set(&self, rule: &BackupRule, now: Timestamp) -> Result<(), CatalogError> {
        self.insert_rule(
            rule,
            now,
            "ON CONFLICT (instance_id) DO UPDATE SET backup_method = $2, backup_hour = $3, \
             frequency_hours = $4, active_weekdays = $5, retention_days = $6, notify = $7, \
             long_term_interval = $8, long_term_active_days = $9, long_term_expired_days = $10, \
             oplog_expired_days = $11, backup_version = $12, alert_threshold = $13, explicit = $14, \
             last_slot_at = CASE WHEN backup_rules.last_slot_at > $15 THEN backup_rules.last_slot_at ELSE $15 END, \
             updated_at = $15",
        )
        .await
    }

    /// Inserts `rule` with every slot up to `now` handled; `on_conflict`
    /// says what to do when the instance has a rule already.
    async fn insert_rule(
        &self,
        rule: &BackupRule,
        now: Timestamp,
        on_conflict: &str,
    ) -> Result<(), CatalogError> {
        sqlx::query(&format!(
            "INSERT INTO backup_rules ({RULE_COLUMNS}, last_slot_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15) {on_conflict}"
        ))
        .bind(&rule.instance_id)
        .bind(rule.backup_method)
        .bind(i64::from(rule.backup_hour))
        .bind(i64::from(rule.frequency_hours))
        .bind(days_csv(&rule.active_weekdays))
        .bind(rule.retention_days)
        .bind(i64::from(rule.notify))
        .bind(rule.long_term_interval.as_str())
        .bind(days_csv(&rule.long_term_active_days))
        .bind(rule.long_term_expired_days)
        .bind(rule.oplog_expired_days)
        .bind(rule.backup_version)
        .bind(rule.alert_threshold)
        .bind(i64::from(rule.explicit))
        .bind(now.as_second())
        .execute(self.catalog.pool())
        .await?;
        Ok(())
    }

    /// The rule of every registered instance with the last slot its
    /// scheduler handled; an instance seen for the first time gets `default`'s
    /// rule with every slot up to `now` handled (a new instance has missed
    /// nothing).
    pub async fn scheduled(
        &self,
        now: Timestamp,
        default: impl Fn(&str) -> BackupRule,
    ) -> Result<Vec<(BackupRule, Timestamp)>, CatalogError> {
        let missing: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM instances WHERE id NOT IN (SELECT instance_id FROM backup_rules)",
        )
        .fetch_all(self.catalog.pool())
        .await?;
        for id in missing {
            // Racing another writer is harmless: the first row stays.
            self.insert_rule(&default(&id), now, "ON CONFLICT (instance_id) DO NOTHING")
                .await?;
        }
        let rows = sqlx::query(&format!(
            "SELECT {RULE_COLUMNS}, last_slot_at FROM backup_rules \
             WHERE instance_id IN (SELECT id FROM instances) ORDER BY instance_id"
        ))
        .fetch_all(self.catalog.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let rule = decode_rule(row)?;
                let last = Timestamp::from_second(row.try_get("last_slot_at")?).map_err(|e| {
                    CatalogError::Corrupt {
                        what: format!("backup rule of {}", rule.instance_id),
                        detail: e.to_string(),
                    }
                })?;
                Ok((rule, last))
            })
            .collect()
    }

    /// Queues the automatic backup of `slot` and records the slot as
    /// handled, in one transaction: `None` when the slot was handled
    /// already. Refuses with [`CatalogError::BackupInProgress`] (the slot
    /// stays pending) while another backup of the instance is queued or
    /// running.
    pub async fn create_scheduled_backup(
        &self,
        new: &NewBackup,
        slot: Timestamp,
        now: Timestamp,
    ) -> Result<Option<Backup>, CatalogError> {
        let mut tx = self.catalog.begin_write().await?;
        let handled: Option<i64> =
            sqlx::query_scalar("SELECT last_slot_at FROM backup_rules WHERE instance_id = $1")
                .bind(&new.instance_id)
                .fetch_optional(&mut *tx)
                .await?;
        if handled.is_some_and(|last| last >= slot.as_second()) {
            return Ok(None);
        }
        let id = BackupStore::insert_backup(&mut tx, new, now).await?;
        sqlx::query("UPDATE backup_rules SET last_slot_at = $2 WHERE instance_id = $1")
            .bind(&new.instance_id)
            .bind(slot.as_second())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.catalog.wakeups().backup_queued();
        self.catalog.backups().get(id).await
    }

    /// Forgets an instance's rule (when the instance is removed).
    pub(crate) async fn forget(&self, instance_id: &str) -> Result<(), CatalogError> {
        sqlx::query("DELETE FROM backup_rules WHERE instance_id = $1")
            .bind(instance_id)
            .execute(self.catalog.pool())
            .await?;
        Ok(())
    }
}

impl crate::store::FromRow for BackupRule {
    fn from_row(row: &AnyRow) -> Result<Self, CatalogError> {
        decode_rule(row)
    }
}

fn decode_rule(row: &AnyRow) -> Result<BackupRule, CatalogError> {
    let instance_id: String = row.try_get("instance_id")?;
    let corrupt = |detail: &str| CatalogError::Corrupt {
        what: format!("backup rule of {instance_id}"),
        detail: detail.to_string(),
    };
    let days = |column: &str, range| -> Result<Vec<u8>, CatalogError> {
        let text: String = row.try_get(column)?;
        if text.is_empty() {
            return Ok(Vec::new());
        }
        parse_days_csv(&text, range).ok_or_else(|| corrupt(column))
    };
    let small = |column: &str| -> Result<u8, CatalogError> {
        u8::try_from(row.try_get::<i64, _>(column)?).map_err(|_| corrupt(column))
    };
    Ok(BackupRule {
        backup_method: row.try_get("backup_method")?,
        backup_hour: small("backup_hour")?,
        frequency_hours: small("frequency_hours")?,
        active_weekdays: days("active_weekdays", 0..=6)?,
        retention_days: row.try_get("retention_days")?,
        notify: row.try_get::<i64, _>("notify")? != 0,
        long_term_interval: LongTermInterval::parse(row.try_get("long_term_interval")?)
            .ok_or_else(|| corrupt("long_term_interval"))?,
        long_term_active_days: days("long_term_active_days", 0..=31)?,
        long_term_expired_days: row.try_get("long_term_expired_days")?,
        oplog_expired_days: row.try_get("oplog_expired_days")?,
        backup_version: row.try_get("backup_version")?,
        alert_threshold: row.try_get("alert_threshold")?,
        explicit: row.try_get::<i64, _>("explicit")? != 0,
        instance_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shanghai() -> TimeZone {
        TimeZone::get("Asia/Shanghai").unwrap()
    }

    fn at(text: &str) -> Timestamp {
        // Local Shanghai wall time.
        jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M", text)
            .unwrap()
            .to_zoned(shanghai())
            .unwrap()
            .timestamp()
    }

    fn rule(hour: u8, frequency: u8, weekdays: &[u8]) -> BackupRule {
        BackupRule {
            backup_hour: hour,
            frequency_hours: frequency,
            active_weekdays: weekdays.to_vec(),
            ..BackupRule::defaults("cmgo-aaaaaaaa", 7)
        }
    }

    #[test]
    fn latest_slot_of_a_daily_rule() {
        let tz = shanghai();
        let r = rule(3, 24, &[0, 1, 2, 3, 4, 5, 6]);
        // 2026-11-30 is a Monday.
        assert_eq!(
            r.latest_slot(at("2026-11-30 03:00"), &tz),
            Some(at("2026-11-30 03:00"))
        );
        assert_eq!(
            r.latest_slot(at("2026-11-30 02:59"), &tz),
            Some(at("2026-11-29 03:00"))
        );
        assert_eq!(
            r.latest_slot(at("2026-11-30 23:00"), &tz),
            Some(at("2026-11-30 03:00"))
        );
    }

    #[test]
    fn twelve_hour_rule_on_some_weekdays() {
        let tz = shanghai();
        // Hour 15 and 12 hours later: 03:00 and 15:00 on Mon, Wed, Fri.
        let r = rule(15, 12, &[1, 3, 5]);
        assert_eq!(
            r.latest_slot(at("2026-11-30 14:00"), &tz),
            Some(at("2026-11-30 03:00"))
        );
        assert_eq!(
            r.latest_slot(at("2026-11-30 15:00"), &tz),
            Some(at("2026-11-30 15:00"))
        );
        // Tuesday: still Monday's second slot.
        assert_eq!(
            r.latest_slot(at("2026-12-01 20:00"), &tz),
            Some(at("2026-11-30 15:00"))
        );
        // Sunday: Friday's.
        assert_eq!(
            r.latest_slot(at("2026-12-06 20:00"), &tz),
            Some(at("2026-12-04 15:00"))
        );
    }

    #[test]
    fn long_term_days() {
        let tz = shanghai();
        let mut r = rule(3, 12, &[0, 1, 2, 3, 4, 5, 6]);
        assert!(!r.is_long_term_slot(at("2026-11-29 03:00"), &tz));
        r.long_term_interval = LongTermInterval::Weekly;
        r.long_term_active_days = vec![0];
        r.long_term_expired_days = 90;
        // Sunday's first slot only.
        assert!(r.is_long_term_slot(at("2026-11-29 03:00"), &tz));
        assert!(!r.is_long_term_slot(at("2026-11-29 15:00"), &tz));
        assert!(!r.is_long_term_slot(at("2026-11-30 03:00"), &tz));
        assert_eq!(r.retention_for_slot(at("2026-11-29 03:00"), &tz), 90);
        assert_eq!(r.retention_for_slot(at("2026-11-29 15:00"), &tz), 7);
        r.long_term_interval = LongTermInterval::Monthly;
        r.long_term_active_days = vec![1];
        assert!(r.is_long_term_slot(at("2026-12-01 03:00"), &tz));
        assert!(!r.is_long_term_slot(at("2026-11-29 03:00"), &tz));
    }

    #[test]
    fn days_csv_round_trip() {
        assert_eq!(parse_days_csv("5,1,3,3", 0..=6), Some(vec![1, 3, 5]));
        assert_eq!(days_csv(&[1, 3, 5]), "1,3,5");
        for bad in ["", "7", "1,,2", "a", "-1", "1;2"] {
            assert_eq!(parse_days_csv(bad, 0..=6), None, "{bad}");
        }
    }

    #[test]
    fn defaults_spread_the_hour() {
        let hours: std::collections::BTreeSet<u8> = (0..40)
            .map(|i| BackupRule::defaults(&format!("cmgo-{i:08}"), 7).backup_hour)
            .collect();
        assert!(hours.len() > 3, "{hours:?}");
        assert!(hours.iter().all(|h| *h <= 5));
    }
}
